"""What the Meta connectors share: Graph API errors and usage headers, and posts as Mentions.

Used by :mod:`~listener.connectors.meta_webhook`, :mod:`~listener.connectors.meta_graph`
and :mod:`~listener.connectors.threads` (the Threads API speaks the same error format).

Errors (https://developers.facebook.com/docs/graph-api/guides/error-handling):
a failed call answers ``{"error": {"message", "type", "code", "error_subcode",
"fbtrace_id"}}``, often with HTTP 400 or 403 whatever the cause, so the *code*
decides: ``190`` (``OAuthException``: token expired, revoked or invalid) and
``10``/``200``-``299`` (a permission not granted) are fatal; ``4``, ``17``, ``32``,
``613`` and the business-use-case codes ``80001``-``80014`` are rate limits
(retry after the usage headers' ``estimated_time_to_regain_access``, else a
default); ``1``, ``2`` (temporary) and any 5xx are retryable.

Rate limits (https://developers.facebook.com/docs/graph-api/overview/rate-limiting):
``X-App-Usage`` / ``X-Page-Usage`` report percentages of the hourly quota;
``X-Business-Use-Case-Usage`` maps business ids to lists of ``{"type",
"call_count", "total_cputime", "total_time", "estimated_time_to_regain_access"}``
(minutes), and is what says how long to wait.

Mention ids: ``facebook:<post or comment id>``, ``instagram:<media or comment id>``,
``threads:<media id>``. Texts are plain text from Meta, but are still read as
hostile: any markup is stripped (:func:`~listener.connectors.base.html_to_text`).

Polling (``meta_graph``, ``threads``): :class:`GraphSweepConnector` reads one page
of one source per poll, keeps each source's progress in a :class:`Sweep` and
goes through the sources in turn; a page is read with :func:`page_items` and
:func:`collect`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
from pydantic import SecretStr

from listener.brands import BrandMatcher
from listener.connectors.base import Batch, Skipped, html_to_text, parse_time
from listener.connectors.http import HttpConnector, HttpSettings, network_error
from listener.errors import FatalError, RetryableError, SkippableError
from listener.record import Author, Mention
from listener.retry import check_http_status, retry_after

GRAPH_URL = "https://graph.facebook.com"
GRAPH_API_VERSION = "v23.0"
"""The Graph API version the Meta connectors call by default (a setting of each)."""

RATE_LIMIT_CODES = frozenset({4, 17, 32, 613, *range(80001, 80015)})
"""Application, user, page, custom and business-use-case rate limits."""
PERMISSION_CODES = frozenset({3, 10, *range(200, 300)})
TEMPORARY_CODES = frozenset({1, 2})


def usage_wait(headers: Mapping[str, str]) -> float | None:
    """Seconds until access returns, from ``X-Business-Use-Case-Usage`` (or ``Retry-After``).

    The largest ``estimated_time_to_regain_access`` (minutes) of any entry;
    None when no header says (``X-App-Usage`` gives percentages, not a time).
    """
    after = retry_after(headers)
    if after is not None:
        return after
    minutes: list[float] = []
    for name in ("X-Business-Use-Case-Usage", "X-Ad-Account-Usage"):
        raw = headers.get(name)
        if not raw:
            continue
        try:
            usage = json.loads(raw)
        except ValueError:
            continue
        entries: list[Any] = []
        if isinstance(usage, dict) and "estimated_time_to_regain_access" in usage:
            entries = [usage]
        elif isinstance(usage, dict):
            entries = [e for v in usage.values() if isinstance(v, list) for e in v]
        for entry in entries:
            value = (
                entry.get("estimated_time_to_regain_access") if isinstance(entry, dict) else None
            )
            if isinstance(value, int | float) and not isinstance(value, bool):
                minutes.append(float(value))
    positive = [m for m in minutes if m > 0]
    return max(positive) * 60.0 if positive else None


def raise_graph_error(
    source: str, status: int, headers: Mapping[str, str], body: Any, default_wait_s: float
) -> None:
    """Raise the project's error kind for a failed Graph/Threads API call; return on 2xx/3xx.

    Raises:
        FatalError: Code 190 (token expired or invalid), a missing permission, or
            another 4xx that is not a rate limit.
        RetryableError: A rate-limit code or HTTP 429 (``after`` from the usage
            headers, else ``default_wait_s``), a temporary code, or a 5xx.
    """
    if status < 400:
        return
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        if status == 429:
            raise RetryableError(f"{source}: HTTP 429", after=usage_wait(headers) or default_wait_s)
        check_http_status(source, status, headers, str(body)[:300] if body else "")
        return
    code, sub = error.get("code"), error.get("error_subcode")
    detail = (
        f"{source}: HTTP {status}: {error.get('type', 'error')} code {code}"
        + (f"/{sub}" if sub is not None else "")
        + f": {str(error.get('message', ''))[:300]} (fbtrace_id {error.get('fbtrace_id')})"
    )
    if code == 190:
        raise FatalError(f"{detail}: the access token expired or is invalid; issue a new one")
    if code in RATE_LIMIT_CODES or status == 429:
        raise RetryableError(detail, after=usage_wait(headers) or default_wait_s)
    if code in TEMPORARY_CODES or status >= 500 or error.get("is_transient") is True:
        raise RetryableError(detail, after=retry_after(headers))
    if code in PERMISSION_CODES:
        raise FatalError(f"{detail}: a permission is missing (see the README's Meta app review)")
    raise FatalError(detail)


async def graph_get(
    session: aiohttp.ClientSession,
    source: str,
    url: str,
    params: Mapping[str, str],
    default_wait_s: float,
) -> dict[str, Any]:
    """One GET of a Graph/Threads API edge; the JSON object it answers.

    Raises:
        RetryableError: Network failure, a body that is not a JSON object, or see
            :func:`raise_graph_error`.
        FatalError: See :func:`raise_graph_error`.
    """
    try:
        async with session.get(url, params=params) as response:
            raw = await response.text()
            status, headers = response.status, response.headers
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise network_error(source, exc) from exc
    try:
        body: Any = json.loads(raw) if raw.strip() else None
    except ValueError:
        body = raw
    raise_graph_error(source, status, headers, body, default_wait_s)
    if not isinstance(body, dict):
        raise RetryableError(f"{source}: answer is not a JSON object")
    return body


def plain(text: Any) -> str:
    """A post's text as plain text (markup stripped), or "" when there is none."""
    return html_to_text(text)[0] if isinstance(text, str) else ""


