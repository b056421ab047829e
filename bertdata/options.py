"""A stage's options, described once: in its config dataclass.

Each field declared with `option(...)` carries its default, one line of help and its bounds.
From that one declaration come the stage's command line (`add_arguments`, `chosen`), its range
checks (`check`), the command line that the flows build (`to_argv`) and the flows' parameter
sections (flows/sections.py). A field without `option(...)` is internal: the job sets it itself.

    @dataclass(frozen=True, kw_only=True)
    class Config:
        dupe_factor: int = option(5, "passes over the corpus, each with other masks", ge=1)

Option types: int, float, str, bool (`--x` / `--no-x`, or the flags named in the option),
any of these or None (None: the job decides; no flag is passed) and tuple[int, ...] or tuple[str, ...]
(comma-separated on the command line, a list in the flows).
"""

from __future__ import annotations

import argparse
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

METADATA_KEY = "bertdata.option"


@dataclass(frozen=True)
class Option:
    """What the command line and the flows need to know about one option."""

    help: str
    ge: float | None = None
    le: float | None = None
    gt: float | None = None
    lt: float | None = None
    choices: tuple[Any, ...] = ()
    flag: str = ""  # the command line's name, when it is not the field's with dashes
    off_flag: str = ""  # a bool's flag that turns it off; default: no-<flag>
    cli: bool = True  # a flag of the stage's command line
    flow: bool = True  # a field of the flows' section


def option(
    default: Any,
    help: str,
    *,
    ge: float | None = None,
    le: float | None = None,
    gt: float | None = None,
    lt: float | None = None,
    choices: tuple[Any, ...] = (),
    flag: str = "",
    off_flag: str = "",
    cli: bool = True,
    flow: bool = True,
) -> Any:
    """A dataclass field that is a user-facing option (see the module docstring)."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("an option's default must be immutable (use a tuple)")
    spec = Option(help, ge, le, gt, lt, tuple(choices), flag, off_flag, cli, flow)
    return field(default=default, metadata={METADATA_KEY: spec})


@dataclass(frozen=True)
class Described:
    """One option of a config class, with its resolved type."""

    name: str
    kind: type  # int, float, str, bool or tuple
    item: type | None  # a tuple's element type
    default: Any
    spec: Option
    nullable: bool = False  # `X | None`: None leaves the choice to the job

    @property
    def flag(self) -> str:
        return "--" + (self.spec.flag or self.name.replace("_", "-"))

    @property
    def off_flag(self) -> str:
        """A bool's flag that turns it off."""
        return "--" + (self.spec.off_flag or "no-" + self.flag[2:])


def described(cls: type) -> list[Described]:
    """The options of a config dataclass, in declaration order."""
    hints = typing.get_type_hints(cls)
    found = []
    for f in fields(cls):
        spec = f.metadata.get(METADATA_KEY)
        if spec is None:
            continue
        hint = hints[f.name]
        arms = typing.get_args(hint)
        nullable = type(None) in arms and len(arms) == 2
        if nullable:
            hint = next(arm for arm in arms if arm is not type(None))
        if typing.get_origin(hint) is tuple:
            kind, item = tuple, typing.get_args(hint)[0]
        elif hint in (int, float, str, bool):
            kind, item = hint, None
        else:
            raise TypeError(f"{cls.__name__}.{f.name}: options cannot be of type {hint}")
        found.append(Described(f.name, kind, item, f.default, spec, nullable))
    return found


def described_at(root: type, dotted: str) -> Described:
    """The option at a dotted path through nested config dataclasses, e.g. 'optim.lr'."""
    cls = root
    *path, last = dotted.split(".")
    for part in path:
        cls = typing.get_type_hints(cls)[part]
    for d in described(cls):
        if d.name == last:
            return d
    raise KeyError(f"{root.__name__}.{dotted} is not an option")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def bounds_text(spec: Option) -> str:
    """The bounds in words, e.g. 'in [1, 65535]', or '' when there are none."""
    low = high = ""
    if spec.ge is not None:
        low = f"[{_number(spec.ge)}"
    elif spec.gt is not None:
        low = f"({_number(spec.gt)}"
    if spec.le is not None:
        high = f"{_number(spec.le)}]"
    elif spec.lt is not None:
        high = f"{_number(spec.lt)})"
    if low and high:
        return f"in {low}, {high}"
    if low:
        return (">= " if low[0] == "[" else "> ") + low[1:]
    if high:
        return ("<= " if high[-1] == "]" else "< ") + high[:-1]
    return ""


