"""Evaluate a shipped model folder on every set and store the results in its ``metrics.json``.

Sets: every dev set of the ``--data`` folders (``models/data.py``: e.g.
``intent`` and ``intent-v2/real``, ``intent-v2/synthetic``), each with
per-source figures; ``samples`` (listener/samples, hand labelled, out of
domain); and, with ``--cross-source-model``, ``cross-source`` (every post of
``--held-out-source``, default ``complaints19``, train and dev, scored by a model
of the same recipe trained without that source, its threshold chosen on the
threshold set without that source). The needs_response threshold is chosen on one dev set
(``--threshold-set``): the highest one that keeps recall >= ``--min-recall``;
it is then applied unchanged to the other sets. The score is the model's own
needs_response output when it has one, else ``P(complaint) + P(question)``.

Runs in the runtime environment (no torch, no scikit-learn)::

    python -m models.report --model-dir models/intent-minilm --data ../shared/data/intent \
        --data ../shared/data/intent-v2 --threshold-set intent-v2/real --min-recall 0.9 \
        --baselines build/baselines.json --write
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.data import Corpus, load_corpus, needs_response_target
from models.evaluation import (
    LABELS,
    NEEDS_RESPONSE_LABELS,
    classification_report,
    format_report,
    load_labelled,
    pick_threshold,
)
from models.post_kind import post_kind_of_mention, post_kind_of_row
from models.runtime import DEFAULT_MODEL_DIR, OnnxIntentClassifier

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "intent"
SAMPLES = REPO_ROOT / "listener" / "samples" / "brand_posts.jsonl"
SAMPLE_LABELS = REPO_ROOT / "listener" / "samples" / "brand_posts.labels.jsonl"
SAMPLE_BRANDS = REPO_ROOT / "listener" / "samples" / "brands.yaml"
HELD_OUT_SOURCE = "complaints19"
"""The source of the 1.x held-out run (``--held-out-source``'s default)."""
CURVE_RECALLS = (0.80, 0.85, 0.90, 0.95)
"""Recalls at which each dev set's needs_response precision is reported (the trade-off
around the operating point; the threshold itself is picked at ``--min-recall``)."""


def _rows(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def score_set(
    clf: OnnxIntentClassifier, rows: Sequence[dict[str, Any]], threshold: float | None
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Report for ``rows`` with needs_response decided at ``threshold``.

    Args:
        clf: The classifier.
        rows: Labelled rows (``text``, ``label``, maybe ``needs_response``).
        threshold: needs_response threshold (``None``: top label).

    Returns:
        The classification report, the probabilities (columns in ``LABELS`` order)
        and the needs_response scores, rows in input order. The report adds
        ``praise_as_complaint`` (share of gold praise predicted complaint).
    """
    probs, need_score = clf.predict_scores(
        [r["text"] for r in rows], [post_kind_of_row(r) for r in rows]
    )
    cols = [clf.labels.index(label) for label in LABELS]
    probs = probs[:, cols]
    pred = [LABELS[i] for i in probs.argmax(1)]
    if threshold is None:
        pred_needs = [p in NEEDS_RESPONSE_LABELS for p in pred]
    else:
        pred_needs = list(need_score >= threshold)
    gold_needs = [needs_response_target(r) for r in rows]
    report = classification_report(
        [r["label"] for r in rows], pred, gold_needs=gold_needs, pred_needs=pred_needs
    )
    report["praise_as_complaint"] = praise_as_complaint(report)
    return report, probs, need_score


def praise_as_complaint(report: dict[str, Any]) -> float | None:
    """Share of gold praise that a report's predictions call complaint (None: no praise)."""
    labels = report["confusion"]["labels"]
    row = report["confusion"]["rows_gold"][labels.index("praise")]
    total = sum(row)
    return round(row[labels.index("complaint")] / total, 4) if total else None


def batch_consistency(
    clf: OnnxIntentClassifier,
    rows: Sequence[dict[str, Any]],
    threshold: float,
    probs: np.ndarray,
    need: np.ndarray,
) -> dict[str, Any]:
    """How many posts get another label or queue decision when scored alone.

    The int8 graph quantises activations with one scale per run, so a post's
    batch-mates can move a borderline score: the pipeline (batches) and
    ``brand-listener classify`` (one post) can then disagree.

    Args:
        clf: The classifier.
        rows: The posts, as scored in batches into ``probs`` and ``need``.
        threshold: The needs_response threshold.
        probs: Batched label probabilities, columns in ``LABELS`` order.
        need: Batched needs_response scores.

    Returns:
        ``n``, ``label_differs`` and ``needs_response_differs`` (posts whose top
        label / decision at ``threshold`` changes alone) and ``max_score_change``.
    """
    if not rows:
        return {"n": 0, "label_differs": 0, "needs_response_differs": 0, "max_score_change": 0.0}
    cols = [clf.labels.index(label) for label in LABELS]
    alone_probs = np.empty_like(probs)
    alone_need = np.empty_like(need)
    for i, row in enumerate(rows):
        p, n = clf.predict_scores([row["text"]], [post_kind_of_row(row)])
        alone_probs[i] = p[0, cols]
        alone_need[i] = n[0]
    change = max(float(np.abs(alone_probs - probs).max()), float(np.abs(alone_need - need).max()))
    return {
        "n": len(rows),
        "label_differs": int((alone_probs.argmax(1) != probs.argmax(1)).sum()),
        "needs_response_differs": int(((alone_need >= threshold) != (need >= threshold)).sum()),
        "max_score_change": round(change, 4),
    }


def per_source(
    rows: Sequence[dict[str, Any]],
    probs: np.ndarray,
    need: np.ndarray,
    threshold: float | None,
    group: Callable[[dict[str, Any]], str] = lambda row: str(row["source"]),
) -> dict[str, Any]:
    """Macro-F1, accuracy and needs_response P/R per ``source`` (labels present there only).

    ``group`` names another grouping, e.g. :func:`models.post_kind.post_kind_of_row`.
    """
    out: dict[str, Any] = {}
    names = [group(r) for r in rows]
    for source in sorted(set(names)):
        idx = [i for i, name in enumerate(names) if name == source]
        gold = [rows[i]["label"] for i in idx]
        pred = [LABELS[j] for j in probs[idx].argmax(1)]
        pred_needs = (
            [p in NEEDS_RESPONSE_LABELS for p in pred]
            if threshold is None
            else list(need[idx] >= threshold)
        )
        rep = classification_report(
            gold, pred, [needs_response_target(rows[i]) for i in idx], pred_needs
        )
        out[source] = {
            "n": len(idx),
            "macro_f1": rep["macro_f1"],
            "accuracy": rep["accuracy"],
            "needs_response": rep["needs_response"],
            "praise_as_complaint": praise_as_complaint(rep),
        }
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


def evaluate_dev(
    clf: OnnxIntentClassifier, name: str, rows: Sequence[dict[str, Any]], threshold: float
) -> dict[str, Any]:
    """One dev set's report at ``threshold``, per source and, where marked, by borderline."""
    rep, probs, need = score_set(clf, rows, threshold)
    rep["per_source"] = per_source(rows, probs, need, threshold)
    rep["per_post_kind"] = per_source(rows, probs, need, threshold, post_kind_of_row)
    rep["needs_response_top_label"] = score_set(clf, rows, None)[0]["needs_response"]
    rep["batch_consistency"] = batch_consistency(clf, rows, threshold, probs, need)
    gold = [needs_response_target(r) for r in rows]
    rep["needs_response_at_recall"] = {
        f"{recall:.2f}": pick_threshold(gold, need, recall) for recall in CURVE_RECALLS
    }
    if any("borderline" in r for r in rows):
        for flag in (False, True):
            part = [r for r in rows if bool(r.get("borderline")) is flag]
            sub, _, _ = score_set(clf, part, threshold)
            key = "borderline" if flag else "not_borderline"
            rep[key] = {k: sub[k] for k in ("n", "macro_f1", "accuracy", "needs_response")}
    print(format_report(rep, f"== {name}, needs_response at {threshold}"))
    print(f"praise predicted complaint: {rep['praise_as_complaint']}")
    curve = rep["needs_response_at_recall"]
    print(
        f"needs_response precision at recall {' / '.join(curve)}: "
        + " / ".join(f"{point['precision']:.4f}" for point in curve.values())
    )
    alone = rep["batch_consistency"]
    print(
        f"scored alone instead of in batches: label differs for {alone['label_differs']}, "
        f"needs_response for {alone['needs_response_differs']} of {alone['n']} posts "
        f"(largest score change {alone['max_score_change']})"
    )
    print_per_kind(rep)
    return rep


def print_per_kind(rep: dict[str, Any]) -> None:
    """One line per post kind of a report's ``per_post_kind``."""
    for kind, part in rep["per_post_kind"].items():
        nr = part["needs_response"]
        print(
            f"  post kind {kind:<8} n {part['n']:>5}  macro-F1 {part['macro_f1']:.4f}  "
            f"needs_response P {nr['precision']:.4f} R {nr['recall']:.4f}"
        )


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Evaluate and return the threshold and the ``evaluation`` block (also printed)."""
    clf = OnnxIntentClassifier(args.model_dir, provider="cpu", needs_response_threshold=None)
    corpus = load_corpus(args.data or [DEFAULT_DATA])
    threshold_set = args.threshold_set or next(iter(corpus.dev))
    pick_rows = corpus.dev[threshold_set]
    _, _, need = score_set(clf, pick_rows, None)
    picked = pick_threshold([needs_response_target(r) for r in pick_rows], need, args.min_recall)
    threshold = picked["threshold"] if args.threshold is None else args.threshold
    rule = (
        "sigmoid(needs_response output) >= threshold"
        if clf.has_needs_response_output
        else "P(complaint) + P(question) >= threshold"
    )
    pick_probs = score_set(clf, pick_rows, None)[1]
    from_labels = pick_threshold(
        [needs_response_target(r) for r in pick_rows],
        pick_probs[:, [LABELS.index(x) for x in NEEDS_RESPONSE_LABELS]].sum(1),
        args.min_recall,
    )
    result: dict[str, Any] = {
        "needs_response_rule": rule,
        "threshold_selection": {"set": threshold_set, "min_recall": args.min_recall, **picked},
        # the alternative: P(complaint) + P(question) of the same model, same set and recall
        "threshold_from_label_scores": from_labels,
        "dev_sets": {
            name: evaluate_dev(clf, name, rows, threshold) for name, rows in corpus.dev.items()
        },
    }
    samples = with_serving_kinds(load_labelled(SAMPLES, SAMPLE_LABELS))
    samples_rep, probs, need = score_set(clf, samples, threshold)
    samples_rep["needs_response_top_label"] = score_set(clf, samples, None)[0]["needs_response"]
    samples_rep["per_post_kind"] = per_source(samples, probs, need, threshold, post_kind_of_row)
    result["samples"] = samples_rep
    print(format_report(samples_rep, f"== samples (out of domain), needs_response at {threshold}"))
    print_per_kind(samples_rep)
    if args.cross_source_model is not None:
        result["cross_source"] = cross_source(args, corpus, threshold_set)
    if args.baselines is not None:
        result["baselines"] = json.loads(args.baselines.read_text(encoding="utf-8"))
    return {"threshold": threshold, "evaluation": result}


def with_serving_kinds(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The sample rows, each with the ``post_kind`` the pipeline would give it.

    The whole sample stream goes through the brand matcher of ``brands.yaml`` in
    file order, as the demo's replay does, so a reply to a brand's own post (seen
    earlier in the file) is ``reply_to_brand`` exactly as in serving.
    """
    from listener.replay import load_brands, parse_line

    matcher = load_brands(SAMPLE_BRANDS)
    kinds: dict[str, str] = {}
    with SAMPLES.open("rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            if raw.strip():
                mention = matcher.annotate(parse_line(raw, line_no))
                kinds[mention.id] = post_kind_of_mention(
                    mention.source,
                    mention.reply_to_id,
                    replies_to_brand=bool(mention.signals.get("reply_to_own_account")),
                )
    return [dict(row, post_kind=kinds[f"{row['source']}:{row['id']}"]) for row in rows]


def cross_source(args: argparse.Namespace, corpus: Corpus, threshold_set: str) -> dict[str, Any]:
    """A held-out run's figures on every post of the source(s) it was trained without.

    Args:
        args: ``cross_source_model`` (the held-out run's model folder),
            ``held_out_source`` (one source, or several joined by commas: a
            platform of several sets) and ``min_recall``.
        corpus: The data; the source's posts are taken from train and every dev set.
        threshold_set: The dev set the threshold is chosen on, without the source.

    Raises:
        SystemExit: No post of the source is in the data.
    """
    source = args.held_out_source
    names = set(source.split(","))
    xs = OnnxIntentClassifier(
        args.cross_source_model, provider="cpu", needs_response_threshold=None
    )
    held = corpus.rows_of(names)
    if not held:
        raise SystemExit(f"--held-out-source {source!r}: no post of that source in the data")
    dev_in = [r for r in corpus.dev[threshold_set] if r["source"] not in names]
    _, _, in_need = score_set(xs, dev_in, None)
    xs_pick = pick_threshold([needs_response_target(r) for r in dev_in], in_need, args.min_recall)
    xs_rep, _, _ = score_set(xs, held, xs_pick["threshold"])
    held_dev = [r for r in corpus.dev_rows() if r["source"] in names]
    xs_dev_rep, _, _ = score_set(xs, held_dev, xs_pick["threshold"])
    xs_in_rep, _, _ = score_set(xs, dev_in, xs_pick["threshold"])
    print(format_report(xs_rep, f"== cross-source: {source} (train+dev), held-out run"))
    print(format_report(xs_dev_rep, f"== cross-source: {source} (dev part), held-out run"))
    return {
        "held_out_source": source,
        "model": str(args.cross_source_model),
        "threshold_selection": {"set": f"{threshold_set} without {source}", **xs_pick},
        "all": xs_rep,
        "dev_part_only": xs_dev_rep,
        "in_source_dev": xs_in_rep,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Evaluate; with ``--write`` store the threshold and figures in ``metrics.json``."""
    p = argparse.ArgumentParser(prog="python -m models.report", description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    p.add_argument(
        "--data",
        type=Path,
        action="append",
        default=None,
        help=f"data folder, repeatable (models/data.py; default {DEFAULT_DATA})",
    )
    p.add_argument(
        "--threshold-set",
        default=None,
        help="dev set the needs_response threshold is chosen on (default: the first)",
    )
    p.add_argument(
        "--cross-source-model",
        type=Path,
        default=None,
        help="model folder of a run trained without --held-out-source: scored on all its posts",
    )
    p.add_argument(
        "--held-out-source",
        default=HELD_OUT_SOURCE,
        help=f"the source that run left out, or several joined by commas "
        f"(default {HELD_OUT_SOURCE})",
    )
    p.add_argument("--baselines", type=Path, default=None, help="JSON of models.baselines")
    p.add_argument("--min-recall", type=float, default=0.95)
    p.add_argument("--threshold", type=float, default=None, help="override the chosen threshold")
    p.add_argument("--write", action="store_true", help="update <model-dir>/metrics.json")
    p.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = p.parse_args(argv)
    out = run(args)
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
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
