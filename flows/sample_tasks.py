"""Fine-tuning tasks built from the corpus itself, for runs where no GLUE data can be had.

    python -m flows.sample_tasks --documents runs/sample/documents --output runs/sample/tasks
    python -m flows.sample_tasks --documents DOCS --output TASKS --tasks same-document,source

Each task's labels come from the structure of real documents (the extraction stage's output),
so a run can fine-tune and score a model on its own corpus:

- sentence-order: two consecutive sentences, kept in order or swapped (ALBERT's sentence-order
  prediction). Both orders hold the same words, so only a model that knows how a text flows
  (which sentence introduces, which refers back) does better than chance.
- same-document: two passages of 1-3 sentences, from one document or from two documents of the
  same source (50/50). The passages never touch (at least MIN_GAP_SENTENCES between them), so
  this is not next-sentence prediction; the other document is of the same source and its passage
  is the one closest in length to the passage a same-document pair would have taken, so neither
  genre nor length gives the label away. It needs topic knowledge: that "the treaty" and "the
  senate" belong together, when the two passages share few or no words.
- source: one passage of 2-3 sentences; the label is the document's source (one input file per
  genre: wiki, news, books, ...), capped to the same count per source. It needs style and genre
  knowledge. Offered only when at least two sources have enough documents.
- article: one passage of 2-3 sentences; which of the N largest documents it comes from. Topic
  knowledge again, at a finer grain than genre; the label names a document (its doc_id).

An untrained model maps every input to a near-constant vector, so it scores the chance level
(the majority-class rate in the manifest counters) on each of them.

Every choice is a hash of (seed, task, record identity: doc id, sentence index, pair number),
never worker order or Python's random, so the files are the same on every run. Documents go to
train or dev by a hash of their id (the same documents in dev for every task split this way);
the article task needs every document in both splits, so it splits each document into blocks
of ARTICLE_BLOCK_SENTENCES sentences instead, and no passage crosses a block. Reads every
document into memory: meant for the sample and corpora of that size.

Writes <output>/<task>/{train,dev}.jsonl (each atomically) and then <output>/manifest.json,
which lists every task's files and counters: examples available, labels written and the dev
set's majority-class rate (per mille). Task cards: docs/tasks.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from bertdata.options import command_parser
from bertdata.paths import write_atomic
from schemas.manifest import MANIFEST_NAME, InputRef, Manifest, ManifestError, ShardInfo
from schemas.manifest import manifest_hash as hash_manifest

DEV_FRACTION = 0.15  # documents (article: blocks of a document) that go to dev
MIN_SENTENCE_CHARS = 20  # sentence-order: shorter "sentences" (list debris) say little of order
MIN_PASSAGE_CHARS = 20  # shorter passages (headings, list debris) say nothing about a document
MAX_PASSAGE_CHARS = 400  # a longer span loses sentences from its end (one is always kept)
MIN_GAP_SENTENCES = 2  # same-document: sentences between the two passages of a pair
SENTENCES_PER_PAIR = 5  # same-document: one pair per this many sentences of a document...
MAX_PAIRS_PER_DOCUMENT = 60  # ... up to this many, so that long documents do not dominate
PARTNER_WINDOW = 16  # same-document: sentences of the other document searched for a passage
SOURCE_PASSAGES_PER_DOCUMENT = 10  # source: spreads each class over many documents
MIN_SOURCE_TRAIN_DOCUMENTS = 3  # source: a source needs this many train documents and one in dev
ARTICLE_BLOCK_SENTENCES = 12  # article: sentences per block; each block is in train or in dev

Splits = dict[str, list["Example"]]  # "train" and "dev"


class TaskUnavailable(ValueError):
    """The documents do not allow this task; the message says why."""


@dataclass(frozen=True, kw_only=True)
class Document:
    """The fields of an extracted document that the tasks use."""

    doc_id: str
    source: str  # the input it came from: the source task's label
    sentences: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class Example:
    """One line of a task file."""

    id: str  # the document (and position) it was made from
    text_a: str
    text_b: str | None  # None: a single-passage task, written as field "text"
    label: str
    key: float  # the example's place in its file, from a hash

    def to_json(self) -> str:
        texts = (
            {"text": self.text_a}
            if self.text_b is None
            else {"text_a": self.text_a, "text_b": self.text_b}
        )
        return json.dumps({"id": self.id, **texts, "label": self.label}, ensure_ascii=False)


@dataclass(frozen=True, kw_only=True)
class BuildOptions:
    """What every task builder may use."""

    seed: int  # every choice is a hash of the seed and the record's identity
    article_documents: int  # article: how many of the largest documents are the classes


def _unit(*parts: object) -> float:
    """A number in [0, 1) from a hash of the parts: randomness tied to the record."""
    digest = hashlib.sha256("\0".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def document_split(seed: int, doc_id: str) -> str:
    """The split of a document ("train" or "dev"), by a hash of its id."""
    return "dev" if _unit(seed, "split", doc_id) < DEV_FRACTION else "train"


def passage(sentences: tuple[str, ...], start: int, count: int) -> str:
    """Sentences [start, start + count) joined, dropping the last ones beyond MAX_PASSAGE_CHARS."""
    text = " ".join(sentences[start : start + count])
    while count > 1 and len(text) > MAX_PASSAGE_CHARS:
        count -= 1
        text = " ".join(sentences[start : start + count])
    return text


def read_documents(directory: Path) -> Iterator[Document]:
    """Documents of an extraction output, checked against its manifest."""
    path = directory / MANIFEST_NAME
    try:
        manifest = Manifest.from_json(path.read_bytes(), source=str(path))
    except FileNotFoundError as err:
        raise ManifestError(f"{path}: not found; run the extraction stage first") from err
    manifest.expect(schema_name="documents", schema_version=1, source=str(path))
    for shard in manifest.shards:
        data = (directory / shard.path).read_bytes()
        if hashlib.sha256(data).hexdigest() != shard.sha256:
            raise ManifestError(f"{directory / shard.path}: checksum does not match {path}")
        table = pa.ipc.open_file(pa.BufferReader(data)).read_all()
        for row in table.select(["doc_id", "source", "sentences"]).to_pylist():
            yield Document(
                doc_id=row["doc_id"], source=row["source"], sentences=tuple(row["sentences"])
            )


# -- sentence-order ---------------------------------------------------------------------------


def sentence_order_examples(documents: list[Document], seed: int) -> Splits:
    """Consecutive sentence pairs, in order or swapped (50/50 by hash)."""
    splits: Splits = {"train": [], "dev": []}
    for doc in sorted(documents, key=lambda d: d.doc_id):
        sentences = doc.sentences
        for i in range(len(sentences) - 1):
            a, b = sentences[i], sentences[i + 1]
            if min(len(a), len(b)) < MIN_SENTENCE_CHARS:
                continue
            swapped = _unit(seed, "swap", doc.doc_id, i) < 0.5
            splits[document_split(seed, doc.doc_id)].append(
                Example(
                    id=f"{doc.doc_id}-{i}",
                    text_a=b if swapped else a,
                    text_b=a if swapped else b,
                    label="swapped" if swapped else "in_order",
                    key=_unit(seed, "order", doc.doc_id, i),
                )
            )
    return splits


# -- same-document ----------------------------------------------------------------------------


def same_document_examples(documents: list[Document], seed: int) -> Splits:
    """Pairs of passages from one document or two documents of the same source (50/50)."""
    splits: Splits = {"train": [], "dev": []}
    for split, examples in splits.items():
        eligible = [
            d
            for d in sorted(documents, key=lambda d: d.doc_id)
            if document_split(seed, d.doc_id) == split and len(d.sentences) >= 2 + MIN_GAP_SENTENCES
        ]
        by_source: dict[str, list[Document]] = defaultdict(list)
        for doc in eligible:
            by_source[doc.source].append(doc)
        for doc in eligible:
            # Negatives come from the same source when it has another document in this split,
            # so that genre says nothing; never from the other split.
            partners = by_source[doc.source] if len(by_source[doc.source]) > 1 else eligible
            pairs = min(MAX_PAIRS_PER_DOCUMENT, max(1, len(doc.sentences) // SENTENCES_PER_PAIR))
            for k in range(pairs):
                example = same_document_pair(doc, k, partners, seed)
                if example is not None:
                    examples.append(example)
    return splits


def same_document_pair(
    doc: Document, k: int, partners: list[Document], seed: int
) -> Example | None:
    """Pair k of a document, or None when the document has no room or text for it."""

    def unit(*what: object) -> float:
        return _unit(seed, "same-document", doc.doc_id, k, *what)

    n = len(doc.sentences)
    count_a, count_b = 1 + int(unit("count_a") * 3), 1 + int(unit("count_b") * 3)
    start_a = int(unit("start_a") * (n - count_a + 1))
    # Starts of B that leave MIN_GAP_SENTENCES between the passages: [0, before) and
    # [after, n - count_b].
    before = max(0, start_a - MIN_GAP_SENTENCES - count_b + 1)
    after = start_a + count_a + MIN_GAP_SENTENCES
    choices = before + max(0, n - count_b - after + 1)
    if choices == 0:
        return None
    j = int(unit("start_b") * choices)
    start_b = j if j < before else after + j - before
    text_a = passage(doc.sentences, start_a, count_a)
    text_b = passage(doc.sentences, start_b, count_b)
    if min(len(text_a), len(text_b)) < MIN_PASSAGE_CHARS:
        return None
    same = unit("label") < 0.5
    if not same:
        others = [d for d in partners if d.doc_id != doc.doc_id]
        if not others:
            return None
        other = others[int(unit("partner") * len(others))]
        # The passage a same-document pair would have taken sets the length to match.
        text_b = closest_passage(other.sentences, len(text_b), unit("partner_start"))
        if text_b is None:
            return None
    return Example(
        id=f"{doc.doc_id}-{k}",
        text_a=text_a,
        text_b=text_b,
        label="same" if same else "different",
        key=unit("order"),
    )


def closest_passage(sentences: tuple[str, ...], target_chars: int, where: float) -> str | None:
    """The 1-3 sentence passage closest to target_chars in a window that starts at `where`."""
    first = int(where * max(1, len(sentences) - PARTNER_WINDOW + 1))
    best: tuple[int, str] | None = None
    for start in range(first, min(len(sentences), first + PARTNER_WINDOW)):
        for count in range(1, min(3, len(sentences) - start) + 1):
            text = passage(sentences, start, count)
            if len(text) >= MIN_PASSAGE_CHARS and (
                best is None or abs(len(text) - target_chars) < best[0]
            ):
                best = (abs(len(text) - target_chars), text)
    return None if best is None else best[1]


# -- single passages: source and article --------------------------------------------------------


def tile_passages(
    doc: Document, seed: int, task: str, start: int, stop: int
) -> list[tuple[int, str]]:
    """(first sentence, text) of consecutive 2-3 sentence passages covering [start, stop)."""
    passages = []
    while start < stop:
        count = min(2 + int(_unit(seed, task, "count", doc.doc_id, start) * 2), stop - start)
        text = passage(doc.sentences, start, count)
        if len(text) >= MIN_PASSAGE_CHARS:
            passages.append((start, text))
        start += count
    return passages


def source_classes(documents: list[Document], seed: int) -> tuple[list[str], list[str]]:
    """Sources with enough documents for train and dev, and the others."""
    counts = Counter((d.source, document_split(seed, d.doc_id)) for d in documents)
    sources = sorted({d.source for d in documents})
    usable = [
        s
        for s in sources
        if counts[s, "train"] >= MIN_SOURCE_TRAIN_DOCUMENTS and counts[s, "dev"] >= 1
    ]
    return usable, [s for s in sources if s not in usable]


def passage_example(
    doc: Document, seed: int, task: str, start: int, text: str, label: str
) -> Example:
    """A single-passage example of `task` from `doc`'s sentences at `start`."""
    return Example(
        id=f"{doc.doc_id}-{start}",
        text_a=text,
        text_b=None,
        label=label,
        key=_unit(seed, task, "order", doc.doc_id, start),
    )


