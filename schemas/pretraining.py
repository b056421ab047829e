"""Pretraining examples: pre-masked `[CLS] A [SEP] B [SEP]` pairs with NSP labels (or, for data
written with sentence order, ALBERT's sentence-order labels), unpadded.

Packed data (the manifest config's `packing`: RoBERTa's `full-sentences` or `doc-sentences`)
has the same columns, one segment per row: `[CLS] ... [SEP]`, where a `[SEP]` inside the row
separates two documents (full-sentences only); `segment_a_length` is the length less 2, so
every position has token type 0; `next_sentence_label` is 0 (there is no sentence task);
`doc_id` and `b_doc_id` are the row's first and last documents, and `pair_index` is the row's
index in its unit (a document, or for full-sentences a stream of documents) and copy.

One schema name and version, in two widths: token ids are uint16 when the vocabulary has at most
65,536 entries (every BERT vocabulary so far), else int32. The width is part of the Arrow schema
of every shard and is recorded as `token_id_type` in the stage's manifest config; readers pick
the spec with `pretraining_spec(config["token_id_type"])`.
"""

from __future__ import annotations

import pyarrow as pa

from schemas.spec import SchemaSpec

PRETRAINING_NAME = "pretraining"
PRETRAINING_VERSION = 1
UINT16_VOCAB_LIMIT = 1 << 16  # ids 0..65535 fit in uint16
TOKEN_ID_TYPES = {"uint16": pa.uint16(), "int32": pa.int32()}

# next_sentence_label values, as in the paper's code and Hugging Face's BertForPreTraining.
IS_NEXT = 0  # B is the text that follows A in the same document
NOT_NEXT = 1  # B comes from another document
# The same column's values in data written with sentence order (the manifest config's
# `sentence_order`; ALBERT, Lan et al. 2019): as Hugging Face AlbertForPreTraining's
# sentence_order_label. Both segments always come from one document and are adjacent in it.
IN_ORDER = 0  # the first segment is followed by the second in the document
SWAPPED = 1  # the second segment comes first in the document


def pretraining_schema(token_id_type: str) -> pa.Schema:
    """The fields of a pretraining shard whose token ids have `token_id_type`."""
    ids = TOKEN_ID_TYPES[token_id_type]
    return pa.schema(
        [
            # [CLS] A [SEP] B [SEP] after masking, no padding; its length is the sequence length.
            pa.field("input_ids", pa.list_(ids), nullable=False),
            # Tokens of A without [CLS]/[SEP]: positions < segment_a_length + 2 have token type 0.
            pa.field("segment_a_length", pa.uint16(), nullable=False),
            # Positions in input_ids chosen for the masked LM, ascending; empty when the data
            # was written for dynamic masking (the loader masks afresh each epoch).
            pa.field("masked_lm_positions", pa.list_(pa.uint16()), nullable=False),
            # The original token id at each masked position (the MLM labels).
            pa.field("masked_lm_ids", pa.list_(ids), nullable=False),
            # IS_NEXT (0) or NOT_NEXT (1); with sentence order IN_ORDER (0) or SWAPPED (1).
            pa.field("next_sentence_label", pa.uint8(), nullable=False),
            # Provenance: the document of A, the document of B (the same one unless NOT_NEXT),
            # which of the dupe_factor copies, and the pair's index within (doc_id, dupe_index).
            pa.field("doc_id", pa.string(), nullable=False),
            pa.field("b_doc_id", pa.string(), nullable=False),
            pa.field("dupe_index", pa.uint16(), nullable=False),
            pa.field("pair_index", pa.uint32(), nullable=False),
        ]
    )


def _spec(token_id_type: str) -> SchemaSpec:
    return SchemaSpec(
        name=PRETRAINING_NAME,
        version=PRETRAINING_VERSION,
        description=(
            "BERT pretraining examples: masked sentence pairs with next-sentence labels "
            f"(token ids as {token_id_type})."
        ),
        schema=pretraining_schema(token_id_type),
    )


PRETRAINING_UINT16 = _spec("uint16")
PRETRAINING_INT32 = _spec("int32")
_SPECS = {"uint16": PRETRAINING_UINT16, "int32": PRETRAINING_INT32}


def token_id_type(vocab_size: int) -> str:
    """The narrowest token id type for a vocabulary: "uint16" or "int32"."""
    if vocab_size < 1:
        raise ValueError(f"vocabulary size must be positive, got {vocab_size}")
    return "uint16" if vocab_size <= UINT16_VOCAB_LIMIT else "int32"


def pretraining_spec(token_id_type: str) -> SchemaSpec:
    """The spec for shards whose token ids have `token_id_type` ("uint16" or "int32")."""
    try:
        return _SPECS[token_id_type]
    except KeyError:
        raise ValueError(
            f"token_id_type must be one of {sorted(_SPECS)}, got {token_id_type!r}"
        ) from None
