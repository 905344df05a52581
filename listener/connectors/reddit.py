"""Reddit: site search or subreddit ``/new`` listings over OAuth, paged forward with ``before``.

Optional: the Data API needs an approved app (script/"web app" credentials) and,
for commercial use, a separate agreement with Reddit.
Auth: OAuth2 client credentials: ``POST /api/v1/access_token`` on www.reddit.com
with HTTP Basic ``client_id:client_secret`` and ``grant_type=client_credentials``
gives a bearer token (``expires_in`` seconds), renewed a minute before expiry
and once after a 401. A rejected client (401 on the token endpoint) is fatal.
Reddit requires a descriptive ``User-Agent`` (``<platform>:<app id>:<version>
(by /u/<username>)``); a generic one gets throttled or blocked, so it is required.
Rate limits: 100 queries/minute per client id, reported in ``X-Ratelimit-Used``,
``X-Ratelimit-Remaining`` and ``X-Ratelimit-Reset`` (seconds to the window's end);
a 429 waits ``Retry-After`` or ``X-Ratelimit-Reset``.
Cursor: ``{source: fullname of the newest item seen}`` per source (``search:<q>``
or ``r/<sub>``). A poll asks ``/search.json?q=..&sort=new`` or ``/r/<sub>/new.json``
with ``before=<fullname>&limit=100``: the items just newer than it, so a full
page means more. Without a cursor the newest page is read, then up to
``backfill_pages`` older pages with ``after=<oldest fullname>`` (the walk is kept
in the cursor as ``~after:<source>``, so a restart goes on with it). If the ``before``
item was deleted Reddit answers an empty listing forever: after
``stale_polls`` empty polls the cursor is dropped for that source (a possible gap,
logged). Delivery: at-least-once.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from listener.brands import BrandMatcher
from listener.connectors.base import BaseConnector, Batch, Skipped, parse_time
from listener.connectors.http import network_error, raise_for_status
from listener.errors import FatalError, RetryableError, SkippableError
from listener.record import Author, Mention

log = logging.getLogger(__name__)


class RedditSettings(BaseModel):
    """The ``connectors.reddit`` config block."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    client_id: str
    client_secret: SecretStr
    user_agent: str = Field(min_length=10, description="<platform>:<app id>:<version> (by /u/x)")
    auth_url: str = "https://www.reddit.com"
    api_url: str = "https://oauth.reddit.com"
    queries: tuple[str, ...] = Field(default=(), description="Default: every brand's keywords.")
    subreddits: tuple[str, ...] = Field(default=(), description="Also read r/<sub>/new.")
    limit: int = Field(default=100, gt=0, le=100)
    backfill_pages: int = Field(
        default=0, ge=0, le=10, description="First start: older pages to read with 'after'."
    )
    stale_polls: int = Field(default=10, gt=0)
    poll_interval_s: float = Field(default=60.0, ge=0)
    timeout_s: float = Field(default=30.0, gt=0)


