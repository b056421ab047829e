"""What a run reports: metrics.jsonl, TensorBoard scalars (when installed) and a progress bar.

metrics.jsonl holds one JSON object per line with an "event" ("start", "train", "eval",
"checkpoint", "end") and a "step"; flows turn it into tables and plots. A resumed run first
drops the lines after the step it resumes from, so the file reads as one uninterrupted run.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from bertdata.paths import write_atomic

log = logging.getLogger(__name__)

METRICS_NAME = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
# Fields of "train" and "eval" lines that depend on timing, not on the maths.
TIMING_FIELDS = ("time", "elapsed_s", "sequences_per_s", "tokens_per_s")


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All records of a metrics.jsonl file; a torn last line (killed run) is ignored."""
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def _truncate_after(path: Path, step: int) -> None:
    kept = [r for r in read_metrics(path) if r.get("step", 0) <= step]
    write_atomic(path, "".join(json.dumps(r) + "\n" for r in kept).encode())


def _summary_writer(directory: Path, purge_step: int):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.info("tensorboard is not installed; metrics go to %s only", METRICS_NAME)
        return None
    return SummaryWriter(str(directory), purge_step=purge_step)


def format_duration(seconds: float) -> str:
    """h:mm:ss."""
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class MetricsLog:
    """Rank 0's reporter; on other ranks every method does nothing."""

    def __init__(
        self,
        output: str | os.PathLike[str],
        *,
        enabled: bool,
        start_step: int,
        total_steps: int,
        tensorboard: bool,
        progress: bool,
        step_tokens: list[tuple[int, int, int]] | None = None,
    ) -> None:
        self.enabled = enabled
        self.total_steps = total_steps
        self.start_step = start_step
        # (first step, end step, tokens per step) of each phase: the ETA counts the work left
        # in tokens, so that phase 2 at 512 (about 4x the tokens of a phase-1 step) is not
        # predicted at phase 1's speed. None: every step costs the same.
        self.step_tokens = step_tokens or [(0, total_steps, 1)]
        self.started = time.perf_counter()
        self.bar = None
        self.writer = None
        if not enabled:
            return
        output = Path(output)
        output.mkdir(parents=True, exist_ok=True)
        self.path = output / METRICS_NAME
        if self.path.exists():
            _truncate_after(self.path, start_step)
        self.file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        if tensorboard:
            self.writer = _summary_writer(output / TENSORBOARD_DIR, purge_step=start_step + 1)
        if not (progress and sys.stderr.isatty()):  # one plain line per log interval
            print(
                f"step {start_step}/{total_steps}: started; a line every log interval", flush=True
            )
        if progress and sys.stderr.isatty():
            self.bar = tqdm(
                total=total_steps,
                initial=start_step,
                unit="step",
                dynamic_ncols=True,
                file=sys.stderr,
            )

    def write(self, record: dict[str, Any]) -> None:
        """Append one record (flushed at once, so a killed run keeps it)."""
        if not self.enabled:
            return
        line = {"time": round(time.time(), 3), **record}
        self.file.write(json.dumps(line) + "\n")
        self.file.flush()
        event, step = record.get("event"), record.get("step", 0)
        if self.writer is not None and event in ("train", "eval", "health"):
            for name, value in record.items():
                if isinstance(value, int | float) and name not in ("step", "phase", "time"):
                    self.writer.add_scalar(f"{event}/{name}", value, step)
            self.writer.flush()
        if event in ("train", "eval"):
            self._report(record)

    def _report(self, record: dict[str, Any]) -> None:
        parts = [f"{record['event']}", f"loss {record['loss']:.4f}"]
        parts.append(f"mlm acc {record['mlm_accuracy']:.3f}")
        if "nsp_accuracy" in record:  # absent when the run asks no sentence task
            parts.append(f"nsp acc {record['nsp_accuracy']:.3f}")
        if "rtd_accuracy" in record:  # ELECTRA's discriminator
            parts.append(f"rtd acc {record['rtd_accuracy']:.3f}")
        if "sbo_accuracy" in record:  # SpanBERT's span-boundary head
            parts.append(f"sbo acc {record['sbo_accuracy']:.3f}")
        if record["event"] == "train":
            parts.append(f"{record['tokens_per_s']:,.0f} tok/s")
            parts.append(f"lr {record['lr']:.2e}")
        eta = self.eta(record["step"])
        if self.bar is not None:
            if record["event"] == "train":
                self.bar.set_postfix_str(" | ".join(parts[1:]) + f" | eta {eta}", refresh=False)
            else:
                self.bar.write(f"step {record['step']}: " + " | ".join(parts))
            return
        print(
            f"step {record['step']}/{self.total_steps} | " + " | ".join(parts) + f" | eta {eta}",
            flush=True,
        )

    def tokens_between(self, start: int, end: int) -> int:
        """Tokens of the steps in [start, end), phase by phase."""
        return sum(
            max(0, min(end, last) - max(start, first)) * tokens
            for first, last, tokens in self.step_tokens
        )

    def eta(self, step: int) -> str:
        """Time left, at the rate of tokens measured since this invocation started."""
        done = self.tokens_between(self.start_step, step)
        if done <= 0:
            return "?"
        elapsed = time.perf_counter() - self.started
        return format_duration(elapsed / done * self.tokens_between(step, self.total_steps))

    def advance(self, steps: int = 1) -> None:
        """Move the progress bar."""
        if self.bar is not None:
            self.bar.update(steps)

    def close(self) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()
        self.file.close()
