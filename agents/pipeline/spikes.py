"""Spike / crisis detection: per brand and label counts in tumbling windows, one alert per incident.

:class:`SpikeDetector` is pure state plus an injected clock (no Kafka, no
Faust), so it is unit-tested with a fake clock. For each ``(brand, label)``
it counts mentions in the current tumbling window and keeps the counts of the
last ``baseline_windows`` closed windows (windows with no mentions count 0).
An alert fires as soon as the current count reaches ``min_count`` and exceeds
``mean + k * sigma`` of that baseline (no waiting for the window to close),
with a few example posts. Hysteresis: after an alert the key is disarmed; it
re-arms only when a whole window closes at or below ``mean + rearm_k * sigma``,
so a crisis that lasts an hour is one alert, not one per window. Windows
that were part of an incident are kept out of the baseline, so a long
incident does not become the new normal. The window that re-arms a key
after an alert ends the incident: :meth:`SpikeDetector.step` returns a
:class:`SpikeResolved` (the alert's id, ``"status": "resolved"``), which the
alert sinks turn into a PagerDuty ``resolve`` and a Slack "resolved" message.
Like every window, it closes when the key's next mention arrives.

State: one entry per ``(brand, label)`` in a :class:`~agents.pipeline.tables.JsonState`;
in the worker the changelog-backed ``spike-series`` Faust table, read by the
``detect_spikes`` agent from an internal topic keyed by ``brand|label``
(``agents/pipeline/detect.py``), so each brand's count is whole on one worker whatever
the number of workers, and a restart keeps the baseline and the incident
state (no second alert for an incident that was alerted before the restart).
The entry holds the current window's count and the closed windows' counts
together with the hysteresis state, in one record: that is why this is a plain
table and not a Faust windowed table, whose per-window counts would leave the
baseline (which skips incident windows) and the armed flag in a second table,
restored independently of the first. Windows close when the next mention of
the key arrives (every window in between counts 0), so no timer writes the
table. Windows use the processing clock, not ``created_at``, so a replay of
old posts is counted as it arrives. A mention redelivered after a worker
crash is counted again (at-least-once): it can only bring an alert forward,
never make a second one.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agents.pipeline.tables import JsonState, Owned, everything
from listener.record import Mention

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class SpikeSettings:
    """Detector tuning.

    Attributes:
        labels: Labels watched (complaints by default).
        window_s: Tumbling window length.
        baseline_windows: Closed windows in the baseline.
        min_history: Closed windows needed before any alert (warm-up).
        k: Alert above ``mean + k * sigma``.
        rearm_k: Re-arm once a closed window is at or below ``mean + rearm_k * sigma``.
        min_count: Never alert below this many mentions in a window.
        examples: Example posts carried by an alert.
    """

    labels: frozenset[str] = frozenset({"complaint"})
    window_s: float = 300.0
    baseline_windows: int = 12
    min_history: int = 3
    k: float = 3.0
    rearm_k: float = 1.0
    min_count: int = 10
    examples: int = 3


class SpikeConfig(BaseModel):
    """The worker's ``spikes`` settings block (``AGENTS_SPIKES__WINDOW_S=300`` etc.)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(default=True, description="Run the spike detector agent.")
    labels: tuple[str, ...] = Field(default=("complaint",), description="Labels watched.")
    window_s: float = Field(default=300.0, gt=0, description="Tumbling window length.")
    baseline_windows: int = Field(default=12, ge=1, description="Closed windows in the baseline.")
    min_history: int = Field(default=3, ge=1, description="Closed windows before any alert.")
    k: float = Field(default=3.0, ge=0, description="Alert above mean + k * sigma.")
    rearm_k: float = Field(default=1.0, ge=0, description="Re-arm at or below mean+rearm_k*sigma.")
    min_count: int = Field(default=10, ge=1, description="Never alert below this count.")
    examples: int = Field(default=3, ge=0, le=20, description="Example posts per alert.")
    brands: tuple[str, ...] = Field(
        default=(),
        description="The configured brands: the metric's brand label values (others: 'other').",
    )

    def detector(self) -> SpikeSettings:
        """The detector tuning these settings describe."""
        return SpikeSettings(
            labels=frozenset(self.labels),
            window_s=self.window_s,
            baseline_windows=self.baseline_windows,
            min_history=self.min_history,
            k=self.k,
            rearm_k=self.rearm_k,
            min_count=self.min_count,
            examples=self.examples,
        )


