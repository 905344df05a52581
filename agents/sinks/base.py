"""The Sink interface every ticketing/alert target implements, and its shared HTTP helpers.

A sink turns one :class:`~listener.record.Mention` into one ticket, alert or
message in an outside system. It does **one** attempt per call: retries,
backoff, the circuit breaker, the idempotency ledger and dead-lettering are
the :class:`~agents.delivery.policy.Deliverer`'s job, decided in one place
(STYLE R7, R11). A sink only says what went wrong, with the project's three
error kinds:

- :class:`~listener.errors.RetryableError` (``after`` = Retry-After seconds):
  network errors, timeouts, 408, 429, 5xx;
- :class:`~listener.errors.FatalError`: bad credentials or configuration
  (401/403/404 of the endpoint); every item would fail the same way;
- :class:`~listener.errors.SkippableError`: the remote side rejected this one
  item (other 4xx); it goes to the dead-letter topic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

import aiohttp
from pydantic import BaseModel, ConfigDict, Field

from listener.errors import RetryableError
from listener.record import Mention, Priority, routing_label
from listener.retry import check_http_status

DEFAULT_TIMEOUT_S = 10.0
"""Total time for one HTTP request; a timeout is retryable."""

USER_AGENT = "brand-listener/0.1 (+https://github.com/brand-listener)"


class SinkSettings(BaseModel):
    """What every sink's settings have; each sink's own model extends this in its file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str = Field(pattern=r"^https?://", description="Base URL (or full endpoint URL).")
    timeout_s: float = Field(default=DEFAULT_TIMEOUT_S, gt=0, description="Per request.")
    priorities: tuple[Priority, ...] = Field(
        default=("P1", "P2", "P3", "P4"), description="Routed priorities this sink receives."
    )

    def accepts(self, mention: Mention) -> bool:
        """Whether ``mention``'s priority is one this sink receives (unrouted: P4)."""
        routing = mention.routing
        priority = routing.priority if routing is not None and routing.priority else "P4"
        return priority in self.priorities


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """What one delivery did in the target system.

    Attributes:
        external_id: The target's id for the ticket/alert/message (ticket number,
            PagerDuty dedup key, webhook message id, ...).
        created: True if this call created it; False if it already existed
            (replayed idempotency key, duplicate, found in the ledger, or found
            in the target by the search after an ambiguous create).
    """

    external_id: str
    created: bool


@runtime_checkable
class Sink(Protocol):
    """A ticketing or alerting target.

    Attributes:
        name: Registry name, also the metric label and the ledger key prefix.
        uses_ledger: True if the deliverer must look the Mention id up in the
            ledger before creating and record it after: every target without an
            idempotency key (Jira SM, Freshdesk, ServiceNow, RT, Slack; all but
            Slack also search the target for the id, see :mod:`agents.sinks.lookup`)
            or bounded in time (Zendesk keys live 2 hours, a PagerDuty dedup_key
            only while its alert is open). False only where the receiver's
            contract is to deduplicate by the id we send (Standard Webhooks).
    """

    name: ClassVar[str]
    uses_ledger: ClassVar[bool]

    def accepts(self, mention: Mention) -> bool:
        """Whether this sink wants ``mention`` at all (e.g. PagerDuty: P1 only)."""
        ...

    async def deliver(self, mention: Mention) -> DeliveryResult:
        """Make one attempt to create the ticket/alert for ``mention``.

        Raises:
            RetryableError: Transient failure; try again (after ``after`` seconds).
            FatalError: Credentials or configuration are wrong.
            SkippableError: The target rejected this item.
        """
        ...

    async def close(self) -> None:
        """Release connections; safe to call more than once."""
        ...


def classify_status(system: str, status: int, headers: Any, body: str) -> None:
    """:func:`~listener.retry.check_http_status` as sinks need it: another 4xx skips that item.

    Raises:
        RetryableError: 408, 425, 429 or 5xx, with ``after`` from Retry-After.
        FatalError: 401, 403, 404 (wrong credentials, permissions or URL).
        SkippableError: Any other 4xx (reason ``"rejected"``).
    """
    check_http_status(system, status, headers, body, other_4xx="skip")


class HttpClient:
    """One lazily-created aiohttp session with a total timeout, shared by a sink's requests.

    Args:
        system: Target name, for error messages.
        timeout_s: Total time per request.
        headers: Headers sent on every request (auth, content type).
        auth: Basic auth, if the target uses it.
    """

    def __init__(
        self,
        system: str,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        headers: dict[str, str] | None = None,
        auth: aiohttp.BasicAuth | None = None,
    ) -> None:
        self._system = system
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._headers = {"User-Agent": USER_AGENT, **(headers or {})}
        self._auth = auth
        self._session: aiohttp.ClientSession | None = None

    async def request(
        self, method: str, url: str, *, raw: bool = False, **kwargs: Any
    ) -> tuple[int, Any, str]:
        """Send one request; map network errors and timeouts to RetryableError.

        Args:
            method: HTTP method.
            url: Absolute URL.
            raw: Return non-2xx responses instead of raising (the caller maps them).
            **kwargs: Passed to ``aiohttp.ClientSession.request`` (json, data, headers, params).

        Returns:
            Status, headers and body text.

        Raises:
            RetryableError: Connection error or timeout, or a retryable status.
            FatalError: An auth/config status (see :func:`classify_status`).
            SkippableError: Another 4xx.
        """
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, headers=self._headers, auth=self._auth
            )
        try:
            async with self._session.request(method, url, **kwargs) as response:
                body = await response.text()
                status, headers = response.status, response.headers
        except TimeoutError as exc:
            raise RetryableError(f"{self._system}: request timed out ({method} {url})") from exc
        except aiohttp.ClientError as exc:
            raise RetryableError(f"{self._system}: {type(exc).__name__}: {exc}") from exc
        if not raw:
            classify_status(self._system, status, headers, body)
        return status, headers, body

    async def close(self) -> None:
        """Close the session (safe to call twice)."""
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None


def routed_label(mention: Mention) -> str | None:
    """The label the post was routed as (:func:`~listener.record.routing_label`), or None.

    Usually the top label; for a post the model says needs a response while its
    top label is praise or other, the higher of complaint and question.
    """
    return routing_label(mention.classification) if mention.classification else None


def summary(mention: Mention, limit: int = 120) -> str:
    """A one-line title for a ticket: priority, label, brands, start of the text."""
    routing = mention.routing
    parts = [
        routing.priority if routing and routing.priority else None,
        routed_label(mention),
        "/".join(mention.brands) or None,
    ]
    head = " ".join(f"[{p}]" for p in parts if p)
    text = " ".join(mention.text.split())
    line = f"{head} {text}".strip()
    return line if len(line) <= limit else line[: limit - 1] + "…"


def description(mention: Mention) -> str:
    """A plain-text ticket body: the post, its author and link, and why it was routed."""
    author = mention.author
    who = author.handle or author.name or author.id or "unknown author"
    routing = mention.routing
    lines = [mention.text, "", f"Author: {who}" + (f" ({author.url})" if author.url else "")]
    if mention.url:
        lines.append(f"Post: {mention.url}")
    lines.append(f"Mention id: {mention.id}")
    if routing is not None:
        lines.append(f"Rules: {', '.join(routing.rule_ids) or '-'}")
        if routing.sla_due_at is not None:
            lines.append(f"SLA due: {routing.sla_due_at.isoformat()}")
    return "\n".join(lines)
