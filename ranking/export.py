"""SavedModel export that TensorFlow Serving loads: ``<base>/<model name>/<version>/``.

What TF Serving needs (``../shared/TFSERVING.md``) and how this module meets it:

* numeric version directories, picked up as soon as they appear: the version is written to a
  hidden, non-numeric temp directory beside it and renamed to its number when complete, so
  the server never sees a half-written version;
* the ``serve`` MetaGraph loads into a TF1 Session: only core ops (in-graph hashing is
  ``StringToHashBucketFast``), and the exported object tracks every variable the signature
  reads (the test loads it with ``tf.compat.v1.saved_model.loader.load``);
* signature ``serving_default``: one input ``inputs``, a 1-D string tensor of serialized
  ``tf.train.Example`` (the pipeline's samples; labels and unused features are ignored),
  and one named float32 ``[batch]`` output per model output (``ctr``, ``cvr``, ``ctcvr``);
* signature ``raw_features``: the raw request fields (``user_id``, ``item_id``,
  ``category_id``, ``country``, ``scene``, ``seq_item_ids [batch, L]``, ...), the same
  outputs; crosses and other derived features are computed in the graph
  (:mod:`ranking.features.raw`), so callers never re-implement hashing;
* ``assets.extra/tf_serving_warmup_requests``: a TFRecord of ``PredictionLog`` with a few
  real requests, so the first live request does not pay for graph warmup.
"""
from __future__ import annotations

import os
import shutil
import uuid
from typing import Optional, Sequence

import tensorflow as tf

from ranking.data.schema import Schema, parse_spec
from ranking.features.raw import derive_features, raw_input_signature

SIGNATURE = "serving_default"
RAW_SIGNATURE = "raw_features"
INPUT_KEY = "inputs"
WARMUP_FILE = "tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000  # TF Serving refuses more


def serving_function(model: tf.keras.Model, schema: Schema, feature_names: Sequence[str]):
    """``tf.function`` serialized tf.Examples ``[batch]`` -> ``{output: float32 [batch]}``."""
    spec = parse_spec(schema, feature_names)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=INPUT_KEY)])
    def serve(inputs):
        features = tf.io.parse_example(inputs, spec)
        return {name: tf.cast(value, tf.float32)
                for name, value in model(features, training=False).items()}

    return serve


def raw_serving_function(model: tf.keras.Model, schema: Schema, feature_names: Sequence[str]):
    """``tf.function`` raw request fields -> ``{output: float32 [batch]}``; the sequence x
    target crosses and the other derived features are computed in the graph
    (:mod:`ranking.features.raw`)."""
    specs = raw_input_signature(schema, feature_names)

    @tf.function(input_signature=[specs])
    def serve_raw(raw):
        features = derive_features(raw, schema, feature_names)
        return {name: tf.cast(value, tf.float32)
                for name, value in model(features, training=False).items()}

    return serve_raw


def next_version(model_base: str) -> int:
    """One more than the largest numeric version under ``model_base`` (1 when none)."""
    if not os.path.isdir(model_base):
        return 1
    versions = [int(d) for d in os.listdir(model_base) if d.isdigit()]
    return max(versions, default=0) + 1


def export_model(model: tf.keras.Model, schema: Schema, feature_names: Sequence[str],
                 model_base: str, *, version: Optional[int] = None, model_name: str = "",
                 warmup_examples: Sequence[bytes] = ()) -> str:
    """Writes ``<model_base>/<version>/`` atomically; returns its path.

    Args:
      model: a model whose call maps a feature dict to ``{output name: [batch]}``.
      schema: the samples' schema (the parse spec of ``feature_names``).
      feature_names: the features the model reads.
      model_base: ``<base path>/<model name>``, TF Serving's ``--model_base_path``.
      version: the version number; default :func:`next_version`.
      model_name: written into the warmup requests' model spec.
      warmup_examples: serialized tf.Examples for the warmup requests (one request each,
        at most 1000).
    """
    version = next_version(model_base) if version is None else int(version)
    final = os.path.join(model_base, str(version))
    if os.path.exists(final):
        raise FileExistsError(f"version {version} already exists: {final}")
    os.makedirs(model_base, exist_ok=True)
    tmp = os.path.join(model_base, f".tmp-{version}-{uuid.uuid4().hex[:8]}")
    try:
        serve = serving_function(model, schema, feature_names)
        serve_raw = raw_serving_function(model, schema, feature_names)
        signatures = {SIGNATURE: serve.get_concrete_function(),  # builds the model if needed
                      RAW_SIGNATURE: serve_raw.get_concrete_function()}
        exported = tf.Module()
        exported.variables_ = list(model.variables)  # what the TF1 loader restores
        exported.serve, exported.serve_raw = serve, serve_raw
        tf.saved_model.save(exported, tmp, signatures=signatures)
        if warmup_examples:
            write_warmup(os.path.join(tmp, "assets.extra", WARMUP_FILE), warmup_examples,
                         model_name or os.path.basename(model_base.rstrip("/")))
        os.rename(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def write_warmup(path: str, examples: Sequence[bytes], model_name: str) -> None:
    """``PredictionLog`` records, one single-example Predict request each."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    if len(examples) > MAX_WARMUP_RECORDS:
        raise ValueError(f"at most {MAX_WARMUP_RECORDS} warmup examples, got {len(examples)}")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for example in examples:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=SIGNATURE))
            request.inputs[INPUT_KEY].CopyFrom(tf.make_tensor_proto([example], tf.string))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
