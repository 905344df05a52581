"""``brand-listener inbox``: the support inbox web server (see README "Support inbox").

Reads ``mentions.needs-response`` and ``mentions.inbox-actions`` from the start
(the view is rebuilt on every start; replicas show the same state) and serves
the queue on ``--port``. Users log in from ``--users`` (YAML, bcrypt hashes;
``--hash-password`` prints a hash for a password read from standard input) or,
behind a trusted reverse proxy, are named by ``--trust-proxy-header``.

Environment: ``INBOX_USERS``, ``INBOX_SECRET`` (sessions; replicas behind one
address must share it; default: random per process), ``INBOX_PORT``,
``INBOX_INSECURE_COOKIES=1`` (plain-http localhost only), ``INBOX_PROXY_HEADER``;
Kafka from the worker's ``AGENTS_KAFKA__BOOTSTRAP_SERVERS`` and ``AGENTS_KAFKA__TOPIC_PREFIX``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import logging
import os
import secrets
import signal
import sys
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry

from agents.inbox.auth import User, hash_password, load_users
from agents.inbox.bus import Feed, Writer, create_inbox_topics
from agents.inbox.metrics import InboxMetrics
from agents.inbox.state import InboxState
from agents.inbox.web import InboxConfig, build_app
from agents.settings import AgentSettings
from listener.kafka_admin import KafkaSecurityError, probe_security

log = logging.getLogger(__name__)


async def serve(args: argparse.Namespace, users: dict[str, User], secret: bytes) -> None:
    """Run the inbox until SIGINT/SIGTERM."""
    flags = {"bootstrap_servers": args.bootstrap, "topic_prefix": args.topic_prefix}
    kafka = AgentSettings.load(kafka=flags).kafka  # the worker's Kafka block, flags on top
    await probe_security(kafka, kafka.bootstrap_timeout_s)
    topics = kafka.topics
    await asyncio.to_thread(create_inbox_topics, kafka, topics)
    registry = CollectorRegistry()
    metrics, state = InboxMetrics(registry), InboxState()
    feed = Feed(kafka, topics, state)
    writer = Writer(kafka, topics, state, metrics)
    await writer.start()
    config = InboxConfig(
        users=users,
        secret=secret,
        secure_cookies=not args.insecure_cookies,
        proxy_header=args.trust_proxy_header or None,
    )
    app = build_app(config, state, writer, feed, registry, metrics)
    runner = web.AppRunner(app, shutdown_timeout=5.0)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    print(f"inbox: serving http://{args.host}:{args.port}/", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    reading = asyncio.create_task(feed.run())
    stopping = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if reading in done:
            reading.result()  # a Kafka failure ends the process with its error
    finally:
        for task in (reading, stopping):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await runner.cleanup()
        await writer.stop()


def run_inbox(args: argparse.Namespace) -> int:
    """Run ``brand-listener inbox``; returns the exit status."""
    if args.hash_password:
        password = (
            sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else getpass.getpass()
        )
        if not password:
            print("error: empty password", file=sys.stderr)
            return 2
        print(hash_password(password))
        return 0
    users: dict[str, User] = {}
    if args.users:
        try:
            users = load_users(Path(args.users))
        except (OSError, ValueError) as exc:
            print(f"error: users file: {exc}", file=sys.stderr)
            return 2
    if not users and not args.trust_proxy_header:
        print("error: give --users FILE (or --trust-proxy-header behind a proxy)", file=sys.stderr)
        return 2
    secret = (args.secret or os.environ.get("INBOX_SECRET", "")).encode() or secrets.token_bytes(32)
    if len(secret) < 16:
        print("error: INBOX_SECRET must be at least 16 characters", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(args, users, secret))
    except KafkaSecurityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def register_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``inbox`` to the top-level parser."""
    env = os.environ.get
    p = sub.add_parser(
        "inbox",
        help="serve the support inbox (live queue, claim, respond, resolve) on the web",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--users", default=env("INBOX_USERS"), metavar="FILE", help="users file (YAML)")
    p.add_argument("--host", default=env("INBOX_HOST", "127.0.0.1"), help="listen address")
    p.add_argument("--port", type=int, default=int(env("INBOX_PORT", "8086")), help="HTTP port")
    p.add_argument(
        "--bootstrap", help="Kafka bootstrap servers (default: the worker's, AGENTS_KAFKA__...)"
    )
    p.add_argument("--topic-prefix", help="topic-name prefix (default: the worker's)")
    p.add_argument("--secret", help="session signing secret (default: INBOX_SECRET or random)")
    p.add_argument(
        "--insecure-cookies",
        action="store_true",
        default=env("INBOX_INSECURE_COOKIES", "") == "1",
        help="session cookie without Secure (plain http on localhost only)",
    )
    p.add_argument(
        "--trust-proxy-header",
        default=env("INBOX_PROXY_HEADER"),
        metavar="HEADER",
        help="take the user name from this header set by a trusted reverse proxy (off by default)",
    )
    p.add_argument(
        "--hash-password",
        action="store_true",
        help="print a bcrypt hash of a password read from standard input, then exit",
    )
    p.set_defaults(func=run_inbox)


def main(argv: list[str] | None = None) -> int:
    """``python -m agents.commands.inbox``: the inbox alone (faster start than the full CLI)."""
    parser = argparse.ArgumentParser(prog="brand-listener")
    register_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["inbox", *(sys.argv[1:] if argv is None else argv)])
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
