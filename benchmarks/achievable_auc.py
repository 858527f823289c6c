"""How close to the oracle can a model of the simulated logs get? A bound from the truth.

The oracle AUC scores the test day with the true click probability, which holds every latent
of the simulator: each user's click bias (``N(tier shift, 0.4^2)``) and each item's quality
(``0.35 * N(0, 1)`` on the logit). No model sees those; it can only estimate them from the
clicks it has observed. This benchmark measures what that costs, with everything else given
away: it rebuilds the true click logit term by term from the world and the logs
(``pipelines/simulator/world.py``), keeps the true coefficients, tastes, tiers, devices and
sequence counts, and replaces only the two latents by their Bayes (MAP) estimates under
their true priors:

* ``b_u`` per user and ``q_i`` per item maximise
  ``sum_rows [y log s(x + b_u + q_i) + (1 - y) log(1 - s(x + b_u + q_i))]
  - (b_u - shift_tier)^2 / (2 0.4^2) - q_i^2 / (2 0.35^2)`` over the rows observed before the
  test day (``x``: the rest of the true logit; ``y``: a click logged before the test day);
  alternating Newton steps, each a closed-form 1-d update per user or item;
* point in time (``user`` row): on the test day each row's user bias is re-estimated from
  every earlier row of that user, test-day rows included, with the clicks logged by then --
  what a model's point-in-time user features could know at best.

A model that must also learn the coefficients, the tastes and the sequence effect from the
same logs cannot beat this estimator on average, so ``oracle AUC - bound AUC`` is a floor
under any model's gap to the oracle (up to the sampling noise of one test day, which both
share). The AUCs are on the test day of ``ranking.train`` (the last UTC day of the window).

    python benchmarks/achievable_auc.py --sim demo_out/sim
    python benchmarks/achievable_auc.py --impressions 200000   # simulate first (seed 7)
    python benchmarks/achievable_auc.py --sim demo_out/sim --samples demo_out/samples --seeds 2

With ``--samples`` (the pipeline's output for that simulation) it also measures the model's
own ceiling: it trains ``--config`` (default ``configs/ple_esmm.yaml``) as it is and with
truth-derived numerics added to every sample (a copy of the samples with extra float
features, each as the model's other numerics):

* ``+ true tastes, sequence score, popularity; MAP latents``: the true taste affinity, the
  true ``log1p(seq_same + 0.7 seq_related)``, the item's true standardized log popularity,
  and the user bias and item quality MAP-estimated (as above) from the days before the
  sample's day: everything a perfect feature pipeline could know;
* ``+ every true logit term``: the same with the true user bias and item quality.

The second row is what the model's learning costs with every latent handed to it; the first
is the best a feature pipeline could do for this model.

Checks before the figures: the rebuilt logit must reproduce the truth file's ``p_click``
(the user bias is read off as the residual, so it must come out constant within each user)
and the truth's oracle AUC.
"""
from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import os
import sys
import tempfile

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from pipelines.config import CategoryAffinityConfig  # noqa: E402
from pipelines.samples.category_affinity import CoExposure  # noqa: E402
from pipelines.simulator import simulate as S  # noqa: E402
from pipelines.simulator import world as W  # noqa: E402
from ranking.metrics.auc import auc  # noqa: E402

PRIOR_SD_USER = W.USER_CLICK_SIGMA
PRIOR_SD_ITEM = W.CLICK_QUALITY   # 0.35 * N(0, 1)
NEWTON_ROUNDS = 30


