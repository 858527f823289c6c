"""Steady-state training examples/s of the PLE+ESMM model: input-fed vs compute-only.

Both runs train the same model (``configs/ple_esmm.yaml``, ``build_model`` as ``ranking-train``
builds it) with Keras ``fit`` and ``steps_per_epoch``, in one process:

* ``input``: fed by the full tf.data input, ``make_dataset(files, training=True,
  time_range=<train split>, repeat=True)``, exactly as ``ranking-train``: in the config's
  ``training.order``. ``shuffled`` (``--order shuffled``): TFRecord reads, record shuffle
  (``training.shuffle_buffer``, :func:`ranking.data.input.shuffle_records`), the time filter
  and the parse; ``time`` (the shipped ``ple_esmm.yaml``): the split's records read once in
  ``ts`` order, then batched and parsed;
* ``compute``: the same model fed one cached batch over and over
  (``dataset.take(1).cache().repeat()``), the compute-only limit.

Each ``fit`` call runs one warm-up epoch (tracing, filling the shuffle buffer), which is not
timed, then ``--windows`` timed epochs of ``--steps`` steps (default 65536 examples). The modes
take turns (``--rounds`` fits each) so load from other processes hits them alike; the figures
are the medians over all timed epochs, with the CPU time of the process per example (all
threads) and the cores it kept busy. The ratio input/compute is the share of the compute limit
the input pipeline lets training reach (target >= 0.90); the difference of the CPU times is
what the input pipeline costs per example while training. ``--cached-batches K`` adds a
diagnostic mode fed K distinct cached batches (varied data, no input cost). The records repeat
before the shuffle (``repeat=True``): the steady state, without the refill of the shuffle
buffer at each pass over the train split that made every window spanning a pass boundary ~15%
slower (median ratio 0.827 over 21 windows, at load ~2). ``ranking-train`` repeats by batch
instead (an epoch must be one pass, every row once), so it pays that refill once per epoch;
everything else is its input.

    .venv/bin/python benchmarks/train_throughput.py [--data DIR] [--mixed-precision] \
        [--steps N] [--windows 3] [--rounds 3]

Measured on a 2-core Intel Xeon (AMX) host, 200,000-impression demo samples (one file per
UTC day), idle machine: with the record shuffle of :func:`ranking.data.input.shuffle_records`,
``--rounds 5``: input-fed 15,819 vs compute-only 17,051 examples/s, **ratio 0.928**, input
pipeline 8.4 us CPU/example; ``--rounds 7``: 14,327 vs 15,239, **0.940**, 8.3 us. The code
before it (a per-record ``Dataset.shuffle(100000)``), same host and data: ``--rounds 5``
15,586 vs 17,630, ratio 0.884, 12.8 us/example; ``--rounds 7`` 15,082 vs 16,580, 0.910,
10.8 us/example. (The host's speed drifts between runs, ~15-18k examples/s compute-only;
the ratio within a run is the figure to compare.)

Earlier (2 cores, AMD Zen 4, the same kind of samples, ``--data /tmp/s5/t1 --rounds 7``, idle
machine, ``Dataset.shuffle``): input-fed 20,282 vs compute-only 23,489
examples/s, ratio 0.863, input pipeline 8.2 us CPU/example; another run (``--rounds 3
--cached-batches 256``) 0.879 (8.4 us; 256 distinct cached batches train as fast as one,
1.008, so the gap is the input's CPU, not data variety). The same samples in one undated file
(per-record time filter, parallel interleave) cost 11.1-11.4 us/example and gave 0.854.
Left over: read + batch ~2.0 us, shuffle (100k buffer) ~1.3 us, parse ~4.2 us (of which
~1.8 us is walking each 1.8 KB record's ~40 features, as parsing ``ts`` alone costs); a
smaller buffer saves a little through the cache (20k: -0.4 us, 5k: -1.0 us); a
sequential parse map, a 1-thread tf.data pool or max_intra_op_parallelism 1 stayed within the
run-to-run spread (0.875-0.895).

Older figures (earlier schema with fewer features, load average 2.3-3.1): float32 input-fed
20,025 vs compute-only 21,955 examples/s, ratio 0.912; ``--mixed-precision`` 21,510 vs 22,833, ratio 0.942. Over several runs
the ratio ranged 0.88-0.92 (float32) and 0.84-0.94 (mixed_bfloat16): the input pipeline costs
~8-12 us of CPU per example while training, against ~80-90 us for the step. Before this
benchmark's changes (Keras Adam, autotuned input with the time filter after the shuffle) the
same run gave input-fed 9,609 vs compute-only 9,782 examples/s (ratio 0.98, but half the
speed).

Without ``--data`` the samples are generated first by the simulate and sample-pipeline stages
of ``python -m ranking.demo --out /tmp/train_throughput_demo --impressions 200000`` (reused
when that directory already holds samples).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

import ranking  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf  # noqa: E402

from ranking.config import load_experiment  # noqa: E402
from ranking.data.input import make_dataset  # noqa: E402
from ranking.data.schema import load_schema  # noqa: E402
from ranking.data.input import count_rows  # noqa: E402
from ranking.train import build_model, sample_files, time_splits  # noqa: E402

DEFAULT_DEMO = "/tmp/train_throughput_demo"


def ensure_data(data: str | None, impressions: int) -> str:
    """The sample directory (``schema.json`` + ``samples/``). Without ``data``: the demo's
    samples under ``/tmp/train_throughput_demo``, generated (reused when present) by the first
    two stages of ``python -m ranking.demo --out DIR --impressions N`` (simulate, then the
    sample pipeline; the demo's later stages train and serve, which this benchmark does not
    need)."""
    if data:
        return data
    samples = os.path.join(DEFAULT_DEMO, "samples")
    if not os.path.exists(os.path.join(samples, "schema.json")):
        from ranking import demo

        print(f"generating samples (ranking.demo stages 1-2, {impressions:,} impressions) "
              f"-> {samples}", flush=True)
        with contextlib.redirect_stdout(io.StringIO()):
            simulation = demo.run_simulation(os.path.join(DEFAULT_DEMO, "sim"), impressions,
                                             seed=7)
            demo.run_pipeline(os.path.join(DEFAULT_DEMO, "sim"), samples,
                              simulation["world"]["window_end_ts"],
                              demo.DEFAULT_PIPELINE_CONFIG)
    return samples


class EpochTimer(tf.keras.callbacks.Callback):
    """Wall and CPU (all threads of this process) seconds of every epoch."""

    def __init__(self):
        super().__init__()
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = (time.perf_counter(), time.process_time())

    def on_epoch_end(self, epoch, logs=None):
        self.wall.append(time.perf_counter() - self._start[0])
        self.cpu.append(time.process_time() - self._start[1])


def timed_fit(model, dataset, steps: int, windows: int) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of each timed epoch (the first, warm-up, epoch is dropped)."""
    timer = EpochTimer()
    model.fit(dataset, epochs=1 + windows, steps_per_epoch=steps, callbacks=[timer],
              verbose=0)
    return timer.wall[1:], timer.cpu[1:]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=os.path.join(ROOT, "configs", "ple_esmm.yaml"))
    p.add_argument("--data", help="sample directory (schema.json + samples/); default: "
                                  "generate the demo's")
    p.add_argument("--impressions", type=int, default=200_000)
    p.add_argument("--mixed-precision", action="store_true",
                   help="training.mixed_precision: true (mixed_bfloat16)")
    p.add_argument("--steps", type=int,
                   help="steps per timed epoch (window); default: 65536 examples' worth, a "
                        "multiple of steps_per_execution")
    p.add_argument("--windows", type=int, default=3, help="timed epochs per fit")
    p.add_argument("--rounds", type=int, default=3, help="fits per mode, modes alternating")
    p.add_argument("--cached-batches", type=int, default=0,
                   help="diagnostic third mode: the model fed this many distinct batches of the "
                        "input, cached and repeated (compute on varied data, no input cost; "
                        "e.g. the window's --steps); default 0: off")
    p.add_argument("--batch-size", type=int, help="override training.batch_size")
    p.add_argument("--steps-per-execution", type=int,
                   help="override training.steps_per_execution")
    p.add_argument("--order", choices=["shuffled", "time"],
                   help="override training.order (the shipped ple_esmm.yaml reads in time "
                        "order; shuffled is the costlier input)")
    args = p.parse_args(argv)

    config = load_experiment(args.config)
    training = dataclasses.replace(config.training, mixed_precision=args.mixed_precision)
    if args.batch_size:
        training = dataclasses.replace(training, batch_size=args.batch_size)
    if args.steps_per_execution:
        training = dataclasses.replace(training, steps_per_execution=args.steps_per_execution)
    if args.order:
        training = dataclasses.replace(training, order=args.order)
    config = dataclasses.replace(config, training=training)
    t = config.training
    if args.steps is None:
        spe = t.steps_per_execution
        args.steps = max(spe, round(65536 / t.batch_size / spe) * spe)
    if args.steps % t.steps_per_execution:
        p.error(f"--steps must be a multiple of steps_per_execution ({t.steps_per_execution})")

    data = ensure_data(args.data, args.impressions)
    schema = load_schema(data)
    files = sample_files(data)
    splits = time_splits(schema, config)
    train_rows = count_rows(files, splits.train)

    model = build_model(config, schema)
    # As ranking-train feeds it: the train split in training.order (shuffled files and
    # records, or the split's records in time order), parsed and batched.
    input_ds = make_dataset(files, schema, config, training=True,
                            time_range=splits.train, repeat=True)
    compute_ds = input_ds.take(1).cache().repeat()
    cached = args.cached_batches
    modes = [("input", input_ds), ("compute", compute_ds)]
    if cached:
        modes.append(("cached", input_ds.take(cached).cache().repeat()))

    print(f"TensorFlow {tf.__version__}; {os.cpu_count()} cpus; config {config.name} "
          f"(policy {tf.keras.mixed_precision.global_policy().name}, batch {t.batch_size}, "
          f"steps_per_execution {t.steps_per_execution}, order {t.order}"
          f"{f', shuffle_buffer {t.shuffle_buffer}' if t.order == 'shuffled' else ''}); "
          f"data {data}: {len(files)} file(s), {train_rows:,} train rows "
          f"({train_rows / t.batch_size:.0f} steps/epoch); timing {args.rounds} rounds x "
          f"{args.windows} windows x {args.steps} steps per mode", flush=True)
    load_before = os.getloadavg()
    examples = args.steps * t.batch_size
    wall = {mode: [] for mode, _ in modes}
    cpu = {mode: [] for mode, _ in modes}
    for r in range(args.rounds):
        for mode, ds in modes:
            w, c = timed_fit(model, ds, args.steps, args.windows)
            wall[mode] += w
            cpu[mode] += c
            print(f"  round {r + 1} {mode:8s}: "
                  + " ".join(f"{examples / x:8,.0f}" for x in w) + " examples/s; cpu "
                  + " ".join(f"{1e6 * x / examples:6.1f}" for x in c) + " us/example",
                  flush=True)
    load_after = os.getloadavg()

    rate = {m: examples / statistics.median(s) for m, s in wall.items()}
    cpu_us = {m: 1e6 * statistics.median(s) / examples for m, s in cpu.items()}
    busy = {m: statistics.median(c / w for c, w in zip(cpu[m], wall[m])) for m in wall}
    labels = {"input": "input-fed   ", "compute": "compute-only",
              "cached": f"cached x{cached:<4d}"}
    for mode in wall:
        print(f"{labels[mode]}: {rate[mode]:10,.0f} examples/s (median of {len(wall[mode])} "
              f"windows); cpu {cpu_us[mode]:.1f} us/example, {busy[mode]:.2f} cores busy")
    print(f"ratio input/compute: {rate['input'] / rate['compute']:.3f} (target >= 0.90); "
          f"input pipeline cpu: {cpu_us['input'] - cpu_us['compute']:.1f} us/example")
    if "cached" in rate:
        print(f"diagnostic: ratio input/cached (same compute on {cached} distinct batches, no "
              f"input cost): {rate['input'] / rate['cached']:.3f}; cached/compute-only (what "
              f"varied data costs the step itself): {rate['cached'] / rate['compute']:.3f}")
    print(f"load average (1/5/15 min): before {', '.join(f'{x:.2f}' for x in load_before)}; "
          f"after {', '.join(f'{x:.2f}' for x in load_after)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
