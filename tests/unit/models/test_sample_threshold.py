"""models.sample_threshold: a sample's own threshold against the model's, on the held-back posts."""

from __future__ import annotations

import numpy as np
import pytest

from models.sample_threshold import study


def test_a_samples_own_threshold_beats_a_threshold_that_queues_everything() -> None:
    # A "new platform": everything scores above the model's 0.3; the posts needing an
    # answer score higher still, so any sample's own pick separates them.
    gold = np.array([True] * 60 + [False] * 60)
    score = np.array([0.9 + 0.001 * i for i in range(60)] + [0.5 + 0.001 * i for i in range(60)])
    out = study(gold, score, 0.3, sample=60, draws=20, min_recall=0.9, seed=1)
    assert out["draws"] + out["skipped"] == 20
    assert out["at_model_threshold"]["precision"]["mean"] == pytest.approx(0.5, abs=0.05)
    assert out["at_model_threshold"]["recall"]["mean"] == 1.0
    assert out["at_sample_threshold"]["precision"]["mean"] == 1.0
    assert out["at_sample_threshold"]["recall"]["mean"] >= 0.85


def test_samples_with_too_few_positives_are_skipped() -> None:
    gold = np.array([True] * 3 + [False] * 97)
    with pytest.raises(SystemExit, match="larger --sample"):
        study(gold, np.linspace(0, 1, 100), 0.5, sample=50, draws=5, min_recall=0.9, seed=1)
