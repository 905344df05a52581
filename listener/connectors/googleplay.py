"""Google Play: the reviews of the brand's own apps, from the Google Play Developer API.

``GET {api_url}/androidpublisher/v3/applications/{packageName}/reviews?maxResults=N[&token=T]``
(https://developers.google.com/android-publisher/api-ref/rest/v3/reviews/list):
``reviews[]`` with ``reviewId``, ``authorName`` and ``comments[]``, each a
``userComment`` (``text``, ``starRating``, ``lastModified.seconds``,
``reviewerLanguage``, ``appVersionName``) or a ``developerComment`` (the app's
reply: ``text``, ``lastModified``); paging by ``tokenPagination.nextPageToken``.
The API returns only reviews created or changed in the last seven days: that
is the whole backfill, and a listener stopped for longer misses reviews.

Auth: an OAuth 2.0 access token for a service account that the app's Play
Console account has invited (permission "View app information"), scope
``https://www.googleapis.com/auth/androidpublisher``. Recommended:
``service_account_file``, the JSON key Google gives for the service account; the
connector makes the JWT-bearer grant itself (RFC 7523,
https://developers.google.com/identity/protocols/oauth2/service-account#httprest):
a JWT with header ``{"alg": "RS256", "typ": "JWT", "kid": private_key_id}`` and
claims ``iss`` = ``client_email``, ``scope``, ``aud`` = ``token_uri``, ``iat``,
``exp`` = ``iat`` + 3600, signed RS256 (RSASSA-PKCS1-v1_5, SHA-256) with the
key's ``private_key``, POSTed form-encoded to ``token_uri`` as
``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<jwt>``. The
returned ``access_token`` is used until ``RENEW_BEFORE_S`` before its
``expires_in``, then a new grant is made (the key file is read again, so a
rotated key is picked up), and once more after a 401. The token endpoint's
refusals (400 ``invalid_grant``, 401 ``invalid_client``: a wrong or deleted key,
a disabled account, a bad clock) are fatal with Google's ``error_description``;
its 429 and 5xx are retryable. Alternatives: a token issued outside,
``access_token``, or ``access_token_file`` (re-read after a 401, so a sidecar
can renew it). Exactly one of the three. A 401 after the one renewal (or with a
fixed ``access_token``), or a 403, is fatal.
Rate limits: 200 review GET requests per hour per app (Play's quota); a 429
(``RESOURCE_EXHAUSTED``) waits Retry-After, else the runner's backoff.
Cursor: per app, the newest ``lastModified`` read (of the review or of the
developer's reply) and the ids at that second; every sweep pages through the
whole week (the list's order is not documented) and keeps what is newer.
A review changed again (edited, or answered by the developer) is read again
under the same Mention id; the reply becomes its own Mention.
Brand: the app's configured brand. Threads: the review opens one (``thread_id``
= the review); the developer's reply is ``googleplay:<reviewId>:reply``, a reply to
the review from the brand's own account (``own_account_of``, never queued), and
the review gets ``signals["thread_answered_by_brand"]``.
Delivery: at-least-once.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Self
from urllib.parse import urlencode

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from listener.brands import BrandMatcher
from listener.connectors.base import Batch, parse_time
from listener.connectors.reviews import (
    ReviewConnector,
    ReviewTarget,
    Sweep,
    brand_reply,
    error_text,
    fetch_json,
    plain,
    rating,
)
from listener.errors import FatalError, RetryableError, SkippableError
from listener.record import Author, Mention


class GooglePlaySettings(BaseModel):
    """The ``connectors.googleplay`` config block."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    apps: tuple[ReviewTarget, ...] = Field(description="Package names and their brand.")
    service_account_file: Path | None = Field(
        default=None,
        description="The service account's JSON key file (recommended): the connector "
        "makes the JWT-bearer grant and renews the token itself.",
    )
    access_token: SecretStr | None = Field(default=None, description="OAuth bearer token.")
    access_token_file: Path | None = Field(
        default=None, description="File holding the token; re-read after a 401."
    )
    api_url: str = "https://androidpublisher.googleapis.com"
    max_results: int = Field(default=100, ge=1, le=100)
    max_pages: int = Field(default=50, ge=1, description="Pages per sweep.")
    translation_language: str | None = None
    poll_interval_s: float = Field(default=900.0, ge=0)
    timeout_s: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _one_token(self) -> Self:
        given = [
            name
            for name in ("service_account_file", "access_token", "access_token_file")
            if getattr(self, name) is not None
        ]
        if len(given) != 1:
            raise ValueError(
                "googleplay: give exactly one of service_account_file (recommended), "
                f"access_token and access_token_file; given: {', '.join(given) or 'none'}"
            )
        return self


