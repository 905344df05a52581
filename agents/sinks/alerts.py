"""What a sink needs to deliver alerts: the :class:`AlertSink` shape and the alert's text.

A sink that can page or post about an alert (PagerDuty, Slack) has an
``async deliver_alert(alert) -> DeliveryResult`` beside ``deliver`` and an
``alerts`` switch in its settings (on by default). The alert delivery loop is
:mod:`agents.delivery.alerts`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from agents.sinks.base import DeliveryResult, Sink


@runtime_checkable
class AlertSink(Protocol):
    """A sink that can also deliver alert records (one attempt per call, like ``deliver``)."""

    async def deliver_alert(self, alert: Mapping[str, Any]) -> DeliveryResult:
        """Make one attempt to send ``alert``; raises the sink error kinds like ``deliver``."""
        ...


def delivers_alerts(sink: Sink) -> bool:
    """Whether ``sink`` has ``deliver_alert`` and its settings leave ``alerts`` on."""
    settings = getattr(sink, "settings", None)
    return isinstance(sink, AlertSink) and bool(getattr(settings, "alerts", True))


def alert_summary(alert: Mapping[str, Any]) -> str:
    """One line: what spiked, how much, against which baseline (``Resolved:`` once it ended)."""
    if alert.get("status") == "resolved":
        return (
            f"Resolved: {alert.get('label', '?')} spike for {alert.get('brand', '?')} ended "
            f"({alert.get('count', '?')} in the last {float(alert.get('window_s', 0)):.0f}s window)"
        )
    return (
        f"{alert.get('label', '?')} spike for {alert.get('brand', '?')}: "
        f"{alert.get('count', '?')} in {float(alert.get('window_s', 0)):.0f}s "
        f"(baseline {alert.get('baseline_mean', '?')}, threshold {alert.get('threshold', '?')})"
    )


def alert_text(alert: Mapping[str, Any], examples: int = 3) -> str:
    """The summary plus up to ``examples`` example posts, for chat messages."""
    lines = [alert_summary(alert)]
    for example in list(alert.get("examples") or ())[:examples]:
        text = " ".join(str(example.get("text", "")).split())[:150]
        lines.append(f"• {text} ({example.get('id', '?')})")
    return "\n".join(lines)
