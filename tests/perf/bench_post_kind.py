"""What reading the post kind costs: the shipped model on the demo's stream, with and without.

Run with ``make bench`` (or ``python tests/perf/bench_post_kind.py``). The posts are
the labelled sample stream (``listener/samples``) four times over, each with the kind
the pipeline gives it (``models.report.with_serving_kinds``: most are thread openers,
``[post] ...``; replies to the brands' own posts are ``[reply to brand] ...``, other
replies ``[comment] ...`` for a model trained with that kind; the rest are unknown
and read bare). The baseline is the same model on the same texts
without kinds (every post read bare), measured in the same run, alternating.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from models.evaluation import load_labelled  # noqa: E402
from models.report import SAMPLE_LABELS, SAMPLES, with_serving_kinds  # noqa: E402
from models.runtime import OnnxIntentClassifier  # noqa: E402


def main() -> int:
    """Print posts/s with and without kinds, and their ratio."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", type=Path, default=None, help="default: the shipped model")
    p.add_argument("--repeat", type=int, default=4, help="copies of the stream per run")
    args = p.parse_args()
    rows = with_serving_kinds(load_labelled(SAMPLES, SAMPLE_LABELS)) * args.repeat
    texts = [str(r["text"]) for r in rows]
    kinds = [str(r["post_kind"]) for r in rows]
    clf = OnnxIntentClassifier(args.model_dir, provider="cpu")
    if not clf.reads_post_kind:
        print(f"{clf.name} does not read the post kind: nothing to measure")
        return 0
    clf.predict(texts[:200])  # warm-up
    rates: dict[str, list[float]] = {"without kinds": [], "with kinds": []}
    for _ in range(3):
        for name, given in (("without kinds", None), ("with kinds", kinds)):
            started = time.perf_counter()
            clf.predict(texts, given)
            rates[name].append(len(texts) / (time.perf_counter() - started))
    print(f"{clf.name}, {len(texts)} posts, kinds {dict(Counter(kinds))}")
    for name, values in rates.items():
        print(f"  {name}: {statistics.median(values):,.0f} posts/s (median of 3)")
    ratio = statistics.median(rates["with kinds"]) / statistics.median(rates["without kinds"])
    print(f"  with / without: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
