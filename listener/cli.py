"""The listener's subcommands: ``kafka`` (local broker), ``replay`` and ``listen``."""

from __future__ import annotations

import argparse

from listener import kafka_cli, listen, replay


def register_commands(sub: argparse._SubParsersAction) -> None:
    """Add the listener's subcommands to the top-level parser."""
    kafka_cli.register_commands(sub)
    replay.register_commands(sub)
    listen.register_commands(sub)
