"""Rendering: the Jinja2 environment (autoescape on everywhere) and what the templates get.

Post text, author names, handles, URLs and signal values are hostile input:
every value reaches the page through an autoescaped template, a URL becomes a
link only if it is ``http``/``https`` (:func:`safe_link`), and no template marks
anything ``|safe``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

import jinja2

from agents.inbox.state import FILTERS, NONE, InboxState, Item

EXCERPT = 240
"""Characters of a post's text shown in the queue."""


def safe_link(url: str | None) -> str | None:
    """``url`` if it is an absolute http(s) URL without control characters, else None."""
    if not url or any(ord(c) < 33 or c in "\"'<>\\`" for c in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return url if parts.scheme.lower() in ("http", "https") and parts.netloc else None


def _clock(ts: float | datetime | None) -> str:
    if ts is None:
        return "-"
    when = ts if isinstance(ts, datetime) else datetime.fromtimestamp(ts, UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _ms(ts: float | datetime | None) -> str:
    if ts is None:
        return ""
    seconds = ts.timestamp() if isinstance(ts, datetime) else ts
    return str(int(seconds * 1000))


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= EXCERPT else flat[: EXCERPT - 1] + "\u2026"


def environment() -> jinja2.Environment:
    """The template environment: package templates, autoescape for every template."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("agents.inbox", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(clock=_clock, ms=_ms, excerpt=_excerpt, q=lambda v: quote(str(v), safe=""))
    env.globals.update(safe_link=safe_link, FILTERS=FILTERS, NONE=NONE)
    return env


def filter_query(filters: dict[str, str], **change: str | None) -> str:
    """The query string of ``filters`` with ``change`` applied (None removes a filter)."""
    merged = {**filters, **change}
    pairs = [f"{k}={quote(v, safe='')}" for k, v in merged.items() if v and k in FILTERS]
    return "?" + "&".join(pairs) if pairs else "?"


def item_context(state: InboxState, item: Item) -> dict[str, Any]:
    """What the item page shows beyond the item: merged copies, thread, teams."""
    mention = item.mention
    duplicates = mention.signals.get("duplicates")
    copies = [
        other.id
        for other in state.items.values()
        if other.id != item.id
        and isinstance(other.mention.signals.get("duplicates"), dict)
        and other.mention.signals["duplicates"].get("of") == item.id
    ][:20]
    thread_key = mention.thread_id or mention.id
    thread = [
        other
        for other in state.items.values()
        if other.id != item.id
        and (other.mention.thread_id == thread_key or other.mention.reply_to_id == mention.id)
    ][:20]
    vetting = mention.signals.get("vetting")
    others = {k: v for k, v in mention.signals.items() if k not in ("vetting", "duplicates")}
    teams = sorted({i.team for i in state.items.values() if i.team != NONE} | {"support"})
    return {
        "duplicates": duplicates if isinstance(duplicates, dict) else None,
        "copies": copies,
        "thread": thread,
        "in_queue": lambda mention_id: mention_id in state.items,
        "vetting": vetting if isinstance(vetting, dict) else None,
        "other_signals": others,
        "teams": teams,
        "link": safe_link(mention.url),
        "author_link": safe_link(mention.author.url),
    }
