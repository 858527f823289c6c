"""Delayed-feedback sample streams: what each training method (vanilla, FNW/FNC, ES-DFM,
DEFER, DEFUSE, Bi-DEFUSE, oracle) sees of the raw logs, and from when.

* :mod:`pipelines.streams.methods` -- the per-method rules (pure functions);
* :mod:`pipelines.streams.net_conversion` -- the three-moment net-conversion stream (seed 004);
* :mod:`pipelines.streams.targets` -- conversion / refund / net-conversion / repurchase
  origins, and :class:`StreamConfig`;
* :mod:`pipelines.streams.transform` -- the Beam transform over serialized samples;
* :mod:`pipelines.streams.output` -- ``ranking-pipeline --stream``: options, files, summary.
"""
from pipelines.streams.methods import METHODS, StreamSample, stream_samples
from pipelines.streams.net_conversion import net_conversion_samples
from pipelines.streams.targets import (TARGETS, StreamConfig, impression_stream,
                                      repurchase_streams)
from pipelines.streams.transform import DelayedFeedbackStream, stream_specs

__all__ = ["METHODS", "TARGETS", "StreamSample", "StreamConfig", "stream_samples",
           "net_conversion_samples", "impression_stream", "repurchase_streams",
           "DelayedFeedbackStream", "stream_specs"]
