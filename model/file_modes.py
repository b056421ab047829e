"""File modes that follow the user's umask, as files written by open() do.

safetensors and tempfile create files 0600 and directories 0700: a model that a colleague, a
web server or a container running as another user cannot read. Everything the project
publishes gets the modes that a plain open() or mkdir() would have given it.
"""

from __future__ import annotations

import os
from pathlib import Path


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
