"""The worker's ``sync`` settings block: which helpdesks report solved tickets back, and how.

Everything is off by default. ``sync.<sink>.enabled`` needs the sink of that
name configured under ``sinks`` (its ledger entries are the tickets synced, its
credentials are used by the polls). Webhook systems (Zendesk, Jira Service
Management, Freshdesk) are received by one aiohttp server in the worker on
``sync.host:sync.port`` (path ``/sync/<sink>``); poll systems (ServiceNow,
Request Tracker) are read every ``interval_s``, at most ``batch`` tickets a
round. ``sync.pagerduty`` turns inbox actions into PagerDuty
acknowledge/resolve events.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

MAX_BODY_BYTES = 256 * 1024


class _Block(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(default=False, description="Sync this system back (off by default).")


class _SecretBlock(_Block):
    secret: SecretStr | None = Field(default=None, description="The webhook's signing secret.")

    @model_validator(mode="after")
    def _needs_secret(self) -> _SecretBlock:
        if self.enabled and (self.secret is None or len(self.secret.get_secret_value()) < 8):
            raise ValueError("an enabled webhook needs a secret of at least 8 characters")
        return self


class ZendeskSync(_SecretBlock):
    """Zendesk webhook (signed): ``secret`` is the webhook's signing secret."""

    max_skew_s: float = Field(
        default=300.0, gt=0, description="Refuse a signature timestamp further off than this."
    )


class JiraSync(_SecretBlock):
    """Jira webhook with a secret (``X-Hub-Signature: sha256=<hex>``)."""


class FreshdeskSync(_SecretBlock):
    """Freshdesk automation webhook: Freshdesk does not sign, so it sends ``secret`` in a header."""

    header: str = Field(
        default="X-Brand-Listener-Token",
        pattern=r"^[A-Za-z0-9-]{1,64}$",
        description="The custom header the automation rule sends the secret in.",
    )


class PollSync(_Block):
    """A poll of the tickets the ledger knows for this sink."""

    interval_s: float = Field(default=60.0, ge=1, description="Seconds between rounds.")
    batch: int = Field(default=50, ge=1, le=500, description="Most tickets read per round.")


class PagerDutySync(_Block):
    """Inbox actions -> PagerDuty: claim/first response acknowledge, resolve resolves."""


class SyncConfig(BaseModel):
    """The ``sync`` block (``AGENTS_SYNC__ZENDESK__ENABLED=true`` etc.)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = Field(default="0.0.0.0", description="Bind address of the webhook receiver.")
    port: int = Field(default=6067, ge=0, le=65535, description="Its port (0: any free port).")
    max_body_bytes: int = Field(
        default=MAX_BODY_BYTES, ge=1024, le=10 * 1024 * 1024, description="Larger bodies: 413."
    )
    zendesk: ZendeskSync = Field(default_factory=ZendeskSync)
    jira_sm: JiraSync = Field(default_factory=JiraSync)
    freshdesk: FreshdeskSync = Field(default_factory=FreshdeskSync)
    servicenow: PollSync = Field(default_factory=PollSync)
    request_tracker: PollSync = Field(default_factory=PollSync)
    pagerduty: PagerDutySync = Field(default_factory=PagerDutySync)

    def enabled(self) -> list[str]:
        """The sink names whose sync is on."""
        names = ("zendesk", "jira_sm", "freshdesk", "servicenow", "request_tracker", "pagerduty")
        return [name for name in names if getattr(self, name).enabled]

    def webhooks(self) -> list[str]:
        """The enabled systems that report by webhook."""
        return [n for n in self.enabled() if n in ("zendesk", "jira_sm", "freshdesk")]

    def polls(self) -> list[str]:
        """The enabled systems that are polled."""
        return [n for n in self.enabled() if n in ("servicenow", "request_tracker")]
