"""Predict latency and QPS over gRPC (``ranking-serve``) vs the in-process signature call,
200-candidate requests, 1 and 8 concurrent clients (issue 4; target: gRPC p50 <= 2x the
in-process p50).

Without ``--model-base-path`` everything is produced from scratch in ``--work`` (default: a
temporary directory, removed afterwards unless ``--keep``), in a subprocess so the timed
process holds only the loaded model:

1. ``ranking.demo.run_simulation``: ``--impressions`` (20,000) simulated impressions, seed 1;
2. ``ranking.demo.run_pipeline``: the training samples (``configs/pipeline.yaml``);
3. ``ranking.train.train``: ``configs/ple_esmm.yaml`` as shipped (one epoch) and its export;
   the model base path is the parent of the exported version directory.

Then ``serving.benchmark.run`` (see its docstring for what is timed) starts ``ranking-serve``
in a subprocess and, for each repeat, each concurrency level (``--concurrency 1,8``) and
each mode in turn -- in-process (N threads calling the loaded signature), gRPC with a
channel per client thread, gRPC with one shared channel -- sends the same distinct
200-example batches, and prints a table (mode, channels, clients, p50 ms, p99 ms, QPS) of
the medians over repeats, the gRPC / in-process p50 ratio at each level, a breakdown of one
request's cost outside gRPC, and the machine's load average before and after.

    .venv/bin/python benchmarks/serving_latency.py [--concurrency 1,8] \
        [--duration-seconds 3 | --requests 300] [--repeats 5] [--channels both] \
        [--server-max-workers N] [--intra-op-threads N] [--work DIR [--keep]] [--json FILE]
    .venv/bin/python benchmarks/serving_latency.py --model-base-path DIR --model-name NAME \
        --examples GLOB ...
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

import serving  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)

DEFAULT_CONFIG = os.path.join(ROOT, "configs", "ple_esmm.yaml")


def prepare(work: str, impressions: int, seed: int, config_path: str) -> dict:
    """Simulate, build samples, train and export under ``work``; returns the paths."""
    from ranking import demo, train
    from ranking.config import load_experiment

    sim_dir, samples_dir, run_dir = (os.path.join(work, d) for d in ("sim", "samples", "run"))
    start = time.perf_counter()
    simulation = demo.run_simulation(sim_dir, impressions, seed=seed)
    demo.run_pipeline(sim_dir, samples_dir, simulation["world"]["window_end_ts"],
                      demo.DEFAULT_PIPELINE_CONFIG)
    shutil.rmtree(run_dir, ignore_errors=True)
    summary = train.train(load_experiment(config_path), samples_dir, run_dir, verbose=0)
    export = summary["export"]
    return {"model_base_path": os.path.dirname(export), "export": export,
            "model_name": os.path.basename(os.path.dirname(export)),
            "examples": os.path.join(samples_dir, "samples", "*.tfrecord*"),
            "prepare_seconds": round(time.perf_counter() - start, 1)}


def _prepare_in_subprocess(work: str, impressions: int, seed: int, config: str) -> dict:
    """Runs :func:`prepare` in a fresh interpreter (its logs go to stderr)."""
    paths_file = os.path.join(work, "paths.json")
    subprocess.run([sys.executable, os.path.abspath(__file__), "--_prepare", work,
                    "--impressions", str(impressions), "--seed", str(seed),
                    "--config", config], check=True, cwd=ROOT, stdout=sys.stderr)
    with open(paths_file) as f:
        return json.load(f)


def _loadavg() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} (1/5/15 min) on {os.cpu_count()} cores"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-base-path", help="serve this model (default: train one)")
    p.add_argument("--model-name", help="model name (with --model-base-path)")
    p.add_argument("--examples", help="TFRecord glob of tf.Examples (with --model-base-path)")
    p.add_argument("--work", help="working directory for the generated data and model "
                                  "(default: a temporary directory)")
    p.add_argument("--keep", action="store_true", help="keep the temporary work directory")
    p.add_argument("--impressions", type=int, default=20_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--config", default=DEFAULT_CONFIG, help="experiment config to train")
    p.add_argument("--batch", type=int, default=200, help="candidates (examples) per request")
    p.add_argument("--batches", type=int, default=8, help="distinct batches cycled through")
    p.add_argument("--concurrency", default="1,8", help="client counts (default 1,8)")
    p.add_argument("--duration-seconds", type=float, default=3.0,
                   help="timed seconds per mode, level and repeat (default 3)")
    p.add_argument("--requests", type=int, default=None,
                   help="timed requests per mode, level and repeat instead of a duration")
    p.add_argument("--warmup", type=int, default=20, help="untimed requests first")
    p.add_argument("--repeats", type=int, default=5,
                   help="rounds of all modes; the table shows medians (default 5)")
    p.add_argument("--channels", choices=("per-client", "shared", "both"), default="both",
                   help="gRPC channels of the client threads (default both)")
    p.add_argument("--server-max-workers", type=int, default=None,
                   help="ranking-serve --max-workers (default: the server's own)")
    p.add_argument("--intra-op-threads", type=int, default=None,
                   help="TF_NUM_INTRAOP_THREADS for both this process (in-process mode) and "
                        "the server (default: TensorFlow's, one per core)")
    p.add_argument("--no-profile", action="store_true",
                   help="skip the single-threaded cost breakdown")
    p.add_argument("--json", help="also write the full results to this file")
    p.add_argument("--_prepare", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args._prepare:  # the child of _prepare_in_subprocess
        sys.stdout = sys.stderr
        paths = prepare(args._prepare, args.impressions, args.seed, args.config)
        with open(os.path.join(args._prepare, "paths.json"), "w") as f:
            json.dump(paths, f)
        return 0

    if args.intra_op_threads:  # before TensorFlow is imported; the server inherits it
        os.environ["TF_NUM_INTRAOP_THREADS"] = str(args.intra_op_threads)
    from serving import benchmark

    load_before = _loadavg()
    temporary = None
    if args.model_base_path:
        if not (args.model_name and args.examples):
            p.error("--model-base-path needs --model-name and --examples")
        paths = {"model_base_path": args.model_base_path, "model_name": args.model_name,
                 "examples": args.examples}
    else:
        work = args.work or tempfile.mkdtemp(prefix="serving_latency_")
        temporary = None if (args.work or args.keep) else work
        os.makedirs(work, exist_ok=True)
        print(f"preparing: simulate {args.impressions:,} impressions (seed {args.seed}), "
              f"samples, train {os.path.relpath(args.config, ROOT)} -> {work}",
              file=sys.stderr, flush=True)
        paths = _prepare_in_subprocess(work, args.impressions, args.seed, args.config)
        print(f"prepared in {paths['prepare_seconds']} s: {paths['export']}",
              file=sys.stderr, flush=True)
    try:
        channels = (("per-client", "shared") if args.channels == "both" else (args.channels,))
        result = benchmark.run(
            paths["model_base_path"], paths["model_name"], paths["examples"], args.batch,
            args.requests or 300, args.warmup, None,
            concurrency=[int(c) for c in args.concurrency.split(",")],
            duration_seconds=None if args.requests else args.duration_seconds,
            repeats=args.repeats, num_batches=args.batches, channels=channels,
            server_max_workers=args.server_max_workers, with_profile=not args.no_profile,
            log=sys.stderr)
    finally:
        if temporary:
            shutil.rmtree(temporary, ignore_errors=True)
    load_after = _loadavg()
    result["paths"] = paths
    result["load_before"], result["load_after"] = load_before, load_after

    timing = (f"{args.requests} requests" if args.requests
              else f"{args.duration_seconds:g} s") + " per mode and level"
    print(f"Predict, {result['batch']} candidates per request ({result['batches']} distinct "
          f"batches), model {paths['model_name']} v{result['version']}; {timing}, medians "
          f"over {result['repeats']} repeats; ranking-serve max workers: "
          f"{result['server_max_workers'] or 'n/a (external server)'}; TF intra-op threads: "
          f"{os.environ.get('TF_NUM_INTRAOP_THREADS', 'default')}")
    print(benchmark.format_table(result))
    print(f"\nload average before: {load_before}\nload average after:  {load_after}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
