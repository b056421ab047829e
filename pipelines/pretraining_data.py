"""Pretraining data job: document shards -> pre-masked sentence pairs with NSP labels, or with
ALBERT's sentence-order labels (--sentence-order), or RoBERTa's single segments packed with
whole sentences (--packing full-sentences / doc-sentences, pipelines/pretraining/packing.py).

    python -m pipelines.pretraining_data --documents out/documents --vocab out/vocab \
        --output out/pretraining [--max-seq-lengths 128,512] [--dupe-factor 5] \
        [--runner DataflowRunner --project P --region R --temp_location gs://B/tmp ...]

Writes one directory per sequence length (`seq128/`, `seq512/`), each with equal-size Arrow
shards (schemas/pretraining.py) and a manifest, from one pass over the tokenized documents.

How it stays deterministic and bounded in memory:
- Documents are ordered by a hash of their id; a document's rank in that order does not depend
  on the number of workers. Consecutive ranks form buckets (about --docs-per-bucket
  documents, at most about --bucket-mb of stored documents), the unit of work.
- Every random choice comes from an rng seeded with a hash of (seed, sequence length, doc id,
  duplicate index).
- B of a NotNext pair is a random other document's rank, read from wherever that document is.
  With --sentence-order there is no NotNext pair: both segments come from one document.
  Packed rows draw nothing; a full-sentences row runs on across the documents of one stream
  (a range of hashes fixed by the corpus), and a bucket holds whole streams.
- Examples are ranked by (document rank, duplicate, pair); rank mod num_shards is the shard,
  so shards differ by at most one example and nothing is dropped. Inside a shard, examples are
  ordered by a random key from their rng, i.e. shuffled.

Two exchanges move the data between the steps, with byte-identical results (--exchange):
`local` (pipelines/pretraining/local_exchange.py) through files on this machine's disk, the
default for local paths on the DirectRunner; `shuffle` (pipelines/pretraining/
shuffle_exchange.py) through Beam's shuffle, the default for gs:// paths and other runners.
pipelines/pretraining/__init__.py walks one document from its shard to its examples.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from dataclasses import asdict, dataclass
from typing import Any

import apache_beam as beam

from bertdata.options import add_arguments, chosen
from bertdata.output_lock import OutputError, output_lock
from pipelines.arrow_shards import join, read_manifest, work_dir_for, write_atomic
from pipelines.beam_runner import (
    EXCHANGE_HELP,
    make_pipeline,
    run_pipeline,
    use_local_exchange,
)
from pipelines.options import PretrainingDataConfig
from pipelines.pretraining import shuffle_exchange
from pipelines.pretraining.common import (
    STAGE,
    BadInputError,
    Vocabulary,
    load_vocabulary,
    read_vocabulary_files,
)
from pipelines.pretraining.local_exchange import run_local
from pipelines.pretraining.packing import num_streams_for
from pipelines.progress import Heartbeat
from pipelines.stage import StageRun, counter_lines, job_main, job_parser
from schemas.documents import DOCUMENTS
from schemas.manifest import MANIFEST_NAME, InputRef, Manifest, ManifestError
from schemas.pretraining import pretraining_spec, token_id_type

__all__ = [
    "BadInputError",
    "PretrainingDataConfig",
    "build_pipeline",
    "load_vocabulary",
    "main",
    "read_vocabulary_files",
    "run",
]
log = logging.getLogger(__name__)


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


def output_dir_for(output: str, length: int) -> str:
    return join(output, f"seq{length}")


def length_config(config: PretrainingDataConfig, vocab: Vocabulary, li: int) -> dict[str, Any]:
    """The manifest config of one output directory."""
    common = asdict(config)
    del common["max_seq_lengths"], common["max_predictions_per_seq"]
    for added in ("span_masking", "sentence_order", "packing_streams"):
        if not common[added]:  # added later: recorded only when set, so that outputs made
            del common[added]  # before it stay up to date
    if config.packed:
        common["short_seq_prob"] = 0.0  # what the job did: packed rows are never made shorter
    else:
        del common["packing"]  # added later, as above
    return {
        **common,
        "max_seq_length": config.max_seq_lengths[li],
        "max_predictions_per_seq": config.max_predictions_per_seq[li],
        "vocab_size": len(vocab.tokens),
        "special_token_ids": vocab.special_ids,
        "token_id_type": token_id_type(len(vocab.tokens)),
    }


def check_documents(documents_dir: str, config: PretrainingDataConfig) -> tuple[Manifest, str]:
    """The documents stage's manifest and hash, refusing a corpus too small for the pairs:
    NotNext needs another document, sentence order and packed rows one."""
    manifest, digest = read_manifest(documents_dir)
    source = join(documents_dir, MANIFEST_NAME)
    manifest.expect(schema_name=DOCUMENTS.name, schema_version=DOCUMENTS.version, source=source)
    if manifest.total_rows < config.min_documents:
        if config.min_documents == 1:
            raise BadInputError(f"{source}: no document; the corpus needs at least one")
        raise BadInputError(
            f"{source}: {manifest.total_rows} document(s); NotNext pairs take B from another "
            "document, so the corpus needs at least two"
        )
    return manifest, digest


def parse_args(argv: list[str] | None):
    parser = job_parser(
        "pretraining_data",
        "Build BERT pretraining examples (masked sentence pairs with next-sentence labels, or "
        "ALBERT's sentence-order labels, or RoBERTa's packed single segments) from document "
        "shards and a vocabulary directory, as equal-size Arrow shards, one output directory "
        "per sequence length.",
        "--documents runs/sample/documents --vocab runs/sample/vocab "
        "--output runs/sample/pretraining --num-shards 4",
    )
    parser.add_argument("--documents", required=True, help="documents stage output directory")
    parser.add_argument(
        "--vocab", required=True, help="vocabulary directory (vocab.txt, tokenizer.json)"
    )
    parser.add_argument("--output", required=True, help="writes <output>/seq<N> per length")
    add_arguments(parser, PretrainingDataConfig)
    parser.add_argument(
        "--docs-per-bucket",
        type=int,
        default=512,
        help="documents per unit of work (memory per worker); does not change the output",
    )
    parser.add_argument(
        "--bucket-mb",
        type=float,
        default=2.0,
        help="most MB of the documents shards (as stored) per unit of work: long documents "
        "make fewer per bucket; does not change the output",
    )
    parser.add_argument(
        "--exchange",
        choices=("auto", "local", "shuffle"),
        default="auto",
        help=EXCHANGE_HELP,
    )
    parser.add_argument(
        "--min-buckets",
        type=int,
        default=16,
        help="least units of work; does not change the output",
    )
    args, beam_args = parser.parse_known_args(argv)
    config = PretrainingDataConfig(**chosen(PretrainingDataConfig, args))
    config.validate()
    if args.docs_per_bucket < 1 or args.min_buckets < 1 or args.bucket_mb <= 0:
        raise ValueError("--docs-per-bucket, --min-buckets and --bucket-mb must be positive")
    return args, config, beam_args


def run(argv: list[str] | None = None) -> dict[int, dict]:
    """Run the job; returns {length: manifest dict}. Lengths already up to date are skipped.
    One run at a time per --output (bertdata/output_lock.py)."""
    args, config, beam_args = parse_args(argv)
    with output_lock(args.output):
        return _run(args, config, beam_args)


def _run(args: argparse.Namespace, config: PretrainingDataConfig, beam_args: list[str]):
    local = use_local_exchange(args.exchange, [args.documents, args.output], beam_args)
    documents, documents_hash = check_documents(args.documents, config)
    document_bytes = sum(shard.bytes for shard in documents.shards)
    if config.packing == "full-sentences":
        # The units a row may run across: fixed by the corpus, whatever the buckets.
        streams = num_streams_for(documents.total_rows, document_bytes)
        config = dataclasses.replace(config, packing_streams=streams)
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
    output_dirs = {length: output_dir_for(args.output, length) for length in todo}
    k = shuffle_exchange.num_buckets_for(
        documents.total_rows,
        args.docs_per_bucket,
        args.min_buckets,
        document_bytes,
        int(args.bucket_mb * 2**20),
    )
    # A line at once and one every half minute; the steps count nothing (yet): elapsed only.
    with Heartbeat(STAGE, None, total=None, unit="documents"):
        if local:
            result = run_local(
                sub,
                vocab,
                args.documents,
                list(documents.shards),
                output_dirs,
                work_dir_for(args.output),
                min(k, documents.total_rows),
                beam_args,
            )
        else:
            pipeline = make_pipeline(beam_args)
            shuffle_exchange.build_pipeline(pipeline, sub, vocab, args.documents, output_dirs, k)
            result = run_pipeline(pipeline)
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
    """Adds the job with the shuffle exchange to `pipeline` (as on Dataflow)."""
    output_dirs = {length: output_dir_for(output, length) for length in config.max_seq_lengths}
    shuffle_exchange.build_pipeline(
        pipeline, config, vocab, documents_dir, output_dirs, num_buckets
    )


def main(argv: list[str] | None = None) -> int:
    return job_main(
        run,
        argv,
        (BadInputError, ManifestError, FileNotFoundError, ValueError, OutputError),
        report,
    )


def report(manifests: dict[int, dict]) -> list[str]:
    """What a finished run prints: per length, its examples, shards and counters."""
    lines = []
    for length, manifest in manifests.items():
        rows = [s["rows"] for s in manifest["shards"]]
        lines.append(
            f"seq{length}: {manifest['total_rows']} examples in {len(rows)} shards "
            f"({min(rows)}-{max(rows)} per shard)"
        )
        lines += counter_lines(manifest)
    return lines


if __name__ == "__main__":
    # Run the imported module's main, so that the classes of the elements pickle under their
    # module's name (not __main__) for worker processes.
    from pipelines.pretraining_data import main as _main

    sys.exit(_main())