def source_examples(documents: list[Document], seed: int) -> Splits:
    """Passages labelled with their document's source."""
    usable, too_small = source_classes(documents, seed)
    if len(usable) < 2:
        found = Counter(d.source for d in documents)
        raise TaskUnavailable(
            f"needs at least 2 sources with {MIN_SOURCE_TRAIN_DOCUMENTS} train documents and "
            f"1 dev document each; the documents have {dict(sorted(found.items()))}. "
            "Extract one input file per source (genre), or leave 'source' out of --tasks"
        )
    if any("," in s for s in usable):
        raise TaskUnavailable(
            f"source names {usable} must not hold commas: the fine-tuned model stores its "
            "labels comma-separated; rename the input files or use --source-name"
        )
    splits: Splits = {"train": [], "dev": []}
    for doc in sorted(documents, key=lambda d: d.doc_id):
        if doc.source not in usable:
            continue
        passages = tile_passages(doc, seed, "source", 0, len(doc.sentences))
        passages.sort(key=lambda p: _unit(seed, "source", "pick", doc.doc_id, p[0]))
        for start, text in passages[:SOURCE_PASSAGES_PER_DOCUMENT]:
            split = document_split(seed, doc.doc_id)
            splits[split].append(passage_example(doc, seed, "source", start, text, doc.source))
    return splits


