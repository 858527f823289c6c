"""Delayed-feedback streams on a hand-made log: the exact samples of every method and target,
and the no-future properties (nothing available before the event that defines its label, no
event at or after observe_at used)."""
import csv
import glob
import json
import random

import apache_beam as beam
import pytest
import tensorflow as tf
from apache_beam.testing.util import assert_that, equal_to

from pipelines import cli
from pipelines.runner import make_pipeline
from pipelines.samples import example as example_lib
from pipelines.streams import METHODS, StreamConfig, impression_stream, repurchase_streams
from pipelines.streams.methods import DAY, HOUR
from pipelines.streams.transform import DelayedFeedbackStream
from ranking.data.input import list_files
from ranking.data.schema import load_schema

T0 = 1767225600  # 2026-01-01 UTC
W, A = HOUR, 2 * DAY  # waiting window 1 h, attribution window 2 days
T = 3 * DAY  # observe_at (relative to T0)
# name: (click, pay, refund), seconds after T0; None = never happened.
LOG = {
    "c1": (0, 600, None),                           # pays inside the window
    "c2": (1000, 19000, 105400),                    # pays 5 h later, refunded 1 day later
    "c3": (2000, None, None),                       # never pays
    "c4": (3000, 175900, None),                     # pays after the attribution window
    "c5": (216000, 217800, 218400),                 # pays and is refunded inside the window
    "c6": (250560, T + 100, None),                  # pays after observe_at: unknown
    "c7": (T - 600, None, None),                    # window still open at observe_at
    "u0": (None, None, None),                       # impression never clicked
}
# (available_at, label, elapsed, in_window, is_duplicate, delayed_positive, kind)
NEG, POS, DP = "negative", "positive", "delayed_positive"
PD, RN = "positive_duplicate", "real_negative"
EXPECTED_CONVERSION = {
    "vanilla": {
        "c1": [(3600, 1, 3600, 1, 0, 0, POS)],
        "c2": [(4600, 0, 3600, 0, 0, 0, NEG)],          # the 19000 pay is never seen
        "c3": [(5600, 0, 3600, 0, 0, 0, NEG)],
        "c4": [(6600, 0, 3600, 0, 0, 0, NEG)],
        "c5": [(219600, 1, 3600, 1, 0, 0, POS)],
        "c6": [(254160, 0, 3600, 0, 0, 0, NEG)],
    },
    "fnw": {
        "c1": [(0, 0, 0, 0, 0, 0, NEG), (600, 1, 600, 0, 1, 1, DP)],
        "c2": [(1000, 0, 0, 0, 0, 0, NEG), (19000, 1, 18000, 0, 1, 1, DP)],
        "c3": [(2000, 0, 0, 0, 0, 0, NEG)],
        "c4": [(3000, 0, 0, 0, 0, 0, NEG)],             # 175900 is outside attribution
        "c5": [(216000, 0, 0, 0, 0, 0, NEG), (217800, 1, 1800, 0, 1, 1, DP)],
        "c6": [(250560, 0, 0, 0, 0, 0, NEG)],           # its pay is after observe_at
        "c7": [(T - 600, 0, 0, 0, 0, 0, NEG)],
    },
    "es_dfm": {
        "c1": [(3600, 1, 3600, 1, 0, 0, POS)],
        "c2": [(4600, 0, 3600, 0, 0, 0, NEG), (19000, 1, 18000, 0, 1, 1, DP)],
        "c3": [(5600, 0, 3600, 0, 0, 0, NEG)],
        "c4": [(6600, 0, 3600, 0, 0, 0, NEG)],
        "c5": [(219600, 1, 3600, 1, 0, 0, POS)],
        "c6": [(254160, 0, 3600, 0, 0, 0, NEG)],
    },
    "defer": {
        "c1": [(3600, 1, 3600, 1, 0, 0, POS), (3600, 1, 3600, 1, 1, 0, PD)],
        "c2": [(4600, 0, 3600, 0, 0, 0, NEG), (19000, 1, 18000, 0, 1, 1, DP)],
        "c3": [(5600, 0, 3600, 0, 0, 0, NEG), (174800, 0, A, 0, 1, 0, RN)],
        "c4": [(6600, 0, 3600, 0, 0, 0, NEG), (175800, 0, A, 0, 1, 0, RN)],
        "c5": [(219600, 1, 3600, 1, 0, 0, POS), (219600, 1, 3600, 1, 1, 0, PD)],
        "c6": [(254160, 0, 3600, 0, 0, 0, NEG)],         # real negative due at 423360 > T
    },
    "oracle": {
        "c1": [(0, 1, 0, 0, 0, 0, POS)],
        "c2": [(1000, 1, 0, 0, 0, 0, POS)],
        "c3": [(2000, 0, 0, 0, 0, 0, NEG)],
        "c4": [(3000, 0, 0, 0, 0, 0, NEG)],
        "c5": [(216000, 1, 0, 0, 0, 0, POS)],
        "c6": [(250560, 0, 0, 0, 0, 0, NEG)],
        "c7": [(T - 600, 0, 0, 0, 0, 0, NEG)],
    },
}
# The same rules on (pay, refund): the refund stream of converted clicks.
EXPECTED_REFUND = {
    "es_dfm": {
        "c1": [(4200, 0, 3600, 0, 0, 0, NEG)],
        "c2": [(22600, 0, 3600, 0, 0, 0, NEG), (105400, 1, 86400, 0, 1, 1, DP)],
        "c5": [(221400, 1, 3600, 1, 0, 0, POS)],
    },
    "defer": {
        "c1": [(4200, 0, 3600, 0, 0, 0, NEG), (173400, 0, A, 0, 1, 0, RN)],
        "c2": [(22600, 0, 3600, 0, 0, 0, NEG), (105400, 1, 86400, 0, 1, 1, DP)],
        "c5": [(221400, 1, 3600, 1, 0, 0, POS), (221400, 1, 3600, 1, 1, 0, PD)],
    },
}
# Seed 004's three moments, plus delayed_refund last.
ND, DR = "negative_duplicate", "delayed_refund"
EXPECTED_NET_DEFER = {
    "c1": [(3600, 1, 3600, 1, 0, 0, POS, 0), (3600, 1, 3600, 1, 1, 0, PD, 0),
           (173400, 1, 173400, 1, 1, 0, PD, 0)],          # refund window closes at 600 + A
    "c2": [(4600, 0, 3600, 0, 0, 0, NEG, 0), (19000, 1, 18000, 0, 1, 1, DP, 0),
           (105400, 0, 104400, 0, 1, 0, DR, 1)],          # up at the pay, down at the refund
    "c3": [(5600, 0, 3600, 0, 0, 0, NEG, 0), (174800, 0, A, 0, 1, 0, RN, 0),
           (174800, 0, A, 0, 1, 0, RN, 0)],
    "c4": [(6600, 0, 3600, 0, 0, 0, NEG, 0), (175800, 0, A, 0, 1, 0, RN, 0),
           (175800, 0, A, 0, 1, 0, RN, 0)],
    "c5": [(219600, 0, 3600, 1, 0, 0, NEG, 0), (219600, 0, 3600, 1, 1, 0, ND, 0),
           (219600, 0, 3600, 1, 1, 0, ND, 0)],            # refunded inside the window
    "c6": [(254160, 0, 3600, 0, 0, 0, NEG, 0)],
}
DEFAULT_STREAM = {"defuse": "es_dfm", "bi_defuse": "es_dfm", "fnc": "fnw"}


