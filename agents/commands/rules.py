"""``brand-listener rules test FILE.jsonl [--rules rules.yaml]``: what each post would get.

Classifies every post with the real model (no Kafka) and routes it with the
deployment's rules file (or the built-in table) exactly as the worker does,
printing one line per post: label and confidence, the model's needs_response
score with its decision (``nr=0.55+``: at or above the model's calibrated
threshold, ``nr=0.20-``: below), whether it is queued, priority, team, SLA,
sinks and the rule ids that decided, then the thread marks (``own=BRAND``: a
post by the brand's own account, never queued, rule ``own_account``;
``reply_to_own=BRAND``, ``in_thread=BRAND``: a reply to, or a post in a thread
of, the brand's own posts). ``--json`` prints each routed Mention instead.

Posts carry ``own_account_of`` when their lines say so; with ``--brands
FILE.yaml`` (a ``listen.yaml``) they are marked from the brands' ``own_accounts``
as ``listen`` marks them, in file order.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

import orjson

from agents.pipeline.classify import classification_of, decided_at, post_kind
from agents.pipeline.rules import route
from agents.pipeline.rules_file import RulesError
from agents.settings import AgentSettings
from agents.worker import load_classifier, routing_rules
from listener.brands import BrandMatcher
from listener.errors import FatalError, SkippableError
from listener.record import Mention
from listener.replay import load_brands, parse_line
from models.interface import IntentClassifier

BATCH = 32


def read_posts(path: Path, out: TextIO, brands: BrandMatcher | None = None) -> list[Mention]:
    """The posts of a JSONL file (replay format); bad lines are reported and skipped.

    Args:
        path: The file.
        out: Where skipped lines are reported.
        brands: If given, own-account posts and replies to them are marked (in file order).
    """
    posts = []
    with path.open("rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                post = parse_line(raw, line_no)
                posts.append(brands.annotate(post) if brands is not None else post)
            except SkippableError as exc:
                print(f"{path}:{line_no}: skipped ({exc.reason}): {exc}", file=out)
    return posts


def classified(
    classifier: IntentClassifier,
    posts: list[Mention],
    thresholds_by_source: Mapping[str, float] | None = None,
) -> Iterator[Mention]:
    """Each post with the model's classification, in batches, as the classify agent gives it."""
    by_source = thresholds_by_source or {}
    for start in range(0, len(posts), BATCH):
        chunk = posts[start : start + BATCH]
        predictions = classifier.predict([m.text for m in chunk], [post_kind(m) for m in chunk])
        for post, p in zip(chunk, predictions, strict=True):
            decided = decided_at(p, by_source.get(post.source))
            yield post.with_stage(
                "classified", classification=classification_of(decided, classifier.name)
            )


def describe(mention: Mention) -> str:
    """One line: id, label@confidence, needs_response score, queue flag, routing, text."""
    c, r = mention.classification, mention.routing
    assert c is not None and r is not None
    due = (r.sla_due_at - mention.created_at) if r.sla_due_at else None
    text = " ".join(mention.text.split())
    score = "nr=n/a"
    if c.needs_response_score is not None:
        decided = {True: "+", False: "-", None: ""}[c.needs_response]
        score = f"nr={c.needs_response_score:.2f}{decided}"
    return "  ".join(
        [
            mention.id,
            f"{c.label}@{c.confidence:.2f}",
            score,
            "QUEUE" if r.needs_response else "-",
            r.priority or "-",
            r.team or "-",
            f"sla={due}" if due is not None else "sla=-",
            f"sinks={','.join(r.sinks) or '*'}",
            f"rules={','.join(r.rule_ids)}",
            *thread_marks(mention),
            text[:70] + ("…" if len(text) > 70 else ""),
        ]
    )


def thread_marks(mention: Mention) -> list[str]:
    """``own=``, ``reply_to_own=`` and ``in_thread=`` with their brands, where they apply."""
    marks = []
    if mention.own_account_of:
        marks.append(f"own={','.join(mention.own_account_of)}")
    for signal, name in (
        ("reply_to_own_account", "reply_to_own"),
        ("thread_answered_by_brand", "in_thread"),
    ):
        brands = mention.signals.get(signal)
        if isinstance(brands, list) and brands:
            marks.append(f"{name}={','.join(map(str, brands))}")
    return marks


def run(
    posts: Iterable[Mention],
    settings: AgentSettings,
    classifier: IntentClassifier,
    out: TextIO,
    as_json: bool = False,
) -> int:
    """Route every post and print it; returns how many would be queued."""
    rules, sla = routing_rules(settings)
    queued = 0
    by_source = settings.model.needs_response_threshold_by_source
    for mention in classified(classifier, list(posts), by_source):
        routed = mention.with_stage(
            "routed", routing=route(mention, settings.model.needs_response_threshold, rules, sla)
        )
        queued += bool(routed.routing and routed.routing.needs_response)
        line = orjson.dumps(routed.model_dump(mode="json")).decode() if as_json else None
        print(line or describe(routed), file=out)
    return queued


def _command(args: argparse.Namespace) -> int:
    settings = AgentSettings.load(
        rules_file=args.rules,
        model={"needs_response_threshold": args.threshold, "dir": args.model_dir},
    )
    try:
        routing_rules(settings)  # fail on a bad file before loading the model
    except RulesError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        brands = load_brands(args.brands) if args.brands is not None else None
    except FatalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    posts = read_posts(args.file, sys.stderr, brands)
    queued = run(posts, settings, load_classifier(settings), sys.stdout, args.json)
    own = sum(bool(post.own_account_of) for post in posts)
    print(f"{len(posts)} posts, {queued} queued, {own} by brands' own accounts", file=sys.stderr)
    return 0


def register_commands(sub: Any) -> None:
    """Add ``rules test`` to the ``brand-listener`` parser."""
    rules = sub.add_parser("rules", help="routing rules tools")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True, metavar="SUBCOMMAND")
    test = rules_sub.add_parser(
        "test",
        help="classify and route posts from a JSONL file (no Kafka)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    test.add_argument("file", type=Path, metavar="FILE.jsonl", help="posts, one JSON per line")
    test.add_argument("--rules", type=Path, metavar="FILE.yaml", help="rules file (else built-in)")
    test.add_argument(
        "--threshold",
        type=float,
        help="confidence threshold for classifications without the model's needs_response",
    )
    test.add_argument("--model-dir", type=Path, help="classifier model folder")
    test.add_argument(
        "--brands",
        type=Path,
        metavar="FILE.yaml",
        help="listen.yaml (or a brands list): mark posts of the brands' own accounts",
    )
    test.add_argument("--json", action="store_true", help="print each routed Mention as JSON")
    test.set_defaults(func=_command)
