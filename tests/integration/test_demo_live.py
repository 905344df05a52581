"""``brand-listener demo --live bluesky`` against a local Jetstream-shaped websocket server.

The demo is run as a user would run it (a subprocess with its own broker,
worker and ``listen``), pointed at the fake with ``--jetstream-url``; the
routed posts it prints are the fixture's acme complaint and question.
"""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from contract.servers import JetstreamHarness

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[2]


def free_port_pair() -> int:
    """A free port whose successor is free too (the demo's broker uses port and port + 1)."""
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return int(port)
    raise RuntimeError("no two adjacent free ports")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def jetstream() -> Iterator[JetstreamHarness]:
    """The contract suite's Jetstream fake, served from a thread's own event loop."""
    harness = JetstreamHarness()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(harness.start(), loop).result(10)
    try:
        yield harness
    finally:
        asyncio.run_coroutine_threadsafe(harness.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def test_live_bluesky_demo_prints_routed_posts(tmp_path: Path) -> None:
    started = time.monotonic()
    with jetstream() as harness:
        url = harness.url
        cmd = [
            sys.executable, "-m", "agents.commands.cli", "demo",
            "--live", "bluesky", "--brand", "acme", "--keyword", "acme",
            "--jetstream-url", url, "--duration", "6", "--exit-when-done",
            "--port", str(free_port_pair()), "--web-port", str(free_port()),
            "--inbox-port", str(free_port()),
            "--data-dir", str(tmp_path / "demo"),
        ]  # fmt: skip
        done = subprocess.run(  # noqa: S603
            cmd, cwd=ROOT, capture_output=True, text=True, timeout=110, check=False
        )
        requests = list(harness.requests)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    routed = [line.split() for line in out.splitlines() if re.match(r"P\d  ", line)]
    assert routed, out
    assert {r[3] for r in routed} == {"bluesky"}, out
    assert {r[1] for r in routed} <= {"complaint", "question"}, out
    assert "listening live to bluesky" in out and "posts need a human answer" in out
    assert requests and requests[0]["wantedCollections"] == ["app.bsky.feed.post"]
    config = (tmp_path / "demo" / "live-listen.yaml").read_text()
    assert url in config and "acme" in config
    assert time.monotonic() - started < 60
