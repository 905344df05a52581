"""LinkedIn: comments on the organization page's own recent posts (Community Management API).

Docs: https://learn.microsoft.com/en-us/linkedin/marketing/community-management/shares/posts-api ,
https://learn.microsoft.com/en-us/linkedin/marketing/community-management/shares/comments-api
(its "Get Comments on Comments" for replies).
Approval: the app needs LinkedIn's Community Management API product (Development
tier, then Standard tier after LinkedIn's review), and the token is a 3-legged
member token of a page ADMINISTRATOR (or DIRECT_SPONSORED_CONTENT_POSTER /
CONTENT_ADMIN) with ``r_organization_social`` (``r_organization_social_feed``
in newer versions). Tokens last 60 days: a 401 is fatal and says to
re-authorize; a 403 names the missing role or permission; a 426 means the
``LinkedIn-Version`` (YYYYMM) is no longer served. LinkedIn has no keyword
search of members' posts: only the page's own posts and their comments.
Rate limits: per app and per member per day (shown in the developer portal,
reset at midnight UTC); a 429 waits for ``Retry-After`` when sent, else backs off.
Every request sends ``LinkedIn-Version`` and ``X-Restli-Protocol-Version: 2.0.0``.
Sweep, one call per poll: ``GET /rest/posts?author=<org urn>&q=author&sortBy=
LAST_MODIFIED&count=<posts>`` (the watched posts: re-emitted every sweep so
that replies to them are linked to the brand after a restart; the runner drops
the repeats), then ``GET /rest/socialActions/<post urn>/comments?start=&count=``
page by page for each watched post; after a post's pages, for each of its
comments whose ``commentsSummary.aggregatedTotalComments`` (or
``totalFirstLevelComments``) is above 0 and differs from the count last read,
``GET /rest/socialActions/<comment urn>/comments?start=&count=`` page by page
(its replies: parent = that comment, or ``parentComment`` when given; thread =
the post). LinkedIn nests one level: replies' own summaries are not followed.
A 404 there (the comment was deleted meanwhile) ends that comment's replies.
Cursor (JSON): per watched post, the newest comment time read (ms) and the
comment ids at it, and per comment with replies its reply count and newest
reply time and ids; the sweep in progress (queue of posts and comments, page
start, reply counts seen so far), so a restart resumes mid-sweep. A post's (a
comment's) time only moves after all its pages are read. A post first watched
reads comments of the last ``lookback_s``, a comment first watched its replies
of the last ``lookback_s``.
Not read: posts of members that mention the page. Delivery: at-least-once.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any, ClassVar
from urllib.parse import quote

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from yarl import URL

from listener.brands import BrandMatcher
from listener.connectors.base import BaseConnector, Batch, Skipped, html_to_text, parse_time
from listener.connectors.http import network_error, raise_for_status
from listener.errors import FatalError, RetryableError, SkippableError
from listener.record import Author, Mention

HINTS = {
    401: "the access token expired (they last 60 days) or was revoked: re-authorize",
    403: "the token's member must be an ADMINISTRATOR of the page and the app needs the "
    "Community Management API product with r_organization_social",
    426: "this LinkedIn-Version is no longer served: set 'version' to a current YYYYMM",
}
_MENTION = re.compile(r"@\[([^\]]*)\]\([^)]*\)")
_HASHTAG = re.compile(r"\{hashtag\|\\?#\|([^}]*)\}")


class LinkedInSettings(BaseModel):
    """The ``connectors.linkedin`` config block."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    access_token: SecretStr = Field(description="3-legged token of a page admin (60 days).")
    organization_id: str = Field(pattern=r"^\d+$", description="The page's numeric id.")
    api_url: str = "https://api.linkedin.com/rest"
    version: str = Field(default="202508", pattern=r"^\d{6}$", description="LinkedIn-Version.")
    posts: int = Field(
        default=20, gt=0, le=100, description="Newest posts whose comments are read."
    )
    page_size: int = Field(default=100, gt=0, le=100, description="Comments per request.")
    lookback_s: float = Field(default=7 * 86400.0, ge=0, description="A new post's comments back.")
    poll_interval_s: float = Field(default=300.0, ge=0)
    timeout_s: float = Field(default=30.0, gt=0)


