"""``ranking-pipeline``: raw impression logs -> TFRecord samples, dead letter, schema, summary.

Arguments it does not know are Beam pipeline options and pass through unchanged, e.g.
``--runner=DataflowRunner --project=P --region=R --temp_location=gs://...``. Without
``--runner`` it runs locally on Beam's in-process runner, with no network access.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import logging
import sys
import time
import uuid

from apache_beam.io.filesystems import FileSystems

from pipelines import build_samples
from pipelines.config import SampleConfig, load_yaml
from pipelines.io import sample_files
from pipelines.io.files import write_text
from pipelines.io.readers import match_files
from pipelines.runner import make_pipeline
from pipelines.samples import category_affinity
from pipelines.samples.example import sample_schema, schema_json
from pipelines.streams import output as stream_output

log = logging.getLogger("ranking-pipeline")


def parse_time(text: str) -> int:
    """Epoch seconds, or an ISO-8601 date/time (UTC unless it says otherwise)."""
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--observe-at {text!r} is neither epoch seconds nor an ISO-8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return int(moment.timestamp())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ranking-pipeline", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", required=True, help="glob of raw log files (csv/jsonl/parquet)")
    p.add_argument("--output", required=True, help="output directory (local or gs://)")
    p.add_argument("--observe-at", required=True, type=parse_time,
                   help="labels as known at this moment: epoch seconds or ISO-8601 time")
    p.add_argument("--config", help="sample config YAML (default: built-in defaults)")
    p.add_argument("--truth", help="glob of simulator truth files to join (evaluation only)")
    p.add_argument("--sequence-length", type=int, help="override sequence.length")
    p.add_argument("--num-shards", type=int,
                   help="override num_shards: sample files per UTC day (0: one per day and "
                        "bundle)")
    stream_output.add_arguments(p)
    return p


def resolve_config(args) -> SampleConfig:
    config = load_yaml(SampleConfig, args.config) if args.config else SampleConfig()
    if args.sequence_length is not None:
        config = dataclasses.replace(config, sequence=dataclasses.replace(
            config.sequence, length=args.sequence_length))
    if args.num_shards is not None:
        config = dataclasses.replace(config, num_shards=args.num_shards)
    return config


def run(args, beam_args) -> dict:
    """Builds and runs the pipeline; returns the run summary (also written as summary.json)."""
    import apache_beam as beam

    config = resolve_config(args)
    stream = stream_output.config_from_args(args)
    paths = match_files(args.input)
    truth_paths = match_files(args.truth) if args.truth else None
    output = args.output.rstrip("/")
    FileSystems.mkdirs(output) if not FileSystems.exists(output) else None
    samples_dir = f"{output}/{build_samples.SAMPLES_DIR}"
    refuse_existing_samples(samples_dir)
    specs = sample_schema(config, with_truth=bool(truth_paths))
    write_text(f"{output}/schema.json", schema_json(specs, config, args.observe_at))
    if stream:
        write_text(f"{output}/{stream.name}/schema.json", stream_output.stream_schema_json(
            stream, specs, config, args.observe_at))

    log.info("reading %d file(s) matching %s; labels observed at %d", len(paths), args.input,
             args.observe_at)
    start = time.perf_counter()
    pipeline = make_pipeline(beam_args)
    result_sets = (pipeline | "InputFiles" >> beam.Create(paths)
                   | "BuildSampleSet" >> build_samples.BuildSampleSet(
                       config, args.observe_at, truth_paths))
    # One per run: files a crashed run left in its own temp folder are not this run's.
    temp_dir = f"{output}/.tmp-{build_samples.SAMPLES_DIR}-{uuid.uuid4().hex[:12]}"
    _ = result_sets["samples"] | "WriteSamples" >> sample_files.WriteSamplesByDay(
        samples_dir, temp_dir, shards=config.num_shards)
    if stream:
        stream_output.write_stream(result_sets["samples"] | "SampleBytes" >> beam.Values(),
                                   output, stream, config.num_shards)
    _ = (result_sets["dead_letter"] | "DeadLetterJson" >> beam.Map(
        build_samples.dead_letter_line)
         | "WriteDeadLetter" >> beam.io.WriteToText(
             f"{output}/{build_samples.DEAD_LETTER_DIR}/part", file_name_suffix=".jsonl"))
    if result_sets["related_categories"] is not None:
        _ = (result_sets["related_categories"]
             | "RelatedJson" >> beam.Map(category_affinity.related_json_line)
             | "WriteRelated" >> beam.io.WriteToText(
                 f"{output}/{category_affinity.RELATED_DIR}/part", file_name_suffix=".jsonl",
                 num_shards=1))
    result = pipeline.run()
    result.wait_until_finish()
    sample_files.remove_temp_dir(temp_dir)
    summary = summarize(result, time.perf_counter() - start, len(paths), args.observe_at)
    if stream:
        summary["stream"] = stream_output.stream_summary(stream, summary["counters"])
    write_text(f"{output}/summary.json", json.dumps(summary, indent=2, sort_keys=True))
    return summary


def refuse_existing_samples(samples_dir: str) -> None:
    """Files of an earlier run would mix with this run's (file names carry the day and the
    number of files per day, which can change between runs)."""
    existing = FileSystems.match([f"{samples_dir}/part-*"])[0].metadata_list
    if existing:
        raise SystemExit(f"ranking-pipeline: {samples_dir} already holds {len(existing)} sample "
                         f"file(s) (e.g. {existing[0].path}); remove them or choose another "
                         "--output")


def summarize(result, seconds: float, files: int, observe_at: int) -> dict:
    counters = {c.key.metric.name: c.committed for c in result.metrics().query()["counters"]
                if c.key.metric.namespace == build_samples.NAMESPACE}
    get = lambda name: counters.get(name, 0)  # noqa: E731
    summary = {
        "files": files, "observe_at": observe_at, "seconds": round(seconds, 2),
        "rows_read": get("rows_read"), "valid_rows": get("valid_rows"),
        "dead_lettered": get("dead_lettered"), "samples_written": get("samples_written"),
        "not_yet_observable": get("not_yet_observable"),
        "counters": dict(sorted(counters.items())),
    }
    summary["balanced"] = (
        summary["rows_read"] == summary["valid_rows"] + summary["dead_lettered"]
        and summary["valid_rows"] == summary["samples_written"] + summary["not_yet_observable"])
    summary["rows_per_second"] = round(summary["rows_read"] / max(seconds, 1e-9), 1)
    return summary


def format_summary(s: dict) -> str:
    lines = [f"rows read          {s['rows_read']:>12,}",
             f"  valid            {s['valid_rows']:>12,}",
             f"  dead-lettered    {s['dead_lettered']:>12,}",
             f"samples written    {s['samples_written']:>12,}",
             f"not yet observable {s['not_yet_observable']:>12,}  (ts >= observe_at)",
             f"seconds            {s['seconds']:>12,.1f}  ({s['rows_per_second']:,.0f} rows/s)"]
    lines += [f"  {k:<24} {v:>10,}" for k, v in s["counters"].items()
              if k.startswith(("dead_letter.", "label.", "stream."))]
    return "\n".join(lines)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args, beam_args = build_parser().parse_known_args(argv)
    summary = run(args, beam_args)
    print(format_summary(summary))
    if not summary["balanced"]:
        print("error: counters do not add up (rows read != valid + dead-lettered, or valid != "
              "written + not yet observable); this is a bug, please report it", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
