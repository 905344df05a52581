from __future__ import annotations

import pytest

from listener.brands import (
    BrandMatcher,
    BrandSettings,
    QuerySyntaxError,
    compile_term,
    parse_query,
)
from listener.errors import FatalError
from listener.record import Mention


def matcher(**fields: object) -> BrandMatcher:
    return BrandMatcher([BrandSettings(name="acme", **fields)])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "hit"),
    [
        ("I love Acme today", True),
        ("ACME!", True),
        ("acmeology is a word", False),
        ("subacme", False),
        ("the acme cloud is down", True),
    ],
)
def test_keyword_word_boundaries(text: str, hit: bool) -> None:
    assert bool(matcher(keywords=("acme",)).match(text)) is hit


def test_phrase_allows_any_whitespace() -> None:
    m = matcher(keywords=("acme cloud",))
    assert m.match("Acme\n  Cloud broke").terms == {"acme": ("acme cloud",)}
    assert not m.match("acme's cloud")


@pytest.mark.parametrize(
    ("text", "hit"),
    [
        ("hey @acme help", True),
        ("hey @Acme.", True),
        ("hey @acmecorp", False),
        ("hey @acme.bsky.social", False),
        ("mail me@acme", False),
    ],
)
def test_handles(text: str, hit: bool) -> None:
    assert bool(matcher(handles=("acme",)).match(text)) is hit


def test_hashtags_and_domains() -> None:
    m = matcher(hashtags=("#acme",), domains=("acme.com",))
    assert m.match("so #ACME").terms["acme"] == ("#acme",)
    assert not m.match("#acmefail")
    assert m.match("see https://status.acme.com/x").terms["acme"] == ("domain:acme.com",)
    assert m.match("www.acme.com")
    assert not m.match("acme.community") and not m.match("notacme.com")


def test_query_precedence_and_parens() -> None:
    m = matcher(query='(acme OR "acme cloud") AND NOT (job OR hiring) OR #acmefan')
    assert m.match("acme is slow").brands == ("acme",)
    assert not m.match("acme is hiring")
    assert m.match("hiring #acmefan")  # OR binds loosest
    assert m.match("acme cloud down").terms["acme"] == ("acme", "acme cloud")


def test_implicit_and() -> None:
    m = matcher(query="acme outage")
    assert m.match("acme outage again")
    assert not m.match("acme works")


def test_not_only_query_reports_query() -> None:
    m = BrandMatcher([BrandSettings(name="x", query="NOT spam")])
    assert m.match("anything").terms == {"x": ("query",)}


def test_exclusions_veto() -> None:
    m = matcher(keywords=("acme",), exclude=("acme anvil", "#ad"))
    assert m.match("acme rocks")
    assert not m.match("buy an acme anvil")
    assert not m.match("acme rocks #ad")


def test_languages() -> None:
    m = matcher(keywords=("acme",), languages=("en", "de"))
    assert m.match("acme", "en-US") and m.match("acme", "DE")
    assert not m.match("acme", "fr")
    assert m.match("acme", None)  # unknown language passes


def test_many_brands() -> None:
    m = BrandMatcher(
        [BrandSettings(name="a", keywords=("alpha",)), BrandSettings(name="b", hashtags=("beta",))]
    )
    result = m.match("alpha and #beta")
    assert result.brands == ("a", "b")
    assert m.search_terms() == ("alpha",) and m.hashtags() == ("beta",)


@pytest.mark.parametrize(
    ("query", "pos"),
    [
        ("acme AND", 9),
        ("(acme OR beta", 14),
        ("acme )", 6),
        ("OR acme", 1),
        ('acme "cloud', 6),
        ("", 1),
        ("acme AND AND beta", 10),
        ('acme ""', 6),
    ],
)
def test_query_errors_name_the_position(query: str, pos: int) -> None:
    with pytest.raises(QuerySyntaxError) as info:
        parse_query(query)
    assert info.value.pos == pos
    with pytest.raises(FatalError, match=f"brand 'acme'.*position {pos}"):
        matcher(query=query)


def test_config_errors_are_fatal() -> None:
    with pytest.raises(FatalError, match="nothing to match"):
        BrandMatcher([BrandSettings(name="empty")])
    with pytest.raises(FatalError, match="twice"):
        BrandMatcher([BrandSettings(name="a", keywords=("a",))] * 2)
    with pytest.raises(FatalError, match="empty"):
        matcher(keywords=("  ",))


def test_apply_records_brands_and_terms() -> None:
    m = matcher(keywords=("acme",), domains=("acme.com",))
    mention = Mention.create(
        source="test",
        native_id="1",
        text="look",
        url="https://social.example/acme",
        lang="en",
        signals={"links": ["https://acme.com/p"]},
    )
    out = m.apply(mention)
    assert out is not None and out.brands == ("acme",)
    assert out.signals["matched_terms"] == {"acme": ["acme", "domain:acme.com"]}
    assert m.apply(Mention.create(source="test", native_id="2", text="nothing")) is None


def test_apply_keeps_a_brand_the_source_names() -> None:
    m = BrandMatcher(
        [
            BrandSettings(name="acme", keywords=("acme",)),
            BrandSettings(name="globex", keywords=("globex",)),
        ]
    )
    review = Mention.create(
        source="appstore", native_id="1", text="Crashes on start. Globex works.", brands=("acme",)
    )
    out = m.apply(review)
    assert out is not None and out.brands == ("globex", "acme")
    assert out.signals["matched_terms"] == {"globex": ["globex"], "acme": ["source"]}
    unnamed = Mention.create(source="appstore", native_id="2", text="Crashes on start.")
    assert m.apply(unnamed) is None, "without the source's brand the text decides"


@pytest.mark.parametrize(
    "raw",
    [
        "Flyaway",
        "fly away",
        "@Flyaway",
        "#FlyawayFail",
        "domain:flyaway.example",
        "Café",
        "Sky",
        "Kelvin",
    ],
)
def test_the_literal_prefilter_never_changes_what_a_term_matches(raw: str) -> None:
    term = compile_term(raw)
    texts = [
        "FLYAWAY lost my bag",
        "fly\n  AWAY again",
        "@FLYAWAY help",
        "#flyawayfail trending",
        "see https://www.FlyAway.example/refunds",
        "café crème at the airport",
        "CAFÉ closed",
        "flyaways",  # not a word match
        "ﬂyaway",  # the fi-ligature: not ASCII, so the pattern alone decides
        "\u017fky high prices",  # long s: IGNORECASE matches it to s, lower() leaves it
        "\u212aelvin support",  # the Kelvin sign, likewise for k
        "nothing to see here",
    ]
    for text in texts:
        expected = term.pattern.search(text) is not None
        assert term.hits(text) == expected, (raw, text)
        if text.isascii():  # folded once by the matcher for all its terms
            assert term.hits(text, text.lower()) == expected, (raw, text)
    assert any(term.hits(text) for text in texts), raw
    if raw in ("Sky", "Kelvin"):  # found only through a non-ASCII spelling: the pattern's call
        assert term.hits("\u017fky high prices" if raw == "Sky" else "\u212aelvin support")
