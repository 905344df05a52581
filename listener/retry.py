"""The one retry policy: HTTP statuses to error kinds, Retry-After, backoff (tenacity).

Everything that retries uses these: the connector runner and the sink
deliverer wait :func:`backoff_delay` between attempts (exponential with full
jitter, never sooner than the remote side's Retry-After); the loops that must
not give up until Kafka acknowledges a record (dead letters) run under
:func:`until_acknowledged`, tenacity with the same wait. Sources and sinks map
an HTTP status with :func:`check_http_status` and read ``Retry-After`` with
:func:`retry_after`.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable
from typing import Any, Literal

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_never
from tenacity.wait import wait_base

from listener.errors import FatalError, RetryableError, SkippableError

log = logging.getLogger(__name__)


def retry_after(headers: Any, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date).

    Args:
        headers: Response headers (a mapping; case-insensitive in aiohttp), or None.
        now: The current Unix time (for tests).

    Returns:
        Non-negative seconds, or None if the header is absent or unreadable.
    """
    value = headers.get("Retry-After") if headers is not None else None
    if value is None or not str(value).strip():
        return None
    value = str(value).strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def check_http_status(
    system: str,
    status: int,
    headers: Any,
    body: str = "",
    *,
    other_4xx: Literal["fatal", "skip"] = "fatal",
) -> None:
    """Raise the project's error kind for a non-2xx/3xx status; return otherwise.

    Args:
        system: The source or target name, for the message.
        status: HTTP status code.
        headers: Response headers (for Retry-After).
        body: Response body (its first 300 characters go into the message).
        other_4xx: A 4xx that is not about credentials or rate: ``"fatal"`` for a
            source (a request we built wrong stops the connector), ``"skip"`` for
            a sink (that one item is rejected and dead-lettered).

    Raises:
        RetryableError: 408, 425, 429 or 5xx, with ``after`` from Retry-After.
        FatalError: 401, 403 (credentials), 404 from a sink (wrong URL), or any
            other 4xx when ``other_4xx`` is ``"fatal"``.
        SkippableError: Any other 4xx when ``other_4xx`` is ``"skip"`` (reason ``rejected``).
    """
    if status < 400:
        return
    detail = f"{system}: HTTP {status}" + (f": {body[:300].strip()}" if body.strip() else "")
    if status in (408, 425, 429) or status >= 500:
        raise RetryableError(detail, after=retry_after(headers))
    if status in (401, 403) or (status == 404 and other_4xx == "skip"):
        raise FatalError(f"{detail} (check the {system} credentials and URL)")
    if other_4xx == "skip":
        raise SkippableError("rejected", detail)
    raise FatalError(f"{detail} (request rejected)")


def backoff_delay(
    attempt: int,
    after: float | None,
    *,
    base: float,
    cap: float,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based).

    Full jitter: uniform in ``[0, min(cap, base * 2**(attempt-1))]``, but never
    less than ``after`` (the remote side's Retry-After).
    """
    window = min(cap, base * 2 ** max(0, attempt - 1))
    delay = rand() * window
    return delay if after is None else max(delay, after)


class wait_backoff(wait_base):  # noqa: N801 - tenacity's naming for wait strategies
    """:func:`backoff_delay` as a tenacity wait (``after`` from a :class:`RetryableError`)."""

    def __init__(self, base: float, cap: float) -> None:
        self.base, self.cap = base, cap

    def __call__(self, retry_state: RetryCallState) -> float:
        """The wait before the next attempt."""
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        after = exc.after if isinstance(exc, RetryableError) else None
        return backoff_delay(retry_state.attempt_number, after, base=self.base, cap=self.cap)


def until_acknowledged(what: str, base: float = 0.5, cap: float = 30.0) -> AsyncRetrying:
    """Retry forever (a record whose input offset waits on it must not be lost), logging each wait.

    Use as ``async for attempt in until_acknowledged("dead letter"): with attempt: ...``.
    Cancellation still ends it.
    """

    def log_wait(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        log.error("%s not acknowledged (attempt %d: %r); retrying in %.1fs",
                  what, state.attempt_number, exc, wait)  # fmt: skip

    return AsyncRetrying(
        wait=wait_backoff(base, cap),
        stop=stop_never,
        retry=retry_if_exception_type(Exception),
        before_sleep=log_wait,
        reraise=True,
    )
