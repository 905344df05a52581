"""Flickr: photos that match brand terms, the brand's own photos, and the comments on both.

Docs: https://www.flickr.com/services/api/flickr.photos.search.html ,
https://www.flickr.com/services/api/flickr.photos.comments.getList.html ,
https://www.flickr.com/services/api/flickr.people.getPhotos.html
Auth: an API key (free for non-commercial use; commercial use needs Flickr's
approval), sent as ``api_key``; only public photos and comments are read.
Errors arrive as HTTP 200 ``{"stat": "fail", "code": n, "message": ...}``:
100 (invalid key), 98 (invalid auth token) and 99 (insufficient permissions)
are fatal; 105 (service unavailable), 106 and search's 10 (search not
available) are retried, as are HTTP 429 (``Retry-After``) and 5xx. A photo
whose comments answer code 1 (photo gone) is dropped from the watch list.
Rate limit: 3,600 calls per hour per key (Flickr's API terms).
Sweep: one call per poll. ``flickr.photos.search`` for each term (default:
every brand's keywords; Flickr searches title, description and tags) with
``min_upload_date=<since>&sort=date-posted-desc``, every page; then
``flickr.people.getPhotos`` for each of ``user_ids`` (the brand's own accounts)
likewise; then ``flickr.photos.comments.getList`` with ``min_comment_date`` for
every watched photo. Photos found are watched for ``watch_days`` (at most
``watch_max``, newest kept). Comments have the photo as parent and thread.
Cursor (JSON): ``since`` (newest upload second read) with the photo ids read at
it, the watch list (per photo: newest comment second read and the ids at it)
and the sweep in progress (step, page, queue), so a restart resumes mid-sweep.
``min_upload_date`` and ``min_comment_date`` include their second; ids already
read at it are dropped. Pages are numbered, so a photo uploaded mid-sweep can
repeat one (the runner drops repeats by id). The first sweep goes back
``lookback_s``. Delivery: at-least-once.
Text: title, description (HTML stripped, links kept) and tags as ``#tag``;
comments are HTML too and are stripped the same way.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, ClassVar

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from listener.brands import BrandMatcher
from listener.connectors.base import BaseConnector, Batch, Skipped, html_to_text, parse_time
from listener.connectors.http import request_json
from listener.errors import FatalError, RetryableError, SkippableError
from listener.record import Author, Mention

log = logging.getLogger(__name__)

EXTRAS = "description,date_upload,owner_name,tags,path_alias"
FATAL_CODES = {98, 99, 100}
RETRY_CODES = {105, 106}


class PhotoGone(Exception):
    """comments.getList answered code 1: the photo is deleted or no longer public."""


class FlickrSettings(BaseModel):
    """The ``connectors.flickr`` config block."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    api_key: SecretStr
    base_url: str = "https://api.flickr.com/services/rest/"
    terms: tuple[str, ...] = Field(default=(), description="Search texts; default: keywords.")
    user_ids: tuple[str, ...] = Field(
        default=(), description="NSIDs (12345678@N01) of the brand's own accounts: their photos."
    )
    per_page: int = Field(default=100, gt=0, le=500)
    comments: bool = Field(default=True, description="Read the comments on the photos found.")
    watch_days: float = Field(default=14.0, gt=0, description="Days a photo's comments are read.")
    watch_max: int = Field(default=100, ge=0, description="Photos watched at most (newest kept).")
    lookback_s: float = Field(
        default=3600.0, ge=0, description="How far back the first sweep goes."
    )
    poll_interval_s: float = Field(default=300.0, ge=0)
    timeout_s: float = Field(default=30.0, gt=0)


