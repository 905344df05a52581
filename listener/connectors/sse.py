"""Server-Sent Events over aiohttp: parse ``event:``/``data:`` frames from several streams at once.

Not a connector: the shared reader that streaming connectors (Mastodon) build on.
Frames follow the WHATWG EventSource format: lines ``field: value``, a blank line
ends an event, several ``data:`` lines join with newlines, lines starting with
``:`` are comments (Mastodon's ``:thump`` heartbeat) and are dropped.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import quote

import aiohttp

from listener.errors import RetryableError
from listener.retry import check_http_status

Event = tuple[str, str, str]
"""``(stream key, event name, data)``."""


async def read_events(
    response: aiohttp.ClientResponse, key: str, out: asyncio.Queue[Event | BaseException]
) -> None:
    """Put every event of one SSE response on ``out`` until it ends.

    Raises:
        aiohttp.ClientError: The connection failed mid-stream.
    """
    name, data = "message", list[str]()
    async for raw in response.content:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            if data:
                await out.put((key, name, "\n".join(data)))
            name, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)


class SseStreams:
    """Several SSE responses read concurrently into one queue.

    Args:
        session: The HTTP session (carries auth headers).
        urls: Stream key -> URL.
        open_timeout_s: Longest wait for each stream's response headers.
    """

    def __init__(
        self, session: aiohttp.ClientSession, urls: dict[str, str], open_timeout_s: float = 30.0
    ) -> None:
        self.session = session
        self.urls = urls
        self.open_timeout_s = open_timeout_s
        self._queue: asyncio.Queue[Event | BaseException] = asyncio.Queue()
        self._responses: list[aiohttp.ClientResponse] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def open(self, source: str) -> None:
        """Connect every stream and start reading.

        Raises:
            RetryableError: A connection failed, or 429/5xx.
            FatalError: 401/403 or another 4xx (via :func:`~listener.retry.check_http_status`).
        """
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.open_timeout_s)
        for key, url in self.urls.items():
            try:
                response = await self.session.get(
                    url, headers={"Accept": "text/event-stream"}, timeout=timeout
                )
            except (aiohttp.ClientError, TimeoutError) as exc:
                await self.close()
                raise RetryableError(f"{source}: cannot open stream {key}: {exc}") from exc
            self._responses.append(response)
            try:
                check_http_status(source, response.status, response.headers)
            except Exception:
                await self.close()
                raise
            self._tasks.append(asyncio.create_task(self._pump(key, response)))

    async def _pump(self, key: str, response: aiohttp.ClientResponse) -> None:
        try:
            await read_events(response, key, self._queue)
            await self._queue.put(ConnectionResetError(f"stream {key} ended"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            await self._queue.put(exc)

    async def read(self, most: int, wait_s: float) -> tuple[list[Event], BaseException | None]:
        """Up to ``most`` events within ``wait_s``; and why a stream closed, if one did."""
        events: list[Event] = []
        deadline = time.monotonic() + wait_s
        while len(events) < most:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                item = await asyncio.wait_for(self._queue.get(), remaining)
            except TimeoutError:
                break
            if isinstance(item, BaseException):
                return events, item
            events.append(item)
        return events, None

    async def close(self) -> None:
        """Stop reading and release every connection (safe twice)."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        responses, self._responses = self._responses, []
        for response in responses:
            response.release()
            response.close()


def mastodon_stream_urls(base: str, timelines: tuple[str, ...]) -> dict[str, str]:
    """Timeline key -> Mastodon streaming URL (``hashtag?tag=``, ``public``, ``public/local``)."""
    urls: dict[str, str] = {}
    for key in timelines:
        if key == "public":
            urls[key] = f"{base}/api/v1/streaming/public"
        elif key == "public:local":
            urls[key] = f"{base}/api/v1/streaming/public/local"
        else:
            urls[key] = f"{base}/api/v1/streaming/hashtag?tag={quote(key)}"
    return urls
