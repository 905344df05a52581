"""X rule reconciliation and reconnect backfill; Reddit token renewal and rate-limit headers."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest

from listener.errors import RetryableError

from .servers import HARNESSES  # first: servers.py imports paid_servers at its end

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
    assert "author_id" in h.stream_params[0]["expansions"]


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
