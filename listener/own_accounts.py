"""A brand's own accounts, and the thread context they give to the posts around them.

Each brand in ``listen.yaml`` may list its own accounts per source
(:class:`OwnAccountSettings`). A post whose author is one of them is the
brand's own voice: :class:`OwnAccounts` names the brands it belongs to, which
the brand matcher records as ``Mention.own_account_of`` (the route stage never
queues such a post for a human answer).

How an entry is compared with the post's author, per source:

* ``x``, ``bluesky``, ``reddit``, ``hackernews`` and any other source name
  (``replay`` files, a future connector): the author's handle or id, ignoring
  case and a leading ``@``, ``u/`` or ``/u/``. Bluesky's Jetstream carries only
  the author's DID (``did:plc:...``), so list DIDs for live Bluesky; handles
  match where a record carries one (replay files).
* ``mastodon``: ``user@instance``. A local account's ``acct`` has no instance,
  so the instance is taken from the host of the author's profile URL.
* ``rss``: a domain; the entry's author link (``author_detail.href``) must be
  on it or a subdomain of it.
* ``webhook``: an author id, or ``<platform>/<author id>`` for one platform only.

:class:`ThreadMemory` remembers, in one process and in source order, the ids
of recent own posts and the threads they were in (bounded, newest kept), so
that a later reply to an own post gets ``signals["reply_to_own_account"]`` and
a later post in such a thread ``signals["thread_answered_by_brand"]`` (both
lists of brand names). It forgets on restart and only knows the own posts this
process ingested; see ``listener/connectors/README.md``. Where the source names
the parent's author (``Mention.reply_to_author``: Bluesky, Mastodon, X, Reddit
comments on a submission, YouTube replies, Discourse), a reply needs no memory:
:meth:`OwnAccounts.brands_of_parent` compares that author with the same lists,
the same way, at any time.

All input here is untrusted text: it is only compared, never interpreted.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from listener.record import Author, Mention

DEFAULT_MEMORY = 50_000
"""Own posts (and threads) remembered by default; older ones are forgotten first."""


class OwnAccountSettings(BaseModel):
    """A brand's own accounts, per source (see the module docstring for the matching)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    x: tuple[str, ...] = Field(default=(), description="X handles (@ optional) or user ids.")
    bluesky: tuple[str, ...] = Field(default=(), description="Bluesky DIDs or handles.")
    mastodon: tuple[str, ...] = Field(default=(), description="user@instance accounts.")
    reddit: tuple[str, ...] = Field(
        default=(), description="Reddit usernames (u/ optional): official and moderator accounts."
    )
    hackernews: tuple[str, ...] = Field(default=(), description="Hacker News usernames.")
    rss: tuple[str, ...] = Field(
        default=(), description="Domains: an entry whose author link is on one is the brand's."
    )
    webhook: tuple[str, ...] = Field(
        default=(), description="Webhook author ids, optionally <platform>/<id>."
    )
    other: dict[str, tuple[str, ...]] = Field(
        default_factory=dict,
        description="Any other source name (e.g. replay) -> handles or ids.",
    )

    @field_validator("mastodon")
    @classmethod
    def _qualified(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        for value in values:
            user, _, host = value.strip().lstrip("@").partition("@")
            if not user or not host:
                raise ValueError(f"mastodon account {value!r} must be user@instance")
        return values

    def per_source(self) -> dict[str, tuple[str, ...]]:
        """Every non-empty list, keyed by source name."""
        lists = {
            "x": self.x,
            "bluesky": self.bluesky,
            "mastodon": self.mastodon,
            "reddit": self.reddit,
            "hackernews": self.hackernews,
            "rss": self.rss,
            "webhook": self.webhook,
            **self.other,
        }
        return {source: values for source, values in lists.items() if values}


def normalise_handle(value: str) -> str:
    """``"@Acme"``, ``"u/Acme"``, ``"/u/acme "`` -> ``"acme"``."""
    text = value.strip().lower()
    for prefix in ("/u/", "u/", "@"):
        if text.startswith(prefix):
            text = text[len(prefix) :]
            break
    return text


def _host(url: str | None) -> str:
    if not url:
        return ""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return ""
    return host.lower().removeprefix("www.")


def author_keys(mention: Mention, author: Author | None = None) -> set[str]:
    """The normalised identities of a post's author that own-account entries are compared to.

    Args:
        mention: Any post.
        author: Someone else on ``mention``'s source and platform (its parent's
            author, ``mention.reply_to_author``); default ``mention.author``.

    Returns:
        Lower-case keys; empty when the source tells nothing about the author.
    """
    author = mention.author if author is None else author
    keys = {normalise_handle(v) for v in (author.handle, author.id) if v}
    if mention.source == "mastodon" and author.handle:
        acct = normalise_handle(author.handle)
        host = _host(author.url)
        keys.add(acct if "@" in acct or not host else f"{acct}@{host}")
    elif mention.source == "webhook":
        platform = mention.signals.get("platform")
        if isinstance(platform, str) and author.id:
            keys.add(f"{platform.strip().lower()}/{author.id.strip().lower()}")
    keys.discard("")
    return keys


def _on_domain(host: str, domains: frozenset[str]) -> bool:
    return bool(host) and any(host == d or host.endswith("." + d) for d in domains)


@dataclass(frozen=True, slots=True)
class _BrandAccounts:
    name: str
    by_source: dict[str, frozenset[str]]

    def owns(self, mention: Mention, author: Author | None = None) -> bool:
        """Whether ``author`` (default: the post's own) is one of this brand's accounts."""
        wanted = self.by_source.get(mention.source)
        if not wanted:
            return False
        if mention.source == "rss":
            return _on_domain(_host((author or mention.author).url), wanted)
        return not author_keys(mention, author).isdisjoint(wanted)


class OwnAccounts:
    """Which brands' own accounts wrote a post.

    Args:
        brands: ``(brand name, its own accounts)`` pairs, in configuration order.
    """

    def __init__(self, brands: Iterable[tuple[str, OwnAccountSettings]]) -> None:
        compiled = []
        for name, settings in brands:
            by_source: dict[str, frozenset[str]] = {}
            for source, values in settings.per_source().items():
                if source == "rss":
                    norm = {v.strip().lower().removeprefix("www.").strip(".") for v in values}
                else:
                    norm = {normalise_handle(v) for v in values}
                norm.discard("")
                if norm:
                    by_source[source] = frozenset(norm)
            if by_source:
                compiled.append(_BrandAccounts(name, by_source))
        self._brands = tuple(compiled)

    def __bool__(self) -> bool:
        return bool(self._brands)

    def brands_of(self, mention: Mention) -> tuple[str, ...]:
        """The brands whose own account wrote ``mention`` (configuration order)."""
        return tuple(b.name for b in self._brands if b.owns(mention))

    def brands_of_parent(self, mention: Mention) -> tuple[str, ...]:
        """The brands whose own account wrote the post ``mention`` replies to, if the source says.

        The connector records the parent's author as ``mention.reply_to_author``
        where the source names it (a Bluesky parent's DID, a Mastodon status's
        ``in_reply_to_account_id``, an X tweet's ``in_reply_to_user_id``, ...), so a
        reply to a brand's own post is known as one without having seen that post
        (after a restart, or when the brand's post never matched). ``()`` when the
        source does not say (the thread memory may still know).
        """
        parent = mention.reply_to_author
        if parent is None or not mention.reply_to_id:
            return ()
        return tuple(b.name for b in self._brands if b.owns(mention, parent))


@dataclass(frozen=True, slots=True)
class ThreadContext:
    """What the memory knows about a post's place in a thread."""

    reply_to_own_account: tuple[str, ...] = ()
    thread_answered_by_brand: tuple[str, ...] = ()

    def with_parent_owned_by(self, brands: Sequence[str]) -> ThreadContext:
        """This context plus ``brands`` as the parent's (and so the thread's) owners."""
        if not brands:
            return self
        return ThreadContext(
            reply_to_own_account=tuple(dict.fromkeys((*self.reply_to_own_account, *brands))),
            thread_answered_by_brand=tuple(
                dict.fromkeys((*self.thread_answered_by_brand, *brands))
            ),
        )

    def signals(self) -> dict[str, list[str]]:
        """The signals to add to the Mention (only the non-empty ones)."""
        out: dict[str, list[str]] = {}
        if self.reply_to_own_account:
            out["reply_to_own_account"] = list(self.reply_to_own_account)
        if self.thread_answered_by_brand:
            out["thread_answered_by_brand"] = list(self.thread_answered_by_brand)
        return out


class _Bounded:
    """An insertion-ordered map of id -> brands, dropping the oldest beyond ``size``."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[str, tuple[str, ...]] = OrderedDict()

    def get(self, key: str | None) -> tuple[str, ...]:
        return self._items.get(key, ()) if key else ()

    def add(self, key: str, brands: Sequence[str]) -> None:
        merged = tuple(dict.fromkeys((*self._items.pop(key, ()), *brands)))
        self._items[key] = merged
        while len(self._items) > self._size:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


class ThreadMemory:
    """Recent own posts and the threads they answered, in one process (see the module docstring).

    Args:
        size: How many own posts, and how many threads, are remembered (each).
    """

    def __init__(self, size: int = DEFAULT_MEMORY) -> None:
        if size <= 0:
            raise ValueError("size must be positive")
        self._posts = _Bounded(size)
        self._threads = _Bounded(size)

    def __len__(self) -> int:
        return len(self._posts)

    def context(self, mention: Mention) -> ThreadContext:
        """What is known about ``mention``'s parent and thread (before it is remembered)."""
        return ThreadContext(
            reply_to_own_account=self._posts.get(mention.reply_to_id),
            thread_answered_by_brand=self._threads.get(mention.thread_id or mention.reply_to_id),
        )

    def remember(self, mention: Mention, brands: Sequence[str]) -> None:
        """Record ``mention`` as an own post of ``brands`` (and its thread as answered)."""
        if not brands:
            return
        self._posts.add(mention.id, brands)
        # Without a thread id, the parent stands for the thread (Mastodon gives no root);
        # a post with neither opens its own thread (its replies name it as their root).
        self._threads.add(mention.thread_id or mention.reply_to_id or mention.id, brands)
