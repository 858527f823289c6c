"""Simulate + sample builder on N impressions, against a plain Beam read -> TFRecord copy.

Runs, in one go and each in its own process (so that peak memory is per stage):
  1. ``ranking-simulate`` writing N impressions (CSV) and their truth files;
  2. the *baseline*: the same runner reads the same files with the same reader and writes
     each row as a ``tf.train.Example`` of its raw columns to TFRecords, nothing else;
  3. ``ranking-pipeline`` on the same files: the like-for-like comparison;
  4. ``ranking-pipeline --truth``: the same plus the join of the simulator's truth files
     (another 1M rows read and shuffled), as the demo runs it; ``--no-truth`` skips it.
Stages 2-4 alternate ``--repeats`` times; medians are printed with the ratios to the
baseline's wall time measured in this run. Target (issue 2): stage 3 / stage 2 <= 3.

    python benchmarks/pipeline_throughput.py --impressions 1000000 [--repeats 3]
    python benchmarks/pipeline_throughput.py --impressions 1000000 -- --direct_num_workers=2 \\
        --direct_running_mode=multi_processing     # Beam options for both Beam stages
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def timed(cmd: list[str]) -> tuple[float, float]:
    """Runs cmd; returns (wall seconds, peak RSS in MiB of it and the children it waited on)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    stderr = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"stage failed: {' '.join(cmd)}\n{stderr[-4000:]}")
    return wall, usage.ru_maxrss / 1024


def baseline(input_glob: str, output: str, beam_args: list[str]) -> int:
    """Plain copy: read rows with the pipeline's reader, write raw-column Examples."""
    import apache_beam as beam
    from tensorflow.core.example import example_pb2

    from pipelines.build_samples import ReadRecords
    from pipelines.io.readers import match_files
    from pipelines.runner import make_pipeline

    def to_example(record) -> bytes:
        example = example_pb2.Example()
        for name, value in (record.row or {}).items():
            example.features.feature[name].bytes_list.value.append(str(value).encode())
        return example.SerializeToString()

    pipeline = make_pipeline(beam_args)
    _ = (pipeline | beam.Create(match_files(input_glob)) | beam.Reshuffle()
         | beam.ParDo(ReadRecords("auto")) | beam.Map(to_example)
         | beam.io.WriteToTFRecord(f"{output}/part", file_name_suffix=".tfrecord"))
    pipeline.run().wait_until_finish()
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    beam_args = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--impressions", type=int, default=1_000_000)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workdir", help="kept if given; default a temp dir, removed at the end")
    p.add_argument("--no-truth", action="store_true", help="skip the run with --truth")
    p.add_argument("--baseline-only", nargs=2, metavar=("GLOB", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.baseline_only:
        return baseline(*args.baseline_only, beam_args)

    work = args.workdir or tempfile.mkdtemp(prefix="bench_pipeline_")
    bin_dir = os.path.dirname(sys.executable)
    sim = os.path.join(work, "sim")
    shutil.rmtree(sim, ignore_errors=True)
    n = args.impressions
    rows = []
    wall, rss = timed([f"{bin_dir}/ranking-simulate", "--out", sim, "--impressions", str(n),
                       "--seed", str(args.seed)])
    rows.append(("simulate", [wall], [rss]))
    with open(os.path.join(sim, "simulation.json")) as f:
        observe_at = json.load(f)["world"]["window_end_ts"]
    inputs = os.path.join(sim, "impressions", "*.csv")
    base_cmd = [sys.executable, __file__, "--baseline-only", inputs,
                os.path.join(work, "baseline"), "--", *beam_args]
    pipe_cmd = [f"{bin_dir}/ranking-pipeline", "--input", inputs, "--output",
                os.path.join(work, "samples"), "--observe-at", str(observe_at),
                "--config", os.path.join(ROOT, "configs", "pipeline.yaml"), *beam_args]
    stages = [("baseline read->TFRecord", base_cmd), ("ranking-pipeline", pipe_cmd)]
    if not args.no_truth:
        stages.append(("ranking-pipeline --truth", pipe_cmd + [
            "--truth", os.path.join(sim, "truth", "*.csv")]))
    runs = {name: ([], []) for name, _ in stages}
    for _ in range(args.repeats):
        for name, cmd in stages:
            # ranking-pipeline refuses an output that already holds samples
            shutil.rmtree(os.path.join(work, "samples"), ignore_errors=True)
            wall, rss = timed(cmd)
            runs[name][0].append(wall)
            runs[name][1].append(rss)
            print(f"  {name}: {wall:.1f} s, {rss:.0f} MiB", flush=True)
    rows += [(name, walls, rsss) for name, (walls, rsss) in runs.items()]
    with open(os.path.join(work, "samples", "summary.json")) as f:
        summary = json.load(f)

    print(f"\n{n:,} impressions, {args.repeats} run(s) of each Beam stage, Beam args "
          f"{beam_args or '(default runner)'}; medians")
    print(f"{'stage':<26}{'wall s':>9}{'rows/s':>11}{'peak MiB':>10}")
    for name, walls, rsss in rows:
        wall = statistics.median(walls)
        print(f"{name:<26}{wall:>9.1f}{n / wall:>11,.0f}{statistics.median(rsss):>10.0f}")
    base = statistics.median(runs["baseline read->TFRecord"][0])
    for name, (walls, _) in list(runs.items())[1:]:
        target = " (target <= 3x)" if name == "ranking-pipeline" else ""
        print(f"{name} / baseline wall time: {statistics.median(walls) / base:.2f}x{target}")
    print(f"pipeline counters balanced: {summary['balanced']}; samples written "
          f"{summary['samples_written']:,}; dead-lettered {summary['dead_lettered']:,}")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
