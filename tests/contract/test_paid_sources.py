"""X rule reconciliation and reconnect backfill; Reddit token renewal and rate-limit headers."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest

from listener.errors import RetryableError

from .servers import BRANDS, HARNESSES  # first: servers.py imports paid_servers at its end

if TYPE_CHECKING:
    from .paid_servers import XHarness

pytestmark = pytest.mark.timeout(30)


def test_x_rules_reconciled_and_backfill_asked_on_reconnect() -> None:
    async def go() -> XHarness:
        h: Any = HARNESSES["x"]()
        await h.start()
        h.rules.append({"id": "9", "value": "old acme rule", "tag": "brand-listener:acme"})
        conn = h.connector()
        try:
            await conn.poll(None)
            await conn._dropped([], [], None, "test")  # type: ignore[attr-defined]
        except RetryableError:
            pass
        try:
            await conn.poll(None)
        finally:
            await conn.close()
            await h.stop()
        return h

    h = asyncio.run(go())
    assert h.rule_posts[0] == {"delete": {"ids": ["9"]}}
    added = h.rule_posts[1]["add"]
    assert added == [{"value": "(acme OR #acme) -is:retweet", "tag": "brand-listener:acme"}]
    assert {r["tag"] for r in h.rules} == {"someone-else", "brand-listener:acme"}
    assert len(h.rule_posts) == 2, "second connect: rules already in step"
    assert "backfill_minutes" not in h.stream_params[0]
    assert h.stream_params[1]["backfill_minutes"] == "2"
    expansions = h.stream_params[0]["expansions"].split(",")
    assert "author_id" in expansions and "in_reply_to_user_id" in expansions
    assert "in_reply_to_user_id" in h.stream_params[0]["tweet.fields"].split(",")


def test_reddit_429_waits_for_x_ratelimit_reset_and_401_renews_the_token() -> None:
    async def go() -> tuple[float | None, int]:
        h: Any = HARNESSES["reddit"]()
        await h.start()
        conn = h.connector()
        try:
            await conn.poll(None)
            conn._token = "revoked"  # type: ignore[attr-defined]
            await conn.poll(None)  # 401 -> one new token -> the listing
            h.limit_next = True
            with pytest.raises(RetryableError) as info:
                await conn.poll(None)
            return info.value.after, h.tokens
        finally:
            await conn.close()
            await h.stop()

    after, tokens = asyncio.run(go())
    assert tokens == 2
    assert after == pytest.approx(42.0)


def test_x_spend_guard_stops_reading_at_the_daily_cap_and_says_why() -> None:
    from listener.connectors.x import XConnector, XSettings

    async def go() -> tuple[Any, list[Any]]:
        h: Any = HARNESSES["x"]()
        await h.start()
        settings = XSettings(
            bearer_token=h.TOKEN, base_url=h.base, batch_wait_s=0.3,
            max_posts_per_day=2, pause_check_s=0.01,
        )  # fmt: skip
        conn = XConnector(settings, BRANDS)
        batches = []
        try:
            batches.append(await conn.poll(None))
            batches.append(await conn.poll(batches[0].cursor))
        finally:
            await conn.close()
            await h.stop()
        return h, batches

    h, (first, second) = asyncio.run(go())
    assert len(h.messages) > 2, "the stream had more to give"
    assert len(first.mentions) == 2 and first.paused is None
    assert second.mentions == () and second.paused == "spend_guard:day"
    assert '"day_reads":2' in second.cursor and '"month_reads":2' in second.cursor
    assert len(h.stream_params) == 1, "no new stream (nothing billed) while paused"
