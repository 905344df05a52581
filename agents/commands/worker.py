"""``brand-listener worker`` and ``python -m agents.worker``: flags, config file, run."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agents.settings import AgentSettings
from agents.worker import run_worker
from listener.kafka_admin import KafkaSecurityError
from listener.logs import configure

EXIT_INVALID = 2
"""Exit status of ``--check-config`` on an invalid configuration."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The worker's flags; each wins over its ``AGENTS_*`` environment variable."""
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers, host:port[,host:port]")
    parser.add_argument("--topic-prefix", help="prefix of every topic name")
    parser.add_argument("--app-id", help="Faust app id = consumer group")
    parser.add_argument("--web-port", type=int, help="port of /metrics and /health")
    parser.add_argument("--model-dir", type=Path, help="classifier model folder")
    parser.add_argument("--model-batch-size", type=int, help="posts per ONNX run")
    parser.add_argument(
        "--threshold",
        type=float,
        help="fallback needs-response confidence (records/models without the calibrated decision)",
    )
    parser.add_argument(
        "--batch-size", type=int, help="most events an agent takes at once (default 512)"
    )
    parser.add_argument("--data-dir", type=Path, help="Faust data directory")
    parser.add_argument("--rules", type=Path, metavar="FILE.yaml", help="routing rules file")
    parser.add_argument(
        "--check-config",
        action="store_true",
        help="validate settings, sinks, rules file and model, then exit (0 valid, 2 not)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE.yaml",
        help="YAML of AgentSettings fields (e.g. a sinks block); wins over AGENTS_* variables",
    )


def settings_from_args(args: argparse.Namespace) -> AgentSettings:
    """Settings from the flags, over ``--config``, over the environment (AgentSettings.load).

    Raises:
        OSError: The config file cannot be read.
        ValueError: It is not a YAML mapping.
        pydantic.ValidationError: A value is invalid (the error names the field).
    """
    return AgentSettings.load(
        args.config,
        kafka={"bootstrap_servers": args.bootstrap, "topic_prefix": args.topic_prefix},
        app_id=args.app_id,
        health={"web_port": args.web_port},
        model={
            "dir": args.model_dir,
            "batch_size": args.model_batch_size,
            "needs_response_threshold": args.threshold,
        },
        batching={"size": args.batch_size},
        data_dir=args.data_dir,
        rules_file=args.rules,
        log_format=getattr(args, "log_format", None),
    )


def _command(args: argparse.Namespace) -> int:
    if args.check_config:
        return check_config(args)
    settings = settings_from_args(args)
    configure(settings.log_format, logging.DEBUG if getattr(args, "verbose", False) else "INFO")
    try:
        return run_worker(settings)
    except KafkaSecurityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID


def check_config(args: argparse.Namespace) -> int:
    """``worker --check-config``: settings, sinks, rules file and model folder; 0 valid, 2 not."""
    from pydantic import ValidationError

    from agents.worker import load_classifier, routing_rules
    from listener.record import describe_validation_error

    try:
        settings = settings_from_args(args)
        rules, _ = routing_rules(settings)
        classifier = load_classifier(settings)
    except ValidationError as exc:
        print(f"error: {describe_validation_error(exc)}", file=sys.stderr)
        return EXIT_INVALID
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    sinks = ", ".join(settings.sinks) or "none"
    print(
        f"valid: app {settings.app_id} on {settings.kafka.bootstrap_servers} "
        f"({settings.kafka.security_protocol}), model {classifier.name}, "
        f"{len(rules)} routing rules, sinks: {sinks}"
    )
    return 0


def register_commands(sub: Any) -> None:
    """Add the ``worker`` subcommand to the ``brand-listener`` parser."""
    parser = sub.add_parser(
        "worker",
        help="run the Faust worker (classify and route agents)",
        description="Consume mentions.raw, classify, route; serve /metrics and /health.",
    )
    add_arguments(parser)
    parser.set_defaults(func=_command)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m agents.worker``: the worker command on its own."""
    parser = argparse.ArgumentParser(prog="agents.worker", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    configure("text", logging.INFO)
    return _command(args)
