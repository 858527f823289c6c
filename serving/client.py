"""Scoring client for TensorFlow Serving's gRPC Predict API (real server or ``ranking-serve``).

``ranking-score --server HOST:PORT --model NAME --input GLOB --output FILE`` reads serialized
``tf.train.Example`` records from TFRecord files (``.gz``: GZIP), sends them in batches as
standard Predict requests (input ``inputs``: 1-D string tensor), and writes one CSV row of
scores per example, in input order: header = ``impression_id`` (when the examples carry it)
then the output names. Only standard requests are sent, so it works unchanged against
``tensorflow_model_server``.

Reliability: one channel for the whole run, a deadline on every request, UNAVAILABLE
retried with exponential backoff (``max_retries`` times), DEADLINE_EXCEEDED retried once;
other errors (bad input, unknown model...) fail at once.

Python API::

    with PredictClient("localhost:8500", "ple_esmm") as client:
        scores = client.predict_examples(serialized_examples)   # {"ctr": np.ndarray, ...}
"""
from __future__ import annotations

import argparse
import collections
import csv
import logging
import sys
import time
from concurrent import futures
from typing import Optional, Sequence

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

log = logging.getLogger(__name__)

INPUT_KEY = "inputs"
DEFAULT_SIGNATURE = "serving_default"
ID_FEATURE = "impression_id"
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
]


def channel_options(initial_backoff: float, max_backoff: float) -> list:
    """Unlimited message sizes, and gRPC's reconnect backoff (default 1 s growing to 120 s)
    kept within the client's retry backoff, so a server that comes back is reached by the
    next retry."""
    return CHANNEL_OPTIONS + [
        ("grpc.initial_reconnect_backoff_ms", max(1, int(initial_backoff * 1000))),
        ("grpc.min_reconnect_backoff_ms", max(1, int(initial_backoff * 1000))),
        ("grpc.max_reconnect_backoff_ms", max(1, int(max_backoff * 1000))),
    ]


def examples_tensor_proto(examples: Sequence[bytes]) -> tensor_pb2.TensorProto:
    """A 1-D DT_STRING TensorProto of serialized examples (what ``tf.make_tensor_proto``
    builds, without going through numpy)."""
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=examples)
    proto.tensor_shape.dim.add().size = len(examples)
    return proto


class PredictClient:
    """Predict requests for one model over one reusable channel, with deadlines and retries.

    Args:
      server: ``host:port``.
      model: the model name.
      signature: the signature name (``serving_default``).
      version: a specific version, or None for the latest.
      deadline_seconds: per-attempt deadline.
      max_retries: retries of UNAVAILABLE, with backoff ``initial_backoff`` * 2^k capped at
        ``max_backoff`` seconds (DEADLINE_EXCEEDED is retried once, in addition).
      output_filter: names of the outputs to return (default all).
    """

    def __init__(self, server: str, model: str, *, signature: str = DEFAULT_SIGNATURE,
                 version: Optional[int] = None, deadline_seconds: float = 5.0,
                 max_retries: int = 5, initial_backoff: float = 0.1, max_backoff: float = 5.0,
                 output_filter: Sequence[str] = (), channel: Optional[grpc.Channel] = None):
        self.server = server
        self.model = model
        self.signature = signature
        self.version = version
        self.deadline_seconds = deadline_seconds
        self.max_retries = max_retries
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.output_filter = list(output_filter)
        self._own_channel = channel is None
        self._channel = channel or grpc.insecure_channel(
            server, options=channel_options(initial_backoff, max_backoff))
        self._predict = prediction_service_pb2_grpc.PredictionServiceStub(self._channel).Predict
        self.retries = 0  # retries made so far (all requests)
        self.last_model_spec = None  # model_spec of the last response

    def close(self) -> None:
        if self._own_channel:
            self._channel.close()

    def __enter__(self) -> "PredictClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def request(self, examples: Sequence[bytes]) -> predict_pb2.PredictRequest:
        """A request with the examples as the ``inputs`` tensor."""
        return self.inputs_request({INPUT_KEY: examples_tensor_proto(list(examples))})

    def inputs_request(self, inputs: dict) -> predict_pb2.PredictRequest:
        """A request with ``inputs``: name -> TensorProto (any signature's inputs)."""
        request = predict_pb2.PredictRequest()
        spec = request.model_spec
        spec.name = self.model
        spec.signature_name = self.signature
        if self.version is not None:
            spec.version.value = self.version
        for name, proto in inputs.items():
            request.inputs[name].CopyFrom(proto)
        request.output_filter.extend(self.output_filter)
        return request

    def call(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        """Sends ``request`` with the retry policy; raises the last ``grpc.RpcError``."""
        backoff = self.initial_backoff
        unavailable = 0
        deadline_retried = False
        while True:
            try:
                return self._predict(request, timeout=self.deadline_seconds)
            except grpc.RpcError as error:
                code = error.code()
                if code == grpc.StatusCode.UNAVAILABLE and unavailable < self.max_retries:
                    unavailable += 1
                    log.info("Predict UNAVAILABLE (%s); retry %d/%d in %.2f s",
                             error.details(), unavailable, self.max_retries, backoff)
                    time.sleep(backoff)
                    backoff = min(backoff * 2, self.max_backoff)
                elif code == grpc.StatusCode.DEADLINE_EXCEEDED and not deadline_retried:
                    deadline_retried = True
                    log.info("Predict DEADLINE_EXCEEDED after %.2f s; retrying once",
                             self.deadline_seconds)
                else:
                    raise
                self.retries += 1

    def predict_response(self, examples: Sequence[bytes]) -> predict_pb2.PredictResponse:
        response = self.call(self.request(examples))
        self.last_model_spec = response.model_spec
        return response

    def predict_examples(self, examples: Sequence[bytes]) -> dict:
        """``{output name: np.ndarray}`` for a batch of serialized tf.Examples."""
        response = self.predict_response(examples)
        return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}


