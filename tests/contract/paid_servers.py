"""Local wire-format servers for the paid/approved-access sources: X API v2 and Reddit."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import orjson
from aiohttp import web
from pydantic import SecretStr

from listener.connectors.base import Connector

from .servers import BRANDS, HttpHarness, fixture


class XHarness(HttpHarness):
    """``/2/tweets/search/stream/rules`` (GET/POST) and the newline-delimited stream."""

    name = "x"
    overlap_allowed = True  # every connection replays, as backfill_minutes does
    TOKEN = "x-bearer"

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[Any] = fixture("x", "filtered_stream.json")
        self.rules: list[dict[str, str]] = [{"id": "1", "value": "cats", "tag": "someone-else"}]
        self.rule_posts: list[Any] = []
        self.stream_params: list[dict[str, str]] = []

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/2/tweets/search/stream/rules", self._get_rules)
        app.router.add_post("/2/tweets/search/stream/rules", self._post_rules)
        app.router.add_get("/2/tweets/search/stream", self._stream)

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.TOKEN}"

    async def _get_rules(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({"title": "Unauthorized", "status": 401}, status=401)
        meta = {"sent": "2024-09-12T10:00:00.000Z", "result_count": len(self.rules)}
        return web.json_response(
            {"data": self.rules, "meta": meta} if self.rules else {"meta": meta}
        )

    async def _post_rules(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.rule_posts.append(body)
        for ident in (body.get("delete") or {}).get("ids", []):
            self.rules = [r for r in self.rules if r["id"] != ident]
        added = []
        for n, rule in enumerate(body.get("add") or []):
            added.append({"id": f"17900000000000000{len(self.rules) + n}", **rule})
        self.rules += added
        summary = {"created": len(added), "not_created": 0, "valid": len(added), "invalid": 0}
        return web.json_response({"data": added, "meta": {"summary": summary}}, status=201)

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return web.json_response({"title": "Unauthorized", "status": 401}, status=401)
        self.stream_params.append(dict(request.query))
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        try:
            for message in self.messages:
                line = message.encode() if isinstance(message, str) else orjson.dumps(message)
                await response.write(line + b"\r\n")
            while True:
                await asyncio.sleep(0.1)
                await response.write(b"\r\n")  # keep-alive
        except ConnectionError:
            return response

    def connector(self, small: bool = False) -> Connector:
        from listener.connectors.x import XConnector, XSettings

        settings = XSettings(
            bearer_token=SecretStr(self.TOKEN),
            base_url=self.base,
            batch_max=1 if small else 100,
            batch_wait_s=0.3,
            backfill_minutes=2,
        )
        return XConnector(settings, BRANDS)


class RedditHarness(HttpHarness):
    """``/api/v1/access_token`` (client credentials) and ``/search.json`` with ``before``."""

    name = "reddit"
    CLIENT, SECRET, UA = "cid", "csecret", "test:brand-listener:1.0 (by /u/tester)"

    def __init__(self) -> None:
        super().__init__()
        self.children: list[Any] = fixture("reddit", "search_listing.json")
        self.tokens = 0
        self.limit_next = False

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/api/v1/access_token", self._token)
        app.router.add_get("/search.json", self._search)

    async def _token(self, request: web.Request) -> web.Response:
        basic = base64.b64encode(f"{self.CLIENT}:{self.SECRET}".encode()).decode()
        form = await request.post()
        if request.headers.get("Authorization") != f"Basic {basic}":
            return web.json_response({"message": "Unauthorized", "error": 401}, status=401)
        if form.get("grant_type") != "client_credentials":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        self.tokens += 1
        return web.json_response(
            {"access_token": f"tok{self.tokens}", "token_type": "bearer", "expires_in": 86400}
        )

    async def _search(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"bearer tok{self.tokens}":
            return web.json_response({"message": "Unauthorized", "error": 401}, status=401)
        if self.limit_next:  # Reddit's own 429: no Retry-After, seconds in X-Ratelimit-Reset
            self.limit_next = False
            headers = {"X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": "42"}
            return web.json_response({"message": "Too Many Requests"}, status=429, headers=headers)
        if request.headers.get("User-Agent") != self.UA:
            return web.json_response({"message": "Too Many Requests", "error": 429}, status=429)
        newest_first = sorted(self.children, key=lambda c: c["data"]["name"], reverse=True)
        limit = int(request.query.get("limit", "25"))
        before = request.query.get("before")
        names = [c["data"]["name"] for c in newest_first]
        after = request.query.get("after")
        if after:
            older = newest_first[names.index(after) + 1 :] if after in names else []
            page = older[:limit]
        elif before:
            newer = newest_first[: names.index(before)] if before in names else []
            page = newer[-limit:]
        else:
            page = newest_first[:limit]
        data = {
            "after": page[-1]["data"]["name"] if page else None,
            "before": page[0]["data"]["name"] if page else None,
            "children": page,
            "dist": len(page),
        }
        headers = {
            "X-Ratelimit-Used": "1",
            "X-Ratelimit-Remaining": "99",
            "X-Ratelimit-Reset": "540",
        }
        return web.json_response({"kind": "Listing", "data": data}, headers=headers)

    def connector(self, small: bool = False) -> Connector:
        from listener.connectors.reddit import RedditConnector, RedditSettings

        settings = RedditSettings(
            client_id=self.CLIENT,
            client_secret=SecretStr(self.SECRET),
            user_agent=self.UA,
            auth_url=self.base,
            api_url=self.base,
            limit=2 if small else 100,
            backfill_pages=10,
            poll_interval_s=0,
        )
        return RedditConnector(settings, BRANDS)
