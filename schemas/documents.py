"""Documents: the output of the extraction stage, one row per document."""

from __future__ import annotations

import hashlib

import pyarrow as pa

from schemas.spec import SchemaSpec

DOCUMENTS = SchemaSpec(
    name="documents",
    version=1,
    description="Documents split into sentences; input of the vocabulary and pretraining stages.",
    schema=pa.schema(
        [
            pa.field("doc_id", pa.string(), nullable=False),  # document_id(source, original_id)
            pa.field(
                "source", pa.string(), nullable=False
            ),  # input name, e.g. the file's base name
            pa.field("original_id", pa.string(), nullable=False),  # page id, JSON id or ordinal
            pa.field("title", pa.string(), nullable=False),  # "" when the source has none
            pa.field("sentences", pa.list_(pa.string()), nullable=False),  # in document order
            pa.field("num_chars", pa.int64(), nullable=False),  # sum of the sentences' lengths
            pa.field("num_words", pa.int64(), nullable=False),  # whitespace-separated words
        ]
    ),
)


def document_id(source: str, original_id: str) -> str:
    """Stable id of a document: 16 hex digits of sha256(source, original id)."""
    return hashlib.sha256(f"{source}\x00{original_id}".encode()).hexdigest()[:16]
