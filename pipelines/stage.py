"""What every Beam stage does around its pipeline: hold the output's lock, skip if up to date
(and intact), then write the manifest last."""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter

from bertdata.output_lock import output_lock
from pipelines.arrow_shards import SHARD_INDEX_NAME, join, read_bytes, write_atomic
from pipelines.beam_runner import make_pipeline, run_pipeline
from pipelines.progress import Heartbeat, progress_dir
from schemas.manifest import MANIFEST_NAME, InputRef, Manifest, ManifestError, ShardInfo
from schemas.spec import SchemaSpec

log = logging.getLogger(__name__)
_HASH_CHUNK = 8 << 20


def code_version() -> str:
    try:
        return metadata.version("bert-pipeline")
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True, kw_only=True)
class StageRun:
    """One run of a stage: where it writes, what it reads and how it is configured."""

    stage: str  # also the namespace of its Beam metrics counters
    spec: SchemaSpec
    output_dir: str
    config: dict[str, Any]
    inputs: list[InputRef]
    counter_names: tuple[str, ...] = ()  # reported as 0 in the manifest when never incremented

    @property
    def manifest_path(self) -> str:
        return join(self.output_dir, MANIFEST_NAME)

    def up_to_date(self) -> Manifest | None:
        """The existing manifest if it was written by this stage from the same inputs and config,
        and its shards are intact; a damaged shard is logged and the output rebuilt."""
        if not FileSystems.exists(self.manifest_path):
            return None
        try:
            existing = Manifest.from_json(read_bytes(self.manifest_path), source=self.manifest_path)
        except ManifestError:
            return None
        same = (
            existing.stage == self.stage
            and existing.config == self.config
            and existing.inputs == self.inputs
            and existing.schema_name == self.spec.name
            and existing.schema_version == self.spec.version
        )
        if not same:
            return None
        for shard in existing.shards:
            damage = shard_damage(join(self.output_dir, shard.path), shard)
            if damage is not None:
                log.warning("%s; rebuilding %s", damage, self.output_dir)
                return None
        return existing

    def execute(
        self,
        beam_args: list[str],
        build: Callable[[Any], None],
        *,
        unit: str,
        work: tuple[int | None, str] = (None, ""),
    ) -> dict:
        """The whole run, holding the output's lock (bertdata/output_lock.py): nothing if up to
        date; else begin, build(pipeline), run it and write the manifest last. Returns the
        manifest as a dict; `unit` names its rows in the log. `work` is (amount, unit) of what
        the steps count into pipelines.progress, for the progress lines (None: unknown)."""
        with output_lock(self.output_dir):
            return self._execute(beam_args, build, unit=unit, work=work)

    def _execute(
        self,
        beam_args: list[str],
        build: Callable[[Any], None],
        *,
        unit: str,
        work: tuple[int | None, str],
    ) -> dict:
        existing = self.up_to_date()
        if existing is not None:
            log.info(
                "%s is up to date (%d %s); nothing to do",
                self.output_dir,
                existing.total_rows,
                unit,
            )
            return json.loads(existing.to_json())
        self.begin()
        pipeline = make_pipeline(beam_args)
        build(pipeline)
        total, work_unit = work
        directory = progress_dir(self.output_dir)
        with Heartbeat(self.stage, directory, total=total, unit=work_unit or unit):
            result = run_pipeline(pipeline)
        return json.loads(self.finish(result).to_json())

    def begin(self) -> None:
        """Create the output directory and drop an old manifest, so a killed run never looks done."""
        FileSystems.mkdirs(self.output_dir) if not FileSystems.exists(self.output_dir) else None
        if FileSystems.exists(self.manifest_path):
            FileSystems.delete([self.manifest_path])

    def finish(self, result) -> Manifest:
        """After the pipeline: fold shard infos and counters into the manifest, written last."""
        index_path = join(self.output_dir, SHARD_INDEX_NAME)
        shards = [ShardInfo(**s) for s in json.loads(read_bytes(index_path))]
        manifest = Manifest(
            stage=self.stage,
            schema_name=self.spec.name,
            schema_version=self.spec.version,
            shards=shards,
            config=self.config,
            inputs=self.inputs,
            counters={name: 0 for name in self.counter_names} | counters(result, self.stage),
            code_version=code_version(),
        )
        self._remove_stale_shards({s.path for s in shards})
        write_atomic(self.manifest_path, manifest.to_json().encode())
        FileSystems.delete([index_path])
        return manifest

    def _remove_stale_shards(self, keep: set[str]) -> None:
        pattern = join(self.output_dir, f"{self.spec.name}-*-of-*.arrow")
        stale = [
            m.path
            for m in FileSystems.match([pattern])[0].metadata_list
            if m.path.rsplit("/", 1)[-1] not in keep
        ]
        if stale:
            log.info("removing %d shard(s) left by an earlier run", len(stale))
            FileSystems.delete(stale)


