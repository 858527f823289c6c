"""Latency of Predict over gRPC vs the in-process signature call, same model, same request.

``python -m serving.benchmark --model-base-path DIR --model-name NAME --examples GLOB``
loads the latest version in this process and times ``signature(inputs=...)`` on a batch of
``--batch`` serialized examples, then times the same batch as a Predict request against
``--server`` (for instance a real ``tensorflow_model_server``) or, by default, against a
``ranking-serve`` started in a subprocess (so client and server do not share a GIL).
Prints p50/p90/p99 in ms and the gRPC / in-process ratio of the p50s.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Optional

import numpy as np
import tensorflow as tf

from serving.client import PredictClient, list_inputs


def _percentiles(seconds) -> dict:
    ms = np.asarray(seconds) * 1e3
    return {f"p{q}": round(float(np.percentile(ms, q)), 3) for q in (50, 90, 99)}


def _timed(call, warmup: int, requests: int) -> list:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(requests):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def _start_server(base: str, name: str):
    process = subprocess.Popen(
        [sys.executable, "-m", "serving.server", "--model-base-path", base, "--model-name", name,
         "--port", "0", "--poll-seconds", "0"],
        stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    marker = "Running gRPC ModelServer at "
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        if marker in line:
            return process, line.split(marker)[1].split()[0]
    process.kill()
    raise RuntimeError("the server did not start")


def run(base: str, name: str, examples_glob: str, batch: int = 200, requests: int = 300,
        warmup: int = 20, server: Optional[str] = None) -> dict:
    versions = sorted(int(d) for d in os.listdir(base) if d.isdigit())
    path = os.path.join(base, str(versions[-1]))
    files = list_inputs(examples_glob)
    examples = [r.numpy() for r in tf.data.TFRecordDataset(files).take(batch)]
    if len(examples) < batch:
        raise ValueError(f"only {len(examples)} examples in {examples_glob}")
    signature = tf.saved_model.load(path).signatures["serving_default"]
    inputs = tf.constant(examples)
    in_process = _timed(lambda: {k: v.numpy() for k, v in signature(inputs=inputs).items()},
                        warmup, requests)
    process = None
    if server is None:
        process, server = _start_server(base, name)
    try:
        with PredictClient(server, name, deadline_seconds=30) as client:
            request = client.request(examples)
            over_grpc = _timed(lambda: client.call(request), warmup, requests)
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=30)
    result = {"batch": batch, "requests": requests, "version": versions[-1],
              "in_process_ms": _percentiles(in_process), "grpc_ms": _percentiles(over_grpc)}
    result["ratio_p50"] = round(result["grpc_ms"]["p50"] / result["in_process_ms"]["p50"], 3)
    return result


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.benchmark", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-base-path", required=True)
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--examples", required=True, help="TFRecord glob of tf.Examples")
    parser.add_argument("--batch", type=int, default=200, help="examples per request")
    parser.add_argument("--requests", type=int, default=300, help="timed requests")
    parser.add_argument("--warmup", type=int, default=20, help="untimed requests first")
    parser.add_argument("--server", default=None,
                        help="HOST:PORT of a running server (default: start ranking-serve)")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.model_base_path, args.model_name, args.examples, args.batch,
                         args.requests, args.warmup, args.server), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
