"""tf.data input: values, shapes and dtypes of what the test wrote; time split; shuffling."""
import os

import numpy as np
import pytest
import tensorflow as tf

from pipelines.config import SampleConfig, from_mapping
from pipelines.samples.example import encode, sample_schema, schema_json
from pipelines.samples.labels import LABELS
from ranking.config import experiment_from_mapping
from ranking.data.input import (DAY_SECONDS, TimeRange, count_rows, files_for_range,
                                list_files, make_dataset, max_timestamp, split_by_time,
                                shuffle_records, timestamp_chunks)
from ranking.data.layout import day_of, sample_file_name
from ranking.data.schema import SchemaError, load_schema

L, K = 4, 3
DAY0 = 1_767_225_600  # 2026-01-01T00:00:00Z
OBSERVE_AT = DAY0 + 3 * DAY_SECONDS
SAMPLE_CONFIG = from_mapping(SampleConfig, {
    "sequence": {"length": L, "impression_length": K}, "crosses": {"item_buckets": 1000, "category_buckets": 100},
    "extra_columns": [{"name": "device", "kind": "categorical"},
                      {"name": "price", "kind": "numeric"}]})
SPECS = sample_schema(SAMPLE_CONFIG, with_truth=False)

EXPERIMENT = experiment_from_mapping({
    "name": "t",
    "features": {
        "ids": [{"name": "user_id", "buckets": 100}, {"name": "item_id", "buckets": 100}],
        "sequences": [{"name": "seq_item_ids", "share_embedding_with": "item_id"}],
        "crosses": [{"name": "cross_seq_item_x_item"}],
        "numerics": [{"name": "price", "transform": "log1p"}],
    },
    "domain": {"feature": "domain", "vocabulary": ["US|home"]},
    "tasks": [{"name": "ctr", "label": "click"}, {"name": "ctcvr", "label": "conversion"},
              {"name": "cvr", "label": "conversion", "mask_label": "click"}],
    "training": {"batch_size": 4, "shuffle_buffer": 1000, "seed": 3},
})


def make_sample(i: int, ts: int) -> dict:
    n = i % (L + 1)
    sample = {
        "impression_id": f"imp{i}", "user_id": f"u{i % 7}", "item_id": f"p{i}",
        "category_id": f"c{i % 3}", "country": "US", "scene": "home",
        "domain": "US|home" if i % 2 else "BR|cart", "ts": ts, "device": "ios",
        "price": float("nan") if i % 5 == 0 else i * 1.5,
        "seq_item_ids": [f"s{i}_{j}" for j in range(n)] + [""] * (L - n),
        "seq_category_ids": [f"c{j}" for j in range(n)] + [""] * (L - n),
        "seq_click_ts": [ts - 1 - j for j in range(n)] + [-1] * (L - n), "seq_length": n,
        "last_click_item_id": f"s{i}_0" if n else "", "last_click_category_id": "c0" if n else "",
        "cross_seq_item_x_item": [(i * 10 + j) % 1000 for j in range(n)] + [-1] * (L - n),
        "cross_seq_category_x_category": [j for j in range(n)] + [-1] * (L - n),
        "seq_imp_category_ids": [f"c{j}" for j in range(K)],
        "cross_imp_category_x_category": list(range(K)),
        "imp_count": i, "click_count": i // 2, "item_imp_count": 3 * i, "item_click_count": i,
        "item_imp_per_million": (3 * i + 0.5) * 1000.0,
        "click": i % 2, "conversion": int(i % 4 == 1), "refund": 0,
        "net_conversion": int(i % 4 == 1), "click_ts": ts + 5 if i % 2 else -1, "pay_ts": -1,
        "refund_ts": -1, "observe_at": OBSERVE_AT,
    }
    assert set(LABELS) <= set(sample), "the test's sample lacks a label of the schema"
    return sample


