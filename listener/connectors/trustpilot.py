"""Trustpilot: the reviews of business units, newest first, from the public Business Units API.

``GET {api_url}/v1/business-units/{businessUnitId}/reviews?orderBy=createdat.desc
&perPage=100&page=N`` with the API key as ``apikey``
(https://developers.trustpilot.com/business-units-api-(public)#get-a-business-unit's-reviews):
``reviews[]`` with ``id``, ``stars`` (1-5), ``title``, ``text``, ``language``,
``createdAt``, ``consumer`` (``id``, ``displayName``), ``companyReply``
(``text``, ``createdAt``) and ``links``; a ``links`` entry with ``rel: next-page``
while more pages follow.

Auth: an API key of an application created in Trustpilot's Business app
(API access comes with Trustpilot's paid plans). A rejected key is a 401
Apigee fault (``oauth.v2.InvalidApiKey``): fatal. Rate limits: per-key quotas
per minute/hour (Apigee ``policies.ratelimit.QuotaViolation`` /
``SpikeArrestViolation``, 429): Retry-After when sent, else the runner's backoff.
Cursor: per business unit, the newest ``createdAt`` and its ids
(:class:`~listener.connectors.reviews.Sweep`); a sweep stops at the first review
already seen, or after ``max_pages`` (the backfill depth on first start).
Brand: the business unit's configured brand, or (unset, a competitor) the text.
Threads: a review opens one; the company's reply is ``trustpilot:<id>:reply``, from
the brand's own account (never queued), and the review gets
``signals["thread_answered_by_brand"]``. Delivery: at-least-once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from listener.brands import BrandMatcher
from listener.connectors.base import Batch, parse_time
from listener.connectors.reviews import (
    Converted,
    ReviewConnector,
    ReviewTarget,
    Sweep,
    answer_member,
    brand_reply,
    check_api_key,
    error_text,
    fetch_json,
    plain,
    rating,
)
from listener.errors import FatalError, SkippableError
from listener.record import Author, Mention


class TrustpilotSettings(BaseModel):
    """The ``connectors.trustpilot`` config block."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    api_key: SecretStr
    business_units: tuple[ReviewTarget, ...] = Field(description="Business unit ids and brand.")
    api_url: str = "https://api.trustpilot.com"
    per_page: int = Field(default=100, ge=1, le=100)
    max_pages: int = Field(default=10, ge=1, description="Pages per sweep (first-start backfill).")
    poll_interval_s: float = Field(default=600.0, ge=0)
    timeout_s: float = Field(default=30.0, gt=0)


class TrustpilotConnector(ReviewConnector):
    """Sweeps each business unit's reviews, newest first (see module docstring)."""

    name: ClassVar[str] = "trustpilot"
    settings_model: ClassVar[type[BaseModel]] = TrustpilotSettings
    settings: TrustpilotSettings

    def __init__(self, settings: TrustpilotSettings, brands: BrandMatcher) -> None:
        super().__init__(settings, brands, settings.business_units)
        self.sweep = Sweep(tuple(self.targets), settings.max_pages)

    async def poll(self, cursor: str | None) -> Batch:
        """One page of the current business unit's reviews."""
        state = Sweep.load(cursor)
        unit = self.targets[self.sweep.key(state)]
        page = Sweep.page(state, unit.id) or 1
        url = f"{self.settings.api_url.rstrip('/')}/v1/business-units/{unit.id}/reviews"
        params = {
            "apikey": self.settings.api_key.get_secret_value(),
            "orderBy": "createdat.desc",
            "perPage": str(self.settings.per_page),
            "page": str(page),
        }
        body = await fetch_json(self._client(), "trustpilot", "GET", url, params=params,
                                explain=_explain)  # fmt: skip
        reviews = answer_member("trustpilot", body, "reviews", list)
        links = body.get("links") or []
        more_pages = any(isinstance(k, dict) and k.get("rel") == "next-page" for k in links)

        def convert(review: Any) -> Converted:
            found = _to_mentions(review, unit)
            return found, found[0].created_at

        return self.batch(state, reviews, convert, page + 1 if more_pages else None)


def _explain(status: int, body: Any, headers: Mapping[str, str]) -> None:
    check_api_key("trustpilot", status, body)
    if status == 404:
        raise FatalError(f"trustpilot: HTTP 404: {error_text(body)} (check business_units ids)")


def _to_mentions(review: Any, unit: ReviewTarget) -> list[Mention]:
    """A review, and the company's reply if there is one (and the unit has a brand).

    Raises:
        SkippableError: No id, time, rating or text.
    """
    if not isinstance(review, dict) or not isinstance(review.get("id"), str):
        raise SkippableError("validation", "review without id")
    review_id = review["id"]
    created = parse_time(review.get("createdAt"))
    if created is None:
        raise SkippableError("validation", f"review {review_id} has no createdAt")
    consumer: dict[str, Any] = review.get("consumer") or {}
    consumer = consumer if isinstance(consumer, dict) else {}
    consumer_id = consumer.get("id") if isinstance(consumer.get("id"), str) else None
    name = consumer.get("displayName")
    reply = review.get("companyReply") if isinstance(review.get("companyReply"), dict) else None
    reply_text = plain(reply.get("text")) if reply else ""
    replied = parse_time(reply.get("createdAt")) if reply else None
    answered = unit.brand is not None and bool(reply_text) and replied is not None
    signals: dict[str, Any] = {
        "rating": rating(review.get("stars")),
        "review": {"business_unit": unit.id},
    }
    if answered:
        signals["thread_answered_by_brand"] = [unit.brand]
    url = f"https://www.trustpilot.com/reviews/{quote(review_id, safe='')}"
    lang = review.get("language")
    found = [
        Mention.create(
            source="trustpilot",
            native_id=review_id,
            text=plain(review.get("title"), review.get("text")),
            created_at=created,
            url=url,
            lang=lang if isinstance(lang, str) and lang else None,
            author=Author(
                id=consumer_id,
                name=name if isinstance(name, str) and name else None,
                url=f"https://www.trustpilot.com/users/{quote(consumer_id, safe='')}"
                if consumer_id
                else None,
            ),
            brands=unit.brands,
            thread_id=f"trustpilot:{review_id}",
            signals=signals,
        )
    ]
    if answered and unit.brand is not None and replied is not None:
        found.append(
            brand_reply(
                found[0],
                unit.brand,
                text=reply_text,
                created_at=replied,
                author=Author(id=f"business-unit:{unit.id}", name=unit.brand),
                signals={"review": {"business_unit": unit.id}},
            )
        )
    return found
