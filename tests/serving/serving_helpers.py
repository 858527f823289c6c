"""Helpers of the serving tests (imported by name: tests/ has no packages)."""
import os
import shutil
import socket
import time
import uuid

import grpc
import tensorflow as tf
from tensorflow_serving.apis import (get_model_status_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

MODEL = "ple_esmm"
NUM_EXAMPLES = 300


class Trained:
    """The trained model, its schema/config, an exported version dir and test examples."""

    def __init__(self, config, schema, files, model, template, examples):
        self.config = config
        self.schema = schema
        self.files = files
        self.model = model
        self.template = template  # an exported version dir, copied into base paths
        self.examples = examples  # serialized tf.Examples (not the warmup ones)

    def base(self, root, versions=(1,)) -> str:
        """``root/<MODEL>/`` with a copy of the export as each of ``versions``."""
        base = os.path.join(str(root), MODEL)
        os.makedirs(base, exist_ok=True)
        for version in versions:
            add_version(self.template, base, version)
        return base


def add_version(template: str, base: str, version: int) -> str:
    """Copies ``template`` to ``base/<version>`` the way exports appear: temp dir + rename."""
    tmp = os.path.join(base, f".tmp-{version}-{uuid.uuid4().hex[:8]}")
    shutil.copytree(template, tmp)
    final = os.path.join(base, str(version))
    os.rename(tmp, final)
    return final


def in_process_scores(version_dir: str, examples) -> dict:
    """The exported signature called in this process: ``{output: np.ndarray}``."""
    signature = tf.saved_model.load(version_dir).signatures["serving_default"]
    return {k: v.numpy() for k, v in signature(inputs=tf.constant(examples)).items()}


def predict_request(examples=None, name=MODEL, **spec) -> predict_pb2.PredictRequest:
    """A Predict request; ``spec`` sets model_spec fields (``version`` is the int value)."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    for key, value in spec.items():
        if key == "version":
            request.model_spec.version.value = value
        else:
            setattr(request.model_spec, key, value)
    if examples is not None:
        request.inputs["inputs"].CopyFrom(tf.make_tensor_proto(examples, tf.string))
    return request


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stubs:
    def __init__(self, address: str):
        self.channel = grpc.insecure_channel(address)
        self.prediction = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.model = model_service_pb2_grpc.ModelServiceStub(self.channel)

    def predict(self, examples, name=MODEL, timeout=10, **spec):
        return self.prediction.Predict(predict_request(list(examples), name, **spec),
                                       timeout=timeout)

    def status(self, name=MODEL, version=None):
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = name
        if version is not None:
            request.model_spec.version.value = version
        response = self.model.GetModelStatus(request, timeout=10)
        return {s.version: (get_model_status_pb2.ModelVersionStatus.State.Name(s.state),
                            s.status.error_code, s.status.error_message)
                for s in response.model_version_status}

    def close(self):
        self.channel.close()


def wait_for(predicate, timeout=20.0, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
