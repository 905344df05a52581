"""Copy-paste campaign dedup: near-identical posts within a window become one queue item.

:class:`CopyDedup` is pure state on an injected clock. Two posts are copies
when they mention the same brands and their texts are equal after
:func:`agents.vetting.normalise` (lowercased, URLs and @handles stripped,
whitespace folded). The first one of a window goes to the queue as usual;
each later copy gets ``signals["duplicates"] = {"of": <first id>, "count": n}``
(n = copies seen so far, the original included), is routed but not queued,
and is counted in ``brandlistener_duplicates_total``. Texts shorter than
``min_chars`` once normalised ("thanks @acme!") are never collapsed.

**The count on the queue.** Each copy also hands back the *original* with the
same ``signals["duplicates"]`` (``of`` = its own id), which the route stage
re-produces to the queue under the original's key. The queue topic is keyed
by ``Mention.id``, so compaction (and any consumer keeping the latest value
per key) holds one item per campaign with its current count; the SLA tracker
keeps the item's first queue time; every sink deduplicates on ``Mention.id``
(ledger, idempotency key, ``webhook-id``), so no second ticket or alert is
created. Why not a separate "count" topic: every consumer of the queue
already reads Mentions keyed by id, and a second record shape would need a
join in each of them. Tickets created before the count grew keep the count
they were created with (updating an existing ticket is not done).

At-least-once: a redelivered original (same Mention id) is not a copy: it is
queued again (with the count so far, so it never rolls the queue item back)
and absorbed downstream by id, as every redelivery is. A redelivered copy is
counted again, so ``count`` may over-count after a crash. State is per worker
and in memory (bounded LRU of encoded originals, about 2 KB each): after a
restart the first copy seen is queued again (one more item per campaign), and
with N workers a campaign spread over them by Mention id can become up to N
queue items, one per worker.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from agents.vetting import fingerprint, normalise
from listener.record import Mention, decode_mention, encode_mention

Clock = Callable[[], float]


@dataclass
class _First:
    id: str
    at: float
    value: bytes
    count: int = 1


@dataclass(frozen=True, slots=True)
class Verdict:
    """What :meth:`CopyDedup.check` decided for one mention.

    Attributes:
        mention: The mention, with ``signals["duplicates"]`` once its text has copies.
        queue: True if it goes to the queue (the first of its text, or a redelivery of it).
        original: For a copy: the queued original with the new count, to re-produce
            under the original's key; None otherwise.
    """

    mention: Mention
    queue: bool
    original: Mention | None = None


def _counted(mention: Mention, of: str, count: int) -> Mention:
    signals = {**mention.signals, "duplicates": {"of": of, "count": count}}
    return mention.model_copy(update={"signals": signals})


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
        max_entries: int = 20_000,
        min_chars: int = 20,
        clock: Clock = time.time,
    ) -> None:
        self.window_s = window_s
        self.max_entries = max_entries
        self.min_chars = min_chars
        self._clock = clock
        self._first: OrderedDict[str, _First] = OrderedDict()

    def check(self, mention: Mention) -> Verdict:
        """Whether ``mention`` is the first of its text in the window (queue it) or a copy.

        Args:
            mention: A routed mention that needs a response.

        Returns:
            The verdict; for a copy it carries the original with the updated count.
        """
        if len(normalise(mention.text)) < self.min_chars:
            return Verdict(mention, True)
        brands = ",".join(sorted(b.lower() for b in mention.brands))
        key = f"{brands}|{fingerprint(mention.text)}"
        now = self._clock()
        first = self._first.get(key)
        if first is None or now - first.at > self.window_s:
            self._first[key] = _First(mention.id, now, encode_mention(mention))
            self._first.move_to_end(key)
            while len(self._first) > self.max_entries:
                self._first.popitem(last=False)
            return Verdict(mention, True)
        if first.id == mention.id:  # a redelivery of the original: deduped by id downstream
            if first.count > 1:
                mention = _counted(mention, first.id, first.count)
            return Verdict(mention, True)
        first.count += 1
        self._first.move_to_end(key)
        original = _counted(decode_mention(first.value), first.id, first.count)
        return Verdict(_counted(mention, first.id, first.count), False, original)
