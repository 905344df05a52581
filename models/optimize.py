"""Graph fusion and precision variants of an exported fp32 ONNX classifier.

- :func:`fuse`: ONNX Runtime's transformer optimizer (``model_type="bert"``)
  fuses attention, layer norm, GELU and embedding layer norm; it needs the
  graph exported with ``attn_implementation="eager"`` (sdpa is not fused).
- :func:`quantize_int8`: dynamic int8 with per-channel weight scales (the CPU
  artefact); on a fused graph the ``DefaultTensorType`` option is required.
- :func:`to_fp16`: an fp16 copy for the CUDA execution provider (inputs and
  outputs stay int64 / float32, so the runtime feeds it unchanged).

Usage::

    python -m models.optimize --fp32 build/x/model.fp32.onnx --out build/x
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import onnx
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.transformers.optimizer import optimize_model


def fuse(source: Path, target: Path, num_heads: int = 12, hidden_size: int = 384) -> dict[str, int]:
    """Fuse the BERT subgraphs of ``source`` into ``target`` (offline, CPU).

    Args:
        source: fp32 ONNX file (eager attention).
        target: Fused fp32 ONNX file to write.
        num_heads: Attention heads.
        hidden_size: Hidden size.

    Returns:
        Count of each fused operator (e.g. ``{"Attention": 6, ...}``).
    """
    model = optimize_model(
        str(source),
        model_type="bert",
        num_heads=num_heads,
        hidden_size=hidden_size,
        opt_level=1,
        use_gpu=False,
        only_onnxruntime=False,
    )
    model.save_model_to_file(str(target))
    return {k: int(v) for k, v in model.get_fused_operator_statistics().items() if v}


def quantize_int8(source: Path, target: Path) -> None:
    """Int8 dynamic quantisation with per-channel weight scales (per-tensor flips ~13% of labels).

    Args:
        source: fp32 ONNX file (fused or not).
        target: int8 ONNX file to write.
    """
    quantize_dynamic(
        source,
        target,
        per_channel=True,
        weight_type=QuantType.QInt8,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


def to_fp16(source: Path, target: Path, num_heads: int = 12, hidden_size: int = 384) -> None:
    """Fused fp16 variant for the CUDA provider, float32 inputs and outputs kept.

    Args:
        source: fp32 ONNX file (eager attention).
        target: fp16 ONNX file to write.
        num_heads: Attention heads.
        hidden_size: Hidden size.
    """
    model = optimize_model(
        str(source),
        model_type="bert",
        num_heads=num_heads,
        hidden_size=hidden_size,
        opt_level=1,
        use_gpu=True,
        only_onnxruntime=False,
    )
    model.convert_float_to_float16(keep_io_types=True)
    model.save_model_to_file(str(target))


def main(argv: Sequence[str] | None = None) -> int:
    """Write ``model.fused.int8.onnx`` and ``model.fp16.onnx`` next to each other."""
    p = argparse.ArgumentParser(
        prog="python -m models.optimize", description=__doc__.splitlines()[0]
    )
    p.add_argument("--fp32", type=Path, required=True, help="fp32 ONNX (eager attention)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--num-heads", type=int, default=12)
    p.add_argument("--hidden-size", type=int, default=384)
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    fused = args.out / "model.fused.fp32.onnx"
    print(fuse(args.fp32, fused, args.num_heads, args.hidden_size))
    quantize_int8(fused, args.out / "model.fused.int8.onnx")
    to_fp16(args.fp32, args.out / "model.fp16.onnx", args.num_heads, args.hidden_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