class FlickrConnector(BaseConnector):
    """Sweeps search, own photos and watched photos' comments (see module docstring)."""

    name: ClassVar[str] = "flickr"
    settings_model: ClassVar[type[BaseModel]] = FlickrSettings

    def __init__(self, settings: FlickrSettings, brands: BrandMatcher) -> None:
        super().__init__(brands, poll_interval_s=settings.poll_interval_s)
        self.settings = settings
        terms = settings.terms or brands.search_terms()
        self.steps = tuple(("search", t) for t in terms) + tuple(
            ("user", u) for u in settings.user_ids
        )
        if not self.steps:
            raise FatalError("flickr: nothing to read: set 'terms'/'user_ids' or give keywords")
        self._session: aiohttp.ClientSession | None = None

    async def poll(self, cursor: str | None) -> Batch:
        """One call of the sweep; the cursor holds the sweep, ``more`` until it ends."""
        state: dict[str, Any] = json.loads(cursor) if cursor else {}
        if "since" not in state:
            state = {"since": int(time.time() - self.settings.lookback_s), "ids": [], "watch": {}}
        sweep = state.get("sweep") or {"step": 0, "page": 1, "newest": state["since"],
                                       "newest_ids": list(state["ids"]), "queue": None}  # fmt: skip
        watch: dict[str, Any] = state["watch"]
        mentions: list[Mention] = []
        skipped: list[Skipped] = []
        if sweep["queue"] is None:
            kind, value = self.steps[sweep["step"]]
            body = await self._photos(kind, value, state["since"], sweep["page"])
            for photo in body.get("photo") or []:
                self._photo(photo, state, sweep, mentions, skipped)
            if sweep["page"] < _int(body.get("pages")):
                sweep["page"] += 1
            elif sweep["step"] + 1 < len(self.steps):
                sweep.update(step=sweep["step"] + 1, page=1)
            else:
                sweep["queue"] = self._prune(watch) if self.settings.comments else []
        else:
            photo_id = sweep["queue"].pop(0)
            try:
                comments = await self._comments(photo_id, watch[photo_id])
            except PhotoGone:
                log.info("flickr: photo %s is gone; no longer watched", photo_id)
                del watch[photo_id]
                comments = []
            for comment in comments:
                try:
                    mentions.append(_comment_mention(comment, photo_id, watch[photo_id]))
                except SkippableError as exc:
                    skipped.append(Skipped(exc.reason, str(exc), json.dumps(comment)[:10_000]))
        if sweep["queue"] == []:  # the sweep is over: move the floor
            state.update(since=sweep["newest"], ids=sorted(set(sweep["newest_ids"])))
            state.pop("sweep", None)
            more = False
        else:
            state["sweep"] = sweep
            more = True
        return Batch(tuple(mentions), json.dumps(state, sort_keys=True), tuple(skipped), more)

    def _photo(
        self,
        photo: Any,
        state: dict[str, Any],
        sweep: dict[str, Any],
        mentions: list[Mention],
        skipped: list[Skipped],
    ) -> None:
        """Take one photo of a search/getPhotos page: a Mention, a watch entry, the floor."""
        ident = photo.get("id") if isinstance(photo, dict) else None
        uploaded = _int(photo.get("dateupload")) if isinstance(photo, dict) else 0
        if not isinstance(ident, str) or not ident.isdigit() or uploaded <= 0:
            skipped.append(Skipped("validation", "photo without id or dateupload", str(photo)))
            return
        if uploaded == state["since"] and ident in state["ids"]:
            return  # read by the previous sweep
        if uploaded > sweep["newest"]:
            sweep.update(newest=uploaded, newest_ids=[ident])
        elif uploaded == sweep["newest"]:
            sweep["newest_ids"] = sorted({*sweep["newest_ids"], ident})
        if self.settings.comments and ident not in state["watch"]:
            state["watch"][ident] = {"at": uploaded, "seen": uploaded, "ids": []}
        try:
            mentions.append(_photo_mention(photo))
        except SkippableError as exc:
            skipped.append(Skipped(exc.reason, str(exc), json.dumps(photo)[:10_000]))

    def _prune(self, watch: dict[str, Any]) -> list[str]:
        """Drop photos past ``watch_days`` and beyond ``watch_max``; the photo ids to read."""
        oldest = time.time() - self.settings.watch_days * 86400
        keep = sorted((p for p in watch if watch[p]["at"] >= oldest), key=lambda p: -watch[p]["at"])
        for photo_id in set(watch) - set(keep[: self.settings.watch_max]):
            del watch[photo_id]
        return sorted(watch)

    async def _call(self, method: str, **params: str) -> dict[str, Any]:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=self.settings.timeout_s)
            self._session = aiohttp.ClientSession(timeout=timeout)
        query = {"method": method, "api_key": self.settings.api_key.get_secret_value(),
                 "format": "json", "nojsoncallback": "1", **params}  # fmt: skip
        body: dict[str, Any] = await request_json(
            self._session, "flickr", "GET", self.settings.base_url, params=query, expect=dict
        )
        if body.get("stat") == "ok":
            return body
        code, message = body.get("code"), str(body.get("message") or "")[:200]
        detail = f"flickr: {method}: error {code}: {message}"
        if code in FATAL_CODES:
            raise FatalError(f"{detail} (check 'api_key')")
        if code in RETRY_CODES or (method == "flickr.photos.search" and code == 10):
            raise RetryableError(detail)
        if method == "flickr.photos.comments.getList" and code == 1:
            raise PhotoGone(detail)
        raise FatalError(f"{detail} (request rejected)")

    async def _photos(self, kind: str, value: str, since: int, page: int) -> dict[str, Any]:
        common = {"min_upload_date": str(since), "extras": EXTRAS,
                  "per_page": str(self.settings.per_page), "page": str(page)}  # fmt: skip
        if kind == "search":
            body = await self._call(
                "flickr.photos.search", text=value, sort="date-posted-desc", **common
            )
        else:
            body = await self._call("flickr.people.getPhotos", user_id=value, **common)
        photos = body.get("photos")
        if not isinstance(photos, dict):
            raise RetryableError("flickr: answer has no 'photos' object")
        return photos

    async def _comments(self, photo_id: str, entry: dict[str, Any]) -> list[Any]:
        """New comments on one photo (``entry``'s seen second and ids are moved on)."""
        body = await self._call(
            "flickr.photos.comments.getList", photo_id=photo_id, min_comment_date=str(entry["seen"])
        )
        raw = (body.get("comments") or {}).get("comment") or []
        fresh = []
        for comment in raw if isinstance(raw, list) else []:
            at = _int(comment.get("datecreate")) if isinstance(comment, dict) else 0
            ident = comment.get("id") if isinstance(comment, dict) else None
            if at == entry["seen"] and ident in entry["ids"]:
                continue
            if at > entry["seen"]:
                entry.update(seen=at, ids=[ident])
            elif at == entry["seen"] and isinstance(ident, str):
                entry["ids"] = sorted({*entry["ids"], ident})
            fresh.append(comment)
        return fresh

    async def close(self) -> None:
        """Close the HTTP session."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def _int(value: Any) -> int:
    """Flickr's numbers come as strings or ints; 0 for anything else."""
    try:
        return int(value) if not isinstance(value, bool) else 0
    except (TypeError, ValueError):
        return 0


