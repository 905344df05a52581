"""The alert path: Deliverer.deliver_alert (retries, ledger), PagerDuty and Slack alert shapes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from async_support import sync
from fake_clock import FakeClock
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from agents.delivery.alerts import deliver_alert
from agents.delivery.ledger import MemoryLedger
from agents.delivery.metrics import create
from agents.delivery.policy import CircuitBreaker, Deliverer, RetryPolicy
from agents.sinks.alerts import alert_text, delivers_alerts
from agents.sinks.base import DeliveryResult
from agents.sinks.memory import MemorySink
from agents.sinks.pagerduty import PagerDutySettings, PagerDutySink
from agents.sinks.slack import SlackSettings, SlackSink
from listener.errors import RetryableError
from listener.record import Mention

ALERT: dict[str, Any] = {
    "id": "spike:acme:complaint:1000",
    "kind": "spike",
    "brand": "acme",
    "label": "complaint",
    "window_start": 1000.0,
    "window_s": 300.0,
    "count": 42,
    "baseline_mean": 2.5,
    "baseline_sigma": 0.5,
    "threshold": 4.0,
    "examples": [{"id": "t:1", "text": "the app is  broken"}],
}


class AlertingSink:
    name: ClassVar[str] = "fake"
    uses_ledger: ClassVar[bool] = True

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.sent: list[str] = []

    def accepts(self, mention: Mention) -> bool:
        return True

    async def deliver(self, mention: Mention) -> DeliveryResult:
        raise AssertionError("not a mention sink here")

    async def deliver_alert(self, alert: Mapping[str, Any]) -> DeliveryResult:
        if self.failures:
            self.failures -= 1
            raise RetryableError("503", after=None)
        self.sent.append(alert["id"])
        return DeliveryResult(f"x-{alert['id']}", created=True)

    async def close(self) -> None:
        return None


def deliverer(sink: Any, ledger: MemoryLedger) -> Deliverer:
    clock = FakeClock(1000.0)
    return Deliverer(
        sink,
        ledger,
        create(CollectorRegistry()),
        RetryPolicy(base_s=0.1, max_attempts=5),
        CircuitBreaker(failure_threshold=10, clock=clock),
        sleep=clock.sleep,
        clock=clock,
        rand=lambda: 0.5,
    )


@sync
async def test_retried_then_sent_once_even_when_read_again_after_a_restart() -> None:
    ledger, sink = MemoryLedger(), AlertingSink(failures=2)
    outcome = await deliverer(sink, ledger).deliver_alert(ALERT)
    assert outcome.ok and outcome.attempts == 3 and sink.sent == [ALERT["id"]]
    again = await deliverer(AlertingSink(), ledger).deliver_alert(ALERT)  # a new process
    assert again.ok and again.result is not None and not again.result.created
    assert ledger.entries == {f"fake:{ALERT['id']}": f"x-{ALERT['id']}"}


@sync
async def test_failures_are_reported_per_sink() -> None:
    failing = deliverer(AlertingSink(failures=99), MemoryLedger())
    working = deliverer(AlertingSink(), MemoryLedger())
    errors = await deliver_alert([failing, working], ALERT)
    assert [(sink, type(exc)) for sink, exc in errors] == [("fake", RetryableError)]


def test_which_sinks_deliver_alerts() -> None:
    key = SecretStr("R0UTINGKEY" + "0" * 22)
    assert delivers_alerts(PagerDutySink(PagerDutySettings(routing_key=key)))
    assert not delivers_alerts(PagerDutySink(PagerDutySettings(routing_key=key, alerts=False)))
    assert delivers_alerts(SlackSink(SlackSettings(url="http://127.0.0.1:1/hook")))
    assert not delivers_alerts(MemorySink())


def test_pagerduty_alert_event_is_deduplicated_by_alert_id() -> None:
    sink = PagerDutySink(PagerDutySettings(routing_key=SecretStr("R0UTINGKEY" + "0" * 22)))
    event = sink.alert_event(ALERT)
    assert event["event_action"] == "trigger" and event["dedup_key"] == ALERT["id"]
    payload = event["payload"]
    assert payload["severity"] == "critical" and payload["group"] == "acme"
    assert "42" in payload["summary"] and payload["custom_details"]["examples"]


def test_slack_alert_text_has_examples() -> None:
    text = alert_text(ALERT)
    assert text.startswith("complaint spike for acme: 42 in 300s")
    assert "• the app is broken (t:1)" in text
