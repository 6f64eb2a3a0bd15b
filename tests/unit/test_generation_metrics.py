"""BLEU and ROUGE-L on hand-made examples whose values are worked out by hand."""

from __future__ import annotations

import pytest

pytest.importorskip("sacrebleu")
pytest.importorskip("rouge_score")

from edgeft.metrics import generation_metrics  # noqa: E402


def test_multi_reference_bleu_matches_the_hand_computed_value():
    # n-gram precisions against the best of both references: 6/6, 3/5 ("the cat", "on the", "the mat"),
    # 1/4 ("on the mat"), 0/3 -> exp smoothing 1/6; brevity penalty 1 (closest reference has 6 tokens).
    # BLEU = (1 * 3/5 * 1/4 * 1/6) ** (1/4) = 0.3976
    scores = generation_metrics(
        ["the cat is on the mat"], [["the cat sat on the mat", "there is a cat on the mat"]]
    )
    assert scores["bleu"] == pytest.approx(39.76, abs=0.01)
    assert "nrefs:2" in scores["bleu_signature"]


def test_inputs_with_fewer_references_still_count_every_reference():
    # The second input's only reference equals its prediction; the first has two references, one exact.
    scores = generation_metrics(
        ["a small cafe by the river", "cheap food near the station"],
        [["something else entirely", "a small cafe by the river"], ["cheap food near the station"]],
    )
    assert scores["bleu"] == pytest.approx(100.0)
    assert scores["rouge_l"] == pytest.approx(100.0)


def test_rouge_l_takes_the_best_reference():
    # LCS with the first reference is 3 tokens: precision 3/3, recall 3/6, F1 2/3; the second shares nothing.
    scores = generation_metrics(["the cat sat"], [["the cat sat on the mat", "a dog"]])
    assert scores["rouge_l"] == pytest.approx(66.67, abs=0.01)


def test_a_prediction_without_references_is_refused():
    with pytest.raises(ValueError, match="at least one reference"):
        generation_metrics(["text"], [[]])
