"""Tumblr: public posts with a brand's tags, from API v2 ``GET /v2/tagged``, paged backwards.

Docs: https://www.tumblr.com/docs/en/api/v2#tagged--get-posts-with-tag
Auth: API key (the app's OAuth consumer key, free from
https://www.tumblr.com/oauth/apps), sent as ``api_key``; a 401 (``meta.status``
401, "Unauthorized") is fatal. Rate limits: 300 calls/minute and 18,000/hour per
consumer key (5,000/day for a new, unregistered-for-more app); a 429 waits for
``Retry-After``, else for the ``X-Ratelimit-Perhour-Reset`` /
``X-Ratelimit-Perday-Reset`` seconds of the exhausted window. 5xx is retried.
Read: ``/v2/tagged?tag=<tag>&filter=text&limit=<n>[&before=<unix>]`` per tag
(default: every brand's hashtags and keywords; Tumblr tags may hold spaces).
Answers are newest first and the only paging is ``before`` (older than a
timestamp); there is no "newer than" parameter.
Cursor, per tag (JSON): ``floor`` (unix seconds) and ``floor_ids`` (the post ids
read at that second): everything older than ``floor``, and those ids at it, is
read. A poll walks the tag from now backwards, one page per poll, with
``before`` = the oldest second reached + 1 (ids already read at that second are
dropped, so posts sharing a second across a page boundary are neither lost nor
repeated), until it reaches ``floor`` or the tag's end; then ``floor`` becomes
the walk's newest second (``top``). The walk in progress (``top``, ``top_ids``,
``before``, ``before_ids``) is kept in the cursor too, so a restart mid-walk
goes on where it stopped: nothing between the old floor and the walk is
skipped, and nothing read is read again. Posts arriving during a walk are
newer than ``top`` and are read by the next walk. The first walk of a tag
goes back ``lookback_s``. Featured tags are ordered by ``featured_timestamp``
instead (Tumblr's docs); brand tags are not featured, and such a walk ends
early (at worst a post is missed).
Text: ``filter=text`` asks for plain text; whatever comes back is still passed
through the HTML stripper. Legacy fields (title, body, caption, text, quote
source, link description, question/answer) or NPF ``content`` text blocks; tags
are appended as ``#tag`` (on Tumblr tags are how people mention a brand).
Reblogs: ``reblogged_from_id`` is the parent, ``reblogged_root_id`` the thread.
Delivery: at-least-once.
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
from listener.connectors.base import BaseConnector, Batch, Skipped, html_to_text, parse_time
from listener.connectors.http import request_json
from listener.errors import FatalError, RetryableError, SkippableError
from listener.record import Author, Mention
from listener.retry import check_http_status

log = logging.getLogger(__name__)

LEGACY_FIELDS = ("title", "body", "caption", "text", "source", "description", "question", "answer")
"""Legacy post fields that hold text, in reading order (by post type)."""


class TumblrSettings(BaseModel):
    """The ``connectors.tumblr`` config block."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    api_key: SecretStr = Field(description="The app's OAuth consumer key.")
    base_url: str = "https://api.tumblr.com"
    tags: tuple[str, ...] = Field(
        default=(), description="Tags to read; default: every brand's hashtags and keywords."
    )
    limit: int = Field(default=20, gt=0, le=20, description="Posts per page (Tumblr: 1-20).")
    lookback_s: float = Field(default=3600.0, ge=0, description="How far back a first walk goes.")
    poll_interval_s: float = Field(default=60.0, ge=0)
    timeout_s: float = Field(default=30.0, gt=0)


