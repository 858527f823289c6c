"""Tower families per domain (issue 5): shared-bottom vs MMoE, PLE, DWG, STAR, PEPNet, PLE+EPNet.

Simulates once (``--impressions``, with the world's domain effects scaled by
``--domain-effect-scale``, see :func:`pipelines.simulator.world.domain_tables`), builds the
samples once, then trains every config of ``--configs`` (the shipped ``configs/*.yaml``, one
feature set) on the same splits with the same budget (``--epochs``, ``--batch-size``; the other
training settings must already agree between the configs, or the run stops) for each seed of
``--seeds``, and prints, as means over the seeds:

* ``data``: per test-day domain the rows, clicks, conversions, the oracle's CTR AUC (the true
  probability's) with its Hanley-McNeil standard error, and the oracle's own |PCOC - 1| (how far
  a perfectly calibrated predictor strays on these rows: the noise floor of a PCOC spread);
* ``overall``: CTR, CVR (on the clicked rows) and CTCVR AUC, their gap to the oracle AUC, CTR
  UAUC, CTR PCOC;
* ``per-domain CTR AUC`` / ``CVR AUC`` / ``CTCVR AUC`` (and their mean over domains),
  ``per-domain CTR PCOC`` with the max over domains of |PCOC - 1| (the PCOC spread), and the
  PCOC against the truth, sum(pred) / sum(p_click) per domain (no label noise in it), with its
  spread; the max is set by the smallest domains (FR|cart has 17 test clicks), so the overall
  table also has the mean over domains of |PCOC - 1| (``ctr_pcoc_mean_dev``, and
  ``ctr_truth_pcoc_mean_dev`` against the truth), the typical domain's miscalibration;
* ``cost``: trainable parameters (all, and without the embedding tables), training
  examples/s of the model alone (16 cached batches, best of 3 windows of 256 steps) and of
  the whole fit (train rows x epochs / fit seconds, which include input, tracing and the
  validation pass);
* a verdict per model against shared-bottom: the change of the mean per-domain CTR AUC and of
  both CTR PCOC spreads, called a win or a loss only when it exceeds the seed-to-seed range of
  either model (with one seed there is no noise estimate and the verdict says so).

    .venv/bin/python benchmarks/scenario_models.py                      # 200k, K = 3, 2 seeds
    .venv/bin/python benchmarks/scenario_models.py --domain-effect-scale 1 --seeds 1
    .venv/bin/python benchmarks/scenario_models.py --data DIR/samples   # reuse samples

Everything is written under ``--workdir`` (a temp dir by default): ``sim/``, ``samples/``,
one run directory per (config, seed) and ``results.json``.

Measured here (2 shared cores, other jobs running; 200k impressions = 143,714 training rows,
27,916 test rows; 1 epoch, batch 256, seeds 0-1; figures are seed means, "noise" the larger
seed-to-seed range of the two models compared; mean-dev = mean over domains of |PCOC - 1|):

``--domain-effect-scale 3`` (the default), STAR with ``domain_features`` and DWG with
``delta_scale: 0.1`` as shipped::

    model           CTR AUC  gap    dom-AUC  max|PCOC-1| (truth)  mean-dev (truth)
    shared_bottom   .8836   .0325  .7945    .388  (.360)          .210  (.167)
    mmoe_esmm       .8848   .0313  .8024    .420  (.408)          .241  (.191)
    ple_esmm        .8860   .0300  .8176    .727  (.433)          .280  (.237)
    dwg_esmm        .8890   .0271  .8113    .473  (.459)          .200  (.195)
    star_esmm       .8861   .0300  .8049    .458  (.286)          .130  (.089)
    pepnet_esmm     .8860   .0301  .8077    .362  (.371)          .230  (.187)
    ple_epnet_esmm  .8884   .0277  .8193    .585  (.406)          .220  (.186)
    oracle          .9161          .8654    label-noise floor of the max .425 (FR|cart, 17 clicks)

CVR AUC on the clicked rows (same runs, from their metrics.json): shared_bottom .8246 (gap to
the oracle .050), MMoE .8368, PLE .8416, DWG .8463, STAR .8395, PEPNet .8469, PLE+EPNet .8527
(gap .022); per-domain CVR AUC means .56-.62 (1-63 test conversions per domain: noise).

Verdicts against shared-bottom: per-domain CTR AUC better beyond seed noise for every
scenario model (PLE+EPNet +.025, DWG +.017, PEPNet +.013, STAR +.010; PLE +.023; MMoE +.008
within noise .018). PCOC: STAR better on the mean deviation (-.080 labels, -.078 truth, noise
.046 / .069); every other change is within seed noise except PLE (worse on the mean deviation)
and DWG (max vs truth +.10). Cost (params / non-embedding / compute-only examples/s):
shared_bottom 2.52M / 92k / 29k, MMoE 2.75M / 320k / 21k, PLE 3.30M / 868k / 13k, DWG 3.43M /
997k / 15k, STAR 3.35M / 921k / 13k, PEPNet 4.26M / 230k / 20k, PLE+EPNet 3.32M / 890k / 13k.

Before the two fixes below (same data and seeds): STAR dom-AUC .7978 (+.003, noise) with max
|PCOC-1| 2.87 (FR|cart PCOC 6-7 in seed 1); DWG (``delta_scale`` 1) .8074, max vs truth .714,
mean-dev vs truth .252.

``--domain-effect-scale 1`` (the default world, previous code): per-domain CTR AUC mean .7679
(shared-bottom), PLE +.008, DWG +.004, MMoE +.003, PLE+EPNet +.0025, PEPNet +.002, STAR -.000
(noise .003; oracle .8149); |PCOC-1| spreads .26-.38 except STAR .89, label-noise floor .245.
The default world's domain effects hardly separate the models at this size: hence K = 3.

``--impressions 600000 --seeds 1 --configs shared_bottom dwg_esmm pepnet_esmm ple_epnet_esmm``
(K = 3, previous code, 432,686 training rows): per-domain CTR AUC mean .8384 / .8375 / .8414 /
.8408 (oracle .8749); |PCOC-1| .189 / .429 / .257 / .422. With 3x the data shared-bottom, which
also gets the country, scene and domain embeddings as inputs, learns the domain interactions
itself: the scenario towers' AUC edge is a small-data edge.

Where a scenario model did not beat shared-bottom, layer or data:

* STAR (was: AUC within noise, PCOC spread 2.9): the layer's wiring, fixed. Partitioned
  normalization got the country/scene/domain embeddings, constant inside a domain: in training
  they normalize to exactly 0, but the moving mean lags the (still slowly moving) embeddings,
  and at serving ``(x - moving_mean) / sqrt(~0 + eps)`` turned a 0.015 lag into inputs of ~0.5
  the tower never saw (putting the training split's per-domain means into the moving
  statistics took FR|cart PCOC 7.24 -> 2.95). Now ``model.star.domain_features`` feeds them to
  the auxiliary network only, as the paper feeds the domain indicator: AUC +.010 and the best
  calibration of all models.
* DWG (was: PCOC spread worse at K = 1, 3 and at 600k): the layer's training, not the row
  counts. Its per-domain calibration varied between seeds 4x more than shared-bottom's (mean
  over domains of |log PCOC_seed0 - log PCOC_seed1| vs truth .36 vs .09); ``shrinkage_k:
  10000`` did not help; ``delta_scale: 0.1`` (the deltas learn 10x slower under Adam) keeps the
  AUC gain and brings the spreads within seed noise of shared-bottom (mean-dev vs truth .252 ->
  .195; shipped).
* PEPNet, PLE+EPNet (and MMoE, PLE, which have no domain-specific parameters): PCOC spread
  within seed noise of shared-bottom: the data. The max over domains is bounded below by label
  noise (.425 at K = 3: a perfectly calibrated predictor strays that far on FR|cart's 17
  clicks); against the truth, every model but STAR under-predicts the search domains (truth
  PCOC ~.6-.8): the users' histories fill up over the simulated week and K = 3 gives search a
  negative history slope, so the per-domain bias moves from day to day (shared-bottom
  US|search: .75 on the train split, .65 on the test day) while calibration fits one offset
  for all domains.
"""
from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

