"""Mastodon keyword search: ``/api/v2/search?type=statuses`` paged by ``min_id``, with a token."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from pydantic import SecretStr

from listener.brands import BrandMatcher, BrandSettings
from listener.connectors.mastodon import MastodonConnector, MastodonSettings
from listener.errors import FatalError, RetryableError
from listener.record import Mention

from .servers import BRANDS, MastodonHarness, fixture

pytestmark = pytest.mark.timeout(30)
KEYWORDS_ONLY = BrandMatcher([BrandSettings(name="acme", keywords=("acme",))])
"""No hashtags: the connector reads the search alone."""


def hits(term: str = "acme") -> set[str]:
    """Status ids the whole search history holds for ``term``."""
    corpus = fixture("mastodon", "tag_timeline.json") + fixture("mastodon", "search_statuses.json")
    return {
        s["id"]
        for s in corpus
        if term in str(s.get("content") or "").lower()
        and not s.get("reblog")
        and s["created_at"] != "not a time"  # the fixture's malformed status: skipped
    }


def sid(mention: Mention) -> str:
    """The status id a Mention id ends with."""
    return mention.id.rsplit("/", 1)[1]


def connector(
    h: MastodonHarness, brands: BrandMatcher = KEYWORDS_ONLY, **kw: Any
) -> MastodonConnector:
    settings: dict[str, Any] = {
        "instance": h.base,
        "access_token": SecretStr(h.TOKEN),
        "search": True,
        "limit": 2,
        "start_min_id": "0",
        "poll_interval_s": 0,
        **kw,
    }
    return MastodonConnector(MastodonSettings(**settings), brands)


async def drain(
    conn: MastodonConnector, cursor: str | None = None, polls: int = 40
) -> tuple[list[Mention], str | None]:
    out: list[Mention] = []
    for _ in range(polls):
        batch = await conn.poll(cursor)
        out.extend(batch.mentions)
        cursor = batch.cursor
        if not batch.more:
            break
    return out, cursor


def with_server(test: Any, newest_first: bool = False) -> Any:
    async def go() -> Any:
        h = MastodonHarness()
        h.search_newest_first = newest_first
        await h.start()
        try:
            return await test(h)
        finally:
            await h.stop()

    return asyncio.run(go())


@pytest.mark.parametrize("newest_first", [False, True], ids=["docs-order", "newest-cut"])
def test_keyword_posts_arrive_with_documented_params(newest_first: bool) -> None:
    async def test(h: MastodonHarness) -> tuple[list[Mention], list[Any]]:
        conn = connector(h)
        try:
            mentions, _ = await drain(conn)
        finally:
            await conn.close()
        return mentions, [r for r in h.requests if r.path == "/api/v2/search"]

    mentions, requests = with_server(test, newest_first)
    ids = [sid(m) for m in mentions]
    assert set(ids) == hits() and len(ids) == len(set(ids))
    keyword_only = next(m for m in mentions if sid(m) == "113100000000000008")
    assert keyword_only.text == "anyone know if acme ships to Portugal? asking for a friend"
    assert "<p>" not in "".join(m.text for m in mentions)
    for r in requests:
        assert r.query["type"] == "statuses" and r.query["q"] == "acme"
        assert r.query["resolve"] == "false" and r.query["limit"] == "2"
        assert r.headers["Authorization"] == f"Bearer {MastodonHarness.TOKEN}"


@pytest.mark.parametrize("newest_first", [False, True], ids=["docs-order", "newest-cut"])
def test_resume_from_cursor_without_gaps_or_duplicates(newest_first: bool) -> None:
    async def test(h: MastodonHarness) -> tuple[list[str], list[str], list[str]]:
        first = connector(h)
        seen: list[str] = []
        cursor: str | None = None
        for _ in range(2):  # stop part-way, even mid-walk
            batch = await first.poll(cursor)
            seen.extend(sid(m) for m in batch.mentions)
            cursor = batch.cursor
        await first.close()
        second = connector(h)
        rest, cursor = await drain(second, cursor)
        again, _ = await drain(second, cursor)  # caught up: nothing new
        await second.close()
        return seen, [sid(m) for m in rest], [sid(m) for m in again]

    seen, rest, again = with_server(test, newest_first)
    assert seen and set(seen) | set(rest) == hits()
    if not newest_first:  # the documented order: a clean cut, no overlap at all
        assert not set(seen) & set(rest)
    assert len(rest) == len(set(rest)) and not again


def test_without_cursor_starts_at_the_newest_page() -> None:
    async def test(h: MastodonHarness) -> tuple[list[str], dict[str, str]]:
        conn = connector(h, start_min_id=None)
        try:
            batch = await conn.poll(None)
        finally:
            await conn.close()
        assert batch.cursor is not None
        return [sid(m) for m in batch.mentions], json.loads(batch.cursor)

    ids, state = with_server(test)
    assert ids == ["113100000000000010", "113100000000000009"]
    assert state == {"search:acme": "113100000000000010"}


def test_search_beside_the_tag_timeline_shares_mention_ids() -> None:
    async def test(h: MastodonHarness) -> list[Mention]:
        conn = connector(h, brands=BRANDS, limit=40)
        try:
            return (await drain(conn))[0]
        finally:
            await conn.close()

    mentions = with_server(test)
    ids = [sid(m) for m in mentions]
    assert set(ids) == hits()
    assert len(ids) > len(set(ids)), "hashtag posts come from both: the runner drops repeats"


def test_search_needs_a_token() -> None:
    with pytest.raises(FatalError, match="access_token"):
        MastodonConnector(
            MastodonSettings(instance="http://127.0.0.1:1", search=True), KEYWORDS_ONLY
        )

    async def test(h: MastodonHarness) -> None:
        conn = connector(h, access_token=SecretStr("wrong"))
        try:
            with pytest.raises(FatalError):
                await conn.poll(None)
        finally:
            await conn.close()

    with_server(test)


def test_search_rate_limit_is_retryable() -> None:
    async def test(h: MastodonHarness) -> RetryableError:
        h.rate_limit_next("9")
        conn = connector(h)
        try:
            with pytest.raises(RetryableError) as info:
                await conn.poll(None)
            return info.value
        finally:
            await conn.close()

    assert with_server(test).after == pytest.approx(9.0)


def test_search_terms_setting_overrides_the_keywords() -> None:
    async def test(h: MastodonHarness) -> list[Mention]:
        conn = connector(h, search_terms=("portugal",))
        try:
            return (await drain(conn))[0]
        finally:
            await conn.close()

    assert [sid(m) for m in with_server(test)] == ["113100000000000008"]
