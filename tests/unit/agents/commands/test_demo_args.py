"""``brand-listener demo`` flags: the default stays offline; ``--live`` builds a listen config."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.commands.cli import build_parser, main
from agents.commands.demo import live_config
from listener.connectors.bluesky import BlueskySettings
from listener.settings import ListenerSettings


def test_default_demo_is_offline() -> None:
    args = build_parser().parse_args(["demo"])
    assert args.live is None and args.duration is None and args.keyword == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--brand", "acme"], "are for --live"),
        (["demo", "--live", "bluesky"], "needs --brand"),
        (["demo", "--live", "bluesky", "--brand", "acme", "--duration", "0"], "positive"),
    ],
)
def test_bad_live_flags_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main([*argv, "--data-dir", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_live_config_is_valid_listen_settings(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        ["demo", "--live", "bluesky", "--brand", "Acme", "--data-dir", str(tmp_path)]
    )
    config = live_config(args)
    settings = ListenerSettings(**config)
    assert [(b.name, b.keywords) for b in settings.brands] == [("Acme", ("Acme",))]
    assert config["connectors"] == {"bluesky": {"url": BlueskySettings().url}}
    assert settings.listen.cursor_dir == tmp_path / "live-cursors"

    args = build_parser().parse_args(
        ["demo", "--live", "bluesky", "--brand", "acme", "--keyword", "acme corp",
         "--keyword", "acmecorp", "--jetstream-url", "ws://127.0.0.1:1/subscribe"]
    )  # fmt: skip
    config = live_config(args)
    assert config["brands"][0]["keywords"] == ["acme corp", "acmecorp"]
    assert config["connectors"]["bluesky"]["url"] == "ws://127.0.0.1:1/subscribe"


def test_demo_replays_with_the_sample_brands_and_refuses_a_bad_brands_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from listener.samples import BRANDS

    assert build_parser().parse_args(["demo"]).brands == BRANDS
    bad = tmp_path / "brands.yaml"
    bad.write_text("brands:\n  - name: acme\n    own_accounts: {mastodon: [acme]}\n")
    assert main(["demo", "--brands", str(bad), "--data-dir", str(tmp_path)]) == 2
    assert "user@instance" in capsys.readouterr().err
