"""The Slack sink on a fake HTTP client: chat.postMessage request and answers, escaping, dedup."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
import pytest
from async_support import sync
from multidict import CIMultiDict
from pydantic import SecretStr

from agents.sinks.slack import SlackSettings, SlackSink
from listener.errors import FatalError, RetryableError, SkippableError
from listener.record import Mention


class FakeHttp:
    """Stands in for the sink's HttpClient: records requests, answers from a list."""

    def __init__(self, *answers: tuple[int, dict[str, str], str]) -> None:
        self.answers = list(answers)
        self.requests: list[tuple[str, str, dict[str, Any]]] = []
        self.gate: asyncio.Event | None = None

    async def request(
        self, method: str, url: str, *, raw: bool = False, **kwargs: Any
    ) -> tuple[int, Any, str]:
        self.requests.append((method, url, kwargs))
        if self.gate is not None:
            await self.gate.wait()
        status, headers, body = self.answers.pop(0) if self.answers else ok()
        return status, CIMultiDict(headers), body

    async def close(self) -> None:
        return None


def ok(ts: str = "1700000000.000100") -> tuple[int, dict[str, str], str]:
    return 200, {}, orjson.dumps({"ok": True, "channel": "C0SUPPORT", "ts": ts}).decode()


def slack_error(code: str, status: int = 200, **headers: str) -> tuple[int, dict[str, str], str]:
    return status, headers, orjson.dumps({"ok": False, "error": code}).decode()


def api_sink(http: FakeHttp, url: str = "https://slack.com/api", **settings: Any) -> SlackSink:
    config = SlackSettings(
        url=url, token=SecretStr("xoxb-1-2-abc"), channel="C0SUPPORT", min_interval_s=0, **settings
    )
    sink = SlackSink(config)
    sink._http = http  # type: ignore[assignment]  # the fake has the same two methods
    return sink


def mention(n: int = 1, text: str = "order never arrived", url: str | None = None) -> Mention:
    return Mention.create(
        source="mastodon", native_id=str(n), text=text, url=url or f"https://example.test/p/{n}"
    )


@pytest.mark.parametrize(
    "url", ["https://slack.com/api", "https://slack.com/api/chat.postMessage/"]
)
@sync
async def test_chat_post_message_request(url: str) -> None:
    http = FakeHttp(ok())
    sink = api_sink(http, url=url)
    result = await sink.deliver(mention())
    assert result.created and result.external_id == "C0SUPPORT/1700000000.000100"
    ((method, posted_to, kwargs),) = http.requests
    assert (method, posted_to) == ("POST", "https://slack.com/api/chat.postMessage")
    assert kwargs["headers"] == {"Content-Type": "application/json; charset=utf-8"}
    body = orjson.loads(kwargs["data"])
    assert body["channel"] == "C0SUPPORT" and "order never arrived" in body["text"]
    assert "Authorization" not in kwargs["headers"]  # a session header, below


def test_the_bearer_token_is_a_session_header() -> None:
    sink = SlackSink(SlackSettings(url="https://slack.com/api", token=SecretStr("xoxb-9"),
                                   channel="C0SUPPORT"))  # fmt: skip
    assert sink._http._headers["Authorization"] == "Bearer xoxb-9"


@pytest.mark.parametrize(
    ("answer", "kind", "after"),
    [
        (slack_error("invalid_auth"), FatalError, None),
        (slack_error("channel_not_found"), FatalError, None),
        (slack_error("not_in_channel"), FatalError, None),
        (slack_error("missing_scope"), FatalError, None),
        (slack_error("ratelimited", 429, **{"Retry-After": "30"}), RetryableError, 30.0),
        (slack_error("ratelimited", 200, **{"Retry-After": "4"}), RetryableError, 4.0),
        (slack_error("internal_error"), RetryableError, None),
        (slack_error("service_unavailable", 503), RetryableError, None),
        (slack_error("msg_too_long"), SkippableError, None),
        (slack_error("some_new_code"), SkippableError, None),
    ],
)
@sync
async def test_ok_false_and_statuses_map_to_the_error_kinds(
    answer: tuple[int, dict[str, str], str], kind: type[Exception], after: float | None
) -> None:
    sink = api_sink(FakeHttp(answer))
    with pytest.raises(kind) as raised:
        await sink.deliver(mention())
    code = orjson.loads(answer[2])["error"]
    assert code in str(raised.value) or str(answer[0]) in str(raised.value)
    if isinstance(raised.value, RetryableError):
        assert raised.value.after == after


