"""Links and @handles masked by the tokenizer's own normalizer (models/masking.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from models.masking import (
    add_masking,
    has_masking,
    load_tokenizer_json_as_is,
    masking_of,
    set_masking,
)
from models.runtime import DEFAULT_MODEL_DIR


def plain_tokenizer() -> Tokenizer:
    tokenizer = Tokenizer.from_file(str(DEFAULT_MODEL_DIR / "tokenizer.json"))
    set_masking(tokenizer, links=False, handles=False)
    return tokenizer


@pytest.fixture()
def masked() -> Tokenizer:
    tokenizer = plain_tokenizer()
    add_masking(tokenizer)
    return tokenizer


def words(tokenizer: Tokenizer, text: str) -> list[str]:
    return tokenizer.encode(text, add_special_tokens=False).tokens


def test_links_become_http_and_handles_become_user(masked: Tokenizer) -> None:
    assert words(masked, "@JetBlue thanks https://t.co/AbC123?x=1 !") == [
        "@", "user", "thanks", "http", "!",
    ]  # fmt: skip
    assert words(masked, "RT @delta_news: @alice@mastodon.social agreed") == [
        "rt", "@", "user", ":", "@", "user", "agreed",
    ]  # fmt: skip


def test_email_addresses_and_plain_text_are_left_alone(masked: Tokenizer) -> None:
    plain = plain_tokenizer()
    for text in ("write to joe@example.com please", "my order #123 is late", "a.@b"):
        assert words(masked, text) == words(plain, text)


def test_a_link_with_an_at_sign_is_one_link(masked: Tokenizer) -> None:
    assert words(masked, "see https://mastodon.social/@brand/1234 now") == ["see", "http", "now"]


def test_masking_is_applied_once_and_survives_saving(masked: Tokenizer, tmp_path: Path) -> None:
    assert has_masking(masked)
    before = masked.to_str()
    add_masking(masked)
    assert masked.to_str() == before
    masked.save(str(tmp_path / "tokenizer.json"))
    reloaded = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    assert has_masking(reloaded)
    assert words(reloaded, "@brand hi") == ["@", "user", "hi"]


def test_masks_can_be_taken_off_again() -> None:
    tokenizer = Tokenizer.from_file(str(DEFAULT_MODEL_DIR / "tokenizer.json"))
    set_masking(tokenizer, links=False, handles=False)
    assert not has_masking(tokenizer)
    assert masking_of(tokenizer) == set()
    assert words(tokenizer, "see https://t.co/x")[:4] == ["see", "https", ":", "/"]


def test_a_masked_checkpoint_masks_through_auto_tokenizer(
    masked: Tokenizer, tmp_path: Path
) -> None:
    transformers = pytest.importorskip("transformers")
    masked.save(str(tmp_path / "tokenizer.json"))
    config = json.loads((DEFAULT_MODEL_DIR / "tokenizer_config.json").read_text(encoding="utf-8"))
    config["tokenizer_class"] = "BertTokenizer"
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    rebuilt = transformers.AutoTokenizer.from_pretrained(tmp_path)  # BertTokenizer: steps lost
    assert rebuilt.tokenize("@JetBlue hi") != ["@", "user", "hi"]
    load_tokenizer_json_as_is(tmp_path)
    as_is = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert as_is.tokenize("@JetBlue hi https://t.co/x") == ["@", "user", "hi", "http"]


def test_links_only_keeps_handles() -> None:
    tokenizer = plain_tokenizer()
    add_masking(tokenizer, links=True, handles=False)
    assert masking_of(tokenizer) == {"links"}
    assert words(tokenizer, "@bob see https://t.co/x") == ["@", "bob", "see", "http"]
    add_masking(tokenizer, links=True, handles=True)
    assert masking_of(tokenizer) == {"links", "handles"}
    assert words(tokenizer, "@bob see https://t.co/x") == ["@", "user", "see", "http"]
    # links stay first when handles are added later: a link's "@" is not a handle
    assert words(tokenizer, "https://mastodon.social/@brand/1 ok") == ["http", "ok"]


def test_the_shipped_model_masks_links_only() -> None:
    shipped = Tokenizer.from_file(str(DEFAULT_MODEL_DIR / "tokenizer.json"))
    assert masking_of(shipped) == {"links"}
    assert words(shipped, "@Delta lost my bag https://t.co/AbC") == [
        "@", "delta", "lost", "my", "bag", "http",
    ]  # fmt: skip