class GooglePlayConnector(ReviewConnector):
    """Sweeps each app's last-week reviews (see module docstring)."""

    name: ClassVar[str] = "googleplay"
    settings_model: ClassVar[type[BaseModel]] = GooglePlaySettings
    settings: GooglePlaySettings

    def __init__(self, settings: GooglePlaySettings, brands: BrandMatcher) -> None:
        super().__init__(settings, brands, settings.apps)
        if any(app.brand is None for app in settings.apps):
            raise FatalError("googleplay: only the brand's own apps can be read: give each a brand")
        self.sweep = Sweep(tuple(self.targets), settings.max_pages, ordered=False)
        self._token: str | None = None
        self._renew_at = float("inf")  # monotonic time to make a new grant

    async def _read_token(self) -> str:
        if self.settings.service_account_file is not None:
            return await self._grant(self.settings.service_account_file)
        if self.settings.access_token is not None:
            return self.settings.access_token.get_secret_value()
        path = self.settings.access_token_file
        assert path is not None
        try:
            token = (await asyncio.to_thread(path.read_text, encoding="utf-8")).strip()
        except OSError as exc:
            raise FatalError(f"googleplay: cannot read access_token_file: {exc}") from exc
        if not token:
            raise FatalError(f"googleplay: access_token_file {path} is empty")
        return token

    async def _grant(self, path: Path) -> str:
        """A new access token from the JWT-bearer grant of the service account in ``path``.

        Raises:
            FatalError: An unreadable key file, or the token endpoint refused the grant.
            RetryableError: The token endpoint's 429 or 5xx, or a network failure.
        """
        token_uri, assertion = await asyncio.to_thread(_assertion, path, int(time.time()))
        form = {"grant_type": GRANT_TYPE, "assertion": assertion}
        body = await fetch_json(
            self._client(), "googleplay", "POST", token_uri, data=form, explain=_explain_grant
        )
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise RetryableError("googleplay: token endpoint answered without access_token")
        try:
            lifetime = float(body.get("expires_in", 3600))
        except (TypeError, ValueError):
            lifetime = 3600.0
        self._renew_at = time.monotonic() + max(lifetime - RENEW_BEFORE_S, lifetime / 2)
        return token

    async def _list(self, package: str, token: str | None) -> dict[str, Any]:
        url = (
            f"{self.settings.api_url.rstrip('/')}/androidpublisher/v3/applications/"
            f"{package}/reviews"
        )
        params = {"maxResults": str(self.settings.max_results)}
        if token:
            params["token"] = token
        if self.settings.translation_language:
            params["translationLanguage"] = self.settings.translation_language
        for attempt in (1, 2):
            if self._token is None or time.monotonic() >= self._renew_at:
                self._token = await self._read_token()
            headers = {"Authorization": f"Bearer {self._token}"}
            try:
                body = await fetch_json(
                    self._client(), "googleplay", "GET", url, params=params, headers=headers,
                    explain=_explain,
                )  # fmt: skip
            except _Unauthenticated as exc:
                self._token = None
                renewable = self.settings.access_token is None
                if attempt == 1 and renewable:
                    continue
                raise FatalError(f"googleplay: access token rejected: {exc}") from None
            if not isinstance(body, dict):
                raise RetryableError("googleplay: answer is not a JSON object")
            return body
        raise AssertionError("unreachable")

    async def poll(self, cursor: str | None) -> Batch:
        """One page of the current app's reviews."""
        state = Sweep.load(cursor)
        package = self.sweep.key(state)
        body = await self._list(package, Sweep.page(state, package))
        reviews = body.get("reviews") or []
        next_token = (body.get("tokenPagination") or {}).get("nextPageToken")
        app = self.targets[package]
        return self.batch(
            state,
            reviews if isinstance(reviews, list) else [],
            lambda review: _to_mentions(review, app),
            next_token or None,
        )


GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SCOPE = "https://www.googleapis.com/auth/androidpublisher"
TOKEN_URI = "https://oauth2.googleapis.com/token"
"""Google's token endpoint, for a key file without ``token_uri``."""
JWT_LIFETIME_S = 3600
"""``exp`` - ``iat`` of the assertion: Google's maximum."""
RENEW_BEFORE_S = 300.0
"""A granted token is renewed this long before it expires (Google's live 3599 s)."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _assertion(path: Path, now: int) -> tuple[str, str]:
    """The token endpoint and the signed JWT of the service-account key in ``path``.

    Raises:
        FatalError: The file cannot be read, is not a service-account key, or its
            ``private_key`` is not an RSA key in PEM.
    """
    try:
        key_file = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FatalError(f"googleplay: cannot read service_account_file {path}: {exc}") from exc
    fields = ("client_email", "private_key", "private_key_id")
    if not isinstance(key_file, dict) or not all(
        isinstance(key_file.get(f), str) and key_file[f] for f in fields
    ):
        raise FatalError(
            f"googleplay: service_account_file {path} is not a service-account JSON key "
            f"(needs {', '.join(fields)})"
        )
    try:
        key = serialization.load_pem_private_key(key_file["private_key"].encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise FatalError(
            f"googleplay: private_key in {path} is not a PEM private key: {exc}"
        ) from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise FatalError(f"googleplay: private_key in {path} is not an RSA key")
    token_uri = key_file.get("token_uri")
    token_uri = token_uri if isinstance(token_uri, str) and token_uri else TOKEN_URI
    header = {"alg": "RS256", "typ": "JWT", "kid": key_file["private_key_id"]}
    claims = {
        "iss": key_file["client_email"],
        "scope": SCOPE,
        "aud": token_uri,
        "iat": now,
        "exp": now + JWT_LIFETIME_S,
    }
    signing_input = ".".join(
        _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
    signature = key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return token_uri, f"{signing_input}.{_b64url(signature)}"


def _explain_grant(status: int, body: Any, headers: Mapping[str, str]) -> None:
    if 400 <= status < 500 and status not in (408, 425, 429):
        raise FatalError(
            f"googleplay: service-account grant refused (HTTP {status}): "
            f"{error_text(body) or 'no error body'} (is the key in service_account_file "
            "still valid, the account enabled, the clock right?)"
        )


class _Unauthenticated(Exception):
    """A 401: the token expired or was revoked."""


def _explain(status: int, body: Any, headers: Mapping[str, str]) -> None:
    if status == 401:
        raise _Unauthenticated(error_text(body) or "HTTP 401")
    if status == 403:
        raise FatalError(
            f"googleplay: HTTP 403: {error_text(body)} (has the service account been "
            "invited to the Play Console account with 'View app information'?)"
        )


def _seconds(stamp: Any) -> datetime | None:
    """A ``Timestamp`` object (``{"seconds": "1726135200", "nanos": 0}``) as a datetime."""
    if not isinstance(stamp, dict):
        return None
    try:
        return parse_time(int(str(stamp.get("seconds"))))
    except ValueError:
        return None


def _is_dict(obj: dict[str, Any], key: str) -> bool:
    return isinstance(obj.get(key), dict)


def _to_mentions(review: Any, app: ReviewTarget) -> tuple[list[Mention], datetime]:
    """A review (and the developer's reply, if any) as Mentions, and when it last changed.

    Raises:
        SkippableError: No reviewId, user comment, time, rating or text.
    """
    if not isinstance(review, dict) or not isinstance(review.get("reviewId"), str):
        raise SkippableError("validation", "review without reviewId")
    review_id = review["reviewId"]
    comments = [c for c in review.get("comments") or [] if isinstance(c, dict)]
    user = next((c["userComment"] for c in comments if _is_dict(c, "userComment")), None)
    reply = next((c["developerComment"] for c in comments if _is_dict(c, "developerComment")), None)
    if user is None or (created := _seconds(user.get("lastModified"))) is None:
        raise SkippableError("validation", f"review {review_id} has no dated userComment")
    brand = app.brand
    assert brand is not None
    replied = _seconds(reply.get("lastModified")) if reply else None
    reply_text = plain(reply.get("text")) if reply else ""
    name = review.get("authorName")
    signals: dict[str, Any] = {
        "rating": rating(user.get("starRating")),
        "review": {"app": app.id, "version": user.get("appVersionName")},
    }
    if replied is not None and reply_text:
        signals["thread_answered_by_brand"] = [brand]
    lang = user.get("reviewerLanguage")
    found = [
        Mention.create(
            source="googleplay",
            native_id=review_id,
            text=plain(*str(user.get("text") or "").split("\t", 1)),  # "title\tbody"
            created_at=created,
            url="https://play.google.com/store/apps/details?"
            + urlencode({"id": app.id, "reviewId": review_id}),
            lang=lang.replace("_", "-") if isinstance(lang, str) and lang else None,
            author=Author(name=name if isinstance(name, str) and name else None),
            brands=(brand,),
            thread_id=f"googleplay:{review_id}",
            signals=signals,
        )
    ]
    if replied is not None and reply_text:
        found.append(
            brand_reply(
                found[0],
                brand,
                text=reply_text,
                created_at=replied,
                author=Author(handle=f"developer:{app.id}", name=brand),
                signals={"review": {"app": app.id}},
            )
        )
    return found, max(created, replied) if replied is not None else created
