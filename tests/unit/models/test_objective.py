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


def _complaint_read_as_praise() -> tuple[torch.Tensor, ...]:
    """One complaint needing an answer: logits (4 labels + needs_response), label id, class
    weights, gold needs_response, and a teacher reading it as praise needing none."""
    logits = torch.tensor([[2.0, 0.0, -1.0, 0.5, 1.0]])
    teacher, teacher_nr = torch.tensor([[0.2, 0.6, 0.1, 0.1]]), torch.tensor([0.3])
    return logits, torch.tensor([0]), torch.ones(4), torch.tensor([1.0]), teacher, teacher_nr


def test_soft_targets_mix_into_the_label_and_head_targets() -> None:
    logits, labels, cw, gold_nr, teacher, teacher_nr = _complaint_read_as_praise()
    got = batch_loss(
        logits, labels, torch.ones(1), gold_nr, cw, (1.0, 1.0), 1.0, (teacher, teacher_nr), 0.25
    )
    log_p = torch.log_softmax(logits[:, :4], dim=-1)
    target = 0.75 * torch.tensor([[1.0, 0.0, 0.0, 0.0]]) + 0.25 * teacher
    label_term = -(target * log_p).sum()
    head_term = torch.nn.functional.binary_cross_entropy_with_logits(
        logits[:, 4], 0.75 * gold_nr + 0.25 * teacher_nr
    )
    assert float(got) == pytest.approx(float(label_term + head_term), rel=1e-6)


def test_the_head_can_take_its_own_share_of_the_teacher() -> None:
    logits, labels, cw, gold_nr, teacher, teacher_nr = _complaint_read_as_praise()
    soft = (teacher, teacher_nr)
    args = (logits, labels, torch.ones(1), gold_nr, cw, (1.0, 1.0), 1.0, soft, 0.25)
    label_only = batch_loss(logits, labels, torch.ones(1), None, cw, (1.0, 1.0), 1.0, soft, 0.25)
    teacher_alone = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 4], teacher_nr)
    got = batch_loss(*args, nr_soft_weight=1.0)
    assert float(got - label_only) == pytest.approx(float(teacher_alone), rel=1e-6)
    # None keeps the label's share; 0 keeps the gold needs_response
    assert float(batch_loss(*args, nr_soft_weight=None)) == pytest.approx(float(batch_loss(*args)))
    gold_alone = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 4], gold_nr)
    got = batch_loss(*args, nr_soft_weight=0.0)
    assert float(got - label_only) == pytest.approx(float(gold_alone), rel=1e-6)


def test_a_teacher_that_agrees_with_gold_changes_nothing() -> None:
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(4, 4, generator=g)
    labels = torch.tensor([0, 1, 2, 3])
    cw = torch.tensor([0.5, 1.2, 1.4, 0.9])
    one_hot = torch.nn.functional.one_hot(labels, 4).float()
    plain = batch_loss(logits, labels, torch.ones(4), None, cw, (1.0, 1.0), 1.0)
    taught = batch_loss(
        logits, labels, torch.ones(4), None, cw, (1.0, 1.0), 1.0, (one_hot, None), 0.7
    )
    assert float(taught) == pytest.approx(float(plain), rel=1e-6)
    disagreeing = batch_loss(
        logits, labels, torch.ones(4), None, cw, (1.0, 1.0), 1.0, (one_hot.flip(0), None), 0.7
    )
    assert float(disagreeing) != pytest.approx(float(plain), rel=1e-3)
