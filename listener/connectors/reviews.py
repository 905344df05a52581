"""What the review connectors (App Store, Google Play, Trustpilot, Yelp) share.

* :class:`ReviewTarget`: one app or business to read, and the configured brand it
  belongs to. A review of a brand's own app or business is a mention of that
  brand whatever its text says: the connector sets ``Mention.brands`` and the
  brand matcher keeps it (matched term ``source``). A target without a brand (a
  competitor's app) is brand-matched on its text like any other post.
* :func:`rating`: the star rating as ``signals["rating"] = {"stars": n, "of": 5}``,
  which the routing rules read (``rating_at_most`` / ``rating_at_least``).
* :class:`Sweep`: the cursor of a review list read newest first, one page per
  poll: per list the newest review seen (its time and the ids at that time) and,
  while a sweep is under way, where it is. A sweep stops at the first review not
  newer than the one seen last (or, for a list in no documented order, reads to
  the end and keeps only the newer ones), at the last page, or after
  ``max_pages``; then the newest review of the sweep becomes the mark.
* :func:`fetch_json`: one request, with the platform's error body in the message;
  :func:`answer_member` and :func:`check_api_key` read the answer and the errors
  several platforms share.
* :class:`ReviewConnector`: the base of the four connectors: the targets, the
  session, and :meth:`ReviewConnector.batch`, which turns one page of reviews
  into the poll's Batch. :func:`brand_reply` is the brand's answer to a review
  (Google Play, Trustpilot) as a Mention.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

import aiohttp
import orjson
from pydantic import BaseModel, ConfigDict, Field

from listener.brands import BrandMatcher
from listener.connectors.base import Batch, Skipped, html_to_text, parse_time
from listener.connectors.http import HttpConnector, HttpSettings, network_error
from listener.errors import FatalError, RetryableError, SkippableError
from listener.record import Author, Mention
from listener.retry import check_http_status


class ReviewTarget(BaseModel):
    """One app or business whose reviews are read."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, description="App id, package name or business id.")
    brand: str | None = Field(
        default=None,
        description="The configured brand it belongs to; unset: kept only when the text "
        "names a brand (e.g. a competitor's app).",
    )

    @property
    def brands(self) -> tuple[str, ...]:
        """``Mention.brands`` of its reviews: its brand, or none (brand-matched on the text)."""
        return (self.brand,) if self.brand else ()


def check_brands(source: str, targets: tuple[ReviewTarget, ...], brands: BrandMatcher) -> None:
    """Every target's brand must be a configured brand.

    Raises:
        FatalError: No targets, or a brand that is not configured.
    """
    if not targets:
        raise FatalError(f"{source}: nothing to read: list at least one app or business")
    known = {b.name for b in brands.settings}
    for target in targets:
        if target.brand is not None and target.brand not in known:
            raise FatalError(
                f"{source}: {target.id!r} names brand {target.brand!r}, which is not configured; "
                f"known: {sorted(known)}"
            )


def rating(value: Any, of: int = 5) -> dict[str, int]:
    """``{"stars": n, "of": of}`` from a star count (int or numeric string).

    Raises:
        SkippableError: Not a whole number from 1 to ``of``.
    """
    try:
        number = float(str(value).strip())
    except ValueError:
        number = float("nan")
    if not number.is_integer() or not 1 <= number <= of:
        raise SkippableError("validation", f"star rating {value!r} is not a whole number 1..{of}")
    return {"stars": int(number), "of": of}


def plain(*parts: Any) -> str:
    """The non-empty parts as plain text (markup stripped), separated by blank lines."""
    texts = [html_to_text(p)[0] for p in parts if isinstance(p, str) and p.strip()]
    return "\n\n".join(t for t in texts if t)


def safe_url(value: Any) -> str | None:
    """``value`` if it is an http(s) URL, else None (no ``javascript:`` and the like)."""
    if isinstance(value, str) and value.lower().startswith(("https://", "http://")):
        return value if not any(c.isspace() for c in value) else None
    return None


def error_text(body: Any) -> str:
    """The message of a documented error body.

    Google and Yelp ``{"error": {...}}``, OAuth ``{"error": "...", "error_description"}``,
    Apigee gateways (Trustpilot) ``{"fault": {"faultstring", "detail": {"errorcode"}}}``,
    else ``message``.
    """
    if not isinstance(body, dict):
        return ""
    error, fault = body.get("error"), body.get("fault")
    if isinstance(fault, dict):
        detail = fault.get("detail")
        parts = [detail.get("errorcode") if isinstance(detail, dict) else None]
        parts.append(fault.get("faultstring"))
    elif isinstance(error, dict):
        parts = [error.get("status") or error.get("code"), error.get("message")]
        parts.append(error.get("description"))
    elif isinstance(error, str):
        parts = [error, body.get("error_description")]
    else:
        parts = [body.get("errorCode"), body.get("message")]
    return ": ".join(str(p) for p in parts if p)