def _content(value: Any) -> str:
    """Flickr's ``{"_content": ...}`` wrapper (or a bare string)."""
    if isinstance(value, dict):
        value = value.get("_content")
    return value if isinstance(value, str) else ""


def _photo_mention(photo: dict[str, Any]) -> Mention:
    """A search/getPhotos photo (with the ``extras``) as a Mention.

    Raises:
        SkippableError: No title, description or tags.
    """
    title, _ = html_to_text(_content(photo.get("title")))
    description, links = html_to_text(_content(photo.get("description")))
    tags = [t for t in str(photo.get("tags") or "").split() if t]
    parts = [title, description, " ".join(f"#{t}" for t in tags)]
    owner = photo.get("owner") if isinstance(photo.get("owner"), str) else None
    alias = photo.get("pathalias") or owner
    return Mention.create(
        source="flickr",
        native_id=photo["id"],
        text="\n\n".join(p for p in parts if p),
        created_at=parse_time(_int(photo.get("dateupload"))),
        url=f"https://www.flickr.com/photos/{alias}/{photo['id']}/" if alias else None,
        author=Author(
            id=owner,
            handle=photo.get("ownername") if isinstance(photo.get("ownername"), str) else None,
            url=f"https://www.flickr.com/photos/{alias}/" if alias else None,
        ),
        signals={"links": links, "tags": tags, "kind": "photo"},
    )


def _comment_mention(comment: Any, photo_id: str, entry: dict[str, Any]) -> Mention:
    """A comment on a watched photo as a Mention: the photo is its parent and thread.

    Raises:
        SkippableError: No id, date or text.
    """
    if not isinstance(comment, dict) or not isinstance(comment.get("id"), str):
        raise SkippableError("validation", f"photo {photo_id}: comment without id")
    text, links = html_to_text(_content(comment))
    created = parse_time(_int(comment.get("datecreate")) or None)
    if created is None:
        raise SkippableError("validation", f"comment {comment['id']}: no datecreate")
    author = comment.get("author") if isinstance(comment.get("author"), str) else None
    permalink = comment.get("permalink")
    return Mention.create(
        source="flickr",
        native_id=comment["id"],
        text=text,
        created_at=created,
        url=permalink if isinstance(permalink, str) and permalink.startswith("http") else None,
        author=Author(
            id=author,
            handle=comment.get("authorname")
            if isinstance(comment.get("authorname"), str)
            else None,
            name=comment.get("realname") or None,
            url=f"https://www.flickr.com/photos/{comment.get('path_alias') or author}/"
            if author
            else None,
        ),
        reply_to_id=f"flickr:{photo_id}",
        thread_id=f"flickr:{photo_id}",
        signals={"links": links, "kind": "comment", "photo_uploaded": entry["at"]},
    )
