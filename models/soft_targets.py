"""Soft targets: a teacher's probabilities per post (``models.teacher`` -> ``models.train``).

One JSON object per line::

    {"key": "<sha1 of the post text>", "probs": {"complaint": 0.7, "praise": 0.1,
     "question": 0.1, "other": 0.1}, "needs_response": 0.8}

Posts are matched on the SHA-1 of their exact text, so the file carries no post
text (the training sets' texts stay where their licences put them). A training
post with no entry keeps its gold label as its target (:func:`targets_for`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.data import needs_response_target, text_key
from models.evaluation import LABELS

__all__ = ["SoftTarget", "read_soft_targets", "targets_for", "text_key", "write_soft_targets"]

SoftTarget = tuple[tuple[float, ...], float]


def write_soft_targets(
    path: Path, texts: Sequence[str], probs: np.ndarray, needs_response: np.ndarray
) -> int:
    """Write one soft target per distinct text (the first one of a repeated text wins).

    Args:
        path: Output JSONL.
        texts: Post texts.
        probs: ``(len(texts), 4)`` label probabilities, columns in ``LABELS`` order.
        needs_response: ``(len(texts),)`` needs_response probabilities.

    Returns:
        The number of lines written.

    Raises:
        ValueError: The arrays do not match ``texts`` or a row is not a distribution.
    """
    if probs.shape != (len(texts), len(LABELS)) or needs_response.shape != (len(texts),):
        raise ValueError(
            f"expected probs {(len(texts), len(LABELS))} and needs_response {(len(texts),)}, "
            f"got {probs.shape} and {needs_response.shape}"
        )
    if not np.allclose(probs.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError("every row of probs must sum to 1")
    seen: set[str] = set()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for text, row, nr in zip(texts, probs, needs_response, strict=True):
            key = text_key(text)
            if key in seen:
                continue
            seen.add(key)
            entry = {
                "key": key,
                "probs": {label: round(float(p), 6) for label, p in zip(LABELS, row, strict=True)},
                "needs_response": round(float(nr), 6),
            }
            fh.write(json.dumps(entry) + "\n")
    return len(seen)


def read_soft_targets(path: Path) -> dict[str, SoftTarget]:
    """The soft targets of a file, by text key.

    Raises:
        ValueError: A line lacks a label's probability, or a value is outside [0, 1].
    """
    out: dict[str, SoftTarget] = {}
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            entry = json.loads(line)
            try:
                probs = tuple(float(entry["probs"][label]) for label in LABELS)
                nr = float(entry["needs_response"])
                key = str(entry["key"])
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{path} line {number}: not a soft target ({exc!r})") from exc
            if not all(0.0 <= p <= 1.0 for p in (*probs, nr)):
                raise ValueError(f"{path} line {number}: probabilities must lie in [0, 1]")
            out[key] = (probs, nr)
    return out


def targets_for(
    rows: Sequence[Mapping[str, Any]], soft: Mapping[str, SoftTarget]
) -> tuple[np.ndarray, np.ndarray, int]:
    """Soft label and needs_response targets for training rows, gold where the file has none.

    Args:
        rows: Training rows (``text``, ``label``, maybe ``needs_response``).
        soft: :func:`read_soft_targets`'s result.

    Returns:
        ``(probs, needs_response, missing)``: float32 ``(len(rows), 4)`` and
        ``(len(rows),)``, and how many rows had no soft target (one-hot gold label
        and gold needs_response instead).
    """
    probs = np.zeros((len(rows), len(LABELS)), dtype=np.float32)
    nr = np.zeros(len(rows), dtype=np.float32)
    missing = 0
    for i, row in enumerate(rows):
        found = soft.get(text_key(str(row["text"])))
        if found is None:
            missing += 1
            probs[i, LABELS.index(str(row["label"]))] = 1.0
            nr[i] = float(needs_response_target(row))
        else:
            probs[i] = found[0]
            nr[i] = found[1]
    return probs, nr, missing
