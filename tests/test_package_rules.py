"""The packages import each other in one direction only (README, "Layout")."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What each package may import beside the standard library and itself.
ALLOWED = {
    "schemas": {"pyarrow"},
    "bertdata": {"numpy", "pyarrow", "fsspec", "schemas"},
    "wordpiece": {"tokenizers", "numpy", "bertdata", "schemas"},
}
# What each package may never import.
FORBIDDEN = {
    "pipelines": {"torch", "prefect", "model", "flows"},
    "model": {"apache_beam", "prefect", "pipelines", "flows"},
}


def imported_packages(package: str) -> dict[str, set[str]]:
    """Top-level names imported anywhere in the package (in functions too), by module file."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names - set(sys.stdlib_module_names) - {package}
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_shared_package_imports_only_what_it_may(package):
    wrong = {
        module: sorted(names - ALLOWED[package])
        for module, names in imported_packages(package).items()
        if names - ALLOWED[package]
    }
    assert not wrong, f"{package}/ may import only {sorted(ALLOWED[package])}: {wrong}"


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_the_beam_jobs_and_the_trainer_do_not_import_each_other(package):
    wrong = {
        module: sorted(names & FORBIDDEN[package])
        for module, names in imported_packages(package).items()
        if names & FORBIDDEN[package]
    }
    assert not wrong, f"{package}/ may not import {sorted(FORBIDDEN[package])}: {wrong}"


def test_the_checker_sees_an_import_inside_a_function(tmp_path, monkeypatch):
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "late.py").write_text("def f():\n    import torch.nn\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert imported_packages("pipelines") == {"pipelines/late.py": {"torch"}}
