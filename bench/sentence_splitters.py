"""Benchmark: blingfire against pysbd for sentence splitting, speed and accuracy.

Speed: both split the same cleaned paragraphs of a real Wikipedia dump in this process
(best of --repeats runs each). Accuracy: a hand-labelled set of tricky paragraphs below,
scored as exact match of the whole split and as boundary precision / recall / F1.

    python bench/sentence_splitters.py [--dump PATH] [--repeats N]
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import blingfire
import pysbd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.sentences import split_sentences  # noqa: E402
from pipelines.wikidump import WikiPage, iter_pages, open_dump  # noqa: E402
from pipelines.wikitext import clean_wikitext  # noqa: E402

DEFAULT_DUMP = (
    Path(__file__).resolve().parents[1]
    / "data/sample/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
)

# Each case: the correct sentences of one paragraph; the paragraph is their " "-join.
# Sentences marked "sample" are taken from the enwiki sample dump.
LABELLED: list[list[str]] = [
    ["The U.S. Army was founded in 1775.", "It fought in many wars."],
    ["Dr. Smith arrived at 10 a.m. on Monday.", "He left early."],
    ["The author J. R. R. Tolkien wrote The Hobbit.", "It was published in 1937."],
    ["Pi is approximately 3.14159.", "It is irrational."],
    ["Some animals, e.g. cats and dogs, are domesticated.", "Others are not."],
    ["He waited... and waited.", "Then he left."],
    ['She said, "I will go."', "Then she left."],
    ['"Are you coming?" he asked.', "She nodded."],
    ["The river is long (about 300 km).", "It flows north."],
    ["The treaty failed.", "(It was later revived in 1920.)", "Peace followed."],
    ["The No. 5 locomotive was built in 1890.", "It is now in a museum."],
    ["He lived at No. 10 Downing St. for six years.", "He then retired."],
    ["The album has three parts: 1. Overture, 2. Theme, 3. Finale.", "It lasts an hour."],
    ["Mr. and Mrs. Jones live in St. Louis, Missouri.", "They have two children."],
    ["The company is called Acme Inc. and it makes anvils.", "Its founder was born in 1901."],
    ["World War II ended in 1945.", "The U.N. was founded the same year."],
    ["Summers reach 45 °C.", "Winters are mild, e.g. 10 °C in January."],
    ["The population was 1,234,567 in 2010.", "It grew by 3.5% by 2020."],
    ["Gen. George S. Patton commanded the Third Army.", "He died in 1945."],
    ["The book (see p. 45) describes the war.", "Chapter 3 covers the aftermath."],
    ["Prof. Müller studied at the Univ. of Vienna.", "She graduated in 1998."],
    ["It was released on Jan. 5, 1999.", "Sales were strong."],
    ["Why did it fail?", "Nobody knows.", "The records were lost!"],
    ["Approx. 30% of voters abstained.", "The turnout was lower than in 2004."],
    ["The term comes from Latin, cf. the verb agere.", "Its meaning changed over time."],
    ["Franklin D. Roosevelt was elected in 1932.", "He served four terms."],
    ["The Ph.D. program started in 1950.", "It was the first in the country."],
    ["Sales rose in the U.S.", "Prices fell in Europe."],
    ["The ship sank in 1912 (cf. Titanic).", "Over 1,500 people died."],
    ["He wrote: 'The end is near.'", "His followers agreed."],
    ["Version 2.0 came out in 2005, vs. version 1.5 in 2003.", "Both are obsolete."],
    ["They sold fruit, vegetables, etc. at the market.", "Prices were low.", "Trade grew."],
    ["See the website at www.example.com for details.", "It is updated daily."],
    ["In 1539, the word was first used in English."],
    # Added after the first run: titles and initials that start a sentence (see results).
    ["The lecture was given in 1998.", "Dr. Smith later published it."],
    ["He retired in 1990.", "Mr. Jones succeeded him as chairman."],
    ["The old church burned down.", "St. Mary's was rebuilt in 1850."],
    ["The style is ambiguous.", "F. Scott Fitzgerald used it in The Great Gatsby."],
    [  # sample: Anarchism
        "Experiments in Germany led to A. S. Neill founding what became Summerhill School in 1921.",
        "Summerhill is often cited as an example of anarchism in practice.",
    ],
    [  # sample: Anarchism
        "They encouraged playing with sexual roles and sexuality, and the openly bisexual "
        "radical Edna St. Vincent Millay and the lesbian anarchist Margaret Anderson were "
        "prominent among them.",
        "Discussion groups organised by the Villagers were frequented by Emma Goldman, "
        "among others.",
    ],
    [  # sample: Anarchism
        "The individualist anarchist George MacDonald was a co-editor of Freethought and, "
        "for a time, The Truth Seeker.",
        "E.C. Walker was co-editor of the free-thought journal Lucifer, the Light-Bearer.",
    ],
    [  # sample: Anarchism
        "The earliest anarchist themes can be found in the 6th century BC, among the works "
        "of Taoist philosopher Laozi, and in later centuries by Zhuangzi and Bao Jingyan.",
        "Zhuangzi's philosophy has been described by various sources as anarchist.",
    ],
]

_SPACE = re.compile(r"\s+")


def _blingfire(paragraph: str) -> list[str]:
    return [s for s in blingfire.text_to_sentences(paragraph).split("\n") if s.strip()]


def _boundaries(sentences: list[str]) -> set[int]:
    """Sentence ends as offsets in the paragraph with all whitespace removed."""
    ends, offset = set(), 0
    for sentence in sentences[:-1]:
        offset += len(_SPACE.sub("", sentence))
        ends.add(offset)
    return ends


def accuracy(split: Callable[[str], list[str]]) -> dict[str, float]:
    """Exact-match rate and boundary precision / recall / F1 on LABELLED."""
    exact = true_pos = predicted = gold_total = 0
    for gold in LABELLED:
        got = [s.strip() for s in split(" ".join(gold)) if s.strip()]
        exact += got == gold
        gold_ends, got_ends = _boundaries(gold), _boundaries(got)
        true_pos += len(gold_ends & got_ends)
        predicted += len(got_ends)
        gold_total += len(gold_ends)
    precision = true_pos / predicted if predicted else 1.0
    recall = true_pos / gold_total if gold_total else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"exact": exact / len(LABELLED), "precision": precision, "recall": recall, "f1": f1}


def speed(
    split: Callable[[str], list[str]], paragraphs: list[str], repeats: int
) -> tuple[float, list[list[str]]]:
    """Best wall time over `repeats` runs, and the split of every paragraph."""
    for paragraph in paragraphs[:50]:  # warm-up: lazy imports, regex compilation
        split(paragraph)
    best, splits = float("inf"), []
    for _ in range(repeats):
        start = time.perf_counter()
        splits = [split(paragraph) for paragraph in paragraphs]
        best = min(best, time.perf_counter() - start)
    return best, splits


def load_paragraphs(dump: Path) -> list[str]:
    """Clean paragraphs of every article (namespace 0, not a redirect) of the dump."""
    with open_dump(dump) as stream:
        pages = [
            page
            for page in iter_pages(stream, dump.name)
            if isinstance(page, WikiPage) and page.namespace == 0 and not page.redirect
        ]
    return [paragraph for page in pages for paragraph in clean_wikitext(page.text)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dump", type=Path, default=DEFAULT_DUMP, help="MediaWiki .xml(.bz2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per splitter")
    args = parser.parse_args(argv)

    paragraphs = load_paragraphs(args.dump)
    megabytes = sum(len(p.encode("utf-8")) for p in paragraphs) / 1e6
    print(f"dump {args.dump.name}: {len(paragraphs)} paragraphs, {megabytes:.2f} MB of prose")
    print(f"labelled set: {len(LABELLED)} paragraphs, {sum(len(g) for g in LABELLED)} sentences")

    segmenter = pysbd.Segmenter(language="en", clean=False)
    splitters = {
        "split_sentences": split_sentences,  # blingfire + the leading-fragment fix
        "blingfire 0.1.8": _blingfire,
        "pysbd 0.3.4": segmenter.segment,
    }
    rows = {}
    for name, split in splitters.items():
        seconds, splits = speed(split, paragraphs, args.repeats)
        rows[name] = (seconds, splits, accuracy(split))

    header = (
        f"{'splitter':<15} {'seconds':>8} {'sentences':>9} {'sent/s':>9} {'MB/s':>7} "
        f"{'exact':>6} {'bnd P':>6} {'bnd R':>6} {'bnd F1':>6}"
    )
    print(header)
    for name, (seconds, splits, acc) in rows.items():
        sentences = sum(len(split) for split in splits)
        print(
            f"{name:<15} {seconds:>8.2f} {sentences:>9} {sentences / seconds:>9.0f} "
            f"{megabytes / seconds:>7.2f} {acc['exact']:>6.3f} {acc['precision']:>6.3f} "
            f"{acc['recall']:>6.3f} {acc['f1']:>6.3f}"
        )
    slow_s, slow_splits, _ = rows["pysbd 0.3.4"]
    for name in ("split_sentences", "blingfire 0.1.8"):
        fast_s, fast_splits, _ = rows[name]
        agree = sum(
            _boundaries([s.strip() for s in a]) == _boundaries([s.strip() for s in b])
            for a, b in zip(fast_splits, slow_splits, strict=True)
        )
        print(
            f"{name}: {slow_s / fast_s:.1f}x the speed of pysbd; same boundaries as pysbd "
            f"on {agree}/{len(paragraphs)} dump paragraphs ({agree / len(paragraphs):.1%})"
        )


if __name__ == "__main__":
    main()