class LinkedInConnector(BaseConnector):
    """Sweeps the page's posts and their comments (see module docstring)."""

    name: ClassVar[str] = "linkedin"
    settings_model: ClassVar[type[BaseModel]] = LinkedInSettings

    def __init__(self, settings: LinkedInSettings, brands: BrandMatcher) -> None:
        super().__init__(brands, poll_interval_s=settings.poll_interval_s)
        self.settings = settings
        self.org = f"urn:li:organization:{settings.organization_id}"
        self._session: aiohttp.ClientSession | None = None

    async def poll(self, cursor: str | None) -> Batch:
        """One call of the sweep: the posts list, or one page of a post's comments or replies."""
        state: dict[str, Any] = json.loads(cursor) if cursor else {"posts": {}}
        mentions: list[Mention] = []
        skipped: list[Skipped] = []
        sweep = state.get("sweep")
        floor = int((time.time() - self.settings.lookback_s) * 1000)
        if sweep is None:
            posts = await self._get(
                f"/posts?author={quote(self.org, safe='')}&q=author&sortBy=LAST_MODIFIED"
                f"&count={self.settings.posts}"
            )
            watched: dict[str, Any] = {}
            for post in posts.get("elements") or []:
                urn = post.get("id") if isinstance(post, dict) else None
                if not isinstance(urn, str) or not urn.startswith("urn:li:"):
                    skipped.append(Skipped("validation", "post without id", str(post)[:10_000]))
                    continue
                watched[urn] = state["posts"].get(urn) or {"seen": floor, "ids": []}
                try:
                    mentions.append(_post_mention(post))
                except SkippableError as exc:
                    skipped.append(Skipped(exc.reason, str(exc), json.dumps(post)[:10_000]))
            state["posts"] = watched
            sweep = {"queue": sorted(watched), "start": 0, "top": None, "top_ids": []}
        elif isinstance(sweep["queue"][0], list):  # [comment urn, post urn, reply count]
            await self._replies(state, sweep, floor, mentions, skipped)
        else:
            urn = sweep["queue"][0]
            entry = state["posts"][urn]
            page = await self._get(
                f"/socialActions/{quote(urn, safe='')}/comments"
                f"?start={sweep['start']}&count={self.settings.page_size}"
            )
            elements = page.get("elements") or []
            threads: dict[str, int] = sweep.setdefault("threads", {})
            for comment in elements:
                self._comment(comment, urn, entry, sweep, mentions, skipped)
                ident, count = _comment_urn(comment, urn), _reply_count(comment)
                if ident is not None and count:
                    threads[ident] = count
            if self._page_done(page, sweep):  # this post is read: move its time
                if sweep["top"] is not None:
                    entry.update(seen=sweep["top"], ids=sorted(set(sweep["top_ids"])))
                jobs = _reply_jobs(urn, entry, sweep.pop("threads", {}))
                sweep.update(queue=jobs + sweep["queue"][1:], start=0, top=None, top_ids=[])
        more = bool(sweep["queue"])
        if more:
            state["sweep"] = sweep
        else:
            state.pop("sweep", None)
        return Batch(tuple(mentions), json.dumps(state, sort_keys=True), tuple(skipped), more)

    async def _replies(
        self,
        state: dict[str, Any],
        sweep: dict[str, Any],
        floor: int,
        mentions: list[Mention],
        skipped: list[Skipped],
    ) -> None:
        """One page of the replies to the comment at the head of the sweep's queue.

        A comment first watched reads replies of the last ``lookback_s`` (``floor``);
        its reply count and newest reply time move after all its pages are read.
        A 404 (the comment was deleted meanwhile) ends its replies.
        """
        comment_urn, urn, count = sweep["queue"][0]
        replies = state["posts"][urn].setdefault("replies", {})
        entry = replies.setdefault(comment_urn, {"n": 0, "seen": floor, "ids": []})
        page = await self._get(
            f"/socialActions/{quote(comment_urn, safe='')}/comments"
            f"?start={sweep['start']}&count={self.settings.page_size}",
            missing_ok=True,
        )
        for reply in page.get("elements") or []:
            self._comment(reply, urn, entry, sweep, mentions, skipped, parent=comment_urn)
        if self._page_done(page, sweep):
            if sweep["top"] is not None:
                entry.update(seen=sweep["top"], ids=sorted(set(sweep["top_ids"])))
            entry["n"] = count
            sweep.update(queue=sweep["queue"][1:], start=0, top=None, top_ids=[])

    def _page_done(self, page: dict[str, Any], sweep: dict[str, Any]) -> bool:
        """Advance ``sweep["start"]`` past ``page``; whether it was the last page."""
        paging = page.get("paging") or {}
        total = paging.get("total") if isinstance(paging.get("total"), int) else 0
        sweep["start"] += self.settings.page_size
        return not page.get("elements") or sweep["start"] >= total

    def _comment(
        self,
        comment: Any,
        urn: str,
        entry: dict[str, Any],
        sweep: dict[str, Any],
        mentions: list[Mention],
        skipped: list[Skipped],
        parent: str | None = None,
    ) -> None:
        """A comment on post ``urn`` (a reply to comment ``parent``) unless read before.

        ``entry`` is the post's (or the parent comment's) newest time read and ids at it.
        """
        created = (comment.get("created") or {}).get("time") if isinstance(comment, dict) else None
        ident = _comment_urn(comment, urn)
        if not isinstance(created, int) or ident is None:
            skipped.append(Skipped("validation", "comment without id or created.time",
                                   json.dumps(comment)[:10_000]))  # fmt: skip
            return
        if created < entry["seen"] or (created == entry["seen"] and ident in entry["ids"]):
            return  # read by an earlier sweep
        if sweep["top"] is None or created > sweep["top"]:
            sweep.update(top=max(created, entry["seen"]), top_ids=[ident])
        elif created == sweep["top"]:
            sweep["top_ids"].append(ident)
        try:
            mentions.append(_comment_mention(comment, ident, urn, parent))
        except SkippableError as exc:
            skipped.append(Skipped(exc.reason, str(exc), json.dumps(comment)[:10_000]))

    async def _get(self, path_and_query: str, *, missing_ok: bool = False) -> dict[str, Any]:
        """GET one Rest.li resource; its JSON object (``{}`` for a 404 when ``missing_ok``).

        Raises:
            FatalError: 401/403/426 (with a hint) or another 4xx.
            RetryableError: 429, 5xx, a network error or a body that is not an object.
        """
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=self.settings.timeout_s)
            headers = {
                "Authorization": f"Bearer {self.settings.access_token.get_secret_value()}",
                "LinkedIn-Version": self.settings.version,
                "X-Restli-Protocol-Version": "2.0.0",
            }
            self._session = aiohttp.ClientSession(timeout=timeout, headers=headers)
        # Rest.li 2.0 wants the URNs percent-encoded; encoded=True keeps "%3A" as sent.
        url = URL(self.settings.api_url.rstrip("/") + path_and_query, encoded=True)
        try:
            async with self._session.get(url) as response:
                if missing_ok and response.status == 404:
                    return {}
                raise_for_status("linkedin", response)
                body = await response.json(content_type=None)
        except FatalError as exc:
            hint = next((h for s, h in HINTS.items() if f"HTTP {s}" in str(exc)), None)
            raise FatalError(f"{exc}: {hint}" if hint else str(exc)) from exc
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise network_error("linkedin", exc) from exc
        if not isinstance(body, dict):
            raise RetryableError("linkedin: answer is not a JSON object")
        return body

    async def close(self) -> None:
        """Close the HTTP session."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def _plain(little: str) -> str:
    r"""LinkedIn's "little text" (``@[Name](urn)``, ``{hashtag|\#|tag}``) as plain text."""
    text = _HASHTAG.sub(
        lambda m: f"#{m.group(1)}", _MENTION.sub(lambda m: f"@{m.group(1)}", little)
    )
    return html_to_text(text)[0]


