"""What the helpdesk servers send back: their documented "ticket solved" webhooks, as a client.

The contract servers (:mod:`.sink_servers`, :mod:`.ticket_servers`) call these
to notify the worker's receiver the way the real system does: Zendesk's
trigger webhook signed with ``X-Zendesk-Webhook-Signature`` (base64
HMAC-SHA256 over timestamp + body) and ``...-Timestamp``; Jira's
``jira:issue_updated`` event signed with ``X-Hub-Signature: sha256=<hex>``;
Freshdesk's automation-rule webhook with the custom header the rule sets.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson


async def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    """POST ``body`` to ``url``; the status and the decoded JSON answer."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers={"Content-Type": "application/json", **headers}) as r,
    ):
        text = await r.read()
        return r.status, orjson.loads(text) if text else None


def zendesk_headers(secret: str, body: bytes, at: datetime | None = None) -> dict[str, str]:
    """Zendesk's signature headers for ``body`` (developer.zendesk.com, verifying webhooks)."""
    timestamp = (at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    digest = hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()
    return {
        "X-Zendesk-Webhook-Signature": base64.b64encode(digest).decode(),
        "X-Zendesk-Webhook-Signature-Timestamp": timestamp,
        "User-Agent": "Zendesk Webhook",
    }


def jira_issue_updated(issue: dict[str, Any], status: str, category: str) -> dict[str, Any]:
    """A ``jira:issue_updated`` event for a status change (Jira Cloud webhook payload)."""
    categories = {
        "new": ("2", "To Do"),
        "indeterminate": ("4", "In Progress"),
        "done": ("3", "Done"),
    }
    cat_id, cat_name = categories[category]
    return {
        "timestamp": int(datetime.now(UTC).timestamp() * 1000),
        "webhookEvent": "jira:issue_updated",
        "issue_event_type_name": "issue_generic",
        "user": {"accountId": "5b10ac8d82e05b22cc7d4ef5", "displayName": "Support Agent"},
        "issue": {
            "id": issue["id"],
            "key": issue["key"],
            "self": f"https://acme.atlassian.net/rest/api/2/issue/{issue['id']}",
            "fields": {
                "summary": issue["requestFieldValues"]["summary"],
                "status": {
                    "name": status,
                    "id": "10001",
                    "statusCategory": {"id": int(cat_id), "key": category, "name": cat_name},
                },
            },
        },
        "changelog": {
            "id": "10400",
            "items": [{"field": "status", "fieldtype": "jira", "toString": status}],
        },
    }


def jira_headers(secret: str, body: bytes) -> dict[str, str]:
    """Jira Cloud's ``X-Hub-Signature`` for a webhook registered with a secret."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature": f"sha256={digest}", "X-Atlassian-Webhook-Identifier": "1-2-3"}
