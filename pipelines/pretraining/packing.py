"""Single-segment inputs packed with whole sentences, RoBERTa's input formats (Liu et al. 2019,
"RoBERTa: A Robustly Optimized BERT Pretraining Approach", section 4.2), instead of sentence
pairs.

- `full-sentences` (FULL-SENTENCES, RoBERTa's choice): each row is `[CLS] s_1 ... s_k [SEP]`,
  contiguous whole sentences up to the row's budget (max_seq_length - 2 content tokens); at a
  document's end the row goes on with the next document's sentences after an extra `[SEP]`.
- `doc-sentences` (DOC-SENTENCES): the same, but a row never crosses a document's end, so a
  document's last row may be short.

A row is closed when its next sentence does not fit, so rows are full to within a sentence,
not to the token: RoBERTa packs "full sentences ... such that the total length is at most 512
tokens". No row is made shorter on purpose (short_seq_prob does not apply): RoBERTa trains
only on full-length sequences. Packing draws no random number: given the documents' order it
is fixed, and a row's copies (dupe_factor) differ only by their masks.

The unit a `full-sentences` row may run across is a stream: the documents whose 64-bit hash
falls in one of `num_streams` equal ranges, in the job's order (by hash). Streams depend on
the corpus alone (`num_streams_for`), and a unit of work (bucket) holds whole streams
(`bucket_of_stream`), so the rows are the same for any bucket size, worker count or exchange.
Each stream's last row may be short; so may a `doc-sentences` document's.

A row is planned as ROW_DTYPE, in the group of the document it starts in: where it starts,
how many documents it runs on into, where it ends, and its index within its unit (stream or
document): `pack_rows` turns plans into token ids.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from typing import NamedTuple

import numpy as np

from bertdata.masking import gather_runs

PACKINGS = ("pairs", "full-sentences", "doc-sentences")  # --packing; pairs: NSP/SOP pairs
SPECIAL_TOKENS_PER_ROW = 2  # [CLS], [SEP]; each document separator inside a row costs one more
DOCS_PER_STREAM = 64  # about this many documents per full-sentences stream...
STREAM_BYTES = 1 << 20  # ...and at most about this much of the documents shards (as stored)

ROW_DTYPE = np.dtype(
    [
        ("start", np.int64),  # first token of the row in its first document
        ("docs", np.int64),  # documents the row runs on into after its first (0: one document)
        ("end", np.int64),  # one past the row's last token, in its last document
        ("unit_index", np.int64),  # the row's index in its unit: its stream or document
    ]
)


def num_streams_for(num_documents: int, document_bytes: int) -> int:
    """Streams of a corpus for `full-sentences`: about DOCS_PER_STREAM documents, and at most
    about STREAM_BYTES of documents shards, each (long documents such as books make small
    streams, so that a bucket, which holds whole streams, stays small)."""
    return max(
        1, math.ceil(num_documents / DOCS_PER_STREAM), math.ceil(document_bytes / STREAM_BYTES)
    )


def stream_of(hash64: int, num_streams: int) -> int:
    """The stream of a document: ranges of consecutive hashes, like the buckets."""
    return (hash64 * num_streams) >> 64


def bucket_of_stream(stream: int, num_streams: int, num_buckets: int) -> int:
    """The bucket that holds a stream: consecutive streams, about as many in each bucket."""
    return stream * num_buckets // num_streams


def bucket_hash_range(bucket: int, num_buckets: int, num_streams: int) -> tuple[int, int]:
    """The hashes [low, high) of a bucket's documents when buckets hold whole streams
    (`bucket_of_stream`); high may be 2**64."""

    def first_hash(stream: int) -> int:  # the least h with stream_of(h) == stream
        return -(-(stream << 64) // num_streams)

    first_stream = -(-bucket * num_streams // num_buckets)
    end_stream = -(-(bucket + 1) * num_streams // num_buckets)
    return first_hash(first_stream), first_hash(end_stream)


def plan_rows(
    bounds: list[list[int]], max_num_tokens: int, *, cross_documents: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of consecutive documents, whole sentences each, up to max_num_tokens content tokens
    (document separators included). Returns each row's first document (an index into
    `bounds`) and the rows as ROW_DTYPE, in order; unit_index counts rows from 0 within the
    documents given (cross_documents) or within each document.

    `bounds` are each document's sentence boundaries (pairs.sentence_bounds), every sentence
    non-empty and at most max_num_tokens long (pairs.split_long_sentences).
    """
    first_docs: list[int] = []
    rows: list[tuple[int, int, int, int]] = []
    open_doc = open_start = -1  # the open row's first document and token; -1: none open
    fill = 0  # content tokens of the open row
    last_doc = last_end = 0  # where the open row ends so far
    unit_index = 0  # the next row's index in its unit

    def close() -> None:
        nonlocal open_doc, fill, unit_index
        first_docs.append(open_doc)
        rows.append((open_start, last_doc - open_doc, last_end, unit_index))
        open_doc, fill, unit_index = -1, 0, unit_index + 1

    for doc, b in enumerate(bounds):
        num_sentences = len(b) - 1
        if not cross_documents:
            unit_index = 0
        s = 0
        while s < num_sentences:
            separator = 1 if fill else 0  # only a row open from an earlier document has fill here
            # The last boundary that the row's room reaches, whole sentences from s.
            e = bisect_right(b, b[s] + max_num_tokens - fill - separator, s + 1) - 1
            if e == s:  # the next sentence does not fit
                if not fill:
                    raise ValueError(
                        f"document {doc}: a sentence of {b[s + 1] - b[s]} tokens, more than "
                        f"{max_num_tokens}; cut it first (split_long_sentences)"
                    )
                close()  # the row open from the earlier document ends there
                continue
            if open_doc < 0:
                open_doc, open_start = doc, b[s]
            fill += separator + b[e] - b[s]
            last_doc, last_end, s = doc, b[e], e
            if s < num_sentences:  # the next sentence does not fit
                close()
        if open_doc >= 0 and not cross_documents:
            close()
    if open_doc >= 0:
        close()
    return np.asarray(first_docs, dtype=np.int64), np.array(rows, dtype=ROW_DTYPE).reshape(-1)


