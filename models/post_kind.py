"""Where a post sits in its thread, as model input: review, post, reply to brand, comment.

The guideline's needs_response depends on context the text alone does not carry:
a complaint in a Reddit comment between users needs no answer from the brand, the
same words opening a thread (or a review addressed to the company) do. The
labellers of the intent-v2 posts saw that context (each row's ``note``: "Reddit
comment in r/UPS", "Trustpilot review of ...", "thread position unknown"), and the
connectors see it too (``Mention.reply_to_id``, ``reply_to_author``, review
signals). A model trained with ``models.train --post-kind`` reads it as a short
prefix of its input, ``"[reply to brand] <text>"`` (nothing for ``unknown``), and
says so in its ``config.json`` (``input_prefix``: ``"post_kind"``, and
``post_kinds``: the kinds it was trained with), so the runtime adds the same
prefix in serving.

Five kinds, the same for every platform, so a source the training data never had
still maps onto one the model knows, and only what the connectors can tell in
serving (a kind the runtime could not give would teach the model something it
never sees there):

- ``review``: a review of the brand's product or business (it opens a thread
  addressed to the company);
- ``post``: opens a thread (a Reddit submission, a Bluesky post that replies to
  nothing, a Hacker News story);
- ``reply_to_brand``: answers one of the brand's own posts (a customer's follow-up
  in a support thread: "still broken", "any update?", "thanks, sorted");
- ``comment``: answers a post not known to be the brand's: talk between users (a
  Reddit comment, a tweet answering another user's tweet, advice to another
  customer), which the guideline routes only when it is the author's own ongoing
  failure. A reply to a brand post the listener cannot attribute (a Hacker News
  reply, whose parent's author the API does not give, to a brand account's comment
  the thread memory never saw) is read as one too. Written ``[comment]``, not
  ``[reply]``: a word of its own keeps it apart from ``[reply to brand]``, whose
  follow-ups need an answer far more often (with ``[reply]`` the model found fewer
  of them; see the card's *Post kind*);
- ``unknown``: the source does not say (tweets of the old data, tweets of
  ``twitter2020``/``isp_tweets`` that answer no one or the brand, RSS items,
  webhooks without thread fields).

Models trained before ``comment`` existed (2.2.0 and older: no ``post_kinds`` in
their config) read a ``comment`` as ``unknown``, as they were trained
(:func:`readable_kind`).

Pure Python: the training, evaluation and serving code all import it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from models.masking import HANDLE_PATTERN

POST_KINDS = ("review", "post", "reply_to_brand", "comment", "unknown")
UNKNOWN = "unknown"
# The kinds of a model whose config.json names no post_kinds (trained before ``comment``).
KINDS_BEFORE_COMMENT = ("review", "post", "reply_to_brand", "unknown")
# config.json key naming the input prefix a model was trained with, and its value.
INPUT_PREFIX_KEY = "input_prefix"
POST_KIND_PREFIX = "post_kind"
# config.json key listing the kinds a post_kind model was trained with.
POST_KINDS_KEY = "post_kinds"

__all__ = [
    "INPUT_PREFIX_KEY",
    "KINDS_BEFORE_COMMENT",
    "POST_KINDS",
    "POST_KINDS_KEY",
    "POST_KIND_PREFIX",
    "REVIEW_SOURCES",
    "SUPPORT_THREAD_CASES",
    "THREADED_SOURCES",
    "UNKNOWN",
    "model_input",
    "model_texts",
    "row_kinds",
    "post_kind_of_mention",
    "post_kind_of_row",
    "readable_kind",
    "tweet_answers_someone_else",
    "with_kind_dropped",
]

# Connectors that set Mention.reply_to_id on every reply they read
# (listener/connectors/README.md, *Threads*): one of their posts without it opens a
# thread. rss says nothing, a webhook only what its sender sends.
THREADED_SOURCES = frozenset(
    {
        "bluesky",
        "mastodon",
        "reddit",
        "hackernews",
        "x",
        "youtube",
        "discourse",
        "discourse_webhook",
        "meta_webhook",
        "meta_graph",
        "threads",
        "tumblr",
        "flickr",
        "linkedin",
    }
)
# Connectors whose posts are reviews of the brand's app or business (a brand's answer
# to one is a reply).
REVIEW_SOURCES = frozenset({"appstore", "googleplay", "trustpilot", "yelp"})

# Cases of synthetic.jsonl replies that answer the brand's own post (follow-ups in a
# support thread, by their case names); its other replies answer users, or are the
# brand's own answers (brand_agent_reply, agent_reply), whose parent is a customer.
SUPPORT_THREAD_CASES = frozenset(
    {
        "ack_only",
        "acknowledge_reply",
        "acknowledgement",
        "any_update",
        "any_update_followup",
        "followup_any_update",
        "check_dm",
        "check_dm_followup",
        "detail_only_reply",
        "details_only",
        "details_only_reply",
        "passed_around",
        "question_plus_thanks",
        "resolved_mixed_thanks",
        "resolved_thanks",
        "thanks_agent",
        "thanks_agent_short",
        "thanks_still_broken",
    }
)
# The words of a row's ``note`` that name where the labeller saw it
# (../shared/data/intent-v2/README.md), first match wins.
_NOTE_WORDS = (
    ("review", "review"),
    ("comment", "comment"),  # "Reddit comment in r/UPS (reply inside a thread, not to the brand)"
    ("post in", "post"),
    ("submission", "post"),
)


# Tweets of the data (``note``: "tweet mentioning Xbox(Xseries); thread position
# unknown", "tweet about an internet provider (cox internet); ...") say whom they
# answer only by their leading @handles; the note names the brand. A leading handle
# is taken for the brand's own account when it holds a word of the brand's name, or
# a word companies put in their handles (support, help, care, ...).
_LEADING_HANDLES = re.compile(r"^\s*((?:@\w+\s*)+)")
_HANDLE = re.compile(HANDLE_PATTERN)
_COMPANY_HANDLE_WORDS = re.compile(
    r"support|help|care|team|official|service|games?$|studios?|hq$|news$|cs$|_ng$|us$|uk$"
    r"|mobile|cable|internet|broadband|connect|fiber|fibre|tech$|esports"
)
_NOTE_BRAND = (
    re.compile(r"mentioning (\S+?)(?:;|$)"),
    re.compile(r"provider \(([^)]*)\)"),
)
_CAMEL_WORDS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
_NOT_NAME_WORDS = frozenset({"internet", "the", "and", "of", ""})
# The data's notes spell Spectranet "sprectranet" in some rows.
_NOTE_SPELLINGS = {"sprectranet": "spectranet"}


def _brand_words(note: str) -> set[str]:
    """Lower-case words of the brand a tweet's ``note`` names ("Xbox(Xseries)": xbox, xseries)."""
    for pattern in _NOTE_BRAND:
        found = pattern.search(note)
        if found:
            break
    else:
        return set()
    name = found.group(1)
    words = {w.lower() for w in _CAMEL_WORDS.findall(name) if len(w) >= 3}
    words |= {w.lower() for w in re.split(r"[^A-Za-z0-9]+", name) if len(w) >= 3}
    words.add(re.sub(r"[^a-z0-9]", "", name.lower()))
    words |= {_NOTE_SPELLINGS[w] for w in words if w in _NOTE_SPELLINGS}
    return words - _NOT_NAME_WORDS


