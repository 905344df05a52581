"""The classifier contract the agents depend on."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol


class Prediction(NamedTuple):
    """One post's verdict: the chosen label, a probability per label, needs_response.

    Attributes:
        label: The chosen label.
        scores: Probability per label.
        needs_response: The model's calibrated decision
            (``needs_response_score >= `` its threshold); ``None`` when the model
            has no calibrated threshold (callers then decide for themselves).
        needs_response_score: The score that decision compares with the threshold:
            the model's own needs_response output (intent-minilm 2.0.0 on), else
            ``P(complaint) + P(question)``; ``None`` when the classifier does not
            report it.
    """

    label: str
    scores: dict[str, float]
    needs_response: bool | None = None
    needs_response_score: float | None = None


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

    def predict(
        self, texts: Sequence[str], kinds: Sequence[str | None] | None = None
    ) -> list[Prediction]:
        """Classify ``texts``; returns one Prediction per text, in input order.

        ``kinds`` gives each post's place in its thread (``models/post_kind.py``:
        review, post, reply, unknown) to a model that reads it; others ignore it.
        """
        ...


def decide_needs_response(classifier: object, prediction: Prediction) -> bool:
    """needs_response for ``prediction``, by the model's own decision when it has one.

    In order: the decision the prediction carries (the ONNX runtime sets it from
    its calibrated threshold), else the classifier's ``needs_response(prediction)
    -> bool`` when it offers one, else "the top label is complaint or question".

    Args:
        classifier: The classifier that made ``prediction``.
        prediction: One post's prediction.

    Returns:
        Whether the post needs a human response.
    """
    if prediction.needs_response is not None:
        return prediction.needs_response
    rule = getattr(classifier, "needs_response", None)
    if callable(rule):
        return bool(rule(prediction))
    return prediction.label in ("complaint", "question")
