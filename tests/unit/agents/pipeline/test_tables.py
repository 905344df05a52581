"""The table helpers: key partitioning, the JSON view, owned-only sweeps, the sweep pacing."""

from __future__ import annotations

import pytest
from kafka.partitioner.default import murmur2

from agents.pipeline import tables
from agents.pipeline.tables import JsonState, Sweeper, partition_for


@pytest.mark.parametrize("key", [b"bluesky:did:plc:abc", b"acme|0f3a9c", b"x", b"\xff\x00"])
def test_partition_for_is_the_java_compatible_murmur2_of_every_producer(key: bytes) -> None:
    """Faust's producer and kafka-python's (listen), like Java's, put a key in one partition."""
    assert partition_for(key, 12) == (murmur2(key) & 0x7FFFFFFF) % 12


def test_json_state_round_trips_and_sweeps_only_owned_expired_keys() -> None:
    state = JsonState()
    state.put("a", {"at": 1})
    state.put("b", {"at": 1})
    state.put("c", {"at": 9})
    assert state.get("a") == {"at": 1} and state.get("zz") is None
    assert state.store[b"a"] == b'{"at":1}', "stored as JSON bytes, the table's value type"
    gone = state.sweep(lambda v: v["at"] < 5, owned=lambda key: key != b"b")
    assert gone == 1 and sorted(k for k, _ in state.items()) == ["b", "c"]


def test_sweeper_runs_when_due_and_survives_a_failing_sweep(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [100.0]
    monkeypatch.setattr(tables.time, "monotonic", lambda: now[0])
    calls: list[float] = []

    def sweep() -> int:
        calls.append(now[0])
        if len(calls) == 2:
            raise RuntimeError("broker away")
        return 1

    sweeper = Sweeper("t", sweep, every_s=60)
    sweeper.maybe_sweep()
    now[0] = 161.0
    sweeper.maybe_sweep()
    now[0] = 200.0
    sweeper.maybe_sweep()  # not due yet
    now[0] = 222.0
    sweeper.maybe_sweep()  # raises inside: logged, not propagated
    now[0] = 283.0
    sweeper.maybe_sweep()
    assert calls == [161.0, 222.0, 283.0]
