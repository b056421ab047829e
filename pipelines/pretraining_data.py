"""Pretraining data job: document shards -> pre-masked sentence pairs with NSP labels.

    python -m pipelines.pretraining_data --documents out/documents --vocab out/vocab \
        --output out/pretraining [--max-seq-lengths 128,512] [--dupe-factor 5] \
        [--runner DataflowRunner --project P --region R --temp_location gs://B/tmp ...]

Writes one directory per sequence length (`seq128/`, `seq512/`), each with equal-size Arrow
shards (schemas/pretraining.py) and a manifest, from one pass over the tokenized documents.

How it stays deterministic and bounded in memory:
- Documents are ordered by a hash of their id and cut into buckets of consecutive hashes; a
  bucket (about --docs-per-bucket documents) is the unit of work. A document's rank in that
  order does not depend on the number of buckets or workers.
- Every random choice comes from an rng seeded with a hash of (seed, sequence length, doc id,
  duplicate index).
- B of a NotNext pair is a random other document's rank; the request goes to that document's
  bucket, which answers with B's tokens, and the answer goes back to the asking bucket.
- Examples are ranked by (document rank, duplicate, pair); rank mod num_shards is the shard,
  so shards differ by at most one example and nothing is dropped. Inside a shard, examples are
  ordered by a random key from their rng, i.e. shuffled.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import logging
import math
import os
import random
import sys
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from tokenizers import Tokenizer

from pipelines.arrow_shards import (
    ReadArrowShards,
    join,
    read_bytes,
    read_manifest,
    shard_name,
    write_atomic,
    write_shard,
    write_shard_index,
)
from pipelines.beam_runner import make_pipeline
from pipelines.masking import MaskingConfig, MaskingVocab, mask_sequence_groups
from pipelines.pairs import (
    SPECIAL_TOKENS_PER_PAIR,
    PairGroup,
    create_pair_plans,
    gather_runs,
    pack_pair_groups,
    plans_to_array,
    random_next_span,
    sentence_bounds,
    split_long_sentences,
)
from pipelines.stage import StageRun
from pipelines.vocab import read_vocab_dir
from schemas.documents import DOCUMENTS
from schemas.manifest import MANIFEST_NAME, InputRef, Manifest, ManifestError
from schemas.pretraining import NOT_NEXT, pretraining_spec, token_id_type
from wordpiece.cached_encoder import CachedEncoder
from wordpiece.tokenizer import CONFIG_NAME, TOKENIZER_NAME, VOCAB_NAME, read_vocab_config
from wordpiece.vocab_file import SPECIAL_TOKENS, parse_vocab, special_token_ids

STAGE = "pretraining_data"
log = logging.getLogger(__name__)

MIN_SEQ_LENGTH = 2 + SPECIAL_TOKENS_PER_PAIR  # [CLS] a [SEP] b [SEP]
ROWS_PER_CHUNK = 16384  # examples per table sent from a bucket to the shard writers


class BadInputError(ValueError):
    """Inputs the job refuses, with the file they came from."""


@dataclass(frozen=True, kw_only=True)
class PretrainingDataConfig:
    """Options that shape the examples; all go into the manifests and their config hash."""

    max_seq_lengths: tuple[int, ...] = (128, 512)  # one output directory seq<N> per length
    max_predictions_per_seq: tuple[int, ...] = (20, 80)  # masked-LM cap, one per length
    masked_lm_prob: float = 0.15  # share of maskable tokens to predict
    short_seq_prob: float = 0.1  # chance per pair of a shorter random target length
    dupe_factor: int = 5  # copies of the corpus, each with its own pairs and masks
    whole_word_mask: bool = False  # mask whole words, the 80/10/10 choice per word
    dynamic_masking: bool = False  # store unmasked pairs; the loader masks every epoch
    seed: int = 12345  # with a record's identity, seeds every random choice
    num_shards: int = 0  # shards per length; 0: ceil(examples / examples_per_shard)
    examples_per_shard: int = 50_000  # shard size when num_shards is 0
    max_position_embeddings: int = 512  # the model's position table: the longest length

    def validate(self) -> None:
        """Raise ValueError naming the first option that is out of range."""
        if not self.max_seq_lengths:
            raise ValueError("max_seq_lengths must name at least one length")
        if len(set(self.max_seq_lengths)) != len(self.max_seq_lengths):
            raise ValueError(f"max_seq_lengths has duplicates: {self.max_seq_lengths}")
        if len(self.max_predictions_per_seq) != len(self.max_seq_lengths):
            raise ValueError(
                f"max_predictions_per_seq {self.max_predictions_per_seq} needs one value per "
                f"length in max_seq_lengths {self.max_seq_lengths}"
            )
        for length, cap in zip(self.max_seq_lengths, self.max_predictions_per_seq, strict=True):
            if length < MIN_SEQ_LENGTH:
                raise ValueError(f"max_seq_length {length} is below {MIN_SEQ_LENGTH}")
            if length > self.max_position_embeddings:
                raise ValueError(
                    f"max_seq_length {length} exceeds the position table "
                    f"(max_position_embeddings {self.max_position_embeddings})"
                )
            if not 1 <= cap <= length - SPECIAL_TOKENS_PER_PAIR:
                raise ValueError(
                    f"max_predictions_per_seq {cap} for length {length} must be in "
                    f"[1, {length - SPECIAL_TOKENS_PER_PAIR}]"
                )
        MaskingConfig(masked_lm_prob=self.masked_lm_prob).validate()
        if not 0.0 <= self.short_seq_prob <= 1.0:
            raise ValueError(f"short_seq_prob must be in [0, 1], got {self.short_seq_prob}")
        if not 1 <= self.dupe_factor <= 65535:
            raise ValueError(f"dupe_factor must be in [1, 65535], got {self.dupe_factor}")
        if self.num_shards < 0:
            raise ValueError(f"num_shards must be 0 (automatic) or more, got {self.num_shards}")
        if self.examples_per_shard < 1:
            raise ValueError(f"examples_per_shard must be positive, got {self.examples_per_shard}")

    def masking(self, length_index: int) -> MaskingConfig:
        return MaskingConfig(
            masked_lm_prob=self.masked_lm_prob,
            max_predictions_per_seq=self.max_predictions_per_seq[length_index],
            whole_word_mask=self.whole_word_mask,
        )

    def num_shards_for(self, num_examples: int) -> int:
        if self.num_shards:
            return self.num_shards
        return max(1, math.ceil(num_examples / self.examples_per_shard))


def default_max_predictions(max_seq_length: int) -> int:
    """The paper's caps, 20 at 128 and 80 at 512: 5/32 of the length, rounded up."""
    return -(-max_seq_length * 5 // 32)


@dataclass(frozen=True)
class Vocabulary:
    """A vocabulary directory, checked: its tokens, special ids and manifest hash."""

    directory: str
    tokens: list[str]
    manifest_hash: str

    @property
    def special_ids(self) -> dict[str, int]:
        return special_token_ids(self.tokens)


def read_vocabulary_files(vocab_dir: str) -> tuple[list[str], Tokenizer, str]:
    """The tokens and the checked tokenizer of a finished vocab stage (local or gs://), and the
    hash of its manifest.

    The vocab stage's reader checks its manifest, the files' checksums and that tokenizer.json
    agrees with vocab.txt. Padding and truncation, which a tokenizer.json may have been saved
    with, are turned off.
    """
    for name in (VOCAB_NAME, TOKENIZER_NAME, CONFIG_NAME):
        path = join(vocab_dir, name)
        if not FileSystems.exists(path):
            raise BadInputError(f"{path}: missing; {vocab_dir} is not a vocabulary directory")
    tokenizer, vocab_hash = read_vocab_dir(vocab_dir)
    tokenizer.no_padding()
    tokenizer.no_truncation()
    tokens = parse_vocab(
        read_bytes(join(vocab_dir, VOCAB_NAME)), source=join(vocab_dir, VOCAB_NAME)
    )
    return tokens, tokenizer, vocab_hash


def _vocab_lines(vocab_dir: str) -> list[str]:
    """vocab.txt's tokens, unchecked: for workers, after the driver checked the directory."""
    return [
        line.removesuffix("\r")
        for line in read_bytes(join(vocab_dir, VOCAB_NAME)).decode("utf-8").split("\n")[:-1]
    ]


def load_vocabulary(vocab_dir: str) -> Vocabulary:
    """A finished vocabulary stage's output, its files checked."""
    tokens, _, vocab_hash = read_vocabulary_files(vocab_dir)
    return Vocabulary(vocab_dir, tokens, vocab_hash)


def record_seed(seed: int, *identity: Any) -> int:
    """A 128-bit rng seed from the job's seed and a record's identity."""
    text = "\x1f".join(str(part) for part in (seed, *identity))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=16).digest(), "big")


