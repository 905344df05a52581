"""The bundled sample stream (see README.md here): paths to the posts and their hand labels."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent

BRAND_POSTS: Path = _HERE / "brand_posts.jsonl"
"""736 invented public posts about 12 fictional brands, one JSON object per line."""

BRAND_POST_LABELS: Path = _HERE / "brand_posts.labels.jsonl"
"""Hand labels for the English posts: ``{"id": "<source>:<id>", "label", "needs_response"}``."""

BRANDS: Path = _HERE / "brands.yaml"
"""The 12 sample brands in listen.yaml's ``brands`` shape, with their own accounts."""