def safe_url(value: Any) -> str | None:
    """An ``http(s)`` URL, or None (a ``javascript:`` link never reaches a ticket)."""
    if isinstance(value, str) and value.lower().startswith(("https://", "http://")):
        return value
    return None


def native(value: Any) -> str | None:
    """A Graph id (string or number) as a string, or None."""
    if isinstance(value, bool) or not isinstance(value, str | int) or not str(value).strip():
        return None
    return str(value).strip()


def ref(source: str, value: Any) -> str | None:
    """A native id as the Mention id it has here (``facebook:<id>``), or None."""
    value = native(value)
    return f"{source}:{value}" if value else None


def build(
    source: str,
    item_id: Any,
    text: Any,
    created: Any,
    *,
    author: Author,
    url: Any = None,
    reply_to: Any = None,
    thread: Any = None,
    signals: dict[str, Any] | None = None,
) -> Mention:
    """A Facebook/Instagram/Threads post or comment as a Mention.

    Raises:
        SkippableError: ``validation`` (no id) or ``no_text`` (nothing to read:
            a photo-only post, a reaction, a mention notice without its text).
    """
    pid = native(item_id)
    if pid is None:
        raise SkippableError("validation", f"{source}: item without an id")
    body = plain(text)
    if not body.strip():
        raise SkippableError("no_text", f"{source}:{pid}: no text to read")
    return Mention.create(
        source=source,
        native_id=pid,
        text=body,
        created_at=parse_time(created),
        url=safe_url(url),
        author=author,
        reply_to_id=ref(source, reply_to),
        thread_id=ref(source, thread),
        signals=signals or {},
    )


