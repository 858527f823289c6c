"""Score N candidate items for one user's context, from code, over gRPC.

The request goes to the exported ``raw_features`` signature: the caller sends what a serving
system knows at request time (the user's recent clicks and impressed categories, most recent
first, impression and click counts, country, scene, device, and each candidate's id,
category, price, recent impression and click counts, impressions per million and
related-category counts) and the model computes every derived feature, the sequence x target
hashed crosses included, in its own graph. So no caller ever re-implements the hashing, and
scores equal those of the pipeline's samples (parity test).

    with PredictClient("localhost:8500", "ple_esmm", signature="raw_features") as client:
        scorer = CandidateScorer(client)
        scores = scorer.score(UserContext(user_id="u1", clicked_items=["i9", "i4"],
                                          clicked_categories=["c2", "c2"], country="US",
                                          scene="home"),
                              [Candidate("i7", "c2", price=12.5), Candidate("i8", "c3")])
        scores["ctr"]  # np.ndarray [2]

Only the inputs the signature declares are sent (read once with GetModelMetadata), so the
same code serves models that use fewer features.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2, prediction_service_pb2_grpc

from pipelines.config import CategoryAffinityConfig
from serving.client import PredictClient

RAW_SIGNATURE = "raw_features"


@dataclasses.dataclass(frozen=True)
class UserContext:
    """What is known about the user at request time."""

    user_id: str
    clicked_items: Sequence[str] = ()       # most recent first
    clicked_categories: Sequence[str] = ()  # the clicked items' categories, same order
    country: str = ""
    scene: str = ""
    device: str = ""
    impressed_categories: Sequence[str] = ()  # categories of recent impressions, most recent first
    impression_count: int = 0                 # the user's impressions so far
    click_count: int = 0                      # the user's clicks so far

    def __post_init__(self):
        if len(self.clicked_items) != len(self.clicked_categories):
            raise ValueError(f"clicked_items ({len(self.clicked_items)}) and "
                             f"clicked_categories ({len(self.clicked_categories)}) must have "
                             "the same length")


@dataclasses.dataclass(frozen=True)
class Candidate:
    item_id: str
    category_id: str
    price: float = math.nan
    impression_count: int = 0  # the item's impressions over the pipeline's item-stats window
    click_count: int = 0       # the item's clicks over that window
    # pipelines.samples.item_stats.impressions_per_million(impression_count, all items'
    # impressions over the window): the item's smoothed share of them; NaN: unknown.
    impressions_per_million: float = math.nan
    # Of the user's recent clicks / impressions, those on other categories whose related set
    # (the day's co-exposure table) holds this candidate's category: with_related_counts.
    related_click_count: int = 0
    related_imp_count: int = 0


def with_related_counts(context: UserContext, candidates: Sequence[Candidate],
                        related: Mapping[str, frozenset],
                        recent_clicks: int = CategoryAffinityConfig().recent_clicks
                        ) -> list[Candidate]:
    """The candidates with ``related_click_count`` / ``related_imp_count`` set as the
    pipeline sets them (:func:`pipelines.samples.category_affinity.related_count`).

    Args:
      context: the user's recent clicks and impressions, most recent first, as many as the
        pipeline's sequences hold (``sequence.length`` / ``impression_length``).
      candidates: the candidates to score.
      related: the day's related sets,
        ``category_affinity.load_related("<pipeline output>/related_categories/*")[day]``.
      recent_clicks: the pipeline's ``category_affinity.recent_clicks``.
    """
    # The pipeline's own function; imported here, as it brings Beam along.
    from pipelines.samples.category_affinity import related_count

    clicked = list(context.clicked_categories)[:recent_clicks]
    impressed = list(context.impressed_categories)
    return [dataclasses.replace(
        c, related_click_count=related_count(clicked, c.category_id, related),
        related_imp_count=related_count(impressed, c.category_id, related))
        for c in candidates]


class CandidateScorer:
    """Builds ``raw_features`` Predict requests for one context and N candidates."""

    def __init__(self, client: PredictClient):
        if client.signature != RAW_SIGNATURE:
            raise ValueError(f"the client must use signature {RAW_SIGNATURE!r}, "
                             f"got {client.signature!r}")
        self.client = client
        self._inputs: Optional[dict] = None  # name -> (dtype, sequence length or None)

    def signature_inputs(self) -> dict:
        """``{input name: (tf.DType, length or None)}`` of the served signature."""
        if self._inputs is None:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(self.client._channel)
            request = get_model_metadata_pb2.GetModelMetadataRequest(
                metadata_field=["signature_def"])
            request.model_spec.name = self.client.model
            response = stub.GetModelMetadata(request, timeout=self.client.deadline_seconds)
            defs = get_model_metadata_pb2.SignatureDefMap()
            response.metadata["signature_def"].Unpack(defs)
            inputs = defs.signature_def[RAW_SIGNATURE].inputs
            self._inputs = {
                name: (tf.dtypes.as_dtype(info.dtype),
                       info.tensor_shape.dim[1].size if len(info.tensor_shape.dim) > 1
                       else None)
                for name, info in inputs.items()}
        return self._inputs

    def inputs(self, context: UserContext, candidates: Sequence[Candidate]) -> dict:
        """The request's input arrays, one row per candidate (the context repeated)."""
        if not candidates:
            raise ValueError("candidates must not be empty")
        n = len(candidates)
        fields = {
            "user_id": [context.user_id] * n, "country": [context.country] * n,
            "scene": [context.scene] * n, "device": [context.device] * n,
            "item_id": [c.item_id for c in candidates],
            "category_id": [c.category_id for c in candidates],
            "price": [c.price for c in candidates],
            "imp_count": [context.impression_count] * n,
            "click_count": [context.click_count] * n,
            "item_imp_count": [c.impression_count for c in candidates],
            "item_click_count": [c.click_count for c in candidates],
            "item_imp_per_million": [c.impressions_per_million for c in candidates],
            "related_click_count": [c.related_click_count for c in candidates],
            "related_imp_count": [c.related_imp_count for c in candidates],
        }
        sequences = {"seq_item_ids": context.clicked_items,
                     "seq_category_ids": context.clicked_categories,
                     "seq_imp_category_ids": context.impressed_categories}
        arrays = {}
        for name, (dtype, length) in self.signature_inputs().items():
            if name in sequences:
                padded = list(sequences[name][:length]) + [""] * max(
                    0, length - len(sequences[name]))
                arrays[name] = np.array([padded] * n, dtype=object)
            elif name in fields:
                arrays[name] = np.array(fields[name], dtype=dtype.as_numpy_dtype
                                        if dtype != tf.string else object)
            else:
                raise ValueError(f"the model's {RAW_SIGNATURE} signature needs input {name!r}, "
                                 "which UserContext / Candidate do not carry")
        return arrays

    def score(self, context: UserContext, candidates: Sequence[Candidate]) -> dict:
        """``{output name: np.ndarray [len(candidates)]}``."""
        protos = {}
        for name, array in self.inputs(context, candidates).items():
            dtype = tf.string if array.dtype == object else tf.as_dtype(array.dtype)
            protos[name] = tf.make_tensor_proto(array, dtype)
        response = self.client.call(self.client.inputs_request(protos))
        return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}
