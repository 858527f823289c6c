"""Examples/s of iterating :func:`ranking.data.make_dataset` (batch 1024) on generated samples.

Writes ``--examples`` samples of the pipeline's schema (sequence length 20, truth columns,
the device/price extras of ``configs/pipeline.yaml``; ``ts`` spread over 7 days) to
``--files`` TFRecord files in a temporary directory, then iterates the dataset of the
experiment config's features ``--repeats`` times per mode and prints the best examples/s and
the least process CPU time per example (all threads):

* ``eval``: no shuffle, all rows;
* ``train``: shuffled (config's shuffle_buffer), all rows;
* ``train+time``: shuffled, only the train split (the time filter parses ``ts`` first);
* ``test+time``: no shuffle, only the last day.

    python benchmarks/input_throughput.py [--examples 200000] [--files 4] [--repeats 3] \
        [--shuffle-buffer N]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import ranking  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from pipelines.config import SampleConfig, from_mapping  # noqa: E402
from pipelines.samples.example import encode, sample_schema, schema_json  # noqa: E402
from ranking.config import load_experiment  # noqa: E402
from ranking.data import load_schema, make_dataset, split_by_time  # noqa: E402

START_TS = 1_767_225_600
DAYS = 7
DISTINCT = 20_000  # distinct records encoded; the files repeat them (encoding is the slow part)


def write_samples(out_dir: str, n: int, n_files: int, seed: int = 0) -> None:
    cfg = from_mapping(SampleConfig, {"extra_columns": [
        {"name": "device", "kind": "categorical"}, {"name": "price", "kind": "numeric"}]})
    specs = sample_schema(cfg, with_truth=True)
    L, K = cfg.sequence.length, cfg.sequence.impression_length
    observe_at = START_TS + DAYS * 86_400
    os.makedirs(os.path.join(out_dir, "samples"), exist_ok=True)
    with open(os.path.join(out_dir, "schema.json"), "w") as f:
        f.write(schema_json(specs, cfg, observe_at))
    rng = np.random.default_rng(seed)
    records = []
    for i in range(min(n, DISTINCT)):
        k = int(rng.integers(0, L + 1))
        items = [f"p{int(x):05d}" for x in rng.integers(0, 20_000, k)]
        cats = [f"c{int(x):03d}" for x in rng.integers(0, 200, k)]
        m = int(rng.integers(0, K + 1))
        imp_cats = [f"c{int(x):03d}" for x in rng.integers(0, 200, m)]
        records.append(encode({
            "impression_id": f"imp{i}", "user_id": f"u{int(rng.integers(0, 5000))}",
            "item_id": f"p{int(rng.integers(0, 20_000)):05d}",
            "category_id": f"c{int(rng.integers(0, 200)):03d}", "country": "US",
            "scene": "home", "domain": "US|home",
            "ts": START_TS + int(rng.integers(0, DAYS * 86_400)), "device": "ios",
            "price": float(rng.lognormal(3, 1)),
            "seq_item_ids": items + [""] * (L - k), "seq_category_ids": cats + [""] * (L - k),
            "seq_click_ts": [START_TS] * k + [-1] * (L - k), "seq_length": k,
            "last_click_item_id": items[0] if k else "",
            "last_click_category_id": cats[0] if k else "",
            "cross_seq_item_x_item": [int(x) for x in rng.integers(0, 100_000, k)] + [-1] * (L - k),
            "cross_seq_category_x_category":
                [int(x) for x in rng.integers(0, 10_000, k)] + [-1] * (L - k),
            "seq_imp_category_ids": imp_cats + [""] * (K - m),
            "cross_imp_category_x_category":
                [int(x) for x in rng.integers(0, 10_000, m)] + [-1] * (K - m),
            "imp_count": 4 * m, "click_count": k, "item_imp_count": int(rng.integers(0, 100)),
            "item_click_count": int(rng.integers(0, 10)),
            "click": int(rng.random() < 0.1), "conversion": int(rng.random() < 0.01), "refund": 0,
            "net_conversion": 0, "click_ts": -1, "pay_ts": -1, "refund_ts": -1,
            "observe_at": observe_at, "p_click": 0.1, "p_pay": 0.01, "p_refund": 0.05,
            "user_tier": "light"}, specs))
    writers = [tf.io.TFRecordWriter(os.path.join(
        out_dir, "samples", f"part-{k:05d}-of-{n_files:05d}.tfrecord")) for k in range(n_files)]
    for i in range(n):
        writers[i % n_files].write(records[i % len(records)])
    for w in writers:
        w.close()


def measure(ds: tf.data.Dataset, repeats: int) -> tuple[float, float, int]:
    """Best examples/s, least process CPU time (all threads) per example in us, rows."""
    best, cpu, rows = 0.0, float("inf"), 0
    for _ in range(repeats):
        start, cpu_start, rows = time.perf_counter(), time.process_time(), 0
        for _, labels in ds:
            rows += int(labels["click"].shape[0])
        best = max(best, rows / (time.perf_counter() - start))
        cpu = min(cpu, (time.process_time() - cpu_start) / rows * 1e6)
    return best, cpu, rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--examples", type=int, default=200_000)
    p.add_argument("--files", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--config", default=os.path.join(os.path.dirname(HERE), "configs",
                                                     "ple_esmm.yaml"))
    p.add_argument("--modes", default="eval,train,train+time,test+time")
    p.add_argument("--shuffle-buffer", type=int, default=None,
                   help="override the config's training.shuffle_buffer")
    args = p.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="input_bench_")
    try:
        t0 = time.perf_counter()
        write_samples(tmp, args.examples, args.files)
        print(f"wrote {args.examples} examples in {args.files} files "
              f"({time.perf_counter() - t0:.1f}s)")
        schema = load_schema(tmp)
        config = load_experiment(args.config)
        if args.shuffle_buffer:
            config = dataclasses.replace(config, training=dataclasses.replace(
                config.training, shuffle_buffer=args.shuffle_buffer))
        print(f"config {os.path.basename(args.config)}, shuffle_buffer "
              f"{config.training.shuffle_buffer}")
        train_range, test_range = split_by_time(tmp, config.training.test_days)
        modes = {"eval": dict(training=False), "train": dict(training=True),
                 "train+time": dict(training=True, time_range=train_range),
                 "test+time": dict(training=False, time_range=test_range)}
        for mode in args.modes.split(","):
            ds = make_dataset(tmp, schema, config, batch_size=args.batch_size, **modes[mode])
            rate, cpu, rows = measure(ds, args.repeats)
            print(f"{mode:>11}: {rate:>10,.0f} examples/s out, "
                  f"{rate * args.examples / rows:>10,.0f} read/s, cpu {cpu:.2f} us/example "
                  f"({rows} rows, batch "
                  f"{args.batch_size}, {len(config.feature_names)} features + "
                  f"{len(config.label_names)} labels parsed)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
