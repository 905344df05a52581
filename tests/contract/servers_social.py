"""Local wire-format servers for Tumblr (API v2 ``/v2/tagged``) and Flickr (REST API)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from pydantic import SecretStr

from listener.brands import BrandMatcher
from listener.connectors.base import Connector

from .servers import BRANDS, HttpHarness, fixture


class TumblrHarness(HttpHarness):
    """``/v2/tagged?tag=&api_key=&before=&limit=&filter=``: newest first, ``before`` exclusive.

    Errors as Tumblr sends them: the HTTP status repeated in ``meta.status``,
    ``X-Ratelimit-Perhour-*`` / ``X-Ratelimit-Perday-*`` headers on every answer.
    """

    name = "tumblr"
    KEY = "tumblr-consumer-key"

    def __init__(self) -> None:
        super().__init__()
        self.posts: list[Any] = fixture("tumblr", "tagged_posts.json")
        self.limit_next = False
        self.error_next: int | None = None
        self.meta_error_next = False

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/v2/tagged", self._tagged)

    @staticmethod
    def _envelope(status: int, msg: str, response: Any, **extra: Any) -> dict[str, Any]:
        return {"meta": {"status": status, "msg": msg}, "response": response, **extra}

    async def _tagged(self, request: web.Request) -> web.Response:
        query = request.query
        headers = {
            "X-Ratelimit-Perhour-Limit": "18000",
            "X-Ratelimit-Perhour-Remaining": "17990",
            "X-Ratelimit-Perhour-Reset": "1800",
            "X-Ratelimit-Perday-Limit": "432000",
            "X-Ratelimit-Perday-Remaining": "431000",
            "X-Ratelimit-Perday-Reset": "40000",
        }
        if query.get("api_key") != self.KEY:
            errors = [{"title": "Unauthorized", "code": 1016, "detail": "Unable to authorize"}]
            body = self._envelope(401, "Unauthorized", [], errors=errors)
            return web.json_response(body, status=401, headers=headers)
        if self.limit_next:  # the hour's calls are spent: no Retry-After, the window's reset
            self.limit_next = False
            headers["X-Ratelimit-Perhour-Remaining"] = "0"
            headers["X-Ratelimit-Perhour-Reset"] = "1234"
            body = self._envelope(429, "Limit Exceeded", [])
            return web.json_response(body, status=429, headers=headers)
        if self.error_next is not None:
            status, self.error_next = self.error_next, None
            body = self._envelope(status, "Service Unavailable", [])
            return web.json_response(body, status=status, headers=headers)
        if self.meta_error_next:  # HTTP 200, the error only in the envelope
            self.meta_error_next = False
            return web.json_response(self._envelope(401, "Unauthorized", []), headers=headers)
        tag = query.get("tag", "").lower()
        if not tag:
            return web.json_response(self._envelope(400, "Bad Request", []), status=400)
        before = int(query["before"]) if "before" in query else None
        limit = min(20, int(query.get("limit", "20")))

        def key(post: dict[str, Any]) -> tuple[int, str]:
            return int(post.get("timestamp", 0)), post["id_string"]

        found = [
            p for p in self.posts
            if tag in (t.lower() for t in p.get("tags", ()))
            and (before is None or int(p.get("timestamp", 0)) < before)
        ]  # fmt: skip
        found.sort(key=key, reverse=True)
        if query.get("filter") != "text":
            return web.json_response(self._envelope(400, "filter=text expected", []), status=400)
        return web.json_response(self._envelope(200, "OK", found[:limit]), headers=headers)

    def connector(self, small: bool = False, tags: tuple[str, ...] = ()) -> Connector:
        from listener.connectors.tumblr import TumblrConnector, TumblrSettings

        settings = TumblrSettings(
            api_key=SecretStr(self.KEY),
            base_url=self.base,
            tags=tags,
            limit=2 if small else 20,
            lookback_s=10 * 365 * 86400,
            poll_interval_s=0,
        )
        return TumblrConnector(settings, BRANDS)


class FlickrHarness(HttpHarness):
    """``/services/rest/?method=...&format=json&nojsoncallback=1``: search, getPhotos, comments.

    Like Flickr, an API error is HTTP 200 with ``{"stat": "fail", "code", "message"}``;
    without ``nojsoncallback=1`` the answer is JSONP (``jsonFlickrApi(...)``).
    """

    name = "flickr"
    overlap_allowed = True  # numbered pages: an upload mid-sweep can repeat a photo
    KEY = "flickr-api-key"

    def __init__(self) -> None:
        super().__init__()
        self.photos: list[Any] = fixture("flickr", "photos.json")
        self.comments: dict[str, list[Any]] = fixture("flickr", "comments.json")
        self.fail_next_code: tuple[int, str] | None = None
        self.error_next: int | None = None

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/services/rest/", self._rest)

    async def _rest(self, request: web.Request) -> web.Response:
        query = request.query
        if self.error_next is not None:
            status, self.error_next = self.error_next, None
            return web.Response(status=status, text="<html>Bad Gateway</html>")
        body = self._answer(query)
        if query.get("format") != "json" or query.get("nojsoncallback") != "1":
            return web.Response(text=f"jsonFlickrApi({json.dumps(body)})")
        return web.json_response(body)

    def _answer(self, query: Mapping[str, str]) -> dict[str, Any]:
        if query.get("api_key") != self.KEY:
            return {"stat": "fail", "code": 100, "message": "Invalid API Key (Key not found)"}
        if self.fail_next_code is not None:
            (code, message), self.fail_next_code = self.fail_next_code, None
            return {"stat": "fail", "code": code, "message": message}
        method = query.get("method")
        if method == "flickr.photos.comments.getList":
            photo_id = query.get("photo_id", "")
            if photo_id not in {p["id"] for p in self.photos}:
                return {"stat": "fail", "code": 1, "message": "Photo not found"}
            floor = int(query.get("min_comment_date", "0"))
            found = [c for c in self.comments.get(photo_id, []) if int(c["datecreate"]) >= floor]
            return {"comments": {"photo_id": query["photo_id"], "comment": found}, "stat": "ok"}
        floor = int(query.get("min_upload_date", "0"))
        if method == "flickr.photos.search":
            text = query.get("text", "").lower()

            def hit(p: dict[str, Any]) -> bool:
                fields = (p["title"], p["description"]["_content"], p.get("tags", ""))
                return any(text in f.lower() for f in fields)

            found = [p for p in self.photos if text and hit(p)]
        elif method == "flickr.people.getPhotos":
            found = [p for p in self.photos if p["owner"] == query.get("user_id")]
        else:
            return {"stat": "fail", "code": 112, "message": f'Method "{method}" not found'}
        found = [p for p in found if int(p.get("dateupload", floor)) >= floor]
        found.sort(key=lambda p: int(p.get("dateupload", 0)), reverse=True)
        per_page = min(500, int(query.get("per_page", "100")))
        page = int(query.get("page", "1"))
        pages = max(1, -(-len(found) // per_page))
        photos = {"page": page, "pages": pages, "perpage": per_page, "total": len(found),
                  "photo": found[(page - 1) * per_page : page * per_page]}  # fmt: skip
        return {"photos": photos, "stat": "ok"}

    def connector(
        self, small: bool = False, user_ids: tuple[str, ...] = (), brands: BrandMatcher = BRANDS
    ) -> Connector:
        from listener.connectors.flickr import FlickrConnector, FlickrSettings

        settings = FlickrSettings(
            api_key=SecretStr(self.KEY),
            base_url=f"{self.base}/services/rest/",
            user_ids=user_ids,
            per_page=2 if small else 100,
            watch_days=20_000,
            lookback_s=10 * 365 * 86400,
            poll_interval_s=0,
        )
        return FlickrConnector(settings, brands)


class LinkedInHarness(HttpHarness):
    """``/rest/posts?q=author`` and ``/rest/socialActions/{urn}/comments`` (Rest.li 2.0).

    Checks the bearer token, ``LinkedIn-Version`` and ``X-Restli-Protocol-Version``
    and answers errors with LinkedIn's ``{"status", "serviceErrorCode", "code", "message"}``.
    As on LinkedIn, a post's URN lists its first-level comments and a comment's
    URN (``urn:li:comment:(<activity>,<id>)``) its replies ("comments on
    comments", with ``parentComment``); a comment's ``commentsSummary`` counts them.
    """

    name = "linkedin"
    TOKEN, ORG, VERSION = "li-token", "2414183", "202508"
    ACTIVE_VERSIONS = frozenset({"202507", "202508"})

    def __init__(self) -> None:
        super().__init__()
        self.posts: list[Any] = fixture("linkedin", "posts.json")
        self.comments: dict[str, list[Any]] = fixture("linkedin", "comments.json")
        self.forbidden = False

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/rest/posts", self._posts)
        app.router.add_get("/rest/socialActions/{urn}/comments", self._comments)

    @staticmethod
    def _error(status: int, code: str, message: str, service: int) -> web.Response:
        body = {"status": status, "serviceErrorCode": service, "code": code, "message": message}
        return web.json_response(body, status=status)

    def _check(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != f"Bearer {self.TOKEN}":
            return self._error(401, "INVALID_ACCESS_TOKEN", "Invalid access token", 65600)
        if request.headers.get("X-Restli-Protocol-Version") != "2.0.0":
            return self._error(400, "ILLEGAL_ARGUMENT", "Rest.li protocol 2.0.0 expected", 100)
        version = request.headers.get("LinkedIn-Version", "")
        if version not in self.ACTIVE_VERSIONS:
            message = f"Requested version {version} is not active"
            return self._error(426, "NONEXISTENT_VERSION", message, 0)
        if self.forbidden:
            message = "Not enough permissions to access: partnerApiPostsExternal.FINDER-author"
            return self._error(403, "ACCESS_DENIED", message, 100)
        return None

    async def _posts(self, request: web.Request) -> web.Response:
        refused = self._check(request)
        if refused is not None:
            return refused
        author = f"urn%3Ali%3Aorganization%3A{self.ORG}"
        if f"author={author}" not in request.raw_path or request.query.get("q") != "author":
            return self._error(400, "ILLEGAL_ARGUMENT", "author must be an encoded URN", 100)
        count = int(request.query.get("count", "10"))
        found = self.posts[:count]
        paging = {"start": 0, "count": count, "links": [], "total": len(self.posts)}
        return web.json_response({"paging": paging, "elements": found})

    async def _comments(self, request: web.Request) -> web.Response:
        refused = self._check(request)
        if refused is not None:
            return refused
        urn = request.match_info["urn"]
        if not request.raw_path.startswith("/rest/socialActions/urn%3Ali%3A"):
            return self._error(400, "ILLEGAL_ARGUMENT", "the URN must be URL-encoded", 100)
        if urn not in self.comments:
            return self._error(404, "NOT_FOUND", f"{urn} not found", 100)
        start = int(request.query.get("start", "0"))
        count = int(request.query.get("count", "10"))
        every = self.comments[urn]
        paging = {"start": start, "count": count, "links": [], "total": len(every)}
        return web.json_response({"paging": paging, "elements": every[start : start + count]})

    def add_replies(
        self, post: str, comment_id: str, texts: list[str], start_ms: int, parent: bool = True
    ) -> list[str]:
        """Replies to comment ``comment_id`` of ``post``, one a minute; their comment URNs.

        The comment's ``commentsSummary.aggregatedTotalComments`` is updated;
        ``parent=False`` leaves ``parentComment`` out of the replies.
        """
        comment = next(c for c in self.comments[post] if c["id"] == comment_id)
        activity = comment["object"]
        replies = self.comments.setdefault(comment["commentUrn"], [])
        made = []
        for text in texts:
            ident = str(int(comment_id) * 1000 + len(replies) + 1)
            urn = f"urn:li:comment:({activity},{ident})"
            when = start_ms + 60_000 * len(replies)
            reply: dict[str, Any] = {
                "id": ident, "commentUrn": urn, "actor": "urn:li:person:Replier",
                "object": activity, "message": {"text": text, "attributes": []},
                "created": {"actor": "urn:li:person:Replier", "time": when},
                "lastModified": {"actor": "urn:li:person:Replier", "time": when},
                "commentsSummary": {"aggregatedTotalComments": 0, "selectedComments": []},
            }  # fmt: skip
            if parent:
                reply["parentComment"] = comment["commentUrn"]
            replies.append(reply)
            made.append(urn)
        comment["commentsSummary"] = {"aggregatedTotalComments": len(replies),
                                      "selectedComments": []}  # fmt: skip
        return made

    def connector(self, small: bool = False, brands: BrandMatcher = BRANDS) -> Connector:
        from listener.connectors.linkedin import LinkedInConnector, LinkedInSettings

        settings = LinkedInSettings(
            access_token=SecretStr(self.TOKEN),
            organization_id=self.ORG,
            api_url=f"{self.base}/rest",
            version=self.VERSION,
            page_size=1 if small else 100,
            lookback_s=10 * 365 * 86400,
            poll_interval_s=0,
        )
        return LinkedInConnector(settings, brands)
