"""The local server over real gRPC stubs: scores equal the in-process signature call, and
every error case answers with TF Serving's code and message (../shared/TFSERVING.md)."""
import os
import signal
import subprocess
import sys
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2,
                                     get_model_status_pb2, predict_pb2, regression_pb2)

from serving.server import LocalServer
from serving_helpers import MODEL, Stubs, in_process_scores, predict_request

OUTPUTS = ["ctcvr", "ctr", "cvr"]
INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND


@pytest.fixture(scope="module")
def served(trained, tmp_path_factory):
    base = trained.base(tmp_path_factory.mktemp("served"), versions=(1,))
    with LocalServer(base, MODEL, poll_seconds=0) as server:
        stubs = Stubs(server.address)
        yield server, stubs, base
        stubs.close()


_request = predict_request


def _error(call, request):
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=10)
    return info.value.code(), info.value.details()


def test_predict_matches_the_in_process_signature(served, trained):
    server, stubs, base = served
    response = stubs.predict(trained.examples)
    assert (response.model_spec.name, response.model_spec.version.value,
            response.model_spec.signature_name) == (MODEL, 1, "serving_default")
    assert sorted(response.outputs) == OUTPUTS
    expected = in_process_scores(os.path.join(base, "1"), trained.examples)
    for name in OUTPUTS:
        proto = response.outputs[name]
        # TF Serving's AsProtoField: float_val, not tensor_content.
        assert proto.dtype == types_pb2.DT_FLOAT and not proto.tensor_content
        assert [d.size for d in proto.tensor_shape.dim] == [len(trained.examples)]
        got = tf.make_ndarray(proto)
        assert np.max(np.abs(got - expected[name])) <= 1e-6
    assert np.std(expected["ctr"]) > 1e-4  # the comparison is not between constants


def test_empty_signature_name_version_and_output_filter(served, trained):
    _, stubs, _ = served
    request = _request(trained.examples[:7], version=1)
    request.output_filter.append("ctr")
    response = stubs.prediction.Predict(request, timeout=10)
    assert list(response.outputs) == ["ctr"]
    assert response.model_spec.signature_name == "serving_default"  # resolved from ""
    assert response.model_spec.version.value == 1
    full = stubs.predict(trained.examples[:7], signature_name="serving_default")
    np.testing.assert_array_equal(tf.make_ndarray(response.outputs["ctr"]),
                                  tf.make_ndarray(full.outputs["ctr"]))


def test_multi_input_signature(served, trained):
    """``raw_features`` takes one tensor per raw field: the same scores as serving_default,
    and the size / dtype checks name the inputs."""
    from ranking.data.schema import parse_spec
    from ranking.export import RAW_SIGNATURE
    from ranking.features.raw import raw_input_names

    _, stubs, _ = served
    names = raw_input_names(trained.schema, trained.config.feature_names)
    examples = trained.examples[:50]
    raw = tf.io.parse_example(tf.constant(examples), parse_spec(trained.schema, names))
    request = _request(signature_name=RAW_SIGNATURE)
    for name in names:
        request.inputs[name].CopyFrom(tf.make_tensor_proto(raw[name].numpy()))
    response = stubs.prediction.Predict(request, timeout=10)
    assert response.model_spec.signature_name == RAW_SIGNATURE
    by_example = stubs.predict(examples)
    for name in OUTPUTS:
        np.testing.assert_allclose(tf.make_ndarray(response.outputs[name]),
                                   tf.make_ndarray(by_example.outputs[name]), rtol=0, atol=1e-6)

    dropped = sorted(names)[0]
    partial = predict_pb2.PredictRequest()
    partial.CopyFrom(request)
    del partial.inputs[dropped]
    code, details = _error(stubs.prediction.Predict, partial)
    assert code == INVALID
    assert details.startswith(f"input size does not match signature: {len(names) - 1}!="
                              f"{len(names)} len({{")
    assert details.endswith(f"Sent extra: {{}}. Missing but required: {{{dropped}}}.")

    numeric = next(n for n in sorted(names) if raw[n].dtype != tf.string)
    wrong = predict_pb2.PredictRequest()
    wrong.CopyFrom(request)
    wrong.inputs[numeric].CopyFrom(tf.make_tensor_proto(raw["item_id"].numpy()))
    code, details = _error(stubs.prediction.Predict, wrong)
    expected_type = {"float32": "float", "int64": "int64"}[raw[numeric].dtype.name]
    assert code == INVALID
    assert details.startswith("Expects arg[")
    assert details.endswith(f"] to be {expected_type} but string is provided")