# ---------------------------------------------------------------------- CLI
def list_inputs(pattern: str) -> list:
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no files match {pattern!r}")
    gz = [f.endswith(".gz") for f in files]
    if any(gz) and not all(gz):
        raise ValueError("mixing .gz and uncompressed TFRecord files is not supported")
    return files


def _id_dtype(files: list, compression: str, feature: str) -> Optional[tf.DType]:
    """The dtype of ``feature`` in the first example, None when it is absent."""
    for record in tf.data.TFRecordDataset(files[:1], compression_type=compression).take(1):
        example = tf.train.Example.FromString(record.numpy())
        if feature not in example.features.feature:
            return None
        kind = example.features.feature[feature].WhichOneof("kind")
        return {"bytes_list": tf.string, "int64_list": tf.int64,
                "float_list": tf.float32}.get(kind)
    return None


def read_batches(files: list, batch_size: int, id_feature: str = ID_FEATURE):
    """Yields ``(serialized examples, ids or None)`` batches in file order; ``ids`` are the
    first value of ``id_feature`` per example ("" where missing), parsed in TensorFlow."""
    compression = "GZIP" if files[0].endswith(".gz") else ""
    dataset = tf.data.TFRecordDataset(files, compression_type=compression).batch(batch_size)
    dtype = _id_dtype(files, compression, id_feature) if id_feature else None
    if dtype is not None:
        spec = {id_feature: tf.io.RaggedFeature(dtype)}
        dataset = dataset.map(lambda s: (s, tf.io.parse_example(s, spec)[id_feature]))
    dataset = dataset.prefetch(2)
    for item in dataset:
        if dtype is None:
            yield item.numpy().tolist(), None
        else:
            serialized, ids = item
            yield serialized.numpy().tolist(), [_id_text(row[0]) if row else ""
                                                 for row in ids.to_list()]


def _id_text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _columns(name: str, values: np.ndarray, rows: int):
    """``(column names, per-row lists)`` of one output: [batch] and [batch, 1] give one
    column, [batch, k] gives ``name_0..name_{k-1}``."""
    values = np.asarray(values).reshape(rows, -1)
    if values.dtype.kind == "f":
        cells = np.char.mod("%.9g", values).tolist()
    elif values.dtype == object:
        cells = [[_id_text(v) for v in row] for row in values.tolist()]
    else:
        cells = values.astype(str).tolist()
    names = [name] if values.shape[1] == 1 else [f"{name}_{j}" for j in range(values.shape[1])]
    return names, cells


