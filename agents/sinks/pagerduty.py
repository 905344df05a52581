"""PagerDuty Events API v2: a trigger event per urgent mention (``POST /v2/enqueue``)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

import orjson
from pydantic import BaseModel, Field, SecretStr

from agents.sinks.alerts import alert_summary
from agents.sinks.base import (
    DeliveryResult,
    HttpClient,
    SinkSettings,
    classify_status,
    routed_label,
    summary,
)
from listener.errors import FatalError
from listener.record import Mention, Priority

SEVERITY = {"P1": "critical", "P2": "error", "P3": "warning", "P4": "info"}


class PagerDutySettings(SinkSettings):
    """PagerDuty Events API v2: ``url`` is ``https://events.pagerduty.com`` (or the EU host)."""

    url: str = Field(default="https://events.pagerduty.com", pattern=r"^https?://")
    routing_key: SecretStr = Field(description="Integration key of an Events API v2 integration.")
    priorities: tuple[Priority, ...] = ("P1",)
    source: str = Field(default="brand-listener", min_length=1)
    alerts: bool = Field(default=True, description="Also trigger an alert per spike alert.")


class PagerDutySink:
    """Triggers a PagerDuty alert for a mention (by default only P1).

    Auth: the ``routing_key`` in the event body (no header); a wrong key is a
    400 naming the routing key, reported as fatal. Rate limits: about 120
    events a minute per routing key; 429 is retried with backoff (Retry-After
    honoured when sent). Idempotency: ``dedup_key`` is the Mention id, so a
    repeated trigger while the alert is open is merged into it; the ledger
    (``uses_ledger``) keeps a redelivery after the alert was resolved from
    paging again. Guarantee: at-least-once, at most one alert per Mention id.
    Spike alerts (``deliver_alert``, unless ``alerts`` is off) trigger with
    ``dedup_key`` = the alert id, ledger-guarded the same way; an alert record
    with ``"status": "resolved"`` (the spike ended) sends ``resolve`` with that
    dedup key. :meth:`update` sends ``acknowledge``/``resolve`` for a Mention
    id (the inbox sync, :mod:`agents.delivery.sync.pagerduty`); PagerDuty
    ignores one for an alert that is not open, so repeats are harmless.

    Args:
        settings: PagerDuty settings.
    """

    name: ClassVar[str] = "pagerduty"
    uses_ledger: ClassVar[bool] = True
    settings_model: ClassVar[type[BaseModel]] = PagerDutySettings

    def __init__(self, settings: PagerDutySettings) -> None:
        self.settings = settings
        self._url = settings.url.rstrip("/") + "/v2/enqueue"
        self._http = HttpClient("pagerduty", settings.timeout_s)

    def accepts(self, mention: Mention) -> bool:
        """Mentions whose priority is in ``settings.priorities`` (P1 by default)."""
        return self.settings.accepts(mention)

    def event(self, mention: Mention) -> dict[str, Any]:
        """The Events API v2 trigger event for ``mention``."""
        routing = mention.routing
        priority = routing.priority if routing is not None and routing.priority else "P4"
        details: dict[str, Any] = {
            "mention_id": mention.id,
            "text": mention.text,
            "author": mention.author.handle or mention.author.name,
            "brands": list(mention.brands),
            "label": routed_label(mention),
            "rules": list(routing.rule_ids) if routing else [],
        }
        event: dict[str, Any] = {
            "routing_key": self.settings.routing_key.get_secret_value(),
            "event_action": "trigger",
            "dedup_key": mention.id,
            "payload": {
                "summary": summary(mention, limit=1024),
                "source": self.settings.source,
                "severity": SEVERITY[priority],
                "timestamp": mention.created_at.isoformat(),
                "component": mention.source,
                "group": ",".join(mention.brands) or "unknown",
                "class": routed_label(mention) or "mention",
                "custom_details": details,
            },
            "client": "brand-listener",
        }
        if mention.url:
            event["links"] = [{"href": mention.url, "text": "Original post"}]
        return event

    async def deliver(self, mention: Mention) -> DeliveryResult:
        """Enqueue the trigger event; the external id is the dedup key PagerDuty echoes."""
        return await self._enqueue(self.event(mention), mention.id)

    async def _enqueue(self, event: dict[str, Any], dedup_key: str) -> DeliveryResult:
        status, headers, body = await self._http.request("POST", self._url, json=event, raw=True)
        if status == 400 and "routing" in body.lower() and "key" in body.lower():
            raise FatalError(f"pagerduty answered HTTP 400, check the routing key: {body[:300]}")
        classify_status("pagerduty", status, headers, body)
        answer = orjson.loads(body)
        return DeliveryResult(str(answer.get("dedup_key") or dedup_key), created=True)

    def update_event(self, event_action: str, dedup_key: str) -> dict[str, Any]:
        """An ``acknowledge`` or ``resolve`` event (Events API v2: no payload needed)."""
        if event_action not in ("acknowledge", "resolve"):
            raise ValueError(f"not an update event action: {event_action!r}")
        return {
            "routing_key": self.settings.routing_key.get_secret_value(),
            "event_action": event_action,
            "dedup_key": dedup_key,
            "client": "brand-listener",
        }

    async def update(self, event_action: str, dedup_key: str) -> DeliveryResult:
        """Acknowledge or resolve the alert whose dedup key is ``dedup_key`` (one attempt)."""
        return await self._enqueue(self.update_event(event_action, dedup_key), dedup_key)

    def alert_event(self, alert: Mapping[str, Any]) -> dict[str, Any]:
        """The event for a spike alert: ``dedup_key`` is the alert id; resolved ones resolve it."""
        if alert.get("status") == "resolved":
            return self.update_event("resolve", str(alert["id"]))
        start = datetime.fromtimestamp(float(alert.get("window_start", 0)), UTC)
        return {
            "routing_key": self.settings.routing_key.get_secret_value(),
            "event_action": "trigger",
            "dedup_key": str(alert["id"]),
            "payload": {
                "summary": alert_summary(alert)[:1024],
                "source": self.settings.source,
                "severity": "critical",
                "timestamp": start.isoformat(),
                "component": "spike-detector",
                "group": str(alert.get("brand", "unknown")),
                "class": f"{alert.get('label', 'mention')} spike",
                "custom_details": dict(alert),
            },
            "client": "brand-listener",
        }

    async def deliver_alert(self, alert: Mapping[str, Any]) -> DeliveryResult:
        """Trigger, merge into or resolve the PagerDuty alert whose dedup key is the alert id."""
        return await self._enqueue(self.alert_event(alert), str(alert["id"]))

    async def close(self) -> None:
        """Close the HTTP session."""
        await self._http.close()