import ranking  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from pipelines.simulator import SimConfig, run_simulation  # noqa: E402
from ranking import demo  # noqa: E402
from ranking.config import load_experiment  # noqa: E402
from ranking.data.input import make_dataset  # noqa: E402
from ranking.data.schema import load_schema  # noqa: E402
from ranking.evaluation import context_frame  # noqa: E402
from ranking.train import build_model, count_rows, sample_files, time_splits, train  # noqa: E402

BASELINE = "shared_bottom"
CONFIGS = (BASELINE, "mmoe_esmm", "ple_esmm", "dwg_esmm", "star_esmm", "pepnet_esmm",
           "ple_epnet_esmm")
# Models with domain-specific parameters (the others only see the domain as an input feature).
SCENARIO = {"dwg_esmm", "star_esmm", "pepnet_esmm", "ple_epnet_esmm"}
# Training settings the benchmark sets itself; every other one must agree between configs.
BUDGET = ("epochs", "batch_size", "seed")
SIM_SEED = 7


# ---- data ----------------------------------------------------------------------------------

def make_samples(work: str, impressions: int, scale: float) -> str:
    sim_dir, samples = os.path.join(work, "sim"), os.path.join(work, "samples")
    start = time.perf_counter()
    summary = run_simulation(SimConfig(out=sim_dir, impressions=impressions, seed=SIM_SEED,
                                       domain_effect_scale=scale), log=io.StringIO())
    print(f"simulated {impressions:,} impressions (domain effect scale {scale}) in "
          f"{time.perf_counter() - start:.0f} s", flush=True)
    demo.run_pipeline(sim_dir, samples, summary["world"]["window_end_ts"],
                      demo.DEFAULT_PIPELINE_CONFIG)
    return samples


