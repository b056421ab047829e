"""SQuAD EM and F1, computed as the official evaluation scripts (v1.1 and v2.0) compute them.

Answers are normalised by lower-casing, removing ASCII punctuation, removing the articles
"a", "an", "the" as whole words, and collapsing whitespace. A question scores the maximum
over its gold answers. v2.0 adds unanswerable questions: their only gold answer is the empty
string, a prediction of "" is right for them, and a no-answer probability (or any score where
higher means "no answer") with a threshold decides which questions get "".

Where this code and the official scripts part ways, it is on purpose and documented:
a question without a prediction scores 0 in both versions (the v2.0 script leaves it out of
the average, which inflates the score); the best threshold is chosen over whole groups of tied
scores (the v2.0 script can report a score between two tied questions that no threshold gives).
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation, drop articles, collapse whitespace (official order)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str) -> float:
    """1.0 if the normalised strings are equal."""
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1_v1(prediction: str, gold: str) -> float:
    """Token F1 of the v1.1 script: 0 when nothing is shared (also when either side is empty)."""
    prediction_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    shared = sum((Counter(prediction_tokens) & Counter(gold_tokens)).values())
    if shared == 0:
        return 0.0
    precision = shared / len(prediction_tokens)
    recall = shared / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def f1_v2(prediction: str, gold: str) -> float:
    """Token F1 of the v2.0 script: if either side is empty, 1 exactly when both are."""
    prediction_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    if not prediction_tokens or not gold_tokens:
        return float(prediction_tokens == gold_tokens)
    return f1_v1(prediction, gold)


def max_over_golds(
    metric: Callable[[str, str], float], prediction: str, golds: Sequence[str]
) -> float:
    """The best score of `prediction` against any gold answer."""
    return max(metric(prediction, gold) for gold in golds)


def gold_answers_v2(answer_texts: Sequence[str]) -> list[str]:
    """v2.0's gold answers: those that survive normalisation, or [""] for no answer."""
    kept = [text for text in answer_texts if normalize_answer(text)]
    return kept or [""]


def gold_answers(dataset: Sequence[Mapping[str, Any]]) -> dict[str, tuple[str, ...]]:
    """Question id -> gold answer texts, from the official JSON's "data" list."""
    gold: dict[str, tuple[str, ...]] = {}
    for article in dataset:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                gold[str(qa["id"])] = tuple(a["text"] for a in qa.get("answers", []))
    return gold


def evaluate_v1(
    gold: Mapping[str, Sequence[str]], predictions: Mapping[str, str]
) -> dict[str, float]:
    """{"exact_match", "f1"} in percent, plus "total" and "missing" (unanswered, scored 0)."""
    if not gold:
        raise ValueError("the dataset holds no questions")
    exact = f1 = 0.0
    missing = 0
    for qid, golds in gold.items():
        if qid not in predictions:
            missing += 1
            continue
        exact += max_over_golds(exact_match, predictions[qid], golds)
        f1 += max_over_golds(f1_v1, predictions[qid], golds)
    return {
        "exact_match": 100.0 * exact / len(gold),
        "f1": 100.0 * f1 / len(gold),
        "total": len(gold),
        "missing": missing,
    }


def raw_scores_v2(
    gold: Mapping[str, Sequence[str]], predictions: Mapping[str, str]
) -> tuple[dict[str, float], dict[str, float], dict[str, bool]]:
    """Per-question exact and F1 of the predictions as given, and whether each has an answer."""
    exact: dict[str, float] = {}
    f1: dict[str, float] = {}
    has_answer: dict[str, bool] = {}
    for qid, answer_texts in gold.items():
        golds = gold_answers_v2(answer_texts)
        has_answer[qid] = golds != [""]
        prediction = predictions.get(qid)
        if prediction is None:
            exact[qid] = f1[qid] = 0.0
            continue
        exact[qid] = max_over_golds(exact_match, prediction, golds)
        f1[qid] = max_over_golds(f1_v2, prediction, golds)
    return exact, f1, has_answer


def apply_no_answer_threshold(
    scores: Mapping[str, float],
    na_probs: Mapping[str, float],
    has_answer: Mapping[str, bool],
    threshold: float,
) -> dict[str, float]:
    """Scores once every question whose no-answer score exceeds `threshold` is answered ""."""
    return {
        qid: (float(not has_answer[qid]) if na_probs[qid] > threshold else score)
        for qid, score in scores.items()
    }


def _mean(values: Sequence[float]) -> float:
    return 100.0 * math.fsum(values) / len(values) if values else 0.0


