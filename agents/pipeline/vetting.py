"""Author vetting: per-author signals over a sliding window, a score in [0, 1] and its reasons.

Not every author whose post mentions a brand is a customer: repost-only,
link-farm, self-promotion and bot-like accounts are noise. :class:`AuthorVetter`
keeps, per author, a few facts about each recent post (repost?, links and
their domains, self-promotional phrases, mentions of other accounts, a
normalised-text fingerprint) and derives shares over the window: reposts,
posts with links, distinct linked domains, self-promotional posts, mass
mentions, posting rate and near-duplicate text. Each share past its limit is a
flag with a weight; the score is the capped sum. :meth:`AuthorVetter.annotate`
puts ``{"score", "flags", "reasons", "posts", ...}`` on
``Mention.signals["vetting"]`` before routing, and rules match it with
``min_vetting_score``, ``max_vetting_score`` and ``author_flags``. Share-based
flags need ``min_posts`` posts in the window: one post says little.

State: one entry per author in a :class:`~agents.pipeline.tables.JsonState`: in the
worker the changelog-backed ``author-vetting`` Faust table (see
``agents/pipeline/tables.py``), so a restart or rebalance keeps every author's window,
and with N workers all of an author's posts meet on one of them (the
classified topic is keyed by the author, :func:`listener.record.classified_key`). Each post is
recorded once by its Mention id, so a redelivered post (at-least-once) is not
counted twice. An author's entry holds at most ``max_posts`` posts and is
deleted by :meth:`AuthorVetter.sweep` once its newest post has left the window.

Support staff can mark an author as spam in the inbox: the mark goes to
``mentions.spam-authors`` (keyed by the same author key, so co-partitioned
with ``mentions.classified``); :func:`register_spam_marks` keeps those marks in
the ``spam-authors`` table, and the author's posts then carry the flag
``marked_spam`` (weight 1: score 1), which routing rules can match.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import faust
import orjson
from faust.types import EventT, StreamT

from agents.pipeline.tables import JsonState, Owned, everything
from agents.pipeline.text import HANDLE, URL, fingerprint
from agents.runtime.batches import DeadLetterBatch, run_events
from listener.record import Mention, author_key

Clock = Callable[[], float]

_REPOST = re.compile(r"^\s*(?:RT|repost(?:ed)?)\s*[:@]", re.IGNORECASE)

PROMO_PHRASES: tuple[str, ...] = (
    "follow me", "follow back", "check out my", "dm me", "link in bio", "use code", "promo code",
    "discount code", "giveaway", "free followers", "click here", "subscribe to my", "buy now",
    "limited offer", "earn money", "make money", "work from home", "onlyfans", "crypto signals",
)  # fmt: skip
"""Self-promotional phrases, matched case-insensitively on word boundaries."""
_PROMO = re.compile(r"\b(?:" + "|".join(map(re.escape, PROMO_PHRASES)) + r")\b", re.IGNORECASE)

WEIGHTS: dict[str, float] = {
    "repost_only": 0.35,
    "link_heavy": 0.25,
    "many_domains": 0.2,
    "self_promotion": 0.3,
    "mass_mentions": 0.2,
    "high_rate": 0.3,
    "duplicate_text": 0.35,
    "marked_spam": 1.0,
}
"""Each flag's contribution to the score (capped at 1)."""


@dataclass(frozen=True, slots=True)
class VettingSettings:
    """Window, bounds and limits of the vetting flags.

    Attributes:
        window_s: Sliding window of an author's posts.
        max_posts: Most posts kept per author.
        min_posts: Posts in the window before share-based flags apply.
        share: Share of posts at which repost/link/promo/mention/duplicate flags fire.
        max_domains: Distinct linked domains above which ``many_domains`` fires.
        max_rate_per_hour: Posts per hour above which ``high_rate`` fires.
        mass_mentions: Other accounts mentioned in one post that make it a mass mention.
    """

    window_s: float = 86_400.0
    max_posts: int = 50
    min_posts: int = 3
    share: float = 0.6
    max_domains: int = 4
    max_rate_per_hour: float = 20.0
    mass_mentions: int = 3


@dataclass(frozen=True, slots=True)
class _Post:
    id: str
    at: float
    repost: bool
    domains: frozenset[str]
    promo: bool
    others: int
    print: str

    def row(self) -> list[Any]:
        """The JSON row stored in the author's entry."""
        return [
            self.id,
            self.at,
            self.repost,
            sorted(self.domains),
            self.promo,
            self.others,
            self.print,
        ]

    @classmethod
    def of_row(cls, row: list[Any]) -> _Post:
        """The post a :meth:`row` describes."""
        id_, at, repost, domains, promo, others, print_ = row
        return cls(
            id_, float(at), bool(repost), frozenset(domains), bool(promo), int(others), print_
        )


def _facts(mention: Mention, at: float) -> _Post:
    text = mention.text
    domains = frozenset(
        (urlsplit(u).hostname or "").removeprefix("www.") for u in URL.findall(text)
    ) - {""}
    brands = {b.lower() for b in mention.brands}
    others = {h.lower().rstrip(".") for h in HANDLE.findall(text)} - brands
    repost = bool(_REPOST.match(text)) or bool(mention.signals.get("repost"))
    promo = _PROMO.search(text) is not None
    return _Post(mention.id, at, repost, domains, promo, len(others), fingerprint(text))


