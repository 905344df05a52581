"""Freshdesk -> inbox: an automation rule's webhook when a ticket is resolved or closed.

Set-up (Admin -> Workflows -> Automations -> Ticket updates): a rule on
"Status is changed to Resolved / Closed" whose action is "Trigger webhook":
POST ``https://<worker>:<sync.port>/sync/freshdesk``, custom header
``X-Brand-Listener-Token: <sync.freshdesk.secret>`` (``sync.freshdesk.header``),
content JSON with the placeholders ``{{ticket.id}}`` and ``{{ticket.status}}``,
e.g. ``{"freshdesk_webhook": {"ticket_id": "{{ticket.id}}",
"ticket_status": "{{ticket.status}}"}}`` (the flat ``{"ticket_id", "ticket_status"}``
is read too). Freshdesk's statuses: 2 Open, 3 Pending, 4 Resolved, 5 Closed
(names or numbers are accepted).

Auth: Freshdesk does not sign webhooks, so the rule sends a shared secret in
a custom header, compared in constant time; a request without it is answered
401 and writes nothing. Rate limits: Freshdesk throttles its own webhook
calls (about 1,000 an hour per account); the body limit here is
``sync.max_body_bytes`` (413). Idempotency: the ticket id maps to the Mention
id through the sink ledger; a repeated webhook finds the item resolved and
writes only the acknowledgement again. Guarantee: at-least-once (2xx only
after Kafka acknowledged both records; Freshdesk retries a failed webhook).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agents.delivery.sync.base import Solved
from agents.delivery.sync.config import FreshdeskSync

SOLVED = {"4": "resolved", "5": "closed", "resolved": "resolved", "closed": "closed"}


class FreshdeskPayload(BaseModel):
    """The rule's JSON content, validated."""

    model_config = ConfigDict(extra="ignore")

    ticket_id: str = Field(pattern=r"^[0-9]{1,20}$")
    ticket_status: str = Field(max_length=50)

    @field_validator("ticket_id", "ticket_status", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value


class FreshdeskWebhook:
    """Checks and reads Freshdesk's automation webhook.

    Args:
        settings: The ``sync.freshdesk`` block (enabled, so with a secret).
    """

    name: ClassVar[str] = "freshdesk"

    def __init__(self, settings: FreshdeskSync) -> None:
        if settings.secret is None:
            raise ValueError("sync.freshdesk needs the shared secret")
        self._secret = settings.secret.get_secret_value().encode()
        self._header = settings.header

    def verify(self, headers: Mapping[str, str], body: bytes) -> bool:
        """The shared secret header matches (constant time)."""
        sent = headers.get(self._header, "").encode("utf-8", "replace")
        return hmac.compare_digest(self._secret, sent)

    def solved(self, payload: Any) -> Solved | None:
        """The ticket, if resolved or closed.

        Raises:
            ValueError: Not the rule's content.
        """
        if isinstance(payload, dict) and isinstance(payload.get("freshdesk_webhook"), dict):
            payload = payload["freshdesk_webhook"]
        body = FreshdeskPayload.model_validate(payload)
        status = SOLVED.get(body.ticket_status.strip().lower())
        return None if status is None else Solved(body.ticket_id, status)
