"""Extraction job: Wikipedia dumps, plain text, JSONL and Parquet to document shards.

    python -m pipelines.extract --input 'dumps/enwiki-*.xml.bz2' --output out/documents \
        --num-shards 64 [--runner DataflowRunner --project P --region R --temp_location gs://...]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import posixpath
import re
import sys
import unicodedata
from collections.abc import Iterator
from dataclasses import asdict

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from bertdata.options import add_arguments, chosen
from pipelines.arrow_shards import WriteArrowShards, work_dir_for
from pipelines.beam_runner import EXCHANGE_HELP, Spread, runs_in_one_worker, use_local_exchange
from pipelines.extract_local import SpillDocuments, add_local_steps
from pipelines.options import ExtractConfig
from pipelines.progress import Counter as ProgressCounter
from pipelines.progress import progress_dir
from pipelines.sentences import (
    collapse_whitespace,
    document_sentences,
    split_long_sentence,
    split_sentences,
    text_paragraphs,
)
from pipelines.stage import StageRun, counter_lines, file_inputs, job_main, job_parser
from pipelines.wikidump import DumpReadError, MalformedPage, iter_pages, open_dump
from pipelines.wikitext import clean_wikitext, is_disambiguation
from schemas.documents import DOCUMENTS, document_id
from schemas.manifest import InputRef  # noqa: F401 (re-exported for callers)

STAGE = "extract"
COUNTERS = (
    "wiki_pages_read",
    "records_read",
    "skipped_non_article_pages",
    "skipped_redirects",
    "skipped_disambiguation_pages",
    "skipped_malformed_records",
    "invalid_utf8_lines",
    "invalid_utf8_bytes_in_dumps",
    "truncated_files",
    "empty_files",
    "skipped_empty_documents",
    "skipped_short_documents",
    "skipped_few_sentence_documents",
    "long_sentences_split",
    "long_sentences_dropped",
    "long_documents_split",
    "documents_unwrapped",
    "skipped_duplicate_ids",
    "skipped_duplicate_documents",
)
_BOM = b"\xef\xbb\xbf"  # UTF-8's byte-order mark, which some editors write at the start
log = logging.getLogger(__name__)


class BadInputError(ValueError):
    """Input that the job refuses to read on, with the file and record it came from."""


def detect_format(path: str) -> str:
    """The input format from a file name: .xml[.bz2], .txt[.gz], .jsonl[.gz], .parquet."""
    name = posixpath.basename(path).lower()
    name = re.sub(r"\.(bz2|gz|zst|deflate)$", "", name)
    if name.endswith(".xml") or "pages-articles" in name:
        return "wiki"
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith((".txt", ".text")):
        return "text"
    raise BadInputError(f"{path}: cannot tell the format from the name; pass --format")


def normalized_text_hash(sentences: list[str]) -> str:
    """Hash of the text with case, Unicode form and whitespace normalised: the duplicate key."""
    text = unicodedata.normalize("NFKC", " ".join(sentences)).casefold()
    return hashlib.sha256(" ".join(text.split()).encode()).hexdigest()


def _decode_line(raw: bytes, counter) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        counter.inc()
        return raw.decode("utf-8", errors="replace")


def _readlines(f) -> Iterator[bytes]:
    """The file's lines, the first without a UTF-8 byte-order mark (utf-8-sig, as editors on
    Windows write it): else the first JSONL record is not JSON and the first sentence of a
    text file starts with an invisible character."""
    line = f.readline().removeprefix(_BOM)
    while line:
        yield line
        line = f.readline()


class ReadSourceFile(beam.DoFn):
    """Reads one input file into raw documents: wikitext pages, paragraphs or sentences."""

    def __init__(self, config: ExtractConfig):
        self.config = config
        c = lambda name: Metrics.counter(STAGE, name)  # noqa: E731
        self.pages = c("wiki_pages_read")
        self.non_article = c("skipped_non_article_pages")
        self.redirects = c("skipped_redirects")
        self.disambiguation = c("skipped_disambiguation_pages")
        self.malformed = c("skipped_malformed_records")
        self.invalid_utf8 = c("invalid_utf8_lines")
        self.invalid_utf8_bytes = c("invalid_utf8_bytes_in_dumps")
        self.truncated = c("truncated_files")
        self.empty_files = c("empty_files")
        self.records = c("records_read")

    def process(self, element: tuple[str, str]) -> Iterator[dict]:
        path, fmt = element
        source = self.config.source_name or posixpath.basename(path)
        if fmt == "wiki":
            yield from self._read_wiki(path, source)
        elif fmt == "text":
            yield from self._read_text(path, source)
        elif fmt == "jsonl":
            yield from self._read_jsonl(path, source)
        else:
            yield from self._read_parquet(path, source)

    def _empty_file(self, path: str) -> None:
        # Counted, not refused: a glob over an export often catches an empty part file.
        self.empty_files.inc()
        log.warning("%s is empty; nothing read from it", path)

    def _bad_record(self, where: str, reason: str) -> None:
        if self.config.on_bad_record == "fail":
            raise BadInputError(f"{where}: {reason} (use --on-bad-record skip to count and skip)")
        self.malformed.inc()
        log.warning("skipping %s: %s", where, reason)

    def _read_wiki(self, path: str, source: str) -> Iterator[dict]:
        stats: dict[str, int] = {}
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as raw:
            try:
                for page in iter_pages(open_dump(raw, path), path, stats=stats):
                    if isinstance(page, MalformedPage):
                        title = f" '{page.title}'" if page.title else ""
                        self._bad_record(f"{path} page #{page.index}{title}", page.reason)
                        continue
                    self.pages.inc()
                    if page.namespace != 0:
                        self.non_article.inc()
                    elif page.redirect:
                        self.redirects.inc()
                    elif self.config.skip_disambiguation and is_disambiguation(page.text):
                        self.disambiguation.inc()
                    else:
                        self.records.inc()
                        yield {
                            "source": source,
                            "original_id": page.page_id,
                            "title": page.title,
                            "kind": "wikitext",
                            "body": page.text,
                        }
            except DumpReadError as err:
                if not self.config.allow_truncated:
                    raise BadInputError(
                        f"{err} (re-download the file, or pass --allow-truncated to keep "
                        "the pages before the break)"
                    ) from err
                self.truncated.inc()
                log.error("%s; keeping the pages read before it", err)
        self.invalid_utf8_bytes.inc(stats.get("invalid_utf8_bytes", 0))

    def _read_text(self, path: str, source: str) -> Iterator[dict]:
        # google-research/bert format: one sentence per line, a blank line between documents.
        ordinal = 0
        sentences: list[str] = []
        empty = True
        with FileSystems.open(path) as f:
            for raw in _readlines(f):
                empty = False
                line = _decode_line(raw, self.invalid_utf8).strip()
                if line:
                    sentences.append(line)
                    continue
                if sentences:
                    self.records.inc()
                    yield self._raw(source, str(ordinal), "", "sentences", sentences)
                    ordinal += 1
                    sentences = []
        if sentences:
            self.records.inc()
            yield self._raw(source, str(ordinal), "", "sentences", sentences)
        if empty:
            self._empty_file(path)

    def _read_jsonl(self, path: str, source: str) -> Iterator[dict]:
        lineno = 0
        with FileSystems.open(path) as f:
            for lineno, raw in enumerate(_readlines(f), start=1):
                line = _decode_line(raw, self.invalid_utf8).strip()
                if not line:
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    self._bad_record(f"{path} line {lineno}", f"not JSON ({err.msg})")
                    continue
                raw_doc = self._from_record(record, f"{path} line {lineno}", source, lineno)
                if raw_doc is not None:
                    yield raw_doc
        if lineno == 0:
            self._empty_file(path)

    def _read_parquet(self, path: str, source: str) -> Iterator[dict]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        cfg = self.config
        wanted = [f for f in (cfg.text_field, cfg.id_field, cfg.title_field) if f]
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            content = f.read()
        row = 0
        try:
            data = pq.ParquetFile(io.BytesIO(content))
            _check_parquet_columns(path, data.schema_arrow, wanted, cfg.text_field)
            for batch in data.iter_batches(columns=wanted, batch_size=1024):
                for record in batch.to_pylist():
                    row += 1
                    raw_doc = self._from_record(record, f"{path} row {row}", source, row)
                    if raw_doc is not None:
                        yield raw_doc
        except (pa.ArrowException, OSError) as err:  # pyarrow's message names no file
            where = "" if row == 0 else f" after row {row}"
            raise BadInputError(
                f"{path}: not a readable Parquet file{where} ({err}); re-export or remove it"
            ) from err

    def _from_record(self, record, where: str, source: str, number: int) -> dict | None:
        cfg = self.config
        if not isinstance(record, dict):
            self._bad_record(where, "not a JSON object")
            return None
        text = record.get(cfg.text_field)
        if not isinstance(text, str):
            reason = "no" if text is None else "a non-string"
            self._bad_record(where, f"{reason} text field {cfg.text_field!r}")
            return None
        original_id = str(record.get(cfg.id_field, number)) if cfg.id_field else str(number)
        title = str(record.get(cfg.title_field) or "") if cfg.title_field else ""
        self.records.inc()
        return self._raw(source, original_id, title, "text", text)

    @staticmethod
    def _raw(source: str, original_id: str, title: str, kind: str, body) -> dict:
        return {
            "source": source,
            "original_id": original_id,
            "title": title,
            "kind": kind,
            "body": body,
        }


def _check_parquet_columns(path: str, schema, wanted: list[str], text_field: str) -> None:
    """Refuse a Parquet file that lacks a wanted column or whose text column holds no strings
    (int64, list<string>...): every row would be skipped, and the job would end with nothing."""
    import pyarrow as pa

    missing = [name for name in wanted if name not in schema.names]
    if missing:
        raise BadInputError(
            f"{path}: no column {missing[0]!r}; columns are {schema.names} "
            "(set --text-field/--id-field/--title-field)"
        )
    kind = schema.field(text_field).type
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    string_types = (pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view)
    if not any(is_string(kind) for is_string in string_types):
        raise BadInputError(
            f"{path}: text column {text_field!r} is {schema.field(text_field).type}, not "
            "string; set --text-field to the column that holds the text"
        )


class BuildDocument(beam.DoFn):
    """Cleans and splits a raw document into sentences, applies the filters, emits rows."""

    def __init__(self, config: ExtractConfig, progress: str | None = None):
        self.config = config
        self.progress = progress  # pipelines.progress directory; None: not counted
        c = lambda name: Metrics.counter(STAGE, name)  # noqa: E731
        self.empty = c("skipped_empty_documents")
        self.too_short = c("skipped_short_documents")
        self.too_few = c("skipped_few_sentence_documents")
        self.long_split = c("long_sentences_split")
        self.long_dropped = c("long_sentences_dropped")
        self.doc_parts = c("long_documents_split")
        self.unwrapped = c("documents_unwrapped")

    def setup(self) -> None:
        self.cleaned = ProgressCounter(self.progress)

    def finish_bundle(self) -> None:
        self.cleaned.flush()

    def process(self, raw: dict) -> Iterator[dict]:
        self.cleaned.add(1)
        cfg = self.config
        kind, body = raw["kind"], raw["body"]
        unwrapped = False  # lines of a hard-wrapped text joined (--line-breaks)
        if kind == "sentences":
            candidates, unwrapped = document_sentences(body, cfg.line_breaks)
        else:
            if kind == "wikitext":
                paragraphs = clean_wikitext(body, keep_headings=cfg.keep_headings)
            else:
                paragraphs, unwrapped = text_paragraphs(body, cfg.line_breaks)
            candidates = [s for p in paragraphs for s in split_sentences(p)]
        if unwrapped:
            self.unwrapped.inc()
        sentences: list[str] = []
        for sentence in candidates:
            sentence = collapse_whitespace(sentence)
            if not sentence:
                continue
            if len(sentence) <= cfg.max_sentence_chars:
                sentences.append(sentence)
            elif cfg.long_sentences == "split":
                self.long_split.inc()
                sentences.extend(split_long_sentence(sentence, cfg.max_sentence_chars))
            else:
                self.long_dropped.inc()
        if not sentences:
            self.empty.inc()
            return
        parts = list(_parts(sentences, cfg.max_document_chars))
        if len(parts) > 1:
            self.doc_parts.inc()
        for k, part in enumerate(parts):
            original_id = raw["original_id"] if len(parts) == 1 else f"{raw['original_id']}#{k}"
            num_chars = sum(len(s) for s in part)
            if num_chars < cfg.min_document_chars:
                self.too_short.inc()
                continue
            if len(part) < cfg.min_sentences:
                self.too_few.inc()
                continue
            yield {
                "doc_id": document_id(raw["source"], original_id),
                "source": raw["source"],
                "original_id": original_id,
                "title": raw["title"],
                "sentences": part,
                "num_chars": num_chars,
                "num_words": sum(len(s.split()) for s in part),
            }


def _parts(sentences: list[str], max_chars: int) -> Iterator[list[str]]:
    """Consecutive runs of sentences of at most max_chars characters each."""
    part: list[str] = []
    size = 0
    for s in sentences:
        if part and size + len(s) > max_chars:
            yield part
            part, size = [], 0
        part.append(s)
        size += len(s)
    if part:
        yield part


class _KeepFirst(beam.DoFn):
    """Of documents sharing a key, keeps the one with the smallest (doc_id, text hash)."""

    def __init__(self, counter_name: str):
        self.counter_name = counter_name
        self.dropped = Metrics.counter(STAGE, counter_name)

    def process(self, element) -> Iterator[dict]:
        _, docs = element
        docs = list(docs)
        if len(docs) > 1:
            self.dropped.inc(len(docs) - 1)
        yield min(docs, key=lambda d: (d["doc_id"], normalized_text_hash(d["sentences"])))


class ExtractDocuments(beam.PTransform):
    """(path, format) pairs -> filtered, de-duplicated document rows."""

    def __init__(
        self, config: ExtractConfig, progress: str | None = None, *, one_worker: bool = False
    ):
        super().__init__()
        self.config = config
        self.progress = progress
        self.one_worker = one_worker  # in_memory DirectRunner: nothing to spread

    def expand(self, files):
        docs = (
            files
            | "SpreadFiles" >> Spread(self.one_worker)
            | "ReadFiles" >> beam.ParDo(ReadSourceFile(self.config))
            # Reading is cheap and per file; cleaning is costly: spread the documents out.
            | "SpreadDocuments" >> Spread(self.one_worker)
            | "BuildDocuments" >> beam.ParDo(BuildDocument(self.config, self.progress))
            | "KeyById" >> beam.Map(lambda d: (d["doc_id"], d))
            | "GroupById" >> beam.GroupByKey()
            | "OnePerId" >> beam.ParDo(_KeepFirst("skipped_duplicate_ids"))
        )
        if not self.config.dedup:
            return docs
        return (
            docs
            | "KeyByText" >> beam.Map(lambda d: (normalized_text_hash(d["sentences"]), d))
            | "GroupByText" >> beam.GroupByKey()
            | "OnePerText" >> beam.ParDo(_KeepFirst("skipped_duplicate_documents"))
        )


def build_pipeline(
    pipeline: beam.Pipeline,
    config: ExtractConfig,
    inputs: list[InputRef],
    output_dir: str,
    *,
    one_worker: bool = False,
    local_files: bool = False,
) -> None:
    """Adds the extraction job to `pipeline` (`one_worker`: it runs on the in_memory
    DirectRunner, whose one worker runs every bundle in turn, so no reshuffle spreads work;
    `local_files`: data moves between steps through files on this machine, in flat memory,
    pipelines/extract_local.py, else through Beam's shuffle)."""
    files = [
        (
            ref.path,
            detect_format(ref.path) if config.input_format == "auto" else config.input_format,
        )
        for ref in inputs
    ]
    if local_files:
        spill = SpillDocuments(
            ReadSourceFile(config),
            BuildDocument(config, progress_dir(output_dir)),
            normalized_text_hash,
            work_dir_for(output_dir),
            config.num_shards,
        )
        add_local_steps(
            pipeline, files, output_dir, config.num_shards, config.dedup, spill, one_worker
        )
        return
    (
        pipeline
        | "ListFiles" >> beam.Create(files)
        | "Extract" >> ExtractDocuments(config, progress_dir(output_dir), one_worker=one_worker)
        | "Write"
        >> WriteArrowShards(
            output_dir,
            DOCUMENTS,
            config.num_shards,
            shard_key=lambda d: d["doc_id"],
            sort_key=lambda d: d["doc_id"],
        )
    )


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, ExtractConfig, list[str]]:
    parser = job_parser(
        "extract",
        "Extract documents from Wikipedia XML dumps (.xml, .xml.bz2, multistream too), plain "
        "text (one sentence per line, blank line between documents), JSONL or Parquet into "
        "Arrow shards of sentence-split documents.",
        "--input 'dumps/enwiki-*.xml.bz2' --input 'books/*.txt' --output out/documents "
        "--num-shards 64",
    )
    parser.add_argument(
        "--input",
        action="append",
        required=True,
        metavar="GLOB",
        help="input file or glob; repeat for several",
    )
    parser.add_argument("--output", required=True, help="output directory (local or gs://)")
    add_arguments(parser, ExtractConfig)
    parser.add_argument(
        "--exchange", choices=("auto", "local", "shuffle"), default="auto", help=EXCHANGE_HELP
    )
    args, beam_args = parser.parse_known_args(argv)
    config = ExtractConfig(**chosen(ExtractConfig, args))
    config.validate()
    return args, config, beam_args


