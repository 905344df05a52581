"""Delivery inside the worker: a service started and stopped with the Faust app.

Why inside the worker and not a separate ``brand-listener deliver`` process:
one process to deploy, configure and scale is simplest for users, and the
delivery loop already runs in its own consumer group (``<app_id>-deliver``)
with its own per-sink lanes (see :mod:`agents.delivery.loop`), so a slow sink never
holds the classify/route agents and scaling out workers scales delivery too.
The service is a :class:`mode.Service` child of the app, so it starts after
the app's own services and stops before them. Alerts (``mentions.alerts``)
go to the sinks that deliver them in a second loop, group ``<app_id>-alerts``
(:mod:`agents.delivery.alerts`). On stop, the delivery loop stops
reading, commits what every sink has finished and leaves the rest to be
redelivered (the ledger and idempotency keys absorb the repeats). The
helpdesk sync-back and the PagerDuty updates (``settings.sync``,
:mod:`agents.delivery.sync`) start here too, sharing the ledger.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust
from mode import Service
from prometheus_client import CollectorRegistry

from agents.delivery.alerts import run_alert_delivery
from agents.delivery.ledger import KafkaLedger, Ledger, ledger_topic
from agents.delivery.loop import run_delivery
from agents.delivery.metrics import SinkMetrics
from agents.delivery.metrics import create as create_sink_metrics
from agents.delivery.policy import Deliverer
from agents.delivery.sync.service import SyncRunner
from agents.settings import AgentSettings
from agents.sinks import SINKS
from agents.sinks.alerts import delivers_alerts

log = logging.getLogger(__name__)


class DeliveryService(Service):
    """Runs :func:`agents.delivery.loop.run_delivery` for the configured sinks.

    Args:
        settings: Worker settings; ``settings.sinks`` must not be empty.
        metrics: The sink metrics bundle.
        **kwargs: Passed to :class:`mode.Service`.
    """

    def __init__(self, settings: AgentSettings, metrics: SinkMetrics, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._settings = settings
        self._metrics = metrics
        self._stop_event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._alert_task: asyncio.Task[None] | None = None
        self._ledger: KafkaLedger | None = None
        self._sync_tasks: list[asyncio.Task[None]] = []
        self.sync: SyncRunner | None = None

    async def on_start(self) -> None:
        """Load the ledger (blocking, in a thread) and start the delivery loop."""
        s = self._settings
        ledger = KafkaLedger(
            s.kafka,
            ledger_topic(s.kafka.topic_prefix),
            s.kafka.topic_partitions,
            s.kafka.topic_replication,
        )
        await asyncio.to_thread(ledger.start)
        self._ledger = ledger
        deliverers = build_deliverers(s, ledger, self._metrics)
        self._stop_event.clear()
        self._task = asyncio.create_task(
            run_delivery(
                s.kafka,
                s.topics,
                f"{s.app_id}-deliver",
                deliverers,
                ledger,
                self._stop_event,
                s.commit_interval_s,
                lag_gauge=self._metrics.delivery_lag,
            ),
            name="deliver_mentions",
        )
        self._task.add_done_callback(self._on_done)
        log.info("delivering %s to %s", s.topics.needs_response, ", ".join(s.sinks))
        alerting = [
            d for d in build_deliverers(s, ledger, self._metrics) if delivers_alerts(d.sink)
        ]
        if alerting:  # own sink instances: each loop closes its own on the way out
            self._alert_task = asyncio.create_task(
                run_alert_delivery(
                    s.kafka,
                    s.topics,
                    f"{s.app_id}-alerts",
                    alerting,
                    ledger,
                    self._stop_event,
                    lag_gauge=self._metrics.delivery_lag,
                ),
                name="deliver_alerts",
            )
            self._alert_task.add_done_callback(self._on_done)
            log.info("delivering %s to %s", s.topics.alerts, ", ".join(d.name for d in alerting))
        if s.sync.enabled():
            self.sync = SyncRunner(s, ledger, self._metrics)
            self._sync_tasks = await self.sync.start(self._stop_event)
            for task in self._sync_tasks:
                task.add_done_callback(self._on_done)

    def _on_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None and not self._stop_event.is_set():
            error = task.exception()
            log.critical("delivery loop died; stopping the worker", exc_info=error)
            asyncio.ensure_future(self.crash(error or RuntimeError("delivery loop died")))

    async def on_stop(self) -> None:
        """Stop reading, commit what is finished, close the sinks and the ledger."""
        self._stop_event.set()
        tasks = [t for t in (self._task, self._alert_task, *self._sync_tasks) if t is not None]
        self._task = self._alert_task = None
        self._sync_tasks = []
        for task in tasks:
            try:
                await asyncio.wait_for(task, timeout=30)
            except TimeoutError:
                log.error("%s did not stop in 30s; cancelled", task.get_name())
            except Exception as exc:  # noqa: BLE001 - already reported by _on_done
                log.debug("%s ended with %r", task.get_name(), exc)
        if self.sync is not None:
            await self.sync.stop()
            self.sync = None
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None


def build_deliverers(
    settings: AgentSettings, ledger: Ledger, metrics: SinkMetrics
) -> list[Deliverer]:
    """One :class:`Deliverer` per configured sink, with the configured retry budget and breaker.

    Args:
        settings: Worker settings (``sinks`` already validated, ``delivery``).
        ledger: The idempotency ledger.
        metrics: The sink metrics bundle.
    """
    d = settings.delivery
    deliverers = []
    for name, config in settings.sinks.items():
        cls: Any = SINKS[name]  # the Sink protocol has no constructor; each takes its settings
        deliverers.append(Deliverer(cls(config), ledger, metrics, d.policy(), d.breaker()))
    return deliverers


def register(
    app: faust.App, settings: AgentSettings, registry: CollectorRegistry
) -> DeliveryService | None:
    """Attach a :class:`DeliveryService` to ``app`` when sinks are configured.

    Args:
        app: The worker's app (not yet started).
        settings: Worker settings.
        registry: Where the sink metrics are registered.

    Returns:
        The service, or None when ``settings.sinks`` is empty.
    """
    if not settings.sinks:
        return None
    service = DeliveryService(settings, create_sink_metrics(registry))
    app.add_dependency(service)
    return service
