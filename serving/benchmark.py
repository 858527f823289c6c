"""Latency and QPS of Predict over gRPC vs the in-process signature call, same model, same
batches, 1..N concurrent clients.

``python -m serving.benchmark --model-base-path DIR --model-name NAME --examples GLOB``
loads the latest version in this process and, for every ``--concurrency`` level (default 1),
times ``signature(inputs=...)`` called from that many threads, then the same batches sent as
Predict requests by that many client threads against ``--server`` (for instance a real
``tensorflow_model_server``) or, by default, against a ``ranking-serve`` started in a
subprocess (so client and server do not share a GIL).

What is timed, per request, in both modes: from the Python list of ``--batch`` serialized
tf.Examples to the numpy outputs -- in-process ``tf.constant`` + the signature call +
``.numpy()``; over gRPC building the PredictRequest (the TensorProto of the examples), the
call (serialization, transport, the server's parsing, run and response) and
``tf.make_ndarray`` of the outputs. ``--batches`` distinct batches are cycled through (client
``i`` starts at batch ``i``), the same ones in both modes.

Each level runs ``--requests`` timed requests in all (split among the clients) or, with
``--duration-seconds``, as many as the clients complete in that time, after untimed
warm-up requests. QPS = completed requests / wall time (from the start barrier to the end
of the last request). The modes take turns within a repeat, and the figures are medians
over ``--repeats`` (p50, p90, p99 and QPS of each repeat, then the median of each); odd
repeats run the modes in reverse order. CPU ms per request (this process, and the server
process when it was started here) is measured over the timed part too.

gRPC channels (``--channels``): ``per-client`` gives every client thread its own channel
*and* its own connection (``grpc.use_local_subchannel_pool``: without it gRPC shares one
subchannel -- one TCP connection -- among channels with the same target and arguments);
``shared`` sends every thread's requests over one channel (one HTTP/2 connection), as a
single-process frontend holding one ``PredictClient`` would; ``both`` runs the two.

``--profile`` adds a single-threaded breakdown of one request's cost outside gRPC (build
the request, serialize, server-side parse, TensorProto -> tensor, the signature call,
response fill, serialize, client-side decode), using the server's own handlers
(``serving.servable``) in this process.

Prints JSON (``--table`` prints a table instead): per mode and level, p50/p90/p99 in ms and
QPS, and the gRPC / in-process ratio of the p50s per level (``ratio_p50`` stays the ratio at
the lowest level; ``in_process_ms`` / ``grpc_ms`` its percentiles).
"""
from __future__ import annotations

import argparse
import collections
import itertools
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from typing import Callable, Optional, Sequence

import numpy as np
import tensorflow as tf

from serving.client import PredictClient, channel_options, list_inputs

IN_PROCESS = "in-process"
CHANNEL_MODES = ("per-client", "shared")


def _percentiles(seconds) -> dict:
    ms = np.asarray(seconds) * 1e3
    return {f"p{q}": round(float(np.percentile(ms, q)), 3) for q in (50, 90, 99)}


def _start_server(base: str, name: str, max_workers: Optional[int] = None):
    """``ranking-serve`` in a subprocess on a free port: ``(process, address)``. Its stderr
    is drained by a thread from then on (a full pipe would block the server's logging); the
    last lines are kept on ``process.log_tail``."""
    command = [sys.executable, "-m", "serving.server", "--model-base-path", base,
               "--model-name", name, "--port", "0", "--poll-seconds", "0"]
    if max_workers:
        command += ["--max-workers", str(max_workers)]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    process.log_tail = collections.deque(maxlen=50)
    deadline = time.monotonic() + 180
    marker = "Running gRPC ModelServer at "
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        process.log_tail.append(line)
        if marker in line:
            address = line.split(marker)[1].split()[0]

            def drain():
                for rest in process.stderr:
                    process.log_tail.append(rest)

            threading.Thread(target=drain, daemon=True).start()
            return process, address
    process.kill()
    raise RuntimeError("the server did not start:\n" + "".join(process.log_tail))


