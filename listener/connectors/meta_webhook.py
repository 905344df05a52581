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
* ``instagram`` / ``mentions``: the brand was @-mentioned in a comment
  (``media_id`` + ``comment_id``) or a caption (``media_id``); the notification
  carries ids only. With ``access_token`` set (a Page/Instagram token with
  ``instagram_manage_comments``) the text is fetched from the Graph API on the
  entry's account (the ig-user-id), one change after another, before the
  request is answered (https://developers.facebook.com/docs/instagram-platform/
  instagram-graph-api/reference/ig-user/mentioned_comment and .../mentioned_media):
  ``GET /{ig-user-id}?fields=mentioned_comment.comment_id({comment-id})
  {id,text,timestamp,username,media{id,permalink}}`` gives ``instagram:<comment
  id>`` (reply_to and thread the media), and ``GET /{ig-user-id}?fields=
  mentioned_media.media_id({media-id}){id,caption,timestamp,username,permalink}``
  gives ``instagram:<media id>``; author the username, url the media's permalink.
  A Graph error about one mention (code 100: the comment was deleted or cannot
  be read; also an expired token, code 190) dead-letters that change with
  reason ``graph_error`` and the error as detail; the other changes go on. A
  rate limit, a 5xx or a network failure answers 503 + ``Retry-After`` and
  nothing of the notification is produced (Meta redelivers all of it).
  Without ``access_token`` each is dead-lettered with reason ``no_text`` and
  the ids in the detail.

