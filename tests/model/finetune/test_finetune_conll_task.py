"""CoNLL-2003: the column format, IOB1 and BIO, first-sub-token labels, long sentences."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.tasks import get_task
from model.tasks.base import IGNORE_INDEX, DataError
from model.tasks.tokenize import load_tokenizer

IOB1 = """-DOCSTART- -X- -X- O

EU NNP B-NP I-ORG
rejects VBZ B-VP O
German JJ B-NP I-MISC
call NN I-NP O
to TO B-VP O
boycott VB I-VP O
British JJ B-NP I-MISC
lamb NN I-NP O
. . O O

Peter NNP B-NP I-PER
Blackburn NNP I-NP I-PER
Paris NNP I-NP I-LOC
London NNP I-NP B-LOC

"""


def write(directory: Path, name: str, text: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(text, encoding="utf-8")


def test_reads_the_original_iob1_files_and_trains_on_bio(tmp_path: Path):
    write(tmp_path, "eng.train", IOB1)
    split = get_task("conll2003").read(tmp_path, "train")
    assert [len(e.words) for e in split.examples] == [9, 4]
    assert split.notes == {"documents": 1}
    second = split.examples[1]
    assert second.words == ("Peter", "Blackburn", "Paris", "London")
    assert second.tags == ("I-PER", "I-PER", "I-LOC", "B-LOC")
    assert second.bio_tags == ["B-PER", "I-PER", "B-LOC", "B-LOC"]
    assert second.line == 13


def test_scheme_checks(tmp_path: Path):
    write(tmp_path, "train.txt", IOB1)
    with pytest.raises(
        DataError, match=r"train.txt:3: I-ORG starts an entity, which BIO does not allow"
    ):
        get_task("conll2003", {"scheme": "bio"}).read(tmp_path, "train")
    write(tmp_path, "valid.txt", "EU B-ORG\nrejects O\n")
    with pytest.raises(
        DataError, match=r"valid.txt:1: B-ORG does not follow an entity of type ORG"
    ):
        get_task("conll2003", {"scheme": "iob1"}).read(tmp_path, "dev")
    assert get_task("conll2003", {"scheme": "bio"}).read(tmp_path, "dev").examples[0].tags == (
        "B-ORG",
        "O",
    )


def test_bad_tags_and_columns_name_the_line(tmp_path: Path):
    write(tmp_path, "train.txt", "EU NNP I-ORG\nrejects VBZ B-PERSON\n")
    with pytest.raises(DataError, match=r"train.txt:2: tag 'B-PERSON' has entity type 'PERSON'"):
        get_task("conll2003").read(tmp_path, "train")
    write(tmp_path, "train.txt", "EU NNP I-ORG\nrejects VBZ E-PER\n")
    with pytest.raises(DataError, match=r"train.txt:2: tag 'E-PER' is not O, B-TYPE or I-TYPE"):
        get_task("conll2003").read(tmp_path, "train")
    write(tmp_path, "train.txt", "EU NNP I-ORG\nrejects\n")
    with pytest.raises(
        DataError, match=r"train.txt:2: 1 column\(s\), but earlier lines have a tag column"
    ):
        get_task("conll2003").read(tmp_path, "train")
    write(tmp_path, "train.txt", "-DOCSTART- -X- -X- O\n\n")
    with pytest.raises(DataError, match="holds no examples"):
        get_task("conll2003").read(tmp_path, "train")


def test_only_the_first_piece_of_a_word_carries_its_label(minilm_dir: Path, tmp_path: Path):
    write(tmp_path, "train.txt", "Gruenberger NNP I-NP I-PER\nrejects VBZ B-VP O\n")
    task = get_task("conll2003")
    split = task.read(tmp_path, "train")
    tokenizer = load_tokenizer(minilm_dir)
    encoded = task.encode(split, tokenizer, max_seq_length=16)
    pieces = tokenizer.encode_texts(["Gruenberger"])[0].ids
    assert len(pieces) > 1  # gr ##uen ##berger, or similar
    labels = encoded.targets["labels"][0].tolist()
    per = task.labels.index("B-PER")
    assert labels[: len(pieces) + 2] == [IGNORE_INDEX, per] + [IGNORE_INDEX] * (len(pieces) - 1) + [
        task.labels.index("O")
    ]
    assert encoded.meta[0].positions == (1, 1 + len(pieces))


def test_a_long_sentence_is_split_between_words_and_every_word_is_predicted(
    minilm_dir: Path, tmp_path: Path
):
    words = [f"word{i}" for i in range(30)]  # each is two or more pieces
    lines = [f"{w} NN O {'I-LOC' if i % 7 == 0 else 'O'}" for i, w in enumerate(words)]
    write(tmp_path, "valid.txt", "\n".join(lines) + "\n")
    task = get_task("conll2003")
    split = task.read(tmp_path, "dev")
    encoded = task.encode(split, load_tokenizer(minilm_dir), max_seq_length=16)
    assert len(encoded) > 3 and encoded.stats["split_sentences"] == 1
    covered = [
        w
        for window in encoded.meta
        for w in range(window.first_word, window.first_word + len(window.positions))
    ]
    assert covered == list(range(30))
    # Logits that say the gold label at each word's first piece: a perfect score.
    logits = torch.zeros(len(encoded), 16, len(task.labels))
    gold = split.examples[0].bio_tags
    for f, window in enumerate(encoded.meta):
        for k, position in enumerate(window.positions):
            logits[f, position, task.labels.index(gold[window.first_word + k])] = 1.0
    predictions = task.predict(split, encoded, logits)
    assert predictions == [gold]
    assert task.score(split, predictions)["f1"] == 100.0
    path = task.write_predictions(split, predictions, tmp_path / "out")[0]
    assert path.read_text().splitlines()[0] == "word0 B-LOC B-LOC"
