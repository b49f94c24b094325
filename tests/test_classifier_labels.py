"""Classifier labels and settings as the user wrote them: bad settings (min_score past 1) are one clear
error."""

from __future__ import annotations

import math

import pytest

from corpus.stages.classifier import QualityScoreFilter

pytest.importorskip("fasttext")


def test_min_score_outside_0_1_is_refused():
    """min_score 1.5 was accepted and dropped every document: a score is a probability."""
    for bad in (1.5, -0.1, math.nan):
        with pytest.raises(ValueError, match=r"min_score must lie in \[0, 1\], got"):
            QualityScoreFilter(min_score=bad)
    assert QualityScoreFilter(min_score=0.0).min_score == 0.0 and QualityScoreFilter(min_score=1.0).min_score == 1.0
    with pytest.raises(ValueError, match="pareto_alpha must be positive"):
        QualityScoreFilter(pareto_alpha=math.nan)