def _read(pattern: str, columns: dict) -> pa.Table:
    files = sorted(glob.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no files match {pattern!r}")
    options = pacsv.ConvertOptions(column_types=columns, include_columns=list(columns))
    return pa.concat_tables(pacsv.read_csv(f, convert_options=options) for f in files)


def load(sim_dir: str) -> dict:
    """The logs joined with the truth, as numpy columns indexed into the rebuilt world."""
    with open(os.path.join(sim_dir, "simulation.json")) as f:
        params = json.load(f)["params"]
    fields = {f.name for f in dataclasses.fields(S.SimConfig)}
    fields.discard("out")
    cfg = S.SimConfig(out=sim_dir, **{k: v for k, v in params.items() if k in fields})
    world = S.build_world_for(cfg)
    imp = _read(os.path.join(sim_dir, "impressions", "*.csv"), {
        "impression_id": pa.string(), "user_id": pa.string(), "item_id": pa.string(),
        "country": pa.string(), "scene": pa.string(), "device": pa.string(),
        "ts": pa.int64(), "click_ts": pa.int64(), "price": pa.float64()})
    truth = _read(os.path.join(sim_dir, "truth", "*.csv"), {
        "impression_id": pa.string(), "user_tier": pa.string(), "p_click": pa.float64(),
        "seq_same": pa.int64(), "seq_related": pa.int64()})
    truth = truth.join(imp, "impression_id", join_type="inner")
    users = pacsv.read_csv(os.path.join(sim_dir, "world", "users.csv"))
    col = {name: truth.column(name).to_numpy(zero_copy_only=False) for name in truth.column_names}

    def index_of(values, vocabulary):
        lookup = {v: i for i, v in enumerate(vocabulary)}
        return np.array([lookup[v] for v in values], dtype=np.int64)

    user_ids = users.column("user_id").to_pylist()
    taste_ids = [s.split() for s in users.column("taste_category_ids").to_pylist()]
    cat_index = {c: i for i, c in enumerate(world.category_ids)}
    click_ts = truth.column("click_ts")
    return {
        "cfg": cfg, "world": world, "impression_id": col["impression_id"].astype(str),
        "user": index_of(col["user_id"], user_ids),
        "item": index_of(col["item_id"], world.item_ids),
        "country": index_of(col["country"], W.COUNTRIES),
        "scene": index_of(col["scene"], W.SCENES),
        "device": index_of(col["device"], W.DEVICES),
        "tier": index_of(col["user_tier"], W.TIERS),
        "ts": col["ts"].astype(np.int64),
        "click_ts": np.where(click_ts.is_null().to_numpy(zero_copy_only=False), -1,
                             click_ts.fill_null(-1).to_numpy()).astype(np.int64),
        "price": col["price"], "p_click": col["p_click"],
        "seq_same": col["seq_same"], "seq_related": col["seq_related"],
        "tastes": np.array([[cat_index[c] for c in t] for t in taste_ids], dtype=np.int64),
    }


def taste_affinity(d: dict) -> np.ndarray:
    """Each row's true taste value (the simulator's own function)."""
    world = d["world"]
    return W.taste_affinity(world, d["tastes"][d["user"]], world.item_category[d["item"]],
                            d["tier"])


def sequence_score(d: dict) -> np.ndarray:
    """Each row's ``log1p(seq_same + RELATED_WEIGHT * seq_related)``."""
    return np.log1p(d["seq_same"] + W.RELATED_WEIGHT * d["seq_related"])


def true_logit(d: dict) -> np.ndarray:
    return np.log(d["p_click"]) - np.log1p(-d["p_click"])


def known_logit(d: dict) -> np.ndarray:
    """The true click logit without the user bias and the item quality term."""
    world, cfg = d["world"], d["cfg"]
    T = W.domain_tables(cfg.domain_effect_scale)
    c, s, item = d["country"], d["scene"], d["item"]
    z_price = (np.log(d["price"]) - world.log_price_mean) / world.log_price_sd
    return (T.click_base[c, s] + T.click_pop[c, s] * world.item_z_pop[item]
            + T.click_price[c, s] * z_price + T.click_taste[c, s] * taste_affinity(d)
            + T.click_device[c, s, d["device"]] + T.click_seq[c, s] * sequence_score(d))


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _newton(group, n_groups, offset, labels, value, prior_mean, prior_sd, steps=3):
    """A few Newton steps of the 1-d MAP of ``value[g]`` per group (see the docstring)."""
    for _ in range(steps):
        p = _sigmoid(offset + value[group])
        grad = np.bincount(group, labels - p, n_groups) - (value - prior_mean) / prior_sd ** 2
        hess = np.bincount(group, p * (1 - p), n_groups) + 1.0 / prior_sd ** 2
        value = value + grad / hess
    return value


def map_latents(d, x, rows, labels):
    """Joint MAP of user bias and item quality term from ``rows`` with ``labels``."""
    n_users, n_items = len(d["tastes"]), d["world"].n_items
    user_prior = np.zeros(n_users)
    user_prior[d["user"]] = W.TIER_CLICK_SHIFT[d["tier"]]
    bias, quality = user_prior.copy(), np.zeros(n_items)
    u, i, xr = d["user"][rows], d["item"][rows], x[rows]
    for _ in range(NEWTON_ROUNDS):
        bias = _newton(u, n_users, xr + quality[i], labels, bias, user_prior, PRIOR_SD_USER)
        quality = _newton(i, n_items, xr + bias[u], labels, quality, 0.0, PRIOR_SD_ITEM)
    return bias, quality, user_prior


def point_in_time_bias(d, x, quality, user_prior, test):
    """Each test row's user bias from all earlier rows of its user (clicks logged by then)."""
    order = np.argsort(d["user"], kind="stable")
    user_sorted = d["user"][order]
    starts = np.searchsorted(user_sorted, d["user"][test], side="left")
    ends = np.searchsorted(user_sorted, d["user"][test], side="right")
    lengths = ends - starts
    pair_test = np.repeat(np.arange(test.size), lengths)
    pair_row = order[np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
                     + np.arange(lengths.sum())]
    ts_test = d["ts"][test][pair_test]
    keep = d["ts"][pair_row] < ts_test
    pair_test, pair_row, ts_test = pair_test[keep], pair_row[keep], ts_test[keep]
    clicks = d["click_ts"][pair_row]
    labels = ((clicks >= 0) & (clicks < ts_test)).astype(np.float64)
    offset = x[pair_row] + quality[d["item"][pair_row]]
    prior = user_prior[d["user"][test]]
    return _newton(pair_test, test.size, offset, labels, prior.copy(), prior, PRIOR_SD_USER,
                   steps=8)


def related_precision(d: dict, before_ts: int, top_n: int = W.RELATED_PER_CATEGORY) -> float:
    """Share of true related pairs (the world's graph) in the pipeline's co-exposure related
    sets (:mod:`pipelines.samples.category_affinity`, default settings) built from the
    impressions before ``before_ts``."""
    world = d["world"]
    rows = d["ts"] < before_ts
    users, categories = d["user"][rows], world.item_category[d["item"][rows]]
    counts = np.zeros((len(d["tastes"]), world.n_categories), dtype=np.int64)
    np.add.at(counts, (users, categories), 1)
    affinity = CategoryAffinityConfig()
    co_exposure = CoExposure(own_top=affinity.own_top)
    for row in counts[counts.sum(1) >= affinity.min_user_impressions]:
        seen = np.flatnonzero(row)
        co_exposure.add_user([world.category_ids[c] for c in seen], row[seen])
    index = {c: i for i, c in enumerate(world.category_ids)}
    found = [(index[k], index[c]) for k, related in co_exposure.related(top_n).items()
             for c in related]
    return float(np.mean([world.related_matrix[k, c] for k, c in found])) if found else 0.0


def bound(d: dict) -> dict:
    """The AUCs of the docstring's table, from :func:`load`'s columns."""
    x = known_logit(d)
    truth = true_logit(d)
    world = d["world"]
    quality_term = W.CLICK_QUALITY * world.item_quality[d["item"]]
    user_bias = truth - x - quality_term
    mean_bias = np.bincount(d["user"], user_bias) / np.bincount(d["user"])
    rebuild_error = float(np.abs(user_bias - mean_bias[d["user"]]).max())
    cfg = d["cfg"]
    test_start = cfg.start_ts + (cfg.days - 1) * 86400
    test = np.flatnonzero(d["ts"] >= test_start)
    before = d["ts"] < test_start
    rows = np.flatnonzero(before)
    labels = ((d["click_ts"][rows] >= 0) & (d["click_ts"][rows] < test_start)).astype(float)
    bias, quality, user_prior = map_latents(d, x, rows, labels)
    y = (d["click_ts"][test] >= 0).astype(np.int64)
    u, i, xt = d["user"][test], d["item"][test], x[test]
    pit_bias = point_in_time_bias(d, x, quality, user_prior, test)
    scores = {
        "oracle (true p_click)": truth[test],
        "true quality, user bias at its tier mean": xt + quality_term[test] + user_prior[u],
        "true user bias, item quality at 0": xt + mean_bias[u],
        "user bias and item quality at their priors": xt + user_prior[u],
        "MAP user bias and item quality (days before the test day)": xt + bias[u] + quality[i],
        "MAP item quality, point-in-time MAP user bias": xt + pit_bias + quality[i],
        "true user bias, MAP item quality": xt + mean_bias[u] + quality[i],
    }
    return {
        "related_precision": related_precision(d, test_start),
        "test_rows": int(test.size), "test_clicks": int(y.sum()),
        "rows_before_test_day": int(rows.size), "clicks_before_test_day": int(labels.sum()),
        "max_rebuild_error": rebuild_error,
        "users": int(len(d["tastes"])), "items": int(world.n_items),
        "categories": int(world.n_categories),
        "auc": {name: auc(y, s) for name, s in scores.items()},
    }


def truth_features(d: dict) -> dict:
    """Per row (``d``'s order): the true logit terms and point-in-time MAP latents."""
    world, cfg = d["world"], d["cfg"]
    x = known_logit(d)
    quality = W.CLICK_QUALITY * world.item_quality[d["item"]]
    day = (d["ts"] - cfg.start_ts) // 86400
    map_bias, map_quality = np.zeros(len(x)), np.zeros(len(x))
    for D in range(1, cfg.days):
        start = cfg.start_ts + D * 86400
        rows = np.flatnonzero(d["ts"] < start)
        labels = ((d["click_ts"][rows] >= 0) & (d["click_ts"][rows] < start)).astype(float)
        bias, item_quality, _ = map_latents(d, x, rows, labels)
        on_day = day == D
        map_bias[on_day] = bias[d["user"][on_day]]
        map_quality[on_day] = item_quality[d["item"][on_day]]
    return {
        "truth_taste": taste_affinity(d),
        "truth_seq_score": sequence_score(d),
        "truth_popularity": world.item_z_pop[d["item"]],
        "map_user_bias": map_bias, "map_item_quality": map_quality,
        "truth_user_bias": true_logit(d) - x - quality, "truth_item_quality": quality,
    }


def samples_with(samples: str, out: str, ids: np.ndarray, columns: dict) -> None:
    """A copy of the pipeline output ``samples`` with float features ``columns`` (rows
    matched by impression_id) in every tf.Example and in schema.json."""
    import tensorflow as tf

    position = {k: i for i, k in enumerate(ids)}
    os.makedirs(os.path.join(out, "samples"))
    for path in sorted(glob.glob(os.path.join(samples, "samples", "*.tfrecord*"))):
        with tf.io.TFRecordWriter(os.path.join(out, "samples", os.path.basename(path))) as w:
            for record in tf.data.TFRecordDataset(path):
                example = tf.train.Example.FromString(record.numpy())
                feature = example.features.feature
                row = position[feature["impression_id"].bytes_list.value[0].decode()]
                for name, values in columns.items():
                    feature[name].float_list.value.append(float(values[row]))
                w.write(example.SerializeToString())
    with open(os.path.join(samples, "schema.json")) as f:
        schema = json.load(f)
    schema["features"] += [{"name": n, "dtype": "float", "shape": [], "role": "history",
                            "description": "simulator truth (benchmarks/achievable_auc.py)"}
                           for n in columns]
    with open(os.path.join(out, "schema.json"), "w") as f:
        json.dump(schema, f, indent=2)


def model_ceiling(d: dict, samples: str, config_path: str, seeds: int, work: str) -> dict:
    """CTR AUC of the config as is and with truth features added (see the docstring)."""
    import statistics

    from ranking.config import NumericFeature, load_experiment
    from ranking.train import train

    columns = truth_features(d)
    augmented = os.path.join(work, "samples_with_truth")
    samples_with(samples, augmented, d["impression_id"], columns)
    config = load_experiment(config_path)
    estimable = ("truth_taste", "truth_seq_score", "truth_popularity", "map_user_bias",
                 "map_item_quality")
    every = ("truth_taste", "truth_seq_score", "truth_popularity", "truth_user_bias",
             "truth_item_quality")
    variants = {"as configured": (samples, ()),
                "+ true tastes, sequence score, popularity; MAP latents": (augmented, estimable),
                "+ every true logit term": (augmented, every)}
    result = {}
    for name, (data, extra) in variants.items():
        features = dataclasses.replace(config.features, numerics=[
            *config.features.numerics, *(NumericFeature(n) for n in extra)])
        runs = []
        for seed in range(seeds):
            cfg = dataclasses.replace(config, features=features, training=dataclasses.replace(
                config.training, seed=seed))
            summary = train(cfg, data, os.path.join(work, f"run-{len(result)}-{seed}"),
                            export=False, verbose=0)
            ctr = summary["report"]["tasks"]["ctr"]["overall"]
            runs.append((ctr["auc"], ctr["oracle_auc"]))
            print(f"  {name}, seed {seed}: CTR AUC {ctr['auc']:.4f} (oracle "
                  f"{ctr['oracle_auc']:.4f})", flush=True)
        result[name] = {"auc": statistics.median(a for a, _ in runs),
                        "oracle": statistics.median(o for _, o in runs)}
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--sim", help="a simulator output directory (simulation.json, ...)")
    source.add_argument("--impressions", type=int, help="simulate this many first (seed 7)")
    parser.add_argument("--samples", help="the pipeline's output for --sim: also train the "
                        "model as is and with truth features (slow)")
    parser.add_argument("--config", default=os.path.join(ROOT, "configs", "ple_esmm.yaml"))
    parser.add_argument("--seeds", type=int, default=2, help="training seeds per variant")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    sim_dir = args.sim
    if args.impressions:
        sim_dir = os.path.join(tempfile.mkdtemp(prefix="achievable_auc-"), "sim")
        S.simulate(S.SimConfig(out=sim_dir, impressions=args.impressions, seed=7))
    columns = load(sim_dir)
    result = bound(columns)
    if result["max_rebuild_error"] > 1e-3:
        raise SystemExit(f"the rebuilt logit does not match the truth's p_click: user bias "
                         f"varies by {result['max_rebuild_error']:.4g} within a user")
    print(f"test day: {result['test_rows']} rows, {result['test_clicks']} clicks; before it: "
          f"{result['rows_before_test_day']} rows, {result['clicks_before_test_day']} clicks; "
          f"{result['users']} users, {result['items']} items; rebuilt logit max error "
          f"{result['max_rebuild_error']:.2g}")
    print(f"co-exposure related sets (pipeline's category_affinity, top "
          f"{W.RELATED_PER_CATEGORY}, days before the test day): {result['related_precision']:.1%}"
          f" true related pairs (chance {W.RELATED_PER_CATEGORY}/"
          f"{result['categories'] - 1})")
    oracle = result["auc"]["oracle (true p_click)"]
    print(f"{'CTR scores on the test day':62s} {'AUC':>7s} {'gap':>7s}")
    for name, value in result["auc"].items():
        print(f"{name:62s} {value:7.4f} {oracle - value:7.4f}")
    if args.samples:
        work = tempfile.mkdtemp(prefix="achievable_auc-train-")
        print(f"\ntraining {args.config} on {args.samples}, {args.seeds} seed(s), in {work}")
        result["model"] = model_ceiling(columns, args.samples, args.config, args.seeds, work)
        print(f"{'CTR AUC of the model (median over seeds)':62s} {'AUC':>7s} {'gap':>7s}")
        for name, row in result["model"].items():
            print(f"{name:62s} {row['auc']:7.4f} {row['oracle'] - row['auc']:7.4f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
