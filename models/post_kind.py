"""Where a post sits in its thread, as a model input: ``review``, ``post``, ``reply``, ``unknown``.

The guideline's needs_response depends on context the text alone does not carry:
a complaint in a Reddit comment between users needs no answer from the brand, the
same words opening a thread (or a review addressed to the company) do. The
labellers of the intent-v2 posts saw that context (each row's ``note``: "Reddit
comment in r/UPS", "Trustpilot review of ...", "thread position unknown"), and the
connectors see it too (``Mention.reply_to_id``, review signals). A model trained
with ``models.train --post-kind`` reads it as a short prefix of its input,
``"[reply] <text>"``, and says so in its ``config.json`` (``input_prefix``:
``"post_kind"``), so the runtime adds the same prefix in serving.

Four kinds, the same for every platform, so a source the training data never had
still maps onto one the model knows:

- ``review``: a review of the brand's product or business (it opens a thread
  addressed to the company);
- ``post``: opens a thread (a Reddit submission, a Bluesky post that replies to
  nothing, a Hacker News story);
- ``reply``: answers another post or comment (a Reddit comment, a Bluesky reply);
- ``unknown``: the source does not say (tweets of the old data and of
  ``twitter2020``/``isp_tweets``, RSS items, webhooks without thread fields).

Pure Python: the training, evaluation and serving code all import it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

POST_KINDS = ("review", "post", "reply", "unknown")
UNKNOWN = "unknown"
# config.json key naming the input prefix a model was trained with, and its value.
INPUT_PREFIX_KEY = "input_prefix"
POST_KIND_PREFIX = "post_kind"

__all__ = [
    "INPUT_PREFIX_KEY",
    "POST_KINDS",
    "POST_KIND_PREFIX",
    "REVIEW_SOURCES",
    "THREADED_SOURCES",
    "UNKNOWN",
    "model_input",
    "model_texts",
    "post_kind_of_mention",
    "post_kind_of_row",
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

# The thread field of synthetic.jsonl rows, and the words of a row's ``note`` that name
# where the labeller saw it (../shared/data/intent-v2/README.md), first match wins.
_THREAD_FIELD = {"opens": "post", "reply": "reply"}
_NOTE_WORDS = (
    ("review", "review"),
    ("comment", "reply"),
    ("reply", "reply"),
    ("post in", "post"),
    ("submission", "post"),
)


def post_kind_of_mention(source: str, reply_to_id: str | None) -> str:
    """The kind of a post a connector read: from its source and its parent, if any.

    A reply (``reply_to_id`` set, on any source) is ``reply``; else a review
    source's post is ``review``, a threaded source's post opens a thread
    (``post``), and anything else (rss, a webhook without thread fields) is
    ``unknown``.
    """
    if reply_to_id:
        return "reply"
    if source in REVIEW_SOURCES:
        return "review"
    if source in THREADED_SOURCES:
        return "post"
    return UNKNOWN


def post_kind_of_row(row: Mapping[str, Any]) -> str:
    """The kind of a labelled row: its own ``post_kind``, else from its fields or note.

    In order: a ``post_kind`` field naming one of :data:`POST_KINDS`; a ``thread``
    of ``reply`` (a brand's answer to a review is a reply); a ``platform`` of
    ``review``; a ``thread`` of ``opens`` (post); the
    words of ``note`` ("Trustpilot review ..." -> review, "Reddit comment ..." ->
    reply, "Reddit post in ..." -> post; "thread position unknown" and anything
    else -> unknown); a Mention-shaped row (``id`` and ``source``, e.g. the demo's
    sample stream) by :func:`post_kind_of_mention`. Rows with none of these (the
    old tweet sets) are unknown.
    """
    own = row.get("post_kind")
    if isinstance(own, str) and own in POST_KINDS:
        return own
    thread = row.get("thread")
    if thread == "reply":
        return "reply"
    if row.get("platform") == "review":
        return "review"
    if isinstance(thread, str) and thread in _THREAD_FIELD:
        return _THREAD_FIELD[thread]
    note = row.get("note")
    if isinstance(note, str):
        lowered = note.lower()
        if "position unknown" in lowered:
            return UNKNOWN
        for words, kind in _NOTE_WORDS:
            if words in lowered:
                return kind
        return UNKNOWN
    source, post_id = row.get("source"), row.get("id")
    if isinstance(source, str) and isinstance(post_id, str):
        reply_to = row.get("reply_to_id")
        return post_kind_of_mention(source, reply_to if isinstance(reply_to, str) else None)
    return UNKNOWN


def model_input(text: str, kind: str | None) -> str:
    """The text a ``post_kind`` model reads: ``"[<kind>] <text>"`` (``None``: unknown).

    Raises:
        ValueError: ``kind`` is not one of :data:`POST_KINDS`.
    """
    kind = kind or UNKNOWN
    if kind not in POST_KINDS:
        raise ValueError(f"post kind {kind!r} is not one of {', '.join(POST_KINDS)}")
    return f"[{kind}] {text}"


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


def model_texts(
    rows: Sequence[Mapping[str, Any]], post_kind: bool, kind_dropout: float = 0.0
) -> list[str]:
    """What a model reads of each labelled row: its text, or ``"[<kind>] <text>"``.

    Args:
        rows: Rows with ``text`` (and the fields :func:`post_kind_of_row` reads).
        post_kind: Prefix each text with its kind.
        kind_dropout: Share of known kinds shown as ``unknown`` (training rows only;
            see :func:`with_kind_dropped`).
    """
    if not post_kind:
        return [str(row["text"]) for row in rows]
    texts = []
    for row in rows:
        text = str(row["text"])
        kind = with_kind_dropped(text, post_kind_of_row(row), kind_dropout)
        texts.append(model_input(text, kind))
    return texts
