"""The streaming protocol (ranking.streaming) on a tiny hand-made world: labels as known at a
moment, which rows each update trains on (never one known at or after the update), the
pre-training labels (observed at its end) and the evaluation labels (the true final ones).

The world (A = attribution window = 1 day, w = 15 min; times as day + hours):

=====  =============  ==================  =============================================
click  click time     pay (refund)        role
=====  =============  ==================  =============================================
c1     d0 + 1h        d0 + 3h             pre-training, label 1; matured by t0
c3     d0 + 2h        --                  pre-training, label 0; matured by t0
c2     d1 + 20h       d2 + 6h             pre-training label 0 (pay after t0), final 1
c4     d1 + 3h        d1 + 3h05           pre-training, in-window positive
c5     d1 + 12h       d2 + 20h            pay 32 h after the click: never attributed
c10    d2 + 6h        d2 + 9h             stream day 2: first copy + delayed positive
c6     d3 + 5h        d4 + 2h             evaluated k=1: converts after the k=1 period
c7     d3 + 8h        --                  evaluated k=1
c8     d4 + 1h        d4 + 3h (d4 + 13h)  evaluated k=2: converted and refunded
c9     d4 + 4h        --                  evaluated k=2
=====  =============  ==================  =============================================

Protocol: 2 pre-training days (t0 = d2), 2 evaluated periods: train at t1 = d3 on what
became known in [d2, d3), evaluate d3; train at t2 = d4 on [d3, d4), evaluate d4.
"""
import json
import math

import numpy as np
import pytest

import ranking  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf  # noqa: E402

from pipelines.streams import StreamConfig, impression_stream  # noqa: E402
from ranking import streaming  # noqa: E402
from ranking.config import FeaturesConfig  # noqa: E402
from ranking.data.schema import FeatureSpec, Schema  # noqa: E402
from ranking.losses import stream_fields as sf  # noqa: E402
from ranking.models.delayed_feedback import (MATURED_CLICKS, MATURED_CONVERSIONS,  # noqa: E402
                                             PRETRAIN, REFUND_LABEL, STREAM,
                                             DelayedFeedbackModel)
from ranking.utils.typed_config import from_mapping  # noqa: E402

H, D = 3600, 86400
S = 1_767_225_600  # d0, UTC midnight
W = 900
A = D


def t(day, hours=0.0):
    return int(S + day * D + hours * H)


CLICKS = {  # name: (click, pay, refund)
    "c1": (t(0, 1), t(0, 3), -1), "c3": (t(0, 2), -1, -1), "c2": (t(1, 20), t(2, 6), -1),
    "c4": (t(1, 3), t(1, 3) + 300, -1), "c5": (t(1, 12), t(2, 20), -1),
    "c10": (t(2, 6), t(2, 9), -1), "c6": (t(3, 5), t(4, 2), -1), "c7": (t(3, 8), -1, -1),
    "c8": (t(4, 1), t(4, 3), t(4, 13)), "c9": (t(4, 4), -1, -1),
}
OBSERVE_AT = t(7)  # end of the last evaluated period (d5) + 2 A
PROTOCOL = streaming.Protocol(start_ts=S, pretrain_days=2, eval_periods=2, window_s=W,
                              attribution_s=A, batch_size=2)

SCHEMA = Schema((FeatureSpec("item_id", "string", (), "id"),
                 FeatureSpec("price", "float", (), "extra")))
FEATURES = from_mapping(FeaturesConfig, {"ids": [{"name": "item_id", "buckets": 13, "dim": 2}],
                                         "numerics": [{"name": "price"}]}, "features")


def _clicks():
    names = list(CLICKS)
    return {"item_id": np.array([n.encode() for n in names]),
            "price": np.arange(len(names), dtype=np.float32),
            "click_ts": np.array([CLICKS[n][0] for n in names], np.int64),
            "pay_ts": np.array([CLICKS[n][1] for n in names], np.int64),
            "refund_ts": np.array([CLICKS[n][2] for n in names], np.int64)}


def _stream(method):
    """The stream builder's rows for every click, the click's features copied."""
    config = StreamConfig(method, window_s=W, attribution_s=A)
    rows = {k: [] for k in ("item_id", "price") + streaming.STREAM_ROW_FIELDS}
    for i, (name, (c, p, r)) in enumerate(CLICKS.items()):
        for s in impression_stream(config, c, None if p < 0 else p, None if r < 0 else r,
                                   OBSERVE_AT):
            rows["item_id"].append(name.encode())
            rows["price"].append(float(i))
            for field in streaming.STREAM_ROW_FIELDS:
                rows[field].append(getattr(s, field))
    return {k: np.array(v, np.float32 if k == "price" else None) for k, v in rows.items()}


