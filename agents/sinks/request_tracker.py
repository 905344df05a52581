"""Request Tracker 5 (REST2): a ticket per mention (``POST /REST/2.0/ticket``)."""

from __future__ import annotations

from typing import Any, ClassVar

import orjson
from pydantic import BaseModel, Field, SecretStr

from agents.sinks.base import DeliveryResult, HttpClient, SinkSettings, description, summary
from listener.record import Mention

PRIORITIES = {"P1": 90, "P2": 70, "P3": 50, "P4": 20}


class RequestTrackerSettings(SinkSettings):
    """RT instance: ``url`` is the RT base, e.g. ``https://rt.example.com`` (REST2 below it)."""

    token: SecretStr = Field(description="RT auth token (Settings -> Auth Tokens).")
    queue: str = Field(default="General", min_length=1)
    requestor: str | None = Field(default=None, description="Requestor email, if any.")


class RequestTrackerSink:
    """Creates an RT ticket for a mention.

    Auth: ``Authorization: token <auth token>``. Rate limits: none built into
    RT; a 429 or 5xx from a proxy is retried with backoff. Idempotency: REST2
    has no idempotency key, so the ledger (``uses_ledger``) maps each Mention
    id to its ticket id and is consulted before creating. Guarantee:
    at-least-once; a crash between create and the ledger write can create one
    duplicate.

    Args:
        settings: RT base URL, token and queue.
    """

    name: ClassVar[str] = "request_tracker"
    uses_ledger: ClassVar[bool] = True
    settings_model: ClassVar[type[BaseModel]] = RequestTrackerSettings

    def __init__(self, settings: RequestTrackerSettings) -> None:
        self.settings = settings
        headers = {
            "Authorization": f"token {settings.token.get_secret_value()}",
            "Accept": "application/json",
        }
        self._http = HttpClient("request_tracker", settings.timeout_s, headers=headers)

    def accepts(self, mention: Mention) -> bool:
        """Mentions whose priority is in ``settings.priorities``."""
        return self.settings.accepts(mention)

    async def deliver(self, mention: Mention) -> DeliveryResult:
        """Create the ticket; the external id is RT's ticket number."""
        priority = (
            mention.routing.priority if mention.routing and mention.routing.priority else "P4"
        )
        ticket: dict[str, Any] = {
            "Queue": self.settings.queue,
            "Subject": summary(mention),
            "Content": description(mention),
            "ContentType": "text/plain",
            "Priority": PRIORITIES[priority],
        }
        if self.settings.requestor:
            ticket["Requestor"] = self.settings.requestor
        url = self.settings.url.rstrip("/") + "/REST/2.0/ticket"
        _, _, text = await self._http.request("POST", url, json=ticket)
        return DeliveryResult(str(orjson.loads(text)["id"]), created=True)

    async def close(self) -> None:
        """Close the HTTP session."""
        await self._http.close()
