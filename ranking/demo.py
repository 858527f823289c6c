"""The end-to-end demo (``make demo``): every stage of the product on simulated logs.

Stages, each timed, all files under ``--out``:
  1. ``sim/``: ``ranking-simulate`` writes the raw impression logs and their truth;
  2. ``samples/``: ``ranking-pipeline`` builds the training samples on the local runner,
     with labels as observed at the end of the simulated window;
  3. ``run/``: ``ranking-train`` fits the experiment (default ``configs/ple_esmm.yaml``) on
     all days but the last two, stops early on the next-to-last, evaluates on the last
     (metrics per task, domain and user tier, oracle AUC beside model AUC) and exports the
     SavedModel to ``run/export/<model>/<version>/``.

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


def run_training(samples_dir: str, run_dir: str, config_path: str) -> dict:
    start = _stage(f"3. train {os.path.basename(config_path)} -> {run_dir}")
    shutil.rmtree(run_dir, ignore_errors=True)
    summary = train.train(load_experiment(config_path), samples_dir, run_dir)
    print(format_table(summary["report"]))
    print(f"exported: {summary['export']}")
    summary["wall_seconds"] = round(time.perf_counter() - start, 1)
    return summary


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
    training = run_training(samples_dir, run_dir, args.config)

    report = {"simulate_seconds": simulation["seconds"],
              "pipeline_seconds": samples["wall_seconds"],
              "samples_written": samples["samples_written"],
              "train_seconds": training["wall_seconds"], "export": training["export"],
              "metrics": training["report"]}
    with open(os.path.join(args.out, "demo_report.json"), "w") as f:
        json.dump(report, f, indent=2)
    print(f"\n== done ==\nsimulate {simulation['seconds']} s, pipeline "
          f"{samples['wall_seconds']} s ({samples['rows_per_second']:,.0f} rows/s), train "
          f"{training['wall_seconds']} s; report: {os.path.join(args.out, 'demo_report.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
