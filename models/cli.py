"""The ``classify`` and ``eval`` subcommands: intent classification and its evaluation.

``classify`` takes texts on the command line or a JSONL file; ``eval`` scores
the model on a labelled JSONL file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from models.post_kind import POST_KINDS, post_kind_of_row

CHUNK = 512  # posts read, classified and written at a time by --input


PROVIDERS = ("auto", "cpu", "cuda")
"""``--provider`` values (:func:`models.runtime.resolve_provider`)."""


def register_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``classify`` to the top-level parser.

    Args:
        sub: The ``brand-listener`` subparsers object.
    """
    parser = sub.add_parser(
        "classify",
        help="classify texts as complaint / praise / question / other",
        description=(
            "Classify each TEXT with the intent model and print its label and scores, or "
            "classify a JSONL file (--input) into another (--output), keeping every input "
            'field and adding "label", "scores" and "needs_response" (an input line\'s own '
            '"label" etc. is kept as "input_label" etc.). A model that reads where a post '
            'sits in its thread gets it from the line ("post_kind", "thread", "note", or a '
            'Mention\'s "source" and "reply_to_id"; see models/post_kind.py).'
        ),
    )
    parser.add_argument("texts", nargs="*", metavar="TEXT", help="post text (quote it)")
    parser.add_argument(
        "--input", type=Path, default=None, help='JSONL with a "text" field per line ("-": stdin)'
    )
    parser.add_argument(
        "--output", type=Path, default=None, help='JSONL written in input order ("-": stdout)'
    )
    parser.add_argument(
        "--post-kind",
        choices=POST_KINDS,
        default=None,
        help="where the TEXT posts sit in their thread, for a model that reads it (default "
        "unknown; --input lines carry their own)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.add_argument("--json", action="store_true", help="print one JSON object per text")
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="model folder (default: the model shipped with brand-listener)",
    )
    parser.add_argument(
        "--provider",
        choices=PROVIDERS,
        default="auto",
        help="where the model runs (auto: CUDA if onnxruntime-gpu sees a GPU and the model "
        "folder has model.fp16.onnx, else CPU)",
    )
    parser.set_defaults(func=classify_command)

    ev = sub.add_parser(
        "eval",
        help="evaluate the intent model on a labelled JSONL file",
        description=(
            'Classify a JSONL file with "text" and "label" (optionally "needs_response") and '
            "print per-class precision/recall/F1, macro-F1 and needs_response precision/recall."
        ),
    )
    ev.add_argument("--input", type=Path, required=True, help="labelled JSONL")
    ev.add_argument(
        "--labels",
        type=Path,
        default=None,
        help='labels JSONL joined on "id" or "<source>:<id>" (e.g. brand_posts.labels.jsonl)',
    )
    ev.add_argument("--json", action="store_true", help="print the report as JSON")
    ev.add_argument("--model-dir", type=Path, default=None, help="model folder")
    ev.add_argument("--provider", choices=PROVIDERS, default="auto")
    ev.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="needs_response threshold on P(complaint)+P(question) (default: the model's)",
    )
    ev.add_argument(
        "--by-source",
        action="store_true",
        help="also per source (each line's \"source\"): needs_response at the model's threshold, "
        "and the threshold that keeps --min-recall on that source's own posts, printed as "
        "worker.yaml's model.needs_response_threshold_by_source (give a random labelled "
        "sample of each source's posts, named as the connector names them: reddit, x, ...)",
    )
    ev.add_argument(
        "--min-recall",
        type=float,
        default=0.9,
        help="needs_response recall a per-source threshold keeps (default 0.9, as the model's)",
    )
    ev.set_defaults(func=eval_command)


def classify_command(args: argparse.Namespace) -> int:
    """Run ``brand-listener classify``.

    Args:
        args: Parsed arguments (``texts``, ``json``, ``model_dir``, ``provider``).

    Returns:
        0 on success, 2 when the model cannot be loaded.
    """
    if bool(args.texts) == (args.input is not None):
        print("brand-listener classify: give TEXT arguments or --input, not both", file=sys.stderr)
        return 2
    classifier = _load(args, "classify")
    if classifier is None:
        return 2
    if args.input is not None:
        return _classify_file(classifier, args)
    predictions = classifier.predict(args.texts, [args.post_kind] * len(args.texts))
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


def _load(args: argparse.Namespace, command: str, threshold: float | None = None) -> Any:
    from models.runtime import OnnxIntentClassifier  # lazy: keeps --help fast

    try:
        return OnnxIntentClassifier(
            args.model_dir, provider=args.provider, needs_response_threshold=threshold
        )
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"brand-listener {command}: {exc}", file=sys.stderr)
        return None


def _chunks(lines: IO[bytes], size: int) -> Iterator[list[bytes]]:
    chunk: list[bytes] = []
    for line in lines:
        if line.strip():
            chunk.append(line)
            if len(chunk) == size:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


OUTPUT_FIELDS = ("label", "scores", "needs_response")
"""Fields ``classify --input`` writes; an input line's own are kept as ``input_<field>``."""


def _keep_input_fields(row: dict[str, Any], renamed: set[str]) -> None:
    """Rename ``row``'s own OUTPUT_FIELDS to ``input_<field>``; say so once per field."""
    for key in OUTPUT_FIELDS:
        if key not in row:
            continue
        if key not in renamed:
            renamed.add(key)
            print(f'brand-listener classify: input "{key}" kept as "input_{key}"', file=sys.stderr)
        row.setdefault(f"input_{key}", row.pop(key))


def _count_lines(path: Path) -> int | None:
    if str(path) == "-":
        return None
    with path.open("rb") as fh:
        return sum(1 for line in fh if line.strip())


