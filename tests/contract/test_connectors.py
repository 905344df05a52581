"""Contract suite: every registered connector against its local wire-format server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import pytest

from listener.connectors import REGISTRY
from listener.connectors.base import Batch, Connector, Skipped
from listener.errors import RetryableError
from listener.record import Mention, decode_mention, encode_mention

from .servers import HARNESSES, Harness

T = TypeVar("T")
pytestmark = pytest.mark.timeout(30)


def run(factory: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(factory())  # type: ignore[arg-type]


@asynccontextmanager
async def started(name: str) -> AsyncIterator[Harness]:
    harness = HARNESSES[name]()
    await harness.start()
    try:
        yield harness
    finally:
        await harness.stop()


async def drain(
    harness: Harness, conn: Connector, cursor: str | None = None, max_polls: int = 8
) -> tuple[list[Mention], list[Skipped], str | None]:
    """Poll until caught up: no more pages, or a poll brings nothing new at all."""
    mentions: list[Mention] = []
    skipped: list[Skipped] = []
    await harness.feed()
    for _ in range(max_polls):
        try:
            batch: Batch = await conn.poll(cursor)
        except RetryableError:
            break
        seen = {m.id for m in mentions}
        new = [m for m in batch.mentions if m.id not in seen]
        mentions.extend(batch.mentions)
        skipped.extend(batch.skipped)
        stuck = not new and batch.cursor in (None, cursor)
        cursor = batch.cursor if batch.cursor is not None else cursor
        await conn.delivered(batch, None)
        if stuck or not batch.more:
            break
    return mentions, skipped, cursor


connectors = pytest.mark.parametrize("name", sorted(REGISTRY))


def sources_of(name: str) -> tuple[str, ...]:
    """The Mention sources a connector writes (its own name, or e.g. facebook + instagram)."""
    return getattr(HARNESSES[name], "sources", ()) or (name,)


def test_every_connector_has_a_harness() -> None:
    assert set(HARNESSES) == set(REGISTRY)


@connectors
def test_valid_mentions_with_stable_ids(name: str) -> None:
    async def go() -> tuple[list[Mention], list[Mention]]:
        async with started(name) as h:
            first, second = h.connector(), h.connector()
            try:
                a, _, _ = await drain(h, first)
                b, _, _ = await drain(h, second)
            finally:
                await first.close()
                await second.close()
            return a, b

    a, b = run(go)
    assert a, "the fixture yields posts"
    for mention in a:
        assert mention.source in sources_of(name) and mention.id.startswith(f"{mention.source}:")
        assert mention.created_at.utcoffset() is not None
        assert decode_mention(encode_mention(mention)) == mention
    assert sorted({m.id for m in a}) == sorted({m.id for m in b})


@connectors
def test_malformed_event_is_skipped_with_a_reason(name: str) -> None:
    async def go() -> list[Skipped]:
        async with started(name) as h:
            conn = h.connector()
            try:
                return (await drain(h, conn))[1]
            finally:
                await conn.close()

    skipped = run(go)
    assert skipped and all(s.reason and s.detail for s in skipped)


@connectors
def test_rate_limit_raises_retryable_with_after(name: str) -> None:
    if HARNESSES[name].push:
        pytest.skip("push source: nothing upstream rate-limits it")

    async def go() -> RetryableError:
        async with started(name) as h:
            h.rate_limit_next("7")
            conn = h.connector()
            try:
                with pytest.raises(RetryableError) as info:
                    await conn.poll(None)
                return info.value
            finally:
                await conn.close()

    assert run(go).after == pytest.approx(7.0)


@connectors
def test_resume_from_cursor_without_gaps(name: str) -> None:
    async def go() -> tuple[set[str], list[Mention], list[Mention]]:
        async with started(name) as h:
            full_conn = h.connector()
            full, _, _ = await drain(h, full_conn)
            await full_conn.close()
            h.replay()
            conn = h.connector(small=True)
            await h.feed()
            batch = await conn.poll(None)
            await conn.delivered(batch, None)
            await conn.close()
            resumed = h.connector(small=True)
            rest, _, _ = await drain(h, resumed, batch.cursor, max_polls=20)
            await resumed.close()
            return {m.id for m in full}, list(batch.mentions), rest

    full, first, rest = run(go)
    first_ids, rest_ids = {m.id for m in first}, [m.id for m in rest]
    assert first_ids and first_ids != full, "the small first batch is a strict part"
    assert first_ids | set(rest_ids) == full
    if not HARNESSES[name].overlap_allowed:
        assert not first_ids & set(rest_ids)
        assert len(rest_ids) == len(set(rest_ids))


@connectors
def test_close_is_safe(name: str) -> None:
    async def go() -> None:
        async with started(name) as h:
            conn = h.connector()
            await conn.close()
            await conn.close()
            used = h.connector()
            await drain(h, used, max_polls=1)
            await used.close()
            await used.close()

    run(go)


def test_rss_second_poll_is_a_304() -> None:
    from .servers import FeedHarness

    async def go() -> tuple[int, int, list[str | None]]:
        h = FeedHarness()
        await h.start()
        conn = h.connector()
        try:
            _, _, cursor = await drain(h, conn)
            again = [m for _ in h.FEEDS for m in (await conn.poll(cursor)).mentions]
            sent = [r.headers.get("If-None-Match") for r in h.requests]
            return h.not_modified, len(again), sent
        finally:
            await conn.close()
            await h.stop()

    not_modified, again, sent = run(go)
    assert not_modified == 2 and again == 0
    assert sent[:2] == [None, None] and all(sent[2:])


THREADS: dict[str, tuple[str, str, str | None]] = {
    # connector: (a reply's Mention id, its parent's Mention id, its thread's Mention id)
    "bluesky": (
        "bluesky:did:plc:eclio37ymobqex2ncko63h4r/3l3qo2vutsw23",
        "bluesky:did:plc:eclio37ymobqex2ncko63h4r/3l3qo2vutsw21",
        "bluesky:did:plc:eclio37ymobqex2ncko63h4r/3l3qo2vutsw21",
    ),
    "hackernews": ("hackernews:41500021", "hackernews:41500020", "hackernews:41500020"),
    # Mastodon's Status has in_reply_to_id but no thread root.
    "mastodon": ("/113100000000000006", "/113100000000000001", None),
    "reddit": ("reddit:t1_c0006", "reddit:t3_1f0001", "reddit:t3_1f0001"),
    "webhook": ("webhook:forum/fb-2", "webhook:forum/fb-1", "webhook:forum/fb-1"),
    "x": ("x:1834000000000000003", "x:1834000000000000001", "x:1834000000000000001"),
    "meta_webhook": ("facebook:2001_3002", "facebook:2001_3001", "facebook:1001_2001"),
    "meta_graph": ("facebook:2101_3102", "facebook:2101_3101", "facebook:1001_2101"),
    "threads": (
        "threads:18000000000000003",
        "threads:18000000000000002",
        "threads:18000000000000001",
    ),
    # A reblog: the blog it was reblogged from is the parent, the original post the thread.
    "tumblr": (
        "tumblr:730000000000000004",
        "tumblr:730000000000000001",
        "tumblr:730000000000000001",
    ),
    # A comment: the photo is both its parent and its thread.
    "flickr": (
        "flickr:6065-53100000001-72157700000000001",
        "flickr:53100000001",
        "flickr:53100000001",
    ),
    # A reply to a comment names that comment; the thread is the page's post.
    "linkedin": (
        "linkedin:urn:li:comment:(urn:li:activity:7240000000000000001,7240000000000000102)",
        "linkedin:urn:li:comment:(urn:li:activity:7240000000000000001,7240000000000000101)",
        "linkedin:urn:li:share:7240000000000000001",
    ),
    # A review opens a thread; the developer's or company's reply is in it.
    "googleplay": (
        "googleplay:gp:AOqpTOE_6:reply",
        "googleplay:gp:AOqpTOE_6",
        "googleplay:gp:AOqpTOE_6",
    ),
    "trustpilot": (
        "trustpilot:66e2a0000000000000000005:reply",
        "trustpilot:66e2a0000000000000000005",
        "trustpilot:66e2a0000000000000000005",
    ),
    "youtube": (
        "youtube:UgzTop1AcmeRocket0000AaABAg.9xReply0001",
        "youtube:UgzTop1AcmeRocket0000AaABAg",
        "youtube:vidAcme0001",
    ),
    "discourse": ("discourse:1004", "discourse:1003", "discourse:1001"),
    "discourse_webhook": (
        "discourse_webhook:1004",
        "discourse_webhook:1003",
        "discourse_webhook:1001",
    ),
}
PARENT_AUTHORS: dict[str, tuple[str | None, str | None]] = {
    # connector: the (id, handle) its THREADS reply records as reply_to_author
    "bluesky": ("did:plc:eclio37ymobqex2ncko63h4r", None),  # the parent URI's DID
    "mastodon": ("109000000000001", "user1"),  # in_reply_to_account_id, its acct from mentions
    "x": ("2244", "wile_e"),  # in_reply_to_user_id, its username from includes.users
    "reddit": (None, "road_runner"),  # link_author: the comment answers the submission
    "youtube": ("UCwile00000000000000000", "@wile"),  # the top-level comment's author
    "discourse": (None, "bob"),  # the parent post's username
    "discourse_webhook": (None, "bob"),
    "webhook": (None, "road.runner"),  # the sender's reply_to_author
}
"""Sources that name a reply's parent author; the other THREADS connectors record none."""
THREAD_ROOTS = {"appstore", "yelp"}
"""Sources whose every post opens a thread (reviews) and that give no replies."""