class Recorder:
    """A factory of tiny models whose ``train_batch`` records every batch it gets."""

    def __init__(self, method, net=None):
        self.method, self.net, self.batches = method, net, []

    def __call__(self):
        tf.keras.utils.set_random_seed(0)
        model = DelayedFeedbackModel(FEATURES, SCHEMA, self.method, net=self.net,
                                     hidden_units=[4], aux_units=[2])
        # Eager: the graph-mode steps are tested with the model; here tracing would dominate.
        model.compile(optimizer=tf.keras.optimizers.Adam(0.01), run_eagerly=True)
        train = model.train_batch

        def record(kind, batch):
            self.batches.append((kind, {k: np.array(v) for k, v in batch.items()}))
            return train(kind, batch)

        model.train_batch = record
        return model

    def items(self, kind):
        """Per update (in order): the item ids of the ``kind`` rows, with their fields."""
        return [b for k, b in self.batches if k == kind]


def _by_update(recorder, result, kind):
    """``[(train_at, rows)]``: the recorded ``kind`` batches grouped per logged update."""
    batches = iter(recorder.items(kind))
    out = []
    for entry in (e for e in result.training_log if e["kind"] == kind):
        rows, n = [], 0
        while n < entry["rows"]:
            batch = next(batches)
            rows.append(batch)
            n += len(batch["item_id"])
        merged = {k: np.concatenate([b[k] for b in rows]) for k in rows[0]} if rows else {}
        out.append((entry["train_at"], merged))
    return out


@pytest.fixture(scope="module")
def es_dfm_run():
    recorder = Recorder("es_dfm")
    result = streaming.run_protocol(recorder, PROTOCOL, _clicks(), {STREAM: _stream("es_dfm")},
                                    OBSERVE_AT)
    return recorder, result


# ---------------------------------------------------------------------------------- labels
def test_labels_at_follow_the_attribution_rule():
    rows = _clicks()
    names = list(CLICKS)
    at_t0 = streaming.labels_at(rows, t(2), W, A)
    final = streaming.labels_at(rows, math.inf, W, A)

    def named(labels, field):
        return {n for n, v in zip(names, labels[field]) if v}

    assert named(at_t0, sf.LABEL) == {"c1", "c4"}          # c2 pays at d2 + 6h: not yet
    assert named(final, sf.LABEL) == {"c1", "c2", "c4", "c10", "c6", "c8"}  # not c5 (> A)
    assert named(final, sf.IN_WINDOW) == {"c4"}
    assert named(final, REFUND_LABEL) == {"c8"}
    assert named(final, "net_label") == {"c1", "c2", "c4", "c10", "c6"}
    assert named(final, sf.DELAYED_REFUND) == {"c8"}
    # An event exactly at as_of is not known yet; one second later it is.
    at_pay = streaming.labels_at(rows, CLICKS["c2"][1], W, A)
    assert named(at_pay, sf.LABEL) == {"c1", "c4"}
    after = streaming.labels_at(rows, CLICKS["c2"][1] + 1, W, A)
    assert named(after, sf.LABEL) == {"c1", "c4", "c2"}


# -------------------------------------------------------------------------------- protocol
def test_no_update_trains_on_a_row_known_at_or_after_it(es_dfm_run):
    recorder, result = es_dfm_run
    assert [(e["kind"], e["train_at"]) for e in result.training_log] == [
        (PRETRAIN, t(2)), (MATURED_CLICKS, t(2)), (MATURED_CLICKS, t(3)), (STREAM, t(3)),
        (MATURED_CLICKS, t(4)), (STREAM, t(4))]
    assert all(e["latest_known_at"] < e["train_at"] for e in result.training_log)
    # Independently of the log: every stream batch the model received, per update.
    updates = _by_update(recorder, result, STREAM)
    previous = PROTOCOL.t0
    for train_at, rows in updates:
        assert np.all(rows[sf.AVAILABLE_AT] < train_at)
        assert np.all(rows[sf.AVAILABLE_AT] >= previous)   # each row in exactly one update
        previous = train_at
    # The rows of [d2, d3): c2's delayed positive, c10's first copy and its delayed positive.
    (_, day2), (_, day3) = updates
    assert sorted(day2[sf.AVAILABLE_AT].tolist()) == [t(2, 6), t(2, 6.25), t(2, 9)]
    assert sorted(day2["item_id"].tolist()) == [b"c10", b"c10", b"c2"]
    # [d3, d4): the first copies of c6 and c7; c6's conversion (d4 + 2h) is not yet trained.
    assert sorted(day3["item_id"].tolist()) == [b"c6", b"c7"]
    assert day3[sf.LABEL].tolist() == [0, 0]


def test_pretraining_uses_the_labels_observed_at_its_end(es_dfm_run):
    recorder, _ = es_dfm_run
    rows = {k: np.concatenate([b[k] for b in recorder.items(PRETRAIN)])
            for k in recorder.items(PRETRAIN)[0]}
    labels = dict(zip(rows["item_id"].tolist(), rows[sf.LABEL].tolist()))
    # c2 converts after t0: a negative for pre-training; c5's late pay never counts.
    assert labels == {b"c1": 1, b"c3": 0, b"c2": 0, b"c4": 1, b"c5": 0}


