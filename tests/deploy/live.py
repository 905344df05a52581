"""Live parts of the dashboard test: subprocesses, a real Prometheus, a local RSS feed server."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import yaml
from aiohttp import web

from listener.kafka_local import free_port

from .tools import ROOT, RULES, require


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` of a log file, headed by its name."""
    text = path.read_text(errors="replace") if path.exists() else "<no log>"
    return f"--- {path.name} ---\n" + "\n".join(text.splitlines()[-lines:])


def http_get(url: str, timeout: float = 3.0) -> tuple[int, bytes]:
    """``(status, body)`` of a GET; status 0 when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def wait_for(what: str, check: Any, timeout: float, logs: list[Path], step: float = 0.5) -> Any:
    """Poll ``check()`` until it returns something truthy; fail with the logs after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(step)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what}\n" + "\n".join(map(tail, logs))
    )


class Process:
    """A subprocess writing to a log file; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def alive(self) -> bool:
        """Whether it still runs."""
        return self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 15 s."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class Prometheus:
    """The Debian ``prometheus`` binary scraping each job every second, with the rules loaded.

    Args:
        tmp: Where its config, TSDB and log go.
        jobs: Scrape job name -> ``host:port`` target.
    """

    def __init__(self, tmp: Path, jobs: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": [target]}]}
                for job, target in jobs.items()
            ],
        }
        config_path = tmp / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config))
        self.process = Process(
            [
                require("prometheus"),
                f"--config.file={config_path}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            tmp / "prometheus.log",
        )

    def ready(self) -> bool:
        """Whether ``/-/ready`` answers 200 (fails if the process died)."""
        assert self.process.alive(), f"prometheus exited\n{tail(self.process.log)}"
        return http_get(f"{self.url}/-/ready")[0] == 200

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; raises with Prometheus's error message on a bad expression."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        status, body = http_get(url, timeout=10)
        assert status == 200, f"query failed ({status}): {expr}\n{body.decode(errors='replace')}"
        payload = json.loads(body)
        assert payload["status"] == "success", f"{expr}: {payload}"
        return list(payload["data"]["result"])

    def value(self, expr: str) -> float:
        """The first sample's value, 0 when the result is empty."""
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else 0.0


def rss_document(posts: Sequence[str], now: datetime | None = None) -> bytes:
    """An RSS 2.0 feed with one item per post, newest first, a minute apart, ending a minute ago."""
    now = now or datetime.now(UTC)
    items = []
    for n, text in enumerate(posts):
        published = format_datetime(now - timedelta(minutes=n + 1), usegmt=True)
        items.append(
            f"<item><title>{escape(text[:40])}</title>"
            f"<link>https://forum.example.org/t/{n}</link>"
            f'<guid isPermaLink="false">forum-{n}</guid><pubDate>{published}</pubDate>'
            f"<description>{escape(text)}</description></item>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
        "<title>Forum</title><link>https://forum.example.org/</link><description>posts</description>"
        f"<language>en</language>{''.join(items)}</channel></rss>"
    ).encode()


class FeedServer:
    """An aiohttp server on 127.0.0.1, on its own thread and event loop.

    ``/feed.rss`` answers ``503`` + ``Retry-After: 0`` to the first request (a retryable
    error and a reconnect), then the feed. ``/hn/...`` answers ``403`` (the Hacker News
    connector stops on a fatal error).
    """

    def __init__(self, posts: Sequence[str]) -> None:
        self.body = rss_document(posts)
        self.requests = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.base = ""

    async def _feed(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.requests == 1:
            return web.Response(status=503, headers={"Retry-After": "0"})
        return web.Response(body=self.body, content_type="application/rss+xml")

    async def _forbidden(self, request: web.Request) -> web.Response:
        return web.json_response({"message": "Forbidden"}, status=403)

    async def _start(self) -> str:
        app = web.Application()
        app.router.add_get("/feed.rss", self._feed)
        app.router.add_get("/hn/{tail:.*}", self._forbidden)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    def start(self) -> FeedServer:
        """Start serving; ``base`` is the server's URL."""
        self._thread.start()
        self.base = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        """Stop the server and its loop."""
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def listen_config(tmp: Path, feeds: FeedServer, metrics_port: int) -> Path:
    """A ``listen`` config: the local feed (rss) and a forbidden Hacker News (fatal)."""
    config = {
        "listen": {
            "cursor_dir": str(tmp / "cursors"),
            "metrics_host": "127.0.0.1",
            "metrics_port": metrics_port,
            "backoff_base_s": 0.2,
        },
        "brands": [{"name": "acme", "keywords": ["acme"]}],
        "connectors": {
            "rss": {"feeds": [f"{feeds.base}/feed.rss"], "poll_interval_s": 1, "timeout_s": 5},
            "hackernews": {"base_url": f"{feeds.base}/hn", "poll_interval_s": 60},
        },
    }
    path = tmp / "listen.yaml"
    path.write_text(yaml.safe_dump(config))
    return path
