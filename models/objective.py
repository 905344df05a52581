"""The training objective and the per-epoch dev figures of ``models.train`` (needs torch).

The loss is class-weighted cross-entropy on the four labels, each example also
weighted by its source and borderline weights (``models/data.py``), plus, for a
model with a needs_response output, binary cross-entropy on that output against
the posts' own needs_response. With a teacher's soft targets
(``models/soft_targets.py``) each target is a mix: ``1 - soft_weight`` of the gold
one and ``soft_weight`` of the teacher's (knowledge distillation, Hinton et al.
2015, at temperature 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from models.data import needs_response_target
from models.evaluation import LABELS, NEEDS_RESPONSE_LABELS, classification_report, pick_threshold

__all__ = ["batch_loss", "dev_figures", "needs_response_scores"]


def needs_response_scores(logits: np.ndarray) -> np.ndarray:
    """needs_response score per row: the head's sigmoid, or P(complaint) + P(question)."""
    if logits.shape[1] > len(LABELS):
        return np.asarray(1.0 / (1.0 + np.exp(-logits[:, len(LABELS)])), dtype=np.float64)
    z = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    return np.asarray(probs[:, [LABELS.index(x) for x in NEEDS_RESPONSE_LABELS]].sum(1))


def dev_figures(
    logits: np.ndarray, rows: Sequence[dict[str, Any]], min_recall: float
) -> dict[str, Any]:
    """Macro-F1 and needs_response precision at ``min_recall`` of one dev set.

    Args:
        logits: Model outputs for ``rows``.
        rows: Dev rows (``label``, maybe ``needs_response``).
        min_recall: Recall at which to read needs_response precision.

    Returns:
        ``macro_f1``, per-label ``f1`` and ``needs_response`` (threshold, precision,
        recall).
    """
    pred = [LABELS[i] for i in logits[:, : len(LABELS)].argmax(1)]
    report = classification_report([r["label"] for r in rows], pred)
    gold_nr = [needs_response_target(r) for r in rows]
    picked = pick_threshold(gold_nr, needs_response_scores(logits), min_recall)
    return {
        "macro_f1": report["macro_f1"],
        "f1": {label: report["per_class"][label]["f1"] for label in LABELS},
        "needs_response": {k: round(v, 4) for k, v in picked.items()},
    }


def batch_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor,
    nr_gold: torch.Tensor | None,
    class_w: torch.Tensor,
    norms: tuple[float, float],
    nr_factor: float,
    soft: tuple[torch.Tensor, torch.Tensor | None] | None = None,
    soft_weight: float = 0.0,
    nr_soft_weight: float | None = None,
) -> torch.Tensor:
    """Weighted cross-entropy on the labels, plus weighted BCE on the needs_response head.

    Each term is a sum over the batch divided by the batch size times the term's
    mean weight over the whole training set (``norms``), so an example's weight
    counts the same whichever batch it lands in.

    Args:
        logits: ``(batch, 4)`` or ``(batch, 5)`` outputs.
        labels: Label ids.
        weights: Per-example weights.
        nr_gold: needs_response targets (float 0/1) when the model has the head.
        class_w: Class weights.
        norms: Mean of ``weight * class weight`` and mean weight over training.
        nr_factor: Factor of the head's term.
        soft: The teacher's label probabilities ``(batch, 4)`` and needs_response
            probabilities ``(batch,)`` (``None`` without the head), or ``None``.
        soft_weight: Share of the teacher's targets in each target (0 to 1).
        nr_soft_weight: Share of the teacher's needs_response in that target, where it
            differs from ``soft_weight`` (``None``: the same). 1 trains the head on the
            teacher's judgement alone for the posts it scored: the old posts, whose
            needs_response is only derived from their sentiment-mapped label.

    Returns:
        The scalar loss.
    """
    n = len(labels)
    ce = torch.nn.functional.cross_entropy(logits[:, : len(LABELS)], labels, reduction="none")
    if soft is not None and soft_weight > 0:
        log_p = torch.log_softmax(logits[:, : len(LABELS)], dim=-1)
        soft_ce = -(soft[0] * log_p).sum(dim=-1)
        ce = (1.0 - soft_weight) * ce + soft_weight * soft_ce
    loss = (weights * class_w[labels] * ce).sum() / (n * norms[0])
    if nr_gold is not None:
        nr_target = nr_gold
        nr_share = soft_weight if nr_soft_weight is None else nr_soft_weight
        if soft is not None and soft[1] is not None and nr_share > 0:
            nr_target = (1.0 - nr_share) * nr_gold + nr_share * soft[1]
        bce = torch.nn.functional.binary_cross_entropy_with_logits(
            logits[:, len(LABELS)], nr_target, reduction="none"
        )
        loss = loss + nr_factor * (weights * bce).sum() / (n * norms[1])
    return loss
