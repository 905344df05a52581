"""Per-label offsets: the fit, its cross-validation, the runtime option and the command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.calibrate import apply_offsets, cross_validate, fit_label_offsets, macro_f1, main
from models.runtime import DEFAULT_MODEL_DIR, OnnxIntentClassifier

SAMPLES = Path(__file__).resolve().parents[3] / "listener" / "samples"


def _shifted(n: int = 600, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Two-label posts whose label 0 is systematically under-scored (a prior shift)."""
    rng = np.random.default_rng(seed)
    gold = rng.integers(0, 2, n)
    p0 = np.clip(np.where(gold == 0, 0.42, 0.1) + rng.normal(0, 0.08, n), 0.01, 0.99)
    return np.stack([p0, 1 - p0], axis=1), gold


def test_fit_recovers_a_prior_shift_and_cross_validation_shows_it() -> None:
    probs, gold = _shifted()
    plain = macro_f1(gold, probs.argmax(axis=1), 2)
    offsets = fit_label_offsets(probs, gold, reference=1)
    assert offsets[1] == 0.0 and offsets[0] > 0
    assert macro_f1(gold, apply_offsets(probs, offsets), 2) > plain + 0.2
    cv = cross_validate(probs, gold, reference=1)
    assert cv["without"] == pytest.approx(plain, abs=1e-4)
    assert cv["with"] > cv["without"] + 0.2


def test_fit_keeps_zero_offsets_when_argmax_is_already_best() -> None:
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.4, 0.6]])
    gold = np.array([0, 1, 0, 1])
    assert not fit_label_offsets(probs, gold, reference=1).any()


def _model_copy(tmp_path: Path, thresholds: dict[str, object]) -> Path:
    tmp_path.mkdir(exist_ok=True)
    for name in ("model.int8.onnx", "tokenizer.json", "config.json"):
        (tmp_path / name).symlink_to(DEFAULT_MODEL_DIR / name)
    metrics = json.loads((DEFAULT_MODEL_DIR / "metrics.json").read_text(encoding="utf-8"))
    metrics["thresholds"] = thresholds
    (tmp_path / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    return tmp_path


def test_the_shipped_models_have_no_offsets() -> None:
    assert OnnxIntentClassifier().label_offsets == {}
    assert OnnxIntentClassifier(DEFAULT_MODEL_DIR.parent / "intent-minilm-l3").label_offsets == {}


def test_runtime_applies_stored_offsets_to_the_label_only(tmp_path: Path) -> None:
    text = "saw the new store on main street"
    plain = OnnxIntentClassifier().predict([text])[0]
    model = _model_copy(tmp_path, {"needs_response": 0.3529, "label_offsets": {"praise": 30.0}})
    shifted = OnnxIntentClassifier(model)
    assert shifted.label_offsets == {
        "complaint": 0.0,
        "praise": 30.0,
        "question": 0.0,
        "other": 0.0,
    }
    got = shifted.predict([text])[0]
    assert got.label == "praise"
    assert got.scores == pytest.approx(plain.scores, abs=1e-6)
    assert got.needs_response == plain.needs_response
    # an explicit {} switches them off
    assert OnnxIntentClassifier(model, label_offsets={}).predict([text])[0].label == plain.label


def test_offsets_for_an_unknown_label_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown labels"):
        OnnxIntentClassifier(label_offsets={"rant": 1.0})


def test_calibrate_command_writes_offsets_into_the_model_copy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = _model_copy(tmp_path / "model", {"needs_response": 0.3529})
    posts = tmp_path / "posts.jsonl"
    lines = (SAMPLES / "brand_posts.jsonl").read_text(encoding="utf-8").splitlines()[:120]
    posts.write_text("\n".join(lines) + "\n", encoding="utf-8")
    labels = SAMPLES / "brand_posts.labels.jsonl"
    assert (
        main(["--input", str(posts), "--labels", str(labels), "--model-dir", str(model), "--write"])
        == 0
    )
    out = capsys.readouterr().out
    assert '"cv_macro_f1"' in out
    metrics = json.loads((model / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["thresholds"]["needs_response"] == 0.3529  # kept
    assert set(metrics["thresholds"]["label_offsets"]) == {
        "complaint",
        "praise",
        "question",
        "other",
    }
    assert metrics["label_offsets_fit"]["n"] > 100
    stored = metrics["thresholds"]["label_offsets"]
    assert OnnxIntentClassifier(model).label_offsets == (stored if any(stored.values()) else {})


def test_calibrate_will_not_write_into_the_shipped_folder_by_default() -> None:
    with pytest.raises(SystemExit):
        main(["--input", str(SAMPLES / "brand_posts.jsonl"), "--write"])
