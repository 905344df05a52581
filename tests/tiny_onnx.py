"""A tiny ONNX stand-in for the intent model whose output shows what it was fed (unit tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

# logits = (number of tokens) * ROW: a known output for every post
ROW = np.array([[0.1, 0.0, -0.1, 0.05, 0.2]], dtype=np.float32)


def token_count_model(path: Path) -> None:
    """input_ids -> count of tokens -> times ROW: five logits per post."""
    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"])
    mask = helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"])
    out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 5])
    row = helper.make_tensor("row", TensorProto.FLOAT, [1, 5], ROW.ravel().tolist())
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    nodes = [
        helper.make_node("Cast", ["attention_mask"], ["m"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["m", "axes"], ["n"], keepdims=1),
        helper.make_node("MatMul", ["n", "row"], ["logits"]),
    ]
    graph = helper.make_graph(nodes, "tiny", [ids, mask], [out], initializer=[row, axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
