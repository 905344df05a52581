"""Signed webhook ingest: an HTTP endpoint other tools push posts to (Standard Webhooks).

Auth: every request carries ``webhook-id``, ``webhook-timestamp`` (unix seconds)
and ``webhook-signature``: space-separated ``v1,<base64 HMAC-SHA256>`` over
``<id>.<timestamp>.<raw body>``, keyed with the base64 key of a ``whsec_...``
secret. Several secrets may be configured at once (key rotation: add the new
one, switch the sender, remove the old one); a request passes when any ``v1``
signature matches any secret. Other versions (``v1a`` asymmetric) are ignored.

Answers (what the sender sees):

* ``200`` ``{"accepted": true, "id": ...}`` once the posts are acknowledged by Kafka (or were
  not about a configured brand, which is decided in the runner);
* ``200`` ``{"duplicate": true}`` for a ``webhook-id`` already accepted within
  the last ``2 * tolerance_s``: the spec makes ``webhook-id`` the idempotency
  key, and a sender retries anything that is not 2xx, so a retry whose first
  answer was lost must *succeed*, not fail with 409. A retry of an id still in
  flight waits for, and shares, the first one's answer;
* ``400`` with a reason: headers missing or malformed, body not JSON, or not a
  valid payload (the authenticated body also goes to the dead-letter topic);
* ``401``: no signature matches, or the timestamp is more than ``tolerance_s``
  from our clock (a replay of an old signed message or a skewed clock);
* ``413``: body over ``max_body_bytes``;
* ``503`` + ``Retry-After``: Kafka did not acknowledge in ``ack_timeout_s`` or
  the listener is stopping; the sender retries later (same id).

Payload: the Standard Webhooks envelope ``{"type": ..., "timestamp": ...,
"data": POST | [POST, ...]}`` where a POST is ``{"id", "text", "created_at",
"url", "lang", "platform", "author": {"id", "handle", "name", "followers",
"url"}, "reply_to_id", "reply_to_author", "thread_id"}`` (``id`` and ``text``
required). Mention ids are ``webhook:<platform>/<id>`` (``webhook:<id>`` without
a platform); ``reply_to_id`` (the parent post) and ``thread_id`` (the thread's
first post) are native ids on the same platform and are recorded the same way, so
they name the parent's Mention. ``reply_to_author`` (the parent's author, shaped
as ``author``) lets a reply to a brand's own account be known as one
(``own_accounts``) without the listener having seen the parent.
Rate limits: none applied here; put the endpoint behind a proxy that limits.
Cursor: none (a push source); progress is each sender's own retry queue.
Delivery: at-least-once: 2xx is sent only after the runner's ``delivered``
hook reports the Kafka produce acknowledged, so nothing answered 2xx is lost.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections import OrderedDict
from typing import Any, ClassVar

import orjson
from aiohttp import web
from pydantic import BaseModel, Field, SecretStr

from listener.brands import BrandMatcher
from listener.connectors.base import Skipped, parse_time
from listener.connectors.push import Outcome, PushConnector, PushSettings
from listener.errors import FatalError, SkippableError
from listener.record import Author, Mention


class WebhookSettings(PushSettings):
    """The ``connectors.webhook`` config block."""

    secrets: tuple[SecretStr, ...] = Field(description="whsec_<base64>; several while rotating.")
    tolerance_s: float = Field(default=300.0, gt=0, description="Allowed timestamp skew.")
    max_posts: int = Field(default=100, gt=0, description="Most posts in one delivery.")


def decode_secret(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret (the prefix is optional).

    Raises:
        FatalError: Not base64.
    """
    raw = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise FatalError("webhook: a secret is not whsec_<base64>") from exc


