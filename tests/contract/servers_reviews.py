"""Local wire-format servers for the review sources: App Store feed, Google Play, Trustpilot, Yelp.

Each serves the recorded-shape fixtures of ``tests/fixtures/<platform>/`` the way the
platform pages them, checks the credentials the way it does, and answers with the
platform's documented error bodies (see each connector's module docstring).
"""

from __future__ import annotations

import base64
import copy
import functools
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pydantic import SecretStr

from listener.brands import BrandMatcher, BrandSettings
from listener.connectors.base import Connector
from listener.connectors.reviews import ReviewTarget

from .servers import BRANDS, HttpHarness, fixture

REVIEW_BRANDS = BrandMatcher(
    [
        BrandSettings(name="acme", keywords=("acme",)),
        BrandSettings(name="globex", keywords=("globex",)),
    ]
)
"""``acme`` and a second brand, for the tests that need two."""


class AppStoreHarness(HttpHarness):
    """``/{country}/rss/customerreviews/page={n}/id={app}/sortby=mostrecent/json``."""

    name = "appstore"
    APP = "1000000001"

    def __init__(self) -> None:
        super().__init__()
        self.entries: list[Any] = fixture("appstore", f"customerreviews_us_{self.APP}.json")
        self.page_size = 50
        self.paths: list[str] = []

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/{country}/rss/customerreviews/{page}/{app}/sortby=mostrecent/json",
                           self._feed)  # fmt: skip

    async def _feed(self, request: web.Request) -> web.Response:
        self.paths.append(request.path)
        page = int(request.match_info["page"].removeprefix("page="))
        app = request.match_info["app"].removeprefix("id=")
        if page > 10:  # Apple's limit
            return web.Response(status=400, text="CustomerReviews RSS page depth is limited to 10")
        entries = self.entries if app == self.APP else []
        meta, reviews = entries[:1], entries[1:]  # page 1 starts with the app itself
        chunk = reviews[(page - 1) * self.page_size : page * self.page_size]
        if page == 1:
            chunk = meta + chunk
        feed: dict[str, Any] = {
            "author": {"name": {"label": "iTunes Store"}, "uri": {"label": "http://www.apple.com/itunes/"}},
            "updated": {"label": "2024-09-12T10:05:00-07:00"},
            "id": {"label": f"https://mzstoreservices-int-st.itunes.apple.com/us/rss/customerreviews/page={page}/id={app}/sortby=mostrecent/json"},
        }  # fmt: skip
        if len(chunk) == 1:
            feed["entry"] = chunk[0]  # one entry: an object, not a list (the feed's XML roots)
        elif chunk:
            feed["entry"] = chunk
        return web.json_response({"feed": feed})

    def connector(self, small: bool = False) -> Connector:
        from listener.connectors.appstore import AppStoreConnector, AppStoreSettings

        self.page_size = 2 if small else 50
        settings = AppStoreSettings(
            apps=(ReviewTarget(id=self.APP, brand="acme"),), base_url=self.base, poll_interval_s=0
        )
        return AppStoreConnector(settings, BRANDS)


@functools.cache
def rsa_key(which: str = "service account") -> rsa.RSAPrivateKey:
    """A throwaway 2048-bit RSA key, one per ``which`` for the whole test run."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def write_service_account(
    path: Path, key: rsa.RSAPrivateKey, token_uri: str, email: str, key_id: str
) -> Path:
    """A service-account JSON key file as Google gives it (``private_key`` PEM, PKCS#8)."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "acme-listener",
        "private_key_id": key_id,
        "private_key": pem,
        "client_email": email,
        "client_id": "100000000000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "universe_domain": "googleapis.com",
    }
    path.write_text(json.dumps(info, indent=2))
    return path


