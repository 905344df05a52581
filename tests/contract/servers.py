"""Local servers speaking each source's documented wire format, and one harness per connector.

A harness starts its server on 127.0.0.1, builds the connector pointed at it, and
can make the server answer the next request with ``429`` + ``Retry-After``. The
payloads are recorded-shape fixtures from ``tests/fixtures/<platform>/``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlparse

import orjson
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


HARNESSES: dict[str, type[Harness]] = {h.name: h for h in (JetstreamHarness,)}

__all__ = ["HARNESSES", "BRANDS", "Harness", "Headers", "fixture"]