def sign(key: bytes, msg_id: str, timestamp: str, body: bytes) -> str:
    """The ``v1,<base64>`` signature of one message (also used by tests and senders)."""
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class WebhookConnector(PushConnector):
    """Serves the ingest endpoint; each poll hands the runner what arrived (see module doc)."""

    name: ClassVar[str] = "webhook"
    settings_model: ClassVar[type[BaseModel]] = WebhookSettings

    def __init__(self, settings: WebhookSettings, brands: BrandMatcher) -> None:
        super().__init__(settings, brands)
        self.settings = settings
        self.keys = tuple(decode_secret(s.get_secret_value()) for s in settings.secrets)
        if not self.keys:
            raise FatalError("webhook: configure at least one secret")
        self._inflight: dict[str, Outcome] = {}
        self._done: OrderedDict[str, float] = OrderedDict()

    def routes(self, app: web.Application) -> None:
        """``POST <path>``."""
        app.router.add_post(self.settings.path, self._handle)

    def _remember(self, msg_id: str) -> None:
        now = time.monotonic()
        self._done[msg_id] = now
        self._done.move_to_end(msg_id)
        horizon = now - 2 * self.settings.tolerance_s
        while self._done and next(iter(self._done.values())) < horizon:
            self._done.popitem(last=False)

    def _verify(self, headers: Any, body: bytes) -> tuple[str, web.Response | None]:
        """The webhook id, and an error response when the request is not authentic."""
        msg_id = headers.get("webhook-id", "")
        stamp = headers.get("webhook-timestamp", "")
        signatures = headers.get("webhook-signature", "")
        if not msg_id or not stamp or not signatures:
            return msg_id, _error(400, "missing webhook-id, webhook-timestamp or webhook-signature")
        if not stamp.isdigit():
            return msg_id, _error(400, "webhook-timestamp is not unix seconds")
        offered = {s.encode() for s in signatures.split() if s.startswith("v1,")}
        expected = [sign(key, msg_id, stamp, body).encode() for key in self.keys]
        if not any(hmac.compare_digest(e, o) for e in expected for o in offered):
            return msg_id, _error(401, "no valid signature")
        if abs(time.time() - int(stamp)) > self.settings.tolerance_s:
            return msg_id, _error(401, "webhook-timestamp outside the tolerance window")
        return msg_id, None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await self.read_body(request)
        if body is None:
            return _error(413, f"body over {self.settings.max_body_bytes} bytes")
        msg_id, failure = self._verify(request.headers, body)
        if failure is not None:
            return failure
        if msg_id in self._done:
            return web.json_response({"duplicate": True})
        future = self._inflight.get(msg_id)
        if future is None:
            try:
                mentions = _parse(body, self.settings.max_posts)
            except SkippableError as exc:
                payload = body.decode("utf-8", "replace")
                self.submit(msg_id, (), (Skipped(exc.reason, f"webhook {msg_id}: {exc}", payload),))
                return _error(400, str(exc))
            if self.closed:
                return _error(503, "listener stopping", retry_after=5)
            future = self.submit(msg_id, mentions)
            if future is None:  # unreachable: _parse returns at least one Mention
                return web.json_response({"accepted": True, "id": msg_id})
            self._inflight[msg_id] = future
            future.add_done_callback(lambda f: self._settle(msg_id, f))
        failed = await self.outcome(future)
        if failed is not None:
            return _error(503, failed, retry_after=5)
        return web.json_response({"accepted": True, "id": msg_id})

    def _settle(self, msg_id: str, future: Outcome) -> None:
        if self._inflight.get(msg_id) is future:
            del self._inflight[msg_id]
        if future.result() is None:
            self._remember(msg_id)


def _error(status: int, reason: str, retry_after: int | None = None) -> web.Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return web.json_response({"error": reason}, status=status, headers=headers)


def _parse(body: bytes, max_posts: int) -> tuple[Mention, ...]:
    """The posts of one delivery as Mentions.

    Raises:
        SkippableError: ``decode`` (not JSON) or ``validation`` (not a valid payload).
    """
    try:
        envelope = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise SkippableError("decode", f"body is not JSON: {exc}") from exc
    if not isinstance(envelope, dict) or "data" not in envelope:
        raise SkippableError("validation", "expected an object with 'type' and 'data'")
    data = envelope["data"]
    posts = data if isinstance(data, list) else [data]
    if not posts or len(posts) > max_posts:
        raise SkippableError("validation", f"'data' must hold 1 to {max_posts} posts")
    return tuple(_to_mention(post, n) for n, post in enumerate(posts))


def _post_ref(platform: Any, native: Any) -> str | None:
    """A native id of the sender's platform as a Mention id (``webhook:<platform>/<id>``)."""
    if isinstance(native, bool) or not isinstance(native, str | int) or not str(native).strip():
        return None
    value = str(native).strip()
    return (
        f"webhook:{platform}/{value}"
        if isinstance(platform, str) and platform
        else f"webhook:{value}"
    )


def _author(post: dict[str, Any], key: str, where: str) -> Author | None:
    """``post[key]`` (``author``, ``reply_to_author``) as an Author; None when absent.

    Raises:
        SkippableError: A field of the wrong type (e.g. negative ``followers``).
    """
    value = post.get(key)
    if not isinstance(value, dict):
        return None
    fields = {k: value.get(k) for k in ("id", "handle", "name", "followers", "url")}
    if fields["id"] is not None:
        fields["id"] = str(fields["id"])
    try:
        return Author(**fields)
    except ValueError as exc:
        raise SkippableError("validation", f"{where}.{key}: {exc}") from exc


def _to_mention(post: Any, n: int) -> Mention:
    """One pushed post as a Mention.

    Raises:
        SkippableError: A post without a string ``id`` and a non-empty ``text``.
    """
    where = f"data[{n}]"
    if not isinstance(post, dict):
        raise SkippableError("validation", f"{where}: not an object")
    pid, text = post.get("id"), post.get("text")
    if not isinstance(pid, str | int) or isinstance(pid, bool) or not str(pid):
        raise SkippableError("validation", f"{where}.id: required string")
    if not isinstance(text, str) or not text.strip():
        raise SkippableError("validation", f"{where}.text: required, non-empty")
    created = None
    if post.get("created_at") is not None:
        created = parse_time(post["created_at"])
        if created is None:
            raise SkippableError("validation", f"{where}.created_at: not a time")
    platform = post.get("platform")
    native = f"{platform}/{pid}" if isinstance(platform, str) and platform else str(pid)
    reply = _post_ref(platform, post.get("reply_to_id"))
    thread = _post_ref(platform, post.get("thread_id"))
    return Mention.create(
        source="webhook",
        native_id=native,
        text=text,
        created_at=created,
        url=post.get("url") if isinstance(post.get("url"), str) else None,
        lang=post.get("lang") if isinstance(post.get("lang"), str) else None,
        author=_author(post, "author", where) or Author(),
        reply_to_id=reply,
        reply_to_author=_author(post, "reply_to_author", where) if reply else None,
        thread_id=thread,
        signals={"platform": platform} if isinstance(platform, str) and platform else {},
    )