def doc_hash(doc_id: str) -> int:
    """The 64-bit hash that orders documents and assigns them to buckets."""
    return int.from_bytes(hashlib.blake2b(doc_id.encode(), digest_size=8).digest(), "big")


def bucket_of(hash64: int, num_buckets: int) -> int:
    """Buckets are ranges of consecutive hashes, so the order by hash runs bucket by bucket."""
    return (hash64 * num_buckets) >> 64


def num_buckets_for(num_documents: int, docs_per_bucket: int, min_buckets: int) -> int:
    return max(min_buckets, math.ceil(num_documents / docs_per_bucket), 1)


class TokenizedDocument(NamedTuple):
    """A document as token ids, with its sentence boundaries."""

    doc_id: str
    hash64: int
    tokens: np.ndarray  # (num_tokens,) uint16 or int32
    bounds: np.ndarray  # (num_sentences + 1,) int64, see pipelines.pairs.sentence_bounds


class PlannedDocument(NamedTuple):
    """A tokenized document with the pairs planned for it, per length and duplicate."""

    doc: TokenizedDocument
    bounds: list[np.ndarray]  # per length: boundaries after cutting over-long sentences
    plans: list[list[np.ndarray]]  # [length][dupe]: PLAN_DTYPE arrays


REQUEST_DTYPE = np.dtype(
    [
        ("src_bucket", np.int64),
        ("src_index", np.int64),  # the asking document's index in its bucket
        ("length_index", np.int64),
        ("dupe", np.int64),
        ("pair", np.int64),
        ("target_index", np.int64),  # B's document's index in this bucket
        ("random_start", np.float64),
        ("b_target_length", np.int64),
    ]
)
ANSWER_KEY = ["src_index", "length_index", "dupe", "pair"]


