"""Labelled intent data from several folders: loading, dev sets, per-item training weights.

Two folder layouts are read (see ``../shared/data/*/README.md``):

- ``train.jsonl`` + ``dev.jsonl`` (``../shared/data/intent``): one dev set named
  after the folder, e.g. ``intent``;
- any other ``*.jsonl`` whose rows carry ``split`` = ``train`` or ``dev``
  (``../shared/data/intent-v2``: ``real.jsonl``, ``synthetic.jsonl``): one dev set
  per file, named ``<folder>/<file stem>``, e.g. ``intent-v2/real``;
- a single ``.jsonl`` file with ``split`` (e.g. ``brand-listener corrections
  export``'s rows, all ``train``): its dev rows, if any, are named after its stem.

Every row keeps its ``source`` and gains ``set`` (the name above). Its
needs_response target is its own ``needs_response`` field where it has one, else
"label is complaint or question" (the old data has no such field: there the two
agree by the guideline's definition for posts addressed to the brand).

Posts are dealt to folds by the SHA-1 of their text (:func:`fold_of`), for teachers
that must score training posts they never saw.

Training weights are a product of a per-source (or per-set) factor and, for rows
marked ``borderline``, a borderline factor; a weight of 0 drops the row. Pure
Python: the training and the evaluation code both import it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NEEDS_RESPONSE_LABELS = frozenset({"complaint", "question"})
SPLITS = ("train", "dev")

__all__ = [
    "Corpus",
    "fold_of",
    "item_weight",
    "load_corpus",
    "load_folder",
    "needs_response_target",
    "parse_fold",
    "parse_weights",
    "text_key",
    "weigh",
]


@dataclass
class Corpus:
    """Training rows of every folder and their dev sets by name."""

    train: list[dict[str, Any]] = field(default_factory=list)
    dev: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def dev_rows(self) -> list[dict[str, Any]]:
        """Every dev row, set by set in load order."""
        return [row for rows in self.dev.values() for row in rows]

    def rows_of(self, sources: Collection[str]) -> list[dict[str, Any]]:
        """Every row (train, then dev) of ``sources``: a held-out platform's posts."""
        return [row for row in [*self.train, *self.dev_rows()] if row.get("source") in sources]


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _tag(rows: Iterable[dict[str, Any]], set_name: str) -> list[dict[str, Any]]:
    return [{**row, "set": set_name} for row in rows]


def load_folder(folder: Path) -> Corpus:
    """Train rows and dev sets of one data folder (either layout).

    Args:
        folder: ``train.jsonl`` and/or ``dev.jsonl``, or ``*.jsonl`` files with
            ``split``, or one such file.

    Returns:
        The folder's corpus.

    Raises:
        FileNotFoundError: The folder holds no ``.jsonl`` file.
        ValueError: A row of a split-file has no valid ``split``.
    """
    if (folder / "train.jsonl").is_file() or (folder / "dev.jsonl").is_file():
        corpus = Corpus()
        if (folder / "train.jsonl").is_file():
            corpus.train = _tag(_read_jsonl(folder / "train.jsonl"), folder.name)
        if (folder / "dev.jsonl").is_file():
            corpus.dev[folder.name] = _tag(_read_jsonl(folder / "dev.jsonl"), folder.name)
        return corpus
    files = [folder] if folder.is_file() else sorted(folder.glob("*.jsonl"))
    if not files:
        raise FileNotFoundError(f"no .jsonl files in {folder}")
    corpus = Corpus()
    for path in files:
        name = path.stem if folder.is_file() else f"{folder.name}/{path.stem}"
        rows = _tag(_read_jsonl(path), name)
        for i, row in enumerate(rows):
            if row.get("split") not in SPLITS:
                raise ValueError(f"{path} row {i}: 'split' must be one of {SPLITS}")
        corpus.train.extend(r for r in rows if r["split"] == "train")
        dev = [r for r in rows if r["split"] == "dev"]
        if dev:
            corpus.dev[name] = dev
    return corpus


