"""One loaded model version and the request handlers that run on it.

A :class:`Servable` is what TF Serving calls a servable: ``<base>/<name>/<version>/`` loaded
with ``tf.saved_model.load`` (tag ``serve``), its ``SignatureDef`` protos read from
``saved_model.pb`` (what GetModelMetadata returns and what requests are checked against),
and one :class:`Signature` per signature with its concrete function resolved once at load,
so a request only validates its protos and calls the function.

The handlers follow TF Serving's ``predict_util.cc``, ``classifier.cc``, ``regressor.cc``
and ``util.cc`` (checks in the same order, same codes and messages); the signature
method-name check is off, as in ``tensorflow_model_server`` by default, so Classify and
Regress accept any signature shaped like a classification / regression signature.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time

import grpc
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, input_pb2,
                                     predict_pb2, prediction_log_pb2, regression_pb2)

from serving import status
from serving.status import ServingError, dtype_string, invalid_argument, set_string
from serving.tensors import fill_proto, to_tensor

log = logging.getLogger(__name__)

DEFAULT_SIGNATURE = "serving_default"
SERVE_TAG = "serve"
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
CLASSIFY_INPUTS = "inputs"
CLASSIFY_CLASSES = "classes"
CLASSIFY_SCORES = "scores"
REGRESS_INPUTS = "inputs"
REGRESS_OUTPUTS = "outputs"
WARMUP_DIR = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000


@dataclasses.dataclass(frozen=True)
class InputSpec:
    alias: str
    feed_name: str  # the graph tensor, e.g. ``serving_default_inputs:0``
    dtype: tf.DType
    shape: tf.TensorShape
    arg_index: int  # position among the feeds (TF orders a signature's args by feed name)


@dataclasses.dataclass(frozen=True)
class Signature:
    """A signature resolved once at load: its proto, its function and its input specs."""

    name: str
    signature_def: meta_graph_pb2.SignatureDef
    function: object  # the loaded ConcreteFunction, called with the input aliases as kwargs
    inputs: dict  # alias -> InputSpec
    output_aliases: frozenset
    input_set: str  # "{a,b}" text for messages
    output_set: str


class Servable:
    """A loaded version of a model (thread-safe: handlers keep no state)."""

    def __init__(self, name: str, version: int, path: str, loaded,
                 signature_defs: dict):
        self.name = name
        self.version = version
        self.path = path
        self._loaded = loaded  # keeps the variables and functions alive
        self.signature_defs = signature_defs  # name -> SignatureDef, all of the MetaGraph's
        self.signatures: dict[str, Signature] = {}
        functions = loaded.signatures
        for key, sig_def in signature_defs.items():
            ordered = sorted(sig_def.inputs.items(), key=lambda kv: kv[1].name)
            inputs = {
                alias: InputSpec(alias, info.name, tf.as_dtype(info.dtype),
                                 tf.TensorShape(info.tensor_shape), index)
                for index, (alias, info) in enumerate(ordered)}
            self.signatures[key] = Signature(
                # __saved_model_init_op has no callable function: it runs as nothing.
                key, sig_def, functions.get(key), inputs, frozenset(sig_def.outputs),
                set_string(sig_def.inputs), set_string(sig_def.outputs))

    # ------------------------------------------------------------------ Predict
    def predict(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        spec = request.model_spec
        signature_name = spec.signature_name or DEFAULT_SIGNATURE
        signature = self.signatures.get(signature_name)
        if signature is None:
            raise status.failed_precondition(
                f'Serving signature key "{signature_name}" not found.')
        inputs = signature.inputs
        request_inputs = request.inputs
        if len(request_inputs) != len(inputs):
            sent = set(request_inputs)
            raise invalid_argument(
                f"input size does not match signature: {len(request_inputs)}!={len(inputs)} "
                f"len({{{set_string(sent)}}}) != len({{{signature.input_set}}}). "
                f"Sent extra: {{{set_string(sent - set(inputs))}}}. "
                f"Missing but required: {{{set_string(set(inputs) - sent)}}}.")
        feeds = {}
        for alias, spec_in in inputs.items():
            if alias not in request_inputs:
                raise invalid_argument(
                    f"Signature input alias: {alias}(feed name: {spec_in.feed_name}) not found "
                    f"in request and no default value provided. Inputs expected to be in the "
                    f"request {{{set_string(request_inputs)}}}, or default input alias set: ")
            feeds[alias] = to_tensor(request_inputs[alias], alias)
        output_filter = request.output_filter
        if output_filter:
            seen = set()
            for alias in output_filter:
                if alias not in signature.output_aliases:
                    raise invalid_argument(
                        f"output tensor alias not found in signature: {alias} Outputs expected "
                        f"to be in the set {{{signature.output_set}}}.")
                if alias in seen:
                    raise invalid_argument(f"duplicate output tensor alias: {alias}")
                seen.add(alias)
        outputs = _run(signature, feeds)
        response = predict_pb2.PredictResponse()
        _fill_model_spec(response.model_spec, spec.name, signature_name, self.version)
        response_outputs = response.outputs
        for alias in (output_filter or outputs):
            fill_proto(response_outputs[alias], outputs[alias])
        return response

    # ------------------------------------------------------------------ Classify / Regress
    def classify(self, request: classification_pb2.ClassificationRequest
                 ) -> classification_pb2.ClassificationResponse:
        signature = self._signature_for(request.model_spec, _check_classification)
        response = classification_pb2.ClassificationResponse()
        _fill_model_spec(response.model_spec, request.model_spec.name, signature.name,
                         self.version)
        examples = _serialized_examples(request.input)
        outputs = _run(signature, {CLASSIFY_INPUTS: examples})
        _classification_result(outputs, len(examples), response.result)
        return response

    def regress(self, request: regression_pb2.RegressionRequest
                ) -> regression_pb2.RegressionResponse:
        signature = self._signature_for(request.model_spec, _check_regression)
        response = regression_pb2.RegressionResponse()
        _fill_model_spec(response.model_spec, request.model_spec.name, signature.name,
                         self.version)
        examples = _serialized_examples(request.input)
        outputs = _run(signature, {REGRESS_INPUTS: examples})
        _regression_result(outputs, len(examples), response.result)
        return response

    def _signature_for(self, model_spec, check) -> Signature:
        name = model_spec.signature_name or DEFAULT_SIGNATURE
        sig_def = self.signature_defs.get(name)
        if sig_def is None:
            raise invalid_argument(f"No signature was found with the name: {name}")
        check(sig_def)
        return self.signatures[name]

    # ------------------------------------------------------------------ Metadata, warmup
    def signature_def_map(self) -> get_model_metadata_pb2.SignatureDefMap:
        out = get_model_metadata_pb2.SignatureDefMap()
        for key, sig_def in self.signature_defs.items():
            out.signature_def[key].CopyFrom(sig_def)
        return out

    def run_warmup(self) -> int:
        """Replays ``assets.extra/tf_serving_warmup_requests``; any error fails the load.
        Returns the number of records (0 when there is no warmup file)."""
        path = os.path.join(self.path, WARMUP_DIR, WARMUP_FILE)
        if not tf.io.gfile.exists(path):
            log.info("No warmup data file found at %s", path)
            return 0
        start = time.monotonic()
        count = 0
        try:
            for record in tf.data.TFRecordDataset(path):
                count += 1
                if count > MAX_WARMUP_RECORDS:
                    raise invalid_argument(
                        f"Number of warmup records exceeds the maximum "
                        f"({MAX_WARMUP_RECORDS}) at {path}")
                try:
                    entry = prediction_log_pb2.PredictionLog.FromString(record.numpy())
                except Exception:  # noqa: BLE001 - DecodeError
                    raise invalid_argument(f"Failed to parse warmup record from {path}") from None
                self._warmup_one(entry)
        except tf.errors.DataLossError as error:
            raise ServingError(grpc.StatusCode.DATA_LOSS,
                               f"{error.message}. Please verify your warmup data is in "
                               f"TFRecord format.") from None
        except tf.errors.OpError as error:
            raise status.from_tf_error(error) from None
        log.info("Finished reading warmup data for model at %s. Number of warmup records "
                 "read: %d. Elapsed time (microseconds): %d.", path, count,
                 (time.monotonic() - start) * 1e6)
        return count

    def _warmup_one(self, entry: prediction_log_pb2.PredictionLog) -> None:
        kind = entry.WhichOneof("log_type")
        if kind == "predict_log":
            self.predict(entry.predict_log.request)
        elif kind == "classify_log":
            self.classify(entry.classify_log.request)
        elif kind == "regress_log":
            self.regress(entry.regress_log.request)
        elif kind == "multi_inference_log":
            request = entry.multi_inference_log.request
            for task in request.tasks:
                if task.method_name == REGRESS_METHOD:
                    self.regress(regression_pb2.RegressionRequest(
                        model_spec=task.model_spec, input=request.input))
                else:
                    self.classify(classification_pb2.ClassificationRequest(
                        model_spec=task.model_spec, input=request.input))
        else:
            raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                               f"Unsupported log_type for warmup: {kind}")


def _fill_model_spec(model_spec, name: str, signature_name: str, version: int) -> None:
    model_spec.name = name
    model_spec.signature_name = signature_name
    model_spec.version.value = version


def _run(signature: Signature, feeds: dict) -> dict:
    """Calls the signature's function; dtype and shape mismatches answer like a TF1
    Session would (INVALID_ARGUMENT), runtime errors keep TensorFlow's code."""
    for alias, tensor in feeds.items():
        spec = signature.inputs[alias]
        if tensor.dtype != spec.dtype:
            raise invalid_argument(
                f"Expects arg[{spec.arg_index}] to be {dtype_string(spec.dtype)} but "
                f"{dtype_string(tensor.dtype)} is provided")
        if not spec.shape.is_compatible_with(tensor.shape):
            raise invalid_argument(
                f"input tensor alias {alias}: shape {tensor.shape.as_list()} is not "
                f"compatible with the signature's shape {_shape_text(spec.shape)}")
    if signature.function is None:
        return {}
    try:
        return signature.function(**feeds)
    except tf.errors.OpError as error:
        raise status.from_tf_error(error) from None
    except UnicodeDecodeError as error:
        # TensorFlow could not decode the status message of a failed op to str (it quotes
        # raw input bytes, e.g. "Could not parse example input, value: '\\xff...'"), so the
        # code is lost; such op errors are errors in the request's data.
        raise invalid_argument(status.clean_tf_message(
            error.object.decode("utf-8", "replace"))) from None


