"""Apple App Store: the public customer-reviews feed of each app, per country storefront.

Reads ``https://itunes.apple.com/{country}/rss/customerreviews/page={n}/id={app_id}/
sortby=mostrecent/json`` (Apple's RSS feed generator, JSON flavour; documented by
Apple only as the "RSS Feed Generator", https://rss.marketingtools.apple.com/): a
``feed`` whose ``entry`` (a list, or a single object when there is one) holds the
reviews, each with ``id``, ``author.name``/``author.uri``, ``title``, ``content``,
``im:rating`` (1-5), ``im:version`` (the app version reviewed) and ``updated``,
each value under ``label``. Up to 10 pages of 50 reviews: the newest 500 per
app and country are the whole backfill. Entries without ``im:rating`` (the app
itself, as older feeds put first on page 1) are not reviews and are left out.
Developer responses are not in the feed.

Auth: none. Rate limits: not documented; Apple answers 403/429 to clients that
poll too fast (a 429's Retry-After is honoured). Poll every 15 minutes or so.
Cursor: per ``<app id>/<country>``, the newest review's ``updated`` time and id
(:class:`~listener.connectors.reviews.Sweep`): a sweep reads pages until it meets
that review. An edited review moves to the top and is read again (same Mention id).
Brand: the app's configured brand (a review of one's own app names the brand
rarely); thread: each review opens its own thread (``thread_id`` = its id).
Delivery: at-least-once.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from listener.brands import BrandMatcher
from listener.connectors.base import Batch, parse_time
from listener.connectors.reviews import (
    Converted,
    ReviewConnector,
    ReviewTarget,
    Sweep,
    answer_member,
    fetch_json,
    plain,
    rating,
    safe_url,
)
from listener.errors import FatalError, SkippableError
from listener.record import Author, Mention

log = logging.getLogger(__name__)

PAGES = 10
"""Apple serves at most 10 pages of 50 reviews per app and country."""


class AppStoreSettings(BaseModel):
    """The ``connectors.appstore`` config block."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    apps: tuple[ReviewTarget, ...] = Field(description="Numeric App Store ids and their brand.")
    countries: tuple[str, ...] = Field(default=("us",), description="Storefront codes (us, gb).")
    base_url: str = "https://itunes.apple.com"
    max_pages: int = Field(default=PAGES, ge=1, le=PAGES, description="Pages per sweep.")
    poll_interval_s: float = Field(default=900.0, ge=0)
    timeout_s: float = Field(default=30.0, gt=0)


class AppStoreConnector(ReviewConnector):
    """Sweeps each app's review feed per country, newest first (see module docstring)."""

    name: ClassVar[str] = "appstore"
    settings_model: ClassVar[type[BaseModel]] = AppStoreSettings
    settings: AppStoreSettings

    def __init__(self, settings: AppStoreSettings, brands: BrandMatcher) -> None:
        super().__init__(settings, brands, settings.apps)
        if not settings.countries:
            raise FatalError("appstore: list at least one country storefront")
        keys = tuple(f"{a.id}/{c.lower()}" for a in settings.apps for c in settings.countries)
        self.sweep = Sweep(keys, settings.max_pages)

    async def poll(self, cursor: str | None) -> Batch:
        """One page of the current app and country."""
        state = Sweep.load(cursor)
        key = self.sweep.key(state)
        app_id, country = key.split("/")
        page = Sweep.page(state, key) or 1
        url = (
            f"{self.settings.base_url.rstrip('/')}/{country}/rss/customerreviews/"
            f"page={page}/id={app_id}/sortby=mostrecent/json"
        )
        body = await fetch_json(self._client(), "appstore", "GET", url)
        feed = answer_member("appstore", body, "feed", dict)
        entries = feed.get("entry") or []
        entries = [entries] if isinstance(entries, dict) else entries
        reviews = [e for e in entries if isinstance(e, dict) and "im:rating" in e]

        def convert(entry: dict[str, Any]) -> Converted:
            mention = _to_mention(entry, self.targets[app_id], country)
            return [mention], mention.created_at

        return self.batch(state, reviews, convert, page + 1 if page < PAGES else None)


def _label(entry: dict[str, Any], *path: str) -> Any:
    value: Any = entry
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value.get("label") if isinstance(value, dict) else None


def _to_mention(entry: dict[str, Any], app: ReviewTarget, country: str) -> Mention:
    """One feed entry as a Mention.

    Raises:
        SkippableError: No id, time, rating or text.
    """
    review_id, updated = _label(entry, "id"), parse_time(_label(entry, "updated"))
    if not isinstance(review_id, str) or not review_id.strip() or updated is None:
        raise SkippableError("validation", "review entry without id or updated time")
    stars = rating(_label(entry, "im:rating"))
    name = _label(entry, "author", "name")
    link = entry.get("link")
    link = link[0] if isinstance(link, list) and link else link
    href = (link.get("attributes") or {}).get("href") if isinstance(link, dict) else None
    return Mention.create(
        source="appstore",
        native_id=review_id.strip(),
        text=plain(_label(entry, "title"), _label(entry, "content")),
        created_at=updated,
        url=safe_url(href) or f"https://apps.apple.com/{country}/app/id{app.id}?see-all=reviews",
        author=Author(
            handle=name if isinstance(name, str) else None,
            url=safe_url(_label(entry, "author", "uri")),
        ),
        brands=app.brands,
        thread_id=f"appstore:{review_id.strip()}",
        signals={
            "rating": stars,
            "review": {"app": app.id, "country": country, "version": _label(entry, "im:version")},
        },
    )
