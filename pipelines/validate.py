"""Validation stage: checks the invariants of pretraining shards, writes stats.json, can fail.

    python -m pipelines.validate --data out/pretraining/seq128 [--vocab out/vocab] \
        [--output out/pretraining/seq128/stats.json]

Exit status 1 when a check fails (the failures are printed and in stats.json), 2 when the data
cannot be read (no manifest, a corrupt shard, a different vocabulary). Hard checks: every
example is `[CLS] A [SEP] B [SEP]` with both segments non-empty and the length within the
maximum, masked positions are valid, no special token is masked or used as a random
replacement, no NotNext pair takes B from its own document, shards differ by at most one
example. Statistical checks, with tolerances: the mask rate, the 80/10/10 split, the NotNext
share, the unknown-token rate.

Data written with sentence order (ALBERT; the manifest config's `sentence_order`) has label 1
for swapped pairs, not NotNext: every pair must then come from one document, and the swapped
share (`swapped_share`) is checked against 0.5 as the NotNext share is.

Packed data (RoBERTa's formats; the manifest config's `packing`) is one segment per row,
`[CLS] ... [SEP]`: every label is 0 and every token type 0 (`segment_a_length` is the length
less 2); a `[SEP]` inside the row is a document separator, allowed only in `full-sentences`
rows that run across documents, and a `doc-sentences` row names one document. There is no
label share to check; instead `mean_fill` and `full_share` are reported, and `packed_fill`
checks what greedy packing guarantees (see `packed_fill_check`).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa

from bertdata.options import add_arguments, check, chosen
from bertdata.output_lock import OutputNotWritableError
from pipelines.arrow_shards import join, read_bytes, read_manifest, read_shard, write_atomic
from pipelines.beam_runner import make_pipeline, run_pipeline
from pipelines.options import ValidationConfig
from pipelines.stage import job_parser
from schemas.manifest import MANIFEST_NAME, Manifest, ManifestError, ShardInfo
from schemas.pretraining import (
    NOT_NEXT,
    PRETRAINING_NAME,
    PRETRAINING_VERSION,
    SWAPPED,
    pretraining_spec,
)

STATS_NAME = "stats.json"
RUN_BINS = 16  # masked runs of 1..15 tokens, and 16 or more
ROWS_PER_PASS = 8192  # rows of a shard checked at a time: memory does not grow with the shard
ERROR_KINDS = (
    "too_long",  # longer than max_seq_length
    "bad_segment_lengths",  # A or B empty, or A longer than the sequence allows
    "bad_layout",  # [CLS] / [SEP] not where segment_a_length puts them
    "stray_special_tokens",  # [CLS], [SEP] or [PAD] inside a segment (after unmasking)
    "bad_masked_positions",  # not ascending, out of range, on [CLS]/[SEP], or over the cap
    "masked_special_tokens",  # a special token chosen for prediction
    "special_random_replacements",  # a masked position holds a special token other than [MASK]
    "self_negatives",  # NotNext with B from A's own document
    "is_next_from_other_document",  # IsNext whose B names another document
    "sentence_order_across_documents",  # sentence order: A and B from two documents
    "bad_labels",  # next_sentence_label not 0 or 1 (packed data: not 0)
    "bad_document_separators",  # packed: a [SEP] inside a row that names one document, an
    # empty document between two, or none in a full-sentences row that names two documents
    "doc_sentences_across_documents",  # doc-sentences: a row from two documents
)
PACKED_ONLY = ("bad_document_separators", "doc_sentences_across_documents")


class ValidationError(Exception):
    """The data broke an invariant; the message lists every failed check."""


def label_one_name(sentence_order: bool) -> str:
    """What label 1 is called in the stats: `not_next` for NSP data, `swapped` for
    sentence-order data (ALBERT); its share (`<name>_share`) is expected at 0.5 either way."""
    return "swapped" if sentence_order else "not_next"


def shard_stats(
    table: pa.Table,
    *,
    shard: str,
    max_seq_length: int,
    max_predictions: int,
    special_ids: dict[str, int],
    masked_lm_prob: float,
    histogram_bins: int = 16,
    max_errors_listed: int = 20,
    first_row: int = 0,
    sentence_order: bool = False,
    packing: str = "pairs",
) -> dict[str, Any]:
    """Counts and broken records of one shard, or of its rows from `first_row` on;
    `merge_stats` adds shards together. With `sentence_order` label 1 means swapped, counted
    as `swapped` instead of `not_next`. Packed data (`packing` not "pairs") is checked as
    single segments, and counts its full rows and units."""
    # Long on purpose: one vectorised pass over the shard's columns. The checks share the
    # decoded arrays (ids, offsets, masked positions, labels); split up, they would pass a dozen
    # arrays between functions and read less plainly than this one page does.
    cls, sep, pad, unk, mask = (
        special_ids[t] for t in ("[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]")
    )
    specials = np.array(sorted(special_ids.values()))
    n = table.num_rows
    ids_col = table.column("input_ids").combine_chunks()
    ids = ids_col.values.to_numpy().astype(np.int64)
    off = ids_col.offsets.to_numpy().astype(np.int64)
    length = np.diff(off)
    a_len = table.column("segment_a_length").to_numpy().astype(np.int64)
    b_len = length - a_len - 3
    pos_col = table.column("masked_lm_positions").combine_chunks()
    lab_col = table.column("masked_lm_ids").combine_chunks()
    pos = pos_col.values.to_numpy().astype(np.int64)
    pos_off = pos_col.offsets.to_numpy().astype(np.int64)
    labels = lab_col.values.to_numpy().astype(np.int64)
    num_masked = np.diff(pos_off)
    nsp = table.column("next_sentence_label").to_numpy().astype(np.int64)
    doc_id = table.column("doc_id").to_pylist()
    b_doc_id = table.column("b_doc_id").to_pylist()
    bad: dict[str, np.ndarray] = {}

    packed = packing != "pairs"
    bad["too_long"] = length > max_seq_length
    if packed:  # one segment: a_len + 2 covers every position, so all are token type 0
        seg_ok = (a_len >= 1) & (a_len == length - 2)
    else:
        seg_ok = (a_len >= 1) & (b_len >= 1)
    bad["bad_segment_lengths"] = ~seg_ok
    start = off[:-1]
    ok = np.flatnonzero(seg_ok)  # rows of at least 5 tokens (3 packed): the layout exists
    bad["bad_layout"] = np.zeros(n, bool)
    bad["bad_layout"][ok] = (
        (ids[start[ok]] != cls)
        | (ids[start[ok] + a_len[ok] + 1] != sep)
        | (ids[off[ok + 1] - 1] != sep)
    )
    # The original text: masked positions restored.
    row_of_pred = np.repeat(np.arange(n), num_masked)
    valid_pos = (
        (pos >= 1) & (pos < length[row_of_pred] - 1) & (pos != a_len[row_of_pred] + 1)
        if len(pos)
        else np.zeros(0, bool)
    )
    ascending = np.ones(len(pos), bool)
    if len(pos) > 1:
        same_row = row_of_pred[1:] == row_of_pred[:-1]
        ascending[1:] = ~same_row | (pos[1:] > pos[:-1])
    pos_bad = ~(valid_pos & ascending)
    bad["bad_masked_positions"] = (num_masked > max_predictions) | (
        np.bincount(row_of_pred[pos_bad], minlength=n) > 0
    )
    bad["bad_masked_positions"] |= np.diff(lab_col.offsets.to_numpy()) != num_masked
    global_pos = np.where(valid_pos, start[row_of_pred] + pos, 0) if len(pos) else pos
    original = ids.copy()
    if len(pos) and len(labels) == len(pos):
        original[global_pos[valid_pos]] = labels[valid_pos]
    masked_now = ids[global_pos] if len(pos) else np.zeros(0, np.int64)
    label_special = (
        np.isin(labels, specials) if len(labels) == len(pos) else np.zeros(len(pos), bool)
    )
    bad["masked_special_tokens"] = np.bincount(row_of_pred[label_special], minlength=n) > 0
    random_special = np.isin(masked_now, specials) & (masked_now != mask) & valid_pos
    bad["special_random_replacements"] = np.bincount(row_of_pred[random_special], minlength=n) > 0
    row_of_token = np.repeat(np.arange(n), length)
    labelled_one = nsp == (SWAPPED if sentence_order else NOT_NEXT)
    same_doc = np.fromiter((a == b for a, b in zip(doc_id, b_doc_id, strict=True)), bool, n)
    no_rows = np.zeros(n, bool)
    if packed:
        # [CLS] first, [SEP] last, and inside only document separators between two non-empty
        # pieces: never next to each other, after [CLS] or before the last [SEP].
        cls_or_pad = np.bincount(row_of_token[np.isin(original, [cls, pad])], minlength=n)
        is_sep = original == sep
        seps = np.bincount(row_of_token[is_sep], minlength=n)
        bad["stray_special_tokens"] = (cls_or_pad != 1) | (seps < 1)
        if packing == "doc-sentences":
            separators_ok = seps == 1
        else:
            separators_ok = np.where(same_doc, seps == 1, seps >= 2)
        after = np.flatnonzero(is_sep[1:] & np.isin(original[:-1], [cls, sep])) + 1
        separators_ok &= np.bincount(row_of_token[after], minlength=n) == 0
        bad["bad_document_separators"] = ~separators_ok
        bad["doc_sentences_across_documents"] = ~same_doc if packing == "doc-sentences" else no_rows
        bad["bad_labels"] = nsp != 0  # no sentence task: every label 0
        bad["self_negatives"] = bad["is_next_from_other_document"] = no_rows
        bad["sentence_order_across_documents"] = no_rows
    else:
        structural = np.isin(original, [cls, sep, pad])
        bad["stray_special_tokens"] = np.bincount(row_of_token[structural], minlength=n) != 3
        bad["bad_labels"] = (nsp != 0) & (nsp != 1)
        bad["self_negatives"] = no_rows if sentence_order else labelled_one & same_doc
        bad["is_next_from_other_document"] = no_rows if sentence_order else (nsp == 0) & ~same_doc
        bad["sentence_order_across_documents"] = ~same_doc if sentence_order else no_rows
        for kind in PACKED_ONLY:
            bad[kind] = no_rows

    maskable_tok = ~np.isin(original, specials)
    maskable = np.bincount(row_of_token[maskable_tok], minlength=n)
    text_tokens = int(maskable_tok.sum()) + int((original == unk).sum())
    lab_ok = len(labels) == len(pos)
    kept = int((masked_now == labels).sum()) if lab_ok else 0
    # Runs of consecutive masked positions (a span, or a word's pieces, or neighbours).
    run_start = np.ones(len(pos), bool)
    if len(pos) > 1:
        run_start[1:] = (row_of_pred[1:] != row_of_pred[:-1]) | (pos[1:] != pos[:-1] + 1)
    run_lengths = np.diff(np.append(np.flatnonzero(run_start), len(pos)))
    as_mask = int((masked_now == mask).sum())
    edges = np.linspace(0, max_seq_length, histogram_bins + 1)
    hist, _ = np.histogram(length, bins=edges)
    errors = []
    kinds = ERROR_KINDS if packed else [k for k in ERROR_KINDS if k not in PACKED_ONLY]
    for kind in kinds:
        for row in np.flatnonzero(bad[kind])[:max_errors_listed].tolist():
            errors.append(
                {"shard": shard, "row": first_row + row, "kind": kind, "doc_id": doc_id[row]}
            )
    # Packed rows: those of the maximum length, and the first row of each unit (stream or
    # document) and copy, whose pair_index is 0.
    packed_counts = (
        {
            "full_rows": int((length == max_seq_length).sum()),
            "units": int((table.column("pair_index").to_numpy() == 0).sum()),
        }
        if packed
        else {}
    )
    return {
        "shards": 1,
        "examples": n,
        "tokens": int(length.sum()),
        "segment_a_tokens": int(a_len.sum()),
        label_one_name(sentence_order): int(labelled_one.sum()),
        "maskable_tokens": int(maskable.sum()),
        "expected_masked": float(np.minimum(maskable * masked_lm_prob, max_predictions).sum()),
        "masked": int(num_masked.sum()),
        "masked_as_mask_token": as_mask,
        "masked_kept": kept,
        "masked_random": int(num_masked.sum()) - as_mask - kept,
        "text_tokens": text_tokens,
        "unknown_tokens": int((original == unk).sum()),
        "length_histogram": hist.tolist(),
        "masked_runs": len(run_lengths),
        "masked_run_histogram": np.bincount(
            np.minimum(run_lengths, RUN_BINS), minlength=RUN_BINS + 1
        )[1:].tolist(),
        **packed_counts,
        "error_counts": {kind: int(bad[kind].sum()) for kind in kinds},
        "errors": errors,
    }


def merge_stats(a: dict[str, Any], b: dict[str, Any], max_errors_listed: int = 20) -> dict:
    """Sum of two shards' (or partial sums') stats."""
    out: dict[str, Any] = {}
    for key, value in a.items():
        if key in ("length_histogram", "masked_run_histogram"):
            out[key] = [x + y for x, y in zip(value, b[key], strict=True)]
        elif key == "error_counts":
            out[key] = {k: value[k] + b[key][k] for k in value}
        elif key == "errors":
            errors = sorted(value + b[key], key=lambda e: (e["shard"], e["row"], e["kind"]))
            out[key] = errors[:max_errors_listed]
        else:
            out[key] = value + b[key]
    return out


def _share_check(name, observed, count, expected, slack, z, draws=None) -> dict[str, Any]:
    """observed / count against expected, within slack plus z standard errors of `draws`
    independent choices (count, unless choices are made for runs of tokens at once)."""
    draws = count if draws is None else draws
    se = math.sqrt(expected * (1 - expected) / draws) if draws else 0.0
    tolerance = slack + z * se
    value = observed / count if count else 0.0
    return {
        "name": name,
        "passed": count > 0 and abs(value - expected) <= tolerance,
        "value": round(value, 6),
        "expected": expected,
        "tolerance": round(tolerance, 6),
    }


def packed_fill_check(stats: dict[str, Any], max_seq_length: int) -> dict[str, Any]:
    """Packed data: whether rows are as full as greedy packing makes them.

    A row is closed only when its unit's next sentence (with a separator, at a document
    start) does not fit, and that sentence opens the next row; so two consecutive rows of a
    unit hold together at least the budget B = max_seq_length - 2 content tokens. Summed
    over the rows of each unit and copy, twice the content tokens are at least (rows - units)
    * B: a bound that holds for any text, which rows cut short or one sentence a row break.
    """
    budget = max_seq_length - 2  # value: content tokens / (rows * budget)
    rows, units = stats["examples"], stats["units"]
    content = stats["tokens"] - 2 * rows
    bound = (1 - units / rows) / 2 if rows else 0.0
    return {
        "name": "packed_fill",
        "passed": rows > 0 and 2 * content >= (rows - units) * budget,
        "value": round(content / (rows * budget), 6) if rows else 0.0,
        "expected": f">= {bound:.6f}, (1 - units / rows) / 2 with {units} units",
    }


def evaluate(
    stats: dict[str, Any], manifest: Manifest, config: ValidationConfig
) -> list[dict[str, Any]]:
    """The checks on merged stats: each a dict with name, passed, value and what was expected."""
    cfg = manifest.config
    checks = []
    for kind, count in stats["error_counts"].items():
        checks.append({"name": kind, "passed": count == 0, "value": count, "expected": 0})
    rows = [s.rows for s in manifest.shards]
    checks.append(
        {
            "name": "equal_shards",
            "passed": max(rows) - min(rows) <= 1,
            "value": [min(rows), max(rows)],
            "expected": "max - min <= 1",
        }
    )
    checks.append(
        {
            "name": "examples_match_manifest",
            "passed": stats["examples"] == manifest.total_rows,
            "value": stats["examples"],
            "expected": manifest.total_rows,
        }
    )
    maskable = stats["maskable_tokens"]
    if cfg.get("dynamic_masking"):
        checks.append(
            {
                "name": "unmasked_for_dynamic_masking",
                "passed": stats["masked"] == 0,
                "value": stats["masked"],
                "expected": 0,
            }
        )
    else:
        rate = stats["masked"] / maskable if maskable else 0.0
        expected = stats["expected_masked"] / maskable if maskable else 0.0
        checks.append(
            {
                "name": "mask_rate",
                "passed": maskable > 0 and abs(rate - expected) <= config.mask_rate_tolerance,
                "value": round(rate, 6),
                "expected": round(expected, 6),
                "tolerance": config.mask_rate_tolerance,
            }
        )
        masked = stats["masked"]
        by_runs = bool(cfg.get("span_masking") or cfg.get("whole_word_mask"))
        for name, key, p in (
            ("mask_token_share", "masked_as_mask_token", 0.8),
            ("random_token_share", "masked_random", 0.1),
            ("kept_token_share", "masked_kept", 0.1),
        ):
            # One choice per word or span: as few independent draws as runs of masked tokens.
            draws = stats["masked_runs"] if by_runs else None
            checks.append(
                _share_check(name, stats[key], masked, p, config.share_slack, config.z, draws)
            )
    if cfg.get("packing", "pairs") != "pairs":
        checks.append(packed_fill_check(stats, cfg["max_seq_length"]))
    else:
        label = label_one_name(bool(cfg.get("sentence_order")))
        checks.append(
            _share_check(
                f"{label}_share",
                stats[label],
                stats["examples"],
                0.5,
                config.not_next_slack,
                config.z,
            )
        )
    unknown = stats["unknown_tokens"] / stats["text_tokens"] if stats["text_tokens"] else 0.0
    checks.append(
        {
            "name": "unknown_token_rate",
            "passed": unknown <= config.max_unknown_rate,
            "value": round(unknown, 6),
            "expected": f"<= {config.max_unknown_rate}",
        }
    )
    return checks


def summary(stats: dict, manifest: Manifest, manifest_hash: str, config: ValidationConfig) -> dict:
    """stats.json: the numbers, the checks and whether all passed."""
    checks = evaluate(stats, manifest, config)
    n = stats["examples"] or 1
    length = manifest.config["max_seq_length"]
    edges = np.linspace(0, length, config.histogram_bins + 1).round(1).tolist()
    if manifest.config.get("packing", "pairs") != "pairs":
        # Fill: mean length / max length; full: rows of the maximum length.
        shares = {
            "mean_fill": round(stats["tokens"] / n / length, 6),
            "full_share": round(stats["full_rows"] / n, 6),
        }
    else:
        label = label_one_name(bool(manifest.config.get("sentence_order")))
        shares = {f"{label}_share": round(stats[label] / n, 6)}
    return {
        "passed": all(c["passed"] for c in checks),
        "data_manifest_hash": manifest_hash,
        "max_seq_length": length,
        "examples": stats["examples"],
        "shards": stats["shards"],
        "mean_length": round(stats["tokens"] / n, 2),
        "mean_segment_a_length": round(stats["segment_a_tokens"] / n, 2),
        **shares,
        "mask_rate": round(stats["masked"] / max(stats["maskable_tokens"], 1), 6),
        "masked_per_example": round(stats["masked"] / n, 3),
        "unknown_token_rate": round(stats["unknown_tokens"] / max(stats["text_tokens"], 1), 6),
        "length_histogram": {"edges": edges, "counts": stats["length_histogram"]},
        "mean_masked_run": round(stats["masked"] / max(stats["masked_runs"], 1), 3),
        "masked_run_histogram": {
            "lengths": [*range(1, RUN_BINS), f"{RUN_BINS}+"],
            "counts": stats["masked_run_histogram"],
        },
        "counts": {
            k: v
            for k, v in stats.items()
            if k not in ("length_histogram", "masked_run_histogram", "errors", "error_counts")
        },
        "error_counts": stats["error_counts"],
        "checks": checks,
        "errors": stats["errors"],
        "validation_config": asdict(config),
    }


class _ShardStats(beam.DoFn):
    def __init__(self, directory: str, manifest: Manifest, config: ValidationConfig):
        self.directory = directory
        self.manifest = manifest
        self.config = config

    def process(self, info: ShardInfo) -> Iterator[dict]:
        cfg = self.manifest.config
        table = read_shard(self.directory, info, pretraining_spec(cfg["token_id_type"]))
        yield checked_in_passes(
            table,
            shard=info.path,
            max_seq_length=cfg["max_seq_length"],
            max_predictions=cfg["max_predictions_per_seq"],
            special_ids=cfg["special_token_ids"],
            masked_lm_prob=cfg["masked_lm_prob"],
            histogram_bins=self.config.histogram_bins,
            max_errors_listed=self.config.max_errors_listed,
            sentence_order=bool(cfg.get("sentence_order")),  # absent from older data
            packing=cfg.get("packing", "pairs"),  # absent unless packed
        )


def checked_in_passes(table: pa.Table, **options) -> dict[str, Any]:
    """shard_stats of a whole shard, ROWS_PER_PASS rows at a time (its decoded int64 copies
    would grow with the shard): the same counts and errors as one pass (the expected masked
    count, a float, summed in another order)."""
    listed = options["max_errors_listed"]
    stats = None
    for first in range(0, max(table.num_rows, 1), ROWS_PER_PASS):
        part = shard_stats(table.slice(first, ROWS_PER_PASS), first_row=first, **options)
        stats = part if stats is None else merge_stats(stats, part, max_errors_listed=1 << 62)
    stats["shards"] = 1
    # As one pass lists them: by kind, then row, the first `listed` of each kind.
    order = {kind: i for i, kind in enumerate(ERROR_KINDS)}
    errors = sorted(stats["errors"], key=lambda e: (order[e["kind"]], e["row"]))
    stats["errors"], count = [], dict.fromkeys(ERROR_KINDS, 0)
    for error in errors:
        if count[error["kind"]] < listed:
            count[error["kind"]] += 1
            stats["errors"].append(error)
    return stats


class _MergeStats(beam.CombineFn):
    def __init__(self, max_errors_listed: int):
        self.max_errors_listed = max_errors_listed

    def create_accumulator(self):
        return None

    def add_input(self, acc, stats):
        return stats if acc is None else merge_stats(acc, stats, self.max_errors_listed)

    def merge_accumulators(self, accs):
        out = None
        for acc in accs:
            if acc is not None:
                out = acc if out is None else merge_stats(out, acc, self.max_errors_listed)
        return out

    def extract_output(self, acc):
        return acc


def _write_summary(stats, path, manifest, manifest_hash, config) -> None:
    if stats is None:
        raise ValidationError(f"{path}: the data has no shards")
    body = summary(stats, manifest, manifest_hash, config)
    write_atomic(path, (json.dumps(body, indent=2) + "\n").encode())


def check_vocabulary(manifest: Manifest, vocab_dir: str, *, source: str) -> None:
    """Raise ManifestError unless the data was built from this vocabulary directory."""
    _, vocab_hash = read_manifest(vocab_dir)
    if all(ref.manifest_hash != vocab_hash for ref in manifest.inputs):
        raise ManifestError(
            f"{source}: built from another vocabulary than {vocab_dir} (manifest hash "
            f"{vocab_hash[:12]} is not among its inputs); re-run the pretraining data stage"
        )


def check_writable(path: str) -> None:
    """Refuse a local stats file that cannot be written, before the work rather than after it.
    stats.json is one file written atomically, so validation needs no lock of its own."""
    if "://" in path:
        return
    if os.path.isdir(path):
        raise OutputNotWritableError(f"{path}: is a directory; --output names the stats file")
    try:
        with tempfile.NamedTemporaryFile(
            dir=os.path.dirname(os.path.abspath(path)), prefix=".probe-"
        ):
            pass
    except OSError as err:
        raise OutputNotWritableError(
            f"{path}: cannot write the stats file here ({err.strerror or err})"
        ) from err


def validate(
    data_dir: str,
    *,
    vocab_dir: str | None = None,
    output: str | None = None,
    config: ValidationConfig | None = None,
    beam_args: list[str] | None = None,
) -> dict[str, Any]:
    """Check a pretraining output directory and write stats.json; raise ValidationError on failure."""
    config = config or ValidationConfig()
    manifest, digest = read_manifest(data_dir)
    source = join(data_dir, MANIFEST_NAME)
    manifest.expect(schema_name=PRETRAINING_NAME, schema_version=PRETRAINING_VERSION, source=source)
    if vocab_dir:
        check_vocabulary(manifest, vocab_dir, source=source)
    output = output or join(data_dir, STATS_NAME)
    check_writable(output)
    pipeline = make_pipeline(beam_args or [])
    _ = (
        pipeline
        | "ListShards" >> beam.Create(manifest.shards)
        | "SpreadShards" >> beam.Reshuffle()
        | "ShardStats" >> beam.ParDo(_ShardStats(data_dir, manifest, config))
        | "Merge" >> beam.CombineGlobally(_MergeStats(config.max_errors_listed))
        | "WriteStats" >> beam.Map(_write_summary, output, manifest, digest, config)
    )
    run_pipeline(pipeline)
    body = json.loads(read_bytes(output))
    if not body["passed"]:
        failed = [c for c in body["checks"] if not c["passed"]]
        lines = [f"{c['name']}: {c['value']} (expected {c['expected']})" for c in failed]
        where = [f"{e['shard']} row {e['row']}: {e['kind']}" for e in body["errors"][:5]]
        raise ValidationError(
            f"{data_dir}: {len(failed)} check(s) failed (see {output}):\n  "
            + "\n  ".join(lines + where)
        )
    return body


def build_parser() -> argparse.ArgumentParser:
    parser = job_parser(
        "validate",
        __doc__.split("\n")[0],
        "--data runs/sample/pretraining/seq128 --vocab runs/sample/vocab",
    )
    parser.add_argument("--data", required=True, help="a pretraining output directory (seq128/...)")
    parser.add_argument(
        "--vocab", default=None, help="check the data was built from this vocabulary"
    )
    parser.add_argument("--output", default=None, help=f"default: <data>/{STATS_NAME}")
    add_arguments(parser, ValidationConfig)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, beam_args = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    config = ValidationConfig(**chosen(ValidationConfig, args))
    try:
        check(config)
    except ValueError as err:
        parser.error(str(err))
    try:
        body = validate(
            args.data, vocab_dir=args.vocab, output=args.output, config=config, beam_args=beam_args
        )
    except ValidationError as err:
        print(f"FAILED {err}", file=sys.stderr)
        return 1
    except (ManifestError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if "mean_fill" in body:
        shown = f"mean fill {body['mean_fill']:.4f}, full {body['full_share']:.4f}"
    elif "swapped_share" in body:
        shown = f"swapped {body['swapped_share']:.4f}"
    else:
        shown = f"NotNext {body['not_next_share']:.4f}"
    print(
        f"passed: {body['examples']} examples, {shown}, mask rate "
        f"{body['mask_rate']:.4f}, unknown {body['unknown_token_rate']:.5f}"
    )
    return 0


if __name__ == "__main__":
    # Run the imported module's main, so that the classes of the elements pickle under their
    # module's name (not __main__) for worker processes.
    from pipelines.validate import main as _main

    sys.exit(_main())
