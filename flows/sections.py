"""The flows' parameter sections, built from the stages' option declarations.

A stage's config dataclass describes each option once (bertdata/options.py): its default, help
and bounds. `section_fields` turns those declarations into pydantic fields, so the deployment's
parameter schema, the Prefect server's checks and the stage's command line all say the same
thing; `stage_argv` turns a section back into that command line.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from bertdata.options import Described, described, described_at, to_argv

ExtraArgs = Annotated[
    list[str],
    Field(
        description="Any other command-line flags of the stage, passed as they are "
        "(for example ['--keep-headings'])."
    ),
]


class Section(BaseModel):
    """A group of parameters; unknown names are errors, so a typo never goes unnoticed."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


def _constraints(d: Described) -> dict[str, Any]:
    spec = d.spec
    bounds = {"ge": spec.ge, "le": spec.le, "gt": spec.gt, "lt": spec.lt}
    return {key: value for key, value in bounds.items() if value is not None}


def _annotation(d: Described) -> Any:
    item = d.item if d.kind is tuple else d.kind
    if d.spec.choices:
        item = Literal[d.spec.choices]
    if d.kind is tuple:
        return list[Annotated[item, Field(**_constraints(d))]]
    return item | None if d.nullable else item


def _pydantic_field(d: Described, default: Any) -> tuple[Any, Any]:
    """(annotation, Field) for one option: its help, its bounds (on a list's items)."""
    if d.kind is tuple:
        return _annotation(d), Field(list(default), description=d.spec.help)
    return _annotation(d), Field(default, description=d.spec.help, **_constraints(d))


def section_fields(config: type, *, defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """Pydantic fields for the flow options of a config dataclass; `defaults` replaces some of
    the dataclass's defaults (a flow's choice, for example more shards)."""
    defaults = defaults or {}
    found: dict[str, Any] = {}
    for d in described(config):
        if not d.spec.flow:
            continue
        found[d.name] = _pydantic_field(d, defaults.get(d.name, d.default))
    return found


def section_base(
    name: str,
    config: type,
    *,
    defaults: dict[str, Any] | None = None,
    base: type[Section] = Section,
) -> type:
    """A class with `base`'s fields (the flow's own, listed first), one field per flow option
    of `config`, then `extra_args`; subclass it to add checks and a docstring."""
    fields = section_fields(config, defaults=defaults)
    fields["extra_args"] = (ExtraArgs, [])
    return create_model(name, __base__=base, **fields)


def recipe_base(
    name: str,
    root: type,
    recipe: dict[str, tuple[str, ...]],
    *,
    defaults: dict[str, Any] | None = None,
    base: type[Section] = Section,
) -> type:
    """Like `section_base` for a recipe: each field, named by the flow, sets the job's options
    at the dotted paths given (the first one describes it: help and bounds)."""
    fields: dict[str, Any] = {}
    for field_name, paths in recipe.items():
        d = described_at(root, paths[0])
        fields[field_name] = _pydantic_field(d, (defaults or {}).get(field_name, d.default))
    return create_model(name, __base__=base, **fields)


def stage_argv(config: type, section: BaseModel) -> list[str]:
    """The stage's command line for a section's option values (its `extra_args` excluded)."""
    return to_argv(config, section.model_dump(exclude={"extra_args"}))
