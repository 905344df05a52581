"""Evaluation of intent predictions: labelled-file loading, metrics, the needs_response rule.

Pure numpy (no scikit-learn), so ``brand-listener eval`` runs in the runtime
environment. The metrics follow scikit-learn's definitions (a class never
predicted has precision 0).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

LABELS: tuple[str, ...] = ("complaint", "praise", "question", "other")
NEEDS_RESPONSE_LABELS: tuple[str, ...] = ("complaint", "question")

__all__ = [
    "LABELS",
    "NEEDS_RESPONSE_LABELS",
    "binary_report",
    "classification_report",
    "format_report",
    "load_labelled",
    "needs_response",
    "needs_response_score",
    "pick_threshold",
    "thresholds_by_source",
]

MIN_POSITIVES_FOR_A_THRESHOLD = 15
"""Posts needing an answer a source must have before a threshold is picked on it."""


def needs_response_score(scores: Mapping[str, float]) -> float:
    """Probability mass on the labels that need a human answer (complaint + question).

    Args:
        scores: Probability per label.

    Returns:
        ``P(complaint) + P(question)``.
    """
    return float(sum(scores.get(label, 0.0) for label in NEEDS_RESPONSE_LABELS))


def needs_response(scores: Mapping[str, float], threshold: float | None) -> bool:
    """The needs_response decision for one post.

    Args:
        scores: Probability per label.
        threshold: Minimum ``P(complaint) + P(question)``; ``None`` means "the top
            label is complaint or question" (the rule of model 1.0.0).

    Returns:
        Whether the post goes to the human queue.
    """
    if threshold is None:
        return max(scores, key=scores.__getitem__) in NEEDS_RESPONSE_LABELS
    return needs_response_score(scores) >= threshold


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def load_labelled(path: Path, labels_path: Path | None = None) -> list[dict[str, Any]]:
    """Rows with ``text`` and ``label`` (and maybe ``needs_response``).

    Args:
        path: JSONL with ``text`` and, unless ``labels_path`` is given, ``label``.
        labels_path: Optional JSONL of ``{"id", "label", "needs_response"}`` joined on
            ``id`` or on ``"<source>:<id>"`` (the layout of listener/samples); posts
            without a label there are left out.

    Returns:
        The labelled rows in file order.

    Raises:
        ValueError: A row lacks ``text`` or ``label``, or has an unknown label.
    """
    rows = _read_jsonl(path)
    if labels_path is not None:
        by_id = {str(r["id"]): r for r in _read_jsonl(labels_path)}
        joined = []
        for row in rows:
            key = f"{row.get('source')}:{row.get('id')}"
            hit = by_id.get(str(row.get("id"))) or by_id.get(key)
            if hit is not None:
                extra = {k: v for k, v in hit.items() if k in ("label", "needs_response")}
                joined.append({**row, **extra})
        rows = joined
    for i, row in enumerate(rows):
        if not isinstance(row.get("text"), str) or row.get("label") not in LABELS:
            raise ValueError(f"{path} row {i}: needs a 'text' and a 'label' in {LABELS}")
    return rows


def binary_report(
    gold: Sequence[bool] | np.ndarray, pred: Sequence[bool] | np.ndarray
) -> dict[str, float | int]:
    """Precision and recall of a yes/no decision.

    Args:
        gold: True answers.
        pred: Decisions.

    Returns:
        ``precision``, ``recall``, ``f1`` and ``support`` (gold positives).
    """
    g = np.asarray(gold, dtype=bool)
    p = np.asarray(pred, dtype=bool)
    tp = int((g & p).sum())
    precision = tp / int(p.sum()) if p.any() else 0.0
    recall = tp / int(g.sum()) if g.any() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "support": int(g.sum()),
    }


def classification_report(
    gold: Sequence[str],
    pred: Sequence[str],
    gold_needs: Sequence[bool] | None = None,
    pred_needs: Sequence[bool] | None = None,
    labels: Sequence[str] = LABELS,
) -> dict[str, Any]:
    """Per-class precision/recall/F1, macro-F1, accuracy, confusion and needs_response.

    Macro-F1 averages the labels present in ``gold`` (a source without
    ``question`` posts is not scored on it).

    Args:
        gold: True labels.
        pred: Predicted labels.
        gold_needs: True needs_response; defaults to "gold label is complaint or question".
        pred_needs: Decided needs_response; defaults to "predicted label is complaint or
            question".
        labels: Label order for the report.

    Returns:
        A JSON-ready dict.
    """
    g = np.asarray(gold)
    p = np.asarray(pred)
    per_class: dict[str, dict[str, float | int]] = {}
    for label in labels:
        per_class[label] = binary_report(g == label, p == label)
    present = [label for label in labels if per_class[label]["support"]]
    macro = float(np.mean([per_class[label]["f1"] for label in present])) if present else 0.0
    if gold_needs is None:
        gold_needs = [label in NEEDS_RESPONSE_LABELS for label in gold]
    if pred_needs is None:
        pred_needs = [label in NEEDS_RESPONSE_LABELS for label in pred]
    confusion = [[int(((g == a) & (p == b)).sum()) for b in labels] for a in labels]
    return {
        "n": len(g),
        "macro_f1": round(macro, 4),
        "accuracy": round(float((g == p).mean()) if len(g) else 0.0, 4),
        "per_class": per_class,
        "needs_response": binary_report(gold_needs, pred_needs),
        "confusion": {"labels": list(labels), "rows_gold": confusion},
    }


def pick_threshold(
    gold: Sequence[bool] | np.ndarray,
    score: Sequence[float] | np.ndarray,
    min_recall: float = 0.95,
) -> dict[str, float]:
    """The highest score threshold whose recall is at least ``min_recall``.

    Args:
        gold: True needs_response per post.
        score: needs_response score per post (``P(complaint) + P(question)``, or a
            needs_response output's probability).
        min_recall: Recall to keep.

    Returns:
        ``threshold``, ``precision`` and ``recall`` at that threshold.
    """
    g = np.asarray(gold, dtype=bool)
    s = np.asarray(score, dtype=np.float64)
    positives = np.sort(s[g])[::-1]
    need = int(np.ceil(min_recall * len(positives)))
    threshold = float(positives[max(0, need - 1)]) if len(positives) else 0.5
    threshold = float(np.floor(threshold * 1e4) / 1e4)  # stored rounded down: recall holds
    decided = s >= threshold
    report = binary_report(g, decided)
    return {
        "threshold": threshold,
        "precision": float(report["precision"]),
        "recall": float(report["recall"]),
    }


def thresholds_by_source(
    sources: Sequence[str],
    gold: Sequence[bool],
    score: Sequence[float] | np.ndarray,
    model_threshold: float | None,
    min_recall: float = 0.9,
    min_positives: int = MIN_POSITIVES_FOR_A_THRESHOLD,
) -> dict[str, dict[str, Any]]:
    """Per source: how the model's threshold does there, and the one that source would want.

    For a source the model scores unlike its training data (a platform it was not
    trained on), the model's calibrated threshold can queue far more, or far
    fewer, posts than wanted; a threshold picked on a labelled sample of that
    source's own posts fixes the trade-off there (``--min-recall``, as the model's
    own was picked). The sample must be a random one of the source's posts (not,
    e.g., label corrections, which are mostly posts the model queued).

    Args:
        sources: Each post's source.
        gold: Whether each post needs an answer.
        score: Each post's needs_response score.
        model_threshold: The model's calibrated threshold (None: not reported).
        min_recall: Recall the picked threshold must keep on the source.
        min_positives: Fewer posts needing an answer than this: no threshold is picked.

    Returns:
        Source -> ``posts``, ``need_answer``, ``at_model_threshold`` (a
        :func:`binary_report`, when ``model_threshold`` is given) and ``picked``
        (:func:`pick_threshold`'s answer, or None with too few positives).
    """
    src = np.asarray(sources)
    g = np.asarray(gold, dtype=bool)
    s = np.asarray(score, dtype=np.float64)
    out: dict[str, dict[str, Any]] = {}
    for source in sorted(set(src.tolist())):
        mask = src == source
        row: dict[str, Any] = {"posts": int(mask.sum()), "need_answer": int(g[mask].sum())}
        if model_threshold is not None:
            row["at_model_threshold"] = binary_report(g[mask], s[mask] >= model_threshold)
        enough = row["need_answer"] >= min_positives
        row["picked"] = pick_threshold(g[mask], s[mask], min_recall) if enough else None
        out[source] = row
    return out


def format_report(report: Mapping[str, Any], title: str = "") -> str:
    """Human-readable table of a :func:`classification_report`.

    Args:
        report: The report.
        title: First line.

    Returns:
        Multi-line text.
    """
    lines: list[str] = [title] if title else []
    lines.append(f"{'label':<10} {'precision':>9} {'recall':>7} {'f1':>7} {'support':>8}")
    for label, row in report["per_class"].items():
        lines.append(
            f"{label:<10} {row['precision']:>9.3f} {row['recall']:>7.3f} {row['f1']:>7.3f} "
            f"{row['support']:>8d}"
        )
    nr = report["needs_response"]
    lines.append(
        f"macro-F1 {report['macro_f1']:.4f}  accuracy {report['accuracy']:.4f}  n {report['n']}"
    )
    lines.append(
        f"needs_response precision {nr['precision']:.4f} recall {nr['recall']:.4f} "
        f"(support {nr['support']})"
    )
    return "\n".join(lines)
