"""Evaluate a shipped model folder on every set and store the results in its ``metrics.json``.

Sets: ``dev`` (with per-source figures), ``samples`` (listener/samples, hand
labelled, out of domain) and ``cross-source`` (every ``complaints19`` post,
scored by a model of the same recipe trained without that source, given with
``--cross-source-model``). The needs_response threshold on
``P(complaint) + P(question)`` is chosen on dev: the highest one that keeps
recall >= ``--min-recall``; it is then applied unchanged to the other sets.

Runs in the runtime environment (no torch, no scikit-learn)::

    python -m models.report --model-dir models/intent-minilm \
        --cross-source-model build/student-l3-xs/export --baselines build/baselines.json --write
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.evaluation import (
    LABELS,
    NEEDS_RESPONSE_LABELS,
    classification_report,
    format_report,
    load_labelled,
    pick_threshold,
)
from models.runtime import DEFAULT_MODEL_DIR, OnnxIntentClassifier

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "intent"
SAMPLES = REPO_ROOT / "listener" / "samples" / "brand_posts.jsonl"
SAMPLE_LABELS = REPO_ROOT / "listener" / "samples" / "brand_posts.labels.jsonl"
HELD_OUT_SOURCE = "complaints19"


def _rows(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def score_set(
    clf: OnnxIntentClassifier, rows: Sequence[dict[str, Any]], threshold: float | None
) -> tuple[dict[str, Any], np.ndarray]:
    """Report for ``rows`` with needs_response decided at ``threshold``.

    Args:
        clf: The classifier.
        rows: Labelled rows (``text``, ``label``, maybe ``needs_response``).
        threshold: needs_response threshold (``None``: top label).

    Returns:
        The classification report and the probabilities (rows in input order).
    """
    probs = clf.predict_proba([r["text"] for r in rows])
    cols = [clf.labels.index(label) for label in LABELS]
    probs = probs[:, cols]
    pred = [LABELS[i] for i in probs.argmax(1)]
    need_score = probs[:, [LABELS.index(x) for x in NEEDS_RESPONSE_LABELS]].sum(1)
    if threshold is None:
        pred_needs = [p in NEEDS_RESPONSE_LABELS for p in pred]
    else:
        pred_needs = list(need_score >= threshold)
    gold_needs = None
    if all(isinstance(r.get("needs_response"), bool) for r in rows):
        gold_needs = [bool(r["needs_response"]) for r in rows]
    report = classification_report(
        [r["label"] for r in rows], pred, gold_needs=gold_needs, pred_needs=pred_needs
    )
    return report, probs


def per_source(rows: Sequence[dict[str, Any]], probs: np.ndarray) -> dict[str, Any]:
    """Macro-F1 and accuracy per ``source`` (labels present in that source only)."""
    out: dict[str, Any] = {}
    for source in sorted({str(r["source"]) for r in rows}):
        idx = [i for i, r in enumerate(rows) if r["source"] == source]
        gold = [rows[i]["label"] for i in idx]
        pred = [LABELS[j] for j in probs[idx].argmax(1)]
        rep = classification_report(gold, pred)
        out[source] = {"n": len(idx), "macro_f1": rep["macro_f1"], "accuracy": rep["accuracy"]}
    return out


def carry_over_evaluation(metrics: dict[str, Any], previous_path: Path) -> None:
    """Keep ``thresholds`` and ``evaluation`` of ``previous_path`` if it is the same artefact.

    ``models.report --write`` adds them to metrics.json after an export; a re-export
    that reproduces the artefact (same sha256) must not drop them, and one that
    does not must not keep figures of another model.
    """
    if not previous_path.is_file():
        return
    previous = json.loads(previous_path.read_text(encoding="utf-8"))
    if previous.get("artefact", {}).get("sha256") != metrics["artefact"]["sha256"]:
        return
    for key in ("thresholds", "evaluation"):
        if key in previous:
            metrics[key] = previous[key]


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Evaluate and return the ``evaluation`` block (also printed)."""
    clf = OnnxIntentClassifier(args.model_dir, provider="cpu", needs_response_threshold=None)
    dev = _rows(args.data / "dev.jsonl")
    dev_top, dev_probs = score_set(clf, dev, None)
    need = dev_probs[:, [LABELS.index(x) for x in NEEDS_RESPONSE_LABELS]].sum(1)
    gold_need = [r["label"] in NEEDS_RESPONSE_LABELS for r in dev]
    picked = pick_threshold(gold_need, need, args.min_recall)
    threshold = picked["threshold"] if args.threshold is None else args.threshold
    dev_rep, _ = score_set(clf, dev, threshold)
    dev_rep["per_source"] = per_source(dev, dev_probs)
    dev_rep["needs_response_top_label"] = dev_top["needs_response"]
    samples = load_labelled(SAMPLES, SAMPLE_LABELS)
    samples_rep, _ = score_set(clf, samples, threshold)
    samples_top, _ = score_set(clf, samples, None)
    samples_rep["needs_response_top_label"] = samples_top["needs_response"]
    result: dict[str, Any] = {
        "needs_response_rule": "P(complaint) + P(question) >= threshold",
        "threshold_selection": {"set": "dev", "min_recall": args.min_recall, **picked},
        "dev": dev_rep,
        "samples": samples_rep,
    }
    print(format_report(dev_rep, f"== dev, needs_response at {threshold}"))
    print(format_report(samples_rep, f"== samples (out of domain), needs_response at {threshold}"))
    if args.cross_source_model is not None:
        xs = OnnxIntentClassifier(
            args.cross_source_model, provider="cpu", needs_response_threshold=None
        )
        train = _rows(args.data / "train.jsonl")
        held = [r for r in train + dev if r["source"] == HELD_OUT_SOURCE]
        dev_in = [r for r in dev if r["source"] != HELD_OUT_SOURCE]
        _, in_probs = score_set(xs, dev_in, None)
        in_need = in_probs[:, [LABELS.index(x) for x in NEEDS_RESPONSE_LABELS]].sum(1)
        xs_pick = pick_threshold(
            [r["label"] in NEEDS_RESPONSE_LABELS for r in dev_in], in_need, args.min_recall
        )
        xs_rep, _ = score_set(xs, held, xs_pick["threshold"])
        held_dev = [r for r in dev if r["source"] == HELD_OUT_SOURCE]
        xs_dev_rep, _ = score_set(xs, held_dev, xs_pick["threshold"])
        xs_in_rep, _ = score_set(xs, dev_in, xs_pick["threshold"])
        result["cross_source"] = {
            "held_out_source": HELD_OUT_SOURCE,
            "model": str(args.cross_source_model),
            "threshold_selection": {"set": "dev without complaints19", **xs_pick},
            "all": xs_rep,
            "dev_part_only": xs_dev_rep,
            "in_source_dev": xs_in_rep,
        }
        print(
            format_report(xs_rep, f"== cross-source: {HELD_OUT_SOURCE} (train+dev), held-out run")
        )
        print(format_report(xs_dev_rep, f"== cross-source: {HELD_OUT_SOURCE} dev part only"))
        print(format_report(xs_in_rep, "== held-out run on dev without complaints19"))
    if args.baselines is not None:
        result["baselines"] = json.loads(args.baselines.read_text(encoding="utf-8"))
    return {"threshold": threshold, "evaluation": result}


def main(argv: Sequence[str] | None = None) -> int:
    """Evaluate; with ``--write`` store the threshold and figures in ``metrics.json``."""
    p = argparse.ArgumentParser(prog="python -m models.report", description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--cross-source-model", type=Path, default=None)
    p.add_argument("--baselines", type=Path, default=None, help="JSON of models.baselines")
    p.add_argument("--min-recall", type=float, default=0.95)
    p.add_argument("--threshold", type=float, default=None, help="override the chosen threshold")
    p.add_argument("--write", action="store_true", help="update <model-dir>/metrics.json")
    args = p.parse_args(argv)
    out = run(args)
    if args.write:
        path = args.model_dir / "metrics.json"
        metrics = json.loads(path.read_text(encoding="utf-8"))
        # keeps other decision parameters (a deployment's thresholds.label_offsets)
        metrics.setdefault("thresholds", {})["needs_response"] = out["threshold"]
        # blocks not recomputed in this run (no --cross-source-model / --baselines) are kept
        metrics["evaluation"] = {**metrics.get("evaluation", {}), **out["evaluation"]}
        path.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        print(f"wrote thresholds and evaluation to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
