"""--line-breaks: hard-wrapped lines joined (space, or auto where a document looks wrapped)."""

from __future__ import annotations

import json
import textwrap

import pytest

from pipelines import extract
from pipelines.sentences import is_hard_wrapped, line_blocks, text_paragraphs
from tests.pipelines.test_extract import read_documents

# News-wire prose, as the agencies send it hard-wrapped.
STORY = [
    "Ropak Corp said it received a takeover offer from a group of investors led by its "
    "chairman, who already owns about 12 pct of the company's stock.",
    "The company, which makes plastic containers for the food and chemical industries, said "
    "its board would meet next week to consider the offer of 18 dlrs a share.",
    "Analysts said the price was fair but that other bidders could come forward once the "
    "offer becomes public, since the company has little debt.",
    "Ropak shares closed at 16-1/2 on Friday, up one point on the day, in heavy trading on "
    "the over-the-counter market.",
]
MORE = [
    "In a separate statement the company said its second-quarter earnings rose to 1.2 mln "
    "dlrs from 900,000 dlrs a year earlier on higher sales of its larger containers.",
    "It expects sales for the full year to exceed 60 mln dlrs, the statement said.",
]


def run_job(path, output, *extra: str) -> tuple[dict, list[dict]]:
    manifest = extract.run(
        ["--input", str(path), "--output", str(output), "--min-document-chars", "20", *extra]
    )
    _, rows = read_documents(output)
    return manifest, sorted(rows, key=lambda r: r["original_id"])


def wrapped(sentences: list[str]) -> str:
    return textwrap.fill(" ".join(sentences), 65, break_on_hyphens=False)


def write_jsonl(path, texts: list[str]) -> None:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))


def test_hard_wrapped_jsonl_is_joined_by_default_and_counted(tmp_path):
    path = tmp_path / "wire.jsonl"
    write_jsonl(path, [f"{wrapped(STORY)}\n\n{wrapped(MORE)}"])
    manifest, rows = run_job(path, tmp_path / "out")
    assert manifest["config"]["line_breaks"] == "auto"
    assert manifest["counters"]["documents_unwrapped"] == 1
    assert [r["sentences"] for r in rows] == [STORY + MORE]


def test_paragraph_mode_keeps_todays_fragments(tmp_path):
    path = tmp_path / "wire.jsonl"
    write_jsonl(path, [wrapped(STORY)])
    manifest, rows = run_job(path, tmp_path / "out", "--line-breaks", "paragraph")
    assert manifest["counters"]["documents_unwrapped"] == 0
    assert rows[0]["sentences"][0] == wrapped(STORY).splitlines()[0]  # a fragment
    assert len(rows[0]["sentences"]) > 2 * len(STORY)


def test_space_joins_single_line_breaks_and_keeps_blank_lines_as_paragraph_breaks(tmp_path):
    path = tmp_path / "notes.jsonl"
    write_jsonl(path, ["The river rises in the hills\nand flows south\n\nIts valley\nis farmed"])
    manifest, rows = run_job(path, tmp_path / "out", "--line-breaks", "space")
    assert manifest["counters"]["documents_unwrapped"] == 1
    assert rows[0]["sentences"] == [
        "The river rises in the hills and flows south",
        "Its valley is farmed",
    ]


def test_auto_leaves_paragraph_per_line_jsonl_and_sentence_per_line_text_alone(tmp_path):
    jsonl = tmp_path / "paragraphs.jsonl"
    write_jsonl(jsonl, ["\n".join([" ".join(STORY[:2]), " ".join(STORY[2:]), *MORE])])
    text = tmp_path / "bert.txt"
    text.write_text("\n".join(STORY) + "\n\n" + "\n".join(MORE) + "\n")
    for path in (jsonl, text):
        auto, auto_rows = run_job(path, tmp_path / f"auto-{path.suffix}")
        _, today = run_job(
            path, tmp_path / f"paragraph-{path.suffix}", "--line-breaks", "paragraph"
        )
        assert auto["counters"]["documents_unwrapped"] == 0
        assert [r["sentences"] for r in auto_rows] == [r["sentences"] for r in today]


def test_hard_wrapped_text_document_becomes_sentences(tmp_path):
    path = tmp_path / "wire.txt"
    path.write_text(wrapped(STORY) + "\n\n" + "\n".join(MORE) + "\n")
    manifest, rows = run_job(path, tmp_path / "out")
    assert manifest["counters"]["documents_unwrapped"] == 1
    assert [r["sentences"] for r in rows] == [STORY, MORE]


def test_the_mode_is_part_of_the_config_and_a_change_reruns(tmp_path):
    path = tmp_path / "wire.jsonl"
    write_jsonl(path, [wrapped(STORY)])
    first, _ = run_job(path, tmp_path / "out")
    again, rows = run_job(path, tmp_path / "out", "--line-breaks", "paragraph")
    assert again["config"]["line_breaks"] == "paragraph"
    assert again["config_hash"] != first["config_hash"]
    assert len(rows[0]["sentences"]) > len(STORY)


def test_unknown_mode_is_refused():
    with pytest.raises(SystemExit):
        extract.parse_args(["--input", "x.txt", "--output", "o", "--line-breaks", "wrap"])


@pytest.mark.parametrize(
    "text, expected",
    [
        (wrapped(STORY), True),
        ("\n".join(STORY + MORE), False),  # a sentence a line
        ("a\nb\nc\nd\ne", False),  # short lines: a list
        ("\n".join(wrapped(STORY).splitlines()[:3]), False),  # two lines inside a paragraph
    ],
)
def test_is_hard_wrapped(text, expected):
    assert is_hard_wrapped(line_blocks(text.splitlines())) is expected


def test_paragraph_mode_is_todays_split_of_lines():
    text = "  One line.\n\n\tTwo line \r\nthree\u2029four"
    assert text_paragraphs(text, "paragraph") == (
        [p for p in text.splitlines() if p.strip()],
        False,
    )
