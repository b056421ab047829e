"""A named, versioned Arrow schema: the contract between two stages."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

NAME_KEY = b"schema.name"
VERSION_KEY = b"schema.version"


@dataclass(frozen=True)
class SchemaSpec:
    """An Arrow schema with the name and version that every shard carries in its metadata."""

    name: str  # e.g. "documents"; also the prefix of the shard file names
    version: int  # bumped on any incompatible change; readers refuse other versions
    schema: pa.Schema  # fields only; `arrow_schema` adds the name and version metadata
    description: str = ""

    @property
    def arrow_schema(self) -> pa.Schema:
        """The schema as written to shards, with name and version in its metadata."""
        return self.schema.with_metadata(
            {NAME_KEY: self.name.encode(), VERSION_KEY: str(self.version).encode()}
        )
