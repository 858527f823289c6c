"""A local gRPC server with TensorFlow Serving's API, for development and tests.

``ranking-serve --model-base-path DIR --model-name NAME [--port 8500] [--host 127.0.0.1]``
serves the SavedModels under ``DIR/<version>/`` on TF Serving's ``PredictionService``
(Predict, Classify, Regress, GetModelMetadata) and ``ModelService`` (GetModelStatus), with
its version handling (``serving.model_manager``), its checks, status codes and messages
(``serving.servable``) and its wire formats, so a client written against this server works
unchanged against ``tensorflow_model_server`` (production runs the ``tensorflow/serving``
image). It is not a production server: one model, no batching, no REST, no TLS.

In-process use (tests)::

    with LocalServer(model_base_path, "ple_esmm") as server:   # port 0: a free port
        channel = grpc.insecure_channel(server.address)
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from concurrent import futures
from typing import Optional

import grpc
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, prediction_service_pb2_grpc)

from serving.model_manager import ModelManager, VersionPolicy
from serving.servable import load_servable
from serving.status import ServingError, grpc_message, invalid_argument

log = logging.getLogger(__name__)

SIGNATURE_DEF_FIELD = "signature_def"
# TF Serving sets the gRPC message limit to INT_MAX; -1 means no limit in gRPC Python.
GRPC_OPTIONS = [
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
    ("grpc.so_reuseport", 0),  # a port in use is an error, not silently shared
]


def default_max_workers() -> int:
    return max(4, min(32, 2 * (os.cpu_count() or 1)))


def _abort(context: grpc.ServicerContext, error: ServingError):
    context.abort(error.code, grpc_message(error.message))


def _unexpected(context: grpc.ServicerContext, method: str, error: Exception):
    log.exception("%s failed", method)
    context.abort(grpc.StatusCode.INTERNAL, grpc_message(f"{type(error).__name__}: {error}"))


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict / Classify / Regress / GetModelMetadata (MultiInference: UNIMPLEMENTED)."""

    def __init__(self, manager: ModelManager):
        self._manager = manager

    def Predict(self, request, context):  # noqa: N802 - gRPC method names
        try:
            if not request.HasField("model_spec"):
                raise invalid_argument("Missing ModelSpec")
            return self._manager.servable(request.model_spec).predict(request)
        except ServingError as error:
            _abort(context, error)
        except Exception as error:  # noqa: BLE001
            _unexpected(context, "Predict", error)

    def Classify(self, request, context):  # noqa: N802
        try:
            if not request.HasField("model_spec"):
                raise invalid_argument("Missing ModelSpec")
            return self._manager.servable(request.model_spec).classify(request)
        except ServingError as error:
            _abort(context, error)
        except Exception as error:  # noqa: BLE001
            _unexpected(context, "Classify", error)

    def Regress(self, request, context):  # noqa: N802
        try:
            if not request.HasField("model_spec"):
                raise invalid_argument("Missing ModelSpec")
            return self._manager.servable(request.model_spec).regress(request)
        except ServingError as error:
            _abort(context, error)
        except Exception as error:  # noqa: BLE001
            _unexpected(context, "Regress", error)

    def GetModelMetadata(self, request, context):  # noqa: N802
        try:
            if not request.HasField("model_spec"):
                raise invalid_argument("Missing ModelSpec")
            if not request.metadata_field:
                raise invalid_argument(
                    "GetModelMetadataRequest must specify at least one metadata_field")
            for field in request.metadata_field:
                if field != SIGNATURE_DEF_FIELD:
                    raise invalid_argument(f"Metadata field {field} is not supported")
            servable = self._manager.servable(request.model_spec)
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = servable.name
            response.model_spec.version.value = servable.version
            response.metadata[SIGNATURE_DEF_FIELD].Pack(servable.signature_def_map())
            return response
        except ServingError as error:
            _abort(context, error)
        except Exception as error:  # noqa: BLE001
            _unexpected(context, "GetModelMetadata", error)


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """GetModelStatus (HandleReloadConfigRequest: UNIMPLEMENTED)."""

    def __init__(self, manager: ModelManager):
        self._manager = manager

    def GetModelStatus(self, request, context):  # noqa: N802
        try:
            if not request.HasField("model_spec"):
                raise invalid_argument("Missing ModelSpec")
            spec = request.model_spec
            version = spec.version.value if spec.HasField("version") else None
            response = get_model_status_pb2.GetModelStatusResponse()
            for number, state in self._manager.version_states(spec.name, version).items():
                entry = response.model_version_status.add()
                entry.version = number
                entry.state = state.state
                entry.status.error_code = state.error_code
                entry.status.error_message = state.error_message
            return response
        except ServingError as error:
            _abort(context, error)
        except Exception as error:  # noqa: BLE001
            _unexpected(context, "GetModelStatus", error)


def _host_port(host: str, port: int) -> str:
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # IPv6 literal
    return f"{host}:{port}"