@sync
async def test_an_answer_that_is_not_the_web_api_is_fatal() -> None:
    sink = api_sink(FakeHttp((200, {}, "<html>login</html>")))
    with pytest.raises(FatalError, match="check the url"):
        await sink.deliver(mention())


def test_a_warning_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    body = {"ok": True, "channel": "C0SUPPORT", "ts": "1.2", "warning": "missing_charset"}

    async def scenario() -> None:
        sink = api_sink(FakeHttp((200, {}, orjson.dumps(body).decode())))
        assert (await sink.deliver(mention())).external_id == "C0SUPPORT/1.2"

    with caplog.at_level(logging.WARNING, logger="agents.sinks.slack"):
        asyncio.run(scenario())
    assert "missing_charset" in caplog.text


def test_post_text_is_escaped_so_it_cannot_ping_or_break_links() -> None:
    sink = SlackSink(SlackSettings(url="https://hooks.slack.test/services/T/B/x"))
    loud = mention(1, text="<!channel> refund & <@U123> now", url="https://e.test/p?a=1&b=|>")
    single = sink.message([loud])["text"]
    assert "<!channel>" not in single and "&lt;!channel&gt; refund &amp; &lt;@U123&gt;" in single
    assert single.endswith("https://e.test/p?a=1&amp;b=%7C&gt;")
    digest = sink.message([loud, mention(2)])["text"]
    assert "<https://e.test/p?a=1&amp;b=%7C&gt;|link>" in digest
    assert "<https://example.test/p/2|link>" in digest and "<!channel>" not in digest


@sync
async def test_the_same_mention_waiting_or_in_flight_is_posted_once() -> None:
    http = FakeHttp()
    http.gate = asyncio.Event()
    sink = api_sink(http)
    m = mention()
    first = asyncio.create_task(sink.deliver(m))
    await asyncio.sleep(0)
    second = asyncio.create_task(sink.deliver(m))  # waiting in the same message
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(http.requests) == 1
    third = asyncio.create_task(sink.deliver(m))  # while that message is being posted
    await asyncio.sleep(0)
    http.gate.set()
    results = await asyncio.wait_for(asyncio.gather(first, second, third), 5)
    assert [r.created for r in results] == [True, False, False]
    assert len({r.external_id for r in results}) == 1 and len(http.requests) == 1
    text = orjson.loads(http.requests[0][2]["data"])["text"]
    assert text.count("example.test/p/1") == 1


@sync
async def test_close_fails_what_still_waits_so_it_is_retried() -> None:
    http = FakeHttp()
    http.gate = asyncio.Event()
    sink = api_sink(http)
    posting = asyncio.create_task(sink.deliver(mention(1)))
    await asyncio.sleep(0)
    waiting = asyncio.create_task(sink.deliver(mention(2)))
    await asyncio.sleep(0)
    await sink.close()
    await sink.close()
    for task in (posting, waiting):
        with pytest.raises(RetryableError, match="closed"):
            await asyncio.wait_for(task, 5)


@sync
async def test_webhook_mode_posts_json_to_the_webhook_url() -> None:
    http = FakeHttp((200, {}, "ok"))
    sink = SlackSink(SlackSettings(url="https://hooks.slack.test/services/T/B/x", min_interval_s=0))
    sink._http = http  # type: ignore[assignment]  # the fake has the same two methods
    result = await sink.deliver(mention())
    assert result.external_id == "webhook:mastodon:1"
    ((_, url, kwargs),) = http.requests
    assert url == "https://hooks.slack.test/services/T/B/x"
    assert kwargs["json"]["text"].endswith("https://example.test/p/1")
    assert "channel" not in kwargs["json"]
