"""Signed outgoing webhook (Standard Webhooks): one ``mention.needs_response`` event per mention."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar

import orjson
from pydantic import BaseModel, Field, SecretStr

from agents.sinks.base import DeliveryResult, HttpClient, SinkSettings, classify_status
from listener.errors import FatalError
from listener.record import Mention

EVENT_TYPE = "mention.needs_response"


def secret_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret (``whsec_`` + base64), else the raw bytes."""
    if secret.startswith("whsec_"):
        return base64.b64decode(secret.removeprefix("whsec_"))
    return secret.encode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class WebhookSettings(SinkSettings):
    """Receiver endpoint (``url``, the full URL) and its signing secret (``whsec_...``)."""

    secret: SecretStr = Field(description="Standard Webhooks secret, whsec_<base64>.")


class WebhookSink:
    """POSTs each mention as a signed Standard Webhooks event.

    Auth: the receiver verifies ``webhook-signature`` (HMAC-SHA256 over
    ``webhook-id.webhook-timestamp.body`` with the shared secret). Rate limits:
    none of ours; a 429 or 5xx from the receiver, or a timeout, is retried with
    backoff; 410 Gone means the endpoint was removed (fatal). Idempotency:
    ``webhook-id`` is the Mention id and stays the same on every retry, which
    is what Standard Webhooks receivers deduplicate on; each attempt is
    re-signed with a fresh timestamp. Guarantee: at-least-once.

    Args:
        settings: Endpoint and secret.
        clock: Unix time source (for tests).
    """

    name: ClassVar[str] = "webhook"
    uses_ledger: ClassVar[bool] = False
    settings_model: ClassVar[type[BaseModel]] = WebhookSettings

    def __init__(self, settings: WebhookSettings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self._clock = clock
        self._http = HttpClient("webhook", settings.timeout_s)

    def accepts(self, mention: Mention) -> bool:
        """Mentions whose priority is in ``settings.priorities``."""
        return self.settings.accepts(mention)

    def payload(self, mention: Mention) -> bytes:
        """The event body: ``type``, ``timestamp`` and the mention as ``data``."""
        event: dict[str, Any] = {
            "type": EVENT_TYPE,
            "timestamp": datetime.now(UTC).isoformat(),
            "data": mention.model_dump(mode="json"),
        }
        return orjson.dumps(event)

    async def deliver(self, mention: Mention) -> DeliveryResult:
        """Send the signed event; the external id is the webhook-id (the Mention id)."""
        body = self.payload(mention)
        stamp = int(self._clock())
        headers = {
            "content-type": "application/json",
            "webhook-id": mention.id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": sign(
                self.settings.secret.get_secret_value(), mention.id, stamp, body
            ),
        }
        status, answer_headers, answer = await self._http.request(
            "POST", self.settings.url, data=body, headers=headers, raw=True
        )
        if status == 410:
            raise FatalError(f"webhook endpoint {self.settings.url} is gone (410): {answer[:200]}")
        classify_status("webhook", status, answer_headers, answer)
        return DeliveryResult(mention.id, created=True)

    async def close(self) -> None:
        """Close the HTTP session."""
        await self._http.close()