def _comment_urn(comment: Any, post: str) -> str | None:
    if not isinstance(comment, dict):
        return None
    urn = comment.get("commentUrn")
    if isinstance(urn, str) and urn.startswith("urn:li:comment:"):
        return urn
    ident = comment.get("id")
    return f"urn:li:comment:({post},{ident})" if isinstance(ident, str) and ident else None


def _reply_count(comment: Any) -> int:
    """How many replies ``commentsSummary`` says a comment has (0 if it says nothing)."""
    summary = comment.get("commentsSummary") if isinstance(comment, dict) else None
    if not isinstance(summary, dict):
        return 0
    for key in ("aggregatedTotalComments", "totalFirstLevelComments"):
        count = summary.get(key)
        if isinstance(count, int) and not isinstance(count, bool):
            return max(count, 0)
    return 0


def _reply_jobs(urn: str, entry: dict[str, Any], threads: dict[str, int]) -> list[list[Any]]:
    """The comments of post ``urn`` whose replies to read: their count changed since read.

    ``threads`` maps the post's comments that have replies to their count; the
    post's ``entry`` keeps only those comments' reply state.
    """
    known: dict[str, Any] = entry.pop("replies", None) or {}
    kept = {c: known[c] for c in threads if c in known}
    if kept:
        entry["replies"] = kept
    return [[c, urn, n] for c, n in sorted(threads.items()) if kept.get(c, {}).get("n") != n]


