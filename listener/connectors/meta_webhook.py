"""Meta webhooks: Facebook Page feed posts, comments and mentions; Instagram comments and mentions.

Docs: https://developers.facebook.com/docs/graph-api/webhooks/getting-started ,
https://developers.facebook.com/docs/graph-api/webhooks/reference/page ,
https://developers.facebook.com/docs/instagram-platform/webhooks .

Setup: in the app dashboard, subscribe the ``page`` object to ``feed`` and
``mention`` and the ``instagram`` object to ``comments`` and ``mentions``, with
this endpoint's public URL as callback and ``verify_token`` as verify token;
install the app on the Page (``POST /{page-id}/subscribed_apps?subscribed_fields=feed,mention``).
Live notifications need the app in Live mode with advanced access to
``pages_read_engagement`` / ``pages_manage_metadata`` and ``instagram_manage_comments``
(README, "Meta app review").

Auth: ``GET <path>?hub.mode=subscribe&hub.verify_token=..&hub.challenge=..`` (the
subscription handshake) answers the challenge as plain text when the token is
ours, else 403. Every ``POST`` carries ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256
of the raw body keyed with the app secret>``: missing is 401, wrong is 403.

Payload: ``{"object": "page"|"instagram", "entry": [{"id", "time", "changes":
[{"field", "value"}]}]}``; every change of every entry is one event:

* ``page`` / ``feed``: ``value.item`` ``status``/``post``/``photo``/``video``/``share``
  is a post (``facebook:<post_id>``), ``comment`` a comment
  (``facebook:<comment_id>``, reply_to ``parent_id`` else ``post_id``, thread
  ``post_id``); ``verb`` ``add`` and ``edited`` are read (an edit keeps its id,
  so the runner and the idempotent sinks drop it as a repeat), ``remove``,
  ``hide`` and reactions/likes are ignored: they are not new mentions. A post
  without text (a bare photo) is ignored too.
* ``page`` / ``mention``: the post or comment that @-mentions the Page
  (``post_id``, ``comment_id``, ``message`` when Meta includes it).
* ``instagram`` / ``comments`` (and ``live_comments``): ``instagram:<id>``,
  reply_to ``parent_id`` else the media, thread the media; the comment's time
  is the entry's ``time`` (the notification has no timestamp).
* ``instagram`` / ``mentions``: ids only (``media_id``, ``comment_id``); with no
  text there is nothing to classify, so each is dead-lettered with reason
  ``no_text`` (the ids are in the detail; the ``meta_graph`` connector or the
  Graph API's ``mentioned_comment`` field fetches the text).

Answers: ``200 EVENT_RECEIVED`` once every Mention of the request is acknowledged
by Kafka, or at once when none was made; ``503`` + ``Retry-After`` when Kafka did not
acknowledge in ``ack_timeout_s`` (Meta retries a failed delivery with backoff
for up to 36 hours); ``400`` for a signed body that is not a notification (also
dead-lettered); ``413`` over ``max_body_bytes``.
Rate limits: none (Meta pushes). Cursor: none (a push source; Meta's retry queue
is the progress). Missed notifications after a long outage: run ``meta_graph``.
Delivery: at-least-once.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, ClassVar

import orjson
from aiohttp import web
from pydantic import BaseModel, Field, SecretStr

from listener.brands import BrandMatcher
from listener.connectors.base import Skipped
from listener.connectors.meta import (
    build,
    check_owner_brands,
    fb_author,
    ig_author,
    native,
    owned_by,
    safe_url,
)
from listener.connectors.push import PushConnector, PushSettings
from listener.errors import FatalError, SkippableError
from listener.record import Mention

POST_ITEMS = frozenset({"status", "post", "photo", "video", "share"})
READ_VERBS = frozenset({"add", "edited"})


class MetaWebhookSettings(PushSettings):
    """The ``connectors.meta_webhook`` config block."""

    port: int = Field(default=8089, ge=0, le=65535, description="0 = any free port.")
    path: str = "/webhooks/meta"
    app_secret: SecretStr = Field(description="The Meta app's secret (signs every POST).")
    verify_token: SecretStr = Field(description="Any string; also typed into the dashboard.")
    ack_timeout_s: float = Field(default=15.0, gt=0, description="Kafka ack wait before 503.")
    accounts: dict[str, str] = Field(
        default_factory=dict,
        description="Page id or Instagram account id -> the configured brand it belongs to: "
        "notifications about it are that brand's mentions, named or not.",
    )


def sign(secret: bytes, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value of ``body`` (also used by tests)."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class MetaWebhookConnector(PushConnector):
    """Serves the Meta webhook callback (see module docstring)."""

    name: ClassVar[str] = "meta_webhook"
    settings_model: ClassVar[type[BaseModel]] = MetaWebhookSettings

    def __init__(self, settings: MetaWebhookSettings, brands: BrandMatcher) -> None:
        super().__init__(settings, brands)
        self.settings = settings
        self._secret = settings.app_secret.get_secret_value().encode()
        if not self._secret or not settings.verify_token.get_secret_value():
            raise FatalError("meta_webhook: app_secret and verify_token must not be empty")
        check_owner_brands(self.name, settings.accounts, brands)

    def routes(self, app: web.Application) -> None:
        """``GET <path>`` (verification) and ``POST <path>`` (notifications)."""
        app.router.add_get(self.settings.path, self._verify)
        app.router.add_post(self.settings.path, self._notify)

    async def _verify(self, request: web.Request) -> web.Response:
        query = request.query
        token = query.get("hub.verify_token", "").encode()
        expected = self.settings.verify_token.get_secret_value().encode()
        if query.get("hub.mode") != "subscribe" or not hmac.compare_digest(token, expected):
            return web.Response(status=403, text="verification failed")
        return web.Response(text=query.get("hub.challenge", ""), content_type="text/plain")

    async def _notify(self, request: web.Request) -> web.Response:
        body = await self.read_body(request)
        if body is None:
            return web.Response(status=413, text=f"body over {self.settings.max_body_bytes} bytes")
        offered = request.headers.get("X-Hub-Signature-256", "")
        if not offered.startswith("sha256="):
            return web.Response(status=401, text="missing X-Hub-Signature-256")
        if not hmac.compare_digest(offered.encode(), sign(self._secret, body).encode()):
            return web.Response(status=403, text="X-Hub-Signature-256 does not match")
        key = hashlib.sha256(body).hexdigest()[:16]
        try:
            mentions, skipped = parse(body)
        except SkippableError as exc:
            payload = body.decode("utf-8", "replace")
            self.submit(key, (), (Skipped(exc.reason, f"meta_webhook: {exc}", payload),))
            return web.Response(status=400, text=str(exc))
        if self.closed:
            return web.Response(status=503, text="listener stopping", headers={"Retry-After": "5"})
        accounts = self.settings.accounts
        mentions = tuple(
            owned_by(m, accounts.get(str(m.signals.get("account_id")))) for m in mentions
        )
        future = self.submit(key, mentions, skipped)
        failed = None if future is None else await self.outcome(future)
        if failed is not None:
            return web.Response(status=503, text=failed, headers={"Retry-After": "5"})
        return web.Response(text="EVENT_RECEIVED")


def parse(body: bytes) -> tuple[tuple[Mention, ...], tuple[Skipped, ...]]:
    """Every change of every entry of one notification: Mentions, and what was dead-lettered.

    Raises:
        SkippableError: ``decode`` (not JSON) or ``validation`` (not a notification).
    """
    try:
        envelope = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise SkippableError("decode", f"body is not JSON: {exc}") from exc
    if not isinstance(envelope, dict) or not isinstance(envelope.get("entry"), list):
        raise SkippableError("validation", "expected {'object': ..., 'entry': [...]}")
    kind = envelope.get("object")
    mentions: list[Mention] = []
    skipped: list[Skipped] = []
    for n, entry in enumerate(envelope["entry"]):
        changes = entry.get("changes") if isinstance(entry, dict) else None
        if not isinstance(changes, list):
            skipped.append(Skipped("validation", f"meta_webhook: entry[{n}] without changes"))
            continue
        for m, change in enumerate(changes):
            where = f"entry[{n}].changes[{m}]"
            try:
                mention = _change(kind, entry, change)
            except SkippableError as exc:
                if exc.reason != "ignored":
                    raw = orjson.dumps(change).decode()
                    skipped.append(Skipped(exc.reason, f"meta_webhook {where}: {exc}", raw))
                continue
            mentions.append(mention)
    return tuple(mentions), tuple(skipped)


def _change(kind: Any, entry: dict[str, Any], change: Any) -> Mention:
    """One change as a Mention.

    Raises:
        SkippableError: ``ignored`` (not a new mention: a removal, a like, a bare
            photo), ``no_text`` (a mention notice without its text), ``validation``.
    """
    if not isinstance(change, dict) or not isinstance(change.get("value"), dict):
        raise SkippableError("validation", "change without a value object")
    field, value = change.get("field"), change["value"]
    signals = {"meta_field": field, "account_id": native(entry.get("id"))}
    if kind == "page" and field in ("feed", "mention"):
        return _page(field, value, entry.get("time"), signals)
    if kind == "instagram" and field in ("comments", "live_comments"):
        media = value.get("media") if isinstance(value.get("media"), dict) else {}
        return build(
            "instagram",
            value.get("id"),
            value.get("text"),
            entry.get("time"),
            author=ig_author(None, value.get("from")),
            reply_to=value.get("parent_id") or media.get("id"),
            thread=media.get("id"),
            signals={**signals, "media_product_type": media.get("media_product_type")},
        )
    if kind == "instagram" and field == "mentions":
        item = value.get("comment_id") or value.get("media_id")
        return build(
            "instagram",
            item,
            value.get("text") or value.get("caption"),
            entry.get("time"),
            author=ig_author(value.get("username")),
            reply_to=value.get("media_id") if value.get("comment_id") else None,
            thread=value.get("media_id") if value.get("comment_id") else None,
            signals=signals,
        )
    raise SkippableError("ignored", f"{kind}/{field}: not a field this connector reads")


def _page(field: str, value: dict[str, Any], sent: Any, signals: dict[str, Any]) -> Mention:
    verb, item = value.get("verb", "add"), value.get("item")
    if verb not in READ_VERBS:
        raise SkippableError("ignored", f"verb {verb!r} is not a new mention")
    post_id = native(value.get("post_id"))
    created = value.get("created_time") or sent
    author = fb_author(value.get("from"))
    if field == "mention" and not value.get("from"):
        author = fb_author({"id": value.get("sender_id"), "name": value.get("sender_name")})
    post_url = f"https://www.facebook.com/{post_id}" if post_id else None
    if item == "comment":
        comment_id = native(value.get("comment_id"))
        local = comment_id.rsplit("_", 1)[-1] if comment_id else None
        return build(
            "facebook",
            comment_id,
            value.get("message"),
            created,
            author=author,
            url=f"{post_url}?comment_id={local}" if post_url and local else None,
            reply_to=value.get("parent_id") or post_id,
            thread=post_id,
            signals={**signals, "item": item, "verb": verb},
        )
    if item in POST_ITEMS:
        try:
            return build(
                "facebook",
                post_id,
                value.get("message"),
                created,
                author=author,
                url=post_url,
                signals={**signals, "item": item, "verb": verb, "links": _links(value)},
            )
        except SkippableError as exc:
            if exc.reason == "no_text" and field == "feed":
                raise SkippableError("ignored", str(exc)) from exc
            raise
    raise SkippableError("ignored", f"feed item {item!r} is not a post or comment")


def _links(value: dict[str, Any]) -> list[str]:
    """The shared link of a ``share`` item, for brand matching on domains."""
    link = safe_url(value.get("link"))
    return [link] if link else []