def best_threshold(
    scores: Mapping[str, float],
    na_probs: Mapping[str, float],
    has_answer: Mapping[str, bool],
    predictions: Mapping[str, str],
) -> tuple[float, float]:
    """(best score in percent, threshold) over all no-answer thresholds.

    Questions are answered in rising order of no-answer score. Answering one changes its score
    from "no answer" (1 if it has none, else 0) to the prediction's. A threshold below every
    no-answer score (answer nothing) is min - 1.
    """
    qids = sorted(scores, key=lambda q: na_probs[q])
    if not qids:
        raise ValueError("no questions to choose a threshold on")
    current = sum(1.0 for q in qids if not has_answer[q])
    best, threshold = current, na_probs[qids[0]] - 1.0
    for i, qid in enumerate(qids):
        if has_answer[qid]:
            current += scores[qid]
        elif predictions.get(qid):
            current -= 1.0
        tied_with_next = i + 1 < len(qids) and na_probs[qids[i + 1]] == na_probs[qid]
        if not tied_with_next and current > best:
            best, threshold = current, na_probs[qid]
    return 100.0 * best / len(qids), threshold


def evaluate_v2(
    gold: Mapping[str, Sequence[str]],
    predictions: Mapping[str, str],
    na_probs: Mapping[str, float] | None = None,
    na_prob_threshold: float = 1.0,
) -> dict[str, float]:
    """The v2.0 script's report: exact, f1, HasAns_/NoAns_ parts and, with na_probs, best_*."""
    exact_raw, f1_raw, has_answer = raw_scores_v2(gold, predictions)
    if not exact_raw:
        raise ValueError("the dataset holds no questions")
    probs = na_probs if na_probs is not None else dict.fromkeys(exact_raw, 0.0)
    missing_probs = [q for q in exact_raw if q in predictions and q not in probs]
    if missing_probs:
        raise ValueError(
            f"no no-answer score for {len(missing_probs)} question(s), e.g. {missing_probs[0]}"
        )
    probs = {q: probs.get(q, 0.0) for q in exact_raw}
    exact = apply_no_answer_threshold(exact_raw, probs, has_answer, na_prob_threshold)
    f1 = apply_no_answer_threshold(f1_raw, probs, has_answer, na_prob_threshold)
    answerable = [q for q in exact if has_answer[q]]
    unanswerable = [q for q in exact if not has_answer[q]]
    report: dict[str, float] = {
        "exact": _mean(list(exact.values())),
        "f1": _mean(list(f1.values())),
        "total": len(exact),
        "missing": sum(q not in predictions for q in exact),
    }
    if answerable:
        report["HasAns_exact"] = _mean([exact[q] for q in answerable])
        report["HasAns_f1"] = _mean([f1[q] for q in answerable])
        report["HasAns_total"] = len(answerable)
    if unanswerable:
        report["NoAns_exact"] = _mean([exact[q] for q in unanswerable])
        report["NoAns_f1"] = _mean([f1[q] for q in unanswerable])
        report["NoAns_total"] = len(unanswerable)
    if na_probs is not None:
        best_exact, exact_threshold = best_threshold(exact_raw, probs, has_answer, predictions)
        best_f1, f1_threshold = best_threshold(f1_raw, probs, has_answer, predictions)
        report |= {
            "best_exact": best_exact,
            "best_exact_thresh": exact_threshold,
            "best_f1": best_f1,
            "best_f1_thresh": f1_threshold,
        }
    return report


def main(argv: Sequence[str] | None = None) -> None:
    """Score a predictions JSON against an official data JSON, as the official scripts do."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_file", help="official SQuAD JSON (dev-v1.1.json, dev-v2.0.json)")
    parser.add_argument("pred_file", help="JSON of question id -> predicted answer text")
    parser.add_argument("--na-prob-file", help="v2.0: JSON of question id -> no-answer score")
    parser.add_argument("--na-prob-thresh", type=float, default=1.0)
    parser.add_argument("--version", choices=("1.1", "2.0"), default=None)
    args = parser.parse_args(argv)
    with open(args.data_file, encoding="utf-8") as f:
        data = json.load(f)
    with open(args.pred_file, encoding="utf-8") as f:
        predictions = json.load(f)
    version = args.version or ("2.0" if str(data.get("version", "")).endswith("2.0") else "1.1")
    gold = gold_answers(data["data"])
    if version == "1.1":
        report = evaluate_v1(gold, predictions)
    else:
        na_probs = None
        if args.na_prob_file:
            with open(args.na_prob_file, encoding="utf-8") as f:
                na_probs = json.load(f)
        report = evaluate_v2(gold, predictions, na_probs, args.na_prob_thresh)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
