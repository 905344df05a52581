"""Zendesk -> inbox: a signed webhook from a trigger when a ticket becomes solved or closed.

Set-up (Admin Center): a webhook (Apps and integrations -> Webhooks,
"Trigger or automation", POST, JSON) to ``https://<worker>:<sync.port>/sync/zendesk``,
and a trigger "Ticket status changed to Solved" (and one for Closed) whose
action notifies it with the body::

    {"ticket_id": "{{ticket.id}}", "external_id": "{{ticket.external_id}}",
     "status": "{{ticket.status}}"}

Auth: Zendesk signs every request: ``X-Zendesk-Webhook-Signature`` is
``base64(HMAC-SHA256(signing secret, X-Zendesk-Webhook-Signature-Timestamp + body))``
(developer.zendesk.com, "Verifying webhook authenticity"); the signature is
compared in constant time and a timestamp more than ``max_skew_s`` away is
refused (a replayed request). A request that fails either check is answered
401 and writes nothing. Rate limits: none on our side beyond the body limit
(``sync.max_body_bytes``, 413); Zendesk retries a webhook answered 5xx or
timed out. Idempotency: the ticket id maps to the Mention id through the sink
ledger (else the ticket's ``external_id``, which the sink sets to the Mention
id); a second "solved" finds the item resolved and writes only the
acknowledgement again. Guarantee: at-least-once (2xx only after Kafka
acknowledged the action and the acknowledgement).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agents.delivery.sync.base import Solved
from agents.delivery.sync.config import ZendeskSync

SOLVED = frozenset({"solved", "closed"})


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Zendesk-Webhook-Signature`` value Zendesk sends for ``body`` at ``timestamp``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


class ZendeskPayload(BaseModel):
    """The trigger's JSON body (the placeholders above), validated."""

    model_config = ConfigDict(extra="ignore")

    ticket_id: str = Field(pattern=r"^[0-9]{1,20}$")
    status: str = Field(max_length=50)
    external_id: str | None = Field(default=None, max_length=1000)

    @field_validator("ticket_id", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value


class ZendeskWebhook:
    """Verifies and reads Zendesk's solved-ticket webhook.

    Args:
        settings: The ``sync.zendesk`` block (enabled, so with a secret).
        clock: Wall-clock seconds (tests pass a fixed one).
    """

    name: ClassVar[str] = "zendesk"

    def __init__(self, settings: ZendeskSync, clock: Callable[[], float]) -> None:
        if settings.secret is None:
            raise ValueError("sync.zendesk needs its webhook's signing secret")
        self._secret = settings.secret.get_secret_value()
        self._skew = settings.max_skew_s
        self._clock = clock

    def verify(self, headers: Mapping[str, str], body: bytes) -> bool:
        """The signature matches (constant time) and its timestamp is recent."""
        sent = headers.get("X-Zendesk-Webhook-Signature", "")
        timestamp = headers.get("X-Zendesk-Webhook-Signature-Timestamp", "")
        if not sent or not timestamp or len(timestamp) > 64:
            return False
        expected = signature(self._secret, timestamp, body)
        if not hmac.compare_digest(expected.encode(), sent.encode("utf-8", "replace")):
            return False
        try:
            at = datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return False
        return abs(self._clock() - at) <= self._skew

    def solved(self, payload: Any) -> Solved | None:
        """The ticket, if its status is solved or closed.

        Raises:
            ValueError: Not the trigger's body.
        """
        body = ZendeskPayload.model_validate(payload)
        if body.status.strip().lower() not in SOLVED:
            return None
        hint = body.external_id if body.external_id and ":" in body.external_id else None
        return Solved(body.ticket_id, body.status.strip().lower(), hint)
