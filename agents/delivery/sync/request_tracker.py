"""Request Tracker -> inbox: a poll of the tickets the ledger knows, resolved/rejected/deleted.

RT 5 has no webhooks of its own (only scrips), so every
``sync.request_tracker.interval_s`` up to ``batch`` of the open items'
tickets are read one by one: ``GET /REST/2.0/ticket/<id>`` (REST2), whose
``Status`` is one of the queue lifecycle's statuses; ``resolved``,
``rejected`` and ``deleted`` (the default lifecycle's inactive ones) resolve
the item.

Auth: ``Authorization: token <auth token>``, the sink's (``sinks.request_tracker``).
Rate limits: RT has none built in; at most ``batch`` requests a round,
sequentially; a 429 or 5xx ends the round (logged) and the next one retries.
Ids: the ledger's ticket ids; only all-digit ones are requested (no path
injection). Idempotency: a resolved item is not polled again; a resolve that
races the inbox is refused by ``apply``. A ticket RT no longer has (404) is
skipped. Guarantee: at-least-once, within one interval of the change (plus
the round-robin over more than ``batch`` open tickets).
"""

from __future__ import annotations

from typing import ClassVar

import orjson

from agents.delivery.sync.base import Solved
from agents.sinks.base import HttpClient, classify_status
from agents.sinks.request_tracker import RequestTrackerSettings

SOLVED = frozenset({"resolved", "rejected", "deleted"})


class RequestTrackerPoll:
    """Asks RT which of the ledger's tickets are solved.

    Args:
        settings: The RT sink's settings (base URL, token).
    """

    name: ClassVar[str] = "request_tracker"

    def __init__(self, settings: RequestTrackerSettings) -> None:
        self._base = settings.url.rstrip("/") + "/REST/2.0"
        headers = {
            "Authorization": f"token {settings.token.get_secret_value()}",
            "Accept": "application/json",
        }
        self._http = HttpClient("request_tracker", settings.timeout_s, headers=headers)

    async def solved(self, external_ids: list[str]) -> list[Solved]:
        """The resolved, rejected or deleted tickets among ``external_ids``."""
        found = []
        for ticket_id in external_ids:
            if not ticket_id.isascii() or not ticket_id.isdigit() or len(ticket_id) > 18:
                continue
            url = f"{self._base}/ticket/{ticket_id}"
            status, headers, text = await self._http.request("GET", url, raw=True)
            if status == 404:
                continue
            classify_status("request_tracker", status, headers, text)
            ticket = orjson.loads(text)
            state = str(ticket.get("Status", "")).lower() if isinstance(ticket, dict) else ""
            if state in SOLVED:
                found.append(Solved(ticket_id, state))
        return found

    async def close(self) -> None:
        """Close the HTTP session."""
        await self._http.close()
