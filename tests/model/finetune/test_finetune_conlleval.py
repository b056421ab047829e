"""conlleval's chunk logic: where chunks start and end, IOB1 vs BIO, and the scores."""

import pytest

from model.metrics.conlleval import chunks, evaluate, iob1_to_bio, split_tag


def test_bio_chunks_and_an_i_tag_after_o_starts_a_chunk():
    assert chunks(["B-PER", "I-PER", "O", "I-LOC", "I-LOC", "B-LOC"]) == [
        ("PER", 0, 2),
        ("LOC", 3, 5),
        ("LOC", 5, 6),
    ]


def test_a_type_change_ends_one_chunk_and_starts_another():
    assert chunks(["B-PER", "I-LOC", "I-LOC"]) == [("PER", 0, 1), ("LOC", 1, 3)]


def test_iob1_chunks_and_their_bio_form():
    iob1 = ["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-ORG"]
    assert chunks(iob1) == [("PER", 0, 2), ("PER", 2, 3), ("LOC", 4, 5), ("ORG", 5, 6)]
    bio = iob1_to_bio(iob1)
    assert bio == ["B-PER", "I-PER", "B-PER", "O", "B-LOC", "B-ORG"]
    assert chunks(bio) == chunks(iob1)
    assert iob1_to_bio(bio) == bio  # BIO input is left as it is


def test_known_scores_and_report():
    gold = [["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", "B-ORG"]]
    pred = [["B-PER", "I-PER", "O", "B-LOC", "O", "O", "I-ORG"]]
    result = evaluate(gold, pred)
    # Gold PER(0,2) LOC(3,5) ORG(6,7); predicted PER(0,2) LOC(3,4) ORG(6,7): 2 of 3 right.
    assert (result.overall.gold, result.overall.predicted, result.overall.correct) == (3, 3, 2)
    assert result.overall.precision == pytest.approx(200 / 3)
    assert result.overall.f1 == pytest.approx(200 / 3)
    assert result.accuracy == pytest.approx(500 / 7)  # tag strings equal at 5 of 7 tokens
    assert result.by_type["LOC"].f1 == 0.0 and result.by_type["ORG"].f1 == 100.0
    report = result.report().splitlines()
    assert report[0] == "processed 7 tokens with 3 phrases; found: 3 phrases; correct: 2."
    assert report[1] == "accuracy:  71.43%; precision:  66.67%; recall:  66.67%; FB1:  66.67"
    assert report[2] == "              LOC: precision:   0.00%; recall:   0.00%; FB1:   0.00  1"


def test_a_chunk_never_crosses_a_sentence_boundary():
    gold = [["O", "I-PER"], ["I-PER", "O"]]
    result = evaluate(gold, [["O", "B-PER"], ["B-PER", "O"]])
    assert (result.overall.gold, result.overall.correct) == (2, 2)


def test_partial_overlap_is_wrong_and_no_prediction_scores_zero():
    result = evaluate([["B-MISC", "I-MISC"]], [["B-MISC", "O"]])
    assert result.overall.correct == 0 and result.overall.f1 == 0.0
    assert evaluate([["B-PER"]], [["O"]]).overall.precision == 0.0


@pytest.mark.parametrize("tag", ["E-PER", "S-LOC", "PER", "O-PER"])
def test_tags_outside_iob1_and_bio_are_rejected(tag):
    with pytest.raises(ValueError, match="IOB1 and BIO"):
        split_tag(tag)


def test_lengths_must_agree():
    with pytest.raises(ValueError, match="sentence 0: 1 predicted tags for 2 gold tags"):
        evaluate([["O", "O"]], [["O"]])
