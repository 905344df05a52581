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

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from listener.brands import BrandMatcher
from listener.connectors.base import BaseConnector, Batch, Skipped, parse_time
from listener.connectors.reviews import (
    ReviewTarget,
    Sweep,
    check_brands,
    error_text,
    fetch_json,
    plain,
    rating,
)
from listener.errors import FatalError, RetryableError, SkippableError
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


class TrustpilotConnector(BaseConnector):
    """Sweeps each business unit's reviews, newest first (see module docstring)."""

    name: ClassVar[str] = "trustpilot"
    settings_model: ClassVar[type[BaseModel]] = TrustpilotSettings

    def __init__(self, settings: TrustpilotSettings, brands: BrandMatcher) -> None:
        super().__init__(brands, poll_interval_s=settings.poll_interval_s)
        check_brands("trustpilot", settings.business_units, brands)
        self.settings = settings
        self.units = {unit.id: unit for unit in settings.business_units}
        self.sweep = Sweep(tuple(self.units), settings.max_pages)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=self.settings.timeout_s)
            self._session = aiohttp.ClientSession(timeout=timeout)
        return self._session

    async def poll(self, cursor: str | None) -> Batch:
        """One page of the current business unit's reviews."""
        state = Sweep.load(cursor)
        unit = self.units[self.sweep.key(state)]
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
        reviews = body.get("reviews") if isinstance(body, dict) else None
        if not isinstance(reviews, list):
            raise RetryableError("trustpilot: answer has no reviews array")
        links = body.get("links") or []
        more_pages = any(isinstance(k, dict) and k.get("rel") == "next-page" for k in links)
        groups: list[list[Mention]] = []
        skipped: list[Skipped] = []
        for review in reviews:
            try:
                groups.append(_to_mentions(review, unit))
            except SkippableError as exc:
                skipped.append(Skipped(exc.reason, str(exc), repr(review)[:10_000]))
        items = [(g[0].id, g[0].created_at) for g in groups]
        fresh, more = self.sweep.step(state, items, page + 1 if more_pages else None)
        mentions = [m for g, new in zip(groups, fresh, strict=True) if new for m in g]
        return Batch(tuple(mentions), Sweep.dump(state), tuple(skipped), more)

    async def close(self) -> None:
        """Close the HTTP session."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def _explain(status: int, body: Any, headers: Mapping[str, str]) -> None:
    if status in (401, 403):
        raise FatalError(f"trustpilot: HTTP {status}: {error_text(body)} (check api_key)")
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
    mention_id = f"trustpilot:{review_id}"
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
            brands=(unit.brand,) if unit.brand else (),
            thread_id=mention_id,
            signals=signals,
        )
    ]
    if answered and unit.brand is not None:
        found.append(
            Mention.create(
                source="trustpilot",
                native_id=f"{review_id}:reply",
                text=reply_text,
                created_at=replied,
                url=url,
                author=Author(id=f"business-unit:{unit.id}", name=unit.brand),
                brands=(unit.brand,),
                own_account_of=(unit.brand,),
                reply_to_id=mention_id,
                thread_id=mention_id,
                signals={"review": {"business_unit": unit.id}},
            )
        )
    return found
