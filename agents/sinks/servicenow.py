"""ServiceNow Table API: an incident per mention (``POST /api/now/table/<table>``)."""

from __future__ import annotations

from typing import ClassVar

import aiohttp
import orjson
from pydantic import BaseModel, Field, SecretStr

from agents.sinks.base import DeliveryResult, HttpClient, SinkSettings, description, summary
from listener.record import Mention

URGENCY = {"P1": "1", "P2": "2", "P3": "3", "P4": "3"}
"""ServiceNow urgency/impact: 1 high, 2 medium, 3 low."""


class ServiceNowSettings(SinkSettings):
    """ServiceNow instance: ``url`` is ``https://<instance>.service-now.com``."""

    user: str = Field(min_length=1)
    password: SecretStr
    table: str = Field(default="incident", pattern=r"^[a-z0-9_]+$")
    assignment_group: str | None = None


class ServiceNowSink:
    """Creates a ServiceNow incident for a mention.

    Auth: HTTP basic (an integration user). Rate limits: the instance's
    inbound REST rate-limit rules; 429 carries Retry-After, honoured by the
    deliverer. Idempotency: the Table API has no idempotency key; the
    ``correlation_id`` field is the Mention id, so before creating, the sink
    queries ``correlation_id=<Mention id>`` and returns an existing record;
    the ledger (``uses_ledger``) answers first without a call. Guarantee:
    at-least-once, at most one incident per Mention id (the query also covers a
    crash before the ledger write).

    Args:
        settings: Instance, credentials and table.
    """

    name: ClassVar[str] = "servicenow"
    uses_ledger: ClassVar[bool] = True
    settings_model: ClassVar[type[BaseModel]] = ServiceNowSettings

    def __init__(self, settings: ServiceNowSettings) -> None:
        self.settings = settings
        self._url = f"{settings.url.rstrip('/')}/api/now/table/{settings.table}"
        auth = aiohttp.BasicAuth(settings.user, settings.password.get_secret_value())
        headers = {"Accept": "application/json"}
        self._http = HttpClient("servicenow", settings.timeout_s, headers=headers, auth=auth)

    def accepts(self, mention: Mention) -> bool:
        """Mentions whose priority is in ``settings.priorities``."""
        return self.settings.accepts(mention)

    async def deliver(self, mention: Mention) -> DeliveryResult:
        """Find the record correlated to the Mention id, or create it; external id = number."""
        params = {
            "sysparm_query": f"correlation_id={mention.id}",
            "sysparm_fields": "sys_id,number,correlation_id",
            "sysparm_limit": "10",
        }
        _, _, text = await self._http.request("GET", self._url, params=params)
        # An encoded query has no quoting: an id with ^ in it ("^OR...") would widen
        # the query, so only a record whose correlation_id is exactly the id counts.
        found = [
            r
            for r in orjson.loads(text).get("result") or []
            if r.get("correlation_id") == mention.id
        ]
        if found:
            return DeliveryResult(str(found[0].get("number") or found[0]["sys_id"]), created=False)
        priority = (
            mention.routing.priority if mention.routing and mention.routing.priority else "P4"
        )
        record = {
            "short_description": summary(mention, limit=160),
            "description": description(mention),
            "correlation_id": mention.id,
            "correlation_display": "brand-listener",
            "urgency": URGENCY[priority],
            "impact": URGENCY[priority],
            "contact_type": "social",
        }
        if self.settings.assignment_group:
            record["assignment_group"] = self.settings.assignment_group
        _, _, text = await self._http.request("POST", self._url, json=record)
        result = orjson.loads(text)["result"]
        return DeliveryResult(str(result.get("number") or result["sys_id"]), created=True)

    async def close(self) -> None:
        """Close the HTTP session."""
        await self._http.close()
