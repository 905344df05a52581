"""Request Tracker 5 (REST2): a ticket per mention (``POST /REST/2.0/ticket``)."""

from __future__ import annotations

import logging
import re
from typing import Any, ClassVar

import orjson
from pydantic import BaseModel, Field, SecretStr

from agents.sinks.base import DeliveryResult, HttpClient, SinkSettings, description, summary
from agents.sinks.lookup import PendingCreates, create_once, find_or_create, ticketsql_string
from listener.record import Mention

log = logging.getLogger(__name__)

PRIORITIES = {"P1": 90, "P2": 70, "P3": 50, "P4": 20}

CF_VALUE = re.compile(r"^CF\.", re.IGNORECASE)
"""A quoted TicketSQL value RT would read as a custom field name (``RT::SQL``'s DWIM)."""


class RequestTrackerSettings(SinkSettings):
    """RT instance: ``url`` is the RT base, e.g. ``https://rt.example.com`` (REST2 below it)."""

    token: SecretStr = Field(description="RT auth token (Settings -> Auth Tokens).")
    queue: str = Field(default="General", min_length=1)
    requestor: str | None = Field(default=None, description="Requestor email, if any.")
    mention_id_field: str | None = Field(
        default="Mention Id",
        pattern=r"^[^{}'\"\\]+$",
        description="Ticket custom field (single-value text, applied to the queue) that holds "
        "the Mention id and is searched after an ambiguous failure; null: no lookup.",
    )


class RequestTrackerSink:
    """Creates an RT ticket for a mention.

    Auth: ``Authorization: token <auth token>``. Rate limits: none built into
    RT; a 429 or 5xx from a proxy is retried with backoff. Idempotency: REST2
    has no idempotency key. The Mention id is written into the ticket custom
    field ``mention_id_field`` (``Mention Id``; RT ignores a custom field that
    does not exist or is not applied to the queue, so create it: Admin ->
    Custom Fields, type "Enter one value", applies to tickets, added to the
    queue); when a create timed out, lost its connection or got a 5xx, the
    next attempt first searches
    ``GET /REST/2.0/tickets?query='CF.{Mention Id}' = '<id>'`` (TicketSQL,
    the id quoted) and takes the oldest ticket whose value matches exactly
    instead of creating another. The ledger (``uses_ledger``) maps each Mention
    id to its ticket id and answers redeliveries without a call. Guarantee:
    at-least-once, one ticket per Mention id, except when a worker crashes
    between a create and its ledger write (or the custom field is missing).

    Args:
        settings: RT base URL, token, queue and the Mention id custom field.
    """

    name: ClassVar[str] = "request_tracker"
    uses_ledger: ClassVar[bool] = True
    settings_model: ClassVar[type[BaseModel]] = RequestTrackerSettings

    def __init__(self, settings: RequestTrackerSettings) -> None:
        self.settings = settings
        self._base = settings.url.rstrip("/") + "/REST/2.0"
        headers = {
            "Authorization": f"token {settings.token.get_secret_value()}",
            "Accept": "application/json",
        }
        self._http = HttpClient("request_tracker", settings.timeout_s, headers=headers)
        self._pending = PendingCreates()

    def accepts(self, mention: Mention) -> bool:
        """Mentions whose priority is in ``settings.priorities``."""
        return self.settings.accepts(mention)

    def ticket(self, mention: Mention) -> dict[str, Any]:
        """The create body for ``mention``."""
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
        if self.settings.mention_id_field:
            ticket["CustomFields"] = {self.settings.mention_id_field: mention.id}
        return ticket

    async def deliver(self, mention: Mention) -> DeliveryResult:
        """Create the ticket (or find the one an ambiguous attempt made); id = ticket number."""
        return await find_or_create(
            self._pending, mention.id, lambda: self.find(mention.id), lambda: self._create(mention)
        )

    async def _create(self, mention: Mention) -> str:
        text = await create_once(
            "request_tracker",
            self._http,
            self._pending,
            mention.id,
            f"{self._base}/ticket",
            json=self.ticket(mention),
        )
        return str(orjson.loads(text)["id"])

    async def find(self, mention_id: str) -> str | None:
        """The number of the oldest ticket whose Mention id field is ``mention_id``, or None."""
        field = self.settings.mention_id_field
        if not field or CF_VALUE.match(mention_id):
            return None  # no field to search, or an id RT would not read as a value
        params = {
            "query": f"'CF.{{{field}}}' = {ticketsql_string(mention_id)}",
            "fields": "CustomFields",
            "orderby": "id",
            "order": "ASC",
            "per_page": "20",
        }
        _, _, text = await self._http.request("GET", f"{self._base}/tickets", params=params)
        for item in orjson.loads(text).get("items") or []:
            if mention_id in _values(item, field):
                return str(item["id"])
        return None

    async def close(self) -> None:
        """Close the HTTP session."""
        await self._http.close()


def _values(item: dict[str, Any], field: str) -> list[str]:
    """The values of custom field ``field`` in a REST2 search result item."""
    cfs = item.get("CustomFields") or []
    if isinstance(cfs, dict):  # {"<id or name>": [values]} in some RT versions
        cfs = [{"name": k, "values": v} for k, v in cfs.items()]
    values: list[str] = []
    for cf in cfs:
        if isinstance(cf, dict) and cf.get("name") == field:
            raw = cf.get("values") or []
            values += [str(v) for v in (raw if isinstance(raw, list) else [raw])]
    return values
