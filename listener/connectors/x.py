r"""X (Twitter) API v2 filtered stream, with its rules kept in step with the brand config.

Paid: the X API is billed pay-per-use (credits per post read, at the rates the
Developer Console shows; a post read twice in one UTC day is billed once), and
stream recovery (``backfill_minutes``) is for Enterprise only. Spend guard:
``max_posts_per_day`` and ``max_posts_per_month`` stop reading (the stream is
closed, so nothing more is billed) until the next UTC day or month; the runner
logs it and sets ``brandlistener_connector_paused{reason="spend_guard:day|month"}``.
Auth: an app-only bearer token. 401/403 are fatal (also the 403 that means "your
plan has no access to this endpoint").
Rules: on every connect, ``GET /2/tweets/search/stream/rules`` is compared with
the rules built from the brand config (one per brand, tag ``brand-listener:<brand>``:
keywords, "phrases", #hashtags, @handles OR-ed, ``-is:retweet``; or the brand's
entry in ``rules``); stale rules with our tag prefix are deleted and missing ones
added with ``POST /2/tweets/search/stream/rules``. Rules we do not own are left.
Rate limits: rules 450 requests / 15 min, stream 50 connects / 15 min per app; a
429 waits for ``Retry-After`` or ``x-rate-limit-reset`` (epoch seconds).
Stream: ``GET /2/tweets/search/stream`` is newline-delimited JSON; a bare
``\r\n`` is the 20-second keep-alive; no byte for ``stall_s`` means a stalled
connection and a reconnect. ``{"errors": [...]}`` lines (operational disconnects)
are skipped with their reason.
Cursor: the newest tweet id read (informational: the stream cannot resume from
an id) and the posts read this UTC day and month (for the spend guard), as
JSON. A reconnect asks for ``backfill_minutes`` of missed tweets (0-5) when
configured; repeats are dropped by id in the runner. Without it, tweets posted
while disconnected are lost: delivery is at-least-once only within that window.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, ClassVar

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from listener.brands import BrandMatcher
from listener.connectors.base import BaseConnector, Batch, Skipped, parse_time
from listener.connectors.http import raise_for_status, request_json
from listener.errors import FatalError, RetryableError, SkippableError
from listener.record import Author, Mention

TAG_PREFIX = "brand-listener:"
FIELDS = {
    "tweet.fields": (
        "created_at,lang,author_id,conversation_id,referenced_tweets,entities,in_reply_to_user_id"
    ),
    "expansions": "author_id,in_reply_to_user_id",
    "user.fields": "username,name,public_metrics,verified",
}


class XSettings(BaseModel):
    """The ``connectors.x`` config block."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bearer_token: SecretStr
    base_url: str = "https://api.x.com"
    rules: dict[str, str] = Field(default_factory=dict, description="brand -> rule; else built.")
    backfill_minutes: int = Field(default=0, ge=0, le=5, description="On reconnect (Enterprise).")
    max_posts_per_day: int | None = Field(
        default=None, gt=0, description="Spend guard: posts read per UTC day, then pause."
    )
    max_posts_per_month: int | None = Field(
        default=None, gt=0, description="Spend guard: posts read per UTC month, then pause."
    )
    pause_check_s: float = Field(
        default=60.0, gt=0, description="While paused by the guard, how often to look again."
    )
    stall_s: float = Field(default=30.0, gt=0, description="No keep-alive this long: reconnect.")
    batch_max: int = Field(default=200, gt=0)
    batch_wait_s: float = Field(default=1.0, gt=0)
    timeout_s: float = Field(default=30.0, gt=0)


