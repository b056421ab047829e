"""Every command shown in README.md and docs/ works as written.

Each shell block of the documentation is covered by one rule below:
- `run`: the block runs verbatim with bash, in a scratch directory that stands for the
  repository root (`.venv` and the sample dump linked in), in the order of RUN_ORDER, so that a
  block can use what an earlier one wrote, as a reader following the docs would. Long training
  is scaled down by environment variables that the commands read (BERT_PRETRAIN_ARGS and
  BERT_FINETUNE_ARGS: extra arguments appended to the command line, model/command_line.py).
- `check`: the block needs what this machine lacks (a GPU, a bucket, GLUE's files, hours, a
  running server). Each command in it is checked without running it: the module exists and
  knows every option given; a deployment exists in prefect.yaml and its flow takes every
  `--param`; a script or test path exists.
- `fresh-clone`: the README's two set-up commands, run by the fresh-clone check and by CI.
A block that no rule covers fails the test, so a new command in the docs is checked too.
"""

from __future__ import annotations

import functools
import importlib
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND_START = re.compile(r"^(\.venv/bin/python|python|prefect|torchrun|bash|eval|[A-Z_]+=)")


@dataclass(frozen=True)
class Block:
    doc: str  # path relative to the repository
    line: int  # line of the opening fence
    text: str

    @property
    def name(self) -> str:
        return f"{self.doc}:{self.line}"

    def commands(self) -> list[str]:
        """The block's commands: continuation lines joined, comments and blanks dropped."""
        joined = self.text.replace("\\\n", " ")
        lines = [line.split("  #")[0].strip() for line in joined.splitlines()]
        return [line for line in lines if line and not line.startswith("#")]


def doc_blocks() -> list[Block]:
    """Every fenced block that holds shell commands (tagged bash/sh, or starting with one)."""
    found = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"^```([a-z]*)\n(.*?)^```", text, re.S | re.M):
            tag, body = match.group(1), match.group(2)
            first = next((x for x in body.splitlines() if x.strip()), "")
            if tag in ("bash", "sh") or (not tag and COMMAND_START.match(first)):
                line = text.count("\n", 0, match.start()) + 1
                found.append(Block(str(path.relative_to(ROOT)), line, body))
    return found


@dataclass(frozen=True)
class Rule:
    doc: str
    pattern: str  # searched in the block's text
    mode: str  # run | check | fresh-clone
    why: str = ""


# Blocks that run, in this order (each may use what the ones before it wrote).
RUN_ORDER = [
    Rule("docs/pretrain.md", r"-m pipelines.sample ", "run"),
    Rule("docs/vocab.md", r"--output runs/sample/vocab$", "run"),
    Rule("docs/pretraining_data.md", r"pipelines.validate --data runs/sample", "run"),
    Rule("docs/pretrain.md", r"objective.name=ltr", "run"),
    Rule("docs/objectives.md", r"--output runs/albert", "run"),
    Rule("docs/objectives.md", r"--output runs/electra", "run"),
    Rule("docs/objectives.md", r"--output runs/spanbert", "run"),
    Rule("docs/tasks.md", r"sample_tasks --documents runs/sample/documents", "run"),
    Rule("docs/tasks.md", r"MINILM=", "run"),
    Rule("docs/tasks.md", r"tasks/article", "run"),
    Rule("docs/tasks.md", r"mkdir -p data/genres", "run"),
]
NEEDS = {
    "gpu": "needs GPUs (bert_base on 8 of them)",
    "user-data": "reads the user's own data (a dump, GLUE's files, a checkpoint named CKPT)",
    "cloud": "writes to a Cloud Storage bucket or Dataflow",
    "server": "needs a running Prefect server (tests/flows/test_deployments_e2e.py runs the deployments)",
    "hours": "runs for hours on this machine (the small recipe and its ablations)",
    "after-quickstart": "reads the quickstart's outputs (runs/sample/model); the quickstart "
    "is the README's first command",
    "after-small": "reads the small recipe's outputs",
}
CHECKED = [
    Rule("README.md", r"-m flows.quickstart --deployment pretrain-bert/small", "check", "hours"),
    Rule("README.md", r"-m pipelines.extract", "check", "user-data"),
    Rule("README.md", r"-m pipelines.vocab --documents out/documents", "check", "user-data"),
    Rule("README.md", r"-m pipelines.pretraining_data --documents out", "check", "user-data"),
    Rule("README.md", r"-m flows.quickstart --deployment ablate-bert/sample", "check", "server"),
    Rule("README.md", r"--preset bert_base --data out/pretraining", "check", "gpu"),
    Rule("README.md", r"--task mrpc --data glue_data/MRPC", "check", "user-data"),
    Rule("README.md", r"deployment run pretrain-bert/base", "check", "cloud"),
    Rule("docs/ablations.md", r"ablate-bert/sample", "check", "server"),
    Rule("docs/objectives.md", r"deployment run pretrain-bert/small", "check", "hours"),
    Rule("docs/ablations.md", r"ablate-bert/small", "check", "hours"),
    Rule(
        "docs/finetune.md",
        r"glue_data|CKPT|--data my_data|out/mrpc|--summarize out/",
        "check",
        "user-data",
    ),  # fmt: skip
    Rule("docs/finetune.md", r"runs/sample/", "check", "after-quickstart"),
    Rule("docs/flows.md", r"flows.quickstart --stop", "check", "server"),
    Rule("docs/flows.md", r"deployment run|prefect deploy|concurrency-limit", "check", "server"),
    Rule("docs/flows.md", r"pytest -q tests/flows", "check", "server"),
    Rule("docs/pretrain.md", r"gs://BUCKET", "check", "gpu"),
    Rule("docs/recipes.md", r"flows.quickstart --deployment pretrain-bert/small", "check", "hours"),
    Rule("docs/recipes.md", r"D/tasks|runs/small/model", "check", "after-small"),
    Rule("docs/seeded_bugs.md", r"bench/seeded_bugs.py", "check", "hours"),
    Rule("docs/vocab.md", r"out/vocab|gs://B/", "check", "user-data"),
    Rule("docs/ui.md", r"ui_screenshots.py", "check", "server"),
]
FRESH_CLONE = [
    Rule("README.md", r"^bash install.sh && .venv/bin/python -m flows.quickstart\n", "fresh-clone"),
    Rule(
        "docs/flows.md",
        r"^bash install.sh && .venv/bin/python -m flows.quickstart\n",
        "fresh-clone",
    ),  # fmt: skip
]
RULES = RUN_ORDER + CHECKED + FRESH_CLONE

