"""Slack: a message per mention, or a digest when mentions come faster than ~1 a second."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson
from pydantic import BaseModel, Field, SecretStr, model_validator

from agents.sinks.alerts import alert_text
from agents.sinks.base import (
    DeliveryResult,
    HttpClient,
    SinkSettings,
    classify_status,
    summary,
)
from listener.errors import FatalError, RetryableError, SkippableError
from listener.record import Mention
from listener.retry import retry_after

log = logging.getLogger(__name__)

JSON_UTF8 = "application/json; charset=utf-8"
"""The Web API's JSON content type; without the charset Slack warns ``missing_charset``."""

FATAL_ERRORS = frozenset(
    {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired",
     "not_allowed_token_type", "missing_scope", "no_permission", "access_denied",
     "accesslimited", "ekm_access_denied", "enterprise_is_restricted", "org_login_required",
     "team_access_not_granted", "two_factor_setup_required", "channel_not_found",
     "not_in_channel", "is_archived", "restricted_action", "restricted_action_read_only_channel",
     "deprecated_endpoint", "method_deprecated", "invalid_charset", "invalid_form_data",
     "invalid_post_type", "missing_post_type", "invalid_arg_name", "invalid_array_arg"}
)  # fmt: skip
"""chat.postMessage ``error`` codes that no retry can fix: credentials, scopes, channel,
or a request this sink builds wrongly for every message."""

RETRYABLE_ERRORS = frozenset(
    {"ratelimited", "rate_limited", "message_limit_exceeded", "internal_error", "fatal_error",
     "service_unavailable", "request_timeout", "team_added_to_org"}
)  # fmt: skip
"""chat.postMessage ``error`` codes that are Slack's transient trouble; any other code
(``msg_too_long``, ``no_text``, ``invalid_blocks``, ...) rejects this one message."""


class SlackSettings(SinkSettings):
    """Either an incoming-webhook ``url``, or the Web API base ``url`` plus token and channel.

    The Web API base is ``https://slack.com/api`` (``/chat.postMessage`` is
    appended unless the url already ends with it).
    """

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


@dataclass(slots=True)
class _Entry:
    """One mention waiting for (or in) a message, and every delivery waiting on it."""

    mention: Mention
    waiters: list[asyncio.Future[DeliveryResult]] = field(default_factory=list)

    def live(self) -> list[asyncio.Future[DeliveryResult]]:
        return [f for f in self.waiters if not f.done()]


