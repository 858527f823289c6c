"""ranking-score end to end against the local server, and the client's retry policy against
stub servers that fail on purpose."""
import csv
import os
import threading
import time
from concurrent import futures

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from serving import client as score
from serving.client import PredictClient
from serving.server import LocalServer
from serving_helpers import MODEL, free_port, in_process_scores

OUTPUTS = ["ctcvr", "ctr", "cvr"]


@pytest.fixture(scope="module")
def server(trained, tmp_path_factory):
    base = trained.base(tmp_path_factory.mktemp("client"), versions=(1,))
    with LocalServer(base, MODEL, poll_seconds=0) as running:
        yield running, base


def _write_records(path, examples):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for example in examples:
            writer.write(example)


def test_cli_scores_tfrecords_like_the_in_process_model(server, trained, tmp_path, capsys):
    running, base = server
    examples = trained.examples[:250]
    _write_records(tmp_path / "part-0.tfrecord", examples[:130])
    _write_records(tmp_path / "part-1.tfrecord", examples[130:])
    out = tmp_path / "scores.csv"
    code = score.main(["--server", running.address, "--model", MODEL,
                       "--input", str(tmp_path / "part-*.tfrecord"), "--output", str(out),
                       "--batch-size", "64", "--deadline-seconds", "10"])
    assert code == 0
    with open(out, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["impression_id", *OUTPUTS]
    assert len(rows) == 1 + len(examples)
    ids = [tf.train.Example.FromString(e).features.feature["impression_id"]
           .bytes_list.value[0].decode() for e in examples]
    assert [r[0] for r in rows[1:]] == ids  # input order kept across files and batches
    expected = in_process_scores(os.path.join(base, "1"), examples)
    for j, name in enumerate(OUTPUTS, start=1):
        got = np.array([float(r[j]) for r in rows[1:]], dtype=np.float32)
        assert np.max(np.abs(got - expected[name])) <= 1e-6
    captured = capsys.readouterr()
    assert "rows/s" in captured.err  # progress
    assert f"scored {len(examples)} rows in 4 requests" in captured.out  # 64+64+64+58
    assert "p50" in captured.out and "p90" in captured.out and "p99" in captured.out


def test_cli_without_ids_with_concurrency_and_errors(server, trained, tmp_path, capsys):
    running, base = server
    _write_records(tmp_path / "in.tfrecord", trained.examples[:100])
    out = tmp_path / "scores.csv"
    args = ["--server", running.address, "--model", MODEL, "--input",
            str(tmp_path / "in.tfrecord"), "--output", str(out), "--batch-size", "16",
            "--id-feature", "", "--concurrency", "3"]
    assert score.main(args) == 0
    with open(out, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == OUTPUTS and len(rows) == 101
    expected = in_process_scores(os.path.join(base, "1"), trained.examples[:100])
    got = np.array([float(r[1]) for r in rows[1:]], dtype=np.float32)
    assert np.max(np.abs(got - expected["ctr"])) <= 1e-6
    # Errors that retrying cannot fix fail at once with the server's status.
    assert score.main([*args[:3], "nope", *args[4:]]) == 1
    assert "NOT_FOUND: Servable not found for request: Latest(nope)" in capsys.readouterr().err
    assert score.main([*args[:5], str(tmp_path / "missing-*.tfrecord"), *args[6:]]) == 2


class _FlakyPredict(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Fails the first calls on purpose: ``failures`` is a list of what to do per call
    ("unavailable", "slow", "invalid"); later calls answer a canned response."""

    def __init__(self, failures, slow_seconds=1.0):
        self.failures = list(failures)
        self.slow_seconds = slow_seconds
        self.calls = 0
        self.lock = threading.Lock()

    def Predict(self, request, context):  # noqa: N802
        with self.lock:
            self.calls += 1
            action = self.failures.pop(0) if self.failures else None
        if action == "unavailable":
            context.abort(grpc.StatusCode.UNAVAILABLE, "try again later")
        if action == "invalid":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad request")
        if action == "slow":
            time.sleep(self.slow_seconds)
        n = len(request.inputs["inputs"].string_val)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = 1
        response.model_spec.signature_name = "serving_default"
        response.outputs["ctr"].CopyFrom(tf.make_tensor_proto(np.full(n, 0.5, np.float32)))
        return response


@pytest.fixture
def flaky():
    servers = []

    def start(failures, **kwargs):
        servicer = _FlakyPredict(failures, **kwargs)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return servicer, f"127.0.0.1:{port}"

    yield start
    for server in servers:
        server.stop(None)


def test_retries_unavailable_with_backoff(flaky):
    servicer, address = flaky(["unavailable", "unavailable"])
    with PredictClient(address, MODEL, initial_backoff=0.05, max_retries=3) as client:
        start = time.monotonic()
        scores = client.predict_examples([b"a", b"b"])
        elapsed = time.monotonic() - start
    assert scores["ctr"].tolist() == [0.5, 0.5]
    assert (servicer.calls, client.retries) == (3, 2)
    assert elapsed >= 0.05 + 0.1  # exponential backoff: 0.05 then 0.1

    servicer, address = flaky(["unavailable"] * 10)
    with PredictClient(address, MODEL, initial_backoff=0.01, max_retries=3) as client:
        with pytest.raises(grpc.RpcError) as info:
            client.predict_examples([b"a"])
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert servicer.calls == 4  # 1 + max_retries


def test_retries_deadline_exceeded_once_and_never_invalid_argument(flaky):
    servicer, address = flaky(["slow"], slow_seconds=1.0)
    with PredictClient(address, MODEL, deadline_seconds=0.3) as client:
        assert client.predict_examples([b"a"])["ctr"].tolist() == [0.5]
    assert servicer.calls == 2

    servicer, address = flaky(["slow", "slow", "slow"], slow_seconds=1.0)
    with PredictClient(address, MODEL, deadline_seconds=0.3) as client:
        with pytest.raises(grpc.RpcError) as info:
            client.predict_examples([b"a"])
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert servicer.calls == 2  # retried once only

    servicer, address = flaky(["invalid"])
    with PredictClient(address, MODEL) as client:
        with pytest.raises(grpc.RpcError) as info:
            client.predict_examples([b"a"])
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert servicer.calls == 1


def test_client_started_before_the_server_retries_until_it_is_up(trained, tmp_path):
    base = trained.base(tmp_path, versions=(1,))
    port = free_port()
    result = {}

    def run_client():
        with PredictClient(f"127.0.0.1:{port}", MODEL, initial_backoff=0.1, max_backoff=0.5,
                           max_retries=60) as client:
            try:
                result["scores"] = client.predict_examples(trained.examples[:10])
            except grpc.RpcError as error:
                result["error"] = error
            result["retries"] = client.retries

    thread = threading.Thread(target=run_client)
    thread.start()
    time.sleep(0.5)  # the client is already failing with UNAVAILABLE
    server = LocalServer(base, MODEL, port=port, poll_seconds=0)
    server.start()
    try:
        thread.join(timeout=60)
    finally:
        server.stop()
    assert "error" not in result, result.get("error")
    assert result["retries"] >= 1
    expected = in_process_scores(os.path.join(base, "1"), trained.examples[:10])
    np.testing.assert_allclose(result["scores"]["ctr"], expected["ctr"], rtol=0, atol=1e-6)
