"""Label corrections: the record, the training row, the counting agent."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from agents.commands.cli import main
from agents.queue.corrections import Correction, decode_correction, training_row
from listener.record import LABELS, Classification, Mention
from models.post_kind import post_kind_of_row

TRAIN = Path("/work/shared/data/intent/train.jsonl")


def _queued(label: str = "complaint") -> Mention:
    scores = dict.fromkeys(LABELS, 0.02) | {label: 0.94}
    return Mention.create(
        source="bluesky",
        native_id="p1",
        text="Flyaway you absolute heroes, rebooked me in 10 min",
        brands=("Flyaway",),
        lang="en",
        reply_to_id="bluesky:p0",
    ).with_stage(
        "classified",
        classification=Classification(label=label, scores=scores, model="intent-minilm@1.1.0"),
    )


def test_correction_of_a_queued_post() -> None:
    c = Correction.of(_queued(), mention_id="bluesky:p1", new_label="praise", by="alice", at=1e9)
    assert (c.old_label, c.new_label, c.needs_response, c.by) == (
        "complaint",
        "praise",
        False,
        "alice",
    )
    assert (c.source, c.brands, c.thread, c.model) == (
        "bluesky",
        ("Flyaway",),
        "reply",
        "intent-minilm@1.1.0",
    )
    assert decode_correction(c.encode()) == c


def test_needs_response_follows_the_label_unless_given() -> None:
    question = Correction.of(None, mention_id="x:1", new_label="question", text="how?")
    assert question.needs_response is True and question.old_label is None
    assert question.source == "x" and question.thread is None
    quiet = Correction.of(
        None, mention_id="x:1", new_label="complaint", text="meh", needs_response=False
    )
    assert quiet.needs_response is False


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"new_label": "angry", "text": "x"}, "new_label"),
        ({"new_label": "praise", "text": "   "}, "text"),
        ({"new_label": "praise"}, "text"),  # no mention, no text
    ],
)
def test_bad_corrections_are_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Correction.of(None, mention_id="x:1", **fields)


def test_decode_refuses_what_is_not_a_correction() -> None:
    with pytest.raises(ValueError, match="not valid JSON"):
        decode_correction(b"\x00")
    with pytest.raises(ValueError, match="new_label"):
        decode_correction(b'{"id": "x:1", "text": "t", "needs_response": true, "at": 1}')
    # Fields added by a later version are ignored.
    newer = Correction.of(None, mention_id="x:1", new_label="other", text="t", at=5.0)
    body = json.loads(newer.encode()) | {"reviewed": True}
    assert decode_correction(json.dumps(body).encode()) == newer


def test_training_row_has_the_training_data_fields() -> None:
    c = Correction.of(_queued(), mention_id="bluesky:p1", new_label="praise", by="al", at=0.0)
    row = training_row(c)
    assert {k: row[k] for k in ("text", "label", "needs_response", "source", "split")} == {
        "text": "Flyaway you absolute heroes, rebooked me in 10 min",
        "label": "praise",
        "needs_response": False,
        "source": "corrections",
        "split": "train",
    }
    assert row["corrected_at"] == "1970-01-01T00:00:00+00:00"
    assert (row["old_label"], row["platform"], row["brand"]) == ("complaint", "bluesky", "Flyaway")
    # where the post sat (a reply not known to answer the brand) trains with the row
    assert row["post_kind"] == "comment" and post_kind_of_row(row) == "comment"
    to_brand = _queued().model_copy(update={"signals": {"reply_to_own_account": ["Flyaway"]}})
    row = training_row(Correction.of(to_brand, mention_id="bluesky:p1", new_label="praise"))
    assert post_kind_of_row(row) == "reply_to_brand"
    review = Mention.create(source="trustpilot", native_id="r1", text="Two weeks and no refund")
    row = training_row(Correction.of(review, mention_id="trustpilot:r1", new_label="complaint"))
    assert post_kind_of_row(row) == "review"
    # a correction without its post (only an id and text) trains as unknown
    bare = training_row(Correction.of(None, mention_id="x:1", new_label="question", text="how?"))
    assert "post_kind" not in bare and post_kind_of_row(bare) == "unknown"
    if TRAIN.is_file():  # the shared training data: every field it requires is here
        with TRAIN.open() as fh:
            first = json.loads(fh.readline())
        assert set(first) <= set(row)


def test_worker_counts_corrections_by_old_and_new_label(build: Any, wait_until: Any) -> None:
    pipeline, registry = build()
    [agent] = [a for a in pipeline.app.agents.values() if a.name.endswith("count_corrections")]
    good = Correction.of(_queued(), mention_id="bluesky:p1", new_label="praise", at=1.0)
    unknown = Correction.of(None, mention_id="x:2", new_label="other", text="t", at=2.0)
    metric = "brandlistener_label_corrections_total"

    async def scenario() -> None:
        async with agent.test_context() as ctx:
            await ctx.put(good.encode(), key=b"bluesky:p1")
            await ctx.put(b"not json", key=b"x:9")
            await ctx.put(None, key=b"x:8")  # a tombstone
            await ctx.put(unknown.encode(), key=b"x:2")
            await wait_until(
                lambda: (
                    registry.get_sample_value(
                        metric, {"old_label": "unknown", "new_label": "other", "source": "x"}
                    )
                    == 1
                )
            )

    asyncio.run(scenario())
    pair = {"old_label": "complaint", "new_label": "praise", "source": "bluesky"}
    assert registry.get_sample_value(metric, pair) == 1


def test_correct_needs_a_label_and_a_valid_id(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["correct", "bluesky:1"])
    assert main(["correct", "nocolon", "--label", "praise", "--text", "t"]) == 2
    assert "not a Mention id" in capsys.readouterr().err
