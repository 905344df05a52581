"""Review sources against their local wire-format servers: auth, paging and cursor, limits,
brands, hostile text, ratings, ids and threads (the generic suite is test_connectors.py)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from listener.connectors.base import Batch, Connector
from listener.connectors.reviews import ReviewTarget
from listener.errors import FatalError, RetryableError
from listener.record import Mention

from .poll_support import T, first_poll_error, poll_round, run
from .servers import HARNESSES  # first: servers.py imports servers_reviews at its end
from .servers_reviews import (
    REVIEW_BRANDS,
    AppStoreHarness,
    GooglePlayHarness,
    TrustpilotHarness,
    YelpHarness,
    rsa_key,
    write_service_account,
)

pytestmark = pytest.mark.timeout(30)


async def sweep(conn: Connector, cursor: str | None = None) -> tuple[list[Batch], str | None]:
    """Poll until a batch says there is no more; every batch, and the last cursor."""
    batches, cursor = await poll_round(conn, cursor)
    assert not batches[-1].more, "never caught up"
    return batches, cursor


def mentions_of(batches: list[Batch]) -> dict[str, Mention]:
    return {m.id: m for b in batches for m in b.mentions}


async def with_harness(name: str, body: Callable[[Any], Awaitable[T]]) -> T:
    harness: Any = HARNESSES[name]()
    await harness.start()
    try:
        return await body(harness)
    finally:
        await harness.stop()


async def sweep_and_close(conn: Connector) -> tuple[list[Batch], str | None]:
    """:func:`sweep` from no cursor, then close the connector (also when the sweep fails)."""
    try:
        return await sweep(conn)
    finally:
        await conn.close()


# --- paging to the end, the cursor, and what a new review does ----------------------------


@pytest.mark.parametrize("name", ["appstore", "googleplay", "trustpilot", "yelp"])
def test_a_second_sweep_from_the_cursor_returns_nothing_old(name: str) -> None:
    async def go(h: Any) -> tuple[dict[str, Mention], dict[str, Mention], int]:
        conn = h.connector(small=True)  # small pages: the sweep pages to the end
        try:
            first, cursor = await sweep(conn)
            again, _ = await sweep(conn, cursor)
        finally:
            await conn.close()
        return mentions_of(first), mentions_of(again), len(first)

    first, again, polls = run(lambda: with_harness(name, go))
    assert len(first) >= 4 and polls >= 2
    assert again == {}
    assert all(m.id.startswith(f"{name}:") for m in first.values())


def test_appstore_reads_only_what_is_newer_than_the_cursor() -> None:
    async def go(h: AppStoreHarness) -> tuple[list[str], list[str]]:
        conn = h.connector(small=True)
        try:
            _, cursor = await sweep(conn)
            newer = dict(h.entries[1], id={"label": "11000000008"})
            newer["updated"] = {"label": "2024-09-12T11:00:00-07:00"}
            h.entries.insert(1, newer)
            batches, _ = await sweep(conn, cursor)
        finally:
            await conn.close()
        return list(mentions_of(batches)), h.paths

    new, paths = run(lambda: with_harness("appstore", go))
    assert new == ["appstore:11000000008"]
    assert paths[-1].endswith("/us/rss/customerreviews/page=1/id=1000000001/sortby=mostrecent/json")


def test_appstore_single_entry_feed_and_page_cap() -> None:
    async def go(h: AppStoreHarness) -> tuple[list[str], list[str]]:
        h.entries[:] = h.entries[:2]  # the app and one review: "entry" is an object
        conn = h.connector()
        batches, _ = await sweep_and_close(conn)
        return list(mentions_of(batches)), h.paths

    ids, paths = run(lambda: with_harness("appstore", go))
    assert ids == ["appstore:11000000007"]
    assert [p.split("/")[4] for p in paths] == ["page=1", "page=2"]  # an empty page ends it


def test_appstore_stops_at_apples_ten_pages() -> None:
    async def go(h: AppStoreHarness) -> list[str]:
        base = h.entries[1]
        h.entries[1:] = [
            dict(base, id={"label": str(12000000000 + i)}) for i in range(30, 0, -1)
        ]  # 30 reviews, 2 a page: 15 pages, Apple gives 10
        conn = h.connector(small=True)
        try:
            await sweep(conn)
        finally:
            await conn.close()
        return h.paths

    paths = run(lambda: with_harness("appstore", go))
    assert [p.split("/")[4] for p in paths] == [f"page={n}" for n in range(1, 11)]


# --- auth -------------------------------------------------------------------------------


def test_googleplay_rejected_token_is_fatal_with_googles_message() -> None:
    async def go(h: GooglePlayHarness) -> str:
        h.token = "another"
        conn = h.connector(access_token=True)
        return str(await first_poll_error(conn, FatalError))

    message = run(lambda: with_harness("googleplay", go))
    assert "access token rejected" in message and "invalid authentication" in message


def test_googleplay_token_file_is_read_again_after_a_401(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("ya29.expired\n")

    async def go(h: GooglePlayHarness) -> tuple[int, str]:
        conn = h.connector(token_file=token_file)
        try:
            with pytest.raises(FatalError, match="access token rejected"):
                await conn.poll(None)  # 401, re-read: still the old one
            token_file.write_text(h.TOKEN + "\n")  # the sidecar renewed it
            batch = await conn.poll(None)
        finally:
            await conn.close()
        auth = [r.headers.get("Authorization") for r in h.requests]
        return len(batch.mentions), str(auth)

    found, auth = run(lambda: with_harness("googleplay", go))
    assert found == 6  # 5 reviews (one malformed) + one developer reply
    assert auth.count("Bearer ya29.expired") == 2


def test_googleplay_service_account_grant_then_reviews() -> None:
    async def go(h: GooglePlayHarness) -> tuple[int, list[dict[str, Any]], list[str], str]:
        conn = h.connector(small=True)
        try:
            batches, _ = await sweep(conn)  # several pages: one grant
        finally:
            await conn.close()
        form = await h.requests[0].post()
        auth = [str(r.headers.get("Authorization")) for r in h.requests[1:]]
        return len(mentions_of(batches)), h.grants, auth, str(form.get("grant_type"))

    found, grants, auth, grant_type = run(lambda: with_harness("googleplay", go))
    assert found == 6  # 5 reviews (one malformed) + one developer reply
    assert grant_type == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    assert len(grants) == 1 and grants[0]["exp"] - grants[0]["iat"] == 3600
    assert grants[0]["scope"] == "https://www.googleapis.com/auth/androidpublisher"
    assert len(auth) >= 3 and set(auth) == {"Bearer ya29.granted-1"}


def test_googleplay_expired_token_is_renewed_once() -> None:
    async def go(h: GooglePlayHarness) -> tuple[int, int, list[str]]:
        conn = h.connector()
        try:
            await conn.poll(None)
            h.token = "ya29.expired"  # Google ended it early: the next GET is a 401
            batch = await conn.poll(None)
        finally:
            await conn.close()
        return len(batch.mentions), len(h.grants), [f"{r.method} {r.path}" for r in h.requests]

    found, grants, requests = run(lambda: with_harness("googleplay", go))
    assert found == 6 and grants == 2
    reviews = "GET /androidpublisher/v3/applications/com.acme.cloud/reviews"
    assert requests == ["POST /token", reviews, reviews, "POST /token", reviews]


def test_googleplay_granted_token_rejected_again_is_fatal() -> None:
    async def go(h: GooglePlayHarness) -> tuple[str, int]:
        h.reject_tokens = True
        conn = h.connector()
        message = str(await first_poll_error(conn, FatalError))
        return message, len(h.grants)

    message, grants = run(lambda: with_harness("googleplay", go))
    assert grants == 2  # the grant and one renewal, no loop
    assert "access token rejected" in message and "UNAUTHENTICATED" in message


def test_googleplay_wrong_key_is_fatal_with_googles_description(tmp_path: Path) -> None:
    async def go(h: GooglePlayHarness) -> tuple[str, int]:
        other = write_service_account(
            tmp_path / "old-key.json", rsa_key("deleted key"), h.token_uri, h.EMAIL, h.KEY_ID
        )
        conn = h.connector(key_file=other)
        message = str(await first_poll_error(conn, FatalError))
        return message, len(h.requests)

    message, requests = run(lambda: with_harness("googleplay", go))
    assert "invalid_grant: Invalid JWT Signature." in message and "HTTP 400" in message
    assert requests == 1  # no reviews GET without a token


def test_googleplay_unknown_service_account_is_fatal(tmp_path: Path) -> None:
    async def go(h: GooglePlayHarness) -> str:
        gone = "deleted@acme-listener.iam.gserviceaccount.com"
        key = write_service_account(tmp_path / "sa.json", rsa_key(), h.token_uri, gone, h.KEY_ID)
        conn = h.connector(key_file=key)
        return str(await first_poll_error(conn, FatalError))

    message = run(lambda: with_harness("googleplay", go))
    assert "invalid_client: The OAuth client was not found." in message


def test_googleplay_token_endpoint_outage_is_retryable() -> None:
    async def go(h: GooglePlayHarness) -> tuple[RetryableError, int]:
        conn = h.connector()
        try:
            h.fail_next = (503, "30")
            with pytest.raises(RetryableError) as info:
                await conn.poll(None)
            batch = await conn.poll(None)  # the runner's retry
        finally:
            await conn.close()
        return info.value, len(batch.mentions)

    error, found = run(lambda: with_harness("googleplay", go))
    assert "HTTP 503" in str(error) and error.after == pytest.approx(30)
    assert found == 6


def test_googleplay_unreadable_key_file_is_fatal(tmp_path: Path) -> None:
    async def go(h: GooglePlayHarness) -> list[str]:
        not_a_key = tmp_path / "sa.json"
        not_a_key.write_text(json.dumps({"type": "service_account", "client_email": h.EMAIL}))
        messages = []
        for path in (not_a_key, tmp_path / "missing.json"):
            conn = h.connector(key_file=path)
            messages.append(str(await first_poll_error(conn, FatalError)))
        return messages

    bad, missing = run(lambda: with_harness("googleplay", go))
    assert "not a service-account JSON key" in bad and "private_key" in bad
    assert "cannot read service_account_file" in missing


def test_googleplay_token_is_renewed_before_it_expires() -> None:
    async def go(h: GooglePlayHarness) -> tuple[int, int]:
        h.expires_in = 0  # expired on arrival: every poll needs a new one
        conn = h.connector()
        try:
            await conn.poll(None)
            await conn.poll(None)
            expiring = len(h.grants)
            h.expires_in = 3599
            await conn.poll(None)
            await conn.poll(None)
            await conn.poll(None)
        finally:
            await conn.close()
        return expiring, len(h.grants) - expiring

    expiring, later = run(lambda: with_harness("googleplay", go))
    assert expiring == 2 and later == 1


def test_googleplay_settings_need_exactly_one_token_and_own_apps() -> None:
    from listener.connectors.googleplay import GooglePlayConnector, GooglePlaySettings

    app = ReviewTarget(id="com.acme.cloud", brand="acme")
    with pytest.raises(ValueError, match="exactly one of service_account_file .*given: none"):
        GooglePlaySettings(apps=(app,))
    with pytest.raises(ValueError, match="given: service_account_file, access_token_file"):
        GooglePlaySettings(
            apps=(app,), service_account_file=Path("sa.json"), access_token_file=Path("t")
        )
    with pytest.raises(ValueError, match="given: service_account_file, access_token \\[type"):
        GooglePlaySettings(
            apps=(app,), service_account_file=Path("sa.json"), access_token=SecretStr("t")
        )
    competitor = ReviewTarget(id="com.globex.app")
    settings = GooglePlaySettings(apps=(competitor,), access_token=SecretStr("t"))
    with pytest.raises(FatalError, match="own apps"):
        GooglePlayConnector(settings, REVIEW_BRANDS)


def test_googleplay_app_the_account_cannot_see_is_fatal() -> None:
    from listener.connectors.googleplay import GooglePlayConnector, GooglePlaySettings

    async def go(h: GooglePlayHarness) -> str:
        settings = GooglePlaySettings(
            apps=(ReviewTarget(id="com.globex.app", brand="acme"),),
            access_token=SecretStr(h.TOKEN),
            api_url=h.base,
        )
        conn = GooglePlayConnector(settings, REVIEW_BRANDS)
        return str(await first_poll_error(conn, FatalError))

    message = run(lambda: with_harness("googleplay", go))
    assert "PERMISSION_DENIED" in message and "View app information" in message


def test_trustpilot_invalid_key_is_fatal_with_the_apigee_fault() -> None:
    from listener.connectors.trustpilot import TrustpilotConnector, TrustpilotSettings

    async def go(h: TrustpilotHarness) -> str:
        settings = TrustpilotSettings(
            api_key=SecretStr("wrong"),
            business_units=(ReviewTarget(id=h.ACME, brand="acme"),),
            api_url=h.base,
        )
        conn = TrustpilotConnector(settings, REVIEW_BRANDS)
        return str(await first_poll_error(conn, FatalError))

    message = run(lambda: with_harness("trustpilot", go))
    assert "oauth.v2.InvalidApiKey" in message and "Invalid ApiKey" in message
    assert "api_key" in message


def test_yelp_invalid_key_is_fatal_with_yelps_code() -> None:
    from listener.connectors.yelp import YelpConnector, YelpSettings

    async def go(h: YelpHarness) -> str:
        settings = YelpSettings(
            api_key=SecretStr("wrong"),
            businesses=(ReviewTarget(id="acme-coffee-oakland", brand="acme"),),
            api_url=h.base,
        )
        conn = YelpConnector(settings, REVIEW_BRANDS)
        return str(await first_poll_error(conn, FatalError))

    assert "TOKEN_INVALID" in run(lambda: with_harness("yelp", go))


def test_a_brand_that_is_not_configured_stops_start_up() -> None:
    from listener.connectors.appstore import AppStoreConnector, AppStoreSettings

    settings = AppStoreSettings(apps=(ReviewTarget(id="1", brand="initech"),))
    with pytest.raises(FatalError, match="'initech', which is not configured"):
        AppStoreConnector(settings, REVIEW_BRANDS)


# --- rate limits, quotas, server errors ---------------------------------------------------


def test_trustpilot_quota_fault_and_5xx_are_retryable() -> None:
    async def go(h: TrustpilotHarness) -> tuple[RetryableError, RetryableError]:
        conn = h.connector()
        try:
            h.quota_next = True
            with pytest.raises(RetryableError) as quota:
                await conn.poll(None)
            h.fail_next = (503, "")
            with pytest.raises(RetryableError) as down:
                await conn.poll(None)
        finally:
            await conn.close()
        return quota.value, down.value

    quota, down = run(lambda: with_harness("trustpilot", go))
    assert "policies.ratelimit.QuotaViolation" in str(quota) and quota.after is None
    assert "HTTP 503" in str(down)


def test_yelp_per_second_limit_waits_a_second_and_the_daily_quota_until_reset() -> None:
    async def go(h: YelpHarness) -> tuple[RetryableError, RetryableError]:
        conn = h.connector()
        try:
            h.error_next = (429, "TOO_MANY_REQUESTS_PER_SECOND", {})
            with pytest.raises(RetryableError) as burst:
                await conn.poll(None)
            reset = datetime.fromtimestamp(datetime.now(UTC).timestamp() + 3600, UTC)
            h.error_next = (429, "ACCESS_LIMIT_REACHED", {"RateLimit-ResetTime": reset.isoformat()})
            with pytest.raises(RetryableError) as daily:
                await conn.poll(None)
        finally:
            await conn.close()
        return burst.value, daily.value

    burst, daily = run(lambda: with_harness("yelp", go))
    assert burst.after == 1.0 and "TOO_MANY_REQUESTS_PER_SECOND" in str(burst)
    assert daily.after == pytest.approx(3600, abs=5) and "daily quota" in str(daily)


def test_googleplay_quota_exhausted_is_retryable_with_retry_after() -> None:
    async def go(h: GooglePlayHarness) -> RetryableError:
        conn = h.connector()
        h.rate_limit_next("120")
        return await first_poll_error(conn, RetryableError)

    assert run(lambda: with_harness("googleplay", go)).after == pytest.approx(120)


# --- brands, text, ratings, ids and threads -------------------------------------------------


def test_own_business_reviews_keep_the_brand_a_competitors_need_the_text() -> None:
    from listener.connectors.trustpilot import TrustpilotConnector, TrustpilotSettings

    async def go(h: TrustpilotHarness) -> list[Mention]:
        settings = TrustpilotSettings(
            api_key=SecretStr(h.KEY),
            business_units=(ReviewTarget(id=h.ACME, brand="acme"), ReviewTarget(id=h.OTHER)),
            api_url=h.base,
        )
        conn = TrustpilotConnector(settings, REVIEW_BRANDS)
        batches, _ = await sweep_and_close(conn)
        return [m for b in batches for m in b.mentions]

    raw = run(lambda: with_harness("trustpilot", go))
    kept = {m.id: m for m in (REVIEW_BRANDS.apply(m) for m in raw) if m is not None}
    own = kept["trustpilot:66e2a0000000000000000007"]  # "Never again": names no brand
    assert own.brands == ("acme",) and own.signals["matched_terms"] == {"acme": ["source"]}
    assert kept["trustpilot:66e2b0000000000000000003"].brands == ("acme",)  # "Moving to Acme"
    assert "trustpilot:66e2b0000000000000000002" not in kept  # a competitor's, no brand named
    assert "trustpilot:66e2b0000000000000000002" in {m.id for m in raw}


def test_trustpilot_review_and_company_reply() -> None:
    async def go(h: TrustpilotHarness) -> dict[str, Mention]:
        conn = h.connector()
        batches, _ = await sweep_and_close(conn)
        return mentions_of(batches)

    found = run(lambda: with_harness("trustpilot", go))
    review = found["trustpilot:66e2a0000000000000000005"]
    assert review.text == "Late again\n\nSecond late order.\nRefund took weeks & no reply."
    assert review.signals["rating"] == {"stars": 2, "of": 5}
    assert review.signals["thread_answered_by_brand"] == ["acme"]
    assert review.author.name == "M. Ortiz" and review.author.id == "5f0000000000000000000003"
    assert review.url == "https://www.trustpilot.com/reviews/66e2a0000000000000000005"
    assert review.thread_id == review.id and review.reply_to_id is None
    reply = found["trustpilot:66e2a0000000000000000005:reply"]
    assert reply.own_account_of == ("acme",) and reply.reply_to_id == review.id
    assert reply.created_at == datetime(2024, 9, 11, 19, 30, tzinfo=UTC)
    assert found["trustpilot:66e2a0000000000000000006"].lang == "da"
    assert "thread_answered_by_brand" not in found["trustpilot:66e2a0000000000000000007"].signals


def test_appstore_fields_and_hostile_markup() -> None:
    async def go(h: AppStoreHarness) -> tuple[dict[str, Mention], list[str]]:
        conn = h.connector()
        batches, _ = await sweep_and_close(conn)
        return mentions_of(batches), [s.detail for b in batches for s in b.skipped]

    found, skipped = run(lambda: with_harness("appstore", go))
    assert len(found) == 5 and skipped == ["star rating 'seven' is not a whole number 1..5"]
    slow = found["appstore:11000000005"]
    assert "<" not in slow.text and ">" not in slow.text
    assert slow.text.startswith("Slow") and "minutes & the widget" in slow.text
    crash = found["appstore:11000000007"]
    assert crash.signals["rating"] == {"stars": 1, "of": 5}
    assert crash.signals["review"] == {"app": "1000000001", "country": "us", "version": "4.2.0"}
    assert crash.author.handle == "sad_user_1" and crash.brands == ("acme",)
    assert crash.created_at == datetime(2024, 9, 12, 16, 30, tzinfo=UTC)
    assert crash.thread_id == crash.id


def test_googleplay_fields_reply_and_language() -> None:
    async def go(h: GooglePlayHarness) -> tuple[dict[str, Mention], list[str]]:
        conn = h.connector()
        batches, _ = await sweep_and_close(conn)
        gets = [r for r in h.requests if r.method == "GET"]  # after the token grant
        return mentions_of(batches), [str(r.query.get("maxResults")) for r in gets]

    found, sizes = run(lambda: with_harness("googleplay", go))
    assert sizes == ["100"]
    paid = found["googleplay:gp:AOqpTOE_6"]
    assert paid.text == "Payment failed\n\nCharged twice for the yearly plan."
    assert paid.signals["thread_answered_by_brand"] == ["acme"]
    assert paid.author.name == "Ravi" and paid.signals["rating"]["stars"] == 2
    assert paid.url == (
        "https://play.google.com/store/apps/details?id=com.acme.cloud&reviewId=gp%3AAOqpTOE_6"
    )
    reply = found["googleplay:gp:AOqpTOE_6:reply"]
    assert reply.own_account_of == ("acme",) and reply.thread_id == paid.id
    assert found["googleplay:gp:AOqpTOE_5"].lang == "es-ES"
    assert found["googleplay:gp:AOqpTOE_5"].text == "Great app, click works offline too"


def test_googleplay_a_new_developer_reply_is_read_on_the_next_sweep() -> None:
    async def go(h: GooglePlayHarness) -> list[str]:
        conn = h.connector()
        try:
            _, cursor = await sweep(conn)
            comment = {
                "text": "Thanks Kim, fixed in 4.2.1",
                "lastModified": {"seconds": "1726170000"},
            }
            h.reviews[0]["comments"].append({"developerComment": comment})
            batches, _ = await sweep(conn, cursor)
        finally:
            await conn.close()
        return sorted(mentions_of(batches))

    assert run(lambda: with_harness("googleplay", go)) == [
        "googleplay:gp:AOqpTOE_7",  # again, same id: the thread is now answered
        "googleplay:gp:AOqpTOE_7:reply",
    ]


def test_yelp_excerpts_in_pacific_time_and_no_script_urls() -> None:
    async def go(h: YelpHarness) -> tuple[dict[str, Mention], list[dict[str, str]]]:
        conn = h.connector()
        batches, _ = await sweep_and_close(conn)
        return mentions_of(batches), h.queries

    found, queries = run(lambda: with_harness("yelp", go))
    assert all(q.get("sort_by") == "newest" for q in queries) and len(queries) == 2
    latte = found["yelp:xAG4O7l-t1ubbwVAlPnD01"]
    assert latte.created_at == datetime(2024, 9, 12, 15, 41, 13, tzinfo=UTC)  # PDT is UTC-7
    assert latte.author.id == "W8UK02IDdRS2GL_66fuq6w" and latte.author.name == "Chris P."
    assert latte.signals["rating"] == {"stars": 1, "of": 5}
    stale = found["yelp:yBH5P8m-u2vccxWBmQoE01"]
    assert "javascript" not in stale.text and "<" not in stale.text
    assert "menu prices went up" in stale.text
    assert json.dumps([m.model_dump(mode="json") for m in found.values()]).count("javascript:") == 0
