"""The webhook ingest endpoint's answers, over real HTTP on loopback (no Kafka: the test acks)."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable

import aiohttp
import orjson
import pytest
from pydantic import SecretStr

from listener.brands import BrandMatcher, BrandSettings
from listener.connectors.base import Batch
from listener.connectors.webhook import WebhookConnector, WebhookSettings, decode_secret, sign

pytestmark = pytest.mark.timeout(30)
OLD = "whsec_" + base64.b64encode(b"old-key-0123456789abcdefghijklmn").decode()
NEW = "whsec_" + base64.b64encode(b"new-key-0123456789abcdefghijklmn").decode()
BODY = orjson.dumps({"type": "mention.created", "data": {"id": "1", "text": "acme is down"}})
BRANDS = BrandMatcher([BrandSettings(name="acme", keywords=("acme",))])


def headers(
    body: bytes, msg_id: str = "msg_1", secrets: tuple[str, ...] = (NEW,), skew: int = 0
) -> dict[str, str]:
    ts = str(int(time.time()) + skew)
    sigs = " ".join(sign(decode_secret(s), msg_id, ts, body) for s in secrets)
    return {"webhook-id": msg_id, "webhook-timestamp": ts, "webhook-signature": sigs}


Scenario = Callable[[WebhookConnector, Callable[..., Awaitable[tuple[int, dict]]]], Awaitable[None]]


def scenario(fn: Scenario, **overrides: object) -> None:
    async def go() -> None:
        settings = WebhookSettings(
            host="127.0.0.1",
            port=0,
            secrets=(SecretStr(OLD), SecretStr(NEW)),
            batch_wait_s=0.2,
            **overrides,  # type: ignore[arg-type]
        )
        conn = WebhookConnector(settings, BRANDS)
        await conn.start()
        async with aiohttp.ClientSession() as session:

            async def post(body: bytes, hdrs: dict[str, str]) -> tuple[int, dict]:
                url = f"http://127.0.0.1:{conn.port}{settings.path}"
                async with session.post(url, data=body, headers=hdrs) as r:
                    return r.status, await r.json()

            try:
                await fn(conn, post)
            finally:
                await conn.close()

    asyncio.run(go())


async def ack(conn: WebhookConnector, error: BaseException | None = None) -> Batch:
    batch = await conn.poll(None)
    await conn.delivered(batch, error)
    return batch


def test_2xx_only_after_the_produce_is_acknowledged() -> None:
    async def fn(conn: WebhookConnector, post: Callable[..., Awaitable[tuple[int, dict]]]) -> None:
        request = asyncio.create_task(post(BODY, headers(BODY)))
        batch = await conn.poll(None)
        assert [m.id for m in batch.mentions] == ["webhook:1"]
        await asyncio.sleep(0.1)
        assert not request.done(), "no answer before the runner reports Kafka's ack"
        await conn.delivered(batch, None)
        assert await request == (200, {"accepted": True, "id": "msg_1"})

    scenario(fn)


def test_failed_produce_answers_503_and_the_retry_is_accepted() -> None:
    async def fn(conn: WebhookConnector, post: Callable[..., Awaitable[tuple[int, dict]]]) -> None:
        first = asyncio.create_task(post(BODY, headers(BODY)))
        await ack(conn, RuntimeError("broker down"))
        status, _ = await first
        assert status == 503
        retry = asyncio.create_task(post(BODY, headers(BODY)))
        await ack(conn)
        assert (await retry)[0] == 200

    scenario(fn)


def test_replayed_id_is_an_idempotent_200_and_not_produced_twice() -> None:
    async def fn(conn: WebhookConnector, post: Callable[..., Awaitable[tuple[int, dict]]]) -> None:
        first = asyncio.create_task(post(BODY, headers(BODY)))
        twin = asyncio.create_task(post(BODY, headers(BODY)))  # retried while in flight
        batch = await ack(conn)
        assert len(batch.mentions) == 1
        assert (await first)[0] == (await twin)[0] == 200
        assert await post(BODY, headers(BODY)) == (200, {"duplicate": True})
        assert not (await conn.poll(None)).mentions

    scenario(fn)


def test_rotation_any_configured_secret_and_any_listed_signature() -> None:
    async def fn(conn: WebhookConnector, post: Callable[..., Awaitable[tuple[int, dict]]]) -> None:
        stranger = "whsec_" + base64.b64encode(b"x" * 32).decode()
        for n, secrets in enumerate([(OLD,), (stranger, NEW)]):
            request = asyncio.create_task(post(BODY, headers(BODY, f"m{n}", secrets)))
            await ack(conn)
            assert (await request)[0] == 200

    scenario(fn)


@pytest.mark.parametrize(
    ("mutate", "status", "reason"),
    [
        (lambda h: {**h, "webhook-signature": "v1,AAAA"}, 401, "no valid signature"),
        (lambda h: {**h, "webhook-signature": h["webhook-signature"][3:]}, 401, "signature"),
        (lambda h: {k: v for k, v in h.items() if k != "webhook-id"}, 400, "missing"),
        (lambda h: {**h, "webhook-timestamp": "soon"}, 400, "unix seconds"),
    ],
)
def test_unauthentic_requests_are_rejected_and_nothing_is_queued(
    mutate: Callable[[dict[str, str]], dict[str, str]], status: int, reason: str
) -> None:
    async def fn(conn: WebhookConnector, post: Callable[..., Awaitable[tuple[int, dict]]]) -> None:
        got, body = await post(BODY, mutate(headers(BODY)))
        assert got == status and reason in body["error"]
        assert await conn.poll(None) == Batch(more=True)

    scenario(fn)


# Timestamps are whole seconds (headers() truncates the clock), so a stamp 301 s ahead
# can be read up to a second later as 300 s ahead, inside the window: ahead by 302.
@pytest.mark.parametrize("skew", [-301, 302])
def test_timestamp_outside_tolerance_is_401(skew: int) -> None:
    async def fn(conn: WebhookConnector, post: Callable[..., Awaitable[tuple[int, dict]]]) -> None:
        got, body = await post(BODY, headers(BODY, skew=skew))
        assert got == 401 and "tolerance" in body["error"]

    scenario(fn, tolerance_s=300)


def test_oversize_body_is_413() -> None:
    async def fn(conn: WebhookConnector, post: Callable[..., Awaitable[tuple[int, dict]]]) -> None:
        big = orjson.dumps({"type": "x", "data": {"id": "1", "text": "acme " * 400}})
        assert (await post(big, headers(big)))[0] == 413

    scenario(fn, max_body_bytes=1024)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{oops", "not JSON"),
        (b'{"type": "x"}', "'data'"),
        (b'{"type": "x", "data": {"id": "1"}}', "data[0].text"),
        (b'{"type": "x", "data": {"id": "1", "text": "a", "created_at": "nope"}}', "created_at"),
        (
            b'{"type": "x", "data": {"id": "2", "text": "a", "reply_to_id": "1",'
            b' "reply_to_author": {"followers": -1}}}',
            "data[0].reply_to_author",
        ),
    ],
)
def test_invalid_payload_is_400_with_a_reason_and_dead_lettered(body: bytes, reason: str) -> None:
    async def fn(conn: WebhookConnector, post: Callable[..., Awaitable[tuple[int, dict]]]) -> None:
        got, answer = await post(body, headers(body))
        assert got == 400 and reason in answer["error"]
        batch = await conn.poll(None)
        assert not batch.mentions and len(batch.skipped) == 1

    scenario(fn)


def test_close_answers_waiting_requests_503() -> None:
    async def fn(conn: WebhookConnector, post: Callable[..., Awaitable[tuple[int, dict]]]) -> None:
        request = asyncio.create_task(post(BODY, headers(BODY)))
        await asyncio.sleep(0.2)
        await conn.close()
        assert (await request)[0] == 503

    scenario(fn)
