"""Every Beam stage's options, described once (bertdata/options.py).

Each job's command line and the flows' matching section (flows/params.py) are built from these
declarations: a default, a bound or a line of help lives here only. Beam-free, so that the flows
can import it. All fields, options or not, go into the stage's manifest and its config hash.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bertdata.masking import MaskingConfig
from bertdata.options import check, option
from pipelines.pretraining.packing import PACKINGS
from pipelines.pretraining.pairs import SPECIAL_TOKENS_PER_PAIR
from pipelines.sentences import LINE_BREAKS
from wordpiece.learner import LearnerConfig
from wordpiece.tokenizer import MAX_INPUT_CHARS_PER_WORD, TokenizerOptions

FORMATS = ("wiki", "text", "jsonl", "parquet")  # extraction's input formats
MIN_SEQ_LENGTH = 2 + SPECIAL_TOKENS_PER_PAIR  # [CLS] a [SEP] b [SEP]


@dataclass(frozen=True, kw_only=True)
class ExtractConfig:
    """Options of the extraction job (python -m pipelines.extract)."""

    num_shards: int = option(
        8, "output shards; aim for 100-500 MB each on a large corpus", ge=1, le=100_000
    )
    input_format: str = option(
        "auto",
        "input format; auto decides by file extension",
        choices=("auto", *FORMATS),
        flag="format",
    )
    source_name: str = option(
        "",
        "source recorded in each document, part of its stable id; '' = the file's base name",
    )
    text_field: str = option("text", "JSONL/Parquet: the field holding the text")
    id_field: str = option("", "JSONL/Parquet: the id field; '' = the line or row number")
    title_field: str = option("", "JSONL/Parquet: the title field; '' = none")
    line_breaks: str = option(
        "auto",
        "a line break inside a plain-text document or a JSONL/Parquet text: 'paragraph' (a "
        "line is a paragraph; in .txt files a sentence), 'space' (lines are hard-wrapped: "
        "joined, a blank line stays a break), or 'auto' (joined where a document looks "
        "hard-wrapped); see docs/extract_inputs.md",
        choices=LINE_BREAKS,
    )
    keep_headings: bool = option(False, "keep wiki section headings as sentences")
    skip_disambiguation: bool = option(
        True, "drop wiki disambiguation pages", off_flag="keep-disambiguation"
    )
    min_document_chars: int = option(
        200, "shorter documents (after cleaning) are dropped and counted", ge=0
    )
    min_sentences: int = option(2, "documents with fewer sentences are dropped and counted", ge=1)
    max_sentence_chars: int = option(
        1000, "longer sentences are split at a space, or dropped (long_sentences)", ge=20
    )
    long_sentences: str = option(
        "split", "what happens to a sentence over max_sentence_chars", choices=("split", "drop")
    )
    max_document_chars: int = option(
        1_000_000, "longer documents are cut into parts at sentence ends", ge=20
    )
    dedup: bool = option(True, "drop exact duplicate documents (same normalised text)")
    on_bad_record: str = option(
        "skip",
        "a malformed page, line or row: count and skip it, or fail the job",
        choices=("skip", "fail"),
    )
    allow_truncated: bool = option(
        False, "keep the pages read before the break of a truncated dump"
    )

    def validate(self) -> None:
        """Raise ValueError naming the first option out of range."""
        check(self)
        if self.max_document_chars < self.max_sentence_chars:
            raise ValueError("max_document_chars must be at least max_sentence_chars")


@dataclass(frozen=True, kw_only=True)
class VocabConfig:
    """Options of the vocabulary job (python -m pipelines.vocab)."""

    # The learner's five settings are 0 when an existing vocab.txt is adopted instead.
    vocab_size: int = option(
        30522,
        "tokens in all, special and reserved included (bert-base-uncased: 30,522); fewer if "
        "the corpus runs out of pairs seen min_frequency times",
        ge=6,  # the special tokens and one more; the learner checks the reserved ones too
        le=1_000_000,
    )
    lowercase: bool = option(
        True,
        "lower-case and strip accents (uncased), as bert-base-uncased",
        flag="uncased",
        off_flag="cased",
    )
    strip_accents: bool | None = None  # None: strip exactly when lower-casing, as BERT does
    tokenize_chinese_chars: bool = option(
        True,
        "make every CJK ideograph a word of its own (off e.g. for Japanese)",
        flag="split-chinese-chars",
    )
    max_input_chars_per_word: int = option(
        MAX_INPUT_CHARS_PER_WORD,
        "longer words become [UNK] (200 as google-research/bert; transformers' ports use 100)",
        ge=1,
        flag="max-chars-per-word",
    )
    min_frequency: int = option(2, "merge a pair of pieces only if it occurs this often", ge=1)
    limit_alphabet: int = option(
        1000, "keep the N most frequent characters; words with others become [UNK]", ge=1
    )
    num_unused: int = option(
        0,
        "reserved [unusedN] tokens to repurpose later; 994 gives bert-base-uncased's special "
        "token ids (0: [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4)",
        ge=0,
    )
    max_distinct_words: int = option(
        0,
        "learn from the N most frequent distinct words only, to bound the learner's memory "
        "(about 750 bytes a word) on a huge corpus; 0: all words",
        ge=0,
    )
    heldout_fraction: float = option(
        0.05,
        "share of documents (by doc_id hash) kept out of learning to measure the vocabulary "
        "in quality.json",
        ge=0.0,
        lt=1.0,
    )
    vocab_file_sha256: str = ""  # set when adopting an existing vocab.txt instead of learning
    tokenizer_file_sha256: str = ""  # set when an adopted vocab.txt comes with its tokenizer.json
    reference_vocab_sha256: str = ""  # the vocabulary quality.json compares with; "" for none

    @property
    def tokenizer_options(self) -> TokenizerOptions:
        return TokenizerOptions(
            lowercase=self.lowercase,
            strip_accents=self.strip_accents,
            tokenize_chinese_chars=self.tokenize_chinese_chars,
            max_input_chars_per_word=self.max_input_chars_per_word,
        )

    @property
    def learner_config(self) -> LearnerConfig:
        return LearnerConfig(
            vocab_size=self.vocab_size,
            min_frequency=self.min_frequency,
            limit_alphabet=self.limit_alphabet,
            num_unused=self.num_unused,
            max_input_chars_per_word=self.max_input_chars_per_word,
            tokenize_chinese_chars=self.tokenize_chinese_chars,
        )

    def validate(self, *, learning: bool = True) -> None:
        """Raise ValueError, naming the option, for settings no vocabulary can have."""
        if learning:
            _ = self.learner_config  # its constructor says how large the size must be
        check(self, skip=() if learning else LEARNER_OPTIONS)
        _ = self.tokenizer_options  # its constructor checks max_input_chars_per_word


# Unused, and 0, when an existing vocab.txt is adopted.
LEARNER_OPTIONS = (
    "vocab_size",
    "min_frequency",
    "limit_alphabet",
    "num_unused",
    "max_distinct_words",
)


@dataclass(frozen=True, kw_only=True)
class PretrainingDataConfig:
    """Options that shape the examples; all go into the manifests and their config hash.

    Each option is described once, here (bertdata/options.py): the command line and the flows'
    `pretraining_data` section are built from these declarations.
    """

    max_seq_lengths: tuple[int, ...] = option(
        (128, 512),
        "sequence lengths to build, one output directory seq<N> each; the paper trains 90% of "
        "steps at 128, then 10% at 512",
        ge=MIN_SEQ_LENGTH,
        le=4096,
    )
    max_predictions_per_seq: tuple[int, ...] = option(
        (),
        "masked-LM cap per length, in the same order; empty: 5/32 of each length (20 at 128, "
        "80 at 512)",
        ge=1,
    )
    masked_lm_prob: float = option(
        0.15, "share of the tokens masked (80% [MASK], 10% random, 10% kept)", gt=0.0, lt=1.0
    )
    short_seq_prob: float = option(
        0.1, "share of pairs given a shorter random target length", ge=0.0, le=1.0
    )
    dupe_factor: int = option(
        5, "passes over the corpus, each with other pairs and masks", ge=1, le=65535
    )
    whole_word_mask: bool = option(False, "mask all pieces of a word together")
    span_masking: bool = option(
        False,
        "SpanBERT's masking: spans of whole words, lengths geometric (p 0.2) truncated at 10 "
        "words, one 80/10/10 choice per span",
    )
    sentence_order: bool = option(
        False,
        "ALBERT's sentence-order labels instead of NSP (Lan et al. 2019, section 3.1): A and B "
        "are always consecutive segments of one document, swapped on a fair coin; "
        "next_sentence_label is 1 when swapped, 0 in order",
    )
    packing: str = option(
        "pairs",
        "input format (RoBERTa, Liu et al. 2019, section 4.2): 'pairs' are [CLS] A [SEP] B "
        "[SEP] with NSP (or --sentence-order) labels; 'full-sentences' packs one segment of "
        "whole sentences up to the length, running on into the next document after an extra "
        "[SEP] (RoBERTa's choice); 'doc-sentences' the same within one document. Packed rows "
        "have label 0 and token type 0, and short_seq_prob does not apply (RoBERTa trains on "
        "full-length sequences only)",
        choices=PACKINGS,
    )
    packing_streams: int = 0  # full-sentences: hash ranges a row may run across; set by the job
    dynamic_masking: bool = option(
        False, "store unmasked pairs; the training loader masks them afresh each epoch"
    )
    seed: int = option(12345, "seed of every random choice, with each record's identity", ge=0)
    num_shards: int = option(0, "shards per length; 0: automatic (--examples-per-shard)", ge=0)
    examples_per_shard: int = option(50_000, "target examples per shard when num_shards is 0", ge=1)
    max_position_embeddings: int = option(
        512, "the model's longest sequence; longer max_seq_lengths are refused", ge=MIN_SEQ_LENGTH
    )

    def __post_init__(self) -> None:
        if not self.max_predictions_per_seq:  # the paper's caps for these lengths
            caps = tuple(default_max_predictions(n) for n in self.max_seq_lengths)
            object.__setattr__(self, "max_predictions_per_seq", caps)

    def validate(self) -> None:
        """Raise ValueError naming the first option that is out of range."""
        check(self)
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
        if self.packing != "pairs" and self.sentence_order:
            raise ValueError(
                f"packing {self.packing!r} writes single segments, which have no sentence order "
                "to label: --sentence-order needs --packing pairs"
            )
        MaskingConfig(masked_lm_prob=self.masked_lm_prob).validate()

    def masking(self, length_index: int) -> MaskingConfig:
        return MaskingConfig(
            masked_lm_prob=self.masked_lm_prob,
            max_predictions_per_seq=self.max_predictions_per_seq[length_index],
            whole_word_mask=self.whole_word_mask,
            span_masking=self.span_masking,
        )

    @property
    def packed(self) -> bool:
        """Single packed segments (RoBERTa's formats) instead of sentence pairs."""
        return self.packing != "pairs"

    @property
    def min_documents(self) -> int:
        """Documents with text a corpus needs: a NotNext B comes from another document, while
        sentence-order pairs and packed rows come from one."""
        return 1 if self.sentence_order or self.packed else 2

    def num_shards_for(self, num_examples: int) -> int:
        if self.num_shards:
            return self.num_shards
        return max(1, math.ceil(num_examples / self.examples_per_shard))


def default_max_predictions(max_seq_length: int) -> int:
    """The paper's caps, 20 at 128 and 80 at 512: 5/32 of the length, rounded up."""
    return -(-max_seq_length * 5 // 32)


@dataclass(frozen=True, kw_only=True)
class ValidationConfig:
    """Tolerances of the pretraining data's statistical checks (python -m pipelines.validate)."""

    mask_rate_tolerance: float = option(
        0.005, "largest |observed - expected| masked share of the maskable tokens", ge=0.0
    )
    share_slack: float = option(
        0.01, "allowed on top of z standard errors for the 80/10/10 shares", ge=0.0
    )
    not_next_slack: float = option(
        0.01,
        "allowed on top of z standard errors for the 50% NotNext share (the swapped share for "
        "sentence-order data)",
        ge=0.0,
    )
    z: float = option(5.0, "standard errors a share may stray by chance", gt=0.0)
    max_unknown_rate: float = option(
        0.01,
        "largest [UNK] share of the text tokens (more: a vocabulary mismatch)",
        ge=0.0,
        le=1.0,
    )
    max_errors_listed: int = 20  # examples of broken records kept in stats.json
    histogram_bins: int = 16  # bins of the length histogram, from 0 to max_seq_length
