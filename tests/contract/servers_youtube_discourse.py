"""Local wire-format servers for YouTube Data API v3 and a Discourse forum (JSON API, webhooks)."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
from aiohttp import web
from pydantic import SecretStr

from listener.connectors.base import Connector

from .servers import BRANDS, HttpHarness, WebhookHarness, fixture

YT_QUOTA_EXCEEDED = {
    "error": {
        "code": 403,
        "message": "The request cannot be completed because you have exceeded your "
        '<a href="/youtube/v3/getting-started#quota">quota</a>.',
        "errors": [
            {
                "message": "The request cannot be completed because you have exceeded your quota.",
                "domain": "youtube.quota",
                "reason": "quotaExceeded",
            }
        ],
    }
}
YT_KEY_INVALID = {
    "error": {
        "code": 400,
        "message": "API key not valid. Please pass a valid API key.",
        "errors": [
            {
                "message": "API key not valid. Please pass a valid API key.",
                "domain": "global",
                "reason": "badRequest",
            }
        ],
        "status": "INVALID_ARGUMENT",
        "details": [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
            }
        ],
    }
}
YT_UNAUTHENTICATED = {
    "error": {
        "code": 401,
        "message": "Request had invalid authentication credentials. Expected OAuth 2 access "
        "token, login cookie or other valid authentication credential.",
        "errors": [
            {"message": "Invalid Credentials", "domain": "global", "reason": "authError",
             "location": "Authorization", "locationType": "header"}
        ],
        "status": "UNAUTHENTICATED",
    }
}  # fmt: skip
YT_COMMENTS_DISABLED = {
    "error": {
        "code": 403,
        "message": 'The video identified by the <code><a href="/youtube/v3/docs/commentThreads/'
        'list#videoId">videoId</a></code> parameter has disabled comments.',
        "errors": [
            {
                "message": "The video identified by the videoId parameter has disabled comments.",
                "domain": "youtube.commentThread",
                "reason": "commentsDisabled",
                "location": "videoId",
                "locationType": "parameter",
            }
        ],
    }
}
YT_COMMENT_NOT_FOUND = {
    "error": {
        "code": 404,
        "message": 'The comment identified by the <code><a href="/youtube/v3/docs/comments/'
        'list#parentId">parentId</a></code> parameter could not be found.',
        "errors": [
            {
                "message": "The comment identified by the parentId parameter could not be found.",
                "domain": "youtube.comment",
                "reason": "commentNotFound",
                "location": "parentId",
                "locationType": "parameter",
            }
        ],
    }
}
YT_BACKEND_ERROR = {
    "error": {
        "code": 503,
        "message": "The service is currently unavailable.",
        "errors": [
            {
                "message": "The service is currently unavailable.",
                "domain": "global",
                "reason": "backendError",
            }
        ],
        "status": "UNAVAILABLE",
    }
}


def yt_reply(thread_id: str, video: str, n: int, published: str, text: str) -> dict[str, Any]:
    """A ``youtube#comment`` replying to the top-level comment ``thread_id``."""
    return {
        "kind": "youtube#comment",
        "etag": f"r{n}",
        "id": f"{thread_id}.9xBusyReply{n:03d}",
        "snippet": {
            "channelId": "UCreviewer000000000000",
            "videoId": video,
            "textDisplay": text,
            "textOriginal": text,
            "authorDisplayName": f"@replier{n}",
            "authorChannelUrl": f"http://www.youtube.com/@replier{n}",
            "authorChannelId": {"value": f"UCreplier{n:014d}"},
            "parentId": thread_id,
            "likeCount": 0,
            "publishedAt": published,
            "updatedAt": published,
        },
    }


