"""The exported serving graph (last layer for [CLS] only) computes the plain model's logits.

Needs torch (the ``train`` extra, ``make train-env``): skipped in the runtime-only
environment. Run with ``.venv-train/bin/python -m pytest tests/unit/models/test_serving_graph.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch", reason="needs torch (make train-env)")
transformers = pytest.importorskip("transformers")

from models.serving_graph import ClsOnlyLastLayer  # noqa: E402


def tiny_classifier(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = transformers.BertConfig(
        vocab_size=120,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=4,
        attn_implementation="eager",
    )
    return transformers.BertForSequenceClassification(config).eval()


def padded_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    rows = [[101, 7, 8, 9, 10, 11, 102], [101, 40, 41, 102], [101, 99, 102]]
    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [0] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    return ids, mask, torch.zeros_like(ids)


@torch.no_grad()
def test_same_logits_as_the_full_model_with_padding() -> None:
    ids, mask, types = padded_batch()
    full = tiny_classifier(3)(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
    cls_only = ClsOnlyLastLayer(tiny_classifier(3)).eval()(ids, mask, types)
    assert cls_only.shape == (3, 4)
    torch.testing.assert_close(cls_only, full, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_a_post_alone_and_padded_in_a_batch_get_the_same_logits() -> None:
    graph = ClsOnlyLastLayer(tiny_classifier(5)).eval()
    ids, mask, types = padded_batch()
    batch = graph(ids, mask, types)
    short = graph(ids[2:, :3], mask[2:, :3], types[2:, :3])
    torch.testing.assert_close(batch[2:], short, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_exported_onnx_matches_torch(tmp_path: Path) -> None:
    graph = ClsOnlyLastLayer(tiny_classifier(7)).eval()
    ids, mask, types = padded_batch()
    target = tmp_path / "tiny.onnx"
    axes = {0: "batch", 1: "sequence"}
    torch.onnx.export(
        graph,
        (ids[:2, :4], mask[:2, :4], types[:2, :4]),
        str(target),
        input_names=["input_ids", "attention_mask", "token_type_ids"],
        output_names=["logits"],
        dynamic_axes={name: axes for name in ("input_ids", "attention_mask", "token_type_ids")},
        opset_version=17,
        dynamo=False,
    )
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    feed = {
        "input_ids": ids.numpy(),
        "attention_mask": mask.numpy(),
        "token_type_ids": types.numpy(),
    }
    (onnx_logits,) = session.run(["logits"], feed)
    np.testing.assert_allclose(onnx_logits, graph(ids, mask, types).numpy(), atol=1e-5)


def test_refuses_a_model_without_a_bert_encoder() -> None:
    with pytest.raises(ValueError, match="BertForSequenceClassification"):
        ClsOnlyLastLayer(torch.nn.Linear(2, 2))
