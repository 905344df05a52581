"""Mastodon hashtag timelines over the REST API, paged forward with ``min_id``.

Auth: an optional bearer access token (``read:statuses``); many instances serve
public tag timelines without one, some require it. 401/403 are fatal.
Rate limits: 300 requests per 5 minutes per token/IP by default; a 429 raises
RetryableError waiting for ``Retry-After`` or, failing that, ``X-RateLimit-Reset``.
Cursor: a JSON object ``{tag: newest status id seen}``. Each poll asks
``GET /api/v1/timelines/tag/:tag?min_id=<id>&limit=40`` (statuses *right after*
that id, so nothing is skipped however many arrive); a full page means more.
The first poll of a tag without a cursor reads its newest page, or pages forward
from ``start_min_id`` when that is set (a backfill).
Delivery: at-least-once. Boosts (reblogs) are not new posts and are ignored.
Streaming (SSE ``/api/v1/streaming/hashtag``) is not used: paging is gap-free
and restart-safe on its own; lower latency is a possible addition.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import quote, urlparse

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from listener.brands import BrandMatcher
from listener.connectors.base import (
    BaseConnector,
    Batch,
    Skipped,
    check_status,
    html_to_text,
    parse_time,
)
from listener.errors import FatalError, RetryableError, SkippableError
from listener.record import Author, Mention


class MastodonSettings(BaseModel):
    """The ``connectors.mastodon`` config block."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    instance: str = Field(description="Base URL, e.g. https://mastodon.social")
    access_token: SecretStr | None = None
    hashtags: tuple[str, ...] = Field(default=(), description="Default: every brand's hashtags.")
    start_min_id: str | None = Field(
        default=None,
        description="Without a cursor, page forward from this status id (0 = whole tag history); "
        "unset = start from the newest page.",
    )
    limit: int = Field(default=40, gt=0, le=40)
    poll_interval_s: float = Field(default=30.0, ge=0)
    timeout_s: float = Field(default=30.0, gt=0)


class MastodonConnector(BaseConnector):
    """Pages each hashtag timeline forward (see module docstring)."""

    name: ClassVar[str] = "mastodon"
    settings_model: ClassVar[type[BaseModel]] = MastodonSettings

    def __init__(self, settings: MastodonSettings, brands: BrandMatcher) -> None:
        super().__init__(brands, poll_interval_s=settings.poll_interval_s)
        self.settings = settings
        self.tags = tuple(t.lstrip("#") for t in settings.hashtags) or brands.hashtags()
        if not self.tags:
            raise FatalError("mastodon: no hashtags: set 'hashtags' or give a brand hashtags")
        self.host = urlparse(settings.instance).netloc or settings.instance
        self._next = 0
        self._session: aiohttp.ClientSession | None = None

    async def poll(self, cursor: str | None) -> Batch:
        """Read the next page of the next tag; ``more`` while pages are full or tags remain."""
        state: dict[str, str] = json.loads(cursor) if cursor else {}
        tag = self.tags[self._next]
        statuses = await self._get(tag, state.get(tag, self.settings.start_min_id))
        mentions: list[Mention] = []
        skipped: list[Skipped] = []
        newest = state.get(tag)
        for status in statuses:
            sid = status.get("id") if isinstance(status, dict) else None
            if (
                isinstance(sid, str)
                and sid.isdigit()
                and (newest is None or int(sid) > int(newest))
            ):
                newest = sid
            try:
                mention = _to_mention(self.host, status)
            except SkippableError as exc:
                skipped.append(Skipped(exc.reason, str(exc), repr(status)))
                continue
            if mention is not None:
                mentions.append(mention)
        if newest is not None:
            state[tag] = newest
        full = len(statuses) >= self.settings.limit
        if not full:
            self._next = (self._next + 1) % len(self.tags)
        more = full or self._next != 0
        return Batch(tuple(mentions), json.dumps(state, sort_keys=True), tuple(skipped), more)

    async def _get(self, tag: str, min_id: str | None) -> list[Any]:
        if self._session is None:
            headers = {}
            if self.settings.access_token is not None:
                token = self.settings.access_token.get_secret_value()
                headers["Authorization"] = f"Bearer {token}"
            timeout = aiohttp.ClientTimeout(total=self.settings.timeout_s)
            self._session = aiohttp.ClientSession(timeout=timeout, headers=headers)
        params = {"limit": str(self.settings.limit)}
        if min_id is not None:
            params["min_id"] = min_id
        url = f"{self.settings.instance.rstrip('/')}/api/v1/timelines/tag/{quote(tag)}"
        try:
            async with self._session.get(url, params=params) as response:
                if response.status == 429 and "Retry-After" not in response.headers:
                    reset = parse_time(response.headers.get("X-RateLimit-Reset"))
                    wait = (reset - datetime.now(UTC)).total_seconds() if reset else None
                    raise RetryableError("mastodon: HTTP 429", after=max(0.0, wait or 0.0))
                check_status("mastodon", response.status, response.headers)
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise RetryableError(f"mastodon: {type(exc).__name__}: {exc}") from exc
        if not isinstance(body, list):
            raise RetryableError("mastodon: timeline response is not a JSON array")
        return body

    async def close(self) -> None:
        """Close the HTTP session."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()


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
