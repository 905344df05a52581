from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest

from listener.errors import SkippableError
from listener.record import (
    LABELS,
    SCHEMA_VERSION,
    Author,
    Classification,
    Mention,
    Routing,
    decode_mention,
    encode_mention,
)


def _mention(**fields: object) -> Mention:
    base: dict[str, object] = {
        "source": "bluesky",
        "native_id": "3kabc",
        "text": "@NimbusMobile no signal in the whole of Harbourside since 9am",
        "created_at": datetime(2026, 3, 1, 9, 30, tzinfo=UTC),
    }
    base.update(fields)
    return Mention.create(**base)  # type: ignore[arg-type]


def _classification() -> Classification:
    return Classification(
        label="complaint",
        scores={"complaint": 0.9, "praise": 0.02, "question": 0.05, "other": 0.03},
        model="minilm-intent@1",
    )


def test_round_trip_keeps_every_field() -> None:
    m = _mention(
        url="https://bsky.example/post/3kabc",
        lang="en",
        author=Author(id="did:plc:x", handle="ana.example", name="Ana", followers=12),
        brands=("Nimbus Mobile",),
        reply_to_id="bluesky:3kaaa",
        thread_id="bluesky:3ka00",
    ).with_stage("classified", classification=_classification())
    m = m.with_stage(
        "routed",
        routing=Routing(
            needs_response=True,
            priority="P2",
            team="network",
            sla_due_at=datetime(2026, 3, 1, 10, 30, tzinfo=UTC),
            rule_ids=("complaint-default",),
        ),
    )
    decoded = decode_mention(encode_mention(m))
    assert decoded == m
    assert decoded.classification is not None
    assert decoded.classification.confidence == pytest.approx(0.9)


def test_encoded_is_json_with_utc_timestamps() -> None:
    obj = orjson.loads(encode_mention(_mention()))
    assert obj["id"] == "bluesky:3kabc"
    assert obj["schema_version"] == SCHEMA_VERSION
    assert obj["created_at"].startswith("2026-03-01T09:30:00")
    assert obj["created_at"].endswith("+00:00")


def test_timestamps_are_normalised_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    m = _mention(created_at=datetime(2026, 3, 1, 11, 30, tzinfo=plus_two))
    assert m.created_at == datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    assert m.created_at.utcoffset() == timedelta(0)
    assert m.ingested_at.utcoffset() == timedelta(0)


def test_naive_timestamp_is_rejected_naming_the_field() -> None:
    with pytest.raises(SkippableError) as info:
        _mention(created_at=datetime(2026, 3, 1, 9, 30))
    assert info.value.reason == "validation"
    assert "created_at" in str(info.value)


@pytest.mark.parametrize(
    ("fields", "field_name"),
    [
        ({"text": "   "}, "text"),
        ({"author": {"followers": -1}}, "author.followers"),
        ({"source": "Blue Sky"}, "source"),
        ({"lang": 5}, "lang"),
        ({"brands": "Nimbus"}, "brands"),
    ],
)
def test_validation_errors_name_the_field(fields: dict[str, object], field_name: str) -> None:
    with pytest.raises(SkippableError) as info:
        _mention(**fields)
    assert info.value.reason == "validation"
    assert str(info.value).startswith(f"{field_name}:") or f"; {field_name}:" in str(info.value)


def test_decode_validation_error_names_nested_field() -> None:
    obj = orjson.loads(encode_mention(_mention()))
    obj["author"]["followers"] = "many"
    with pytest.raises(SkippableError) as info:
        decode_mention(orjson.dumps(obj))
    assert info.value.reason == "validation"
    assert "author.followers" in str(info.value)


@pytest.mark.parametrize("version", [SCHEMA_VERSION + 1, "1", None])
def test_decode_rejects_unknown_schema_version(version: object) -> None:
    obj = orjson.loads(encode_mention(_mention()))
    obj["schema_version"] = version
    with pytest.raises(SkippableError) as info:
        decode_mention(orjson.dumps(obj))
    assert info.value.reason == "schema_version"


