"""Checks that a schema or table matches a SchemaSpec, with errors that name the field."""

from __future__ import annotations

import pyarrow as pa

from schemas.spec import NAME_KEY, VERSION_KEY, SchemaSpec


class SchemaMismatchError(ValueError):
    """A shard or table does not match the schema that the stage expects."""


def check_schema(schema: pa.Schema, spec: SchemaSpec, *, source: str = "<table>") -> None:
    """Raise SchemaMismatchError naming `source` and the field if `schema` is not `spec`'s."""
    meta = schema.metadata or {}
    name = meta.get(NAME_KEY, b"").decode() or None
    version = meta.get(VERSION_KEY, b"").decode() or None
    if name is not None and name != spec.name:
        raise SchemaMismatchError(f"{source}: holds '{name}' records, expected '{spec.name}'")
    if version is not None and version != str(spec.version):
        raise SchemaMismatchError(
            f"{source}: schema '{spec.name}' version {version}, this code reads version "
            f"{spec.version}; re-run the stage that wrote it"
        )
    expected = spec.schema
    for field in expected:
        idx = schema.get_field_index(field.name)
        if idx < 0:
            raise SchemaMismatchError(f"{source}: field '{field.name}' is missing")
        actual = schema.field(idx)
        if not actual.type.equals(field.type):
            raise SchemaMismatchError(
                f"{source}: field '{field.name}' has type {actual.type}, expected {field.type}"
            )
        if actual.nullable and not field.nullable:
            raise SchemaMismatchError(f"{source}: field '{field.name}' must not be nullable")
    extra = [n for n in schema.names if expected.get_field_index(n) < 0]
    if extra:
        raise SchemaMismatchError(f"{source}: unexpected field(s) {', '.join(extra)}")


def validate_table(table: pa.Table, spec: SchemaSpec, *, source: str = "<table>") -> None:
    """Check the schema, then that non-nullable fields hold no nulls."""
    check_schema(table.schema, spec, source=source)
    for field in spec.schema:
        if not field.nullable and table.column(field.name).null_count:
            raise SchemaMismatchError(
                f"{source}: field '{field.name}' has "
                f"{table.column(field.name).null_count} null value(s)"
            )


def rows_to_table(rows: list[dict], spec: SchemaSpec, *, source: str = "<rows>") -> pa.Table:
    """Build a validated table from python rows; a bad row's error names the field."""
    try:
        table = pa.Table.from_pylist(rows, schema=spec.arrow_schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError, TypeError) as err:
        for field in spec.schema:
            try:
                pa.array([r.get(field.name) for r in rows], type=field.type)
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as field_err:
                raise SchemaMismatchError(f"{source}: field '{field.name}': {field_err}") from err
        raise SchemaMismatchError(f"{source}: {err}") from err
    validate_table(table, spec, source=source)
    return table