def hanley_mcneil_se(a: float, positives: int, negatives: int) -> float:
    """Standard error of an AUC ``a`` from ``positives`` x ``negatives`` pairs (Hanley and
    McNeil, Radiology 1982): with ``q1 = a / (2 - a)``, ``q2 = 2 a^2 / (1 + a)``,
    ``se^2 = (a (1 - a) + (P - 1)(q1 - a^2) + (N - 1)(q2 - a^2)) / (P N)``."""
    if positives == 0 or negatives == 0:
        return float("nan")
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    var = (a * (1 - a) + (positives - 1) * (q1 - a * a)
           + (negatives - 1) * (q2 - a * a)) / (positives * negatives)
    return math.sqrt(max(var, 0.0))


def data_yardstick(samples: str, config) -> dict:
    """Per test-day domain: rows, clicks, conversions, oracle CTR AUC and its standard error,
    and the oracle's PCOC (sum of the true p_click over the clicks: its distance from 1 is pure
    label noise)."""
    from ranking.metrics.auc import auc

    schema = load_schema(samples)
    frame = context_frame(sample_files(samples), schema, config,
                          time_splits(schema, config).test)
    out = {}
    for domain in sorted(set(frame["domain"])):
        rows = frame["domain"] == domain
        click, p = frame["click"][rows], frame["p_click"][rows].astype(np.float64)
        clicks = int(click.sum())
        oracle = float(auc(click, p))
        out[domain] = {"rows": int(rows.sum()), "clicks": clicks,
                       "conversions": int(frame["conversion"][rows].sum()),
                       "oracle_auc": oracle,
                       "oracle_auc_se": hanley_mcneil_se(oracle, clicks, int(rows.sum()) - clicks),
                       "oracle_pcoc": float(p.sum() / clicks) if clicks else float("nan")}
    return out


# ---- training -------------------------------------------------------------------------------

def load_configs(names, epochs: int, batch_size: int) -> dict:
    """The configs with the common budget; stops if other training settings differ."""
    configs = {}
    for name in names:
        config = load_experiment(os.path.join(ROOT, "configs", f"{name}.yaml"))
        configs[name] = dataclasses.replace(config, training=dataclasses.replace(
            config.training, epochs=epochs, batch_size=batch_size, seed=0))
    reference = configs[names[0]].training
    for name, config in configs.items():
        differ = [f.name for f in dataclasses.fields(reference)
                  if getattr(config.training, f.name) != getattr(reference, f.name)]
        if differ:
            raise SystemExit(f"scenario_models: {name}'s training settings {differ} differ from "
                             f"{names[0]}'s; the models would not get the same budget")
    return configs


