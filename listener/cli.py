"""The listener's subcommands: ``kafka`` (local broker) and ``replay`` (a JSONL stream into Kafka)."""

from __future__ import annotations

import argparse

from listener import kafka_cli, replay


def register_commands(sub: argparse._SubParsersAction) -> None:
    """Add the listener's subcommands to the top-level parser."""
    kafka_cli.register_commands(sub)
    replay.register_commands(sub)
