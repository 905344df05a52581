"""Local Meta servers: a webhook *sender* (Graph API notifications), the Graph API, Threads API.

Wire formats from the Meta docs cited in each connector's module docstring:
``X-Hub-Signature-256`` signed notifications, ``{"data": [...], "paging":
{"cursors": {"before", "after"}, "next"}}`` pages, ``{"error": {"message",
"type", "code", "error_subcode", "fbtrace_id"}}`` error bodies and the
``X-App-Usage`` / ``X-Business-Use-Case-Usage`` headers.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import urlencode

import aiohttp
import orjson
from aiohttp import web
from pydantic import SecretStr

from listener.connectors.base import Connector

from .servers import BRANDS, HttpHarness, WebhookHarness, fixture

APP_SECRET = "meta-app-secret-0123456789"
VERIFY_TOKEN = "verify-me-please"


def graph_error(
    code: int, message: str, kind: str = "OAuthException", sub: int | None = None
) -> Any:
    """A Graph API error body."""
    error: dict[str, Any] = {"message": message, "type": kind, "code": code, "fbtrace_id": "AbCdEf"}
    if sub is not None:
        error["error_subcode"] = sub
    return {"error": error}


def stamp(item: dict[str, Any], key: str) -> int | None:
    value = item.get(key)
    if not isinstance(value, str):
        return None
    return int(datetime.strptime(value, "%Y-%m-%dT%H:%M:%S%z").timestamp())


class MetaWebhookHarness(WebhookHarness):
    """Meta as a sender: POSTs each fixture notification signed with the app secret.

    Like Meta it retries (on the next :meth:`feed`) what was not answered 2xx.
    """

    name = "meta_webhook"
    sources: ClassVar[tuple[str, ...]] = ("facebook", "instagram")

    def __init__(self) -> None:
        super().__init__()
        raw = fixture("meta", "notifications.json")
        self.bodies = [b.encode() if isinstance(b, str) else orjson.dumps(b) for b in raw]

    def connector(self, small: bool = False) -> Connector:
        from listener.connectors.meta_webhook import MetaWebhookConnector, MetaWebhookSettings

        settings = MetaWebhookSettings(
            host="127.0.0.1",
            port=0,
            app_secret=SecretStr(APP_SECRET),
            verify_token=SecretStr(VERIFY_TOKEN),
            batch_wait_s=0.3,
            batch_max=1 if small else 100,
        )
        return self.track(MetaWebhookConnector(settings, BRANDS))

    async def post(self, port: int, body: bytes, msg_id: str, stamp: int | None = None) -> int:
        from listener.connectors.meta_webhook import sign

        if self.session is None:
            self.session = aiohttp.ClientSession()
        headers = {
            "X-Hub-Signature-256": sign(APP_SECRET.encode(), body),
            "Content-Type": "application/json",
        }
        url = f"http://127.0.0.1:{port}/webhooks/meta"
        async with self.session.post(url, data=body, headers=headers) as response:
            await response.read()
            return response.status


class GraphPages(HttpHarness):
    """Shared by the Graph and Threads servers: token check, injected errors, cursor pages."""

    TOKEN = "page-token-EAAB"
    sources: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        super().__init__()
        self.answer_next: tuple[int, Any, dict[str, str]] | None = None
        self.token_error = (
            400,
            graph_error(190, "Error validating access token: expired", sub=463),
        )

    def check(self, request: web.Request) -> web.Response | None:
        """The error to answer instead of the page, if any."""
        if request.query.get("access_token") != self.TOKEN:
            status, body = self.token_error
            return web.json_response(body, status=status)
        if self.answer_next is not None:
            status, body, headers = self.answer_next
            self.answer_next = None
            return web.json_response(body, status=status, headers=headers)
        return None

    def page(self, request: web.Request, items: list[Any], limit_default: int = 25) -> web.Response:
        """One cursor page of ``items`` (already filtered and ordered)."""
        limit = int(request.query.get("limit", str(limit_default)))
        after = request.query.get("after")
        start = int(after.removeprefix("o")) if after else 0
        chunk = items[start : start + limit]
        body: dict[str, Any] = {"data": chunk}
        if chunk:
            body["paging"] = {"cursors": {"before": f"o{start}", "after": f"o{start + len(chunk)}"}}
            if start + len(chunk) < len(items):
                query = {**request.query, "after": f"o{start + len(chunk)}"}
                body["paging"]["next"] = f"{self.base}{request.path}?{urlencode(query)}"
        usage = {"call_count": 5, "total_cputime": 2, "total_time": 3}
        return web.json_response(body, headers={"X-App-Usage": json.dumps(usage)})


MENTIONED = {
    "mentioned_comment": re.compile(
        r"mentioned_comment\.comment_id\((\d+)\)\{id,text,timestamp,username,media\{id,permalink\}\}"
    ),
    "mentioned_media": re.compile(
        r"mentioned_media\.media_id\((\d+)\)\{id,caption,timestamp,username,permalink\}"
    ),
}
"""The IG User fields that read an @mention's text, exactly as documented."""


