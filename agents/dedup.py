"""Copy-paste campaign dedup: near-identical posts within a window become one queue item.

:class:`CopyDedup` is pure state on an injected clock. Two posts are copies
when they mention the same brands and their texts are equal after
:func:`agents.vetting.normalise` (lowercased, URLs and @handles stripped,
whitespace folded). The first one of a window goes to the queue as usual;
each later copy gets ``signals["duplicates"] = {"of": <first id>, "count": n}``
(n = copies seen so far, the original included), is routed but not queued,
and is counted in ``brandlistener_duplicates_total``. Texts shorter than
``min_chars`` once normalised ("thanks @acme!") are never collapsed.

At-least-once: a redelivered original (same Mention id) is not a copy: it is
queued again and absorbed downstream by id (the ledger and idempotency keys),
as every redelivery is. A redelivered copy is counted again, so ``count`` may
over-count after a crash. State is per worker and in memory (bounded LRU):
after a restart the first copy seen is queued again (one more item per
campaign), and with N workers a campaign spread over them by Mention id can
become up to N queue items, one per worker.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from agents.vetting import fingerprint, normalise
from listener.record import Mention

Clock = Callable[[], float]


@dataclass
class _First:
    id: str
    at: float
    count: int = 1


class CopyDedup:
    """Remembers the first post of each (brands, normalised text) for ``window_s``.

    Args:
        window_s: How long after the first post copies are collapsed into it.
        max_entries: Most texts remembered (least recently seen dropped first).
        min_chars: Normalised texts shorter than this are never collapsed.
        clock: Seconds since the epoch (tests pass a fake clock).
    """

    def __init__(
        self,
        window_s: float = 3600.0,
        max_entries: int = 100_000,
        min_chars: int = 20,
        clock: Clock = time.time,
    ) -> None:
        self.window_s = window_s
        self.max_entries = max_entries
        self.min_chars = min_chars
        self._clock = clock
        self._first: OrderedDict[str, _First] = OrderedDict()

    def check(self, mention: Mention) -> tuple[Mention, bool]:
        """Whether ``mention`` is the first of its text in the window (queue it) or a copy.

        Returns:
            The mention (a copy carries ``signals["duplicates"]``) and True if it
            should be queued.
        """
        if len(normalise(mention.text)) < self.min_chars:
            return mention, True
        brands = ",".join(sorted(b.lower() for b in mention.brands))
        key = f"{brands}|{fingerprint(mention.text)}"
        now = self._clock()
        first = self._first.get(key)
        if first is None or now - first.at > self.window_s:
            self._first[key] = _First(mention.id, now)
            self._first.move_to_end(key)
            while len(self._first) > self.max_entries:
                self._first.popitem(last=False)
            return mention, True
        if first.id == mention.id:  # a redelivery of the original: deduped by id downstream
            return mention, True
        first.count += 1
        self._first.move_to_end(key)
        duplicates = {"of": first.id, "count": first.count}
        signals = {**mention.signals, "duplicates": duplicates}
        return mention.model_copy(update={"signals": signals}), False
