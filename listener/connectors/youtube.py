"""YouTube Data API v3: new videos that match the brands, and comments on them and on channels.

Docs: https://developers.google.com/youtube/v3/docs/search/list ,
https://developers.google.com/youtube/v3/docs/commentThreads/list ,
https://developers.google.com/youtube/v3/docs/comments/list , quota costs
https://developers.google.com/youtube/v3/determine_quota_cost .

Auth: an API key (``key=``) and/or an OAuth 2.0 access token (``Authorization:
Bearer``). A rejected key (400 ``API key not valid`` / ``keyInvalid``) or any other
auth/request error is fatal.
What is read, one source per poll (the runner polls again at once until the round
is done): ``search.list`` (``type=video``, ``order=date``, ``q`` = the brand
keywords OR-ed with ``|``, ``publishedAfter`` = the newest video seen) finds new
videos; each becomes a Mention and is *tracked* for ``track_days``, during which
its ``commentThreads.list?videoId=`` is read; ``channel_ids`` (the brand's own
channels) are read with ``allThreadsRelatedToChannelId=``. Threads come newest
first (``order=time``) with ``part=snippet,replies`` and ``textFormat=plainText``;
paging stops at the first thread older than the source's cursor. A thread's
``replies`` carries at most 5 replies; when its ``snippet.totalReplyCount`` is
higher, all its replies are listed with ``comments.list`` (``parentId=<thread id>``,
``part=snippet``, ``textFormat=plainText``, ``pageToken`` paging, at most
``max_reply_pages`` pages) and those not carried (by comment id) are added, with
the same parent and thread as carried ones. The count is kept in the cursor: a
thread is listed again only when its count changes. A 404 from ``comments.list``
(the thread was deleted meanwhile) loses that thread's other replies, not the video.
Search is YouTube's index, not a firehose: it may miss or delay some videos.
Quota: search costs 100 units a page, commentThreads and comments 1. ``daily_quota_units``
(default 10,000, YouTube's default project quota) is counted in the cursor per
quota day. YouTube resets quotas at midnight Pacific Time, so the day here is
UTC-8 (never earlier than Google's reset, an hour late during daylight time).
When the next call would exceed the budget, or YouTube answers 403
``quotaExceeded``/``dailyLimitExceeded``, the connector pauses until the next day:
``Batch.paused = "quota:day"``, which the runner logs once and publishes as
``brandlistener_connector_paused{reason="quota:day"}``; the units used are
``brandlistener_connector_quota_used_units``.
Errors: 403 ``commentsDisabled`` or 404 on a video: that video is dropped (not an
error). 429/5xx: RetryableError (with Retry-After when sent).
Cursor (JSON): quota day and units, ``after`` (search publishedAfter), a search
page walk in progress, tracked videos, the newest comment time per source and,
per source, the ``totalReplyCount`` of its threads with replies not carried.
Search indexes a video some time after it is published, so each search goes back
``search_overlap_minutes`` before the newest video seen; a video still tracked is not
emitted again. Delivery: at-least-once.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, ClassVar

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from listener.brands import BrandMatcher
from listener.connectors.base import BaseConnector, Batch, Skipped, html_to_text, parse_time
from listener.connectors.http import network_error
from listener.errors import FatalError, RetryableError, SkippableError
from listener.record import Author, Mention
from listener.retry import check_http_status

log = logging.getLogger(__name__)

SEARCH_COST, THREADS_COST, COMMENTS_COST = 100, 1, 1
COSTS = {"/search": SEARCH_COST, "/commentThreads": THREADS_COST, "/comments": COMMENTS_COST}
QUOTA_DAY = timezone(timedelta(hours=-8), "PST")
QUOTA_REASONS = frozenset({"quotaExceeded", "dailyLimitExceeded"})
GONE_REASONS = frozenset({"commentsDisabled", "videoNotFound", "channelNotFound"})


class YoutubeSettings(BaseModel):
    """The ``connectors.youtube`` config block."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    api_key: SecretStr | None = None
    oauth_token: SecretStr | None = Field(default=None, description="OAuth 2.0 access token.")
    base_url: str = "https://www.googleapis.com/youtube/v3"
    query: str | None = Field(default=None, description="search q; default: brand keywords.")
    search: bool = Field(default=True, description="Find new videos with search.list.")
    channel_ids: tuple[str, ...] = Field(default=(), description="Read all their comments.")
    daily_quota_units: int = Field(default=10_000, gt=0)
    max_results: int = Field(default=50, gt=0, le=50, description="Per page (search max 50).")
    max_search_pages: int = Field(default=2, gt=0, description="Search pages per poll.")
    max_comment_pages: int = Field(default=5, gt=0, description="Thread pages per source.")
    max_reply_pages: int = Field(
        default=5, gt=0, description="comments.list pages per thread with uncarried replies."
    )
    track_days: float = Field(default=7.0, ge=0, description="Read a found video's comments.")
    max_tracked_videos: int = Field(default=50, ge=0)
    lookback_hours: float = Field(default=24.0, ge=0, description="First search goes back.")
    search_overlap_minutes: float = Field(
        default=60.0, ge=0, description="Search again this far before the newest video."
    )
    poll_interval_s: float = Field(default=900.0, ge=0)
    timeout_s: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _credentials(self) -> YoutubeSettings:
        if self.api_key is None and self.oauth_token is None:
            raise ValueError("set api_key or oauth_token")
        return self