def _shape_text(shape: tf.TensorShape) -> str:
    if shape.rank is None:
        return "<unknown>"
    return "[" + ",".join("?" if d is None else str(d) for d in shape.as_list()) + "]"


# ---------------------------------------------------------------------- Input / outputs
def _serialized_examples(request_input: input_pb2.Input) -> tf.Tensor:
    kind = request_input.WhichOneof("kind")
    if kind == "example_list":
        serialized = [e.SerializeToString() for e in request_input.example_list.examples]
    elif kind == "example_list_with_context":
        with_context = request_input.example_list_with_context
        context = with_context.context.SerializeToString()
        # Concatenated serializations parse as the merge, as in TF Serving.
        serialized = [context + e.SerializeToString() for e in with_context.examples]
    else:
        serialized = []
    if not serialized:
        raise invalid_argument("Input is empty.")
    return tf.constant(serialized, dtype=tf.string)


def _check_classification(sig_def: meta_graph_pb2.SignatureDef) -> None:
    if len(sig_def.inputs) != 1:
        raise invalid_argument("Expected one input Tensor.")
    if len(sig_def.outputs) not in (1, 2):
        raise invalid_argument(
            f"Expected one or two output Tensors, found {len(sig_def.outputs)}")
    if CLASSIFY_INPUTS not in sig_def.inputs:
        raise invalid_argument(
            f"No classification inputs found in SignatureDef: {_debug_string(sig_def)}")
    if CLASSIFY_CLASSES not in sig_def.outputs and CLASSIFY_SCORES not in sig_def.outputs:
        raise invalid_argument(
            f'Expected classification signature outputs to contain at least one of '
            f'"{CLASSIFY_CLASSES}" or "{CLASSIFY_SCORES}". Signature was: '
            f'{_debug_string(sig_def)}')