def article_blocks(doc: Document, seed: int) -> list[tuple[int, str]]:
    """(first sentence, split) of each block; at least one block goes to each split."""
    starts = list(range(0, len(doc.sentences), ARTICLE_BLOCK_SENTENCES))
    ranked = sorted(starts, key=lambda s: _unit(seed, "article", "block", doc.doc_id, s))
    dev = set(ranked[: max(1, round(DEV_FRACTION * len(starts)))])
    return [(s, "dev" if s in dev else "train") for s in starts]


def article_examples(documents: list[Document], seed: int, num_articles: int) -> Splits:
    """Passages labelled with which of the largest documents they come from."""
    candidates = [d for d in documents if len(d.sentences) >= 2 * ARTICLE_BLOCK_SENTENCES]
    chosen = sorted(candidates, key=lambda d: (-sum(map(len, d.sentences)), d.doc_id))
    chosen = chosen[:num_articles]
    if len(chosen) < 2:
        raise TaskUnavailable(
            f"needs at least 2 documents of {2 * ARTICLE_BLOCK_SENTENCES} sentences or more; "
            f"found {len(candidates)}"
        )
    splits: Splits = {"train": [], "dev": []}
    for doc in sorted(chosen, key=lambda d: d.doc_id):
        for block, split in article_blocks(doc, seed):
            stop = min(len(doc.sentences), block + ARTICLE_BLOCK_SENTENCES)
            for start, text in tile_passages(doc, seed, "article", block, stop):
                splits[split].append(passage_example(doc, seed, "article", start, text, doc.doc_id))
    return splits