def absolute(rows):
    return [(r[0] + T0,) + tuple(r[1:]) for r in rows]


def stream_of(config, log=LOG, observe_at=T, full=False):
    """name -> samples as tuples, times relative to T0; empty streams left out."""
    out = {}
    for name, events in log.items():
        abs_events = [None if t is None else T0 + t for t in events]
        samples = impression_stream(config, *abs_events, T0 + observe_at)
        rows = [(s.available_at - T0,) + tuple(s[1:7]) + ((s.delayed_refund,) if full else ())
                for s in samples]
        if rows:
            out[name] = rows
    return out


@pytest.mark.parametrize("method", sorted(METHODS))
def test_conversion_stream_of_each_method_equals_the_hand_written_list(method):
    config = StreamConfig(method, "conversion", 0 if method in ("fnw", "fnc", "oracle") else W, A)
    assert stream_of(config) == EXPECTED_CONVERSION[DEFAULT_STREAM.get(method, method)]


@pytest.mark.parametrize("method", sorted(EXPECTED_REFUND))
def test_refund_stream_starts_at_the_pay(method):
    assert stream_of(StreamConfig(method, "refund", W, A)) == EXPECTED_REFUND[method]


def test_net_conversion_stream_has_the_seeds_three_moments():
    assert stream_of(StreamConfig("defer", "net_conversion", W, A), full=True) == \
        EXPECTED_NET_DEFER
    vanilla = stream_of(StreamConfig("vanilla", "net_conversion", W, A), full=True)
    assert vanilla == {k: v[:1] for k, v in EXPECTED_NET_DEFER.items()}
    oracle = stream_of(StreamConfig("oracle", "net_conversion", 0, A))
    # Final net labels: c1 converted and kept, c2 and c5 refunded.
    assert {k: v[0][1] for k, v in oracle.items()} == {
        "c1": 1, "c2": 0, "c3": 0, "c4": 0, "c5": 0, "c6": 0, "c7": 0}


