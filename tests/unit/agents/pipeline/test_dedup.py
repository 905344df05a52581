"""Copy-paste dedup on a fake clock: copies counted, the original re-counted, window, redelivery."""

from __future__ import annotations

import itertools

from fake_clock import FakeClock

from agents.pipeline.dedup import CopyDedup
from agents.pipeline.tables import JsonState
from listener.record import Mention

_IDS = itertools.count()
CAMPAIGN = "Boycott @Acme now, they steal from customers! https://t.co/{n}"


def post(text: str, brands: tuple[str, ...] = ("acme",), native: str | None = None) -> Mention:
    native = native or str(next(_IDS))
    return Mention.create(source="t", native_id=native, text=text, brands=brands)


def test_copies_collapse_into_the_first_with_a_count() -> None:
    clock = FakeClock()
    dedup = CopyDedup(window_s=600, clock=clock)
    first = dedup.check(post(CAMPAIGN.format(n=0)))
    assert first.queue and first.original is None and "duplicates" not in first.mention.signals
    copies = [dedup.check(post(CAMPAIGN.format(n=i).upper())) for i in range(1, 4)]
    assert [v.queue for v in copies] == [False, False, False]
    assert copies[-1].mention.signals["duplicates"] == {"of": first.mention.id, "count": 4}
    clock.now += 601
    assert dedup.check(post(CAMPAIGN.format(n=9))).queue, "a new window starts a new item"


def test_each_copy_hands_back_the_original_with_the_new_count() -> None:
    dedup = CopyDedup(clock=FakeClock())
    first = dedup.check(post(CAMPAIGN.format(n=0))).mention
    originals = [dedup.check(post(CAMPAIGN.format(n=i))).original for i in range(1, 3)]
    assert [o.id if o else None for o in originals] == [first.id, first.id]
    assert [o.signals["duplicates"] for o in originals if o] == [
        {"of": first.id, "count": 2},
        {"of": first.id, "count": 3},
    ]
    assert originals[-1] is not None and originals[-1].text == first.text


def test_a_redelivered_original_is_queued_again_with_the_count_so_far() -> None:
    dedup = CopyDedup(clock=FakeClock())
    first = post(CAMPAIGN.format(n=0))
    assert dedup.check(first).queue
    again = dedup.check(first)
    assert again.queue and again.original is None and "duplicates" not in again.mention.signals
    dedup.check(post(CAMPAIGN.format(n=1)))
    again = dedup.check(first)  # never rolls the queue item back to no count
    assert again.queue and again.mention.signals["duplicates"] == {"of": first.id, "count": 2}


def test_other_brands_and_short_texts_are_never_collapsed() -> None:
    dedup = CopyDedup(clock=FakeClock())
    assert dedup.check(post(CAMPAIGN.format(n=1))).queue
    assert dedup.check(post(CAMPAIGN.format(n=1), brands=("globex",))).queue
    assert dedup.check(post("thanks @acme!")).queue and dedup.check(post("thanks @acme!")).queue


def test_a_redelivered_copy_is_not_counted_twice() -> None:
    dedup = CopyDedup(clock=FakeClock())
    dedup.check(post(CAMPAIGN.format(n=0)))
    copy = post(CAMPAIGN.format(n=1))
    assert dedup.check(copy).mention.signals["duplicates"]["count"] == 2
    again = dedup.check(copy)  # at-least-once: the same copy after a crash
    assert not again.queue and again.mention.signals["duplicates"]["count"] == 2


def test_state_lives_in_the_given_store_and_survives_a_new_instance() -> None:
    """What a restarted worker sees: the table restored from its changelog, a new CopyDedup."""
    clock, store = FakeClock(), JsonState({})
    first = CopyDedup(clock=clock, state=store).check(post(CAMPAIGN.format(n=0))).mention
    restarted = CopyDedup(clock=clock, state=JsonState(dict(store.store)))
    copy = restarted.check(post(CAMPAIGN.format(n=5)))
    assert not copy.queue and copy.original is not None and copy.original.id == first.id


def test_sweep_deletes_passed_windows_of_owned_keys_only() -> None:
    clock = FakeClock()
    dedup = CopyDedup(window_s=600, clock=clock)
    for i in range(3):
        dedup.check(post(f"a long enough campaign text number {i}"))
    clock.now += 300
    dedup.check(post("a long enough campaign text number 9"))
    clock.now += 301
    keys = [key for key, _ in dedup.state.items()]
    mine = {k.encode() for k in keys[:2]}
    assert dedup.sweep(lambda key: key in mine) == 2, "only owned, expired entries go"
    assert len(dedup.state) == 2
    assert dedup.sweep() == 1 and len(dedup.state) == 1, "the fresh one stays"
    assert dedup.check(post("a long enough campaign text number 0")).queue, "swept: queued again"
