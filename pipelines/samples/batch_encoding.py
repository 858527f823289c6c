"""A batch of samples' ``tf.train.Features``, serialized by TensorFlow in one graph call.

The sample builder's per-impression features (ids, counts, the exposure sequence and the
hashed crosses) differ in every sample, so they cannot be encoded once and reused like the
label or domain groups (:func:`pipelines.samples.example.make_group_encoder`). Encoding them
with the protobuf library costs about a microsecond per feature per sample in Python; here
``tf.io.encode_proto`` builds each level of the message for the whole batch at once::

    Features   = repeated FeatureEntry feature = 1            (a map<string, Feature>)
    FeatureEntry = string key = 1; Feature value = 2
    Feature    = oneof {BytesList bytes_list = 1; FloatList float_list = 2;
                        Int64List int64_list = 3}
    XxxList    = repeated xxx value = 1

The output is a serialized ``Features`` per sample; ``Features`` encodings concatenate, so it
joins the builder's other groups into one ``tf.train.Example``
(:func:`pipelines.samples.example.wrap_example`). Tested to parse exactly like the protobuf
library's encoding of the same values.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import tensorflow as tf

from pipelines.samples.example import FeatureSpec

# dtype -> (list message, its field in Feature, the tensor dtype its values must have)
_LISTS = {
    "string": ("tensorflow.BytesList", "bytes_list", tf.string),
    "int64": ("tensorflow.Int64List", "int64_list", tf.int64),
    "float": ("tensorflow.FloatList", "float_list", tf.float32),
}


def input_signature(specs: Sequence[FeatureSpec]) -> dict[str, tf.TensorSpec]:
    """The tensor each spec's column is given as: ``[batch]`` scalars, ``[batch, L]`` lists."""
    return {s.name: tf.TensorSpec([None, *s.shape], _LISTS[s.dtype][2], name=s.name)
            for s in specs}


def encode_features_batch(specs: Sequence[FeatureSpec],
                          columns: Mapping[str, tf.Tensor]) -> tf.Tensor:
    """Serialized ``tf.train.Features`` of ``specs``' features for every row.

    Args:
      specs: the features to encode (fixed shapes: scalars or 1-D lists).
      columns: name -> tensor ``[batch]`` for a scalar feature, ``[batch, L]`` for a list of
        length ``L`` (see :func:`input_signature`).

    Returns:
      string tensor ``[batch]``.
    """
    if not specs:
        raise ValueError("encode_features_batch needs at least one feature spec, got none")
    entries = tf.stack([_feature_entries(s, columns[s.name]) for s in specs], axis=1)
    rows = tf.shape(entries)[0]
    return tf.io.encode_proto(tf.fill([rows, 1], len(specs)), [entries], ["feature"],
                              "tensorflow.Features")


def _feature_entries(spec: FeatureSpec, values: tf.Tensor) -> tf.Tensor:
    """``[batch]`` serialized ``FeatureEntry`` (the map entry) of one feature."""
    if spec.dtype not in _LISTS:
        raise ValueError(f"feature {spec.name!r}: dtype must be one of {sorted(_LISTS)}, "
                         f"got {spec.dtype!r}")
    message, field, dtype = _LISTS[spec.dtype]
    length = spec.shape[0] if spec.shape else 1
    values = tf.reshape(tf.convert_to_tensor(values, dtype), [-1, length])
    rows = tf.shape(values)[0]
    one = tf.ones([rows, 1], tf.int32)
    lists = tf.io.encode_proto(tf.fill([rows, 1], length), [values], ["value"], message)
    features = tf.io.encode_proto(one, [lists[:, None]], [field], "tensorflow.Feature")
    return tf.io.encode_proto(tf.ones([rows, 2], tf.int32),
                              [tf.fill([rows, 1], spec.name), features[:, None]],
                              ["key", "value"], "tensorflow.Features.FeatureEntry")
