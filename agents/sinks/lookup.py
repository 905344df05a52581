"""Find-before-re-create for targets without an idempotency key (Jira SM, Freshdesk, RT).

A create request that times out, loses its connection or gets a 5xx may
still have created the ticket: the answer, not the request, was lost. The
ledger is written only after a success, so a plain retry would open a second
ticket. :class:`PendingCreates` remembers, per sink instance, every Mention id
whose create was sent without a definite answer; the sink's next attempt for
that id first searches the target for a ticket carrying the id and, if one
is found, returns it as existing (the deliverer then records it in the
ledger) instead of creating again.

The search values are built so that hostile input never becomes query
syntax: Jira and Freshdesk match :func:`mention_tag` (a digest of the id:
lower-case hex, nothing to escape); RT matches the id itself in a custom
field, quoted by :func:`ticketsql_string`. :func:`jql_string` quotes any
other JQL value.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

from agents.sinks.base import DeliveryResult, HttpClient, classify_status

TAG_PREFIX = "bl-"
"""Prefix of :func:`mention_tag`: says which integration put the tag there."""

PENDING_LIMIT = 10_000
"""Most Mention ids one sink remembers as pending (oldest forgotten first)."""


def mention_tag(mention_id: str) -> str:
    """The label/tag that marks a ticket as the one for ``mention_id``.

    ``bl-`` and the first 24 hex digits (96 bits) of the id's SHA-256: valid as a
    Jira label (no spaces) and a Freshdesk tag (short), the same for every
    worker, and free of anything a query language would read as syntax,
    whatever the id (``<source>:<native id>``, chosen by the source) contains.

    Args:
        mention_id: The Mention id.

    Returns:
        The tag, e.g. ``bl-1f3a...`` (27 characters).
    """
    return TAG_PREFIX + hashlib.sha256(mention_id.encode("utf-8")).hexdigest()[:24]


def jql_string(value: str) -> str:
    r"""``value`` as a JQL string literal: double quotes, ``\`` and ``"`` escaped.

    JQL reads ``\"``, ``\'`` and ``\\`` inside a quoted string as the
    character itself; line breaks and tabs are written ``\n``, ``\r``, ``\t``.

    Args:
        value: Any text.

    Returns:
        A quoted literal that JQL reads back as exactly ``value``.
    """
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    escaped = escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return f'"{escaped}"'


def ticketsql_string(value: str) -> str:
    r"""``value`` as a TicketSQL (RT) string literal: single quotes, ``\`` and ``'`` escaped.

    RT's parser (``RT::SQL``) takes a quoted value up to the next unescaped
    quote and then turns every ``\x`` into ``x``.

    Args:
        value: Any text.

    Returns:
        A quoted literal that RT reads back as exactly ``value``.
    """
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class PendingCreates:
    """Mention ids whose create request may have created an item without telling us.

    Kept in memory per sink instance, bounded by ``limit``. A worker that
    crashes between a create and its ledger write forgets them: that narrow
    window is the one left where a redelivery can create a duplicate.

    Args:
        limit: Most ids kept; the oldest is forgotten first.
    """

    def __init__(self, limit: int = PENDING_LIMIT) -> None:
        self._limit = limit
        self._ids: dict[str, None] = {}

    def __contains__(self, key: object) -> bool:
        return key in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def mark(self, key: str) -> None:
        """Remember ``key`` as pending (its create is about to be sent or was ambiguous)."""
        self._ids.pop(key, None)
        self._ids[key] = None
        while len(self._ids) > self._limit:
            del self._ids[next(iter(self._ids))]

    def clear(self, key: str) -> None:
        """Forget ``key``: the target answered definitely (created, or refused)."""
        self._ids.pop(key, None)


async def create_once(
    system: str,
    http: HttpClient,
    pending: PendingCreates,
    key: str,
    url: str,
    **kwargs: Any,
) -> str:
    """POST one create; leave ``key`` pending unless the target answered definitely.

    ``key`` is marked pending before sending, so a timeout, a dropped
    connection, a cancellation or a 5xx leaves it marked; a 2xx or a 4xx
    (408/425/429 included: the request was refused, nothing was created)
    clears it.

    Args:
        system: Target name, for error messages.
        http: The sink's HTTP client.
        pending: The sink's pending creates.
        key: The Mention id.
        url: The create endpoint.
        **kwargs: Passed to the request (``json``, ``headers``).

    Returns:
        The response body of a 2xx answer.

    Raises:
        RetryableError: Network error, timeout, 408/425/429 or 5xx.
        FatalError: 401/403/404.
        SkippableError: Another 4xx.
    """
    pending.mark(key)
    status, headers, body = await http.request("POST", url, raw=True, **kwargs)
    if status < 500:
        pending.clear(key)
    classify_status(system, status, headers, body)
    return body


async def find_or_create(
    pending: PendingCreates,
    key: str,
    find: Callable[[], Awaitable[str | None]],
    create: Callable[[], Awaitable[str]],
) -> DeliveryResult:
    """The delivery shape of a sink without an idempotency key.

    If an earlier attempt for ``key`` was ambiguous, ``find`` searches the
    target first; a hit is the result (``created=False``). Otherwise (or on a
    miss) ``create`` makes the item.

    Args:
        pending: The sink's pending creates.
        key: The Mention id.
        find: Returns the external id of the item carrying ``key``, or None.
        create: Creates the item (through :func:`create_once`), returns its external id.

    Returns:
        The delivery result.

    Raises:
        RetryableError: The search or the create failed transiently (``key``
            stays pending when the create's outcome is unknown).
    """
    if key in pending:
        found = await find()
        if found is not None:
            pending.clear(key)
            return DeliveryResult(found, created=False)
    return DeliveryResult(await create(), created=True)
