"""The inbox web app (aiohttp): security middleware, login and logout, health and metrics.

Every route but ``/health``, ``/metrics``, ``/login`` and ``/static/`` needs a
session (or, in proxy-header mode, the trusted header): pages redirect to the
login page, the event stream and every POST answer 401. Every POST must carry
the session's CSRF token (403 otherwise); the login form carries a
double-submit token. Every response gets a strict Content-Security-Policy (no
inline script, no third-party origin), ``nosniff`` and ``no-referrer``.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from agents.inbox import pages
from agents.inbox.auth import LoginLimiter, Session, Sessions, User, check_password
from agents.inbox.bus import Feed, Writer
from agents.inbox.metrics import InboxMetrics
from agents.inbox.state import InboxState
from agents.inbox.views import environment

COOKIE = "inbox_session"
LOGIN_COOKIE = "inbox_login"
PUBLIC = ("/health", "/metrics", "/login", "/static/", "/favicon.ico")
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
STATIC = Path(__file__).parent / "static"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class InboxConfig:
    """How one inbox replica runs.

    Attributes:
        users: The users file's users (roles also apply in proxy-header mode).
        secret: Session signing key; replicas behind one address must share it.
        secure_cookies: Mark the session cookie ``Secure`` (off only for http://localhost).
        proxy_header: Trust this request header as the user name (behind a proxy only).
        row_limit: Items rendered on the queue page at most.
    """

    users: dict[str, User]
    secret: bytes
    secure_cookies: bool = True
    proxy_header: str | None = None
    row_limit: int = 200
    limiter: LoginLimiter = field(default_factory=LoginLimiter)


def _authenticate(request: web.Request, config: InboxConfig, sessions: Sessions) -> Session | None:
    if config.proxy_header:
        name = request.headers.get(config.proxy_header, "").strip()
        if not name:
            return None
        user = config.users.get(name)
        return Session(name, user.role if user else "agent", f"proxy:{name}", float("inf"))
    return sessions.read(request.cookies.get(COOKIE))


async def _favicon(request: web.Request) -> web.Response:
    return web.Response(status=204)


def build_app(
    config: InboxConfig,
    state: InboxState,
    writer: Writer | None,
    feed: Feed | None,
    registry: CollectorRegistry,
    metrics: InboxMetrics,
) -> web.Application:
    """The aiohttp application; ``feed``/``writer`` None serve a fixed state (benchmarks, tests)."""
    sessions = Sessions(config.secret)

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if not any(path == p or (p.endswith("/") and path.startswith(p)) for p in PUBLIC):
            session = _authenticate(request, config, sessions)
            if session is None:
                if request.method == "GET" and path != "/events":
                    raise web.HTTPSeeOther("/login")
                raise web.HTTPUnauthorized(text="login required")
            if request.method == "POST":
                form = await request.post()
                token = form.get("csrf")
                if not sessions.csrf_ok(session.sid, token if isinstance(token, str) else None):
                    raise web.HTTPForbidden(text="missing or bad CSRF token")
        response = await handler(request)
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        if not path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    app = web.Application(middlewares=[guard], client_max_size=64 * 1024)
    env = environment()
    ctx = pages.Context(
        config.row_limit, state, writer, env, sessions, metrics,
        lambda request: _authenticate(request, config, sessions),
    )  # fmt: skip
    app[pages.CONTEXT] = ctx

    def render(name: str, status: int = 200, **values: object) -> web.Response:
        html = env.get_template(name).render(**values)
        return web.Response(text=html, status=status, content_type="text/html")

    def login_page(
        request: web.Request, error: str | None = None, status: int = 200
    ) -> web.Response:
        # One token per browser: a second tab (or the favicon's redirect) keeps the first valid.
        token = request.cookies.get(LOGIN_COOKIE) or ""
        if not 24 <= len(token) <= 64 or not token.replace("-", "").replace("_", "").isalnum():
            token = secrets.token_urlsafe(24)
        response = render("login.html", status, error=error, login_token=token, session=None)
        response.set_cookie(
            LOGIN_COOKIE, token, httponly=True, samesite="Strict",
            secure=config.secure_cookies, path="/login",
        )  # fmt: skip
        return response

    async def login_get(request: web.Request) -> web.StreamResponse:
        if config.proxy_header:
            raise web.HTTPSeeOther("/")
        return login_page(request)

    async def login_post(request: web.Request) -> web.StreamResponse:
        form = await request.post()
        token, cookie = form.get("login_token"), request.cookies.get(LOGIN_COOKIE)
        if not isinstance(token, str) or not cookie or not secrets.compare_digest(token, cookie):
            raise web.HTTPForbidden(text="missing or bad login token; reload the login page")
        name, password = str(form.get("username", ""))[:200], str(form.get("password", ""))
        client = request.remote or "?"
        if not config.limiter.allowed(name, client):
            return login_page(request, "Too many failed logins; wait a few minutes.", 429)
        user = await asyncio.to_thread(check_password, config.users, name, password)
        if user is None:
            config.limiter.failed(name, client)
            return login_page(request, "Wrong user name or password.", 401)
        config.limiter.succeeded(name)
        response = web.HTTPSeeOther("/")
        response.set_cookie(
            COOKIE, sessions.issue(user), httponly=True, samesite="Strict",
            secure=config.secure_cookies, path="/", max_age=12 * 3600,
        )  # fmt: skip
        response.del_cookie(LOGIN_COOKIE, path="/login")
        raise response

    async def logout(request: web.Request) -> web.StreamResponse:
        response = web.HTTPSeeOther("/login")
        response.del_cookie(COOKIE, path="/")
        raise response

    async def health(request: web.Request) -> web.StreamResponse:
        ready = feed is None or feed.ready.is_set()
        body = {"status": "ok" if ready else "starting", "items": len(state.items)}
        if feed is not None and feed.error:
            body["detail"] = feed.error
        return web.json_response(body, status=200 if ready else 503)

    async def prometheus(request: web.Request) -> web.StreamResponse:
        metrics.refresh(state)
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/login", login_get)
    app.router.add_post("/login", login_post)
    app.router.add_post("/logout", logout)
    app.router.add_get("/health", health)
    app.router.add_get("/favicon.ico", _favicon)
    app.router.add_get("/metrics", prometheus)
    app.router.add_static("/static/", STATIC, append_version=True)
    pages.add_routes(app)
    return app