@dataclass(frozen=True, slots=True)
class Spend:
    """Posts read this UTC day and month, and the newest tweet id: the connector's cursor."""

    last: str | None
    day: str
    day_reads: int
    month: str
    month_reads: int

    @classmethod
    def of(cls, cursor: str | None, now: datetime) -> Spend:
        """The cursor's counts, restarted where the UTC day or month has changed.

        A cursor from before the guard (a bare tweet id) starts the counts at 0.
        """
        day, month = now.strftime("%Y-%m-%d"), now.strftime("%Y-%m")
        data: dict[str, Any] = {}
        if cursor and cursor.startswith("{"):
            try:
                data = json.loads(cursor)
            except ValueError:
                data = {}
        last = data.get("last") if data else cursor
        same_day, same_month = data.get("day") == day, data.get("month") == month
        return cls(
            last=str(last) if last else None,
            day=day,
            day_reads=int(data.get("day_reads", 0)) if same_day else 0,
            month=month,
            month_reads=int(data.get("month_reads", 0)) if same_month else 0,
        )

    def read(self, tweet_id: str) -> Spend:
        """After one more post read."""
        return replace(
            self, last=tweet_id, day_reads=self.day_reads + 1, month_reads=self.month_reads + 1
        )

    def over(self, per_day: int | None, per_month: int | None) -> str | None:
        """``spend_guard:month`` or ``spend_guard:day`` when a cap is reached, else None."""
        if per_month is not None and self.month_reads >= per_month:
            return "spend_guard:month"
        if per_day is not None and self.day_reads >= per_day:
            return "spend_guard:day"
        return None

    def room(self, per_day: int | None, per_month: int | None) -> int:
        """Posts that may still be read before a cap (a large number without caps)."""
        left = [10**9]
        if per_day is not None:
            left.append(per_day - self.day_reads)
        if per_month is not None:
            left.append(per_month - self.month_reads)
        return max(0, min(left))

    def encode(self) -> str:
        """The cursor string."""
        return json.dumps(
            {"last": self.last, "day": self.day, "day_reads": self.day_reads,
             "month": self.month, "month_reads": self.month_reads},
            separators=(",", ":"),
        )  # fmt: skip


def brand_rules(brands: BrandMatcher, overrides: dict[str, str]) -> dict[str, str]:
    """Rule tag -> rule value, one per brand (a brand with no terms gets none).

    Raises:
        FatalError: A rule over 512 characters (the Pro limit is 1024; stay portable).
    """
    rules: dict[str, str] = {}
    for brand in brands.settings:
        value = overrides.get(brand.name)
        if value is None:
            terms = [f'"{k}"' if " " in k else k for k in brand.keywords]
            terms += ["#" + t.lstrip("#") for t in brand.hashtags]
            terms += ["@" + h.lstrip("@") for h in brand.handles if "." not in h]
            if not terms:
                continue
            value = f"({' OR '.join(terms)}) -is:retweet"
        if len(value) > 512:
            raise FatalError(f"x: rule for brand {brand.name!r} is over 512 characters")
        rules[TAG_PREFIX + brand.name] = value
    return rules