def load_corpus(folders: Sequence[Path]) -> Corpus:
    """The union of several data folders, in the order given.

    Args:
        folders: Data folders (see :func:`load_folder`).

    Returns:
        All training rows and every dev set.

    Raises:
        ValueError: Two folders give a dev set of the same name.
    """
    corpus = Corpus()
    for folder in folders:
        part = load_folder(folder)
        clash = set(part.dev) & set(corpus.dev)
        if clash:
            raise ValueError(f"dev set named twice: {sorted(clash)}")
        corpus.train.extend(part.train)
        corpus.dev.update(part.dev)
    return corpus


def needs_response_target(row: Mapping[str, Any]) -> bool:
    """A row's needs_response: its own field, else "label is complaint or question"."""
    value = row.get("needs_response")
    if isinstance(value, bool):
        return value
    return str(row["label"]) in NEEDS_RESPONSE_LABELS


def parse_weights(specs: Iterable[str]) -> dict[str, float]:
    """``NAME=WEIGHT`` strings as a mapping.

    Args:
        specs: E.g. ``["airline=0.5", "intent-v2/real=2"]``.

    Returns:
        Weight per name.

    Raises:
        ValueError: A spec is not ``NAME=WEIGHT`` with a weight >= 0.
    """
    out: dict[str, float] = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = -1.0
        if not sep or not name or weight < 0:
            raise ValueError(f"expected NAME=WEIGHT with WEIGHT >= 0, got {spec!r}")
        out[name] = weight
    return out


def item_weight(
    row: Mapping[str, Any], weights: Mapping[str, float], borderline_weight: float = 1.0
) -> float:
    """The training weight of one row.

    Args:
        row: A row with ``source`` and ``set`` (maybe ``borderline``).
        weights: Factor per source or per set name; a source's own entry wins over
            its set's; names in neither count 1.
        borderline_weight: Factor for rows marked ``borderline``.

    Returns:
        The product of the factors (0: leave the row out).
    """
    source, set_name = str(row.get("source")), str(row.get("set"))
    weight = weights.get(source, weights.get(set_name, 1.0))
    if row.get("borderline") is True:
        weight *= borderline_weight
    return weight


def weigh(
    rows: Sequence[dict[str, Any]], weights: Mapping[str, float], borderline_weight: float = 1.0
) -> tuple[list[dict[str, Any]], list[float]]:
    """Rows with a positive weight, and those weights.

    Args:
        rows: Training rows.
        weights: See :func:`item_weight`.
        borderline_weight: See :func:`item_weight`.

    Returns:
        The kept rows and their weights, in input order.

    Raises:
        ValueError: A name in ``weights`` matches no row's source or set (a typo).
    """
    known = {str(r.get("source")) for r in rows} | {str(r.get("set")) for r in rows}
    unknown = sorted(set(weights) - known)
    if unknown:
        raise ValueError(f"weights for unknown sources or sets {unknown}; known: {sorted(known)}")
    kept: list[dict[str, Any]] = []
    out: list[float] = []
    for row in rows:
        weight = item_weight(row, weights, borderline_weight)
        if weight > 0:
            kept.append(row)
            out.append(weight)
    return kept, out


def text_key(text: str) -> str:
    """The key of a post's text: SHA-1 of its UTF-8 bytes (soft targets, folds)."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def fold_of(text: str, folds: int) -> int:
    """The fold (``0 .. folds-1``) of a post: SHA-1 of its text, so every tool agrees.

    ``models.train --hold-out-fold`` leaves a fold out of a teacher's training, and
    ``models.teacher --fold`` scores that fold with it: the same text always lands in
    the same fold, whatever the row order or the other data loaded.
    """
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    return int(text_key(text), 16) % folds


def parse_fold(spec: str) -> tuple[int, int]:
    """``K/N`` (fold K of N, counted from 0) as ``(K, N)``.

    Raises:
        ValueError: Not ``K/N`` with ``0 <= K < N`` and ``N >= 2``.
    """
    match = re.fullmatch(r"(\d+)/(\d+)", spec.strip())
    if match is None or not 0 <= int(match[1]) < int(match[2]) or int(match[2]) < 2:
        raise ValueError(f"expected K/N with 0 <= K < N and N >= 2, got {spec!r}")
    return int(match[1]), int(match[2])
