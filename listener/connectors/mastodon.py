"""Mastodon: hashtag (and optionally public/local) timelines, paged with ``min_id`` or streamed.

Auth: an optional bearer access token (``read:statuses``); many instances serve
public tag timelines without one, some require it, and streaming usually does.
401/403 are fatal.
Rate limits: 300 requests per 5 minutes per token/IP by default; a 429 raises
RetryableError waiting for ``Retry-After`` or, failing that, ``X-RateLimit-Reset``.
Cursor: a JSON object ``{timeline: newest status id seen}``; a timeline is a tag
name, ``public`` or ``public:local``. Paging asks ``GET /api/v1/timelines/tag/:tag``
(or ``/timelines/public[?local=true]``) with ``min_id=<id>&limit=40``: statuses
*right after* that id, so nothing is skipped however many arrive; a full page
means more. The first poll of a timeline without a cursor reads its newest page,
or pages forward from ``start_min_id`` when that is set (a backfill).
Streaming (``streaming: true``): one SSE connection per timeline
(``/api/v1/streaming/hashtag?tag=``, ``/public``, ``/public/local``); on every
(re)connect the streams are opened *first* and then each timeline is gap-filled
by REST ``min_id`` paging from the cursor, so what was posted while disconnected
is read and what arrives meanwhile waits in the stream (repeats are dropped by
id in the runner). ``update`` events become Mentions, heartbeats (``:thump``)
and ``delete`` events are ignored, a malformed event is skipped. A dropped
stream raises RetryableError (the runner backs off) and the next poll reconnects.
Keyword search (``search: true``, needs the token: instances answer statuses
search only for a signed-in user): each of ``search_terms`` (default: every
brand's keywords) is one more cursor key ``search:<term>``, read with
``GET /api/v2/search?type=statuses&q=<term>&resolve=false&min_id=<cursor>``
beside the tag timelines, which already cover the ``#hashtags``. The docs say
``min_id`` gives the results *immediately newer* than it; so as not to depend on
the order an instance's search index sorts by, a full page is followed (one page
a poll) by pages below its oldest id (``max_id``, same ``min_id``) until one is
short, and only then does the cursor move to the newest id seen: nothing between
is skipped whichever end a page is cut from (the walk is kept in the cursor).
Streaming mode gap-fills the terms on every (re)connect and again every
``poll_interval_s``. A status found by both a
timeline and a search has one Mention id; the runner drops the repeat.
Delivery: at-least-once. Boosts (reblogs) are not new posts and are ignored.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal
from urllib.parse import quote, urlparse

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from listener.brands import BrandMatcher
from listener.connectors.base import (
    BaseConnector,
    Batch,
    Skipped,
    html_to_text,
    parse_time,
)
from listener.connectors.http import request_json
from listener.connectors.sse import SseStreams, mastodon_stream_urls
from listener.errors import FatalError, RetryableError, SkippableError
from listener.record import Author, Mention


class MastodonSettings(BaseModel):
    """The ``connectors.mastodon`` config block."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    instance: str = Field(description="Base URL, e.g. https://mastodon.social")
    access_token: SecretStr | None = None
    hashtags: tuple[str, ...] = Field(default=(), description="Default: every brand's hashtags.")
    timelines: tuple[Literal["public", "public:local"], ...] = Field(
        default=(), description="Whole-instance timelines to read as well (brand-matched here)."
    )
    streaming: bool = Field(default=False, description="SSE streaming with REST gap-fill.")
    streaming_url: str | None = Field(
        default=None, description="Streaming base URL if not the instance (see /api/v2/instance)."
    )
    search: bool = Field(
        default=False, description="Keyword search via /api/v2/search (needs access_token)."
    )
    search_terms: tuple[str, ...] = Field(
        default=(), description="Search queries. Default: every brand's keywords."
    )
    batch_max: int = Field(default=200, gt=0, description="Streaming: most events per poll.")
    batch_wait_s: float = Field(default=1.0, gt=0, description="Streaming: longest poll wait.")
    start_min_id: str | None = Field(
        default=None,
        description="Without a cursor, page forward from this status id (0 = whole tag history); "
        "unset = start from the newest page.",
    )
    limit: int = Field(default=40, gt=0, le=40)
    poll_interval_s: float = Field(default=30.0, ge=0)
    timeout_s: float = Field(default=30.0, gt=0)


