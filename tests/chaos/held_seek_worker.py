"""A worker whose seeks after a rebalance wait until it has fetched N more records of mentions.raw.

Fault injection for ``test_held_seek.py``: at a rebalance Faust's recovery
resumes the stream partitions (with the fetcher running and the flow on for
the changelogs) before it seeks them to their committed offsets, so records
fetched in between reach the agents (stock Faust 0.15.3) or must be held back
(:mod:`agents.runtime.commits`). Holding the seek makes that window as wide as we
like instead of a race. The first seek (at start, before the fetcher runs)
is not held. ``HOLD_SEEK_RECORDS`` (default 300) says how many records;
``HOLD_SEEK_STOCK=1`` runs stock Faust's consumer instead of ours (to show
the loss it has; ``make test`` does not). Other arguments go to
``python -m agents.worker``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka

from agents.commands import worker
from agents.runtime import commits

log = logging.getLogger("held_seek")


def hold_seeks(cls: type[faust_aiokafka.Consumer], records: int, limit_s: float) -> None:
    """Make ``cls``'s ``perform_seek`` after the first wait for ``records`` more raw records."""
    fetch, seek = cls._getmany, cls.perform_seek
    fetched = 0
    seeks = 0

    async def counting_fetch(self: Any, active_partitions: Any, timeout: float) -> Any:
        nonlocal fetched
        got = await fetch(self, active_partitions, timeout)
        fetched += sum(len(v) for tp, v in got.items() if tp.topic.endswith("mentions.raw"))
        return got

    async def held_seek(self: Any) -> None:
        nonlocal seeks
        seeks += 1
        if seeks > 1:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + limit_s
            start = fetched
            while fetched - start < records and loop.time() < deadline:
                await asyncio.sleep(0.05)
            log.warning("HELD SEEK: released after %d raw records were fetched", fetched - start)
        await seek(self)

    cls._getmany = counting_fetch  # type: ignore[method-assign]
    cls.perform_seek = held_seek  # type: ignore[method-assign]


def main() -> int:
    """Run the worker with the first seek held."""
    stock = os.environ.get("HOLD_SEEK_STOCK") == "1"
    if stock:
        commits.install = lambda app: None  # stock Faust consumer and commit bookkeeping
    cls = faust_aiokafka.Consumer if stock else commits.ContiguousCommitConsumer
    hold_seeks(cls, int(os.environ.get("HOLD_SEEK_RECORDS", "300")), limit_s=20.0)
    return worker.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