class XConnector(BaseConnector):
    """Filtered-stream reader (see module docstring)."""

    name: ClassVar[str] = "x"
    settings_model: ClassVar[type[BaseModel]] = XSettings

    def __init__(self, settings: XSettings, brands: BrandMatcher) -> None:
        super().__init__(brands, poll_interval_s=0.0)
        self.settings = settings
        self.rules = brand_rules(brands, settings.rules)
        if not self.rules:
            raise FatalError("x: no rules: give a brand keywords/hashtags/handles or 'rules'")
        self._session: aiohttp.ClientSession | None = None
        self._response: aiohttp.ClientResponse | None = None
        self._connected_once = False
        self._last_byte = 0.0

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            token = self.settings.bearer_token.get_secret_value()
            headers = {"Authorization": f"Bearer {token}", "User-Agent": "brand-listener"}
            self._session = aiohttp.ClientSession(headers=headers)
        return self._session

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        url = self.settings.base_url.rstrip("/") + path
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout_s)
        return await request_json(
            self._client(),
            "x",
            method,
            url,
            timeout=timeout,
            reset_after=_rate_limit_reset,
            **kwargs,
        )

    async def reconcile_rules(self) -> None:
        """Make the server's rules with our tag prefix equal the configured ones.

        Raises:
            FatalError: The server rejected a rule (its message is in the error).
        """
        current = (await self._call("GET", "/2/tweets/search/stream/rules")).get("data") or []
        ours = {r["tag"]: r for r in current if str(r.get("tag", "")).startswith(TAG_PREFIX)}
        stale = [r["id"] for tag, r in ours.items() if self.rules.get(tag) != r.get("value")]
        missing = [
            {"value": value, "tag": tag}
            for tag, value in self.rules.items()
            if tag not in ours or ours[tag].get("value") != value
        ]
        path = "/2/tweets/search/stream/rules"
        if stale:
            await self._call("POST", path, json={"delete": {"ids": stale}})
        if missing:
            answer = await self._call("POST", path, json={"add": missing})
            errors = answer.get("errors") if isinstance(answer, dict) else None
            if errors:
                raise FatalError(f"x: rules rejected: {json.dumps(errors)[:500]}")

    async def _connect(self) -> aiohttp.ClientResponse:
        await self.reconcile_rules()
        params = dict(FIELDS)
        if self._connected_once and self.settings.backfill_minutes:
            params["backfill_minutes"] = str(self.settings.backfill_minutes)
        url = self.settings.base_url.rstrip("/") + "/2/tweets/search/stream"
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.settings.timeout_s)
        try:
            response = await self._client().get(url, params=params, timeout=timeout)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RetryableError(f"x: cannot connect to the stream: {exc}") from exc
        try:
            raise_for_status("x", response, _rate_limit_reset)
        except Exception:
            response.close()
            raise
        self._connected_once = True
        self._last_byte = time.monotonic()
        return response

    async def poll(self, cursor: str | None) -> Batch:
        """Read tweets for up to ``batch_wait_s`` (or ``batch_max`` of them), within the guard.

        Raises:
            RetryableError: Connect failed, 429/5xx, or the stream dropped/stalled with
                nothing read.
        """
        spend = Spend.of(cursor, datetime.now(UTC))
        guard = spend.over(self.settings.max_posts_per_day, self.settings.max_posts_per_month)
        if guard is not None:
            await self._close_stream()  # nothing is billed while it is closed
            await asyncio.sleep(self.settings.pause_check_s)
            return Batch((), spend.encode(), (), more=False, paused=guard)
        if self._response is None:
            self._response = await self._connect()
        mentions: list[Mention] = []
        skipped: list[Skipped] = []
        deadline = time.monotonic() + self.settings.batch_wait_s
        room = spend.room(self.settings.max_posts_per_day, self.settings.max_posts_per_month)
        limit = min(self.settings.batch_max, room)
        while len(mentions) < limit and time.monotonic() < deadline:
            wait = max(0.01, deadline - time.monotonic())
            try:
                line = await asyncio.wait_for(self._response.content.readline(), wait)
            except TimeoutError:
                if time.monotonic() - self._last_byte > self.settings.stall_s:
                    return await self._dropped(mentions, skipped, spend, "stalled")
                break
            except aiohttp.ClientError as exc:
                return await self._dropped(mentions, skipped, spend, str(exc))
            if not line:
                return await self._dropped(mentions, skipped, spend, "stream ended")
            self._last_byte = time.monotonic()
            if not line.strip():
                continue  # keep-alive
            try:
                mention = _to_mention(json.loads(line))
            except ValueError as exc:
                skipped.append(Skipped("decode", f"x: line is not JSON: {exc}", line))
                continue
            except SkippableError as exc:
                skipped.append(Skipped(exc.reason, str(exc), line))
                continue
            mentions.append(mention)
            spend = spend.read(mention.id.split(":", 1)[1])
        return Batch(tuple(mentions), spend.encode(), tuple(skipped), more=True)

    async def _dropped(
        self, mentions: list[Mention], skipped: list[Skipped], spend: Spend, why: str
    ) -> Batch:
        await self._close_stream()
        if not mentions and not skipped:
            raise RetryableError(f"x: stream {why}")
        return Batch(tuple(mentions), spend.encode(), tuple(skipped), more=True)

    async def _close_stream(self) -> None:
        response, self._response = self._response, None
        if response is not None:
            response.close()

    async def close(self) -> None:
        """Close the stream and the session."""
        response, self._response = self._response, None
        if response is not None:
            response.close()
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def _rate_limit_reset(headers: Mapping[str, str]) -> float | None:
    """Seconds until ``x-rate-limit-reset`` (epoch seconds), or None without one."""
    reset = headers.get("x-rate-limit-reset", "")
    wait = float(reset) - time.time() if reset.isdigit() else None
    return None if wait is None else max(0.0, wait)