class _QuotaExhausted(Exception):
    """The day's budget is spent: ours (``daily_quota_units``) or, by YouTube's answer, theirs."""

    def __init__(self, message: str, *, ours: bool) -> None:
        super().__init__(message)
        self.ours = ours


class _Gone(Exception):
    """The video has comments disabled or no longer exists."""


def quota_day(now: datetime) -> str:
    """The quota day of ``now`` (YouTube resets at midnight Pacific; see module docstring)."""
    return now.astimezone(QUOTA_DAY).strftime("%Y-%m-%d")


class YoutubeConnector(BaseConnector):
    """Searches new videos and reads comment threads within a quota (see module docstring)."""

    name: ClassVar[str] = "youtube"
    settings_model: ClassVar[type[BaseModel]] = YoutubeSettings

    def __init__(self, settings: YoutubeSettings, brands: BrandMatcher) -> None:
        super().__init__(brands, poll_interval_s=settings.poll_interval_s)
        self.settings = settings
        terms = [f'"{t}"' if " " in t else t for t in brands.search_terms()]
        self.query = settings.query or "|".join(terms)
        if settings.search and not self.query:
            raise FatalError("youtube: search needs 'query' or brand keywords")
        if not settings.search and not settings.channel_ids:
            raise FatalError("youtube: nothing to read: enable 'search' or set 'channel_ids'")
        self._round: list[str] = []
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            headers = {"User-Agent": "brand-listener"}
            if self.settings.oauth_token is not None:
                headers["Authorization"] = f"Bearer {self.settings.oauth_token.get_secret_value()}"
            timeout = aiohttp.ClientTimeout(total=self.settings.timeout_s)
            self._session = aiohttp.ClientSession(headers=headers, timeout=timeout)
        return self._session

    async def _get(self, state: dict[str, Any], path: str, params: dict[str, str]) -> Any:
        """One API call, its units counted in ``state`` (an answered error costs them too)."""
        cost = COSTS[path]
        if state["units"] + cost > self.settings.daily_quota_units:
            raise _QuotaExhausted(f"{state['units']} units used today", ours=True)
        if self.settings.api_key is not None:
            params = {**params, "key": self.settings.api_key.get_secret_value()}
        url = self.settings.base_url.rstrip("/") + path
        try:
            async with self._client().get(url, params=params) as response:
                state["units"] += cost
                if response.status < 400:
                    return await response.json(content_type=None)
                status, headers, text = response.status, response.headers, await response.text()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise network_error("youtube", exc) from exc
        _raise_for_error(status, headers, text)

    async def poll(self, cursor: str | None) -> Batch:
        """Read the next source of the round (search, a tracked video, a channel)."""
        now = datetime.now(UTC)
        state = _load(cursor, now, self.settings.lookback_hours)
        if not self._round:
            self._round = self._plan(state, now)
        source = self._round[0]
        mentions: list[Mention] = []
        skipped: list[Skipped] = []
        try:
            if source == "search":
                await self._search(state, now, mentions, skipped)
                found = [f"video:{v}" for v in state["videos"] if f"video:{v}" not in self._round]
                self._round[1:1] = found  # this round reads the videos just found
            else:
                await self._threads(state, source, mentions, skipped)
        except _QuotaExhausted as exc:
            if not exc.ours:
                log.warning("youtube: the API says the daily quota is spent: %s", exc)
                state["units"] = max(state["units"], self.settings.daily_quota_units)
            self._round = []
            return self._batch(mentions, skipped, state, paused="quota:day")
        except _Gone as exc:
            log.info("youtube: %s: %s; no longer read", source, exc)
            state["videos"].pop(source.removeprefix("video:"), None)
            _forget(state, source)
        if source != "search" or "walk" not in state:
            self._round.pop(0)
        return self._batch(mentions, skipped, state)

    def _plan(self, state: dict[str, Any], now: datetime) -> list[str]:
        """This round's sources; expired videos are dropped from tracking."""
        horizon = (now - timedelta(days=self.settings.track_days)).isoformat()
        for vid, found in list(state["videos"].items()):
            if found < horizon:
                del state["videos"][vid]
                _forget(state, f"video:{vid}")
        plan = ["search"] if self.settings.search else []
        plan += [f"video:{v}" for v in state["videos"]]
        return plan + [f"channel:{c}" for c in self.settings.channel_ids]

    def _batch(
        self,
        mentions: list[Mention],
        skipped: list[Skipped],
        state: dict[str, Any],
        paused: str | None = None,
    ) -> Batch:
        more = bool(self._round) and paused is None
        cursor = json.dumps(state, sort_keys=True, separators=(",", ":"))
        return Batch(
            tuple(mentions), cursor, tuple(skipped), more, paused, quota_used=state["units"]
        )

    async def _search(
        self, state: dict[str, Any], now: datetime, mentions: list[Mention], skipped: list[Skipped]
    ) -> None:
        walk = state.get("walk")
        newest = walk["top"] if walk else state["after"]
        token = walk["token"] if walk else None
        overlap = timedelta(minutes=self.settings.search_overlap_minutes)
        start = (parse_time(state["after"]) or now) - overlap
        after = start.strftime("%Y-%m-%dT%H:%M:%SZ")
        for _ in range(self.settings.max_search_pages):
            params = {
                "part": "snippet", "type": "video", "order": "date", "q": self.query,
                "publishedAfter": after,
                "maxResults": str(self.settings.max_results),
            }  # fmt: skip
            if token:
                params["pageToken"] = token
            body = await self._get(state, "/search", params)
            for item in _items(body):
                try:
                    mention = _video(item)
                except SkippableError as exc:
                    skipped.append(Skipped(exc.reason, str(exc), json.dumps(item)[:10_000]))
                    continue
                vid = mention.id.removeprefix("youtube:")
                newest = max(newest, _stamp(mention))
                if vid not in state["videos"]:  # not one found before (the overlap)
                    mentions.append(mention)
                    self._track(state, vid, now)
            token = body.get("nextPageToken") if isinstance(body, dict) else None
            if not token:
                break
        if token:  # more pages than one poll may read: go on with them next poll
            state["walk"] = {"token": token, "top": newest}
        else:
            state.pop("walk", None)
            state["after"] = newest

    def _track(self, state: dict[str, Any], vid: str, now: datetime) -> None:
        videos: dict[str, str] = state["videos"]
        videos.setdefault(vid, now.isoformat())
        while len(videos) > self.settings.max_tracked_videos:
            oldest = min(videos, key=lambda v: videos[v])
            del videos[oldest]
            _forget(state, f"video:{oldest}")

    async def _threads(
        self, state: dict[str, Any], source: str, mentions: list[Mention], skipped: list[Skipped]
    ) -> None:
        kind, _, ident = source.partition(":")
        since: str = state["seen"].get(source, "")
        newest = since
        known: dict[str, int] = state["replies"].get(source, {})
        counted: dict[str, int] = {}  # threads with uncarried replies: their totalReplyCount
        params = {
            "part": "snippet,replies", "order": "time", "textFormat": "plainText",
            "maxResults": str(self._page_size()),
            ("videoId" if kind == "video" else "allThreadsRelatedToChannelId"): ident,
        }  # fmt: skip
        for _ in range(self.settings.max_comment_pages):
            body = await self._get(state, "/commentThreads", params)
            older = False
            for thread in _items(body):
                try:
                    found = _thread(thread)
                except SkippableError as exc:
                    skipped.append(Skipped(exc.reason, str(exc), json.dumps(thread)[:10_000]))
                    continue
                older = older or _stamp(found[0]) <= since
                total = _reply_count(thread)
                if total > len(found) - 1:  # more replies than the thread carries
                    counted[thread["id"]] = total
                    if known.get(thread["id"]) != total:
                        found += await self._replies(state, thread, found, skipped)
                for mention in found:
                    if _stamp(mention) > since:
                        mentions.append(mention)
                        newest = max(newest, _stamp(mention))
            token = body.get("nextPageToken") if isinstance(body, dict) else None
            if older or not token:
                break
            params["pageToken"] = token
        if newest:
            state["seen"][source] = newest
        if counted:
            state["replies"][source] = counted
        else:
            state["replies"].pop(source, None)

    def _page_size(self) -> int:
        """``maxResults`` of commentThreads.list and comments.list (both allow 1 to 100)."""
        return min(100, 2 * self.settings.max_results)

    async def _replies(
        self,
        state: dict[str, Any],
        thread: dict[str, Any],
        found: list[Mention],
        skipped: list[Skipped],
    ) -> list[Mention]:
        """The thread's replies that ``found`` (its top comment and carried replies) lacks.

        Read with ``comments.list?parentId=<thread id>``, page by page (at most
        ``max_reply_pages``). A 404 (the thread was deleted meanwhile) drops this
        thread's replies only, not the video.

        Raises:
            _QuotaExhausted, FatalError, RetryableError: As any other call (see ``_get``).
        """
        snippet = thread["snippet"]
        vid = snippet.get("videoId")
        root = found[0].thread_id or f"youtube:{thread['id']}"
        have = {m.id for m in found}
        extra: list[Mention] = []
        params = {
            "part": "snippet", "parentId": thread["id"], "textFormat": "plainText",
            "maxResults": str(self._page_size()),
        }  # fmt: skip
        for _ in range(self.settings.max_reply_pages):
            try:
                body = await self._get(state, "/comments", params)
            except _Gone as exc:
                log.info("youtube: replies of thread %s: %s; not read", thread["id"], exc)
                break
            for reply in _items(body):
                try:
                    mention = _reply(reply, vid, root, found[0])
                except SkippableError as exc:
                    skipped.append(Skipped(exc.reason, str(exc), json.dumps(reply)[:10_000]))
                    continue
                if mention.id not in have:
                    have.add(mention.id)
                    extra.append(mention)
            token = body.get("nextPageToken") if isinstance(body, dict) else None
            if not token:
                break
            params["pageToken"] = token
        return extra

    async def close(self) -> None:
        """Close the HTTP session."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def _load(cursor: str | None, now: datetime, lookback_hours: float) -> dict[str, Any]:
    """The cursor as a dict, its units restarted when the quota day changed."""
    state: dict[str, Any] = {}
    if cursor:
        try:
            loaded = json.loads(cursor)
        except ValueError:
            loaded = None
        state = loaded if isinstance(loaded, dict) else {}
    day = quota_day(now)
    if state.get("day") != day:
        state["day"], state["units"] = day, 0
    start = now - timedelta(hours=lookback_hours)
    state.setdefault("after", start.strftime("%Y-%m-%dT%H:%M:%SZ"))
    state.setdefault("videos", {})
    state.setdefault("seen", {})
    state.setdefault("replies", {})
    return state


def _forget(state: dict[str, Any], source: str) -> None:
    """Drop what the cursor keeps for a source no longer read."""
    state["seen"].pop(source, None)
    state["replies"].pop(source, None)


def _raise_for_error(status: int, headers: Any, text: str) -> None:
    """YouTube's error body (``error.errors[0].reason``) as the project's error kinds.

    Raises:
        _QuotaExhausted: quotaExceeded / dailyLimitExceeded.
        _Gone: commentsDisabled, or a video/channel not found.
        FatalError: A rejected API key, token or request.
        RetryableError: 429, 5xx, 408.
    """
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    found = body.get("error") if isinstance(body, dict) else None
    error: dict[str, Any] = found if isinstance(found, dict) else {}
    listed = [*(error.get("errors") or []), *(error.get("details") or [])]
    reasons = {e.get("reason") for e in listed if isinstance(e, dict)}
    message = str(error.get("message") or text)[:300]
    if reasons & QUOTA_REASONS:
        raise _QuotaExhausted(message, ours=False)
    if reasons & GONE_REASONS or status == 404:
        raise _Gone(html_to_text(message)[0])
    if reasons & {"keyInvalid", "API_KEY_INVALID"} or "API key not valid" in message:
        raise FatalError(f"youtube: the API key was rejected: {message}")
    check_http_status("youtube", status, headers, message)


def _items(body: Any) -> list[Any]:
    items = body.get("items") if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise RetryableError("youtube: answer has no 'items' list")
    return items


def _reply_count(thread: dict[str, Any]) -> int:
    """A thread's ``snippet.totalReplyCount`` (0 when absent or not a number)."""
    total = thread["snippet"].get("totalReplyCount")
    return total if isinstance(total, int) and not isinstance(total, bool) else 0


