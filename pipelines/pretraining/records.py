"""The pretraining data job's work on records: tokenize a document, plan its pairs, assemble and
mask a group of examples, lay examples out by shard and write a shard.

Beam-free except for counters, so that both exchanges (pipelines/pretraining/shuffle_exchange.py through
Beam's shuffle, pipelines/pretraining/local_exchange.py through local files) run the same code and give
the same bytes.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from typing import NamedTuple

import numpy as np
import pyarrow as pa
from apache_beam.metrics import Metrics
from tokenizers import Tokenizer

from bertdata.masking import MaskingVocab, gather_runs, mask_sequence_groups
from bertdata.tokens import TOKENIZER_NAME
from pipelines.arrow_shards import join, read_bytes, shard_name, write_shard
from pipelines.options import PretrainingDataConfig
from pipelines.pretraining.common import STAGE, record_seed, vocab_lines
from pipelines.pretraining.pairs import (
    SPECIAL_TOKENS_PER_PAIR,
    PairGroup,
    pack_pair_groups,
    pair_plan_array,
    sentence_bounds,
    split_long_sentences,
)
from schemas.pretraining import NOT_NEXT, SWAPPED, pretraining_spec
from wordpiece.cached_encoder import CachedEncoder
from wordpiece.tokenizer import CONFIG_NAME, read_vocab_config
from wordpiece.vocab_file import SPECIAL_TOKENS, special_token_ids

ROWS_PER_CHUNK = 16384  # examples assembled and masked in one set of array operations

# (bucket-local document index, length index, duplicate, pair) -> (B's doc id, B's tokens)
Answers = dict[tuple[int, int, int, int], tuple[str, np.ndarray]]


def counter(name: str):
    return Metrics.counter(STAGE, name)


class TokenizedDocument(NamedTuple):
    """A document as token ids, with its sentence boundaries."""

    doc_id: str
    hash64: int
    tokens: np.ndarray  # (num_tokens,) uint16 or int32
    bounds: (
        np.ndarray
    )  # (num_sentences + 1,) int64, see pipelines.pretraining.pairs.sentence_bounds


class PlannedDocument(NamedTuple):
    """A tokenized document with the pairs planned for it, per length and duplicate."""

    doc: TokenizedDocument
    bounds: list[np.ndarray]  # per length: boundaries after cutting over-long sentences
    plans: list[list[np.ndarray]]  # [length][dupe]: PLAN_DTYPE arrays


class DocumentTokenizer:
    """Document rows -> token ids and sentence boundaries; call setup() on the worker first.

    Empty sentences and documents are counted and left out; special tokens typed in the text
    become [UNK].
    """

    def __init__(self, vocab_dir: str, token_dtype: str):
        self.vocab_dir = vocab_dir
        self.token_dtype = token_dtype
        self.documents = counter("documents_read")
        self.empty_documents = counter("documents_empty")
        self.empty_sentences = counter("sentences_empty")
        self.tokens = counter("tokens")
        self.unknown = counter("unknown_tokens")
        self.special_in_text = counter("special_tokens_in_text")

    def setup(self) -> None:
        # Beam runs one DoFn per core already; the tokenizer's own thread pool only adds
        # CPU time (about a third more per token, measured).
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        # The driver checked the vocabulary directory (load_vocabulary); workers just load it.
        tokens = vocab_lines(self.vocab_dir)
        tokenizer = Tokenizer.from_str(read_bytes(join(self.vocab_dir, TOKENIZER_NAME)).decode())
        tokenizer.no_padding()
        tokenizer.no_truncation()
        typecode = "H" if np.dtype(self.token_dtype).kind == "u" else "i"
        options, _ = read_vocab_config(
            read_bytes(join(self.vocab_dir, CONFIG_NAME)), source=join(self.vocab_dir, CONFIG_NAME)
        )
        self.encoder = CachedEncoder(
            tokenizer,
            typecode=typecode,
            lowercase=options.lowercase,
            accents_stripped=options.accents_stripped,
        )
        ids = special_token_ids(tokens)
        self.unk_id = ids["[UNK]"]
        # The tokenizer keeps "[SEP]", "[MASK]"... typed in the text as special tokens; inside
        # a sentence they would break the [CLS] A [SEP] B [SEP] layout, so they become [UNK].
        self.special = np.zeros(len(tokens), dtype=bool)
        self.special[[ids[t] for t in SPECIAL_TOKENS if t != "[UNK]"]] = True

    def tokenize(self, doc_id: str, hash64: int, sentences: list[str]) -> TokenizedDocument | None:
        """The document's ids and boundaries; None for a document without text."""
        self.documents.inc()
        packed = self.encoder.encode(sentences)
        itemsize = self.encoder.itemsize
        lengths = np.fromiter(map(len, packed), dtype=np.int64, count=len(packed)) // itemsize
        total = int(lengths.sum())
        if total == 0:
            self.empty_documents.inc()
            return None
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
        return TokenizedDocument(doc_id, hash64, tokens, sentence_bounds(lengths[nonempty]))


