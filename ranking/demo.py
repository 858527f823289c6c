"""The end-to-end demo (``make demo``): every stage of the product on simulated logs.

Stages, each timed, all files under ``--out``:
  1. ``sim/``: ``ranking-simulate`` writes the raw impression logs and their truth;
  2. ``samples/``: ``ranking-pipeline`` builds the training samples on the local runner,
     with labels as observed at the end of the simulated window;
  3. ``run/``: ``ranking-train`` fits the experiment (default ``configs/ple_esmm.yaml``) on
     all days but the last two, stops early on the next-to-last, evaluates on the last
     (metrics per task, domain and user tier, oracle AUC beside model AUC) and exports the
     SavedModel to ``run/export/<model>/<version>/``;
  4. ``ranking-serve`` (the local TF-Serving-compatible server) serves the export in a
     subprocess on a free loopback port;
  5. ``test_day/``: the test day's samples are scored over gRPC (``ranking-score``'s client)
     into ``test_day/scores.csv`` and again in-process with the exported signature; the
     server is stopped;
  6. the metrics report of the gRPC scores (per task, domain and user tier, oracle AUC beside
     model AUC) and the max abs difference between gRPC and in-process scores.

Each stage can also be run alone with its own command; the README shows how.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

from pipelines import cli as pipeline_cli
from pipelines.simulator import simulate as sim
from ranking import train
from ranking.config import load_experiment
from ranking.metrics import format_table


CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
DEFAULT_PIPELINE_CONFIG = os.path.join(CONFIGS, "pipeline.yaml")


def _stage(name: str):
    print(f"\n== {name} ==", flush=True)
    return time.perf_counter()


def run_simulation(out: str, impressions: int, seed: int) -> dict:
    start = _stage(f"1. simulate {impressions:,} impressions -> {out}")
    shutil.rmtree(out, ignore_errors=True)
    summary = sim.simulate(sim.SimConfig(out=out, impressions=impressions, seed=seed),
                           log=sys.stdout)
    summary["seconds"] = round(time.perf_counter() - start, 1)
    return summary


def run_pipeline(sim_dir: str, out: str, observe_at: int, config: str) -> dict:
    start = _stage(f"2. sample builder (local Beam runner) -> {out}")
    shutil.rmtree(out, ignore_errors=True)
    args, beam_args = pipeline_cli.build_parser().parse_known_args([
        "--input", os.path.join(sim_dir, "impressions", "*"),
        "--truth", os.path.join(sim_dir, "truth", "*"),
        "--output", out, "--observe-at", str(observe_at), "--config", config])
    summary = pipeline_cli.run(args, beam_args)
    print(pipeline_cli.format_summary(summary))
    if not summary["balanced"]:
        raise SystemExit("demo: the pipeline's counters do not add up")
    summary["wall_seconds"] = round(time.perf_counter() - start, 1)
    return summary


def run_training(samples_dir: str, run_dir: str, config) -> dict:
    start = _stage(f"3. train {config.name} -> {run_dir}")
    shutil.rmtree(run_dir, ignore_errors=True)
    summary = train.train(config, samples_dir, run_dir)
    for task, result in summary["report"]["tasks"].items():
        o = {k: (v if v is not None else float("nan")) for k, v in result["overall"].items()}
        print(f"{task:<6} test AUC {o['auc']:.4f} (oracle {o['oracle_auc']:.4f})"
              f"  PCOC {o['pcoc']:.3f}")
    print(f"exported: {summary['export']}")
    summary["wall_seconds"] = round(time.perf_counter() - start, 1)
    return summary


def write_test_day(samples_dir: str, config, out_dir: str) -> str:
    """The test split's serialized examples, in file order, as one TFRecord file."""
    import tensorflow as tf

    from ranking.data.input import in_range_mask, timestamp_chunks
    from ranking.data.schema import load_schema

    test = train.time_splits(load_schema(samples_dir), config).test
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "examples.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for records, ts in timestamp_chunks(train.sample_files(samples_dir)):
            for record in tf.boolean_mask(records, in_range_mask(ts, test)).numpy():
                writer.write(record)
    return path


