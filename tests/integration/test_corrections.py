"""``correct``, ``ack --label`` and ``corrections export`` against the suite's real broker."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

from agents.commands.cli import main
from agents.queue.corrections import decode_correction
from integration.helpers import produce, read_all
from listener.record import LABELS, Classification, Mention, encode_mention
from listener.topics import TopicNames


def _queued(native: str, text: str, label: str) -> Mention:
    scores = dict.fromkeys(LABELS, 0.02) | {label: 0.94}
    mention = Mention.create(source="bluesky", native_id=native, text=text, brands=("Flyaway",))
    return mention.with_stage(
        "classified",
        classification=Classification(label=label, scores=scores, model="intent-minilm@1.1.0"),
    )


def _cleanup_policy(bootstrap: str, topic: str) -> str:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        found = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        [by_name] = found.values()
        entry = by_name[topic]["cleanup.policy"]
        return str(entry["value"] if isinstance(entry, dict) else entry)
    finally:
        admin.close()


def test_corrections_are_written_compacted_and_exported_latest_first(
    kafka_bootstrap: str,
    topics: TopicNames,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    praise = _queued("p1", "Flyaway you absolute heroes, rebooked me in 10 min", "complaint")
    reply = _queued("p2", "We're very sorry. Please DM us <script>x</script>", "question")
    produce(
        kafka_bootstrap,
        topics.needs_response,
        [(m.id.encode(), encode_mention(m)) for m in (praise, reply)],
    )
    kafka = ["--bootstrap", kafka_bootstrap, "--topic-prefix", topics.prefix]

    assert main(["correct", praise.id, "--label", "question", "--by", "bob", *kafka]) == 0
    # A second opinion on the same post: the latest one is what the export keeps.
    assert main(["correct", praise.id, "--label", "praise", "--by", "alice", *kafka]) == 0
    assert "corrected bluesky:p1: complaint -> praise" in capsys.readouterr().out
    # ack --label: the correction, then the acknowledgement.
    assert main(["ack", reply.id, "--label", "other", "--by", "carol", *kafka]) == 0
    assert [k for k, _ in read_all(kafka_bootstrap, topics.acks)] == [reply.id.encode()]
    # Not on the queue: refused unless the post is given.
    assert main(["correct", "hn:9", "--label", "praise", *kafka]) == 4
    assert "not on" in capsys.readouterr().err
    assert main(["ack", "hn:9", "--label", "praise", *kafka]) == 4
    # The refused ack --label wrote no acknowledgement.
    assert len(read_all(kafka_bootstrap, topics.acks)) == 1
    argv = ["correct", "hn:9", "--label", "complaint", "--text", "HN is down again", *kafka]
    assert main([*argv, "--old-label", "other", "--no-needs-response"]) == 0

    assert _cleanup_policy(kafka_bootstrap, topics.corrections) == "compact"
    written = [decode_correction(v) for _, v in read_all(kafka_bootstrap, topics.corrections)]
    assert sorted(c.id for c in written) == ["bluesky:p1", "bluesky:p1", "bluesky:p2", "hn:9"]

    out = tmp_path / "out" / "corrections.jsonl"
    assert main(["corrections", "export", "--output", str(out), *kafka]) == 0
    rows = {row["id"]: row for row in map(json.loads, out.read_text().splitlines())}
    assert set(rows) == {"bluesky:p1", "bluesky:p2", "hn:9"}
    assert rows["bluesky:p1"] | {"corrected_at": None} == {
        "text": praise.text,
        "label": "praise",
        "needs_response": False,
        "source": "corrections",
        "split": "train",
        "id": "bluesky:p1",
        "platform": "bluesky",
        "brand": "Flyaway",
        "thread": "opens",
        "old_label": "complaint",
        "model": "intent-minilm@1.1.0",
        "corrected_by": "alice",
        "corrected_at": None,
        "post_kind": "post",  # a Bluesky post that opens its thread, as the model read it
    }
    assert "post_kind" not in rows["hn:9"]  # corrected by id and text: no post to read it from
    assert rows["bluesky:p2"]["text"] == reply.text  # hostile text kept verbatim, as data
    assert (rows["bluesky:p2"]["label"], rows["bluesky:p2"]["old_label"]) == ("other", "question")
    assert (rows["hn:9"]["needs_response"], rows["hn:9"]["old_label"]) == (False, "other")
    assert "wrote 3 correction(s)" in capsys.readouterr().out


def test_export_of_an_empty_topic_writes_an_empty_file(
    kafka_bootstrap: str, topics: TopicNames, tmp_path: Path
) -> None:
    out = tmp_path / "c.jsonl"
    kafka = ["--bootstrap", kafka_bootstrap, "--topic-prefix", topics.prefix]
    assert main(["corrections", "export", "--output", str(out), *kafka]) == 0
    assert out.read_bytes() == b""
    produce(kafka_bootstrap, topics.corrections, [(b"x:1", orjson.dumps({"id": "x:1"}))])
    assert main(["corrections", "export", "--output", str(out), *kafka]) == 0
    assert out.read_bytes() == b""
