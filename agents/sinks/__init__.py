"""Sinks: one module per ticketing/alert system, and the registry of them (name -> class)."""

from __future__ import annotations

from agents.sinks.base import DeliveryResult, Sink
from agents.sinks.memory import MemorySink

SINKS: dict[str, type[Sink]] = {
    MemorySink.name: MemorySink,
}
"""Every sink by registry name; a new sink is one line here."""

__all__ = ["SINKS", "DeliveryResult", "Sink"]
