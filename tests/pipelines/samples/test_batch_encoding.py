"""Batch tf.train.Features encoding with TensorFlow equals the protobuf library's encoding."""
import math

import pytest
import tensorflow as tf
from tensorflow.core.example import feature_pb2

from pipelines.samples import batch_encoding as B
from pipelines.samples import example as E

SPECS = [E.FeatureSpec("name", "string"), E.FeatureSpec("ids", "string", (3,)),
         E.FeatureSpec("count", "int64"), E.FeatureSpec("crosses", "int64", (2,)),
         E.FeatureSpec("price", "float"), E.FeatureSpec("scores", "float", (2,))]
ROWS = [
    {"name": "imp-1", "ids": ["a", "", "ü€"], "count": 0, "crosses": [-1, 2 ** 62],
     "price": 9.99, "scores": [0.5, -1.25]},
    {"name": "", "ids": ["x", "y", "z"], "count": -(2 ** 63), "crosses": [99_999, 0],
     "price": float("nan"), "scores": [1e30, 0.0]},
]


def _columns(rows):
    signature = B.input_signature(SPECS)
    return {s.name: tf.constant([r[s.name] for r in rows], signature[s.name].dtype)
            for s in SPECS}


def test_batch_encoding_parses_like_the_protobuf_library():
    encoded = B.encode_features_batch(SPECS, _columns(ROWS)).numpy().tolist()
    reference = E.make_features_encoder(SPECS)
    assert len(encoded) == 2
    for row, got in zip(ROWS, encoded):
        ours = feature_pb2.Features.FromString(got)
        theirs = feature_pb2.Features.FromString(reference(row))
        nan_free = [n for n in theirs.feature if n != "price" or not math.isnan(row["price"])]
        for name in nan_free:
            assert ours.feature[name] == theirs.feature[name], name
        assert set(ours.feature) == set(theirs.feature)
    second = feature_pb2.Features.FromString(encoded[1])
    assert math.isnan(second.feature["price"].float_list.value[0])
    assert list(second.feature["crosses"].int64_list.value) == [99_999, 0]
    assert second.feature["count"].int64_list.value[0] == -(2 ** 63)
    first = feature_pb2.Features.FromString(encoded[0])
    assert [v.decode() for v in first.feature["ids"].bytes_list.value] == ["a", "", "ü€"]


def test_batch_encoding_concatenates_with_other_groups_into_one_example():
    encoded = B.encode_features_batch(SPECS[:2], _columns(ROWS)).numpy()[0]
    rest = E.make_features_encoder(SPECS[2:])(ROWS[0])
    decoded = E.decode(E.wrap_example(encoded + rest))
    assert decoded["name"] == ["imp-1"] and decoded["crosses"] == [-1, 2 ** 62]
    assert decoded["count"] == [0] and decoded["scores"] == [0.5, -1.25]


def test_batch_encoding_rejects_bad_specs():
    with pytest.raises(ValueError, match="at least one"):
        B.encode_features_batch([], {})
    with pytest.raises(ValueError, match="'weird'.*'bool'"):
        B.encode_features_batch([E.FeatureSpec("weird", "bool")], {"weird": tf.constant([1])})
