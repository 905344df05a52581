"""One JSON request to a source's REST API, with the project's error kinds.

:func:`request_json` is the request every polling connector makes: send it,
map the status with :func:`~listener.retry.check_http_status` (plus the
source's own rate-limit header, see :func:`raise_for_status`), read the body as
JSON, and turn network failures and malformed bodies into
:class:`~listener.errors.RetryableError`. :class:`HttpConnector` is the base of
the polling connectors that keep one session for all their requests.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import aiohttp

from listener.brands import BrandMatcher
from listener.connectors.base import BaseConnector
from listener.errors import RetryableError
from listener.retry import check_http_status

_QUERY = re.compile(r"(https?://[^\s'\"?]+)\?[^\s'\"]*")

ResetAfter = Callable[[Mapping[str, str]], float | None]
"""Reads a source's own rate-limit header: the ``after`` of a 429 sent without Retry-After."""


def without_queries(text: str) -> str:
    """``text`` with the query string of every URL in it cut (API keys travel there)."""
    return _QUERY.sub(r"\1?...", text)


def network_error(source: str, exc: BaseException) -> RetryableError:
    """A failed request as a retryable error, safe to log and dead-letter.

    aiohttp puts the request URL in some messages, and several APIs take their
    key as a query parameter (``key=``, ``api_key=``, ``access_token=``): cut them.
    """
    return RetryableError(f"{source}: {type(exc).__name__}: {without_queries(str(exc))}")


def raise_for_status(
    source: str, response: aiohttp.ClientResponse, reset_after: ResetAfter | None = None
) -> None:
    """:func:`~listener.retry.check_http_status`, with ``reset_after`` on a bare 429.

    Raises:
        RetryableError: 429 (``after`` from Retry-After, else from ``reset_after``), 5xx, 408.
        FatalError: Any other 4xx.
    """
    if reset_after is not None and response.status == 429:
        if "Retry-After" not in response.headers:
            raise RetryableError(f"{source}: HTTP 429", after=reset_after(response.headers))
    check_http_status(source, response.status, response.headers)


async def request_json(
    session: aiohttp.ClientSession,
    source: str,
    method: str,
    url: str,
    *,
    expect: type[dict[str, Any]] | type[list[Any]] | None = None,
    what: str = "response",
    reset_after: ResetAfter | None = None,
    **kwargs: Any,
) -> Any:
    """Send one request and return its JSON body.

    Args:
        session: The connector's session.
        source: The connector's name, the prefix of every error message.
        method: ``"GET"``, ``"POST"``, ...
        url: The full URL.
        expect: ``dict`` or ``list``: a body of another type is a RetryableError.
        what: The body's name in that error (``"<source>: <what> is not a JSON array"``).
        reset_after: The source's rate-limit header reader (see :func:`raise_for_status`).
        **kwargs: Passed to ``session.request`` (``params``, ``json``, ``timeout``, ...).

    Raises:
        RetryableError: 429, 5xx, 408, a network failure or timeout, a body that is
            not JSON or not of the ``expect`` type.
        FatalError: Any other 4xx.
    """
    try:
        async with session.request(method, url, **kwargs) as response:
            raise_for_status(source, response, reset_after)
            body = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise network_error(source, exc) from exc
    if expect is not None and not isinstance(body, expect):
        kind = "object" if expect is dict else "array"
        raise RetryableError(f"{source}: {what} is not a JSON {kind}")
    return body


class HttpSettings(Protocol):
    """The settings :class:`HttpConnector` reads."""

    @property
    def poll_interval_s(self) -> float:
        """Seconds the runner waits after a batch with ``more=False``."""

    @property
    def timeout_s(self) -> float:
        """Total time one request may take."""


class HttpConnector(BaseConnector):
    """A polling connector with one HTTP session, opened on first use and closed by ``close``.

    The session is made from ``self.settings`` when first needed (its
    ``timeout_s``, and :meth:`session_headers`).

    Args:
        settings: The connector's settings.
        brands: The configured brands.
    """

    settings: HttpSettings

    def __init__(self, settings: HttpSettings, brands: BrandMatcher) -> None:
        super().__init__(brands, poll_interval_s=settings.poll_interval_s)
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None

    def session_headers(self) -> dict[str, str] | None:
        """Headers sent with every request (e.g. the API key's ``Authorization``); none here."""
        return None

    def _client(self) -> aiohttp.ClientSession:
        """The session (opened on the first call)."""
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=self.settings.timeout_s)
            self._session = aiohttp.ClientSession(timeout=timeout, headers=self.session_headers())
        return self._session

    async def close(self) -> None:
        """Close the HTTP session."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()
