"""Find-before-re-create: the pending set, which answers leave a create pending, the quoting."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from async_support import sync
from multidict import CIMultiDict

from agents.sinks.base import HttpClient
from agents.sinks.lookup import (
    PendingCreates,
    create_once,
    find_or_create,
    jql_string,
    mention_tag,
    ticketsql_string,
)
from listener.errors import FatalError, RetryableError, SkippableError


class FakeHttp(HttpClient):
    """Answers the create with ``answer`` (a status, or an exception to raise)."""

    def __init__(self, answer: int | BaseException) -> None:
        super().__init__("target")
        self.answer = answer

    async def request(
        self, method: str, url: str, *, raw: bool = False, **kwargs: Any
    ) -> tuple[int, Any, str]:
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer, CIMultiDict(), '{"id": 7}'


@pytest.mark.parametrize(
    ("answer", "error", "pending"),
    [
        (201, None, False),
        (400, SkippableError, False),
        (401, FatalError, False),
        (408, RetryableError, False),
        (429, RetryableError, False),
        (500, RetryableError, True),
        (503, RetryableError, True),
        (RetryableError("target: request timed out"), RetryableError, True),
        (asyncio.CancelledError(), asyncio.CancelledError, True),
    ],
)
@sync
async def test_only_an_unknown_outcome_leaves_the_create_pending(
    answer: int | BaseException, error: type[BaseException] | None, pending: bool
) -> None:
    creates = PendingCreates()
    http = FakeHttp(answer)
    if error is None:
        assert await create_once("target", http, creates, "m:1", "http://t/") == '{"id": 7}'
    else:
        with pytest.raises(error):
            await create_once("target", http, creates, "m:1", "http://t/")
    assert ("m:1" in creates) is pending


@sync
async def test_a_pending_id_is_searched_first_and_a_hit_is_not_created() -> None:
    creates, calls = PendingCreates(), []

    async def find() -> str | None:
        calls.append("find")
        return "SD-4"

    async def create() -> str:
        calls.append("create")
        return "SD-5"

    fresh = await find_or_create(creates, "m:1", find, create)
    assert (fresh.external_id, fresh.created, calls) == ("SD-5", True, ["create"])
    creates.mark("m:1")
    found = await find_or_create(creates, "m:1", find, create)
    assert (found.external_id, found.created) == ("SD-4", False)
    assert calls == ["create", "find"] and "m:1" not in creates


@sync
async def test_a_miss_creates() -> None:
    creates = PendingCreates()
    creates.mark("m:1")

    async def find() -> str | None:
        return None

    async def create() -> str:
        return "9"

    result = await find_or_create(creates, "m:1", find, create)
    assert (result.external_id, result.created) == ("9", True)


def test_the_pending_set_is_bounded_oldest_first() -> None:
    creates = PendingCreates(limit=3)
    for n in range(5):
        creates.mark(f"m:{n}")
    creates.mark("m:2")  # marked again: now the newest
    creates.mark("m:5")
    assert len(creates) == 3 and all(f"m:{n}" in creates for n in (2, 4, 5))


def test_the_tag_is_a_short_hex_digest() -> None:
    tag = mention_tag("mastodon:10'7\" OR x \\")
    assert tag.startswith("bl-") and len(tag) == 27
    assert all(c in "0123456789abcdef" for c in tag[3:])
    assert tag == mention_tag("mastodon:10'7\" OR x \\") != mention_tag("mastodon:107")


@pytest.mark.parametrize(
    ("value", "jql", "ticketsql"),
    [
        ("mastodon:1", '"mastodon:1"', "'mastodon:1'"),
        ('say "hi"', r'"say \"hi\""', "'say \"hi\"'"),
        ("it's", '"it\'s"', r"'it\'s'"),
        ("back\\slash", r'"back\\slash"', r"'back\\slash'"),
        ("a\\'b", '"a\\\\\'b"', "'a\\\\\\'b'"),  # a\'b
        ("line\nbreak\ttab", r'"line\nbreak\ttab"', "'line\nbreak\ttab'"),
    ],
)
def test_query_strings_are_quoted_and_escaped(value: str, jql: str, ticketsql: str) -> None:
    assert jql_string(value) == jql
    assert ticketsql_string(value) == ticketsql