class PackedBatch(NamedTuple):
    """Packed rows `[CLS] ... [SEP]`, concatenated."""

    input_ids: np.ndarray  # (total tokens,) the rows one after another
    offsets: np.ndarray  # (num_rows + 1,) int64: row i is input_ids[offsets[i]:offsets[i+1]]
    segment_a_lengths: np.ndarray  # (num_rows,) int64: length - 2, so every token has type 0
    next_sentence_labels: np.ndarray  # (num_rows,) uint8, all 0: there is no sentence task
    last_docs: np.ndarray  # (num_rows,) int64: the document each row ends in


def pack_rows(
    docs: list[np.ndarray], first_docs: np.ndarray, rows: np.ndarray, *, cls_id: int, sep_id: int
) -> PackedBatch:
    """Token ids of planned rows: row i starts in docs[first_docs[i]] and runs on into the
    next rows["docs"][i] documents of the list, with `[SEP]` between two documents."""
    num = len(rows)
    first_docs = np.asarray(first_docs, dtype=np.int64)
    dtype = docs[0].dtype if docs else np.dtype(np.int64)
    buffer = np.concatenate([*docs, np.array([cls_id, sep_id], dtype=dtype)])
    cls_at = len(buffer) - 2
    doc_len = np.fromiter(map(len, docs), np.int64, len(docs))
    doc_at = np.cumsum(doc_len) - doc_len
    # One piece per (row, document it covers), in order.
    pieces = rows["docs"] + 1
    piece_offsets = np.zeros(num + 1, dtype=np.int64)
    np.cumsum(pieces, out=piece_offsets[1:])
    row_of_piece = np.repeat(np.arange(num), pieces)
    k = np.arange(int(piece_offsets[-1])) - piece_offsets[row_of_piece]  # piece within its row
    doc = first_docs[row_of_piece] + k
    start = np.where(k == 0, rows["start"][row_of_piece], 0)
    end = np.where(k == pieces[row_of_piece] - 1, rows["end"][row_of_piece], doc_len[doc])
    # Runs per row: [CLS], then each piece followed by [SEP] (between documents, and the last).
    piece_runs = np.stack([doc_at[doc] + start, np.full(len(doc), cls_at + 1)], axis=1).ravel()
    piece_lens = np.stack([end - start, np.ones(len(doc), np.int64)], axis=1).ravel()
    starts = np.insert(piece_runs, 2 * piece_offsets[:-1], cls_at)
    lengths = np.insert(piece_lens, 2 * piece_offsets[:-1], 1)
    input_ids = buffer[gather_runs(starts, lengths)]
    row_lengths = np.bincount(row_of_piece, weights=end - start, minlength=num).astype(np.int64)
    row_lengths += pieces + 1
    offsets = np.zeros(num + 1, dtype=np.int64)
    np.cumsum(row_lengths, out=offsets[1:])
    return PackedBatch(
        input_ids,
        offsets,
        row_lengths - SPECIAL_TOKENS_PER_ROW,
        np.zeros(num, dtype=np.uint8),
        first_docs + rows["docs"],
    )