def _stop_server(process) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def latest_version(base: str) -> tuple:
    versions = sorted(int(d) for d in os.listdir(base) if d.isdigit())
    if not versions:
        raise FileNotFoundError(f"no numeric version directory under {base}")
    return versions[-1], os.path.join(base, str(versions[-1]))


def load_batches(examples_glob: str, batch: int, count: int) -> list:
    """``count`` distinct batches of ``batch`` serialized examples (as many whole batches as
    the files hold, at least one)."""
    files = list_inputs(examples_glob)
    compression = "GZIP" if files[0].endswith(".gz") else ""
    records = [r.numpy() for r in
               tf.data.TFRecordDataset(files, compression_type=compression).take(batch * count)]
    if len(records) < batch:
        raise ValueError(f"only {len(records)} examples in {examples_glob}")
    return [records[i:i + batch] for i in range(0, len(records) - batch + 1, batch)]


# ---------------------------------------------------------------------- Load generation
def _process_cpu_seconds(pid: int) -> Optional[float]:
    """utime + stime of another process (Linux ``/proc``), None where unavailable."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _cpu_probe(server_pid: Optional[int]) -> Callable[[], tuple]:
    def probe():
        return (time.process_time(),
                _process_cpu_seconds(server_pid) if server_pid is not None else None)
    return probe


def run_clients(calls: Sequence[Callable[[int], object]], batches: int, *,
                requests: Optional[int] = None, duration_seconds: Optional[float] = None,
                warmup: int = 20, cpu_probe: Optional[Callable[[], tuple]] = None) -> dict:
    """Runs one thread per entry of ``calls`` (``call(batch_index)``), all released together
    after their warm-up; either ``requests`` in all (split among the clients) or as many as
    they complete in ``duration_seconds``. Returns latencies (s), completed, wall (s), qps,
    and with ``cpu_probe`` (``() -> (this process's CPU s, server's CPU s or None)``) the CPU
    seconds both used during the timed part."""
    clients = len(calls)
    per_client = math.ceil(requests / clients) if requests else None
    per_warmup = max(2, math.ceil(warmup / clients)) if warmup else 0
    barrier = threading.Barrier(clients + 1)
    latencies = [[] for _ in range(clients)]
    ends = [0.0] * clients
    errors: list = []

    def worker(i: int):
        call = calls[i]
        order = itertools.cycle(range(i, i + batches))
        try:
            for _ in range(per_warmup):
                call(next(order) % batches)
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)
            barrier.abort()
            return
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            return
        mine = latencies[i]
        start = time.perf_counter()
        deadline = start + duration_seconds if duration_seconds else None
        try:
            while True:
                if deadline is not None:
                    if time.perf_counter() >= deadline:
                        break
                elif len(mine) >= per_client:
                    break
                index = next(order) % batches
                t0 = time.perf_counter()
                call(index)
                mine.append(time.perf_counter() - t0)
        except BaseException as error:  # noqa: BLE001
            errors.append(error)
        ends[i] = time.perf_counter()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        pass
    start = time.perf_counter()
    cpu_start = cpu_probe() if cpu_probe else None
    for thread in threads:
        thread.join()
    cpu_end = cpu_probe() if cpu_probe else None
    if errors:
        raise errors[0]
    wall = max(ends) - start
    flat = [t for mine in latencies for t in mine]
    result = {"latencies": flat, "completed": len(flat), "wall": wall,
              "qps": len(flat) / wall if wall > 0 else 0.0}
    if cpu_probe:
        result["client_cpu"] = cpu_end[0] - cpu_start[0]
        result["server_cpu"] = (cpu_end[1] - cpu_start[1]
                                if None not in (cpu_end[1], cpu_start[1]) else None)
    return result


def in_process_calls(signature, clients: int, batches: list) -> list:
    """The in-process caller: every thread calls the same loaded signature, from the list of
    serialized examples to numpy outputs."""
    def call(index: int):
        outputs = signature(inputs=tf.constant(batches[index], dtype=tf.string))
        return {name: value.numpy() for name, value in outputs.items()}

    return [call] * clients


def grpc_calls(server: str, name: str, clients: int, batches: list, channels: str,
               deadline_seconds: float = 30.0) -> tuple:
    """``(calls, close)``: one PredictClient per thread, over one shared channel or one
    channel (and connection) each."""
    import grpc

    options = channel_options(0.1, 5.0)
    opened = []
    if channels == "shared":
        shared = grpc.insecure_channel(server, options=options)
        opened.append(shared)
        predict_clients = [PredictClient(server, name, deadline_seconds=deadline_seconds,
                                          channel=shared) for _ in range(clients)]
    elif channels == "per-client":
        predict_clients = []
        for _ in range(clients):
            channel = grpc.insecure_channel(
                server, options=options + [("grpc.use_local_subchannel_pool", 1)])
            opened.append(channel)
            predict_clients.append(PredictClient(server, name,
                                                 deadline_seconds=deadline_seconds,
                                                 channel=channel))
    else:
        raise ValueError(f"channels: {channels!r} (per-client or shared)")

    def make(client: PredictClient):
        return lambda index: client.predict_examples(batches[index])

    def close():
        for channel in opened:
            channel.close()

    return [make(c) for c in predict_clients], close


# ---------------------------------------------------------------------- Profile
def profile(path: str, name: str, version: int, batches: list, repeats: int = 50) -> dict:
    """Median ms of each step of one Predict outside gRPC, single-threaded, with the
    server's handlers (``serving.servable``) in this process, plus the sizes on the wire."""
    from tensorflow_serving.apis import predict_pb2 as pb
    from serving.servable import DEFAULT_SIGNATURE, _run, load_servable
    from serving.tensors import fill_proto, to_tensor

    servable = load_servable(name, version, path, warmup=False)
    signature = servable.signatures[DEFAULT_SIGNATURE]
    client = PredictClient("unused:0", name)
    steps = collections.defaultdict(list)
    sizes = {}

    def step(key, fn):
        t0 = time.perf_counter()
        value = fn()
        steps[key].append(time.perf_counter() - t0)
        return value

    for i in range(repeats + 5):
        examples = batches[i % len(batches)]
        request = step("client: build PredictRequest (TensorProto of examples)",
                       lambda: client.request(examples))
        wire = step("client: serialize request", request.SerializeToString)
        parsed = step("server: parse request", lambda: pb.PredictRequest.FromString(wire))
        feeds = step("server: TensorProto -> tf.Tensor",
                     lambda: {"inputs": to_tensor(parsed.inputs["inputs"], "inputs")})
        outputs = step("server: signature call", lambda: _run(signature, feeds))

        def fill():
            response = pb.PredictResponse()
            response.model_spec.name = name
            for alias, value in outputs.items():
                fill_proto(response.outputs[alias], value)
            return response

        response = step("server: fill response (.numpy + float_val)", fill)
        answer = step("server: serialize response", response.SerializeToString)
        step("client: parse response + make_ndarray",
             lambda: {k: tf.make_ndarray(v)
                      for k, v in pb.PredictResponse.FromString(answer).outputs.items()})
        step("server: Servable.predict (whole handler)", lambda: servable.predict(parsed))
        step("in-process: tf.constant + signature + .numpy",
             lambda: {k: v.numpy() for k, v in signature.function(
                 inputs=tf.constant(examples, dtype=tf.string)).items()})
        sizes = {"request_bytes": len(wire), "response_bytes": len(answer),
                 "example_bytes_mean": round(sum(map(len, examples)) / len(examples), 1)}
    result = {key: round(statistics.median(v[5:]) * 1e3, 3) for key, v in steps.items()}
    result.update(sizes)
    return result


