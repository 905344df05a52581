"""Local servers for the ticketing targets without an idempotency key, searches included.

Jira Service Management (create request; JQL search ``GET /rest/api/3/search/jql``),
Freshdesk v2 (create ticket; list ``GET /api/v2/tickets`` filtered by the
requester's ``unique_external_id``), ServiceNow (Table API with
``sysparm_query``) and Request Tracker 5 REST2 (create ticket with custom
fields; TicketSQL search ``GET /REST/2.0/tickets?query=``). Searches answer
with the documented response shapes and pagination fields; a query the real
parser would refuse is refused the same way (400 and the target's error body).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import orjson
from aiohttp import web
from pydantic import SecretStr

from agents.sinks.freshdesk import FreshdeskSettings, FreshdeskSink
from agents.sinks.jira_sm import JiraSMSettings, JiraSMSink
from agents.sinks.request_tracker import RequestTrackerSettings, RequestTrackerSink
from agents.sinks.servicenow import ServiceNowSettings, ServiceNowSink

from .helpdesk_webhooks import jira_headers, jira_issue_updated, post
from .query_syntax import QuerySyntaxError, parse
from .sink_server_base import SinkServer, basic, jsonr


class JiraSMServer(SinkServer):
    """Service Management REST: create customer request (201 with issueKey); JQL search.

    ``labels_on_form`` False plays a request type whose form lacks the Labels
    field: a create that sets labels is refused with 400.
    """

    name = "jira_sm"
    routes = [("POST", "/rest/servicedeskapi/request"), ("GET", "/rest/api/3/search/jql")]

    def __init__(self) -> None:
        super().__init__()
        self.labels_on_form = True

    def sink(
        self, good_auth: bool = True, clock: Any = None, timeout_s: float = 10.0
    ) -> JiraSMSink:
        token = "atl-token" if good_auth else "expired"
        settings = JiraSMSettings(
            url=self.url, email="bot@acme.test", api_token=SecretStr(token),
            service_desk_id="10", request_type_id="25", timeout_s=timeout_s,
        )  # fmt: skip
        return JiraSMSink(settings)

    def authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == basic("bot@acme.test", "atl-token")

    def unauthorized(self) -> web.Response:
        return web.Response(text="Client must be authenticated to access this resource.",
                            status=401)  # fmt: skip

    async def handle(self, request: web.Request, body: Any) -> web.Response:
        if request.method == "GET":
            return self.search(request)
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
        labels = fields.get("labels", [])
        if labels and not self.labels_on_form:
            msg = "The field 'labels' is not valid for this request type."
            return jsonr({"errorMessage": msg, "i18nErrorMessage": {"i18nKey": msg}}, 400)
        if any(not isinstance(label, str) or " " in label for label in labels):
            return jsonr({"errorMessage": "The label contains spaces which is invalid."}, 400)
        n = next(self._ids)
        key = f"SD-{n}"
        self.created[key] = {**body, "id": str(10000 + n), "key": key}
        links = {"web": f"{self.url}/servicedesk/customer/portal/10/{key}"}
        return jsonr({"issueId": str(10000 + n), "issueKey": key, "_links": links}, 201)

    def search(self, request: web.Request) -> web.Response:
        """``GET /rest/api/3/search/jql``: ``labels = "..."``, maxResults, nextPageToken."""
        try:
            query = parse(request.query.get("jql", ""), jql=True)
        except QuerySyntaxError as exc:
            errors = {"errorMessages": [f"Error in the JQL Query: {exc}"], "errors": {}}
            return jsonr(errors, 400)
        found = list(self.created.values())
        for key, op, value in query.clauses:
            if key.lower() != "labels" or op != "=":
                msg = f"Field '{key}' does not exist or you do not have permission to view it."
                return jsonr({"errorMessages": [msg], "errors": {}}, 400)
            found = [i for i in found if value in i["requestFieldValues"].get("labels", [])]
        if query.order_by is not None and query.order_by[1] == "DESC":
            found.reverse()  # created order is key order here
        start = int(request.query.get("nextPageToken", "0"))
        size = min(int(request.query.get("maxResults", "50")), 5000)
        wanted = [f for f in request.query.get("fields", "").split(",") if f]
        issues = [
            {
                "expand": "",
                "id": issue["id"],
                "key": issue["key"],
                "self": f"{self.url}/rest/api/3/issue/{issue['id']}",
                "fields": {
                    f: issue["requestFieldValues"].get(f) for f in wanted if f != "*navigable"
                },
            }
            for issue in found[start : start + size]
        ]
        answer: dict[str, Any] = {"issues": issues, "isLast": start + size >= len(found)}
        if not answer["isLast"]:
            answer["nextPageToken"] = str(start + size)
        return jsonr(answer, 200)

    async def transition(
        self, key: str, target: str, secret: str, status: str = "Resolved", category: str = "done"
    ) -> tuple[int, Any]:
        """Move the issue to ``status`` and send the signed ``jira:issue_updated`` webhook."""
        issue = self.created[key]
        issue["status"] = status
        body = orjson.dumps(jira_issue_updated(issue, status, category))
        return await post(target, body, jira_headers(secret, body))

    def check(self, obj: dict[str, Any], mention_id: str) -> None:
        assert obj["serviceDeskId"] == "10" and obj["requestTypeId"] == "25"
        assert mention_id in obj["requestFieldValues"]["description"]
        assert [label.startswith("bl-") for label in obj["requestFieldValues"]["labels"]] == [True]


FRESHDESK_LIST_PARAMS = frozenset(
    {"filter", "requester_id", "email", "unique_external_id", "company_id", "updated_since",
     "order_by", "order_type", "include", "per_page", "page"}
)  # fmt: skip
"""Query parameters ``GET /api/v2/tickets`` accepts; any other is a 400 ``invalid_field``."""


class FreshdeskServer(SinkServer):
    """Freshdesk v2 tickets: API key basic auth, validation errors in ``errors[]``; list filters."""

    name = "freshdesk"
    routes = [("POST", "/api/v2/tickets"), ("GET", "/api/v2/tickets")]

    def sink(
        self, good_auth: bool = True, clock: Any = None, timeout_s: float = 10.0
    ) -> FreshdeskSink:
        key = "fd-key" if good_auth else "bad"
        settings = FreshdeskSettings(url=self.url, api_key=SecretStr(key), timeout_s=timeout_s)
        return FreshdeskSink(settings)

    def authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == basic("fd-key", "X")

    def unauthorized(self) -> web.Response:
        msg = "You have to be logged in to perform this action."
        return jsonr({"code": "invalid_credentials", "message": msg}, 401)

    @staticmethod
    def invalid(field: str, message: str, code: str) -> web.Response:
        error = {"field": field, "message": message, "code": code}
        return jsonr({"description": "Validation failed", "errors": [error]}, 400)

    async def handle(self, request: web.Request, body: Any) -> web.Response:
        if request.method == "GET":
            return self.list(request)
        requester = (
            "requester_id",
            "email",
            "phone",
            "twitter_id",
            "unique_external_id",
            "facebook_id",
        )
        if not any(body.get(f) for f in requester):
            return self.invalid(
                "requester_id",
                "Please fill at least 1 of email, mobile, phone, twitter_id, "
                "unique_external_id, facebook_id, requester_id fields",
                "missing_field",
            )
        n = next(self._ids)
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.created[str(n)] = {**body, "id": n, "created_at": now, "updated_at": now}
        return jsonr({**body, "id": n, "created_at": now, "updated_at": now}, 201)

    async def set_status(
        self, ticket_id: str, target: str, header: tuple[str, str], status: int = 4
    ) -> tuple[int, Any]:
        """Set the ticket's status (4 Resolved, 5 Closed) and fire the rule's webhook.

        The content is what the rule's JSON template (``{{ticket.id}}``,
        ``{{ticket.status}}``) renders to; ``header`` is the custom header the rule sends.
        """
        self.created[ticket_id]["status"] = status
        names = {2: "Open", 3: "Pending", 4: "Resolved", 5: "Closed"}
        body = orjson.dumps(
            {"freshdesk_webhook": {"ticket_id": ticket_id, "ticket_status": names[status]}}
        )
        return await post(target, body, {header[0]: header[1]})

    def list(self, request: web.Request) -> web.Response:
        """``GET /api/v2/tickets``: requester filters, order, 1-100 per page, ``link`` next."""
        for name in request.query:
            if name not in FRESHDESK_LIST_PARAMS:
                return self.invalid(name, "Unexpected/invalid field in request", "invalid_field")
        per_page = request.query.get("per_page", "30")
        if not per_page.isdigit() or not 1 <= int(per_page) <= 100:
            return self.invalid(
                "per_page", "It should be a Positive Number less than or equal to 100",
                "invalid_value",
            )  # fmt: skip
        tickets = list(self.created.values())
        uid = request.query.get("unique_external_id")
        if uid is not None:
            tickets = [t for t in tickets if t.get("unique_external_id") == uid]
        if request.query.get("order_type", "desc") == "desc":
            tickets.reverse()  # created_at order is id order here
        size, page = int(per_page), int(request.query.get("page", "1"))
        shown = [
            {k: v for k, v in t.items() if k not in ("description", "unique_external_id")}
            for t in tickets[(page - 1) * size : page * size]
        ]
        headers = {}
        if page * size < len(tickets):
            following = urlencode({**request.query, "page": str(page + 1)})
            headers["link"] = f'<{self.url}/api/v2/tickets?{following}>; rel="next"'
        return jsonr(shown, 200, headers)

    def check(self, obj: dict[str, Any], mention_id: str) -> None:
        assert obj["priority"] == 4 and obj["status"] == 2
        assert mention_id in obj["description"] and obj["unique_external_id"]
        assert sum(tag.startswith("bl-") for tag in obj["tags"]) == 1


class ServiceNowServer(SinkServer):
    """Table API: sysparm_query lookup, 201 with ``result``, documented 401 body."""

    name = "servicenow"
    routes = [("GET", "/api/now/table/incident"), ("POST", "/api/now/table/incident")]

    def sink(
        self, good_auth: bool = True, clock: Any = None, timeout_s: float = 10.0
    ) -> ServiceNowSink:
        password = "sn-pass" if good_auth else "old"
        return ServiceNowSink(
            ServiceNowSettings(
                url=self.url, user="integ", password=SecretStr(password), timeout_s=timeout_s
            )
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
            found = [r for r in self.created.values() if _encoded_match(query, r)]
            wanted = [f for f in request.query.get("sysparm_fields", "").split(",") if f]
            if wanted:
                found = [{f: r.get(f, "") for f in wanted} for r in found]
            return jsonr({"result": found[: int(request.query.get("sysparm_limit", "10000"))]}, 200)
        n = next(self._ids)
        record = {
            "state": "1",
            **body,
            "sys_id": hashlib.md5(str(n).encode()).hexdigest(),
            "number": f"INC{n:07d}",
        }
        self.created[record["number"]] = record
        return jsonr({"result": record}, 201)

    def set_state(self, number: str, state: str) -> None:
        """Move an incident to ``state`` (6 Resolved, 7 Closed, 8 Canceled)."""
        self.created[number]["state"] = state

    def check(self, obj: dict[str, Any], mention_id: str) -> None:
        assert obj["correlation_id"] == mention_id and obj["urgency"] == "1"


class RequestTrackerServer(SinkServer):
    """RT5 REST2: ``Authorization: token``, 201 with id/type/_url, ``{"message": ...}`` errors.

    The queue has the ticket custom fields in ``custom_fields`` (name -> id); as
    RT does, a create naming another custom field creates the ticket without
    it. TicketSQL ``=`` on a custom field compares without case (RT on SQLite
    and MySQL alike), so the sink must check the values it gets back.
    """

    name = "request_tracker"
    routes = [
        ("POST", "/REST/2.0/ticket"),
        ("GET", "/REST/2.0/tickets"),
        ("GET", "/REST/2.0/ticket/{id}"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.custom_fields = {"Mention Id": 2}

    def sink(
        self, good_auth: bool = True, clock: Any = None, timeout_s: float = 10.0
    ) -> RequestTrackerSink:
        token = "1-14-abcdef" if good_auth else "1-14-revoked"
        settings = RequestTrackerSettings(url=self.url, token=SecretStr(token), timeout_s=timeout_s)
        return RequestTrackerSink(settings)

    def authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == "token 1-14-abcdef"

    def unauthorized(self) -> web.Response:
        return jsonr({"message": "Unauthorized"}, 401)

    async def handle(self, request: web.Request, body: Any) -> web.Response:
        if request.method == "GET" and "id" in request.match_info:
            return self.show(request.match_info["id"])
        if request.method == "GET":
            return self.search(request)
        if not body.get("Queue"):
            return jsonr({"message": "Could not create ticket. Queue not set"}, 400)
        n = next(self._ids)
        cfs = {k: v for k, v in (body.get("CustomFields") or {}).items() if k in self.custom_fields}
        self.created[str(n)] = {**body, "CustomFields": cfs, "id": str(n)}
        return jsonr(
            {"id": str(n), "type": "ticket", "_url": f"{self.url}/REST/2.0/ticket/{n}"}, 201
        )

    def show(self, ticket_id: str) -> web.Response:
        """``GET /REST/2.0/ticket/<id>``: its fields, ``Status`` among them; 404 if none."""
        ticket = self.created.get(ticket_id)
        if ticket is None:
            return jsonr({"message": "Resource does not exist"}, 404)
        url = f"{self.url}/REST/2.0/ticket/{ticket_id}"
        return jsonr(
            {"id": int(ticket_id), "type": "ticket", "Subject": ticket.get("Subject", ""),
             "Status": ticket.get("Status", "new"), "Priority": str(ticket.get("Priority", "")),
             "Queue": {"type": "queue", "id": "1", "_url": f"{self.url}/REST/2.0/queue/1"},
             "_hyperlinks": [{"ref": "self", "type": "ticket", "id": int(ticket_id),
                              "_url": url}]},
            200,
        )  # fmt: skip

    def set_status(self, ticket_id: str, status: str) -> None:
        """Set the ticket's ``Status`` (resolved, rejected, deleted, stalled, open...)."""
        self.created[ticket_id]["Status"] = status

    def search(self, request: web.Request) -> web.Response:
        """``GET /REST/2.0/tickets?query=<TicketSQL>``: CF and Queue clauses, paging fields."""
        text = request.query.get("query", "")
        try:
            query = parse(text, jql=False)
        except QuerySyntaxError as exc:
            return jsonr({"message": f"Wrong query, {exc} in '{text}'"}, 400)
        found = list(self.created.values())
        for key, op, value in query.clauses:
            if op != "=":
                return jsonr({"message": f"Wrong query, operator {op} not handled here"}, 400)
            if key.upper().startswith("CF.{"):
                name = key[4:-1]
                found = [t for t in found if _same(t["CustomFields"].get(name), value)]
            elif key.lower() == "queue":
                found = [t for t in found if _same(t.get("Queue"), value)]
            else:
                return jsonr({"message": f"Wrong query, no such column '{key}'"}, 400)
        if request.query.get("order", "ASC").upper() == "DESC":
            found.reverse()
        per_page = min(int(request.query.get("per_page", "20")), 100)
        page = int(request.query.get("page", "1"))
        items = [self._item(t, request) for t in found[(page - 1) * per_page : page * per_page]]
        pages = -(-len(found) // per_page)
        answer: dict[str, Any] = {
            "count": len(items), "page": page, "per_page": per_page, "pages": pages,
            "total": len(found), "items": items,
        }  # fmt: skip
        if page < pages:
            answer["next_page"] = f"{self.url}/REST/2.0/tickets?page={page + 1}"
        return jsonr(answer, 200)

    def _item(self, ticket: dict[str, Any], request: web.Request) -> dict[str, Any]:
        item: dict[str, Any] = {
            "type": "ticket", "id": ticket["id"],
            "_url": f"{self.url}/REST/2.0/ticket/{ticket['id']}",
        }  # fmt: skip
        if "CustomFields" in request.query.get("fields", "").split(","):
            item["CustomFields"] = [
                {"type": "customfield", "id": str(cf_id), "name": name,
                 "_url": f"{self.url}/REST/2.0/customfield/{cf_id}",
                 "values": [ticket["CustomFields"][name]] if name in ticket["CustomFields"] else []}
                for name, cf_id in self.custom_fields.items()
            ]  # fmt: skip
        return item

    def check(self, obj: dict[str, Any], mention_id: str) -> None:
        assert obj["Queue"] == "General" and obj["Priority"] == 90
        assert mention_id in obj["Content"]
        assert obj["CustomFields"] == {"Mention Id": mention_id}


def _encoded_match(query: str, record: dict[str, Any]) -> bool:
    """An encoded query's ``field=value`` / ``field!=value`` conditions: ``^`` AND, ``^OR`` OR."""
    if not query:
        return True
    for group in query.split("^NQ"):
        ands = [part.split("^OR") for part in group.split("^") if part]
        # "a^ORb" splits on "^" into "a", "ORb": an OR joins the previous condition
        merged: list[list[str]] = []
        for part in ands:
            if merged and part[0].startswith("OR"):
                merged[-1].append(part[0][2:])
            else:
                merged.append(part)
        if all(any(_condition(c, record) for c in ors) for ors in merged):
            return True
    return False


def _condition(condition: str, record: dict[str, Any]) -> bool:
    field, op, values = condition.partition("IN")
    if op and "=" not in condition and field.isidentifier():  # fieldIN<a>,<b>
        return str(record.get(field, "")) in values.split(",")
    if "!=" in condition:
        field, _, value = condition.partition("!=")
        return str(record.get(field, "")) != value
    field, _, value = condition.partition("=")
    return str(record.get(field, "")) == value


def _same(stored: Any, value: str) -> bool:
    return isinstance(stored, str) and stored.casefold() == value.casefold()
