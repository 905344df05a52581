"""Starts and stops the sync-back inside the worker's delivery service.

:class:`SyncRunner` builds what ``settings.sync`` enables, beside the delivery
loops of :class:`~agents.delivery.service.DeliveryService` and sharing its
ledger: the webhook receiver (Zendesk, Jira Service Management, Freshdesk),
one poll task per polled system (ServiceNow, Request Tracker), both writing
through one :class:`~agents.queue.action_writer.ActionWriter`, and the
PagerDuty consumer of inbox actions (:mod:`agents.delivery.sync.pagerduty`).
Auth, rate limits, idempotency and guarantees are those of each part's
module; the tasks end when the service's stop event is set, and one that
dies stops the worker (like the delivery loops).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from agents.delivery.ledger import KafkaLedger
from agents.delivery.metrics import SinkMetrics
from agents.delivery.policy import Deliverer
from agents.delivery.sync.base import PollSystem, Resolver, WebhookSystem, run_poll
from agents.delivery.sync.freshdesk import FreshdeskWebhook
from agents.delivery.sync.jira_sm import JiraWebhook
from agents.delivery.sync.pagerduty import PagerDutyUpdates, run_pagerduty_sync
from agents.delivery.sync.request_tracker import RequestTrackerPoll
from agents.delivery.sync.server import WebhookServer, webhook_app
from agents.delivery.sync.servicenow import ServiceNowPoll
from agents.delivery.sync.zendesk import ZendeskWebhook
from agents.queue.action_writer import ActionWriter
from agents.settings import AgentSettings
from agents.sinks.pagerduty import PagerDutySink

log = logging.getLogger(__name__)


def webhook_systems(
    settings: AgentSettings, clock: Callable[[], float] = time.time
) -> dict[str, WebhookSystem]:
    """The enabled webhook systems by route name."""
    sync = settings.sync
    built: dict[str, WebhookSystem] = {}
    if sync.zendesk.enabled:
        built["zendesk"] = ZendeskWebhook(sync.zendesk, clock)
    if sync.jira_sm.enabled:
        built["jira_sm"] = JiraWebhook(sync.jira_sm)
    if sync.freshdesk.enabled:
        built["freshdesk"] = FreshdeskWebhook(sync.freshdesk)
    return built


def poll_systems(settings: AgentSettings) -> list[PollSystem]:
    """The enabled polled systems, with their sinks' credentials."""
    built: list[PollSystem] = []
    sinks: dict[str, Any] = dict(settings.sinks)
    if settings.sync.servicenow.enabled:
        built.append(ServiceNowPoll(sinks["servicenow"]))
    if settings.sync.request_tracker.enabled:
        built.append(RequestTrackerPoll(sinks["request_tracker"]))
    return built


class SyncRunner:
    """The sync-back's server and tasks for one worker.

    Args:
        settings: Worker settings (``sync`` validated against ``sinks``).
        ledger: The delivery service's started ledger.
        metrics: The sink metrics bundle (the PagerDuty updates are counted as deliveries).
    """

    def __init__(self, settings: AgentSettings, ledger: KafkaLedger, metrics: SinkMetrics) -> None:
        self._settings = settings
        self._ledger = ledger
        self._metrics = metrics
        self._writer: ActionWriter | None = None
        self._server: WebhookServer | None = None
        self._polls: list[PollSystem] = []
        self.port: int | None = None

    async def start(self, stop: asyncio.Event) -> list[asyncio.Task[None]]:
        """Start what is enabled; return the tasks (they end when ``stop`` is set)."""
        s = self._settings
        tasks: list[asyncio.Task[None]] = []
        hooks = webhook_systems(s)
        self._polls = poll_systems(s)
        if hooks or self._polls:
            writer = ActionWriter(
                s.kafka,
                s.topics.inbox_actions,
                s.kafka.topic_partitions,
                s.kafka.topic_replication,
                acks_topic=s.topics.acks,
            )
            await asyncio.to_thread(writer.start)
            self._writer = writer
            resolver = Resolver(self._ledger, writer)
            if hooks:
                app = webhook_app(hooks, resolver, s.sync.max_body_bytes)
                self._server = WebhookServer(app, s.sync.host, s.sync.port)
                await self._server.start()
                self.port = self._server.port
            for system in self._polls:
                block = getattr(s.sync, system.name)
                poll = run_poll(
                    system, resolver, stop, interval_s=block.interval_s, batch=block.batch
                )
                tasks.append(asyncio.create_task(poll, name=f"sync_{system.name}"))
        if s.sync.pagerduty.enabled:
            sinks: dict[str, Any] = dict(s.sinks)
            sink = PagerDutySink(sinks["pagerduty"])
            d = s.delivery
            deliverer = Deliverer(
                PagerDutyUpdates(sink), self._ledger, self._metrics, d.policy(), d.breaker()
            )
            pd = run_pagerduty_sync(
                s.kafka,
                s.topics,
                f"{s.app_id}-pagerduty-sync",
                deliverer,
                self._ledger,
                stop,
            )
            tasks.append(asyncio.create_task(pd, name="sync_pagerduty"))
        log.info("helpdesk sync: %s", ", ".join(s.sync.enabled()))
        return tasks

    async def stop(self) -> None:
        """Stop the server, close the poll clients and the action writer (tasks already ended)."""
        if self._server is not None:
            await self._server.stop()
            self._server = None
        for system in self._polls:
            await system.close()
        self._polls = []
        if self._writer is not None:
            self._writer.close()
            self._writer = None