def write(directory, samples, n_files=1):
    os.makedirs(directory / "samples", exist_ok=True)
    (directory / "schema.json").write_text(schema_json(SPECS, SAMPLE_CONFIG, OBSERVE_AT))
    for k in range(n_files):
        path = directory / "samples" / f"part-{k:05d}-of-{n_files:05d}.tfrecord"
        with tf.io.TFRecordWriter(str(path)) as w:
            for s in samples[k::n_files]:
                w.write(encode(s, SPECS))
    return load_schema(directory)


def write_by_day(directory, samples):
    """The pipeline's layout: one file per UTC day of ``ts``, named by the day."""
    os.makedirs(directory / "samples", exist_ok=True)
    (directory / "schema.json").write_text(schema_json(SPECS, SAMPLE_CONFIG, OBSERVE_AT))
    days = sorted({day_of(s["ts"]) for s in samples})
    for day in days:
        path = directory / "samples" / sample_file_name(day, 0, 1)
        with tf.io.TFRecordWriter(str(path)) as w:
            for s in samples:
                if day_of(s["ts"]) == day:
                    w.write(encode(s, SPECS))
    return load_schema(directory)


def rows(ds, key="item_id"):
    """All values of features[key] over the dataset, in order."""
    return [v.decode() for f, _ in ds for v in f[key].numpy().tolist()]