class MastodonConnector(BaseConnector):
    """Pages or streams each timeline (see module docstring)."""

    name: ClassVar[str] = "mastodon"
    settings_model: ClassVar[type[BaseModel]] = MastodonSettings

    def __init__(self, settings: MastodonSettings, brands: BrandMatcher) -> None:
        super().__init__(brands, poll_interval_s=settings.poll_interval_s)
        self.settings = settings
        tags = tuple(t.lstrip("#") for t in settings.hashtags) or brands.hashtags()
        self.timelines: tuple[str, ...] = tags + tuple(settings.timelines)
        searches: tuple[str, ...] = ()
        if settings.search:
            if settings.access_token is None:
                raise FatalError(
                    "mastodon: search needs access_token (statuses search is signed-in)"
                )
            terms = tuple(t.strip() for t in settings.search_terms if t.strip())
            searches = tuple(f"{SEARCH}{t}" for t in terms or brands.search_terms())
            if not searches:
                raise FatalError("mastodon: search on but no terms: set 'search_terms' or keywords")
        self.keys: tuple[str, ...] = self.timelines + searches
        self.searches = searches
        if not self.keys:
            raise FatalError("mastodon: no hashtags: set 'hashtags' or give a brand hashtags")
        self._search_due = 0.0
        self.host = urlparse(settings.instance).netloc or settings.instance
        self._next = 0
        self._session: aiohttp.ClientSession | None = None
        self._stream: SseStreams | None = None
        self._filling: list[str] = []

    async def poll(self, cursor: str | None) -> Batch:
        """Paging: the next page of the next timeline. Streaming: gap-fill, then stream events.

        Raises:
            RetryableError: 429/5xx/network, or the stream dropped before any event was read.
        """
        state: dict[str, str] = json.loads(cursor) if cursor else {}
        if not self.settings.streaming:
            key = self.keys[self._next]
            mentions, skipped, full = await self._page(key, state)
            if not full:
                self._next = (self._next + 1) % len(self.keys)
            more = full or self._next != 0
            return Batch(mentions, json.dumps(state, sort_keys=True), skipped, more)
        if self._stream is None:
            urls = mastodon_stream_urls(self._streaming_base(), self.timelines)
            stream = SseStreams(self._client(), urls, self.settings.timeout_s)
            await stream.open("mastodon")  # before the gap-fill: nothing falls between
            self._stream = stream
            self._filling = list(self.keys)
            self._search_due = time.monotonic() + self.settings.poll_interval_s
        elif self.searches and not self._filling and time.monotonic() >= self._search_due:
            self._filling = list(self.searches)  # search has no stream: poll it
            self._search_due = time.monotonic() + self.settings.poll_interval_s
        while self._filling:  # gap-fill timeline by timeline; an empty page falls through
            mentions, skipped, full = await self._page(self._filling[0], state)
            if not full:
                self._filling.pop(0)
            if mentions or skipped or full:
                return Batch(mentions, json.dumps(state, sort_keys=True), skipped, more=True)
        return await self._read_stream(state)

    async def _read_stream(self, state: dict[str, str]) -> Batch:
        assert self._stream is not None
        events, closed = await self._stream.read(
            self.settings.batch_max, self.settings.batch_wait_s
        )
        mentions: list[Mention] = []
        skipped: list[Skipped] = []
        for key, kind, data in events:
            if kind != "update":
                continue  # delete, status.update (edits), notification, ...
            try:
                status = json.loads(data)
                self._advance(state, key, status)
                mention = _to_mention(self.host, status)
            except ValueError as exc:
                skipped.append(Skipped("decode", f"{key}: update is not JSON: {exc}", data))
                continue
            except SkippableError as exc:
                skipped.append(Skipped(exc.reason, str(exc), data))
                continue
            if mention is not None:
                mentions.append(mention)
        if closed is not None:
            await self._close_stream()
            if not events:
                raise RetryableError(f"mastodon: stream closed: {closed}")
        return Batch(tuple(mentions), json.dumps(state, sort_keys=True), tuple(skipped), True)

    @staticmethod
    def _advance(state: dict[str, str], key: str, status: Any) -> None:
        sid = status.get("id") if isinstance(status, dict) else None
        newest = state.get(key)
        if isinstance(sid, str) and sid.isdigit() and (newest is None or int(sid) > int(newest)):
            state[key] = sid

    async def _page(
        self, key: str, state: dict[str, str]
    ) -> tuple[tuple[Mention, ...], tuple[Skipped, ...], bool]:
        """One REST page of ``key`` after ``state[key]``; advances ``state``; True if full."""
        search = key.startswith(SEARCH)
        if search:
            statuses, full = await self._search(key, state)
        else:
            statuses = await self._get(key, state.get(key, self.settings.start_min_id))
            full = len(statuses) >= self.settings.limit
        mentions: list[Mention] = []
        skipped: list[Skipped] = []
        for status in statuses:
            if not search:
                self._advance(state, key, status)
            try:
                mention = _to_mention(self.host, status)
            except SkippableError as exc:
                skipped.append(Skipped(exc.reason, str(exc), repr(status)))
                continue
            if mention is not None:
                mentions.append(mention)
        return tuple(mentions), tuple(skipped), full

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            headers = {}
            if self.settings.access_token is not None:
                token = self.settings.access_token.get_secret_value()
                headers["Authorization"] = f"Bearer {token}"
            self._session = aiohttp.ClientSession(headers=headers)
        return self._session

    def _streaming_base(self) -> str:
        return (self.settings.streaming_url or self.settings.instance).rstrip("/")

    async def _get(self, key: str, min_id: str | None) -> list[Any]:
        params = {"limit": str(self.settings.limit)}
        if min_id is not None:
            params["min_id"] = min_id
        base = f"{self.settings.instance.rstrip('/')}/api/v1/timelines"
        if key in ("public", "public:local"):
            url = f"{base}/public"
            if key == "public:local":
                params["local"] = "true"
        else:
            url = f"{base}/tag/{quote(key)}"
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout_s)
        return await request_json(
            self._client(),
            "mastodon",
            "GET",
            url,
            params=params,
            timeout=timeout,
            expect=list,
            what="timeline response",
            reset_after=_rate_limit_reset,
        )

    async def _search(self, key: str, state: dict[str, str]) -> tuple[list[Any], bool]:
        """One search page of ``key`` newer than its cursor; True if there may be more.

        A full page starts (or goes on) a walk down: ``<key>|below`` keeps the
        oldest id read, the next page asks below it with the same ``min_id``, and
        ``<key>|top`` the newest; the cursor itself moves only when a short page
        ends the walk, so a restart mid-walk resumes it. Without a cursor it
        reads the newest page only and starts there.
        """
        min_id = state.get(key, self.settings.start_min_id)
        params = {
            "q": key[len(SEARCH) :],
            "type": "statuses",
            "resolve": "false",
            "limit": str(self.settings.limit),
        }
        if min_id is not None:
            params["min_id"] = min_id
        if f"{key}|below" in state:
            params["max_id"] = state[f"{key}|below"]
        body = await request_json(
            self._client(),
            "mastodon",
            "GET",
            f"{self.settings.instance.rstrip('/')}/api/v2/search",
            params=params,
            timeout=aiohttp.ClientTimeout(total=self.settings.timeout_s),
            expect=dict,
            what="search response",
            reset_after=_rate_limit_reset,
        )
        page = body.get("statuses")
        if not isinstance(page, list):
            raise RetryableError("mastodon: search response without a statuses array")
        ids = [i for i in map(_status_id, page) if i is not None]
        top = max([*ids, int(state.get(f"{key}|top", "0"))])
        full = len(page) >= self.settings.limit and min_id is not None and bool(ids)
        walked = f"{key}|top" in state  # a walk ends: read on from the new cursor at once
        if full:
            state[f"{key}|below"] = str(min(ids))
            state[f"{key}|top"] = str(top)
        else:
            state.pop(f"{key}|below", None)
            state.pop(f"{key}|top", None)
            if top and (min_id is None or top > int(min_id)):
                state[key] = str(top)
        return page, full or walked

    async def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            await stream.close()

    async def close(self) -> None:
        """Close the streams and the HTTP session."""
        await self._close_stream()
        session, self._session = self._session, None
        if session is not None:
            await session.close()


