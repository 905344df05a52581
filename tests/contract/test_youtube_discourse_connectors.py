"""YouTube Data API v3 and Discourse against local servers speaking their wire formats."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from listener.connectors.base import Batch
from listener.cursors import CursorStore
from listener.errors import FatalError, RetryableError
from listener.metrics import create as create_metrics
from listener.producer import MentionProducer
from listener.record import Mention, decode_mention
from listener.runner import Runner
from listener.settings import KafkaSettings

from .poll_support import poll_round, run
from .servers import BRANDS  # first: servers.py imports servers_youtube_discourse at its end
from .servers_youtube_discourse import (
    YT_BACKEND_ERROR,
    YT_COMMENT_NOT_FOUND,
    YT_KEY_INVALID,
    YT_QUOTA_EXCEEDED,
    DiscourseHarness,
    DiscourseWebhookHarness,
    YoutubeHarness,
    yt_reply,
)

pytestmark = pytest.mark.timeout(30)


async def youtube_round(
    h: YoutubeHarness, cursor: str | None = None, **overrides: Any
) -> tuple[list[Batch], str | None]:
    """Poll one connector until its round is done (``more`` false); the batches and cursor."""
    conn: Any = h.connector(**overrides)
    try:
        return await poll_round(conn, cursor)
    finally:
        await conn.close()


def ids(batches: list[Batch]) -> list[str]:
    return [m.id for b in batches for m in b.mentions]


# --- YouTube -------------------------------------------------------------------------------


def test_youtube_search_is_built_from_brand_keywords_and_reads_the_comments() -> None:
    async def go() -> tuple[YoutubeHarness, list[Batch]]:
        h = YoutubeHarness()
        await h.start()
        try:
            batches, _ = await youtube_round(h)
        finally:
            await h.stop()
        return h, batches

    h, batches = run(go)
    search = [c for c in h.calls if c["path"].endswith("/search")]
    assert len(search) == 1
    assert search[0]["q"] == "acme" and search[0]["part"] == "snippet"
    assert search[0]["type"] == "video" and search[0]["order"] == "date"
    assert search[0]["publishedAfter"].endswith("Z") and search[0]["key"] == YoutubeHarness.KEY
    threads = [c for c in h.calls if c["path"].endswith("/commentThreads")]
    videos = {c.get("videoId") for c in threads}
    assert videos == {"vidAcme0001", "vidAcme0002", "vidAcme0003", None}
    assert [c["allThreadsRelatedToChannelId"] for c in threads if "videoId" not in c] == [
        YoutubeHarness.CHANNEL
    ]
    found = set(ids(batches))
    assert "youtube:vidPasta0001" not in found, "the server-side query left it out"
    assert {"youtube:vidAcme0001", "youtube:vidAcme0002", "youtube:vidAcme0003"} <= found
    assert "youtube:UgzOwn1Question00000AaABAg.9xOwnAnswer1" in found
    assert batches[-1].quota_used == 100 + 4  # one search page, four thread lists
    assert all(b.paused is None for b in batches)


def test_youtube_ids_threads_authors_and_plain_text() -> None:
    async def go() -> list[Batch]:
        h = YoutubeHarness()
        await h.start()
        try:
            return (await youtube_round(h))[0]
        finally:
            await h.stop()

    by_id = {m.id: m for b in run(go) for m in b.mentions}
    video = by_id["youtube:vidAcme0001"]
    assert video.text == (
        "Acme rocket skates review & unboxing '2024'\n\nAcme sent me these. Verdict inside."
    )
    assert video.url == "https://www.youtube.com/watch?v=vidAcme0001"
    assert video.author.id == "UCreviewer000000000000" and video.author.name == "Gadget Reviews"
    assert video.reply_to_id is None and video.thread_id is None
    top = by_id["youtube:UgzTop1AcmeRocket0000AaABAg"]
    assert top.text == "My Acme skates caught fire & nobody answers support"
    assert "<" not in top.text and "evil.example" not in top.text
    assert top.thread_id == "youtube:vidAcme0001" and top.reply_to_id is None
    assert top.author.handle == "@wile" and top.author.id == "UCwile00000000000000000"
    assert top.url == "https://www.youtube.com/watch?v=vidAcme0001&lc=UgzTop1AcmeRocket0000AaABAg"
    assert top.created_at == datetime(2024, 9, 10, 12, tzinfo=UTC)
    reply = by_id["youtube:UgzTop1AcmeRocket0000AaABAg.9xReply0001"]
    assert reply.reply_to_id == top.id and reply.thread_id == "youtube:vidAcme0001"
    own = by_id["youtube:UgzOwn1Question00000AaABAg.9xOwnAnswer1"]
    assert own.thread_id == "youtube:vidAcmeOwn01"
    assert own.reply_to_id == "youtube:UgzOwn1Question00000AaABAg"


def test_youtube_a_comment_without_the_brand_is_not_kept_and_a_broken_thread_is_skipped() -> None:
    async def go() -> list[Batch]:
        h = YoutubeHarness()
        await h.start()
        try:
            return (await youtube_round(h))[0]
        finally:
            await h.stop()

    batches = run(go)
    by_id = {m.id: m for b in batches for m in b.mentions}
    unbranded = by_id["youtube:UgzTop2NoBrand00000000AaABAg"]
    assert BRANDS.apply(unbranded) is None, "the runner's matcher drops it"
    kept = BRANDS.apply(by_id["youtube:UgzTop1AcmeRocket0000AaABAg"])
    assert kept is not None and kept.brands == ("acme",)
    skipped = [s for b in batches for s in b.skipped]
    assert [s.reason for s in skipped] == ["validation"]
    assert "UgzBrokenThread0000AaABAg" in str(skipped[0].payload)


def test_youtube_pages_to_the_end_and_the_next_round_brings_nothing_old() -> None:
    async def go() -> tuple[list[Batch], list[Batch], YoutubeHarness]:
        h = YoutubeHarness()
        await h.start()
        try:
            first, cursor = await youtube_round(h, small=True)
            second, _ = await youtube_round(h, cursor, small=True)
        finally:
            await h.stop()
        return first, second, h

    first, second, h = run(go)
    assert len(ids(first)) == len(set(ids(first)))
    assert {"youtube:vidAcme0001", "youtube:UgzTop4Compare000000AaABAg"} <= set(ids(first))
    tokens = [c.get("pageToken") for c in h.calls if c["path"].endswith("/search")]
    assert tokens[:3] == [None, "p1", "p2"], "one search page per poll, walked with pageToken"
    assert ids(second) == [], "nothing old comes back from the cursor"
    assert all(not b.skipped for b in second)
    state = json.loads(second[-1].cursor or "{}")
    assert state["after"] == "2024-09-12T09:15:00Z"
    assert state["seen"]["video:vidAcme0003"] == "2024-09-12T10:30:00Z"


def test_youtube_comments_disabled_drops_the_video_without_an_error() -> None:
    async def go() -> list[Batch]:
        h = YoutubeHarness()
        await h.start()
        try:
            return (await youtube_round(h))[0]
        finally:
            await h.stop()

    batches = run(go)
    state = json.loads(batches[-1].cursor or "{}")
    assert set(state["videos"]) == {"vidAcme0001", "vidAcme0003"}
    assert "youtube:vidAcme0002" in ids(batches), "the video itself is still a mention"


def test_youtube_daily_budget_pauses_until_the_next_quota_day() -> None:
    async def go() -> tuple[list[Batch], Batch, list[Batch], int]:
        h = YoutubeHarness()
        await h.start()
        try:
            batches, cursor = await youtube_round(h, daily_quota_units=102)
            calls = len(h.calls)
            again, _ = await youtube_round(h, cursor, daily_quota_units=102)
            quiet = len(h.calls) - calls
            state = json.loads(cursor or "{}")
            state["day"] = "2001-01-01"  # a cursor from an earlier quota day
            fresh, _ = await youtube_round(h, json.dumps(state), daily_quota_units=102)
        finally:
            await h.stop()
        return batches, again[0], fresh, quiet

    batches, again, fresh, quiet = run(go)
    assert [b.paused for b in batches] == [None, None, None, "quota:day"]
    assert batches[-1].quota_used == 102 and batches[-1].more is False
    assert again.paused == "quota:day" and again.mentions == () and quiet == 0
    assert fresh[0].paused is None and fresh[0].quota_used == 100


def test_youtube_quota_exceeded_from_the_api_pauses_and_spends_the_budget() -> None:
    async def go() -> list[Batch]:
        h = YoutubeHarness()
        await h.start()
        h.quota_limit = 101
        try:
            return (await youtube_round(h))[0]
        finally:
            await h.stop()

    batches = run(go)
    assert batches[-1].paused == "quota:day"
    assert json.loads(batches[-1].cursor or "{}")["units"] == 10_000
    assert "youtube:UgzTop1AcmeRocket0000AaABAg" not in ids(batches)


def test_youtube_rejected_key_and_token_are_fatal_with_the_reason() -> None:
    async def go() -> list[str]:
        h = YoutubeHarness()
        await h.start()
        messages = []
        try:
            for options in (
                {"api_key": SecretStr("wrong")},
                {"api_key": None, "oauth_token": SecretStr("expired")},
            ):
                conn = h.connector(**options)
                with pytest.raises(FatalError) as info:
                    await conn.poll(None)
                messages.append(str(info.value))
                await conn.close()
        finally:
            await h.stop()
        return messages

    key, token = run(go)
    assert "API key" in key and "not valid" in key
    assert "HTTP 401" in token and "invalid authentication credentials" in token


def test_youtube_oauth_token_is_accepted() -> None:
    async def go() -> Batch:
        h = YoutubeHarness()
        await h.start()
        conn = h.connector(api_key=None, oauth_token=SecretStr(YoutubeHarness.TOKEN))
        try:
            return await conn.poll(None)
        finally:
            await conn.close()
            await h.stop()

    assert "youtube:vidAcme0003" in ids([run(go)])


def test_youtube_5xx_and_429_are_retryable() -> None:
    async def go() -> list[RetryableError]:
        h = YoutubeHarness()
        await h.start()
        conn = h.connector()
        errors = []
        try:
            for status, after in ((503, ""), (429, "30")):
                h.fail_next = (status, after)
                with pytest.raises(RetryableError) as info:
                    await conn.poll(None)
                errors.append(info.value)
        finally:
            await conn.close()
            await h.stop()
        return errors

    unavailable, limited = run(go)
    assert "HTTP 503" in str(unavailable) and unavailable.after is None
    assert limited.after == pytest.approx(30.0)


BUSY = "UgzBusy7Replies00000AaABAg"


def comment_calls(h: YoutubeHarness) -> list[dict[str, str]]:
    """The comments.list calls the harness answered (or refused)."""
    return [c for c in h.calls if c["path"].endswith("/comments")]


def test_youtube_a_thread_with_uncarried_replies_reads_them_with_comments_list() -> None:
    async def go() -> tuple[YoutubeHarness, list[str], list[Batch], list[Batch], list[Batch], int]:
        h = YoutubeHarness()
        replies = h.add_thread("vidAcmeOwn01", BUSY, "2024-09-13T10:00:00Z", 7)
        await h.start()
        options: dict[str, Any] = {"search": False, "max_results": 3}  # 6 a page
        try:
            first, cursor = await youtube_round(h, **options)
            calls = len(comment_calls(h))
            again, cursor = await youtube_round(h, cursor, **options)
            quiet = len(comment_calls(h)) - calls
            late = yt_reply(BUSY, "vidAcmeOwn01", 8, "2024-09-14T08:00:00Z", "acme answered")
            h.replies[BUSY].append(late)
            h.threads[-1]["snippet"]["totalReplyCount"] = 8
            newer, _ = await youtube_round(h, cursor, **options)
        finally:
            await h.stop()
        return h, replies, first, again, newer, quiet

    h, replies, first, again, newer, quiet = run(go)
    read = ids(first)
    assert [read.count(f"youtube:{r}") for r in replies] == [1] * 7, "all 7, each once"
    calls = comment_calls(h)[:2]
    assert [c.get("pageToken") for c in calls] == [None, "p6"], "two pages of 6"
    assert all(c["parentId"] == BUSY and c["maxResults"] == "6" for c in calls)
    assert all(c["part"] == "snippet" and c["textFormat"] == "plainText" for c in calls)
    assert {c["parentId"] for c in comment_calls(h)} == {BUSY}, "UgzOwn1 carries its 1 reply"
    assert first[-1].quota_used == 1 + 2, "one thread page, two comments.list pages"
    by_id = {m.id: m for b in first for m in b.mentions}
    for reply in replies:  # inline (1-5) and from comments.list (6-7) alike
        mention = by_id[f"youtube:{reply}"]
        assert mention.reply_to_id == f"youtube:{BUSY}"
        assert mention.thread_id == "youtube:vidAcmeOwn01"
        assert mention.url == f"https://www.youtube.com/watch?v=vidAcmeOwn01&lc={reply}"
    assert by_id[f"youtube:{replies[6]}"].text == "reply 7 about acme"
    assert ids(again) == [] and quiet == 0, "same totalReplyCount: no comments.list call"
    assert ids(newer) == [f"youtube:{BUSY}.9xBusyReply008"], "only the new reply"


def test_youtube_threads_carrying_all_their_replies_make_no_comments_list_call() -> None:
    async def go() -> tuple[YoutubeHarness, list[str], list[Batch]]:
        h = YoutubeHarness()
        five = h.add_thread("vidAcme0001", "UgzFive000000000000AaABAg", "2024-09-10T15:00:00Z", 5)
        h.add_thread("vidAcme0001", "UgzNone000000000000AaABAg", "2024-09-10T16:00:00Z", 0)
        await h.start()
        try:
            return h, five, (await youtube_round(h))[0]
        finally:
            await h.stop()

    h, five, batches = run(go)
    assert comment_calls(h) == []
    assert {f"youtube:{r}" for r in five} <= set(ids(batches))
    assert batches[-1].quota_used == 100 + 4, "as without those threads"


@pytest.mark.parametrize("error", ["503", "quota", "budget", "key", "404"])
def test_youtube_comments_list_errors_are_handled_like_the_other_calls(error: str) -> None:
    async def go() -> tuple[YoutubeHarness, list[str], Any, list[Batch]]:
        h = YoutubeHarness()
        video = "vidAcme0001" if error == "404" else "vidAcmeOwn01"
        replies = h.add_thread(video, BUSY, "2024-09-13T10:00:00Z", 7)
        answers = {
            "503": (503, YT_BACKEND_ERROR),
            "quota": (403, YT_QUOTA_EXCEEDED),
            "key": (400, YT_KEY_INVALID),
            "404": (404, YT_COMMENT_NOT_FOUND),
        }
        h.comments_error = answers.get(error)
        await h.start()
        options: dict[str, Any] = {"search": error == "404", "max_results": 3}
        if error == "budget":
            options["daily_quota_units"] = 2  # the thread page and one comments.list page
        conn: Any = h.connector(**options)
        raised: Any = None
        try:
            try:
                batches, _ = await poll_round(conn)
            except (RetryableError, FatalError) as exc:
                raised = exc
                batches, _ = await poll_round(conn)  # the same cursor (None) again
        finally:
            await conn.close()
            await h.stop()
        return h, replies, raised, batches

    h, replies, raised, batches = run(go)
    read = ids(batches)
    state = json.loads(batches[-1].cursor or "{}")
    if error == "503":
        assert isinstance(raised, RetryableError) and "HTTP 503" in str(raised)
        assert [read.count(f"youtube:{r}") for r in replies] == [1] * 7, "the retry reads all"
    elif error == "key":
        assert isinstance(raised, FatalError) and "API key" in str(raised)
    elif error in ("quota", "budget"):
        assert raised is None and batches[-1].paused == "quota:day"
        assert state["units"] == (10_000 if error == "quota" else 2)
        assert len(comment_calls(h)) == 1
    else:  # the thread was deleted meanwhile: its other replies only are lost
        assert raised is None and all(b.paused is None for b in batches)
        assert "vidAcme0001" in state["videos"], "the video is still read"
        assert {f"youtube:{r}" for r in replies[:5]} <= set(read)
        assert f"youtube:{replies[5]}" not in read
        assert "youtube:UgzTop1AcmeRocket0000AaABAg" in read


class _Kafka:
    """A producer client that acknowledges everything (the runner test's double)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> Any:
        assert value is not None
        self.sent.append((topic, value))
        return self

    def add_errback(self, *args: Any) -> None:
        pass

    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self, timeout: float | None = None) -> None:
        pass