class RandomNextAnswers(NamedTuple):
    """B segments for the NotNext pairs of one bucket's documents."""

    keys: np.ndarray  # REQUEST_DTYPE rows of the requests answered
    b_doc_ids: list[str]
    tokens: np.ndarray  # the B segments, one after another
    offsets: np.ndarray  # (num_answers + 1,)


def _counter(name: str):
    return Metrics.counter(STAGE, name)


class TokenizeDocuments(beam.DoFn):
    """Document rows -> (bucket, TokenizedDocument); empty sentences and documents are counted."""

    def __init__(self, vocab_dir: str, num_buckets: int, token_dtype: str):
        self.vocab_dir = vocab_dir
        self.num_buckets = num_buckets
        self.token_dtype = token_dtype
        self.documents = _counter("documents_read")
        self.empty_documents = _counter("documents_empty")
        self.empty_sentences = _counter("sentences_empty")
        self.tokens = _counter("tokens")
        self.unknown = _counter("unknown_tokens")
        self.special_in_text = _counter("special_tokens_in_text")

    def setup(self) -> None:
        # Beam runs one DoFn per core already; the tokenizer's own thread pool only adds
        # CPU time (about a third more per token, measured).
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        # The driver checked the vocabulary directory (load_vocabulary); workers just load it.
        tokens = _vocab_lines(self.vocab_dir)
        self.tokenizer = Tokenizer.from_str(
            read_bytes(join(self.vocab_dir, TOKENIZER_NAME)).decode()
        )
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        typecode = "H" if np.dtype(self.token_dtype).kind == "u" else "i"
        options, _ = read_vocab_config(
            read_bytes(join(self.vocab_dir, CONFIG_NAME)), source=join(self.vocab_dir, CONFIG_NAME)
        )
        self.encoder = CachedEncoder(self.tokenizer, typecode=typecode, lowercase=options.lowercase)
        ids = special_token_ids(tokens)
        self.unk_id = ids["[UNK]"]
        # The tokenizer keeps "[SEP]", "[MASK]"... typed in the text as special tokens; inside
        # a sentence they would break the [CLS] A [SEP] B [SEP] layout, so they become [UNK].
        self.special = np.zeros(len(tokens), dtype=bool)
        self.special[[ids[t] for t in SPECIAL_TOKENS if t != "[UNK]"]] = True

    def process(self, row: dict) -> Iterator[tuple[int, TokenizedDocument]]:
        self.documents.inc()
        sentences = row["sentences"]
        packed = self.encoder.encode(sentences)
        itemsize = self.encoder.itemsize
        lengths = np.fromiter(map(len, packed), dtype=np.int64, count=len(packed)) // itemsize
        total = int(lengths.sum())
        if total == 0:
            self.empty_documents.inc()
            return
        # native order to the shards' dtype, as a writable copy (special tokens are replaced)
        tokens = np.frombuffer(b"".join(packed), dtype=self.encoder.typecode)
        tokens = tokens.astype(self.token_dtype)
        nonempty = lengths > 0
        if not nonempty.all():
            self.empty_sentences.inc(int((~nonempty).sum()))
        in_text = self.special[tokens]
        if in_text.any():
            self.special_in_text.inc(int(in_text.sum()))
            tokens[in_text] = self.unk_id
        self.tokens.inc(total)
        self.unknown.inc(int((tokens == self.unk_id).sum()))
        h = doc_hash(row["doc_id"])
        doc = TokenizedDocument(row["doc_id"], h, tokens, sentence_bounds(lengths[nonempty]))
        yield bucket_of(h, self.num_buckets), doc