class TumblrConnector(BaseConnector):
    """Walks each tag's ``/v2/tagged`` backwards to the cursor (see module docstring)."""

    name: ClassVar[str] = "tumblr"
    settings_model: ClassVar[type[BaseModel]] = TumblrSettings

    def __init__(self, settings: TumblrSettings, brands: BrandMatcher) -> None:
        super().__init__(brands, poll_interval_s=settings.poll_interval_s)
        self.settings = settings
        raw = settings.tags or (*brands.hashtags(), *brands.search_terms())
        self.tags = tuple(dict.fromkeys(t.strip().lstrip("#") for t in raw if t.strip("# ")))
        if not self.tags:
            raise FatalError("tumblr: no tags: set 'tags' or give a brand hashtags or keywords")
        self._next = 0
        self._session: aiohttp.ClientSession | None = None

    async def poll(self, cursor: str | None) -> Batch:
        """One page of the current tag's walk; ``more`` until every tag has caught up."""
        state: dict[str, Any] = json.loads(cursor) if cursor else {}
        tag = self.tags[self._next]
        entry = dict(state.get(tag) or {"floor": int(time.time() - self.settings.lookback_s)})
        floor, floor_ids = int(entry["floor"]), set(entry.get("floor_ids", ()))
        walk = entry.get("walk")
        posts = await self._tagged(tag, walk["before"] + 1 if walk else None)
        mentions: list[Mention] = []
        skipped: list[Skipped] = []
        fresh: list[tuple[int, str]] = []
        reached = False
        for post in posts:
            stamp, ident = _stamp(post), _ident(post)
            if stamp is None or ident is None:
                skipped.append(Skipped("validation", "post without id_string or timestamp",
                                       json.dumps(post)[:10_000]))  # fmt: skip
                continue
            if stamp < floor or (stamp == floor and ident in floor_ids):
                reached = True  # everything from here on was read by an earlier walk
                continue
            if walk and (
                stamp > walk["before"] or (stamp == walk["before"] and ident in walk["before_ids"])
            ):
                continue  # read on the previous page of this walk
            fresh.append((stamp, ident))
            try:
                mentions.append(_to_mention(post))
            except SkippableError as exc:
                skipped.append(Skipped(exc.reason, str(exc), json.dumps(post)[:10_000]))
        full = len(posts) >= self.settings.limit
        if walk and full and not fresh and not reached:  # a whole page of one second, all read
            log.warning("tumblr: #%s: a full page of one second; skipping the rest of it", tag)
            walk = {**walk, "before": walk["before"] - 1, "before_ids": []}
        else:
            walk = _advance(walk, fresh)
        done = reached or not full or walk is None
        if done:
            if walk is not None:
                same = walk["top"] == floor
                entry["floor"] = walk["top"]
                entry["floor_ids"] = sorted(set(walk["top_ids"]) | (floor_ids if same else set()))
            entry.pop("walk", None)
            self._next = (self._next + 1) % len(self.tags)
        else:
            entry["walk"] = walk
        state[tag] = entry
        more = not done or self._next != 0
        return Batch(tuple(mentions), json.dumps(state, sort_keys=True), tuple(skipped), more)

    async def _tagged(self, tag: str, before: int | None) -> list[Any]:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=self.settings.timeout_s)
            self._session = aiohttp.ClientSession(timeout=timeout)
        params = {
            "tag": tag,
            "api_key": self.settings.api_key.get_secret_value(),
            "filter": "text",
            "limit": str(self.settings.limit),
        }
        if before is not None:
            params["before"] = str(before)
        url = self.settings.base_url.rstrip("/") + "/v2/tagged"
        try:
            body = await request_json(
                self._session, "tumblr", "GET", url, params=params, reset_after=_reset_after
            )
        except FatalError as exc:
            raise FatalError(f"{exc}: is 'api_key' the app's OAuth consumer key?") from exc
        meta = body.get("meta") if isinstance(body, dict) else None
        if isinstance(meta, dict) and isinstance(meta.get("status"), int):
            # an error told in the envelope only (HTTP 200)
            check_http_status("tumblr", meta["status"], {}, str(meta.get("msg") or ""))
        posts = body.get("response") if isinstance(body, dict) else None
        if not isinstance(posts, list):
            raise RetryableError("tumblr: answer has no 'response' array of posts")
        return posts

    async def close(self) -> None:
        """Close the HTTP session."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def _advance(walk: dict[str, Any] | None, fresh: list[tuple[int, str]]) -> dict[str, Any] | None:
    """The walk after a page whose new posts are ``fresh`` ((timestamp, id), newest first)."""
    if not fresh:
        return walk
    oldest = min(s for s, _ in fresh)
    at_oldest = [i for s, i in fresh if s == oldest]
    if walk is None:
        top = max(s for s, _ in fresh)
        return {"top": top, "top_ids": sorted(i for s, i in fresh if s == top),
                "before": oldest, "before_ids": sorted(at_oldest)}  # fmt: skip
    kept = walk["before_ids"] if oldest == walk["before"] else []
    return {**walk, "before": oldest, "before_ids": sorted({*kept, *at_oldest})}


def _reset_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to the reset of the exhausted hour/day window (or the hour's), else None."""
    resets: list[float] = []
    for window in ("Perday", "Perhour"):
        try:
            reset = float(headers.get(f"X-Ratelimit-{window}-Reset", ""))
        except ValueError:
            continue
        if headers.get(f"X-Ratelimit-{window}-Remaining") == "0":
            return max(0.0, reset)
        resets.append(max(0.0, reset))
    return resets[-1] if resets else None


