"""What matching a post against the brands costs: BrandMatcher against plain substring tests.

Run with ``make bench`` (or ``python tests/perf/bench_brand_matcher.py``). Twenty
brands, each with two keywords and a boolean query, matched against posts that name
none of them (the common case: every post a connector reads is matched against every
brand). The baseline, measured in the same run, alternating, is the least any matcher
can do: a lower-cased substring test per keyword, no word boundaries, no queries.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from listener.brands import BrandMatcher, BrandSettings  # noqa: E402

BRANDS = [
    BrandSettings(
        name=f"b{i}",
        keywords=(f"brand{i}", f"brand {i} cloud"),
        query=f"(b{i}x OR #b{i}) AND NOT spam",
    )
    for i in range(20)
]
TEXT = "a fairly ordinary post about nothing in particular, " * 5


def posts_per_second(match: object, texts: list[str]) -> float:
    """Posts matched per second by ``match`` over ``texts``."""
    started = time.perf_counter()
    for text in texts:
        match(text)  # type: ignore[operator]
    return len(texts) / (time.perf_counter() - started)


def main() -> int:
    """Print posts/s of the matcher and of the baseline, and their ratio."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--posts", type=int, default=20_000, help="posts per run")
    p.add_argument("--runs", type=int, default=3, help="alternating runs of each")
    args = p.parse_args()
    matcher = BrandMatcher(BRANDS)
    keywords = [k.lower() for brand in BRANDS for k in brand.keywords]

    def substrings(text: str) -> bool:
        lowered = text.lower()
        return any(k in lowered for k in keywords)

    texts = [f"{TEXT} #{n}" for n in range(args.posts)]
    matcher.match(texts[0])  # warm-up (compiled patterns, caches)
    ours, base = [], []
    for _ in range(args.runs):
        ours.append(posts_per_second(matcher.match, texts))
        base.append(posts_per_second(substrings, texts))
    mine, theirs = statistics.median(ours), statistics.median(base)
    runs = f"median of {args.runs}"
    print(f"BrandMatcher, {len(BRANDS)} brands with queries: {mine:,.0f} posts/s ({runs})")
    print(f"baseline, substring test per keyword: {theirs:,.0f} posts/s")
    print(f"ratio: {mine / theirs:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