SEARCH = "search:"
"""Cursor-key prefix of a keyword search (tag names cannot hold ``:``)."""


def _status_id(status: Any) -> int | None:
    sid = status.get("id") if isinstance(status, dict) else None
    return int(sid) if isinstance(sid, str) and sid.isdigit() else None


def _rate_limit_reset(headers: Mapping[str, str]) -> float:
    """Seconds until ``X-RateLimit-Reset`` (an ISO time; 0 when absent or past)."""
    reset = parse_time(headers.get("X-RateLimit-Reset"))
    wait = (reset - datetime.now(UTC)).total_seconds() if reset else None
    return max(0.0, wait or 0.0)


def _to_mention(host: str, status: Any) -> Mention | None:
    """A Mastodon Status entity as a Mention; None for boosts.

    Raises:
        SkippableError: A status without id, created_at or text.
    """
    if not isinstance(status, dict) or not status.get("id"):
        raise SkippableError("validation", "status without id")
    if status.get("reblog"):
        return None
    created = parse_time(status.get("created_at"))
    if created is None:
        raise SkippableError("validation", f"status {status['id']}: bad created_at")
    body, links = html_to_text(str(status.get("content") or ""))
    warning = str(status.get("spoiler_text") or "")
    text = "\n\n".join(p for p in (warning, body) if p)
    account: dict[str, Any] = status["account"] if isinstance(status.get("account"), dict) else {}
    followers = account.get("followers_count")
    reply = status.get("in_reply_to_id")
    return Mention.create(
        source="mastodon",
        native_id=f"{host}/{status['id']}",
        text=text,
        created_at=created,
        url=status.get("url") or status.get("uri"),
        lang=status.get("language") or None,
        author=Author(
            id=str(account["id"]) if account.get("id") else None,
            handle=account.get("acct"),
            name=account.get("display_name") or None,
            followers=followers if isinstance(followers, int) and followers >= 0 else None,
            url=account.get("url"),
        ),
        reply_to_id=f"mastodon:{host}/{reply}" if reply else None,
        reply_to_author=_parent_author(status, account) if reply else None,
        signals={"links": links, "bot": bool(account.get("bot"))},
    )


def _parent_author(status: dict[str, Any], account: dict[str, Any]) -> Author | None:
    """Who wrote the status this one replies to, from ``in_reply_to_account_id``.

    That id is local to the instance read; its ``acct`` (what own accounts list)
    comes from the status's own account (a thread of one's own posts) or from its
    ``mentions``, which name the account replied to. An id found in neither is
    kept alone (it matches an own-account entry only if that entry is the id).
    """
    parent_id = status.get("in_reply_to_account_id")
    if not isinstance(parent_id, str) or not parent_id:
        return None
    mentions = status.get("mentions")
    mentioned: list[Any] = mentions if isinstance(mentions, list) else []
    for who in (account, *mentioned):
        if isinstance(who, dict) and str(who.get("id")) == parent_id:
            acct, url = who.get("acct"), who.get("url")
            return Author(
                id=parent_id,
                handle=acct if isinstance(acct, str) and acct else None,
                url=url if isinstance(url, str) and url else None,
            )
    return Author(id=parent_id)