def _post_mention(post: dict[str, Any]) -> Mention:
    """One of the page's own posts (``commentary`` in little text)."""
    when = post.get("publishedAt") or post.get("createdAt")
    return Mention.create(
        source="linkedin",
        native_id=post["id"],
        text=_plain(str(post.get("commentary") or "")),
        created_at=parse_time(when / 1000) if isinstance(when, int) else None,
        url=f"https://www.linkedin.com/feed/update/{post['id']}/",
        author=Author(id=post.get("author") if isinstance(post.get("author"), str) else None),
        signals={"kind": "post"},
    )


def _comment_mention(
    comment: dict[str, Any], ident: str, post: str, parent: str | None = None
) -> Mention:
    """A comment on a watched post: the post is its thread, and its parent unless nested.

    A nested comment (a reply) names its parent in ``parentComment``; one read
    from ``/socialActions/<comment urn>/comments`` without it has ``parent``.
    """
    message = comment.get("message") if isinstance(comment.get("message"), dict) else {}
    named = comment.get("parentComment")
    parent = named if isinstance(named, str) and named else parent
    actor = comment.get("actor")
    url = f"https://www.linkedin.com/feed/update/{post}/?commentUrn="
    if parent:  # LinkedIn's link to a reply: its parent comment, then the reply
        url += f"{quote(parent, safe='')}&replyUrn={quote(ident, safe='')}"
    else:
        url += quote(ident, safe="")
    return Mention.create(
        source="linkedin",
        native_id=ident,
        text=_plain(str((message or {}).get("text") or "")),
        created_at=parse_time(comment["created"]["time"] / 1000),
        url=url,
        author=Author(id=actor if isinstance(actor, str) else None),
        reply_to_id=f"linkedin:{parent or post}",
        thread_id=f"linkedin:{post}",
        signals={"kind": "comment"},
    )