def _stamp(post: Any) -> int | None:
    value = post.get("timestamp") if isinstance(post, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _ident(post: Any) -> str | None:
    value = post.get("id_string") if isinstance(post, dict) else None
    if not value and isinstance(post, dict) and isinstance(post.get("id"), int):
        value = str(post["id"])
    return value if isinstance(value, str) and value.isdigit() else None


def _ref(value: Any) -> str | None:
    """A reblog's ``reblogged_from_id`` / ``_root_id`` as a Mention id."""
    return f"tumblr:{value}" if isinstance(value, str | int) and str(value).isdigit() else None


def _text(post: dict[str, Any]) -> tuple[str, list[str]]:
    """Plain text of a post (NPF text blocks, else the legacy fields) and its links."""
    parts: list[str] = []
    links: list[str] = []
    content = post.get("content")
    if isinstance(content, list) and content:
        for block in content:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text" and isinstance(block.get("text"), str):
                parts.append(block["text"])
            elif block.get("type") == "link" and isinstance(block.get("url"), str):
                links.append(block["url"])
                parts.extend(str(block[k]) for k in ("title", "description") if block.get(k))
    else:
        parts = [str(post[k]) for k in LEGACY_FIELDS if isinstance(post.get(k), str) and post[k]]
        if post.get("type") == "link" and isinstance(post.get("url"), str):
            links.append(post["url"])
        if not parts and isinstance(post.get("summary"), str):
            parts.append(post["summary"])
    text_parts: list[str] = []
    for part in parts:
        plain, found = html_to_text(part)  # filter=text should be plain; trust nothing
        links.extend(found)
        if plain:
            text_parts.append(plain)
    tags = [f"#{t}" for t in post.get("tags") or () if isinstance(t, str) and t.strip()]
    if tags:
        text_parts.append(" ".join(tags))
    return "\n\n".join(text_parts), links


def _to_mention(post: dict[str, Any]) -> Mention:
    """A tagged post as a Mention.

    Raises:
        SkippableError: No text, or fields that do not make a valid Mention.
    """
    ident = _ident(post)
    text, links = _text(post)
    if ident is None or not text.strip():
        raise SkippableError("validation", f"post {ident}: no text")
    raw_blog = post.get("blog")
    blog: dict[str, Any] = raw_blog if isinstance(raw_blog, dict) else {}
    name = post.get("blog_name") or blog.get("name")
    name = name if isinstance(name, str) and name else None
    url = post.get("post_url")
    return Mention.create(
        source="tumblr",
        native_id=ident,
        text=text,
        created_at=parse_time(post.get("timestamp")),
        url=url if isinstance(url, str) and url.startswith(("https://", "http://")) else None,
        author=Author(
            id=blog.get("uuid") if isinstance(blog.get("uuid"), str) else name,
            handle=name,
            name=blog.get("title") if isinstance(blog.get("title"), str) else None,
            url=f"https://{name}.tumblr.com/" if name else None,
        ),
        reply_to_id=_ref(post.get("reblogged_from_id")),
        thread_id=_ref(post.get("reblogged_root_id")),
        signals={
            "links": links,
            "tags": [t for t in post.get("tags") or () if isinstance(t, str)],
            "post_type": post.get("type"),
            "note_count": post.get("note_count"),
        },
    )