def shard_damage(path: str, shard: ShardInfo) -> str | None:
    """What is wrong with a shard of a finished output (missing, another size, another
    checksum), or None. Sizes are cheap everywhere; checksums are read on local paths only,
    where they cost a read at disk speed, not a download."""
    match = FileSystems.match([path])[0].metadata_list
    if not match:
        return f"{path} is missing"
    size = match[0].size_in_bytes
    if size != shard.bytes:
        return f"{path} has {size} bytes, its manifest says {shard.bytes}"
    if "://" not in path and file_sha256(path) != shard.sha256:
        return f"{path}: checksum differs from its manifest"
    return None


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def counters(result, namespace: str) -> dict[str, int]:
    """Committed values of the counters in `namespace` of a finished pipeline, or summed over
    a list of pipelines that made one stage's output."""
    totals: dict[str, int] = {}
    for one in result if isinstance(result, list) else [result]:
        found = one.metrics().query(MetricsFilter().with_namespace(namespace))["counters"]
        for c in found:
            value = c.committed if c.committed is not None else c.attempted
            totals[c.key.metric.name] = totals.get(c.key.metric.name, 0) + int(value or 0)
    return dict(sorted(totals.items()))


def file_inputs(patterns: list[str]) -> list[InputRef]:
    """Expand globs into sorted files with sizes; an empty glob is an error that names it."""
    refs: list[InputRef] = []
    for pattern, match in zip(patterns, FileSystems.match(patterns), strict=True):
        files = sorted(match.metadata_list, key=lambda m: m.path)
        if not files:
            raise FileNotFoundError(f"input '{pattern}' matches no file")
        refs.extend(InputRef(path=m.path, bytes=m.size_in_bytes) for m in files)
    # One file named by two patterns is read once.
    return sorted({r.path: r for r in refs}.values(), key=lambda r: r.path)


BEAM_FLAGS_HELP = (
    "Paths may be local or gs://. Any other flag goes to Beam, e.g. --runner DataflowRunner "
    "--project P --region R --temp_location gs://B/tmp --sdk_container_image IMAGE "
    "(dataflow/Dockerfile), or --direct_num_workers 2 --direct_running_mode multi_processing."
)


def job_parser(job: str, what: str, example: str) -> argparse.ArgumentParser:
    """The command line of `python -m pipelines.<job>`: what it does, Beam's flags, an example
    (its arguments), every default shown."""
    return argparse.ArgumentParser(
        prog=f"python -m pipelines.{job}",
        description=f"{what} {BEAM_FLAGS_HELP}",
        epilog=f"example: python -m pipelines.{job} {example}",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )


def job_main(
    run: Callable[[list[str] | None], Any],
    argv: list[str] | None,
    input_errors: tuple[type[BaseException], ...],
    report: Callable[[Any], list[str]],
) -> int:
    """A Beam job's `main`: run it and print `report`'s lines (exit 0); an input error, a wrong
    option or a busy output prints an `error:` line (exit 2). A bug in a step comes out of
    run_pipeline as StepFailedError and exits 1 with its traceback."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        result = run(argv)
    except input_errors as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("\n".join(report(result)))
    return 0


def counter_lines(manifest: dict[str, Any]) -> list[str]:
    """A manifest's counters, one indented line each."""
    return [f"  {name}: {value}" for name, value in manifest["counters"].items()]