def fb_author(value: Any) -> Author:
    """A Graph ``from`` (``{"id", "name"}``) as an Author."""
    data = value if isinstance(value, dict) else {}
    return Author(id=native(data.get("id")), name=data.get("name") or None)


def ig_author(username: Any, user: Any = None) -> Author:
    """An Instagram commenter (``username``, and ``from: {"id", "username"}`` where given)."""
    data = user if isinstance(user, dict) else {}
    handle = username if isinstance(username, str) and username else data.get("username")
    handle = handle if isinstance(handle, str) and handle else None
    return Author(
        id=native(data.get("id")),
        handle=handle,
        url=f"https://www.instagram.com/{handle}/" if handle else None,
    )


@dataclass(slots=True)
class Sweep:
    """Progress through one source of a pull connector (``meta_graph``, ``threads``).

    A sweep asks for everything since ``since`` and follows the API's paging
    (``page``: the query of the next page) to the end or ``max_pages``; then
    ``since`` moves to the newest time seen (``high``). Graph times have
    one-second precision, so that second is asked for again and the ids already
    read at it (``seen``) are left out: no gap, no repeat.
    """

    since: int
    seen: frozenset[str] = frozenset()
    high: int = 0
    high_ids: set[str] = field(default_factory=set)
    page: dict[str, str] | None = None
    pages: int = 0

    @classmethod
    def load(cls, raw: Any, first_since: int) -> Sweep:
        """A source's entry of the cursor (``first_since`` when it has none)."""
        if not isinstance(raw, dict) or not isinstance(raw.get("since"), int):
            return cls(since=first_since, high=first_since)
        since = raw["since"]
        return cls(
            since=since,
            seen=frozenset(map(str, raw.get("seen") or ())),
            high=int(raw.get("high") or since),
            high_ids=set(map(str, raw.get("high_ids") or ())),
            page=raw.get("page") if isinstance(raw.get("page"), dict) else None,
            pages=int(raw.get("pages") or 0),
        )

    def keep(self, mention: Mention) -> bool:
        """Whether ``mention`` is new to this source (and note its time if so)."""
        stamp = int(mention.created_at.timestamp())
        if stamp < self.since or (stamp == self.since and mention.id in self.seen):
            return False
        if stamp > self.high:
            self.high, self.high_ids = stamp, set()
        if stamp == self.high:
            self.high_ids.add(mention.id)
        return True

    def turn(self, next_page: dict[str, str] | None, max_pages: int) -> bool:
        """After a page: go on to ``next_page`` (True) or close the sweep (False)."""
        self.pages += 1
        if next_page and self.pages < max_pages:
            self.page = next_page
            return True
        seen = self.high_ids | (self.seen if self.high == self.since else set())
        self.since, self.seen, self.high_ids = self.high, frozenset(seen), set()
        self.page, self.pages = None, 0
        return False

    def dump(self) -> dict[str, Any]:
        """The cursor entry."""
        out: dict[str, Any] = {"since": self.since, "seen": sorted(self.seen)}
        if self.page is not None:
            out.update(high=self.high, high_ids=sorted(self.high_ids), page=self.page)
            out["pages"] = self.pages
        return out