def document_offsets(bucket_counts: Iterable[tuple[int, int]], num_buckets: int) -> np.ndarray:
    """Rank of the first document of each bucket: (num_buckets + 1,) int64."""
    counts = np.zeros(num_buckets, dtype=np.int64)
    for bucket, count in bucket_counts:
        counts[bucket] += count
    offsets = np.zeros(num_buckets + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets


class PlanPairs(beam.DoFn):
    """A bucket of documents -> planned documents, NotNext requests and example counts."""

    REQUESTS = "requests"
    COUNTS = "counts"

    def __init__(self, config: PretrainingDataConfig, num_buckets: int):
        self.config = config
        self.num_buckets = num_buckets
        self.one_segment = {
            L: _counter(f"seq{L}_documents_one_segment") for L in config.max_seq_lengths
        }
        self.split = {L: _counter(f"seq{L}_sentences_split") for L in config.max_seq_lengths}

    def process(self, element, doc_counts):
        bucket, docs = element
        cfg = self.config
        offsets = document_offsets(doc_counts, self.num_buckets)
        num_documents = int(offsets[-1])
        if num_documents < 2:
            raise BadInputError(
                f"the corpus has {num_documents} document(s) with text; NotNext pairs need B "
                "from another document, so at least two are needed"
            )
        docs = sorted(docs, key=lambda d: (d.hash64, d.doc_id))
        requests: list[tuple] = []
        num_examples = [0] * len(cfg.max_seq_lengths)
        planned = []
        for index, doc in enumerate(docs):
            rank = int(offsets[bucket]) + index
            bounds_per_length, plans_per_length = [], []
            for li, length in enumerate(cfg.max_seq_lengths):
                max_num_tokens = length - SPECIAL_TOKENS_PER_PAIR
                bounds, num_split = split_long_sentences(doc.bounds, max_num_tokens)
                if num_split:
                    self.split[length].inc(num_split)
                if len(bounds) < 3:
                    self.one_segment[length].inc()
                bounds_list = bounds.tolist()
                per_dupe = []
                for dupe in range(cfg.dupe_factor):
                    rng = random.Random(record_seed(cfg.seed, "pairs", length, doc.doc_id, dupe))
                    plans = create_pair_plans(
                        bounds_list,
                        rng,
                        max_num_tokens=max_num_tokens,
                        short_seq_prob=cfg.short_seq_prob,
                        num_documents=num_documents,
                        doc_rank=rank,
                    )
                    for pair, plan in enumerate(plans):
                        if plan.random_doc_rank >= 0:
                            requests.append(
                                (
                                    bucket,
                                    index,
                                    li,
                                    dupe,
                                    pair,
                                    plan.random_doc_rank,
                                    plan.random_start,
                                    plan.b_target_length,
                                )
                            )
                    num_examples[li] += len(plans)
                    per_dupe.append(plans_to_array(plans))
                bounds_per_length.append(bounds)
                plans_per_length.append(per_dupe)
            planned.append(PlannedDocument(doc, bounds_per_length, plans_per_length))
        yield bucket, planned
        for li in range(len(cfg.max_seq_lengths)):
            yield beam.pvalue.TaggedOutput(self.COUNTS, (li, bucket, num_examples[li]))
        if requests:
            rows = np.array(requests, dtype=REQUEST_DTYPE)
            # Until here target_index held B's document rank: find its bucket and index.
            ranks = rows["target_index"]
            target_bucket = np.searchsorted(offsets, ranks, side="right") - 1
            rows["target_index"] = ranks - offsets[target_bucket]
            for tb in np.unique(target_bucket):
                yield beam.pvalue.TaggedOutput(self.REQUESTS, (int(tb), rows[target_bucket == tb]))


class AnswerRandomNext(beam.DoFn):
    """(bucket, {docs, requests}) -> B segments, sent back to the asking buckets."""

    def process(self, element) -> Iterator[tuple[int, RandomNextAnswers]]:
        bucket, grouped = element
        batches = list(grouped["requests"])
        if not batches:
            return
        planned = [d for group in grouped["docs"] for d in group]
        if not planned:
            raise RuntimeError(f"bucket {bucket}: requests for B but the bucket has no document")
        rows = np.concatenate(batches)
        bounds: dict[tuple[int, int], list[int]] = {}
        for src_bucket in np.unique(rows["src_bucket"]):
            mine = rows[rows["src_bucket"] == src_bucket]
            segments, ids = [], []
            for target, li, start, b_target in zip(
                mine["target_index"].tolist(),
                mine["length_index"].tolist(),
                mine["random_start"].tolist(),
                mine["b_target_length"].tolist(),
                strict=True,
            ):
                doc = planned[target]
                if (target, li) not in bounds:
                    bounds[target, li] = doc.bounds[li].tolist()
                s, e = random_next_span(bounds[target, li], start, b_target)
                segments.append(doc.doc.tokens[s:e])
                ids.append(doc.doc.doc_id)
            lengths = np.fromiter(map(len, segments), np.int64, len(segments))
            offsets = np.zeros(len(segments) + 1, dtype=np.int64)
            np.cumsum(lengths, out=offsets[1:])
            yield int(src_bucket), RandomNextAnswers(mine, ids, np.concatenate(segments), offsets)


def example_offsets(counts: Iterable[tuple[int, int, int]], length_index: int, num_buckets: int):
    """Global rank of the first example of each bucket at one length: (num_buckets + 1,)."""
    per_bucket = np.zeros(num_buckets, dtype=np.int64)
    for li, bucket, n in counts:
        if li == length_index:
            per_bucket[bucket] += n
    offsets = np.zeros(num_buckets + 1, dtype=np.int64)
    np.cumsum(per_bucket, out=offsets[1:])
    return offsets


def _list_array(offsets: np.ndarray, values: np.ndarray) -> pa.ListArray:
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values))