def random_log(seed, n=300):
    rng = random.Random(seed)
    log = {}
    for k in range(n):
        click = rng.randrange(0, 4 * DAY)
        pay = click + int(rng.expovariate(1 / (8 * HOUR))) if rng.random() < 0.5 else None
        refund = pay + rng.randrange(0, 3 * DAY) if pay is not None and rng.random() < 0.4 \
            else None
        log[f"r{k}"] = (click, pay, refund)
    return log


ALL_CONFIGS = (
    [StreamConfig(m, "conversion", None, A) for m in METHODS]
    + [StreamConfig(m, "refund", None, A) for m in METHODS]
    + [StreamConfig(m, "net_conversion", None, A) for m in ("vanilla", "defer", "oracle")])
HONEST_CONFIGS = [c for c in ALL_CONFIGS if c.method != "oracle"]


@pytest.mark.parametrize("config", ALL_CONFIGS, ids=lambda c: c.name)
def test_nothing_is_available_before_the_event_that_defines_its_label(config):
    """Every sample: origin <= available_at < observe_at; a positive no earlier than its
    event; a negative no earlier than the end of the wait it records (for the oracle, which
    uses the future by design, only the observe_at bound holds)."""
    log = {**LOG, **random_log(1)}
    checked = 0
    for name, samples in stream_of(config, log, observe_at=3 * DAY).items():
        click, pay, refund = log[name]
        origin = pay if config.target == "refund" else click
        for at, label, elapsed, in_window, dup, delayed, kind in samples:
            assert origin <= at < 3 * DAY and elapsed == at - origin
            if config.method == "oracle":
                continue
            if label == 1:
                assert at >= (refund if config.target == "refund" else pay)
            if in_window:  # the flag is itself a label: known once the window closes
                assert at >= origin + config.window_s
            if kind == RN:
                assert at == origin + A
            checked += 1
    assert checked >= 50 or config.method == "oracle"


