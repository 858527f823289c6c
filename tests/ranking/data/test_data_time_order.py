"""Training in time order (``training.order: time``) and through a sliding window
(``sliding_window``): every row once, time order kept at the window's granularity, the window
really shuffles and reshuffles every epoch, and the time range still applies."""
import os
import random

import numpy as np
import pytest
import tensorflow as tf

from ranking.config import experiment_from_mapping
from ranking.data.input import TimeRange, make_dataset, sliding_window_order
from ranking.data.schema import FeatureSpec, Schema

DAY0 = 1_767_225_600  # 2026-01-01T00:00:00Z
N = 240
# Just what the experiment reads: item_id (the row's time rank), domain, ts and two labels.
SCHEMA = Schema((FeatureSpec("item_id", "string", role="id"),
                 FeatureSpec("domain", "string", role="domain"),
                 FeatureSpec("ts", "int64", role="time"),
                 FeatureSpec("click", "int64", role="label"),
                 FeatureSpec("conversion", "int64", role="label")), None, None)


def _experiment(**training):
    return experiment_from_mapping({
        "name": "t",
        "features": {"ids": [{"name": "item_id", "buckets": 100}]},
        "tasks": [{"name": "ctr", "label": "click"}, {"name": "ctcvr", "label": "conversion"}],
        "training": {"batch_size": 8, "seed": 3, **training},
    })


def _example(rank: int, ts: int) -> bytes:
    f = tf.train.Feature
    return tf.train.Example(features=tf.train.Features(feature={
        "item_id": f(bytes_list=tf.train.BytesList(value=[str(rank).encode()])),
        "domain": f(bytes_list=tf.train.BytesList(value=[b"US|home"])),
        "ts": f(int64_list=tf.train.Int64List(value=[ts])),
        "click": f(int64_list=tf.train.Int64List(value=[rank % 2])),
        "conversion": f(int64_list=tf.train.Int64List(value=[0])),
    })).SerializeToString()


@pytest.fixture
def shuffled_files(tmp_path):
    """N rows, one a minute, written in random order over 3 files; ``(directory, schema)``."""
    rows = [_example(i, DAY0 + 60 * i) for i in range(N)]
    random.Random(0).shuffle(rows)
    os.makedirs(tmp_path / "samples")
    for k in range(3):
        with tf.io.TFRecordWriter(str(tmp_path / "samples" / f"part-{k:05d}.tfrecord")) as w:
            for r in rows[k::3]:
                w.write(r)
    return str(tmp_path), SCHEMA


def _ranks(ds):
    """Time ranks in the order the dataset yields them, and the batch sizes."""
    ranks, sizes = [], []
    for features, _ in ds:
        ids = [int(v) for v in features["item_id"].numpy()]
        ranks += ids
        sizes.append(len(ids))
    return np.array(ranks), sizes


def _window_violations(ranks, window):
    """Pairs out of time order by ``window`` or more: a row yielded after a row at least
    ``window`` later, i.e. still buffered when that row entered. Counted via suffix minima."""
    suffix_min = np.minimum.accumulate(ranks[::-1])[::-1]
    return int(np.sum(ranks[:-1] - suffix_min[1:] >= window))


def _buffer_needed(ranks):
    """Rows a buffer fed in time order must hold to yield ``ranks`` in this order."""
    prefix_max = np.maximum.accumulate(ranks)
    return int(np.max(prefix_max + 1 - np.arange(len(ranks))))


def test_sliding_window_order_golden_and_properties():
    # Hand check, window 1: keys i + u_i with u_i < 1 keep the time order exactly.
    np.testing.assert_array_equal(sliding_window_order(5, 1, [1, 2]), [0, 1, 2, 3, 4])
    order = sliding_window_order(5000, 100, tf.constant([7, 0])).numpy()
    assert sorted(order) == list(range(5000))  # a permutation: every row once
    assert _window_violations(order, 100) == 0
    assert _buffer_needed(order) <= 100
    displacement = np.abs(order - np.arange(5000))
    assert displacement.max() < 100 and displacement.mean() > 20  # shuffled within the window
    with pytest.raises(ValueError, match="window_size must be >= 1, got 0"):
        sliding_window_order(5, 0, [1, 2])


def test_time_order_yields_every_row_once_sorted_by_ts(shuffled_files):
    path, schema = shuffled_files
    config = _experiment(order="time")
    ranks, sizes = _ranks(make_dataset(path, schema, config, training=True))
    np.testing.assert_array_equal(ranks, np.arange(N))
    assert sizes == [8] * (N // 8)
    # evaluation reads are untouched by training.order: file order, not time order
    eval_ranks, _ = _ranks(make_dataset(path, schema, config, training=False))
    assert sorted(eval_ranks) == list(range(N)) and list(eval_ranks) != list(range(N))


def test_sliding_window_yields_every_row_once_in_window_time_order(shuffled_files):
    path, schema = shuffled_files
    window = 32
    config = _experiment(order="sliding_window", window_size=window)
    ds = make_dataset(path, schema, config, training=True, deterministic=True)
    first, sizes = _ranks(ds)
    assert sorted(first) == list(range(N)) and sizes == [8] * (N // 8)
    assert _window_violations(first, window) == 0
    assert _buffer_needed(first) <= window
    assert _window_violations(first, window // 4) > 0  # shuffled inside the window
    again, _ = _ranks(ds)
    assert list(again) != list(first) and sorted(again) == list(range(N))  # new epoch order
    assert _window_violations(again, window) == 0
    rerun, _ = _ranks(make_dataset(path, schema, config, training=True, deterministic=True))
    np.testing.assert_array_equal(rerun, first)  # seeded: reproducible across runs


def test_time_orders_apply_the_time_range(shuffled_files):
    path, schema = shuffled_files
    hour = TimeRange(DAY0 + 60 * 60, DAY0 + 60 * 120)  # ranks 60..119
    for training in ({"order": "time"}, {"order": "sliding_window", "window_size": 16}):
        ranks, _ = _ranks(make_dataset(path, schema, _experiment(**training), training=True,
                                       time_range=hour))
        assert sorted(ranks) == list(range(60, 120))
    empty = TimeRange(0, DAY0)
    assert _ranks(make_dataset(path, schema, _experiment(order="time"), training=True,
                               time_range=empty))[0].size == 0
    assert _experiment().training.order == "shuffled"  # the default is unchanged
