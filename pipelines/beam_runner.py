"""Pipeline construction shared by the jobs: local runs never try to download a runner."""

from __future__ import annotations

import logging

import apache_beam as beam
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner


def local_runner() -> FnApiRunner:
    """The DirectRunner's portable engine (in_memory or multi_processing, by options).

    Beam's DirectRunner first tries Prism, a binary it downloads from the internet; machines
    without internet access wait for that to fail. This engine is what it falls back to.
    """
    return FnApiRunner()


def is_local_runner(beam_args: list[str]) -> bool:
    """Whether Beam's flags pick the DirectRunner (the default)."""
    runner_name = PipelineOptions(beam_args).view_as(StandardOptions).runner
    return runner_name in (None, "DirectRunner", "direct")


def runs_in_one_worker(beam_args: list[str]) -> bool:
    """Whether the pipeline runs on the DirectRunner's in_memory engine, whose one worker
    runs every bundle in turn (whatever --direct_num_workers says)."""
    mode = PipelineOptions(beam_args).view_as(DirectOptions).direct_running_mode
    return is_local_runner(beam_args) and mode == "in_memory"


class Spread(beam.PTransform):
    """Reshuffle, so that workers share the elements; nothing where one worker runs them all."""

    def __init__(self, one_worker: bool):
        super().__init__()
        self.one_worker = one_worker

    def expand(self, pcoll):
        return pcoll if self.one_worker else pcoll | beam.Reshuffle()


def make_pipeline(beam_args: list[str]) -> beam.Pipeline:
    """A pipeline for Beam's own flags: --runner (DirectRunner by default), Dataflow options..."""
    logging.getLogger("apache_beam.typehints").setLevel(logging.WARNING)
    options = PipelineOptions(beam_args)
    if is_local_runner(beam_args):
        return beam.Pipeline(runner=local_runner(), options=options)
    return beam.Pipeline(options=options)
