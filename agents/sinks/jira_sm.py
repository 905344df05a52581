"""Jira Service Management: a request per mention (``POST /rest/servicedeskapi/request``)."""

from __future__ import annotations

from typing import ClassVar

import aiohttp
import orjson
from pydantic import BaseModel, Field, SecretStr

from agents.sinks.base import DeliveryResult, HttpClient, SinkSettings, description, summary
from listener.record import Mention


class JiraSMSettings(SinkSettings):
    """Jira Cloud site: ``url`` is ``https://<site>.atlassian.net``."""

    email: str = Field(min_length=3, description="Atlassian account email.")
    api_token: SecretStr
    service_desk_id: str = Field(min_length=1)
    request_type_id: str = Field(min_length=1)


class JiraSMSink:
    """Creates a Jira Service Management request for a mention.

    Auth: HTTP basic ``<email>:<API token>``. Rate limits: Atlassian's
    cost-based limits; 429 carries Retry-After, honoured by the deliverer.
    Idempotency: the API has no idempotency key, so the ledger (``uses_ledger``)
    maps each Mention id to its issue key and is consulted before creating; the
    Mention id is also written into the description. Guarantee: at-least-once;
    a crash between create and the ledger write can create one duplicate.

    Args:
        settings: Site, credentials, service desk and request type.
    """

    name: ClassVar[str] = "jira_sm"
    uses_ledger: ClassVar[bool] = True
    settings_model: ClassVar[type[BaseModel]] = JiraSMSettings

    def __init__(self, settings: JiraSMSettings) -> None:
        self.settings = settings
        auth = aiohttp.BasicAuth(settings.email, settings.api_token.get_secret_value())
        headers = {"Accept": "application/json"}
        self._http = HttpClient("jira_sm", settings.timeout_s, headers=headers, auth=auth)

    def accepts(self, mention: Mention) -> bool:
        """Mentions whose priority is in ``settings.priorities``."""
        return self.settings.accepts(mention)

    async def deliver(self, mention: Mention) -> DeliveryResult:
        """Create the request; the external id is the issue key (e.g. ``SD-12``)."""
        body = {
            "serviceDeskId": self.settings.service_desk_id,
            "requestTypeId": self.settings.request_type_id,
            "requestFieldValues": {
                "summary": summary(mention),
                "description": description(mention),
            },
        }
        url = self.settings.url.rstrip("/") + "/rest/servicedeskapi/request"
        _, _, text = await self._http.request("POST", url, json=body)
        return DeliveryResult(str(orjson.loads(text)["issueKey"]), created=True)

    async def close(self) -> None:
        """Close the HTTP session."""
        await self._http.close()