def shard_tables(part: dict[str, Any], num_shards: int) -> Iterator[tuple[int, pa.Table]]:
    """A group of examples' columns as one table per shard (rank mod num_shards)."""
    rank = part["_rank"]
    shard = rank % num_shards
    order = np.argsort(shard, kind="stable")  # rows grouped by shard, in rank order

    def lists(values, lengths):
        lens = part[lengths]
        offsets = np.zeros(len(lens) + 1, dtype=np.int64)
        np.cumsum(lens, out=offsets[1:])
        flat = part[values][gather_runs(offsets[:-1][order], lens[order])]
        new_offsets = np.zeros(len(lens) + 1, dtype=np.int64)
        np.cumsum(lens[order], out=new_offsets[1:])
        return _list_array(new_offsets, flat)

    def strings(name):
        return pa.array(np.array(part[name], dtype=object)[order], pa.string())

    table = pa.table(
        {
            "input_ids": lists("input_ids", "length"),
            "segment_a_length": pa.array(part["segment_a_length"][order].astype(np.uint16)),
            "masked_lm_positions": lists("masked_lm_positions", "num_masked"),
            "masked_lm_ids": lists("masked_lm_ids", "num_masked"),
            "next_sentence_label": pa.array(part["next_sentence_label"][order]),
            "doc_id": strings("doc_id"),
            "b_doc_id": strings("b_doc_id"),
            "dupe_index": pa.array(part["dupe_index"][order].astype(np.uint16)),
            "pair_index": pa.array(part["pair_index"][order].astype(np.uint32)),
            "_rank": pa.array(rank[order].astype(np.uint64)),
            "_key": pa.array(part["_key"][order].astype(np.uint64)),
        }
    )
    sorted_shard = shard[order]
    for s in np.unique(sorted_shard):
        lo, hi = np.searchsorted(sorted_shard, [s, s + 1])
        yield int(s), table.slice(lo, hi - lo)


def table_to_stream_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def table_from_stream_bytes(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.BufferReader(data)).read_all()


def _groups_of_examples(planned, li: int) -> Iterator[tuple[list, int]]:
    """The bucket's (document, duplicate, plans) groups at one length, gathered into batches
    of at least ROWS_PER_CHUNK examples (the last one smaller), with their example counts."""
    pending: list[tuple[int, int, np.ndarray]] = []
    rows = 0
    for index, doc in enumerate(planned):
        for dupe, plans in enumerate(doc.plans[li]):
            if len(plans):
                pending.append((index, dupe, plans))
                rows += len(plans)
                if rows >= ROWS_PER_CHUNK:
                    yield pending, rows
                    pending, rows = [], 0
    if pending:
        yield pending, rows


class AssembleExamples(beam.DoFn):
    """(bucket, {docs, answers}) -> per length: (shard, Arrow table of examples)."""

    def __init__(self, config: PretrainingDataConfig, vocab_dir: str, num_buckets: int):
        self.config = config
        self.vocab_dir = vocab_dir
        self.num_buckets = num_buckets
        lengths = config.max_seq_lengths
        self.examples = {L: _counter(f"seq{L}_examples") for L in lengths}
        self.not_next = {L: _counter(f"seq{L}_not_next") for L in lengths}
        self.masked = {L: _counter(f"seq{L}_masked_tokens") for L in lengths}

    def setup(self) -> None:
        tokens = _vocab_lines(self.vocab_dir)
        self.vocab = MaskingVocab.from_tokens(tokens)
        ids = special_token_ids(tokens)
        self.cls_id, self.sep_id = ids["[CLS]"], ids["[SEP]"]

    def process(self, element, example_counts):
        bucket, grouped = element
        cfg = self.config
        planned = [d for group in grouped["docs"] for d in group]
        answers: dict[tuple, tuple[str, np.ndarray]] = {}
        for batch in grouped["answers"]:
            keys = zip(*(batch.keys[k].tolist() for k in ANSWER_KEY), strict=True)
            for i, key in enumerate(keys):
                segment = batch.tokens[batch.offsets[i] : batch.offsets[i + 1]]
                answers[key] = (batch.b_doc_ids[i], segment)
        for li, length in enumerate(cfg.max_seq_lengths):
            offsets = example_offsets(example_counts, li, self.num_buckets)
            num_shards = cfg.num_shards_for(int(offsets[-1]))
            next_rank = int(offsets[bucket])
            masking = cfg.masking(li)
            for pending, rows in _groups_of_examples(planned, li):
                part = self._examples(planned, pending, li, length, answers, masking)
                part["_rank"] = np.arange(next_rank, next_rank + rows)
                next_rank += rows
                for shard, table in shard_tables(part, num_shards):
                    yield beam.pvalue.TaggedOutput(
                        f"seq{length}", (shard, table_to_stream_bytes(table))
                    )
            if next_rank != offsets[bucket + 1]:
                raise RuntimeError(f"bucket {bucket}: example count differs from the plan")

    def _examples(self, planned, pending, li, length, answers, masking) -> dict[str, Any]:
        """The examples of (document, duplicate, plans) groups, in that order; each group's
        random choices come from its own rng, seeded by the document and duplicate."""
        cfg = self.config
        doc_position: dict[int, int] = {}
        groups, doc_ids, b_doc_ids, dupes, sizes = [], [], [], [], []
        for index, dupe, plans in pending:
            doc_id = planned[index].doc.doc_id
            random_pairs = np.flatnonzero(plans["random_doc_rank"] >= 0).tolist()
            found = [answers[(index, li, dupe, p)] for p in random_pairs]
            group_b_ids = [doc_id] * len(plans)
            for p, (b_doc_id, _) in zip(random_pairs, found, strict=True):
                group_b_ids[p] = b_doc_id
            rng = np.random.Generator(
                np.random.PCG64(record_seed(cfg.seed, "mask", length, doc_id, dupe))
            )
            position = doc_position.setdefault(index, len(doc_position))
            groups.append(PairGroup(position, plans, [segment for _, segment in found], rng))
            doc_ids += [doc_id] * len(plans)
            b_doc_ids += group_b_ids
            dupes.append(dupe)
            sizes.append(len(plans))
        rngs = [g.rng for g in groups]
        pairs = pack_pair_groups(
            [planned[index].doc.tokens for index in doc_position],
            groups,
            max_num_tokens=length - SPECIAL_TOKENS_PER_PAIR,
            cls_id=self.cls_id,
            sep_id=self.sep_id,
        )
        num = len(doc_ids)
        sizes_array = np.asarray(sizes, dtype=np.int64)
        group_offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
        np.cumsum(sizes_array, out=group_offsets[1:])
        if cfg.dynamic_masking:
            input_ids = pairs.input_ids
            positions = np.zeros(0, np.uint16)
            originals = np.zeros(0, input_ids.dtype)
            num_masked = np.zeros(num, np.int64)
        else:
            masked = mask_sequence_groups(
                pairs.input_ids, pairs.offsets, group_offsets, rngs, self.vocab, masking
            )
            input_ids, positions, originals = (
                masked.input_ids,
                masked.masked_lm_positions,
                masked.masked_lm_ids,
            )
            num_masked = np.diff(masked.masked_lm_offsets)
        self.examples[length].inc(num)
        self.not_next[length].inc(int((pairs.next_sentence_labels == NOT_NEXT).sum()))
        self.masked[length].inc(len(originals))
        # Orders the examples inside their shard: a shuffle, fixed by the seed.
        max_key = np.iinfo(np.int64).max
        keys = np.concatenate(
            [r.integers(0, max_key, n, dtype=np.int64) for r, n in zip(rngs, sizes, strict=True)]
        )
        return {
            "input_ids": input_ids,
            "length": np.diff(pairs.offsets),
            "segment_a_length": pairs.segment_a_lengths,
            "masked_lm_positions": positions.astype(np.uint16),
            "masked_lm_ids": originals,
            "num_masked": num_masked,
            "next_sentence_label": pairs.next_sentence_labels,
            "doc_id": doc_ids,
            "b_doc_id": b_doc_ids,
            "dupe_index": np.repeat(np.asarray(dupes, dtype=np.int64), sizes_array),
            "pair_index": np.arange(num) - np.repeat(group_offsets[:-1], sizes_array),
            "_key": keys,
        }


