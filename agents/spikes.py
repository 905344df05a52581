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
incident does not become the new normal.

Why in-agent state and not a Faust windowed table: the classified topic is
keyed by Mention id, so a table keyed by brand would need a repartition topic
and a changelog per table for a few hundred counters; the state here is tiny
and rebuilt after a restart within ``baseline_windows`` (alerts are
suppressed until ``min_history`` windows are known). Windows use the
processing clock, not ``created_at``, so a replay of old posts is counted as
it arrives.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

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


@dataclass
class _Series:
    window: int
    count: int = 0
    history: deque[int] = field(default_factory=deque)
    armed: bool = True
    in_incident: bool = False
    examples: list[tuple[str, str]] = field(default_factory=list)


class SpikeDetector:
    """Counts mentions per (brand, label) and window; returns alerts as they fire.

    Args:
        settings: Tuning.
        clock: Seconds since the epoch (tests pass a fake clock).
    """

    def __init__(self, settings: SpikeSettings | None = None, clock: Clock = time.time) -> None:
        self.settings = settings or SpikeSettings()
        self._clock = clock
        self._series: dict[tuple[str, str], _Series] = {}

    def observe(self, mention: Mention) -> list[SpikeAlert]:
        """Count a classified mention; return the alerts it triggers (at most one per brand)."""
        c = mention.classification
        if c is None or c.label not in self.settings.labels:
            return []
        window = self._window()
        alerts = []
        for brand in mention.brands or ("unknown",):
            series = self._advance((brand.lower(), c.label), window)
            series.count += 1
            if len(series.examples) < self.settings.examples:
                series.examples.append((mention.id, mention.text))
            alert = self._check(brand.lower(), c.label, series)
            if alert is not None:
                alerts.append(alert)
        return alerts

    def tick(self) -> None:
        """Close windows that have ended (call periodically, e.g. from a timer)."""
        window = self._window()
        for key in list(self._series):
            self._advance(key, window)

    def _window(self) -> int:
        return math.floor(self._clock() / self.settings.window_s)

    def _advance(self, key: tuple[str, str], window: int) -> _Series:
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series(window)
        while series.window < window:
            self._close(series)
            series.window += 1
            if series.window < window and not series.history and series.armed:
                series.window = window  # nothing known yet: skip the empty gap
        return series

    def _close(self, series: _Series) -> None:
        s = self.settings
        mean, sigma = _stats(series.history)
        if not series.armed and series.count <= mean + s.rearm_k * sigma:
            series.armed = True
        if not series.in_incident:
            series.history.append(series.count)
            while len(series.history) > s.baseline_windows:
                series.history.popleft()
        series.in_incident = not series.armed
        series.count = 0
        series.examples = []

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
