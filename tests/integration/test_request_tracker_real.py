"""The Request Tracker sink against a real RT 5 (the Debian package), with the Kafka ledger.

The fixture builds a private RT: an SQLite database initialised by
``rt-setup-database`` in a temporary directory, an auth token for ``root``
made with RT's own ``RT::AuthToken``, and ``rt-server`` (the standalone PSGI
server) on a free loopback port. ``RT_SITE_CONFIG`` and ``RT_SITE_CONFIG_DIR``
point RT at that directory only, so the system's RT configuration is neither
read nor changed. Setup takes a few seconds; installing RT about 75 s.

RT is not a Python dependency: without it the test fails and says what to
install (it never skips; CI installs it).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from agents.sinks.delivery import Deliverer, RetryPolicy
from agents.sinks.ledger import KafkaLedger, ledger_topic
from agents.sinks.metrics import create
from agents.sinks.request_tracker import RequestTrackerSettings, RequestTrackerSink
from listener.errors import FatalError
from listener.record import Classification, Mention, Routing
from listener.topics import TopicNames

APT = "apt-get install -y --no-install-recommends request-tracker5 rt5-db-sqlite"
SETUP = Path("/usr/sbin/rt-setup-database")
SERVER = Path("/usr/share/request-tracker5/libexec/rt-server")
LIB = Path("/usr/share/request-tracker5/lib")
TOKEN = """
RT::LoadConfig(); RT::Init();
my $user = RT::User->new(RT->SystemUser); $user->Load("root") or die "no root user\\n";
my ($id, $msg, $auth) = RT::AuthToken->new(RT->SystemUser)->Create(
    Owner => $user->id, Description => "brand-listener tests");
die "auth token: $msg\\n" unless $id; print $auth;
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str, token: str) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return orjson.loads(response.read())


def _setup(home: Path, port: int) -> dict[str, str]:
    for folder in ("conf.d", "mason", "sessions"):
        (home / folder).mkdir()
    (home / "RT_SiteConfig.pm").write_text(
        f"""Set($DatabaseType, 'SQLite');
Set($DatabaseName, '{home}/rt.db');
Set($rtname, 'brand-listener-test'); Set($Organization, 'test');
Set($WebDomain, '127.0.0.1'); Set($WebPort, {port}); Set($WebPath, '');
Set($MasonDataDir, '{home}/mason'); Set($MasonSessionDir, '{home}/sessions');
Set($LogToSTDERR, 'error'); Set($LogToSyslog, undef); Set($LogToFile, undef);
1;
""",
        encoding="utf-8",
    )
    env = {
        **os.environ,
        "RT_SITE_CONFIG": str(home / "RT_SiteConfig.pm"),
        "RT_SITE_CONFIG_DIR": str(home / "conf.d"),
    }
    init = [str(SETUP), "--action", "init", "--skip-create"]
    subprocess.run(init, env=env, cwd=home, check=True, capture_output=True, timeout=120)
    return env


@pytest.fixture(scope="module")
def rt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A private RT 5 on loopback: ``(base URL, root's auth token)``."""
    missing = [str(p) for p in (SETUP, SERVER, LIB) if not p.exists()]
    if missing or shutil.which("perl") is None:
        pytest.fail(f"Request Tracker 5 is not installed (missing {missing}); run: {APT}")
    home, port = tmp_path_factory.mktemp("rt"), _free_port()
    env = _setup(home, port)
    perl = ["perl", f"-I{LIB}", "-MRT", "-e", TOKEN]
    token = subprocess.run(perl, env=env, check=True, capture_output=True, text=True).stdout.strip()
    log = (home / "server.log").open("wb")
    command = [str(SERVER), "--server", "Standalone", "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(command, env=env, cwd=home, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                _get(f"{url}/REST/2.0/queues/all", token)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"rt-server did not start; see {home}/server.log") from None
                time.sleep(0.3)
        yield url, token
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()


def _tickets(url: str, token: str) -> list[dict[str, Any]]:
    query = urllib.parse.quote("Queue = 'General'")
    found = _get(f"{url}/REST/2.0/tickets?query={query}&fields=Subject,Priority", token)
    return list(found["items"])


def _mention(n: int) -> Mention:
    scores = {"complaint": 0.9, "praise": 0.02, "question": 0.05, "other": 0.03}
    return Mention.create(
        source="mastodon",
        native_id=f"rt{n}",
        text=f"@acme order {n} never arrived and nobody answers",
        url=f"https://example.test/p/{n}",
        brands=("acme",),
        classification=Classification(label="complaint", scores=scores, model="kw@1"),
        routing=Routing(
            needs_response=True,
            priority="P1",
            team="support",
            sla_due_at=datetime.now(UTC) + timedelta(hours=1),
            rule_ids=("complaint.urgent",),
        ),
    )


def _counted(m: Mention, count: int) -> Mention:
    signals = {**m.signals, "duplicates": {"of": m.id, "count": count}}
    return m.model_copy(update={"signals": signals})


async def _deliver(url: str, token: str, ledger: KafkaLedger, m: Mention) -> Any:
    """One worker's delivery of ``m``: a fresh sink, the shared durable ledger."""
    sink = RequestTrackerSink(RequestTrackerSettings(url=url, token=token))
    policy = RetryPolicy(base_s=0.1, cap_s=1, max_attempts=3, max_elapsed_s=30)
    try:
        return await Deliverer(sink, ledger, create(CollectorRegistry()), policy).deliver(m)
    finally:
        await sink.close()


def test_one_ticket_per_mention_id_across_restarts(
    rt: tuple[str, str], kafka_bootstrap: str, topics: TopicNames
) -> None:
    url, token = rt
    topic = ledger_topic(topics.prefix)
    first, second = _mention(1), _mention(2)
    ledger = KafkaLedger([kafka_bootstrap], topic, partitions=1)
    ledger.start()
    try:
        created = asyncio.run(_deliver(url, token, ledger, first))
        again = asyncio.run(_deliver(url, token, ledger, _counted(first, 3)))
        other = asyncio.run(_deliver(url, token, ledger, second))
    finally:
        ledger.close()
    assert created.ok and created.result.created
    assert again.ok and not again.result.created
    assert again.result.external_id == created.result.external_id
    assert other.ok and other.result.created
    restarted = KafkaLedger([kafka_bootstrap], topic)  # a worker restart: ledger read back
    restarted.start()
    try:
        replay = asyncio.run(_deliver(url, token, restarted, first))
    finally:
        restarted.close()
    assert replay.ok and replay.result.external_id == created.result.external_id
    tickets = _tickets(url, token)
    assert len(tickets) == 2, tickets
    ticket = _get(f"{url}/REST/2.0/ticket/{created.result.external_id}", token)
    assert ticket["Priority"] == "90" and ticket["Subject"].startswith("[P1] [complaint] [acme]")


def test_a_bad_token_is_fatal(rt: tuple[str, str]) -> None:
    url, _ = rt
    sink = RequestTrackerSink(RequestTrackerSettings(url=url, token="1-1-0000"))

    async def attempt() -> None:
        try:
            await sink.deliver(_mention(3))
        finally:
            await sink.close()

    with pytest.raises(FatalError):
        asyncio.run(attempt())