@dataclass(frozen=True, slots=True)
class SpikeAlert:
    """One incident: what spiked, how far above its baseline, and example posts."""

    brand: str
    label: str
    window_start: float
    window_s: float
    count: int
    baseline_mean: float
    baseline_sigma: float
    threshold: float
    examples: tuple[tuple[str, str], ...]

    @property
    def id(self) -> str:
        """Stable alert id (also a PagerDuty dedup key): brand, label, window start."""
        return f"spike:{self.brand}:{self.label}:{int(self.window_start)}"

    def record(self) -> dict[str, Any]:
        """The JSON object produced to ``mentions.alerts``."""
        return {
            "id": self.id,
            "kind": "spike",
            "brand": self.brand,
            "label": self.label,
            "window_start": self.window_start,
            "window_s": self.window_s,
            "count": self.count,
            "baseline_mean": round(self.baseline_mean, 3),
            "baseline_sigma": round(self.baseline_sigma, 3),
            "threshold": round(self.threshold, 3),
            "examples": [{"id": i, "text": t} for i, t in self.examples],
        }


@dataclass(frozen=True, slots=True)
class SpikeResolved:
    """An alerted incident ended: a closed window at or below the re-arm level."""

    brand: str
    label: str
    window_start: float
    window_s: float
    ended_at: float
    count: int

    @property
    def id(self) -> str:
        """The id of the alert this resolves (also its PagerDuty dedup key)."""
        return f"spike:{self.brand}:{self.label}:{int(self.window_start)}"

    def record(self) -> dict[str, Any]:
        """The JSON object produced to ``mentions.alerts``: the alert's id, resolved."""
        return {
            "id": self.id,
            "kind": "spike",
            "status": "resolved",
            "brand": self.brand,
            "label": self.label,
            "window_start": self.window_start,
            "window_s": self.window_s,
            "ended_at": self.ended_at,
            "count": self.count,
        }


@dataclass
class _Series:
    window: int
    count: int = 0
    history: deque[int] = field(default_factory=deque)
    armed: bool = True
    in_incident: bool = False
    examples: list[tuple[str, str]] = field(default_factory=list)
    alert_window: int | None = None

    def as_json(self) -> dict[str, Any]:
        """The table entry."""
        return {
            "window": self.window,
            "count": self.count,
            "history": list(self.history),
            "armed": self.armed,
            "in_incident": self.in_incident,
            "examples": [list(e) for e in self.examples],
            "alert_window": self.alert_window,
        }

    @classmethod
    def of_json(cls, entry: dict[str, Any]) -> _Series:
        """The series a table entry describes."""
        return cls(
            window=int(entry["window"]),
            count=int(entry["count"]),
            history=deque(int(c) for c in entry["history"]),
            armed=bool(entry["armed"]),
            in_incident=bool(entry["in_incident"]),
            examples=[(str(i), str(t)) for i, t in entry["examples"]],
            alert_window=None if entry.get("alert_window") is None else int(entry["alert_window"]),
        )


def series_key(brand: str, label: str) -> str:
    """The state key of one ``(brand, label)``: also the key of the spike agent's input topic."""
    return f"{brand.lower()}|{label}"


