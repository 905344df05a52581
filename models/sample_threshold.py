r"""How a needs_response threshold picked on a labelled sample of a source does on its other posts.

For a source the model scores unlike its training data (a platform it was not
trained on), ``brand-listener eval --by-source`` picks that source's own
threshold from a labelled sample of its posts. This measures what that buys:
every post of ``--source`` in the ``--data`` folders (train and dev) is scored
once; then, for each of ``--draws`` seeded shuffles, the first ``--sample``
posts pick the threshold (recall >= ``--min-recall`` on them, as
:func:`~models.evaluation.pick_threshold`) and the other posts are scored at it,
and at the model's threshold picked on ``--threshold-set`` without the source.
Draws whose sample holds fewer than
:data:`~models.evaluation.MIN_POSITIVES_FOR_A_THRESHOLD` posts needing an
answer are skipped, as ``--by-source`` skips such sources. Runs in the runtime
environment::

    python -m models.sample_threshold --model-dir build/model-ho-student \
        --data ../shared/data/intent --data ../shared/data/intent-v2 \
        --threshold-set intent-v2/real --source reddit_shipping --sample 71
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.data import load_corpus, needs_response_target
from models.evaluation import MIN_POSITIVES_FOR_A_THRESHOLD, binary_report, pick_threshold
from models.post_kind import post_kind_of_row
from models.runtime import OnnxIntentClassifier


def _spread(reports: Sequence[dict[str, Any]], key: str) -> dict[str, float]:
    values = [float(r[key]) for r in reports]
    return {
        "mean": round(float(np.mean(values)), 4),
        "p10": round(float(np.percentile(values, 10)), 4),
        "p90": round(float(np.percentile(values, 90)), 4),
    }


def study(
    gold: np.ndarray,
    score: np.ndarray,
    model_threshold: float,
    sample: int,
    draws: int,
    min_recall: float,
    seed: int,
) -> dict[str, Any]:
    """The draws over one source's posts (``gold``, ``score``), summarised.

    Returns:
        ``draws`` used, ``skipped`` (too few positives in the sample), and the
        precision and recall (mean, p10, p90) on the held-back posts at the
        model's threshold and at each sample's own.
    """
    rng = random.Random(seed)
    at_model: list[dict[str, Any]] = []
    at_sample: list[dict[str, Any]] = []
    skipped = 0
    for _ in range(draws):
        order = list(range(len(gold)))
        rng.shuffle(order)
        fit, rest = np.array(order[:sample]), np.array(order[sample:])
        if int(gold[fit].sum()) < MIN_POSITIVES_FOR_A_THRESHOLD:
            skipped += 1
            continue
        own = pick_threshold(gold[fit], score[fit], min_recall)["threshold"]
        at_model.append(binary_report(gold[rest], score[rest] >= model_threshold))
        at_sample.append(binary_report(gold[rest], score[rest] >= own))
    if not at_sample:
        raise SystemExit("no draw had enough posts needing an answer: give a larger --sample")
    return {
        "draws": len(at_sample),
        "skipped": skipped,
        "model_threshold": model_threshold,
        "at_model_threshold": {k: _spread(at_model, k) for k in ("precision", "recall")},
        "at_sample_threshold": {k: _spread(at_sample, k) for k in ("precision", "recall")},
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the study and print it as JSON."""
    p = argparse.ArgumentParser(
        prog="python -m models.sample_threshold", description=__doc__.splitlines()[0]
    )
    p.add_argument("--model-dir", type=Path, required=True)
    p.add_argument("--data", type=Path, action="append", required=True, help="repeatable")
    p.add_argument("--threshold-set", required=True, help="dev set of the model's threshold")
    p.add_argument(
        "--source", required=True, help="the source to study, or several joined by commas"
    )
    p.add_argument("--sample", type=int, default=71, help="labelled posts picking a threshold")
    p.add_argument("--draws", type=int, default=200)
    p.add_argument("--min-recall", type=float, default=0.9)
    p.add_argument("--seed", type=int, default=20261206)
    args = p.parse_args(argv)
    corpus = load_corpus(args.data)
    names = set(args.source.split(","))
    rows = corpus.rows_of(names)
    if len(rows) <= args.sample:
        raise SystemExit(f"{args.source!r}: {len(rows)} posts, not more than --sample")
    others = [r for r in corpus.dev[args.threshold_set] if r["source"] not in names]
    clf = OnnxIntentClassifier(args.model_dir, provider="cpu", needs_response_threshold=None)

    def scored(some: Sequence[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        _, need = clf.predict_scores([r["text"] for r in some], [post_kind_of_row(r) for r in some])
        return np.array([needs_response_target(r) for r in some], dtype=bool), need

    other_gold, other_score = scored(others)
    model_threshold = pick_threshold(other_gold, other_score, args.min_recall)["threshold"]
    gold, score = scored(rows)
    result = {
        "source": args.source,
        "posts": len(rows),
        "need_answer": int(gold.sum()),
        "sample": args.sample,
        **study(gold, score, model_threshold, args.sample, args.draws, args.min_recall, args.seed),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
