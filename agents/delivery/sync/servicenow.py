"""ServiceNow -> inbox: a poll of the incidents the ledger knows, Resolved/Closed/Canceled.

Every ``sync.servicenow.interval_s`` one Table API request reads up to
``batch`` of the open items' incidents:
``GET /api/now/table/<table>`` with ``sysparm_query=numberIN<n1>,<n2>^stateIN6,7,8``
and ``sysparm_fields=number,state``
(incident states: 1 New, 2 In Progress, 3 On Hold, 6 Resolved, 7 Closed,
8 Canceled). Chosen over outbound REST (a business rule or flow calling us)
because it needs nothing configured inside the instance and no inbound port.

Auth: HTTP basic, the sink's integration user (``sinks.servicenow``; it
needs read on the table). Rate limits: one request per round, bounded by
``batch``; a 429 or 5xx fails the round (logged) and the next one retries.
Ids in the query: the ledger's incident numbers, only ``[A-Za-z0-9_]`` ones
are queried (an encoded query has no quoting). Idempotency: a resolved item
is not polled again; a resolve that races the inbox is refused by ``apply``.
Guarantee: at-least-once, within one interval of the change (plus the
round-robin over more than ``batch`` open tickets).
"""

from __future__ import annotations

import re
from typing import ClassVar

import aiohttp
import orjson

from agents.delivery.sync.base import Solved
from agents.sinks.base import HttpClient
from agents.sinks.servicenow import ServiceNowSettings

SOLVED = {"6": "resolved", "7": "closed", "8": "canceled"}
SAFE = re.compile(r"^[A-Za-z0-9_]{1,40}$")


class ServiceNowPoll:
    """Asks ServiceNow which of the ledger's incidents are solved.

    Args:
        settings: The ServiceNow sink's settings (instance, user, table).
    """

    name: ClassVar[str] = "servicenow"

    def __init__(self, settings: ServiceNowSettings) -> None:
        self._url = f"{settings.url.rstrip('/')}/api/now/table/{settings.table}"
        auth = aiohttp.BasicAuth(settings.user, settings.password.get_secret_value())
        self._http = HttpClient(
            "servicenow", settings.timeout_s, headers={"Accept": "application/json"}, auth=auth
        )

    async def solved(self, external_ids: list[str]) -> list[Solved]:
        """The Resolved, Closed or Canceled incidents among ``external_ids`` (incident numbers)."""
        numbers = [n for n in external_ids if SAFE.match(n)]
        if not numbers:
            return []
        params = {
            "sysparm_query": f"numberIN{','.join(numbers)}^stateIN{','.join(SOLVED)}",
            "sysparm_fields": "number,state",
            "sysparm_limit": str(len(numbers)),
        }
        _, _, text = await self._http.request("GET", self._url, params=params)
        result = orjson.loads(text).get("result")
        found = []
        for record in result if isinstance(result, list) else []:
            if not isinstance(record, dict):
                continue
            number, state = str(record.get("number", "")), str(record.get("state", ""))
            if number in numbers and state in SOLVED:  # the query may be widened: check
                found.append(Solved(number, SOLVED[state]))
        return found

    async def close(self) -> None:
        """Close the HTTP session."""
        await self._http.close()