# What the run blocks are scaled down to (the commands themselves stay as written).
SCALED_DOWN = {
    # Twelve steps teach nothing: the health checks must not stop them (--stop-on-collapse).
    "BERT_PRETRAIN_ARGS": "--steps 12 --set eval.every=6 --set eval.examples=64 "
    "--set checkpoint.every=6 --set log.progress=false --set health.stop_on_collapse=false",
    "BERT_FINETUNE_ARGS": "--max-train-examples 64 --eval-batch-size 64",
}


def rule_for(block: Block) -> Rule | None:
    matching = [r for r in RULES if r.doc == block.doc and re.search(r.pattern, block.text, re.M)]
    return matching[0] if matching else None


def test_every_documented_block_is_covered_once_and_every_run_rule_matches():
    blocks = doc_blocks()
    assert len(blocks) > 30
    for block in blocks:
        assert rule_for(block), f"{block.name}: no rule covers this block; add one to {__file__}"
    for rule in RULES:  # a rule whose block is gone from the docs is dead weight
        assert any(b.doc == rule.doc and re.search(rule.pattern, b.text, re.M) for b in blocks), (
            rule
        )
    for rule in CHECKED:
        assert rule.why in NEEDS, rule


# -- run ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scratch(tmp_path_factory, sample_dump) -> Path:
    """A directory laid out as the repository root is for a reader: .venv and the sample."""
    root = tmp_path_factory.mktemp("docs-root")
    (root / ".venv").symlink_to(ROOT / ".venv")
    (root / "data" / "sample").mkdir(parents=True)
    (root / "data" / "sample" / sample_dump.name).symlink_to(sample_dump)
    return root


