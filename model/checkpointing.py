"""Training checkpoints: written atomically, the last K and the best of each phase kept.

A checkpoint is a directory `step-000012345/` holding
- config.json + model.safetensors: the weights in Hugging Face form (model/hf_checkpoint.py),
  so any checkpoint loads into fine-tuning or `transformers` as it is;
- trainer_state.pt: optimiser, schedule, loader and RNG state (tensors and plain values only);
- trainer.json: step, phase, validation loss, data and vocabulary hashes, the run's config.
It is assembled under a hidden temporary name and renamed into place, so a killed run never
leaves a directory that looks complete; trainer.json is written last inside it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from model.pretraining_model import PretrainingModel, save_pretraining_model

log = logging.getLogger(__name__)

STATE_NAME = "trainer_state.pt"
INFO_NAME = "trainer.json"
_NAME = re.compile(r"^step-(\d{9})$")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used, with its path."""


@dataclass(frozen=True, kw_only=True)
class CheckpointInfo:
    """A complete checkpoint on disk and what its trainer.json says."""

    path: Path
    step: int  # optimizer steps done
    phase: int  # 1 or 2
    validation_loss: float | None  # from an evaluation at this step, if one ran
    info: dict[str, Any]  # all of trainer.json


def checkpoint_name(step: int) -> str:
    return f"step-{step:09d}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def save_checkpoint(
    directory: str | os.PathLike[str],
    *,
    step: int,
    model: PretrainingModel,
    trainer_state: dict[str, Any],
    info: dict[str, Any],
) -> Path:
    """Write checkpoint `step` under `directory` atomically; returns its path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / checkpoint_name(step)
    staging = directory / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    try:
        save_pretraining_model(model, staging)
        torch.save(trainer_state, staging / STATE_NAME)
        for path in sorted(staging.rglob("*")):  # ELECTRA's generator/ too
            if path.is_file():
                with open(path, "rb") as f:
                    os.fsync(f.fileno())
            else:
                _fsync_dir(path)
        body = {"step": step, **info}
        _write_synced(staging / INFO_NAME, (json.dumps(body, indent=2) + "\n").encode())
        _fsync_dir(staging)
        if final.exists():  # the same step saved again (after a resume): replace it
            old = directory / f".old-{final.name}-{uuid.uuid4().hex[:8]}"
            os.rename(final, old)
            os.rename(staging, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(staging, final)
        _fsync_dir(directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def read_info(path: str | os.PathLike[str]) -> CheckpointInfo:
    """The CheckpointInfo of one checkpoint directory; a broken one raises CheckpointError."""
    path = Path(path)
    try:
        info = json.loads((path / INFO_NAME).read_text(encoding="utf-8"))
        return CheckpointInfo(
            path=path,
            step=int(info["step"]),
            phase=int(info.get("phase", 1)),
            validation_loss=info.get("validation_loss"),
            info=info,
        )
    except FileNotFoundError:
        raise CheckpointError(
            f"{path}: no {INFO_NAME}; not a complete training checkpoint"
        ) from None
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{path / INFO_NAME}: unreadable ({err})") from err


def list_checkpoints(directory: str | os.PathLike[str]) -> list[CheckpointInfo]:
    """Complete checkpoints under `directory`, oldest first; temporary leftovers are ignored."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        if _NAME.match(path.name) and (path / INFO_NAME).is_file():
            found.append(read_info(path))
    return sorted(found, key=lambda c: c.step)


def latest_checkpoint(directory: str | os.PathLike[str]) -> CheckpointInfo | None:
    """The checkpoint with the most steps, or None."""
    checkpoints = list_checkpoints(directory)
    return checkpoints[-1] if checkpoints else None


def best_checkpoints(checkpoints: list[CheckpointInfo]) -> dict[int, CheckpointInfo]:
    """Per phase, the checkpoint with the lowest validation loss (the earliest on a tie).

    Losses of different phases are not compared: longer sequences have another loss scale.
    """
    best: dict[int, CheckpointInfo] = {}
    for c in checkpoints:
        if c.validation_loss is None:
            continue
        if c.phase not in best or c.validation_loss < best[c.phase].validation_loss:
            best[c.phase] = c
    return best


def prune_checkpoints(
    directory: str | os.PathLike[str], *, keep_last: int, keep_best: bool
) -> list[Path]:
    """Delete all but the newest `keep_last` (and the best of each phase); returns the deleted."""
    directory = Path(directory)
    checkpoints = list_checkpoints(directory)
    keep = {c.path for c in checkpoints[-keep_last:]} if keep_last > 0 else set()
    if keep_best:
        keep |= {c.path for c in best_checkpoints(checkpoints).values()}
    removed = []
    for c in checkpoints:
        if c.path not in keep:
            shutil.rmtree(c.path)
            removed.append(c.path)
    return removed


def remove_leftovers(directory: str | os.PathLike[str]) -> list[Path]:
    """Delete the hidden temporary directories left by a run that was killed while saving."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    leftovers = [p for p in directory.iterdir() if p.name.startswith(".") and p.is_dir()]
    for path in leftovers:
        shutil.rmtree(path, ignore_errors=True)
    return leftovers


def load_trainer_state(
    checkpoint: CheckpointInfo, map_location: torch.device | str = "cpu"
) -> dict[str, Any]:
    """trainer_state.pt of a checkpoint (tensors and plain values only: weights_only)."""
    path = checkpoint.path / STATE_NAME
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing; the checkpoint is incomplete") from None
    except Exception as err:  # a truncated or foreign file raises library-specific errors
        raise CheckpointError(f"{path}: cannot read trainer state ({err})") from err
