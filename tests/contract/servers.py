"""Local servers speaking each source's documented wire format, and one harness per connector.

A harness starts its server on 127.0.0.1, builds the connector pointed at it, and
can make the server answer the next request with ``429`` + ``Retry-After``. The
payloads are recorded-shape fixtures from ``tests/fixtures/<platform>/``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlparse

import aiohttp
import orjson
from aiohttp import web
from pydantic import SecretStr
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from listener.brands import BrandMatcher, BrandSettings
from listener.connectors.base import Connector

FIXTURES = Path(__file__).parent.parent / "fixtures"
BRANDS = BrandMatcher(
    [BrandSettings(name="acme", keywords=("acme",), hashtags=("acme",), domains=("acme.example",))]
)


def fixture(platform: str, name: str) -> Any:
    """A JSON fixture file."""
    return json.loads((FIXTURES / platform / name).read_text(encoding="utf-8"))


class Harness:
    """Base harness: subclasses set ``name`` and implement start/stop/connector."""

    name: ClassVar[str]
    overlap_allowed: ClassVar[bool] = False
    """Whether a resume may repeat ids (the runner drops them)."""
    push: ClassVar[bool] = False
    """Push sources (webhook) have no upstream that rate-limits them."""

    def __init__(self) -> None:
        self.fail_next: tuple[int, str] | None = None

    async def start(self) -> None:
        """Start the local server."""

    async def stop(self) -> None:
        """Stop the local server."""

    def connector(self, small: bool = False) -> Connector:
        """A fresh connector pointed at the local server (``small``: tiny pages/batches)."""
        raise NotImplementedError

    def rate_limit_next(self, retry_after: str = "7") -> None:
        """Answer the next request with 429 and this Retry-After."""
        self.fail_next = (429, retry_after)

    async def feed(self) -> None:
        """Push sources: deliver the fixture events (pull sources: nothing)."""

    def replay(self) -> None:
        """Push sources: forget what was acknowledged, so a new connector gets it all again."""


class JetstreamHarness(Harness):
    """Jetstream ``/subscribe``: JSON events with ``time_us``; ``cursor`` replays from there."""

    name = "bluesky"
    overlap_allowed = True

    def __init__(self) -> None:
        super().__init__()
        self.events: list[Any] = fixture("bluesky", "jetstream_events.json")
        self.server: Server | None = None
        self.requests: list[dict[str, list[str]]] = []

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        self.requests.append(parse_qs(urlparse(request.path).query))
        if self.fail_next is not None:
            status, after = self.fail_next
            self.fail_next = None
            response = connection.respond(status, "Too Many Requests\n")
            response.headers["Retry-After"] = after
            return response
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        query = parse_qs(urlparse(ws.request.path if ws.request else "/").query)
        cursor = int(query.get("cursor", ["0"])[0])
        for event in self.events:
            if isinstance(event, str):
                await ws.send(event)
            elif event["time_us"] >= cursor:
                await ws.send(orjson.dumps(event).decode())
        await ws.close()  # a disconnect mid-stream, as after a server restart

    async def start(self) -> None:
        self.server = await serve(
            self._handler, "127.0.0.1", 0, process_request=self._process_request
        )

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = list(self.server.sockets)[0].getsockname()[:2]
        return f"ws://{host}:{port}/subscribe"

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    def connector(self, small: bool = False) -> Connector:
        from listener.connectors.bluesky import BlueskyConnector, BlueskySettings

        settings = BlueskySettings(
            url=self.url, rewind_s=0.002, batch_wait_s=0.3, batch_max=3 if small else 500
        )
        return BlueskyConnector(settings, BRANDS)


class HttpHarness(Harness):
    """An aiohttp server on 127.0.0.1; subclasses add routes in ``routes``."""

    def __init__(self) -> None:
        super().__init__()
        self.runner: web.AppRunner | None = None
        self.base = ""
        self.requests: list[web.Request] = []

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        self.requests.append(request)
        if self.fail_next is not None:
            status, after = self.fail_next
            self.fail_next = None
            return web.json_response(
                {"message": "Too Many Requests"}, status=status, headers={"Retry-After": after}
            )
        return await handler(request)

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        self.routes(app)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.base = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


class AlgoliaHarness(HttpHarness):
    """HN Search ``/api/v1/search_by_date``: newest first, numericFilters, paging."""

    name = "hackernews"
    overlap_allowed = True

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v1/search_by_date", self._search)

    async def _search(self, request: web.Request) -> web.Response:
        hits = fixture("hackernews", "search_by_date_hits.json")
        query = request.query.get("query", "").lower()
        floor = 0
        for part in request.query.get("numericFilters", "").split(","):
            if part.startswith("created_at_i>="):
                floor = int(part.split(">=")[1])
        per_page = int(request.query.get("hitsPerPage", "20"))
        page = int(request.query.get("page", "0"))

        def text(hit: dict[str, Any]) -> str:
            return " ".join(str(hit.get(k) or "") for k in ("title", "comment_text", "story_text"))

        found = [
            h for h in hits if query in text(h).lower() and h.get("created_at_i", floor) >= floor
        ]
        found.sort(key=lambda h: h.get("created_at_i", 0), reverse=True)
        pages = max(1, -(-len(found) // per_page))
        body = {
            "hits": found[page * per_page : (page + 1) * per_page],
            "nbHits": len(found),
            "page": page,
            "nbPages": pages,
            "hitsPerPage": per_page,
            "exhaustiveNbHits": True,
            "query": query,
            "params": request.query_string,
        }
        return web.json_response(body)

    def connector(self, small: bool = False) -> Connector:
        from listener.connectors.hackernews import HackerNewsConnector, HackerNewsSettings

        settings = HackerNewsSettings(
            base_url=f"{self.base}/api/v1",
            hits_per_page=2 if small else 100,
            poll_interval_s=0,
            lookback_s=10 * 365 * 86400,
        )
        return HackerNewsConnector(settings, BRANDS)


class FeedHarness(HttpHarness):
    """Two static feeds (RSS 2.0 comments, Atom) with ETag / Last-Modified; 304 when unchanged."""

    name = "rss"
    FEEDS: ClassVar[dict[str, tuple[str, str]]] = {
        "/comments.rss": ("comments.rss.xml", "application/rss+xml"),
        "/news.atom": ("news.atom.xml", "application/atom+xml"),
    }

    def __init__(self) -> None:
        super().__init__()
        self.not_modified = 0

    def routes(self, app: web.Application) -> None:
        for path in self.FEEDS:
            app.router.add_get(path, self._feed)

    async def _feed(self, request: web.Request) -> web.Response:
        name, ctype = self.FEEDS[request.path]
        body = (FIXTURES / "rss" / name).read_bytes()
        etag = '"' + hashlib.sha1(body).hexdigest()[:16] + '"'
        modified = "Tue, 10 Sep 2024 10:00:00 GMT"
        if request.headers.get("If-None-Match") == etag:
            self.not_modified += 1
            return web.Response(status=304, headers={"ETag": etag})
        headers = {"ETag": etag, "Last-Modified": modified}
        return web.Response(body=body, content_type=ctype, headers=headers)

    def connector(self, small: bool = False) -> Connector:
        from listener.connectors.rss import RssConnector, RssSettings

        settings = RssSettings(
            feeds=tuple(self.base + path for path in self.FEEDS),
            poll_interval_s=0,
            max_entries_per_poll=1 if small else 1000,
        )
        return RssConnector(settings, BRANDS)


class MastodonHarness(HttpHarness):
    """``/api/v1/timelines/tag/:hashtag`` and ``/api/v2/search``: newest first, ``min_id``."""

    name = "mastodon"
    TOKEN = "test-token"

    search_newest_first: bool = False
    """Search: cut a ``min_id`` page from the newest end (the docs say the oldest)."""

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v1/timelines/tag/{tag}", self._timeline)
        app.router.add_get("/api/v2/search", self._search)

    async def _search(self, request: web.Request) -> web.Response:
        """``/api/v2/search``: statuses need a user token; ``min_id``/``max_id``/``limit``."""
        query = request.query
        if request.headers.get("Authorization") != f"Bearer {self.TOKEN}":
            return web.json_response({"error": "The access token is invalid"}, status=401)
        body: dict[str, list[Any]] = {"accounts": [], "statuses": [], "hashtags": []}
        if query.get("type") != "statuses" or not query.get("q"):
            return web.json_response(body)
        corpus = fixture("mastodon", "tag_timeline.json") + fixture(
            "mastodon", "search_statuses.json"
        )
        term = query["q"].lower()
        hits = sorted(
            (s for s in corpus if term in str(s.get("content") or "").lower()),
            key=lambda s: int(s["id"]),
        )
        if "max_id" in query:
            hits = [s for s in hits if int(s["id"]) < int(query["max_id"])]
        limit = min(40, int(query.get("limit", "20")))
        if "min_id" in query and not self.search_newest_first:
            hits = [s for s in hits if int(s["id"]) > int(query["min_id"])][:limit]
        else:
            floor = int(query.get("min_id", "0"))
            hits = [s for s in hits if int(s["id"]) > floor][-limit:]
        body["statuses"] = list(reversed(hits))
        return web.json_response(body)

    async def _timeline(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.TOKEN}":
            return web.json_response({"error": "The access token is invalid"}, status=401)
        statuses = fixture("mastodon", "tag_timeline.json")
        limit = min(40, int(request.query.get("limit", "20")))
        ordered = sorted(statuses, key=lambda s: int(s["id"]))
        if "min_id" in request.query:
            after = [s for s in ordered if int(s["id"]) > int(request.query["min_id"])]
            page = after[:limit]
        else:
            page = ordered[-limit:]
        return web.json_response(list(reversed(page)))

    def connector(self, small: bool = False) -> Connector:
        from listener.connectors.mastodon import MastodonConnector, MastodonSettings

        settings = MastodonSettings(
            instance=self.base,
            access_token=SecretStr(self.TOKEN),
            limit=2 if small else 40,
            start_min_id="0",
            poll_interval_s=0,
        )
        return MastodonConnector(settings, BRANDS)


class WebhookHarness(Harness):
    """A Standard Webhooks *sender*: signs each fixture delivery and POSTs it to the connector.

    Like a real sender it retries (on the next :meth:`feed`) what was not answered 2xx,
    and posts concurrently, not waiting for one answer before the next request.
    """

    name = "webhook"
    push = True
    SECRET = "whsec_" + base64.b64encode(b"contract-test-secret-0123456789ab").decode()

    def __init__(self) -> None:
        super().__init__()
        raw = fixture("webhook", "deliveries.json")
        self.bodies = [b.encode() if isinstance(b, str) else orjson.dumps(b) for b in raw]
        self.conns: list[Any] = []
        self.acked: set[int] = set()
        self.inflight: dict[int, set[int]] = {}
        self.answers: list[int] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.closing: dict[int, set[asyncio.Task[None]]] = {}
        self.session: aiohttp.ClientSession | None = None

    def connector(self, small: bool = False) -> Connector:
        from listener.connectors.webhook import WebhookConnector, WebhookSettings

        settings = WebhookSettings(
            host="127.0.0.1",
            port=0,
            secrets=(SecretStr(self.SECRET),),
            batch_wait_s=0.3,
            batch_max=1 if small else 100,
        )
        return self.track(WebhookConnector(settings, BRANDS))

    def track(self, conn: Any) -> Any:
        """``conn``, now one of the connectors :meth:`feed` delivers to."""
        self.conns.append(conn)
        return conn

    def replay(self) -> None:
        """A fresh sender: every delivery is sent again (to the next connector)."""
        self.acked.clear()

    async def post(self, port: int, body: bytes, msg_id: str, stamp: int | None = None) -> int:
        from listener.connectors.webhook import decode_secret, sign

        if self.session is None:
            self.session = aiohttp.ClientSession()
        ts = str(int(time.time()) if stamp is None else stamp)
        headers = {
            "webhook-id": msg_id,
            "webhook-timestamp": ts,
            "webhook-signature": sign(decode_secret(self.SECRET), msg_id, ts, body),
            "content-type": "application/json",
        }
        url = f"http://127.0.0.1:{port}/webhooks/mentions"
        async with self.session.post(url, data=body, headers=headers) as response:
            await response.read()
            return response.status

    async def deliver(self, port: int, index: int) -> int:
        """Send delivery ``index`` to the endpoint on ``port``; the answer's status."""
        return await self.post(port, self.bodies[index], f"msg_{index}")

    async def _send(self, conn: Any, index: int) -> None:
        try:
            status = await self.deliver(conn.port, index)
        except aiohttp.ClientError:
            status = 0
        self.answers.append(status)
        self.inflight[id(conn)].discard(index)
        if 200 <= status < 300 or status == 400:
            self.acked.add(index)  # a 400 is final: a sender does not retry it

    async def feed(self) -> None:
        closed = [t for c in self.conns if c.closed for t in self.closing.get(id(c), ())]
        await asyncio.gather(*closed, return_exceptions=True)  # their 503s: retry below
        for conn in self.conns:
            if conn.closed:
                continue
            await conn.start()
            pending = self.inflight.setdefault(id(conn), set())
            for index in range(len(self.bodies)):
                if index in self.acked or index in pending:
                    continue
                pending.add(index)
                task = asyncio.create_task(self._send(conn, index))
                self.tasks.add(task)
                self.closing.setdefault(id(conn), set()).add(task)
                task.add_done_callback(self.tasks.discard)
        await asyncio.sleep(0.05)  # let the requests reach the endpoint

    async def stop(self) -> None:
        for conn in self.conns:
            await conn.close()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.session is not None:
            await self.session.close()


