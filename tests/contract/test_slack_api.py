"""The Slack sink's chat.postMessage mode against a local Web API speaking Slack's wire format.

Beyond the suite every sink gets (``test_sinks.py``, case ``slack-api``): a
Mention delivered twice (one after the other, or at once) posts once;
``ok: false`` answers are failures that carry Slack's error code, fatal ones
given up at once, transient ones retried; a 429 from posting faster than
1 msg/s per channel is honoured; over that rate mentions go out as a digest,
never faster than the channel allows. The sink and the server share a fake
clock, so nothing here really waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from agents.delivery.ledger import MemoryLedger
from listener.errors import FatalError, SkippableError

from .delivery_support import FakeClock, delivered, deliverer, mention
from .sink_servers import SlackApiServer


def run(scenario: Callable[[SlackApiServer], Awaitable[None]]) -> None:
    async def main() -> None:
        server = SlackApiServer()
        await server.start()
        try:
            await scenario(server)
        finally:
            await server.stop()

    asyncio.run(main())


def spaced(times: list[float], interval: float = 1.0) -> bool:
    return all(b - a >= interval for a, b in zip(times, times[1:], strict=False))


def test_posts_once_per_mention_even_when_delivered_twice() -> None:
    async def scenario(server: SlackApiServer) -> None:
        clock, ledger, m = FakeClock(), MemoryLedger(), mention()
        sink = server.sink(clock=clock)
        d = deliverer(sink, clock, ledger)
        try:
            at_once = await asyncio.gather(d.deliver(m), d.deliver(m))  # two lanes, one id
            again = await d.deliver(m)  # after the ledger write
        finally:
            await sink.close()
        restarted = server.sink(clock=clock)  # a new process, the durable ledger kept
        try:
            after_restart = await deliverer(restarted, clock, ledger).deliver(m)
        finally:
            await restarted.close()
        outcomes = [*at_once, again, after_restart]
        assert all(o.ok and o.result for o in outcomes)
        assert [o.result.created for o in outcomes if o.result] == [True, False, False, False]
        assert len({o.result.external_id for o in outcomes if o.result}) == 1
        assert len(server.posted["C0SUPPORT"]) == 1 and delivered(server) == ["1"]
        (body,) = server.created.values()
        assert str(body["text"]).count("example.test/p/1") == 1

    run(scenario)


@pytest.mark.parametrize(
    ("good_auth", "channel", "error"),
    [
        (False, "C0SUPPORT", "invalid_auth"),
        (True, "C0NOSUCH", "channel_not_found"),
        (True, "C0PRIVATE", "not_in_channel"),
    ],
)
def test_ok_false_is_a_failure_reported_with_slacks_error(
    good_auth: bool, channel: str, error: str
) -> None:
    """HTTP 200 but ``ok: false``: fatal, given up at once, dead-lettered with the code."""

    async def scenario(server: SlackApiServer) -> None:
        clock = FakeClock()
        sink = server.sink(good_auth=good_auth, clock=clock, channel=channel)
        try:
            outcome = await deliverer(sink, clock).deliver(mention())
        finally:
            await sink.close()
        assert not outcome.ok and isinstance(outcome.error, FatalError)
        assert error in str(outcome.error) and outcome.reason == "sink:slack"
        assert outcome.attempts == 1 and not clock.sleeps
        assert not server.created

    run(scenario)


def test_transient_ok_false_is_retried_and_a_rejected_message_is_not() -> None:
    async def scenario(server: SlackApiServer) -> None:
        clock = FakeClock()
        server.script_error("internal_error", count=2)
        sink = server.sink(clock=clock)
        d = deliverer(sink, clock)
        try:
            retried = await d.deliver(mention(1))
            server.script_error("msg_too_long")
            rejected = await d.deliver(mention(2))
        finally:
            await sink.close()
        assert retried.ok and retried.attempts == 3
        assert not rejected.ok and rejected.attempts == 1
        assert isinstance(rejected.error, SkippableError) and "msg_too_long" in str(rejected.error)
        assert delivered(server) == ["1"]

    run(scenario)


def test_429_from_posting_too_fast_is_honoured() -> None:
    """A sink that ignores the rate (min_interval_s=0): Slack's Retry-After paces it."""

    async def scenario(server: SlackApiServer) -> None:
        clock = FakeClock()
        sink = server.sink(clock=clock, min_interval_s=0)
        d = deliverer(sink, clock)
        try:
            first = await d.deliver(mention(1))
            second = await d.deliver(mention(2))
        finally:
            await sink.close()
        assert first.ok and second.ok and second.attempts == 2
        assert server.rate_limited == 1 and clock.sleeps and clock.sleeps[0] >= 1
        assert sorted(delivered(server)) == ["1", "2"]
        assert spaced(server.posted["C0SUPPORT"])

    run(scenario)


def test_over_one_message_a_second_mentions_go_out_as_a_digest() -> None:
    async def scenario(server: SlackApiServer) -> None:
        clock = FakeClock()
        sink = server.sink(clock=clock, digest_max=5)
        d = deliverer(sink, clock)
        try:
            outcomes = await asyncio.gather(*(d.deliver(mention(n)) for n in range(12)))
        finally:
            await sink.close()
        assert all(o.ok and o.attempts == 1 for o in outcomes)
        assert server.rate_limited == 0, "the sink kept to the channel's rate by itself"
        times = server.posted["C0SUPPORT"]
        assert len(times) == 3 and spaced(times)  # digests of 5, 5 and 2
        texts = [str(body["text"]) for body in server.created.values()]
        assert [t.split(" ")[0] for t in texts] == ["5", "5", "2"]
        assert all("mentions need a response" in t for t in texts)
        assert sorted(delivered(server), key=int) == [str(n) for n in range(12)]
        assert len({o.result.external_id for o in outcomes if o.result}) == 3

    run(scenario)


def test_an_alert_takes_its_own_slot_beside_mentions() -> None:
    examples = [{"id": "t:1", "text": "<!channel> x"}]
    alert = {"id": "spike:acme:complaint:1", "brand": "acme", "label": "complaint",
             "count": 42, "window_s": 300, "examples": examples}  # fmt: skip

    async def scenario(server: SlackApiServer) -> None:
        clock = FakeClock()
        sink = server.sink(clock=clock)
        d = deliverer(sink, clock)
        try:
            outcomes = await asyncio.gather(d.deliver(mention(1)), d.deliver_alert(alert),
                                            d.deliver(mention(2)))  # fmt: skip
        finally:
            await sink.close()
        assert all(o.ok for o in outcomes) and server.rate_limited == 0
        times = server.posted["C0SUPPORT"]
        assert len(times) == 2 and spaced(times)  # the alert, then both mentions as a digest
        texts = [str(body["text"]) for body in server.created.values()]
        assert any("&lt;!channel&gt;" in t for t in texts), "a post cannot ping the channel"
        assert not any("<!channel>" in t for t in texts)

    run(scenario)