def _unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class GooglePlayHarness(HttpHarness):
    """``/androidpublisher/v3/applications/{pkg}/reviews`` with ``token`` paging and a bearer.

    ``/token`` is Google's OAuth token endpoint for the service-account JWT-bearer
    grant: it checks the assertion as Google does (header, claims, the RS256
    signature against the account's public key) and issues a new access token,
    the only one ``reviews`` then accepts.
    """

    name = "googleplay"
    PACKAGE = "com.acme.cloud"
    TOKEN = "ya29.test-token"
    EMAIL = "listener@acme-listener.iam.gserviceaccount.com"
    KEY_ID = "3f1c0ffee0ddba11b0a710ad5eed5ca1ab1ede00"
    SCOPE = "https://www.googleapis.com/auth/androidpublisher"

    def __init__(self) -> None:
        super().__init__()
        self.reviews: list[Any] = fixture("googleplay", f"reviews_{self.PACKAGE}.json")
        self.token = self.TOKEN
        self.max_results = 100
        self.expires_in = 3599
        self.grants: list[dict[str, Any]] = []  # the verified claims of every grant
        self.reject_tokens = False  # every token, the newly granted too, gets a 401
        self.public_key = rsa_key().public_key()
        self.tmp: Path | None = None
        self.key_file = Path("service-account.json")  # written by start()

    @property
    def token_uri(self) -> str:
        return f"{self.base}/token"

    async def start(self) -> None:
        await super().start()
        self.tmp = Path(tempfile.mkdtemp(prefix="googleplay-"))
        self.key_file = self.tmp / "service-account.json"
        write_service_account(self.key_file, rsa_key(), self.token_uri, self.EMAIL, self.KEY_ID)

    async def stop(self) -> None:
        await super().stop()
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/token", self._token)
        app.router.add_get("/androidpublisher/v3/applications/{pkg}/reviews", self._list)

    @staticmethod
    def _error(status: int, code: str, message: str) -> web.Response:
        body = {"error": {"code": status, "message": message, "status": code}}
        return web.json_response(body, status=status)

    @staticmethod
    def _oauth_error(status: int, error: str, description: str) -> web.Response:
        return web.json_response({"error": error, "error_description": description}, status=status)

    async def _token(self, request: web.Request) -> web.Response:
        if request.content_type != "application/x-www-form-urlencoded":
            return self._oauth_error(400, "invalid_request", "Bad Request")
        form = await request.post()
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return self._oauth_error(400, "unsupported_grant_type", "Invalid grant_type: ")
        parts = str(form.get("assertion", "")).split(".")
        try:
            header, claims = (json.loads(_unb64(p)) for p in parts[:2])
            signature = _unb64(parts[2])
        except (ValueError, IndexError):
            return self._oauth_error(400, "invalid_grant", "Invalid JWT: Malformed JWT.")
        if header != {"alg": "RS256", "typ": "JWT", "kid": self.KEY_ID}:
            return self._oauth_error(400, "invalid_grant", f"Invalid JWT header: {header}")
        if claims.get("iss") != self.EMAIL:
            return self._oauth_error(401, "invalid_client", "The OAuth client was not found.")
        now = time.time()
        iat, exp = claims.get("iat"), claims.get("exp")
        if (
            not isinstance(iat, int)
            or not isinstance(exp, int)
            or abs(iat - now) > 300
            or not 0 < exp - iat <= 3600
        ):
            return self._oauth_error(
                400,
                "invalid_grant",
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a "
                "reasonable timeframe. Check your iat and exp values in the JWT claim.",
            )
        if claims.get("aud") != self.token_uri:
            return self._oauth_error(400, "invalid_grant", "Invalid JWT: audience mismatch.")
        if claims.get("scope") != self.SCOPE:
            return self._oauth_error(400, "invalid_scope", "Invalid OAuth scope.")
        signing_input = f"{parts[0]}.{parts[1]}".encode()
        try:
            self.public_key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return self._oauth_error(400, "invalid_grant", "Invalid JWT Signature.")
        self.grants.append(claims)
        self.token = f"ya29.granted-{len(self.grants)}"
        body = {"access_token": self.token, "expires_in": self.expires_in, "token_type": "Bearer"}
        return web.json_response(body)

    async def _list(self, request: web.Request) -> web.Response:
        if self.reject_tokens or request.headers.get("Authorization") != f"Bearer {self.token}":
            return self._error(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access token.",
            )
        if request.match_info["pkg"] != self.PACKAGE:
            return self._error(
                403, "PERMISSION_DENIED", "The caller does not have permission"
            )  # Play's answer for an app the account cannot see
        size = int(request.query.get("maxResults", "10"))
        start = int(request.query.get("token", "0") or 0)
        chunk = self.reviews[start : start + size]
        body: dict[str, Any] = {
            "pageInfo": {"totalResults": len(self.reviews), "resultPerPage": size,
                         "startIndex": start},
            "reviews": chunk,
        }  # fmt: skip
        if start + size < len(self.reviews):
            body["tokenPagination"] = {"nextPageToken": str(start + size)}
        return web.json_response(body)

    def connector(
        self,
        small: bool = False,
        token_file: Path | None = None,
        access_token: bool = False,
        key_file: Path | None = None,
    ) -> Connector:
        """The service-account grant by default; ``access_token``/``token_file`` instead."""
        from listener.connectors.googleplay import GooglePlayConnector, GooglePlaySettings

        pre_issued = access_token or token_file is not None
        settings = GooglePlaySettings(
            apps=(ReviewTarget(id=self.PACKAGE, brand="acme"),),
            service_account_file=None if pre_issued else key_file or self.key_file,
            access_token=SecretStr(self.TOKEN) if access_token else None,
            access_token_file=token_file,
            api_url=self.base,
            max_results=2 if small else 100,
            poll_interval_s=0,
        )
        return GooglePlayConnector(settings, BRANDS)


