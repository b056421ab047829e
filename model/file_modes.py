"""Publishing a written directory: file modes that follow the user's umask, as files written by
open() do, and the swap of a staged directory into place.

safetensors and tempfile create files 0600 and directories 0700: a model that a colleague, a
web server or a container running as another user cannot read. Everything the project
publishes gets the modes that a plain open() or mkdir() would have given it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def publish_dir(staging: Path, directory: Path) -> None:
    """Put the complete `staging` directory in place of `directory` with the umask's modes.
    An existing one is moved aside first and deleted only once the new one is in place, so
    that a crash leaves the old or the new, never a half-written directory."""
    apply_umask(staging)  # mkdtemp and safetensors make 0700 and 0600
    old = None
    if directory.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old.", dir=directory.parent))
        os.replace(directory, old / "previous")
    os.replace(staging, directory)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def current_umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it; put it straight back
    os.umask(mask)
    return mask


def apply_umask(path: str | Path) -> None:
    """Give `path` (and, for a directory, everything under it) the umask's default modes."""
    mask = current_umask()
    path = Path(path)
    if not path.is_dir():
        os.chmod(path, 0o666 & ~mask)
        return
    os.chmod(path, 0o777 & ~mask)
    for root, dirs, files in os.walk(path):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o777 & ~mask)
        for name in files:
            os.chmod(os.path.join(root, name), 0o666 & ~mask)
