"""A Discourse forum: every new post, read forward by post id from ``/posts.json``.

Docs: https://docs.discourse.org/ (posts: "List latest posts across topics").
Why ``/posts.json``: it lists the latest *posts* (not topics) the API user may see,
public categories and, with a key, private ones (no private messages), ordered by
post id descending, 50 a page, with ``before=<id>`` meaning "ids below this".
Post ids are global and increasing, so "ids in (last, last+50]" is one request:
``before=last+51`` returns them all, however few are visible (a page holds 50).
That gives complete, ordered coverage with a one-number cursor. ``/latest.json``
lists topics by last activity and needs a second request per topic plus per-topic
cursors; ``/search.json`` returns blurbs (not whole posts), lags its index and
pages only so deep. Brand matching is done on every post by the runner.
Auth: none for public forums; ``Api-Key`` + ``Api-Username`` headers for private
categories. A rejected key (403 ``invalid_access``) is fatal.
Rate limits: Discourse answers 429 with ``Retry-After`` and ``extras.wait_seconds``
in the JSON body (default 60 requests/min per IP for reads, more for API keys).
Cursor: ``{"last": <post id>}``: every visible post up to it was returned. A window
with no visible post (private messages, deleted posts use ids too) is skipped
only when the newest post id (one ``/posts.json`` without ``before``) is beyond
it. Posts younger than ``settle_s`` wait for the next poll, so a post whose id was
taken before a neighbour's but committed after it is not passed over. First start:
``backfill_ids`` ids before the newest post. Edits and deletions are not re-read.
Threads: the thread is the topic; ``thread_id`` is its first post's Mention id.
``reply_to_post_number`` (or, without one, the first post: a reply to the topic)
names the parent by number; it becomes the parent's post id from the posts already
seen or ``GET /posts/by_number/<topic>/<number>.json`` (cached).
Text: ``cooked`` is HTML, turned into plain text (links kept in ``signals``); the
first post is prefixed with the topic title. Delivery: at-least-once.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, NamedTuple

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from listener.brands import BrandMatcher
from listener.connectors.base import BaseConnector, Batch, Skipped, html_to_text, parse_time
from listener.connectors.http import network_error
from listener.errors import RetryableError, SkippableError
from listener.record import Author, Mention
from listener.retry import check_http_status, retry_after

PAGE = 50
"""Posts per ``/posts.json`` page (Discourse's LatestPostsQuery page size)."""


class DiscourseSettings(BaseModel):
    """The ``connectors.discourse`` config block."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str = Field(description="The forum, e.g. https://community.acme.example")
    api_key: SecretStr | None = Field(default=None, description="For private categories.")
    api_username: str = Field(default="system", description="Sent with api_key.")
    window: int = Field(default=PAGE, gt=0, le=PAGE, description="Post ids per request.")
    backfill_ids: int = Field(default=200, ge=0, description="First start: ids before newest.")
    settle_s: float = Field(default=10.0, ge=0, description="Posts younger wait a poll.")
    poll_interval_s: float = Field(default=60.0, ge=0)
    timeout_s: float = Field(default=30.0, gt=0)


class PostRef(NamedTuple):
    """A post known by its topic and number: its id and its author's username."""

    id: int
    username: str | None


class DiscourseApi:
    """Requests to one forum, with its error kinds, and a cache of (topic, number) -> post id.

    Args:
        source: The connector name (error messages, Mention ids).
        base_url: The forum.
        api_key: Optional API key, sent with ``api_username``.
        api_username: The user the key acts as.
        timeout_s: Per request.
    """

    def __init__(
        self,
        source: str,
        base_url: str,
        api_key: SecretStr | None,
        api_username: str,
        timeout_s: float,
    ) -> None:
        self.source = source
        self.base_url = base_url.rstrip("/")
        self.headers = {"User-Agent": "brand-listener", "Accept": "application/json"}
        if api_key is not None:
            self.headers |= {"Api-Key": api_key.get_secret_value(), "Api-Username": api_username}
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.lookups = bool(self.base_url)
        """Whether :meth:`post_ref` may ask the forum (else only posts seen are known)."""
        self.numbers: OrderedDict[tuple[int, int], PostRef | None] = OrderedDict()
        self._session: aiohttp.ClientSession | None = None

    async def get(self, path: str, params: dict[str, str] | None = None) -> Any:
        """GET a JSON document (None for a 404 on ``/posts/by_number``).

        Raises:
            RetryableError: 429 (``Retry-After`` or ``extras.wait_seconds``), 5xx, network.
            FatalError: A rejected key (403) or another 4xx.
        """
        if self._session is None:
            self._session = aiohttp.ClientSession(headers=self.headers, timeout=self.timeout)
        try:
            async with self._session.get(self.base_url + path, params=params) as response:
                if response.status < 400:
                    return await response.json(content_type=None)
                status, headers, text = response.status, response.headers, await response.text()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise network_error(self.source, exc) from exc
        if status == 404 and path.startswith("/posts/by_number/"):
            return None
        try:
            body = json.loads(text)
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        if status == 429 and retry_after(headers) is None:
            wait = (body.get("extras") or {}).get("wait_seconds")
            after = float(wait) if isinstance(wait, int | float) else None
            raise RetryableError(f"{self.source}: HTTP 429: {text[:200]}", after=after)
        errors = body.get("errors")
        detail = "; ".join(map(str, errors)) if isinstance(errors, list) else text
        check_http_status(self.source, status, headers, detail)

    def remember(self, post: dict[str, Any]) -> None:
        """Cache one post's (topic, number) -> id and author."""
        key = (post.get("topic_id"), post.get("post_number"))
        if isinstance(key[0], int) and isinstance(key[1], int) and isinstance(post.get("id"), int):
            username = post.get("username")
            self.numbers[(key[0], key[1])] = PostRef(
                post["id"], username if isinstance(username, str) and username else None
            )
            self.numbers.move_to_end((key[0], key[1]))
            while len(self.numbers) > 10_000:
                self.numbers.popitem(last=False)

    async def post_ref(self, topic: int, number: int) -> PostRef | None:
        """Id and author of post ``number`` of ``topic`` (None if deleted or not visible)."""
        if (topic, number) not in self.numbers and self.lookups:
            post = await self.get(f"/posts/by_number/{topic}/{number}.json")
            if isinstance(post, dict) and isinstance(post.get("id"), int):
                self.remember(post)
            else:
                self.numbers[(topic, number)] = None
        return self.numbers.get((topic, number))

    async def convert(self, posts: list[Any]) -> tuple[list[Mention], list[Skipped]]:
        """Posts (any order) as Mentions in id order; parents resolved; bad ones skipped."""
        good = [p for p in posts if isinstance(p, dict) and isinstance(p.get("id"), int)]
        for post in good:
            self.remember(post)
        mentions: list[Mention] = []
        skipped = [_skip(p, "post without an integer id") for p in posts if p not in good]
        for post in sorted(good, key=lambda p: p["id"]):
            if post.get("post_type", 1) != 1:
                continue  # moderator actions, small actions, whispers: not public posts
            try:
                mentions.append(await self._mention(post))
            except SkippableError as exc:
                skipped.append(_skip(post, str(exc), exc.reason))
        return mentions, skipped

    async def _mention(self, post: dict[str, Any]) -> Mention:
        topic, number = post.get("topic_id"), post.get("post_number")
        created = parse_time(post.get("created_at"))
        if not isinstance(topic, int) or not isinstance(number, int) or created is None:
            raise SkippableError("validation", "post without topic_id/post_number/created_at")
        first = await self.post_ref(topic, 1) if number > 1 else None
        parent_number = post.get("reply_to_post_number")
        parent = first
        if isinstance(parent_number, int) and number > 1:
            parent = await self.post_ref(topic, parent_number)
        body, links = html_to_text(str(post.get("cooked") or ""))
        title = html_to_text(str(post.get("topic_title") or ""))[0]
        text = f"{title}\n\n{body}" if number == 1 and title else body
        username = post.get("username") if isinstance(post.get("username"), str) else None
        slug = post.get("topic_slug") or "-"
        return Mention.create(
            source=self.source,
            native_id=str(post["id"]),
            text=text,
            created_at=created,
            url=f"{self.base_url}/t/{slug}/{topic}/{number}" if self.base_url else None,
            author=self._author(
                username,
                id=str(post["user_id"]) if isinstance(post.get("user_id"), int) else None,
                name=post.get("name") if isinstance(post.get("name"), str) else None,
            ),
            reply_to_id=f"{self.source}:{parent.id}" if parent else None,
            reply_to_author=self._author(parent.username) if parent and parent.username else None,
            thread_id=f"{self.source}:{first.id}" if first else None,
            signals={
                "links": links,
                "topic_id": topic,
                "post_number": number,
                "topic_title": title,
                "category_id": post.get("category_id"),
            },
        )

    def _author(self, username: str | None, **fields: Any) -> Author:
        """An author known by username (the profile URL needs ``base_url``)."""
        url = f"{self.base_url}/u/{username}" if username and self.base_url else None
        return Author(handle=username, url=url, **fields)

    async def close(self) -> None:
        """Close the HTTP session."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def _skip(post: Any, detail: str, reason: str = "validation") -> Skipped:
    return Skipped(reason, f"discourse: {detail}", json.dumps(post, default=str)[:10_000])


class DiscourseConnector(BaseConnector):
    """Reads a forum's posts forward by id (see module docstring)."""

    name: ClassVar[str] = "discourse"
    settings_model: ClassVar[type[BaseModel]] = DiscourseSettings

    def __init__(self, settings: DiscourseSettings, brands: BrandMatcher) -> None:
        super().__init__(brands, poll_interval_s=settings.poll_interval_s)
        self.settings = settings
        self.api = DiscourseApi(
            self.name, settings.base_url, settings.api_key, settings.api_username,
            settings.timeout_s,
        )  # fmt: skip

    async def _page(self, before: int | None) -> list[Any]:
        body = await self.api.get("/posts.json", {"before": str(before)} if before else None)
        posts = body.get("latest_posts") if isinstance(body, dict) else None
        if not isinstance(posts, list):
            raise RetryableError("discourse: /posts.json has no 'latest_posts' list")
        return posts

    async def _newest(self) -> int:
        ids = [p["id"] for p in await self._page(None) if isinstance(p, dict) and _int(p, "id")]
        return max(ids, default=0)

    async def poll(self, cursor: str | None) -> Batch:
        """Read the next window of post ids after the cursor."""
        last = _last(cursor)
        if last is None:
            last = max(0, await self._newest() - self.settings.backfill_ids)
        top = last + self.settings.window
        posts = [p for p in await self._page(top + 1) if not _int(p, "id") or p["id"] > last]
        settled = datetime.now(UTC) - timedelta(seconds=self.settings.settle_s)
        young = [
            p for p in posts
            if _int(p, "id") and (parse_time(_get(p, "created_at")) or settled) > settled
        ]  # fmt: skip
        if young:  # read them (and what follows) next poll
            wait_from = min(p["id"] for p in young)
            posts = [p for p in posts if _int(p, "id") and p["id"] < wait_from]
        mentions, skipped = await self.api.convert(posts)
        ids = [p["id"] for p in posts if _int(p, "id")]
        if ids:
            return self._batch(mentions, skipped, max(ids), more=not young)
        if young:
            return self._batch(mentions, skipped, last, more=False)
        if await self._newest() > top:  # only invisible ids in this window: step over it
            return self._batch(mentions, skipped, top, more=True)
        return self._batch(mentions, skipped, last, more=False)

    @staticmethod
    def _batch(mentions: list[Mention], skipped: list[Skipped], last: int, more: bool) -> Batch:
        return Batch(tuple(mentions), json.dumps({"last": last}), tuple(skipped), more)

    async def close(self) -> None:
        """Close the HTTP session."""
        await self.api.close()


def _get(post: Any, key: str) -> Any:
    return post.get(key) if isinstance(post, dict) else None


def _int(post: Any, key: str) -> bool:
    value = _get(post, key)
    return isinstance(value, int) and not isinstance(value, bool)


def _last(cursor: str | None) -> int | None:
    if not cursor:
        return None
    try:
        value = json.loads(cursor).get("last")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, int) else None
