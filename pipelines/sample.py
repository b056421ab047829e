"""The embedded sample: a real Wikipedia dump excerpt from the gensim wheel, and its chain.

    python -m pipelines.sample [--workdir runs/sample]

Fetches the excerpt through the package registry (pip download of the gensim wheel, which
carries it as test data; nothing is committed), then runs the data stages on it.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

SAMPLE_WHEEL = "gensim==4.4.0"
SAMPLE_MEMBER = (
    "gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
)
DEFAULT_CACHE = Path(os.environ.get("BERT_SAMPLE_DIR", Path(__file__).parents[1] / "data/sample"))


def fetch_sample(cache_dir: Path = DEFAULT_CACHE) -> Path:
    """Path to the sample dump, downloading the gensim wheel (once) to take it out."""
    target = cache_dir / Path(SAMPLE_MEMBER).name
    if target.exists():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--quiet",
            "-d",
            tmp,
            SAMPLE_WHEEL,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("gensim-*.whl"))
        if proc.returncode != 0 or not wheels:
            raise RuntimeError(
                f"could not download {SAMPLE_WHEEL} to get the sample dump: {proc.stderr.strip()}"
            )
        with zipfile.ZipFile(wheels[0]) as wheel:
            partial = target.with_name(f".{target.name}.partial")
            partial.write_bytes(wheel.read(SAMPLE_MEMBER))
            partial.rename(target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.sample",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--workdir", default="runs/sample", help="where the stage outputs go")
    parser.add_argument("--num-shards", type=int, default=4)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    dump = fetch_sample()
    print(f"sample dump: {dump}")
    from pipelines import extract, pretraining_data, validate, vocab

    work = args.workdir
    stages = [
        (
            extract.main,
            [
                "--input",
                str(dump),
                "--output",
                f"{work}/documents",
                "--num-shards",
                str(args.num_shards),
            ],
        ),
        (vocab.main, ["--documents", f"{work}/documents", "--output", f"{work}/vocab"]),
        (
            pretraining_data.main,
            [
                "--documents",
                f"{work}/documents",
                "--vocab",
                f"{work}/vocab",
                "--output",
                f"{work}/pretraining",
                "--num-shards",
                str(args.num_shards),
            ],
        ),
        (validate.main, ["--data", f"{work}/pretraining/seq128", "--vocab", f"{work}/vocab"]),
        (validate.main, ["--data", f"{work}/pretraining/seq512", "--vocab", f"{work}/vocab"]),
    ]
    for stage_main, stage_args in stages:
        code = stage_main(stage_args)
        if code:
            return code
    print(f"outputs under {work}/: documents/, vocab/, pretraining/seq128/, pretraining/seq512/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
