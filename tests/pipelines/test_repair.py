"""Re-running a stage repairs its damaged output: the up-to-date check compares each shard's
size and checksum with the manifest, logs the damaged shard and rebuilds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from schemas.manifest import MANIFEST_NAME, Manifest

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
SENTENCE = "The {} of the valley is farmed by the people of the town near the old bridge."


def write_corpus(path: Path, documents: int) -> Path:
    blocks = [
        "\n".join(SENTENCE.format(f"field {d} part {s}") for s in range(4))
        for d in range(documents)
    ]
    path.write_text("\n\n".join(blocks) + "\n")
    return path


def extract(corpus: Path, output: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.extract", f"--input={corpus}", f"--output={output}"]
        + ["--num-shards=2"],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def shard_bytes(output: Path) -> dict[str, bytes]:
    manifest = Manifest.from_json((output / MANIFEST_NAME).read_bytes())
    return {s.path: (output / s.path).read_bytes() for s in manifest.shards}


def test_a_truncated_or_altered_shard_is_rebuilt_by_the_next_run(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt", 10)
    output = tmp_path / "documents"
    extract(corpus, output)
    good = shard_bytes(output)
    first, second = sorted(good)

    assert "up to date (10 documents); nothing to do" in extract(corpus, output).stderr

    (output / first).write_bytes(good[first][: len(good[first]) // 2])  # truncated
    repaired = extract(corpus, output)
    assert f"{output / first} has {len(good[first]) // 2} bytes, its manifest says" in (
        repaired.stderr
    )
    assert "nothing to do" not in repaired.stderr
    assert shard_bytes(output) == good

    altered = bytearray(good[second])
    altered[len(altered) // 2] ^= 0x20  # same size, another checksum
    (output / second).write_bytes(bytes(altered))
    repaired = extract(corpus, output)
    assert f"{output / second}: checksum differs from its manifest; rebuilding" in repaired.stderr
    assert shard_bytes(output) == good

    (output / first).unlink()
    repaired = extract(corpus, output)
    assert f"{output / first} is missing; rebuilding" in repaired.stderr
    assert shard_bytes(output) == good


def test_a_damaged_vocabulary_is_rebuilt(tmp_path):
    documents = tmp_path / "documents"
    extract(write_corpus(tmp_path / "corpus.txt", 10), documents)
    vocab = tmp_path / "vocab"
    command = [sys.executable, "-m", "pipelines.vocab", f"--documents={documents}"]
    command += [f"--output={vocab}", "--vocab-size=120", "--no-reference"]

    def run() -> subprocess.CompletedProcess:
        result = subprocess.run(
            command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    run()
    good = (vocab / "vocab.txt").read_bytes()
    (vocab / "vocab.txt").write_bytes(good[: len(good) // 3])
    repaired = run()
    assert f"{vocab / 'vocab.txt'} has {len(good) // 3} bytes" in repaired.stderr
    assert (vocab / "vocab.txt").read_bytes() == good
