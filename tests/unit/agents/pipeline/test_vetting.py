"""Author vetting on a fake clock: each flag, the window, the LRU bound, and the rule conditions."""

from __future__ import annotations

import itertools
from datetime import timedelta

from fake_clock import FakeClock

from agents.pipeline.rules import Rule, route
from agents.pipeline.tables import JsonState
from agents.pipeline.text import fingerprint, normalise
from agents.pipeline.vetting import (
    AuthorVetter,
    VettingSettings,
)
from listener.record import LABELS, Author, Classification, Mention
from listener.record import classified_key as partition_key

_IDS = itertools.count()


def post(text: str, author: str = "a1", brands: tuple[str, ...] = ("acme",)) -> Mention:
    return Mention.create(
        source="t", native_id=str(next(_IDS)), text=text, brands=brands, author=Author(id=author)
    )


def vet_all(vetter: AuthorVetter, clock: FakeClock, texts: list[str], gap_s: float = 600) -> dict:
    result: dict = {}
    for text in texts:
        result = vetter.vet(post(text))
        clock.now += gap_s
    return result


def test_a_customer_is_clean() -> None:
    clock = FakeClock()
    texts = ["@acme my order is late", "@acme still no refund?", "thanks @acme, sorted now"]
    result = vet_all(AuthorVetter(clock=clock), clock, texts)
    assert result["score"] == 0 and result["flags"] == [] and result["posts"] == 3


def test_link_farm_and_self_promotion() -> None:
    clock = FakeClock()
    texts = [
        f"@acme deals! check out my shop https://s{i}.example/x?{i} use code X{i}" for i in range(6)
    ]
    result = vet_all(AuthorVetter(clock=clock), clock, texts)
    assert {"link_heavy", "many_domains", "self_promotion"} <= set(result["flags"])
    assert result["domains"] == 6 and result["score"] >= 0.75
    assert any("distinct domains" in r for r in result["reasons"])


def test_reposts_duplicates_mass_mentions_and_rate() -> None:
    clock = FakeClock()
    texts = ["RT @someone: @acme @b1 @b2 @b3 is down https://x.test/1"] * 25
    result = vet_all(AuthorVetter(clock=clock), clock, texts, gap_s=10)
    assert set(result["flags"]) >= {"repost_only", "duplicate_text", "mass_mentions", "high_rate"}
    assert result["score"] == 1.0


def test_min_posts_window_and_sweep() -> None:
    clock = FakeClock()
    vetter = AuthorVetter(VettingSettings(window_s=3600), clock)
    assert vet_all(vetter, clock, ["RT @x: @acme hi"] * 2)["flags"] == [], "too few posts"
    clock.now += 7200  # the window slides past them
    assert vetter.vet(post("RT @x: @acme hi"))["posts"] == 1
    vetter.vet(post("@acme one", author="b"))
    clock.now += 3000
    vetter.vet(post("@acme two", author="c"))
    clock.now += 1000
    assert len(vetter) == 3
    assert vetter.sweep(lambda key: key != b"t:a1") == 1, "only owned authors are swept"
    assert vetter.sweep() == 1 and len(vetter) == 1, "c's post is still in the window"
    assert vetter.vet(post("no author", author=""))["reasons"] == ["no author id"]


def test_a_redelivered_post_is_counted_once_and_state_survives_a_restart() -> None:
    clock, store = FakeClock(), JsonState({})
    vetter = AuthorVetter(clock=clock, state=store)
    repost = post("RT @x: @acme hi")
    assert vetter.vet(repost)["posts"] == 1
    assert vetter.vet(repost)["posts"] == 1, "at-least-once redelivery: same id, one post"
    restarted = AuthorVetter(clock=clock, state=JsonState(dict(store.store)))
    result = vet_all(restarted, clock, ["RT @y: @acme yo", "RT @z: @acme ok"])
    assert result["posts"] == 3 and "repost_only" in result["flags"]


def test_partition_key_is_the_author_else_the_id() -> None:
    assert partition_key(post("hi", author="U1")) == b"t:u1"
    anonymous = post("hi", author="")
    assert partition_key(anonymous) == anonymous.id.encode()


def test_normalise_strips_urls_handles_case_and_space() -> None:
    a = "Boycott @Acme NOW!!  https://t.co/abc  #fail"
    b = "boycott @acme_support now!! https://bit.ly/xyz #fail"
    assert normalise(a) == "boycott now!! #fail"
    assert fingerprint(a) == fingerprint(b)


def _classified(mention: Mention, vetting: dict | None) -> Mention:
    scores = {name: (0.9 if name == "complaint" else 0.1 / 3) for name in LABELS}
    signals = {"vetting": vetting} if vetting is not None else {}
    return mention.model_copy(
        update={
            "classification": Classification(label="complaint", scores=scores, model="kw@1"),
            "signals": signals,
        }
    )


def test_rules_match_vetting_score_and_flags() -> None:
    rules = (
        Rule("spam", frozenset(), "P4", "trust", False, min_vetting_score=0.6),
        Rule("farm", frozenset(), "P4", "trust", True, author_flags=frozenset({"many_domains"})),
        Rule("trusted", frozenset(), "P2", "support", True, max_vetting_score=0.2),
        Rule("rest", frozenset(), "P3", "support", True),
    )
    sla = {"P2": timedelta(hours=4)}
    m = post("@acme broken")
    assert route(_classified(m, {"score": 0.8, "flags": []}), 0.5, rules, sla).rule_ids == ("spam",)
    farm = {"score": 0.3, "flags": ["many_domains"]}
    assert route(_classified(m, farm), 0.5, rules, sla).rule_ids == ("farm",)
    assert route(_classified(m, None), 0.5, rules, sla).rule_ids == ("trusted",), "unvetted = 0"
    assert route(_classified(m, {"score": 0.4}), 0.5, rules, sla).rule_ids == ("rest",)


def test_a_spam_mark_from_the_inbox_flags_the_author_until_withdrawn() -> None:
    clock = FakeClock()
    vetter = AuthorVetter(clock=clock)
    assert vetter.vet(post("@acme my order is late", author="U9"))["flags"] == []
    vetter.mark("t:u9", {"by": "ann <b>lead</b>", "at": 1.0, "mention_id": "t:1"})
    flagged = vetter.vet(post("@acme buy now at my shop", author="U9"))
    assert flagged["flags"] == ["marked_spam"] and flagged["score"] == 1.0
    assert flagged["reasons"] == ["marked as spam by ann <b>lead</b>"]
    assert vetter.vet(post("@acme hello", author="U10"))["flags"] == []  # only that author
    vetter.mark("t:u9", None)
    assert "marked_spam" not in vetter.vet(post("@acme hi again", author="U9"))["flags"]


def test_a_rule_on_the_marked_spam_flag_keeps_the_author_out_of_the_queue() -> None:
    clock = FakeClock()
    vetter = AuthorVetter(clock=clock)
    vetter.mark("t:u7", {"by": "ann", "at": 1.0})
    scores = {name: (0.97 if name == "complaint" else 0.01) for name in LABELS}
    classified = post("@acme broken again", author="U7").model_copy(
        update={"classification": Classification(label="complaint", scores=scores, model="m@1")}
    )
    labels = frozenset({"complaint"})
    spam_rule = Rule("spam.marked", labels, "P4", "moderation", False,
                     author_flags=frozenset({"marked_spam"}))  # fmt: skip
    rules = (spam_rule, Rule("complaint", labels, "P2", "support", True))
    routing = route(vetter.annotate(classified), 0.5, rules)
    assert routing.needs_response is False and routing.rule_ids[0] == "spam.marked"