def _stamp(mention: Mention) -> str:
    return mention.created_at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _plain(value: Any) -> str:
    """Titles come HTML-escaped (``&#39;``) and comments may hold markup: plain text only."""
    return html_to_text(value)[0] if isinstance(value, str) else ""


def _video(item: Any) -> Mention:
    """A ``youtube#searchResult`` as a Mention.

    Raises:
        SkippableError: No video id or publish time.
    """
    snippet = item.get("snippet") if isinstance(item, dict) else None
    vid = (item.get("id") or {}).get("videoId") if isinstance(item, dict) else None
    created = parse_time((snippet or {}).get("publishedAt"))
    if not isinstance(vid, str) or not isinstance(snippet, dict) or created is None:
        raise SkippableError("validation", "youtube: search result without videoId/publishedAt")
    channel = snippet.get("channelId")
    parts = (_plain(snippet.get("title")), _plain(snippet.get("description")))
    text = "\n\n".join(p for p in parts if p)
    return Mention.create(
        source="youtube",
        native_id=vid,
        text=text,
        created_at=created,
        url=f"https://www.youtube.com/watch?v={vid}",
        author=Author(
            id=channel if isinstance(channel, str) else None,
            name=_plain(snippet.get("channelTitle")) or None,
            url=f"https://www.youtube.com/channel/{channel}" if isinstance(channel, str) else None,
        ),
        signals={"kind": "video", "live": snippet.get("liveBroadcastContent")},
    )