class YoutubeHarness(HttpHarness):
    """``/youtube/v3/search``, ``/commentThreads`` and ``/comments`` with ``key=``, paging, quota.

    Like YouTube, a thread carries at most 5 of its replies (``replies.comments``);
    ``comments?parentId=<thread id>`` lists them all, oldest first.
    """

    name = "youtube"
    KEY = "yt-key"
    TOKEN = "ya29.oauth-token"
    CHANNEL = "UCacmeOfficial000000000"

    def __init__(self) -> None:
        super().__init__()
        self.videos: list[Any] = fixture("youtube", "search_results.json")
        data = fixture("youtube", "comment_threads.json")
        self.threads: list[Any] = data["threads"]
        self.disabled: set[str] = set(data["comments_disabled"])
        self.channels: dict[str, list[str]] = data["channels"]
        self.replies: dict[str, list[Any]] = {
            t["id"]: list((t.get("replies") or {}).get("comments") or []) for t in self.threads
        }
        self.units = 0
        self.quota_limit: int | None = None
        self.comments_error: tuple[int, dict[str, Any]] | None = None
        self.calls: list[dict[str, str]] = []

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/youtube/v3/search", self._search)
        app.router.add_get("/youtube/v3/commentThreads", self._threads)
        app.router.add_get("/youtube/v3/comments", self._comments)

    def add_thread(
        self, video: str, thread_id: str, published: str, replies: int, text: str = "Acme?"
    ) -> list[str]:
        """A thread on ``video`` with ``replies`` replies (5 carried inline); their ids."""
        top = {
            "kind": "youtube#comment",
            "id": thread_id,
            "snippet": {
                "videoId": video,
                "textDisplay": text,
                "authorDisplayName": "@asker",
                "authorChannelId": {"value": "UCask00000000000000000"},
                "publishedAt": published,
            },
        }
        every = [
            yt_reply(thread_id, video, n, published[:14] + f"{n:02d}:00Z", f"reply {n} about acme")
            for n in range(1, replies + 1)
        ]
        thread: dict[str, Any] = {
            "kind": "youtube#commentThread",
            "id": thread_id,
            "snippet": {"videoId": video, "topLevelComment": top, "totalReplyCount": replies},
        }
        if every:
            thread["replies"] = {"comments": every[:5]}
        self.threads.append(thread)
        self.replies[thread_id] = every
        return [r["id"] for r in every]

    def _refuse(self, request: web.Request, cost: int) -> web.Response | None:
        self.calls.append({"path": request.path, **request.query})
        bearer = request.headers.get("Authorization") == f"Bearer {self.TOKEN}"
        if "key" in request.query and request.query["key"] != self.KEY:
            return web.json_response(YT_KEY_INVALID, status=400)
        if "key" not in request.query and not bearer:
            return web.json_response(YT_UNAUTHENTICATED, status=401)
        if self.quota_limit is not None and self.units + cost > self.quota_limit:
            return web.json_response(YT_QUOTA_EXCEEDED, status=403)
        self.units += cost
        return None

    @staticmethod
    def _page(found: list[Any], query: Any, default: int, top: int) -> tuple[list[Any], str | None]:
        size = min(top, int(query.get("maxResults", str(default))))
        start = int(query.get("pageToken", "p0")[1:])
        following = f"p{start + size}" if start + size < len(found) else None
        return found[start : start + size], following

    async def _search(self, request: web.Request) -> web.Response:
        refused = self._refuse(request, 100)
        if refused is not None:
            return refused
        query = request.query
        assert query.get("type") == "video" and query.get("order") == "date"
        terms = [t.strip('"').lower() for t in query.get("q", "").split("|") if t]
        after = query.get("publishedAfter", "")

        def hit(video: dict[str, Any]) -> bool:
            text = (video["snippet"]["title"] + " " + video["snippet"]["description"]).lower()
            return any(t in text for t in terms) and video["snippet"]["publishedAt"] >= after

        found = sorted(
            (v for v in self.videos if hit(v)),
            key=lambda v: v["snippet"]["publishedAt"],
            reverse=True,
        )
        items, following = self._page(found, query, 5, 50)
        body: dict[str, Any] = {
            "kind": "youtube#searchListResponse",
            "etag": "x",
            "regionCode": "US",
            "pageInfo": {"totalResults": len(found), "resultsPerPage": len(items)},
            "items": items,
        }
        if following:
            body["nextPageToken"] = following
        return web.json_response(body)

    async def _threads(self, request: web.Request) -> web.Response:
        refused = self._refuse(request, 1)
        if refused is not None:
            return refused
        query = request.query
        assert query.get("part") == "snippet,replies" and query.get("textFormat") == "plainText"
        video, channel = query.get("videoId"), query.get("allThreadsRelatedToChannelId")
        if video in self.disabled:
            return web.json_response(YT_COMMENTS_DISABLED, status=403)
        wanted = {video} if video else set(self.channels.get(channel or "", []))

        def when(thread: dict[str, Any]) -> str:
            top = thread["snippet"].get("topLevelComment") or {}
            return str((top.get("snippet") or {}).get("publishedAt", ""))

        found = sorted(
            (t for t in self.threads if t["snippet"].get("videoId") in wanted),
            key=when,
            reverse=True,
        )
        return self._list_response("youtube#commentThreadListResponse", found, query)

    async def _comments(self, request: web.Request) -> web.Response:
        refused = self._refuse(request, 1)
        if refused is not None:
            return refused
        if self.comments_error is not None:
            (status, error), self.comments_error = self.comments_error, None
            return web.json_response(error, status=status)
        query = request.query
        assert query.get("part") == "snippet" and query.get("textFormat") == "plainText"
        parent = query.get("parentId")
        if parent not in self.replies:
            return web.json_response(YT_COMMENT_NOT_FOUND, status=404)
        found = sorted(self.replies[parent], key=lambda r: r["snippet"]["publishedAt"])
        return self._list_response("youtube#commentListResponse", found, query)

    def _list_response(self, kind: str, found: list[Any], query: Any) -> web.Response:
        """One page of ``found`` as a Data API list response (``maxResults`` 20, at most 100)."""
        items, following = self._page(found, query, 20, 100)
        body: dict[str, Any] = {
            "kind": kind,
            "etag": "y",
            "pageInfo": {"totalResults": len(found), "resultsPerPage": len(items)},
            "items": items,
        }
        if following:
            body["nextPageToken"] = following
        return web.json_response(body)

    def connector(self, small: bool = False, **overrides: Any) -> Connector:
        from listener.connectors.youtube import YoutubeConnector, YoutubeSettings

        options: dict[str, Any] = {
            "api_key": SecretStr(self.KEY),
            "base_url": f"{self.base}/youtube/v3",
            "channel_ids": (self.CHANNEL,),
            "max_results": 1 if small else 50,
            "max_search_pages": 1 if small else 2,
            "lookback_hours": 10 * 365 * 24,
            "poll_interval_s": 0,
            **overrides,
        }
        return YoutubeConnector(YoutubeSettings(**options), BRANDS)


