"""Options declared once in a config dataclass give the command line and the range checks."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import pytest

from bertdata.options import add_arguments, check, chosen, option, to_argv


@dataclass(frozen=True, kw_only=True)
class Knobs:
    passes: int = option(5, "passes over the data", ge=1, le=100)
    share: float = option(0.15, "share masked", gt=0.0, lt=1.0)
    lengths: tuple[int, ...] = option((128, 512), "sequence lengths", ge=8)
    mode: str = option("auto", "how it runs", choices=("auto", "local"))
    dedup: bool = option(True, "drop duplicates")
    source: str = option("", "input format", flag="format")
    internal_hash: str = ""  # not an option: set by the job itself


def parse(argv: list[str]) -> Knobs:
    parser = argparse.ArgumentParser()
    add_arguments(parser, Knobs)
    return Knobs(**chosen(Knobs, parser.parse_args(argv)))


def test_the_command_line_has_one_flag_per_option_with_its_default():
    assert parse([]) == Knobs()
    parser = argparse.ArgumentParser()
    add_arguments(parser, Knobs)
    flags = {flag for action in parser._actions for flag in action.option_strings}
    assert {
        "--passes",
        "--share",
        "--lengths",
        "--mode",
        "--dedup",
        "--no-dedup",
        "--format",
    } <= flags
    assert not any("internal" in flag for flag in flags)
    assert "passes over the data (in [1, 100])" in parser.format_help().replace("\n", " ").replace(
        "  ", " "
    )


def test_values_survive_the_trip_through_the_command_line():
    given = Knobs(passes=7, share=0.3, lengths=(64,), mode="local", dedup=False, source="jsonl")
    values = {
        name: getattr(given, name)
        for name in ("passes", "share", "lengths", "mode", "dedup", "source")
    }
    argv = to_argv(Knobs, values)
    assert "--no-dedup" in argv and argv[argv.index("--format") + 1] == "jsonl"
    assert parse(argv) == given


def test_a_value_of_none_leaves_the_default():
    assert to_argv(Knobs, {"passes": None, "share": 0.2}) == ["--share", "0.2"]


@pytest.mark.parametrize(
    ("changed", "message"),
    [
        ({"passes": 0}, "passes must be in [1, 100], got 0"),
        ({"passes": 101}, "passes must be in [1, 100], got 101"),
        ({"share": 1.0}, "share must be in (0, 1), got 1.0"),
        ({"lengths": (128, 4)}, "lengths must be >= 8, got 4"),
        ({"mode": "remote"}, "mode must be one of ['auto', 'local'], got 'remote'"),
    ],
)
def test_a_value_out_of_bounds_is_named(changed, message):
    with pytest.raises(ValueError) as err:
        check(Knobs(**changed))
    assert str(err.value) == message
    check(Knobs())  # the defaults are in bounds


def test_a_mutable_default_is_refused():
    with pytest.raises(TypeError, match="immutable"):
        option([1, 2], "lengths")


def test_a_choice_outside_the_list_is_refused_on_the_command_line(capsys):
    with pytest.raises(SystemExit):
        parse(["--mode", "remote"])
    assert "invalid choice" in capsys.readouterr().err
