"""The tasks built from the corpus: real documents from the extraction stage, checked per task."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest

from flows import sample_tasks
from flows.sample_tasks import MIN_GAP_SENTENCES, TASKS
from pipelines import extract
from schemas.manifest import MANIFEST_NAME, Manifest

SUBJECTS = "river mill bridge abbey castle harbour market school chapel forest".split()
VERBS = "crosses faces shelters feeds outlives borders serves hides".split()
PLACES = "valley town coast ridge plain island marsh moor".split()


def corpus_line(source: str, number: int, sentences: int) -> str:
    """One JSONL record: a document whose every sentence is unique in the corpus."""
    text = " ".join(
        f"The {SUBJECTS[(number + j) % 10]} of {source} record {number} {VERBS[j % 8]} the "
        f"{PLACES[(number * j) % 8]} in passage {j}."
        for j in range(sentences)
    )
    return json.dumps({"id": f"{source}-{number}", "text": text})


def extract_corpus(tmp_path: Path, name: str, sources: dict[str, int]) -> Path:
    """Documents from a JSONL file per source (documents of 12 to 40 sentences), extracted."""
    inputs = []
    for source, count in sources.items():
        path = tmp_path / f"{source}.jsonl"
        path.write_text(
            "".join(corpus_line(source, i, 12 + (7 * i) % 29) + "\n" for i in range(count))
        )
        inputs += ["--input", str(path)]
    output = tmp_path / name
    argv = [*inputs, "--output", str(output), "--num-shards", "2", "--id-field", "id"]
    assert extract.main(argv) == 0
    return output


@pytest.fixture(scope="module")
def documents_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two sources (wiki, news) of 20 documents each, through the extraction stage."""
    return extract_corpus(tmp_path_factory.mktemp("corpus"), "documents", {"wiki": 20, "news": 20})


@pytest.fixture(scope="module")
def documents(documents_dir: Path) -> list[dict]:
    """The extracted documents, read straight from the shards."""
    rows = []
    for shard in sorted(documents_dir.glob("*.arrow")):
        rows += pa.ipc.open_file(shard).read_all().to_pylist()
    return rows