DISCOURSE_INVALID_KEY = {
    "errors": [
        "You are not permitted to view the requested resource. The API username or key is invalid."
    ],
    "error_type": "invalid_access",
}
DISCOURSE_NOT_FOUND = {
    "errors": ["The requested URL or resource could not be found."],
    "error_type": "not_found",
}


def discourse_throttled(seconds: int) -> dict[str, Any]:
    """Discourse's 429 body (RateLimiter::LimitExceeded)."""
    return {
        "errors": [
            f"You’ve performed this action too many times. Please wait {seconds} seconds "
            "before trying again."
        ],
        "error_type": "rate_limit",
        "extras": {"wait_seconds": seconds, "time_left": f"{seconds} seconds"},
    }


class DiscourseHarness(HttpHarness):
    """``/posts.json`` (latest posts, ``before=<id>``, 50 a page) and ``/posts/by_number``."""

    name = "discourse"
    KEY, USER = "discourse-key", "system"

    def __init__(self) -> None:
        super().__init__()
        data = fixture("discourse", "posts.json")
        self.posts: list[dict[str, Any]] = data["latest_posts"]
        self.older: list[dict[str, Any]] = data["older_posts"]
        self.private: set[int] = set(data["private_categories"])
        self.throttle_next: int | None = None

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/posts.json", self._latest)
        app.router.add_get("/posts/by_number/{topic}/{number}.json", self._by_number)

    def _visible(self, request: web.Request) -> list[dict[str, Any]] | web.Response:
        key = request.headers.get("Api-Key")
        if key is not None and (
            key != self.KEY or request.headers.get("Api-Username") != self.USER
        ):
            return web.json_response(DISCOURSE_INVALID_KEY, status=403)
        if self.throttle_next is not None:
            body, self.throttle_next = discourse_throttled(self.throttle_next), None
            return web.json_response(body, status=429)
        return [p for p in self.posts + self.older if key or p["category_id"] not in self.private]

    async def _latest(self, request: web.Request) -> web.Response:
        visible = self._visible(request)
        if isinstance(visible, web.Response):
            return visible
        before = int(request.query.get("before", "0") or 0)
        found = [p for p in visible if p in self.posts and (not before or p["id"] < before)]
        page = sorted(found, key=lambda p: p["id"], reverse=True)[:50]
        return web.json_response({"latest_posts": page})

    async def _by_number(self, request: web.Request) -> web.Response:
        visible = self._visible(request)
        if isinstance(visible, web.Response):
            return visible
        topic, number = int(request.match_info["topic"]), int(request.match_info["number"])
        for post in visible:
            if post["topic_id"] == topic and post["post_number"] == number:
                return web.json_response(post)
        return web.json_response(DISCOURSE_NOT_FOUND, status=404)

    def connector(self, small: bool = False, **overrides: Any) -> Connector:
        from listener.connectors.discourse import DiscourseConnector, DiscourseSettings

        options: dict[str, Any] = {
            "base_url": self.base,
            "window": 2 if small else 50,
            "backfill_ids": 13,
            "settle_s": 0,
            "poll_interval_s": 0,
            **overrides,
        }
        return DiscourseConnector(DiscourseSettings(**options), BRANDS)


