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
from pipelines.pretraining.packing import (
    ROW_DTYPE,
    SPECIAL_TOKENS_PER_ROW,
    pack_rows,
    plan_rows,
    stream_of,
)
from pipelines.pretraining.pairs import (
    PLAN_DTYPE,
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
    """A tokenized document with the pairs planned for it, per length and duplicate (packed
    data: the rows that start in it)."""

    doc: TokenizedDocument
    bounds: list[np.ndarray]  # per length: boundaries after cutting over-long sentences
    plans: list[list[np.ndarray]]  # [length][dupe]: PLAN_DTYPE arrays (packed: ROW_DTYPE)


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
    """A document and its rank in the corpus -> its pairs per length and duplicate; or, for
    packed data, a bucket's documents -> their rows (`plan_bucket` does either)."""

    def __init__(self, config: PretrainingDataConfig):
        self.config = config
        lengths = config.max_seq_lengths
        if not config.packed:
            self.one_segment = {L: counter(f"seq{L}_documents_one_segment") for L in lengths}
        self.split = {L: counter(f"seq{L}_sentences_split") for L in lengths}
        if config.packing == "full-sentences" and config.packing_streams < 1:
            raise ValueError("full-sentences packing needs packing_streams, set by the job")

    @property
    def plan_dtype(self) -> np.dtype:
        return ROW_DTYPE if self.config.packed else PLAN_DTYPE

    def plan_bucket(
        self, docs: list[TokenizedDocument], first_rank: int, num_documents: int
    ) -> list[PlannedDocument]:
        """A bucket's documents, in rank order from first_rank: each with its plans."""
        if self.config.packed:
            return self.plan_packed(docs)
        return [self.plan(doc, first_rank + i, num_documents) for i, doc in enumerate(docs)]

    def plan_packed(self, docs: list[TokenizedDocument]) -> list[PlannedDocument]:
        """Packed rows of a bucket's documents (in rank order, whole streams), each row in the
        plans of the document it starts in; its copies are the same rows."""
        cfg = self.config
        streams = cfg.packing_streams
        if cfg.packing == "full-sentences":
            # Streams are ranges of hashes, so a stream's documents are consecutive here.
            keys = [stream_of(doc.hash64, streams) for doc in docs]
        else:  # doc-sentences: one call for all; plan_rows counts rows per document
            keys = [0] * len(docs)
        units = np.flatnonzero(np.diff(keys, prepend=-1, append=-1) != 0).tolist()
        bounds_per_length, plans_per_length = [], []
        for length in cfg.max_seq_lengths:
            max_num_tokens = length - SPECIAL_TOKENS_PER_ROW
            cut = []
            for doc in docs:
                bounds, num_split = split_long_sentences(doc.bounds, max_num_tokens)
                if num_split:
                    self.split[length].inc(num_split)
                cut.append(bounds)
            per_doc: list[list[np.ndarray]] = [[] for _ in docs]
            for lo, hi in zip(units[:-1], units[1:], strict=True):
                first_docs, rows = plan_rows(
                    [b.tolist() for b in cut[lo:hi]],
                    max_num_tokens,
                    cross_documents=cfg.packing == "full-sentences",
                )
                edges = np.searchsorted(first_docs, np.arange(hi - lo + 1))
                for d in range(hi - lo):
                    per_doc[lo + d] = [rows[edges[d] : edges[d + 1]]] * cfg.dupe_factor
            bounds_per_length.append(cut)
            plans_per_length.append(per_doc)
        return [
            PlannedDocument(
                doc,
                [bounds_per_length[li][d] for li in range(len(cfg.max_seq_lengths))],
                [plans_per_length[li][d] for li in range(len(cfg.max_seq_lengths))],
            )
            for d, doc in enumerate(docs)
        ]

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
    NSP takes NotNext B segments from another document; sentence order and packed rows need
    one document."""
    if num_documents >= config.min_documents:
        return None
    if config.min_documents == 1:
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
    doc_id: list[str]  # the document of segment A (packed: the row's first document)
    b_doc_id: list[str]  # the document of segment B, another one for NotNext (packed: the last)
    dupe_index: np.ndarray  # which copy of the corpus (dupe_factor) the row comes from
    pair_index: np.ndarray  # the row's place among its document copy's pairs (packed: its unit's)
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
        # The examples labelled 1: NotNext pairs, or with sentence order the swapped ones;
        # packed rows have no label.
        self.label_one = SWAPPED if config.sentence_order else NOT_NEXT
        name = "swapped" if config.sentence_order else "not_next"
        if not config.packed:
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
        rngs = [
            np.random.Generator(
                np.random.PCG64(
                    record_seed(cfg.seed, "mask", length, planned[index].doc.doc_id, dupe)
                )
            )
            for index, dupe, _ in pending
        ]
        sizes = [len(plans) for _, _, plans in pending]
        dupes = [dupe for _, dupe, _ in pending]
        if cfg.packed:
            pairs, doc_ids, b_doc_ids, pair_index = self._packed(planned, pending)
        else:
            pairs, doc_ids, b_doc_ids = self._pairs(planned, pending, li, length, answers, rngs)
            pair_index = None
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
        if not cfg.packed:
            labelled_one = int((pairs.next_sentence_labels == self.label_one).sum())
            self.labelled_one[length].inc(labelled_one)
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
            pair_index=(
                np.arange(num) - np.repeat(group_offsets[:-1], sizes_array)
                if pair_index is None
                else pair_index
            ),
            key=keys,
            rank=np.arange(first_rank, first_rank + num),
        )

    def _pairs(self, planned, pending, li, length, answers, rngs):
        """Sentence pairs of the groups, truncated with the groups' rngs, packed; with the
        documents of A and of B per pair."""
        doc_position: dict[int, int] = {}
        groups, doc_ids, b_doc_ids = [], [], []
        for (index, dupe, plans), rng in zip(pending, rngs, strict=True):
            doc_id = planned[index].doc.doc_id
            random_pairs = np.flatnonzero(plans["random_doc_rank"] >= 0).tolist()
            found = [answers[(index, li, dupe, p)] for p in random_pairs]
            group_b_ids = [doc_id] * len(plans)
            for p, (b_doc_id, _) in zip(random_pairs, found, strict=True):
                group_b_ids[p] = b_doc_id
            position = doc_position.setdefault(index, len(doc_position))
            groups.append(PairGroup(position, plans, [segment for _, segment in found], rng))
            doc_ids += [doc_id] * len(plans)
            b_doc_ids += group_b_ids
        pairs = pack_pair_groups(
            [planned[index].doc.tokens for index in doc_position],
            groups,
            max_num_tokens=length - SPECIAL_TOKENS_PER_PAIR,
            cls_id=self.cls_id,
            sep_id=self.sep_id,
        )
        return pairs, doc_ids, b_doc_ids

    def _packed(self, planned, pending):
        """Packed rows of the groups (no random choice); with the documents each row starts
        and ends in, and each row's index in its unit."""
        # The documents the rows reach: from the first group's to the furthest row's end.
        lo = pending[0][0]
        hi = max(index + int(plans["docs"].max(initial=0)) for index, _, plans in pending) + 1
        rows = np.concatenate([plans for _, _, plans in pending])
        sizes = [len(plans) for _, _, plans in pending]
        first_docs = np.repeat([index - lo for index, _, _ in pending], sizes)
        packed = pack_rows(
            [planned[i].doc.tokens for i in range(lo, hi)],
            first_docs,
            rows,
            cls_id=self.cls_id,
            sep_id=self.sep_id,
        )
        ids = [planned[i].doc.doc_id for i in range(lo, hi)]
        doc_ids = [ids[d] for d in first_docs.tolist()]
        b_doc_ids = [ids[d] for d in packed.last_docs.tolist()]
        return packed, doc_ids, b_doc_ids, rows["unit_index"]
