"""Post text as the stages compare it: normalised, fingerprinted, links and handles found.

Author vetting (duplicate text, link and mention counts) and copy-paste dedup
(one queue item per copied text) must agree on what "the same text" is, so
both use these.
"""

from __future__ import annotations

import hashlib
import re

URL = re.compile(r"https?://\S+", re.IGNORECASE)
"""A link in post text."""

HANDLE = re.compile(r"(?<![\w@])@([A-Za-z0-9_.]+)")
"""An @handle in post text (group 1: the handle without the @)."""

_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Lowercased, URLs and @handles removed, whitespace folded: what copies have in common."""
    text = HANDLE.sub(" ", URL.sub(" ", text.lower()))
    return _SPACE.sub(" ", text).strip()


def fingerprint(text: str) -> str:
    """A short stable hash of :func:`normalise` (near-identical texts share it)."""
    return hashlib.blake2b(normalise(text).encode(), digest_size=8).hexdigest()
