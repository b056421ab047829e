"""Every command's --help shows each option's default and an example command line.

The parser that a module's main() builds is captured when `--help` is asked for (argparse's own
print_help, patched to record its parser), so the test sees exactly what a user sees."""

from __future__ import annotations

import argparse
import importlib

import pytest

COMMANDS = [
    "pipelines.extract",
    "pipelines.vocab",
    "pipelines.pretraining_data",
    "pipelines.validate",
    "pipelines.sample",
    "pipelines.corpora",
    "model.pretrain",
    "model.finetune",
    "model.features",
    "model.fill_mask",
    "flows.quickstart",
    "flows.local_server",
    "flows.sample_tasks",
]


def parsers_of(module: str, monkeypatch, argv: list[str]) -> list[argparse.ArgumentParser]:
    shown: list[argparse.ArgumentParser] = []
    monkeypatch.setattr(
        argparse.ArgumentParser, "print_help", lambda self, file=None: shown.append(self)
    )
    with pytest.raises(SystemExit) as stop:
        importlib.import_module(module).main(argv)
    assert stop.value.code in (0, None)
    return shown


def shows_default(parser: argparse.ArgumentParser, action: argparse.Action) -> bool:
    """Its help names the default, or the parser's formatter adds it."""
    if not action.help:
        return False
    if "default" in action.help:  # "%(default)s", or the default said in words
        return True
    return issubclass(parser.formatter_class, argparse.ArgumentDefaultsHelpFormatter)


def hidden_defaults(parser: argparse.ArgumentParser) -> list[str]:
    """Options whose default matters and that --help does not show."""
    missing = []
    for action in parser._actions:
        if not action.option_strings or action.help == argparse.SUPPRESS:
            continue
        if isinstance(action, argparse._HelpAction | argparse._VersionAction):
            continue
        if action.nargs == 0 and not isinstance(action, argparse.BooleanOptionalAction):
            if not action.help:
                missing.append(f"{action.option_strings[0]} (no help)")
            continue  # a flag: present or not
        if action.default in (None, False, argparse.SUPPRESS, [], ""):
            if action.help:
                continue  # no default to show: a flag, or an option that is off when absent
            missing.append(f"{action.option_strings[0]} (no help)")
            continue
        if not shows_default(parser, action):
            missing.append(f"{action.option_strings[0]} (default {action.default!r} hidden)")
    return missing


@pytest.mark.parametrize("module", COMMANDS)
def test_help_shows_every_default_and_an_example(module, monkeypatch):
    (parser,) = parsers_of(module, monkeypatch, ["--help"])
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    parsers = [parser, *(p for a in subparsers for p in a.choices.values())]
    for each in parsers:
        assert hidden_defaults(each) == [], each.prog
    # An example command line, beyond the usage line.
    text = parser.format_help().split("\n\n", 1)[1]
    assert f"python -m {module} " in text, parser.format_help()[-800:]