def _float_inputs():
    request = _request()
    request.inputs["inputs"].CopyFrom(tf.make_tensor_proto([1.0, 2.0], tf.float32))
    return request


def _unparsable_inputs():
    request = _request()
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[b"a", b"b", b"c"])
    proto.tensor_shape.dim.add().size = 2  # 3 values for 2 elements
    request.inputs["inputs"].CopyFrom(proto)
    return request


def _with(request, **changes):
    for key, value in changes.items():
        if key == "extra_input":
            request.inputs[value].CopyFrom(tf.make_tensor_proto([b"x"], tf.string))
        elif key == "output_filter":
            request.output_filter.extend(value)
        elif key == "rename_input":
            request.inputs[value].CopyFrom(request.inputs["inputs"])
            del request.inputs["inputs"]
    return request


PREDICT_ERRORS = {
    "no model_spec": (lambda ex: predict_pb2.PredictRequest(), INVALID, "Missing ModelSpec"),
    "empty model name": (lambda ex: _request(ex, name=""), INVALID,
                         "ModelSpec has no name specified."),
    "unknown model": (lambda ex: _request(ex, name="nope"), NOT_FOUND,
                      "Servable not found for request: Latest(nope)"),
    "unknown version": (lambda ex: _request(ex, version=7), NOT_FOUND,
                        f"Servable not found for request: Specific({MODEL}, 7)"),
    "unknown version label": (lambda ex: _request(ex, version_label="stable"), INVALID,
                              "Unrecognized servable version label: stable"),
    "unknown signature": (lambda ex: _request(ex, signature_name="nope"),
                          grpc.StatusCode.FAILED_PRECONDITION,
                          'Serving signature key "nope" not found.'),
    "extra input": (lambda ex: _with(_request(ex), extra_input="extra"), INVALID,
                    "input size does not match signature: 2!=1 len({extra,inputs}) != "
                    "len({inputs}). Sent extra: {extra}. Missing but required: {}."),
    "missing input": (lambda ex: _request(), INVALID,
                      "input size does not match signature: 0!=1 len({}) != len({inputs}). "
                      "Sent extra: {}. Missing but required: {inputs}."),
    "misnamed input": (lambda ex: _with(_request(ex), rename_input="examples"), INVALID,
                       "Signature input alias: inputs(feed name: serving_default_inputs:0) "
                       "not found in request and no default value provided. Inputs expected "
                       "to be in the request {examples}"),
    "wrong dtype": (lambda ex: _float_inputs(), INVALID,
                    "Expects arg[0] to be string but float is provided"),
    "unparsable TensorProto": (lambda ex: _unparsable_inputs(), INVALID,
                               "tensor parsing error: inputs"),
    "unknown output_filter": (lambda ex: _with(_request(ex), output_filter=["ctr", "nope"]),
                              INVALID, "output tensor alias not found in signature: nope "
                              "Outputs expected to be in the set {ctcvr,ctr,cvr}."),
    "duplicate output_filter": (lambda ex: _with(_request(ex), output_filter=["ctr", "ctr"]),
                                INVALID, "duplicate output tensor alias: ctr"),
    "serialized bytes not a tf.Example": (lambda ex: _request([b"\xff\x00garbage"]), INVALID,
                                          "Could not parse example input"),
}


@pytest.mark.parametrize("case", sorted(PREDICT_ERRORS))
def test_predict_errors(served, trained, case):
    _, stubs, _ = served
    make, code, message = PREDICT_ERRORS[case]
    got_code, details = _error(stubs.prediction.Predict, make(trained.examples[:2]))
    assert got_code == code, details
    assert message in details