def _check_regression(sig_def: meta_graph_pb2.SignatureDef) -> None:
    if len(sig_def.inputs) != 1:
        raise invalid_argument("Expected one input Tensor.")
    if len(sig_def.outputs) != 1:
        raise invalid_argument("Expected one output Tensor.")
    if REGRESS_INPUTS not in sig_def.inputs:
        raise invalid_argument(
            f"No regression inputs found in SignatureDef: {_debug_string(sig_def)}")
    if REGRESS_OUTPUTS not in sig_def.outputs:
        raise invalid_argument(
            f"No regression outputs found in SignatureDef: {_debug_string(sig_def)}")


def _debug_string(message) -> str:
    return text_format.MessageToString(message)


def _classification_result(outputs: dict, num_examples: int, result) -> None:
    classes = outputs.get(CLASSIFY_CLASSES)
    scores = outputs.get(CLASSIFY_SCORES)
    for tensor, what, dtype in ((classes, "classes", tf.string), (scores, "scores", tf.float32)):
        if tensor is None:
            continue
        if tensor.shape.rank != 2:
            raise invalid_argument(f"Expected Tensor shape: [batch_size num_classes] but got "
                                   f"{_shape_text(tensor.shape)}")
        if tensor.dtype != dtype:
            type_name = "DT_STRING" if dtype == tf.string else "DT_FLOAT"
            raise invalid_argument(f"Expected {what} Tensor of {type_name}. Got: "
                                   f"DT_{tensor.dtype.name.upper()}")
        if tensor.shape[0] != num_examples:
            raise invalid_argument(f"Expected {what} output batch size of {num_examples}. "
                                   f"Got: {tensor.shape[0]}")
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise invalid_argument(f"Tensors class and score should match in dim_size(1). Got "
                               f"{classes.shape[1]} vs. {scores.shape[1]}")
    class_rows = classes.numpy().tolist() if classes is not None else None
    score_rows = scores.numpy().tolist() if scores is not None else None
    num_classes = (classes if classes is not None else scores).shape[1]
    for i in range(num_examples):
        classifications = result.classifications.add()
        for c in range(num_classes):
            entry = classifications.classes.add()
            if class_rows is not None:
                entry.label = class_rows[i][c].decode("utf-8", "replace")
            if score_rows is not None:
                entry.score = score_rows[i][c]