Explain = Callable[[int, Any, Mapping[str, str]], None]
"""A platform's reading of an error answer (status, JSON body or None, headers); may raise."""


async def fetch_json(
    session: aiohttp.ClientSession,
    source: str,
    method: str,
    url: str,
    *,
    explain: Explain | None = None,
    **kwargs: Any,
) -> Any:
    """Send one request and return its JSON body.

    Args:
        session: The connector's session.
        source: The connector's name, the prefix of every error message.
        method: ``"GET"`` or ``"POST"``.
        url: The full URL.
        explain: Reads the platform's own error bodies first (e.g. a daily quota).
        **kwargs: Passed to ``session.request``.

    Raises:
        RetryableError: 429, 5xx, 408, a network failure, a body that is not JSON.
        FatalError: Any other 4xx (the platform's error message included).
    """
    try:
        async with session.request(method, url, **kwargs) as response:
            status, headers = response.status, response.headers
            text = await response.text(errors="replace")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise network_error(source, exc) from exc
    try:
        body = orjson.loads(text) if text.strip() else None
    except orjson.JSONDecodeError:
        body = None
    if status >= 400:
        if explain is not None:
            explain(status, body, headers)
        check_http_status(source, status, headers, error_text(body) or text[:300])
    if body is None:
        raise RetryableError(f"{source}: HTTP {status} answer is not JSON")
    return body


def answer_member(
    source: str, body: Any, key: str, kind: type[list[Any]] | type[dict[str, Any]]
) -> Any:
    """``body[key]`` of a JSON answer, which must be a ``kind`` (``list`` or ``dict``).

    Raises:
        RetryableError: The answer is not an object, or has no such array/object.
    """
    value = body.get(key) if isinstance(body, dict) else None
    if not isinstance(value, kind):
        what = "array" if kind is list else "object"
        raise RetryableError(f"{source}: answer has no {key} {what}")
    return value


def check_api_key(source: str, status: int, body: Any) -> None:
    """A 401 or 403 of a platform keyed by ``api_key``: the key was refused.

    Raises:
        FatalError: On 401 and 403, with the platform's error message.
    """
    if status in (401, 403):
        raise FatalError(f"{source}: HTTP {status}: {error_text(body)} (check api_key)")


def brand_reply(
    review: Mention,
    brand: str,
    *,
    text: str,
    created_at: datetime,
    author: Author,
    signals: dict[str, Any],
) -> Mention:
    """The brand's public answer to ``review`` as a Mention (``<source>:<review id>:reply``).

    It comes from the brand's own account (``own_account_of``: never queued),
    replies to the review and stays in its thread, at the review's URL.
    """
    review_id = review.id.removeprefix(f"{review.source}:")
    return Mention.create(
        source=review.source,
        native_id=f"{review_id}:reply",
        text=text,
        created_at=created_at,
        url=review.url,
        author=author,
        brands=(brand,),
        own_account_of=(brand,),
        reply_to_id=review.id,
        thread_id=review.id,
        signals=signals,
    )


NEXT = "~next"
"""The cursor key naming the list the next poll reads (a restart goes on from there)."""