def test_classify_and_regress_on_a_predict_signature(served, trained):
    """Our exports have one predict signature with 3 outputs: TF Serving (method-name check
    off by default) rejects it for Classify/Regress by its shape."""
    _, stubs, _ = served
    examples = [tf.train.Example.FromString(e) for e in trained.examples[:2]]
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = MODEL
    classify.input.example_list.examples.extend(examples)
    regress = regression_pb2.RegressionRequest()
    regress.model_spec.name = MODEL
    regress.input.example_list.examples.extend(examples)
    assert _error(stubs.prediction.Classify, classify) == (
        INVALID, "Expected one or two output Tensors, found 3")
    assert _error(stubs.prediction.Regress, regress) == (INVALID, "Expected one output Tensor.")
    classify.model_spec.signature_name = regress.model_spec.signature_name = "nope"
    for call, request in ((stubs.prediction.Classify, classify),
                          (stubs.prediction.Regress, regress)):
        assert _error(call, request) == (INVALID, "No signature was found with the name: nope")
    assert _error(stubs.prediction.Classify, classification_pb2.ClassificationRequest()) == (
        INVALID, "Missing ModelSpec")


def test_model_status(served):
    _, stubs, _ = served
    assert stubs.status() == {1: ("AVAILABLE", 0, "")}
    assert stubs.status(version=1) == {1: ("AVAILABLE", 0, "")}
    for kwargs, message in (({"name": "nope"}, "Could not find any versions of model nope"),
                            ({"version": 3}, f"Could not find version 3 of model {MODEL}")):
        with pytest.raises(grpc.RpcError) as info:
            stubs.status(**kwargs)
        assert (info.value.code(), info.value.details()) == (NOT_FOUND, message)
    with pytest.raises(grpc.RpcError) as info:
        stubs.model.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(), timeout=10)
    assert (info.value.code(), info.value.details()) == (INVALID, "Missing ModelSpec")


def test_model_metadata_returns_the_signature_defs(served):
    _, stubs, base = served
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = MODEL
    response = stubs.prediction.GetModelMetadata(request, timeout=10)
    assert (response.model_spec.name, response.model_spec.version.value) == (MODEL, 1)
    signature_defs = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signature_defs)
    # Every signature of the SavedModel, and TF2's init-op entry, as the C++ server lists them.
    exported = tf.saved_model.load(os.path.join(base, "1")).signatures
    assert "serving_default" in exported
    assert sorted(signature_defs.signature_def) == sorted(["__saved_model_init_op", *exported])
    signature = signature_defs.signature_def["serving_default"]
    assert signature.method_name == "tensorflow/serving/predict"
    assert signature.inputs["inputs"].dtype == types_pb2.DT_STRING
    assert [d.size for d in signature.inputs["inputs"].tensor_shape.dim] == [-1]
    assert sorted(signature.outputs) == OUTPUTS
    assert all(o.dtype == types_pb2.DT_FLOAT for o in signature.outputs.values())

    request.ClearField("metadata_field")
    assert _error(stubs.prediction.GetModelMetadata, request) == (
        INVALID, "GetModelMetadataRequest must specify at least one metadata_field")
    request.metadata_field.append("bogus")
    assert _error(stubs.prediction.GetModelMetadata, request) == (
        INVALID, "Metadata field bogus is not supported")
    request.metadata_field[:] = ["signature_def"]
    request.model_spec.name = "nope"
    assert _error(stubs.prediction.GetModelMetadata, request) == (
        NOT_FOUND, "Servable not found for request: Latest(nope)")