class LocalServer:
    """The server in-process: ``start()`` loads the model, binds and returns the port."""

    def __init__(self, model_base_path: str, model_name: str, host: str = "127.0.0.1",
                 port: int = 0, *, poll_seconds: float = 1.0,
                 version_policy: Optional[VersionPolicy] = None,
                 max_workers: Optional[int] = None, max_load_retries: int = 5,
                 load_retry_seconds: float = 60.0, enable_warmup: bool = True):
        self.host = host
        self.requested_port = port
        self.max_workers = max_workers or default_max_workers()
        self.manager = ModelManager(
            model_base_path, model_name, poll_seconds=poll_seconds, policy=version_policy,
            max_load_retries=max_load_retries, load_retry_seconds=load_retry_seconds,
            loader=lambda n, v, p: load_servable(n, v, p, warmup=enable_warmup))
        self.port: Optional[int] = None
        self._server: Optional[grpc.Server] = None

    @property
    def address(self) -> str:
        if self.port is None:
            raise RuntimeError("server not started")
        return _host_port(self.host, self.port)

    def start(self) -> int:
        """Loads the aspired versions (like tensorflow_model_server, the port opens only
        after the initial load), starts polling and serving; returns the bound port."""
        self.manager.start()
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self.max_workers,
                                       thread_name_prefix="grpc-worker"),
            options=GRPC_OPTIONS)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionServicer(self.manager), server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(
            ModelServicer(self.manager), server)
        address = _host_port(self.host, self.requested_port)
        try:
            port = server.add_insecure_port(address)
        except RuntimeError as error:
            port = 0
            cause = error
        else:
            cause = None
        if not port:
            self.manager.stop()
            raise OSError(f"could not bind {address}") from cause
        server.start()
        self._server = server
        self.port = port
        log.info("Running gRPC ModelServer at %s (model %s from %s, %d worker threads)",
                 self.address, self.manager.name, self.manager.base_path, self.max_workers)
        return port

    def stop(self, grace: Optional[float] = 1.0) -> None:
        """Stops accepting calls, lets calls in flight finish for ``grace`` seconds, then
        unloads the model."""
        if self._server is not None:
            self._server.stop(grace).wait()
            self._server = None
            log.info("gRPC server stopped")
        self.manager.stop()

    def wait(self, timeout: Optional[float] = None) -> bool:
        return self._server.wait_for_termination(timeout) if self._server else True

    def __enter__(self) -> "LocalServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ranking-serve",
        description="Local TensorFlow-Serving-compatible gRPC server (development and tests; "
                    "production runs the tensorflow/serving image).")
    parser.add_argument("--model-base-path", required=True,
                        help="directory holding numeric version dirs <N>/ (a SavedModel each)")
    parser.add_argument("--model-name", required=True, help="the name requests use")
    parser.add_argument("--port", type=int, default=8500, help="gRPC port (0: any free port)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default loopback only; 0.0.0.0 for all)")
    parser.add_argument("--poll-seconds", type=float, default=1.0,
                        help="how often to look for new versions (<= 0: never)")
    parser.add_argument("--version-policy", default="latest", type=VersionPolicy.parse,
                        help="latest[:N] (default latest:1), all, or specific:V[,V...]")
    parser.add_argument("--max-workers", type=int, default=None,
                        help=f"gRPC worker threads (default {default_max_workers()})")
    parser.add_argument("--max-load-retries", type=int, default=5,
                        help="retries of a failed version load (TF Serving default 5)")
    parser.add_argument("--load-retry-seconds", type=float, default=60.0,
                        help="wait between load retries (TF Serving default 60)")
    parser.add_argument("--no-warmup", action="store_true",
                        help="skip assets.extra/tf_serving_warmup_requests")
    # TF Serving's flag names. On a small host, few intra-op threads per request cut the CPU
    # per request (~30% at 1 thread on 2 cores, serving benchmark) when requests run in
    # parallel anyway.
    parser.add_argument("--tensorflow_intra_op_parallelism", type=int, default=0,
                        help="threads per op (0: TensorFlow decides)")
    parser.add_argument("--tensorflow_inter_op_parallelism", type=int, default=0,
                        help="ops run in parallel (0: TensorFlow decides)")
    return parser


def configure_threads(intra_op: int, inter_op: int) -> None:
    """TensorFlow's thread pools; must run before any model is loaded."""
    for name, value in (("tensorflow_intra_op_parallelism", intra_op),
                        ("tensorflow_inter_op_parallelism", inter_op)):
        if value < 0:
            raise ValueError(f"--{name} must be >= 0, got {value}")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(intra_op)
    tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    log.info("TensorFlow threads: intra-op %s, inter-op %s",
             tf.config.threading.get_intra_op_parallelism_threads() or "auto",
             tf.config.threading.get_inter_op_parallelism_threads() or "auto")


def main(argv: Optional[list] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        configure_threads(args.tensorflow_intra_op_parallelism,
                          args.tensorflow_inter_op_parallelism)
    except ValueError as error:
        log.error("%s", error)
        return 2
    server = LocalServer(args.model_base_path, args.model_name, args.host, args.port,
                         poll_seconds=args.poll_seconds, version_policy=args.version_policy,
                         max_workers=args.max_workers, max_load_retries=args.max_load_retries,
                         load_retry_seconds=args.load_retry_seconds,
                         enable_warmup=not args.no_warmup)
    stop = threading.Event()

    def handle(signum, _frame):
        log.info("Received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            server.start()
        except (OSError, FileNotFoundError) as error:
            log.error("%s", error)
            return 2
        while not stop.wait(0.5):
            pass
        server.stop(grace=5.0)
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