class DiscourseWebhookHarness(WebhookHarness):
    """A Discourse forum *sending* ``post_created`` webhooks (signed), plus its JSON API.

    Like Discourse it posts each event on its own, concurrently, and sends again
    (on the next :meth:`feed`) what was not answered 2xx.
    """

    name = "discourse_webhook"
    push = True
    SECRET = "discourse-webhook-secret-0123456789"

    def __init__(self) -> None:
        super().__init__()
        self.api = DiscourseHarness()
        posts = [p for p in self.api.posts if p["category_id"] not in self.api.private]
        posts.sort(key=lambda p: p["created_at"] is None)  # the malformed ones last
        self.bodies = [orjson.dumps({"post": p}) for p in posts] + [b'{"post": "oops"}']

    async def start(self) -> None:
        await self.api.start()

    def connector(self, small: bool = False, **overrides: Any) -> Connector:
        from listener.connectors.discourse_webhook import (
            DiscourseWebhookConnector,
            DiscourseWebhookSettings,
        )

        options: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": 0,
            "secret": SecretStr(self.SECRET),
            "base_url": self.api.base,
            "batch_wait_s": 0.3,
            "batch_max": 1 if small else 100,
            **overrides,
        }
        return self.track(DiscourseWebhookConnector(DiscourseWebhookSettings(**options), BRANDS))

    async def send_event(
        self, port: int, body: bytes, event: str = "post_created", secret: str | None = None
    ) -> tuple[int, Any]:
        """POST ``body`` as Discourse does (signed with ``secret``); the status and JSON answer."""
        from listener.connectors.discourse_webhook import signature

        if self.session is None:
            self.session = aiohttp.ClientSession()
        headers = {
            "Content-Type": "application/json",
            "X-Discourse-Instance": self.api.base,
            "X-Discourse-Event-Id": str(len(self.answers) + 1),
            "X-Discourse-Event-Type": "post",
            "X-Discourse-Event": event,
            "X-Discourse-Event-Signature": signature((secret or self.SECRET).encode(), body),
        }
        url = f"http://127.0.0.1:{port}/webhooks/discourse"
        async with self.session.post(url, data=body, headers=headers) as response:
            return response.status, await response.json(content_type=None)

    async def deliver(self, port: int, index: int) -> int:
        """Send event ``index`` to the endpoint on ``port``; the answer's status."""
        status, _ = await self.send_event(port, self.bodies[index])
        return status

    async def stop(self) -> None:
        await super().stop()
        await self.api.stop()
