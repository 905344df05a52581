from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from listener.brands import BrandMatcher, BrandSettings
from listener.own_accounts import (
    OwnAccounts,
    OwnAccountSettings,
    ThreadMemory,
    author_keys,
    normalise_handle,
)
from listener.record import Author, Mention, decode_mention, encode_mention

OWN = OwnAccountSettings(
    x=("@AcmeSupport",),
    bluesky=("did:plc:acme123", "acme.bsky.social"),
    mastodon=("acme@mastodon.example",),
    reddit=("u/Acme_Official",),
    hackernews=("acme_team",),
    rss=("www.acme.example",),
    webhook=("forum/42", "7"),
    other={"replay": ("AcmeCare",)},
)


def post(source: str, native: str = "1", text: str = "hello", **fields: Any) -> Mention:
    return Mention.create(source=source, native_id=native, text=text, **fields)


def acme_matcher(memory: int | None = None) -> BrandMatcher:
    brand = BrandSettings(name="acme", keywords=("acme",), own_accounts=OWN)
    other = BrandSettings(name="globex", keywords=("globex",))
    return BrandMatcher([brand, other], memory=memory)


@pytest.mark.parametrize(
    ("source", "author", "extra", "own"),
    [
        ("x", Author(handle="acmesupport"), {}, True),
        ("x", Author(handle="acmesupport_fan"), {}, False),
        ("bluesky", Author(id="did:plc:acme123"), {}, True),
        ("bluesky", Author(handle="Acme.bsky.social"), {}, True),
        ("bluesky", Author(id="did:plc:someone"), {}, False),
        ("mastodon", Author(handle="acme", url="https://mastodon.example/@acme"), {}, True),
        ("mastodon", Author(handle="acme@mastodon.example"), {}, True),
        ("mastodon", Author(handle="acme", url="https://evil.example/@acme"), {}, False),
        ("reddit", Author(handle="ACME_official"), {}, True),
        ("hackernews", Author(handle="acme_team"), {}, True),
        ("rss", Author(url="https://blog.acme.example/author/jo"), {}, True),
        ("rss", Author(url="https://acme.example.evil.test/"), {}, False),
        ("rss", Author(url="http://[::1"), {}, False),  # not a URL: no match, no error
        ("webhook", Author(id="42"), {"signals": {"platform": "forum"}}, True),
        ("webhook", Author(id="42"), {"signals": {"platform": "reviews"}}, False),
        ("webhook", Author(id="7"), {}, True),
        ("replay", Author(handle="@acmecare"), {}, True),
        # A handle listed for one source does not make the same name own on another.
        ("hackernews", Author(handle="acmesupport"), {}, False),
        ("bluesky", Author(), {}, False),
    ],
)
def test_own_account_per_source(
    source: str, author: Author, extra: dict[str, Any], own: bool
) -> None:
    accounts = OwnAccounts([("acme", OWN)])
    mention = post(source, author=author, **extra)
    assert accounts.brands_of(mention) == (("acme",) if own else ())


def test_settings_reject_unknown_keys_and_unqualified_mastodon() -> None:
    with pytest.raises(ValidationError, match="user@instance"):
        OwnAccountSettings(mastodon=("acme",))
    with pytest.raises(ValidationError):
        OwnAccountSettings.model_validate({"twitter": ["acme"]})


def test_normalise_handle() -> None:
    assert normalise_handle(" @Acme ") == normalise_handle("/u/acme") == "acme"
    assert author_keys(post("x", author=Author())) == set()


def test_own_post_is_marked_and_belongs_to_the_brand_without_naming_it() -> None:
    matcher = acme_matcher()
    reply = post("x", "9", "We're very sorry. Please DM us.", author=Author(handle="AcmeSupport"))
    marked = matcher.apply(reply)
    assert marked is not None
    assert marked.brands == ("acme",)
    assert marked.own_account_of == ("acme",)
    assert marked.signals["matched_terms"] == {"acme": ["own_account"]}
    assert decode_mention(encode_mention(marked)) == marked


def test_reply_to_an_own_post_gets_thread_signals() -> None:
    matcher = acme_matcher()
    root = post("bluesky", "d/1", "my acme router died", author=Author(id="did:plc:cust"))
    brand = post(
        "bluesky",
        "acme/2",
        "Sorry! DM us the serial?",
        author=Author(id="did:plc:acme123"),
        reply_to_id="bluesky:d/1",
        thread_id="bluesky:d/1",
    )
    answer = post(
        "bluesky",
        "d/3",
        "sent",
        author=Author(id="did:plc:cust"),
        reply_to_id="bluesky:acme/2",
        thread_id="bluesky:d/1",
    )
    later = post(
        "bluesky",
        "e/4",
        "same problem with my acme one",
        author=Author(id="did:plc:other"),
        reply_to_id="bluesky:d/1",
        thread_id="bluesky:d/1",
    )
    assert matcher.apply(root) is not None
    assert matcher.apply(brand) is not None
    got = matcher.apply(answer)
    assert got is not None and got.brands == ("acme",)
    assert got.own_account_of == ()
    assert got.signals["reply_to_own_account"] == ["acme"]
    assert got.signals["thread_answered_by_brand"] == ["acme"]
    assert got.signals["matched_terms"] == {"acme": ["reply_to_own_account"]}
    other = matcher.apply(later)
    assert other is not None
    assert "reply_to_own_account" not in other.signals
    assert other.signals["thread_answered_by_brand"] == ["acme"]


