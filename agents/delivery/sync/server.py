"""The webhook receiver of the helpdesk sync-back (an aiohttp app inside the worker).

One route per enabled webhook system, ``POST /sync/<sink>`` (``zendesk``,
``jira_sm``, ``freshdesk``), plus ``GET /sync/health``. Every request body is
untrusted: it is read up to ``sync.max_body_bytes`` (413 beyond), checked by
the system's signature or shared secret before anything else (401, nothing
written), then parsed as JSON and validated against the documented shape
(400). A solved ticket the ledger (or the payload's own Mention id) maps to an
item is resolved through :class:`~agents.delivery.sync.base.Resolver`, and the
answer is 200 only after Kafka acknowledged the records; a Kafka failure is a
503, so the helpdesk retries. Other events and unknown tickets are answered
200 (``ignored``) so the helpdesk does not retry them.

Auth: per system (signature or shared secret, constant-time compare); no
other route but the health check. Rate limits: none of its own beyond the
body limit; put it behind the ingress that terminates TLS. Idempotency: a
repeated webhook writes no second resolve (``apply`` refuses it). Guarantee:
at-least-once (2xx only after Kafka acknowledged).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

import orjson
from aiohttp import web

from agents.delivery.sync.base import Resolver, WebhookSystem

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(body: dict[str, object], status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def webhook_handler(system: WebhookSystem, resolver: Resolver, max_body: int) -> Handler:
    """The request handler of one webhook system."""

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.content_length is not None and request.content_length > max_body:
            return _json({"error": "body too large"}, 413)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _json({"error": "body too large"}, 413)
        if not system.verify(request.headers, body):
            log.warning("%s: webhook with a bad signature refused", system.name)
            return _json({"error": "bad signature"}, 401)
        try:
            solved = system.solved(orjson.loads(body))
        except ValueError as exc:  # JSONDecodeError and pydantic's ValidationError are ValueErrors
            log.warning("%s: invalid webhook payload: %s", system.name, str(exc)[:300])
            return _json({"error": "invalid payload"}, 400)
        if solved is None:
            return _json({"ignored": "not a solved ticket"})
        mention_id = await resolver.mention_of(system.name, solved)
        if mention_id is None:
            return _json({"ignored": "unknown ticket"})
        try:
            changed = await resolver.resolve(system.name, mention_id, solved)
        except Exception as exc:  # noqa: BLE001 - Kafka did not take it: let the helpdesk retry
            log.error("%s: could not record %s resolved: %r", system.name, mention_id, exc)
            return _json({"error": "not recorded, retry"}, 503)
        return _json({"resolved": mention_id, "changed": changed})

    return handle


def webhook_app(
    systems: Mapping[str, WebhookSystem], resolver: Resolver, max_body: int
) -> web.Application:
    """The receiver app: ``POST /sync/<name>`` per system and ``GET /sync/health``."""
    app = web.Application(client_max_size=max_body)
    for name, system in systems.items():
        app.router.add_post(f"/sync/{name}", webhook_handler(system, resolver, max_body))

    async def health(_: web.Request) -> web.Response:
        return _json({"ok": True, "systems": sorted(systems)})

    app.router.add_get("/sync/health", health)
    return app


class WebhookServer:
    """Runs :func:`webhook_app` on ``host:port`` (port 0: a free one, see :attr:`port`)."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self._app = app
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self.port = port

    async def start(self) -> None:
        """Bind and serve."""
        self._runner = web.AppRunner(self._app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        log.info("helpdesk sync webhooks on %s:%d", self._host, self.port)

    async def stop(self) -> None:
        """Stop serving (requests in flight finish first)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
