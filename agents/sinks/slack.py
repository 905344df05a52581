"""Slack: a message per mention, or a digest when mentions come faster than ~1 a second."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar

import orjson
from pydantic import BaseModel, Field, SecretStr, model_validator

from agents.sinks.alerting import alert_text
from agents.sinks.base import DeliveryResult, HttpClient, SinkSettings, classify_status, summary
from listener.errors import FatalError, RetryableError, SkippableError
from listener.record import Mention

FATAL_ERRORS = frozenset(
    {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired",
     "channel_not_found", "not_in_channel", "is_archived", "missing_scope", "no_permission"}
)  # fmt: skip
"""chat.postMessage ``error`` codes that no retry can fix: credentials, scopes, channel."""


class SlackSettings(SinkSettings):
    """Either an incoming-webhook ``url``, or ``url`` = the Web API base plus token and channel."""

    token: SecretStr | None = Field(default=None, description="Bot token (xoxb-...).")
    channel: str | None = Field(default=None, description="Channel id for chat.postMessage.")
    min_interval_s: float = Field(default=1.0, ge=0, description="Slack allows ~1 msg/s.")
    digest_max: int = Field(default=20, ge=1, le=50, description="Most mentions in one digest.")
    alerts: bool = Field(default=True, description="Also post spike alerts (with examples).")

    @model_validator(mode="after")
    def _channel_with_token(self) -> SlackSettings:
        if self.token is not None and not self.channel:
            raise ValueError("a Slack token needs a channel")
        return self


class SlackSink:
    """Posts mentions to one Slack channel, batching into a digest when over the rate.

    Auth: the secret incoming-webhook URL, or ``Authorization: Bearer <bot
    token>`` for ``chat.postMessage``. Rate limits: about one message a second
    per channel; mentions arriving faster wait for the next slot and go out
    together as one digest (at most ``digest_max``); a 429's Retry-After pushes
    the next slot back. Idempotency: Slack has none, so the ledger
    (``uses_ledger``) records each Mention id once posted. Spike alerts
    (``deliver_alert``, unless ``alerts`` is off) are posted on their own in
    the next slot, ledger-keyed by alert id. Guarantee:
    at-least-once; a crash between posting and the ledger write can repeat a
    message.

    Args:
        settings: Webhook URL or token and channel.
        clock: Monotonic clock (for tests).
        sleep: Awaitable sleep (for tests).
    """

    name: ClassVar[str] = "slack"
    uses_ledger: ClassVar[bool] = True
    settings_model: ClassVar[type[BaseModel]] = SlackSettings

    def __init__(
        self,
        settings: SlackSettings,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._sleep = sleep
        headers: dict[str, str] = {}
        if settings.token is not None:
            headers["Authorization"] = f"Bearer {settings.token.get_secret_value()}"
        self._http = HttpClient("slack", settings.timeout_s, headers=headers)
        self._next_slot = 0.0
        self._pending: list[tuple[Mention, asyncio.Future[DeliveryResult]]] = []
        self._flusher: asyncio.Task[None] | None = None

    def accepts(self, mention: Mention) -> bool:
        """Mentions whose priority is in ``settings.priorities``."""
        return self.settings.accepts(mention)

    async def deliver(self, mention: Mention) -> DeliveryResult:
        """Queue ``mention`` for the channel's next slot and wait for its message to be posted."""
        future: asyncio.Future[DeliveryResult] = asyncio.get_running_loop().create_future()
        self._pending.append((mention, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        while self._pending:
            wait = self._next_slot - self._clock()
            if wait > 0:
                await self._sleep(wait)
            batch = self._pending[: self.settings.digest_max]
            del self._pending[: len(batch)]
            batch = [(m, f) for m, f in batch if not f.done()]
            if not batch:
                continue
            self._next_slot = self._clock() + self.settings.min_interval_s
            try:
                external_id = await self._post([m for m, _ in batch])
            except Exception as exc:  # noqa: BLE001 - handed to every waiter of this message
                if isinstance(exc, RetryableError) and exc.after:
                    self._next_slot = max(self._next_slot, self._clock() + exc.after)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for _, future in batch:
                if not future.done():
                    future.set_result(DeliveryResult(external_id, created=True))

    def message(self, mentions: list[Mention]) -> dict[str, Any]:
        """The message body: one mention, or a digest listing several."""
        if len(mentions) == 1:
            m = mentions[0]
            text = f"{summary(m, limit=200)}\n{m.url or m.id}"
        else:
            lines = [f"• {summary(m, limit=150)} <{m.url}|link>" if m.url else
                     f"• {summary(m, limit=150)} ({m.id})" for m in mentions]  # fmt: skip
            text = f"{len(mentions)} mentions need a response:\n" + "\n".join(lines)
        body: dict[str, Any] = {"text": text, "unfurl_links": False}
        if self.settings.channel:
            body["channel"] = self.settings.channel
        return body

    async def deliver_alert(self, alert: Mapping[str, Any]) -> DeliveryResult:
        """Post a spike alert (with example posts) in the channel's next slot."""
        wait = self._next_slot - self._clock()
        if wait > 0:
            await self._sleep(wait)
        self._next_slot = self._clock() + self.settings.min_interval_s
        body: dict[str, Any] = {"text": alert_text(alert), "unfurl_links": False}
        if self.settings.channel:
            body["channel"] = self.settings.channel
        return DeliveryResult(await self._send(body, str(alert["id"])), created=True)

    async def _post(self, mentions: list[Mention]) -> str:
        return await self._send(self.message(mentions), mentions[0].id)

    async def _send(self, body: dict[str, Any], first_id: str) -> str:
        if self.settings.token is None:
            await self._http.request("POST", self.settings.url, json=body)
            return f"webhook:{first_id}"
        url = self.settings.url.rstrip("/") + "/chat.postMessage"
        status, headers, text = await self._http.request("POST", url, json=body, raw=True)
        classify_status("slack", status, headers, text)
        answer = orjson.loads(text)
        if answer.get("ok"):
            return f"{answer.get('channel')}/{answer.get('ts')}"
        error = str(answer.get("error", "unknown"))
        if error == "ratelimited":
            raise RetryableError("slack: ratelimited", after=None)
        if error in FATAL_ERRORS:
            raise FatalError(f"slack chat.postMessage: {error} (check the token and channel)")
        raise SkippableError("rejected", f"slack chat.postMessage: {error}")

    async def close(self) -> None:
        """Stop the flusher and close the HTTP session."""
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
        await self._http.close()
