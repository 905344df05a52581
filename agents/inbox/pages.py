"""The logged-in pages: the queue, an item, the action POST and the live event stream.

The queue page is rendered on the server; ``/events`` (server-sent events)
then pushes each changed item's row, rendered by the same template, and the
filter counts, so the page stays live without a reload. The item page listens
to the same stream for its own id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import jinja2
import orjson
from aiohttp import web
from pydantic import ValidationError

from agents.inbox.auth import Session, Sessions
from agents.inbox.bus import Writer
from agents.inbox.metrics import InboxMetrics
from agents.inbox.state import FILTERS, InboxState, matches
from agents.inbox.views import filter_query, item_context
from agents.queue.actions import ActionRefused
from listener.record import LABELS

log = logging.getLogger(__name__)

KINDS = (
    "claim", "take_over", "release", "first_response", "resolve", "reopen",
    "reassign_team", "correct_label", "mark_spam",
)  # fmt: skip
COUNTS_EVERY_S = 0.5
"""At most one filter-count update per stream per this many seconds."""
KEEPALIVE_S = 15.0


@dataclass
class Context:
    """What the pages share."""

    row_limit: int
    state: InboxState
    writer: Writer | None
    env: jinja2.Environment
    sessions: Sessions
    metrics: InboxMetrics
    authenticate: Callable[[web.Request], Session | None]
    streams: set[asyncio.Task[Any]] = field(default_factory=set)

    def session(self, request: web.Request) -> Session:
        """The request's session (the middleware let only logged-in requests through)."""
        session = self.authenticate(request)
        if session is None:
            raise web.HTTPUnauthorized(text="login required")
        return session


CONTEXT: web.AppKey[Context] = web.AppKey("inbox", Context)


def _filters(request: web.Request) -> dict[str, str]:
    return {k: request.query[k][:200] for k in FILTERS if request.query.get(k)}


def _page(ctx: Context, request: web.Request, name: str, **values: Any) -> web.Response:
    session = ctx.session(request)
    html = ctx.env.get_template(name).render(
        session=session, csrf=ctx.sessions.csrf_token(session.sid), now=time.time(), **values
    )
    return web.Response(text=html, content_type="text/html")


async def queue_page(request: web.Request) -> web.StreamResponse:
    """``GET /``: the queue, filtered by the query string."""
    ctx = request.app[CONTEXT]
    filters = _filters(request)
    items = ctx.state.select(filters)
    return _page(
        ctx, request, "queue.html",
        items=items[: ctx.row_limit], shown=min(len(items), ctx.row_limit), total=len(items),
        facets=ctx.state.facets(filters), filters=filters, filter_query=filter_query,
    )  # fmt: skip


async def item_page(request: web.Request) -> web.StreamResponse:
    """``GET /item?id=...``: one item with its context, history and actions."""
    ctx = request.app[CONTEXT]
    item = ctx.state.items.get(request.query.get("id", ""))
    if item is None:
        raise web.HTTPNotFound(text="no such item on the queue")
    return _page(
        ctx, request, "item.html", item=item, labels=LABELS,
        message=request.query.get("msg", "")[:300], **item_context(ctx.state, item),
    )  # fmt: skip


async def action(request: web.Request) -> web.StreamResponse:
    """``POST /action``: one action on one item (CSRF checked by the middleware)."""
    ctx = request.app[CONTEXT]
    session = ctx.session(request)
    form = await request.post()
    mention_id, kind = str(form.get("id", "")), str(form.get("kind", ""))
    if mention_id not in ctx.state.items or kind not in KINDS or ctx.writer is None:
        raise web.HTTPBadRequest(text="unknown item or action")
    team = str(form.get("team", "")).strip() or None
    label = str(form.get("label", "")).strip() or None
    message = ""
    try:
        await ctx.writer.act(mention_id, kind, session.user, session.role, team=team, label=label)
    except ActionRefused as exc:
        message = str(exc)
    except ValidationError:
        message = "that value is not allowed"
    target = "/item?" + urlencode({"id": mention_id, **({"msg": message} if message else {})})
    raise web.HTTPSeeOther(target)


async def events(request: web.Request) -> web.StreamResponse:
    """``GET /events``: server-sent events for the queue page (``?id=`` for one item's page)."""
    ctx = request.app[CONTEXT]
    filters, only = _filters(request), request.query.get("id")
    changed: asyncio.Queue[str] = asyncio.Queue()
    task = asyncio.current_task()
    if task is not None:
        ctx.streams.add(task)  # cancelled on shutdown: an open stream never delays a stop
    unsubscribe = ctx.state.subscribe(changed.put_nowait)
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
    )
    await response.prepare(request)
    row = ctx.env.get_template("_row.html")
    facets = ctx.env.get_template("_filters.html")
    counts_due, counts_pending = 0.0, False
    try:
        await response.write(b"event: hello\ndata: {}\n\n")
        while True:
            wait = max(0.01, counts_due - time.monotonic()) if counts_pending else KEEPALIVE_S
            ids: set[str] = set()
            try:
                ids.add(await asyncio.wait_for(changed.get(), wait))
            except TimeoutError:
                if not counts_pending:
                    await response.write(b": keepalive\n\n")
                    continue
            while not changed.empty():
                ids.add(changed.get_nowait())
            if only is not None:
                if only in ids:
                    await response.write(b"event: changed\ndata: {}\n\n")
                continue
            chunks = []
            for mention_id in ids:
                item = ctx.state.items.get(mention_id)
                body: dict[str, Any] = {"id": mention_id}
                if item is not None and matches(item, filters):
                    body["html"] = row.render(item=item)
                chunks.append(b"event: item\ndata: " + orjson.dumps(body) + b"\n\n")
            counts_pending = True
            if time.monotonic() >= counts_due:
                counts_due, counts_pending = time.monotonic() + COUNTS_EVERY_S, False
                counts = ctx.state.facets(filters)
                html = facets.render(facets=counts, filters=filters, filter_query=filter_query)
                body = {"html": html, "total": counts.total}
                chunks.append(b"event: counts\ndata: " + orjson.dumps(body) + b"\n\n")
            if chunks:
                await response.write(b"".join(chunks))
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        unsubscribe()
        if task is not None:
            ctx.streams.discard(task)
        with contextlib.suppress(Exception):
            await response.write_eof()
    return response


async def _close_streams(app: web.Application) -> None:
    for task in list(app[CONTEXT].streams):
        task.cancel()


def add_routes(app: web.Application) -> None:
    """Register the pages on ``app`` (and the shutdown hook that ends the event streams)."""
    app.on_shutdown.append(_close_streams)
    app.router.add_get("/", queue_page)
    app.router.add_get("/item", item_page)
    app.router.add_post("/action", action)
    app.router.add_get("/events", events)
