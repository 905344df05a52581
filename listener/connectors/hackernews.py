"""Hacker News via the Algolia HN Search API: stories and comments that match brand terms.

Auth: none. Rate limit: Algolia allows about 10,000 requests per hour per IP;
a 429 raises RetryableError with Retry-After, 5xx likewise.
Cursor: ``created_at_i`` (unix seconds) of the newest hit of the last *complete*
sweep. A sweep asks ``/search_by_date?query=<term>&tags=(story,comment)&
numericFilters=created_at_i>=<cursor>`` for every term, page by page (one page
per poll). The cursor only moves when the sweep has read every page of every
term, so a restart mid-sweep repeats that sweep (duplicates are dropped by id)
and never skips a hit. ``>=`` rather than ``>``: hits in the cursor's own second
are read again rather than lost.
Delivery: at-least-once. Terms default to every brand's keywords.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import aiohttp
from pydantic import BaseModel, ConfigDict, Field

from listener.brands import BrandMatcher
from listener.connectors.base import (
    BaseConnector,
    Batch,
    Skipped,
    html_to_text,
    parse_time,
)
from listener.connectors.http import request_json
from listener.errors import FatalError, SkippableError
from listener.record import Author, Mention

ITEM_URL = "https://news.ycombinator.com/item?id={}"


class HackerNewsSettings(BaseModel):
    """The ``connectors.hackernews`` config block."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str = "https://hn.algolia.com/api/v1"
    terms: tuple[str, ...] = Field(default=(), description="Queries; default: brand keywords.")
    tags: str = "(story,comment)"
    hits_per_page: int = Field(default=100, gt=0, le=1000)
    poll_interval_s: float = Field(default=60.0, ge=0)
    lookback_s: float = Field(
        default=3600.0, ge=0, description="How far back the first sweep goes."
    )
    timeout_s: float = Field(default=30.0, gt=0)


class HackerNewsConnector(BaseConnector):
    """Polls Algolia's ``search_by_date`` (see module docstring)."""

    name: ClassVar[str] = "hackernews"
    settings_model: ClassVar[type[BaseModel]] = HackerNewsSettings

    def __init__(self, settings: HackerNewsSettings, brands: BrandMatcher) -> None:
        super().__init__(brands, poll_interval_s=settings.poll_interval_s)
        self.settings = settings
        self.terms = settings.terms or brands.search_terms()
        if not self.terms:
            raise FatalError("hackernews: no terms: set 'terms' or give a brand keywords")
        self._session: aiohttp.ClientSession | None = None
        self._sweep: tuple[int, int, int, int] | None = None  # floor, term index, page, newest

    async def poll(self, cursor: str | None) -> Batch:
        """Read one page of the current sweep; the cursor moves when the sweep ends."""
        if self._sweep is None:
            floor = int(cursor) if cursor else int(time.time() - self.settings.lookback_s)
            self._sweep = (floor, 0, 0, floor)
        floor, term_idx, page, newest = self._sweep
        body = await self._get(self.terms[term_idx], floor, page)
        mentions: list[Mention] = []
        skipped: list[Skipped] = []
        for hit in body.get("hits") or []:
            try:
                mention = _to_mention(hit)
            except SkippableError as exc:
                skipped.append(Skipped(exc.reason, str(exc), repr(hit)))
                continue
            mentions.append(mention)
            newest = max(newest, int(hit["created_at_i"]))
        pages = body.get("nbPages", 0)
        if isinstance(pages, int) and page + 1 < pages:
            self._sweep = (floor, term_idx, page + 1, newest)
        elif term_idx + 1 < len(self.terms):
            self._sweep = (floor, term_idx + 1, 0, newest)
        else:
            self._sweep = None
            return Batch(tuple(mentions), str(newest), tuple(skipped), more=False)
        return Batch(tuple(mentions), None, tuple(skipped), more=True)

    async def _get(self, term: str, floor: int, page: int) -> dict[str, Any]:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=self.settings.timeout_s)
            self._session = aiohttp.ClientSession(timeout=timeout)
        params = {
            "query": term,
            "tags": self.settings.tags,
            "numericFilters": f"created_at_i>={floor}",
            "hitsPerPage": str(self.settings.hits_per_page),
            "page": str(page),
        }
        url = f"{self.settings.base_url}/search_by_date"
        return await request_json(
            self._session, "hackernews", "GET", url, params=params, expect=dict
        )

    async def close(self) -> None:
        """Close the HTTP session."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def _to_mention(hit: Any) -> Mention:
    """An Algolia hit (story or comment) as a Mention.

    Raises:
        SkippableError: A hit without id, time or text.
    """
    if not isinstance(hit, dict) or not hit.get("objectID"):
        raise SkippableError("validation", "hit without objectID")
    created = parse_time(hit.get("created_at_i"))
    if created is None or isinstance(hit.get("created_at_i"), bool):
        raise SkippableError("validation", f"hit {hit['objectID']}: no created_at_i")
    tags = hit.get("_tags") or []
    links: list[str] = []
    if "comment" in tags:
        text, links = html_to_text(str(hit.get("comment_text") or ""))
    else:
        body, links = html_to_text(str(hit.get("story_text") or ""))
        text = "\n\n".join(p for p in (str(hit.get("title") or ""), body) if p)
        if hit.get("url"):
            links.insert(0, str(hit["url"]))
    author = hit.get("author")
    parent, story = hit.get("parent_id"), hit.get("story_id")
    native = str(hit["objectID"])
    return Mention.create(
        source="hackernews",
        native_id=native,
        text=text,
        created_at=created,
        url=ITEM_URL.format(native),
        author=Author(
            id=author,
            handle=author,
            url=f"https://news.ycombinator.com/user?id={author}" if author else None,
        ),
        reply_to_id=f"hackernews:{parent}" if parent else None,
        thread_id=f"hackernews:{story}" if story and str(story) != native else None,
        signals={"links": links} if links else {},
    )
