"""The paper's feature-based approach: a frozen encoder's layers, saved to Arrow, feed a small model.

    python -m model.features extract --task conll2003 --data DIR --checkpoint CKPT --output FEATS \
        [--layers=-4,-3,-2,-1] [--combine concat]
    python -m model.features train --features FEATS --output OUT [--epochs 4] [--seeds 0,1,2]

`extract` runs the encoder once, without gradients, and writes one Arrow IPC file per split
plus a manifest.json (schema, rows, checksums, configuration, inputs). Hidden layers are
numbered as `output_hidden_states` returns them: 0 is the embedding output, L the last layer,
and negative numbers count from the end; "concat" joins the chosen layers (the paper's best
NER variant is the last four, concatenated: 96.1 dev F1), "sum" adds them.

Token tasks (CoNLL-2003) get one vector per word (its first sub-token) and `train` fits the
paper's two-layer BiLSTM with a softmax per word; sentence tasks (GLUE, custom) get the [CLS]
vector and `train` fits a one-hidden-layer MLP. Dev scores use the task's official metric.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import logging
import math
import os
import statistics
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bertdata.options import command_parser
from bertdata.output_lock import output_lock
from model.bert import BertModel
from model.finetune import (
    Placement,
    clear_results,
    resolve_placement,
    results_table,
    to_device,
    write_results,
)
from model.heads import load_encoder
from model.paper_results import FEATURE_BASED, paper_results
from model.tasks import get_task
from model.tasks.base import IGNORE_INDEX, DataError, Encoded, SplitData, TaskProcessor
from model.tasks.conll import NerExample
from model.tasks.pairs import SentenceExample
from model.tasks.tokenize import load_tokenizer
from schemas.manifest import MANIFEST_NAME, InputRef, Manifest, ShardInfo

logger = logging.getLogger(__name__)

TOKEN_SCHEMA = "bert-token-features"
SENTENCE_SCHEMA = "bert-sentence-features"
SCHEMA_VERSION = 1
ROWS_PER_BATCH = 256  # examples per Arrow record batch


def combine_layers(hidden_states: Sequence[Tensor], layers: Sequence[int], combine: str) -> Tensor:
    """(B, T, D) from the chosen layers of (L+1) x (B, T, H): concatenated (D = len*H) or summed."""
    chosen = [hidden_states[i] for i in layers]
    if combine == "concat":
        return torch.cat(chosen, dim=-1)
    if combine == "sum":
        return torch.stack(chosen).sum(dim=0)
    raise ValueError(f"combine must be concat or sum, got {combine!r}")


def parse_layers(text: str, num_layers: int) -> list[int]:
    """ "-4,-3,-2,-1" -> absolute indices into the L+1 hidden states; checks the range."""
    try:
        layers = [int(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"layers must be comma-separated integers, got {text!r}") from None
    out = []
    for layer in layers:
        index = layer if layer >= 0 else num_layers + 1 + layer
        if not 0 <= index <= num_layers:
            raise ValueError(f"layer {layer} does not exist: the model has layers 0..{num_layers}")
        out.append(index)
    return out


def _token_schema(dim: int) -> pa.Schema:
    return pa.schema(
        [
            ("guid", pa.string()),
            ("words", pa.list_(pa.string())),
            ("tags", pa.list_(pa.string())),  # gold BIO tags; null in an untagged file
            ("features", pa.list_(pa.list_(pa.float32(), dim))),  # one vector per word
        ]
    )


def _sentence_schema(dim: int, regression: bool) -> pa.Schema:
    return pa.schema(
        [
            ("guid", pa.string()),
            ("label", pa.float64() if regression else pa.string()),  # null without labels
            ("features", pa.list_(pa.float32(), dim)),  # the [CLS] vector
        ]
    )


@dataclass(frozen=True)
class FrozenEncoder:
    """The frozen encoder, the layers it gives and how they are combined into features."""

    bert: BertModel
    layers: list[int]
    combine: str
    batch_size: int
    placement: Placement

    @property
    def dim(self) -> int:
        return self.bert.config.hidden_size * (len(self.layers) if self.combine == "concat" else 1)

    @torch.no_grad()
    def batches(self, encoded: Encoded) -> Iterator[tuple[Tensor, Tensor]]:
        """(feature indices, combined hidden states (B, T, D) as float32 on CPU)."""
        self.bert.eval()
        for first in range(0, len(encoded), self.batch_size):
            index = torch.arange(first, min(first + self.batch_size, len(encoded)))
            batch = to_device(encoded.batch(index, with_targets=False), self.placement.device)
            with self.placement.autocast():
                output = self.bert(
                    batch["input_ids"],
                    batch["token_type_ids"],
                    batch["attention_mask"],
                    output_hidden_states=True,
                )
            states = combine_layers(output.hidden_states, self.layers, self.combine)
            yield index, states.float().cpu()


def extract_split(
    task: TaskProcessor, split: SplitData, encoded: Encoded, encoder: FrozenEncoder, path: Path
) -> int:
    """Write the features of one split to an Arrow IPC file (atomically); returns the rows."""
    dim = encoder.dim
    token_level = task.head == "token"
    if task.head not in ("token", "classification", "regression"):
        raise ValueError(
            f"{task.name}: feature extraction supports sentence and token tasks, not {task.head!r}"
        )
    schema = _token_schema(dim) if token_level else _sentence_schema(dim, task.head == "regression")
    rows = _example_vectors(task, split, encoded, encoder)
    pending: list[tuple[Any, Tensor]] = []
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        with pa.OSFile(str(temporary), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
            for row in rows:
                pending.append(row)
                if len(pending) == ROWS_PER_BATCH:
                    writer.write_batch(_record_batch(pending, schema, dim, token_level))
                    pending.clear()
            if pending:
                writer.write_batch(_record_batch(pending, schema, dim, token_level))
    except BaseException:
        temporary.unlink(missing_ok=True)  # never leave a half-written file behind
        raise
    os.replace(temporary, path)
    return len(split.examples)


def _example_vectors(
    task: TaskProcessor, split: SplitData, encoded: Encoded, encoder: FrozenEncoder
) -> Iterator[tuple[Any, Tensor]]:
    """(example, vectors) in example order: (words, D) for token tasks, the [CLS] (D,) else."""
    windows: dict[int, list[Tensor]] = {}  # token tasks: the windows seen so far per example
    complete = 0  # token tasks: examples before this one have been yielded
    for index, states in encoder.batches(encoded):
        if task.head != "token":
            for row, f in enumerate(index.tolist()):
                yield split.examples[int(encoded.example_index[f])], states[row, 0]
            continue
        for row, f in enumerate(index.tolist()):
            window = encoded.meta[f]
            windows.setdefault(window.example, []).append(states[row, list(window.positions)])
        # Features come in example order: the examples before the last one seen are complete.
        last = encoded.meta[int(index[-1])].example
        for i in range(complete, last):
            yield split.examples[i], torch.cat(windows.pop(i))
        complete = max(complete, last)
    for i in range(complete, len(split.examples) if task.head == "token" else 0):
        yield split.examples[i], torch.cat(windows.pop(i))


def _record_batch(
    pending: list[tuple[Any, Tensor]], schema: pa.Schema, dim: int, token_level: bool
) -> pa.RecordBatch:
    """Arrow columns built from whole arrays, not per-number Python objects."""
    vectors = torch.cat([v.reshape(-1, dim) for _, v in pending]).numpy().ravel()
    fixed = pa.FixedSizeListArray.from_arrays(pa.array(vectors, pa.float32()), dim)
    guids = pa.array([e.guid for e, _ in pending], pa.string())
    if not token_level:
        labels = pa.array([e.label for e, _ in pending], schema.field("label").type)
        return pa.record_batch([guids, labels, fixed], schema=schema)
    counts = [v.size(0) for _, v in pending]
    offsets = pa.array([0, *itertools.accumulate(counts)], pa.int32())
    words = pa.array([list(e.words) for e, _ in pending], pa.list_(pa.string()))
    tags = pa.array(
        [e.bio_tags if e.tags is not None else None for e, _ in pending], pa.list_(pa.string())
    )
    features = pa.ListArray.from_arrays(offsets, fixed)
    return pa.record_batch([guids, words, tags, features], schema=schema)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def extract(
    *,
    task: TaskProcessor,
    data_dir: Path,
    checkpoint: Path,
    output_dir: Path,
    layers: str = "-4,-3,-2,-1",
    combine: str = "concat",
    max_seq_length: int | None = None,
    batch_size: int = 64,
    placement: Placement | None = None,
) -> Manifest:
    """Extract every split's features; the manifest is written last."""
    placement = placement or resolve_placement()
    bert, _ = load_encoder(checkpoint)
    bert.to(placement.device)
    tokenizer = load_tokenizer(checkpoint, vocab_size=bert.config.vocab_size)
    chosen = parse_layers(layers, bert.config.num_hidden_layers)
    encoder = FrozenEncoder(bert, chosen, combine, batch_size, placement)
    max_seq_length = max_seq_length or task.max_seq_length
    output_dir.mkdir(parents=True, exist_ok=True)
    # An earlier run's manifest goes first: killed half-way, this run must not look finished.
    (output_dir / MANIFEST_NAME).unlink(missing_ok=True)
    shards, inputs, counters = [], [], {}
    splits = ["train", *task.dev_splits, *task.test_splits]
    for name in splits:
        if name != "train" and name in task.test_splits and task.split_path(data_dir, name) is None:
            continue
        split = task.read(data_dir, name)
        encoded = task.encode(split, tokenizer, max_seq_length)
        path = output_dir / f"{name}.arrow"
        rows = extract_split(task, split, encoded, encoder, path)
        logger.info("%s: %d examples -> %s", name, rows, path)
        shards.append(
            ShardInfo(path=path.name, rows=rows, bytes=path.stat().st_size, sha256=_sha256(path))
        )
        inputs.append(InputRef(path=split.source, bytes=Path(split.source).stat().st_size))
        for reason, count in split.skipped.items():
            counters[f"{name}_skipped_{reason}"] = count
    token_level = task.head == "token"
    manifest = Manifest(
        stage="features",
        schema_name=TOKEN_SCHEMA if token_level else SENTENCE_SCHEMA,
        schema_version=SCHEMA_VERSION,
        shards=shards,
        config={
            "task": task.name,
            "task_info": task.finetune_info(),
            "checkpoint": str(checkpoint),
            "layers": chosen,
            "combine": combine,
            "max_seq_length": max_seq_length,
            "dim": bert.config.hidden_size * (len(chosen) if combine == "concat" else 1),
        },
        inputs=inputs,
        counters=counters,
    )
    temporary = output_dir / f".{MANIFEST_NAME}.tmp"
    temporary.write_text(manifest.to_json(), encoding="utf-8")
    os.replace(temporary, output_dir / MANIFEST_NAME)
    return manifest


