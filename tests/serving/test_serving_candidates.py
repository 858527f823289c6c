"""Scoring a user's context and candidates over gRPC through the raw_features signature."""
import math
import os

import numpy as np
import pytest
import tensorflow as tf

from pipelines.samples.category_affinity import RELATED_DIR, load_related
from serving.candidates import Candidate, CandidateScorer, UserContext, with_related_counts
from serving.client import PredictClient
from serving.server import LocalServer
from serving_helpers import MODEL, in_process_scores


def _fields(example: bytes) -> dict:
    f = tf.train.Example.FromString(example).features.feature
    text = lambda name: [v.decode() for v in f[name].bytes_list.value]  # noqa: E731
    return {"user_id": text("user_id")[0], "item_id": text("item_id")[0],
            "category_id": text("category_id")[0], "country": text("country")[0],
            "scene": text("scene")[0], "device": text("device")[0],
            "price": f["price"].float_list.value[0],
            "items": [x for x in text("seq_item_ids") if x],
            "categories": [x for x in text("seq_category_ids") if x],
            "impressed": [x for x in text("seq_imp_category_ids") if x],
            "imp_count": f["imp_count"].int64_list.value[0],
            "click_count": f["click_count"].int64_list.value[0],
            "item_imp_count": f["item_imp_count"].int64_list.value[0],
            "item_click_count": f["item_click_count"].int64_list.value[0],
            "item_imp_per_million": f["item_imp_per_million"].float_list.value[0],
            "related_click_count": f["related_click_count"].int64_list.value[0],
            "related_imp_count": f["related_imp_count"].int64_list.value[0],
            "ts": f["ts"].int64_list.value[0]}


@pytest.fixture(scope="module")
def scorer(trained, tmp_path_factory):
    base = trained.base(tmp_path_factory.mktemp("candidates"), versions=(1,))
    with LocalServer(base, MODEL, poll_seconds=0) as running:
        with PredictClient(running.address, MODEL, signature="raw_features") as client:
            yield CandidateScorer(client), base


def test_context_scores_equal_the_pipeline_samples(scorer, trained, simulated_samples):
    """Each sample rebuilt as (context, one candidate) scores like its tf.Example; the
    related-category counts come from the pipeline's table of the sample's day."""
    candidate_scorer, base = scorer
    tables = load_related(os.path.join(simulated_samples, RELATED_DIR, "*.jsonl"))
    examples = [e for e in trained.examples if _fields(e)["items"]][:25]
    assert len(examples) == 25  # samples with a click history, so crosses are exercised
    assert any(_fields(e)["related_imp_count"] for e in examples)
    expected = in_process_scores(f"{base}/1", examples)
    for k, example in enumerate(examples):
        x = _fields(example)
        context = UserContext(x["user_id"], x["items"], x["categories"], x["country"],
                              x["scene"], x["device"], x["impressed"], x["imp_count"],
                              x["click_count"])
        [candidate] = with_related_counts(context, [Candidate(
            x["item_id"], x["category_id"], x["price"], x["item_imp_count"],
            x["item_click_count"], x["item_imp_per_million"])], tables.get(x["ts"] // 86400, {}))
        assert (candidate.related_click_count, candidate.related_imp_count) == (
            x["related_click_count"], x["related_imp_count"])
        got = candidate_scorer.score(context, [candidate])
        for name in ("ctr", "cvr", "ctcvr"):
            assert abs(float(got[name][0]) - float(expected[name][k])) <= 1e-6


def test_many_candidates_one_request_and_padding(scorer):
    candidate_scorer, _ = scorer
    context = UserContext("u0000001", ["i1", "i2"], ["c1", "c2"], "US", "home", "ios")
    inputs = candidate_scorer.inputs(context, [Candidate("i9", "c1", 3.0),
                                               Candidate("i8", "c2")])
    assert inputs["seq_item_ids"].shape == (2, 20)
    assert list(inputs["seq_item_ids"][1][:3]) == ["i1", "i2", ""]
    assert inputs["item_id"].tolist() == ["i9", "i8"] and math.isnan(inputs["price"][1])
    scores = candidate_scorer.score(context, [Candidate(f"i{k}", f"c{k % 5}") for k in
                                              range(200)])
    assert scores["ctr"].shape == (200,) and np.all((scores["ctr"] > 0) & (scores["ctr"] < 1))
    with pytest.raises(ValueError, match="same length"):
        UserContext("u", ["i1"], [])
    with pytest.raises(ValueError, match="candidates must not be empty"):
        candidate_scorer.score(context, [])
