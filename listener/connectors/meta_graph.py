"""Meta Graph API poll: a Facebook Page's feed and an Instagram account's media comments.

The backfill beside :mod:`~listener.connectors.meta_webhook`: after downtime (or
without a public callback URL) it reads what the webhook would have pushed.
Docs: https://developers.facebook.com/docs/graph-api/reference/page/feed ,
https://developers.facebook.com/docs/instagram-platform/reference/instagram-user/media ,
https://developers.facebook.com/docs/graph-api/results (paging).

Reads, per poll, one page of one source:

* ``facebook``: ``GET /{page-id}/feed?fields=id,message,created_time,from,permalink_url,
  comments.filter(stream).limit(N){id,message,created_time,from,parent{id},permalink_url}
  &since=<unix>``: posts (``facebook:<post id>``) and their comments
  (``facebook:<comment id>``, reply_to ``parent.id`` else the post, thread the post);
* ``instagram``: ``GET /{ig-user-id}/media?fields=id,caption,timestamp,username,permalink,
  comments.limit(N){id,text,timestamp,username,from,replies{...}}``: captions
  (``instagram:<media id>``), comments (reply_to and thread the media) and
  replies (reply_to the comment, thread the media). The media edge lists media
  newest first whatever their comments' age, so comments are kept by their own
  ``timestamp`` and up to ``max_pages`` pages of media are read per sweep.

Auth: a Page access token (``access_token=`` on every call; never stored in
the cursor). Approval: ``pages_read_engagement`` + ``pages_read_user_content``
for the feed, ``instagram_basic`` + ``instagram_manage_comments`` for Instagram
(advanced access through Meta app review; README, "Meta app review").
Errors and rate limits: :mod:`~listener.connectors.meta` (code 190 is fatal;
codes 4/17/32/613/80001-80014 wait ``estimated_time_to_regain_access`` from
``X-Business-Use-Case-Usage``, else ``rate_limit_wait_s``; 5xx retry).
Cursor: per source a :class:`~listener.connectors.meta.Sweep`: ``since`` (unix),
the ids already read at that second, and mid-sweep the query of ``paging.next``
(minus the token); a sweep follows ``paging.next`` to the end (or
``max_pages``), then ``since`` moves to the newest time seen; first start reads
``lookback_s`` back. Backfill depth: the feed from
``since``; comments: the first ``comments_limit`` per post/media, on the posts
of the sweep (comments on a Page post older than ``since`` come by webhook only).
Delivery: at-least-once.
"""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from listener.brands import BrandMatcher
from listener.connectors.base import Skipped, parse_time
from listener.connectors.meta import (
    GRAPH_API_VERSION,
    GRAPH_URL,
    GraphSweepConnector,
    Made,
    Sweep,
    attempt,
    build,
    check_owner_brands,
    collect,
    fb_author,
    ig_author,
    owned_by,
    page_items,
)
from listener.errors import FatalError, SkippableError
from listener.record import Mention

FB_COMMENT = "id,message,created_time,from,parent{id},permalink_url"
IG_COMMENT = "id,text,timestamp,username,from"


