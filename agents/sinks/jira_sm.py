"""Jira Service Management: a request per mention (``POST /rest/servicedeskapi/request``)."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import aiohttp
import orjson
from pydantic import BaseModel, Field, SecretStr

from agents.sinks.base import DeliveryResult, HttpClient, SinkSettings, description, summary
from agents.sinks.lookup import (
    PendingCreates,
    create_once,
    find_or_create,
    jql_string,
    mention_tag,
)
from listener.errors import SkippableError
from listener.record import Mention

log = logging.getLogger(__name__)


class JiraSMSettings(SinkSettings):
    """Jira Cloud site: ``url`` is ``https://<site>.atlassian.net``."""

    email: str = Field(min_length=3, description="Atlassian account email.")
    api_token: SecretStr
    service_desk_id: str = Field(min_length=1)
    request_type_id: str = Field(min_length=1)
    mention_label: bool = Field(
        default=True,
        description="Label each request bl-<digest of the Mention id> and look it up by JQL "
        "after an ambiguous failure; the request type must have the Labels field.",
    )


class JiraSMSink:
    """Creates a Jira Service Management request for a mention.

    Auth: HTTP basic ``<email>:<API token>``. Rate limits: Atlassian's
    cost-based limits; 429 carries Retry-After, honoured by the deliverer.
    Idempotency: the API has no idempotency key. Each request carries the
    label :func:`~agents.sinks.lookup.mention_tag` (``bl-`` + a digest of the
    Mention id) in ``requestFieldValues.labels``; when a create timed out, lost
    its connection or got a 5xx, the next attempt first searches
    ``GET /rest/api/3/search/jql`` with ``labels = "bl-..."`` and takes the
    request found instead of creating another. The ledger (``uses_ledger``)
    maps each Mention id to its issue key and answers redeliveries without a
    call. The request type's form must include the Labels field; if Jira
    refuses the label (HTTP 400 naming ``labels``) the sink logs it once and
    creates without labels (no lookup: at-least-once). Guarantee: at-least-once,
    one request per Mention id, except when a worker crashes between a create
    and its ledger write, or Jira's search index has not caught up with a
    request created moments before (it usually has within seconds).

    Args:
        settings: Site, credentials, service desk and request type.
    """

    name: ClassVar[str] = "jira_sm"
    uses_ledger: ClassVar[bool] = True
    settings_model: ClassVar[type[BaseModel]] = JiraSMSettings

    def __init__(self, settings: JiraSMSettings) -> None:
        self.settings = settings
        self._base = settings.url.rstrip("/")
        auth = aiohttp.BasicAuth(settings.email, settings.api_token.get_secret_value())
        headers = {"Accept": "application/json"}
        self._http = HttpClient("jira_sm", settings.timeout_s, headers=headers, auth=auth)
        self._labels = settings.mention_label
        self._pending = PendingCreates()

    def accepts(self, mention: Mention) -> bool:
        """Mentions whose priority is in ``settings.priorities``."""
        return self.settings.accepts(mention)

    def request(self, mention: Mention) -> dict[str, Any]:
        """The create-request body for ``mention``."""
        fields: dict[str, Any] = {
            "summary": summary(mention),
            "description": description(mention),
        }
        if self._labels:
            fields["labels"] = [mention_tag(mention.id)]
        return {
            "serviceDeskId": self.settings.service_desk_id,
            "requestTypeId": self.settings.request_type_id,
            "requestFieldValues": fields,
        }

    async def deliver(self, mention: Mention) -> DeliveryResult:
        """Create the request (or find the one an ambiguous attempt made); id = issue key."""
        return await find_or_create(
            self._pending, mention.id, lambda: self.find(mention.id), lambda: self._create(mention)
        )

    async def _create(self, mention: Mention) -> str:
        url = f"{self._base}/rest/servicedeskapi/request"
        labelled = self._labels
        try:
            text = await create_once(
                "jira_sm", self._http, self._pending, mention.id, url, json=self.request(mention)
            )
        except SkippableError as exc:
            if not (labelled and "labels" in str(exc).lower()):
                raise
            log.warning(
                "jira_sm: the request type refused the lookup label (%s); creating without "
                "it: add the Labels field to the request type for one request per mention",
                exc,
            )
            self._labels = False
            text = await create_once(
                "jira_sm", self._http, self._pending, mention.id, url, json=self.request(mention)
            )
        return str(orjson.loads(text)["issueKey"])

    async def find(self, mention_id: str) -> str | None:
        """The key of the oldest issue labelled for ``mention_id``, or None (no label: None)."""
        if not self._labels:
            return None
        tag = mention_tag(mention_id)
        params = {
            "jql": f"labels = {jql_string(tag)} ORDER BY created ASC",
            "fields": "labels",
            "maxResults": "10",
        }
        _, _, text = await self._http.request(
            "GET", f"{self._base}/rest/api/3/search/jql", params=params
        )
        for issue in orjson.loads(text).get("issues") or []:
            if tag in (issue.get("fields") or {}).get("labels", []):
                return str(issue["key"])
        return None

    async def close(self) -> None:
        """Close the HTTP session."""
        await self._http.close()
