"""Our PLE (``MultiTaskRanker``) vs DeepCTR's ``PLE`` (deepctr 0.9.4) on the same data, one run.

Exact commands (deepctr is installed for this benchmark only, without its dependencies; the
script runs this install itself when deepctr is missing)::

    .venv/bin/pip install --no-deps deepctr==0.9.4
    .venv/bin/python benchmarks/deepctr_comparison.py [--repeats 3] [--models ...]

Data (numpy, fixed seed): ``--train`` rows (200k) and ``--test`` rows (50k) of 12 categorical
features with vocabularies [100000, 50000, 10000, 5000, 1000, 1000, 100, 100, 50, 20, 10, 4]
(power-law id frequencies; the first is the item), a 20-long click sequence over the item
vocabulary (0-20 clicks, padded) and 4 dense features. Two binary tasks, ``ctr`` and ``cvr``,
drawn from a fixed random logistic truth of one family (per-id effects, correlated between the
tasks; an interest match between the item and the clicked items; a dense interaction)::

    logit_t = b_t + sum_f s_f z_tf[id_f] + beta_t <u[item], mean u[clicks]> + w_t.x + g_t x0 x1

Both models: embedding dim 16 (the sequence mean-pooled over its non-pad entries with the item
table), PLE with 2 shared + 2 task experts per level, 2 levels, experts (256, 128), task towers
(64,), two independent binary tasks, Adam 1e-3, batch 1024, one epoch. Both are fed the same
way, from memory: the numpy arrays cut into batches of 1024 up front and served by
``tf.data.Dataset.from_tensor_slices(...).prefetch`` (neither pays a per-example input cost).

Models (``--models``, default the first three, run in turns ``--repeats`` times):

* ``deepctr``: DeepCTR's PLE as its docs build it: int32 ids (``SparseFeat``; the sequence a
  ``VarLenSparseFeat(combiner="mean")`` with ``embedding_name`` of the item feature; 4
  ``DenseFeat``), its defaults otherwise (``l2_reg_embedding=1e-5``, float32, Keras'
  ``steps_per_execution=1``).
* ``deepctr-hashed``: the same DeepCTR model fed the embedding rows *our* model looks up,
  ``to_hash_bucket_fast(str(id), vocab) + 1``: the same hash collisions as ours, so its AUC is
  the like-for-like reference for ours (DeepCTR's own ``use_hash=True`` hashes a shared
  sequence into other rows than its item feature, so it is not used).
* ``ours``: built as a user would: an ``ExperimentConfig`` (ids with buckets = the vocabulary
  sizes, ``encoding: integer`` unless ``--id-encoding hash``, dim 16; the sequence sharing the item table; 4 numerics; ``model.tower: ple``,
  ``head: independent``, ``model.expert_init: identical`` unless ``--expert-init
  independent`` (every expert of a level starts from one draw, as DeepCTR's experts, all
  built with ``seed=1024``, do); Adam 1e-3, batch 1024, ``training.mixed_precision: true``
  (mixed_bfloat16), ``steps_per_execution`` 16) -> ``ranking.train.build_model``. The ids are
  fed as strings (``str(id)``, the sequence pad ``""``) and turned into rows in-graph by
  ``FeatureEmbedding`` (the string handling is ~1% of a training step: tf.profiler).
* ``ours-fp32``: the same with ``training.mixed_precision: false``.

Printed per model: steady-state examples/s (the first ``--skip`` steps left out; the median
over windows of >= 32 steps, and the mean over the whole steady part), the test AUC per task;
then the oracle AUC (AUC of the true probability on the test rows), the speed-ups and the load
average before and after. Medians over the repeats.

Measured on a 2-core Intel Xeon host with AMX (bfloat16 matmuls in hardware; the kind of
host the issue's ~16k examples/s for DeepCTR comes from), idle, ``--repeats 3 --models
deepctr ours``: deepctr 17,341 examples/s, AUC ctr 0.7669 / cvr 0.7664; ours 33,144,
0.7672 / 0.7671; speed-up **1.91x** (per round 1.79, 1.91, 1.84); another run 1.81x (19,044
vs 34,564; per round 1.73, 1.85, 1.75). XLA on this host (the PLE tower's ``call`` under
``tf.function(jit_compile=True)``, a scratch run of 60k rows): 4x slower in mixed_bfloat16
(6.4k vs 26.0k examples/s) and 1.5x slower in float32 (9.7k vs 14.9k), so nothing is compiled.

Measured earlier (2 cores, AMD Zen 4), ours with ``--id-encoding integer`` (the default: the id is
the row, as DeepCTR's label-encoded ids), DeepCTR's N(0, 1e-4) embedding init and 1e-5
embedding L2 and its identical expert init (the defaults of ``--embedding-init*`` /
``--embedding-l2`` / ``--expert-init``): ``--repeats 3 --models deepctr ours`` at load 3.6-4.9
(another job on the machine): deepctr 17,274 examples/s, AUC ctr 0.7670 / cvr 0.7664; ours
26,427, 0.7671 / 0.7672; speed-up 1.53x (per round 1.60, 1.51, 1.52; at load 1.5-1.8 it was
1.58x, 25,255 vs 39,795 examples/s, with independent experts: the init does not change the
speed). Per seed (``--repeats 1 --seed S``), CTR AUC ours / DeepCTR: 0 0.7671 / 0.7670, 1
0.7669 / 0.7673, 2 0.7661 / 0.7669; seeds 3-5 (the script's builders, data and batches driven
from a scratch script): 0.7671 / 0.7667, 0.7662 / 0.7651, 0.7659 / 0.7662: over seeds 0-5 both
average 0.7665-0.7666, the per-seed differences (-0.0008 to +0.0011) being the seed-to-seed
spread DeepCTR shows by itself (0.7651-0.7673). With ``--expert-init independent`` (our
default: each expert its own draw) ours is 0.0011-0.0016 CTR AUC below DeepCTR on every seed
(0.7658 / 0.7657 / 0.7659 on seeds 0-2): a softmax mix of distinct random experts averages
their outputs' spread away (at initialization our level-2 output spread is 1/3 and the logits'
1/4 of DeepCTR's), and that start costs ~0.0012 AUC in one epoch. Ours started from DeepCTR's
own initial weights (copied in) reaches DeepCTR's AUC on seeds 0-2 within 0.0001 (0.7669 /
0.7673 / 0.7668): forward pass, loss, gradients and Adam updates of the two models agree to
float32 rounding for equal weights. Earlier, with independent experts and hashed ids into
buckets = vocabulary size (``--id-encoding hash``), both lost ~0.025 AUC to collisions (ours
0.7393, DeepCTR fed the same rows 0.7425) and the speed-up was 1.66x (``--repeats 5``, load
1.0-1.9); float32 alone 1.27x.

Network: DeepCTR's import starts a thread that asks PyPI for a newer version
(``deepctr.utils.check_version``). The script loads ``deepctr.utils`` itself and replaces
``check_version`` by a no-op before ``import deepctr``, and guards ``socket`` for the whole run:
any connection attempt or name lookup is refused and counted (the count is printed: 0).

Shims: none. DeepCTR 0.9.4's models build on ``tensorflow.keras``, which with
``TF_USE_LEGACY_KERAS=1`` (set by ``import ranking``) is tf_keras 2.21; the script prints the
module DeepCTR's model class comes from.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

import ranking  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np  # noqa: E402

VOCABS = [100_000, 50_000, 10_000, 5_000, 1_000, 1_000, 100, 100, 50, 20, 10, 4]
EFFECT_SCALES = [0.6, 0.5, 0.4, 0.4, 0.3, 0.3, 0.3, 0.3, 0.2, 0.2, 0.2, 0.2]
SEQ_LEN = 20
N_DENSE = 4
EMB_DIM = 16
TASKS = ("ctr", "cvr")
LABELS = {"ctr": "click", "cvr": "conversion"}
SEQ = "hist_item"
ID_NAMES = [f"f{i}" for i in range(len(VOCABS))]  # f0 is the item
DENSE_NAMES = [f"d{i}" for i in range(N_DENSE)]
DEEPCTR = "deepctr==0.9.4"


# --- network guard and deepctr import ------------------------------------------------------

class NetworkGuard:
    """Refuses and counts every outgoing connection and name lookup of this process."""

    def __init__(self):
        self.attempts: list[str] = []

    def install(self):
        guard = self

        def refuse(what):
            def blocked(*args, **kwargs):
                guard.attempts.append(f"{what}{args[1:2] if what == 'connect' else args[:1]}")
                raise OSError(f"network disabled in this benchmark ({what})")
            return blocked

        socket.socket.connect = refuse("connect")
        socket.socket.connect_ex = refuse("connect")
        socket.getaddrinfo = refuse("getaddrinfo")
        socket.create_connection = refuse("create_connection")


def ensure_deepctr() -> None:
    if importlib.util.find_spec("deepctr") is None:
        print(f"installing {DEEPCTR} (no dependencies): {sys.executable} -m pip install "
              f"--no-deps {DEEPCTR}", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                        DEEPCTR], check=True)
        importlib.invalidate_caches()


def import_deepctr():
    """``import deepctr`` without its PyPI version check: ``deepctr.utils`` is loaded first
    with ``check_version`` replaced by a no-op, so the package's ``check_version(__version__)``
    starts no thread."""
    spec = importlib.util.find_spec("deepctr")
    utils_path = os.path.join(os.path.dirname(spec.origin), "utils.py")
    utils_spec = importlib.util.spec_from_file_location("deepctr.utils", utils_path)
    utils = importlib.util.module_from_spec(utils_spec)
    utils_spec.loader.exec_module(utils)
    utils.check_version = lambda version: None
    sys.modules["deepctr.utils"] = utils
    import deepctr  # noqa: F401
    from deepctr.feature_column import DenseFeat, SparseFeat, VarLenSparseFeat
    from deepctr.models import PLE as DeepCTRPLE
    return deepctr, SparseFeat, VarLenSparseFeat, DenseFeat, DeepCTRPLE


# --- data ----------------------------------------------------------------------------------

def _power_law(rng, vocab: int, n: int, exponent: float = 1.1) -> np.ndarray:
    """Ids in [1, vocab) with P(rank k) ~ (k + 10)^-exponent (0 is the sequence pad)."""
    ranks = np.arange(1, vocab, dtype=np.float64)
    p = (ranks + 10.0) ** -exponent
    p /= p.sum()
    ids = rng.permutation(np.arange(1, vocab))  # popular ids are not the small ones
    return ids[rng.choice(vocab - 1, size=n, p=p)].astype(np.int32)


def make_data(n_train: int, n_test: int, seed: int):
    """(train, test): dicts with ``ids`` [n, 12] int32, ``seq`` [n, 20] int32 (0 pads),
    ``dense`` [n, 4] float32, ``p`` {task: true probability}, ``y`` {task: 0/1 float32}."""
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    rho = 0.5  # correlation of the per-id effects of the two tasks
    z = {t: [] for t in TASKS}
    for v in VOCABS:
        a, b = rng.standard_normal(v), rng.standard_normal(v)
        z["ctr"].append(a)
        z["cvr"].append(rho * a + np.sqrt(1 - rho ** 2) * b)
    u = rng.standard_normal((VOCABS[0], 4)) * 0.8  # item "topics"
    u[0] = 0.0
    bias = {"ctr": -1.6, "cvr": -2.6}
    beta = {"ctr": 1.0, "cvr": 0.7}
    w = {t: rng.normal(0.0, 0.3, N_DENSE) for t in TASKS}
    gamma = {"ctr": 0.4, "cvr": -0.3}

    ids = np.stack([_power_law(rng, v, n) for v in VOCABS], axis=1)
    lengths = rng.integers(0, SEQ_LEN + 1, n)
    seq = _power_law(rng, VOCABS[0], n * SEQ_LEN).reshape(n, SEQ_LEN)
    seq[np.arange(SEQ_LEN)[None, :] >= lengths[:, None]] = 0
    dense = rng.standard_normal((n, N_DENSE)).astype(np.float32)
    pooled = u[seq].sum(axis=1) / np.maximum(lengths, 1)[:, None]
    match = (u[ids[:, 0]] * pooled).sum(axis=1)
    p, y = {}, {}
    for t in TASKS:
        logit = bias[t] + beta[t] * match + dense @ w[t] + gamma[t] * dense[:, 0] * dense[:, 1]
        for f, s in enumerate(EFFECT_SCALES):
            logit += s * z[t][f][ids[:, f]]
        p[t] = 1.0 / (1.0 + np.exp(-logit))
        y[t] = (rng.random(n) < p[t]).astype(np.float32)

    def part(sl):
        return {"ids": ids[sl], "seq": seq[sl], "dense": dense[sl],
                "p": {t: p[t][sl] for t in TASKS}, "y": {t: y[t][sl] for t in TASKS}}

    return part(slice(0, n_train)), part(slice(n_train, n))


def deepctr_inputs(d, hashed: bool = False) -> tuple[dict, tuple]:
    """int32 ids for DeepCTR: the raw ids, or (``hashed``) the rows our model looks up (see
    :func:`hashed_ids`)."""
    ids, seq = (hashed_ids(d) if hashed else (d["ids"], d["seq"]))
    x = {name: ids[:, i:i + 1] for i, name in enumerate(ID_NAMES)}
    x[SEQ] = seq
    x.update({name: d["dense"][:, i:i + 1] for i, name in enumerate(DENSE_NAMES)})
    return x, tuple(d["y"][t][:, None] for t in TASKS)


def hashed_ids(d) -> tuple[np.ndarray, np.ndarray]:
    """The embedding rows our model uses, ``to_hash_bucket_fast(str(id), vocab)``, plus 1 (0
    stays the sequence pad; DeepCTR's tables get vocab + 1 rows): DeepCTR fed these sees the
    same hash collisions as ours (DeepCTR's own ``use_hash`` hashes a shared sequence into other
    rows than its item feature, so it is not used)."""
    import tensorflow as tf

    ids = np.stack([tf.strings.to_hash_bucket_fast(d["ids"][:, i].astype(np.bytes_), v).numpy()
                    for i, v in enumerate(VOCABS)], axis=1).astype(np.int32) + 1
    seq = tf.strings.to_hash_bucket_fast(d["seq"].astype(np.bytes_), VOCABS[0]).numpy() + 1
    seq = np.where(d["seq"] == 0, 0, seq).astype(np.int32)
    return ids, seq


def our_inputs(d) -> tuple[dict, dict]:
    """String ids (``str(id)``), ``""`` pads in the sequence, float dense features."""
    x = {name: d["ids"][:, i].astype(np.bytes_) for i, name in enumerate(ID_NAMES)}
    seq = d["seq"].astype(np.bytes_)
    seq[d["seq"] == 0] = b""
    x[SEQ] = seq
    x.update({name: d["dense"][:, i] for i, name in enumerate(DENSE_NAMES)})
    return x, {LABELS[t]: d["y"][t] for t in TASKS}


def batched(inputs, batch_size: int):
    """A dataset of whole batches cut from in-memory arrays (the last one partial)."""
    import tensorflow as tf

    leaves, treedef = _flatten(inputs)
    n = len(leaves[0])
    full = n // batch_size * batch_size
    head = [a[:full].reshape((-1, batch_size) + a.shape[1:]) for a in leaves]
    ds = tf.data.Dataset.from_tensor_slices(tuple(head))
    if full < n:
        ds = ds.concatenate(tf.data.Dataset.from_tensors(tuple(a[full:] for a in leaves)))
    return ds.map(lambda *xs: _unflatten(treedef, xs)).prefetch(tf.data.AUTOTUNE)


def _flatten(tree):
    """(leaves, treedef) of nested tuples/dicts of arrays (keys kept in order)."""
    if isinstance(tree, dict):
        leaves, defs = [], []
        for k, v in tree.items():
            sub, d = _flatten(v)
            leaves += sub
            defs.append((k, d, len(sub)))
        return leaves, ("dict", defs)
    if isinstance(tree, tuple):
        leaves, defs = [], []
        for v in tree:
            sub, d = _flatten(v)
            leaves += sub
            defs.append((None, d, len(sub)))
        return leaves, ("tuple", defs)
    return [tree], ("leaf", None)


def _unflatten(treedef, leaves):
    kind, defs = treedef
    if kind == "leaf":
        return leaves[0]
    out, i = [], 0
    for key, d, count in defs:
        out.append((key, _unflatten(d, leaves[i:i + count])))
        i += count
    return dict(out) if kind == "dict" else tuple(v for _, v in out)


# --- models --------------------------------------------------------------------------------

def our_config(args, mixed_precision: bool):
    from ranking.config import experiment_from_mapping

    return experiment_from_mapping({
        "name": "ple_vs_deepctr",
        "features": {
            "ids": [{"name": n, "buckets": v, "dim": EMB_DIM, "encoding": args.id_encoding}
                    for n, v in zip(ID_NAMES, VOCABS)],
            "sequences": [{"name": SEQ, "share_embedding_with": ID_NAMES[0], "pooling": "mean"}],
            "crosses": [],
            "numerics": [{"name": n} for n in DENSE_NAMES],
            "embedding_init": args.embedding_init,
            "embedding_init_scale": args.embedding_init_scale,
            "embedding_l2": args.embedding_l2,
        },
        "model": {"tower": "ple", "levels": 2, "shared_experts": 2, "task_experts": 2,
                  "expert_units": [256, 128], "expert_init": args.expert_init,
                  "task_tower_units": [64], "head": "independent"},
        "tasks": [{"name": t, "label": LABELS[t]} for t in TASKS],
        "training": {"optimizer": args.optimizer, "learning_rate": 1e-3, "batch_size": args.batch_size,
                     "epochs": 1, "mixed_precision": mixed_precision,
                     "steps_per_execution": args.steps_per_execution, "seed": args.seed},
    })


def our_schema():
    """The schema.json mapping of these samples, read by ranking.data.schema's loader."""
    from ranking.data.schema import Schema

    features = [{"name": n, "dtype": "string", "shape": [], "role": "id"} for n in ID_NAMES]
    features.append({"name": SEQ, "dtype": "string", "shape": [SEQ_LEN], "role": "sequence"})
    features += [{"name": n, "dtype": "float", "shape": [], "role": "feature"}
                 for n in DENSE_NAMES]
    features += [{"name": LABELS[t], "dtype": "int64", "shape": [], "role": "label"}
                 for t in TASKS]
    return Schema.from_json({"features": features, "sequence_length": SEQ_LEN})


def build_ours(args, mixed_precision: bool = True):
    from ranking.train import build_model

    return build_model(our_config(args, mixed_precision), our_schema())


def build_deepctr(args, dc, hashed: bool = False):
    import tensorflow as tf

    _, SparseFeat, VarLenSparseFeat, DenseFeat, DeepCTRPLE = dc
    tf.keras.mixed_precision.set_global_policy("float32")
    tf.keras.utils.set_random_seed(args.seed)
    vocabs = [v + 1 for v in VOCABS] if hashed else VOCABS
    columns = [SparseFeat(n, vocabulary_size=v, embedding_dim=EMB_DIM)
               for n, v in zip(ID_NAMES, vocabs)]
    columns.append(VarLenSparseFeat(
        SparseFeat(SEQ, vocabulary_size=vocabs[0], embedding_dim=EMB_DIM,
                   embedding_name=ID_NAMES[0]), maxlen=SEQ_LEN, combiner="mean"))
    columns += [DenseFeat(n, 1) for n in DENSE_NAMES]
    model = DeepCTRPLE(columns, shared_expert_num=2, specific_expert_num=2, num_levels=2,
                       expert_dnn_hidden_units=(256, 128), tower_dnn_hidden_units=(64,),
                       task_types=("binary", "binary"), task_names=TASKS,
                       l2_reg_embedding=args.deepctr_l2_embedding)
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3),
                  loss=["binary_crossentropy"] * len(TASKS),
                  steps_per_execution=args.deepctr_steps_per_execution)
    return model


