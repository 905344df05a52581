"""Bluesky via Jetstream: new posts from the whole network over one websocket.

Auth: none (Jetstream is public). Rate limits: none documented for subscribers;
a 429 on the handshake is honoured via Retry-After.
Cursor: Jetstream's ``time_us`` (unix microseconds) of the last event read, kept
as a decimal string. Every (re)connect asks for ``cursor - rewind_s`` so nothing
between the last durable cursor and the disconnect is missed; the overlap is
dropped by id in the runner. A cursor older than the server's retention replays
from its oldest event; a cursor the server refuses (HTTP 400 on the handshake)
is dropped once, logged as a gap, and the stream goes on live.
Delivery: at-least-once (cursor saved after Kafka acknowledges the batch).
Only ``commit`` events with ``operation == "create"`` in ``app.bsky.feed.post``
become Mentions; other events only advance the cursor.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, ClassVar
from urllib.parse import urlencode

import orjson
from pydantic import BaseModel, ConfigDict, Field
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from listener.brands import BrandMatcher
from listener.connectors.base import BaseConnector, Batch, Skipped, parse_time
from listener.errors import RetryableError, SkippableError
from listener.record import Author, Mention
from listener.retry import retry_after

log = logging.getLogger(__name__)
POST = "app.bsky.feed.post"


class BlueskySettings(BaseModel):
    """The ``connectors.bluesky`` config block."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str = "wss://jetstream2.us-east.bsky.network/subscribe"
    rewind_s: float = Field(default=5.0, ge=0, description="Replay this much before the cursor.")
    batch_max: int = Field(default=500, gt=0, description="Most events read per poll.")
    batch_wait_s: float = Field(default=1.0, gt=0, description="Longest a poll waits for events.")
    open_timeout_s: float = Field(default=10.0, gt=0)


class BlueskyConnector(BaseConnector):
    """Jetstream subscriber for ``app.bsky.feed.post`` creates (see module docstring)."""

    name: ClassVar[str] = "bluesky"
    settings_model: ClassVar[type[BaseModel]] = BlueskySettings

    def __init__(self, settings: BlueskySettings, brands: BrandMatcher) -> None:
        super().__init__(brands, poll_interval_s=0.0)
        self.settings = settings
        self._ws: ClientConnection | None = None
        self._drop_cursor = False

    def _url(self, cursor: str | None) -> str:
        params: list[tuple[str, str]] = [("wantedCollections", POST)]
        if cursor is not None and not self._drop_cursor:
            try:
                rewound = int(cursor) - int(self.settings.rewind_s * 1_000_000)
            except ValueError:
                log.warning("bluesky: ignoring a cursor that is not microseconds: %r", cursor)
            else:
                params.append(("cursor", str(max(0, rewound))))
        return f"{self.settings.url}?{urlencode(params)}"

    async def _connect(self, cursor: str | None) -> ClientConnection:
        url = self._url(cursor)
        try:
            return await connect(url, open_timeout=self.settings.open_timeout_s, max_size=2**22)
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status == 400 and cursor is not None and not self._drop_cursor:
                log.warning("bluesky: server refused cursor %s; resuming live (gap)", cursor)
                self._drop_cursor = True
            raise RetryableError(
                f"bluesky: handshake got HTTP {status}",
                after=retry_after(exc.response.headers) if status in (429, 503) else None,
            ) from exc
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            raise RetryableError(f"bluesky: cannot connect to {self.settings.url}: {exc}") from exc

    async def poll(self, cursor: str | None) -> Batch:
        """Read up to ``batch_max`` events or for ``batch_wait_s``, whichever comes first.

        Raises:
            RetryableError: The connection failed or dropped before any event was read.
        """
        if self._ws is None:
            self._ws = await self._connect(cursor)
        mentions: list[Mention] = []
        skipped: list[Skipped] = []
        last = cursor
        deadline = time.monotonic() + self.settings.batch_wait_s
        for _ in range(self.settings.batch_max):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                raw = await asyncio.wait_for(self._ws.recv(), timeout=remaining)
            except TimeoutError:
                break
            except ConnectionClosed as exc:
                self._ws = None
                if last == cursor and not mentions and not skipped:
                    raise RetryableError(f"bluesky: stream closed: {exc}") from exc
                break
            try:
                event = orjson.loads(raw)
                if not isinstance(event, dict):
                    raise SkippableError("decode", "event is not a JSON object")
                if isinstance(event.get("time_us"), int):
                    last = str(event["time_us"])
                mention = _to_mention(event)
            except orjson.JSONDecodeError as exc:
                skipped.append(Skipped("decode", f"not JSON: {exc}", raw))
                continue
            except SkippableError as exc:
                skipped.append(Skipped(exc.reason, str(exc), raw))
                continue
            if mention is not None:
                mentions.append(mention)
        return Batch(tuple(mentions), last, tuple(skipped), more=True)

    async def close(self) -> None:
        """Close the websocket, if open."""
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()


