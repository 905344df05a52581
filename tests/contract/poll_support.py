"""What the pull connectors' contract tests share: a coroutine run to its end, a round of polls."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from listener.connectors.base import Batch, Connector

T = TypeVar("T")
E = TypeVar("E", bound=Exception)


def run(factory: Callable[[], Awaitable[T]]) -> T:
    """Run the coroutine ``factory`` makes on a fresh event loop; its result."""
    return asyncio.run(factory())  # type: ignore[arg-type]


async def poll_round(
    conn: Any, cursor: str | None = None, max_polls: int = 30
) -> tuple[list[Batch], str | None]:
    """Poll until a batch says there is no more (``more`` false), at most ``max_polls`` times.

    Returns:
        Every batch, and the cursor of the last one.
    """
    batches: list[Batch] = []
    for _ in range(max_polls):
        batch = await conn.poll(cursor)
        batches.append(batch)
        cursor = batch.cursor
        if not batch.more:
            break
    return batches, cursor


async def first_poll_error(conn: Connector, kind: type[E]) -> E:
    """The ``kind`` error the connector's first poll raises (it is closed either way)."""
    try:
        with pytest.raises(kind) as info:
            await conn.poll(None)
        return info.value
    finally:
        await conn.close()