def run(argv: list[str] | None = None) -> dict:
    """Runs the job; returns the manifest as a dict. Does nothing if the output is up to date."""
    args, config, beam_args = parse_args(argv)
    inputs = file_inputs(args.input)
    local_files = use_local_exchange(
        args.exchange, [ref.path for ref in inputs] + [args.output], beam_args
    )
    stage = StageRun(
        stage=STAGE,
        spec=DOCUMENTS,
        output_dir=args.output,
        config=asdict(config),
        inputs=inputs,
        counter_names=COUNTERS,
    )
    return stage.execute(
        beam_args,
        lambda pipeline: build_pipeline(
            pipeline,
            config,
            inputs,
            args.output,
            one_worker=runs_in_one_worker(beam_args),
            local_files=local_files,
        ),
        unit="documents",
        # Records cleaned so far (pages, lines, rows): their number is known only at the end.
        work=(None, "records cleaned"),
    )


def main(argv: list[str] | None = None) -> int:
    return job_main(
        run,
        argv,
        (BadInputError, FileNotFoundError, ValueError),
        lambda manifest: [
            f"{manifest['total_rows']} documents in {len(manifest['shards'])} shards",
            *counter_lines(manifest),
        ],
    )


if __name__ == "__main__":
    # Run as `python -m`, this file's classes would live in __main__; the ones imported under
    # their own name let Beam's runner tell a BadInputError (exit 2) from a bug (exit 1).
    from pipelines.extract import main as extract_main

    sys.exit(extract_main())
