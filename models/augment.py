"""Training-data augmentation: move airline posts to other brands and industries.

69% of the training posts are tweets to six US airlines, so the classifier
learns airline handles and flight, gate and bag vocabulary as cues (issue 3).
:func:`augment_rows` rewrites a seeded fraction of those posts *in place*
(the training set keeps its size, so a run keeps its time budget): the
airline's handle and name become those of a brand drawn from
:data:`BRANDS` (retail, telecoms, food, parcels, rail, banking, software,
hotels, ride hailing, electronics), and the airline words become that
industry's words, one choice per slot and post so that a post stays
consistent ("my flight was delayed at the gate" -> "my order was delayed at
the checkout"). Labels are left unchanged: the rewrite keeps who is
addressed and what is said about them, which is all the guideline's labels
depend on.

Pure Python (no torch): the tests run in the runtime environment.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "AIRLINE_HANDLES",
    "BRANDS",
    "Brand",
    "INDUSTRY_WORDS",
    "augment_rows",
    "rewrite",
    "strip_links",
]


@dataclass(frozen=True)
class Brand:
    """A brand a post can be moved to."""

    name: str
    handle: str
    industry: str


BRANDS: tuple[Brand, ...] = (
    Brand("Amazon", "@amazon", "retail"),
    Brand("Target", "@Target", "retail"),
    Brand("Zalando", "@Zalando", "retail"),
    Brand("IKEA", "@IKEAUSA", "retail"),
    Brand("Verizon", "@VerizonSupport", "telecom"),
    Brand("Comcast", "@comcast", "telecom"),
    Brand("Vodafone", "@VodafoneUK", "telecom"),
    Brand("T-Mobile", "@TMobileHelp", "telecom"),
    Brand("Starbucks", "@Starbucks", "food"),
    Brand("Chipotle", "@ChipotleTweets", "food"),
    Brand("Domino's", "@dominos", "food"),
    Brand("Deliveroo", "@Deliveroo", "food"),
    Brand("FedEx", "@FedEx", "parcel"),
    Brand("UPS", "@UPSHelp", "parcel"),
    Brand("Royal Mail", "@RoyalMail", "parcel"),
    Brand("Amtrak", "@Amtrak", "rail"),
    Brand("Avanti", "@AvantiWestCoast", "rail"),
    Brand("Deutsche Bahn", "@DB_Bahn", "rail"),
    Brand("Chase", "@ChaseSupport", "bank"),
    Brand("Monzo", "@monzo", "bank"),
    Brand("Barclays", "@AskBarclays", "bank"),
    Brand("Spotify", "@SpotifyCares", "software"),
    Brand("Netflix", "@netflix", "software"),
    Brand("Microsoft", "@MicrosoftHelps", "software"),
    Brand("Hilton", "@HiltonHelp", "hotel"),
    Brand("Marriott", "@MarriottBonvoy", "hotel"),
    Brand("Airbnb", "@Airbnb", "hotel"),
    Brand("Uber", "@Uber_Support", "ride"),
    Brand("Lyft", "@lyft", "ride"),
    Brand("Samsung", "@SamsungSupport", "electronics"),
    Brand("Best Buy", "@BestBuySupport", "electronics"),
    Brand("Dell", "@DellCares", "electronics"),
)

# Handles and names of the airlines in the data (matched case-insensitively).
AIRLINE_HANDLES: tuple[str, ...] = (
    "@united",
    "@usairways",
    "@americanair",
    "@southwestair",
    "@jetblue",
    "@virginamerica",
    "@delta",
    "@spiritairlines",
    "@virginatlantic",
    "@aircanada",
    "@alaskaair",
    "@britishairways",
    "@flyfrontier",
)
# Names (and hashtags without the space) of the airlines, each with its airline.
_AIRLINE_NAMES: dict[str, str] = {
    "united airlines": "united",
    "united": "united",
    "us airways": "usairways",
    "usairways": "usairways",
    "american airlines": "americanair",
    "americanair": "americanair",
    "southwest airlines": "southwestair",
    "southwestair": "southwestair",
    "southwest": "southwestair",
    "jetblue": "jetblue",
    "jet blue": "jetblue",
    "virgin america": "virginamerica",
    "virginamerica": "virginamerica",
    "delta airlines": "delta",
    "delta": "delta",
}

# Airline vocabulary: surface form -> (slot, plural?). Multi-word forms first.
_SURFACE: dict[str, tuple[str, bool]] = {
    "flight attendants": ("staff", True),
    "flight attendant": ("staff", False),
    "frequent flyer": ("loyalty", False),
    "flights": ("trip", True),
    "flight": ("trip", False),
    "flt": ("trip", False),
    "planes": ("vehicle", True),
    "plane": ("vehicle", False),
    "airplane": ("vehicle", False),
    "aircraft": ("vehicle", False),
    "gates": ("place", True),
    "gate": ("place", False),
    "airport": ("site", False),
    "airports": ("site", True),
    "bags": ("item", True),
    "bag": ("item", False),
    "baggage": ("item", False),
    "luggage": ("item", False),
    "suitcase": ("item", False),
    "suitcases": ("item", True),
    "pilots": ("staff", True),
    "pilot": ("staff", False),
    "crew": ("staff", False),
    "seats": ("slot", True),
    "seat": ("slot", False),
    "airline": ("company", False),
    "airlines": ("company", True),
    "layover": ("wait", False),
    "layovers": ("wait", True),
    "miles": ("points", True),
    "boarding": ("checkout", False),
    "rebook": ("redo", False),
    "rebooked": ("redone", False),
}

# Per industry and slot: (singular, plural) choices.
INDUSTRY_WORDS: dict[str, dict[str, tuple[tuple[str, str], ...]]] = {
    "retail": {
        "trip": (("order", "orders"), ("delivery", "deliveries")),
        "vehicle": (("van", "vans"), ("website", "websites")),
        "place": (("checkout", "checkouts"), ("till", "tills")),
        "site": (("store", "stores"), ("warehouse", "warehouses")),
        "item": (("parcel", "parcels"), ("package", "packages")),
        "staff": (("staff member", "staff"), ("driver", "drivers")),
        "slot": (("delivery slot", "delivery slots"), ("item", "items")),
    },
    "telecom": {
        "trip": (("install", "installs"), ("repair visit", "repair visits")),
        "vehicle": (("router", "routers"), ("phone", "phones")),
        "place": (("store", "stores"), ("line", "lines")),
        "site": (("store", "stores"), ("exchange", "exchanges")),
        "item": (("router", "routers"), ("SIM", "SIMs")),
        "staff": (("engineer", "engineers"), ("technician", "technicians")),
        "slot": (("appointment", "appointments"), ("plan", "plans")),
    },
    "food": {
        "trip": (("order", "orders"), ("delivery", "deliveries")),
        "vehicle": (("driver", "drivers"), ("app", "apps")),
        "place": (("counter", "counters"), ("drive-thru", "drive-thrus")),
        "site": (("restaurant", "restaurants"), ("store", "stores")),
        "item": (("meal", "meals"), ("drink", "drinks")),
        "staff": (("barista", "baristas"), ("server", "servers")),
        "slot": (("table", "tables"), ("seat", "seats")),
    },
    "parcel": {
        "trip": (("delivery", "deliveries"), ("shipment", "shipments")),
        "vehicle": (("van", "vans"), ("truck", "trucks")),
        "place": (("depot", "depots"), ("drop-off point", "drop-off points")),
        "site": (("depot", "depots"), ("sorting hub", "sorting hubs")),
        "item": (("parcel", "parcels"), ("package", "packages")),
        "staff": (("courier", "couriers"), ("driver", "drivers")),
        "slot": (("delivery slot", "delivery slots"), ("time slot", "time slots")),
    },
    "rail": {
        "trip": (("train", "trains"), ("journey", "journeys")),
        "vehicle": (("train", "trains"), ("carriage", "carriages")),
        "place": (("platform", "platforms"), ("barrier", "barriers")),
        "site": (("station", "stations"), ("station", "stations")),
        "item": (("bag", "bags"), ("bike", "bikes")),
        "staff": (("guard", "guards"), ("conductor", "conductors")),
        "slot": (("seat", "seats"), ("reservation", "reservations")),
    },
    "bank": {
        "trip": (("transfer", "transfers"), ("payment", "payments")),
        "vehicle": (("app", "apps"), ("card", "cards")),
        "place": (("branch", "branches"), ("cash machine", "cash machines")),
        "site": (("branch", "branches"), ("branch", "branches")),
        "item": (("card", "cards"), ("statement", "statements")),
        "staff": (("advisor", "advisors"), ("cashier", "cashiers")),
        "slot": (("account", "accounts"), ("appointment", "appointments")),
    },
    "software": {
        "trip": (("update", "updates"), ("download", "downloads")),
        "vehicle": (("app", "apps"), ("laptop", "laptops")),
        "place": (("login page", "login pages"), ("settings page", "settings pages")),
        "site": (("website", "websites"), ("help centre", "help centres")),
        "item": (("playlist", "playlists"), ("file", "files")),
        "staff": (("support agent", "support agents"), ("developer", "developers")),
        "slot": (("subscription", "subscriptions"), ("licence", "licences")),
    },
    "hotel": {
        "trip": (("stay", "stays"), ("reservation", "reservations")),
        "vehicle": (("room", "rooms"), ("shuttle", "shuttles")),
        "place": (("front desk", "front desks"), ("lobby", "lobbies")),
        "site": (("hotel", "hotels"), ("resort", "resorts")),
        "item": (("key card", "key cards"), ("towel", "towels")),
        "staff": (("receptionist", "receptionists"), ("housekeeper", "housekeepers")),
        "slot": (("room", "rooms"), ("bed", "beds")),
    },
    "ride": {
        "trip": (("ride", "rides"), ("trip", "trips")),
        "vehicle": (("car", "cars"), ("app", "apps")),
        "place": (("pickup point", "pickup points"), ("pickup spot", "pickup spots")),
        "site": (("pickup zone", "pickup zones"), ("city", "cities")),
        "item": (("bag", "bags"), ("phone", "phones")),
        "staff": (("driver", "drivers"), ("driver", "drivers")),
        "slot": (("seat", "seats"), ("booking", "bookings")),
    },
    "electronics": {
        "trip": (("order", "orders"), ("repair", "repairs")),
        "vehicle": (("laptop", "laptops"), ("TV", "TVs")),
        "place": (("service desk", "service desks"), ("checkout", "checkouts")),
        "site": (("store", "stores"), ("repair centre", "repair centres")),
        "item": (("charger", "chargers"), ("device", "devices")),
        "staff": (("technician", "technicians"), ("sales rep", "sales reps")),
        "slot": (("appointment", "appointments"), ("warranty", "warranties")),
    },
}

# Slots whose words do not depend on the industry.
_COMMON: dict[str, tuple[str, ...]] = {
    "company": ("company", "companies"),
    "loyalty": ("rewards", "rewards"),
    "wait": ("wait", "waits"),
    "points": ("points", "points"),
    "checkout": ("check-in", "check-in"),
    "redo": ("reschedule", "reschedule"),
    "redone": ("rescheduled", "rescheduled"),
}

_HANDLE_RE = re.compile(
    r"(?<![\w@])(" + "|".join(re.escape(h) for h in AIRLINE_HANDLES) + r")\b", re.IGNORECASE
)
_HASHTAG_KEYS: dict[str, str] = {n.replace(" ", ""): a for n, a in _AIRLINE_NAMES.items()}
_HASHTAG_RE = re.compile(
    r"(?<![\w#])#("
    + "|".join(sorted(map(re.escape, _HASHTAG_KEYS), key=len, reverse=True))
    + r")\b",
    re.IGNORECASE,
)
_NAME_RE = re.compile(
    r"(?<![\w@#])("
    + "|".join(re.escape(n) for n in sorted(_AIRLINE_NAMES, key=len, reverse=True))
    + r")\b",
    re.IGNORECASE,
)
_WORD_RE = re.compile(
    r"(?<![\w@#/])("
    + "|".join(re.escape(w) for w in sorted(_SURFACE, key=len, reverse=True))
    + r")\b",
    re.IGNORECASE,
)


_URL_RE = re.compile(r"(?:https?://|www\.|pic\.twitter\.com/)\S+", re.IGNORECASE)
_TRAILING_TAGS_RE = re.compile(r"(?:\s*#\w+)+\s*$")
_WORDS_RE = re.compile(r"[A-Za-z]{2,}")


def _match_case(word: str, like: str) -> str:
    """``word`` in the case pattern of ``like`` (UPPER, Capitalised or as given)."""
    if len(like) > 1 and like.isupper():
        return word.upper()
    if like[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


def rewrite(text: str, brand: Brand, rng: random.Random, pool: Sequence[Brand] = BRANDS) -> str:
    """Move one airline post to ``brand`` and its industry's vocabulary.

    The first airline the post names becomes ``brand``; any other airline it
    names becomes another brand of the same industry (so "@united thanks, unlike
    @AmericanAir" keeps two different companies).

    Args:
        text: The post.
        brand: The brand to move it to.
        rng: Seeded random source: picks the other brands and one word per slot.
        pool: Brands for the other airlines.

    Returns:
        The rewritten post (unchanged if it holds no airline handle, name or word).
    """
    words = INDUSTRY_WORDS[brand.industry]
    picks: dict[str, tuple[str, str]] = {}
    assigned: dict[str, Brand] = {}

    def brand_for(airline: str) -> Brand:
        if airline not in assigned:
            if not assigned:
                assigned[airline] = brand
            else:
                used = {b.name for b in assigned.values()}
                free = [b for b in pool if b.name not in used]
                same = [b for b in free if b.industry == brand.industry]
                choices = same or free or [brand]
                assigned[airline] = choices[rng.randrange(len(choices))]
        return assigned[airline]

    def pick(slot: str) -> tuple[str, str]:
        if slot not in picks:
            if slot in words:
                picks[slot] = words[slot][rng.randrange(len(words[slot]))]
            else:
                singular, plural = _COMMON[slot]
                picks[slot] = (singular, plural)
        return picks[slot]

    def handle(m: re.Match[str]) -> str:
        return brand_for(m.group(1).lower().lstrip("@")).handle

    def hashtag(m: re.Match[str]) -> str:
        name = brand_for(_HASHTAG_KEYS[m.group(1).lower()]).name
        return "#" + re.sub(r"\W", "", name)

    def name(m: re.Match[str]) -> str:
        return brand_for(_AIRLINE_NAMES[m.group(1).lower()]).name

    def domain_word(m: re.Match[str]) -> str:
        slot, plural = _SURFACE[m.group(1).lower()]
        return _match_case(pick(slot)[1 if plural else 0], m.group(1))

    out = _HANDLE_RE.sub(handle, text)
    out = _HASHTAG_RE.sub(hashtag, out)
    out = _NAME_RE.sub(name, out)
    return _WORD_RE.sub(domain_word, out)


def strip_links(text: str) -> str:
    """``text`` without its URLs and its closing run of hashtags, if three words are left.

    In the training data links and hashtags are a shortcut to ``other`` (39% of
    ``other`` posts hold a URL and 61% a hashtag, against 5-9% and 12-27% of the
    other labels), while the guideline labels a post by what it says; a post
    that is only links and tags is left out of a labelled set, so such a post is
    returned unchanged.

    Args:
        text: The post.

    Returns:
        The post without links and closing hashtags, or ``text`` itself when fewer
        than three words would be left.
    """
    out = _URL_RE.sub(" ", text)
    out = _TRAILING_TAGS_RE.sub("", out)
    out = " ".join(out.split())
    return out if len(_WORDS_RE.findall(out)) >= 3 else text


def augment_rows(
    rows: Sequence[Mapping[str, Any]],
    seed: int,
    rate: float = 0.5,
    sources: Iterable[str] = ("airline",),
    brands: Sequence[Brand] = BRANDS,
    link_rate: float = 0.0,
) -> list[dict[str, Any]]:
    """Rewrite a seeded fraction of the rows from ``sources`` (in place: same count, same order).

    Args:
        rows: Training rows (``text``, ``label``, ``source``).
        seed: Seed; the same rows and seed give the same output.
        rate: Probability that a row from ``sources`` is moved to another brand.
        sources: Sources whose rows may be moved to another brand.
        brands: Brands to draw from (uniformly).
        link_rate: Probability that a row of any source loses its links and closing
            hashtags (:func:`strip_links`); drawn from its own seeded stream, so the
            brand rewrites do not depend on it.

    Returns:
        New row dicts; a changed row has its new ``text`` and ``"augmented": True``.

    Raises:
        ValueError: ``rate`` or ``link_rate`` is outside [0, 1], or ``brands`` is empty.
    """
    for name, value in (("rate", rate), ("link_rate", link_rate)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}")
    if not brands:
        raise ValueError("brands is empty")
    keep = set(sources)
    rng = random.Random(seed)
    link_rng = random.Random(f"links-{seed}")
    out: list[dict[str, Any]] = []
    for row in rows:
        new = dict(row)
        # One draw per row whatever its source, so a row's fate depends only on its position.
        draw = rng.random()
        brand = brands[rng.randrange(len(brands))]
        sub_seed = rng.getrandbits(32)
        text = str(row["text"])
        if row.get("source") in keep and draw < rate:
            text = rewrite(text, brand, random.Random(sub_seed), brands)
        if link_rng.random() < link_rate:
            text = strip_links(text)
        if text != row["text"]:
            new["text"] = text
            new["augmented"] = True
        out.append(new)
    return out
