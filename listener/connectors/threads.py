"""Threads (Meta) API: keyword search for brand terms, and the brand profile's mentions.

Docs: https://developers.facebook.com/docs/threads/keyword-search ,
https://developers.facebook.com/docs/threads/threads-mentions ,
https://developers.facebook.com/docs/threads/reference (media fields, paging).

Reads, per poll, one page of one source:

* ``search:<term>``: ``GET /v1.0/keyword_search?q=<term>&search_type=RECENT&since=..``
  for each term (default: every brand's keywords): the server-side query;
* ``mentions``: ``GET /v1.0/{user_id}/mentions?since=..``: public posts that
  @-mention the brand's profile (replies to the brand's own posts that name
  no brand are not listed there; the runner's own-account context links replies
  to own posts it has seen).

Each post is ``threads:<media id>`` with ``replied_to.id`` as reply_to and
``root_post.id`` (when not the post itself) as thread; author ``username``.
Auth: a long-lived Threads user access token (60 days; refresh it with
``GET /refresh_access_token?grant_type=th_refresh_token`` before it expires: an
expired one is error code 190, fatal here). Approval: ``threads_basic`` plus
``threads_keyword_search`` (without advanced access the search sees only the
token owner's own posts) and ``threads_manage_mentions`` (without it only
mentions by the app's testers); see the README's "Meta app review".
Rate limits: keyword search is 2,200 queries per user per rolling 24 h (queries
with no results are free), so keep ``terms x 86400 / poll_interval_s`` under it;
Graph-style error codes and usage headers as in :mod:`~listener.connectors.meta`.
Cursor: per source a :class:`~listener.connectors.meta.Sweep`: ``since`` (unix),
the ids already read at that second, and mid-sweep ``{"after": paging.cursors.after}``;
a sweep pages with ``after`` while ``paging.next`` is given (up to ``max_pages``),
then ``since`` moves to the newest ``timestamp`` seen. First start: ``lookback_s``.
Backfill depth: whatever ``since`` the API accepts (not before 2023-07-05).
Delivery: at-least-once.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from listener.brands import BrandMatcher
from listener.connectors.base import Skipped
from listener.connectors.meta import (
    GraphSweepConnector,
    Made,
    Sweep,
    attempt,
    build,
    collect,
    native,
    page_items,
)
from listener.errors import FatalError, SkippableError
from listener.record import Author, Mention

FIELDS = (
    "id,text,media_type,permalink,timestamp,username,is_reply,is_quote_post,"
    "has_replies,replied_to,root_post"
)
EARLIEST = 1688540400
"""The oldest ``since`` the Threads API accepts (2023-07-05)."""


class ThreadsSettings(BaseModel):
    """The ``connectors.threads`` config block."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    access_token: SecretStr = Field(description="Long-lived Threads user access token.")
    user_id: str = Field(default="me", description="Threads user id whose mentions to read.")
    base_url: str = "https://graph.threads.net"
    api_version: str = Field(default="v1.0", pattern=r"^v\d+\.\d+$")
    search: bool = Field(default=True, description="Keyword search (threads_keyword_search).")
    terms: tuple[str, ...] = Field(default=(), description="Default: every brand's keywords.")
    mentions: bool = Field(default=True, description="Mentions (threads_manage_mentions).")
    limit: int = Field(default=25, gt=0, le=100)
    max_pages: int = Field(default=10, gt=0, description="Pages per sweep and source.")
    lookback_s: int = Field(default=86_400, ge=0, description="First start reads this far back.")
    rate_limit_wait_s: float = Field(default=900.0, gt=0, description="When no header says.")
    poll_interval_s: float = Field(default=300.0, ge=0)
    timeout_s: float = Field(default=30.0, gt=0)


class ThreadsConnector(GraphSweepConnector):
    """Sweeps keyword searches and mentions (see module docstring)."""

    name: ClassVar[str] = "threads"
    settings_model: ClassVar[type[BaseModel]] = ThreadsSettings
    settings: ThreadsSettings

    def __init__(self, settings: ThreadsSettings, brands: BrandMatcher) -> None:
        super().__init__(settings, brands)
        terms = (settings.terms or brands.search_terms()) if settings.search else ()
        self.sources = tuple(f"search:{t}" for t in terms) + (
            ("mentions",) if settings.mentions else ()
        )
        if not self.sources:
            raise FatalError("threads: nothing to read: enable 'mentions' or give search terms")

    def request(self, source: str, sweep: Sweep) -> tuple[str, dict[str, str]]:
        """The search or the mentions since the sweep's start; mid-sweep with ``after``."""
        s = self.settings
        since = max(EARLIEST, sweep.since)
        root = f"{s.base_url.rstrip('/')}/{s.api_version}"
        params = {"fields": FIELDS, "limit": str(s.limit), "since": str(since)}
        if source == "mentions":
            url = f"{root}/{s.user_id}/mentions"
        else:
            url = f"{root}/keyword_search"
            params.update(q=source.removeprefix("search:"), search_type="RECENT")
        params.update(sweep.page or {})
        return url, params

    def read(
        self, source: str, body: dict[str, Any], sweep: Sweep
    ) -> tuple[list[Mention], list[Skipped], dict[str, str] | None]:
        """The page's posts; the next page is ``paging.cursors.after`` while ``paging.next`` is."""
        data, paging = page_items(body)
        mentions, skipped = collect(data, _made, sweep)
        cursors = paging.get("cursors")
        after = cursors.get("after") if isinstance(cursors, dict) else None
        next_page = {"after": str(after)} if paging.get("next") and after and data else None
        return mentions, skipped, next_page


def _made(post: Any) -> list[Made]:
    """A post and its Mention, or why it is skipped (an image-only post has no text)."""
    return [attempt(post, _to_mention, post)]


def _ref(value: Any) -> str | None:
    return native(value.get("id")) if isinstance(value, dict) else None


def _to_mention(post: Any) -> Mention:
    """A Threads media object as a Mention.

    Raises:
        SkippableError: Not an object, no ``timestamp``, or no text.
    """
    if not isinstance(post, dict) or not isinstance(post.get("timestamp"), str):
        raise SkippableError("validation", "threads: media without a timestamp")
    username = post.get("username") if isinstance(post.get("username"), str) else None
    root = _ref(post.get("root_post"))
    return build(
        "threads",
        post.get("id"),
        post.get("text"),
        post["timestamp"],
        author=Author(
            handle=username, url=f"https://www.threads.net/@{username}" if username else None
        ),
        url=post.get("permalink"),
        reply_to=_ref(post.get("replied_to")),
        thread=root if root != native(post.get("id")) else None,
        signals={"media_type": post.get("media_type"), "is_quote_post": post.get("is_quote_post")},
    )