@connectors
def test_reply_and_thread_ids_where_the_source_gives_them(name: str) -> None:
    async def go() -> list[Mention]:
        async with started(name) as h:
            conn = h.connector()
            try:
                return (await drain(h, conn))[0]
            finally:
                await conn.close()

    mentions = run(go)
    if name in THREAD_ROOTS:
        assert mentions and all(m.reply_to_id is None and m.thread_id == m.id for m in mentions)
        return
    if name not in THREADS:  # RSS/Atom entries carry no parent
        assert all(m.reply_to_id is None and m.thread_id is None for m in mentions)
        return
    reply_id, parent, thread = THREADS[name]
    prefixes = tuple(f"{source}:" for source in sources_of(name))
    found = {m.id: m for m in mentions if m.id.endswith(reply_id) and m.id.startswith(prefixes)}
    [reply] = found.values()
    assert reply.reply_to_id is not None and reply.reply_to_id.endswith(parent)
    assert reply.reply_to_id.startswith(f"{reply.source}:")
    if thread is None:
        assert reply.thread_id is None
    else:
        assert reply.thread_id == thread
    if name in PARENT_AUTHORS:
        assert reply.reply_to_author is not None
        assert (reply.reply_to_author.id, reply.reply_to_author.handle) == PARENT_AUTHORS[name]
    else:
        assert reply.reply_to_author is None
    # A parent named by a reply has the same form as the Mention ids of this source.
    if name != "mastodon":
        assert reply.reply_to_id.split(":", 1)[1].count("/") == reply.id.split(":", 1)[1].count("/")
