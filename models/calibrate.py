"""Per-label score offsets: fitted on a deployment's own labelled posts, kept in a model folder.

With ``thresholds.label_offsets`` in a model folder's ``metrics.json``,
:class:`~models.runtime.OnnxIntentClassifier` picks the label as
``argmax(log P(label) + offset[label])`` instead of ``argmax P(label)``. Only
the label moves: the scores and the needs_response decision (on
``P(complaint) + P(question)``) stay as they were.

Offsets help on the kind of posts they are fitted on and hurt on others (the
model card's *Per-label offsets* has the figures), so the shipped models carry
none. Fit them on a few hundred labelled posts from the deployment, with every
label present, never on the set you then report on; ``--write`` into a copy
of the model folder::

    python -m models.calibrate --input posts.jsonl [--labels labels.jsonl] \
        --model-dir build/my-model [--write]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.offsets import apply_offsets
from models.post_kind import post_kind_of_row

__all__ = ["GRID", "apply_offsets", "cross_validate", "fit_label_offsets", "macro_f1"]

GRID: np.ndarray = np.round(np.arange(-3.0, 3.0001, 0.1), 2)
"""Offsets tried for each label (log-probability units)."""


def macro_f1(gold: np.ndarray, pred: np.ndarray, n_labels: int) -> float:
    """Macro-F1 over the labels present in ``gold`` (as ``models.evaluation`` counts it)."""
    scores = []
    for k in range(n_labels):
        support = int((gold == k).sum())
        if not support:
            continue
        tp = int(((gold == k) & (pred == k)).sum())
        predicted = int((pred == k).sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / support
        scores.append(2 * precision * recall / (precision + recall) if tp else 0.0)
    return float(np.mean(scores)) if scores else 0.0


def fit_label_offsets(
    probs: np.ndarray, gold: np.ndarray, reference: int, rounds: int = 4
) -> np.ndarray:
    """Offsets that maximise macro-F1 on ``(probs, gold)``, by coordinate ascent on :data:`GRID`.

    Args:
        probs: Probabilities, shape ``(n, labels)``.
        gold: True label index per row.
        reference: Label index whose offset stays 0 (offsets are relative).
        rounds: Passes over the labels.

    Returns:
        One offset per label; all zeros when nothing beats plain argmax.
    """
    n_labels = probs.shape[1]
    best = np.zeros(n_labels)
    best_f1 = macro_f1(gold, apply_offsets(probs, best), n_labels)
    for _ in range(rounds):
        improved = False
        for k in range(n_labels):
            if k == reference:
                continue
            for value in GRID:
                trial = best.copy()
                trial[k] = value
                f1 = macro_f1(gold, apply_offsets(probs, trial), n_labels)
                if f1 > best_f1 + 1e-9:
                    best, best_f1, improved = trial, f1, True
        if not improved:
            break
    return best


def cross_validate(
    probs: np.ndarray, gold: np.ndarray, reference: int, folds: int = 5, seed: int = 0
) -> dict[str, float]:
    """Macro-F1 without and with offsets fitted on the other folds (stratified by label).

    Returns:
        ``without``, ``with`` and ``folds``.
    """
    rng = np.random.default_rng(seed)
    fold = np.empty(len(gold), dtype=int)
    for k in np.unique(gold):
        idx = np.flatnonzero(gold == k)
        rng.shuffle(idx)
        fold[idx] = np.arange(len(idx)) % folds
    pred = np.empty(len(gold), dtype=int)
    for f in range(folds):
        fit, held = fold != f, fold == f
        offsets = fit_label_offsets(probs[fit], gold[fit], reference)
        pred[held] = apply_offsets(probs[held], offsets)
    n_labels = probs.shape[1]
    return {
        "without": round(macro_f1(gold, probs.argmax(axis=1), n_labels), 4),
        "with": round(macro_f1(gold, pred, n_labels), 4),
        "folds": folds,
    }


def _store(model_dir: Path, offsets: Mapping[str, float], report: Mapping[str, Any]) -> Path:
    path = model_dir / "metrics.json"
    metrics = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    metrics.setdefault("thresholds", {})["label_offsets"] = dict(offsets)
    metrics["label_offsets_fit"] = dict(report)
    path.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Fit offsets on a labelled file, print cross-validated macro-F1; ``--write`` stores them."""
    from models.evaluation import load_labelled
    from models.runtime import OnnxIntentClassifier

    p = argparse.ArgumentParser(prog="python -m models.calibrate", description=__doc__)
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--input", type=Path, required=True, help='JSONL with "text" (and "label")')
    p.add_argument("--labels", type=Path, default=None, help='labels JSONL joined on "id"')
    p.add_argument("--model-dir", type=Path, default=None, help="model folder (default: shipped)")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--write", action="store_true", help="store in <model-dir>/metrics.json")
    args = p.parse_args(argv)
    if args.write and args.model_dir is None:
        p.error("--write needs --model-dir (a copy of the model folder, not the shipped one)")
    rows = load_labelled(args.input, args.labels)
    clf = OnnxIntentClassifier(args.model_dir, provider="cpu", label_offsets={})
    labels = list(clf.labels)
    probs = clf.predict_proba([row["text"] for row in rows], [post_kind_of_row(r) for r in rows])
    gold = np.array([labels.index(row["label"]) for row in rows])
    reference = labels.index("other") if "other" in labels else len(labels) - 1
    cv = cross_validate(probs, gold, reference, folds=args.folds)
    fitted = fit_label_offsets(probs, gold, reference)
    offsets = {label: float(v) for label, v in zip(labels, fitted, strict=True)}
    report = {"input": str(args.input), "n": len(rows), "cv_macro_f1": cv, "model": clf.name}
    print(json.dumps({"label_offsets": offsets, **report}, indent=2))
    if args.write:
        print(f"wrote thresholds.label_offsets to {_store(args.model_dir, offsets, report)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
