"""The category_purchase label: its window arithmetic, the carry-out, and training on it."""
import dataclasses
import json
import os

import pytest
import yaml

from pipelines.config import CategoryPurchaseConfig, SampleConfig, load_yaml
from pipelines.samples.category_purchase import (LABEL, category_purchase_labels, known_pay,
                                                 pays_by_bucket)
from pipelines.samples.example import sample_schema, schema_json
from pipelines.schema.raw_log import Impression
from ranking.config import experiment_from_mapping
from ranking.data.schema import Schema, SchemaError, check_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))


def test_labels_window_is_open_left_closed_right_and_per_category():
    """W = 100; pays a@1000, a@1100, b@1500 (given out of order). By hand:
    900 a: first a-pay after 900 is 1000 <= 900+100          -> 1 (right end counts)
    899 a: 1000 > 999                                          -> 0
    1100 a: no a-pay strictly after 1100 (a pay at ts is not after it) -> 0
    1099 a: 1100 <= 1199                                       -> 1
    1450 a: the only later pay is b                            -> 0
    1450 b: 1500 <= 1550                                       -> 1
    1450 c: no c-pay at all                                    -> 0
    """
    pays = [(1500, "b"), (1100, "a"), (1000, "a")]
    impressions = [(900, "a"), (899, "a"), (1100, "a"), (1099, "a"), (1450, "a"), (1450, "b"),
                   (1450, "c")]
    assert category_purchase_labels(impressions, pays, 100) == [1, 0, 0, 1, 0, 1, 0]
    assert category_purchase_labels(impressions, [], 100) == [0] * 7


def test_pays_by_bucket_sends_each_bucket_the_union_of_its_windows():
    """B = 10, W = 25: bucket b gets the pays in (10 b, 10 b + 9 + 25]. By hand:
    bucket 0: (0, 34]    -> 5, 10, 34
    bucket 3: (30, 64]   -> 34, 35
    bucket 7: (70, 104]  -> 100 (70 is not after the bucket's first second)
    bucket 12: (120, 154] -> none, so no element
    Bucket 5 has no impressions: nothing is sent to it although a pay (70) lies ahead of it.
    """
    pays = [(100, "b"), (35, "c"), (5, "a"), (70, "a"), (34, "a"), (10, "b")]
    got = list(pays_by_bucket([12, 7, 0, 3], pays, window_seconds=25, bucket_seconds=10))
    assert got == [(0, ((5, "a"), (10, "b"), (34, "a"))), (3, ((34, "a"), (35, "c"))),
                   (7, ((100, "b"),))]


def test_carry_out_then_labels_equal_the_definition_on_every_second():
    """Brute force over every ts of 8 buckets: labels from a bucket's carried-out pays equal
    the definition applied to all the user's pays."""
    pays = [(3, "a"), (17, "b"), (18, "a"), (40, "a"), (41, "b"), (79, "a")]
    window, size = 13, 10
    carried = dict(pays_by_bucket(range(8), pays, window, size))
    for ts in range(80):
        for category in ("a", "b"):
            want = int(any(c == category and ts < p <= ts + window for p, c in pays))
            got = category_purchase_labels([(ts, category)], carried.get(ts // size, ()),
                                           window)
            assert got == [want], (ts, category)


def _impression(pay_ts):
    return Impression("x", "u", "i", "c7", "US", "home", 1000, 1001 if pay_ts else None,
                      pay_ts, None)


@pytest.mark.parametrize("pay_ts, expected", [
    (1999, (1999, "c7")),  # known strictly before observe_at
    (2000, None),          # at observe_at: not yet known
    (2500, None),
    (None, None),
])
def test_known_pay_uses_nothing_at_or_after_observe_at(pay_ts, expected):
    assert known_pay(_impression(pay_ts), observe_at=2000) == expected


def _schema(enabled: bool, window_days: int = 7) -> Schema:
    """The schema of the shipped pipeline config with the label on or off."""
    config = load_yaml(SampleConfig, os.path.join(ROOT, "configs", "pipeline.yaml"))
    config = dataclasses.replace(config, category_purchase=CategoryPurchaseConfig(
        enabled, window_days))
    return Schema.from_json(json.loads(schema_json(sample_schema(config), config, 0)))


def test_schema_declares_the_label_with_its_window():
    labels = [f for f in _schema(True, window_days=3).by_role("label")]
    assert [f.name for f in labels] == ["click", "conversion", "refund", "net_conversion",
                                        LABEL]
    assert (labels[-1].dtype, labels[-1].shape) == ("int64", ())
    assert "ts < pay_ts <= ts + 3 days" in labels[-1].description
    assert "censored" in labels[-1].description
    assert LABEL not in _schema(False).names


def test_label_trains_as_an_extra_independent_task():
    with open(os.path.join(ROOT, "configs", "ple_esmm.yaml")) as f:
        data = yaml.safe_load(f)
    data["model"]["head"] = "independent"
    data["tasks"] = [{"name": "ctr", "label": "click"},
                     {"name": "cvr", "label": "conversion", "mask_label": "click"},
                     {"name": "category_purchase", "label": LABEL, "weight": 0.5}]
    experiment = experiment_from_mapping(data)
    assert experiment.label_names == ["click", "conversion", LABEL]
    check_config(_schema(True), experiment)
    with pytest.raises(SchemaError, match=r"tasks\[2\]\.label.*'category_purchase'"):
        check_config(_schema(False), experiment)
