"""Every dashboard query and rule returns data from a real Prometheus scraping a real worker.

Real parts: the suite's Kafka broker, ``brand-listener worker`` as a subprocess
with the bundled ONNX model, the bundled sample posts replayed with the
project's producer, and the Debian ``prometheus`` binary scraping the worker
every second with deploy/prometheus/rules.yml loaded (rules evaluated every
second). One poison record makes the dead-letter counter exist. The worker
delivers the queue to a signed-webhook sink, a local receiver that answers 503
once (a retry), 400 once (a dead letter) and 204 after that, so every sink
metric has data; one item is acknowledged on ``mentions.acks`` so the
time-in-queue histogram has an observation. The sample posts were created
months ago, so their SLAs have passed: breaches and overdue items exist.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kafka import KafkaConsumer, KafkaProducer
from prometheus_client import CollectorRegistry

from agents.metrics import create
from agents.sinks.metrics import create as create_sink_metrics
from listener.kafka_local import free_port
from listener.producer import MentionProducer
from listener.replay import replay_file
from listener.samples import BRAND_POSTS
from listener.settings import KafkaSettings
from listener.topics import TopicNames

from .tools import GRAFANA_DASHBOARDS, ROOT, RULES, dashboard_queries, require, rules, selectors

pytestmark = pytest.mark.integration

POSTS = 300
DASHBOARDS = sorted(GRAFANA_DASHBOARDS.glob("*.json"))


def tail(path: Path, lines: int = 30) -> str:
    text = path.read_text(errors="replace") if path.exists() else "<no log>"
    return f"--- {path.name} ---\n" + "\n".join(text.splitlines()[-lines:])


def http_get(url: str, timeout: float = 3.0) -> tuple[int, bytes]:
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
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class Prometheus:
    """The Debian ``prometheus`` binary scraping ``target`` every second, with the rules loaded."""

    def __init__(self, tmp: Path, target: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {"job_name": "brand-listener-worker", "static_configs": [{"targets": [target]}]}
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
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else 0.0


class Receiver(http.server.BaseHTTPRequestHandler):
    """A webhook receiver: 503 on the first request, 400 on the second, then 204."""

    answers = iter((503, 400))

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(next(Receiver.answers, 204))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    """The URL of a local :class:`Receiver`."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks"
    finally:
        server.shutdown()
        server.server_close()


def acknowledge_one(bootstrap: str, topics: TopicNames) -> None:
    """Read one item from the queue and write its acknowledgement to ``mentions.acks``."""
    consumer = KafkaConsumer(
        topics.needs_response,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=20_000,
    )
    try:
        key = next(iter(consumer)).key
    finally:
        consumer.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    try:
        producer.send(topics.acks, key=key, value=json.dumps({"acked_at": time.time()}).encode())
        producer.flush(30)
    finally:
        producer.close()


