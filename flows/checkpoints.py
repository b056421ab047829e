"""Finding model checkpoints under a directory (local or gs://), and telling them apart."""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from pathlib import Path

from pydantic import BaseModel

from bertdata.tokens import TOKENIZER_FILES
from flows import storage
from schemas.manifest import MANIFEST_NAME

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
INFO_FILE = "trainer.json"  # written last into a training checkpoint (model/checkpointing.py)
STEP_FILES = (INFO_FILE, "checkpoint.json", "trainer_state.json")
STEP_KEYS = ("step", "global_step")


class Checkpoint(BaseModel):
    """A training checkpoint: config.json, weights and trainer.json."""

    path: str
    step: int | None = None  # pretraining step, when the checkpoint says or its name shows it
    fingerprint: str  # changes when the checkpoint's files change

    @property
    def name(self) -> str:
        return posixpath.basename(self.path.rstrip("/"))


def _files_under(root: str, max_depth: int) -> dict[str, dict[str, int]]:
    """directory -> {file name: size} for files at most `max_depth` levels under `root`."""
    fs, base = storage._fs(root)
    try:
        found = fs.find(base, maxdepth=max_depth, detail=True)
    except (FileNotFoundError, OSError):
        return {}
    dirs: dict[str, dict[str, int]] = {}
    for path, info in found.items():
        if info.get("type") == "directory":
            continue
        directory, name = posixpath.split(path)
        dirs.setdefault(directory, {})[name] = int(info.get("size") or 0)
    if storage.is_remote(root):
        scheme = root.split("://", 1)[0]
        dirs = {f"{scheme}://{d}": files for d, files in dirs.items()}
    return dirs


def _step(directory: str, files: dict[str, int]) -> int | None:
    for name in STEP_FILES:
        if name in files:
            try:
                body = json.loads(storage.read_bytes(storage.join(directory, name)))
            except (ValueError, OSError):
                continue
            for key in STEP_KEYS:
                if isinstance(body.get(key), int):
                    return body[key]
    numbers = re.findall(r"\d+", posixpath.basename(directory))
    return int(numbers[-1]) if numbers else None


def fingerprint(directory: str, files: dict[str, int] | None = None) -> str:
    """sha256 of the checkpoint's manifest if it has one, else of its small files and sizes."""
    manifest = storage.sha256_file(storage.join(directory, MANIFEST_NAME))
    if manifest is not None:
        return manifest
    if files is None:
        files = _files_under(directory, 1).get(directory.rstrip("/"), {})
    digest = hashlib.sha256()
    for name in ("config.json", INFO_FILE):
        digest.update((storage.sha256_file(storage.join(directory, name)) or "").encode())
    for name, size in sorted(files.items()):
        digest.update(f"{name}\0{size}\n".encode())
    return digest.hexdigest()


def is_checkpoint(files: dict[str, int]) -> bool:
    """A complete training checkpoint: weights, config and trainer.json (written last)."""
    return INFO_FILE in files and "config.json" in files and any(w in files for w in WEIGHT_FILES)


def find_checkpoints(root: str, max_depth: int = 6) -> list[Checkpoint]:
    """Every checkpoint directory under `root`, ordered by step then path."""
    root = storage.absolute(root)
    found = [
        Checkpoint(path=d, step=_step(d, files), fingerprint=fingerprint(d, files))
        for d, files in _files_under(root, max_depth).items()
        if is_checkpoint(files)
    ]
    return sorted(found, key=lambda c: (c.step is None, c.step or 0, c.path))


def vocabulary_of(checkpoint: str) -> str | None:
    """The vocabulary directory a training checkpoint was trained with (its trainer.json)."""
    info = storage.join(checkpoint, "trainer.json")
    if not storage.exists(info):
        return None
    body = json.loads(storage.read_bytes(info))
    return ((body.get("config") or {}).get("data") or {}).get("vocab") or None


def finetune_ready(checkpoint: str, vocab_dir: str | None, staging: str) -> str:
    """A local model directory the fine-tuning stage can load (weights plus vocab.txt).

    A local checkpoint that holds vocab.txt is used as it is. Otherwise `staging` (local) gets
    the checkpoint's config and weights (links to a local checkpoint, copies of a gs:// one)
    and a copy of the vocabulary's files.
    """
    remote = storage.is_remote(checkpoint)
    if not remote and storage.exists(storage.join(checkpoint, "vocab.txt")):
        return checkpoint
    vocab_dir = vocab_dir or vocabulary_of(checkpoint)
    if not vocab_dir and storage.exists(storage.join(checkpoint, "vocab.txt")):
        vocab_dir = checkpoint
    if not vocab_dir:
        raise FileNotFoundError(
            f"{checkpoint}: no vocab.txt and no vocabulary recorded in trainer.json; "
            "give the vocabulary directory"
        )
    target = Path(storage.absolute(staging))
    target.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", *WEIGHT_FILES):
        source = storage.join(checkpoint, name)
        if not storage.exists(source):
            continue
        link = target / name
        if link.is_symlink() or link.exists():
            link.unlink()
        if remote:
            storage.write_atomic(str(link), storage.read_bytes(source))
        else:
            link.symlink_to(Path(storage.absolute(source)))
    for name in TOKENIZER_FILES:
        path = storage.join(vocab_dir, name)
        if storage.exists(path):
            storage.write_atomic(str(target / name), storage.read_bytes(path))
    return str(target)