# ---------------------------------------------------------------------- Benchmark
def _summary(runs: list) -> dict:
    """Medians over repeats of each repeat's percentiles and QPS."""
    per = [dict(_percentiles(r["latencies"]), qps=r["qps"], completed=r["completed"],
                wall=r["wall"]) for r in runs]
    out = {f"p{q}_ms": round(statistics.median(p[f"p{q}"] for p in per), 3)
           for q in (50, 90, 99)}
    out["qps"] = round(statistics.median(p["qps"] for p in per), 2)
    # CPU ms per request, this process (clients / in-process model) + the server process
    for key in ("client_cpu", "server_cpu"):
        values = [r[key] / r["completed"] for r in runs
                  if r.get(key) is not None and r["completed"]]
        out[f"{key}_ms_per_request"] = (round(statistics.median(values) * 1e3, 3)
                                        if values else None)
    out["requests"] = int(statistics.median(p["completed"] for p in per))
    out["repeats"] = [{"p50_ms": p["p50"], "p99_ms": p["p99"], "qps": round(p["qps"], 2),
                       "requests": p["completed"]} for p in per]
    return out


def run(base: str, name: str, examples_glob: str, batch: int = 200, requests: int = 300,
        warmup: int = 20, server: Optional[str] = None, *,
        concurrency: Sequence[int] = (1,), duration_seconds: Optional[float] = None,
        repeats: int = 1, num_batches: int = 8, channels: Sequence[str] = ("per-client",),
        server_max_workers: Optional[int] = None, with_profile: bool = False,
        log=None) -> dict:
    version, path = latest_version(base)
    batches = load_batches(examples_glob, batch, num_batches)
    signature = tf.saved_model.load(path).signatures["serving_default"]
    levels = sorted(set(int(c) for c in concurrency))
    if not levels or levels[0] < 1:
        raise ValueError("concurrency levels must be >= 1")
    load = {"requests": None if duration_seconds else requests,
            "duration_seconds": duration_seconds, "warmup": warmup}
    runs: dict = collections.defaultdict(list)  # (mode, clients) -> [run per repeat]

    process = None
    if server is None:
        from serving.server import default_max_workers

        server_max_workers = server_max_workers or default_max_workers()
        process, server = _start_server(base, name, server_max_workers)
    probe = _cpu_probe(process.pid if process is not None else None)
    try:
        for repeat in range(repeats):
            for clients in levels:
                modes = [IN_PROCESS] + [f"grpc {c}" for c in
                                        (channels if clients > 1 else channels[:1])]
                if repeat % 2:  # neither mode always goes first
                    modes.reverse()
                for mode in modes:
                    if mode == IN_PROCESS:
                        calls, close = in_process_calls(signature, clients, batches), None
                    else:
                        calls, close = grpc_calls(server, name, clients, batches,
                                                  mode.split(" ", 1)[1])
                    try:
                        result = run_clients(calls, len(batches), cpu_probe=probe, **load)
                    finally:
                        if close:
                            close()
                    runs[(mode, clients)].append(result)
                    if log:
                        print(f"repeat {repeat + 1}/{repeats} {mode:>16} x{clients}: "
                              f"p50 {np.median(result['latencies']) * 1e3:.2f} ms, "
                              f"{result['qps']:.1f} QPS ({result['completed']} requests)",
                              file=log, flush=True)
    finally:
        if process is not None:
            _stop_server(process)

    rows = []
    for (mode, clients), mode_runs in runs.items():
        rows.append(dict(mode=mode if mode == IN_PROCESS else "grpc",
                         channels=None if mode == IN_PROCESS else
                         (mode.split(" ", 1)[1] if clients > 1 else "n/a"),
                         clients=clients, **_summary(mode_runs)))
    rows.sort(key=lambda r: (r["clients"], r["mode"] != IN_PROCESS, r["channels"] or ""))
    ratios = {}
    for row in rows:
        if row["mode"] == IN_PROCESS:
            continue
        base_row = next(r for r in rows
                        if r["mode"] == IN_PROCESS and r["clients"] == row["clients"])
        key = str(row["clients"]) if row["clients"] == 1 else f"{row['clients']} {row['channels']}"
        ratios[key] = round(row["p50_ms"] / base_row["p50_ms"], 3)
    first = [r for r in rows if r["clients"] == levels[0]]
    pick = {r["mode"]: r for r in first}

    def pct(row):
        return {f"p{q}": row[f"p{q}_ms"] for q in (50, 90, 99)}

    result = {"batch": batch, "batches": len(batches), "version": version, "repeats": repeats,
              **load, "cpu_count": os.cpu_count(), "load_average": list(os.getloadavg()),
              "server_max_workers": server_max_workers, "results": rows,
              "ratio_p50_by_clients": ratios,
              "in_process_ms": pct(pick[IN_PROCESS]), "grpc_ms": pct(pick["grpc"])}
    result["ratio_p50"] = round(result["grpc_ms"]["p50"] / result["in_process_ms"]["p50"], 3)
    if with_profile:
        result["profile_ms"] = profile(path, name, version, batches)
    return result