class _WriteExampleShard(beam.DoFn):
    def __init__(self, output_dir: str, token_type: str):
        self.output_dir = output_dir
        self.spec = pretraining_spec(token_type)

    def process(self, element, num_shards: int) -> Iterator[dict]:
        index, parts = element
        tables = [table_from_stream_bytes(p) for p in parts if p is not None]
        if tables:
            # One chunk first: Arrow's take on many chunks is several times slower.
            table = pa.concat_tables(tables).combine_chunks()
            table = table.sort_by([("_key", "ascending"), ("_rank", "ascending")])
            table = table.select(self.spec.schema.names).cast(self.spec.arrow_schema)
        else:
            table = self.spec.arrow_schema.empty_table()
        yield write_shard(self.output_dir, shard_name(self.spec, index, num_shards), table, "zstd")


class WriteExampleShards(beam.PTransform):
    """(shard, table bytes) -> equal-size shards of one length, every shard written."""

    def __init__(self, output_dir: str, token_type: str, num_shards):
        super().__init__()
        self.output_dir = output_dir
        self.token_type = token_type
        self.num_shards = num_shards  # a singleton PCollection: known only once counted

    def expand(self, parts):
        num_shards = beam.pvalue.AsSingleton(self.num_shards)
        placeholders = self.num_shards | "AllShards" >> beam.FlatMap(
            lambda n: [(i, None) for i in range(n)]
        )
        return (
            (parts, placeholders)
            | "Flatten" >> beam.Flatten()
            | "GroupByShard" >> beam.GroupByKey()
            | "WriteShard"
            >> beam.ParDo(_WriteExampleShard(self.output_dir, self.token_type), num_shards)
            | "CollectShardInfo" >> beam.combiners.ToList()
            | "WriteShardIndex" >> beam.Map(write_shard_index, self.output_dir)
        )


def _total_examples(counts: Iterable[tuple[int, int, int]], length_index: int) -> int:
    return sum(n for li, _, n in counts if li == length_index)


