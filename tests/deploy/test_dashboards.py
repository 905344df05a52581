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

``brand-listener inbox`` runs too, scraped by the same Prometheus: a lead logs
in over HTTP and records a first response and a resolution on one queue item,
so the inbox panels (times to first response and resolution, items by status)
have data.

``brand-listener listen --config <generated yaml>`` runs too, as a subprocess into
the same broker, scraped by the same Prometheus: its RSS connector reads a local
aiohttp feed of a few brand posts (one 503 first: a retryable error and a
reconnect), and its Hacker News connector gets 403 (a fatal error, the connector
stops), so every connector panel and alert selector has data.
"""

from __future__ import annotations

import http.cookiejar
import http.server
import json
import os
import re
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

from agents.commands.cli import main as cli_main
from agents.delivery.metrics import create as create_sink_metrics
from agents.inbox.auth import hash_password
from agents.inbox.metrics import InboxMetrics
from agents.observability.metrics import create
from agents.runtime.recovery_watchdog import RecoveryMetrics
from listener.kafka_local import free_port
from listener.metrics import create as create_listener_metrics
from listener.producer import MentionProducer
from listener.replay import load_brands, replay_file
from listener.samples import BRAND_POSTS, BRANDS
from listener.settings import KafkaSettings
from listener.topics import TopicNames

from .live import FeedServer, Process, Prometheus, http_get, listen_config, tail, wait_for
from .tools import GRAFANA_DASHBOARDS, dashboard_queries, rules, selectors

pytestmark = pytest.mark.integration

POSTS = 300
FEED_POSTS = (
    "Acme support never answered my ticket about the broken export.",
    "Loving the new Acme dashboard, thanks team!",
    "Does Acme have an EU data region yet?",
    "A post about something else entirely.",
)
DASHBOARDS = sorted(GRAFANA_DASHBOARDS.glob("*.json"))


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


def inbox_respond_and_resolve(url: str) -> None:
    """Log in to the inbox as a lead; first response, then resolve, on the first queue item."""
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )

    def call(path: str, form: dict[str, str] | None = None) -> str:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        with opener.open(url + path, data=data, timeout=10) as response:
            return str(response.read().decode())

    token = re.search(r'name="login_token" value="([^"]+)"', call("/login"))
    assert token, "no login form"
    page = call("/login", {"login_token": token.group(1), "username": "lead", "password": "pw"})
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    item = re.search(r'href="/item\?id=([^"]+)"', page)
    assert csrf and item, page[:2000]
    mention_id = urllib.parse.unquote(item.group(1))
    for kind in ("first_response", "resolve"):
        call("/action", {"csrf": csrf.group(1), "id": mention_id, "kind": kind})


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
    """Read one item from the queue; acknowledge and correct it with ``ack --label``."""
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
    argv = [
        "ack",
        key.decode(),
        "--by",
        "deploy-test",
        "--label",
        "praise",
        "--bootstrap",
        bootstrap,
    ]
    assert cli_main([*argv, "--topic-prefix", topics.prefix]) == 0


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
            "agents.commands.cli",
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
        env={**os.environ, "AGENTS_HEALTH__WEB_HOST": "127.0.0.1", "AGENTS_SESSION_TIMEOUT_S": "6"},
    )
    inbox_port = free_port()
    users = tmp_path / "inbox-users.yaml"
    users.write_text(f"users:\n  lead: {{password_hash: '{hash_password('pw', 4)}', role: lead}}\n")
    inbox = Process(
        [
            sys.executable,
            "-m",
            "agents.commands.inbox",
            "--users",
            str(users),
            "--bootstrap",
            kafka_bootstrap,
            "--topic-prefix",
            topics.prefix,
            "--port",
            str(inbox_port),
            "--insecure-cookies",
        ],  # fmt: skip
        tmp_path / "inbox.log",
    )
    feeds = FeedServer(FEED_POSTS)
    listen_port = free_port()
    listen: Process | None = None
    prometheus: Prometheus | None = None
    try:
        feeds.start()
        listen = Process(
            [
                sys.executable,
                "-m",
                "agents.commands.cli",
                "listen",
                "--config",
                str(listen_config(tmp_path, feeds, listen_port)),
                "--bootstrap",
                kafka_bootstrap,
                "--topic-prefix",
                topics.prefix,
            ],  # fmt: skip
            tmp_path / "listen.log",
        )
        jobs = {"brand-listener-worker": f"127.0.0.1:{web_port}"}
        jobs["brand-listener-listen"] = f"127.0.0.1:{listen_port}"
        jobs["brand-listener-inbox"] = f"127.0.0.1:{inbox_port}"
        prometheus = Prometheus(tmp_path, jobs)
        logs = [worker.log, listen.log, prometheus.process.log, inbox.log]

        def worker_ready() -> bool:
            assert worker.alive(), f"worker exited\n{tail(worker.log)}"
            assert listen is not None and listen.alive(), f"listen exited\n{tail(listen.log)}"
            return http_get(f"http://127.0.0.1:{web_port}/health/ready")[0] == 200

        wait_for("the worker's /health/ready", worker_ready, 90, logs)
        assert http_get(f"http://127.0.0.1:{web_port}/health")[0] == 200
        assert http_get(f"http://127.0.0.1:{web_port}/health/live")[0] == 200
        assert http_get(f"http://127.0.0.1:{listen_port}/health")[0] == 200
        wait_for("prometheus /-/ready", prometheus.ready, 30, logs)

        settings = KafkaSettings(bootstrap_servers=kafka_bootstrap, topic_prefix=topics.prefix)
        with MentionProducer(settings) as producer:
            stats = replay_file(
                BRAND_POSTS, producer, limit=POSTS, progress=False, brands=load_brands(BRANDS)
            )
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
        inbox_url = f"http://127.0.0.1:{inbox_port}"
        wait_for(
            "the inbox's /health with queue items",
            lambda: (
                b'"items": 0' not in http_get(inbox_url + "/health")[1]
                and http_get(inbox_url + "/health")[0] == 200
            ),
            60,
            logs,
        )
        inbox_respond_and_resolve(inbox_url)
        for series in (
            "brandlistener_dead_letter_total",
            "brandlistener_time_in_queue_seconds_count",
            "brandlistener_label_corrections_total",
            "brandlistener_own_account_posts_total",
            'brandlistener_sink_deliveries_total{outcome="dead_letter"}',
            "brandlistener_sink_retries_total",
            "brandlistener_sla_breaches_total",
            f'brandlistener_consumer_lag{{topic="{topics.raw}"}}',
            'brandlistener_connector_posts_produced_total{connector="rss"} >= 3',
            'brandlistener_connector_errors_total{kind="fatal"}',
            "brandlistener_connector_reconnects_total",
            "brandlistener_connector_cursor_lag_seconds",
            "brandlistener_inbox_time_to_first_response_seconds_count",
            "brandlistener_inbox_time_to_resolution_seconds_count",
            'brandlistener_inbox_items{status="resolved"} >= 1',
        ):
            wait_for(f"{series} in Prometheus", lambda s=series: prometheus.query(s), 30, logs)
        time.sleep(3)  # a few more scrapes and rule evaluations after the last increment
        yield prometheus
    finally:
        worker.stop()
        inbox.stop()
        if listen is not None:
            listen.stop()
        if prometheus is not None:
            prometheus.process.stop()
        feeds.stop()


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


def test_dashboards_read_only_metrics_worker_and_listen_export() -> None:
    registry = CollectorRegistry()
    create(registry)
    create_sink_metrics(registry)
    create_listener_metrics(registry)
    InboxMetrics(registry)
    RecoveryMetrics.create(registry)
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


def test_dashboards_are_importable_with_datasource_and_filter_variables() -> None:
    """A ``$datasource`` variable and ``__inputs`` (import into any Grafana), and filters.

    Every panel reads ``${datasource}``; every selector of a worker or listen
    metric filters on ``$instance``, and on ``$team`` / ``$brand`` where the
    metric has that label.
    """
    registry = CollectorRegistry()
    create(registry)
    create_sink_metrics(registry)
    create_listener_metrics(registry)
    InboxMetrics(registry)
    labels = {
        name: set(getattr(collector, "_labelnames", ()) or ())
        for name, collector in registry._names_to_collectors.items()
    }
    assert len(DASHBOARDS) == 2, DASHBOARDS
    for dashboard in DASHBOARDS:
        doc = json.loads(dashboard.read_text())
        assert doc["uid"] and doc["title"], dashboard
        assert doc["__inputs"][0]["pluginId"] == "prometheus"
        variables = {v["name"]: v for v in doc["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert {"instance", "team", "brand"} <= set(variables)
        for panel in doc["panels"]:
            if panel.get("targets"):
                assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        for title, expr in dashboard_queries(dashboard, raw=True):
            for selector in selectors(expr):
                name = selector.split("{")[0]
                if ":" in name:
                    continue  # a recorded series: aggregated, no instance left
                wanted = {"instance"} | (labels.get(name, set()) & {"team", "brand"})
                for var in wanted:
                    assert f'{var}=~"${var}"' in selector, f"{dashboard.name} / {title}: {expr}"
