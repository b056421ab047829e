"""Arguments from the environment, appended to a command line's.

`BERT_PRETRAIN_ARGS` and `BERT_FINETUNE_ARGS` hold extra arguments (shell syntax) for
`python -m model.pretrain` and `python -m model.finetune`; coming last, they win over the same
options on the command line. A scheduler or a cluster template can set them without editing the
commands it runs; the documentation's test uses them to run every documented command verbatim,
scaled down (tests/test_docs_commands.py).
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Sequence


def command_line(argv: Sequence[str] | None, variable: str) -> list[str]:
    """`argv`, or the process's arguments plus those in `variable` when argv is None (a real
    command line; a caller that passes its own argv gets exactly it)."""
    if argv is not None:
        return list(argv)
    return [*sys.argv[1:], *shlex.split(os.environ.get(variable, ""))]