class SpikeDetector:
    """Counts mentions per (brand, label) and window; returns alerts as they fire.

    Args:
        settings: Tuning.
        clock: Seconds since the epoch (tests pass a fake clock).
        state: Where the series live (the worker passes its Faust table).
    """

    def __init__(
        self,
        settings: SpikeSettings | None = None,
        clock: Clock = time.time,
        state: JsonState | None = None,
    ) -> None:
        self.settings = settings or SpikeSettings()
        self._clock = clock
        self.state = state if state is not None else JsonState()

    def watches(self, label: str) -> bool:
        """Whether mentions with ``label`` are counted."""
        return label in self.settings.labels

    def observe(self, mention: Mention) -> list[SpikeAlert]:
        """Count a classified mention; return the alerts it triggers (at most one per brand)."""
        c = mention.classification
        if c is None or not self.watches(c.label):
            return []
        alerts = []
        for brand in mention.brands or ("unknown",):
            alert = self.count(brand, c.label, mention.id, mention.text)
            if alert is not None:
                alerts.append(alert)
        return alerts

    def count(self, brand: str, label: str, mention_id: str, text: str) -> SpikeAlert | None:
        """Count one mention of ``brand`` with ``label``; return the alert it triggers, if any."""
        return self.step(brand, label, mention_id, text)[1]

    def step(
        self, brand: str, label: str, mention_id: str, text: str
    ) -> tuple[SpikeResolved | None, SpikeAlert | None]:
        """Count one mention; return the incident its arrival ended and the alert it triggers.

        The windows closed before this mention may end an alerted incident
        (:class:`SpikeResolved`); the mention itself may start a new one.
        """
        brand = brand.lower()
        key = series_key(brand, label)
        entry = self.state.get(key)
        window = self._window()
        series = _Series(window) if entry is None else _Series.of_json(entry)
        ended = self._advance(series, window)
        resolved = None
        if ended is not None and series.alert_window is not None:
            s = self.settings
            resolved = SpikeResolved(
                brand=brand,
                label=label,
                window_start=series.alert_window * s.window_s,
                window_s=s.window_s,
                ended_at=(ended[0] + 1) * s.window_s,
                count=ended[1],
            )
            series.alert_window = None
        series.count += 1
        if len(series.examples) < self.settings.examples:
            series.examples.append((mention_id, text))
        alert = self._check(brand, label, series)
        if alert is not None:
            series.alert_window = series.window
        self.state.put(key, series.as_json())
        return resolved, alert

    def sweep(self, owned: Owned = everything, idle_s: float = 86_400.0) -> int:
        """Delete owned series idle for ``idle_s`` (and a whole baseline); return how many.

        A swept key starts again with no history (``min_history`` windows of warm-up).
        """
        s = self.settings
        idle = self._window() - max(s.baseline_windows + 1, math.ceil(idle_s / s.window_s))
        return self.state.sweep(lambda entry: int(entry["window"]) < idle, owned)

    def _window(self) -> int:
        return math.floor(self._clock() / self.settings.window_s)

    def _advance(self, series: _Series, window: int) -> tuple[int, int] | None:
        """Close the windows before ``window``; return (window, count) of one that re-armed."""
        rearmed = None
        while series.window < window:
            closing, count = series.window, series.count
            if self._close(series):
                rearmed = (closing, count)
            series.window += 1
            if series.window < window and not series.history and series.armed:
                series.window = window  # nothing known yet: skip the empty gap
        return rearmed

    def _close(self, series: _Series) -> bool:
        s = self.settings
        mean, sigma = _stats(series.history)
        rearmed = not series.armed and series.count <= mean + s.rearm_k * sigma
        if rearmed:
            series.armed = True
        if not series.in_incident:
            series.history.append(series.count)
            while len(series.history) > s.baseline_windows:
                series.history.popleft()
        series.in_incident = not series.armed
        series.count = 0
        series.examples = []
        return rearmed

    def _check(self, brand: str, label: str, series: _Series) -> SpikeAlert | None:
        s = self.settings
        if len(series.history) < s.min_history:
            return None
        mean, sigma = _stats(series.history)
        threshold = mean + s.k * sigma
        series.in_incident = series.in_incident or series.count > threshold
        if not series.armed or series.count < s.min_count or series.count <= threshold:
            return None
        series.armed = False
        return SpikeAlert(
            brand=brand,
            label=label,
            window_start=series.window * s.window_s,
            window_s=s.window_s,
            count=series.count,
            baseline_mean=mean,
            baseline_sigma=sigma,
            threshold=threshold,
            examples=tuple(series.examples),
        )


def _stats(history: deque[int]) -> tuple[float, float]:
    if not history:
        return 0.0, 0.0
    mean = sum(history) / len(history)
    return mean, math.sqrt(sum((x - mean) ** 2 for x in history) / len(history))
