"""Network errors of connectors are logged and dead-lettered without the API keys in URLs."""

from __future__ import annotations

import aiohttp
from yarl import URL

from listener.connectors.http import network_error, without_queries


def test_query_strings_are_cut_from_every_url_in_a_message() -> None:
    text = (
        "GET https://www.googleapis.com/youtube/v3/search?key=AIzaSECRET&q=acme failed; "
        "retry 'https://api.tumblr.com/v2/tagged?api_key=tumblrSECRET' later"
    )
    cut = without_queries(text)
    assert "SECRET" not in cut
    assert "https://www.googleapis.com/youtube/v3/search?..." in cut
    assert "https://api.tumblr.com/v2/tagged?...'" in cut


def test_an_aiohttp_error_that_names_its_url_keeps_the_url_not_the_key() -> None:
    url = URL("https://graph.facebook.com/v23.0/1/feed?access_token=EAAGsecret&since=1")
    exc = aiohttp.InvalidURL(url)
    assert "EAAGsecret" in str(exc)  # what aiohttp would log as it is
    error = network_error("meta_graph", exc)
    assert "EAAGsecret" not in str(error)
    assert str(error).startswith("meta_graph: InvalidURL: https://graph.facebook.com/v23.0/1/feed?")
