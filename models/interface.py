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


def decide_needs_response(classifier: object, prediction: Prediction) -> bool:
    """needs_response for ``prediction``, by the classifier's own rule when it has one.

    Classifiers may offer ``needs_response(prediction) -> bool`` (the ONNX runtime
    applies its calibrated threshold there); any other classifier falls back to
    "the top label is complaint or question".

    Args:
        classifier: The classifier that made ``prediction``.
        prediction: One post's prediction.

    Returns:
        Whether the post needs a human response.
    """
    rule = getattr(classifier, "needs_response", None)
    if callable(rule):
        return bool(rule(prediction))
    return prediction.label in ("complaint", "question")