def _run_script(blocks: list[Block], cwd: Path) -> tuple[subprocess.CompletedProcess, str]:
    """The blocks of one page in one shell, as a reader runs them (a variable set in one block,
    like MINILM, is there in the next); returns the result and the block it stopped in."""
    env = os.environ | SCALED_DOWN | {"OMP_NUM_THREADS": "1"}
    script = "set -euo pipefail\n" + "".join(f"echo '>>> {b.name}' >&2\n{b.text}" for b in blocks)
    done = subprocess.run(
        ["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=1800
    )
    reached = re.findall(r"^>>> (\S+)$", done.stderr, re.M)
    return done, reached[-1] if reached else "?"


@pytest.mark.timeout(3600)
def test_the_documented_commands_run_verbatim(scratch):
    blocks = doc_blocks()
    ordered = []
    for rule in RUN_ORDER:
        (block,) = [
            b for b in blocks if b.doc == rule.doc and re.search(rule.pattern, b.text, re.M)
        ]
        ordered.append(block)
    for doc in dict.fromkeys(b.doc for b in ordered):  # page by page, in RUN_ORDER's order
        page = [b for b in ordered if b.doc == doc]
        done, where = _run_script(page, scratch)
        assert done.returncode == 0, (
            f"{where} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
        )
    # What the blocks promise is there.
    assert (scratch / "runs/sample/pretraining/seq512/stats.json").is_file()
    assert (scratch / "runs/ltr/phase1/config.json").is_file()
    for task in ("same-document", "article"):
        assert (scratch / f"runs/sample/finetuned-minilm/{task}/scores.json").is_file()
    assert (scratch / "runs/genres/finetuned-minilm/source/scores.json").is_file()


# -- check ----------------------------------------------------------------------------------


@functools.cache
def module_help(module: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"python -m {module} --help: {done.stderr[-2000:]}"
    return done.stdout


@functools.cache
def deployments() -> dict[str, str]:
    """prefect.yaml's deployments: 'flow-name/deployment-name' -> entrypoint."""
    body = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    found = {}
    for d in body["deployments"]:
        path, function = d["entrypoint"].split(":")
        module = path.removesuffix(".py")
        flow = getattr(importlib.import_module(module.replace("/", ".")), function)
        found[f"{flow.name}/{d['name']}"] = d["entrypoint"]
    return found


def flow_parameters(entrypoint: str) -> set[str]:
    path, function = entrypoint.split(":")
    module = path.removesuffix(".py")
    flow = getattr(importlib.import_module(module.replace("/", ".")), function)
    return set(flow.parameters.properties)


def check_command(command: str) -> None:
    """What can be checked of a command without running it."""
    words = shlex.split(command.replace("$(", "(").replace('"$MINILM"', "MINILM"))
    while words and re.match(r"^[A-Z_]+=", words[0]):  # VAR=value prefixes
        words.pop(0)
    if not words:
        return
    if words[0] in (".venv/bin/python", "python", "torchrun") and "-m" in words:
        module = words[words.index("-m") + 1]
        args = words[words.index("-m") + 2 :]
        if module == "pytest":
            for path in (a for a in args if not a.startswith("-")):
                assert (ROOT / path).exists(), f"{command}: no {path}"
            return
        subcommand = args[0] if args and not args[0].startswith("-") else None
        text = module_help(module)
        if subcommand and f"{{{subcommand}" not in text and subcommand not in text:
            pytest.fail(f"{command}: python -m {module} has no command {subcommand!r}")
        if subcommand and module == "model.features":
            text = _subcommand_help(module, subcommand)
        for flag in (a.split("=")[0] for a in args if a.startswith("--")):
            if flag.startswith("--direct_") or flag in BEAM_FLAGS:
                continue  # passed on to Beam
            assert re.search(rf"(^|\s|\[){re.escape(flag)}\b", text), (
                f"{command}: python -m {module} does not know {flag}"
            )
    elif words[0] == ".venv/bin/python" and words[1].endswith(".py"):
        script = ROOT / words[1]
        assert script.is_file(), f"{command}: no {words[1]}"
        text = subprocess.run(
            [sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=300
        ).stdout
        for flag in (a.split("=")[0] for a in words[2:] if a.startswith("--")):
            assert flag in text, f"{command}: {words[1]} does not know {flag}"
    elif words[:3] == ["prefect", "deployment", "run"]:
        name = words[3]
        assert name in deployments(), f"{command}: no deployment {name} in prefect.yaml"
        known = flow_parameters(deployments()[name])
        for i, word in enumerate(words):
            if word == "--param":
                key = words[i + 1].split("=")[0]
                assert key in known, f"{command}: {name} takes no parameter {key!r}"
    elif words[:2] == ["prefect", "deploy"]:
        for i, word in enumerate(words):
            if word == "-n":
                assert words[i + 1] in deployments(), f"{command}: no deployment {words[i + 1]}"


BEAM_FLAGS = {"--runner", "--project", "--region", "--temp_location", "--sdk_container_image"}


@functools.cache
def _subcommand_help(module: str, subcommand: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", module, subcommand, "--help"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.parametrize(
    "block",
    [b for b in doc_blocks() if getattr(rule_for(b), "mode", None) == "check"],
    ids=lambda b: b.name,
)
def test_commands_that_need_more_than_this_machine_name_real_options(block):
    for command in block.commands():
        check_command(command)


def test_the_readme_fine_tunes_the_model_that_its_pretraining_command_writes():
    """The chain a reader follows: pretraining's --output, then fine-tuning its final model
    (<output>/model, the stable path the trainer keeps; a path that never exists was shown)."""
    blocks = [b for b in doc_blocks() if b.doc == "README.md"]
    commands = [c for b in blocks for c in b.commands()]
    (pretrain,) = [c for c in commands if "-m model.pretrain" in c and "torchrun" not in c]
    (finetune,) = [c for c in commands if "-m model.finetune" in c]
    output = shlex.split(pretrain)[shlex.split(pretrain).index("--output") + 1]
    checkpoint = shlex.split(finetune)[shlex.split(finetune).index("--checkpoint") + 1]
    assert checkpoint == f"{output}/model"
