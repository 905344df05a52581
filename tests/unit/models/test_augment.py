"""models/augment.py: airline posts moved to other brands and industries (torch-free)."""

from __future__ import annotations

import random
import re

import pytest

from models.augment import BRANDS, INDUSTRY_WORDS, Brand, augment_rows, rewrite, strip_links

FEDEX = Brand("FedEx", "@FedEx", "parcel")
AIRLINE_WORDS = re.compile(r"\b(flights?|planes?|gate|bags?|baggage|luggage|pilot|crew)\b", re.I)


def rows(n: int = 40) -> list[dict[str, str]]:
    out = []
    for i in range(n):
        out.append(
            {
                "text": f"@united my flight {i} is late and my bag is lost",
                "label": "complaint",
                "source": "airline",
            }
        )
        out.append(
            {"text": f"@apple love the new phone {i}", "label": "praise", "source": "sanders"}
        )
    return out


def test_rewrite_replaces_handle_name_and_domain_words() -> None:
    text = "@united Flight delayed at the gate, pilot missing, bags lost. Never United again"
    out = rewrite(text, FEDEX, random.Random(1))
    assert out.startswith("@FedEx ")
    assert out.endswith("Never FedEx again")
    assert not AIRLINE_WORDS.search(out)
    assert "united" not in out.lower()
    # capitalised "Flight" stays capitalised, in a parcel word
    first = out.split()[1]
    assert first[0].isupper()
    assert first.lower() in {w for pair in INDUSTRY_WORDS["parcel"]["trip"] for w in pair}


def test_rewrite_uses_one_word_per_slot_in_a_post() -> None:
    out = rewrite("@united flight late, then the flight was cancelled", FEDEX, random.Random(7))
    words = re.findall(r"\b(delivery|shipment)\b", out)
    assert len(words) == 2 and words[0] == words[1]


def test_rewrite_keeps_plural_forms() -> None:
    out = rewrite("@JetBlue two flights and three bags", FEDEX, random.Random(3))
    plurals = {pair[1] for pair in INDUSTRY_WORDS["parcel"]["trip"]}
    plurals |= {pair[1] for pair in INDUSTRY_WORDS["parcel"]["item"]}
    assert sum(w in plurals for w in out.split()) == 2


def test_second_airline_becomes_a_different_brand() -> None:
    out = rewrite(
        "@united thank you for getting us home when @AmericanAir cancelled", FEDEX, random.Random(2)
    )
    handles = re.findall(r"@\w+", out)
    assert handles[0] == "@FedEx"
    assert len(handles) == 2 and handles[1] != "@FedEx"
    assert handles[1] in {b.handle for b in BRANDS}


def test_rewrite_leaves_other_handles_urls_and_unrelated_text() -> None:
    text = "@delta ask @united_fan about http://example.com/flight and #DestinationDragons"
    out = rewrite(text, FEDEX, random.Random(0))
    assert out.startswith("@FedEx ask @united_fan about http://example.com/flight")
    assert out.endswith("#DestinationDragons")
    assert rewrite("nothing to change", FEDEX, random.Random(0)) == "nothing to change"


def test_augment_rows_is_deterministic_keeps_count_order_and_labels() -> None:
    data = rows()
    a = augment_rows(data, seed=11, rate=0.5)
    b = augment_rows(data, seed=11, rate=0.5)
    assert a == b
    assert len(a) == len(data)
    assert [r["label"] for r in a] == [r["label"] for r in data]
    assert augment_rows(data, seed=12, rate=0.5) != a
    assert data[0]["text"].startswith("@united")  # input rows are not mutated


def test_augment_rows_touches_only_the_chosen_sources_at_about_the_rate() -> None:
    data = rows(200)
    out = augment_rows(data, seed=5, rate=0.5)
    changed = [o for o, r in zip(out, data, strict=True) if o["text"] != r["text"]]
    assert all(o["source"] == "airline" and o["augmented"] for o in changed)
    assert 70 <= len(changed) <= 130
    assert augment_rows(data, seed=5, rate=0.0) == data
    assert all(o.get("augmented") for o in augment_rows(data, 5, 1.0) if o["source"] == "airline")


@pytest.mark.parametrize("rate", [-0.1, 1.5])
def test_augment_rows_rejects_a_bad_rate(rate: float) -> None:
    with pytest.raises(ValueError, match="rate"):
        augment_rows(rows(1), seed=1, rate=rate)


def test_every_brand_has_an_industry_with_every_slot() -> None:
    slots = set(INDUSTRY_WORDS["retail"])
    for brand in BRANDS:
        assert brand.handle.startswith("@")
        assert set(INDUSTRY_WORDS[brand.industry]) == slots


def test_strip_links_drops_urls_and_closing_hashtags_but_keeps_short_posts() -> None:
    text = "Apple sold 4 million phones on launch weekend http://t.co/vs5r1oox #iPhone4S #fb"
    assert strip_links(text) == "Apple sold 4 million phones on launch weekend"
    assert strip_links("@united #fail my bag is lost #worst") == "@united #fail my bag is lost"
    assert strip_links("I love @Apple http://t.co/a8on3IAa") == "I love @Apple http://t.co/a8on3IAa"
    assert strip_links("#TeamFollowBack #iFollowBack") == "#TeamFollowBack #iFollowBack"


def test_link_rate_leaves_the_brand_rewrites_unchanged() -> None:
    data = rows(50)
    for row in data[::3]:
        row["text"] += " see http://example.com/x"
    plain = augment_rows(data, seed=9, rate=0.5)
    linked = augment_rows(data, seed=9, rate=0.5, link_rate=1.0)
    for a, b in zip(plain, linked, strict=True):
        assert b["text"] == strip_links(a["text"])
    with pytest.raises(ValueError, match="link_rate"):
        augment_rows(data, seed=9, link_rate=2.0)