class Sweep:
    """The newest-first cursor of several review lists (see the module docstring).

    Args:
        keys: The lists, in the order they are read (e.g. ``"<app>/<country>"``).
        max_pages: Most pages one sweep reads (the backfill depth on first start too).
        ordered: Whether the platform returns the list newest first, so a sweep may
            stop at the first review already seen.
    """

    def __init__(self, keys: tuple[str, ...], max_pages: int, ordered: bool = True) -> None:
        self.keys = keys
        self.max_pages = max_pages
        self.ordered = ordered

    @staticmethod
    def load(cursor: str | None) -> dict[str, Any]:
        """The per-list state of a cursor (empty for None or a cursor from another format)."""
        state = json.loads(cursor) if cursor else {}
        return state if isinstance(state, dict) else {}

    @staticmethod
    def dump(state: dict[str, Any]) -> str:
        """The cursor to save."""
        return json.dumps(state, sort_keys=True)

    def key(self, state: dict[str, Any]) -> str:
        """The list this poll reads: the one the cursor names (``~next``), else the first."""
        key = state.get(NEXT)
        return key if isinstance(key, str) and key in self.keys else self.keys[0]

    @staticmethod
    def page(state: dict[str, Any], key: str) -> Any:
        """The page to read next for ``key``: the sweep's next page, None for the first."""
        return (state.get(key, {}).get("sweep") or {}).get("next")

    def step(
        self,
        state: dict[str, Any],
        items: list[tuple[str, datetime]],
        next_page: Any,
    ) -> tuple[list[bool], bool]:
        """Record one page of ``self.key``; which items are new, and whether more is to read.

        Args:
            state: The cursor state, updated in place (``~next`` names the list after).
            items: ``(review id, time)`` of the page's reviews, in the platform's order.
            next_page: The next page's number or token; None at the last page.

        Returns:
            A flag per item (new or not), and ``more``: this sweep goes on, or other
            lists are still to be read in this round.
        """
        key = self.key(state)
        entry = state.setdefault(key, {})
        newest = entry.get("newest")
        sweep = entry.setdefault("sweep", {"pages": 0})
        fresh: list[bool] = []
        stopped = False
        for review_id, at in items:
            old = _seen(review_id, at, newest)
            stopped = stopped or (old and self.ordered)
            fresh.append(not old and not stopped)
            sweep["top"] = _newer(sweep.get("top"), review_id, at)
        sweep["pages"] += 1
        going = bool(items) and not stopped and next_page is not None
        if going and sweep["pages"] < self.max_pages:
            sweep["next"] = next_page
        else:
            top = sweep.get("top")
            if top is not None:
                entry["newest"] = _merge(newest, top)
            del entry["sweep"]
            index = (self.keys.index(key) + 1) % len(self.keys)
            state[NEXT] = self.keys[index]
            return fresh, index != 0
        return fresh, True


def _seen(review_id: str, at: datetime, newest: dict[str, Any] | None) -> bool:
    if newest is None:
        return False
    mark = parse_time(newest.get("at"))
    if mark is None:
        return False
    return at < mark or (at == mark and review_id in newest.get("ids", ()))


def _newer(top: dict[str, Any] | None, review_id: str, at: datetime) -> dict[str, Any]:
    return _merge(top, {"at": at.isoformat(), "ids": [review_id]})


def _merge(a: dict[str, Any] | None, b: dict[str, Any]) -> dict[str, Any]:
    """The later of two marks; at the same time, both id lists (bounded)."""
    if a is None:
        return b
    at_a, at_b = parse_time(a.get("at")), parse_time(b.get("at"))
    if at_a is None or (at_b is not None and at_b > at_a):
        return b
    if at_b is not None and at_b < at_a:
        return a
    ids = list(dict.fromkeys([*a.get("ids", []), *b.get("ids", [])]))
    return {"at": a["at"], "ids": ids[-100:]}


Converted = tuple[list[Mention], datetime]
"""What one review becomes: its Mentions (the review first, then a reply) and when it last
changed (the time :class:`Sweep` compares)."""


class ReviewConnector(HttpConnector):
    """The base of the review connectors: targets checked, one session, one page per poll.

    A subclass sets ``sweep`` (its lists and paging) and, per poll, reads one
    page and hands its reviews to :meth:`batch`.

    Args:
        settings: The connector's settings.
        brands: The configured brands.
        targets: The apps or businesses to read (see :func:`check_brands`).

    Raises:
        FatalError: No targets, or one names a brand that is not configured.
    """

    sweep: Sweep

    def __init__(
        self, settings: HttpSettings, brands: BrandMatcher, targets: tuple[ReviewTarget, ...]
    ) -> None:
        super().__init__(settings, brands)
        check_brands(self.name, targets, brands)
        self.targets = {target.id: target for target in targets}

    def batch(
        self,
        state: dict[str, Any],
        reviews: Iterable[Any],
        convert: Callable[[Any], Converted],
        next_page: Any,
    ) -> Batch:
        """The Batch of one page: the Mentions of the reviews new to the sweep, and the skipped.

        Args:
            state: The cursor state (see :meth:`Sweep.step`), updated in place.
            reviews: The page's reviews, in the platform's order.
            convert: Turns one review into its Mentions; raises SkippableError.
            next_page: The next page's number or token; None at the last page.
        """
        groups: list[list[Mention]] = []
        items: list[tuple[str, datetime]] = []
        skipped: list[Skipped] = []
        for review in reviews:
            try:
                found, changed = convert(review)
            except SkippableError as exc:
                skipped.append(Skipped(exc.reason, str(exc), repr(review)[:10_000]))
                continue
            groups.append(found)
            items.append((found[0].id, changed))
        fresh, more = self.sweep.step(state, items, next_page)
        mentions = [m for group, new in zip(groups, fresh, strict=True) if new for m in group]
        return Batch(tuple(mentions), Sweep.dump(state), tuple(skipped), more)
