"""Yelp: review excerpts of businesses from the Yelp Fusion API.

``GET {api_url}/v3/businesses/{business_id_or_alias}/reviews?sort_by=newest``
(https://docs.developer.yelp.com/reference/v3_business_reviews): ``reviews[]``
with ``id``, ``url``, ``text`` (an excerpt, about 160 characters), ``rating``
(1-5), ``time_created`` (``"2024-09-12 10:00:00"``, Pacific time) and ``user``
(``id``, ``name``, ``profile_url``); ``total`` counts every review.

Limits: at most 3 review excerpts per business per call on the standard plans
(more only on Yelp's paid Enhanced/Premium plans), so this is a sample of the
newest reviews, not every review: poll often enough that fewer than 3 arrive
in between. There is no paging and no backfill beyond those 3. Owner replies
are not in the API. Auth: ``Authorization: Bearer <API key>`` (a Yelp Fusion
app; commercial use needs a paid plan). Errors: ``{"error": {"code",
"description"}}``; 401 ``TOKEN_INVALID``/``TOKEN_MISSING`` is fatal; 429
``TOO_MANY_REQUESTS_PER_SECOND`` waits a second (Retry-After when sent); 429
``ACCESS_LIMIT_REACHED`` (the daily quota, 300-5000 calls by plan) waits until
``RateLimit-ResetTime`` (midnight UTC).
Cursor: per business, the newest ``time_created`` read and its ids; only newer
reviews are kept (with ``sort_by: yelp_sort`` an older review never seen before is
not read). Brand: the business's configured brand, or (unset) the text.
Threads: a review opens one (``thread_id`` = its id). Delivery: at-least-once.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from listener.brands import BrandMatcher
from listener.connectors.base import Batch, parse_time
from listener.connectors.reviews import (
    Converted,
    ReviewConnector,
    ReviewTarget,
    Sweep,
    answer_member,
    check_api_key,
    error_text,
    fetch_json,
    plain,
    rating,
    safe_url,
)
from listener.errors import RetryableError, SkippableError
from listener.record import Author, Mention

PACIFIC = ZoneInfo("America/Los_Angeles")
"""Yelp's ``time_created`` is Pacific time without an offset."""


class YelpSettings(BaseModel):
    """The ``connectors.yelp`` config block."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    api_key: SecretStr
    businesses: tuple[ReviewTarget, ...] = Field(description="Business ids or aliases and brand.")
    api_url: str = "https://api.yelp.com"
    sort_by: str | None = Field(default="newest", description="newest | yelp_sort | null.")
    locale: str | None = None
    poll_interval_s: float = Field(default=600.0, ge=0)
    timeout_s: float = Field(default=30.0, gt=0)


class YelpConnector(ReviewConnector):
    """Reads each business's newest review excerpts in turn (see module docstring)."""

    name: ClassVar[str] = "yelp"
    settings_model: ClassVar[type[BaseModel]] = YelpSettings
    settings: YelpSettings

    def __init__(self, settings: YelpSettings, brands: BrandMatcher) -> None:
        super().__init__(settings, brands, settings.businesses)
        self.sweep = Sweep(tuple(self.targets), max_pages=1, ordered=False)

    def session_headers(self) -> dict[str, str]:
        """The API key as a bearer token."""
        key = self.settings.api_key.get_secret_value()
        return {"Authorization": f"Bearer {key}", "Accept": "application/json"}

    async def poll(self, cursor: str | None) -> Batch:
        """The current business's review excerpts."""
        state = Sweep.load(cursor)
        business = self.targets[self.sweep.key(state)]
        url = f"{self.settings.api_url.rstrip('/')}/v3/businesses/{business.id}/reviews"
        params = {}
        if self.settings.sort_by:
            params["sort_by"] = self.settings.sort_by
        if self.settings.locale:
            params["locale"] = self.settings.locale
        body = await fetch_json(self._client(), "yelp", "GET", url, params=params,
                                explain=_explain)  # fmt: skip
        reviews = answer_member("yelp", body, "reviews", list)

        def convert(review: Any) -> Converted:
            mention = _to_mention(review, business)
            return [mention], mention.created_at

        return self.batch(state, reviews, convert, None)


def _explain(status: int, body: Any, headers: Mapping[str, str]) -> None:
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    check_api_key("yelp", status, body)
    if status == 429 and "Retry-After" not in headers:
        if code == "ACCESS_LIMIT_REACHED":
            reset = parse_time(headers.get("RateLimit-ResetTime"))
            after = (reset - datetime.now(UTC)).total_seconds() if reset else None
            raise RetryableError(
                f"yelp: daily quota used up: {error_text(body)}",
                after=max(1.0, after) if after is not None else None,
            )
        raise RetryableError(f"yelp: HTTP 429: {error_text(body)}", after=1.0)


def _created(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        local = datetime.strptime(value.strip(), "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return parse_time(value)
    return local.replace(tzinfo=PACIFIC).astimezone(UTC)


def _to_mention(review: Any, business: ReviewTarget) -> Mention:
    """One review excerpt as a Mention.

    Raises:
        SkippableError: No id, time, rating or text.
    """
    if not isinstance(review, dict) or not isinstance(review.get("id"), str):
        raise SkippableError("validation", "review without id")
    created = _created(review.get("time_created"))
    if created is None:
        raise SkippableError("validation", f"review {review['id']} has no time_created")
    user: dict[str, Any] = review.get("user") or {}
    user = user if isinstance(user, dict) else {}
    user_id, name = user.get("id"), user.get("name")
    return Mention.create(
        source="yelp",
        native_id=review["id"],
        text=plain(review.get("text")),
        created_at=created,
        url=safe_url(review.get("url")),
        author=Author(
            id=user_id if isinstance(user_id, str) and user_id else None,
            name=name if isinstance(name, str) and name else None,
            url=safe_url(user.get("profile_url")),
        ),
        brands=business.brands,
        thread_id=f"yelp:{review['id']}",
        signals={"rating": rating(review.get("rating")), "review": {"business": business.id}},
    )
