"""Local wire-format servers for Tumblr (API v2 ``/v2/tagged``) and Flickr (REST API)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import SecretStr

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
