"""The deploy tests reuse the integration suite's broker fixtures (one broker per session).

Importing the fixture functions here registers them for tests/deploy; the broker
code itself stays in tests/integration/conftest.py.
"""

from __future__ import annotations

from integration.conftest import group_id, kafka_bootstrap, kafka_broker, topics

__all__ = ["group_id", "kafka_bootstrap", "kafka_broker", "topics"]
