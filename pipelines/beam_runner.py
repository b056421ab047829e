"""Pipeline construction and running shared by the jobs: local runs never try to download a
runner, and a failed step is told apart as bad input (exit status 2) or a bug (exit status 1)."""

from __future__ import annotations

import importlib
import logging
import re

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


def use_local_exchange(exchange: str, paths: list[str], beam_args: list[str]) -> bool:
    """Whether a job moves its data between steps through files on this machine (`exchange`
    auto, local or shuffle); refuses `local` where it cannot work: gs:// paths, other runners."""
    local = is_local_runner(beam_args) and not any("://" in p for p in paths)
    if exchange == "local" and not local:
        raise ValueError(
            "--exchange local needs local input and output paths and the DirectRunner; "
            "use --exchange shuffle (the default there)"
        )
    return local if exchange == "auto" else exchange == "local"


EXCHANGE_HELP = (
    "how data moves between the steps: local files (one machine, flat memory) or Beam's "
    "shuffle; auto: local for local paths on the DirectRunner; does not change the output"
)


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


# The packages whose ValueError subclasses are input errors (BadInputError, CorruptShardError,
# ManifestError, VocabFileError...): the errors that name a file and a record.
PROJECT_PACKAGES = ("pipelines", "schemas", "wordpiece", "bertdata")
_STEP_ANNOTATION = re.compile(r" \[while running '[^']*'\]")
_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*): ?(.*)$")


class StepInputError(ValueError):
    """A step refused its input with one of the project's input errors, raised in a worker
    process; the message is that error's own."""


class StepFailedError(RuntimeError):
    """A step failed with any other error: a bug or a broken machine, not bad input."""


def run_pipeline(pipeline: beam.Pipeline):
    """Run the pipeline to the end and return its result. An input error raised in a step comes
    out as itself (or as StepInputError from a worker process); any other error as
    StepFailedError, chained to Beam's, so that the stages exit 1 with its traceback.

    Beam re-raises a step's error as the same class when it can (a ValueError from a bug then
    looks like bad input) and as RuntimeError when it cannot (DumpReadError) or when the step
    ran in a worker process (multi_processing, Dataflow), with the original in the message.
    """
    try:
        result = pipeline.run()
        result.wait_until_finish()
    except Exception as err:
        if is_input_error(type(err)):
            raise  # the step ran in this process and Beam kept its class
        message = input_error_message(str(err))
        if message is not None:
            raise StepInputError(message) from err
        raise StepFailedError(
            f"a pipeline step failed (a bug, not bad input): {_describe(err)}"
        ) from err
    return result


def is_input_error(cls: type) -> bool:
    """Whether `cls` is one of the project's input-error classes."""
    return issubclass(cls, ValueError) and cls.__module__.split(".")[0] in PROJECT_PACKAGES


def input_error_message(text: str) -> str | None:
    """The message of the error that a step raised, found in Beam's text of it (a worker's
    traceback, or Beam's RuntimeError), if that error is one of the project's input errors."""
    found = step_error(text)
    if found is None:
        return None
    name, message = found
    if name == "RuntimeError":  # Beam could not re-raise the class: "module.Class: message"
        inner = _EXCEPTION_LINE.match(message)
        if inner is None:
            return None
        name, message = inner.group(1), inner.group(2)
    return _STEP_ANNOTATION.sub("", message) if is_input_error(_resolve(name)) else None


def step_error(text: str) -> tuple[str, str] | None:
    """(class name, message) of the error that Beam marked "[while running '<step>']": the
    step's own error, not the errors it was raised while handling, nor Beam's after it."""
    lines = text.splitlines()
    marked = next((i for i, line in enumerate(lines) if _STEP_ANNOTATION.search(line)), None)
    if marked is None:
        return None
    # The error's text starts after the last frame ("  File ...", then indented code lines).
    start = 0
    for i in range(marked, -1, -1):
        if lines[i].startswith("  File "):
            start = i + 1
            while start < marked and lines[start].startswith("    "):
                start += 1
            break
    match = _EXCEPTION_LINE.match(lines[start])
    if match is None:
        return None
    return match.group(1), "\n".join([match.group(2), *lines[start + 1 : marked + 1]])


def _resolve(name: str) -> type:
    """The class named `module.Class` in a traceback, if it is the project's; else object."""
    module, _, attr = name.rpartition(".")
    if module.split(".")[0] not in PROJECT_PACKAGES:
        return object
    try:
        found = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return object
    return found if isinstance(found, type) else object


def _describe(err: BaseException) -> str:
    """The step's error in one line, `Class: message`, wherever Beam put it."""
    found = step_error(str(err))
    if found is not None:
        return f"{found[0]}: {found[1].splitlines()[0]}"
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}"
