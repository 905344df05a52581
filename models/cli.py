"""The ``classify`` subcommand: one-off intent classification of texts given on the command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson


def register_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``classify`` to the top-level parser.

    Args:
        sub: The ``brand-listener`` subparsers object.
    """
    parser = sub.add_parser(
        "classify",
        help="classify texts as complaint / praise / question / other",
        description="Classify each TEXT with the intent model and print its label and scores.",
    )
    parser.add_argument("texts", nargs="+", metavar="TEXT", help="post text (quote it)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per text")
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="model folder (default: the model shipped with brand-listener)",
    )
    parser.add_argument(
        "--provider", choices=("cpu", "cuda"), default="cpu", help="ONNX Runtime provider"
    )
    parser.set_defaults(func=classify_command)


def classify_command(args: argparse.Namespace) -> int:
    """Run ``brand-listener classify``.

    Args:
        args: Parsed arguments (``texts``, ``json``, ``model_dir``, ``provider``).

    Returns:
        0 on success, 2 when the model cannot be loaded.
    """
    from models.runtime import OnnxIntentClassifier  # lazy: keeps --help fast

    try:
        classifier = OnnxIntentClassifier(args.model_dir, provider=args.provider)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"brand-listener classify: {exc}", file=sys.stderr)
        return 2
    predictions = classifier.predict(args.texts)
    out = sys.stdout
    for text, prediction in zip(args.texts, predictions, strict=True):
        if args.json:
            record = {
                "text": text,
                "label": prediction.label,
                "scores": {k: round(v, 6) for k, v in prediction.scores.items()},
                "model": classifier.name,
            }
            out.write(orjson.dumps(record).decode() + "\n")
        else:
            scores = "  ".join(f"{k}={v:.3f}" for k, v in prediction.scores.items())
            out.write(f"{prediction.label:<9}  {scores}  {text}\n")
    out.flush()
    return 0
