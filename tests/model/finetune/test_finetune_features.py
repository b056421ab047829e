"""Feature-based approach: frozen encoder layers to Arrow, then a small model on top."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pytest
import torch
from conftest import CITIES, FILLER, NAMES, NEGATIVE, POSITIVE

from model.features import combine_layers, main, parse_layers, read_manifest, read_split
from model.heads import load_encoder
from model.tasks import get_task
from model.tasks.tokenize import load_tokenizer


def write_conll(path: Path, rng: random.Random, sentences: int) -> None:
    lines = ["-DOCSTART- -X- -X- O", ""]
    for _ in range(sentences):
        tokens = [(rng.choice(FILLER), "O") for _ in range(rng.randint(3, 6))]
        tokens.insert(rng.randint(0, len(tokens)), (rng.choice(NAMES), "B-PER"))
        tokens.insert(rng.randint(0, len(tokens)), (rng.choice(CITIES), "B-LOC"))
        lines += [f"{w} NN O {t}" for w, t in tokens] + [""]
    path.write_text("\n".join(lines))


def test_layers_are_counted_from_the_embeddings_and_from_the_end():
    assert parse_layers("-4,-3,-2,-1", 12) == [9, 10, 11, 12]
    assert parse_layers("0,-1", 2) == [0, 2]
    with pytest.raises(ValueError, match="layers 0..2"):
        parse_layers("-4", 2)
    states = [torch.full((1, 2, 3), float(i)) for i in range(3)]
    assert combine_layers(states, [1, 2], "concat").shape == (1, 2, 6)
    assert combine_layers(states, [1, 2], "sum")[0, 0, 0] == 3.0


def test_conll_word_features_match_the_encoder_and_a_bilstm_learns_them(
    tiny_checkpoint: Path, tmp_path: Path
):
    rng = random.Random(7)
    data = tmp_path / "conll"
    data.mkdir()
    write_conll(data / "train.txt", rng, 200)
    write_conll(data / "valid.txt", rng, 40)

    main(
        [
            "extract",
            "--task",
            "conll2003",
            "--data",
            str(data),
            "--checkpoint",
            str(tiny_checkpoint),
            "--output",
            str(tmp_path / "features"),
            "--layers=-2,-1",
            "--max-seq-length",
            "8",
        ]
    )

    manifest = read_manifest(tmp_path / "features")
    assert manifest.schema_name == "bert-token-features"
    assert [s.path for s in manifest.shards] == ["train.arrow", "dev.arrow"]
    dev = read_split(tmp_path / "features/dev.arrow")
    assert dev.num_rows == 40 and manifest.shards[1].rows == 40
    # A word's vector is its first sub-token's last two layers, concatenated, in its window.
    # Every test word is one piece, so a window of 8 holds [CLS], 6 words and [SEP].
    bert, _ = load_encoder(tiny_checkpoint)
    tokenizer = load_tokenizer(tiny_checkpoint)
    words = dev.column("words")[0].as_py()
    pieces = [i for e in tokenizer.encode_words([words]) for i in e.ids]
    assert len(pieces) == len(words) > 6
    windows = [pieces[:6], pieces[6:]]
    stored = dev.column("features")[0].as_py()
    with torch.no_grad():
        for first, window in zip((0, 6), windows, strict=True):
            ids = torch.tensor([[tokenizer.cls_id, *window, tokenizer.sep_id]])
            states = bert.eval()(ids, output_hidden_states=True).hidden_states
            for k in range(len(window)):
                expected = torch.cat([states[1][0, 1 + k], states[2][0, 1 + k]])
                torch.testing.assert_close(
                    torch.tensor(stored[first + k]), expected, rtol=1e-5, atol=1e-5
                )
    assert dev.schema.field("features").type == pa.list_(pa.list_(pa.float32(), 64))
    # Sentences split over windows still get one vector per word.
    lengths = zip(dev.column("features").to_pylist(), dev.column("words").to_pylist(), strict=True)
    assert all(len(vectors) == len(words) for vectors, words in lengths)

    results = main(
        [
            "train",
            "--features",
            str(tmp_path / "features"),
            "--output",
            str(tmp_path / "out"),
            "--epochs",
            "8",
            "--hidden",
            "32",
            "--lr",
            "1e-2",
        ]
    )
    assert results["dev"]["dev/f1"]["mean"] > 90.0
    assert "feature-based" in (tmp_path / "out/results.md").read_text()


def test_sentence_features_of_real_minilm_train_an_mlp(minilm_dir: Path, tmp_path: Path):
    # A random encoder's [CLS] vectors barely differ between sentences; real weights' do.
    rng = random.Random(8)
    data = tmp_path / "sst"
    data.mkdir()
    for split, n in (("train", 200), ("dev", 40)):
        rows = []
        for i in range(n):
            sentence = [rng.choice(FILLER) for _ in range(4)] + [
                rng.choice(POSITIVE if i % 2 else NEGATIVE)
            ]
            rows.append(f"{' '.join(sentence)}\t{i % 2}")
        (data / f"{split}.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    main(
        [
            "extract",
            "--task",
            "sst2",
            "--data",
            str(data),
            "--checkpoint",
            str(minilm_dir),
            "--output",
            str(tmp_path / "features"),
            "--layers=-2,-1",
            "--combine",
            "sum",
        ]
    )
    table = read_split(tmp_path / "features/train.arrow")
    assert table.schema.field("features").type == pa.list_(
        pa.float32(), 384
    )  # summed [CLS] vectors
    assert table.column("label").to_pylist()[:2] == ["0", "1"]
    results = main(
        [
            "train",
            "--features",
            str(tmp_path / "features"),
            "--output",
            str(tmp_path / "out"),
            "--epochs",
            "20",
            "--hidden",
            "64",
            "--lr",
            "3e-3",
            "--seeds",
            "0,1",
        ]
    )
    assert results["dev"]["dev/accuracy"]["mean"] > 80.0
    assert len(results["dev"]["dev/accuracy"]["values"]) == 2


def test_span_tasks_are_refused(tiny_checkpoint: Path, tmp_path: Path):
    task = get_task("squad_v1")
    with pytest.raises(SystemExit):
        main(
            [
                "extract",
                "--task",
                task.name,
                "--data",
                str(tmp_path),
                "--checkpoint",
                str(tiny_checkpoint),
                "--output",
                str(tmp_path / "f"),
            ]
        )