def page_items(body: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """The ``data`` list and the ``paging`` object of a Graph/Threads page (empty when absent)."""
    data, paging = body.get("data"), body.get("paging")
    return (
        data if isinstance(data, list) else [],
        paging if isinstance(paging, dict) else {},
    )


Made = tuple[Any, Mention | SkippableError]
"""A raw item of a page and what it became: a Mention, or why it is skipped."""


def attempt(raw: Any, make: Callable[..., Mention], *args: Any, **kwargs: Any) -> Made:
    """``raw`` with ``make(*args, **kwargs)``, or with the SkippableError it raised."""
    try:
        return raw, make(*args, **kwargs)
    except SkippableError as exc:
        return raw, exc


def collect(
    data: list[Any], convert: Callable[[Any], list[Made]], sweep: Sweep
) -> tuple[list[Mention], list[Skipped]]:
    """The Mentions of one page's items that are new to ``sweep``, and the skipped items.

    ``convert`` turns one item into what it holds (a post and its comments, say).
    An item without text (a bare photo, an image-only post) is not a mention
    and is not reported as skipped either.
    """
    mentions: list[Mention] = []
    skipped: list[Skipped] = []
    for item in data:
        for raw, made in convert(item):
            if isinstance(made, SkippableError):
                if made.reason != "no_text":
                    skipped.append(Skipped(made.reason, str(made), json.dumps(raw)[:10_000]))
            elif sweep.keep(made):
                mentions.append(made)
    return mentions, skipped


class GraphSweepSettings(HttpSettings, Protocol):
    """The settings :class:`GraphSweepConnector` reads (``meta_graph``, ``threads``)."""

    @property
    def access_token(self) -> SecretStr:
        """The token sent as ``access_token`` on every call."""

    @property
    def max_pages(self) -> int:
        """Pages per sweep and source."""

    @property
    def lookback_s(self) -> int:
        """How far back the first sweep of a source reads."""

    @property
    def rate_limit_wait_s(self) -> float:
        """The wait after a rate limit when no header says."""


class GraphSweepConnector(HttpConnector):
    """Polls Graph/Threads API sources in turn, one page per poll, each with a :class:`Sweep`.

    The cursor maps each source to its :meth:`Sweep.dump`. A subclass sets
    ``sources`` (read in this order) and says how a source's page is asked
    for (:meth:`request`) and read (:meth:`read`); ``more`` is True while a
    sweep, or a later source of this round, remains.

    Args:
        settings: The connector's settings.
        brands: The configured brands.
    """

    settings: GraphSweepSettings

    def __init__(self, settings: GraphSweepSettings, brands: BrandMatcher) -> None:
        super().__init__(settings, brands)
        self.sources: tuple[str, ...] = ()
        self._next = 0

    def request(self, source: str, sweep: Sweep) -> tuple[str, dict[str, str]]:
        """The URL and query (without the token) of ``source``'s next page."""
        raise NotImplementedError

    def read(
        self, source: str, body: dict[str, Any], sweep: Sweep
    ) -> tuple[list[Mention], list[Skipped], dict[str, str] | None]:
        """A page's new Mentions, its skipped items, and the query of the next page (or None)."""
        raise NotImplementedError

    async def poll(self, cursor: str | None) -> Batch:
        """One page of the current source; ``more`` while its sweep or other sources remain."""
        s = self.settings
        state: dict[str, Any] = json.loads(cursor) if cursor else {}
        source = self.sources[self._next]
        sweep = Sweep.load(state.get(source), int(time.time()) - s.lookback_s)
        url, params = self.request(source, sweep)
        params["access_token"] = s.access_token.get_secret_value()
        body = await graph_get(self._client(), self.name, url, params, s.rate_limit_wait_s)
        mentions, skipped, next_page = self.read(source, body, sweep)
        more = sweep.turn(next_page, s.max_pages)
        state[source] = sweep.dump()
        if not more:
            self._next = (self._next + 1) % len(self.sources)
            more = self._next != 0
        return Batch(tuple(mentions), json.dumps(state, sort_keys=True), tuple(skipped), more)


def check_owner_brands(connector: str, owners: Mapping[str, str], brands: BrandMatcher) -> None:
    """Every brand an account is assigned to must be configured.

    Raises:
        FatalError: A brand name that is not under ``brands``.
    """
    known = {b.name for b in brands.settings}
    for account, brand in owners.items():
        if brand not in known:
            raise FatalError(
                f"{connector}: account {account!r} belongs to brand {brand!r}, which is not "
                f"configured; known: {sorted(known)}"
            )


def owned_by(mention: Mention, brand: str | None) -> Mention:
    """``mention`` as a mention of ``brand`` (read on that brand's own Page or account).

    The brand matcher keeps brands a connector set (matched term ``source``): a
    comment on the brand's Page is the brand's even when it does not name it.
    """
    if brand is None or brand in mention.brands:
        return mention
    return mention.model_copy(update={"brands": (*mention.brands, brand)})
