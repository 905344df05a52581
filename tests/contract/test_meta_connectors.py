"""Meta connectors on local servers: webhook handshake and signatures, Graph and Threads polls."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from listener.connectors.base import Batch
from listener.connectors.meta_webhook import MetaWebhookConnector, sign
from listener.errors import FatalError, RetryableError
from listener.record import Mention

from .poll_support import T, poll_round, run
from .servers import BRANDS  # first: servers.py imports servers_meta at its end
from .servers_meta import (
    APP_SECRET,
    VERIFY_TOKEN,
    GraphPages,
    MetaGraphHarness,
    MetaWebhookHarness,
    ThreadsHarness,
    graph_error,
)

pytestmark = pytest.mark.timeout(30)
NOTIFICATIONS = MetaWebhookHarness().bodies


# --- meta_webhook ----------------------------------------------------------------------------


Post = Callable[..., Awaitable[tuple[int, str]]]


def endpoint(
    fn: Callable[[MetaWebhookConnector, Post, aiohttp.ClientSession], Awaitable[None]],
    accounts: dict[str, str] | None = None,
    graph: MetaGraphHarness | None = None,
    token: str = MetaGraphHarness.TOKEN,
) -> None:
    """Run ``fn`` against a started ``meta_webhook``; with ``graph``, its token and base URL."""

    async def go() -> None:
        conn: Any = MetaWebhookHarness().connector()
        if accounts is not None:
            conn.settings = conn.settings.model_copy(update={"accounts": accounts})
        if graph is not None:
            await graph.start()
            conn.settings = conn.settings.model_copy(
                update={"access_token": SecretStr(token), "base_url": graph.base}
            )
        await conn.start()
        url = f"http://127.0.0.1:{conn.port}/webhooks/meta"
        async with aiohttp.ClientSession() as session:

            async def post(body: bytes, signature: str | None = "ok") -> tuple[int, str]:
                headers = {"Content-Type": "application/json"}
                if signature == "ok":
                    headers["X-Hub-Signature-256"] = sign(APP_SECRET.encode(), body)
                elif signature is not None:
                    headers["X-Hub-Signature-256"] = signature
                async with session.post(url, data=body, headers=headers) as r:
                    return r.status, await r.text()

            try:
                await fn(conn, post, session)
            finally:
                await conn.close()
                if graph is not None:
                    await graph.stop()

    run(go)


@pytest.mark.parametrize(
    ("query", "status", "text"),
    [
        ({"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"},
         200, "1158201444"),
        ({"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"}, 403, ""),
        ({"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"},
         403, ""),
        ({"hub.challenge": "1"}, 403, ""),
    ],
)  # fmt: skip
def test_verification_handshake_echoes_the_challenge_only_for_our_token(
    query: dict[str, str], status: int, text: str
) -> None:
    async def fn(conn: MetaWebhookConnector, post: Post, session: aiohttp.ClientSession) -> None:
        url = f"http://127.0.0.1:{conn.port}/webhooks/meta"
        async with session.get(url, params=query) as r:
            assert r.status == status
            if status == 200:
                assert await r.text() == text and r.content_type == "text/plain"

    endpoint(fn)


@pytest.mark.parametrize(
    ("signature", "status"),
    [(None, 401), ("sha1=abc", 401), ("sha256=" + "0" * 64, 403), (sign(b"other", b"x"), 403)],
)
def test_unsigned_or_wrongly_signed_posts_are_refused_and_nothing_is_queued(
    signature: str | None, status: int
) -> None:
    async def fn(conn: MetaWebhookConnector, post: Post, session: aiohttp.ClientSession) -> None:
        assert (await post(NOTIFICATIONS[0], signature))[0] == status
        assert await conn.poll(None) == Batch(more=True)

    endpoint(fn)


def test_2xx_only_after_kafka_ack_and_503_when_the_produce_failed() -> None:
    async def fn(conn: MetaWebhookConnector, post: Post, session: aiohttp.ClientSession) -> None:
        request = asyncio.create_task(post(NOTIFICATIONS[0]))
        batch = await conn.poll(None)
        await asyncio.sleep(0.1)
        assert not request.done(), "no answer before the runner reports Kafka's ack"
        await conn.delivered(batch, RuntimeError("broker down"))
        status, _ = await request
        assert status == 503
        retry = asyncio.create_task(post(NOTIFICATIONS[0]))
        batch = await conn.poll(None)
        await conn.delivered(batch, None)
        assert await retry == (200, "EVENT_RECEIVED")

    endpoint(fn)


async def _deliver(conn: MetaWebhookConnector, post: Post, body: bytes) -> tuple[int, Batch]:
    request = asyncio.create_task(post(body))
    batch = await conn.poll(None)
    await conn.delivered(batch, None)
    return (await request)[0], batch


def test_every_change_of_every_entry_is_a_mention_with_parent_and_thread() -> None:
    batches: list[Batch] = []

    async def fn(conn: MetaWebhookConnector, post: Post, session: aiohttp.ClientSession) -> None:
        for body in NOTIFICATIONS[:2]:
            status, batch = await _deliver(conn, post, body)
            assert status == 200
            batches.append(batch)

    endpoint(fn)
    first, second = batches
    post, comment = first.mentions
    assert post.id == "facebook:1001_2001" and post.reply_to_id is None
    assert post.text == "Is Acme down? my orders page is blank", "markup and script stripped"
    assert post.author.id == "501" and post.author.name == "Dana Lee"
    assert post.url == "https://www.facebook.com/1001_2001"
    assert post.created_at.timestamp() == 1726000000
    assert comment.id == "facebook:2001_3001"
    assert (comment.reply_to_id, comment.thread_id) == ("facebook:1001_2001", "facebook:1001_2001")
    # Two entries, three changes: a reply, a reaction and a removal (not mentions), a post.
    assert [m.id for m in second.mentions] == ["facebook:2001_3002", "facebook:1001_2002"]
    assert second.mentions[0].reply_to_id == "facebook:2001_3001"
    assert second.skipped == ()
    # Brand matching is the runner's: the post about the weather does not pass it.
    assert BRANDS.apply(second.mentions[0]) is not None
    assert BRANDS.apply(second.mentions[1]) is None


def test_instagram_comments_and_mentions_and_page_mentions() -> None:
    batches: list[Batch] = []

    async def fn(conn: MetaWebhookConnector, post: Post, session: aiohttp.ClientSession) -> None:
        for body in NOTIFICATIONS[2:5]:
            status, batch = await _deliver(conn, post, body)
            assert status == 200
            batches.append(batch)

    endpoint(fn)
    page, insta, ig_mention = batches
    [mention] = page.mentions
    assert mention.id == "facebook:777_8001" and mention.author.name == "Lee Chan"
    assert [s.reason for s in page.skipped] == ["no_text"]  # a comment mention without text
    assert "8002_9001" in page.skipped[0].detail
    top, reply = insta.mentions
    assert top.id == "instagram:17890000000000001" and top.author.handle == "parcel_waiter"
    assert top.reply_to_id == top.thread_id == "instagram:17900000000000001"
    assert reply.reply_to_id == "instagram:17890000000000001"
    assert reply.thread_id == "instagram:17900000000000001"
    # No access_token: an Instagram @mention (ids only) is dead-lettered, saying how to read it.
    assert ig_mention.mentions == () and [s.reason for s in ig_mention.skipped] == ["no_text"]
    detail = ig_mention.skipped[0].detail
    assert "17890000000000009" in detail and "17900000000000009" in detail
    assert "access_token" in detail


def test_instagram_mentions_are_read_from_the_graph_api_with_a_token() -> None:
    graph = MetaGraphHarness()
    batches: list[Batch] = []

    async def fn(conn: MetaWebhookConnector, post: Post, session: aiohttp.ClientSession) -> None:
        for body in (NOTIFICATIONS[4], NOTIFICATIONS[7]):
            status, batch = await _deliver(conn, post, body)
            assert status == 200
            batches.append(batch)

    endpoint(fn, accounts={MetaGraphHarness.IG: "acme"}, graph=graph)
    in_comment, second = batches
    [comment] = in_comment.mentions
    assert in_comment.skipped == ()
    assert comment.id == "instagram:17890000000000009"
    assert comment.text == "@acme my parcel is stuck in customs for a week"
    assert comment.author.handle == "customs_casey"
    assert comment.reply_to_id == comment.thread_id == "instagram:17900000000000009"
    assert comment.url == "https://www.instagram.com/p/CCC/"
    assert comment.created_at.isoformat() == "2024-09-10T20:34:05+00:00"
    assert comment.brands == ("acme",), "an @mention of the brand's assigned account is its"
    # The same notification: a deleted comment (Graph code 100) and a caption mention.
    [caption] = second.mentions
    assert caption.id == "instagram:17900000000000011"
    assert caption.text == "Unboxing day thanks to @acme, fast as always"
    assert caption.author.handle == "unbox_uma"
    assert caption.url == "https://www.instagram.com/p/DDD/"
    assert caption.reply_to_id is None and caption.thread_id is None
    [gone] = second.skipped
    assert gone.reason == "graph_error" and "entry[0].changes[0]" in gone.detail
    assert "code 100/33" in gone.detail and "17890000000000010" in gone.detail
    assert "17890000000000010" in gone.payload
    lookups = [r.query for r in graph.requests if r.path == f"/v23.0/{MetaGraphHarness.IG}"]
    assert [q["fields"] for q in lookups] == [
        "mentioned_comment.comment_id(17890000000000009){id,text,timestamp,username,media{id,permalink}}",
        "mentioned_comment.comment_id(17890000000000010){id,text,timestamp,username,media{id,permalink}}",
        "mentioned_media.media_id(17900000000000011){id,caption,timestamp,username,permalink}",
    ]  # fmt: skip
    assert all(q["access_token"] == MetaGraphHarness.TOKEN for q in lookups)


def test_a_rejected_token_dead_letters_the_instagram_mention_without_the_token() -> None:
    batches: list[Batch] = []

    async def fn(conn: MetaWebhookConnector, post: Post, session: aiohttp.ClientSession) -> None:
        status, batch = await _deliver(conn, post, NOTIFICATIONS[4])
        assert status == 200
        batches.append(batch)

    endpoint(fn, graph=MetaGraphHarness(), token="stale-token")
    [lost] = batches[0].skipped
    assert lost.reason == "graph_error" and "code 190" in lost.detail
    assert "stale-token" not in lost.detail


@pytest.mark.parametrize(
    ("status", "body", "headers", "after"),
    [
        (500, graph_error(2, "An unexpected error has occurred."), {}, "5"),
        (503, "<html>upstream down</html>", {}, "5"),
        (400, graph_error(4, "Application request limit reached"),
         {"X-Business-Use-Case-Usage": json.dumps({"17841400000000001": [
             {"type": "instagram", "call_count": 100, "estimated_time_to_regain_access": 7}]})},
         "420"),
    ],
)  # fmt: skip
def test_graph_5xx_or_rate_limit_answers_503_and_produces_nothing(
    status: int, body: Any, headers: dict[str, str], after: str
) -> None:
    graph = MetaGraphHarness()
    graph.answer_next = (status, body, headers)

    async def fn(conn: MetaWebhookConnector, post: Post, session: aiohttp.ClientSession) -> None:
        url = f"http://127.0.0.1:{conn.port}/webhooks/meta"
        signed = {"X-Hub-Signature-256": sign(APP_SECRET.encode(), NOTIFICATIONS[7])}
        async with session.post(url, data=NOTIFICATIONS[7], headers=signed) as r:
            assert r.status == 503 and r.headers["Retry-After"] == after
        assert await conn.poll(None) == Batch(more=True), "nothing produced, nothing skipped"
        status, batch = await _deliver(conn, post, NOTIFICATIONS[7])  # Meta redelivers
        assert status == 200 and [m.id for m in batch.mentions] == ["instagram:17900000000000011"]

    endpoint(fn, graph=graph)


def test_signed_garbage_is_400_and_dead_lettered_and_a_bad_change_is_skipped() -> None:
    out: list[Any] = []

    async def fn(conn: MetaWebhookConnector, post: Post, session: aiohttp.ClientSession) -> None:
        status, text = await post(NOTIFICATIONS[5])
        out.append((status, text, await conn.poll(None)))
        out.append(await _deliver(conn, post, NOTIFICATIONS[6]))

    endpoint(fn)
    (status, text, garbage), (edited_status, edited) = out
    assert status == 400 and "not JSON" in text
    assert [s.reason for s in garbage.skipped] == ["decode"]
    assert edited_status == 200
    assert [m.id for m in edited.mentions] == ["facebook:2001_3004"]  # verb "edited" is read
    assert [s.reason for s in edited.skipped] == ["validation"]


# --- meta_graph and threads ------------------------------------------------------------------


async def sweep(conn: Any, cursor: str | None = None) -> tuple[list[Mention], list[Any], str]:
    """Poll until the connector says there is no more."""
    batches, cursor = await poll_round(conn, cursor)
    assert cursor is not None
    return [m for b in batches for m in b.mentions], [s for b in batches for s in b.skipped], cursor


def with_server(harness: GraphPages, fn: Callable[[Any], Awaitable[T]], **settings: Any) -> T:
    async def go() -> T:
        await harness.start()
        conn: Any = harness.connector(small=settings.pop("small", False))
        if settings:
            conn.settings = conn.settings.model_copy(update=settings)
        try:
            return await fn(conn)
        finally:
            await conn.close()
            await harness.stop()

    return run(go)


@pytest.mark.parametrize("harness", [MetaGraphHarness, ThreadsHarness])
def test_rejected_token_is_fatal_and_says_so(harness: type[GraphPages]) -> None:
    h = harness()

    async def fn(conn: Any) -> str:
        conn.settings = conn.settings.model_copy(
            update={"access_token": SecretStr("not-the-token")}
        )
        with pytest.raises(FatalError) as info:
            await conn.poll(None)
        return str(info.value)

    message = with_server(h, fn)
    assert "code 190" in message and "expired or is invalid" in message
    assert "not-the-token" not in message


@pytest.mark.parametrize(
    ("harness", "status", "body", "headers", "after"),
    [
        (MetaGraphHarness, 400, graph_error(4, "Application request limit reached"),
         {"X-Business-Use-Case-Usage": json.dumps({"1001": [
             {"type": "pages", "call_count": 100, "total_cputime": 20, "total_time": 30,
              "estimated_time_to_regain_access": 7}]}),
          "X-App-Usage": json.dumps({"call_count": 100, "total_cputime": 20, "total_time": 30})},
         420.0),
        (MetaGraphHarness, 403, graph_error(32, "Page request limit reached"), {}, 600.0),
        (MetaGraphHarness, 400, graph_error(80001, "There have been too many calls"),
         {"X-Business-Use-Case-Usage": json.dumps({"1001": [
             {"type": "pages", "estimated_time_to_regain_access": 0}]})}, 600.0),
        (ThreadsHarness, 400, graph_error(613, "Calls to this api have exceeded the rate limit"),
         {}, 900.0),
        (ThreadsHarness, 429, {"message": "Too Many Requests"}, {"Retry-After": "30"}, 30.0),
    ],
)  # fmt: skip
def test_rate_limit_codes_wait_for_the_usage_headers_or_a_default(
    harness: type[GraphPages], status: int, body: Any, headers: dict[str, str], after: float
) -> None:
    h = harness()
    h.answer_next = (status, body, headers)

    async def fn(conn: Any) -> RetryableError:
        with pytest.raises(RetryableError) as info:
            await conn.poll(None)
        return info.value

    assert with_server(h, fn).after == pytest.approx(after)


@pytest.mark.parametrize("harness", [MetaGraphHarness, ThreadsHarness])
@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (
            500,
            graph_error(2, "An unexpected error has occurred.", "OAuthException"),
            RetryableError,
        ),
        (503, "<html>upstream down</html>", RetryableError),
        (400, graph_error(1, "An unknown error occurred", "OAuthException"), RetryableError),
        (403, graph_error(10, "Requires pages_read_engagement permission"), FatalError),
        (400, graph_error(100, "Unsupported get request", "GraphMethodException", 33), FatalError),
    ],
)
def test_server_errors_retry_and_documented_error_codes_map(
    harness: type[GraphPages], status: int, body: Any, kind: type[Exception]
) -> None:
    h = harness()
    h.answer_next = (status, body, {})

    async def fn(conn: Any) -> Exception:
        with pytest.raises(kind) as info:
            await conn.poll(None)
        return info.value

    error = with_server(h, fn)
    if isinstance(body, dict):
        assert f"code {body['error']['code']}" in str(error) and "AbCdEf" in str(error)


def test_graph_pages_to_the_end_and_the_cursor_returns_nothing_old() -> None:
    h = MetaGraphHarness()

    async def fn(conn: Any) -> tuple[list[Mention], list[Any], str, Batch, Batch]:
        mentions, skipped, cursor = await sweep(conn)
        again = [await conn.poll(cursor), await conn.poll(cursor)]
        return mentions, skipped, cursor, again[0], again[1]

    mentions, skipped, cursor, fb_again, ig_again = with_server(h, fn, small=True)
    ids = [m.id for m in mentions]
    assert len(ids) == len(set(ids))
    assert set(ids) == {
        "facebook:1001_2101", "facebook:2101_3101", "facebook:2101_3102", "facebook:1001_2102",
        "facebook:1001_2104", "instagram:17900000000000101", "instagram:17890000000000101",
        "instagram:17890000000000102", "instagram:17900000000000102", "instagram:17890000000000104",
    }  # fmt: skip
    assert sorted(s.reason for s in skipped) == ["validation", "validation"]
    assert fb_again.mentions == () and ig_again.mentions == ()
    assert h.TOKEN not in cursor, "the paging.next URL's token is not kept in the cursor"
    feed_calls = [r for r in h.requests if r.path.endswith("/feed")]
    assert len({r.query.get("after") for r in feed_calls}) >= 5, "followed paging to the end"
    assert all("comments.filter(stream)" in r.query["fields"] for r in feed_calls)
    assert feed_calls[-1].query["since"] == str(1726000000 + 320)
    by_id = {m.id: m for m in mentions}
    post = by_id["facebook:1001_2101"]
    assert post.text == "acme billing charged me twice" and "<" not in post.text
    reply = by_id["facebook:2101_3102"]
    assert reply.reply_to_id == "facebook:2101_3101" and reply.thread_id == "facebook:1001_2101"
    assert reply.url is None, "a javascript: permalink is dropped"
    ig_reply = by_id["instagram:17890000000000102"]
    assert ig_reply.reply_to_id == "instagram:17890000000000101"
    assert ig_reply.thread_id == "instagram:17900000000000101"
    assert BRANDS.apply(by_id["facebook:1001_2102"]) is None  # "Nice sunset": no brand


def test_on_the_brands_own_page_every_post_and_comment_is_its_mention() -> None:
    """With ``brand`` set, "Nice sunset" on the Page is acme's (matched term ``source``)."""

    async def fn(conn: Any) -> list[Mention]:
        return (await sweep(conn))[0]

    mentions = with_server(MetaGraphHarness(), fn, brand="acme")
    by_id = {m.id: m for m in mentions}
    kept = BRANDS.apply(by_id["facebook:1001_2102"])
    assert kept is not None and kept.brands == ("acme",)
    assert kept.signals["matched_terms"] == {"acme": ["source"]}
    named = BRANDS.apply(by_id["facebook:1001_2101"])  # names acme too: one brand, its terms
    assert named is not None and named.brands == ("acme",)
    with pytest.raises(FatalError, match="brand 'acne', which is not configured"):
        MetaGraphHarness().connector().__class__(
            MetaGraphHarness().connector().settings.model_copy(update={"brand": "acne"}), BRANDS
        )


