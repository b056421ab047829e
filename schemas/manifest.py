"""The manifest that every stage writes last: what it wrote, from what, and how."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from schemas.versioned_json import read_versioned_json

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "bert-pipeline-manifest"
MANIFEST_VERSION = 1


class ManifestError(ValueError):
    """A manifest is missing, unreadable or does not describe what the reader expects."""


@dataclass(frozen=True, kw_only=True)
class ShardInfo:
    """One shard file of a stage's output."""

    path: str  # relative to the manifest's directory
    rows: int
    bytes: int
    sha256: str


@dataclass(frozen=True, kw_only=True)
class InputRef:
    """An input of a stage: a file (with its size) or another stage's manifest (with its hash)."""

    path: str
    manifest_hash: str | None = None  # sha256 of the input stage's manifest.json
    bytes: int | None = None  # size of a raw input file


@dataclass(frozen=True, kw_only=True)
class Manifest:
    """Counts, checksums, configuration and inputs of one stage output directory."""

    stage: str  # "extract", "vocab", "pretraining_data", ...
    schema_name: str
    schema_version: int
    shards: list[ShardInfo]
    config: dict[str, Any]
    inputs: list[InputRef]
    counters: dict[str, int] = field(default_factory=dict)
    code_version: str = ""

    @property
    def total_rows(self) -> int:
        return sum(s.rows for s in self.shards)

    @property
    def config_hash(self) -> str:
        return config_hash(self.config)

    def to_json(self) -> str:
        """Canonical JSON: the same manifest always gives the same bytes."""
        body = {
            "format": MANIFEST_FORMAT,
            "manifest_version": MANIFEST_VERSION,
            "stage": self.stage,
            "schema": {"name": self.schema_name, "version": self.schema_version},
            "total_rows": self.total_rows,
            "shards": [asdict(s) for s in self.shards],
            "config": self.config,
            "config_hash": self.config_hash,
            "inputs": [asdict(i) for i in self.inputs],
            "counters": dict(sorted(self.counters.items())),
            "code_version": self.code_version,
        }
        return json.dumps(body, indent=2, sort_keys=False, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = MANIFEST_NAME) -> Manifest:
        """Parse and check a manifest; errors name `source` and the field."""
        body = read_versioned_json(
            text,
            source=source,
            format_name=MANIFEST_FORMAT,
            version_key="manifest_version",
            version=MANIFEST_VERSION,
            error=ManifestError,
        )
        try:
            manifest = cls(
                stage=body["stage"],
                schema_name=body["schema"]["name"],
                schema_version=int(body["schema"]["version"]),
                shards=[ShardInfo(**s) for s in body["shards"]],
                config=body["config"],
                inputs=[InputRef(**i) for i in body["inputs"]],
                counters=body.get("counters", {}),
                code_version=body.get("code_version", ""),
            )
        except (KeyError, TypeError) as err:
            raise ManifestError(f"{source}: missing or malformed field {err}") from err
        if body.get("config_hash") != manifest.config_hash:
            raise ManifestError(f"{source}: config_hash does not match its config")
        if body.get("total_rows") != manifest.total_rows:
            raise ManifestError(f"{source}: total_rows does not match the sum of shard rows")
        return manifest

    def expect(self, *, schema_name: str, schema_version: int, source: str) -> None:
        """Raise ManifestError unless this manifest describes the expected schema."""
        if self.schema_name != schema_name:
            raise ManifestError(
                f"{source}: holds '{self.schema_name}' data, expected '{schema_name}'"
            )
        if self.schema_version != schema_version:
            raise ManifestError(
                f"{source}: '{schema_name}' schema version {self.schema_version}, this code "
                f"reads version {schema_version}; re-run stage '{self.stage}'"
            )


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: the form that is hashed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def config_hash(config: dict[str, Any]) -> str:
    """sha256 of a configuration's canonical JSON."""
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()


def manifest_hash(manifest_bytes: bytes) -> str:
    """sha256 of a manifest file's bytes: how a later stage names this input."""
    return hashlib.sha256(manifest_bytes).hexdigest()
