"""bench/text_corpus.py: passes of respelled documents that extraction keeps, all of them."""

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa

from pipelines import extract
from schemas.documents import DOCUMENTS

ROOT = Path(__file__).resolve().parents[2]
SENTENCES = [
    "Several villages stand along the northern banks of the river.",
    "Farmers there harvest barley, apples and potatoes every autumn.",
    "Tourists visit the castle ruins during summer weekends.",
]


def test_passes_are_new_documents_to_extraction(tmp_path):
    docs = tmp_path / "documents"
    docs.mkdir()
    rows = [
        {"doc_id": f"d{i}", "source": "s", "original_id": str(i), "title": "",
         "sentences": [f"{s[:-1]} number {i}." for s in SENTENCES], "num_chars": 1,
         "num_words": 1}
        for i in range(3)
    ]  # fmt: skip
    table = pa.Table.from_pylist(rows, schema=DOCUMENTS.arrow_schema)
    with pa.OSFile(str(docs / "documents-00000-of-00001.arrow"), "wb") as f:
        with pa.ipc.new_file(f, table.schema) as writer:
            writer.write_table(table)
    out = tmp_path / "text"
    done = subprocess.run(
        [sys.executable, "bench/text_corpus.py", "--documents", str(docs), "--mb", "0.001",
         "--files", "2", "--output", str(out)],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    passes = int(done.stdout.split()[0])
    assert passes >= 2 and sorted(p.name for p in out.iterdir()) == ["part-0.txt", "part-1.txt"]
    extract.run(["--input", str(out / "*.txt"), "--output", str(tmp_path / "x"),
                 "--min-document-chars", "50"])  # fmt: skip
    manifest = json.loads((tmp_path / "x" / "manifest.json").read_text())
    assert manifest["total_rows"] == 3 * passes  # no pass is a duplicate of another
    assert manifest["counters"]["skipped_duplicate_documents"] == 0
