"""The recipes of docs/loading_shards.md, on real outputs: a documents directory written by the
extraction job and a pretraining directory with its manifest and stats.json beside the shards."""

from __future__ import annotations

import glob
import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from datasets import load_dataset

from model.synthetic_data import write_synthetic_pretraining_data


@pytest.fixture(scope="module")
def documents(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("loading")
    text = "The first sentence is here. A second one follows it. The third ends the text. "
    rows = [json.dumps({"id": str(i), "text": f"Document {i}. " + text * 3}) for i in range(60)]
    (root / "in.jsonl").write_text("\n".join(rows) + "\n")
    command = [sys.executable, "-m", "pipelines.extract", "--input", str(root / "in.jsonl")]
    command += ["--output", str(root / "documents"), "--num-shards", "3"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "documents"


@pytest.fixture(scope="module")
def pretraining(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("loading") / "seq128"
    write_synthetic_pretraining_data(directory, num_examples=90, num_shards=3)
    (directory / "stats.json").write_text(json.dumps({"passed": True}))  # as validate leaves it
    return directory


def manifest_shards(directory: Path) -> list[str]:
    manifest = json.loads((directory / "manifest.json").read_text())
    return [f"{directory}/{s['path']}" for s in manifest["shards"]]


@pytest.mark.parametrize("which", ["documents", "pretraining"])
def test_every_recipe_reads_every_row(which, request):
    directory: Path = request.getfixturevalue(which)
    rows = json.loads((directory / "manifest.json").read_text())["total_rows"]
    shards = sorted(glob.glob(f"{directory}/*.arrow"))
    assert shards == manifest_shards(directory)
    expected = pa.concat_tables(pa.ipc.open_file(s).read_all() for s in shards)
    assert expected.num_rows == rows

    assert ds.dataset(shards, format="ipc").to_table().equals(expected)
    skipping = ds.dataset(str(directory), format="ipc", exclude_invalid_files=True)
    assert skipping.files == shards and skipping.to_table().equals(expected)
    with pytest.raises(pa.ArrowInvalid, match="Not an Arrow file"):
        ds.dataset(str(directory), format="ipc").to_table()  # what the docs warn of

    train = load_dataset("arrow", data_files=shards, split="train")
    assert train.num_rows == rows and train.column_names == expected.column_names
    assert train[0] == expected.slice(0, 1).to_pylist()[0]

    frame = ds.dataset(shards, format="ipc").to_table().to_pandas()
    assert len(frame) == rows
