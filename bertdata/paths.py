"""Paths that are local or URIs (gs://...), joined and written the same way."""

from __future__ import annotations

import os
import posixpath
import uuid


def is_remote(path: str) -> bool:
    return "://" in path


def join(base: str, *names: str) -> str:
    """Join names onto a local directory or a URI."""
    if is_remote(base):
        return posixpath.join(base, *names)
    return os.path.join(base, *names)


def filesystem_options(path: str) -> dict:
    """fsspec's options for `path`: against a local GCS emulator, no Google credentials."""
    if path.startswith("gs://") and os.environ.get("STORAGE_EMULATOR_HOST"):
        return {"token": "anon", "endpoint_url": os.environ["STORAGE_EMULATOR_HOST"]}
    return {}


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write a file so that readers see the old bytes or the new, never a part: locally under a
    temporary name in the same directory, then renamed; an object store publishes an object
    only once its upload is complete."""
    path = os.fspath(path)
    if is_remote(path):
        import fsspec  # only here: Beam's workers write through Beam's filesystems

        fs, stripped = fsspec.core.url_to_fs(path, **filesystem_options(path))
        fs.pipe(stripped, data)
        return
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".tmp-{uuid.uuid4().hex}-{os.path.basename(path)}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
