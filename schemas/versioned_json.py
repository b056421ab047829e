"""The checked head of a JSON file this project writes: its format name and version."""

from __future__ import annotations

import json
from typing import Any


def read_versioned_json(
    text: str | bytes,
    *,
    source: str,
    format_name: str,
    version_key: str,
    version: int,
    error: type[Exception],
) -> dict[str, Any]:
    """The file's body as a dict; `error` naming `source` when it is not JSON, not the format
    or another version."""
    try:
        body = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise error(f"{source}: not valid JSON ({err})") from err
    if not isinstance(body, dict) or body.get("format") != format_name:
        raise error(f"{source}: not a {format_name} file")
    if body.get(version_key) != version:
        raise error(
            f"{source}: {version_key} {body.get(version_key)}, this code reads {version_key} "
            f"{version}"
        )
    return body