class MetaGraphSettings(BaseModel):
    """The ``connectors.meta_graph`` config block."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    access_token: SecretStr = Field(description="A long-lived Page access token.")
    page_id: str | None = Field(default=None, description="Facebook Page to read.")
    ig_user_id: str | None = Field(default=None, description="Instagram professional account.")
    brand: str | None = Field(
        default=None,
        description="The configured brand the Page/account belongs to: everything read here is "
        "its mention, named or not (unset: kept only when the text names a brand).",
    )
    base_url: str = GRAPH_URL
    api_version: str = Field(default=GRAPH_API_VERSION, pattern=r"^v\d+\.\d+$")
    limit: int = Field(default=25, gt=0, le=100, description="Posts/media per page.")
    comments_limit: int = Field(default=100, gt=0, le=500)
    max_pages: int = Field(default=10, gt=0, description="Pages per sweep and source.")
    lookback_s: int = Field(default=86_400, ge=0, description="First start reads this far back.")
    rate_limit_wait_s: float = Field(default=600.0, gt=0, description="When no header says.")
    poll_interval_s: float = Field(default=300.0, ge=0)
    timeout_s: float = Field(default=30.0, gt=0)


class MetaGraphConnector(GraphSweepConnector):
    """Sweeps the Page feed and the Instagram media (see module docstring)."""

    name: ClassVar[str] = "meta_graph"
    settings_model: ClassVar[type[BaseModel]] = MetaGraphSettings
    settings: MetaGraphSettings

    def __init__(self, settings: MetaGraphSettings, brands: BrandMatcher) -> None:
        super().__init__(settings, brands)
        self.sources = tuple(
            s
            for s, on in (("facebook", settings.page_id), ("instagram", settings.ig_user_id))
            if on
        )
        if not self.sources:
            raise FatalError("meta_graph: set page_id and/or ig_user_id")
        if settings.brand is not None:
            check_owner_brands(self.name, {"page_id/ig_user_id": settings.brand}, brands)

    def request(self, source: str, sweep: Sweep) -> tuple[str, dict[str, str]]:
        """The feed or media edge since the sweep's start; mid-sweep, ``paging.next``'s query."""
        s = self.settings
        root = f"{s.base_url.rstrip('/')}/{s.api_version}"
        if source == "facebook":
            comments = f"comments.filter(stream).limit({s.comments_limit}){{{FB_COMMENT}}}"
            fields = f"id,message,created_time,from,permalink_url,{comments}"
            params = {"fields": fields, "limit": str(s.limit), "since": str(sweep.since)}
            url = f"{root}/{s.page_id}/feed"
        else:
            comments = f"comments.limit({s.comments_limit}){{{IG_COMMENT},replies{{{IG_COMMENT}}}}}"
            fields = f"id,caption,timestamp,username,permalink,{comments}"
            params = {"fields": fields, "limit": str(s.limit)}
            url = f"{root}/{s.ig_user_id}/media"
        return url, dict(sweep.page) if sweep.page else params

    def read(
        self, source: str, body: dict[str, Any], sweep: Sweep
    ) -> tuple[list[Mention], list[Skipped], dict[str, str] | None]:
        """Posts and comments (or media, comments, replies) of the page; ``paging.next``."""
        data, paging = page_items(body)
        mentions, skipped = collect(data, _facebook if source == "facebook" else _instagram, sweep)
        mentions = [owned_by(m, self.settings.brand) for m in mentions]
        return mentions, skipped, _next_params(paging.get("next") if data else None)


def _next_params(url: Any) -> dict[str, str] | None:
    """The query of a ``paging.next`` URL without the token (it is re-added per call)."""
    if not isinstance(url, str) or not url:
        return None
    params = {k: v for k, v in parse_qsl(urlsplit(url).query) if k != "access_token"}
    return params or None


def _stamp(value: Any) -> int | None:
    when = parse_time(value)
    return int(when.timestamp()) if when is not None else None


def _edge(item: dict[str, Any], name: str) -> list[Any]:
    """The ``data`` list of a nested edge (``comments``, ``replies``), or []."""
    edge = item.get(name)
    data = edge.get("data") if isinstance(edge, dict) else None
    return data if isinstance(data, list) else []


def _try(raw: Any, *args: Any, **kwargs: Any) -> Made:
    """``raw`` and the Mention :func:`~listener.connectors.meta.build` makes of it, or why not."""
    return attempt(raw, build, *args, **kwargs)


def _facebook(post: Any) -> list[Made]:
    """A feed post and its comments."""
    if not isinstance(post, dict) or _stamp(post.get("created_time")) is None:
        return [(post, SkippableError("validation", "facebook: post without created_time"))]
    post_id = post.get("id")
    out = [
        _try(post, "facebook", post_id, post.get("message"), post.get("created_time"),
             author=fb_author(post.get("from")), url=post.get("permalink_url"))
    ]  # fmt: skip
    for c in _edge(post, "comments"):
        if not isinstance(c, dict) or _stamp(c.get("created_time")) is None:
            out.append((c, SkippableError("validation", "facebook: comment without created_time")))
            continue
        parent = (c.get("parent") or {}).get("id") if isinstance(c.get("parent"), dict) else None
        out.append(
            _try(c, "facebook", c.get("id"), c.get("message"), c.get("created_time"),
                 author=fb_author(c.get("from")), url=c.get("permalink_url"),
                 reply_to=parent or post_id, thread=post_id)
        )  # fmt: skip
    return out


def _instagram(media: Any) -> list[Made]:
    """A media caption, its comments and their replies."""
    if not isinstance(media, dict) or _stamp(media.get("timestamp")) is None:
        return [(media, SkippableError("validation", "instagram: media without timestamp"))]
    media_id = media.get("id")
    out = [
        _try(media, "instagram", media_id, media.get("caption"), media.get("timestamp"),
             author=ig_author(media.get("username")), url=media.get("permalink"))
    ]  # fmt: skip
    for c in _edge(media, "comments"):
        if not isinstance(c, dict) or _stamp(c.get("timestamp")) is None:
            out.append((c, SkippableError("validation", "instagram: comment without timestamp")))
            continue
        out.append(
            _try(c, "instagram", c.get("id"), c.get("text"), c.get("timestamp"),
                 author=ig_author(c.get("username"), c.get("from")),
                 reply_to=media_id, thread=media_id)
        )  # fmt: skip
        for r in _edge(c, "replies"):
            if not isinstance(r, dict) or _stamp(r.get("timestamp")) is None:
                out.append((r, SkippableError("validation", "instagram: reply without timestamp")))
                continue
            out.append(
                _try(r, "instagram", r.get("id"), r.get("text"), r.get("timestamp"),
                     author=ig_author(r.get("username"), r.get("from")),
                     reply_to=c.get("id"), thread=media_id)
            )  # fmt: skip
    return out