class _Progress:
    def __init__(self, stream, every: float = 1.0):
        self.stream = stream
        self.every = every
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.start = time.monotonic()
        self.last = self.start

    def update(self, rows: int, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < (self.every if self.tty else 5 * self.every):
            return
        self.last = now
        rate = rows / max(now - self.start, 1e-9)
        prefix = "\r" if self.tty else ""
        end = "" if self.tty and not force else "\n"
        print(f"{prefix}scored {rows} rows, {rate:,.0f} rows/s", end=end, file=self.stream,
              flush=True)


def score_files(client: PredictClient, files: list, output: str, *, batch_size: int = 256,
                id_feature: str = ID_FEATURE, concurrency: int = 1, progress=True) -> dict:
    """Scores every example of ``files`` into the CSV ``output``; returns run statistics:
    rows, requests, seconds, rows_per_second, latency_ms {p50, p90, p99}, retries.
    ``progress``: True for stderr, a stream, or False for none."""
    if progress is True:
        progress = sys.stderr
    latencies: list = []
    rows = 0
    header = None
    meter = _Progress(progress) if progress else None
    start = time.monotonic()

    def timed(examples):
        t0 = time.perf_counter()
        outputs = client.predict_examples(examples)
        latencies.append(time.perf_counter() - t0)
        return outputs

    with open(output, "w", newline="") as handle, \
            futures.ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        writer = csv.writer(handle)
        pending: collections.deque = collections.deque()

        def drain_one():
            nonlocal rows, header
            future, examples, ids = pending.popleft()
            outputs = future.result()
            columns, cells = [], []
            for name in sorted(outputs):
                names, values = _columns(name, outputs[name], len(examples))
                columns += names
                cells.append(values)
            if header is None:
                header = ([id_feature] if ids is not None else []) + columns
                writer.writerow(header)
            for i in range(len(examples)):
                row = [ids[i]] if ids is not None else []
                for values in cells:
                    row += values[i]
                writer.writerow(row)
            rows += len(examples)
            if meter:
                meter.update(rows)

        for examples, ids in read_batches(files, batch_size, id_feature):
            pending.append((pool.submit(timed, examples), examples, ids))
            while len(pending) >= max(1, concurrency):
                drain_one()
        while pending:
            drain_one()
    seconds = time.monotonic() - start
    if meter:
        meter.update(rows, force=True)
    ms = np.asarray(latencies) * 1e3 if latencies else np.zeros(1)
    return {"rows": rows, "requests": len(latencies), "seconds": seconds,
            "rows_per_second": rows / seconds if seconds > 0 else 0.0,
            "latency_ms": {f"p{q}": float(np.percentile(ms, q)) for q in (50, 90, 99)},
            "retries": client.retries}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ranking-score",
        description="Score TFRecord tf.Examples with a TensorFlow Serving model over gRPC.")
    parser.add_argument("--server", required=True, help="HOST:PORT of the gRPC endpoint")
    parser.add_argument("--model", required=True, help="model name")
    parser.add_argument("--input", required=True, help="TFRecord file glob (.gz: GZIP)")
    parser.add_argument("--output", required=True, help="CSV file to write")
    parser.add_argument("--batch-size", type=int, default=256, help="examples per request")
    parser.add_argument("--deadline-seconds", type=float, default=5.0,
                        help="deadline of each request")
    parser.add_argument("--signature", default=DEFAULT_SIGNATURE, help="signature name")
    parser.add_argument("--version", type=int, default=None, help="model version (latest)")
    parser.add_argument("--max-retries", type=int, default=5,
                        help="retries of UNAVAILABLE with exponential backoff")
    parser.add_argument("--concurrency", type=int, default=1, help="requests in flight")
    parser.add_argument("--id-feature", default=ID_FEATURE,
                        help="feature written as the first column when present ('' for none)")
    return parser


def main(argv: Optional[list] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.batch_size < 1:
        print("ranking-score: --batch-size must be >= 1", file=sys.stderr)
        return 2
    try:
        files = list_inputs(args.input)
    except (FileNotFoundError, ValueError) as error:
        print(f"ranking-score: {error}", file=sys.stderr)
        return 2
    with PredictClient(args.server, args.model, signature=args.signature, version=args.version,
                       deadline_seconds=args.deadline_seconds,
                       max_retries=args.max_retries) as client:
        try:
            stats = score_files(client, files, args.output, batch_size=args.batch_size,
                                id_feature=args.id_feature, concurrency=args.concurrency)
        except grpc.RpcError as error:
            print(f"ranking-score: Predict failed: {error.code().name}: {error.details()}",
                  file=sys.stderr)
            return 1
    lat = stats["latency_ms"]
    print(f"scored {stats['rows']} rows in {stats['requests']} requests, "
          f"{stats['seconds']:.2f} s, {stats['rows_per_second']:,.0f} rows/s; "
          f"request latency ms p50 {lat['p50']:.2f} p90 {lat['p90']:.2f} "
          f"p99 {lat['p99']:.2f}; retries {stats['retries']}; wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