def _to_mention(message: Any) -> Mention:
    """One stream message ``{"data", "includes", "matching_rules"}`` as a Mention.

    Raises:
        SkippableError: An ``errors`` message, or a tweet without id/text/created_at.
    """
    if not isinstance(message, dict):
        raise SkippableError("decode", "message is not a JSON object")
    tweet = message.get("data")
    if not isinstance(tweet, dict):
        errors = message.get("errors")
        raise SkippableError("stream_error", f"x: {json.dumps(errors)[:300]}")
    tid, text = tweet.get("id"), tweet.get("text")
    if not isinstance(tid, str) or not isinstance(text, str):
        raise SkippableError("validation", "tweet without id or text")
    created = parse_time(tweet.get("created_at")) or datetime.now(UTC)
    users = (message.get("includes") or {}).get("users") or []
    user = _user(users, tweet.get("author_id"))
    handle = user.get("username")
    followers = (user.get("public_metrics") or {}).get("followers_count")
    refs = {r.get("type"): r.get("id") for r in tweet.get("referenced_tweets") or []}
    urls = ((tweet.get("entities") or {}).get("urls")) or []
    links = [u["expanded_url"] for u in urls if isinstance(u.get("expanded_url"), str)]
    return Mention.create(
        source="x",
        native_id=tid,
        text=text,
        created_at=created,
        url=f"https://x.com/{handle or 'i/web'}/status/{tid}",
        lang=tweet.get("lang") if tweet.get("lang") not in (None, "und", "zxx") else None,
        author=Author(
            id=tweet.get("author_id"),
            handle=handle,
            name=user.get("name"),
            followers=followers if isinstance(followers, int) else None,
            url=f"https://x.com/{handle}" if handle else None,
            verified=user.get("verified"),
        ),
        reply_to_id=f"x:{refs['replied_to']}" if refs.get("replied_to") else None,
        thread_id=f"x:{tweet['conversation_id']}" if tweet.get("conversation_id") else None,
        reply_to_author=_parent_author(users, tweet) if refs.get("replied_to") else None,
        signals={
            "links": links,
            "matching_rules": [r.get("tag") for r in message.get("matching_rules") or []],
        },
    )


def _user(users: list[Any], user_id: Any) -> dict[str, Any]:
    """The ``includes.users`` entry of ``user_id`` (``{}`` when not expanded)."""
    return next((u for u in users if isinstance(u, dict) and u.get("id") == user_id), {})


def _parent_author(users: list[Any], tweet: dict[str, Any]) -> Author | None:
    """Who wrote the tweet replied to: ``in_reply_to_user_id``, expanded to its username."""
    parent_id = tweet.get("in_reply_to_user_id")
    if not isinstance(parent_id, str) or not parent_id:
        return None
    handle = _user(users, parent_id).get("username")
    return Author(
        id=parent_id,
        handle=handle if isinstance(handle, str) else None,
        url=f"https://x.com/{handle}" if isinstance(handle, str) else None,
    )
