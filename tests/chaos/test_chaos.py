"""Short chaos scenarios (``make test``): nothing is lost when workers stop, die or join.

The broker restarting mid-stream too.

Each runs for about a minute at ~150 posts/s with the real model
(:mod:`chaos.harness`); ``make soak`` runs the same scenarios over 50,000
posts each. Lost must be 0 and every partition's committed offset must reach
its end; duplicates are printed (at-least-once allows them).
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from chaos.harness import Outcome, own_broker, run_scenario, sink_outage

RATE = 150.0
BUSY_S = 4.0


def check(outcome: Outcome, graceful_stop_s: float | None = 10.0) -> None:
    print(f"\n{outcome.line()}")
    assert outcome.produced > 1_000, "the feeder kept up"
    assert outcome.lost == [], f"posts never classified nor dead-lettered: {outcome.lost[:10]}"
    assert outcome.committed_lag == 0, "every partition's committed offset reached its end"
    for how, code, seconds in outcome.stops:
        if how == signal.SIGTERM.name and graceful_stop_s is not None:
            assert code == 0, f"a graceful stop exited {code}: {outcome.stops}"
            assert seconds < graceful_stop_s, f"a graceful stop took {seconds:.1f}s"


@pytest.mark.parametrize("scenario", ["sigterm_in_turn", "kill9_in_turn", "scale_up_and_down"])
def test_workers_stopping_dying_and_joining_under_load_lose_nothing(
    scenario: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    check(run_scenario(scenario, tmp_path, kafka_bootstrap, RATE, BUSY_S))


def test_a_broker_restart_mid_stream_loses_nothing(tmp_path: Path) -> None:
    with own_broker(tmp_path) as broker:
        outcome = run_scenario("broker_restart", tmp_path, broker.bootstrap, RATE, BUSY_S, broker)
    # A stop right after the broker came back may wait on reconnects: status only.
    check(outcome, graceful_stop_s=None)
    assert all(code == 0 for _, code, _ in outcome.stops), outcome.stops


def test_a_sink_down_for_the_whole_feed_opens_each_ticket_once_when_back(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    outcome, sink = sink_outage(tmp_path, kafka_bootstrap, RATE, BUSY_S)
    check(outcome)
    print(sink.line())
    assert sink.queued > 100, "posts reached the queue"
    assert sink.missing == [], f"queued posts with no ticket: {sink.missing[:10]}"
    assert sink.repeated == {}, f"second tickets: {list(sink.repeated.items())[:10]}"
    assert sink.requests > sink.tickets, "the outage made the sink retry"