# ---------------------------------------------------------------------- Classify / Regress
class _Toy(tf.Module):
    """Signatures shaped like classification and regression signatures (TF2 writes them
    with the predict method name, which TF Serving accepts with its default flags)."""

    @staticmethod
    def _x(inputs):
        return tf.io.parse_example(
            inputs, {"x": tf.io.FixedLenFeature([], tf.float32, default_value=0.0)})["x"]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def classify(self, inputs):
        x = self._x(inputs)
        classes = tf.tile(tf.constant([["neg", "pos"]]), [tf.shape(x)[0], 1])
        return {"classes": classes, "scores": tf.stack([1.0 - x, x], axis=1)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def regress(self, inputs):
        return {"outputs": 2.0 * self._x(inputs)}


def _example(**floats):
    return tf.train.Example(features=tf.train.Features(feature={
        k: tf.train.Feature(float_list=tf.train.FloatList(value=[v])) for k, v in floats.items()}))


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    base = tmp_path_factory.mktemp("toy") / "toy"
    module = _Toy()
    tf.saved_model.save(module, str(base / "1"), signatures={
        "serving_default": module.classify, "classify": module.classify,
        "regress": module.regress})
    with LocalServer(str(base), "toy", poll_seconds=0) as server:
        stubs = Stubs(server.address)
        yield stubs
        stubs.close()


def test_classify_and_regress(toy):
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = "toy"
    classify.input.example_list.examples.extend([_example(x=0.25), _example(x=0.5)])
    response = toy.prediction.Classify(classify, timeout=10)
    assert (response.model_spec.name, response.model_spec.version.value,
            response.model_spec.signature_name) == ("toy", 1, "serving_default")
    got = [[(c.label, c.score) for c in row.classes] for row in response.result.classifications]
    assert got == [[("neg", 0.75), ("pos", 0.25)], [("neg", 0.5), ("pos", 0.5)]]

    # Context features are merged into every example (x comes from the context).
    classify.ClearField("input")
    with_context = classify.input.example_list_with_context
    with_context.context.CopyFrom(_example(x=0.125))
    with_context.examples.extend([tf.train.Example(), tf.train.Example()])
    response = toy.prediction.Classify(classify, timeout=10)
    assert [row.classes[1].score for row in response.result.classifications] == [0.125, 0.125]

    regress = regression_pb2.RegressionRequest()
    regress.model_spec.name = "toy"
    regress.model_spec.signature_name = "regress"
    regress.input.example_list.examples.extend([_example(x=1.5), _example(x=-2.0)])
    response = toy.prediction.Regress(regress, timeout=10)
    assert [r.value for r in response.result.regressions] == [3.0, -4.0]
    assert response.model_spec.signature_name == "regress"

    # Wrong kind of signature, and empty input.
    regress.model_spec.signature_name = "classify"
    assert _error(toy.prediction.Regress, regress) == (INVALID, "Expected one output Tensor.")
    classify.model_spec.signature_name = "regress"
    code, details = _error(toy.prediction.Classify, classify)
    assert code == INVALID and details.startswith(
        'Expected classification signature outputs to contain at least one of "classes" or '
        '"scores". Signature was: ')
    classify.model_spec.signature_name = "classify"
    classify.ClearField("input")
    assert _error(toy.prediction.Classify, classify) == (INVALID, "Input is empty.")
    # Predict works on any signature.
    response = toy.predict([_example(x=0.5).SerializeToString()], name="toy",
                           signature_name="regress")
    assert tf.make_ndarray(response.outputs["outputs"]).tolist() == [1.0]


# ---------------------------------------------------------------------- the CLI
def test_cli_serves_and_shuts_down_cleanly_on_sigterm(served, trained):
    _, _, base = served
    process = subprocess.Popen(
        [sys.executable, "-m", "serving.server", "--model-base-path", base, "--model-name",
         MODEL, "--port", "0", "--poll-seconds", "0.5", "--tensorflow_intra_op_parallelism",
         "1"],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    lines = []
    try:
        deadline = time.monotonic() + 60
        address = None
        while address is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line:
                break
            lines.append(line)
            if "Running gRPC ModelServer at " in line:
                address = line.split("Running gRPC ModelServer at ")[1].split()[0]
        assert address and address.startswith("127.0.0.1:"), "".join(lines)
        stubs = Stubs(address)
        response = stubs.predict(trained.examples[:5])
        assert response.model_spec.version.value == 1
        stubs.close()
        process.send_signal(signal.SIGTERM)
        _, rest = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    log = "".join(lines) + rest
    assert process.returncode == 0, log
    assert "Received SIGTERM, shutting down" in log
    assert f"Done unloading servable version {{name: {MODEL} version: 1}}" in log
    assert "Successfully loaded servable version" in log
    assert "TensorFlow threads: intra-op 1, inter-op auto" in log


def test_cli_rejects_negative_thread_counts(tmp_path):
    from serving import server

    assert server.main(["--model-base-path", str(tmp_path), "--model-name", MODEL,
                        "--tensorflow_inter_op_parallelism", "-2"]) == 2
