"""A model soup: the uniform average of the weights of several fine-tuned students.

Students trained by the same ``models.train`` recipe from the same base encoder but
with different seeds (or soft-target weights) end up close enough in weight space
that their average is itself a good model, usually better than each one, and it
serves at exactly one model's cost (Wortsman et al., 2022, "Model soups"). This is
how the shipped model averages away part of the seed-to-seed spread that the small
real dev sets make visible.

Every member must be a ``models.train`` output folder (``best/`` plus
``train_log.json``) with the same architecture, outputs, tokenizer and token
length. The soup is written as another such folder, so ``models.export
--checkpoint OUT/best`` takes it as it takes a trained one; its ``train_log.json``
keeps each member's log under ``stages``.

Usage::

    python -m models.soup --member build/intent-minilm-s1 --member build/intent-minilm-s2
        --out build/intent-minilm
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["average_tensors", "main", "soup_log"]

WEIGHTS_FILE = "model.safetensors"
# Files of a best/ folder that must be identical across members (the soup keeps the first's).
SHARED_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json")


def average_tensors(members: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The element-wise mean of several state dicts with the same keys and shapes.

    Floating-point tensors are averaged in float64 and cast back to their dtype;
    integer tensors (e.g. position ids) must agree and are kept.

    Raises:
        ValueError: No members, or the members' keys, shapes or integer tensors differ.
    """
    if not members:
        raise ValueError("a soup needs at least one member")
    keys = set(members[0])
    for i, member in enumerate(members[1:], 2):
        if set(member) != keys:
            diff = sorted(keys ^ set(member))[:5]
            raise ValueError(f"member {i} has other tensors than member 1: {diff}")
    out: dict[str, np.ndarray] = {}
    for key in sorted(keys):
        first = members[0][key]
        for i, member in enumerate(members[1:], 2):
            if member[key].shape != first.shape:
                raise ValueError(
                    f"{key}: member {i} has shape {member[key].shape}, member 1 {first.shape}"
                )
        if np.issubdtype(first.dtype, np.floating):
            mean = np.mean([m[key].astype(np.float64) for m in members], axis=0)
            out[key] = mean.astype(first.dtype)
        else:
            if any(not np.array_equal(m[key], first) for m in members[1:]):
                raise ValueError(f"{key}: the members' integer tensors differ")
            out[key] = first.copy()
    return out


def soup_log(logs: Sequence[dict[str, Any]], command: str, seconds: float) -> dict[str, Any]:
    """The soup's ``train_log.json``: the members' shared settings, each member's log.

    Raises:
        ValueError: The members were trained at different token lengths or with
            different outputs (a soup of those would not be one model).
    """
    for key in ("max_length", "needs_response_head", "masking"):
        values = {json.dumps(log.get(key), sort_keys=True) for log in logs}
        if len(values) > 1:
            raise ValueError(f"members differ in {key}: {sorted(values)}")
    first = logs[0]
    shared: dict[str, Any] = {
        key: first[key]
        for key in ("base_model", "data", "needs_response_head", "masking", "max_length")
        if key in first
    }
    return {
        **shared,
        "recipe": f"uniform weight average (model soup) of {len(logs)} models.train students",
        "seed": [log.get("seed") for log in logs],
        "stages": [
            {k: log[k] for k in log if k not in {"history", "class_weights"}} for log in logs
        ],
        "wall_seconds": round(seconds + sum(float(log.get("wall_seconds", 0)) for log in logs), 1),
        "command": command,
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m models.soup", description=__doc__.splitlines()[0])
    p.add_argument(
        "--member",
        type=Path,
        action="append",
        required=True,
        help="a models.train output folder (best/ + train_log.json); give it 2 or more times",
    )
    p.add_argument("--out", type=Path, required=True, help="output folder (best/ + train_log.json)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Average the members' weights into ``--out``; returns an exit code."""
    from safetensors.numpy import load_file, save_file

    args = parse_args(argv)
    started = time.monotonic()
    if len(args.member) < 2:
        raise SystemExit("a soup needs at least 2 --member folders")
    for member in args.member:
        for name in (WEIGHTS_FILE, *SHARED_FILES):
            if not (member / "best" / name).is_file():
                raise SystemExit(f"{member}/best/{name} is missing: not a models.train output")
        for name in SHARED_FILES:
            if (member / "best" / name).read_bytes() != (
                args.member[0] / "best" / name
            ).read_bytes():
                raise SystemExit(f"{member}/best/{name} differs from {args.member[0]}'s")
    tensors = average_tensors([load_file(m / "best" / WEIGHTS_FILE) for m in args.member])
    logs = [json.loads((m / "train_log.json").read_text(encoding="utf-8")) for m in args.member]
    command = "python -m models.soup " + " ".join(sys.argv[1:] if argv is None else argv)
    log = soup_log(logs, command, time.monotonic() - started)
    best = args.out / "best"
    best.mkdir(parents=True, exist_ok=True)
    for name in SHARED_FILES:
        shutil.copyfile(args.member[0] / "best" / name, best / name)
    save_file(tensors, str(best / WEIGHTS_FILE), metadata={"format": "pt"})
    (args.out / "train_log.json").write_text(json.dumps(log, indent=2) + "\n", encoding="utf-8")
    print(f"averaged {len(args.member)} members into {best} ({len(tensors)} tensors)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
