"""The Connector Protocol: what a source connector must do, and the batch it returns.

A connector only turns a source into :class:`~listener.record.Mention` values
(R3). It never touches Kafka, metrics, cursor files or retry loops: the
runner (:mod:`listener.runner`) owns all of those, once, for every connector.

Contract of :meth:`Connector.poll`:

* it is given the last *durable* cursor (``None`` on first start) and returns a
  :class:`Batch` of new Mentions, the cursor to persist once they are in Kafka,
  and the events it had to skip (each with a reason);
* it raises :class:`~listener.errors.RetryableError` (``after=`` Retry-After
  seconds when the source sends one) for 429, 5xx and network failures, and
  :class:`~listener.errors.FatalError` for rejected credentials or config;
* it may return an empty batch; ``more=False`` tells the runner to wait the
  connector's ``poll_interval_s`` before the next call;
* a Mention may be returned twice (overlap after a reconnect): the runner drops
  repeats by id, and downstream sinks are idempotent on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any, ClassVar, Protocol, runtime_checkable

from listener.brands import BrandMatcher
from listener.record import Mention


@dataclass(frozen=True, slots=True)
class Skipped:
    """An event the connector could not turn into a Mention (goes to the dead-letter topic)."""

    reason: str
    detail: str
    payload: bytes | str | None = None


@dataclass(frozen=True, slots=True)
class Batch:
    """What one :meth:`Connector.poll` returns."""

    mentions: tuple[Mention, ...] = ()
    cursor: str | None = None
    skipped: tuple[Skipped, ...] = ()
    more: bool = False
    paused: str | None = None
    """Set while the connector holds off by itself, with why (e.g. ``spend_guard:day``)."""
    token: Any = field(default=None, compare=False)
    """Opaque to the runner; handed back to :meth:`Connector.delivered`."""
    quota_used: float | None = None
    """Units of the source's own quota spent in its current window (e.g. YouTube units today)."""


@runtime_checkable
class Connector(Protocol):
    """A source of Mentions; see the module docstring for the poll contract."""

    name: ClassVar[str]
    poll_interval_s: float

    async def poll(self, cursor: str | None) -> Batch:
        """Fetch what is new since ``cursor``."""
        ...

    async def delivered(self, batch: Batch, error: BaseException | None) -> None:
        """Told after the runner produced ``batch`` (``error`` is None) or gave it up."""
        ...

    async def close(self) -> None:
        """Release connections; safe to call twice and before any poll."""
        ...


class BaseConnector:
    """Optional convenience base: no-op ``delivered``/``close``, brands kept on ``self``.

    Args:
        brands: The configured brands (for sources that need a server-side query).
        poll_interval_s: Seconds the runner waits after a batch with ``more=False``.
    """

    name: ClassVar[str] = "base"

    def __init__(self, brands: BrandMatcher, poll_interval_s: float = 60.0) -> None:
        self.brands = brands
        self.poll_interval_s = poll_interval_s

    async def delivered(self, batch: Batch, error: BaseException | None) -> None:
        """Nothing to do for pull connectors: the cursor is what records progress."""

    async def close(self) -> None:
        """Nothing to release."""


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 string (``Z`` allowed) or unix seconds as an aware UTC datetime, else None."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


class _TextExtractor(HTMLParser):
    _BREAKS = frozenset({"p", "br", "div", "li", "pre", "blockquote", "tr"})
    _HIDDEN = frozenset({"script", "style", "template", "noscript"})
    """Elements whose content is code or markup, never text a person wrote."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.links: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._HIDDEN:
            self._hidden += 1
            return
        if tag in self._BREAKS and self.parts:
            self.parts.append("\n")
        href = dict(attrs).get("href")
        if tag == "a" and href:
            self.links.append(href)

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN and self._hidden:
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def html_to_text(html: str) -> tuple[str, list[str]]:
    """Plain text of an HTML fragment (paragraphs as newlines) and the links it holds."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    lines = [" ".join(line.split()) for line in "".join(parser.parts).splitlines()]
    return "\n".join(line for line in lines if line), parser.links
