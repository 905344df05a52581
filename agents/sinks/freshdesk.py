"""Freshdesk v2: a ticket per mention (``POST /api/v2/tickets``)."""

from __future__ import annotations

import html
from typing import Any, ClassVar

import aiohttp
import orjson
from pydantic import BaseModel, SecretStr

from agents.sinks.base import (
    DeliveryResult,
    HttpClient,
    SinkSettings,
    description,
    routed_label,
    summary,
)
from listener.record import Mention

PRIORITIES = {"P1": 4, "P2": 3, "P3": 2, "P4": 1}
"""Freshdesk priority codes: 4 urgent, 3 high, 2 medium, 1 low."""
STATUS_OPEN = 2


class FreshdeskSettings(SinkSettings):
    """Freshdesk helpdesk: ``url`` is ``https://<domain>.freshdesk.com``."""

    api_key: SecretStr
    group_id: int | None = None


class FreshdeskSink:
    """Creates a Freshdesk ticket for a mention.

    Auth: HTTP basic with the API key as user name and ``X`` as password. Rate
    limits: per-minute by plan; 429 carries Retry-After, honoured by the
    deliverer. Idempotency: Freshdesk has no idempotency key, so the ledger
    (``uses_ledger``) maps each Mention id to its ticket id and is consulted
    before creating. The requester is the post's author as a contact with
    ``unique_external_id`` ``<source>:<author>``. Guarantee: at-least-once; a
    crash between create and the ledger write can create one duplicate.

    Args:
        settings: Domain and API key.
    """

    name: ClassVar[str] = "freshdesk"
    uses_ledger: ClassVar[bool] = True
    settings_model: ClassVar[type[BaseModel]] = FreshdeskSettings

    def __init__(self, settings: FreshdeskSettings) -> None:
        self.settings = settings
        auth = aiohttp.BasicAuth(settings.api_key.get_secret_value(), "X")
        self._http = HttpClient("freshdesk", settings.timeout_s, auth=auth)

    def accepts(self, mention: Mention) -> bool:
        """Mentions whose priority is in ``settings.priorities``."""
        return self.settings.accepts(mention)

    def ticket(self, mention: Mention) -> dict[str, Any]:
        """The ticket body for ``mention``."""
        author = mention.author
        who = author.id or author.handle or "unknown"
        priority = mention.routing.priority if mention.routing else None
        tags = ["brand-listener", mention.source, *mention.brands]
        if (label := routed_label(mention)) is not None:
            tags.append(label)
        ticket: dict[str, Any] = {
            "subject": summary(mention),
            "description": "<br>".join(
                html.escape(line) for line in description(mention).split("\n")
            ),
            "unique_external_id": f"{mention.source}:{who}",
            "name": author.name or author.handle or who,
            "status": STATUS_OPEN,
            "priority": PRIORITIES.get(priority or "P4", 1),
            "tags": tags,
        }
        if self.settings.group_id is not None:
            ticket["group_id"] = self.settings.group_id
        return ticket

    async def deliver(self, mention: Mention) -> DeliveryResult:
        """Create the ticket; the external id is Freshdesk's ticket id."""
        url = self.settings.url.rstrip("/") + "/api/v2/tickets"
        _, _, text = await self._http.request("POST", url, json=self.ticket(mention))
        return DeliveryResult(str(orjson.loads(text)["id"]), created=True)

    async def close(self) -> None:
        """Close the HTTP session."""
        await self._http.close()