@pytest.fixture
def stack(
    kafka_bootstrap: str, topics: TopicNames, group_id: str, tmp_path: Path, receiver: str
) -> Iterator[Prometheus]:
    """A worker that has processed the sample posts, and a Prometheus that has scraped it."""
    web_port = free_port()
    config = tmp_path / "worker.yaml"
    sink = {"url": receiver, "secret": "whsec_" + "c2VjcmV0LWZvci10ZXN0cw=="}
    config.write_text(
        yaml.safe_dump(
            {"sinks": {"webhook": sink}, "delivery": {"retry_base_s": 0.1}, "lag_interval_s": 1}
        )
    )
    worker = Process(
        [
            sys.executable,
            "-m",
            "agents.cli",
            "worker",
            "--bootstrap",
            kafka_bootstrap,
            "--topic-prefix",
            topics.prefix,
            "--app-id",
            group_id,
            "--web-port",
            str(web_port),
            "--data-dir",
            str(tmp_path / "faust-data"),
            "--config",
            str(config),
        ],  # fmt: skip
        tmp_path / "worker.log",
        env={**os.environ, "AGENTS_WEB_HOST": "127.0.0.1", "AGENTS_SESSION_TIMEOUT_S": "6"},
    )
    prometheus: Prometheus | None = None
    try:
        prometheus = Prometheus(tmp_path, f"127.0.0.1:{web_port}")
        logs = [worker.log, prometheus.process.log]

        def worker_ready() -> bool:
            assert worker.alive(), f"worker exited\n{tail(worker.log)}"
            return http_get(f"http://127.0.0.1:{web_port}/health/ready")[0] == 200

        wait_for("the worker's /health/ready", worker_ready, 90, logs)
        assert http_get(f"http://127.0.0.1:{web_port}/health")[0] == 200
        assert http_get(f"http://127.0.0.1:{web_port}/health/live")[0] == 200
        wait_for("prometheus /-/ready", prometheus.ready, 30, logs)

        settings = KafkaSettings(bootstrap_servers=kafka_bootstrap, topic_prefix=topics.prefix)
        with MentionProducer(settings) as producer:
            stats = replay_file(BRAND_POSTS, producer, limit=POSTS, progress=False)
        poison = KafkaProducer(bootstrap_servers=kafka_bootstrap)
        try:
            poison.send(topics.raw, key=b"poison", value=b"\x00 not json").get(timeout=30)
        finally:
            poison.close()

        routed = 'sum(brandlistener_mentions_processed_total{stage="routed"})'
        wait_for(
            f"{stats.produced} routed posts in Prometheus",
            lambda: prometheus.value(routed) >= stats.produced,
            60,
            logs,
        )
        acknowledge_one(kafka_bootstrap, topics)
        for series in (
            "brandlistener_dead_letter_total",
            "brandlistener_time_in_queue_seconds_count",
            'brandlistener_sink_deliveries_total{outcome="dead_letter"}',
            "brandlistener_sink_retries_total",
            "brandlistener_sla_breaches_total",
            f'brandlistener_consumer_lag{{topic="{topics.raw}"}}',
        ):
            wait_for(f"{series} in Prometheus", lambda s=series: prometheus.query(s), 30, logs)
        time.sleep(3)  # a few more scrapes and rule evaluations after the last increment
        yield prometheus
    finally:
        worker.stop()
        if prometheus is not None:
            prometheus.process.stop()


def test_dashboards_and_rules_return_data_from_a_live_worker(stack: Prometheus) -> None:
    empty: list[str] = []
    checked = 0
    for dashboard in DASHBOARDS:
        for title, expr in dashboard_queries(dashboard):
            checked += 1
            if not stack.query(expr):
                empty.append(f"{dashboard.name} / {title}: {expr}")
    for rule in rules():
        expr = rule["expr"]
        if "record" in rule:
            # The expression, and the series Prometheus recorded from it.
            for query in (expr, rule["record"]):
                checked += 1
                if not stack.query(query):
                    empty.append(f"rule {rule['record']}: {query}")
        else:
            # An alert's expression is empty unless it fires: it must evaluate, and
            # every series it reads must exist.
            stack.query(expr)
            for selector in selectors(expr):
                checked += 1
                if not stack.query(selector):
                    empty.append(f"alert {rule['alert']}: {selector}")
    assert not empty, f"{len(empty)} of {checked} queries returned no series:\n" + "\n".join(empty)
    assert checked > 40


def test_dashboards_read_only_metrics_the_worker_exports() -> None:
    registry = CollectorRegistry()
    create(registry)
    create_sink_metrics(registry)
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    exported = {
        family.name + suffix
        for family in registry.collect()
        for suffix in suffixes.get(family.type, ("",))
    } | {"up"}
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    queries = [e for d in DASHBOARDS for _, e in dashboard_queries(d)]
    queries += [rule["expr"] for rule in rules()]
    unknown = {s.split("{")[0] for q in queries for s in selectors(q)} - exported - recorded
    assert unknown == set(), f"queries read metrics nobody exports: {sorted(unknown)}"


def test_every_dashboard_panel_uses_the_provisioned_datasource() -> None:
    assert len(DASHBOARDS) == 2, DASHBOARDS
    for dashboard in DASHBOARDS:
        doc = json.loads(dashboard.read_text())
        assert doc["uid"] and doc["title"], dashboard
        for panel in doc["panels"]:
            if panel.get("targets"):
                assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}, panel