def _thread(thread: Any) -> list[Mention]:
    """A ``youtube#commentThread``: its top-level comment, then the replies it carries.

    Raises:
        SkippableError: No thread id or top-level comment.
    """
    snippet = thread.get("snippet") if isinstance(thread, dict) else None
    top = (snippet or {}).get("topLevelComment")
    if not isinstance(snippet, dict) or not isinstance(top, dict) or not thread.get("id"):
        raise SkippableError("validation", "youtube: comment thread without id/topLevelComment")
    vid = snippet.get("videoId")
    root = f"youtube:{vid}" if isinstance(vid, str) and vid else f"youtube:{thread['id']}"
    found = [_comment(top, vid, root, None)]
    replies = (thread.get("replies") or {}).get("comments") or []
    for reply in replies:
        found.append(_reply(reply, vid, root, found[0]))
    return found


def _reply(reply: Any, vid: Any, root: str, top: Mention) -> Mention:
    """A reply in ``top``'s thread: its parent is the top-level comment, whose author is known."""
    parent = f"youtube:{_parent_id(reply)}" if _parent_id(reply) else top.id
    return _comment(reply, vid, root, parent, top.author if parent == top.id else None)


def _parent_id(reply: Any) -> str | None:
    """A reply's ``snippet.parentId`` (the top-level comment's id), if it has one."""
    snippet = reply.get("snippet") if isinstance(reply, dict) else None
    parent = snippet.get("parentId") if isinstance(snippet, dict) else None
    return parent if isinstance(parent, str) and parent else None