def problem(d: Described, value: Any) -> str | None:
    """Why `value` is not a valid value of the option, or None."""
    spec = d.spec
    if value is None and d.nullable:
        return None
    for item in value if d.kind is tuple else (value,):
        if spec.choices and item not in spec.choices:
            return f"{d.name} must be one of {list(spec.choices)}, got {item!r}"
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            continue
        if (
            (spec.ge is not None and item < spec.ge)
            or (spec.le is not None and item > spec.le)
            or (spec.gt is not None and item <= spec.gt)
            or (spec.lt is not None and item >= spec.lt)
        ):
            return f"{d.name} must be {bounds_text(spec)}, got {item!r}"
    return None


def check(config: Any, *, skip: tuple[str, ...] = (), prefix: str = "") -> None:
    """Raise ValueError naming the first option of `config` (but those in `skip`) that is out
    of its bounds; `prefix` goes before its name (a section's, e.g. 'optim.')."""
    for d in described(type(config)):
        if d.name in skip:
            continue
        message = problem(d, getattr(config, d.name))
        if message:
            raise ValueError(prefix + message)


def _comma_list(item: type):
    def parse(text: str) -> tuple:
        try:
            return tuple(item(part.strip()) for part in text.split(",") if part.strip())
        except ValueError as err:
            raise argparse.ArgumentTypeError(
                f"not a comma-separated list of {item.__name__}: {text!r}"
            ) from err

    parse.__name__ = f"list of {item.__name__}"
    return parse


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One flag per command-line option of `cls`, with its default, help and choices."""
    for d in described(cls):
        if not d.spec.cli:
            continue
        help_text = d.spec.help + (f" ({bounds_text(d.spec)})" if bounds_text(d.spec) else "")
        help_text = help_text.replace("%", "%%")
        if not issubclass(parser.formatter_class, argparse.ArgumentDefaultsHelpFormatter):
            help_text += " (default: %(default)s)"
        dest = {"dest": d.name}
        if d.kind is bool:
            pair = parser.add_mutually_exclusive_group()
            pair.add_argument(
                d.flag, action="store_const", const=True, default=d.default, help=help_text, **dest
            )
            pair.add_argument(
                d.off_flag,
                action="store_const",
                const=False,
                default=argparse.SUPPRESS,  # the first flag holds the default
                help=f"not {d.flag}",
                **dest,
            )
        elif d.kind is tuple:
            parser.add_argument(
                d.flag,
                type=_comma_list(d.item),
                default=",".join(map(str, d.default)),
                metavar="A,B,...",
                help=help_text,
                **dest,
            )
        else:
            parser.add_argument(
                d.flag,
                type=d.kind,
                default=d.default,
                choices=d.spec.choices or None,
                help=help_text,
                **dest,
            )


def chosen(cls: type, args: argparse.Namespace) -> dict[str, Any]:
    """The command-line options of `cls` as parsed: keyword arguments for `cls(...)`."""
    return {d.name: getattr(args, d.name) for d in described(cls) if d.spec.cli}


def to_argv(cls: type, values: Mapping[str, Any]) -> list[str]:
    """The command line that gives `values` (option name -> value; None: leave the default)."""
    argv: list[str] = []
    for d in described(cls):
        if not d.spec.cli or d.name not in values or values[d.name] is None:
            continue
        value = values[d.name]
        if d.kind is tuple and not value and not d.default:
            continue  # empty by default: nothing to say
        if d.kind is bool:
            argv.append(d.flag if value else d.off_flag)
        elif d.kind is tuple:
            argv += [d.flag, ",".join(map(str, value))]
        else:
            argv += [d.flag, str(value)]
    return argv


def command_parser(
    prog: str, description: str | None, epilog: str | None = None
) -> argparse.ArgumentParser:
    """The parser of a `python -m ...` command whose --help shows `description` (its module
    docstring, usually) and `epilog` (examples) with the line breaks as written."""
    return argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
