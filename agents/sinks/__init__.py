"""Sinks: one module per ticketing/alert system, and the registry of them (name -> class)."""

from __future__ import annotations

from agents.sinks.base import DeliveryResult, Sink
from agents.sinks.freshdesk import FreshdeskSink
from agents.sinks.jira_sm import JiraSMSink
from agents.sinks.memory import MemorySink
from agents.sinks.pagerduty import PagerDutySink
from agents.sinks.request_tracker import RequestTrackerSink
from agents.sinks.servicenow import ServiceNowSink
from agents.sinks.slack import SlackSink
from agents.sinks.webhook import WebhookSink
from agents.sinks.zendesk import ZendeskSink

SINKS: dict[str, type[Sink]] = {
    ZendeskSink.name: ZendeskSink,
    PagerDutySink.name: PagerDutySink,
    SlackSink.name: SlackSink,
    WebhookSink.name: WebhookSink,
    JiraSMSink.name: JiraSMSink,
    FreshdeskSink.name: FreshdeskSink,
    ServiceNowSink.name: ServiceNowSink,
    RequestTrackerSink.name: RequestTrackerSink,
    MemorySink.name: MemorySink,
}
"""Every sink class by registry name; a new sink is one line here. Each class has a
``settings_model`` (its pydantic settings) and is built as ``cls(settings)``."""

__all__ = ["SINKS", "DeliveryResult", "Sink"]