def test_delay_heads_train_on_clicks_as_their_window_closes(es_dfm_run):
    recorder, result = es_dfm_run
    matured = [(at, dict(zip(r["item_id"].tolist(), r[sf.LABEL].tolist())))
               for at, r in _by_update(recorder, result, MATURED_CLICKS)]
    assert matured == [(t(2), {b"c1": 1, b"c3": 0}),
                       (t(3), {b"c4": 1, b"c5": 0, b"c2": 1}),
                       (t(4), {b"c10": 1})]


def test_evaluation_uses_the_true_final_labels(es_dfm_run):
    _, result = es_dfm_run
    e = result.eval
    assert e["period"].tolist() == [1, 1, 2, 2]            # c6, c7 | c8, c9
    # c6 converts at d4 + 2h, after the model evaluated on d3 was trained: still a positive.
    assert e[sf.LABEL].tolist() == [1, 0, 1, 0]
    assert e[REFUND_LABEL].tolist() == [0, 0, 1, 0]
    assert e["net_label"].tolist() == [1, 0, 0, 0]
    assert e["cvr"].shape == e["pretrained_cvr"].shape == (4,)
    assert not np.allclose(e["cvr"], e["pretrained_cvr"])  # the stream updated the model


def test_refund_head_trains_on_conversions_as_their_refund_window_closes():
    recorder = Recorder("vanilla", net="cascade")
    result = streaming.run_protocol(recorder, PROTOCOL, _clicks(),
                                    {STREAM: _stream("vanilla")}, OBSERVE_AT)
    matured = [(at, sorted(r["item_id"].tolist()) if r else [])
               for at, r in _by_update(recorder, result, MATURED_CONVERSIONS)]
    assert matured == [(t(2), [b"c1"]), (t(3), [b"c4"]), (t(4), [b"c10", b"c2"])]
    assert set(result.eval) >= {"refund", "net", "pretrained_net"}


def test_an_early_observe_at_and_a_leaking_row_are_refused():
    with pytest.raises(ValueError, match=f"observe_at {t(5)} of the samples is too early"):
        streaming.run_protocol(Recorder("vanilla"), PROTOCOL, _clicks(),
                               {STREAM: _stream("vanilla")}, t(5))
    rows = {streaming.KNOWN_AT: np.array([t(2, 23), t(3)])}
    with pytest.raises(streaming.LeakError, match=f"1 row.* at or after the update time {t(3)}"):
        streaming._check_known_before(rows, t(3), STREAM)
    with pytest.raises(ValueError, match=r"needs stream rows for \['stream'\]"):
        streaming.run_protocol(Recorder("vanilla"), PROTOCOL, _clicks(), {}, OBSERVE_AT)


@pytest.mark.parametrize("kwargs,words", [
    ({"pretrain_days": 0}, "pretrain_days must be an integer >= 1, got 0"),
    ({"window_s": A}, f"window_s must be an integer in \\[0, attribution_s = {A}\\), got {A}"),
    ({"within_period": "random"}, "within_period must be 'shuffled' or 'time', got 'random'"),
])
def test_bad_protocol_settings_name_the_value(kwargs, words):
    settings = dict(start_ts=S, pretrain_days=2, eval_periods=2, window_s=W, attribution_s=A)
    with pytest.raises(ValueError, match=words):
        streaming.Protocol(**{**settings, **kwargs})


# ----------------------------------------------------------------------------------- reading
def test_read_rows_keeps_the_clicked_samples_in_file_order(tmp_path):
    schema = Schema((FeatureSpec("item_id", "string", (), "id"),
                     FeatureSpec("click_ts", "int64", (), "event_time")), observe_at=OBSERVE_AT)
    (tmp_path / "samples").mkdir()
    (tmp_path / "schema.json").write_text(json.dumps(
        {**schema.to_json(), "stream": {"method": "fnw", "window_s": 0, "attribution_s": A}}))
    with tf.io.TFRecordWriter(str(tmp_path / "samples" / "part-0.tfrecord")) as writer:
        for item, click in ((b"x", 5), (b"y", -1), (b"z", 7)):
            writer.write(tf.train.Example(features=tf.train.Features(feature={
                "item_id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[item])),
                "click_ts": tf.train.Feature(int64_list=tf.train.Int64List(value=[click])),
            })).SerializeToString())
    rows = streaming.read_rows(str(tmp_path), ["item_id"], clicked_only=True)
    assert rows["item_id"].tolist() == [b"x", b"z"] and rows["click_ts"].tolist() == [5, 7]
    assert streaming.stream_settings(str(tmp_path))["attribution_s"] == A


def test_ri_auc():
    assert streaming.ri_auc(0.70, 0.68, 0.72) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="equals the base AUC"):
        streaming.ri_auc(0.7, 0.7, 0.7)
