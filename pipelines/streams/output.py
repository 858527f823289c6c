"""``ranking-pipeline --stream``: the options, the output directory and the summary of a
delayed-feedback stream written beside the ordinary samples.

``<output>/stream_<method>[_<target>]/`` is a sample directory like ``<output>/`` itself:
``schema.json`` (the sample features, then the stream fields, plus a ``stream`` entry with
the method and windows) and ``samples/part-*.tfrecord``. Records are not sorted by
``available_at``; the trainer sorts.
"""
from __future__ import annotations

import json
from typing import Optional

import apache_beam as beam

from pipelines.samples.example import schema_json
from pipelines.streams.methods import DAY, DEFAULT_ATTRIBUTION_S, HOUR, METHODS
from pipelines.streams.targets import TARGETS, StreamConfig
from pipelines.streams.transform import COUNTER_PREFIX, DelayedFeedbackStream, stream_specs


def add_arguments(parser) -> None:
    defaults = ", ".join(f"{m.name} {m.default_window_s / HOUR:g}"
                         for m in METHODS.values() if m.waits)
    group = parser.add_argument_group(
        "delayed-feedback stream",
        "also write the training stream of one delayed-feedback method "
        "(see pipelines/streams/methods.py)")
    group.add_argument("--stream", choices=list(METHODS),
                       help="write <output>/stream_<method>/ besides the samples")
    group.add_argument("--stream-target", choices=TARGETS, default="conversion",
                       help="conversion (click-level CVR, default), refund (conversion-level),"
                       " net_conversion (click-level; vanilla, defer, oracle) or repurchase "
                       "(purchase-level: the same user buys the item again)")
    group.add_argument("--stream-window", type=float, metavar="HOURS",
                       help=f"waiting window in hours; defaults: {defaults}; fnw, fnc and "
                       "oracle have none")
    group.add_argument("--stream-attribution", type=float, metavar="DAYS",
                       help="attribution window in days (the refund window for refund, W for "
                       "repurchase), default "
                       f"{DEFAULT_ATTRIBUTION_S / DAY:g} (the Criteo logs' window)")


def config_from_args(args) -> Optional[StreamConfig]:
    """The stream asked for on the command line, or None; ValueError names the bad option."""
    if args.stream is None:
        given = [f for f, v in (("--stream-window", args.stream_window),
                                ("--stream-attribution", args.stream_attribution)) if v is not None]
        if given or args.stream_target != "conversion":
            raise ValueError(f"{', '.join(given) or '--stream-target'} needs --stream METHOD")
        return None
    try:
        return StreamConfig(args.stream, args.stream_target,
                            _seconds(args.stream_window, HOUR),
                            _seconds(args.stream_attribution, DAY))
    except ValueError as e:
        raise ValueError(f"--stream {args.stream}: {e}") from None


def _seconds(value: Optional[float], unit: int) -> Optional[int]:
    return None if value is None else int(round(value * unit))


def stream_schema_json(config: StreamConfig, sample_specs, sample_config,
                       observe_at: int) -> str:
    """``schema.json`` of the stream: the sample features, the stream fields, the windows."""
    schema = json.loads(schema_json(list(sample_specs) + stream_specs(), sample_config,
                                    observe_at))
    schema["stream"] = {"method": config.method, "target": config.target,
                        "window_s": config.window_s, "attribution_s": config.attribution_s,
                        "sorted_by_available_at": False}
    return json.dumps(schema, indent=2)


def write_stream(samples, output: str, config: StreamConfig, num_shards: int = 0):
    """Applies the stream transform to the serialized samples and writes its TFRecords."""
    return (samples | f"Stream[{config.name}]" >> DelayedFeedbackStream(config)
            | f"Write[{config.name}]" >> beam.io.WriteToTFRecord(
                f"{output}/{config.name}/samples/part", file_name_suffix=".tfrecord",
                num_shards=num_shards))


def stream_summary(config: StreamConfig, counters: dict) -> dict:
    """The stream's part of summary.json: its settings and sample counts per kind."""
    kind_prefix = f"{COUNTER_PREFIX}kind."
    return {
        "directory": config.name, "method": config.method, "target": config.target,
        "window_s": config.window_s, "attribution_s": config.attribution_s,
        "origins": counters.get(f"{COUNTER_PREFIX}origins", 0),
        "samples": counters.get(f"{COUNTER_PREFIX}samples", 0),
        "by_kind": {k[len(kind_prefix):]: v for k, v in sorted(counters.items())
                    if k.startswith(kind_prefix)},
    }