def test_decode_accepts_missing_schema_version_as_current() -> None:
    obj = orjson.loads(encode_mention(_mention()))
    del obj["schema_version"]
    assert decode_mention(orjson.dumps(obj)).schema_version == SCHEMA_VERSION


@pytest.mark.parametrize(("data", "fragment"), [(b"{not json", "JSON"), (b"[1]", "list")])
def test_decode_rejects_non_objects(data: bytes, fragment: str) -> None:
    with pytest.raises(SkippableError) as info:
        decode_mention(data)
    assert info.value.reason == "decode"
    assert fragment in str(info.value)


def test_id_is_source_colon_native_id() -> None:
    m = _mention(source="hackernews", native_id="4021")
    assert m.id == "hackernews:4021"


@pytest.mark.parametrize("bad_id", ["reddit:t3_x", "bluesky", "bluesky:"])
def test_id_must_name_its_source(bad_id: str) -> None:
    obj = orjson.loads(encode_mention(_mention()))
    obj["id"] = bad_id
    with pytest.raises(SkippableError) as info:
        decode_mention(orjson.dumps(obj))
    assert "id" in str(info.value)


def test_unknown_field_is_rejected() -> None:
    obj = orjson.loads(encode_mention(_mention()))
    obj["sentiment"] = "angry"
    with pytest.raises(SkippableError, match="sentiment"):
        decode_mention(orjson.dumps(obj))


def test_classification_needs_all_four_scores() -> None:
    with pytest.raises(ValueError, match="scores"):
        Classification(label="praise", scores={"praise": 1.0}, model="m@1")
    assert set(_classification().scores) == set(LABELS)


def test_with_stage_never_mutates() -> None:
    m = _mention()
    before = encode_mention(m)
    later = m.with_stage("classified", at=1234.5, classification=_classification())
    assert encode_mention(m) == before
    assert m.classification is None
    assert "classified" not in m.stage_times
    assert later.stage_times["classified"] == 1234.5
    assert later.stage_times["ingested"] == m.stage_times["ingested"]
    assert later.classification == _classification()
    assert later.id == m.id


def test_mention_is_frozen() -> None:
    m = _mention()
    with pytest.raises(ValueError):
        m.text = "changed"  # type: ignore[misc]


OLD_CLASSIFIED = (
    b'{"schema_version":1,"id":"bluesky:3kabc","source":"bluesky","text":"no signal",'
    b'"created_at":"2026-03-01T09:30:00+00:00","ingested_at":"2026-03-01T09:30:01+00:00",'
    b'"classification":{"label":"other","scores":{"complaint":0.3,"praise":0.0,'
    b'"question":0.25,"other":0.45},"model":"intent-minilm@1.0.0"},'
    b'"stage_times":{"ingested":1772357401.0,"classified":1772357401.2}}'
)
"""A classified record as written before the model's needs_response decision existed."""


def test_a_record_from_before_the_needs_response_fields_still_decodes() -> None:
    decoded = decode_mention(OLD_CLASSIFIED)
    assert decoded.schema_version == 1
    assert decoded.classification is not None
    assert decoded.classification.needs_response is None
    assert decoded.classification.needs_response_score is None


def test_the_model_needs_response_decision_round_trips() -> None:
    classification = Classification(
        label="other",
        scores={"complaint": 0.3, "praise": 0.0, "question": 0.25, "other": 0.45},
        model="intent-minilm@1.0.0",
        needs_response=True,
        needs_response_score=0.55,
    )
    m = _mention().with_stage("classified", classification=classification)
    obj = orjson.loads(encode_mention(m))
    assert obj["classification"]["needs_response"] is True
    assert obj["classification"]["needs_response_score"] == 0.55
    assert decode_mention(encode_mention(m)) == m


@pytest.mark.parametrize("score", [-0.1, 1.5])
def test_needs_response_score_is_a_probability(score: float) -> None:
    obj = orjson.loads(encode_mention(_mention().with_stage("c", classification=_classification())))
    obj["classification"]["needs_response_score"] = score
    with pytest.raises(SkippableError) as info:
        decode_mention(orjson.dumps(obj))
    assert "classification.needs_response_score" in str(info.value)
