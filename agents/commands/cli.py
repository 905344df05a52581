"""The ``brand-listener`` command: one entry point composing each package's subcommands."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from agents.commands import ack, demo, inbox, worker
from agents.commands import corrections as corrections_cli
from agents.commands import rules as rules_cli
from listener import cli as listener_cli
from listener.logs import configure
from models import cli as models_cli

QUIET_CLIENT_LOGGERS = ("kafka", "aiokafka")


def version() -> str:
    """The installed package's version and the bundled model's name."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        package = installed("brand-listener")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        package = "unknown"
    return f"{package} (model {bundled_model()})"


def bundled_model() -> str:
    """``name@version`` of the model shipped in models/intent-minilm (its metrics.json)."""
    from pathlib import Path

    import orjson

    path = Path(__file__).resolve().parents[2] / "models" / "intent-minilm" / "metrics.json"
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return "not found"
    return f"{data.get('model', 'intent-minilm')}@{data.get('version', '?')}"


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (every subcommand sets ``func``)."""
    parser = argparse.ArgumentParser(
        prog="brand-listener",
        description="Streaming brand-mention listener: sources -> Kafka -> classify -> route.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=None,
        help="log lines as text (default) or one JSON object each (the worker: AGENTS_LOG_FORMAT)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    listener_cli.register_commands(sub)
    models_cli.register_commands(sub)
    worker.register_commands(sub)
    rules_cli.register_commands(sub)
    ack.register_commands(sub)
    corrections_cli.register_commands(sub)
    inbox.register_commands(sub)
    demo.register_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    args = build_parser().parse_args(argv)
    configure(args.log_format or "text", logging.DEBUG if args.verbose else logging.INFO)
    if not args.verbose:
        # The Kafka clients narrate every connection at INFO; their failures surface as our errors.
        for name in QUIET_CLIENT_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
