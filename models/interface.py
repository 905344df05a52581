"""The classifier contract the agents depend on."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol


class Prediction(NamedTuple):
    """One post's verdict: the chosen label and a probability for every label."""

    label: str
    scores: dict[str, float]


class IntentClassifier(Protocol):
    """Anything that turns a batch of texts into predictions, in input order."""

    @property
    def name(self) -> str:
        """``name@version`` of the model, recorded on every classified Mention."""
        ...

    @property
    def labels(self) -> tuple[str, ...]:
        """The labels this model scores, in score order."""
        ...

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """Classify ``texts``; returns one Prediction per text, in input order."""
        ...
