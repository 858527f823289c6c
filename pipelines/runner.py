"""Pipeline options with a default runner that never touches the network.

Beam 2.77's ``DirectRunner`` first tries to download a Prism binary. Without ``--runner`` we
run on Beam's in-process portable runner (``FnApiRunner``) instead; ``--direct_num_workers``
and ``--direct_running_mode`` still apply to it. Any other runner (``--runner=DataflowRunner``
with its ``--project``, ``--region``, ``--temp_location``, ...) gets the options unchanged.
"""
from __future__ import annotations

from typing import Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions


def make_pipeline(beam_args: Sequence[str]) -> beam.Pipeline:
    options = PipelineOptions(list(beam_args))
    if options.view_as(StandardOptions).runner is None:
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        return beam.Pipeline(runner=FnApiRunner(), options=options)
    return beam.Pipeline(options=options)
