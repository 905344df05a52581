"""Baselines for the intent model, measured on the same sets (needs the ``train`` extra).

- **TF-IDF + logistic regression** (scikit-learn): word 1-2-grams and
  character 2-5-grams, sublinear TF, balanced class weights.
- **VADER + question-mark rule**: VADER compound <= -0.05 is a complaint;
  otherwise a ``?`` outside URLs is a question; otherwise compound >= 0.05 is
  praise; otherwise other (the guideline's precedence complaint > question >
  praise > other).

Sets (see ``models/intent-minilm/README.md``):

- ``dev``: the 1,975 dev posts; TF-IDF fitted on all of train.
- ``cross-source``: every ``complaints19`` post (train + dev, 3,392), with
  TF-IDF fitted on train without ``complaints19``.
- ``samples``: ``listener/samples/brand_posts.jsonl`` with its hand labels
  (718 posts, 12 invented brands, 2026): out of domain for everything here.

Usage::

    python -m models.baselines [--json build/baselines.json]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from models.evaluation import classification_report, format_report, load_labelled
from models.train import DEFAULT_DATA, REPO_ROOT, read_jsonl

HELD_OUT_SOURCE = "complaints19"
SAMPLES = REPO_ROOT / "listener" / "samples" / "brand_posts.jsonl"
SAMPLE_LABELS = REPO_ROOT / "listener" / "samples" / "brand_posts.labels.jsonl"
_URL = re.compile(r"https?://\S+")

EvalSet = tuple[str, list[dict[str, Any]], list[dict[str, Any]]]


def eval_sets(data: Path) -> list[EvalSet]:
    """The three evaluation sets, each with the training rows a baseline may fit on.

    Args:
        data: Folder with ``train.jsonl`` and ``dev.jsonl``.

    Returns:
        ``(name, train_rows, test_rows)`` for dev, cross-source and samples.
    """
    train = read_jsonl(data / "train.jsonl")
    dev = read_jsonl(data / "dev.jsonl")
    train_in = [r for r in train if r["source"] != HELD_OUT_SOURCE]
    held = [r for r in train + dev if r["source"] == HELD_OUT_SOURCE]
    samples = load_labelled(SAMPLES, SAMPLE_LABELS)
    return [("dev", train, dev), ("cross-source", train_in, held), ("samples", train, samples)]


def tfidf_logreg(seed: int = 20261123) -> Pipeline:
    """An unfitted TF-IDF + logistic regression pipeline."""
    features = FeatureUnion(
        [
            ("word", TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)),
            (
                "char",
                TfidfVectorizer(
                    analyzer="char_wb", ngram_range=(2, 5), min_df=3, sublinear_tf=True
                ),
            ),
        ]
    )
    clf = LogisticRegression(C=4.0, class_weight="balanced", max_iter=3000, random_state=seed)
    return Pipeline([("features", features), ("clf", clf)])


def vader_rule(texts: Sequence[str]) -> list[str]:
    """Labels from VADER sentiment and a question-mark rule.

    Args:
        texts: Post texts.

    Returns:
        One label per text.
    """
    analyzer = SentimentIntensityAnalyzer()
    out = []
    for text in texts:
        compound = analyzer.polarity_scores(text)["compound"]
        if compound <= -0.05:
            out.append("complaint")
        elif "?" in _URL.sub("", text):
            out.append("question")
        elif compound >= 0.05:
            out.append("praise")
        else:
            out.append("other")
    return out


def _gold_needs(rows: Sequence[dict[str, Any]]) -> list[bool] | None:
    if all(isinstance(r.get("needs_response"), bool) for r in rows):
        return [bool(r["needs_response"]) for r in rows]
    return None


def run(data: Path) -> dict[str, dict[str, Any]]:
    """Fit and score both baselines on every set.

    Args:
        data: Folder with ``train.jsonl`` and ``dev.jsonl``.

    Returns:
        ``{set: {baseline: classification_report}}``.
    """
    results: dict[str, dict[str, Any]] = {}
    for name, train_rows, test_rows in eval_sets(data):
        texts = [r["text"] for r in test_rows]
        gold = [r["label"] for r in test_rows]
        model = tfidf_logreg().fit(
            [r["text"] for r in train_rows], [r["label"] for r in train_rows]
        )
        preds = {
            "tfidf_logreg": [str(p) for p in model.predict(texts)],
            "vader_question_rule": vader_rule(texts),
        }
        results[name] = {
            baseline: classification_report(gold, pred, gold_needs=_gold_needs(test_rows))
            for baseline, pred in preds.items()
        }
        results[name]["n_train"] = len(train_rows)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Print (and optionally save) the baseline metrics; returns an exit code."""
    p = argparse.ArgumentParser(
        prog="python -m models.baselines", description=__doc__.splitlines()[0]
    )
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--json", type=Path, default=None, help="also write the reports here")
    args = p.parse_args(argv)
    results = run(args.data)
    for name, by_baseline in results.items():
        for baseline, report in by_baseline.items():
            if baseline != "n_train":
                print(format_report(report, f"== {baseline} on {name}") + "\n")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
