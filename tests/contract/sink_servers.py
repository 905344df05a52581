"""Local servers speaking each sink target's documented wire format, for the sink contract tests.

Each server runs on 127.0.0.1 (aiohttp), checks auth the way the real service
does and answers with its documented status codes and error bodies. Faults are
scripted: :meth:`SinkServer.script` queues canned answers (429 + Retry-After,
503) for the next requests, and ``lose_after_create`` makes the server create
the object and then answer 503, as when a response is lost on the way back.
``created`` holds what was really created, to count duplicates.

:data:`SERVERS` is keyed by sink name, plus ``-<mode>`` for a second wire
format of the same sink (``slack-api``: chat.postMessage beside the incoming
webhook); ``server.name`` is always the sink's registry name.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import math
import time
from collections.abc import Callable
from typing import Any, ClassVar

import orjson
from aiohttp import web
from pydantic import SecretStr

from agents.sinks.freshdesk import FreshdeskSettings, FreshdeskSink
from agents.sinks.jira_sm import JiraSMSettings, JiraSMSink
from agents.sinks.pagerduty import PagerDutySettings, PagerDutySink
from agents.sinks.request_tracker import RequestTrackerSettings, RequestTrackerSink
from agents.sinks.servicenow import ServiceNowSettings, ServiceNowSink
from agents.sinks.slack import SlackSettings, SlackSink
from agents.sinks.webhook import WebhookSettings, WebhookSink
from agents.sinks.zendesk import ZendeskSettings, ZendeskSink

SECRET = "whsec_" + base64.b64encode(b"contract-test-secret").decode()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def jsonr(body: Any, status: int, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, headers=headers, content_type="application/json"
    )


class SinkServer:
    """Base: routing, scripted faults, auth, a store of created objects."""

    name: ClassVar[str]
    mode: ClassVar[str] = ""
    routes: ClassVar[list[tuple[str, str]]]

    def __init__(self) -> None:
        self.created: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.lose_after_create = 0
        self.down: Callable[[], bool] = lambda: False  # an outage: 503 while it says so
        self._script: list[web.Response] = []
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        for method, path in self.routes:
            app.router.add_route(method, path, self._entry)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def script(self, status: int, count: int = 1, retry_after: str | None = None) -> None:
        for _ in range(count):
            headers = {"Retry-After": retry_after} if retry_after is not None else None
            self._script.append(self.error(status, headers))

    def error(self, status: int, headers: dict[str, str] | None = None) -> web.Response:
        return jsonr({"error": f"HTTP {status}"}, status, headers)

    async def _entry(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append((request.method, request.path_qs, dict(request.headers), body))
        if self._script:
            return self._script.pop(0)
        if self.down():
            return self.error(503)
        if not self.authorized(request):
            return self.unauthorized()
        before = len(self.created)
        response = await self.handle(request, orjson.loads(body) if body else {})
        if self.lose_after_create and len(self.created) > before:
            self.lose_after_create -= 1
            return self.error(503)
        return response

    def sink(self, good_auth: bool = True, clock: Any = None) -> Any:
        raise NotImplementedError

    def authorized(self, request: web.Request) -> bool:
        raise NotImplementedError

    def unauthorized(self) -> web.Response:
        raise NotImplementedError

    async def handle(self, request: web.Request, body: Any) -> web.Response:
        raise NotImplementedError

    def check(self, obj: dict[str, Any], mention_id: str) -> None:
        """Assert the created object carries what the sink must send."""
        raise NotImplementedError


class ZendeskServer(SinkServer):
    """Tickets API with Idempotency-Key replay (x-idempotency-lookup) and external_id lookup."""

    name = "zendesk"
    routes = [("POST", "/api/v2/tickets.json"), ("GET", "/api/v2/tickets.json")]

    def __init__(self) -> None:
        super().__init__()
        self.keys: dict[str, tuple[str, int, dict[str, Any]]] = {}

    def sink(self, good_auth: bool = True, clock: Any = None) -> ZendeskSink:
        token = "tok" if good_auth else "wrong"
        return ZendeskSink(
            ZendeskSettings(url=self.url, email="agent@acme.test", api_token=SecretStr(token))
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

    def sink(self, good_auth: bool = True, clock: Any = None) -> PagerDutySink:
        key = "R0UTINGKEY0000000000000000000000" if good_auth else "nope"
        return PagerDutySink(PagerDutySettings(url=self.url, routing_key=SecretStr(key)))

    def authorized(self, request: web.Request) -> bool:
        return True  # the routing key is in the body

    async def handle(self, request: web.Request, body: Any) -> web.Response:
        if body.get("routing_key") != "R0UTINGKEY0000000000000000000000":
            invalid = {"status": "invalid event", "message": "Event object is invalid"}
            return jsonr({**invalid, "errors": ["Invalid routing key"]}, 400)
        payload = body.get("payload", {})
        missing = [f for f in ("summary", "source", "severity") if not payload.get(f)]
        if missing or body.get("event_action") not in ("trigger", "acknowledge", "resolve"):
            errors = [f"'payload.{f}' is missing or blank" for f in missing]
            invalid = {"status": "invalid event", "message": "Event object is invalid"}
            return jsonr({**invalid, "errors": errors or ["bad event_action"]}, 400)
        key = body.get("dedup_key") or f"auto-{next(self._ids)}"
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

    def sink(self, good_auth: bool = True, clock: Any = None) -> SlackSink:
        secret = "XXXXgoodsecret" if good_auth else "revoked"
        url = f"{self.url}/services/T000/B000/{secret}"
        settings = SlackSettings(url=url, min_interval_s=0)
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
        channel: str = "C0SUPPORT",
        **settings: Any,
    ) -> SlackSink:
        token = self.TOKEN if good_auth else "xoxb-1111-2222-revoked"
        self.clock = clock
        settings.setdefault("min_interval_s", 1.0 if clock is not None else 0)
        config = SlackSettings(
            url=f"{self.url}/api", token=SecretStr(token), channel=channel, **settings
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

    def sink(self, good_auth: bool = True, clock: Any = None) -> WebhookSink:
        secret = SECRET if good_auth else "whsec_" + base64.b64encode(b"other").decode()
        return WebhookSink(WebhookSettings(url=f"{self.url}/hooks/brand", secret=SecretStr(secret)))

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


class JiraSMServer(SinkServer):
    """Service Management REST: create customer request, 201 with issueKey."""

    name = "jira_sm"
    routes = [("POST", "/rest/servicedeskapi/request")]

    def sink(self, good_auth: bool = True, clock: Any = None) -> JiraSMSink:
        token = "atl-token" if good_auth else "expired"
        settings = JiraSMSettings(
            url=self.url, email="bot@acme.test", api_token=SecretStr(token),
            service_desk_id="10", request_type_id="25",
        )  # fmt: skip
        return JiraSMSink(settings)

    def authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == basic("bot@acme.test", "atl-token")

    def unauthorized(self) -> web.Response:
        return web.Response(text="Client must be authenticated to access this resource.",
                            status=401)  # fmt: skip

    async def handle(self, request: web.Request, body: Any) -> web.Response:
        fields = body.get("requestFieldValues", {})
        if (
            not body.get("serviceDeskId")
            or not body.get("requestTypeId")
            or not fields.get("summary")
        ):
            msg = "Your request could not be created. Please check the fields."
            return jsonr(
                {"errorMessage": msg, "i18nErrorMessage": {"i18nKey": "sd.request.create.error"}},
                400,
            )
        n = next(self._ids)
        key = f"SD-{n}"
        self.created[key] = body
        links = {"web": f"{self.url}/servicedesk/customer/portal/10/{key}"}
        return jsonr({"issueId": str(10000 + n), "issueKey": key, "_links": links}, 201)

    def check(self, obj: dict[str, Any], mention_id: str) -> None:
        assert obj["serviceDeskId"] == "10" and obj["requestTypeId"] == "25"
        assert mention_id in obj["requestFieldValues"]["description"]


class FreshdeskServer(SinkServer):
    """Freshdesk v2 tickets: API key basic auth, validation errors in ``errors[]``."""

    name = "freshdesk"
    routes = [("POST", "/api/v2/tickets")]

    def sink(self, good_auth: bool = True, clock: Any = None) -> FreshdeskSink:
        key = "fd-key" if good_auth else "bad"
        return FreshdeskSink(FreshdeskSettings(url=self.url, api_key=SecretStr(key)))

    def authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == basic("fd-key", "X")

    def unauthorized(self) -> web.Response:
        msg = "You have to be logged in to perform this action."
        return jsonr({"code": "invalid_credentials", "message": msg}, 401)

    async def handle(self, request: web.Request, body: Any) -> web.Response:
        requester = (
            "requester_id",
            "email",
            "phone",
            "twitter_id",
            "unique_external_id",
            "facebook_id",
        )
        if not any(body.get(f) for f in requester):
            error = {
                "field": "requester_id",
                "message": "Please fill at least 1 of email, mobile, phone, twitter_id, "
                "unique_external_id, facebook_id, requester_id fields",
                "code": "missing_field",
            }  # noqa: E501
            return jsonr({"description": "Validation failed", "errors": [error]}, 400)
        n = next(self._ids)
        self.created[str(n)] = body
        return jsonr({**body, "id": n}, 201)

    def check(self, obj: dict[str, Any], mention_id: str) -> None:
        assert obj["priority"] == 4 and obj["status"] == 2
        assert mention_id in obj["description"] and obj["unique_external_id"]


class ServiceNowServer(SinkServer):
    """Table API: sysparm_query lookup, 201 with ``result``, documented 401 body."""

    name = "servicenow"
    routes = [("GET", "/api/now/table/incident"), ("POST", "/api/now/table/incident")]

    def sink(self, good_auth: bool = True, clock: Any = None) -> ServiceNowSink:
        password = "sn-pass" if good_auth else "old"
        return ServiceNowSink(
            ServiceNowSettings(url=self.url, user="integ", password=SecretStr(password))
        )

    def authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == basic("integ", "sn-pass")

    def unauthorized(self) -> web.Response:
        error = {
            "message": "User Not Authenticated",
            "detail": "Required to provide Auth information",
        }
        return jsonr({"error": error, "status": "failure"}, 401)

    async def handle(self, request: web.Request, body: Any) -> web.Response:
        if request.method == "GET":
            query = request.query.get("sysparm_query", "")
            field, _, value = query.partition("=")
            found = [r for r in self.created.values() if field and r.get(field) == value]
            return jsonr({"result": found[: int(request.query.get("sysparm_limit", "10000"))]}, 200)
        n = next(self._ids)
        record = {
            **body,
            "sys_id": hashlib.md5(str(n).encode()).hexdigest(),
            "number": f"INC{n:07d}",
        }
        self.created[record["number"]] = record
        return jsonr({"result": record}, 201)

    def check(self, obj: dict[str, Any], mention_id: str) -> None:
        assert obj["correlation_id"] == mention_id and obj["urgency"] == "1"


class RequestTrackerServer(SinkServer):
    """RT5 REST2: ``Authorization: token``, 201 with id/type/_url, ``{"message": ...}`` errors."""

    name = "request_tracker"
    routes = [("POST", "/REST/2.0/ticket")]

    def sink(self, good_auth: bool = True, clock: Any = None) -> RequestTrackerSink:
        token = "1-14-abcdef" if good_auth else "1-14-revoked"
        return RequestTrackerSink(RequestTrackerSettings(url=self.url, token=SecretStr(token)))

    def authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == "token 1-14-abcdef"

    def unauthorized(self) -> web.Response:
        return jsonr({"message": "Unauthorized"}, 401)

    async def handle(self, request: web.Request, body: Any) -> web.Response:
        if not body.get("Queue"):
            return jsonr({"message": "Could not create ticket. Queue not set"}, 400)
        n = next(self._ids)
        self.created[str(n)] = body
        return jsonr(
            {"id": str(n), "type": "ticket", "_url": f"{self.url}/REST/2.0/ticket/{n}"}, 201
        )

    def check(self, obj: dict[str, Any], mention_id: str) -> None:
        assert obj["Queue"] == "General" and obj["Priority"] == 90
        assert mention_id in obj["Content"]


SERVERS: dict[str, type[SinkServer]] = {
    s.name + (f"-{s.mode}" if s.mode else ""): s
    for s in (ZendeskServer, PagerDutyServer, SlackServer, SlackApiServer, WebhookServer,
              JiraSMServer, FreshdeskServer, ServiceNowServer, RequestTrackerServer)
}  # fmt: skip
"""A local server for every sink in the registry (except the in-memory one), and for each
further wire format of one (``slack-api``)."""
