"""Small file operations on local paths and gs:// URIs, through fsspec, for the flows."""

from __future__ import annotations

import hashlib
import os

import fsspec

from bertdata.paths import filesystem_options, is_remote, join, write_atomic

__all__ = ["is_remote", "join", "write_atomic"]  # shared with the stages, used here by name


def _fs(path: str) -> tuple[fsspec.AbstractFileSystem, str]:
    if is_remote(path):
        fs, stripped = fsspec.core.url_to_fs(path, **filesystem_options(path))
        return fs, stripped
    return fsspec.filesystem("file"), os.path.abspath(path)


def absolute(path: str) -> str:
    """A local path made absolute; a URI unchanged."""
    return path if is_remote(path) else os.path.abspath(path)


def exists(path: str) -> bool:
    fs, p = _fs(path)
    return fs.exists(p)


def size(path: str) -> int | None:
    """Size in bytes, or None when the file does not exist."""
    fs, p = _fs(path)
    try:
        return int(fs.size(p))
    except (FileNotFoundError, OSError):
        return None


def read_bytes(path: str) -> bytes:
    fs, p = _fs(path)
    with fs.open(p, "rb") as f:
        return f.read()


def read_text(path: str) -> str:
    return read_bytes(path).decode("utf-8")


def sha256_file(path: str) -> str | None:
    """sha256 of a file's bytes, or None when it does not exist."""
    try:
        return hashlib.sha256(read_bytes(path)).hexdigest()
    except (FileNotFoundError, OSError):
        return None


def glob_files(pattern: str) -> list[tuple[str, int]]:
    """Files matching a glob, sorted, with their sizes; URIs keep their scheme."""
    fs, p = _fs(pattern)
    found = fs.glob(p, detail=True)
    files = [(name, int(info.get("size") or 0)) for name, info in found.items()]
    files = [(name, n) for name, n in files if found[name].get("type") != "directory"]
    if is_remote(pattern):
        scheme = pattern.split("://", 1)[0]
        files = [(f"{scheme}://{name}", n) for name, n in files]
    return sorted(files)


def list_dirs(path: str) -> list[str]:
    """Sub-directories of a directory (full paths, sorted); [] when it does not exist."""
    fs, p = _fs(path)
    try:
        entries = fs.ls(p, detail=True)
    except (FileNotFoundError, OSError):
        return []
    names = [e["name"].rstrip("/") for e in entries if e.get("type") == "directory"]
    if is_remote(path):
        scheme = path.split("://", 1)[0]
        names = [f"{scheme}://{n}" for n in names]
    return sorted(names)


def browser_url(path: str) -> str:
    """A URL a person can open: file:// locally, the Cloud console for gs://."""
    if path.startswith("gs://"):
        return "https://console.cloud.google.com/storage/browser/" + path[len("gs://") :]
    if is_remote(path):
        return path
    return "file://" + os.path.abspath(path)