def model_cost(config, samples: str, steps: int = 256, windows: int = 3) -> dict:
    """Trainable parameters (all, and outside the embedding tables) and steady-state training
    examples/s of a fresh model fed 16 cached batches (compute only: no reads, no parse): the
    best of ``windows`` timed fits of ``steps`` steps after a warm-up fit that traces the step
    (the best, since other processes on the machine only ever slow a window down)."""
    schema = load_schema(samples)
    model = build_model(config, schema)
    batches = make_dataset(sample_files(samples), schema, config, training=False).take(16)
    batches = batches.cache().repeat()
    model.fit(batches, steps_per_epoch=2 * config.training.steps_per_execution, verbose=0)
    seconds = []
    for _ in range(windows):
        start = time.perf_counter()
        model.fit(batches, steps_per_epoch=steps, verbose=0)
        seconds.append(time.perf_counter() - start)
    total = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    tables = sum(int(np.prod(v.shape)) for v in model.embedding.trainable_variables)
    tf.keras.backend.clear_session()
    return {"params": total, "non_embedding_params": total - tables,
            "compute_examples_per_second": steps * config.training.batch_size / min(seconds)}


def metrics_of(report: dict) -> dict:
    """The benchmark's figures from a ``ranking.train`` report."""
    ctr, cvr, ctcvr = (report["tasks"][t] for t in ("ctr", "cvr", "ctcvr"))
    ctr_dom, ctcvr_dom = ctr["slices"]["domain"], ctcvr["slices"]["domain"]
    o = ctr["overall"]
    return {
        "ctr_auc": o["auc"], "ctr_oracle_auc": o["oracle_auc"], "ctr_gap": o["auc_gap"],
        "ctr_uauc": o["uauc"], "ctr_pcoc": o["pcoc"],
        "cvr_auc": cvr["overall"]["auc"], "cvr_gap": cvr["overall"]["auc_gap"],
        "ctcvr_auc": ctcvr["overall"]["auc"], "ctcvr_gap": ctcvr["overall"]["auc_gap"],
        "ctr_auc_by_domain": {d: m["auc"] for d, m in ctr_dom.items()},
        "ctr_gap_by_domain": {d: m["auc_gap"] for d, m in ctr_dom.items()},
        "cvr_auc_by_domain": {d: m["auc"] for d, m in cvr["slices"]["domain"].items()},
        "ctcvr_auc_by_domain": {d: m["auc"] for d, m in ctcvr_dom.items()},
        "ctr_pcoc_by_domain": {d: m["pcoc"] for d, m in ctr_dom.items()},
    }


def truth_pcoc(pcoc_by_domain: dict, data: dict) -> dict:
    """Per domain ``sum(pred) / sum(p_click)``: the model PCOC over the oracle PCOC (both are
    over the same clicks), its calibration against the true rate, free of label noise."""
    return {d: None if p is None else p / data[d]["oracle_pcoc"]
            for d, p in pcoc_by_domain.items()}


def summary_figures(m: dict) -> dict:
    """Means over domains and the PCOC spreads (domains whose metric is undefined skipped)."""
    def mean(values):
        values = [v for v in values if v is not None]
        return statistics.fmean(values) if values else float("nan")

    def deviations(pcocs):
        return [abs(p - 1) for p in pcocs.values() if p is not None]

    return {"ctr_domain_auc_mean": mean(m["ctr_auc_by_domain"].values()),
            "ctr_domain_gap_mean": mean(m["ctr_gap_by_domain"].values()),
            "cvr_domain_auc_mean": mean(m["cvr_auc_by_domain"].values()),
            "ctcvr_domain_auc_mean": mean(m["ctcvr_auc_by_domain"].values()),
            "ctr_pcoc_spread": max(deviations(m["ctr_pcoc_by_domain"])),
            "ctr_truth_pcoc_spread": max(deviations(m["ctr_truth_pcoc_by_domain"])),
            "ctr_pcoc_mean_dev": mean(deviations(m["ctr_pcoc_by_domain"])),
            "ctr_truth_pcoc_mean_dev": mean(deviations(m["ctr_truth_pcoc_by_domain"]))}


