"""The one retry policy (listener/retry.py): statuses, Retry-After, backoff, retry-until-acked."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from tenacity import RetryCallState

from listener.errors import FatalError, RetryableError, SkippableError
from listener.retry import (
    backoff_delay,
    check_http_status,
    retry_after,
    until_acknowledged,
    wait_backoff,
)

NOW = 1_800_000_000.0


def test_retry_after_reads_seconds_and_http_dates_and_ignores_garbage() -> None:
    assert retry_after({"Retry-After": "7"}) == 7.0
    assert retry_after({"Retry-After": " 2.5 "}) == 2.5
    assert retry_after({"Retry-After": "-3"}) == 0.0
    date = format_datetime(datetime.fromtimestamp(NOW + 30, UTC), usegmt=True)
    assert retry_after({"Retry-After": date}, now=NOW) == pytest.approx(30.0)
    past = format_datetime(datetime.fromtimestamp(NOW - 30, UTC), usegmt=True)
    assert retry_after({"Retry-After": past}, now=NOW) == 0.0
    for absent in ({}, {"Retry-After": ""}, {"Retry-After": "soon <b>"}, None):
        assert retry_after(absent) is None


@pytest.mark.parametrize("status", [408, 425, 429, 500, 503])
def test_transient_statuses_are_retryable_with_retry_after(status: int) -> None:
    with pytest.raises(RetryableError) as info:
        check_http_status("zendesk", status, {"Retry-After": "9"}, "busy <script>")
    assert info.value.after == 9.0 and f"HTTP {status}" in str(info.value)


def test_a_source_stops_on_4xx_and_a_sink_skips_the_item() -> None:
    check_http_status("x", 204, {})
    with pytest.raises(FatalError, match="credentials"):
        check_http_status("x", 401, {})
    with pytest.raises(FatalError, match="request rejected"):
        check_http_status("mastodon", 422, {}, "bad query")
    with pytest.raises(SkippableError) as info:
        check_http_status("jira", 422, {}, "bad field", other_4xx="skip")
    assert info.value.reason == "rejected"
    with pytest.raises(FatalError):  # a sink's 404 is a wrong URL, not a bad item
        check_http_status("jira", 404, {}, other_4xx="skip")


def test_backoff_is_full_jitter_capped_and_never_sooner_than_retry_after() -> None:
    assert [backoff_delay(a, None, base=0.5, cap=4, rand=lambda: 1.0) for a in range(1, 6)] == [
        0.5, 1, 2, 4, 4,
    ]  # fmt: skip
    assert backoff_delay(3, None, base=1, cap=60, rand=lambda: 0.0) == 0.0
    assert backoff_delay(1, 7.0, base=1, cap=60, rand=lambda: 1.0) == 7.0
    assert backoff_delay(10, 1.0, base=1, cap=60, rand=lambda: 1.0) == 60


def test_the_tenacity_wait_takes_after_from_a_retryable_error() -> None:
    state = RetryCallState(None, None, (), {})
    state.attempt_number = 1
    state.set_exception((RetryableError, RetryableError("429", after=5.0), None))
    assert wait_backoff(0.01, 0.02)(state) == 5.0


def test_until_acknowledged_retries_until_the_call_succeeds() -> None:
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise ConnectionError("broker away")
        return "acked"

    async def run() -> str:
        async for attempt in until_acknowledged("test record", base=0.001, cap=0.002):
            with attempt:
                return await flaky()
        raise AssertionError("unreachable")

    assert asyncio.run(run()) == "acked" and len(calls) == 4
