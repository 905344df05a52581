"""Baselines for the intent model, measured on the same sets (needs the ``train`` extra).

- **TF-IDF + logistic regression** (scikit-learn): word 1-2-grams and
  character 2-5-grams, sublinear TF, balanced class weights.
- **VADER + question-mark rule**: VADER compound <= -0.05 is a complaint;
  otherwise a ``?`` outside URLs is a question; otherwise compound >= 0.05 is
  praise; otherwise other (the guideline's precedence complaint > question >
  praise > other).

Sets (see ``models/intent-minilm/README.md``): every dev set of the ``--data``
folders (``models/data.py``; e.g. ``intent``, ``intent-v2/real``,
``intent-v2/synthetic``), with per-source figures, and ``samples``
(``listener/samples/brand_posts.jsonl`` with its hand labels: out of domain).
TF-IDF is fitted on the training rows of all the folders, unweighted.

Usage::

    python -m models.baselines --data ../shared/data/intent --data ../shared/data/intent-v2 \
        [--json build/baselines.json]
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

from models.data import Corpus, load_corpus, needs_response_target
from models.evaluation import classification_report, format_report, load_labelled
from models.report import praise_as_complaint
from models.train import DEFAULT_DATA, REPO_ROOT

SAMPLES = REPO_ROOT / "listener" / "samples" / "brand_posts.jsonl"
SAMPLE_LABELS = REPO_ROOT / "listener" / "samples" / "brand_posts.labels.jsonl"
_URL = re.compile(r"https?://\S+")


def eval_sets(corpus: Corpus) -> dict[str, list[dict[str, Any]]]:
    """Every dev set of ``corpus``, then ``samples``.

    Args:
        corpus: The loaded data folders.

    Returns:
        Rows per set name.
    """
    return {**corpus.dev, "samples": load_labelled(SAMPLES, SAMPLE_LABELS)}


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


def score(rows: list[dict[str, Any]], pred: list[str]) -> dict[str, Any]:
    """A baseline's report on one set, with praise -> complaint and per-source figures."""
    gold = [r["label"] for r in rows]
    report = classification_report(gold, pred, gold_needs=[needs_response_target(r) for r in rows])
    report["praise_as_complaint"] = praise_as_complaint(report)
    sources = sorted({str(r.get("source")) for r in rows})
    if len(sources) > 1:
        report["per_source"] = {}
        for source in sources:
            idx = [i for i, r in enumerate(rows) if str(r.get("source")) == source]
            part = classification_report(
                [gold[i] for i in idx],
                [pred[i] for i in idx],
                gold_needs=[needs_response_target(rows[i]) for i in idx],
            )
            report["per_source"][source] = {
                k: part[k] for k in ("n", "macro_f1", "accuracy", "needs_response")
            }
    return report


def run(folders: list[Path]) -> dict[str, dict[str, Any]]:
    """Fit TF-IDF + LR once on every training row, and score both baselines on every set.

    Args:
        folders: Data folders (``models/data.py``).

    Returns:
        ``{set: {baseline: classification_report}}``.
    """
    corpus = load_corpus(folders)
    model = tfidf_logreg().fit(
        [r["text"] for r in corpus.train], [r["label"] for r in corpus.train]
    )
    results: dict[str, dict[str, Any]] = {}
    for name, rows in eval_sets(corpus).items():
        texts = [r["text"] for r in rows]
        results[name] = {
            "tfidf_logreg": score(rows, [str(p) for p in model.predict(texts)]),
            "vader_question_rule": score(rows, vader_rule(texts)),
            "n_train": len(corpus.train),
        }
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Print (and optionally save) the baseline metrics; returns an exit code."""
    p = argparse.ArgumentParser(
        prog="python -m models.baselines", description=__doc__.splitlines()[0]
    )
    p.add_argument(
        "--data",
        type=Path,
        action="append",
        default=None,
        help=f"data folder, repeatable (models/data.py; default {DEFAULT_DATA})",
    )
    p.add_argument("--json", type=Path, default=None, help="also write the reports here")
    args = p.parse_args(argv)
    results = run(args.data or [DEFAULT_DATA])
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
