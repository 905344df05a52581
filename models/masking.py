"""Links and @handles replaced by placeholders inside the tokenizer itself.

A link's word pieces (``https : / / t . co / 7 ##xq ...``) carry nothing a
reader would use to tell a complaint from praise, and an @handle mostly names
whom a post is addressed to: ``@JetBlue`` teaches the model airlines, not
intent. :func:`add_masking` puts ``Replace`` steps in front of a
``tokenizers.Tokenizer``'s normalizer: every link becomes ``http`` and every
@handle (``@name``, Mastodon's ``@name@instance``) becomes ``@user``; e-mail
addresses are left alone. Because the steps live in ``tokenizer.json``,
training (``models.train --mask-links --mask-handles``), the exported serving
tokenizer and the Hugging Face checkpoint all see the same text, and the
runtime needs no code of its own for it. transformers' ``AutoTokenizer`` rebuilds
a ``BertTokenizer`` from its vocabulary and drops the steps, so a masked
checkpoint names the generic fast tokenizer class instead
(:func:`load_tokenizer_json_as_is`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tokenizers import Regex, Tokenizer, normalizers

LINK_PATTERN = r"https?://\S+"
# Not inside a word or an e-mail address: "joe@example.com" keeps its "@example".
HANDLE_PATTERN = r"(?<![\w@.])@\w+(?:@[\w.-]*\w)?"
LINK_PLACEHOLDER = " http "
HANDLE_PLACEHOLDER = " @user "
PATTERNS = {"links": LINK_PATTERN, "handles": HANDLE_PATTERN}
PLACEHOLDERS = {"links": LINK_PLACEHOLDER, "handles": HANDLE_PLACEHOLDER}


def _steps(normalizer: normalizers.Normalizer | None) -> list[normalizers.Normalizer]:
    """The normalizer's steps, nested sequences flattened."""
    if normalizer is None:
        return []
    if not isinstance(normalizer, normalizers.Sequence):
        return [normalizer]
    steps: list[normalizers.Normalizer] = []
    index = 0
    while True:
        try:
            step = normalizer[index]
        except IndexError:
            return steps
        steps.extend(_steps(step))
        index += 1


def _masks(step: normalizers.Normalizer, name: str) -> bool:
    """Whether ``step`` is this module's replace step for ``name``."""
    return isinstance(step, normalizers.Replace) and f'Regex("{PATTERNS[name]}")' in repr(step)


def masking_of(tokenizer: Tokenizer) -> set[str]:
    """Which masks (``"links"``, ``"handles"``) ``tokenizer``'s normalizer applies."""
    steps = _steps(tokenizer.normalizer)
    return {name for name in PATTERNS if any(_masks(step, name) for step in steps)}


def has_masking(tokenizer: Tokenizer) -> bool:
    """Whether ``tokenizer`` masks links or handles."""
    return bool(masking_of(tokenizer))


def set_masking(tokenizer: Tokenizer, *, links: bool, handles: bool) -> None:
    """Make ``tokenizer`` mask exactly these, in front of its other normalizer steps.

    Links are replaced first: a link may contain an ``@``.

    Args:
        tokenizer: A ``tokenizers.Tokenizer`` (for a transformers fast tokenizer,
            its ``backend_tokenizer``), changed in place.
        links: Replace every link with ``http``.
        handles: Replace every @handle with ``@user``.
    """
    wanted = [name for name, on in (("links", links), ("handles", handles)) if on]
    steps: list[normalizers.Normalizer] = [
        normalizers.Replace(Regex(PATTERNS[name]), PLACEHOLDERS[name]) for name in wanted
    ]
    steps += [
        step
        for step in _steps(tokenizer.normalizer)
        if not any(_masks(step, name) for name in PATTERNS)
    ]
    tokenizer.normalizer = normalizers.Sequence(steps)


def add_masking(tokenizer: Tokenizer, *, links: bool = True, handles: bool = True) -> None:
    """Add masks to ``tokenizer`` (keeping those it has): :func:`set_masking` with the union.

    Args:
        tokenizer: Changed in place.
        links: Mask links too.
        handles: Mask @handles too.
    """
    present = masking_of(tokenizer)
    set_masking(
        tokenizer, links=links or "links" in present, handles=handles or "handles" in present
    )


def load_tokenizer_json_as_is(folder: Path) -> None:
    """Make ``AutoTokenizer.from_pretrained(folder)`` use ``tokenizer.json`` unchanged.

    Sets ``tokenizer_class`` in ``folder/tokenizer_config.json`` to
    ``PreTrainedTokenizerFast``: a model-specific class (``BertTokenizer``) is
    rebuilt from the vocabulary and loses the masking steps.

    Args:
        folder: A ``save_pretrained`` folder whose ``tokenizer.json`` masks.
    """
    path = folder / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def save_tokenizer(tokenizer: Any, folder: Path) -> None:
    """``tokenizer.save_pretrained(folder)``, marked to load as is when it masks.

    Args:
        tokenizer: A transformers fast tokenizer.
        folder: The checkpoint folder.
    """
    tokenizer.save_pretrained(folder)
    if has_masking(tokenizer.backend_tokenizer):
        load_tokenizer_json_as_is(folder)