class CreatePretrainingExamples(beam.PTransform):
    """Document rows -> {length: (shard, table bytes)}: pairs, NotNext draws and masks."""

    def __init__(self, config: PretrainingDataConfig, vocab: Vocabulary, num_buckets: int):
        super().__init__()
        self.config = config
        self.vocab = vocab
        self.num_buckets = num_buckets

    def expand(self, rows):
        cfg, k = self.config, self.num_buckets
        token_type = token_id_type(len(self.vocab.tokens))
        docs = rows | "Tokenize" >> beam.ParDo(
            TokenizeDocuments(self.vocab.directory, k, np.dtype(token_type).str)
        )
        doc_counts = (
            docs
            | "OnePerDocument" >> beam.Map(lambda kv: (kv[0], 1))
            | "DocumentsPerBucket" >> beam.CombinePerKey(sum)
        )
        planned = (
            docs
            | "GroupDocuments" >> beam.GroupByKey()
            | "PlanPairs"
            >> beam.ParDo(PlanPairs(cfg, k), beam.pvalue.AsList(doc_counts)).with_outputs(
                PlanPairs.REQUESTS, PlanPairs.COUNTS, main="planned"
            )
        )
        answers = (
            {"docs": planned.planned, "requests": planned[PlanPairs.REQUESTS]}
            | "GroupRequests" >> beam.CoGroupByKey()
            | "AnswerRandomNext" >> beam.ParDo(AnswerRandomNext())
        )
        tags = [f"seq{L}" for L in cfg.max_seq_lengths]
        examples = (
            {"docs": planned.planned, "answers": answers}
            | "GroupAnswers" >> beam.CoGroupByKey()
            | "AssembleExamples"
            >> beam.ParDo(
                AssembleExamples(cfg, self.vocab.directory, k),
                beam.pvalue.AsList(planned[PlanPairs.COUNTS]),
            ).with_outputs(*tags)
        )
        counts = planned[PlanPairs.COUNTS]
        out = {}
        for li, length in enumerate(cfg.max_seq_lengths):
            num_shards = (
                counts
                | f"Total{length}" >> beam.combiners.ToList()
                | f"NumShards{length}"
                >> beam.Map(
                    lambda c, li=li: _checked_num_shards(cfg, c, li, cfg.max_seq_lengths[li])
                )
            )
            out[length] = (examples[f"seq{length}"], num_shards)
        return out


@dataclass(frozen=True, kw_only=True)
class LengthStageRun(StageRun):
    """The stage run of one length: its manifest keeps the shared counters and its own."""

    length: int

    def finish(self, result) -> Manifest:
        manifest = super().finish(result)
        own = {
            name: value
            for name, value in manifest.counters.items()
            if not name.startswith("seq") or name.startswith(f"seq{self.length}_")
        }
        if own != manifest.counters:
            manifest = dataclasses.replace(manifest, counters=own)
            write_atomic(self.manifest_path, manifest.to_json().encode())
        return manifest


def _checked_num_shards(cfg: PretrainingDataConfig, counts, li: int, length: int) -> int:
    total = _total_examples(counts, li)
    if total == 0:
        raise BadInputError(
            f"no pretraining examples at length {length}: every document has a single sentence "
            "(a pair needs two segments of one document)"
        )
    return cfg.num_shards_for(total)


def output_dir_for(output: str, length: int) -> str:
    return join(output, f"seq{length}")


def length_config(config: PretrainingDataConfig, vocab: Vocabulary, li: int) -> dict[str, Any]:
    """The manifest config of one output directory."""
    common = asdict(config)
    del common["max_seq_lengths"], common["max_predictions_per_seq"]
    return {
        **common,
        "max_seq_length": config.max_seq_lengths[li],
        "max_predictions_per_seq": config.max_predictions_per_seq[li],
        "vocab_size": len(vocab.tokens),
        "special_token_ids": vocab.special_ids,
        "token_id_type": token_id_type(len(vocab.tokens)),
    }


def check_documents(documents_dir: str) -> tuple[Manifest, str]:
    """The documents stage's manifest and hash, refusing a corpus that cannot give NotNext."""
    manifest, digest = read_manifest(documents_dir)
    manifest.expect(
        schema_name=DOCUMENTS.name,
        schema_version=DOCUMENTS.version,
        source=join(documents_dir, MANIFEST_NAME),
    )
    if manifest.total_rows < 2:
        raise BadInputError(
            f"{join(documents_dir, MANIFEST_NAME)}: {manifest.total_rows} document(s); NotNext "
            "pairs take B from another document, so the corpus needs at least two"
        )
    return manifest, digest