from .paid_servers import RedditHarness, XHarness  # noqa: E402  (they build on the above)

HARNESSES: dict[str, type[Harness]] = {
    h.name: h
    for h in (
        JetstreamHarness,
        AlgoliaHarness,
        FeedHarness,
        MastodonHarness,
        WebhookHarness,
        XHarness,
        RedditHarness,
    )
}

from .servers_social import (  # noqa: E402  (they build on the above)
    FlickrHarness,
    LinkedInHarness,
    TumblrHarness,
)

HARNESSES.update({h.name: h for h in (TumblrHarness, FlickrHarness, LinkedInHarness)})

from .servers_reviews import REVIEW_HARNESSES  # noqa: E402  (they build on the above)

HARNESSES.update({h.name: h for h in REVIEW_HARNESSES})

from .servers_youtube_discourse import (  # noqa: E402
    DiscourseHarness,
    DiscourseWebhookHarness,
    YoutubeHarness,
)

HARNESSES.update({h.name: h for h in (YoutubeHarness, DiscourseHarness, DiscourseWebhookHarness)})

__all__ = ["HARNESSES", "BRANDS", "Harness", "Headers", "fixture"]

from .servers_meta import META_HARNESSES  # noqa: E402  (Meta: webhook, Graph poll, Threads)

HARNESSES.update({h.name: h for h in META_HARNESSES})
