"""The base of the local sink target servers: routing, auth, scripted faults, lost answers.

Faults are scripted: :meth:`SinkServer.script` queues canned answers (429 +
Retry-After, 503) for the next requests. ``lose_after_create`` makes the
server create the object and then lose the answer, ``lose_as`` saying how:

- ``"503"``: answer 503, as when a proxy loses the upstream answer;
- ``"timeout"``: hold the answer until the client has given up (its HTTP
  timeout must be shorter than ``hang_s``), then send it to nobody;
- ``"drop"``: close the connection without an answer (a reset).

``created`` holds what was really created, to count duplicates; ``lost``
counts the answers lost.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import orjson
from aiohttp import web

LoseAs = Literal["503", "timeout", "drop"]


def basic(user: str, password: str) -> str:
    """The ``Authorization`` header value of HTTP basic auth."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def jsonr(body: Any, status: int, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response."""
    return web.Response(
        body=orjson.dumps(body), status=status, headers=headers, content_type="application/json"
    )


class SinkServer:
    """Base: routing, scripted faults, auth, a store of created objects."""

    name: ClassVar[str]
    mode: ClassVar[str] = ""
    routes: ClassVar[list[tuple[str, str]]]

    def __init__(self) -> None:
        self.created: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.lose_after_create = 0
        self.lose_as: LoseAs = "503"
        self.hang_s = 5.0
        self.lost = 0
        self.down: Callable[[], bool] = lambda: False  # an outage: 503 while it says so
        self._script: list[web.Response] = []
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._release = asyncio.Event()
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        for method, path in self.routes:
            app.router.add_route(method, path, self._entry)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        self._release.set()  # answers held back by "timeout" go out (to nobody) now
        if self._runner is not None:
            await self._runner.cleanup()

    def script(self, status: int, count: int = 1, retry_after: str | None = None) -> None:
        for _ in range(count):
            headers = {"Retry-After": retry_after} if retry_after is not None else None
            self._script.append(self.error(status, headers))

    def error(self, status: int, headers: dict[str, str] | None = None) -> web.Response:
        return jsonr({"error": f"HTTP {status}"}, status, headers)

    async def _entry(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append((request.method, request.path_qs, dict(request.headers), body))
        if self._script:
            return self._script.pop(0)
        if self.down():
            return self.error(503)
        if not self.authorized(request):
            return self.unauthorized()
        before = len(self.created)
        response = await self.handle(request, orjson.loads(body) if body else {})
        if self.lose_after_create and len(self.created) > before:
            self.lose_after_create -= 1
            self.lost += 1
            return await self._lose(request, response)
        return response

    async def _lose(self, request: web.Request, response: web.Response) -> web.StreamResponse:
        if self.lose_as == "timeout":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._release.wait(), self.hang_s)
            return response
        if self.lose_as == "drop":
            if request.transport is not None:
                request.transport.abort()
            return response
        return self.error(503)

    def sink(self, good_auth: bool = True, clock: Any = None, timeout_s: float = 10.0) -> Any:
        """The sink under test, pointed at this server (``timeout_s``: its HTTP timeout)."""
        raise NotImplementedError

    def authorized(self, request: web.Request) -> bool:
        raise NotImplementedError

    def unauthorized(self) -> web.Response:
        raise NotImplementedError

    async def handle(self, request: web.Request, body: Any) -> web.Response:
        raise NotImplementedError

    def check(self, obj: dict[str, Any], mention_id: str) -> None:
        """Assert the created object carries what the sink must send."""
        raise NotImplementedError
