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
Delivery: at-least-once. Boosts (reblogs) are not new posts and are ignored.
"""

from __future__ import annotations

import json
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
        if not self.timelines:
            raise FatalError("mastodon: no hashtags: set 'hashtags' or give a brand hashtags")
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
            key = self.timelines[self._next]
            mentions, skipped, full = await self._page(key, state)
            if not full:
                self._next = (self._next + 1) % len(self.timelines)
            more = full or self._next != 0
            return Batch(mentions, json.dumps(state, sort_keys=True), skipped, more)
        if self._stream is None:
            urls = mastodon_stream_urls(self._streaming_base(), self.timelines)
            stream = SseStreams(self._client(), urls, self.settings.timeout_s)
            await stream.open("mastodon")  # before the gap-fill: nothing falls between
            self._stream = stream
            self._filling = list(self.timelines)
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
        statuses = await self._get(key, state.get(key, self.settings.start_min_id))
        mentions: list[Mention] = []
        skipped: list[Skipped] = []
        for status in statuses:
            self._advance(state, key, status)
            try:
                mention = _to_mention(self.host, status)
            except SkippableError as exc:
                skipped.append(Skipped(exc.reason, str(exc), repr(status)))
                continue
            if mention is not None:
                mentions.append(mention)
        return tuple(mentions), tuple(skipped), len(statuses) >= self.settings.limit

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
        signals={"links": links, "bot": bool(account.get("bot"))},
    )