def run_one(config, samples: str, work: str, train_rows: int, data: dict) -> dict:
    run_dir = os.path.join(work, f"{config.name}-seed{config.training.seed}")
    summary = train(config, samples, run_dir, export=False, verbose=0)
    tf.keras.backend.clear_session()
    m = metrics_of(summary["report"])
    m["ctr_truth_pcoc_by_domain"] = truth_pcoc(m["ctr_pcoc_by_domain"], data)
    m.update(summary_figures(m))
    m.update(fit_seconds=summary["fit_seconds"], epochs=summary["epochs"],
             examples_per_second=train_rows * summary["epochs"] / summary["fit_seconds"])
    print(f"{config.name:<15} seed {config.training.seed}: CTR AUC {m['ctr_auc']:.4f} "
          f"(domain mean {m['ctr_domain_auc_mean']:.4f}), CTCVR AUC {m['ctcvr_auc']:.4f}, "
          f"max |PCOC-1| {m['ctr_pcoc_spread']:.3f} (vs truth "
          f"{m['ctr_truth_pcoc_spread']:.3f}), {summary['fit_seconds']:.0f} s",
          flush=True)
    return m


# ---- tables ---------------------------------------------------------------------------------

def seed_mean(runs: list[dict], key: str):
    """Mean over seeds of a figure, or of each domain's figure for a per-domain dict."""
    if isinstance(runs[0][key], dict):
        return {d: _mean_or_none([r[key][d] for r in runs]) for d in runs[0][key]}
    return _mean_or_none([r[key] for r in runs])


def seed_range(runs: list[dict], key: str) -> float:
    values = [r[key] for r in runs]
    return max(values) - min(values)


def _mean_or_none(values):
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def _cell(value, digits: int = 4) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:.{digits}f}"


def print_data(data: dict) -> None:
    print("\n== data: the test day per domain (the oracle is the simulator's true p_click) ==")
    print(f"{'domain':<10}{'rows':>7}{'clicks':>8}{'convs':>7}{'oracle_auc':>12}{'+-se':>7}"
          f"{'oracle|pcoc-1|':>16}")
    for d, v in data.items():
        print(f"{d:<10}{v['rows']:>7}{v['clicks']:>8}{v['conversions']:>7}"
              f"{_cell(v['oracle_auc']):>12}{_cell(v['oracle_auc_se'], 3):>7}"
              f"{_cell(abs(v['oracle_pcoc'] - 1), 3):>16}")
    print(f"max over domains of the oracle's |PCOC - 1| (the label-noise floor of a PCOC "
          f"spread): {max(abs(v['oracle_pcoc'] - 1) for v in data.values()):.3f}")


def print_overall(results: dict) -> None:
    print("\n== overall (means over seeds) ==")
    keys = ("ctr_auc", "ctr_oracle_auc", "ctr_gap", "ctr_uauc", "ctr_pcoc", "cvr_auc", "cvr_gap",
            "ctcvr_auc", "ctcvr_gap", "ctr_domain_gap_mean", "ctr_pcoc_mean_dev", "ctr_truth_pcoc_mean_dev")
    print(f"{'model':<16}" + "".join(f"{k:>20}" for k in keys))
    for name, runs in results.items():
        print(f"{name:<16}" + "".join(f"{_cell(seed_mean(runs, k)):>20}" for k in keys))


def print_per_domain(results: dict, data: dict, key: str, title: str, summary_key: str,
                     oracle: dict | None) -> None:
    domains = list(data)
    print(f"\n== {title} (means over seeds) ==")
    print(f"{'model':<16}" + "".join(f"{d:>10}" for d in domains) + f"{summary_key:>22}")
    if oracle is not None:
        print(f"{'oracle':<16}" + "".join(f"{_cell(oracle[d]):>10}" for d in domains)
              + f"{_cell(statistics.fmean(oracle.values())):>22}")
    for name, runs in results.items():
        per = seed_mean(runs, key)
        print(f"{name:<16}" + "".join(f"{_cell(per.get(d)):>10}" for d in domains)
              + f"{_cell(seed_mean(runs, summary_key)):>22}")


def print_cost(results: dict, costs: dict) -> None:
    print("\n== cost (examples/s: compute-only on cached batches; fit: train rows x epochs / "
          "fit seconds, incl. input, tracing, validation) ==")
    print(f"{'model':<16}{'params':>12}{'non-embedding':>15}{'examples/s':>12}"
          f"{'fit ex/s':>10}{'fit_s':>8}")
    for name, runs in results.items():
        c = costs[name]
        print(f"{name:<16}{c['params']:>12,}{c['non_embedding_params']:>15,}"
              f"{c['compute_examples_per_second']:>12,.0f}"
              f"{seed_mean(runs, 'examples_per_second'):>10,.0f}"
              f"{seed_mean(runs, 'fit_seconds'):>8.1f}")


