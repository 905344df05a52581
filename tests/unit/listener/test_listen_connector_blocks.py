"""Connector blocks from the environment: secrets and switches as LISTENER_CONNECTORS__... work."""

from __future__ import annotations

import base64

import pytest

from listener.brands import BrandMatcher
from listener.connectors.webhook import WebhookConnector
from listener.errors import FatalError
from listener.listen import build_connectors, from_environment
from listener.settings import ListenerSettings

SECRET = "whsec_" + base64.b64encode(b"k" * 24).decode()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("LISTENER_"):
            monkeypatch.delenv(name)


def test_secrets_given_as_json_in_the_environment_reach_the_connector(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LISTENER_CONNECTORS__WEBHOOK__SECRETS", f'["{SECRET}"]')
    monkeypatch.setenv("LISTENER_CONNECTORS__WEBHOOK__PORT", "0")
    (connector,) = build_connectors(ListenerSettings(), BrandMatcher(()))
    assert isinstance(connector, WebhookConnector)
    assert len(connector.keys) == 1


def test_enabled_false_from_the_environment_switches_a_block_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LISTENER_CONNECTORS__WEBHOOK__ENABLED", "false")
    monkeypatch.setenv("LISTENER_CONNECTORS__WEBHOOK__SECRETS", f'["{SECRET}"]')
    assert build_connectors(ListenerSettings(), BrandMatcher(())) == []
    monkeypatch.setenv("LISTENER_CONNECTORS__WEBHOOK__ENABLED", "maybe")
    with pytest.raises(FatalError, match="connectors.webhook.enabled"):
        build_connectors(ListenerSettings(), BrandMatcher(()))


def test_only_collection_fields_are_json_decoded() -> None:
    from listener.connectors.webhook import WebhookSettings

    options = {"secrets": '["a", "b"]', "path": '["not", "a", "list"]', "port": "8088"}
    decoded = from_environment(options, WebhookSettings)
    assert decoded["secrets"] == ["a", "b"]
    assert decoded["path"] == '["not", "a", "list"]'  # a str field keeps its text
    assert decoded["port"] == "8088"  # scalars validate from strings as they are
    assert from_environment({"secrets": "whsec_plain"}, WebhookSettings) == {
        "secrets": "whsec_plain"  # not JSON: left for validation to name the field
    }
