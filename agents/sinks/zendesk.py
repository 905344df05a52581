"""Zendesk Support: one ticket per mention (``POST /api/v2/tickets.json``)."""

from __future__ import annotations

from typing import Any, ClassVar

import aiohttp
import orjson
from pydantic import BaseModel, Field, SecretStr

from agents.sinks.base import (
    DeliveryResult,
    HttpClient,
    SinkSettings,
    classify_status,
    description,
    routed_label,
    summary,
)
from listener.errors import SkippableError
from listener.record import Mention

PRIORITIES = {"P1": "urgent", "P2": "high", "P3": "normal", "P4": "low"}


class ZendeskSettings(SinkSettings):
    """Zendesk connection: ``url`` is ``https://<subdomain>.zendesk.com``."""

    email: str = Field(min_length=3, description="Agent email the API token belongs to.")
    api_token: SecretStr
    requester_domain: str = Field(
        default="social.invalid",
        description="Requester email: <source>.<handle>@<this domain> (posts carry none).",
    )
    group_id: int | None = None


class ZendeskSink:
    """Creates a Zendesk ticket for a mention.

    Auth: HTTP basic ``<email>/token:<api token>``. Rate limits: 200-700 requests
    a minute by plan; 429 carries Retry-After, honoured by the deliverer.
    Idempotency: the ``Idempotency-Key`` header is the Mention id, so a retried
    create within Zendesk's 2-hour key window replays the first response
    (``x-idempotency-lookup: hit``) instead of creating a second ticket;
    ``external_id`` is the Mention id too. A key reused with a different
    payload (the same mention routed differently) is answered with the
    existing ticket, found by ``external_id``. Beyond 2 hours the ledger
    (``uses_ledger``) prevents re-creation. Guarantee: at-least-once delivery,
    at most one ticket per Mention id.

    Args:
        settings: Zendesk connection settings.
    """

    name: ClassVar[str] = "zendesk"
    uses_ledger: ClassVar[bool] = True
    settings_model: ClassVar[type[BaseModel]] = ZendeskSettings

    def __init__(self, settings: ZendeskSettings) -> None:
        self.settings = settings
        self._base = settings.url.rstrip("/")
        auth = aiohttp.BasicAuth(f"{settings.email}/token", settings.api_token.get_secret_value())
        self._http = HttpClient("zendesk", settings.timeout_s, auth=auth)

    def accepts(self, mention: Mention) -> bool:
        """Mentions whose priority is in ``settings.priorities``."""
        return self.settings.accepts(mention)

    def ticket(self, mention: Mention) -> dict[str, Any]:
        """The ``ticket`` object for ``mention``."""
        author = mention.author
        handle = author.handle or author.id or "unknown"
        local = "".join(
            c if c.isalnum() or c in "._-" else "_" for c in f"{mention.source}.{handle}"
        )
        tags = ["brand-listener", f"source_{mention.source}"]
        tags += [f"brand_{b}" for b in mention.brands]
        ticket: dict[str, Any] = {
            "subject": summary(mention),
            "comment": {"body": description(mention), "public": False},
            "requester": {
                "name": author.name or handle,
                "email": f"{local}@{self.settings.requester_domain}",
            },
            "external_id": mention.id,
        }
        if (label := routed_label(mention)) is not None:
            tags.append(f"label_{label}")
        if mention.routing is not None and mention.routing.priority:
            ticket["priority"] = PRIORITIES[mention.routing.priority]
            tags.append(f"priority_{mention.routing.priority.lower()}")
        if self.settings.group_id is not None:
            ticket["group_id"] = self.settings.group_id
        ticket["tags"] = [t.lower().replace(" ", "_") for t in tags]
        return ticket

    async def deliver(self, mention: Mention) -> DeliveryResult:
        """Create the ticket (or find the one this Mention id already made)."""
        status, headers, body = await self._http.request(
            "POST",
            f"{self._base}/api/v2/tickets.json",
            json={"ticket": self.ticket(mention)},
            headers={"Idempotency-Key": mention.id},
            raw=True,
        )
        if status == 400 and "IdempotentRequestError" in body:
            return await self._existing(mention)
        if status == 422 and "external_id" in body and "taken" in body:
            return await self._existing(mention)
        classify_status("zendesk", status, headers, body)
        ticket_id = orjson.loads(body)["ticket"]["id"]
        replayed = headers.get("x-idempotency-lookup", "").lower() == "hit"
        return DeliveryResult(str(ticket_id), created=not replayed)

    async def _existing(self, mention: Mention) -> DeliveryResult:
        _, _, body = await self._http.request(
            "GET", f"{self._base}/api/v2/tickets.json", params={"external_id": mention.id}
        )
        tickets = orjson.loads(body).get("tickets", [])
        if not tickets:
            raise SkippableError(
                "rejected", f"zendesk refused the key of {mention.id}: {body[:200]}"
            )
        return DeliveryResult(str(tickets[0]["id"]), created=False)

    async def close(self) -> None:
        """Close the HTTP session."""
        await self._http.close()
