"""RSS and Atom feeds (blogs, blog comment feeds, forums) via feedparser.

Auth: none (public feeds). Rate limits: be polite; the default poll interval is
5 minutes and every request is a conditional GET (``If-None-Match`` with the
last ETag, ``If-Modified-Since`` with the last Last-Modified), so an unchanged
feed costs one 304. 429/5xx raise RetryableError honouring Retry-After.
Cursor: a JSON object per feed URL with its ETag, Last-Modified and the ids of
the entries already emitted (entry ``id``, else ``link``; the newest
``seen_max`` kept). Feeds have no reliable order, so "new" means "not seen".
When a poll is capped by ``max_entries_per_poll``, the validators are *not*
saved, so the next poll fetches the feed again instead of getting a 304.
Delivery: at-least-once. Mention ids hash the feed URL and the entry id, so
they are stable across polls and restarts.
"""

from __future__ import annotations

import calendar
import hashlib
import json
from datetime import UTC, datetime
from typing import Any, ClassVar

import aiohttp
import feedparser
from pydantic import BaseModel, ConfigDict, Field

from listener.brands import BrandMatcher
from listener.connectors.base import BaseConnector, Batch, Skipped, html_to_text
from listener.connectors.http import network_error, without_queries
from listener.errors import FatalError, SkippableError
from listener.record import Author, Mention
from listener.retry import check_http_status


class RssSettings(BaseModel):
    """The ``connectors.rss`` config block."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    feeds: tuple[str, ...] = Field(min_length=1, description="Feed URLs (RSS 0.9x/1.0/2.0, Atom).")
    poll_interval_s: float = Field(default=300.0, ge=0)
    max_entries_per_poll: int = Field(default=1000, gt=0)
    seen_max: int = Field(default=1000, gt=0, description="Entry ids remembered per feed.")
    timeout_s: float = Field(default=30.0, gt=0)
    user_agent: str = "brand-listener/0.1 (+https://github.com/brand-listener)"


class RssConnector(BaseConnector):
    """Polls each feed in turn with a conditional GET (see module docstring)."""

    name: ClassVar[str] = "rss"
    settings_model: ClassVar[type[BaseModel]] = RssSettings

    def __init__(self, settings: RssSettings, brands: BrandMatcher) -> None:
        super().__init__(brands, poll_interval_s=settings.poll_interval_s)
        self.settings = settings
        self._next = 0
        self._session: aiohttp.ClientSession | None = None

    async def poll(self, cursor: str | None) -> Batch:
        """Fetch the next feed in the round; ``more`` until the round is done."""
        state: dict[str, Any] = json.loads(cursor) if cursor else {}
        url = self.settings.feeds[self._next]
        feed_state = dict(state.get(url) or {})
        body, headers = await self._fetch(url, feed_state)
        mentions: list[Mention] = []
        skipped: list[Skipped] = []
        capped = False
        if body is not None:
            parsed = feedparser.parse(body)
            if parsed.bozo and not parsed.entries:
                skipped.append(Skipped("decode", f"{url}: {parsed.bozo_exception}", body))
            seen: list[str] = list(feed_state.get("seen") or [])
            known = set(seen)
            lang = parsed.feed.get("language")
            for entry in reversed(parsed.entries):  # feeds list newest first
                key = entry.get("id") or entry.get("link")
                if key in known:
                    continue
                if len(mentions) >= self.settings.max_entries_per_poll:
                    capped = True
                    break
                try:
                    mentions.append(_to_mention(url, entry, lang))
                except SkippableError as exc:
                    skipped.append(Skipped(exc.reason, f"{url}: {exc}", repr(dict(entry))))
                if key:
                    seen.append(key)
                    known.add(key)
            feed_state["seen"] = seen[-self.settings.seen_max :]
            if not capped:
                feed_state["etag"] = headers.get("ETag")
                feed_state["modified"] = headers.get("Last-Modified")
        state[url] = feed_state
        if not capped:
            self._next = (self._next + 1) % len(self.settings.feeds)
        more = capped or self._next != 0
        return Batch(tuple(mentions), json.dumps(state, sort_keys=True), tuple(skipped), more)

    async def _fetch(self, url: str, state: dict[str, Any]) -> tuple[bytes | None, Any]:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=self.settings.timeout_s)
            agent = {"User-Agent": self.settings.user_agent}
            self._session = aiohttp.ClientSession(timeout=timeout, headers=agent)
        headers = {}
        if state.get("etag"):
            headers["If-None-Match"] = state["etag"]
        if state.get("modified"):
            headers["If-Modified-Since"] = state["modified"]
        try:
            async with self._session.get(url, headers=headers) as response:
                if response.status == 304:
                    return None, response.headers
                if response.status == 404 or response.status == 410:
                    raise FatalError(f"rss: {url}: HTTP {response.status}: feed is gone")
                check_http_status("rss", response.status, response.headers)
                return await response.read(), response.headers
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise network_error(f"rss: {without_queries(url)}", exc) from exc

    async def close(self) -> None:
        """Close the HTTP session."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def _to_mention(feed_url: str, entry: Any, lang: Any) -> Mention:
    """A feedparser entry as a Mention.

    Raises:
        SkippableError: An entry with neither id nor link, or without text.
    """
    key = entry.get("id") or entry.get("link")
    if not key:
        raise SkippableError("validation", "entry without id or link")
    content = entry.get("content") or []
    html = content[0].get("value", "") if content else entry.get("summary", "")
    body, links = html_to_text(html or "")
    title = entry.get("title") or ""
    text = (
        "\n\n".join(p for p in (title, body) if p and p != title + "") if body != title else title
    )
    stamp = entry.get("published_parsed") or entry.get("updated_parsed")
    created = datetime.fromtimestamp(calendar.timegm(stamp), UTC) if stamp else None
    detail = entry.get("author_detail") or {}
    native = hashlib.sha256(f"{feed_url}\x1f{key}".encode()).hexdigest()[:24]
    if entry.get("link"):
        links.insert(0, entry["link"])
    return Mention.create(
        source="rss",
        native_id=native,
        text=text,
        created_at=created,
        url=entry.get("link"),
        lang=lang if isinstance(lang, str) and lang else None,
        author=Author(name=entry.get("author"), url=detail.get("href")),
        signals={"links": links, "feed": feed_url},
    )
