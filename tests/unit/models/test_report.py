"""models.report --write: recomputed figures replace the old ones, the rest stays."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from models.report import batch_consistency, carry_over_evaluation
from models.report import main as report_main
from models.runtime import DEFAULT_MODEL_DIR

DEV_ROWS = [
    {"text": "my order never arrived and support won't answer", "label": "complaint"},
    {"text": "thank you so much, the team was wonderful", "label": "praise"},
    {"text": "what time does the store open on sunday?", "label": "question"},
    {"text": "Apple announces new iPad event for next week", "label": "other"},
    {"text": "the app keeps crashing every time I open it", "label": "complaint"},
    {"text": "how do I reset my password?", "label": "question"},
]


def test_write_replaces_recomputed_blocks_and_keeps_the_others(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    for name in ("model.int8.onnx", "tokenizer.json", "config.json", "metrics.json"):
        shutil.copy(DEFAULT_MODEL_DIR / name, model / name)
    metrics = json.loads((model / "metrics.json").read_text())
    metrics["evaluation"] = {
        "dev": {"macro_f1": -1.0},
        "cross_source": {"marker": "from an earlier held-out run"},
        "baselines": {"marker": "from models.baselines"},
    }
    metrics["thresholds"] = {"needs_response": 0.99, "label_offsets": {"praise": 0.5}}
    (model / "metrics.json").write_text(json.dumps(metrics))
    data = tmp_path / "data"
    data.mkdir()
    notes = ["Reddit post in r/UPS", "Trustpilot review of UPS", None, None, None, None]
    rows = [
        dict(row, source="sanders", **({"note": note} if note else {}))
        for row, note in zip(DEV_ROWS, notes, strict=True)
    ]
    (data / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    assert report_main(["--model-dir", str(model), "--data", str(data), "--write"]) == 0

    written = json.loads((model / "metrics.json").read_text())
    evaluation = written["evaluation"]
    # a folder of train.jsonl / dev.jsonl gives one dev set named after the folder
    assert evaluation["dev_sets"]["data"]["n"] == len(DEV_ROWS)
    assert 0.0 <= evaluation["dev_sets"]["data"]["macro_f1"] <= 1.0
    by_kind = evaluation["dev_sets"]["data"]["per_post_kind"]
    assert {k: v["n"] for k, v in by_kind.items()} == {"post": 1, "review": 1, "unknown": 4}
    # the precision / recall trade-off around the operating point, each at its own threshold
    curve = evaluation["dev_sets"]["data"]["needs_response_at_recall"]
    assert list(curve) == ["0.80", "0.85", "0.90", "0.95"]
    assert all(point["recall"] >= float(recall) for recall, point in curve.items())
    thresholds = [point["threshold"] for point in curve.values()]
    assert thresholds == sorted(thresholds, reverse=True)  # more recall, lower threshold
    alone = evaluation["dev_sets"]["data"]["batch_consistency"]
    assert alone["n"] == len(DEV_ROWS)
    assert 0 <= alone["label_differs"] <= len(DEV_ROWS)
    samples_by_kind = evaluation["samples"]["per_post_kind"]
    assert samples_by_kind["post"]["n"] > 0  # bluesky, reddit... openers
    # replies to the brands' own posts earlier in the stream, found as the pipeline finds them
    assert samples_by_kind["reply_to_brand"]["n"] > 0
    assert evaluation["dev"] == {"macro_f1": -1.0}  # an earlier layout's block is not recomputed
    assert evaluation["cross_source"] == {"marker": "from an earlier held-out run"}
    assert evaluation["baselines"] == {"marker": "from models.baselines"}
    assert written["thresholds"]["needs_response"] == evaluation["threshold_selection"]["threshold"]
    assert written["thresholds"]["needs_response"] != 0.99
    assert written["thresholds"]["label_offsets"] == {"praise": 0.5}


def test_a_reexport_keeps_the_evaluation_only_of_the_same_artefact(tmp_path: Path) -> None:
    previous = tmp_path / "metrics.json"
    previous.write_text(
        json.dumps(
            {
                "artefact": {"sha256": "aaa"},
                "thresholds": {"needs_response": 0.35},
                "evaluation": {"dev": {"macro_f1": 0.81}},
            }
        )
    )
    same = {"artefact": {"sha256": "aaa"}}
    carry_over_evaluation(same, previous)
    assert same["thresholds"] == {"needs_response": 0.35}
    assert same["evaluation"] == {"dev": {"macro_f1": 0.81}}
    other = {"artefact": {"sha256": "bbb"}}
    carry_over_evaluation(other, previous)
    assert other == {"artefact": {"sha256": "bbb"}}
    fresh = {"artefact": {"sha256": "aaa"}}
    carry_over_evaluation(fresh, tmp_path / "none.json")
    assert fresh == {"artefact": {"sha256": "aaa"}}


def test_cross_source_scores_every_post_of_the_held_out_source(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    sources = ["sanders", "airline"] * 3
    rows = [dict(row, source=src) for row, src in zip(DEV_ROWS, sources, strict=True)]
    (data / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    train = [dict(row, source="sanders") for row in DEV_ROWS[:4]]
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    out = tmp_path / "report.json"
    args = ["--model-dir", str(DEFAULT_MODEL_DIR), "--data", str(data)]
    held_out = ["--cross-source-model", str(DEFAULT_MODEL_DIR), "--held-out-source", "sanders"]

    assert report_main([*args, *held_out, "--json", str(out)]) == 0

    cross = json.loads(out.read_text())["evaluation"]["cross_source"]
    assert cross["held_out_source"] == "sanders"
    assert cross["all"]["n"] == 3 + 4  # its dev and train posts
    assert cross["dev_part_only"]["n"] == 3
    assert cross["in_source_dev"]["n"] == 3  # the threshold set without it: the airline posts
    assert cross["threshold_selection"]["set"] == "data without sanders"
    # several sources, joined by commas, make one held-out platform
    several = ["--cross-source-model", str(DEFAULT_MODEL_DIR), "--held-out-source", "sanders,x"]
    assert report_main([*args, *several, "--json", str(out)]) == 0
    assert json.loads(out.read_text())["evaluation"]["cross_source"]["all"]["n"] == 7
    with pytest.raises(SystemExit, match="no post of that source"):
        report_main(
            [*args, "--cross-source-model", str(DEFAULT_MODEL_DIR), "--held-out-source", "x"]
        )


class BatchSensitiveClassifier:
    """Scores a post starting "edge" 0.1 higher for complaint when it shares its run."""

    labels = ("complaint", "praise", "question", "other")

    def predict_scores(
        self, texts: list[str], kinds: list[str | None] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        shift = 0.1 if len(texts) > 1 else 0.0
        complaint = [0.45 + shift if t.startswith("edge") else 0.9 for t in texts]
        probs = np.array([[c, 1.0 - c, 0.0, 0.0] for c in complaint], dtype=np.float32)
        return probs, np.array(complaint, dtype=np.float32)


def test_batch_consistency_counts_the_posts_whose_outcome_moves_with_their_batch_mates() -> None:
    clf = BatchSensitiveClassifier()
    rows = [{"text": t} for t in ("edge of a complaint", "a clear complaint", "another one")]
    probs, need = clf.predict_scores([r["text"] for r in rows])

    moved = batch_consistency(clf, rows, 0.5, probs, need)  # type: ignore[arg-type]

    # the borderline post flips from complaint to praise alone, and out of the queue
    assert moved["n"] == 3
    assert moved["label_differs"] == 1
    assert moved["needs_response_differs"] == 1
    assert moved["max_score_change"] == pytest.approx(0.1, abs=1e-4)
    # above the moved scores, the decision holds
    assert batch_consistency(clf, rows, 0.4, probs, need)["needs_response_differs"] == 0  # type: ignore[arg-type]
    empty = batch_consistency(clf, [], 0.5, probs[:0], need[:0])  # type: ignore[arg-type]
    assert empty["n"] == empty["label_differs"] == empty["needs_response_differs"] == 0
