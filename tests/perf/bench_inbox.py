"""Support inbox benchmark: a queue of 5,000 open items and 50 new items a second.

Starts its own Kafka broker, produces ``--items`` routed Mentions onto
``mentions.needs-response``, starts ``brand-listener inbox`` (a subprocess) and
measures, while ``--rate`` new items a second arrive for ``--seconds``:

* the rebuild: start to ``/health`` 200 with every item read;
* the time to fetch the rendered queue page (``GET /``: filter, sort, facet
  counts and the first 200 rows), a filtered queue page and an item page,
  requested back to back by one logged-in client;
* the server-sent-event delay: from handing each new item to the producer to
  its row arriving on a connected ``/events`` stream (Kafka write, the inbox's
  fetch, rendering, the push).

Run: ``.venv/bin/python tests/perf/bench_inbox.py`` (README "Support inbox" has figures).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import orjson
from kafka import KafkaProducer

from agents.inbox.auth import hash_password
from listener.kafka_admin import create_topics
from listener.kafka_local import KafkaBroker, free_ports
from listener.record import Author, Classification, Mention, Routing, encode_mention
from listener.topics import TopicNames

ROOT = Path(__file__).resolve().parents[2]
TEAMS = ("support", "billing", "social", "security")
BRANDS = ("AcmeBank", "NimbusMobile", "Tastyburger", "VoltAir")
LABELS = ("complaint", "question")


def mention(i: int, tag: str, rng: random.Random) -> Mention:
    """A routed queue item with varied priority, team, brand and label."""
    now = datetime.now(UTC)
    label = rng.choice(LABELS)
    scores = {"complaint": 0.05, "praise": 0.05, "question": 0.05, "other": 0.05}
    scores[label] = 0.85
    return Mention(
        id=f"bench:{tag}-{i}", source="bench", text=f"@{BRANDS[i % 4]} post {i}: " + "x" * 120,
        created_at=now, ingested_at=now, brands=(BRANDS[i % 4],),
        author=Author(name=f"Author {i}", handle=f"author{i}"),
        url=f"https://example.com/p/{i}",
        classification=Classification(label=label, scores=scores, model="bench@1"),  # type: ignore[arg-type]
        routing=Routing(
            needs_response=True, priority=rng.choice(("P1", "P2", "P3")),  # type: ignore[arg-type]
            team=rng.choice(TEAMS), sla_due_at=now + timedelta(minutes=rng.randint(-60, 1440)),
        ),
        stage_times={"routed": now.timestamp()},
    )  # fmt: skip


def pct(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(name: str, seconds: list[float]) -> str:
    """``name: p50 / p95 / max in ms (n)``."""
    ms = [s * 1000 for s in seconds]
    return (
        f"{name}: p50 {pct(ms, 0.5):.0f} ms, p95 {pct(ms, 0.95):.0f} ms, "
        f"max {max(ms):.0f} ms ({len(ms)} samples)"
    )


async def measure(
    url: str, sent: dict[str, float], stop: threading.Event
) -> dict[str, list[float]]:
    """Log in, hold an SSE stream open and fetch pages until ``stop``; returns the timings."""
    timings: dict[str, list[float]] = {"queue": [], "filtered": [], "item": [], "sse": []}
    jar = aiohttp.CookieJar(unsafe=True)  # 127.0.0.1 is an IP: allow its cookies
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        page = await (await http.get(url + "/login")).text()
        token = re.search(r'name="login_token" value="([^"]+)"', page)
        assert token
        form = {"login_token": token.group(1), "username": "bench", "password": "bench-pw"}
        assert (await http.post(url + "/login", data=form)).status == 200

        async def events() -> None:
            async with http.get(url + "/events", timeout=aiohttp.ClientTimeout(total=None)) as r:
                name = ""
                async for raw in r.content:
                    line = raw.decode().rstrip("\n")
                    if line.startswith("event: "):
                        name = line[7:]
                    elif line.startswith("data: ") and name == "item":
                        mention_id = orjson.loads(line[6:])["id"]
                        if mention_id in sent:
                            timings["sse"].append(time.time() - sent[mention_id])

        reader = asyncio.create_task(events())
        pages = {
            "queue": "/",
            "filtered": "/?priority=P1&team=billing",
            "item": "/item?id=bench:open-7",
        }
        while not stop.is_set():
            for name, path in pages.items():
                started = time.perf_counter()
                async with http.get(url + path) as response:
                    await response.read()
                    assert response.status == 200, (path, response.status)
                timings[name].append(time.perf_counter() - started)
            await asyncio.sleep(0.2)
        await asyncio.sleep(2.0)  # the last items' events
        reader.cancel()
    return timings


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=5000, help="open items before the run")
    parser.add_argument("--rate", type=float, default=50.0, help="new items a second")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the run")
    args = parser.parse_args()
    rng = random.Random(20261205)
    with tempfile.TemporaryDirectory(prefix="bench-inbox-") as tmp:
        port, cport, web = free_ports(3)
        broker = KafkaBroker(Path(tmp) / "kafka", port=port, controller_port=cport)
        broker.start(die_with_parent=True)
        topics = TopicNames("bench.")
        create_topics(broker.bootstrap, topics.all(), partitions=4)
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0, acks=1)
        for i in range(args.items):
            m = mention(i, "open", rng)
            producer.send(topics.needs_response, key=m.id.encode(), value=encode_mention(m))
        producer.flush()
        users = Path(tmp) / "users.yaml"
        users.write_text(f"users:\n  bench: {{password_hash: '{hash_password('bench-pw', 4)}'}}\n")
        log = open(Path(tmp) / "inbox.log", "wb")  # noqa: SIM115 - closed below
        started = time.monotonic()
        inbox = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "agents.commands.inbox", "--users", str(users),
             "--bootstrap", broker.bootstrap, "--topic-prefix", topics.prefix,
             "--port", str(web), "--insecure-cookies"],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        url = f"http://127.0.0.1:{web}"
        try:
            while True:
                try:
                    body = orjson.loads(urllib.request.urlopen(url + "/health").read())  # noqa: S310
                    if body.get("items") == args.items:
                        break
                except OSError:
                    pass
                if inbox.poll() is not None or time.monotonic() - started > 120:
                    raise SystemExit((Path(tmp) / "inbox.log").read_text())
                time.sleep(0.1)
            print(
                f"rebuild: {args.items} items read, served {time.monotonic() - started:.1f} s "
                "after the start"
            )
            sent: dict[str, float] = {}
            stop = threading.Event()

            def feed() -> None:
                time.sleep(1.0)  # the stream is open
                n = int(args.rate * args.seconds)
                t0 = time.monotonic()
                for i in range(n):
                    time.sleep(max(0.0, t0 + i / args.rate - time.monotonic()))
                    m = mention(i, "new", rng)
                    sent[m.id] = time.time()
                    producer.send(topics.needs_response, key=m.id.encode(), value=encode_mention(m))
                producer.flush()
                stop.set()

            threading.Thread(target=feed, daemon=True).start()
            timings = asyncio.run(measure(url, sent, stop))
            print(
                f"load: {args.items} open items + {args.rate:g} new items/s for {args.seconds:g} s"
            )
            print(summary("queue page (GET /, first 200 rows, counts)", timings["queue"]))
            print(summary("filtered queue page", timings["filtered"]))
            print(summary("item page", timings["item"]))
            print(summary(f"SSE delay, routed -> row pushed ({len(sent)} sent)", timings["sse"]))
        finally:
            inbox.terminate()
            inbox.wait(15)
            log.close()
            producer.close()
            broker.stop()


if __name__ == "__main__":
    main()
