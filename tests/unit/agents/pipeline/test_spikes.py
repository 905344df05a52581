"""Spike detection with a fake clock: baseline, min count, one alert per incident, re-arm."""

from __future__ import annotations

import itertools

from fake_clock import FakeClock

from agents.pipeline.spikes import SpikeDetector, SpikeSettings, series_key
from agents.pipeline.tables import JsonState
from listener.record import LABELS, Classification, Mention

_IDS = itertools.count()
SETTINGS = SpikeSettings(window_s=60, baseline_windows=6, min_history=3, k=3, min_count=5)


def _post(label: str = "complaint", brand: str = "Acme") -> Mention:
    n = next(_IDS)
    mention = Mention.create(source="t", native_id=str(n), text=f"post {n}", brands=(brand,))
    scores = {name: (0.9 if name == label else 0.1 / 3) for name in LABELS}
    return mention.model_copy(
        update={"classification": Classification(label=label, scores=scores, model="kw@1")}
    )


def _window(detector: SpikeDetector, clock: FakeClock, count: int, **kw: str) -> list[str]:
    alerts = [a.id for _ in range(count) for a in detector.observe(_post(**kw))]
    clock.now += 60  # the window closes when the next mention of the key comes
    return alerts


def test_one_alert_per_incident_then_rearm() -> None:
    clock = FakeClock(1_000_020.0)
    detector = SpikeDetector(SETTINGS, clock)
    assert [_window(detector, clock, n) for n in (2, 3, 2, 3)] == [[], [], [], []]
    start = clock.now
    spike = [a for _ in range(12) for a in detector.observe(_post())]
    assert len(spike) == 1, "fires once, as soon as the count crosses the threshold"
    alert = spike[0]
    assert alert.count == 5 and alert.brand == "acme" and alert.label == "complaint"
    assert alert.window_start == (start // 60) * 60
    assert alert.id == f"spike:acme:complaint:{int(alert.window_start)}"
    assert alert.baseline_mean == 2.5 and alert.threshold == 4.0
    record = alert.record()
    assert record["kind"] == "spike" and len(record["examples"]) == 3
    assert record["examples"][0]["text"].startswith("post ")
    clock.now += 60
    assert _window(detector, clock, 30) == [], "still the same incident: no second alert"
    assert _window(detector, clock, 2) == [], "back to normal: re-armed"
    assert len(_window(detector, clock, 9)) == 1, "a new incident alerts again"


def test_min_count_warm_up_labels_and_brands_are_separate() -> None:
    clock = FakeClock(1_000_020.0)
    detector = SpikeDetector(SETTINGS, clock)
    assert _window(detector, clock, 20) == [], "no baseline yet (warm-up)"
    clock.now += 600  # empty windows count as zero
    assert _window(detector, clock, 4) == [], "above baseline but below min_count"
    assert _window(detector, clock, 20, label="praise") == [], "praise is not watched"
    other = SpikeDetector(SETTINGS, clock)
    for n in (1, 1, 1):
        _window(other, clock, n, brand="Beta")
        _window(other, clock, n, brand="Acme")
    fired = [a for _ in range(6) for a in other.observe(_post(brand="Beta"))]
    assert [a.brand for a in fired] == ["beta"]


def test_state_survives_a_restart_so_an_incident_alerts_once() -> None:
    """A restarted worker gets the table back from its changelog: same baseline, still disarmed."""
    clock, store = FakeClock(1_000_020.0), JsonState({})
    detector = SpikeDetector(SETTINGS, clock, state=store)
    for n in (2, 3, 2, 3):
        _window(detector, clock, n)
    assert len([a for _ in range(6) for a in detector.observe(_post())]) == 1
    restarted = SpikeDetector(SETTINGS, clock, state=JsonState(dict(store.store)))
    assert [a for _ in range(20) for a in restarted.observe(_post())] == [], "already alerted"
    assert restarted.state.get(series_key("Acme", "complaint"))["history"] == [2, 3, 2, 3]


def test_sweep_forgets_keys_idle_for_a_day() -> None:
    clock = FakeClock(1_000_020.0)
    detector = SpikeDetector(SETTINGS, clock)
    _window(detector, clock, 1, brand="Acme")
    _window(detector, clock, 1, brand="Beta")
    clock.now += 86_400 - 60
    detector.observe(_post(brand="Beta"))
    assert detector.sweep() == 1
    assert [key for key, _ in detector.state.items()] == ["beta|complaint"]


def test_the_window_that_rearms_ends_the_incident_once_and_survives_a_restart() -> None:
    clock, store = FakeClock(1_000_020.0), JsonState({})
    detector = SpikeDetector(SETTINGS, clock, state=store)
    for n in (2, 3, 2, 3):
        _window(detector, clock, n)
    fired = [a for _ in range(6) for a in detector.observe(_post())]
    assert len(fired) == 1
    clock.now += 60
    for _ in range(30):
        assert detector.step("Acme", "complaint", "t:x", "still angry") == (None, None)
    clock.now += 60
    restarted = SpikeDetector(SETTINGS, clock, state=JsonState(dict(store.store)))
    assert restarted.step("Acme", "complaint", "t:y", "calm") == (None, None), "30 > threshold"
    clock.now += 60
    ended, alert = restarted.step("Acme", "complaint", "t:z", "calm")
    assert alert is None and ended is not None
    assert ended.id == fired[0].id and ended.record()["status"] == "resolved"
    assert ended.count == 1 and ended.ended_at == ended.window_start + 3 * 60
    clock.now += 60
    assert restarted.step("Acme", "complaint", "t:w", "calm") == (None, None), "once"