@pytest.fixture
def samples():
    # ts: 3 days, 10 rows a day, row i at DAY0 + day * 86400 + i * 1000
    return [make_sample(i, DAY0 + (i // 10) * DAY_SECONDS + (i % 10) * 1000) for i in range(30)]


def test_values_shapes_dtypes(tmp_path, samples):
    schema = write(tmp_path, samples)
    ds = make_dataset(tmp_path, schema, EXPERIMENT, training=False, deterministic=True,
                      extra_features=["ts"])
    batches = list(ds)
    assert [len(l["click"]) for _, l in batches] == [4] * 7 + [2]
    features, labels = batches[1]
    assert sorted(features) == sorted(["user_id", "item_id", "seq_item_ids", "price",
                                       "cross_seq_item_x_item", "domain", "ts"])
    assert sorted(labels) == ["click", "conversion"]  # labels by label name, mask labels too
    assert features["seq_item_ids"].shape == (4, L) and features["seq_item_ids"].dtype == tf.string
    assert features["cross_seq_item_x_item"].shape == (4, L)
    assert features["cross_seq_item_x_item"].dtype == tf.int64
    assert features["price"].dtype == tf.float32 and features["user_id"].shape == (4,)
    assert labels["click"].dtype == tf.float32 and labels["click"].shape == (4,)
    for b, (features, labels) in enumerate(batches):
        for r in range(len(labels["click"])):
            s = samples[4 * b + r]
            assert features["item_id"][r].numpy().decode() == s["item_id"]
            assert features["user_id"][r].numpy().decode() == s["user_id"]
            assert features["domain"][r].numpy().decode() == s["domain"]
            assert [v.decode() for v in features["seq_item_ids"][r].numpy()] == s["seq_item_ids"]
            assert features["cross_seq_item_x_item"][r].numpy().tolist() == \
                s["cross_seq_item_x_item"]
            assert features["ts"][r].numpy() == s["ts"]
            np.testing.assert_equal(features["price"][r].numpy(), np.float32(s["price"]))
            assert labels["click"][r].numpy() == s["click"]
            assert labels["conversion"][r].numpy() == s["conversion"]


def test_eval_does_not_shuffle_training_does(tmp_path, samples):
    schema = write(tmp_path, samples)
    written = [s["item_id"] for s in samples]
    for _ in range(2):
        assert rows(make_dataset(tmp_path, schema, EXPERIMENT, training=False)) == written
    train = make_dataset(tmp_path, schema, EXPERIMENT, training=True, deterministic=True)
    first = rows(train)
    assert first != written and sorted(first) == sorted(written)
    again = make_dataset(tmp_path, schema, EXPERIMENT, training=True, deterministic=True)
    assert rows(again) == first  # seeded: reproducible across runs
    assert rows(train) != first  # reshuffled every epoch


def test_shuffle_records_moves_blocks_through_the_buffer_and_permutes_windows():
    """Blocks of 10 consecutive records go through a 4-block buffer, windows of 40 records
    (4 whole blocks) are permuted: every record once per pass, each window the union of 4
    blocks, none of them read after the buffer's reach (output block j comes from read blocks
    <= j + 3), records mixed inside windows; seeded passes are reproducible and differ."""
    records = tf.data.Dataset.range(200).map(lambda i: tf.strings.as_string(i))

    def passes(seed):
        ds = shuffle_records(records, 40, seed, block=10, window=40)
        return ([[int(r) for r in w.numpy()] for w in ds],
                [[int(r) for r in w.numpy()] for w in ds])

    first, second = passes(seed=5)
    for windows in (first, second):
        assert [len(w) for w in windows] == [40] * 5
        assert sorted(r for w in windows for r in w) == list(range(200))
        blocks = [sorted({r // 10 for r in w}) for w in windows]
        assert all(len(b) == 4 for b in blocks)  # whole blocks only
        assert all(b <= 4 * k + 3 + 3 for k, bs in enumerate(blocks) for b in bs)
        assert blocks != [[4 * k + i for i in range(4)] for k in range(5)]  # reordered
        for w in windows:  # a window is not its blocks laid end to end
            assert any(abs(a - b) != 1 for a, b in zip(w, w[1:]))
    assert first != second  # a new order per pass
    assert passes(seed=5) == (first, second)  # seeded: reproducible
    with pytest.raises(ValueError, match="block must be >= 1, got 0"):
        shuffle_records(records, 40, 1, block=0)


def test_training_batches_are_full_and_hold_every_row_once(tmp_path, samples):
    schema = write(tmp_path, samples)
    train = make_dataset(tmp_path, schema, EXPERIMENT, training=True, batch_size=7)
    assert [len(l["click"]) for _, l in train] == [7, 7, 7, 7, 2]
    assert sorted(rows(train)) == sorted(s["item_id"] for s in samples)


def test_many_files_all_rows_once(tmp_path, samples):
    schema = write(tmp_path, samples, n_files=3)
    assert len(list_files(tmp_path)) == 3
    for training in (False, True):
        got = rows(make_dataset(tmp_path, schema, EXPERIMENT, training=training, batch_size=7))
        assert sorted(got) == sorted(s["item_id"] for s in samples)
    glob = str(tmp_path / "samples" / "part-*")
    assert len(rows(make_dataset(glob, schema, EXPERIMENT, training=False))) == 30


def test_time_range_filters_and_keeps_full_batches(tmp_path, samples):
    schema = write(tmp_path, samples, n_files=2)
    day1 = TimeRange(DAY0 + DAY_SECONDS, DAY0 + 2 * DAY_SECONDS)
    ds = make_dataset(tmp_path, schema, EXPERIMENT, training=True, time_range=day1,
                      batch_size=4, extra_features=["ts"])
    sizes, ts = [], []
    for f, l in ds:
        sizes.append(len(l["click"]))
        ts += f["ts"].numpy().tolist()
    assert sizes == [4, 4, 2]  # filtered before batching: full batches
    assert sorted(ts) == [s["ts"] for s in samples[10:20]]
    assert all(day1.contains(t) for t in ts)


def test_repeat_passes_forever_shuffling_across_pass_boundaries(tmp_path, samples):
    """``repeat=True``: training repeats the time-filtered records before the shuffle (its
    buffer never drains: batches stay full and the passes blend); evaluation repeats its
    batches in order."""
    schema = write(tmp_path, samples, n_files=2)
    day1 = TimeRange(DAY0 + DAY_SECONDS, DAY0 + 2 * DAY_SECONDS)
    day1_items = sorted(s["item_id"] for s in samples[10:20])
    train = make_dataset(tmp_path, schema, EXPERIMENT, training=True, time_range=day1,
                         batch_size=4, deterministic=True, repeat=True)
    batches = list(train.take(10))
    assert [len(l["click"]) for _, l in batches] == [4] * 10  # no partial batch per pass
    got = [v.decode() for f, _ in batches for v in f["item_id"].numpy().tolist()]
    assert set(got) <= set(day1_items)  # the time filter holds in every pass
    assert max(got.count(i) for i in day1_items) > 1  # 40 rows of a 10-row split
    assert sorted(got[:10]) != day1_items  # pass 2 rows are shuffled into pass 1's rows
    evaluation = make_dataset(tmp_path, schema, EXPERIMENT, training=False, time_range=day1,
                              batch_size=4, repeat=True)
    once = rows(make_dataset(tmp_path, schema, EXPERIMENT, training=False, time_range=day1,
                             batch_size=4))
    assert rows(evaluation.take(6)) == once + once  # 3 batches (4, 4, 2) a pass


def test_split_by_time_puts_rows_in_the_right_split(tmp_path, samples):
    schema = write(tmp_path, samples)
    train_range, test_range = split_by_time(tmp_path, test_days=1)
    assert test_range == TimeRange(DAY0 + 2 * DAY_SECONDS, DAY0 + 3 * DAY_SECONDS)
    assert train_range == TimeRange(0, DAY0 + 2 * DAY_SECONDS)
    train = rows(make_dataset(tmp_path, schema, EXPERIMENT, training=True,
                              time_range=train_range))
    test = rows(make_dataset(tmp_path, schema, EXPERIMENT, training=False,
                             time_range=test_range))
    assert sorted(train) == sorted(s["item_id"] for s in samples[:20])
    assert test == [s["item_id"] for s in samples[20:]]  # test keeps file order
    # 5 days train, next day test (seed 004): train starts train_days before the test day
    train5, _ = split_by_time(tmp_path, 1, train_days=1)
    assert train5 == TimeRange(DAY0 + DAY_SECONDS, DAY0 + 2 * DAY_SECONDS)
    train2, test2 = split_by_time(schema, test_days=2)
    assert test2 == TimeRange(DAY0 + DAY_SECONDS, DAY0 + 3 * DAY_SECONDS)
    assert train2.end == test2.start


def test_split_by_time_reference_max_ts_and_mid_day_observe_at(tmp_path, samples):
    schema = write(tmp_path, samples[:15])  # rows up to day 1 only
    assert max_timestamp(tmp_path) == samples[14]["ts"]
    day1 = TimeRange(DAY0 + DAY_SECONDS, DAY0 + 2 * DAY_SECONDS)
    assert count_rows(tmp_path, day1) == sum(day1.start <= s["ts"] < day1.end
                                             for s in samples[:15]) == 5
    day0 = TimeRange(DAY0, DAY0 + DAY_SECONDS)
    assert count_rows(tmp_path, day0, day1, TimeRange(0, 1)) == [10, 5, 0]  # one scan
    with pytest.raises(ValueError, match="at least one time range"):
        count_rows(tmp_path)
    chunks = list(timestamp_chunks(tmp_path, chunk=4))
    assert [len(r) for r, _ in chunks] == [4, 4, 4, 3]
    assert [t for _, ts in chunks for t in ts.numpy().tolist()] == [
        s["ts"] for s in samples[:15]]
    _, test_range = split_by_time(tmp_path, reference="max_ts")
    assert test_range == TimeRange(DAY0 + DAY_SECONDS, DAY0 + 2 * DAY_SECONDS)
    # observe_at is end of day 2 in the schema: the test day is day 2, whatever the rows
    _, by_observe = split_by_time(schema)
    assert by_observe == TimeRange(DAY0 + 2 * DAY_SECONDS, DAY0 + 3 * DAY_SECONDS)
    mid = type(schema)(schema.features, DAY0 + DAY_SECONDS + 3600, schema.sequence_length)
    assert split_by_time(mid)[1] == TimeRange(DAY0 + DAY_SECONDS, DAY0 + 2 * DAY_SECONDS)
    with pytest.raises(ValueError, match="test_days must be >= 1, got 0"):
        split_by_time(schema, test_days=0)


def test_errors_name_the_problem(tmp_path, samples):
    schema = write(tmp_path, samples)
    with pytest.raises(FileNotFoundError, match="no sample files match"):
        make_dataset(str(tmp_path / "nothing-*.tfrecord"), schema, EXPERIMENT, training=False)
    with pytest.raises(SchemaError, match=r"feature 'p_click' is not in the schema"):
        make_dataset(tmp_path, schema, EXPERIMENT, training=False, extra_features=["p_click"])
    with pytest.raises(SchemaError, match=r"extra_features: \['click'\] are labels"):
        make_dataset(tmp_path, schema, EXPERIMENT, training=False, extra_features=["click"])


def test_files_for_range_reads_whole_days_without_the_filter():
    day0 = day_of(DAY0)
    named = [f"/d/samples/{sample_file_name(day0 + k, 0, 1)}" for k in range(3)]
    assert named[0].endswith("part-2026-01-01-00000-of-00001.tfrecord")
    days12 = TimeRange(DAY0 + DAY_SECONDS, DAY0 + 3 * DAY_SECONDS)
    assert files_for_range(named, days12) == (named[1:], None)  # whole days: no filter
    assert files_for_range(named, None) == (named, None)
    assert files_for_range(named, TimeRange(0, DAY0 + DAY_SECONDS)) == (named[:1], None)
    half = TimeRange(DAY0 + DAY_SECONDS // 2, DAY0 + DAY_SECONDS)  # cuts through day 0
    assert files_for_range(named, half) == (named[:1], half)
    mixed = named + ["/d/samples/part-00000-of-00001.tfrecord"]  # no day: may hold any row
    assert files_for_range(mixed, days12) == (mixed[1:], days12)
    later = TimeRange(DAY0 + 5 * DAY_SECONDS, DAY0 + 6 * DAY_SECONDS)
    assert files_for_range(named, later) == (named[:1], later)  # empty split, still a dataset


@pytest.mark.parametrize("training", [False, True])
def test_day_files_give_the_rows_of_one_file(tmp_path, samples, training):
    """Files picked by day hold exactly the rows the per-record filter keeps."""
    one = write(tmp_path / "one", samples)
    by_day = write_by_day(tmp_path / "days", samples)
    assert len(list_files(tmp_path / "days")) == 3
    train_range, test_range = split_by_time(one, test_days=1)
    ranges = [train_range, test_range, None, TimeRange(DAY0 + 5500, DAY0 + DAY_SECONDS + 2500),
              TimeRange(DAY0 + 9 * DAY_SECONDS, DAY0 + 10 * DAY_SECONDS)]
    for r in ranges:
        want = rows(make_dataset(tmp_path / "one", one, EXPERIMENT, training=training,
                                 time_range=r))
        got = rows(make_dataset(tmp_path / "days", by_day, EXPERIMENT, training=training,
                                time_range=r))
        assert sorted(got) == sorted(want), r
        assert len(got) == sum(r is None or r.contains(s["ts"]) for s in samples)
        if not training:  # samples are written in time order: both read in file order
            assert got == want


def test_count_rows_of_day_files_equals_the_scan(tmp_path, samples):
    one = tmp_path / "one"
    write(one, samples)
    write_by_day(tmp_path / "days", samples)
    ranges = [TimeRange(0, DAY0 + 2 * DAY_SECONDS),
              TimeRange(DAY0 + DAY_SECONDS, DAY0 + 3 * DAY_SECONDS),
              TimeRange(DAY0 + 5500, DAY0 + DAY_SECONDS + 2500), TimeRange(0, 1)]
    want = [sum(r.contains(s["ts"]) for s in samples) for r in ranges]
    assert want == [20, 20, 7, 0]  # day 0 rows 6-9, day 1 rows 0-2
    assert count_rows(one, *ranges) == count_rows(tmp_path / "days", *ranges) == want
    assert count_rows(tmp_path / "days", ranges[1]) == 20