def read_manifest(features_dir: Path) -> Manifest:
    """The features manifest, checked for our schemas."""
    path = features_dir / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no manifest; run `python -m model.features extract` first"
        )
    manifest = Manifest.from_json(path.read_bytes(), source=str(path))
    if manifest.schema_name not in (TOKEN_SCHEMA, SENTENCE_SCHEMA):
        raise DataError(f"{path}: holds {manifest.schema_name!r}, not BERT features")
    manifest.expect(
        schema_name=manifest.schema_name, schema_version=SCHEMA_VERSION, source=str(path)
    )
    return manifest


def read_split(path: Path) -> pa.Table:
    """A features file, memory-mapped."""
    return pa.ipc.open_file(pa.memory_map(str(path))).read_all()


class BiLstmTagger(nn.Module):
    """Two-layer BiLSTM over word vectors, then a softmax over tags per word (the paper's NER)."""

    def __init__(self, dim: int, num_labels: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.lstm = nn.LSTM(
            dim, hidden, num_layers=2, bidirectional=True, batch_first=True, dropout=dropout
        )
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(2 * hidden, num_labels)

    def forward(self, features: Tensor, lengths: Tensor) -> Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(
            features, lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        out, _ = self.lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(
            out, batch_first=True, total_length=features.size(1)
        )
        return self.output(self.dropout(out))  # (B, W, labels)


class MlpClassifier(nn.Module):
    """One hidden layer on the [CLS] vector: labels, or one output for regression."""

    def __init__(self, dim: int, num_labels: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(dim, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_labels),
        )

    def forward(self, features: Tensor) -> Tensor:
        return self.net(features)


@dataclass(frozen=True, kw_only=True)
class ClassifierSettings:
    """How the small model on the features is trained."""

    epochs: int = 4  # passes over the training features
    batch_size: int = 32  # examples per step
    learning_rate: float = 1e-3  # Adam
    hidden: int = 768  # LSTM width per direction (the paper's 768), or MLP hidden width
    dropout: float = 0.1


@dataclass
class _SplitFeatures:
    split: SplitData
    features: list[Tensor] | Tensor  # token: list of (W, D); sentence: (N, D)
    targets: list[Tensor] | Tensor | None


def _load_features(task: TaskProcessor, path: Path, name: str) -> _SplitFeatures:
    table = read_split(path)
    if task.head == "token":
        guids = table.column("guid").to_pylist()
        words = table.column("words").to_pylist()
        tags = table.column("tags").to_pylist()
        flat = table.column("features").combine_chunks()
        vectors = torch.from_numpy(flat.values.values.to_numpy(zero_copy_only=False).copy())
        dim = flat.type.value_type.list_size
        vectors = vectors.view(-1, dim)
        offsets = flat.offsets.to_numpy()
        features = [vectors[offsets[i] : offsets[i + 1]] for i in range(len(guids))]
        labelled = all(t is not None for t in tags)
        examples = [
            NerExample(guid=g, words=tuple(w), tags=tuple(t) if labelled else None, line=0)
            for g, w, t in zip(guids, words, tags, strict=True)
        ]
        label_id = {label: i for i, label in enumerate(task.labels)}
        targets = [torch.tensor([label_id[x] for x in t]) for t in tags] if labelled else None
    else:
        flat = table.column("features").combine_chunks()
        dim = flat.type.list_size
        features = torch.from_numpy(flat.values.to_numpy(zero_copy_only=False).copy()).view(-1, dim)
        labels = table.column("label").to_pylist()
        labelled = all(v is not None for v in labels)
        examples = [
            SentenceExample(guid=g, text_a="", text_b=None, label=v, line=0)
            for g, v in zip(table.column("guid").to_pylist(), labels, strict=True)
        ]
        targets = None
        if labelled:
            if task.head == "regression":
                targets = torch.tensor(labels, dtype=torch.float32)
            else:
                label_id = {label: i for i, label in enumerate(task.labels)}
                targets = torch.tensor([label_id[v] for v in labels])
    split = SplitData(name=name, source=str(path), examples=examples, has_labels=labelled)
    return _SplitFeatures(split, features, targets)


def _pad_words(rows: list[Tensor], value: float = 0.0) -> tuple[Tensor, Tensor]:
    lengths = torch.tensor([r.size(0) for r in rows])
    out = rows[0].new_full((len(rows), int(lengths.max()), *rows[0].shape[1:]), value)
    for i, r in enumerate(rows):
        out[i, : r.size(0)] = r
    return out, lengths


def _logits(
    model: nn.Module, data: _SplitFeatures, index: list[int], device: torch.device
) -> Tensor:
    if isinstance(model, BiLstmTagger):
        features, lengths = _pad_words([data.features[i] for i in index])
        return model(features.to(device), lengths)
    return model(data.features[index].to(device))


def train_classifier(
    task: TaskProcessor,
    train: _SplitFeatures,
    settings: ClassifierSettings,
    seed: int,
    device: torch.device,
) -> nn.Module:
    """Fit the small model on the training features."""
    torch.manual_seed(seed)
    dim = train.features[0].size(-1)
    num_labels = max(len(task.labels), 1)
    if task.head == "token":
        model: nn.Module = BiLstmTagger(dim, num_labels, settings.hidden, settings.dropout)
    else:
        model = MlpClassifier(dim, num_labels, settings.hidden, settings.dropout)
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    generator = torch.Generator().manual_seed(seed)
    n = len(train.split.examples)
    for _ in range(settings.epochs):
        order = torch.randperm(n, generator=generator).tolist()
        for first in range(0, n, settings.batch_size):
            index = order[first : first + settings.batch_size]
            logits = _logits(model, train, index, device)
            if task.head == "token":
                targets, _ = _pad_words([train.targets[i] for i in index], IGNORE_INDEX)
                loss = F.cross_entropy(
                    logits.flatten(0, 1), targets.flatten().to(device), ignore_index=IGNORE_INDEX
                )
            elif task.head == "regression":
                loss = F.mse_loss(logits.squeeze(-1), train.targets[index].to(device))
            else:
                loss = F.cross_entropy(logits, train.targets[index].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return model.eval()


@torch.no_grad()
def predict_classifier(
    task: TaskProcessor, model: nn.Module, data: _SplitFeatures, device: torch.device
) -> list:
    """One prediction per example, as the task's predict() gives them."""
    predictions: list = []
    n = len(data.split.examples)
    for first in range(0, n, 256):
        index = list(range(first, min(first + 256, n)))
        logits = _logits(model, data, index, device).float().cpu()
        if task.head == "token":
            best = logits.argmax(-1)
            for row, i in enumerate(index):
                predictions.append(
                    [task.labels[j] for j in best[row, : data.features[i].size(0)].tolist()]
                )
        elif task.head == "regression":
            predictions += logits.squeeze(-1).tolist()
        else:
            predictions += [task.labels[j] for j in logits.argmax(-1).tolist()]
    return predictions


def train_on_features(
    features_dir: Path,
    output_dir: Path,
    *,
    settings: ClassifierSettings | None = None,
    seeds: Sequence[int] = (0,),
    placement: Placement | None = None,
) -> dict[str, Any]:
    """Train the small model per seed, score dev with the task's metric, write scores and table."""
    settings = settings or ClassifierSettings()
    placement = placement or resolve_placement()
    manifest = read_manifest(features_dir)
    info = manifest.config["task_info"]
    task = get_task(info["task"], info.get("options", {}))
    files = {Path(s.path).stem: features_dir / s.path for s in manifest.shards}
    if "train" not in files:
        raise DataError(f"{features_dir}: no train features")
    train = _load_features(task, files["train"], "train")
    evaluations = {
        name: _load_features(task, files[name], name) for name in task.dev_splits if name in files
    }
    per_seed: list[dict[str, float]] = []
    best = None
    for seed in seeds:
        model = train_classifier(task, train, settings, seed, placement.device)
        scores: dict[str, float] = {}
        predictions = {}
        for name, data in evaluations.items():
            predictions[name] = predict_classifier(task, model, data, placement.device)
            if data.split.has_labels:
                scores |= {
                    f"{name}/{k}": v for k, v in task.score(data.split, predictions[name]).items()
                }
        logger.info("seed %d: %s", seed, scores)
        per_seed.append(scores)
        primary = scores.get(task.primary_metric, -math.inf)
        if best is None or primary > best[0]:
            best = (primary, predictions)
    output_dir.mkdir(parents=True, exist_ok=True)
    clear_results(output_dir)  # only a finished run has scores
    for name, data in evaluations.items():
        task.write_predictions(data.split, best[1][name], output_dir / "dev_predictions")
    metrics = sorted({k for s in per_seed for k in s})
    results = {
        "task": task.name,
        "display_name": f"{task.display_name} (feature-based)",
        "checkpoint": manifest.config["checkpoint"],
        "features": str(features_dir),
        "layers": manifest.config["layers"],
        "combine": manifest.config["combine"],
        "classifier": type(model).__name__,
        "classifier_settings": asdict(settings),
        "device": str(placement.device),
        "precision": "float32",
        "seeds": list(seeds),
        "select_metric": task.primary_metric,
        "selected": {
            "learning_rate": settings.learning_rate,
            "batch_size": settings.batch_size,
            "epochs": settings.epochs,
        },
        "dev": {m: _summary([s[m] for s in per_seed]) for m in metrics},
        "paper": [asdict(r) for r in paper_results(task.name, FEATURE_BASED)],
    }
    write_results(results, output_dir)
    return results


def _summary(values: list[float]) -> dict[str, Any]:
    finite = all(math.isfinite(v) for v in values)
    return {
        "mean": statistics.fmean(values) if finite else None,
        "std": (statistics.stdev(values) if len(values) > 1 else 0.0) if finite else None,
        "values": [v if math.isfinite(v) else None for v in values],
    }


def main(argv: Sequence[str] | None = None) -> Any:
    """Command line entry point: `extract` or `train`."""
    parser = command_parser(
        "python -m model.features",
        __doc__.splitlines()[0],
        "example:\n  python -m model.features extract --task conll2003 --data conll "
        "--checkpoint runs/bert-base/model --output feats --layers=-4,-3,-2,-1\n"
        "  python -m model.features train --features feats --output out/conll_features "
        "--seeds 0,1,2",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    ex = commands.add_parser(
        "extract",
        help="run the frozen encoder and write features to Arrow",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog="example: python -m model.features extract --task conll2003 --data conll "
        "--checkpoint runs/bert-base/model --output feats",
    )
    ex.add_argument("--task", required=True, help="a model.finetune task name")
    ex.add_argument("--data", type=Path, required=True, help="directory of the task's files")
    ex.add_argument("--checkpoint", type=Path, required=True, help="HF-format model with vocab.txt")
    ex.add_argument("--output", type=Path, required=True, help="directory for the Arrow features")
    ex.add_argument(
        "--layers", default="-4,-3,-2,-1", help="hidden layers (0 = embeddings, -1 = last)"
    )
    ex.add_argument(
        "--combine", default="concat", choices=("concat", "sum"), help="how the layers join"
    )
    ex.add_argument("--max-seq-length", type=int, help="default: the task's (128, SQuAD 384)")
    ex.add_argument("--batch-size", type=int, default=64, help="sequences per forward")
    ex.add_argument(
        "--task-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="task option, e.g. text_a=premise (repeat)",
    )
    ex.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    tr = commands.add_parser(
        "train",
        help="train the small model on extracted features",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog="example: python -m model.features train --features feats "
        "--output out/conll_features --seeds 0,1,2",
    )
    tr.add_argument("--features", type=Path, required=True, help="an `extract` output")
    tr.add_argument("--output", type=Path, required=True, help="directory for the scores")
    tr.add_argument("--epochs", type=int, default=ClassifierSettings.epochs, help="epochs")
    tr.add_argument(
        "--batch-size", type=int, default=ClassifierSettings.batch_size, help="examples per step"
    )
    tr.add_argument(
        "--lr", type=float, default=ClassifierSettings.learning_rate, help="learning rate"
    )
    tr.add_argument(
        "--hidden", type=int, default=ClassifierSettings.hidden, help="the small model's width"
    )
    tr.add_argument("--seeds", default="0", help="comma-separated seeds")
    tr.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        with output_lock(str(args.output)):  # one run per --output; refused before any work
            return _run_command(args)
    except (DataError, ValueError, FileNotFoundError) as error:
        parser.exit(2, f"error: {error}\n")


def _run_command(args: argparse.Namespace) -> Any:
    """`extract` or `train`, as the command line says."""
    if args.command == "extract":
        options = dict(item.partition("=")[::2] for item in args.task_option)
        manifest = extract(
            task=get_task(args.task, options),
            data_dir=args.data,
            checkpoint=args.checkpoint,
            output_dir=args.output,
            layers=args.layers,
            combine=args.combine,
            max_seq_length=args.max_seq_length,
            batch_size=args.batch_size,
            placement=resolve_placement(args.device, "fp32"),
        )
        print(manifest.to_json(), end="")
        return manifest
    settings = ClassifierSettings(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        hidden=args.hidden,
    )
    seeds = [int(s) for s in args.seeds.split(",")]
    results = train_on_features(
        args.features,
        args.output,
        settings=settings,
        seeds=seeds,
        placement=resolve_placement(args.device, "fp32"),
    )
    print(results_table([results]), end="")
    return results


if __name__ == "__main__":
    main()