@pytest.fixture(scope="module")
def tasks_dir(documents_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("tasks")
    assert build_tasks(documents_dir, output) == 0
    return output


def build_tasks(documents_dir: Path, output: Path) -> int:
    """Every task the documents allow, four documents for the article task."""
    argv = ["--documents", str(documents_dir), "--output", str(output), "--article-documents", "4"]
    return sample_tasks.main(argv)


def read_split(tasks_dir: Path, task: str, split: str) -> list[dict]:
    return [json.loads(line) for line in (tasks_dir / task / f"{split}.jsonl").open()]


def locate(text: str, documents: list[dict]) -> list[tuple[str, int]]:
    """(doc_id, first sentence) of every document where the text is a run of whole sentences."""
    found = []
    for doc in documents:
        sentences = doc["sentences"]
        for i, sentence in enumerate(sentences):
            if text.startswith(sentence):
                for k in range(1, min(3, len(sentences) - i) + 1):
                    if " ".join(sentences[i : i + k]) == text:
                        found.append((doc["doc_id"], i))
    return found


def test_the_corpus_has_the_documents_the_test_expects(documents):
    assert Counter(d["source"] for d in documents) == {"wiki.jsonl": 20, "news.jsonl": 20}
    assert all(len(d["sentences"]) == 12 + (7 * int(d["original_id"][5:])) % 29 for d in documents)


def test_every_task_is_built_by_default_with_balanced_labels(tasks_dir):
    manifest = Manifest.from_json((tasks_dir / MANIFEST_NAME).read_text())
    assert manifest.config["tasks"] == ["sentence-order", "same-document", "source", "article"]
    for name, task in TASKS.items():
        for split in ("train", "dev"):
            labels = Counter(e["label"] for e in read_split(tasks_dir, name, split))
            expected = {"sentence-order": 2, "same-document": 2, "source": 2, "article": 4}[name]
            assert len(labels) == expected, (name, split, labels)
            if task.balanced:
                assert len(set(labels.values())) == 1, (name, split, labels)
            else:
                assert max(labels.values()) / sum(labels.values()) < 0.6, (name, split, labels)
            for label, count in labels.items():
                assert manifest.counters[f"{name}.{split}_label.{label}"] == count
            if split == "dev":
                rate = manifest.counters[f"{name}.dev_majority_class_per_mille"]
                assert rate == round(1000 * max(labels.values()) / sum(labels.values()))


@pytest.mark.parametrize("task", ["sentence-order", "same-document", "source"])
def test_no_document_is_in_both_train_and_dev(tasks_dir, documents, task):
    def documents_of(split: str) -> set[str]:
        texts = [
            t for e in read_split(tasks_dir, task, split) for t in (e.get("text"), e.get("text_b"))
        ]
        return {doc for t in texts if t for doc, _ in locate(t, documents)}

    train, dev = documents_of("train"), documents_of("dev")
    assert train and dev and not train & dev


def test_article_passages_of_one_document_never_overlap_across_splits(tasks_dir, documents):
    located = {}
    for split in ("train", "dev"):
        for e in read_split(tasks_dir, "article", split):
            ((doc_id, start),) = locate(e["text"], documents)
            assert doc_id == e["label"]
            count = len(e["text"].split(" in passage ")) - 1  # one marker per sentence
            located.setdefault(split, set()).update((doc_id, start + i) for i in range(count))
    assert not located["train"] & located["dev"]
    assert {d for d, _ in located["train"]} == {d for d, _ in located["dev"]}


def test_same_document_pairs_come_from_the_documents_their_label_says(tasks_dir, documents):
    sources = {d["doc_id"]: d["source"] for d in documents}
    lengths: dict[str, list[int]] = {"same": [], "different": []}
    for split in ("train", "dev"):
        for e in read_split(tasks_dir, "same-document", split):
            ((doc_a, start_a),) = locate(e["text_a"], documents)
            ((doc_b, start_b),) = locate(e["text_b"], documents)
            assert (doc_a == doc_b) == (e["label"] == "same"), e
            assert sources[doc_a] == sources[doc_b]  # the source never gives the label away
            if doc_a == doc_b:  # never touching: not sentence continuation
                first, second = sorted([(start_a, e["text_a"]), (start_b, e["text_b"])])
                assert second[0] - first[0] >= first[1].count(" in passage ") + MIN_GAP_SENTENCES
            lengths[e["label"]].append(len(e["text_b"]))
    mean = {label: sum(v) / len(v) for label, v in lengths.items()}
    assert abs(mean["same"] - mean["different"]) < 0.1 * mean["same"], mean


def test_outputs_are_byte_identical_and_the_manifest_is_written_last(
    documents_dir, tasks_dir, tmp_path, monkeypatch
):
    replaced = []
    real_replace = os.replace  # the tasks' files are written by bertdata.paths.write_atomic
    monkeypatch.setattr(os, "replace", lambda a, b: (replaced.append(Path(b)), real_replace(a, b)))
    assert build_tasks(documents_dir, tmp_path) == 0
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert written == sorted(p.relative_to(tasks_dir) for p in tasks_dir.rglob("*") if p.is_file())
    for path in written:
        assert (tmp_path / path).read_bytes() == (tasks_dir / path).read_bytes(), path
    assert replaced[-1] == tmp_path / MANIFEST_NAME and len(replaced) == len(written)
    manifest = Manifest.from_json((tmp_path / MANIFEST_NAME).read_text())
    assert sorted(s.path for s in manifest.shards) == sorted(
        str(p) for p in written if p.name != MANIFEST_NAME
    )
    for shard in manifest.shards:
        lines = (tmp_path / shard.path).read_bytes()
        assert (shard.rows, shard.bytes) == (lines.count(b"\n"), len(lines))


def test_an_explicit_source_task_needs_two_sources(tmp_path, capsys):
    one_source = extract_corpus(tmp_path, "documents", {"wiki": 12})
    out = tmp_path / "tasks"
    argv = ["--documents", str(one_source), "--output", str(out)]
    assert sample_tasks.main([*argv, "--tasks", "same-document,source"]) == 2
    err = capsys.readouterr().err
    assert "task 'source': needs at least 2 sources" in err and "wiki.jsonl" in err
    assert not out.exists()  # nothing written
    assert sample_tasks.main(argv) == 0  # by default: skipped with a note
    assert "note:" in capsys.readouterr().err
    manifest = Manifest.from_json((out / MANIFEST_NAME).read_text())
    assert "source" not in manifest.config["tasks"] and not (out / "source").exists()
    with pytest.raises(SystemExit) as exit_info:
        sample_tasks.main([*argv, "--tasks", "topic"])
    assert exit_info.value.code == 2
    assert "choose from sentence-order, same-document, source, article" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random L=2, H=32 BERT whose vocabulary spells every word letter by letter."""
    import torch

    from model.bert import BertModel
    from model.config import bert_tiny
    from model.hf_checkpoint import save_hf_checkpoint

    letters = "abcdefghijklmnopqrstuvwxyz0123456789"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *letters, "."]
    vocab += ["##" + c for c in letters]
    torch.manual_seed(0)
    config = bert_tiny(
        vocab_size=len(vocab), hidden_size=32, num_attention_heads=4, intermediate_size=64
    )
    directory = tmp_path_factory.mktemp("tiny") / "checkpoint"
    save_hf_checkpoint(BertModel(config), directory)
    (directory / "vocab.txt").write_text("".join(t + "\n" for t in vocab))
    return directory


@pytest.mark.parametrize("task", ["same-document", "article"])  # a pair task, a 4-class one
def test_the_finetuning_stage_reads_each_task(tasks_dir, tiny_checkpoint, tmp_path, task, request):
    import torch

    from model.finetune import main as finetune

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model on shared cores: a second thread mostly waits
    request.addfinalizer(lambda: torch.set_num_threads(threads))
    options = [f"--task-option={k}={v}" for k, v in TASKS[task].finetune_options.items()]
    results = finetune(
        ["--task", "custom", "--data", str(tasks_dir / task), "--checkpoint", str(tiny_checkpoint),
         "--output", str(tmp_path), *options, "--grid", "lr=1e-3 batch=32 epochs=1",
         "--max-train-examples", "64", "--max-seq-length", "48", "--device", "cpu"]
    )  # fmt: skip
    dev = read_split(tasks_dir, task, "dev")
    (predictions_file,) = (tmp_path / "dev_predictions").glob("*.jsonl")
    predictions = [json.loads(line) for line in predictions_file.open()]
    assert [(p["id"], p["label"]) for p in predictions] == [(e["id"], e["label"]) for e in dev]
    assert {p["prediction"] for p in predictions} <= {e["label"] for e in dev}
    assert results["data"] and (tmp_path / "scores.json").is_file()
