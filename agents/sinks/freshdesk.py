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
from agents.sinks.lookup import PendingCreates, create_once, find_or_create, mention_tag
from listener.record import Mention

PRIORITIES = {"P1": 4, "P2": 3, "P3": 2, "P4": 1}
"""Freshdesk priority codes: 4 urgent, 3 high, 2 medium, 1 low."""
STATUS_OPEN = 2
LOOKUP_PAGES = 3
"""Pages of the requester's newest tickets (100 each) searched for a pending create."""


def requester(mention: Mention) -> str:
    """The requester contact's ``unique_external_id``: ``<source>:<author id or handle>``."""
    author = mention.author
    return f"{mention.source}:{author.id or author.handle or 'unknown'}"


class FreshdeskSettings(SinkSettings):
    """Freshdesk helpdesk: ``url`` is ``https://<domain>.freshdesk.com``."""

    api_key: SecretStr
    group_id: int | None = None


class FreshdeskSink:
    """Creates a Freshdesk ticket for a mention.

    Auth: HTTP basic with the API key as user name and ``X`` as password. Rate
    limits: per-minute by plan; 429 carries Retry-After, honoured by the
    deliverer. The requester is the post's author as a contact with
    ``unique_external_id`` ``<source>:<author>``. Idempotency: Freshdesk has no
    idempotency key. Each ticket carries the tag
    :func:`~agents.sinks.lookup.mention_tag` (``bl-`` + a digest of the Mention
    id); when a create timed out, lost its connection or got a 5xx, the next
    attempt first lists the requester's newest tickets
    (``GET /api/v2/tickets?unique_external_id=...&order_by=created_at``, read
    from the database, unlike ``/api/v2/search/tickets`` whose index lags by
    minutes) and takes the one with that tag instead of creating another. The
    ledger (``uses_ledger``) maps each Mention id to its ticket id and answers
    redeliveries without a call. Guarantee: at-least-once, one ticket per
    Mention id, except when a worker crashes between a create and its ledger
    write.

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
        self._url = settings.url.rstrip("/") + "/api/v2/tickets"
        self._pending = PendingCreates()

    def accepts(self, mention: Mention) -> bool:
        """Mentions whose priority is in ``settings.priorities``."""
        return self.settings.accepts(mention)

    def ticket(self, mention: Mention) -> dict[str, Any]:
        """The ticket body for ``mention``."""
        author = mention.author
        who = author.id or author.handle or "unknown"
        priority = mention.routing.priority if mention.routing else None
        tags = ["brand-listener", mention_tag(mention.id), mention.source, *mention.brands]
        if (label := routed_label(mention)) is not None:
            tags.append(label)
        ticket: dict[str, Any] = {
            "subject": summary(mention),
            "description": "<br>".join(
                html.escape(line) for line in description(mention).split("\n")
            ),
            "unique_external_id": requester(mention),
            "name": author.name or author.handle or who,
            "status": STATUS_OPEN,
            "priority": PRIORITIES.get(priority or "P4", 1),
            "tags": tags,
        }
        if self.settings.group_id is not None:
            ticket["group_id"] = self.settings.group_id
        return ticket

    async def deliver(self, mention: Mention) -> DeliveryResult:
        """Create the ticket (or find the one an ambiguous attempt made); id = ticket id."""
        return await find_or_create(
            self._pending, mention.id, lambda: self.find(mention), lambda: self._create(mention)
        )

    async def _create(self, mention: Mention) -> str:
        text = await create_once(
            "freshdesk", self._http, self._pending, mention.id, self._url, json=self.ticket(mention)
        )
        return str(orjson.loads(text)["id"])

    async def find(self, mention: Mention) -> str | None:
        """The id of the requester's ticket tagged for ``mention``, or None.

        Lists the requester's tickets newest first (100 a page, at most
        :data:`LOOKUP_PAGES` pages, following the ``link`` header's next page).
        """
        tag = mention_tag(mention.id)
        params: dict[str, str] = {
            "unique_external_id": requester(mention),
            "order_by": "created_at",
            "order_type": "desc",
            "per_page": "100",
        }
        found: str | None = None
        for page in range(1, LOOKUP_PAGES + 1):
            _, headers, text = await self._http.request(
                "GET", self._url, params={**params, "page": str(page)}
            )
            for ticket in orjson.loads(text):
                if tag in (ticket.get("tags") or []):
                    found = str(ticket["id"])  # newest first: the last one is the oldest
            if found is not None or 'rel="next"' not in headers.get("link", ""):
                return found
        return None

    async def close(self) -> None:
        """Close the HTTP session."""
        await self._http.close()