class AuthorVetter:
    """Keeps recent posts per author and scores how spam-, bot- or link-farm-like they are.

    Args:
        settings: Window, bounds and limits.
        clock: Seconds since the epoch (tests pass a fake clock).
        state: Where the authors' windows live (the worker passes its Faust table).
        marked: Authors support staff marked as spam (author key -> who and when;
            the worker's ``spam-authors`` table, from ``mentions.spam-authors``).
    """

    def __init__(
        self,
        settings: VettingSettings | None = None,
        clock: Clock = time.time,
        state: JsonState | None = None,
        marked: JsonState | None = None,
    ) -> None:
        self.settings = settings or VettingSettings()
        self._clock = clock
        self.state = state if state is not None else JsonState()
        self.marked = marked if marked is not None else JsonState()

    def mark(self, key: str, mark: dict[str, Any] | None) -> None:
        """Record (or, with None, withdraw) a person's spam mark on the author ``key``."""
        if mark is None:
            self.marked.delete(key)
        else:
            self.marked.put(key, mark)

    def __len__(self) -> int:
        return len(self.state)

    def vet(self, mention: Mention) -> dict[str, Any]:
        """Record ``mention`` in its author's window and return the author's vetting signals."""
        key = author_key(mention)
        if key is None:
            return {"score": 0.0, "flags": [], "reasons": ["no author id"], "posts": 0}
        s, now = self.settings, self._clock()
        rows = self.state.get(key) or []
        posts = [p for p in map(_Post.of_row, rows) if p.at >= now - s.window_s]
        fresh = all(p.id != mention.id for p in posts)  # a redelivered post is not counted again
        if fresh:
            posts = [*posts, _facts(mention, now)][-s.max_posts :]
        if fresh or len(posts) != len(rows):
            self.state.put(key, [p.row() for p in posts])
        return self._score(posts, self.marked.get(key))

    def annotate(self, mention: Mention) -> Mention:
        """``mention`` with ``signals["vetting"]`` set (a copy; the input is not changed)."""
        return mention.model_copy(
            update={"signals": {**mention.signals, "vetting": self.vet(mention)}}
        )

    def sweep(self, owned: Owned = everything) -> int:
        """Delete the owned authors whose newest post has left the window; return how many."""
        oldest = self._clock() - self.settings.window_s
        return self.state.sweep(lambda rows: not rows or float(rows[-1][1]) < oldest, owned)

    def _score(self, posts: list[_Post], mark: Any = None) -> dict[str, Any]:
        s, n = self.settings, len(posts)
        domains = frozenset().union(*(p.domains for p in posts))
        span_h = max((posts[-1].at - posts[0].at) / 3600, 1.0)
        shares = {
            "repost_share": sum(p.repost for p in posts) / n,
            "link_share": sum(bool(p.domains) for p in posts) / n,
            "promo_share": sum(p.promo for p in posts) / n,
            "mention_share": sum(p.others >= s.mass_mentions for p in posts) / n,
            "duplicate_share": 1 - len({p.print for p in posts}) / n,
        }
        measured: dict[str, Any] = {
            **{k: round(v, 3) for k, v in shares.items()},
            "domains": len(domains),
            "rate_per_hour": round(n / span_h, 2),
            "posts": n,
        }
        reasons: dict[str, str] = {}
        if n >= s.min_posts:
            checks = (
                ("repost_only", "repost_share", "of posts are reposts"),
                ("link_heavy", "link_share", "of posts carry links"),
                ("self_promotion", "promo_share", "of posts are self-promotional"),
                ("mass_mentions", "mention_share", "of posts mention many accounts"),
                ("duplicate_text", "duplicate_share", "of posts repeat earlier text"),
            )
            for flag, name, what in checks:
                if shares[name] >= s.share:
                    reasons[flag] = f"{shares[name]:.0%} {what}"
            if n / span_h > s.max_rate_per_hour:
                reasons["high_rate"] = f"{n / span_h:.0f} posts/hour"
        if len(domains) > s.max_domains:
            reasons["many_domains"] = f"links to {len(domains)} distinct domains"
        if isinstance(mark, dict):
            reasons["marked_spam"] = f"marked as spam by {mark.get('by', 'support')}"
        score = min(1.0, sum(WEIGHTS[flag] for flag in reasons))
        flags = sorted(reasons)
        return {
            "score": round(score, 3),
            "flags": flags,
            "reasons": [reasons[f] for f in flags],
            **measured,
        }


def register_spam_marks(
    app: faust.App, topic: str, vetter: AuthorVetter, partitions: int, dead_letter: DeadLetterBatch
) -> faust.types.AgentT:
    """Add ``mark_spam_authors``: keep ``topic``'s marks (author key -> who, when) in ``vetter``.

    A tombstone withdraws a mark. Each record is taken once handled or dead-lettered.
    """
    source = app.topic(
        topic,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions,
        internal=True,
    )

    def take(event: EventT) -> None:
        key = event.key.decode("utf-8") if isinstance(event.key, bytes) else None
        if not key:
            raise ValueError("a spam mark needs the author key as its record key")
        value = event.value if isinstance(event.value, bytes) else None
        mark = orjson.loads(value) if value else None
        if mark is not None and not isinstance(mark, dict):
            raise ValueError("a spam mark is a JSON object")
        vetter.mark(key, mark)

    async def mark_spam_authors(stream: StreamT) -> None:
        await run_events(stream, stage="spam-marks", handle=take, dead_letter=dead_letter)

    return app.agent(source, name="mark_spam_authors")(mark_spam_authors)
