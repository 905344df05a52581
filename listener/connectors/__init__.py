"""The connector registry: name -> ``"module:Class"``, imported only when enabled.

Adding a connector is one file in this package plus one line here (R3).
"""

from __future__ import annotations

import importlib
from typing import Any

from listener.errors import FatalError

REGISTRY: dict[str, str] = {
    "bluesky": "listener.connectors.bluesky:BlueskyConnector",
    "hackernews": "listener.connectors.hackernews:HackerNewsConnector",
    "rss": "listener.connectors.rss:RssConnector",
    "mastodon": "listener.connectors.mastodon:MastodonConnector",
    "webhook": "listener.connectors.webhook:WebhookConnector",
    "x": "listener.connectors.x:XConnector",
    "reddit": "listener.connectors.reddit:RedditConnector",
    "meta_webhook": "listener.connectors.meta_webhook:MetaWebhookConnector",
    "meta_graph": "listener.connectors.meta_graph:MetaGraphConnector",
    "threads": "listener.connectors.threads:ThreadsConnector",
    "tumblr": "listener.connectors.tumblr:TumblrConnector",
    "flickr": "listener.connectors.flickr:FlickrConnector",
    "linkedin": "listener.connectors.linkedin:LinkedInConnector",
    "appstore": "listener.connectors.appstore:AppStoreConnector",
    "googleplay": "listener.connectors.googleplay:GooglePlayConnector",
    "trustpilot": "listener.connectors.trustpilot:TrustpilotConnector",
    "yelp": "listener.connectors.yelp:YelpConnector",
    "youtube": "listener.connectors.youtube:YoutubeConnector",
    "discourse": "listener.connectors.discourse:DiscourseConnector",
    "discourse_webhook": "listener.connectors.discourse_webhook:DiscourseWebhookConnector",
}


def load(name: str) -> Any:
    """The connector class registered as ``name``.

    Raises:
        FatalError: No such connector, or its module cannot be imported.
    """
    try:
        module_name, _, class_name = REGISTRY[name].partition(":")
    except KeyError:
        raise FatalError(f"unknown connector {name!r}; known: {sorted(REGISTRY)}") from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise FatalError(f"connector {name!r} cannot be imported: {exc}") from exc
    return getattr(module, class_name)
