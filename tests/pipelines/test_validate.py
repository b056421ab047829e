"""The validation stage: passes the job's real output, fails deliberately broken copies of it."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest

# Helpers shared with the job's tests, in this directory.
from test_pretraining_data import corpus_rows, make_vocab_dir, write_documents

from pipelines import pretraining_data, validate
from pipelines.arrow_shards import table_to_ipc_bytes
from schemas.manifest import Manifest, ShardInfo
from schemas.pretraining import PRETRAINING_UINT16

CLS, SEP, PAD, UNK, MASK = 101, 102, 0, 100, 103


@pytest.fixture(scope="module")
def documents_dir(sample_dump, tmp_path_factory) -> Path:
    return write_documents(corpus_rows(sample_dump), tmp_path_factory.mktemp("docs") / "docs")


@pytest.fixture(scope="module")
def vocab_dir(documents_dir, tmp_path_factory) -> Path:
    return make_vocab_dir(documents_dir, tmp_path_factory.mktemp("vocab") / "vocab")


@pytest.fixture(scope="module")
def data_dir(documents_dir, vocab_dir, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    docs = documents_dir
    pretraining_data.run(
        ["--documents", str(docs), "--vocab", str(vocab_dir), "--output", str(root / "out"),
         "--max-seq-lengths", "128", "--dupe-factor", "3", "--num-shards", "2"]
    )  # fmt: skip
    return root / "out" / "seq128"


def broken_copy(
    source: Path,
    target: Path,
    change: Callable[[int, list[dict]], list[dict]],
    config: dict | None = None,
) -> Path:
    """A copy whose shards' rows went through `change(shard index, rows)`, with a manifest
    that matches the new shards (so only the content is wrong)."""
    shutil.copytree(source, target)
    manifest = Manifest.from_json((target / "manifest.json").read_text())
    shards = []
    for index, info in enumerate(manifest.shards):
        rows = pa.ipc.open_file(target / info.path).read_all().to_pylist()
        table = pa.Table.from_pylist(change(index, rows), schema=PRETRAINING_UINT16.arrow_schema)
        data = table_to_ipc_bytes(table, "zstd")
        (target / info.path).write_bytes(data)
        shards.append(
            ShardInfo(
                path=info.path,
                rows=table.num_rows,
                bytes=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
            )
        )
    new = dataclasses.replace(manifest, shards=shards, config={**manifest.config, **(config or {})})
    (target / "manifest.json").write_text(new.to_json())
    return target


def failed_checks(directory: Path) -> tuple[set[str], dict]:
    with pytest.raises(validate.ValidationError) as err:
        validate.validate(str(directory))
    body = json.loads((directory / "stats.json").read_text())
    failed = {c["name"] for c in body["checks"] if not c["passed"]}
    assert not body["passed"]
    for name in failed:
        assert name in str(err.value)
    return failed, body


def each_row(change: Callable[[dict], None], where: Callable[[dict], bool] = lambda r: True):
    def apply(_: int, rows: list[dict]) -> list[dict]:
        for row in rows:
            if where(row):
                change(row)
        return rows

    return apply


def first_row(change: Callable[[dict], None], where: Callable[[dict], bool] = lambda r: True):
    def apply(index: int, rows: list[dict]) -> list[dict]:
        if index == 0:
            change(next(r for r in rows if where(r)))
        return rows

    return apply


def test_the_jobs_output_passes_and_stats_describe_it(data_dir, vocab_dir):
    body = validate.validate(str(data_dir), vocab_dir=str(vocab_dir))
    assert body["passed"]
    assert json.loads((data_dir / "stats.json").read_text()) == body
    assert (
        body["examples"] == Manifest.from_json((data_dir / "manifest.json").read_text()).total_rows
    )
    assert abs(body["mask_rate"] - 0.15) < 0.005
    assert 0.35 < body["not_next_share"] < 0.65
    assert sum(body["length_histogram"]["counts"]) == body["examples"]
    assert body["length_histogram"]["edges"][-1] == 128
    assert all(count == 0 for count in body["error_counts"].values())
    assert body["unknown_token_rate"] < 0.01


def test_a_misplaced_sep_fails_the_layout_check_naming_the_row(data_dir, tmp_path):
    def drop_sep(row):
        row["input_ids"][row["segment_a_length"] + 1] = 2023  # "this"

    broken = broken_copy(data_dir, tmp_path / "d", first_row(drop_sep))
    failed, body = failed_checks(broken)
    assert "bad_layout" in failed
    error = next(e for e in body["errors"] if e["kind"] == "bad_layout")
    assert error["shard"] == "pretraining-00000-of-00002.arrow" and error["row"] == 0


def test_checking_a_shard_in_passes_gives_one_passs_counts_and_errors(
    data_dir, tmp_path, monkeypatch
):
    def break_every_seventh(_: int, rows: list[dict]) -> list[dict]:
        for i, row in enumerate(rows):
            if i % 7 == 3:
                row["input_ids"][row["segment_a_length"] + 1] = 2023  # a lost [SEP]
            if i % 11 == 5:
                row["next_sentence_label"] = 1
                row["b_doc_id"] = row["doc_id"]  # a self-negative
        return rows

    broken = broken_copy(data_dir, tmp_path / "d", break_every_seventh)
    _, whole = failed_checks(broken)
    monkeypatch.setattr(validate, "ROWS_PER_PASS", 37)
    _, passes = failed_checks(broken)
    assert passes["error_counts"] == whole["error_counts"]
    assert whole["error_counts"]["bad_layout"] > 40  # more than one pass of errors to list
    assert passes["errors"] == whole["errors"]
    assert [e["row"] for e in whole["errors"] if e["kind"] == "bad_layout"][:3] == [3, 10, 17]
    same = ("examples", "shards", "counts", "length_histogram", "mask_rate", "not_next_share")
    assert {k: passes[k] for k in same} == {k: whole[k] for k in same}


def test_a_self_negative_fails(data_dir, tmp_path):
    def same_document(row):
        row["b_doc_id"] = row["doc_id"]

    broken = broken_copy(
        data_dir, tmp_path / "d", first_row(same_document, lambda r: r["next_sentence_label"] == 1)
    )
    failed, _ = failed_checks(broken)
    assert failed == {"self_negatives"}


def test_a_masked_special_token_and_a_special_replacement_fail(data_dir, tmp_path):
    def mask_cls(row):
        row["masked_lm_positions"][0] = 0
        row["masked_lm_ids"][0] = CLS

    def pad_replacement(row):
        row["input_ids"][row["masked_lm_positions"][0]] = PAD

    failed, _ = failed_checks(broken_copy(data_dir, tmp_path / "a", first_row(mask_cls)))
    assert {"masked_special_tokens", "bad_masked_positions"} <= failed
    failed, _ = failed_checks(broken_copy(data_dir, tmp_path / "b", first_row(pad_replacement)))
    assert "special_random_replacements" in failed


def test_sequences_longer_than_the_maximum_fail(data_dir, tmp_path):
    broken = broken_copy(
        data_dir, tmp_path / "d", lambda _, rows: rows, config={"max_seq_length": 100}
    )
    failed, _ = failed_checks(broken)
    assert "too_long" in failed


def test_a_skewed_notnext_share_fails(data_dir, tmp_path):
    broken = broken_copy(
        data_dir, tmp_path / "d", lambda _, rows: [r for r in rows if r["next_sentence_label"] == 0]
    )
    failed, body = failed_checks(broken)
    assert "not_next_share" in failed and body["not_next_share"] == 0


def test_sentence_order_data_must_keep_pairs_in_one_document_and_swap_half(data_dir, tmp_path):
    # The NSP output, declared sentence-order data: label 1 now means swapped, so its rows of
    # B from another document break the one rule (and are not self-negatives any more).
    declared = broken_copy(
        data_dir, tmp_path / "a", lambda _, rows: rows, config={"sentence_order": True}
    )
    failed, body = failed_checks(declared)
    assert failed == {"sentence_order_across_documents"}
    assert "not_next_share" not in body and 0.35 < body["swapped_share"] < 0.65
    # Only the in-order (label 0) pairs, all from one document each: none swapped.
    in_order = broken_copy(
        data_dir,
        tmp_path / "b",
        lambda _, rows: [r for r in rows if r["next_sentence_label"] == 0],
        config={"sentence_order": True},
    )
    failed, body = failed_checks(in_order)
    assert "swapped_share" in failed and body["swapped_share"] == 0
    assert "sentence_order_across_documents" not in failed


def test_a_low_mask_rate_and_a_skewed_80_10_10_split_fail(data_dir, tmp_path):
    def unmask_half(row):
        keep = len(row["masked_lm_positions"]) // 2
        for p, original in zip(
            row["masked_lm_positions"][keep:], row["masked_lm_ids"][keep:], strict=True
        ):
            row["input_ids"][p] = original
        row["masked_lm_positions"] = row["masked_lm_positions"][:keep]
        row["masked_lm_ids"] = row["masked_lm_ids"][:keep]

    def never_mask_token(row):
        for p, original in zip(row["masked_lm_positions"], row["masked_lm_ids"], strict=True):
            if row["input_ids"][p] == MASK:
                row["input_ids"][p] = original

    failed, _ = failed_checks(broken_copy(data_dir, tmp_path / "a", each_row(unmask_half)))
    assert failed == {"mask_rate"}
    failed, _ = failed_checks(broken_copy(data_dir, tmp_path / "b", each_row(never_mask_token)))
    assert failed == {"mask_token_share", "kept_token_share"}


def test_unequal_shards_fail(data_dir, tmp_path):
    moved: list[dict] = []

    def move(index: int, rows: list[dict]) -> list[dict]:
        if index == 0:
            moved.extend(rows[:10])
            return rows[10:]
        return rows + moved

    failed, _ = failed_checks(broken_copy(data_dir, tmp_path / "d", move))
    assert failed == {"equal_shards"}


def test_many_unknown_tokens_fail(data_dir, tmp_path):
    def unknown(row):
        a = row["segment_a_length"]
        masked = set(row["masked_lm_positions"])
        for p in range(1, a + 1):
            if p not in masked:
                row["input_ids"][p] = UNK

    failed, _ = failed_checks(broken_copy(data_dir, tmp_path / "d", each_row(unknown)))
    assert "unknown_token_rate" in failed  # (and the mask rate: [UNK] is never maskable)


def test_unreadable_data_and_another_vocabulary_exit_with_status_2(
    data_dir, vocab_dir, tmp_path, capsys
):
    corrupt = tmp_path / "corrupt"
    shutil.copytree(data_dir, corrupt)
    shard = corrupt / "pretraining-00001-of-00002.arrow"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert validate.main(["--data", str(corrupt)]) == 2
    assert "checksum" in capsys.readouterr().err
    other_vocab = tmp_path / "vocab"
    shutil.copytree(vocab_dir, other_vocab)
    manifest = Manifest.from_json((vocab_dir / "manifest.json").read_text())
    rebuilt = dataclasses.replace(manifest, config={"rebuilt": True})
    (other_vocab / "manifest.json").write_text(rebuilt.to_json())
    assert validate.main(["--data", str(data_dir), "--vocab", str(other_vocab)]) == 2
    assert "another vocabulary" in capsys.readouterr().err


def test_command_line_exit_status_1_on_a_failed_check(data_dir, tmp_path, capsys):
    broken = broken_copy(
        data_dir,
        tmp_path / "d",
        first_row(
            lambda r: r.update(b_doc_id=r["doc_id"]), lambda r: r["next_sentence_label"] == 1
        ),
    )
    assert validate.main(["--data", str(broken), "--output", str(tmp_path / "stats.json")]) == 1
    assert "self_negatives" in capsys.readouterr().err
    assert not json.loads((tmp_path / "stats.json").read_text())["passed"]
    assert validate.main(["--data", str(data_dir), "--output", str(tmp_path / "ok.json")]) == 0
