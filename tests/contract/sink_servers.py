"""Local servers speaking each sink target's documented wire format, for the sink contract tests.

Each server runs on 127.0.0.1 (aiohttp), checks auth the way the real service
does and answers with its documented status codes and error bodies. Faults are
scripted (:mod:`.sink_server_base`): canned answers for the next requests
(429 + Retry-After, 503), and ``lose_after_create``: the server creates the
object and then loses the answer (a 503, a timeout or a dropped connection,
``lose_as``). ``created`` holds what was really created, to count duplicates.
The ticketing targets without an idempotency key, with their searches, are in
:mod:`.ticket_servers`.

:data:`SERVERS` is keyed by sink name, plus ``-<mode>`` for a second wire
format of the same sink (``slack-api``: chat.postMessage beside the incoming
webhook); ``server.name`` is always the sink's registry name.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import time
from collections.abc import Callable
from typing import Any, ClassVar

import orjson
from aiohttp import web
from pydantic import SecretStr

from agents.sinks.pagerduty import PagerDutySettings, PagerDutySink
from agents.sinks.slack import SlackSettings, SlackSink
from agents.sinks.webhook import WebhookSettings, WebhookSink
from agents.sinks.zendesk import ZendeskSettings, ZendeskSink

from .helpdesk_webhooks import post, zendesk_headers
from .sink_server_base import LoseAs, SinkServer, basic, jsonr
from .ticket_servers import FreshdeskServer, JiraSMServer, RequestTrackerServer, ServiceNowServer

SECRET = "whsec_" + base64.b64encode(b"contract-test-secret").decode()


class ZendeskServer(SinkServer):
    """Tickets API with Idempotency-Key replay (x-idempotency-lookup) and external_id lookup."""

    name = "zendesk"
    routes = [("POST", "/api/v2/tickets.json"), ("GET", "/api/v2/tickets.json")]

    def __init__(self) -> None:
        super().__init__()
        self.keys: dict[str, tuple[str, int, dict[str, Any]]] = {}

    def sink(
        self, good_auth: bool = True, clock: Any = None, timeout_s: float = 10.0
    ) -> ZendeskSink:
        token = "tok" if good_auth else "wrong"
        return ZendeskSink(
            ZendeskSettings(
                url=self.url,
                email="agent@acme.test",
                api_token=SecretStr(token),
                timeout_s=timeout_s,
            )  # fmt: skip
        )

    def authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == basic("agent@acme.test/token", "tok")

    def unauthorized(self) -> web.Response:
        return jsonr({"error": "Couldn't authenticate you"}, 401)

    async def handle(self, request: web.Request, body: Any) -> web.Response:
        if request.method == "GET":
            ext = request.query.get("external_id")
            tickets = [t for t in self.created.values() if t["external_id"] == ext]
            return jsonr({"tickets": tickets, "count": len(tickets)}, 200)
        ticket = body.get("ticket", {})
        if not ticket.get("comment", {}).get("body"):
            details = {"base": [{"description": "Description: cannot be blank"}]}
            return jsonr({"error": "RecordInvalid", "details": details}, 422)
        digest = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()
        key = request.headers.get("Idempotency-Key")
        if key is not None and key in self.keys:
            stored_digest, status, answer = self.keys[key]
            if stored_digest != digest:
                desc = "Request parameters don't match the original request"
                return jsonr({"error": "IdempotentRequestError", "description": desc}, 400)
            return jsonr(answer, status, {"x-idempotency-lookup": "hit"})
        ticket_id = next(self._ids)
        self.created[str(ticket_id)] = {**ticket, "id": ticket_id}
        answer = {"ticket": {**ticket, "id": ticket_id, "status": "new"}}
        if key is not None:
            self.keys[key] = (digest, 201, answer)
        return jsonr(answer, 201, {"x-idempotency-lookup": "miss"})

    async def solve(
        self, ticket_id: str, target: str, secret: str, status: str = "solved", **kw: Any
    ) -> tuple[int, Any]:
        """Set the ticket's status and fire the trigger's signed webhook at ``target``.

        The body is what the documented trigger template (``{{ticket.id}}``,
        ``{{ticket.external_id}}``, ``{{ticket.status}}``) renders to; ``kw``
        may pass ``at`` (the signature time) or ``body`` (sent instead).
        """
        ticket = self.created[ticket_id]
        ticket["status"] = status
        body = kw.get("body") or orjson.dumps(
            {"ticket_id": str(ticket["id"]), "external_id": ticket["external_id"],
             "status": status.capitalize()}
        )  # fmt: skip
        return await post(target, body, zendesk_headers(secret, body, kw.get("at")))

    def check(self, obj: dict[str, Any], mention_id: str) -> None:
        assert obj["external_id"] == mention_id
        assert obj["requester"]["name"] and "@" in obj["requester"]["email"]
        assert "label_complaint" in obj["tags"] and "brand_acme" in obj["tags"]
        assert obj["priority"] == "urgent" and mention_id in obj["comment"]["body"]
        assert any(r[2].get("Idempotency-Key") == mention_id for r in self.requests)


class PagerDutyServer(SinkServer):
    """Events API v2: 202 with dedup_key; open alerts are deduplicated by dedup_key."""

    name = "pagerduty"
    routes = [("POST", "/v2/enqueue")]

    def sink(
        self, good_auth: bool = True, clock: Any = None, timeout_s: float = 10.0
    ) -> PagerDutySink:
        key = "R0UTINGKEY0000000000000000000000" if good_auth else "nope"
        settings = PagerDutySettings(url=self.url, routing_key=SecretStr(key), timeout_s=timeout_s)
        return PagerDutySink(settings)

    def __init__(self) -> None:
        super().__init__()
        self.events: list[dict[str, Any]] = []
        """Every accepted event (trigger, acknowledge, resolve), in order."""

    def authorized(self, request: web.Request) -> bool:
        return True  # the routing key is in the body

    async def handle(self, request: web.Request, body: Any) -> web.Response:
        if body.get("routing_key") != "R0UTINGKEY0000000000000000000000":
            invalid = {"status": "invalid event", "message": "Event object is invalid"}
            return jsonr({**invalid, "errors": ["Invalid routing key"]}, 400)
        action = body.get("event_action")
        payload = body.get("payload", {})
        needed = ("summary", "source", "severity") if action == "trigger" else ()
        missing = [f for f in needed if not payload.get(f)]
        errors = [f"'payload.{f}' is missing or blank" for f in missing]
        if action not in ("trigger", "acknowledge", "resolve"):
            errors.append("'event_action' is invalid")
        elif action != "trigger" and not body.get("dedup_key"):
            errors.append("'dedup_key' is required for acknowledge and resolve events")
        if errors:
            invalid = {"status": "invalid event", "message": "Event object is invalid"}
            return jsonr({**invalid, "errors": errors}, 400)
        self.events.append(body)
        key = body.get("dedup_key") or f"auto-{next(self._ids)}"
        if action == "trigger":
            self.created.setdefault(key, body)
        return jsonr({"status": "success", "message": "Event processed", "dedup_key": key}, 202)

    def check(self, obj: dict[str, Any], mention_id: str) -> None:
        assert obj["dedup_key"] == mention_id and obj["event_action"] == "trigger"
        assert obj["payload"]["severity"] == "critical"
        assert obj["payload"]["custom_details"]["mention_id"] == mention_id


class SlackServer(SinkServer):
    """Incoming webhook: 200 ``ok``; plain-text error codes (no_text, no_service, invalid_token)."""

    name = "slack"
    routes = [("POST", "/services/{team}/{bot}/{secret}")]

    def sink(self, good_auth: bool = True, clock: Any = None, timeout_s: float = 10.0) -> SlackSink:
        secret = "XXXXgoodsecret" if good_auth else "revoked"
        url = f"{self.url}/services/T000/B000/{secret}"
        settings = SlackSettings(url=url, min_interval_s=0, timeout_s=timeout_s)
        if clock is None:
            return SlackSink(settings)
        return SlackSink(settings, clock=clock, sleep=clock.sleep)

    def error(self, status: int, headers: dict[str, str] | None = None) -> web.Response:
        return web.Response(text="rate_limited" if status == 429 else "server_error",
                            status=status, headers=headers)  # fmt: skip

    def authorized(self, request: web.Request) -> bool:
        return request.match_info["secret"] == "XXXXgoodsecret"

    def unauthorized(self) -> web.Response:
        return web.Response(text="invalid_token", status=403)

    async def handle(self, request: web.Request, body: Any) -> web.Response:
        if not body.get("text"):
            return web.Response(text="no_text", status=400)
        self.created[str(next(self._ids))] = body
        return web.Response(text="ok", status=200)

    def check(self, obj: dict[str, Any], mention_id: str) -> None:
        assert "complaint" in obj["text"] and "example.test/p/" in obj["text"]


class SlackApiServer(SinkServer):
    """Web API ``chat.postMessage``: Bearer token, HTTP 200 with ``ok``/``error``, 1 msg/s/channel.

    Answers ``{"ok": true, "channel", "ts", "message"}``, or HTTP 200
    ``{"ok": false, "error"}`` for a missing or bad token (``not_authed``,
    ``invalid_auth``), an unknown channel (``channel_not_found``), one the bot
    is not in (``not_in_channel``) or no text (``no_text``); a JSON body without
    ``charset=utf-8`` gets ``warning: missing_charset``, as Slack does. Posting
    to a channel again within ``min_interval_s`` is answered 429 with
    ``Retry-After`` (whole seconds) and counted in ``rate_limited``; the rate is
    measured on ``clock`` when a test gives one (its fake clock), else not checked.
    ``posted`` keeps each channel's post times.
    """

    name = "slack"
    mode = "api"
    routes = [("POST", "/api/chat.postMessage")]
    TOKEN = "xoxb-1111-2222-goodtoken"
    CHANNELS: ClassVar[dict[str, bool]] = {"C0SUPPORT": True, "C0PRIVATE": False}
    """Channel id -> whether the bot is a member."""

    def __init__(self) -> None:
        super().__init__()
        self.clock: Callable[[], float] | None = None
        self.min_interval_s = 1.0
        self.posted: dict[str, list[float]] = {}
        self.rate_limited = 0

    def sink(
        self,
        good_auth: bool = True,
        clock: Any = None,
        timeout_s: float = 10.0,
        channel: str = "C0SUPPORT",
        **settings: Any,
    ) -> SlackSink:
        token = self.TOKEN if good_auth else "xoxb-1111-2222-revoked"
        self.clock = clock
        settings.setdefault("min_interval_s", 1.0 if clock is not None else 0)
        config = SlackSettings(
            url=f"{self.url}/api",
            token=SecretStr(token),
            channel=channel,
            timeout_s=timeout_s,
            **settings,
        )
        if clock is None:
            return SlackSink(config)
        return SlackSink(config, clock=clock, sleep=clock.sleep)

    def script_error(self, error: str, count: int = 1) -> None:
        """Answer the next requests with HTTP 200 ``{"ok": false, "error": error}``."""
        self._script += [jsonr({"ok": False, "error": error}, 200) for _ in range(count)]

    def error(self, status: int, headers: dict[str, str] | None = None) -> web.Response:
        code = "ratelimited" if status == 429 else "service_unavailable"
        return jsonr({"ok": False, "error": code}, status, headers)

    def authorized(self, request: web.Request) -> bool:
        return True  # Slack answers auth errors with HTTP 200 ok:false: see handle

    async def handle(self, request: web.Request, body: Any) -> web.Response:
        auth = request.headers.get("Authorization")
        if auth is None:
            return jsonr({"ok": False, "error": "not_authed"}, 200)
        if auth != f"Bearer {self.TOKEN}":
            return jsonr({"ok": False, "error": "invalid_auth"}, 200)
        content_type = request.headers.get("Content-Type", "")
        if not content_type.startswith("application/json"):
            return jsonr({"ok": False, "error": "invalid_form_data"}, 200)
        channel = body.get("channel")
        if channel not in self.CHANNELS:
            return jsonr({"ok": False, "error": "channel_not_found"}, 200)
        if not self.CHANNELS[channel]:
            return jsonr({"ok": False, "error": "not_in_channel"}, 200)
        if not body.get("text") and not body.get("blocks"):
            return jsonr({"ok": False, "error": "no_text"}, 200)
        now = self.clock() if self.clock is not None else time.monotonic()
        times = self.posted.setdefault(channel, [])
        if self.clock is not None and times and now - times[-1] < self.min_interval_s:
            self.rate_limited += 1
            wait = str(max(1, math.ceil(self.min_interval_s - (now - times[-1]))))
            return jsonr({"ok": False, "error": "ratelimited"}, 429, {"Retry-After": wait})
        times.append(now)
        ts = f"1700000000.{next(self._ids):06d}"
        self.created[ts] = body
        message = {"type": "message", "text": body.get("text", ""), "ts": ts, "bot_id": "B0BOT"}
        answer: dict[str, Any] = {"ok": True, "channel": channel, "ts": ts, "message": message}
        if "charset=utf-8" not in content_type.replace(" ", "").lower():
            answer["warning"] = "missing_charset"
            answer["response_metadata"] = {"warnings": ["missing_charset"]}
        return jsonr(answer, 200)

    def check(self, obj: dict[str, Any], mention_id: str) -> None:
        assert obj["channel"] == "C0SUPPORT" and obj["unfurl_links"] is False
        assert "complaint" in obj["text"] and "example.test/p/" in obj["text"]
        method, path, headers, _ = self.requests[-1]
        assert (method, path) == ("POST", "/api/chat.postMessage")
        assert headers["Authorization"] == f"Bearer {self.TOKEN}"
        assert headers["Content-Type"] == "application/json; charset=utf-8"


class WebhookServer(SinkServer):
    """A Standard Webhooks receiver: verifies signature and timestamp, dedupes on webhook-id."""

    name = "webhook"
    routes = [("POST", "/hooks/brand")]

    def sink(
        self, good_auth: bool = True, clock: Any = None, timeout_s: float = 10.0
    ) -> WebhookSink:
        secret = SECRET if good_auth else "whsec_" + base64.b64encode(b"other").decode()
        url = f"{self.url}/hooks/brand"
        return WebhookSink(WebhookSettings(url=url, secret=SecretStr(secret), timeout_s=timeout_s))

    def authorized(self, request: web.Request) -> bool:
        return True  # checked in handle, where the raw body is at hand

    async def handle(self, request: web.Request, body: Any) -> web.Response:
        msg_id = request.headers.get("webhook-id", "")
        stamp = request.headers.get("webhook-timestamp", "0")
        raw = self.requests[-1][3]
        key = base64.b64decode(SECRET.removeprefix("whsec_"))
        mac = hmac.new(key, f"{msg_id}.{stamp}.".encode() + raw, hashlib.sha256).digest()
        expected = "v1," + base64.b64encode(mac).decode()
        given = request.headers.get("webhook-signature", "").split(" ")
        if not any(hmac.compare_digest(expected, g) for g in given):
            return jsonr({"error": "invalid signature"}, 401)
        if abs(time.time() - int(stamp)) > 300:
            return jsonr({"error": "timestamp outside tolerance"}, 400)
        self.created.setdefault(msg_id, body)
        return web.Response(status=204)

    def check(self, obj: dict[str, Any], mention_id: str) -> None:
        assert obj["type"] == "mention.needs_response" and obj["data"]["id"] == mention_id


SERVERS: dict[str, type[SinkServer]] = {
    s.name + (f"-{s.mode}" if s.mode else ""): s
    for s in (ZendeskServer, PagerDutyServer, SlackServer, SlackApiServer, WebhookServer,
              JiraSMServer, FreshdeskServer, ServiceNowServer, RequestTrackerServer)
}  # fmt: skip
"""A local server for every sink in the registry (except the in-memory one), and for each
further wire format of one (``slack-api``)."""

__all__ = [
    "SERVERS", "FreshdeskServer", "JiraSMServer", "LoseAs", "PagerDutyServer",
    "RequestTrackerServer", "ServiceNowServer", "SinkServer", "SlackApiServer", "SlackServer",
    "WebhookServer", "ZendeskServer", "basic", "jsonr",
]  # fmt: skip