class DocumentPlanner:
    """A document and its rank in the corpus -> its pairs per length and duplicate."""

    def __init__(self, config: PretrainingDataConfig):
        self.config = config
        lengths = config.max_seq_lengths
        self.one_segment = {L: counter(f"seq{L}_documents_one_segment") for L in lengths}
        self.split = {L: counter(f"seq{L}_sentences_split") for L in lengths}

    def plan(self, doc: TokenizedDocument, rank: int, num_documents: int) -> PlannedDocument:
        cfg = self.config
        bounds_per_length, plans_per_length = [], []
        for length in cfg.max_seq_lengths:
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
                plans = pair_plan_array(
                    bounds_list,
                    rng,
                    max_num_tokens=max_num_tokens,
                    short_seq_prob=cfg.short_seq_prob,
                    num_documents=num_documents,
                    doc_rank=rank,
                    sentence_order=cfg.sentence_order,
                )
                per_dupe.append(plans)
            bounds_per_length.append(bounds)
            plans_per_length.append(per_dupe)
        return PlannedDocument(doc, bounds_per_length, plans_per_length)


def too_few_documents(config: PretrainingDataConfig, num_documents: int) -> str | None:
    """Why a corpus with num_documents documents of text cannot be used, or None if it can:
    NSP takes NotNext B segments from another document; sentence order needs one document."""
    if num_documents >= config.min_documents:
        return None
    if config.sentence_order:
        return "the corpus has no document with text"
    return (
        f"the corpus has {num_documents} document(s) with text; NotNext pairs need B "
        "from another document, so at least two are needed"
    )


def example_offsets(counts: Iterable[tuple[int, int, int]], length_index: int, num_buckets: int):
    """Global rank of the first example of each bucket at one length: (num_buckets + 1,)."""
    per_bucket = np.zeros(num_buckets, dtype=np.int64)
    for li, bucket, n in counts:
        if li == length_index:
            per_bucket[bucket] += n
    offsets = np.zeros(num_buckets + 1, dtype=np.int64)
    np.cumsum(per_bucket, out=offsets[1:])
    return offsets


@dataclass
class ExampleColumns:
    """A chunk of masked examples as columns, rows in rank order: what the assembler hands the
    shard writers. List columns are flat, with each row's size beside them."""

    input_ids: np.ndarray  # every row's tokens, one after another
    length: np.ndarray  # tokens per row
    segment_a_length: np.ndarray  # tokens of segment A, after [CLS]
    masked_lm_positions: np.ndarray  # every row's masked positions, one after another
    masked_lm_ids: np.ndarray  # the original tokens there
    num_masked: np.ndarray  # masked positions per row
    next_sentence_label: np.ndarray  # IS_NEXT or NOT_NEXT; with sentence order IN_ORDER or SWAPPED
    doc_id: list[str]  # the document of segment A
    b_doc_id: list[str]  # the document of segment B (another one for NotNext)
    dupe_index: np.ndarray  # which copy of the corpus (dupe_factor) the row comes from
    pair_index: np.ndarray  # the row's place among its document copy's pairs
    key: np.ndarray  # a random sort key: the order of the rows inside their shard
    rank: np.ndarray  # the row's place in the whole output at this length

    @classmethod
    def concatenate(cls, parts: list[ExampleColumns]) -> ExampleColumns:
        """Chunks as one, in the order given."""
        if len(parts) == 1:
            return parts[0]
        values = {}
        for f in fields(cls):
            chunks = [getattr(p, f.name) for p in parts]
            values[f.name] = (
                sum(chunks, []) if isinstance(chunks[0], list) else np.concatenate(chunks)
            )
        return cls(**values)


def _list_array(offsets: np.ndarray, values: np.ndarray) -> pa.ListArray:
    if offsets[-1] > np.iinfo(np.int32).max:
        raise ValueError(
            f"{offsets[-1]} values in one list column of a bucket, more than Arrow's 32-bit "
            "offsets hold: lower --docs-per-bucket"
        )
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values))


def examples_by_shard(part: ExampleColumns, num_shards: int) -> tuple[pa.Table, np.ndarray]:
    """A chunk of examples as one table, rows grouped by shard (rank mod num_shards) in rank
    order, and the shard of each row. `_rank` and `_key` order the rows of a shard."""
    shard = part.rank % num_shards
    order = np.argsort(shard, kind="stable")

    def lists(values: np.ndarray, lens: np.ndarray) -> pa.ListArray:
        offsets = np.zeros(len(lens) + 1, dtype=np.int64)
        np.cumsum(lens, out=offsets[1:])
        flat = values[gather_runs(offsets[:-1][order], lens[order])]
        new_offsets = np.zeros(len(lens) + 1, dtype=np.int64)
        np.cumsum(lens[order], out=new_offsets[1:])
        return _list_array(new_offsets, flat)

    def strings(values: list[str]) -> pa.Array:
        return pa.array(np.array(values, dtype=object)[order], pa.string())

    table = pa.table(
        {
            "input_ids": lists(part.input_ids, part.length),
            "segment_a_length": pa.array(part.segment_a_length[order].astype(np.uint16)),
            "masked_lm_positions": lists(part.masked_lm_positions, part.num_masked),
            "masked_lm_ids": lists(part.masked_lm_ids, part.num_masked),
            "next_sentence_label": pa.array(part.next_sentence_label[order]),
            "doc_id": strings(part.doc_id),
            "b_doc_id": strings(part.b_doc_id),
            "dupe_index": pa.array(part.dupe_index[order].astype(np.uint16)),
            "pair_index": pa.array(part.pair_index[order].astype(np.uint32)),
            "_rank": pa.array(part.rank[order].astype(np.uint64)),
            "_key": pa.array(part.key[order].astype(np.uint64)),
        }
    )
    return table, shard[order]