@pytest.mark.parametrize("config", HONEST_CONFIGS, ids=lambda c: c.name)
def test_a_stream_cut_earlier_is_a_prefix_of_the_later_stream(config):
    """Observing at T1 < T2 gives exactly the samples of the T2 stream available before T1:
    no sample available before T1 depends on anything that happens after T1."""
    log = {**LOG, **random_log(2)}
    later = stream_of(config, log, observe_at=6 * DAY)
    for t1 in (HOUR, DAY // 2, DAY, 2 * DAY + 1234, 3 * DAY, 5 * DAY):
        earlier = stream_of(config, log, observe_at=t1)
        expected = {k: [s for s in v if s[0] < t1] for k, v in later.items()}
        assert earlier == {k: v for k, v in expected.items() if v}, t1


@pytest.mark.parametrize("config", ALL_CONFIGS, ids=lambda c: c.name)
def test_events_at_or_after_observe_at_change_nothing(config):
    log = {**LOG, **random_log(3)}
    rng = random.Random(4)
    moved = {}
    for name, events in log.items():
        moved[name] = tuple(t if t is None or t < T else rng.choice([None, T, T + 5 * DAY])
                            for t in events)
    assert sum(moved[k] != log[k] for k in log) > 5  # the check below can fail
    assert stream_of(config, moved) == stream_of(config, log)


def test_oracle_is_the_documented_exception():
    """The oracle labels a click at click time with its later conversion, so observing it
    earlier is *not* a prefix of observing it later (c2 converts at 19000)."""
    config = StreamConfig("oracle", "conversion", 0, A)
    assert METHODS["oracle"].uses_future and not any(
        m.uses_future for name, m in METHODS.items() if name != "oracle")
    assert stream_of(config, observe_at=10000)["c2"] == [(1000, 0, 0, 0, 0, 0, NEG)]
    assert stream_of(config, observe_at=20000)["c2"] == [(1000, 1, 0, 0, 0, 0, POS)]


@pytest.mark.parametrize("kwargs, words", [
    (dict(method="dfm"), "'dfm' is not one of"),
    (dict(method="fnw", window_s=60), "'fnw' has no waiting window; got window 60"),
    (dict(method="es_dfm", window_s=-5), "waiting window -5 s"),
    (dict(method="defer", window_s=3 * DAY, attribution_s=DAY), "shorter than the attribution"),
    (dict(method="defer", attribution_s=0), "attribution window 0 s"),
    (dict(method="es_dfm", target="gmv"), "target 'gmv'"),
    (dict(method="fnw", target="net_conversion"), "'fnw' has no net_conversion stream"),
])
def test_bad_stream_settings_name_the_value(kwargs, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(")):
        StreamConfig(**kwargs)


def test_defaults_come_from_the_papers():
    assert StreamConfig("es_dfm").window_s == 900 and StreamConfig("vanilla").window_s == 3600
    assert StreamConfig("fnw").window_s == 0 and StreamConfig("defer").attribution_s == 30 * DAY
    assert StreamConfig("defer", "refund").name == "stream_defer_refund"


# --- repurchase: the same user buys the same item again within W -----------------------

def test_repurchase_stream_uses_the_users_next_pay_of_the_item():
    """DEFER, window 1 h, W = 7 days, observe_at 50 days; one user's pays of one item."""
    pays = [0, 5 * DAY, 40 * DAY, None, 5 * DAY]  # the last: the same second as the second
    config = StreamConfig("defer", "repurchase", W, 7 * DAY)
    got = [[(s.available_at - T0,) + tuple(s[1:7]) for s in samples]
           for samples in repurchase_streams(config, [None if p is None else T0 + p
                                                      for p in pays], T0 + 50 * DAY)]
    again_in_5_days = [(3600, 0, 3600, 0, 0, 0, NEG), (5 * DAY, 1, 5 * DAY, 0, 1, 1, DP)]
    # The 40-day pay is 35 days later: outside W, so the 5-day pay is never repurchased.
    not_again = [(5 * DAY + 3600, 0, 3600, 0, 0, 0, NEG), (12 * DAY, 0, 7 * DAY, 0, 1, 0, RN)]
    last = [(40 * DAY + 3600, 0, 3600, 0, 0, 0, NEG), (47 * DAY, 0, 7 * DAY, 0, 1, 0, RN)]
    assert got == [again_in_5_days, not_again, last, [], not_again]


@pytest.mark.parametrize("method", ["es_dfm", "defer", "fnw"])
def test_repurchase_stream_cut_earlier_is_a_prefix(method):
    rng = random.Random(5)
    pays = [T0 + rng.randrange(0, 20 * DAY) if rng.random() < 0.8 else None for _ in range(60)]
    config = StreamConfig(method, "repurchase", None, 3 * DAY)
    later = repurchase_streams(config, pays, T0 + 30 * DAY)
    assert sum(s.label for samples in later for s in samples) > 5
    for t1 in (DAY, 4 * DAY, 9 * DAY + 77, 15 * DAY):
        earlier = repurchase_streams(config, pays, T0 + t1)
        assert earlier == [[s for s in samples if s.available_at < T0 + t1]
                           for samples in later], t1


# --- Beam -------------------------------------------------------------------------------

SPECS = [example_lib.FeatureSpec(n, "string") for n in ("impression_id", "item_id")] + [
    example_lib.FeatureSpec(n, "int64") for n in ("ts", "click_ts", "pay_ts", "refund_ts",
                                                   "observe_at")]


def serialized_samples(names):
    """Samples as the sample builder writes them: unknown events are -1."""
    out = []
    for name in names:
        click, pay, refund = (-1 if t is None or t >= T else T0 + t for t in LOG[name])
        out.append(example_lib.encode({
            "impression_id": name, "item_id": f"item-{name}",
            "ts": T0 + (LOG[name][0] or 0) - 5, "click_ts": click, "pay_ts": pay,
            "refund_ts": refund, "observe_at": T0 + T}, SPECS))
    return out


def test_beam_transform_copies_each_sample_with_its_stream_fields():
    names = ["c1", "c2", "c3", "c6", "u0"]
    expected = [(name, item, *row) for name in names
                for item in [f"item-{name}"]
                for row in absolute(EXPECTED_CONVERSION["defer"].get(name, []))]

    def key(serialized):
        d = example_lib.decode(serialized)
        return (d["impression_id"][0], d["item_id"][0], d["available_at"][0], d["label"][0],
                d["elapsed"][0], d["in_window"][0], d["is_duplicate"][0],
                d["delayed_positive"][0])

    pipeline = make_pipeline([])
    out = (pipeline | beam.Create(serialized_samples(names))
           | DelayedFeedbackStream(StreamConfig("defer", "conversion", W, A))
           | beam.Map(key))
    assert_that(out, equal_to([e[:8] for e in expected]))
    result = pipeline.run()
    result.wait_until_finish()
    counters = {c.key.metric.name: c.committed for c in result.metrics().query()["counters"]}
    # c1: positive + duplicate; c2: negative + delayed positive; c3: negative + real
    # negative; c6: negative; u0 was never clicked.
    assert counters["stream.samples"] == 7 and counters["stream.origins"] == 4
    assert {k: v for k, v in counters.items() if k.startswith("stream.kind.")} == {
        "stream.kind.positive": 1, "stream.kind.positive_duplicate": 1,
        "stream.kind.negative": 3, "stream.kind.delayed_positive": 1,
        "stream.kind.real_negative": 1}


def test_beam_transform_names_a_missing_field():
    bad = example_lib.encode({"impression_id": "x", "click_ts": T0},
                             [example_lib.FeatureSpec("impression_id", "string"),
                              example_lib.FeatureSpec("click_ts", "int64")])
    pipeline = make_pipeline([])
    _ = (pipeline | beam.Create([bad])
         | DelayedFeedbackStream(StreamConfig("fnw", "conversion", 0, A)))
    with pytest.raises(Exception, match="'pay_ts' is missing"):
        pipeline.run().wait_until_finish()


def test_beam_repurchase_groups_pays_by_user_and_item():
    specs = [example_lib.FeatureSpec(n, "string") for n in ("impression_id", "user_id",
                                                            "item_id")] + [
        example_lib.FeatureSpec(n, "int64") for n in ("click_ts", "pay_ts", "refund_ts",
                                                       "observe_at")]
    rows = [("a", "u1", "A", 0), ("b", "u1", "A", 2 * DAY), ("c", "u1", "B", DAY),
            ("d", "u2", "A", DAY + 100), ("e", "u2", "A", None)]
    serialized = [example_lib.encode({
        "impression_id": iid, "user_id": user, "item_id": item,
        "click_ts": T0 + (pay or 0) - 60, "pay_ts": -1 if pay is None else T0 + pay,
        "refund_ts": -1, "observe_at": T0 + T}, specs) for iid, user, item, pay in rows]

    def key(record):
        d = example_lib.decode(record)
        return (d["impression_id"][0], d["available_at"][0] - T0, d["label"][0],
                d["is_duplicate"][0])

    pipeline = make_pipeline([])
    out = (pipeline | beam.Create(serialized)
           | DelayedFeedbackStream(StreamConfig("es_dfm", "repurchase", W, 7 * DAY))
           | beam.Map(key))
    # u1 buys A again after 2 days; u2's purchase of A is not u1's repurchase.
    assert_that(out, equal_to([("a", 3600, 0, 0), ("a", 2 * DAY, 1, 1),
                               ("b", 2 * DAY + 3600, 0, 0), ("c", DAY + 3600, 0, 0),
                               ("d", DAY + 3700, 0, 0)]))
    pipeline.run().wait_until_finish()


# --- ranking-pipeline --stream ------------------------------------------------------------

HEADER = ["impression_id", "user_id", "item_id", "category_id", "country", "scene", "ts",
          "click_ts", "pay_ts", "refund_ts"]


def test_cli_writes_the_stream_directory_schema_and_summary(tmp_path):
    with open(tmp_path / "logs.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for name, events in LOG.items():
            ts = T0 + (events[0] if events[0] is not None else 100) - 5
            w.writerow([name, "u1", f"i-{name}", "c", "US", "home", ts] +
                       ["" if t is None else T0 + t for t in events])
    args, beam_args = cli.build_parser().parse_known_args([
        "--input", str(tmp_path / "logs.csv"), "--output", str(tmp_path / "out"),
        "--observe-at", str(T0 + T), "--stream", "es_dfm", "--stream-window", "1",
        "--stream-attribution", "2", "--num-shards", "1"])
    summary = cli.run(args, beam_args)
    stream_dir = tmp_path / "out" / "stream_es_dfm"
    got = {}
    for path in list_files(str(stream_dir)):
        for record in tf.data.TFRecordDataset(path):
            d = example_lib.decode(record.numpy())
            got.setdefault(d["impression_id"][0], []).append(
                tuple(d[n][0] for n in ("available_at", "label", "elapsed", "in_window",
                                        "is_duplicate", "delayed_positive")))
    expected = {k: [r[:6] for r in absolute(v)] for k, v in EXPECTED_CONVERSION["es_dfm"].items()}
    assert {k: sorted(v) for k, v in got.items()} == expected
    schema = load_schema(str(stream_dir))
    assert schema["available_at"].role == "time" and schema["label"].role == "label"
    assert "seq_item_ids" in schema and schema.observe_at == T0 + T
    raw = json.loads((stream_dir / "schema.json").read_text())
    assert raw["stream"] == {"method": "es_dfm", "target": "conversion", "window_s": 3600,
                             "attribution_s": A, "sorted_by_available_at": False}
    assert summary["stream"]["samples"] == 7 and summary["stream"]["origins"] == 6
    assert summary["stream"]["by_kind"] == {"delayed_positive": 1, "negative": 4,
                                            "positive": 2}
    assert summary["balanced"] and summary["samples_written"] == len(LOG)
    assert glob.glob(str(tmp_path / "out" / "samples" / "*.tfrecord"))


def test_cli_rejects_stream_options_without_a_method():
    args, _ = cli.build_parser().parse_known_args([
        "--input", "x", "--output", "y", "--observe-at", "0", "--stream-window", "2"])
    with pytest.raises(ValueError, match="--stream-window needs --stream METHOD"):
        cli.run(args, [])
