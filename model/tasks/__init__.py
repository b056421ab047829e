"""Fine-tuning tasks of the BERT paper, one processor class each, and the registry of them.

Adding a task is one class (a `TaskProcessor` subclass) and one line in `TASKS`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping

from model.tasks.base import DataError, TaskOptions, TaskProcessor
from model.tasks.conll import Conll2003Processor
from model.tasks.custom import CustomProcessor
from model.tasks.glue import GLUE_TASKS
from model.tasks.squad import SquadV1Processor, SquadV2Processor
from model.tasks.swag import SwagProcessor

TASKS: dict[str, type[TaskProcessor]] = {
    **GLUE_TASKS,
    "squad_v1": SquadV1Processor,
    "squad_v2": SquadV2Processor,
    "conll2003": Conll2003Processor,
    "swag": SwagProcessor,
    "custom": CustomProcessor,
}

# Other spellings people use for the same tasks.
ALIASES = {
    "sst-2": "sst2",
    "sts-b": "stsb",
    "squad": "squad_v1",
    "squad1.1": "squad_v1",
    "squad2.0": "squad_v2",
    "squad_v1.1": "squad_v1",
    "squad_v2.0": "squad_v2",
    "conll": "conll2003",
    "ner": "conll2003",
}

__all__ = ["TASKS", "DataError", "TaskProcessor", "get_task", "parse_options"]


def task_name(name: str) -> str:
    """The registry key for `name` (case and the usual alternative spellings ignored)."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return key


def parse_options(
    options_type: type[TaskOptions], values: Mapping[str, str | object]
) -> TaskOptions:
    """An options dataclass from KEY=VALUE strings (or typed values), converted by field type."""
    hints = typing.get_type_hints(options_type)
    names = {f.name for f in dataclasses.fields(options_type)}
    converted: dict[str, object] = {}
    for key, value in values.items():
        if key not in names:
            raise ValueError(
                f"{options_type.__name__} has no option {key!r}; it has {sorted(names) or 'none'}"
            )
        converted[key] = _convert(hints[key], value, key) if isinstance(value, str) else value
    return options_type(**converted)


def _convert(hint: object, value: str, key: str) -> object:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        if value not in args:
            raise ValueError(f"option {key}={value!r} must be one of {list(args)}")
        return value
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and value.lower() in ("", "none", "null"):
            return None
        return _convert(next(a for a in args if a is not type(None)), value, key)
    if hint is str:
        return value
    if hint is bool:
        if value.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"option {key}={value!r} must be true or false")
        return value.lower() in ("true", "1")
    try:
        return hint(value)
    except (TypeError, ValueError):
        raise ValueError(f"option {key}={value!r} is not a valid {hint.__name__}") from None


def get_task(name: str, options: Mapping[str, object] | None = None) -> TaskProcessor:
    """A processor for task `name`, with options given as KEY=VALUE strings or values."""
    cls = TASKS[task_name(name)]
    return cls(parse_options(cls.options_type, options or {}))
