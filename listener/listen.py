"""``brand-listener listen --config FILE.yaml``: run the enabled connectors into ``mentions.raw``.

The YAML file has the shape of :class:`~listener.settings.ListenerSettings`
(``kafka``, ``listen``, ``brands``, ``connectors``); see
``deploy/listen.example.yaml`` and ``listener/connectors/README.md``. Values
not in the file come from ``LISTENER_*`` variables; ``--bootstrap`` and
``--topic-prefix`` win over both.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin

from prometheus_client import CollectorRegistry
from pydantic import BaseModel, TypeAdapter, ValidationError

from listener import connectors as registry
from listener.brands import BrandMatcher
from listener.connectors.base import Connector
from listener.cursors import CursorStore
from listener.errors import FatalError
from listener.health import Heartbeat, serve
from listener.metrics import create as create_metrics
from listener.producer import MentionProducer
from listener.record import describe_validation_error
from listener.runner import Runner
from listener.settings import ListenerSettings

log = logging.getLogger(__name__)
EXIT_OK, EXIT_FATAL, EXIT_CONFIG = 0, 1, 2


def load_settings(path: Path, **kafka_overrides: object) -> ListenerSettings:
    """Settings: Kafka flag overrides, then the YAML file, then the environment.

    Raises:
        FatalError: The file is missing, not YAML, or not valid settings.
    """
    try:
        return ListenerSettings.load(path, kafka=kafka_overrides)
    except ValidationError as exc:
        raise FatalError(f"{path}: {describe_validation_error(exc)}") from exc
    except (OSError, ValueError) as exc:
        raise FatalError(f"{path}: {exc}") from exc


def _takes_json(annotation: Any) -> bool:
    """Whether a field of this type is a list, tuple, set or mapping (possibly optional)."""
    origin = get_origin(annotation)
    if origin in (list, tuple, set, frozenset, dict) or annotation in (list, tuple, set, dict):
        return True
    return origin in (Union, UnionType) and any(_takes_json(a) for a in get_args(annotation))


def from_environment(options: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """A connector block with the JSON of its list and mapping fields decoded where it is a string.

    Blocks set through the environment (``LISTENER_CONNECTORS__WEBHOOK__SECRETS='["whsec_..."]'``,
    the way to keep secrets out of the YAML file) arrive as strings; scalars validate from
    strings as they are, collections need their JSON read. A string that is not JSON is left
    for validation to report with the field's name.
    """
    decoded = dict(options)
    for key, value in options.items():
        field = model.model_fields.get(key)
        if isinstance(value, str) and field is not None and _takes_json(field.annotation):
            with contextlib.suppress(ValueError):
                decoded[key] = json.loads(value)
    return decoded


def build_connectors(settings: ListenerSettings, matcher: BrandMatcher) -> list[Connector]:
    """Instantiate every enabled connector block (``enabled: false`` switches one off).

    Raises:
        FatalError: An unknown connector name or an invalid block.
    """
    built: list[Connector] = []
    for name, block in settings.connectors.items():
        options: dict[str, Any] = dict(block or {})
        try:
            enabled = TypeAdapter(bool).validate_python(options.pop("enabled", True))
        except ValidationError as exc:
            raise FatalError(
                f"connectors.{name}.enabled: {describe_validation_error(exc)}"
            ) from exc
        if not enabled:
            continue
        cls = registry.load(name)
        try:
            config = cls.settings_model.model_validate(
                from_environment(options, cls.settings_model)
            )
        except ValidationError as exc:
            raise FatalError(f"connectors.{name}: {describe_validation_error(exc)}") from exc
        built.append(cls(config, matcher))
    return built


async def listen(settings: ListenerSettings, *, registry_: CollectorRegistry | None = None) -> int:
    """Run until SIGINT/SIGTERM or until every connector stopped; returns the exit status."""
    matcher = BrandMatcher(settings.brands)
    connectors = build_connectors(settings, matcher)
    if not connectors:
        raise FatalError("no connector enabled: add a block under 'connectors'")
    metrics = create_metrics(registry_)
    opts = settings.listen
    heartbeat = Heartbeat()
    server = None
    if opts.metrics_port is not None:
        server = serve(opts.metrics_host, opts.metrics_port, metrics_registry(registry_), heartbeat)
    runner = Runner(
        connectors,
        matcher,
        lambda: MentionProducer(settings.kafka),
        CursorStore(opts.cursor_dir),
        metrics,
        backoff_base_s=opts.backoff_base_s,
        backoff_max_s=opts.backoff_max_s,
        dedup_size=opts.dedup_size,
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, runner.stop)
    names = ", ".join(c.name for c in connectors)
    log.info("listening with %s; brands: %s", names, ", ".join(b.name for b in settings.brands))
    beating = asyncio.create_task(heartbeat.run())
    try:
        results = await runner.run()
    finally:
        beating.cancel()
        if server is not None:
            server.shutdown()
            server.server_close()
    failed = {name: msg for name, msg in results.items() if msg}
    for name, msg in failed.items():
        print(f"error: connector {name} stopped: {msg}", file=sys.stderr)
    return EXIT_FATAL if failed else EXIT_OK


def metrics_registry(registry_: CollectorRegistry | None) -> CollectorRegistry:
    """The registry to expose: the given one, or the client's default."""
    from prometheus_client import REGISTRY

    return REGISTRY if registry_ is None else registry_


def run_listen(args: argparse.Namespace) -> int:
    """Run ``brand-listener listen``; returns the exit status."""
    if not getattr(args, "verbose", False):
        logging.getLogger("kafka").setLevel(logging.WARNING)
    try:
        settings = load_settings(
            args.config, bootstrap_servers=args.bootstrap, topic_prefix=args.topic_prefix
        )
        if args.check_config:
            connectors = build_connectors(settings, BrandMatcher(settings.brands))
            if not connectors:
                raise FatalError("no connector enabled: add a block under 'connectors'")
            names = ", ".join(c.name for c in connectors)
            print(f"{args.config}: valid; connectors: {names}; brands: {len(settings.brands)}")
            return EXIT_OK
        return asyncio.run(listen(settings))
    except FatalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG


def register_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``listen`` to the top-level parser."""
    p = sub.add_parser(
        "listen",
        help="run the configured source connectors into mentions.raw",
        description=(
            "Run the connectors enabled in the config file concurrently; produce posts that "
            "match a configured brand to mentions.raw (keyed by Mention id) and keep each "
            "connector's cursor so a restart resumes without gaps."
        ),
        epilog="exit status: 0 stopped by a signal, 1 a connector stopped on a fatal "
        "error, 2 invalid configuration",
    )
    p.add_argument("--config", type=Path, required=True, metavar="FILE.yaml")
    p.add_argument("--bootstrap", metavar="HOST:PORT", help="Kafka bootstrap servers")
    p.add_argument("--topic-prefix", metavar="P", help="topic-name prefix")
    p.add_argument(
        "--check-config",
        action="store_true",
        help="validate the config (brands, every connector block) and exit: 0 valid, 2 not",
    )
    p.set_defaults(func=run_listen)
