"""Runs the enabled connectors concurrently and owns everything they share.

For every connector, once (R3): load its cursor, poll, drop repeats by id (a
bounded LRU of recent ids), detect the language of posts the source gave none
(:mod:`listener.lang`, marked ``signals["lang_detected"]``), match brands,
produce matched Mentions to ``mentions.raw`` and skipped events to the
dead-letter topic, wait for Kafka's acknowledgement, *then* save the cursor
(at-least-once: a crash between produce and save re-fetches, never loses),
count metrics, and back off.

Error policy (R7), decided here only:

* :class:`RetryableError` from a poll: wait ``after`` seconds when the source
  said so (Retry-After), else exponential backoff (``backoff_base_s`` doubling up
  to ``backoff_max_s``) with full jitter (:func:`listener.retry.backoff_delay`);
  then poll again.
* :class:`RetryableError` from Kafka: the same backoff, the same batch again on
  a fresh producer; the cursor does not move meanwhile.
* :class:`FatalError` (bad credentials, bad config): that connector stops with
  its message logged; the others go on.
* Any other exception escaping a connector is a bug: logged with its traceback,
  counted as ``unexpected`` and treated as retryable, so it never stops the others.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from listener.brands import BrandMatcher
from listener.connectors.base import Batch, Connector, Skipped
from listener.cursors import CursorStore
from listener.errors import FatalError, RetryableError
from listener.lang import detect as detect_lang
from listener.metrics import ListenerMetrics
from listener.producer import MentionProducer
from listener.record import Mention
from listener.retry import backoff_delay

log = logging.getLogger(__name__)


class RecentIds:
    """A bounded set of recently seen ids, oldest evicted first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, key: object) -> bool:
        return key in self._ids

    def add(self, key: str) -> None:
        """Remember ``key``, evicting the oldest beyond ``size``."""
        self._ids[key] = None
        self._ids.move_to_end(key)
        while len(self._ids) > self.size:
            self._ids.popitem(last=False)