class RedditConnector(BaseConnector):
    """Pages search and subreddit listings forward (see module docstring)."""

    name: ClassVar[str] = "reddit"
    settings_model: ClassVar[type[BaseModel]] = RedditSettings

    def __init__(self, settings: RedditSettings, brands: BrandMatcher) -> None:
        super().__init__(brands, poll_interval_s=settings.poll_interval_s)
        self.settings = settings
        queries = settings.queries or brands.search_terms()
        self.sources = tuple(f"search:{q}" for q in queries) + tuple(
            f"r/{s.removeprefix('r/')}" for s in settings.subreddits
        )
        if not self.sources:
            raise FatalError("reddit: nothing to read: set 'queries'/'subreddits' or keywords")
        self._next = 0
        self._empty: dict[str, int] = {}
        self._token: str | None = None
        self._expires = 0.0
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=self.settings.timeout_s)
            headers = {"User-Agent": self.settings.user_agent}
            self._session = aiohttp.ClientSession(timeout=timeout, headers=headers)
        return self._session

    async def _authenticate(self) -> str:
        if self._token is not None and time.monotonic() < self._expires:
            return self._token
        secret = self.settings.client_secret.get_secret_value()
        url = self.settings.auth_url.rstrip("/") + "/api/v1/access_token"
        try:
            async with self._client().post(
                url,
                data={"grant_type": "client_credentials"},
                auth=aiohttp.BasicAuth(self.settings.client_id, secret),
            ) as response:
                raise_for_status("reddit", response, _rate_limit_reset)
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise RetryableError(f"reddit: token request failed: {exc}") from exc
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str):
            raise FatalError(f"reddit: no access_token in the answer: {str(body)[:200]}")
        self._token = token
        self._expires = time.monotonic() + max(60.0, float(body.get("expires_in", 3600)) - 60)
        return token

    async def _listing(self, source: str, before: str | None, walk: str | None = None) -> list[Any]:
        params = {"limit": str(self.settings.limit), "raw_json": "1"}
        if before:
            params["before"] = before
        if walk:
            params["after"] = walk.split()[0]
        if source.startswith("search:"):
            path = "/search.json"
            params.update(q=source.removeprefix("search:"), sort="new", type="link")
        else:
            path = f"/{source}/new.json"
        url = self.settings.api_url.rstrip("/") + path
        for attempt in (1, 2):
            token = await self._authenticate()
            headers = {"Authorization": f"bearer {token}"}
            try:
                async with self._client().get(url, params=params, headers=headers) as response:
                    if response.status == 401 and attempt == 1:
                        self._token = None  # expired or revoked: get a new one once
                        continue
                    raise_for_status("reddit", response, _rate_limit_reset)
                    body = await response.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                raise network_error("reddit", exc) from exc
            children = (body.get("data") or {}).get("children") if isinstance(body, dict) else None
            if not isinstance(children, list):
                raise RetryableError("reddit: answer is not a Listing")
            return children
        raise FatalError("reddit: HTTP 401 twice: credentials rejected")

    async def poll(self, cursor: str | None) -> Batch:
        """The next page of the next source; ``more`` while pages are full or sources remain."""
        state: dict[str, str] = json.loads(cursor) if cursor else {}
        source = self.sources[self._next]
        walk = state.get(f"~after:{source}")
        if walk is not None:  # a first-start backfill, walking older pages
            return self._backfill(source, walk, state, await self._listing(source, None, walk))
        first = source not in state
        children = await self._listing(source, state.get(source))
        mentions, skipped = _convert(children)
        names = [c["data"]["name"] for c in children if _has_name(c)]
        if names:
            state[source] = names[0]  # listings are newest first
            self._empty[source] = 0
        elif source in state:
            self._empty[source] = self._empty.get(source, 0) + 1
            if self._empty[source] >= self.settings.stale_polls:
                log.warning(
                    "reddit: %s: cursor %s looks deleted; restarting", source, state[source]
                )
                del state[source]
                self._empty[source] = 0
        full = len(children) >= self.settings.limit
        if first and full and self.settings.backfill_pages and names:
            state[f"~after:{source}"] = f"{names[-1]} {self.settings.backfill_pages}"
            full = True
        return self._batch(mentions, skipped, state, full)

    def _batch(
        self, mentions: list[Mention], skipped: list[Skipped], state: dict[str, str], full: bool
    ) -> Batch:
        if not full:
            self._next = (self._next + 1) % len(self.sources)
        more = full or self._next != 0
        return Batch(tuple(mentions), json.dumps(state, sort_keys=True), tuple(skipped), more)

    def _backfill(
        self, source: str, walk: str, state: dict[str, str], children: list[Any]
    ) -> Batch:
        mentions, skipped = _convert(children)
        names = [c["data"]["name"] for c in children if _has_name(c)]
        pages = int(walk.split()[1]) - 1
        full = len(children) >= self.settings.limit and pages > 0 and bool(names)
        if full:
            state[f"~after:{source}"] = f"{names[-1]} {pages}"
        else:
            del state[f"~after:{source}"]
        return self._batch(mentions, skipped, state, full=True)

    async def close(self) -> None:
        """Close the HTTP session."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def _convert(children: list[Any]) -> tuple[list[Mention], list[Skipped]]:
    mentions: list[Mention] = []
    skipped: list[Skipped] = []
    for child in children:
        try:
            mentions.append(_to_mention(child))
        except SkippableError as exc:
            skipped.append(Skipped(exc.reason, str(exc), json.dumps(child)[:10_000]))
    return mentions, skipped


def _has_name(child: Any) -> bool:
    return isinstance(child, dict) and isinstance((child.get("data") or {}).get("name"), str)


def _rate_limit_reset(headers: Mapping[str, str]) -> float | None:
    """Seconds from ``X-Ratelimit-Reset``, or None without a number."""
    try:
        return max(0.0, float(headers.get("X-Ratelimit-Reset", "")))
    except ValueError:
        return None


def _thing_ref(fullname: Any) -> str | None:
    """A fullname (``t3_abc``, ``t1_def``) as the Mention id it has here (``reddit:t3_abc``)."""
    return f"reddit:{fullname}" if isinstance(fullname, str) and fullname else None


def _parent_author(comment: dict[str, Any]) -> Author | None:
    """Who wrote the thing a comment answers, where the listing says.

    A comment directly under the submission (``parent_id`` ``t3_...``) answers
    ``link_author``, which comment listings carry; a reply to another comment
    names only that comment, not its author: ``None``.
    """
    parent, author = comment.get("parent_id"), comment.get("link_author")
    if not (isinstance(parent, str) and parent.startswith("t3_")):
        return None
    if not isinstance(author, str) or not author or author == "[deleted]":
        return None
    return Author(handle=author, url=f"https://www.reddit.com/user/{author}")


def _to_mention(child: Any) -> Mention:
    """A listing child (``t3`` link/self post or ``t1`` comment) as a Mention.

    Raises:
        SkippableError: Not a post or comment, or one without a name or time.
    """
    if not isinstance(child, dict) or child.get("kind") not in ("t1", "t3"):
        raise SkippableError("validation", "listing child is not a t1/t3 thing")
    data = child.get("data") or {}
    name, created = data.get("name"), parse_time(data.get("created_utc"))
    if not isinstance(name, str) or created is None:
        raise SkippableError("validation", "thing without name or created_utc")
    if child["kind"] == "t3":
        text = "\n\n".join(p for p in (data.get("title"), data.get("selftext")) if p)
    else:
        text = str(data.get("body") or "")
    author = data.get("author")
    author = author if isinstance(author, str) and author != "[deleted]" else None
    link = data.get("url_overridden_by_dest") or data.get("url")
    permalink = data.get("permalink")
    return Mention.create(
        source="reddit",
        native_id=name,
        text=text,
        created_at=created,
        url=f"https://www.reddit.com{permalink}" if permalink else None,
        author=Author(
            id=data.get("author_fullname"),
            handle=author,
            url=f"https://www.reddit.com/user/{author}" if author else None,
        ),
        reply_to_id=_thing_ref(data.get("parent_id")),
        reply_to_author=_parent_author(data) if child["kind"] == "t1" else None,
        thread_id=_thing_ref(data.get("link_id")) if child["kind"] == "t1" else None,
        signals={
            "subreddit": data.get("subreddit"),
            "links": [link] if isinstance(link, str) and not data.get("is_self") else [],
        },
    )
