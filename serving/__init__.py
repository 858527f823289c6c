"""Scoring over gRPC against TensorFlow Serving and a local server with the same API.

* :mod:`serving.server` -- ``ranking-serve``: a local gRPC server with TF Serving's
  PredictionService / ModelService API (development and tests); ``LocalServer`` in-process.
* :mod:`serving.model_manager` -- version discovery, polling, load-before-unload.
* :mod:`serving.servable` -- one loaded version and its Predict / Classify / Regress /
  metadata handlers with TF Serving's checks and messages; warmup replay.
* :mod:`serving.status`, :mod:`serving.tensors` -- status codes and messages,
  TensorProto conversion.
* :mod:`serving.client` -- ``ranking-score`` and ``PredictClient`` (standard Predict requests,
  so they work unchanged against ``tensorflow_model_server``).
* :mod:`serving.benchmark` -- Predict latency over gRPC vs the in-process signature call.
"""
import os

# TFRS 0.7.7 needs Keras 2; the pipelines share the model's hashing ops, so the switch must be
# set before TensorFlow is first imported anywhere in the process.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
