"""Copy-paste dedup on a fake clock: first queued, copies counted, window, redelivery, brands."""

from __future__ import annotations

import itertools

from agents.dedup import CopyDedup
from listener.record import Mention

_IDS = itertools.count()
CAMPAIGN = "Boycott @Acme now, they steal from customers! https://t.co/{n}"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def post(text: str, brands: tuple[str, ...] = ("acme",), native: str | None = None) -> Mention:
    native = native or str(next(_IDS))
    return Mention.create(source="t", native_id=native, text=text, brands=brands)


def test_copies_collapse_into_the_first_with_a_count() -> None:
    clock = FakeClock()
    dedup = CopyDedup(window_s=600, clock=clock)
    first, queued = dedup.check(post(CAMPAIGN.format(n=0)))
    assert queued and "duplicates" not in first.signals
    results = [dedup.check(post(CAMPAIGN.format(n=i).upper())) for i in range(1, 4)]
    assert [q for _, q in results] == [False, False, False]
    assert [m.signals["duplicates"] for m, _ in results][-1] == {"of": first.id, "count": 4}
    again, queued = dedup.check(first)  # the original redelivered: deduped by id downstream
    assert queued and "duplicates" not in again.signals
    clock.now += 601
    assert dedup.check(post(CAMPAIGN.format(n=9)))[1], "a new window starts a new item"


def test_other_brands_and_short_texts_are_never_collapsed() -> None:
    dedup = CopyDedup(clock=FakeClock())
    assert dedup.check(post(CAMPAIGN.format(n=1)))[1]
    assert dedup.check(post(CAMPAIGN.format(n=1), brands=("globex",)))[1]
    assert dedup.check(post("thanks @acme!"))[1] and dedup.check(post("thanks @acme!"))[1]


def test_bounded_memory() -> None:
    dedup = CopyDedup(max_entries=2, clock=FakeClock())
    for i in range(3):
        dedup.check(post(f"a long enough campaign text number {i}"))
    assert dedup.check(post("a long enough campaign text number 0"))[1], "evicted: queued again"