def test_webhook_notifications_about_an_assigned_page_are_that_brands() -> None:
    from listener.connectors.meta_webhook import MetaWebhookSettings

    def connector(accounts: dict[str, str]) -> MetaWebhookConnector:
        settings = MetaWebhookSettings(
            port=0, app_secret=SecretStr("s"), verify_token=SecretStr("v"), accounts=accounts
        )
        return MetaWebhookConnector(settings, BRANDS)

    with pytest.raises(FatalError, match="account '1001' belongs to brand 'nobody'"):
        connector({"1001": "nobody"})

    batches: list[Batch] = []

    async def fn(conn: MetaWebhookConnector, post: Post, session: aiohttp.ClientSession) -> None:
        status, batch = await _deliver(conn, post, NOTIFICATIONS[1])
        assert status == 200
        batches.append(batch)

    endpoint(fn, accounts={"1001": "acme"})
    weather = batches[0].mentions[1]  # names no brand, but it is on acme's Page 1001
    assert weather.id == "facebook:1001_2002"
    kept = BRANDS.apply(weather)
    assert kept is not None and kept.signals["matched_terms"] == {"acme": ["source"]}


def test_threads_searches_brand_terms_server_side_and_reads_mentions() -> None:
    h = ThreadsHarness()

    async def fn(conn: Any) -> tuple[list[Mention], list[Any], list[Mention]]:
        mentions, skipped, cursor = await sweep(conn)
        later, _, _ = await sweep(conn, cursor)
        return mentions, skipped, later

    mentions, skipped, later = with_server(h, fn, small=True)
    ids = {m.id for m in mentions}
    assert ids == {f"threads:1800000000000000{n}" for n in (1, 2, 3, 4)}
    assert "threads:18000000000000005" not in ids, "not about a brand: the search never sends it"
    assert later == [], "a sweep from the cursor returns nothing old"
    assert [s.reason for s in skipped] == ["validation"]  # the post without a timestamp
    searches = [r for r in h.requests if r.path.endswith("/keyword_search")]
    assert {r.query["q"] for r in searches} == {"acme"}
    assert {r.query["search_type"] for r in searches} == {"RECENT"}
    assert any(r.query.get("after") for r in searches), "paged with paging.cursors.after"
    assert any(r.path.endswith(f"/{h.USER}/mentions") for r in h.requests)
    by_id = {m.id: m for m in mentions}
    first = by_id["threads:18000000000000001"]
    assert first.text == "acme outage again?? status" and first.thread_id is None
    assert first.author.handle == "kai" and first.url == "https://www.threads.net/@kai/post/A1"
    reply = by_id["threads:18000000000000003"]
    assert reply.reply_to_id == "threads:18000000000000002"
    assert reply.thread_id == "threads:18000000000000001"


def test_threads_token_is_not_kept_in_the_cursor() -> None:
    h = ThreadsHarness()

    async def fn(conn: Any) -> str:
        return (await sweep(conn))[2]

    assert h.TOKEN not in with_server(h, fn)