def format_table(result: dict) -> str:
    lines = [f"{'mode':<11} {'channels':<11} {'clients':>7} {'p50 ms':>9} {'p99 ms':>9} "
             f"{'QPS':>9} {'requests':>8}   CPU ms/request (client + server)"]
    for row in result["results"]:
        client, server = row.get("client_cpu_ms_per_request"), row.get("server_cpu_ms_per_request")
        cpu = "" if client is None else f"{client:.2f}"
        if server is not None and row["mode"] != IN_PROCESS:
            cpu += f" + {server:.2f} = {client + server:.2f}"
        lines.append(f"{row['mode']:<11} {row['channels'] or '-':<11} {row['clients']:>7} "
                     f"{row['p50_ms']:>9.2f} {row['p99_ms']:>9.2f} {row['qps']:>9.1f} "
                     f"{row['requests']:>8}   {cpu}")
    lines.append("")
    for key, ratio in result["ratio_p50_by_clients"].items():
        clients, _, channels = key.partition(" ")
        label = f"{clients} client{'s' if clients != '1' else ''}"
        label += f" ({channels} channels)" if channels else ""
        lines.append(f"gRPC / in-process p50 at {label}: {ratio:.2f}x "
                     f"({'meets' if ratio <= 2.0 else 'MISSES'} <= 2x)")
    if "profile_ms" in result:
        lines.append("")
        lines.append("one request, single-threaded, outside gRPC (median ms):")
        for key, value in result["profile_ms"].items():
            lines.append(f"  {key:<55} {value:>10}")
    return "\n".join(lines)