# --- timing and evaluation -----------------------------------------------------------------

def _callback_base():
    import tensorflow as tf
    return tf.keras.callbacks.Callback


class StepTimes(_callback_base()):
    """``(steps done, time)`` after every execution (every ``steps_per_execution`` steps)."""

    def __init__(self):
        super().__init__()
        self.marks: list[tuple[int, float]] = []

    def on_train_begin(self, logs=None):
        self.marks = [(0, time.perf_counter())]

    def on_train_batch_end(self, batch, logs=None):
        self.marks.append((batch + 1, time.perf_counter()))


def steady_rates(marks, rows_per_step: list[int], skip: int, window: int):
    """(median window examples/s, mean examples/s) over the steps after the first ``skip``."""
    start = next(i for i, (s, _) in enumerate(marks) if s >= skip)
    cum = np.concatenate([[0], np.cumsum(rows_per_step)])
    rates, i = [], start
    while i < len(marks) - 1:
        j = i + 1
        while j < len(marks) - 1 and marks[j][0] - marks[i][0] < window:
            j += 1
        (s0, t0), (s1, t1) = marks[i], marks[j]
        if s1 - s0 >= window // 2:
            rates.append((cum[s1] - cum[s0]) / (t1 - t0))
        i = j
    (s0, t0), (s1, t1) = marks[start], marks[-1]
    return statistics.median(rates), (cum[s1] - cum[s0]) / (t1 - t0)


