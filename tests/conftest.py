"""Suite-wide fixtures and hooks.

One real Kafka broker serves the whole session (integration, deploy and any other suite
that asks for it): the fixtures live in ``kafka_fixtures.py``. Every test under
tests/integration/ and tests/chaos/ is marked ``integration``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from kafka_fixtures import group_id, kafka_bootstrap, kafka_broker, topics

__all__ = ["group_id", "kafka_bootstrap", "kafka_broker", "topics"]

_INTEGRATION = (Path(__file__).parent / "integration", Path(__file__).parent / "chaos")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if any(folder in item.path.parents for folder in _INTEGRATION):
            item.add_marker(pytest.mark.integration)
