"""Tests for ranking.metrics.report on a tiny frame whose every number is worked out by hand."""
import json
import math

import numpy as np
import pytest

from ranking.metrics.report import TaskEval, evaluate, format_table, write_json

#            r0    r1    r2    r3    r4    r5    r6    r7
FRAME = {
    "click": np.array([1, 0, 1, 0, 1, 0, 0, 1]),
    "conversion": np.array([1, 0, 0, 0, 1, 0, 0, 0]),
    "pred_ctr": np.array([0.8, 0.4, 0.3, 0.5, 0.6, 0.2, 0.1, 0.9]),
    "pred_cvr": np.array([0.5, 0.1, 0.2, 0.1, 0.4, 0.1, 0.1, 0.3]),
    "p_click": np.array([0.9, 0.2, 0.6, 0.3, 0.7, 0.1, 0.4, 0.8]),
    "user_id": np.array([1, 1, 2, 2, 3, 3, 4, 4]),
    "domain": np.array(["A", "A", "A", "A", "B", "B", "B", "B"]),
}
TASKS = [
    TaskEval("ctr", label="click", prediction="pred_ctr", truth="p_click"),
    TaskEval("cvr", label="conversion", prediction="pred_cvr", mask="click"),
]
# CTR log loss: ln of the probability given to the observed label on each row.
CTR_LOG_LOSS = -sum(map(math.log, [0.8, 0.6, 0.3, 0.5, 0.6, 0.8, 0.9, 0.9])) / 8


@pytest.fixture(scope="module")
def report():
    return evaluate(FRAME, TASKS, slices=["domain"])


def test_report_structure(report):
    assert report["user_column"] == "user_id" and report["slices"] == ["domain"]
    assert list(report["tasks"]) == ["ctr", "cvr"]
    cvr = report["tasks"]["cvr"]
    assert (cvr["label"], cvr["prediction"], cvr["truth"], cvr["mask"]) == (
        "conversion", "pred_cvr", None, "click")
    assert list(cvr["slices"]) == ["domain"] and list(cvr["slices"]["domain"]) == ["A", "B"]
    assert list(cvr["overall"]) == [
        "count", "positives", "auc", "uauc", "uauc_users", "uauc_users_skipped", "pcoc",
        "log_loss", "oracle_auc", "auc_gap"]


def test_ctr_overall(report):
    overall = report["tasks"]["ctr"]["overall"]
    # Positives .8 .3 .6 .9 vs negatives .4 .5 .2 .1: .3 loses to .4 and .5 -> 14/16.
    # Truth: positives .9 .6 .7 .8 all above negatives .2 .3 .1 .4 -> oracle 1.
    # Per user (2 rows each): u1 .8>.4 -> 1, u2 .3<.5 -> 0, u3 1, u4 1 -> UAUC 6/8.
    # PCOC: 3.8 predicted clicks over 4 observed.
    assert overall == pytest.approx({
        "count": 8, "positives": 4, "auc": 0.875, "uauc": 0.75, "uauc_users": 4,
        "uauc_users_skipped": 0, "pcoc": 0.95, "log_loss": CTR_LOG_LOSS, "oracle_auc": 1.0,
        "auc_gap": 0.125}, abs=1e-12)


def test_ctr_by_domain(report):
    by_domain = report["tasks"]["ctr"]["slices"]["domain"]
    # A (r0-r3): positives .8 .3 vs negatives .4 .5 -> 2/4; PCOC 2.0 / 2.
    assert by_domain["A"] == pytest.approx({
        "count": 4, "positives": 2, "auc": 0.5, "uauc": 0.5, "uauc_users": 2,
        "uauc_users_skipped": 0, "pcoc": 1.0,
        "log_loss": -sum(map(math.log, [0.8, 0.6, 0.3, 0.5])) / 4, "oracle_auc": 1.0,
        "auc_gap": 0.5}, abs=1e-12)
    # B (r4-r7): positives .6 .9 above negatives .2 .1; PCOC 1.8 / 2.
    assert by_domain["B"]["auc"] == 1.0 and by_domain["B"]["auc_gap"] == 0.0
    assert by_domain["B"]["pcoc"] == pytest.approx(0.9, abs=1e-12)


def test_cvr_is_evaluated_on_clicked_rows_only(report):
    overall = report["tasks"]["cvr"]["overall"]
    # Clicked rows r0 r2 r4 r7: conversions 1 0 1 0, pred .5 .2 .4 .3 -> AUC 1, PCOC 1.4 / 2.
    # Each user has one clicked row, so all 4 are single-class and UAUC is undefined.
    assert overall == pytest.approx({
        "count": 4, "positives": 2, "auc": 1.0, "uauc": None, "uauc_users": 0,
        "uauc_users_skipped": 4, "pcoc": 0.7,
        "log_loss": -sum(map(math.log, [0.5, 0.8, 0.4, 0.7])) / 4, "oracle_auc": None,
        "auc_gap": None}, abs=1e-12)
    assert [v["count"] for v in report["tasks"]["cvr"]["slices"]["domain"].values()] == [2, 2]


def test_without_user_column_uauc_is_not_computed():
    report = evaluate(FRAME, TASKS[:1], slices=[], user_column=None)
    overall = report["tasks"]["ctr"]["overall"]
    assert (overall["uauc"], overall["uauc_users"], overall["uauc_users_skipped"]) == (
        None, None, None)
    assert report["tasks"]["ctr"]["slices"] == {}


def test_write_json_round_trips_as_strict_json(report, tmp_path):
    path = tmp_path / "nested" / "report.json"
    write_json(report, str(path))

    def reject(constant):
        raise AssertionError(f"non-strict JSON constant {constant}")

    assert json.loads(path.read_text(), parse_constant=reject) == report


def test_format_table(report):
    lines = format_table(report).splitlines()
    assert lines[0].split() == ["task", "slice", "count", "pos", "auc", "uauc", "users", "pcoc",
                                "logloss", "oracle_auc", "auc_gap"]
    assert [line.split()[:2] for line in lines[2:]] == [
        ["ctr", "overall"], ["ctr", "domain=A"], ["ctr", "domain=B"],
        ["cvr", "overall"], ["cvr", "domain=A"], ["cvr", "domain=B"]]
    assert lines[5].split() == ["cvr", "overall", "4", "2", "1.0000", "-", "0", "0.7000",
                                f"{-sum(map(math.log, [0.5, 0.8, 0.4, 0.7])) / 4:.4f}", "-", "-"]
    assert lines[2].split()[4] == "0.8750"
    # Fixed width: numbers are right-aligned, so every line ends in the same column.
    assert len({len(line) for line in lines}) == 1


def test_errors_name_the_column():
    with pytest.raises(ValueError, match=r"frame has no column 'pred_x'"):
        evaluate(FRAME, [TaskEval("ctr", "click", "pred_x")])
    bad = {**FRAME, "click": np.array([1, 0, 2, 0, 1, 0, 0, 1])}
    with pytest.raises(ValueError, match=r"frame\['click'\] must contain only 0 and 1; found 2"):
        evaluate(bad, TASKS)
    short = {**FRAME, "domain": FRAME["domain"][:3]}
    with pytest.raises(ValueError, match=r"frame\['domain'\] has length 3 but frame\['click'\]"):
        evaluate(short, TASKS, slices=["domain"])
    with pytest.raises(ValueError, match=r"duplicate names: \['ctr'\]"):
        evaluate(FRAME, [TASKS[0], TASKS[0]])