def tweet_answers_someone_else(text: str, note: str) -> bool:
    """Whether a tweet of the data answers someone other than the brand its ``note`` names.

    A tweet that starts with @handles answers the first of them. It answers the
    brand when that handle holds a word of the brand's name (``@Spectranet_NG`` for
    Spectranet) or a company word (``@EAHelp``, ``@RockstarSupport``); otherwise a
    user (``@Peterhenryok @tizeti i hope you have been refunded?``). In serving the
    connector says whom a reply answers (``reply_to_author``); this reads it off the
    text for the labelled tweets, which carry no thread fields.
    """
    leading = _LEADING_HANDLES.match(text)
    if not leading:
        return False
    handle = _HANDLE.findall(leading.group(1))[0].lower().lstrip("@")
    if any(word in handle for word in _brand_words(note)):
        return False
    return not _COMPANY_HANDLE_WORDS.search(handle)


def post_kind_of_mention(
    source: str, reply_to_id: str | None, replies_to_brand: bool = False
) -> str:
    """The kind of a post a connector read: from its source and its parent, if any.

    A reply (``reply_to_id`` set, on any source) is ``reply_to_brand`` when its
    parent is the brand's own post (``replies_to_brand``: the listener's
    ``signals["reply_to_own_account"]``), else ``comment``; a post that is no reply
    is ``review`` on a review source, ``post`` (opens a thread) on a source that
    reports replies, and ``unknown`` anywhere else (rss, a webhook without thread
    fields).
    """
    if reply_to_id:
        return "reply_to_brand" if replies_to_brand else "comment"
    if source in REVIEW_SOURCES:
        return "review"
    if source in THREADED_SOURCES:
        return "post"
    return UNKNOWN


