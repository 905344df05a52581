"""The CUDA path of OnnxIntentClassifier: runs where onnxruntime-gpu sees a GPU, else skipped."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from models.runtime import DEFAULT_MODEL_DIR, GPU_MODEL_FILE, OnnxIntentClassifier

HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not HAS_CUDA,
        reason=(
            "no CUDAExecutionProvider in this onnxruntime "
            f"({', '.join(ort.get_available_providers())}): install brand-listener[gpu] on a "
            "machine with an NVIDIA GPU"
        ),
    ),
]

TEXTS = [
    "my order never arrived and support won't answer",
    "thank you so much, the team was wonderful",
    "what time does the store open on sunday?",
    "Apple announces new iPad event for next week http://t.co/abc",
] * 64


def test_cuda_provider_agrees_with_cpu() -> None:
    gpu = OnnxIntentClassifier(provider="cuda", batch_size=256)
    cpu = OnnxIntentClassifier(provider="cpu")
    got = gpu.predict_proba(TEXTS)
    ref = cpu.predict_proba(TEXTS)
    assert got.shape == ref.shape
    # fp16 (or int8 on CUDA) vs int8 on CPU: labels agree, probabilities close.
    assert np.mean(got.argmax(1) == ref.argmax(1)) >= 0.95
    assert np.abs(got - ref).mean() < 0.05


def test_cuda_uses_the_fp16_variant_when_shipped() -> None:
    if not (DEFAULT_MODEL_DIR / GPU_MODEL_FILE).is_file():
        pytest.skip(f"no {GPU_MODEL_FILE} in {DEFAULT_MODEL_DIR} (python -m models.export --fp16)")
    gpu = OnnxIntentClassifier(provider="cuda")
    assert [p.label for p in gpu.predict(TEXTS[:3])] == ["complaint", "praise", "question"]


def test_auto_runs_on_cuda_when_the_gpu_variant_is_there() -> None:
    if not (DEFAULT_MODEL_DIR / GPU_MODEL_FILE).is_file():
        pytest.skip(f"no {GPU_MODEL_FILE} in {DEFAULT_MODEL_DIR} (python -m models.export --fp16)")
    assert OnnxIntentClassifier(provider="auto").provider == "cuda"
    assert OnnxIntentClassifier(provider="cpu").provider == "cpu"