Answers: ``200 EVENT_RECEIVED`` once every Mention of the request is acknowledged
by Kafka, or at once when none was made; ``503`` + ``Retry-After`` when Kafka did not
acknowledge in ``ack_timeout_s`` or a Graph lookup must be retried (Meta retries a
failed delivery with backoff for up to 36 hours); ``400`` for a signed body that is
not a notification (also dead-lettered); ``413`` over ``max_body_bytes``.
Rate limits: none from Meta's pushes; the Graph lookups count against the
token's Instagram rate limit (usage headers as in :mod:`~listener.connectors.meta`).
Cursor: none (a push source; Meta's retry queue is the progress). Missed
notifications after a long outage: run ``meta_graph``.
Delivery: at-least-once.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import re
from dataclasses import dataclass
from typing import Any, ClassVar

import aiohttp
import orjson
from aiohttp import web
from pydantic import BaseModel, Field, SecretStr

from listener.brands import BrandMatcher
from listener.connectors.base import Skipped
from listener.connectors.meta import (
    GRAPH_API_VERSION,
    GRAPH_URL,
    build,
    check_owner_brands,
    fb_author,
    graph_get,
    ig_author,
    native,
    owned_by,
    plain,
    safe_url,
)
from listener.connectors.push import PushConnector, PushSettings
from listener.errors import FatalError, RetryableError, SkippableError
from listener.record import Mention

log = logging.getLogger(__name__)

POST_ITEMS = frozenset({"status", "post", "photo", "video", "share"})
READ_VERBS = frozenset({"add", "edited"})
MENTIONED_COMMENT = "id,text,timestamp,username,media{id,permalink}"
MENTIONED_MEDIA = "id,caption,timestamp,username,permalink"
RATE_LIMIT_WAIT_S = 60.0
"""Retry-After on a Graph rate limit whose usage headers give no time (Meta sets its own pace)."""
GRAPH_ID = re.compile(r"\d{1,30}")


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
    access_token: SecretStr | None = Field(
        default=None,
        description="Page/Instagram access token with instagram_manage_comments: fetches the "
        "text of Instagram @mentions (unset: they are dead-lettered as no_text).",
    )
    base_url: str = GRAPH_URL
    api_version: str = Field(default=GRAPH_API_VERSION, pattern=r"^v\d+\.\d+$")
    timeout_s: float = Field(default=10.0, gt=0, description="Per Graph API call.")


@dataclass(frozen=True, slots=True)
class IgMention:
    """An Instagram ``mentions`` change without its text: what to fetch it with."""

    where: str
    account: str
    media_id: str | None
    comment_id: str | None
    sent: Any
    signals: dict[str, Any]
    raw: str

    def ids(self) -> str:
        """The ids, for a dead letter's detail."""
        if self.comment_id:
            return f"comment_id {self.comment_id} on media_id {self.media_id}"
        return f"media_id {self.media_id} (caption)"


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
        if settings.access_token is not None and not settings.access_token.get_secret_value():
            raise FatalError("meta_webhook: access_token must not be empty (leave it unset)")
        check_owner_brands(self.name, settings.accounts, brands)
        self._session: aiohttp.ClientSession | None = None

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
            mentions, skipped, lookups = parse(body)
        except SkippableError as exc:
            payload = body.decode("utf-8", "replace")
            self.submit(key, (), (Skipped(exc.reason, f"meta_webhook: {exc}", payload),))
            return web.Response(status=400, text=str(exc))
        if lookups:
            try:
                found, lost = await self._resolve(lookups)
            except RetryableError as exc:
                log.warning("meta_webhook: Instagram mention lookup, answering 503: %s", exc)
                after = str(max(1, math.ceil(exc.after))) if exc.after else "5"
                text = "Graph API lookup failed; retry"
                return web.Response(status=503, text=text, headers={"Retry-After": after})
            mentions, skipped = (*mentions, *found), (*skipped, *lost)
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

    async def _resolve(
        self, lookups: tuple[IgMention, ...]
    ) -> tuple[tuple[Mention, ...], tuple[Skipped, ...]]:
        """Instagram mentions as Mentions (text fetched), and those dead-lettered.

        Raises:
            RetryableError: A rate limit, 5xx or network failure: the request is
                answered 503 and Meta redelivers it.
        """
        token = self.settings.access_token
        if token is None:
            return (), tuple(
                Skipped(
                    "no_text",
                    f"meta_webhook {item.where}: Instagram mention of {item.ids()} carries no "
                    "text; set meta_webhook.access_token to fetch it from the Graph API",
                    item.raw,
                )
                for item in lookups
            )
        found: list[Mention] = []
        lost: list[Skipped] = []
        for item in lookups:  # one after another: a rate limit stops the rest
            try:
                found.append(await self._fetch(item, token.get_secret_value()))
            except FatalError as exc:
                log.warning("meta_webhook: Instagram mention %s not read: %s", item.ids(), exc)
                lost.append(Skipped("graph_error", f"meta_webhook {item.where}: {exc}", item.raw))
            except SkippableError as exc:
                lost.append(Skipped(exc.reason, f"meta_webhook {item.where}: {exc}", item.raw))
        return tuple(found), tuple(lost)

    async def _fetch(self, item: IgMention, token: str) -> Mention:
        """One Instagram mention, its text read from ``mentioned_comment``/``mentioned_media``.

        Raises:
            FatalError: The Graph API refused (a deleted comment, code 100; a bad token).
            RetryableError: See :func:`~listener.connectors.meta.graph_get`.
            SkippableError: ``validation``/``no_text``: the answer has no such item or text.
        """
        s = self.settings
        url = f"{s.base_url.rstrip('/')}/{s.api_version}/{item.account}"
        if item.comment_id:
            field = "mentioned_comment"
            fields = f"{field}.comment_id({item.comment_id}){{{MENTIONED_COMMENT}}}"
        else:
            field = "mentioned_media"
            fields = f"{field}.media_id({item.media_id}){{{MENTIONED_MEDIA}}}"
        params = {"fields": fields, "access_token": token}
        body = await graph_get(self._client(), self.name, url, params, RATE_LIMIT_WAIT_S)
        data = body.get(field)
        if not isinstance(data, dict):
            raise SkippableError("validation", f"Graph answer without {field} for {item.ids()}")
        created = data.get("timestamp") or item.sent
        author = ig_author(data.get("username"))
        if item.comment_id:
            media: dict[str, Any] = data["media"] if isinstance(data.get("media"), dict) else {}
            media_id = native(media.get("id")) or item.media_id
            return build(
                "instagram",
                data.get("id") or item.comment_id,
                data.get("text"),
                created,
                author=author,
                url=media.get("permalink"),
                reply_to=media_id,
                thread=media_id,
                signals=item.signals,
            )
        return build(
            "instagram",
            data.get("id") or item.media_id,
            data.get("caption"),
            created,
            author=author,
            url=data.get("permalink"),
            signals=item.signals,
        )

    def _client(self) -> aiohttp.ClientSession:
        """The Graph API session, open until :meth:`close`.

        Raises:
            RetryableError: The connector is closing (the request is answered 503).
        """
        if self.closed:
            raise RetryableError("meta_webhook: listener stopping")
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=self.settings.timeout_s)
            self._session = aiohttp.ClientSession(timeout=timeout)
        return self._session

    async def close(self) -> None:
        """Stop the endpoint (see :meth:`PushConnector.close`) and the Graph API session."""
        await super().close()
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def parse(
    body: bytes,
) -> tuple[tuple[Mention, ...], tuple[Skipped, ...], tuple[IgMention, ...]]:
    """Every change of every entry of one notification.

    Returns:
        The Mentions, what was dead-lettered, and the Instagram mentions whose
        text is still to be fetched.

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
    lookups: list[IgMention] = []
    for n, entry in enumerate(envelope["entry"]):
        changes = entry.get("changes") if isinstance(entry, dict) else None
        if not isinstance(changes, list):
            skipped.append(Skipped("validation", f"meta_webhook: entry[{n}] without changes"))
            continue
        for m, change in enumerate(changes):
            where = f"entry[{n}].changes[{m}]"
            try:
                mention = _change(kind, entry, change, where)
            except SkippableError as exc:
                if exc.reason != "ignored":
                    raw = orjson.dumps(change).decode()
                    skipped.append(Skipped(exc.reason, f"meta_webhook {where}: {exc}", raw))
                continue
            if isinstance(mention, IgMention):
                lookups.append(mention)
            else:
                mentions.append(mention)
    return tuple(mentions), tuple(skipped), tuple(lookups)


def _change(kind: Any, entry: dict[str, Any], change: Any, where: str) -> Mention | IgMention:
    """One change as a Mention, or an Instagram mention whose text is to be fetched.

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
        if not plain(value.get("text") or value.get("caption")).strip():
            return _ig_mention(entry, value, signals, where, change)
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


def _ig_mention(
    entry: dict[str, Any], value: dict[str, Any], signals: dict[str, Any], where: str, change: Any
) -> IgMention:
    """An Instagram ``mentions`` change of ids only.

    Raises:
        SkippableError: ``validation``: an id that is missing or not a Graph id
            (the ids go into the lookup's path and field expansion).
    """
    account = native(entry.get("id"))
    media_id, comment_id = native(value.get("media_id")), native(value.get("comment_id"))
    if account is None or not GRAPH_ID.fullmatch(account):
        raise SkippableError("validation", f"instagram mention: bad account id {account!r}")
    if not (comment_id or media_id):
        raise SkippableError("validation", "instagram mention without media_id or comment_id")
    for name, got in (("media_id", media_id), ("comment_id", comment_id)):
        if got is not None and not GRAPH_ID.fullmatch(got):
            raise SkippableError("validation", f"instagram mention: bad {name} {got!r}")
    return IgMention(
        where=where,
        account=account,
        media_id=media_id,
        comment_id=comment_id,
        sent=entry.get("time"),
        signals=signals,
        raw=orjson.dumps(change).decode(),
    )


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
