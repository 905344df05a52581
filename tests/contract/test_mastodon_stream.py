"""Mastodon streaming: SSE hashtag stream + REST ``min_id`` gap-fill on every (re)connect."""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

import pytest
from aiohttp import web
from pydantic import SecretStr

from listener.connectors.base import Batch
from listener.connectors.mastodon import MastodonConnector, MastodonSettings
from listener.errors import FatalError, RetryableError

from .servers import BRANDS, MastodonHarness, fixture

pytestmark = pytest.mark.timeout(30)
BASE_ID = 113100000000000000


def status(n: int) -> dict[str, Any]:
    """A new status numbered ``n`` shaped like the fixture's question post."""
    template = copy.deepcopy(fixture("mastodon", "tag_timeline.json")[-1])
    template["id"] = str(BASE_ID + n)
    template["url"] = f"https://mastodon.example/@someone/{BASE_ID + n}"
    return template


class StreamingHarness(MastodonHarness):
    """The tag timeline (REST) plus ``/api/v1/streaming/hashtag?tag=`` (SSE).

    Each stream connection plays the next script: a list of raw SSE frames, then
    either closes (``"CLOSE"``) or stays open, sending ``:thump`` heartbeats.
    """

    def __init__(self) -> None:
        super().__init__()
        self.statuses: list[dict[str, Any]] = fixture("mastodon", "tag_timeline.json")
        self.scripts: list[list[str]] = []
        self.stream_requests: list[web.Request] = []

    def routes(self, app: web.Application) -> None:
        super().routes(app)
        app.router.add_get("/api/v1/streaming/hashtag", self._stream)

    async def _timeline(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.TOKEN}":
            return web.json_response({"error": "The access token is invalid"}, status=401)
        limit = min(40, int(request.query.get("limit", "20")))
        ordered = sorted(self.statuses, key=lambda s: int(s["id"]))
        floor = int(request.query.get("min_id", "0"))
        page = [s for s in ordered if int(s["id"]) > floor][:limit]
        return web.json_response(list(reversed(page)))

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        self.stream_requests.append(request)
        if request.headers.get("Authorization") != f"Bearer {self.TOKEN}":
            return web.json_response({"error": "Error while trying to authenticate"}, status=401)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        script = self.scripts.pop(0) if self.scripts else []
        for frame in script:
            if frame == "CLOSE":
                return response
            await response.write(frame.encode())
        try:
            while True:
                await asyncio.sleep(0.1)
                await response.write(b":thump\n")
        except ConnectionError:  # the client went away
            return response

    def streaming(self, token: str = MastodonHarness.TOKEN) -> MastodonConnector:
        settings = MastodonSettings(
            instance=self.base,
            access_token=SecretStr(token),
            limit=2,
            streaming=True,
            batch_wait_s=0.3,
            poll_interval_s=0,
        )
        return MastodonConnector(settings, BRANDS)


def update(n: int) -> str:
    return f"event: update\ndata: {json.dumps(status(n))}\n\n"


async def poll_until_quiet(conn: MastodonConnector, cursor: str | None) -> tuple[list[Batch], str]:
    """Poll until a poll brings nothing (retrying after a dropped stream, as the runner does)."""
    batches: list[Batch] = []
    for _ in range(20):
        try:
            batch = await conn.poll(cursor)
        except RetryableError:
            continue
        batches.append(batch)
        cursor = batch.cursor or cursor
        if not batch.mentions and not batch.skipped:
            break
    assert cursor is not None
    return batches, cursor


def test_stream_then_gap_fill_after_a_disconnect() -> None:
    async def go() -> tuple[list[str], list[str], StreamingHarness, str]:
        h = StreamingHarness()
        await h.start()
        h.scripts = [
            [":thump\n", update(7), f"event: delete\ndata: {BASE_ID + 1}\n\n"],
            ["event: update\ndata: {not json\n\n", update(8), "CLOSE"],
        ]
        conn = h.streaming()
        try:
            start = json.dumps({"acme": str(BASE_ID + 3)})
            # 1st connection: gap-fill 4..6 (4 is malformed, 5 a boost), then the stream's 7.
            first, cursor = await poll_until_quiet(conn, start)
            h.statuses += [status(7)]
            await conn._close_stream()  # as if the server dropped us
            # 2nd connection plays the malformed event and 8, then closes; 9 is
            # posted while we are disconnected and must come from the gap-fill.
            h.statuses += [status(8), status(9)]
            second, cursor = await poll_until_quiet(conn, cursor)
        finally:
            await conn.close()
            await h.stop()
        ids = [m.id.rsplit("/", 1)[1] for b in first + second for m in b.mentions]
        reasons = [s.reason for b in first + second for s in b.skipped]
        return ids, reasons, h, cursor

    ids, reasons, h, cursor = asyncio.run(go())
    expected = [str(BASE_ID + n) for n in (6, 7, 8, 9)]
    assert set(ids) == set(expected), "no gap"
    assert sorted(reasons) == ["decode", "validation"]
    assert json.loads(cursor) == {"acme": str(BASE_ID + 9)}
    assert len(h.stream_requests) >= 3
    assert all(r.query["tag"] == "acme" for r in h.stream_requests)
    assert [r.query.get("min_id") for r in h.requests if "timelines" in r.path][:1] == [
        str(BASE_ID + 3)
    ]


def test_stream_rejected_token_is_fatal() -> None:
    async def go() -> None:
        h = StreamingHarness()
        await h.start()
        conn = h.streaming(token="wrong")
        try:
            with pytest.raises(FatalError, match="credentials"):
                await conn.poll(None)
        finally:
            await conn.close()
            await h.stop()

    asyncio.run(go())
