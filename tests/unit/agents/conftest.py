"""Unit-test doubles for the agents: a keyword classifier and an in-memory Kafka sender."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from agents.settings import AgentSettings
from agents.worker import Pipeline, build_worker
from listener.record import LABELS, Mention
from models.interface import Prediction

_APP_IDS = itertools.count()


class KeywordClassifier:
    """Labels by keyword (unit tests only); raises on any text containing ``fail_on``."""

    name = "keyword@test"
    labels = LABELS

    def __init__(self, fail_on: str | None = None) -> None:
        self.fail_on = fail_on
        self.calls: list[list[str]] = []
        self.kinds: list[list[str | None] | None] = []

    def predict(
        self, texts: Sequence[str], kinds: Sequence[str | None] | None = None
    ) -> list[Prediction]:
        self.calls.append(list(texts))
        self.kinds.append(None if kinds is None else list(kinds))
        if self.fail_on is not None and any(self.fail_on in t for t in texts):
            raise RuntimeError("model exploded")
        return [self._one(t.lower()) for t in texts]

    @staticmethod
    def _one(text: str) -> Prediction:
        if "broken" in text or "outage" in text:
            label = "complaint"
        elif "?" in text:
            label = "question"
        elif "love" in text:
            label = "praise"
        else:
            label = "other"
        scores = {name: (0.85 if name == label else 0.05) for name in LABELS}
        return Prediction(label, scores)


class RecordingSender:
    """Stands in for Kafka: records what is sent, or refuses topics (the future fails)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None, bytes]] = []
        self.refuse: dict[str, int] = {}  # topic -> how many more sends to refuse
        self.hold: asyncio.Event | None = None  # when set, delivery waits for it

    async def __call__(self, topic: str, key: bytes | None, value: bytes) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.refuse.get(topic, 0) > 0:
            self.refuse[topic] -= 1
            future.set_exception(RuntimeError(f"broker refused a record for {topic}"))
            return future
        self.records.append((topic, key, value))
        if self.hold is None:
            future.set_result(None)
        else:
            hold = self.hold
            asyncio.get_running_loop().create_task(_release(hold, future))
        return future

    def on(self, topic: str) -> list[tuple[bytes | None, bytes]]:
        return [(k, v) for t, k, v in self.records if t == topic]


async def _release(hold: asyncio.Event, future: asyncio.Future[Any]) -> None:
    await hold.wait()
    future.set_result(None)


async def _wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def _mention(native_id: str, text: str) -> Mention:
    return Mention.create(
        source="bluesky", native_id=native_id, text=text, created_at=datetime.now(UTC)
    )


@pytest.fixture
def wait_until() -> Callable[..., Any]:
    """``await wait_until(lambda: cond, timeout=5.0)``."""
    return _wait_until


@pytest.fixture
def make_mention() -> Callable[[str, str], Mention]:
    """``make_mention(native_id, text)``: a fresh raw Mention."""
    return _mention


@pytest.fixture
def keyword_classifier() -> type[KeywordClassifier]:
    return KeywordClassifier


@pytest.fixture
def settings(tmp_path: Path) -> AgentSettings:
    return AgentSettings(
        kafka={"bootstrap_servers": "127.0.0.1:1", "topic_prefix": "unit."},
        app_id=f"unit-agents-{next(_APP_IDS)}",
        batching={"size": 4, "window_s": 0.01},
        data_dir=tmp_path,
    )


@pytest.fixture
def sender() -> RecordingSender:
    return RecordingSender()


@pytest.fixture
def build(
    settings: AgentSettings, sender: RecordingSender
) -> Callable[..., tuple[Pipeline, CollectorRegistry]]:
    built: list[Pipeline] = []

    def _build(classifier: Any = None, **changes: Any) -> tuple[Pipeline, CollectorRegistry]:
        registry = CollectorRegistry()
        chosen = settings.model_copy(update=changes)
        pipeline = build_worker(chosen, classifier or KeywordClassifier(), registry, send=sender)
        built.append(pipeline)
        return pipeline, registry

    yield _build  # type: ignore[misc]
    for pipeline in built:
        pipeline.close()