def _classify_file(classifier: Any, args: argparse.Namespace) -> int:
    """Classify ``--input`` JSONL into ``--output`` JSONL, chunk by chunk, in input order."""
    from tqdm import tqdm  # lazy, like the model

    src = sys.stdin.buffer if str(args.input) == "-" else None
    if src is None and not args.input.is_file():
        print(f"brand-listener classify: no such file: {args.input}", file=sys.stderr)
        return 2
    to_stdout = args.output is None or str(args.output) == "-"
    total = _count_lines(args.input)
    bar = tqdm(total=total, unit="post", disable=args.no_progress, file=sys.stderr)
    inp = src if src is not None else args.input.open("rb")
    out = sys.stdout.buffer if to_stdout else args.output.open("wb")
    line_no = 0
    renamed: set[str] = set()
    try:
        for chunk in _chunks(inp, CHUNK):
            rows = []
            for line in chunk:
                line_no += 1
                row = orjson.loads(line)
                if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                    print(
                        f'brand-listener classify: line {line_no}: no "text" string',
                        file=sys.stderr,
                    )
                    return 2
                rows.append(row)
            predictions = classifier.predict(
                [row["text"] for row in rows], [post_kind_of_row(row) for row in rows]
            )
            for row, pred in zip(rows, predictions, strict=True):
                _keep_input_fields(row, renamed)
                row["label"] = pred.label
                row["scores"] = {k: round(v, 6) for k, v in pred.scores.items()}
                row["needs_response"] = classifier.needs_response(pred)
                out.write(orjson.dumps(row) + b"\n")
            bar.update(len(rows))
    except orjson.JSONDecodeError as exc:
        print(f"brand-listener classify: line {line_no}: {exc}", file=sys.stderr)
        return 2
    finally:
        bar.close()
        out.flush()
        if not to_stdout:
            out.close()
        if src is None:
            inp.close()
    return 0


def eval_command(args: argparse.Namespace) -> int:
    """Run ``brand-listener eval``.

    Args:
        args: Parsed arguments (``input``, ``labels``, ``json``, ``model_dir``, ``provider``,
            ``threshold``).

    Returns:
        0 on success, 2 on unreadable input or model.
    """
    from models.evaluation import (
        NEEDS_RESPONSE_LABELS,
        classification_report,
        format_report,
        load_labelled,
        needs_response_score,
        thresholds_by_source,
    )

    try:
        rows = load_labelled(args.input, args.labels)
    except (OSError, ValueError) as exc:
        print(f"brand-listener eval: {exc}", file=sys.stderr)
        return 2
    classifier = _load(args, "eval", args.threshold)
    if classifier is None:
        return 2
    predictions = classifier.predict(
        [row["text"] for row in rows], [post_kind_of_row(row) for row in rows]
    )
    gold_needs = None
    if all(isinstance(row.get("needs_response"), bool) for row in rows):
        gold_needs = [bool(row["needs_response"]) for row in rows]
    report = classification_report(
        [row["label"] for row in rows],
        [p.label for p in predictions],
        gold_needs=gold_needs,
        pred_needs=[classifier.needs_response(p) for p in predictions],
    )
    report["model"] = classifier.name
    report["needs_response_threshold"] = classifier.needs_response_threshold
    report["label_offsets"] = classifier.label_offsets
    if args.by_source:
        scores = [
            needs_response_score(p.scores)
            if p.needs_response_score is None
            else p.needs_response_score
            for p in predictions
        ]
        report["by_source"] = thresholds_by_source(
            [str(row.get("source") or "-") for row in rows],
            gold_needs or [row["label"] in NEEDS_RESPONSE_LABELS for row in rows],
            scores,
            classifier.needs_response_threshold,
            args.min_recall,
        )
    if args.json:
        sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        threshold = classifier.needs_response_threshold
        rule = "top label" if threshold is None else f"score >= {threshold}"
        title = f"{classifier.name} on {args.input} ({len(rows)} posts; needs_response: {rule})"
        print(format_report(report, title))
        if args.by_source:
            print(format_by_source(report["by_source"], threshold, args.min_recall))
    return 0


def format_by_source(
    by_source: dict[str, dict[str, Any]], threshold: float | None, min_recall: float
) -> str:
    """The ``--by-source`` table, then the worker.yaml lines for the picked thresholds."""
    model = f"at the model's {threshold}" if threshold is not None else "at the model's"
    width = max([len("source"), *map(len, by_source)])
    lines = [
        "",
        f"needs_response by source: P / R {model}, and the threshold that keeps recall "
        f">= {min_recall} on the source's own posts",
        f"{'source':<{width}} {'posts':>6} {'need':>5}  {'model P / R':>15}  {'picked':>7}  "
        f"{'P / R there':>15}",
    ]
    picked: dict[str, float] = {}
    for source, row in by_source.items():
        at = row.get("at_model_threshold")
        at_text = f"{at['precision']:.3f} / {at['recall']:.3f}" if at else "-"
        pick = row["picked"]
        if pick is None:
            pick_text = f"{'-':>7}  {'(too few posts needing an answer)':>15}"
        else:
            picked[source] = pick["threshold"]
            pick_text = f"{pick['threshold']:>7.4f}  {pick['precision']:.3f} / {pick['recall']:.3f}"
        lines.append(
            f"{source:<{width}} {row['posts']:>6} {row['need_answer']:>5}  {at_text:>15}  "
            f"{pick_text}"
        )
    if picked:
        lines += ["", "worker.yaml, to use the picked thresholds:"]
        lines += ["model:", "  needs_response_threshold_by_source:"]
        lines += [f"    {source}: {value}" for source, value in picked.items()]
    return "\n".join(lines)
