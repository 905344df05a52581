"""Fixtures shared by the integration tests (the broker ones are in tests/kafka_fixtures.py)."""

from __future__ import annotations

import pytest

from agents.settings import AgentSettings


@pytest.fixture(scope="module")
def classifier():  # type: ignore[no-untyped-def]
    """The model the worker runs: the bundled one, or ``AGENTS_MODEL__DIR`` (inherited by it)."""
    from models.runtime import OnnxIntentClassifier

    return OnnxIntentClassifier(AgentSettings().model.dir, batch_size=1)