class TrustpilotHarness(HttpHarness):
    """``/v1/business-units/{id}/reviews``: ``apikey``, ``page``/``perPage``, next-page links."""

    name = "trustpilot"
    KEY = "tp-api-key"
    ACME, OTHER = "5a1b2c3d4e5f6a7b8c9d0e1f", "5a1b2c3d4e5f6a7b8c9d0e2a"

    def __init__(self) -> None:
        super().__init__()
        self.units: dict[str, list[Any]] = {
            self.ACME: fixture("trustpilot", "reviews_acme.json"),
            self.OTHER: fixture("trustpilot", "reviews_competitor.json"),
        }
        self.quota_next = False

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/business-units/{unit}/reviews", self._reviews)

    async def _reviews(self, request: web.Request) -> web.Response:
        if request.query.get("apikey") != self.KEY:
            fault = {
                "faultstring": "Invalid ApiKey",
                "detail": {"errorcode": "oauth.v2.InvalidApiKey"},
            }
            return web.json_response({"fault": fault}, status=401)
        if self.quota_next:  # Apigee's quota answer: no Retry-After
            self.quota_next = False
            fault = {
                "faultstring": "Rate limit quota violation. Quota limit  exceeded.",
                "detail": {"errorcode": "policies.ratelimit.QuotaViolation"},
            }
            return web.json_response({"fault": fault}, status=429)
        unit = request.match_info["unit"]
        if unit not in self.units:
            return web.json_response({"message": "Business unit not found"}, status=404)
        assert request.query.get("orderBy") == "createdat.desc"
        reviews = sorted(self.units[unit], key=lambda r: r.get("createdAt") or "", reverse=True)
        size, page = int(request.query.get("perPage", "20")), int(request.query.get("page", "1"))
        chunk = reviews[(page - 1) * size : page * size]
        base = f"{self.base}/v1/business-units/{unit}/reviews"
        links = []
        if page * size < len(reviews):
            links.append({"href": f"{base}?page={page + 1}&perPage={size}", "method": "GET",
                          "rel": "next-page"})  # fmt: skip
        return web.json_response({"links": links, "reviews": chunk})

    def connector(self, small: bool = False) -> Connector:
        from listener.connectors.trustpilot import TrustpilotConnector, TrustpilotSettings

        settings = TrustpilotSettings(
            api_key=SecretStr(self.KEY),
            business_units=(ReviewTarget(id=self.ACME, brand="acme"),),
            api_url=self.base,
            per_page=2 if small else 100,
            poll_interval_s=0,
        )
        return TrustpilotConnector(settings, BRANDS)


class YelpHarness(HttpHarness):
    """``/v3/businesses/{id}/reviews``: a bearer key, at most 3 excerpts, Yelp's error bodies."""

    name = "yelp"
    KEY = "yelp-api-key"

    def __init__(self) -> None:
        super().__init__()
        self.businesses: dict[str, list[Any]] = copy.deepcopy(fixture("yelp", "reviews.json"))
        self.error_next: tuple[int, str, dict[str, str]] | None = None
        self.queries: list[dict[str, str]] = []

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/v3/businesses/{business}/reviews", self._reviews)

    @staticmethod
    def _error(status: int, code: str, description: str, headers: dict[str, str]) -> web.Response:
        body = {"error": {"code": code, "description": description}}
        return web.json_response(body, status=status, headers=headers)

    async def _reviews(self, request: web.Request) -> web.Response:
        self.queries.append(dict(request.query))
        auth = request.headers.get("Authorization", "")
        if not auth:
            return self._error(400, "TOKEN_MISSING", "An access token must be supplied.", {})
        if auth != f"Bearer {self.KEY}":
            text = "Invalid access token or authorization header."
            return self._error(401, "TOKEN_INVALID", text, {})
        if self.error_next is not None:
            status, code, headers = self.error_next
            self.error_next = None
            return self._error(status, code, "You have exceeded the limit.", headers)
        reviews = self.businesses.get(request.match_info["business"])
        if reviews is None:
            text = "The requested business could not be found."
            return self._error(404, "BUSINESS_NOT_FOUND", text, {})
        newest = sorted(reviews, key=lambda r: r.get("time_created") or "", reverse=True)
        headers = {"RateLimit-DailyLimit": "5000", "RateLimit-Remaining": "4999",
                   "RateLimit-ResetTime": "2024-09-13T00:00:00+00:00"}  # fmt: skip
        body = {"reviews": newest[:3], "total": len(reviews), "possible_languages": ["en"]}
        return web.json_response(body, headers=headers)

    def connector(self, small: bool = False) -> Connector:
        from listener.connectors.yelp import YelpConnector, YelpSettings

        settings = YelpSettings(
            api_key=SecretStr(self.KEY),
            businesses=tuple(ReviewTarget(id=b, brand="acme") for b in self.businesses),
            api_url=self.base,
            poll_interval_s=0,
        )
        return YelpConnector(settings, BRANDS)


REVIEW_HARNESSES: tuple[type[HttpHarness], ...] = (
    AppStoreHarness,
    GooglePlayHarness,
    TrustpilotHarness,
    YelpHarness,
)
