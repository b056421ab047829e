"""bench/scale.py: the whole chain at two scales, and copies that are new documents."""

import bz2
import json
import subprocess
import sys
from pathlib import Path

from bench.scale import STAGES, scaled_dump
from pipelines.wikidump import iter_pages, open_dump

ROOT = Path(__file__).resolve().parents[2]

XML = """<mediawiki>
  <siteinfo><sitename>W</sitename></siteinfo>
  <page>
    <title>Alpha</title>
    <ns>0</ns>
    <id>12</id>
    <revision><id>99</id><text xml:space="preserve">{{Infobox letter|name=Alpha}}
Alpha is the first letter &amp; symbol of the [[Greek alphabet|Greek alphabets]], \
written before beta and gamma, used in mathematics, physics, chemistry and astronomy.
&lt;ref&gt;{{cite book|title=Letters}}&lt;/ref&gt;</text></revision>
  </page>
  <page>
    <title>Beta</title>
    <ns>0</ns>
    <id>13</id>
    <redirect title="Alpha" />
    <revision><id>98</id><text xml:space="preserve">#redirect [[Alpha]]</text></revision>
  </page>
</mediawiki>
"""


def test_a_copy_changes_ids_titles_and_prose_but_not_markup(tmp_path):
    source = tmp_path / "d.xml.bz2"
    source.write_bytes(bz2.compress(XML.encode()))

    scaled_dump(source, 2, tmp_path / "s.xml.bz2")
    with open(tmp_path / "s.xml.bz2", "rb") as raw:
        original, redirect, copy, copied_redirect = iter_pages(open_dump(raw, "s"), "s")
    assert (copy.title, copied_redirect.title) == ("Alpha (copy 1)", "Beta (copy 1)")
    assert copy.page_id != original.page_id and copied_redirect.page_id != redirect.page_id
    assert copied_redirect.text == redirect.text
    for markup in (
        "{{Infobox letter|name=Alpha}}",
        "[[Greek alphabet|Greek alphabets]]",
        "<ref>{{cite book|title=Letters}}</ref>",
        " & ",
    ):
        assert markup in copy.text
    assert copy.text != original.text
    # the same words, some of five letters or more with a letter doubled
    changed = [
        (a, b) for a, b in zip(original.text.split(), copy.text.split(), strict=True) if a != b
    ]
    assert changed
    for a, b in changed:
        assert len(b) == len(a) + 1 and any(b[:i] + b[i + 1 :] == a for i in range(len(b)))


def test_two_scales_through_every_stage(tmp_path, sample_dump):
    result = tmp_path / "scale.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench/scale.py"), "--scales", "1,2", "--pages", "40",
         "--workdir", str(tmp_path / "work"), "--json", str(result)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    runs = {(r["stage"], r["scale"]): r for r in json.loads(result.read_text())}
    assert set(runs) == {(stage, scale) for stage in STAGES for scale in (1, 2)}
    for run in runs.values():
        assert run["cpu_s"] > 0 and run["wall_s"] > 0 and run["input_mb"] > 0
        assert run["peak_rss_mb"] > 0 and run["peak_anon_mb"] > 0 and run["rows"] > 0
    one, two = runs["extract", 1], runs["extract", 2]
    assert 1.95 < two["input_mb"] / one["input_mb"] < 2.1
    assert two["rows"] == 2 * one["rows"]  # the copies are not dropped as duplicates
    assert runs["pretraining_data", 2]["rows"] > 1.5 * runs["pretraining_data", 1]["rows"]

    lines = proc.stdout.splitlines()
    header = next(line for line in lines if line.startswith("| scale |"))
    assert "RSS vs 1x" in header and "MB/s per core vs 1x" in header
    rows = [line for line in lines if line.startswith(("| 1x |", "| 2x |"))]
    assert len(rows) == 2 * len(STAGES)
    assert all(line.rstrip(" |").endswith(("PASS", "MISS")) for line in rows)
    assert not list((tmp_path / "work").glob("*x"))  # outputs deleted without --keep