class Runner:
    """Polls connectors, produces their matched Mentions, keeps their cursors.

    Args:
        connectors: The enabled connectors (each name must be unique).
        matcher: Brand matching for every post.
        producer_factory: Makes a :class:`MentionProducer`; called again after a
            Kafka failure, so a transient outage does not poison later sends.
        cursors: Where cursors are persisted.
        metrics: The process's metrics bundle.
        backoff_base_s: First retry delay without Retry-After.
        backoff_max_s: Upper bound on that delay.
        dedup_size: Recent ids remembered per connector.
    """

    def __init__(
        self,
        connectors: Sequence[Connector],
        matcher: BrandMatcher,
        producer_factory: Callable[[], MentionProducer],
        cursors: CursorStore,
        metrics: ListenerMetrics,
        *,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 300.0,
        dedup_size: int = 10_000,
    ) -> None:
        self.connectors = tuple(connectors)
        self.matcher = matcher
        self.cursors = cursors
        self.metrics = metrics
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.dedup_size = dedup_size
        self._factory = producer_factory
        self._producer: MentionProducer | None = None
        self._kafka_lock = asyncio.Lock()
        self._stopping = asyncio.Event()

    async def run(self) -> dict[str, str | None]:
        """Run every connector until :meth:`stop`; returns each one's fatal message or None."""
        names = [c.name for c in self.connectors]
        try:
            results = await asyncio.gather(*(self.run_connector(c) for c in self.connectors))
        finally:
            await asyncio.to_thread(self._close_producer)
        return dict(zip(names, results, strict=True))

    def stop(self) -> None:
        """Ask every connector loop to finish after its current step."""
        self._stopping.set()

    async def _wait(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=max(0.0, seconds))
        except TimeoutError:
            pass

    async def run_connector(self, connector: Connector) -> str | None:
        """One connector's loop; returns its fatal message, or None when stopped."""
        name = connector.name
        recent = RecentIds(self.dedup_size)
        attempt = 0
        paused: str | None = None
        try:
            cursor = self.cursors.load(name)
            log.info("connector %s starting from cursor %r", name, cursor)
            while not self._stopping.is_set():
                poll = asyncio.ensure_future(connector.poll(cursor))
                stop = asyncio.ensure_future(self._stopping.wait())
                await asyncio.wait({poll, stop}, return_when=asyncio.FIRST_COMPLETED)
                stop.cancel()
                if not poll.done():
                    poll.cancel()
                    break
                try:
                    batch = poll.result()
                except RetryableError as exc:
                    attempt += 1
                    await self._retry(name, "retryable", attempt, exc.after, exc)
                    continue
                except FatalError:
                    raise
                except Exception as exc:  # a connector bug must not stop the others
                    log.exception("connector %s raised unexpectedly", name)
                    attempt += 1
                    await self._retry(name, "unexpected", attempt, None, exc)
                    continue
                attempt = 0
                if not await self._handle(connector, batch, recent):
                    break  # stopping while Kafka was failing: the cursor stays put
                if batch.cursor is not None and batch.cursor != cursor:
                    self.cursors.save(name, batch.cursor)
                    cursor = batch.cursor
                paused = self._note_pause(name, paused, batch.paused)
                if batch.quota_used is not None:
                    self.metrics.quota_used.labels(name).set(batch.quota_used)
                if not batch.more:
                    await self._wait(connector.poll_interval_s)
        except FatalError as exc:
            self.metrics.errors.labels(name, "fatal").inc()
            log.error("connector %s stopped: %s", name, exc)
            return str(exc)
        finally:
            await connector.close()
        return None

    def _note_pause(self, name: str, was: str | None, now: str | None) -> str | None:
        """Log and publish a connector starting or ending a pause of its own."""
        if now == was:
            return now
        if was is not None:
            self.metrics.paused.labels(name, was).set(0)
            log.info("connector %s: %s over; reading again", name, was)
        if now is not None:
            self.metrics.paused.labels(name, now).set(1)
            log.warning("connector %s paused: %s", name, now)
        return now

    async def _retry(
        self, name: str, kind: str, attempt: int, after: float | None, exc: BaseException
    ) -> None:
        self.metrics.errors.labels(name, kind).inc()
        self.metrics.reconnects.labels(name).inc()
        delay = backoff_delay(attempt, after, base=self.backoff_base_s, cap=self.backoff_max_s)
        log.warning("connector %s: %s; retrying in %.1fs", name, exc, delay)
        await self._wait(delay)

    async def _handle(self, connector: Connector, batch: Batch, recent: RecentIds) -> bool:
        """Match, dedup and produce one batch; False if given up because we are stopping."""
        name = connector.name
        self.metrics.fetched.labels(name).inc(len(batch.mentions))
        fresh: list[Mention] = []
        for mention in batch.mentions:
            if mention.id in recent or any(m.id == mention.id for m in fresh):
                continue
            if mention.lang is None and (lang := detect_lang(mention.text)) is not None:
                signals = {**mention.signals, "lang_detected": True}
                mention = mention.model_copy(update={"lang": lang, "signals": signals})
            matched = self.matcher.apply(mention)
            if matched is not None:
                fresh.append(matched)
        self.metrics.matched.labels(name).inc(len(fresh))
        for skip in batch.skipped:
            self.metrics.errors.labels(name, "skipped").inc()
            log.info("connector %s skipped an event (%s): %s", name, skip.reason, skip.detail)
        attempt = 0
        while True:
            try:
                await self._produce(name, fresh, batch.skipped)
                break
            except RetryableError as exc:
                if self._stopping.is_set():
                    await connector.delivered(batch, exc)
                    return False
                attempt += 1
                await self._retry(name, "produce", attempt, None, exc)
            except FatalError as exc:
                await connector.delivered(batch, exc)
                raise
        for mention in batch.mentions:
            recent.add(mention.id)
        self.metrics.produced.labels(name).inc(len(fresh))
        if batch.mentions:
            newest = max(m.created_at for m in batch.mentions).timestamp()
            self.metrics.cursor_lag.labels(name).set(max(0.0, time.time() - newest))
        await connector.delivered(batch, None)
        return True

    async def _produce(
        self, name: str, mentions: Sequence[Mention], skipped: Sequence[Skipped]
    ) -> None:
        if not mentions and not skipped:
            return
        async with self._kafka_lock:  # one flush covers exactly this batch
            await asyncio.to_thread(self._produce_sync, name, mentions, skipped)

    def _produce_sync(
        self, name: str, mentions: Sequence[Mention], skipped: Sequence[Skipped]
    ) -> None:
        try:
            if self._producer is None:
                self._producer = self._factory()
            for mention in mentions:
                self._producer.send_mention(mention, stage=name)
            for skip in skipped:
                self._producer.send_dead_letter(
                    skip.payload, stage=name, reason=skip.reason, error=skip.detail
                )
            self._producer.flush()
        except RetryableError:
            self._close_producer(timeout=1.0)
            raise

    def _close_producer(self, timeout: float | None = 5.0) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.close(timeout=timeout)