def post_kind_of_row(row: Mapping[str, Any]) -> str:
    """The kind of a labelled row: its own ``post_kind``, else from its fields or note.

    In order: a ``post_kind`` field naming one of :data:`POST_KINDS`; a ``thread``
    of ``reply`` (``reply_to_brand`` for a synthetic case of
    :data:`SUPPORT_THREAD_CASES`, else ``comment``; a brand's answer to a review is
    such a reply); a ``platform`` of ``review``; a ``thread`` of ``opens`` (post);
    the words of ``note`` ("Trustpilot review ..." -> review, "Reddit post in ..."
    -> post, "Reddit comment ..." -> comment; a tweet of "thread position unknown"
    -> comment when it answers someone other than the brand
    (:func:`tweet_answers_someone_else`), else unknown; anything else unknown); a
    Mention-shaped row (``id`` and ``source``, e.g. the demo's sample stream) by
    :func:`post_kind_of_mention`. Rows with none of these (the old tweet sets) are
    unknown.
    """
    own = row.get("post_kind")
    if isinstance(own, str) and own in POST_KINDS:
        return own
    thread = row.get("thread")
    if thread == "reply":
        return "reply_to_brand" if row.get("case") in SUPPORT_THREAD_CASES else "comment"
    if row.get("platform") == "review":
        return "review"
    if thread == "opens":
        return "post"
    note = row.get("note")
    if isinstance(note, str):
        lowered = note.lower()
        if "position unknown" in lowered:
            if lowered.startswith("tweet") and tweet_answers_someone_else(str(row["text"]), note):
                return "comment"
            return UNKNOWN
        for words, kind in _NOTE_WORDS:
            if words in lowered:
                return kind
        return UNKNOWN
    source, post_id = row.get("source"), row.get("id")
    if isinstance(source, str) and isinstance(post_id, str):
        reply_to = row.get("reply_to_id")
        signals = row.get("signals")
        to_brand = isinstance(signals, Mapping) and bool(signals.get("reply_to_own_account"))
        return post_kind_of_mention(
            source, reply_to if isinstance(reply_to, str) else None, to_brand
        )
    return UNKNOWN


def readable_kind(kind: str | None, known: Sequence[str]) -> str:
    """``kind`` as a model trained with the kinds ``known`` reads it: ``unknown`` if not among them.

    Raises:
        ValueError: ``kind`` is not one of :data:`POST_KINDS`.
    """
    kind = kind or UNKNOWN
    if kind not in POST_KINDS:
        raise ValueError(f"post kind {kind!r} is not one of {', '.join(POST_KINDS)}")
    return kind if kind in known else UNKNOWN


def model_input(text: str, kind: str | None) -> str:
    """The text a ``post_kind`` model reads: ``"[<kind>] <text>"``, or the bare text if unknown.

    The kind is written in words (``[reply to brand] ...``), as the encoder read
    them in pre-training. ``unknown`` (and ``None``) adds nothing: most posts
    (every old training tweet, RSS items, other replies) cost no extra tokens, and
    a caller that passes no kinds feeds the model exactly what it trained on for
    posts of unknown place.

    Raises:
        ValueError: ``kind`` is not one of :data:`POST_KINDS`.
    """
    kind = kind or UNKNOWN
    if kind not in POST_KINDS:
        raise ValueError(f"post kind {kind!r} is not one of {', '.join(POST_KINDS)}")
    if kind == UNKNOWN:
        return text
    return f"[{kind.replace('_', ' ')}] {text}"


def with_kind_dropped(text: str, kind: str, rate: float) -> str:
    """``kind``, or ``unknown`` for a fixed share ``rate`` of texts (by SHA-1 of the text).

    Training with some known kinds hidden keeps ``unknown`` a fair default for
    every kind of post, not just the tweets that make up most unknown rows. The
    choice depends on the text only, so reruns hide the same posts.
    """
    if kind == UNKNOWN or rate <= 0:
        return kind
    digest = hashlib.sha1(("post-kind:" + text).encode("utf-8")).digest()
    return UNKNOWN if int.from_bytes(digest[:4], "big") / 2**32 < rate else kind


def row_kinds(rows: Sequence[Mapping[str, Any]], kind_dropout: float = 0.0) -> list[str]:
    """Each labelled row's kind (:func:`post_kind_of_row`).

    A share ``kind_dropout`` of the known ones is shown as unknown (training rows
    only; see :func:`with_kind_dropped`).
    """
    return [
        with_kind_dropped(str(row["text"]), post_kind_of_row(row), kind_dropout) for row in rows
    ]


def model_texts(rows: Sequence[Mapping[str, Any]], kinds: Sequence[str] | None) -> list[str]:
    """What a model reads of each row: :func:`model_input` of its text and kind.

    ``kinds`` ``None`` (a model that does not read kinds) gives the bare texts.
    """
    if kinds is None:
        return [str(row["text"]) for row in rows]
    return [model_input(str(row["text"]), kind) for row, kind in zip(rows, kinds, strict=True)]