@pytest.mark.parametrize(
    ("source", "parent_author"),
    [
        ("bluesky", Author(id="did:plc:ACME123")),  # a parent at:// URI names its DID
        ("mastodon", Author(id="7", handle="acme", url="https://mastodon.example/@acme")),
        ("mastodon", Author(id="7", handle="acme@mastodon.example")),
        ("x", Author(id="2244", handle="AcmeSupport")),
        ("reddit", Author(handle="Acme_Official")),
        ("replay", Author(handle="@acmecare")),
    ],
)
def test_a_reply_to_an_own_account_is_known_from_the_parents_author(
    source: str, parent_author: Author
) -> None:
    # A fresh matcher, as after a restart: it never saw the brand's answer, but the
    # connector recorded who wrote the parent, compared as the post's own author is.
    matcher = acme_matcher()
    follow_up = post(
        source,
        "2",
        "still nothing. it has been 8 days",
        author=Author(id="cust", handle="cust"),
        reply_to_id=f"{source}:1",
        reply_to_author=parent_author,
    )
    got = matcher.apply(follow_up)
    assert got is not None and got.brands == ("acme",)
    assert got.own_account_of == ()
    assert got.signals["reply_to_own_account"] == ["acme"]
    assert got.signals["thread_answered_by_brand"] == ["acme"]
    assert got.signals["matched_terms"] == {"acme": ["reply_to_own_account"]}


@pytest.mark.parametrize(
    ("source", "parent_author", "reply_to_id"),
    [
        ("bluesky", Author(id="did:plc:someone"), "bluesky:did:plc:someone/1"),
        # an instance-local account id alone is not the user@instance listed
        ("mastodon", Author(id="7"), "mastodon:mastodon.example/1"),
        ("mastodon", Author(handle="acme", url="https://other.example/@acme"), "mastodon:o/1"),
        # the brand's handle on another source is someone else
        ("x", Author(handle="Acme_Official"), "x:1"),
        # a parent author without a parent id is not a reply
        ("x", Author(handle="AcmeSupport"), None),
    ],
)
def test_a_reply_to_anyone_else_is_not_a_reply_to_the_brand(
    source: str, parent_author: Author, reply_to_id: str | None
) -> None:
    matcher = acme_matcher()
    reply = post(source, "2", "acme too", reply_to_id=reply_to_id, reply_to_author=parent_author)
    marked = matcher.apply(reply)
    assert marked is not None and marked.brands == ("acme",)
    assert "reply_to_own_account" not in marked.signals
    assert "thread_answered_by_brand" not in marked.signals


def test_the_parents_author_survives_the_codec() -> None:
    reply = post("x", "2", "hi", reply_to_id="x:1", reply_to_author=Author(id="9", handle="a"))
    assert decode_mention(encode_mention(reply)).reply_to_author == Author(id="9", handle="a")


def test_unmatched_post_in_an_answered_thread_is_not_taken() -> None:
    matcher = acme_matcher()
    matcher.apply(post("x", "1", "hi", author=Author(handle="acmesupport")))
    stray = post("x", "2", "nothing to see", thread_id="x:1", reply_to_id="x:5")
    assert matcher.apply(stray) is None


def test_memory_is_bounded() -> None:
    memory = ThreadMemory(2)
    for n in range(5):
        memory.remember(post("x", str(n)), ["acme"])
    assert len(memory) == 2
    assert memory.context(post("x", "9", reply_to_id="x:0")).reply_to_own_account == ()
    assert memory.context(post("x", "9", reply_to_id="x:4")).reply_to_own_account == ("acme",)
    with pytest.raises(ValueError):
        ThreadMemory(0)


def test_annotate_keeps_the_line_brands() -> None:
    matcher = acme_matcher()
    line = post("replay", "1", "Thanks!", author=Author(handle="AcmeCare"), brands=("Acme Ltd",))
    marked = matcher.annotate(line)
    assert marked.brands == ("Acme Ltd", "acme")
    assert marked.own_account_of == ("acme",)
    plain = post("replay", "2", "hello", brands=("globex",))
    assert matcher.annotate(plain) is plain