def test_youtube_through_the_runner_publishes_pause_and_quota_metrics(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    kafka = _Kafka()

    async def go() -> None:
        h = YoutubeHarness()
        await h.start()
        conn = h.connector(daily_quota_units=103)  # search + 3 videos; not the channel
        runner = Runner(
            [conn],
            BRANDS,
            lambda: MentionProducer(KafkaSettings(), client=kafka),
            CursorStore(tmp_path),
            create_metrics(registry),
        )
        task = asyncio.create_task(runner.run())
        labels = {"connector": "youtube", "reason": "quota:day"}
        for _ in range(200):
            if registry.get_sample_value("brandlistener_connector_paused", labels) == 1:
                break
            await asyncio.sleep(0.02)
        runner.stop()
        await task
        await h.stop()

    run(go)
    used = registry.get_sample_value(
        "brandlistener_connector_quota_used_units", {"connector": "youtube"}
    )
    assert used == 103
    produced: list[Mention] = [decode_mention(v) for t, v in kafka.sent if t == "mentions.raw"]
    assert "youtube:UgzTop2NoBrand00000000AaABAg" not in {m.id for m in produced}
    assert "youtube:UgzTop1AcmeRocket0000AaABAg" in {m.id for m in produced}
    assert "youtube:UgzOwn1Question00000AaABAg" not in {m.id for m in produced}
    assert json.loads(CursorStore(tmp_path).load("youtube") or "{}")["units"] == 103


def test_youtube_quota_day_is_pacific() -> None:
    from listener.connectors.youtube import quota_day

    utc_evening = datetime(2024, 9, 12, 7, 59, tzinfo=UTC)
    assert quota_day(utc_evening) == "2024-09-11"
    assert quota_day(utc_evening + timedelta(minutes=1)) == "2024-09-12"


# --- Discourse -----------------------------------------------------------------------------


async def discourse_drain(
    h: DiscourseHarness, cursor: str | None = None, **overrides: Any
) -> tuple[list[Batch], str | None]:
    conn: Any = h.connector(**overrides)
    try:
        return await poll_round(conn, cursor, max_polls=40)
    finally:
        await conn.close()


def test_discourse_reads_forward_by_id_to_the_end_and_then_nothing_old() -> None:
    async def go() -> tuple[list[Batch], list[Batch], DiscourseHarness]:
        h = DiscourseHarness()
        await h.start()
        try:
            first, cursor = await discourse_drain(h, small=True)
            second, _ = await discourse_drain(h, cursor, small=True)
        finally:
            await h.stop()
        return first, second, h

    first, second, h = run(go)
    read = ids(first)
    assert read == [f"discourse:{n}" for n in (995, 1001, 1002, 1003, 1004, 1007)]
    assert [s.reason for b in first for s in b.skipped] == ["validation"]  # 1005: no created_at
    befores = [r.query.get("before") for r in h.requests if r.path == "/posts.json"]
    assert befores[0] is None, "first start: the newest id, minus backfill_ids"
    assert befores[1] == "997" and "1010" in befores, "windows of 2 ids: (994, 996], ..."
    assert json.loads(first[-1].cursor or "{}") == {"last": 1007}
    assert ids(second) == [] and second[-1].more is False


def test_discourse_ids_threads_authors_and_plain_text() -> None:
    async def go() -> list[Batch]:
        h = DiscourseHarness()
        await h.start()
        try:
            return (await discourse_drain(h))[0]
        finally:
            await h.stop()

    by_id = {m.id: m for b in run(go) for m in b.mentions}
    opener = by_id["discourse:1001"]
    assert opener.text == "Acme router drops wifi\n\nMy Acme R7 drops wifi every hour."
    assert opener.reply_to_id is None and opener.thread_id is None
    assert opener.author.handle == "alice" and opener.author.id == "11"
    assert opener.url is not None and opener.url.endswith("/t/acme-router-drops-wifi/100/1")
    to_topic = by_id["discourse:1003"]  # no reply_to_post_number: a reply to the topic
    assert to_topic.reply_to_id == "discourse:1001" and to_topic.thread_id == "discourse:1001"
    hostile = by_id["discourse:1004"]
    assert hostile.reply_to_id == "discourse:1003" and hostile.thread_id == "discourse:1001"
    assert "<" not in hostile.text and "&amp;" not in hostile.text
    assert hostile.text.startswith("Try resetting it & see the guide")
    assert hostile.signals["links"] == ["https://acme.example/help"]
    older = by_id["discourse:1007"]  # parent and first post come from /posts/by_number
    assert older.reply_to_id == "discourse:995" and older.thread_id == "discourse:960"
    assert BRANDS.apply(by_id["discourse:1002"]) is None, "the pasta post matches no brand"
    assert BRANDS.apply(hostile) is not None


def test_discourse_api_key_reads_private_categories_and_a_bad_key_is_fatal() -> None:
    async def go() -> tuple[list[str], str, dict[str, str]]:
        h = DiscourseHarness()
        await h.start()
        try:
            batches, _ = await discourse_drain(h, api_key=SecretStr(h.KEY))
            sent = dict(h.requests[0].headers)
            conn = h.connector(api_key=SecretStr("wrong"))
            with pytest.raises(FatalError) as info:
                await conn.poll(None)
            await conn.close()
        finally:
            await h.stop()
        return ids(batches), str(info.value), sent

    read, error, sent = run(go)
    assert "discourse:1009" in read
    assert sent["Api-Key"] == DiscourseHarness.KEY and sent["Api-Username"] == "system"
    assert "HTTP 403" in error and "The API username or key is invalid" in error


def test_discourse_429_waits_for_extras_wait_seconds_and_5xx_is_retryable() -> None:
    async def go() -> list[RetryableError]:
        h = DiscourseHarness()
        await h.start()
        conn = h.connector()
        errors = []
        try:
            h.throttle_next = 37  # Discourse's body, no Retry-After header
            with pytest.raises(RetryableError) as info:
                await conn.poll(None)
            errors.append(info.value)
            h.fail_next = (502, "")
            with pytest.raises(RetryableError) as info:
                await conn.poll(None)
            errors.append(info.value)
        finally:
            await conn.close()
            await h.stop()
        return errors

    throttled, bad_gateway = run(go)
    assert throttled.after == pytest.approx(37.0)
    assert "HTTP 502" in str(bad_gateway)


def test_discourse_a_post_younger_than_settle_s_waits_for_the_next_poll() -> None:
    async def go() -> tuple[Batch, Batch]:
        h = DiscourseHarness()
        fresh = dict(h.posts[-2], id=1008, post_number=6)
        fresh["created_at"] = datetime.now(UTC).isoformat()
        h.posts.append(fresh)
        await h.start()
        try:
            start = json.dumps({"last": 1004})
            held = await h.connector(settle_s=600).poll(start)
            later = await h.connector(settle_s=0).poll(start)
        finally:
            await h.stop()
        return held, later

    held, later = run(go)
    assert ids([held]) == ["discourse:1007"] and held.more is False
    assert json.loads(held.cursor or "{}") == {"last": 1007}
    assert ids([later]) == ["discourse:1007", "discourse:1008"]


def test_discourse_webhook_verifies_the_signature_and_answers_after_the_kafka_ack() -> None:
    async def go() -> dict[str, Any]:
        h = DiscourseWebhookHarness()
        await h.start()
        conn: Any = h.connector(base_url=None)
        await conn.start()
        out: dict[str, Any] = {}
        try:
            post = next(p for p in h.api.posts if p["id"] == 1004)
            body = orjson.dumps({"post": post})
            out["forged"] = await h.send_event(conn.port, body, secret="not-the-secret")
            out["ping"] = await h.send_event(conn.port, b'{"ping": "OK"}', event="ping")
            out["bad"] = await h.send_event(conn.port, b'{"topic": {}}')
            out["dead"] = await conn.poll(None)  # the 400's body, for the dead-letter topic
            await conn.delivered(out["dead"], None)
            waiting = asyncio.create_task(h.send_event(conn.port, body))
            batch = await conn.poll(None)
            await asyncio.sleep(0.1)
            out["answered_before_ack"] = waiting.done()
            await conn.delivered(batch, None)
            out["accepted"] = await waiting
            out["batch"] = batch
            failing = asyncio.create_task(h.send_event(conn.port, body))
            lost = await conn.poll(None)
            await conn.delivered(lost, TimeoutError("kafka"))
            out["lost"] = await failing
        finally:
            await h.stop()
        return out

    out = run(go)
    assert out["forged"][0] == 401 and out["ping"] == (200, {"ignored": "ping"})
    assert out["bad"][0] == 400
    assert out["answered_before_ack"] is False and out["accepted"] == (
        200,
        {"accepted": True, "id": 1004},
    )
    dead: Batch = out["dead"]
    assert dead.mentions == () and [s.reason for s in dead.skipped] == ["validation"]
    assert dead.skipped[0].payload == '{"topic": {}}'
    batch: Batch = out["batch"]
    [mention] = batch.mentions
    assert mention.id == "discourse_webhook:1004" and mention.url is None
    assert mention.text.startswith("Try resetting it & see the guide") and "<" not in mention.text
    assert mention.reply_to_id is None, "no base_url and the parent was not pushed: unknown"
    assert out["lost"][0] == 503


def test_discourse_webhook_resolves_parents_from_pushed_posts_without_base_url() -> None:
    async def go() -> list[Mention]:
        h = DiscourseWebhookHarness()
        await h.start()
        conn: Any = h.connector(base_url=None)
        await conn.start()
        found: list[Mention] = []
        try:
            for pid in (1001, 1003, 1004):
                post = next(p for p in h.api.posts if p["id"] == pid)
                sending = asyncio.create_task(h.send_event(conn.port, orjson.dumps({"post": post})))
                batch = await conn.poll(None)
                await conn.delivered(batch, None)
                assert (await sending)[0] == 200
                found += batch.mentions
        finally:
            await h.stop()
        return found

    opener, to_topic, reply = run(go)
    assert to_topic.reply_to_id == "discourse_webhook:1001"
    assert reply.reply_to_id == "discourse_webhook:1003"
    assert reply.thread_id == "discourse_webhook:1001"