def _comment(
    comment: Any, vid: Any, root: str, parent: str | None, parent_author: Author | None = None
) -> Mention:
    """One ``youtube#comment`` (top-level when ``parent`` is None).

    Raises:
        SkippableError: No id, text or publish time.
    """
    comment = comment if isinstance(comment, dict) else {}
    found = comment.get("snippet")
    snippet: dict[str, Any] = found if isinstance(found, dict) else {}
    cid, created = comment.get("id"), parse_time(snippet.get("publishedAt"))
    if not isinstance(cid, str) or created is None:
        raise SkippableError("validation", "youtube: comment without id/publishedAt")
    name = _plain(snippet.get("authorDisplayName")) or None
    channel = (snippet.get("authorChannelId") or {}).get("value")
    url = f"https://www.youtube.com/watch?v={vid}&lc={cid}" if isinstance(vid, str) else None
    profile = snippet.get("authorChannelUrl")
    return Mention.create(
        source="youtube",
        native_id=cid,
        text=_plain(snippet.get("textDisplay") or snippet.get("textOriginal")),
        created_at=created,
        url=url,
        author=Author(
            id=channel if isinstance(channel, str) else None,
            handle=name if name and name.startswith("@") else None,
            name=name,
            url=profile if isinstance(profile, str) else None,
        ),
        reply_to_id=parent,
        reply_to_author=parent_author,
        thread_id=root,
        signals={"kind": "comment", "likes": snippet.get("likeCount")},
    )