# -- the tasks, selection and writing ---------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class CorpusTask:
    """One task this module builds, and how model.finetune reads it (`--task custom`)."""

    name: str  # output folder, and the name to give --tasks
    build: Callable[[list[Document], BuildOptions], Splits]
    pair: bool  # two texts (text_a, text_b) or one (text)
    balanced: bool  # capped to the same count per label; sentence-order keeps its old files

    @property
    def finetune_options(self) -> dict[str, str]:
        """The custom task's field mapping (--task-option KEY=VALUE)."""
        texts = {"text_a": "text_a", "text_b": "text_b"} if self.pair else {"text_a": "text"}
        return {**texts, "label": "label", "id": "id"}


TASKS = {
    t.name: t
    for t in (
        CorpusTask(
            name="sentence-order",
            build=lambda docs, o: sentence_order_examples(docs, o.seed),
            pair=True,
            balanced=False,
        ),
        CorpusTask(
            name="same-document",
            build=lambda docs, o: same_document_examples(docs, o.seed),
            pair=True,
            balanced=True,
        ),
        CorpusTask(
            name="source",
            build=lambda docs, o: source_examples(docs, o.seed),
            pair=False,
            balanced=True,
        ),
        CorpusTask(
            name="article",
            build=lambda docs, o: article_examples(docs, o.seed, o.article_documents),
            pair=False,
            balanced=True,
        ),
    )
}


