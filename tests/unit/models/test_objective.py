"""models.objective: weighted label loss, the needs_response head's loss, dev figures."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from models.objective import batch_loss, dev_figures, needs_response_scores  # noqa: E402
from models.train import class_weights  # noqa: E402


def test_unit_weights_give_the_class_weighted_cross_entropy() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 4, generator=g)
    labels = torch.tensor([0, 1, 2, 3, 0, 0])
    cw = torch.tensor([0.5, 1.2, 1.4, 0.9])
    ones = torch.ones(6)
    norms = (float(cw[labels].mean()), 1.0)
    expected = torch.nn.CrossEntropyLoss(weight=cw)(logits, labels)
    got = batch_loss(logits, labels, ones, None, cw, norms, 1.0)
    assert float(got) == pytest.approx(float(expected), rel=1e-6)


def test_a_weight_of_two_counts_like_the_post_twice() -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 5, generator=g)
    labels = torch.tensor([0, 1, 3])
    nr = torch.tensor([1.0, 0.0, 0.0])
    cw = torch.ones(4)
    weighted = batch_loss(logits, labels, torch.tensor([2.0, 1.0, 1.0]), nr, cw, (1.0, 1.0), 0.5)
    dup = [0, 0, 1, 2]
    repeated = batch_loss(logits[dup], labels[dup], torch.ones(4), nr[dup], cw, (1.0, 1.0), 0.5)
    # the same sum, over 3 rows instead of 4
    assert float(weighted) * 3 == pytest.approx(float(repeated) * 4, rel=1e-6)


def test_the_head_adds_its_binary_cross_entropy() -> None:
    logits = torch.zeros(2, 5)
    labels = torch.tensor([0, 1])
    cw = torch.ones(4)
    without = batch_loss(logits, labels, torch.ones(2), None, cw, (1.0, 1.0), 1.0)
    with_head = batch_loss(
        logits, labels, torch.ones(2), torch.tensor([1.0, 0.0]), cw, (1.0, 1.0), 2.0
    )
    assert float(without) == pytest.approx(np.log(4), rel=1e-6)
    assert float(with_head - without) == pytest.approx(2 * np.log(2), rel=1e-6)


def test_weighted_class_weights_match_repeated_rows() -> None:
    assert torch.allclose(
        class_weights([0, 1, 2, 3, 3], [2.0, 1.0, 1.0, 1.0, 1.0]),
        class_weights([0, 0, 1, 2, 3, 3]),
    )


def test_needs_response_scores_from_the_head_or_from_the_labels() -> None:
    four = np.log(np.array([[0.5, 0.1, 0.2, 0.2]]))
    assert needs_response_scores(four)[0] == pytest.approx(0.7)
    five = np.array([[0.0, 0.0, 0.0, 0.0, 0.0]])
    assert needs_response_scores(five)[0] == pytest.approx(0.5)


def test_dev_figures_use_the_rows_own_needs_response() -> None:
    rows = [
        {"label": "complaint", "needs_response": False},
        {"label": "complaint", "needs_response": True},
        {"label": "praise", "needs_response": False},
    ]
    logits = np.array(
        [[3.0, 0, 0, 0, -3.0], [3.0, 0, 0, 0, 3.0], [0, 3.0, 0, 0, -3.0]], dtype=np.float32
    )
    figures = dev_figures(logits, rows, 0.9)
    assert figures["macro_f1"] == 1.0
    assert figures["needs_response"]["precision"] == 1.0
    assert figures["needs_response"]["recall"] == 1.0