def serve_and_score(export_path: str, model_name: str, examples_file: str,
                    out_dir: str) -> dict:
    """Stages 4-5: serve over gRPC in a subprocess, score, compare with in-process."""
    import subprocess

    import numpy as np
    import tensorflow as tf

    from serving.client import PredictClient, score_files

    base = os.path.dirname(export_path)
    start = _stage(f"4. ranking-serve {base} (subprocess, loopback)")
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "serving.server", "--model-base-path",
                               base, "--model-name", model_name, "--port", str(port)])
    try:
        start = _stage(f"5. score the test day over gRPC -> {out_dir}/scores.csv")
        scores_csv = os.path.join(out_dir, "scores.csv")
        address = f"127.0.0.1:{port}"
        _wait_until_serving(address, server)
        with PredictClient(address, model_name, deadline_seconds=30) as client:
            stats = score_files(client, [examples_file], scores_csv, batch_size=512)
    finally:
        server.terminate()
        server.wait(timeout=60)
    print(f"scored {stats['rows']:,} rows in {stats['seconds']:.1f} s "
          f"({stats['rows_per_second']:,.0f} rows/s); latency p50 "
          f"{stats['latency_ms']['p50']:.1f} ms, p99 {stats['latency_ms']['p99']:.1f} ms; "
          "server stopped")
    grpc_scores = _read_scores(scores_csv)
    signature = tf.saved_model.load(export_path).signatures["serving_default"]
    local: dict = {}
    for batch in tf.data.TFRecordDataset([examples_file]).batch(4096):
        for name, value in signature(inputs=batch).items():
            local.setdefault(name, []).append(value.numpy())
    local = {k: np.concatenate(v) for k, v in local.items()}
    diff = max(float(np.max(np.abs(grpc_scores[k] - local[k]))) for k in local)
    return {"scores": grpc_scores, "max_abs_diff": diff, "stats": stats,
            "wall_seconds": round(time.perf_counter() - start, 1)}


def _wait_until_serving(address: str, server, timeout: float = 180.0) -> None:
    """The port opens once the model is loaded (as in tensorflow_model_server)."""
    import grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        while True:
            if server.poll() is not None:
                raise SystemExit(f"demo: ranking-serve exited with code {server.returncode}")
            try:
                grpc.channel_ready_future(channel).result(timeout=1.0)
                return
            except grpc.FutureTimeoutError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"demo: ranking-serve not ready after {timeout:.0f} s")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _read_scores(path: str) -> dict:
    import csv

    import numpy as np

    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    out = {name: np.array([r[j] for r in body], dtype=np.float32 if name != "impression_id"
                          else object) for j, name in enumerate(header)}
    return out


def report_grpc_scores(examples_file: str, samples_dir: str, config, scored: dict) -> dict:
    """Stage 6: the metrics report of the gRPC scores, joined to labels by row order."""
    import numpy as np

    from ranking.data.schema import load_schema
    from ranking.evaluation import context_frame, evaluate_frame

    _stage("6. metrics of the gRPC scores on the test day")
    frame = context_frame([examples_file], load_schema(samples_dir), config)
    scores = scored["scores"]
    if "impression_id" in scores and not np.array_equal(
            scores["impression_id"].astype(str), frame["impression_id"]):
        raise SystemExit("demo: gRPC scores are not in the examples' order")
    frame.update({f"pred_{k}": v for k, v in scores.items() if k != "impression_id"})
    report = evaluate_frame(frame, config)
    print(format_table(report))
    print(f"max |gRPC score - in-process score| = {scored['max_abs_diff']:.2e} "
          f"(over {len(frame['click']):,} rows x {len(scores) - 1} outputs)")
    return report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="ranking-demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="demo_out", help="working directory (default demo_out)")
    p.add_argument("--impressions", type=int, default=200_000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--pipeline-config", default=DEFAULT_PIPELINE_CONFIG)
    p.add_argument("--config", default=os.path.join(CONFIGS, "ple_esmm.yaml"),
                   help="experiment config (default configs/ple_esmm.yaml)")
    args = p.parse_args(argv)

    sim_dir, samples_dir, run_dir = (os.path.join(args.out, d)
                                     for d in ("sim", "samples", "run"))
    simulation = run_simulation(sim_dir, args.impressions, args.seed)
    observe_at = simulation["world"]["window_end_ts"]
    samples = run_pipeline(sim_dir, samples_dir, observe_at, args.pipeline_config)
    config = load_experiment(args.config)
    training = run_training(samples_dir, run_dir, config)
    test_dir = os.path.join(args.out, "test_day")
    examples = write_test_day(samples_dir, config, test_dir)
    scored = serve_and_score(training["export"], config.export.model_name, examples, test_dir)
    metrics = report_grpc_scores(examples, samples_dir, config, scored)

    report = {"simulate_seconds": simulation["seconds"],
              "pipeline_seconds": samples["wall_seconds"],
              "samples_written": samples["samples_written"],
              "train_seconds": training["wall_seconds"], "export": training["export"],
              "score_seconds": scored["wall_seconds"], "grpc": scored["stats"],
              "max_abs_diff_grpc_vs_in_process": scored["max_abs_diff"], "metrics": metrics}
    with open(os.path.join(args.out, "demo_report.json"), "w") as f:
        json.dump(report, f, indent=2)
    print(f"\n== done ==\nsimulate {simulation['seconds']} s, pipeline "
          f"{samples['wall_seconds']} s ({samples['rows_per_second']:,.0f} rows/s), train "
          f"{training['wall_seconds']} s, serve + score {scored['wall_seconds']} s; "
          f"report: {os.path.join(args.out, 'demo_report.json')}")
    if scored["max_abs_diff"] > 1e-6:
        print(f"error: gRPC and in-process scores differ by {scored['max_abs_diff']:.2e} "
              "(> 1e-6)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