def _post_parts(uri: Any) -> tuple[str, str] | None:
    """``at://<did>/app.bsky.feed.post/<rkey>`` -> ``(did, rkey)``."""
    if not isinstance(uri, str) or not uri.startswith("at://"):
        return None
    parts = uri[5:].split("/")
    return (parts[0], parts[-1]) if len(parts) == 3 and parts[0] and parts[-1] else None


def _post_ref(uri: Any) -> str | None:
    """``at://<did>/app.bsky.feed.post/<rkey>`` -> ``bluesky:<did>/<rkey>``."""
    parts = _post_parts(uri)
    return f"bluesky:{parts[0]}/{parts[1]}" if parts else None


def _post_author(uri: Any) -> Author | None:
    """The author of the post at ``uri``: an at:// URI names its repository's DID."""
    parts = _post_parts(uri)
    return Author(id=parts[0], url=f"https://bsky.app/profile/{parts[0]}") if parts else None


def _links(record: dict[str, Any]) -> list[str]:
    links: list[str] = []
    for facet in record.get("facets") or []:
        for feature in (facet or {}).get("features") or []:
            if isinstance(feature, dict) and isinstance(feature.get("uri"), str):
                links.append(feature["uri"])
    external = (record.get("embed") or {}).get("external") or {}
    if isinstance(external, dict) and isinstance(external.get("uri"), str):
        links.append(external["uri"])
    return links


def _to_mention(event: dict[str, Any]) -> Mention | None:
    """A Jetstream event as a Mention; None for events that are not new posts with text.

    Raises:
        SkippableError: A post create event that is malformed.
    """
    commit = event.get("commit")
    if event.get("kind") != "commit" or not isinstance(commit, dict):
        return None
    if commit.get("operation") != "create" or commit.get("collection") != POST:
        return None
    did, rkey, record = event.get("did"), commit.get("rkey"), commit.get("record")
    if not isinstance(did, str) or not isinstance(rkey, str) or not isinstance(record, dict):
        raise SkippableError("validation", "post create without did, rkey or record")
    text = record.get("text")
    if not isinstance(text, str):
        raise SkippableError("validation", "post record without text")
    if not text.strip():
        return None  # image-only posts: nothing to match or classify
    created = parse_time(record.get("createdAt"))
    if created is None:
        raise SkippableError("validation", f"createdAt {record.get('createdAt')!r} is not a time")
    langs = record.get("langs")
    reply: dict[str, Any] = record["reply"] if isinstance(record.get("reply"), dict) else {}
    return Mention.create(
        source="bluesky",
        native_id=f"{did}/{rkey}",
        text=text,
        created_at=created,
        url=f"https://bsky.app/profile/{did}/post/{rkey}",
        lang=langs[0] if isinstance(langs, list) and langs and isinstance(langs[0], str) else None,
        author=Author(id=did, url=f"https://bsky.app/profile/{did}"),
        reply_to_id=_post_ref((reply.get("parent") or {}).get("uri")),
        reply_to_author=_post_author((reply.get("parent") or {}).get("uri")),
        thread_id=_post_ref((reply.get("root") or {}).get("uri")),
        signals={"links": _links(record)} if _links(record) else {},
    )
