"""The embedded sample: a real Wikipedia dump excerpt from the gensim wheel, and its chain.

    python -m pipelines.sample [--workdir runs/sample]

Fetches the excerpt through the package registry (pip download of the gensim wheel, which
carries it as test data; nothing is committed), then runs the data stages on it.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from bertdata.options import command_parser
from pipelines.corpora import CACHE_ENV as CORPORA_CACHE_ENV
from pipelines.corpora import DEFAULT_CACHE as CORPORA_CACHE
from pipelines.corpora import WIKI_MEMBER, WIKI_PACKAGE, fetch_package, read_member

SAMPLE_WHEEL, SAMPLE_MEMBER = WIKI_PACKAGE, WIKI_MEMBER  # the gensim wheel's test dump
DEFAULT_CACHE = Path(os.environ.get("BERT_SAMPLE_DIR", Path(__file__).parents[1] / "data/sample"))


def fetch_sample(cache_dir: Path = DEFAULT_CACHE) -> Path:
    """Path to the sample dump, taken out of the gensim wheel (downloaded once, shared with
    pipelines.corpora's cache)."""
    target = cache_dir / Path(SAMPLE_MEMBER).name
    if target.exists():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    wheels = Path(os.environ.get(CORPORA_CACHE_ENV, CORPORA_CACHE))
    dump = read_member(fetch_package(SAMPLE_WHEEL, "wheel", wheels), SAMPLE_MEMBER)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_bytes(dump)
    partial.rename(target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("python -m pipelines.sample", __doc__)
    parser.add_argument(
        "--workdir", default="runs/sample", help="where the stage outputs go (default: %(default)s)"
    )
    parser.add_argument(
        "--num-shards", type=int, default=4, help="shards per output (default: %(default)s)"
    )
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
