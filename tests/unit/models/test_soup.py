"""models.soup: the weight average of several students, and what it refuses to average."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.soup import average_tensors, main, soup_log


def test_float_tensors_are_averaged_in_their_own_dtype() -> None:
    a = {"w": np.array([[1.0, 2.0]], dtype=np.float32), "ids": np.array([0, 1, 2])}
    b = {"w": np.array([[3.0, -2.0]], dtype=np.float32), "ids": np.array([0, 1, 2])}
    soup = average_tensors([a, b])
    np.testing.assert_array_equal(soup["w"], np.array([[2.0, 0.0]], dtype=np.float32))
    assert soup["w"].dtype == np.float32
    np.testing.assert_array_equal(soup["ids"], [0, 1, 2])


@pytest.mark.parametrize(
    ("other", "message"),
    [
        ({"w": np.zeros((1, 2), np.float32)}, "other tensors"),
        ({"w": np.zeros((2, 2), np.float32), "ids": np.array([0, 1, 2])}, "shape"),
        ({"w": np.zeros((1, 2), np.float32), "ids": np.array([2, 1, 0])}, "integer tensors"),
    ],
)
def test_members_that_are_not_the_same_model_are_refused(
    other: dict[str, np.ndarray], message: str
) -> None:
    first = {"w": np.ones((1, 2), np.float32), "ids": np.array([0, 1, 2])}
    with pytest.raises(ValueError, match=message):
        average_tensors([first, other])
    with pytest.raises(ValueError, match="at least one"):
        average_tensors([])


def test_the_log_keeps_each_member_and_refuses_mixed_token_lengths() -> None:
    logs = [
        {"seed": 1, "max_length": 64, "wall_seconds": 800, "history": [1], "data": ["a"]},
        {"seed": 2, "max_length": 64, "wall_seconds": 820, "history": [2], "data": ["a"]},
    ]
    log = soup_log(logs, "python -m models.soup ...", 3.0)
    assert log["seed"] == [1, 2]
    assert log["max_length"] == 64
    assert [s["seed"] for s in log["stages"]] == [1, 2]
    assert all("history" not in s for s in log["stages"])
    assert log["wall_seconds"] == 1623.0
    with pytest.raises(ValueError, match="max_length"):
        soup_log([logs[0], {**logs[1], "max_length": 128}], "", 0.0)


def _member(folder: Path, weight: float, seed: int) -> Path:
    from safetensors.numpy import save_file

    best = folder / "best"
    best.mkdir(parents=True)
    save_file({"w": np.full((2, 2), weight, np.float32)}, str(best / "model.safetensors"))
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (best / name).write_text("{}", encoding="utf-8")
    (folder / "train_log.json").write_text(json.dumps({"seed": seed, "max_length": 64}))
    return folder


def test_main_writes_a_folder_that_export_reads_like_a_trained_one(tmp_path: Path) -> None:
    from safetensors.numpy import load_file

    a = _member(tmp_path / "a", 1.0, 1)
    b = _member(tmp_path / "b", 4.0, 2)
    out = tmp_path / "soup"
    assert main(["--member", str(a), "--member", str(b), "--out", str(out)]) == 0
    np.testing.assert_array_equal(load_file(out / "best" / "model.safetensors")["w"], 2.5)
    assert json.loads((out / "train_log.json").read_text())["seed"] == [1, 2]
    assert (out / "best" / "tokenizer.json").is_file()


def test_main_refuses_a_member_with_another_tokenizer(tmp_path: Path) -> None:
    a = _member(tmp_path / "a", 1.0, 1)
    b = _member(tmp_path / "b", 4.0, 2)
    (b / "best" / "tokenizer.json").write_text('{"other": 1}', encoding="utf-8")
    with pytest.raises(SystemExit, match="differs"):
        main(["--member", str(a), "--member", str(b), "--out", str(tmp_path / "soup")])
    with pytest.raises(SystemExit, match="at least 2"):
        main(["--member", str(a), "--out", str(tmp_path / "soup")])