class MetaGraphHarness(GraphPages):
    """Graph API v23.0: ``/{page-id}/feed`` (``since``, cursors), ``/{ig-user-id}/media``,
    and ``/{ig-user-id}?fields=mentioned_comment...|mentioned_media...`` (the text of an
    Instagram @mention, for ``meta_webhook``)."""

    name = "meta_graph"
    overlap_allowed = False
    sources = ("facebook", "instagram")
    PAGE, IG = "1001", "17841400000000001"

    def routes(self, app: web.Application) -> None:
        app.router.add_get(f"/v23.0/{self.PAGE}/feed", self._feed)
        app.router.add_get(f"/v23.0/{self.IG}/media", self._media)
        app.router.add_get(f"/v23.0/{self.IG}", self._ig_user)

    async def _ig_user(self, request: web.Request) -> web.Response:
        """``mentioned_comment.comment_id(<id>){..}`` / ``mentioned_media.media_id(<id>){..}``."""
        failure = self.check(request)
        if failure is not None:
            return failure
        fields = request.query.get("fields", "")
        known = fixture("meta", "ig_mentioned.json")
        for field, pattern, items in (
            ("mentioned_comment", MENTIONED["mentioned_comment"], known["comments"]),
            ("mentioned_media", MENTIONED["mentioned_media"], known["media"]),
        ):
            match = pattern.fullmatch(fields)
            if match is None:
                continue
            found = [item for item in items if item["id"] == match[1]]
            if not found:  # deleted, or not a mention of this account
                message = (
                    f"Unsupported get request. Object with ID '{match[1]}' does not exist, "
                    "cannot be loaded due to missing permissions, or does not support this "
                    "operation."
                )
                return web.json_response(
                    graph_error(100, message, "GraphMethodException", 33), status=400
                )
            return web.json_response({field: found[0], "id": self.IG})
        return web.json_response(
            graph_error(100, f"(#100) Tried accessing nonexisting field ({fields})"), status=400
        )

    async def _feed(self, request: web.Request) -> web.Response:
        failure = self.check(request)
        if failure is not None:
            return failure
        since = int(request.query.get("since", "0"))
        posts = [
            p
            for p in fixture("meta", "page_feed.json")
            if (stamp(p, "created_time") or since) >= since
        ]
        return self.page(request, posts)

    async def _media(self, request: web.Request) -> web.Response:
        failure = self.check(request)
        return failure or self.page(request, fixture("meta", "ig_media.json"))

    def connector(self, small: bool = False) -> Connector:
        from listener.connectors.meta_graph import MetaGraphConnector, MetaGraphSettings

        settings = MetaGraphSettings(
            access_token=SecretStr(self.TOKEN),
            page_id=self.PAGE,
            ig_user_id=self.IG,
            base_url=self.base,
            limit=1 if small else 25,
            lookback_s=10 * 365 * 86400,
            poll_interval_s=0,
        )
        return MetaGraphConnector(settings, BRANDS)


class ThreadsHarness(GraphPages):
    """Threads API v1.0: ``/keyword_search`` (``q``, ``search_type``, ``since``) and mentions.

    A post found by the search and in the mentions is returned by both sources
    (the runner drops the repeat by id), hence ``overlap_allowed``.
    """

    name = "threads"
    overlap_allowed = True
    TOKEN = "threads-long-lived-THAA"
    USER = "24000000000000001"

    def __init__(self) -> None:
        super().__init__()
        self.token_error = (
            401,
            graph_error(190, "Invalid OAuth access token - Cannot parse access token"),
        )

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/v1.0/keyword_search", self._search)
        app.router.add_get(f"/v1.0/{self.USER}/mentions", self._mentions)

    def _posts(self, request: web.Request, keep: Any) -> list[Any]:
        since = int(request.query.get("since", "0"))
        posts = [
            p for p in fixture("threads", "posts.json") if keep(str(p.get("text", "")).lower())
        ]
        posts = [p for p in posts if (stamp(p, "timestamp") or since) >= since]
        return sorted(posts, key=lambda p: p.get("timestamp", ""), reverse=True)

    async def _search(self, request: web.Request) -> web.Response:
        failure = self.check(request)
        if failure is not None:
            return failure
        if request.query.get("search_type") != "RECENT" or not request.query.get("q"):
            return web.json_response(
                graph_error(100, "Invalid parameter", "THApiException"), status=400
            )
        term = request.query["q"].lower()
        return self.page(request, self._posts(request, lambda text: term in text))

    async def _mentions(self, request: web.Request) -> web.Response:
        failure = self.check(request)
        return failure or self.page(request, self._posts(request, lambda text: "@acme" in text))

    def connector(self, small: bool = False) -> Connector:
        from listener.connectors.threads import ThreadsConnector, ThreadsSettings

        settings = ThreadsSettings(
            access_token=SecretStr(self.TOKEN),
            user_id=self.USER,
            base_url=self.base,
            limit=1 if small else 25,
            lookback_s=10 * 365 * 86400,
            poll_interval_s=0,
        )
        return ThreadsConnector(settings, BRANDS)


META_HARNESSES = (MetaWebhookHarness, MetaGraphHarness, ThreadsHarness)
