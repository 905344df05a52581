"""Drop training posts whose label a trained model firmly disputes (label-noise cleaning).

The data's labels were mapped from sentiment datasets and agree with a blind
reading of the guideline about 89% of the time (``../shared/data/intent/README.md``).
A model trained on them still gives a small probability to the gold label of
many of the wrong ones: "@SouthwestAir thanks! I expected a wait... Just not
that long. :)" labelled complaint, "@united booked EWR-FLL in first ... the
garbage @AmericanAir first class" labelled other. :func:`drop_disputed`
removes the posts whose gold label gets less than ``below`` from a scorer.

Used by ``python -m models.train --drop-disputed-below P --scorer DIR``; for a
held-out run the scorer must not have seen the held-out source either.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from models.post_kind import post_kind_of_row

Scorer = Callable[[Sequence[str], Sequence[str]], np.ndarray]
"""(Texts, post kinds) -> probabilities, one row per text, columns in ``labels`` order
(e.g. ``OnnxIntentClassifier.predict_proba``)."""


def drop_disputed(
    rows: Sequence[dict[str, Any]],
    score: Scorer,
    labels: Sequence[str],
    below: float,
) -> tuple[list[dict[str, Any]], Counter[tuple[str, str]]]:
    """Keep the rows whose gold label gets at least ``below`` from ``score``.

    Args:
        rows: Training rows with ``text`` and ``label`` (and ``source``).
        score: The scorer (e.g. ``OnnxIntentClassifier.predict_proba``).
        labels: The scorer's label order.
        below: Probability under which a row's gold label counts as disputed.

    Returns:
        The kept rows, in input order, and the count of dropped rows per
        ``(source, label)``.

    Raises:
        ValueError: ``below`` outside [0, 1), a row's label unknown to the scorer,
            or a score matrix of the wrong shape.
    """
    if not 0.0 <= below < 1.0:
        raise ValueError(f"below must be within [0, 1), got {below}")
    if not rows:
        return [], Counter()
    column = {label: i for i, label in enumerate(labels)}
    unknown = {r["label"] for r in rows} - set(column)
    if unknown:
        raise ValueError(f"labels unknown to the scorer: {sorted(unknown)}")
    probs = np.asarray(score([r["text"] for r in rows], [post_kind_of_row(r) for r in rows]))
    if probs.shape != (len(rows), len(labels)):
        expected = (len(rows), len(labels))
        raise ValueError(f"scorer returned shape {probs.shape}, expected {expected}")
    gold = probs[np.arange(len(rows)), [column[r["label"]] for r in rows]]
    kept = [row for row, p in zip(rows, gold, strict=True) if p >= below]
    dropped = Counter(
        (str(row.get("source", "")), str(row["label"]))
        for row, p in zip(rows, gold, strict=True)
        if p < below
    )
    return kept, dropped