def _escape(text: str) -> str:
    """Slack's three control characters, so a post cannot ping ``<!channel>`` or a user."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _link(url: str) -> str:
    """A URL made safe inside ``<url|label>``."""
    return _escape(url).replace("|", "%7C")


class SlackSink:
    """Posts mentions to one Slack channel, batching into a digest when over the rate.

    Wire format: an incoming-webhook POST of ``{"text", ...}`` (Slack answers
    ``ok`` or a plain-text error code), or with a bot token ``POST
    <url>/chat.postMessage`` with ``Authorization: Bearer xoxb-...`` and a
    JSON body ``{"channel", "text", ...}`` sent as ``application/json;
    charset=utf-8``; Slack answers HTTP 200 ``{"ok": true, "channel", "ts"}``
    or ``{"ok": false, "error": <code>}``. An ``ok: false`` is a failure:
    credential, scope and channel codes (:data:`FATAL_ERRORS`) are fatal and
    dead-lettered at once with Slack's code in the message; Slack's own
    trouble (:data:`RETRYABLE_ERRORS`), HTTP 429 and 5xx are retried after
    their Retry-After; any other code rejects that message. Post text is
    escaped (``& < >``), so a post cannot ping the channel.

    Rate limits: about one message a second per channel. Messages (one
    mention, a digest, an alert) go out one at a time, each at least
    ``min_interval_s`` after the previous one started; mentions arriving
    meanwhile wait and go out together as one digest (at most
    ``digest_max``); a 429's Retry-After pushes the next slot back.

    Idempotency: Slack has none, so the ledger (``uses_ledger``) records each
    Mention id once posted, and a Mention delivered again while still waiting
    or being posted joins that message instead of being posted twice. Spike
    alerts (``deliver_alert``, unless ``alerts`` is off) are posted on their
    own, ledger-keyed by alert id. Guarantee: at-least-once (a timeout can
    repeat a message): neither API takes an idempotency key and a bot cannot
    find its own message by our id without reading the channel's history, so
    a post whose answer is lost (timeout, dropped connection, 5xx after Slack
    posted it) is posted again on retry, as is one posted just before a crash
    and its ledger write.

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
        self._channel = asyncio.Lock()
        self._pending: dict[str, _Entry] = {}
        self._posting: dict[str, _Entry] = {}
        self._flusher: asyncio.Task[None] | None = None

    def accepts(self, mention: Mention) -> bool:
        """Mentions whose priority is in ``settings.priorities``."""
        return self.settings.accepts(mention)

    async def deliver(self, mention: Mention) -> DeliveryResult:
        """Queue ``mention`` for the channel's next slot and wait for its message to be posted.

        The same id already waiting or being posted is not queued again: this
        call waits for that message and reports it as existing.
        """
        future: asyncio.Future[DeliveryResult] = asyncio.get_running_loop().create_future()
        entry = self._pending.get(mention.id) or self._posting.get(mention.id)
        if entry is None:
            entry = self._pending[mention.id] = _Entry(mention)
        entry.waiters.append(future)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _wait_for_slot(self) -> None:
        """Sleep until the channel's next free slot and take it (call holding ``_channel``)."""
        wait = self._next_slot - self._clock()
        if wait > 0:
            await self._sleep(wait)
        self._next_slot = self._clock() + self.settings.min_interval_s

    def _pushed_back(self, exc: Exception) -> None:
        if isinstance(exc, RetryableError) and exc.after:
            self._next_slot = max(self._next_slot, self._clock() + exc.after)

    async def _flush(self) -> None:
        while self._pending:
            async with self._channel:
                await self._wait_for_slot()
                await self._post_pending()

    async def _post_pending(self) -> None:
        """Post up to ``digest_max`` waiting mentions as one message; answer their waiters."""
        ids = list(self._pending)[: self.settings.digest_max]
        batch = [e for e in (self._pending.pop(i) for i in ids) if e.live()]
        if not batch:
            return
        self._posting.update((e.mention.id, e) for e in batch)
        try:
            external_id = await self._post([e.mention for e in batch])
        except Exception as exc:  # noqa: BLE001 - handed to every waiter of this message
            self._pushed_back(exc)
            for entry in batch:
                for future in entry.live():
                    future.set_exception(exc)
            return
        finally:
            for entry in batch:
                self._posting.pop(entry.mention.id, None)
        for entry in batch:
            for n, future in enumerate(entry.live()):
                future.set_result(DeliveryResult(external_id, created=n == 0))

    def message(self, mentions: list[Mention]) -> dict[str, Any]:
        """The message body: one mention, or a digest listing several."""
        if len(mentions) == 1:
            m = mentions[0]
            text = f"{_escape(summary(m, limit=200))}\n{_link(m.url) if m.url else m.id}"
        else:
            lines = [f"• {_escape(summary(m, limit=150))} <{_link(m.url)}|link>" if m.url else
                     f"• {_escape(summary(m, limit=150))} ({m.id})" for m in mentions]  # fmt: skip
            text = f"{len(mentions)} mentions need a response:\n" + "\n".join(lines)
        body: dict[str, Any] = {"text": text, "unfurl_links": False}
        if self.settings.channel:
            body["channel"] = self.settings.channel
        return body

    async def deliver_alert(self, alert: Mapping[str, Any]) -> DeliveryResult:
        """Post a spike alert (with example posts) in the channel's next slot."""
        body: dict[str, Any] = {"text": _escape(alert_text(alert)), "unfurl_links": False}
        if self.settings.channel:
            body["channel"] = self.settings.channel
        async with self._channel:
            await self._wait_for_slot()
            try:
                external_id = await self._send(body, str(alert["id"]))
            except Exception as exc:
                self._pushed_back(exc)
                raise
        return DeliveryResult(external_id, created=True)

    async def _post(self, mentions: list[Mention]) -> str:
        return await self._send(self.message(mentions), mentions[0].id)

    async def _send(self, body: dict[str, Any], first_id: str) -> str:
        if self.settings.token is None:
            await self._http.request("POST", self.settings.url, json=body)
            return f"webhook:{first_id}"
        url = self.settings.url.rstrip("/")
        if not url.endswith("/chat.postMessage"):
            url += "/chat.postMessage"
        status, headers, text = await self._http.request(
            "POST", url, data=orjson.dumps(body), headers={"Content-Type": JSON_UTF8}, raw=True
        )
        classify_status("slack", status, headers, text)
        try:
            answer = orjson.loads(text)
        except orjson.JSONDecodeError:
            answer = None
        if not isinstance(answer, dict) or "ok" not in answer:
            raise FatalError(f"slack chat.postMessage: not a Web API answer (check the url): "
                             f"{text[:200].strip()!r}")  # fmt: skip
        if answer.get("warning"):
            log.warning("slack chat.postMessage warns: %s", answer["warning"])
        if answer["ok"] is True:
            return f"{answer.get('channel')}/{answer.get('ts')}"
        error = str(answer.get("error", "unknown"))
        if error in RETRYABLE_ERRORS:
            raise RetryableError(f"slack chat.postMessage: {error}", after=retry_after(headers))
        if error in FATAL_ERRORS:
            raise FatalError(f"slack chat.postMessage: {error} (check the token and channel)")
        raise SkippableError("rejected", f"slack chat.postMessage: {error}")

    async def close(self) -> None:
        """Stop the flusher, fail what still waits (retried later), close the HTTP session."""
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
        for entry in [*self._pending.values(), *self._posting.values()]:
            for future in entry.live():
                future.set_exception(RetryableError("slack: sink closed before posting"))
        self._pending.clear()
        self._posting.clear()
        await self._http.close()