def _int_list(text: str) -> list:
    return [int(x) for x in text.split(",") if x.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m serving.benchmark", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-base-path", required=True)
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--examples", required=True, help="TFRecord glob of tf.Examples")
    parser.add_argument("--batch", type=int, default=200, help="examples per request")
    parser.add_argument("--batches", type=int, default=8,
                        help="distinct batches cycled through (default 8)")
    parser.add_argument("--requests", type=int, default=300,
                        help="timed requests per mode and level, all clients together")
    parser.add_argument("--duration-seconds", type=float, default=None,
                        help="time each mode and level this long instead of --requests")
    parser.add_argument("--warmup", type=int, default=20,
                        help="untimed requests first (split among the clients, >= 2 each)")
    parser.add_argument("--concurrency", type=_int_list, default=[1],
                        help="comma-separated client counts, e.g. 1,8 (default 1)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="rounds of all modes and levels; figures are their medians")
    parser.add_argument("--channels", choices=CHANNEL_MODES + ("both",), default="per-client",
                        help="gRPC channel per client thread (own connection) or one shared")
    parser.add_argument("--server", default=None,
                        help="HOST:PORT of a running server (default: start ranking-serve)")
    parser.add_argument("--server-max-workers", type=int, default=None,
                        help="--max-workers of the ranking-serve started (its default: "
                             "max(4, min(32, 2 x cores)))")
    parser.add_argument("--profile", action="store_true",
                        help="add a breakdown of one request's cost outside gRPC")
    parser.add_argument("--table", action="store_true", help="print a table, not JSON")
    return parser


def main(argv: Optional[list] = None) -> int:
    args = build_parser().parse_args(argv)
    channels = CHANNEL_MODES if args.channels == "both" else (args.channels,)
    result = run(args.model_base_path, args.model_name, args.examples, args.batch,
                 args.requests, args.warmup, args.server, concurrency=args.concurrency,
                 duration_seconds=args.duration_seconds, repeats=args.repeats,
                 num_batches=args.batches, channels=channels,
                 server_max_workers=args.server_max_workers, with_profile=args.profile,
                 log=sys.stderr)
    print(format_table(result) if args.table else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
