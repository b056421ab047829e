"""The sample's fine-tuning task, built from the corpus: are two consecutive sentences in order?

    python -m flows.sample_tasks --documents runs/sample/documents --output runs/sample/tasks

No downstream data set can be downloaded here, so the sample chain fine-tunes on a task made
from its own documents (sentence-order prediction, as in ALBERT): a pair of consecutive
sentences, kept in order or swapped. Documents go to dev or train by a hash of their id, and
every choice comes from a hash of (seed, doc id, sentence index), so the files are the same on
every run. Writes <output>/sentence-order/{train,dev}.jsonl and <output>/manifest.json (last).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from schemas.manifest import MANIFEST_NAME, InputRef, Manifest, ManifestError, ShardInfo
from schemas.manifest import manifest_hash as hash_manifest

TASK = "sentence-order"
MIN_SENTENCE_CHARS = 20  # shorter "sentences" (list debris, headings) say little about order


def _unit(*parts: object) -> float:
    """A number in [0, 1) from a hash of the parts: randomness tied to the record."""
    digest = hashlib.sha256("\0".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def read_documents(directory: Path) -> Iterator[dict]:
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
        yield from table.select(["doc_id", "sentences"]).to_pylist()


def sentence_order_examples(documents: list[dict], seed: int) -> dict[str, list[dict]]:
    """Train and dev examples: consecutive pairs, in order or swapped (50/50 by hash)."""
    splits: dict[str, list[dict]] = {"train": [], "dev": []}
    for doc in sorted(documents, key=lambda d: d["doc_id"]):
        split = "dev" if _unit(seed, "split", doc["doc_id"]) < 0.15 else "train"
        sentences = doc["sentences"]
        for i in range(len(sentences) - 1):
            a, b = sentences[i], sentences[i + 1]
            if min(len(a), len(b)) < MIN_SENTENCE_CHARS:
                continue
            swapped = _unit(seed, "swap", doc["doc_id"], i) < 0.5
            splits[split].append(
                {
                    "id": f"{doc['doc_id']}-{i}",
                    "text_a": b if swapped else a,
                    "text_b": a if swapped else b,
                    "label": "swapped" if swapped else "in_order",
                    "_key": _unit(seed, "order", doc["doc_id"], i),
                }
            )
    return splits


def write_task(output: Path, splits: dict[str, list[dict]], limits: dict[str, int]) -> list:
    """Write each split (shuffled by hash, capped) atomically; returns their shard infos."""
    task_dir = output / TASK
    task_dir.mkdir(parents=True, exist_ok=True)
    shards = []
    for split, examples in splits.items():
        chosen = sorted(examples, key=lambda e: e["_key"])[: limits[split]]
        lines = [
            json.dumps({k: v for k, v in e.items() if k != "_key"}, ensure_ascii=False)
            for e in chosen
        ]
        data = ("\n".join(lines) + "\n").encode()
        target = task_dir / f"{split}.jsonl"
        tmp = task_dir / f".{split}.jsonl.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, target)
        shards.append(
            ShardInfo(
                path=f"{TASK}/{split}.jsonl",
                rows=len(chosen),
                bytes=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
            )
        )
    return shards


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.sample_tasks", description=__doc__)
    parser.add_argument("--documents", type=Path, required=True, help="extraction output")
    parser.add_argument("--output", type=Path, required=True, help="task folder root")
    parser.add_argument("--max-train", type=int, default=2000, help="training examples kept")
    parser.add_argument("--max-dev", type=int, default=500, help="dev examples kept")
    parser.add_argument("--seed", type=int, default=12345)
    args = parser.parse_args(argv)
    try:
        documents = list(read_documents(args.documents))
    except (ManifestError, OSError, pa.ArrowInvalid) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    splits = sentence_order_examples(documents, args.seed)
    if not splits["train"] or not splits["dev"]:
        print(
            f"error: {args.documents}: too few documents for a train and a dev split",
            file=sys.stderr,
        )
        return 2
    limits = {"train": args.max_train, "dev": args.max_dev}
    config = {"task": TASK, "seed": args.seed, "max_train": args.max_train, "max_dev": args.max_dev}
    source = args.documents / MANIFEST_NAME
    manifest_path = args.output / MANIFEST_NAME
    manifest_path.unlink(missing_ok=True)  # a killed run never looks complete
    shards = write_task(args.output, splits, limits)
    manifest = Manifest(
        stage="sample_tasks",
        schema_name="finetune-jsonl",
        schema_version=1,
        shards=shards,
        config=config,
        inputs=[
            InputRef(path=str(args.documents), manifest_hash=hash_manifest(source.read_bytes()))
        ],
        counters={f"{split}_pairs_available": len(v) for split, v in splits.items()},
    )
    tmp = args.output / f".{MANIFEST_NAME}.tmp"
    tmp.write_text(manifest.to_json())
    os.replace(tmp, manifest_path)
    for shard in shards:
        print(f"{shard.path}: {shard.rows} examples")
    return 0


if __name__ == "__main__":
    sys.exit(main())
