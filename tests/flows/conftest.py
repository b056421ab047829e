"""Fixtures for the flow tests: a Prefect test harness and a small stage program to run."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

# A stage as the runner sees one: `python -m toy_stage --output DIR ...` writes one shard and
# its manifest, last. It counts its runs in a file and can fail the ways real stages fail.
TOY_STAGE = textwrap.dedent(
    """
    import argparse, hashlib, os, sys, time
    from schemas.manifest import Manifest, ShardInfo

    parser = argparse.ArgumentParser()
    parser.add_argument("--output", required=True)
    parser.add_argument("--rows", type=int, default=3)
    parser.add_argument("--counter", required=True)
    parser.add_argument("--fail", choices=("none", "bad-input", "transient-once", "crash"),
                        default="none")
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--times", help="append 'OUTPUT start|end UNIX-TIME' lines here")
    args = parser.parse_args()

    def mark(what):
        if args.times:
            with open(args.times, "a") as f:
                f.write(f"{args.output} {what} {time.time()}\\n")

    mark("start")
    with open(args.counter, "a") as f:
        f.write("run\\n")
    runs = len(open(args.counter).read().splitlines())
    print(f"toy stage run {runs} writing {args.rows} rows", flush=True)
    time.sleep(args.sleep)
    if args.fail == "bad-input":
        print(f"error: {args.output}: record 7 has no text", file=sys.stderr)
        sys.exit(2)
    if args.fail == "transient-once" and runs == 1:
        raise ConnectionResetError("[Errno 104] Connection reset by peer")
    if args.fail == "crash":
        mark("end")
        raise RuntimeError("something broke inside the stage")
    os.makedirs(args.output, exist_ok=True)
    data = ("row\\n" * args.rows).encode()
    with open(os.path.join(args.output, "toy-00000-of-00001.txt"), "wb") as f:
        f.write(data)
    shard = ShardInfo(path="toy-00000-of-00001.txt", rows=args.rows, bytes=len(data),
                      sha256=hashlib.sha256(data).hexdigest())
    manifest = Manifest(stage="toy", schema_name="toy", schema_version=1, shards=[shard],
                        config={"rows": args.rows}, inputs=[], counters={"toy_rows": args.rows})
    tmp = os.path.join(args.output, ".manifest.tmp")
    with open(tmp, "w") as f:
        f.write(manifest.to_json())
    os.replace(tmp, os.path.join(args.output, "manifest.json"))
    mark("end")
    print("done", flush=True)
    """
)


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory):
    """A temporary Prefect server and database; stage results stored under a temp folder."""
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    storage = tmp_path_factory.mktemp("prefect-results")
    with prefect_test_harness(server_startup_timeout=120):
        with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: storage}):
            yield


@pytest.fixture
def toy_stage(tmp_path: Path, monkeypatch) -> Path:
    """Directory holding the toy_stage module, importable here and in stage subprocesses."""
    package_dir = tmp_path / "toy_modules"
    package_dir.mkdir()
    (package_dir / "toy_stage.py").write_text(TOY_STAGE)
    monkeypatch.syspath_prepend(str(package_dir))
    root = str(Path(__file__).resolve().parents[2])
    monkeypatch.setenv("PYTHONPATH", f"{package_dir}:{root}")
    sys.modules.pop("toy_stage", None)
    return package_dir
