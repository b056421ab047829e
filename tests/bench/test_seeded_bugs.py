"""bench/seeded_bugs.py: every seeded bug still applies to the code as it is, so the audit of the
test suite (docs/seeded_bugs.md) breaks what it says it breaks, and a refactoring that moves
the code is caught here rather than hours into the audit."""

from pathlib import Path

import pytest

from bench.seeded_bugs import BUGS, apply_patch

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("bug", BUGS, ids=[bug.name for bug in BUGS])
def test_the_seeded_bug_changes_its_file(bug, tmp_path):
    source = ROOT / bug.file
    copy = tmp_path / bug.file
    copy.parent.mkdir(parents=True)
    copy.write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    apply_patch(tmp_path, bug)  # raises unless the old text occurs exactly once
    changed = copy.read_text(encoding="utf-8")
    assert changed != source.read_text(encoding="utf-8") and bug.new in changed
    compile(changed, str(copy), "exec")  # still Python: the bug is a behaviour, not a crash