def _regression_result(outputs: dict, num_examples: int, result) -> None:
    tensor = outputs[REGRESS_OUTPUTS]
    shape = tensor.shape
    if not (shape.rank == 1 or (shape.rank == 2 and shape[1] == 1)):
        raise invalid_argument(f"Expected output Tensor shape to be either [batch_size] or "
                               f"[batch_size, 1] but got {_shape_text(shape)}")
    if shape[0] != num_examples:
        raise invalid_argument(f"Input batch size did not match output batch size: "
                               f"{num_examples} vs. {shape[0]}")
    if tensor.dtype != tf.float32:
        raise invalid_argument(f"Expected output Tensor of DT_FLOAT.  Got: "
                               f"DT_{tensor.dtype.name.upper()}")
    for value in tensor.numpy().ravel().tolist():
        result.regressions.add().value = value


# ---------------------------------------------------------------------- Loading
def read_signature_defs(path: str, tags=(SERVE_TAG,)) -> dict:
    """The SignatureDefs of the MetaGraph tagged ``tags`` in ``path/saved_model.pb[txt]``."""
    pb = os.path.join(path, "saved_model.pb")
    pbtxt = os.path.join(path, "saved_model.pbtxt")
    saved_model = saved_model_pb2.SavedModel()
    if tf.io.gfile.exists(pb):
        with tf.io.gfile.GFile(pb, "rb") as f:
            saved_model.ParseFromString(f.read())
    elif tf.io.gfile.exists(pbtxt):
        with tf.io.gfile.GFile(pbtxt, "r") as f:
            text_format.Parse(f.read(), saved_model)
    else:
        raise ServingError(grpc.StatusCode.NOT_FOUND,
                           f"Could not find SavedModel .pb or .pbtxt at supplied export "
                           f"directory path: {path}")
    wanted = set(tags)
    for meta_graph in saved_model.meta_graphs:
        if set(meta_graph.meta_info_def.tags) == wanted:
            return dict(meta_graph.signature_def)
    found = [sorted(m.meta_info_def.tags) for m in saved_model.meta_graphs]
    raise ServingError(grpc.StatusCode.NOT_FOUND,
                       f"Could not find meta graph def matching supplied tags: "
                       f"{{ {' '.join(sorted(wanted))} }}. To inspect available tag-sets in "
                       f"the SavedModel, please use the SavedModel CLI: `saved_model_cli`; "
                       f"found {found}")


def load_servable(name: str, version: int, path: str, *, warmup: bool = True,
                  tags=(SERVE_TAG,)) -> Servable:
    """Loads ``path`` and (by default) replays its warmup requests; raises
    :class:`ServingError` (or a TensorFlow error) when the version cannot be served."""
    signature_defs = read_signature_defs(path, tags)
    loaded = tf.saved_model.load(path, tags=list(tags))
    servable = Servable(name, version, path, loaded, signature_defs)
    if warmup:
        servable.run_warmup()
    return servable


def load_error(error: BaseException) -> ServingError:
    """Any exception from :func:`load_servable` as a status for GetModelStatus."""
    if isinstance(error, ServingError):
        return error
    if isinstance(error, tf.errors.OpError):
        return status.from_tf_error(error)
    return ServingError(grpc.StatusCode.UNKNOWN, f"{type(error).__name__}: {error}")