def select(examples: list[Example], limit: int, balanced: bool) -> list[Example]:
    """The first `limit` examples in hash order; balanced: the same number of each label."""
    ordered = sorted(examples, key=lambda e: (e.key, e.id))
    if not balanced:
        return ordered[:limit]
    by_label: dict[str, list[Example]] = defaultdict(list)
    for example in ordered:
        by_label[example.label].append(example)
    if not by_label:
        return []
    per_label = min(limit // len(by_label), *(len(v) for v in by_label.values()))
    chosen = {e.id for v in by_label.values() for e in v[:per_label]}
    return [e for e in ordered if e.id in chosen]


def build_task(
    task: CorpusTask, documents: list[Document], options: BuildOptions, limits: dict[str, int]
) -> tuple[Splits, dict[str, int]]:
    """The task's written examples per split and its counters; TaskUnavailable if it cannot."""
    available = task.build(documents, options)
    chosen = {split: select(v, limits[split], task.balanced) for split, v in available.items()}
    for split, examples in chosen.items():
        if len({e.label for e in examples}) < 2:
            raise TaskUnavailable(f"too few documents for two labels in the {split} split")
    counters = {f"{task.name}.{split}_available": len(v) for split, v in available.items()}
    for split, examples in chosen.items():
        for label, count in Counter(e.label for e in examples).items():
            counters[f"{task.name}.{split}_label.{label}"] = count
    dev_labels = Counter(e.label for e in chosen["dev"])
    majority = max(dev_labels.values()) / len(chosen["dev"])
    counters[f"{task.name}.dev_majority_class_per_mille"] = round(1000 * majority)
    return chosen, counters


def write_task(output: Path, name: str, splits: Splits) -> list[ShardInfo]:
    """Write <output>/<name>/{train,dev}.jsonl; returns their shard infos."""
    (output / name).mkdir(parents=True, exist_ok=True)
    shards = []
    for split, examples in splits.items():
        data = "".join(e.to_json() + "\n" for e in examples).encode()
        write_atomic(output / name / f"{split}.jsonl", data)
        shards.append(
            ShardInfo(
                path=f"{name}/{split}.jsonl",
                rows=len(examples),
                bytes=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
            )
        )
    return shards


def write_output(
    output: Path,
    documents_dir: Path,
    built: dict[str, Splits],
    counters: dict[str, int],
    config: dict,
) -> list[ShardInfo]:
    """Write every task's files, then the manifest (last); returns the files' shard infos."""
    manifest_path = output / MANIFEST_NAME
    manifest_path.unlink(missing_ok=True)  # a killed run never looks complete
    shards = [shard for name, splits in built.items() for shard in write_task(output, name, splits)]
    documents_manifest = (documents_dir / MANIFEST_NAME).read_bytes()
    manifest = Manifest(
        stage="sample_tasks",
        schema_name="finetune-jsonl",
        schema_version=1,
        shards=shards,
        config=config,
        inputs=[InputRef(path=str(documents_dir), manifest_hash=hash_manifest(documents_manifest))],
        counters=counters,
    )
    write_atomic(manifest_path, manifest.to_json().encode())
    return shards


def _task_names(value: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in TASKS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown task {', '.join(unknown) or value!r}; choose from {', '.join(TASKS)}"
        )
    return list(dict.fromkeys(names))


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("python -m flows.sample_tasks", __doc__)
    parser.add_argument("--documents", type=Path, required=True, help="extraction output")
    parser.add_argument("--output", type=Path, required=True, help="task folder root")
    parser.add_argument(
        "--tasks",
        type=_task_names,
        help=f"comma-separated, from {', '.join(TASKS)}; default: every task the documents "
        "allow (the others are skipped with a note)",
    )
    parser.add_argument(
        "--max-train",
        type=int,
        default=2000,
        help="training examples per task (default: %(default)s)",
    )
    parser.add_argument(
        "--max-dev", type=int, default=500, help="dev examples per task (default: %(default)s)"
    )
    parser.add_argument(
        "--article-documents",
        type=int,
        default=8,
        help="article: classes, the largest documents (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=12345, help="(default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        documents = list(read_documents(args.documents))
    except (ManifestError, OSError, pa.ArrowInvalid) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    options = BuildOptions(seed=args.seed, article_documents=args.article_documents)
    limits = {"train": args.max_train, "dev": args.max_dev}
    built: dict[str, Splits] = {}
    counters: dict[str, int] = {}
    for name in args.tasks or TASKS:
        try:
            built[name], task_counters = build_task(TASKS[name], documents, options, limits)
        except TaskUnavailable as err:
            if args.tasks:
                print(f"error: {args.documents}: task {name!r}: {err}", file=sys.stderr)
                return 2
            print(f"note: {args.documents}: skipping task {name!r}: {err}", file=sys.stderr)
            continue
        counters.update(task_counters)
        if name == "source" and (too_small := source_classes(documents, args.seed)[1]):
            print(
                f"note: source: too few documents, left out: {', '.join(too_small)}",
                file=sys.stderr,
            )
    if not built:
        print(f"error: {args.documents}: the documents allow none of the tasks", file=sys.stderr)
        return 2
    config = {
        "tasks": list(built),
        "seed": args.seed,
        "max_train": args.max_train,
        "max_dev": args.max_dev,
        "article_documents": args.article_documents,
    }
    shards = write_output(args.output, args.documents, built, counters, config)
    for shard in shards:
        print(f"{shard.path}: {shard.rows} examples")
    return 0


if __name__ == "__main__":
    sys.exit(main())