def parse_args(argv: list[str] | None):
    defaults = PretrainingDataConfig()
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.pretraining_data",
        description=(
            "Build BERT pretraining examples (masked sentence pairs with next-sentence labels) "
            "from document shards and a vocabulary directory, as equal-size Arrow shards, one "
            "output directory per sequence length. Paths may be local or gs://. Any other flag "
            "goes to Beam, e.g. --runner DataflowRunner --project P --region R "
            "--temp_location gs://B/tmp --sdk_container_image IMAGE (dataflow/Dockerfile), or --direct_num_workers 2 "
            "--direct_running_mode multi_processing."
        ),
    )
    parser.add_argument("--documents", required=True, help="documents stage output directory")
    parser.add_argument(
        "--vocab", required=True, help="vocabulary directory (vocab.txt, tokenizer.json)"
    )
    parser.add_argument("--output", required=True, help="writes <output>/seq<N> per length")
    parser.add_argument(
        "--max-seq-lengths",
        default=",".join(map(str, defaults.max_seq_lengths)),
        help="comma-separated sequence lengths, e.g. 128,512",
    )
    parser.add_argument(
        "--max-predictions-per-seq",
        default="",
        help="comma-separated masked-LM caps, one per length (default 5/32 of the length: 20, 80)",
    )
    parser.add_argument("--masked-lm-prob", type=float, default=defaults.masked_lm_prob)
    parser.add_argument("--short-seq-prob", type=float, default=defaults.short_seq_prob)
    parser.add_argument("--dupe-factor", type=int, default=defaults.dupe_factor)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--whole-word-mask", action="store_true", help="mask whole words")
    parser.add_argument(
        "--dynamic-masking",
        action="store_true",
        help="store unmasked pairs; the training loader masks them afresh each epoch",
    )
    parser.add_argument(
        "--num-shards", type=int, default=defaults.num_shards, help="per length; 0: automatic"
    )
    parser.add_argument("--examples-per-shard", type=int, default=defaults.examples_per_shard)
    parser.add_argument(
        "--max-position-embeddings", type=int, default=defaults.max_position_embeddings
    )
    parser.add_argument(
        "--docs-per-bucket",
        type=int,
        default=512,
        help="documents per unit of work (memory per worker); does not change the output",
    )
    parser.add_argument(
        "--min-buckets",
        type=int,
        default=16,
        help="least units of work; does not change the output",
    )
    args, beam_args = parser.parse_known_args(argv)
    try:
        lengths = tuple(int(x) for x in args.max_seq_lengths.split(",") if x.strip())
        caps = (
            tuple(int(x) for x in args.max_predictions_per_seq.split(",") if x.strip())
            if args.max_predictions_per_seq
            else tuple(default_max_predictions(L) for L in lengths)
        )
    except ValueError as err:
        raise ValueError(f"--max-seq-lengths / --max-predictions-per-seq: {err}") from err
    config = PretrainingDataConfig(
        max_seq_lengths=lengths,
        max_predictions_per_seq=caps,
        masked_lm_prob=args.masked_lm_prob,
        short_seq_prob=args.short_seq_prob,
        dupe_factor=args.dupe_factor,
        whole_word_mask=args.whole_word_mask,
        dynamic_masking=args.dynamic_masking,
        seed=args.seed,
        num_shards=args.num_shards,
        examples_per_shard=args.examples_per_shard,
        max_position_embeddings=args.max_position_embeddings,
    )
    config.validate()
    if args.docs_per_bucket < 1 or args.min_buckets < 1:
        raise ValueError("--docs-per-bucket and --min-buckets must be positive")
    return args, config, beam_args


def run(argv: list[str] | None = None) -> dict[int, dict]:
    """Run the job; returns {length: manifest dict}. Lengths already up to date are skipped."""
    args, config, beam_args = parse_args(argv)
    documents, documents_hash = check_documents(args.documents)
    vocab = load_vocabulary(args.vocab)
    inputs = [
        InputRef(path=args.documents, manifest_hash=documents_hash),
        InputRef(path=args.vocab, manifest_hash=vocab.manifest_hash),
    ]
    stages, done = {}, {}
    for li, length in enumerate(config.max_seq_lengths):
        stage = LengthStageRun(
            length=length,
            stage=STAGE,
            spec=pretraining_spec(token_id_type(len(vocab.tokens))),
            output_dir=output_dir_for(args.output, length),
            config=length_config(config, vocab, li),
            inputs=inputs,
        )
        existing = stage.up_to_date()
        if existing is not None:
            log.info("%s is up to date (%d examples)", stage.output_dir, existing.total_rows)
            done[length] = json.loads(existing.to_json())
        else:
            stages[li] = stage
    if not stages:
        return done
    # Lengths are built independently, so the ones to (re)build run alone and give the same bytes.
    todo = [config.max_seq_lengths[li] for li in stages]
    sub = PretrainingDataConfig(
        **{
            **asdict(config),
            "max_seq_lengths": tuple(todo),
            "max_predictions_per_seq": tuple(config.max_predictions_per_seq[li] for li in stages),
        }
    )
    for stage in stages.values():
        stage.begin()
    k = num_buckets_for(documents.total_rows, args.docs_per_bucket, args.min_buckets)
    pipeline = make_pipeline(beam_args)
    build_pipeline(pipeline, sub, vocab, args.documents, args.output, k)
    result = pipeline.run()
    result.wait_until_finish()
    for li, stage in stages.items():
        done[config.max_seq_lengths[li]] = json.loads(stage.finish(result).to_json())
    return dict(sorted(done.items()))


def build_pipeline(
    pipeline: beam.Pipeline,
    config: PretrainingDataConfig,
    vocab: Vocabulary,
    documents_dir: str,
    output: str,
    num_buckets: int,
) -> None:
    """Adds the job to `pipeline`: read documents, build examples, write each length."""
    token_type = token_id_type(len(vocab.tokens))
    outputs = (
        pipeline
        | "ReadDocuments" >> ReadArrowShards(documents_dir, DOCUMENTS)
        | "Examples" >> CreatePretrainingExamples(config, vocab, num_buckets)
    )
    for length, (parts, num_shards) in outputs.items():
        _ = parts | f"Write{length}" >> WriteExampleShards(
            output_dir_for(output, length), token_type, num_shards
        )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        manifests = run(argv)
    except (BadInputError, ManifestError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for length, manifest in manifests.items():
        rows = [s["rows"] for s in manifest["shards"]]
        print(
            f"seq{length}: {manifest['total_rows']} examples in {len(rows)} shards "
            f"({min(rows)}-{max(rows)} per shard)"
        )
        for name, value in manifest["counters"].items():
            print(f"  {name}: {value}")
    return 0


if __name__ == "__main__":
    # Run the imported module's main, so that the classes of the elements pickle under their
    # module's name (not __main__) for worker processes.
    from pipelines.pretraining_data import main as _main

    sys.exit(_main())
