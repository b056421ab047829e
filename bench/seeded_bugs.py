"""Seeded bugs: does the test suite catch the bugs users of this pipeline fear most?

    .venv/bin/python bench/seeded_bugs.py                 # every bug, one at a time
    .venv/bin/python bench/seeded_bugs.py --jobs 2        # two at a time
    .venv/bin/python bench/seeded_bugs.py --list          # the bugs, and whether each applies
    .venv/bin/python bench/seeded_bugs.py --only notnext_from_own_document,bad_input_is_retried

Each bug in BUGS is a small textual patch (file, exact old text, new text) to one source file,
and names the tests that must catch it. For each bug the repository is copied to a temporary
directory (without .venv, runs, data, .git and caches), the patch is applied there (an old
text that is not found exactly once is an error, so a refactor cannot quietly turn a bug into
a no-op), and `python -m pytest -q -x <tests>` runs with the repository's Python from the
copy's root, with PYTHONPATH set to the copy and OMP_NUM_THREADS=1: a failing run caught the
bug, a passing one let it survive. The source tree here is never modified.

Before any bug, every test selection runs once on an unmodified copy and must pass, or the
check means nothing; and a first copy proves that `import model` (and the other packages)
resolves to the copy, from its root and from another directory (the editable install points
at this checkout, and tests start stage subprocesses elsewhere).

Exit status 0 when every bug was caught; 1 when a bug survived, a patch did not apply, a clean
run failed or imports did not resolve to the copy. docs/seeded_bugs.md has the last results.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("schemas", "bertdata", "pipelines", "model", "flows", "wordpiece")
# Not copied: the environment, run outputs, downloaded data, Prefect state, history, caches.
SKIP_AT_TOP = {".venv", "runs", "data", ".prefect-local", ".git", ".whl", "build"}
SKIP_ANYWHERE = ("__pycache__", ".pytest_cache", ".ruff_cache", "*.egg-info", "*.pyc")
# Read-only caches of downloads the tests use (the sample dump, corpora wheels), kept in this
# checkout's data/, which is not copied.
DATA_ENV = {"BERT_SAMPLE_DIR": ROOT / "data/sample", "BERT_CORPORA_DIR": ROOT / "data/corpora"}


@dataclass(frozen=True, kw_only=True)
class SeededBug:
    """One bug a user would fear, as a patch, and the tests that must catch it."""

    name: str
    fear: str  # what goes wrong, in a user's words
    file: str  # relative to the repository root
    old: str  # exact text, present exactly once in `file`
    new: str
    tests: tuple[str, ...]  # test files (or node ids) that must fail with the bug
    k: str = ""  # optional `pytest -k` expression that keeps the run short

    @property
    def selection(self) -> Selection:
        return Selection(self.tests, self.k)


@dataclass(frozen=True)
class Selection:
    """The tests a bug is run against."""

    tests: tuple[str, ...]
    k: str = ""

    def __str__(self) -> str:
        return " ".join(self.tests) + (f' -k "{self.k}"' if self.k else "")


# -- the bugs -------------------------------------------------------------------------------

GAPS = ("tests/test_seeded_bug_gaps.py",)
GUARDS = ("tests/model/test_training_guards.py",)
HEADS = ("tests/model/finetune/test_head_losses.py",)
OBJECTIVES_UNITS = "not trainer_runs_each_ablation"  # the trainer test builds the sample: 30 s

BUGS: tuple[SeededBug, ...] = (
    # -- data ---------------------------------------------------------------------------
    SeededBug(
        name="notnext_from_own_document",
        fear="a NotNext pair takes its B from its own document (an off-by-one in the skip)",
        file="pipelines/pretraining/pairs.py",
        old="rank += rank >= doc_rank  # skip this document",
        new="rank += rank > doc_rank  # skip this document",
        tests=("tests/pipelines/test_pairs.py",),
    ),
    SeededBug(
        name="mask_split_80_0_20",
        fear="the 80/10/10 split becomes 80/0/20: no chosen token is ever replaced at random",
        file="bertdata/masking.py",
        old="to_random = ~to_mask & (decision < config.mask_token_prob + config.random_token_prob)",
        new="to_random = ~to_mask & (decision < config.random_token_prob)",
        tests=("tests/bertdata/test_masking.py",),
    ),
    SeededBug(
        name="masked_lm_prob_ignored",
        fear="--masked-lm-prob is recorded in the manifest, but masking always uses 0.15",
        file="pipelines/options.py",
        old="            masked_lm_prob=self.masked_lm_prob,\n            max_predictions_per_seq",
        new="            max_predictions_per_seq",
        tests=GAPS,
        k="masked_lm_prob",
    ),
    SeededBug(
        name="stage_checksum_is_size_only",
        fear="a shard changed in place (same size) is read by the next stage as if intact",
        file="bertdata/shards.py",
        old="    if digest.hexdigest() != info.sha256:",
        new="    if len(view) != info.bytes:",
        tests=("tests/pipelines/test_validate.py",),
        k="unreadable",
    ),
    SeededBug(
        name="loader_checksum_is_size_only",
        fear="the trainer trains on a shard changed in place (same size) without a word",
        file="model/shard_loader.py",
        old="        if hashlib.sha256(data).hexdigest() != info.sha256:",
        new="        if len(data) != info.bytes:",
        tests=("tests/model/test_pretraining_batch.py",),
    ),
    SeededBug(
        name="old_manifest_kept_on_rerun",
        fear="a re-run that fails half-way leaves the old manifest beside new shards: it looks done",
        file="pipelines/stage.py",
        old="            FileSystems.delete([self.manifest_path])",
        new="            pass",
        tests=("tests/pipelines/test_extract.py",),
        k="failed_run_leaves_no_manifest",
    ),
    SeededBug(
        name="write_in_place",
        fear="shards and manifests are written in place: a killed write leaves a torn file",
        file="pipelines/arrow_shards.py",
        old=(
            '    tmp = join(directory, f".tmp-{uuid.uuid4().hex}-{name}")\n'
            "    with FileSystems.create(tmp, compression_type=CompressionTypes.UNCOMPRESSED) as f:\n"
            "        f.write(data)\n"
            "    if FileSystems.exists(path):\n"
            "        FileSystems.delete([path])\n"
            "    FileSystems.rename([tmp], [path])\n"
        ),
        new=(
            "    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:\n"
            "        f.write(data)\n"
        ),
        tests=GAPS,
        k="atomic",
    ),
    SeededBug(
        name="output_lock_not_exclusive",
        fear="two runs writing one output directory both get the lock",
        file="bertdata/output_lock.py",
        old="os.O_CREAT | os.O_EXCL | os.O_WRONLY",
        new="os.O_CREAT | os.O_TRUNC | os.O_WRONLY",
        tests=("tests/pipelines/test_output_lock.py",),
    ),
    SeededBug(
        name="rerun_ignores_changed_inputs",
        fear="a stage re-run on changed input files says 'up to date' and keeps the old output",
        file="pipelines/stage.py",
        old="            and existing.inputs == self.inputs\n",
        new="",
        tests=("tests/pipelines/test_extract.py",),
        k="failed_run_leaves_no_manifest",  # its second run adds an input file
    ),
    # -- model --------------------------------------------------------------------------
    SeededBug(
        name="mlm_loss_over_every_slot",
        fear="the MLM loss is averaged over every prediction slot, padding slots included",
        file="model/bert.py",
        old='ignore_index=IGNORE_INDEX, reduction="sum"\n        ) / mlm_count.clamp(min=1)',
        new='ignore_index=IGNORE_INDEX, reduction="sum"\n        ) / labels.numel()',
        tests=("tests/model/test_pretrain.py",),
        k="training_loss_equals_forward",
    ),
    SeededBug(
        name="nsp_labels_flipped",
        fear="the NSP loss trains IsNext as NotNext (label 0/1 convention swapped)",
        file="model/bert.py",
        old="nsp_loss = F.cross_entropy(nsp_logits.float(), next_sentence_label)",
        new="nsp_loss = F.cross_entropy(nsp_logits.float(), 1 - next_sentence_label)",
        tests=("tests/model/test_pretrain.py",),
        k="training_loss_equals_forward",
    ),
    SeededBug(
        name="evaluation_with_dropout",
        fear="pretraining evaluation runs in training mode: noisy validation loss, dropout on",
        file="model/pretrain.py",
        old="    was_training = model.training\n    model.eval()\n",
        new="    was_training = model.training\n",
        tests=GUARDS,
    ),
    SeededBug(
        name="clip_after_optimizer_step",
        fear="gradients are clipped after the optimizer step: clipping does nothing",
        file="model/pretrain.py",
        old=(
            "        grad_norm = clip_gradients(self.parameters, self.config.optim.grad_clip)\n"
            "        stats.add_grad_norm(grad_norm)\n"
            "        self.optimizer.step()\n"
        ),
        new=(
            "        self.optimizer.step()\n"
            "        grad_norm = clip_gradients(self.parameters, self.config.optim.grad_clip)\n"
            "        stats.add_grad_norm(grad_norm)\n"
        ),
        tests=GUARDS,
    ),
    SeededBug(
        name="resume_with_fresh_optimizer",
        fear="a resumed run restarts Adam's moments: it does not continue the run it resumes",
        file="model/pretrain.py",
        old='    optimizer.load_state_dict(state["optimizer"])\n',
        new="",
        tests=("tests/model/test_pretrain.py",),
        k="phases_run_apart",
    ),
    SeededBug(
        name="resumed_loader_starts_over",
        fear="a resumed run trains on the first batches of the data again",
        file="model/shard_loader.py",
        old="locate(step * B, B)",
        new="locate((step - self.start_step) * B, B)",
        tests=("tests/model/test_shard_loader.py",),
        k="resumed",
    ),
    SeededBug(
        name="hf_export_swaps_query_and_key",
        fear="exported weights load into transformers without error but compute another model",
        file="model/hf_checkpoint.py",
        old='for part in ("query", "key", "value"))',
        new='for part in ("key", "query", "value"))',
        tests=("tests/model/test_hf_checkpoint.py",),
    ),
    SeededBug(
        name="ltr_sees_the_next_token",
        fear="the left-to-right model attends one token ahead: it reads the token it predicts",
        file="model/bert.py",
        old=".tril()  # (T, T)",
        new=".tril(1)  # (T, T)",
        tests=("tests/model/test_objectives.py",),
        k=OBJECTIVES_UNITS,
    ),
    SeededBug(
        name="no_nsp_arm_still_trains_nsp",
        fear="the 'No NSP' ablation still trains on the NSP loss (only its evaluation drops it)",
        file="model/pretrain.py",
        old="self.model, dist, compile=self.use_compile, nsp=self.objective.nsp",
        new="self.model, dist, compile=self.use_compile",
        tests=GAPS,
        k="no_nsp",
    ),
    SeededBug(
        name="mask_mix_keeps_the_data_masks",
        fear="a mask-mix arm redraws on top of the data's [MASK]s: 'same' still shows [MASK]",
        file="model/objectives.py",
        old="    ids = restore_tokens(batch)\n    used =",
        new="    ids = batch.input_ids.clone()\n    used =",
        tests=("tests/model/test_objectives.py",),
        k=OBJECTIVES_UNITS,
    ),
    SeededBug(
        name="regression_loss_broadcasts",
        fear="STS-B's loss compares every prediction with every label ((B, 1) against (B,))",
        file="model/heads.py",
        old="F.mse_loss(logits.squeeze(-1).float(), labels.float())",
        new="F.mse_loss(logits.float(), labels.float())",
        tests=HEADS,
    ),
    SeededBug(
        name="span_loss_not_averaged",
        fear="the SQuAD loss is the sum of the start and end losses, twice the paper's",
        file="model/heads.py",
        old="loss = (start_loss + end_loss) / 2",
        new="loss = start_loss + end_loss",
        tests=HEADS,
    ),
    SeededBug(
        name="predictions_with_dropout",
        fear="fine-tuned dev scores and test predictions come from the model in training mode",
        file="model/finetune.py",
        old="    was_training = model.training\n    model.eval()\n",
        new="    was_training = model.training\n",
        tests=HEADS,
    ),
    # -- flows --------------------------------------------------------------------------
    SeededBug(
        name="cache_key_ignores_input_contents",
        fear="a stage is taken from the cache after its input was rebuilt with other contents",
        file="flows/stages.py",
        old='"inputs": [i.model_dump() for i in self.inputs],',
        new='"inputs": [i.path for i in self.inputs],',
        tests=("tests/flows/test_stages.py",),
        k="cache_key",
    ),
    SeededBug(
        name="bad_input_is_retried",
        fear="a stage that failed on bad input is retried (twice, minutes apart) like a flaky one",
        file="flows/runner.py",
        old="return isinstance(exc, StageTransientError)",
        new="return isinstance(exc, StageError)",
        tests=("tests/flows/test_runner.py",),
        k="transient_failures",
    ),
)


# -- copying, patching, running -------------------------------------------------------------


class PatchError(RuntimeError):
    """A bug's old text is not in its file exactly once."""