def shard_tables(part: ExampleColumns, num_shards: int) -> Iterator[tuple[int, pa.Table]]:
    """A group of examples' columns as one table per shard (rank mod num_shards)."""
    table, sorted_shard = examples_by_shard(part, num_shards)
    for s in np.unique(sorted_shard):
        lo, hi = np.searchsorted(sorted_shard, [s, s + 1])
        yield int(s), table.slice(lo, hi - lo)


def write_example_shard(
    output_dir: str, token_type: str, index: int, num_shards: int, tables: list[pa.Table]
) -> dict:
    """One output shard from its parts: ordered by each example's random key (a shuffle fixed
    by the seed), ties by rank. Returns its manifest entry."""
    spec = pretraining_spec(token_type)
    if tables:
        # One chunk first: Arrow's take on many chunks is several times slower.
        table = pa.concat_tables(tables).combine_chunks()
        table = table.sort_by([("_key", "ascending"), ("_rank", "ascending")])
        table = table.select(spec.schema.names).cast(spec.arrow_schema)
    else:
        table = spec.arrow_schema.empty_table()
    return write_shard(output_dir, shard_name(spec, index, num_shards), table, "zstd")


def groups_of_examples(planned: list[PlannedDocument], li: int) -> Iterator[tuple[list, int]]:
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


class ExampleAssembler:
    """A bucket's planned documents and their NotNext B segments -> masked examples, as
    column arrays of consecutive ranks; call setup() on the worker first."""

    def __init__(self, config: PretrainingDataConfig, vocab_dir: str):
        self.config = config
        self.vocab_dir = vocab_dir
        lengths = config.max_seq_lengths
        self.examples = {L: counter(f"seq{L}_examples") for L in lengths}
        # The examples labelled 1: NotNext pairs, or with sentence order the swapped ones.
        self.label_one = SWAPPED if config.sentence_order else NOT_NEXT
        name = "swapped" if config.sentence_order else "not_next"
        self.labelled_one = {L: counter(f"seq{L}_{name}") for L in lengths}
        self.masked = {L: counter(f"seq{L}_masked_tokens") for L in lengths}

    def setup(self) -> None:
        tokens = vocab_lines(self.vocab_dir)
        self.vocab = MaskingVocab.from_tokens(tokens)
        ids = special_token_ids(tokens)
        self.cls_id, self.sep_id = ids["[CLS]"], ids["[SEP]"]

    def parts(
        self, planned: list[PlannedDocument], answers: Answers, li: int, first_rank: int
    ) -> Iterator[ExampleColumns]:
        """The bucket's examples at length index `li`, in chunks; ranks start at first_rank."""
        length = self.config.max_seq_lengths[li]
        masking = self.config.masking(li)
        next_rank = first_rank
        for pending, rows in groups_of_examples(planned, li):
            yield self._examples(planned, pending, li, length, answers, masking, next_rank)
            next_rank += rows

    def _examples(
        self, planned, pending, li, length, answers, masking, first_rank
    ) -> ExampleColumns:
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
        self.labelled_one[length].inc(int((pairs.next_sentence_labels == self.label_one).sum()))
        self.masked[length].inc(len(originals))
        # Orders the examples inside their shard: a shuffle, fixed by the seed.
        max_key = np.iinfo(np.int64).max
        keys = np.concatenate(
            [r.integers(0, max_key, n, dtype=np.int64) for r, n in zip(rngs, sizes, strict=True)]
        )
        return ExampleColumns(
            input_ids=input_ids,
            length=np.diff(pairs.offsets),
            segment_a_length=pairs.segment_a_lengths,
            masked_lm_positions=positions.astype(np.uint16),
            masked_lm_ids=originals,
            num_masked=num_masked,
            next_sentence_label=pairs.next_sentence_labels,
            doc_id=doc_ids,
            b_doc_id=b_doc_ids,
            dupe_index=np.repeat(np.asarray(dupes, dtype=np.int64), sizes_array),
            pair_index=np.arange(num) - np.repeat(group_offsets[:-1], sizes_array),
            key=keys,
            rank=np.arange(first_rank, first_rank + num),
        )
