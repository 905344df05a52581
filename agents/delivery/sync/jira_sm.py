"""Jira Service Management -> inbox: the ``jira:issue_updated`` webhook, status category Done.

Set-up: a Jira webhook (Settings -> System -> WebHooks, or the REST API)
for "Issue: updated", optionally with a JQL filter on the service desk's
project, a secret, and the URL ``https://<worker>:<sync.port>/sync/jira_sm``.
Jira sends ``{"webhookEvent": "jira:issue_updated", "issue": {"id", "key",
"fields": {"status": {"name", "statusCategory": {"key": "done"}}}}, ...}``;
an issue whose status category key is ``done`` (Resolved, Closed, Done,
Canceled...) resolves its item.

Auth: with a secret, Jira Cloud signs the body: ``X-Hub-Signature:
sha256=<hex HMAC-SHA256(secret, body)>`` (WebSub style); it is compared in
constant time, and a request without a valid signature is answered 401 and
writes nothing. Rate limits: the body limit (``sync.max_body_bytes``, 413);
Jira retries a webhook answered 5xx. Idempotency: the issue key maps to the
Mention id through the sink ledger (the sink records ``issueKey``); a
redelivered or later update of a done issue finds the item resolved and
writes only the acknowledgement again. Guarantee: at-least-once (2xx only
after Kafka acknowledged both records).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from agents.delivery.sync.base import Solved
from agents.delivery.sync.config import JiraSync

EVENT = "jira:issue_updated"


def signature(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature`` value Jira sends for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class _Category(BaseModel):
    model_config = ConfigDict(extra="ignore")
    key: str = Field(max_length=50)


class _Status(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str = Field(default="", max_length=200)
    statusCategory: _Category  # noqa: N815 - Jira's field name


class _Fields(BaseModel):
    model_config = ConfigDict(extra="ignore")
    status: _Status


class _Issue(BaseModel):
    model_config = ConfigDict(extra="ignore")
    key: str = Field(pattern=r"^[A-Z][A-Z0-9_]{0,49}-[0-9]{1,18}$")
    fields: _Fields


class JiraPayload(BaseModel):
    """The parts of Jira's issue event the sync reads, validated."""

    model_config = ConfigDict(extra="ignore")

    webhookEvent: str = Field(max_length=100)  # noqa: N815 - Jira's field name
    issue: _Issue | None = None


class JiraWebhook:
    """Verifies and reads Jira's issue-updated webhook.

    Args:
        settings: The ``sync.jira_sm`` block (enabled, so with a secret).
    """

    name: ClassVar[str] = "jira_sm"

    def __init__(self, settings: JiraSync) -> None:
        if settings.secret is None:
            raise ValueError("sync.jira_sm needs the webhook's secret")
        self._secret = settings.secret.get_secret_value()

    def verify(self, headers: Mapping[str, str], body: bytes) -> bool:
        """``X-Hub-Signature`` matches (constant time)."""
        sent = headers.get("X-Hub-Signature", "")
        expected = signature(self._secret, body)
        return bool(sent) and hmac.compare_digest(
            expected.encode(), sent.encode("utf-8", "replace")
        )

    def solved(self, payload: Any) -> Solved | None:
        """The issue, if the event is an update into the Done category.

        Raises:
            ValueError: Not a Jira issue event.
        """
        body = JiraPayload.model_validate(payload)
        if body.webhookEvent != EVENT or body.issue is None:
            return None
        status = body.issue.fields.status
        if status.statusCategory.key.lower() != "done":
            return None
        return Solved(body.issue.key, status.name or "done")