def copy_repository(target: Path) -> Path:
    """The source tree, tests and configuration, without environment, data, history, caches."""
    skip_anywhere = shutil.ignore_patterns(*SKIP_ANYWHERE)

    def ignore(directory: str, names: list[str]) -> set[str]:
        skipped = set(skip_anywhere(directory, names))
        if Path(directory) == ROOT:
            skipped |= SKIP_AT_TOP & set(names)
        return skipped

    shutil.copytree(ROOT, target, ignore=ignore, symlinks=True)
    return target


def apply_patch(repo: Path, bug: SeededBug) -> None:
    """Replace the bug's old text, which must occur exactly once, with its new text."""
    path = repo / bug.file
    if not path.is_file():
        raise PatchError(f"{bug.file}: no such file (bug {bug.name})")
    text = path.read_text(encoding="utf-8")
    count = text.count(bug.old)
    if count != 1:
        raise PatchError(
            f"{bug.file}: the old text of bug {bug.name} occurs {count} times, expected once; "
            "update the bug in bench/seeded_bugs.py to the code as it is now"
        )
    path.write_text(text.replace(bug.old, bug.new), encoding="utf-8")


def run_env(repo: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONPATH=str(repo),  # also for the stage subprocesses tests start from elsewhere
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.update({k: str(v) for k, v in DATA_ENV.items() if v.is_dir() and k not in os.environ})
    return env


def check_imports(python: str, repo: Path) -> str | None:
    """None if the project's packages import from `repo`, from its root and from elsewhere;
    otherwise what went wrong."""
    code = "import importlib\n" + "".join(
        f"print(importlib.import_module({p!r}).__file__)\n" for p in PACKAGES
    )
    for cwd in (repo, Path(tempfile.gettempdir())):
        done = subprocess.run(
            [python, "-c", code], cwd=cwd, env=run_env(repo), capture_output=True, text=True
        )
        if done.returncode != 0:
            return f"importing {', '.join(PACKAGES)} from {cwd} failed:\n{done.stderr[-2000:]}"
        inside = repo.resolve()
        outside = [f for f in done.stdout.split() if not Path(f).resolve().is_relative_to(inside)]
        if outside:
            return f"from {cwd}, imports resolve outside the copy {repo}: {', '.join(outside)}"
    return None


@dataclass(frozen=True, kw_only=True)
class RunResult:
    passed: bool
    timed_out: bool
    seconds: float
    first_failure: str  # node id of the first failed test (or collection error), if any
    tail: str  # the run's last output lines


FAILURE = re.compile(r"^(?:FAILED|ERROR) (\S+)", re.MULTILINE)


def run_tests(python: str, repo: Path, selection: Selection, timeout: float) -> RunResult:
    """`python -m pytest -q -x` on the selection, from the copy's root."""
    basetemp = repo.parent / "pytest-tmp"
    command = [python, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider"]
    command += [f"--basetemp={basetemp}", *(["-k", selection.k] if selection.k else [])]
    command += list(selection.tests)
    started = time.monotonic()
    process = subprocess.Popen(
        command,
        cwd=repo,
        env=run_env(repo),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        start_new_session=True,  # its own process group: a timeout takes down its children too
    )
    timed_out = False
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
    finally:  # whatever the tests started and left running (servers, workers) goes too
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    seconds = time.monotonic() - started
    summary = output.rpartition("short test summary info")[2]  # not the tests' own output
    failures = FAILURE.findall(summary)
    return RunResult(
        # Exit 5 (nothing collected) is no pass: a -k that matches nothing must not look green.
        passed=process.returncode == 0 and not timed_out,
        timed_out=timed_out,
        seconds=seconds,
        first_failure=failures[0] if failures else "",
        tail="\n".join(output.splitlines()[-25:]),
    )


@dataclass(frozen=True, kw_only=True)
class BugResult:
    bug: SeededBug
    verdict: str  # "caught", "SURVIVED", "NOT APPLIED", "NOT RUN"
    detail: str  # which test caught it, or why it was not run
    seconds: float
    tail: str = ""


def run_bug(python: str, bug: SeededBug, selection: Selection, timeout: float, keep: bool):
    """Copy, patch and test one bug."""
    work = Path(tempfile.mkdtemp(prefix=f"seeded-{bug.name}-"))
    try:
        repo = copy_repository(work / "repo")
        try:
            apply_patch(repo, bug)
        except PatchError as err:
            return BugResult(bug=bug, verdict="NOT APPLIED", detail=str(err), seconds=0.0)
        run = run_tests(python, repo, selection, timeout)
        if run.passed:
            return BugResult(
                bug=bug, verdict="SURVIVED", detail="", seconds=run.seconds, tail=run.tail
            )
        detail = "timeout" if run.timed_out else run.first_failure or "(see output)"
        return BugResult(
            bug=bug, verdict="caught", detail=detail, seconds=run.seconds, tail=run.tail
        )
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def run_clean(python: str, selection: Selection, timeout: float, keep: bool) -> RunResult:
    """The selection on an unmodified copy."""
    work = Path(tempfile.mkdtemp(prefix="seeded-clean-"))
    try:
        return run_tests(python, copy_repository(work / "repo"), selection, timeout)
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def in_parallel(jobs: int, items: list, work: Callable) -> list:
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(work, items))


# -- the report -----------------------------------------------------------------------------


def table(rows: list[tuple[str, ...]]) -> str:
    """A Markdown table, padded so that it also reads as plain text."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"
             for r in rows]  # fmt: skip
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def print_list(bugs: list[SeededBug]) -> int:
    """The bugs, what each breaks, its tests, and whether its patch applies to this tree."""
    status = 0
    for bug in bugs:
        text = (ROOT / bug.file).read_text(encoding="utf-8") if (ROOT / bug.file).is_file() else ""
        count = text.count(bug.old)
        applies = "patch applies" if count == 1 else f"PATCH DOES NOT APPLY (old text x{count})"
        status |= count != 1
        print(f"{bug.name}  [{bug.file}, {applies}]\n    {bug.fear}\n    tests: {bug.selection}")
    return int(status)


def main(argv: list[str] | None = None) -> int:
    # Long on purpose: the audit as one script, top to bottom: options, the clean run, one
    # run per seeded bug in parallel, the table.
    parser = argparse.ArgumentParser(
        prog="bench/seeded_bugs.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--list", action="store_true", help="print the bugs and exit")
    parser.add_argument("--only", default="", help="comma-separated bug names to run")
    parser.add_argument("--jobs", type=int, default=1, help="test runs at a time (default 1)")
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds per test run (default 600)"
    )
    parser.add_argument(
        "--tests",
        default="",
        help="explore: run the chosen bugs against these tests (space-separated, may end in "
        "'-k EXPR') instead of their own; the clean run checks this selection",
    )
    parser.add_argument(
        "--python",
        default=str(ROOT / ".venv/bin/python") if (ROOT / ".venv/bin/python").exists() else "",
        help="interpreter that runs the tests (default: the repository's .venv)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary copies")
    parser.add_argument("--verbose", action="store_true", help="print each run's output tail")
    args = parser.parse_args(argv)
    python = args.python or sys.executable

    bugs = list(BUGS)
    if args.only:
        wanted = [name.strip() for name in args.only.split(",") if name.strip()]
        known = {bug.name: bug for bug in BUGS}
        unknown = [name for name in wanted if name not in known]
        if unknown:
            parser.error(f"unknown bug(s) {', '.join(unknown)}; --list shows the names")
        bugs = [known[name] for name in wanted]
    if args.list:
        return print_list(bugs)

    override = None
    if args.tests:
        files, _, k = args.tests.partition(" -k ")
        override = Selection(tuple(files.split()), k.strip().strip("'\""))
    selection_of = {bug.name: override or bug.selection for bug in bugs}
    selections = list(dict.fromkeys(selection_of.values()))

    started = time.monotonic()
    print(
        f"{len(bugs)} seeded bug(s), {len(selections)} test selection(s); python {python}; "
        f"--jobs {args.jobs}; {platform.node()}, {os.cpu_count()} CPU(s)",
        flush=True,
    )
    work = Path(tempfile.mkdtemp(prefix="seeded-imports-"))
    try:
        problem = check_imports(python, copy_repository(work / "repo"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    print("imports resolve to the copy (from its root and from elsewhere)", flush=True)

    def clean(selection: Selection) -> RunResult:
        result = run_clean(python, selection, args.timeout, args.keep)
        word = "passes" if result.passed else "FAILS"
        print(f"  clean {word} ({result.seconds:.0f} s): {selection}", flush=True)
        if not result.passed:
            print(result.tail, flush=True)
        return result

    print("clean runs (the unmodified tree must pass each selection):", flush=True)
    clean_results = dict(zip(selections, in_parallel(args.jobs, selections, clean), strict=True))

    def one(bug: SeededBug) -> BugResult:
        selection = selection_of[bug.name]
        if not clean_results[selection].passed:
            return BugResult(
                bug=bug, verdict="NOT RUN", detail="its tests fail on the clean tree", seconds=0.0
            )
        result = run_bug(python, bug, selection, args.timeout, args.keep)
        print(f"  {result.verdict:<11} {bug.name} ({result.seconds:.0f} s)", flush=True)
        if result.verdict in ("SURVIVED", "NOT APPLIED") or args.verbose:
            print(result.tail or result.detail, flush=True)
        return result

    print("seeded bugs:", flush=True)
    results = in_parallel(args.jobs, bugs, one)
    total = time.monotonic() - started

    rows = [("bug", "file", "caught by / SURVIVED", "seconds")]
    for r in results:
        shown = r.detail if r.verdict == "caught" else f"{r.verdict}: {r.detail}".rstrip(": ")
        rows.append((r.bug.name, r.bug.file, shown, f"{r.seconds:.0f}"))
    print()
    print(table(rows))
    counts = {v: sum(r.verdict == v for r in results) for v in ("caught", "SURVIVED")}
    broken = len(results) - counts["caught"] - counts["SURVIVED"]
    clean_failed = sum(not r.passed for r in clean_results.values())
    print(
        f"\n{counts['caught']} of {len(results)} caught, {counts['SURVIVED']} survived, "
        f"{broken} not applied or not run; {len(selections) - clean_failed} of "
        f"{len(selections)} clean selections pass; {total:.0f} s in all "
        f"({datetime.datetime.now():%Y-%m-%d %H:%M})"
    )
    ok = counts["caught"] == len(results) and clean_failed == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