def verdict(base: list[dict], runs: list[dict]) -> str:
    """Change of the mean per-domain CTR AUC and of the CTR PCOC spreads (against the labels
    and against the truth) from the baseline, judged against the larger seed-to-seed range of
    the two."""
    parts = []
    for key, better, what in (("ctr_domain_auc_mean", 1, "per-domain AUC mean"),
                              ("ctr_pcoc_spread", -1, "PCOC spread"),
                              ("ctr_truth_pcoc_spread", -1, "vs truth"),
                              ("ctr_pcoc_mean_dev", -1, "mean |PCOC-1|"),
                              ("ctr_truth_pcoc_mean_dev", -1, "vs truth")):
        delta = seed_mean(runs, key) - seed_mean(base, key)
        noise = max(seed_range(base, key), seed_range(runs, key)) if len(runs) > 1 else None
        if noise is None:
            call = "better" if delta * better > 0 else "worse"
            call += " (1 seed: no noise estimate)"
        elif abs(delta) <= noise:
            call = f"within seed noise {noise:.4f}"
        else:
            call = "better" if delta * better > 0 else "worse"
        parts.append(f"{what} {delta:+.4f} {call}")
    return "; ".join(parts)


def print_verdicts(results: dict) -> None:
    print(f"\n== verdict vs {BASELINE} (means over seeds) ==")
    for name, runs in results.items():
        if name != BASELINE:
            kind = "scenario" if name in SCENARIO else "multi-task"
            print(f"{name:<16}[{kind:<10}] {verdict(results[BASELINE], runs)}")


# ---- main -------------------------------------------------------------------------------------

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="ranking-pipeline output to reuse (default: simulate)")
    p.add_argument("--impressions", type=int, default=200_000)
    p.add_argument("--domain-effect-scale", type=float, default=3.0,
                   help="K of the simulated world's domain differences (default 3; 1 = the "
                        "default world)")
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--workdir", default=None)
    args = p.parse_args(argv)
    names = [BASELINE] + [n for n in args.configs if n != BASELINE]
    work = args.workdir or tempfile.mkdtemp(prefix="scenario_models_")
    os.makedirs(work, exist_ok=True)
    samples = args.data or make_samples(work, args.impressions, args.domain_effect_scale)
    configs = load_configs(names, args.epochs, args.batch_size)
    base_config = configs[BASELINE]
    schema = load_schema(samples)
    train_rows = count_rows(sample_files(samples), time_splits(schema, base_config).train)
    data = data_yardstick(samples, base_config)
    print(f"{train_rows:,} training rows; budget: {args.epochs} epoch(s), batch "
          f"{args.batch_size}, {args.seeds} seed(s); workdir {work}", flush=True)

    results = {name: [] for name in names}
    for seed in range(args.seeds):
        for name, config in configs.items():
            config = dataclasses.replace(config, training=dataclasses.replace(
                config.training, seed=seed))
            results[name].append(run_one(config, samples, work, train_rows, data))
    # After training, so that the timing runs warm and the 2 cores are not shared with it.
    costs = {name: model_cost(config, samples) for name, config in configs.items()}
    with open(os.path.join(work, "results.json"), "w") as f:
        json.dump({"args": vars(args), "data": data, "costs": costs, "runs": results}, f,
                  indent=2)

    print_data(data)
    print_overall(results)
    oracle = {d: v["oracle_auc"] for d, v in data.items()}
    print_per_domain(results, data, "ctr_auc_by_domain", "per-domain CTR AUC",
                     "ctr_domain_auc_mean", oracle)
    print_per_domain(results, data, "cvr_auc_by_domain", "per-domain CVR AUC (clicked rows)",
                     "cvr_domain_auc_mean", None)
    print_per_domain(results, data, "ctcvr_auc_by_domain", "per-domain CTCVR AUC",
                     "ctcvr_domain_auc_mean", None)
    print_per_domain(results, data, "ctr_pcoc_by_domain", "per-domain CTR PCOC",
                     "ctr_pcoc_spread", None)
    print_per_domain(results, data, "ctr_truth_pcoc_by_domain",
                     "per-domain CTR PCOC against the truth, sum(pred) / sum(p_click)",
                     "ctr_truth_pcoc_spread", None)
    print_cost(results, costs)
    print_verdicts(results)
    print(f"\nresults: {os.path.join(work, 'results.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
