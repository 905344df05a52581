"""Copy-paste campaign dedup: near-identical posts within a window become one queue item.

:class:`CopyDedup` is pure state on an injected clock. Two posts are copies
when they mention the same brands and their texts are equal after
:func:`agents.pipeline.text.normalise` (lowercased, URLs and @handles stripped,
whitespace folded). The first one of a window goes to the queue as usual;
each later copy gets ``signals["duplicates"] = {"of": <first id>, "count": n}``
(n = copies seen so far, the original included), is routed but not queued,
and is counted in ``brandlistener_duplicates_total``. Texts shorter than
``min_chars`` once normalised ("thanks @acme!") are never collapsed.

**The count on the queue.** Each copy also hands back the *original* with the
same ``signals["duplicates"]`` (``of`` = its own id), which the dedup stage
re-produces to the queue under the original's key. The queue topic is keyed
by ``Mention.id``, so compaction (and any consumer keeping the latest value
per key) holds one item per campaign with its current count; the SLA tracker
keeps the item's first queue time; every sink deduplicates on ``Mention.id``
(ledger, idempotency key, ``webhook-id``), so no second ticket or alert is
created. Why not a separate "count" topic: every consumer of the queue
already reads Mentions keyed by id, and a second record shape would need a
join in each of them. Tickets created before the count grew keep the count
they were created with (updating an existing ticket is not done).

Where it runs: after the rules, in the ``dedup_copies`` agent (``agents/pipeline/route.py``):
the route stage produces each post that needs a response to an internal topic
keyed by :meth:`CopyDedup.key` (brands and text fingerprint), so every copy of
a text meets the same worker and the same entry of the changelog-backed
``copy-campaigns`` Faust table (``agents/pipeline/tables.py``): with N workers a
campaign is still one queue item, and a restart keeps the campaigns of the
window. Entries are deleted by :meth:`CopyDedup.sweep` once their window has passed.

At-least-once: a redelivered original (same Mention id) is not a copy: it is
queued again (with the count so far, so it never rolls the queue item back)
and absorbed downstream by id, as every redelivery is. A redelivered copy is
recognised by its id (the entry keeps the ids of the first ``max_copy_ids``
copies) and not counted twice; past that many copies the count may over-count
after a crash.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from agents.pipeline.tables import JsonState, Owned, everything
from agents.pipeline.text import fingerprint, normalise
from listener.record import Mention, decode_mention, encode_mention

Clock = Callable[[], float]


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
        min_chars: Normalised texts shorter than this are never collapsed.
        clock: Seconds since the epoch (tests pass a fake clock).
        state: Where the campaigns live (the worker passes its Faust table).
        max_copy_ids: Copy ids remembered per campaign (to not count a redelivery twice).
    """

    def __init__(
        self,
        window_s: float = 3600.0,
        min_chars: int = 20,
        clock: Clock = time.time,
        state: JsonState | None = None,
        max_copy_ids: int = 500,
    ) -> None:
        self.window_s = window_s
        self.min_chars = min_chars
        self.max_copy_ids = max_copy_ids
        self._clock = clock
        self.state = state if state is not None else JsonState()

    def key(self, mention: Mention) -> str | None:
        """``"<brands>|<fingerprint>"``, shared by copies of ``mention``; None if too short."""
        if len(normalise(mention.text)) < self.min_chars:
            return None
        brands = ",".join(sorted(b.lower() for b in mention.brands))
        return f"{brands}|{fingerprint(mention.text)}"

    def check(self, mention: Mention) -> Verdict:
        """Whether ``mention`` is the first of its text in the window (queue it) or a copy.

        Args:
            mention: A routed mention that needs a response.

        Returns:
            The verdict; for a copy it carries the original with the updated count.
        """
        key = self.key(mention)
        if key is None:
            return Verdict(mention, True)
        now = self._clock()
        first = self.state.get(key)
        if first is None or now - first["at"] > self.window_s:
            entry = {"id": mention.id, "at": now, "count": 1, "copies": []}
            self.state.put(key, {**entry, "value": encode_mention(mention).decode()})
            return Verdict(mention, True)
        if first["id"] == mention.id:  # a redelivery of the original: deduped by id downstream
            if first["count"] > 1:
                mention = _counted(mention, first["id"], first["count"])
            return Verdict(mention, True)
        if mention.id not in first["copies"]:
            first["count"] += 1
            if len(first["copies"]) < self.max_copy_ids:
                first["copies"].append(mention.id)
            self.state.put(key, first)
        original = _counted(decode_mention(first["value"].encode()), first["id"], first["count"])
        return Verdict(_counted(mention, first["id"], first["count"]), False, original)

    def sweep(self, owned: Owned = everything) -> int:
        """Delete the owned campaigns whose window has passed; return how many."""
        oldest = self._clock() - self.window_s
        return self.state.sweep(lambda entry: entry["at"] < oldest, owned)
