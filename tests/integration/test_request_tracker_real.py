"""The Request Tracker sink against a real RT 5 (the Debian package), with the Kafka ledger.

The fixture builds a private RT: an SQLite database initialised by
``rt-setup-database`` in a temporary directory, the ticket custom field
``Mention Id`` (one free-form value, applied to the General queue) and an
auth token for ``root``, both made with RT's own classes, and ``rt-server``
(the standalone PSGI server) on a free loopback port. A small proxy in front
of it can lose RT's answer to a create (hold it past the sink's timeout, or
drop the connection) after RT made the ticket. ``RT_SITE_CONFIG`` and ``RT_SITE_CONFIG_DIR``
point RT at that directory only, so the system's RT configuration is neither
read nor changed. Setup takes a few seconds; installing RT about 75 s.

RT is not a Python dependency: without it the test fails and says what to
install (it never skips; CI installs it).
"""

from __future__ import annotations

import asyncio
import contextlib
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
from aiohttp import ClientSession, web
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from agents.delivery.ledger import KafkaLedger, MemoryLedger, ledger_topic
from agents.delivery.metrics import create
from agents.delivery.policy import Deliverer, RetryPolicy
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


CUSTOM_FIELD = """
RT::LoadConfig(); RT::Init();
my $cf = RT::CustomField->new(RT->SystemUser);
my ($id, $msg) = $cf->Create(Name => "Mention Id", Type => "FreeformSingle",
    LookupType => RT::Ticket->CustomFieldLookupType);
die "custom field: $msg\\n" unless $id;
my $queue = RT::Queue->new(RT->SystemUser); $queue->Load("General") or die "no General queue\\n";
my ($ok, $why) = $cf->AddToObject($queue); die "apply: $why\\n" unless $ok; print $id;
"""
HOSTILE = "rt'9\" OR 'CF.{Mention Id}' = 'x' \\' \\"
"""A native id with quotes, backslashes and TicketSQL in it."""


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
    perl = ["perl", f"-I{LIB}", "-MRT", "-e"]
    subprocess.run([*perl, CUSTOM_FIELD], env=env, check=True, capture_output=True, timeout=60)
    token = subprocess.run(
        [*perl, TOKEN], env=env, check=True, capture_output=True, text=True
    ).stdout.strip()
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


def _mention(n: int, native_id: str | None = None) -> Mention:
    scores = {"complaint": 0.9, "praise": 0.02, "question": 0.05, "other": 0.03}
    return Mention.create(
        source="mastodon",
        native_id=native_id or f"rt{n}",
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


async def _deliver(
    url: str, token: str, ledger: KafkaLedger | MemoryLedger, m: Mention, timeout_s: float = 10.0
) -> Any:
    """One worker's delivery of ``m``: a fresh sink, the shared durable ledger."""
    settings = RequestTrackerSettings(url=url, token=SecretStr(token), timeout_s=timeout_s)
    sink = RequestTrackerSink(settings)
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
    fields = {cf["name"]: cf["values"] for cf in ticket["CustomFields"]}
    assert fields["Mention Id"] == [first.id]


class LosingProxy:
    """Forwards to RT; loses RT's answer to the next create (``lose`` says how) after RT made it."""

    def __init__(self, upstream: str, lose: str) -> None:
        self.upstream, self.lose = upstream, lose
        self.creates = 0
        self._runner: web.AppRunner | None = None
        self._release = asyncio.Event()
        self.url = ""

    async def __aenter__(self) -> LosingProxy:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._forward)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        async with (
            ClientSession() as session,
            session.request(
                request.method, self.upstream + request.path_qs, headers=headers,
                data=await request.read(),
            ) as answer,
        ):  # fmt: skip
            body, status = await answer.read(), answer.status
            content_type = answer.headers.get("Content-Type", "application/json")
        response = web.Response(body=body, status=status, headers={"Content-Type": content_type})
        if request.method == "POST" and request.path == "/REST/2.0/ticket" and status == 201:
            self.creates += 1
            if self.creates == 1:  # RT made the ticket; its answer never arrives
                if self.lose == "drop" and request.transport is not None:
                    request.transport.abort()
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._release.wait(), 10)
        return response


def _with_field(url: str, token: str, mention_id: str) -> list[str]:
    """Ids of the tickets whose Mention Id is exactly ``mention_id`` (read one by one)."""
    found = []
    for item in _tickets(url, token):
        ticket = _get(item["_url"], token)
        values = {cf["name"]: cf["values"] for cf in ticket["CustomFields"]}
        if values.get("Mention Id") == [mention_id]:
            found.append(str(ticket["id"]))
    return found


@pytest.mark.parametrize(
    ("lose", "native_id"), [("timeout", "rt-lost-1"), ("drop", HOSTILE)], ids=["timeout", "drop"]
)
def test_a_lost_answer_after_rt_created_the_ticket_leaves_one(
    rt: tuple[str, str], lose: str, native_id: str
) -> None:
    """RT creates the ticket, its answer is lost; the retry finds it by the custom field."""
    url, token = rt
    m, ledger = _mention(4, native_id), MemoryLedger()

    async def scenario() -> Any:
        async with LosingProxy(url, lose) as proxy:
            # 5 s: the create is held past it, and RT's search must fit in it on a busy machine.
            outcome = await _deliver(proxy.url, token, ledger, m, timeout_s=5)
            return outcome, proxy.creates

    outcome, creates = asyncio.run(scenario())
    assert outcome.ok, outcome.error
    # One create; the retry found it (a slow RT can make the lookup itself time out once).
    assert creates == 1 and outcome.attempts >= 2 and not outcome.result.created
    assert _with_field(url, token, m.id) == [outcome.result.external_id]
    assert asyncio.run(ledger.get("request_tracker", m.id)) == outcome.result.external_id


def test_a_bad_token_is_fatal(rt: tuple[str, str]) -> None:
    url, _ = rt
    sink = RequestTrackerSink(RequestTrackerSettings(url=url, token=SecretStr("1-1-0000")))

    async def attempt() -> None:
        try:
            await sink.deliver(_mention(3))
        finally:
            await sink.close()

    with pytest.raises(FatalError):
        asyncio.run(attempt())