def predict_probs(model, ds) -> dict:
    out = model.predict(ds, verbose=0)
    if isinstance(out, dict):  # ours: {task: [n]}
        return {t: np.asarray(out[t]).reshape(-1) for t in TASKS}
    return {t: np.asarray(o).reshape(-1) for t, o in zip(TASKS, out)}  # deepctr: list


def run_once(name, model, train_ds, test_ds, n_train, test, args) -> dict:
    from ranking.metrics import auc

    timer = StepTimes()
    start = time.perf_counter()
    model.fit(train_ds, epochs=1, callbacks=[timer], verbose=0)
    fit_seconds = time.perf_counter() - start
    steps = -(-n_train // args.batch_size)
    rows = [args.batch_size] * (steps - 1) + [n_train - args.batch_size * (steps - 1)]
    median_rate, mean_rate = steady_rates(timer.marks, rows, args.skip, args.window)
    probs = predict_probs(model, test_ds)
    return {"name": name, "median_rate": median_rate, "mean_rate": mean_rate,
            "fit_seconds": fit_seconds,
            **{f"auc_{t}": auc(test["y"][t], probs[t]) for t in TASKS}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", type=int, default=200_000)
    p.add_argument("--test", type=int, default=50_000)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=3, help="runs per model, alternating")
    p.add_argument("--skip", type=int, default=20, help="warm-up steps left out of the rate")
    p.add_argument("--window", type=int, default=32, help="steps per timing window")
    p.add_argument("--steps-per-execution", type=int, default=16,
                   help="ours: training.steps_per_execution")
    p.add_argument("--deepctr-steps-per-execution", type=int, default=1,
                   help="DeepCTR's compile(steps_per_execution=...) (Keras default 1)")
    p.add_argument("--deepctr-l2-embedding", type=float, default=1e-5,
                   help="DeepCTR's l2_reg_embedding (its default 1e-5)")
    p.add_argument("--id-encoding", choices=["integer", "hash"], default="integer",
                   help="our ids: integer (the id is the row, as DeepCTR's label-encoded ids) "
                        "or hash (to_hash_bucket_fast into buckets = vocabulary size)")
    p.add_argument("--embedding-init", choices=["normal", "uniform"], default="normal",
                   help="our tables' initializer (default normal: DeepCTR's N(0, 1e-4))")
    p.add_argument("--embedding-init-scale", type=float, default=1e-4,
                   help="stddev (normal) or bound (uniform; our default config uses 0.05)")
    p.add_argument("--embedding-l2", type=float, default=1e-5,
                   help="our tables' L2 penalty (default DeepCTR's l2_reg_embedding 1e-5)")
    p.add_argument("--expert-init", choices=["identical", "independent"], default="identical",
                   help="our model.expert_init (default identical: DeepCTR's experts all start "
                        "from one seeded draw)")
    p.add_argument("--optimizer", choices=["adam", "lazy_adam"], default="adam",
                   help="our training.optimizer (lazy_adam: table rows updated only when "
                        "looked up; pair it with --embedding-l2 0, as a full-table L2 makes "
                        "every row's gradient nonzero)")
    p.add_argument("--models", nargs="+", default=["deepctr", "deepctr-hashed", "ours"],
                   choices=["deepctr", "deepctr-hashed", "ours", "ours-fp32"],
                   help="deepctr: raw integer ids; deepctr-hashed: the rows our hashing gives "
                        "(same collisions as ours); ours: training.mixed_precision true "
                        "(mixed_bfloat16); ours-fp32: float32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="one run per model and training seed (instead of --repeats runs of "
                        "--seed); prints the paired AUC difference over the seeds")
    p.add_argument("--data-seed", type=int, default=2024)
    args = p.parse_args(argv)

    guard = NetworkGuard()
    guard.install()
    ensure_deepctr()
    import tensorflow as tf

    dc = import_deepctr()
    from ranking.metrics import auc

    load_before = os.getloadavg()
    t0 = time.perf_counter()
    train, test = make_data(args.train, args.test, args.data_seed)
    print(f"TensorFlow {tf.__version__}, deepctr {dc[0].__version__} (its Model: "
          f"{dc[4].__globals__['Model'].__module__}); {os.cpu_count()} cpus; "
          f"data {args.train:,} train / {args.test:,} test rows in "
          f"{time.perf_counter() - t0:.1f} s; positive rate "
          + ", ".join(f"{t} {train['y'][t].mean():.3f}" for t in TASKS), flush=True)
    oracle = {t: auc(test["y"][t], test["p"][t]) for t in TASKS}
    names = args.models
    datasets = {
        "deepctr": lambda: (batched(deepctr_inputs(train), args.batch_size),
                            batched(deepctr_inputs(test), 4096)),
        "deepctr-hashed": lambda: (batched(deepctr_inputs(train, True), args.batch_size),
                                   batched(deepctr_inputs(test, True), 4096)),
        "ours": lambda: (batched(our_inputs(train), args.batch_size),
                         batched(our_inputs(test), 4096)),
    }
    datasets["ours-fp32"] = datasets["ours"]
    datasets = {n: datasets[n]() for n in names}
    builders = {"deepctr": lambda: build_deepctr(args, dc),
                "deepctr-hashed": lambda: build_deepctr(args, dc, hashed=True),
                "ours": lambda: build_ours(args, True),
                "ours-fp32": lambda: build_ours(args, False)}
    results = {n: [] for n in names}
    seeds = args.seeds or [args.seed] * args.repeats
    for r, seed in enumerate(seeds):
        args.seed = seed  # read by the builders
        for n in names:
            model = builders[n]()
            res = run_once(n, model, *datasets[n], args.train, test, args)
            results[n].append(res)
            print(f"  run {r + 1} seed {seed} {n:14s}: {res['median_rate']:8,.0f} examples/s "
                  f"(window median; steady mean {res['mean_rate']:,.0f}), "
                  f"fit {res['fit_seconds']:.1f} s, AUC " + ", ".join(f"{t} {res[f'auc_{t}']:.4f}" for t in TASKS),
                  flush=True)
            del model
            tf.keras.backend.clear_session()
    load_after = os.getloadavg()

    print(f"\nmedians over {len(seeds)} run(s) (seeds {seeds}); steady state = after the "
          f"first {args.skip} steps; ours: mixed_bfloat16 (ours-fp32: float32), "
          f"steps_per_execution {args.steps_per_execution}; DeepCTR: float32, "
          f"steps_per_execution {args.deepctr_steps_per_execution}, l2_reg_embedding "
          f"{args.deepctr_l2_embedding:g}")
    summary = {}
    for n in names:
        rate = statistics.median(x["median_rate"] for x in results[n])
        aucs = {t: statistics.median(x[f"auc_{t}"] for x in results[n]) for t in TASKS}
        summary[n] = rate
        print(f"{n:14s}: {rate:8,.0f} examples/s; test AUC "
              + ", ".join(f"{t} {aucs[t]:.4f}" for t in TASKS))
    print(f"{'oracle':14s}: test AUC " + ", ".join(f"{t} {oracle[t]:.4f}" for t in TASKS))
    for mine in ("ours", "ours-fp32"):
        for other in ("deepctr", "deepctr-hashed"):
            if mine in summary and other in summary:
                paired = [a["median_rate"] / b["median_rate"]
                          for a, b in zip(results[mine], results[other])]
                print(f"speed-up {mine} / {other}: {summary[mine] / summary[other]:.2f}x "
                      f"(ratio of the medians; per round " + ", ".join(f"{x:.2f}" for x in paired)
                      + f", median {statistics.median(paired):.2f}x; target >= 1.5x)")
    if "ours" in results and "deepctr" in results and len(seeds) > 1:
        for t in TASKS:
            diffs = [a[f"auc_{t}"] - b[f"auc_{t}"]
                     for a, b in zip(results["ours"], results["deepctr"])]
            mean, se = statistics.mean(diffs), statistics.stdev(diffs) / len(diffs) ** 0.5
            print(f"{t} AUC ours - deepctr, mean over {len(diffs)} runs: {mean:+.4f} "
                  f"(standard error {se:.4f}; per run "
                  + ", ".join(f"{d:+.4f}" for d in diffs) + "); means ours "
                  f"{statistics.mean(a[f'auc_{t}'] for a in results['ours']):.4f}, deepctr "
                  f"{statistics.mean(b[f'auc_{t}'] for b in results['deepctr']):.4f}")
    print(f"network connection attempts: {len(guard.attempts)} {guard.attempts or ''}")
    print(f"load average (1/5/15 min): before {', '.join(f'{x:.2f}' for x in load_before)}; "
          f"after {', '.join(f'{x:.2f}' for x in load_after)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
