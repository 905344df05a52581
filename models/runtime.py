"""ONNX Runtime intent classifier: the serving path (no torch).

Tokenises with the Hugging Face ``tokenizers`` Rust library, sorts posts by
token length and runs them through an int8 ONNX model in small batches, each
padded only to its own longest post (padding is the main cost on CPU, see
PERF-NOTES), then restores input order.

On CPU the batches run in parallel, one single-threaded run per core, rather
than one run at a time spread over every core: the matrices of a batch of 16
short posts are too small for intra-op threads to pay for their
synchronisation (2 cores, dev posts: ~1,200 posts/s vs ~750-900). ONNX
Runtime's SkipLayerNormalization fusion is turned off on CPU: its kernel cost
more than the Add + LayerNormalization it replaces (17% of a run vs ~8%).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tokenizers import Encoding, Tokenizer

from models.evaluation import NEEDS_RESPONSE_LABELS
from models.evaluation import needs_response as _needs_response
from models.interface import Prediction
from models.offsets import apply_offsets
from models.post_kind import (
    INPUT_PREFIX_KEY,
    KINDS_BEFORE_COMMENT,
    POST_KIND_PREFIX,
    POST_KINDS_KEY,
    model_input,
    readable_kind,
)

log = logging.getLogger(__name__)

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "intent-minilm"
DEFAULT_MODEL_FILE = "model.int8.onnx"
GPU_MODEL_FILE = "model.fp16.onnx"
MODEL_NAME = "intent-minilm"
# Graph fusions left off on CPU, measured on the shipped int8 model (one thread, dev
# posts): without SkipLayerNormFusion 631-693 posts/s, with it 498-586.
CPU_DISABLED_FUSIONS = ("SkipLayerNormFusion",)
# id2label name of an optional last output: a needs_response logit (models.train
# --needs-response-head). It is not a label: its sigmoid is the needs_response score.
NEEDS_RESPONSE_OUTPUT = "needs_response"

__all__ = ["DEFAULT_MODEL_DIR", "OnnxIntentClassifier", "available_cores", "resolve_provider"]


CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_cpu_limit(root: Path = CGROUP_ROOT) -> float | None:
    """The CPU quota of this container in cores, or ``None`` when it has none.

    Reads cgroup v2 ``cpu.max`` ("200000 100000" is 2 cores, "max 100000" none)
    or cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (quota -1: none) at
    the cgroup mount, which a container sees as its own cgroup. Unreadable or
    malformed files count as no limit.
    """
    try:
        fields = (root / "cpu.max").read_text(encoding="ascii").split()
        if len(fields) == 2 and fields[0] != "max":
            return int(fields[0]) / int(fields[1])
        if fields:
            return None
    except (OSError, ValueError, ZeroDivisionError):
        pass
    for v1 in ("cpu", "cpu,cpuacct"):
        try:
            quota = int((root / v1 / "cpu.cfs_quota_us").read_text(encoding="ascii"))
            period = int((root / v1 / "cpu.cfs_period_us").read_text(encoding="ascii"))
        except (OSError, ValueError):
            continue
        return quota / period if quota > 0 and period > 0 else None
    return None


def available_cores(cgroup_root: Path = CGROUP_ROOT) -> int:
    """CPU cores this process may use: its affinity mask, capped by a container CPU quota.

    A pod limited to 2 CPUs on a 16-core node gets 2 (quota rounded down, at least
    1), so the runtime does not start 16 parallel runs that the quota then throttles.
    """
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - platforms without sched_getaffinity
        cores = max(1, os.cpu_count() or 1)
    limit = cgroup_cpu_limit(cgroup_root)
    if limit is not None:
        cores = min(cores, max(1, math.floor(limit)))
    return cores


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def _providers(provider: str) -> list[str]:
    """Map the ``provider`` option to ONNX Runtime execution providers.

    Raises:
        ValueError: Unknown provider name.
        RuntimeError: ``cuda`` asked for but this onnxruntime build has no CUDA provider.
    """
    name = provider.lower()
    if name == "cpu":
        return ["CPUExecutionProvider"]
    if name == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise RuntimeError(
                "provider 'cuda' needs onnxruntime-gpu with a working CUDA install "
                "(pip install 'brand-listener[gpu]'); this onnxruntime offers "
                f"{ort.get_available_providers()}"
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    raise ValueError(f"unknown provider {provider!r}: expected 'cpu' or 'cuda'")


def gpu_variant(model_dir: Path, model_file: str = DEFAULT_MODEL_FILE) -> Path | None:
    """The folder's fp16 file to serve on CUDA instead of ``model_file``, if it has one.

    Only the default int8 file has a GPU variant (its int8 kernels are CPU kernels);
    a file asked for by name is served as it is.
    """
    path = model_dir / GPU_MODEL_FILE
    return path if model_file == DEFAULT_MODEL_FILE and path.is_file() else None


def resolve_provider(
    provider: str,
    model_dir: Path,
    model_file: str = DEFAULT_MODEL_FILE,
    available: Sequence[str] | None = None,
) -> str:
    """``"cpu"`` or ``"cuda"`` for the ``provider`` option (``"auto"`` decides).

    ``auto`` picks CUDA when this onnxruntime has the CUDA execution provider and
    the model folder has its GPU variant (``model.fp16.onnx``; the int8 kernels are
    CPU kernels, so the int8 file alone is served on CPU), else CPU.

    Args:
        provider: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        model_dir: The model folder.
        model_file: The ONNX file asked for; ``auto`` only switches the default one.
        available: Execution providers of this onnxruntime (default: asked).

    Raises:
        ValueError: Unknown provider name.
    """
    name = provider.lower()
    if name in ("cpu", "cuda"):
        return name
    if name != "auto":
        raise ValueError(f"unknown provider {provider!r}: expected 'auto', 'cpu' or 'cuda'")
    providers = ort.get_available_providers() if available is None else available
    gpu_ready = gpu_variant(model_dir, model_file) is not None
    return "cuda" if "CUDAExecutionProvider" in providers and gpu_ready else "cpu"


class OnnxIntentClassifier:
    """Four-way intent classifier (complaint / praise / question / other) on ONNX Runtime.

    One ONNX Runtime session is shared by all callers; ``predict`` holds no
    mutable state, so it may be called from a worker thread (or several).

    Args:
        model_dir: Folder with the ONNX file, ``tokenizer.json`` and ``config.json``
            (``id2label``). Defaults to the model shipped in this package.
        model_file: ONNX file name inside ``model_dir`` (or an absolute path). With
            ``provider="cuda"`` and the default file, ``model.fp16.onnx`` is used
            when the folder has one (int8 kernels are CPU kernels).
        batch_size: Most posts per inference run after length sorting (12, 16 and
            24 were equally fast on the 2-core machines with two parallel runs:
            1,514-1,567 posts/s on dev posts with model 1.0.1). A call with
            fewer posts than ``batch_size`` times the parallel runs is cut into
            smaller batches so that every run has a share.
        max_length: Tokens kept per post (longer posts are truncated). ``None`` (the
            default) truncates where the folder's ``tokenizer.json`` does, that is as
            the model was trained (trained at 64 tokens; 2.0.1 serves 128); 64 when
            the file sets no truncation.
        provider: ``"auto"`` (the default: CUDA when onnxruntime-gpu sees a GPU and
            the folder has ``model.fp16.onnx``, else CPU; see :func:`resolve_provider`),
            ``"cpu"`` or ``"cuda"`` (needs onnxruntime-gpu).
        threads: CPU threads the classifier uses in all; defaults to the cores this
            process may use. On CPU, ``threads // threads_per_run`` batches run at
            once (ignored with CUDA, where one run at a time is fed).
        threads_per_run: Intra-op threads of one inference run. 1 (the default) runs
            batches side by side, one per thread, which beat one run spread over
            both cores on the 2-core machines; a larger value suits long texts or
            large batches, whose matrices are big enough to split.
        spinning: Let idle intra-op threads spin instead of sleeping: fastest when
            the model has the cores to itself (a batch job, a benchmark); off
            where other threads need the CPU between runs (the worker's event loop).
            Only matters with ``threads_per_run`` > 1.
        needs_response_threshold: Minimum needs_response score for a post to need
            a response (the model's calibrated decision). The score is the sigmoid
            of the model's needs_response output when ``config.json`` names a last
            output ``needs_response`` (models from 2.0.0), else
            ``P(complaint) + P(question)``. Defaults to
            ``metrics.json`` ``thresholds.needs_response`` in ``model_dir`` (written
            by ``python -m models.report --write``). A model without one has no
            calibrated decision: its predictions carry ``needs_response=None`` (the
            router then applies its own confidence threshold to the top label) and
            :meth:`needs_response` falls back to "top label is complaint or question".
        label_offsets: Per-label log-score offsets: the label is
            ``argmax(log P + offset)`` (``models/calibrate.py`` fits them on a
            deployment's labelled posts). Defaults to ``metrics.json``
            ``thresholds.label_offsets``; none there (the shipped models) or ``{}``:
            plain argmax. Scores and needs_response do not change.

    Raises:
        FileNotFoundError: A model file is missing.
        ValueError: Bad batch size, max length, provider or label mapping.
    """

    def __init__(
        self,
        model_dir: str | os.PathLike[str] | None = None,
        *,
        model_file: str = DEFAULT_MODEL_FILE,
        batch_size: int = 16,
        max_length: int | None = None,
        provider: str = "auto",
        threads: int | None = None,
        threads_per_run: int = 1,
        spinning: bool = True,
        needs_response_threshold: float | None = None,
        label_offsets: Mapping[str, float] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_length is not None and not 8 <= max_length <= 512:
            raise ValueError(f"max_length must be within 8..512, got {max_length}")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        if threads_per_run < 1:
            raise ValueError(f"threads_per_run must be >= 1, got {threads_per_run}")
        self._dir = Path(model_dir) if model_dir is not None else DEFAULT_MODEL_DIR
        requested = provider
        provider = resolve_provider(provider, self._dir, model_file)
        cpu_model_path = self._dir / model_file
        model_path = cpu_model_path
        if provider == "cuda":
            model_path = gpu_variant(self._dir, model_file) or cpu_model_path
        for required in (model_path, self._dir / "tokenizer.json", self._dir / "config.json"):
            if not required.is_file():
                raise FileNotFoundError(f"model file missing: {required}")
        self._batch_size = batch_size

        config = _read_json(self._dir / "config.json")
        id2label = config.get("id2label") or {}
        try:
            outputs = tuple(str(id2label[str(i)]) for i in range(len(id2label)))
        except KeyError as exc:
            raise ValueError(f"config.json id2label is not 0..n-1: {id2label}") from exc
        self._has_head = bool(outputs) and outputs[-1] == NEEDS_RESPONSE_OUTPUT
        self._labels = outputs[:-1] if self._has_head else outputs
        if not self._labels:
            raise ValueError("config.json has no id2label mapping")
        metrics = _read_json(self._dir / "metrics.json")
        version = metrics.get("version") or config.get("model_version") or "unversioned"
        self._name = f"{metrics.get('model', MODEL_NAME)}@{version}"
        if needs_response_threshold is None:
            stored = (metrics.get("thresholds") or {}).get("needs_response")
            needs_response_threshold = float(stored) if stored is not None else None
        self._threshold = needs_response_threshold
        if label_offsets is None:
            label_offsets = (metrics.get("thresholds") or {}).get("label_offsets") or {}
        unknown = set(label_offsets) - set(self._labels)
        if unknown:
            raise ValueError(f"label_offsets for unknown labels {sorted(unknown)}: {self._labels}")
        offsets = np.array([float(label_offsets.get(label, 0.0)) for label in self._labels])
        self._offsets = offsets if offsets.any() else None

        prefix = config.get(INPUT_PREFIX_KEY)
        if prefix not in (None, POST_KIND_PREFIX):
            raise ValueError(
                f"config.json {INPUT_PREFIX_KEY} {prefix!r}: this runtime knows only "
                f"{POST_KIND_PREFIX!r}"
            )
        self._reads_post_kind = prefix == POST_KIND_PREFIX
        self._post_kinds = tuple(config.get(POST_KINDS_KEY) or KINDS_BEFORE_COMMENT)

        self._tokenizer = Tokenizer.from_file(str(self._dir / "tokenizer.json"))
        self._tokenizer.no_padding()
        if max_length is None:
            max_length = int((self._tokenizer.truncation or {}).get("max_length") or 64)
        self._tokenizer.enable_truncation(max_length=max_length)
        self._max_length = max_length
        self._pad_id = int(config.get("pad_token_id") or 0)

        total = threads if threads is not None else available_cores()
        self._session = self._open(model_path, provider, total, threads_per_run, spinning)
        if requested.lower() == "auto" and self.provider != provider:
            # onnxruntime-gpu without a usable GPU falls back to CPU: serve the CPU model.
            log.warning("CUDA was not usable here; classifying on CPU with %s", cpu_model_path)
            provider = "cpu"
            self._session = self._open(cpu_model_path, provider, total, threads_per_run, spinning)
        self._parallel_runs = max(1, total // threads_per_run) if provider == "cpu" else 1
        self._pool = (
            ThreadPoolExecutor(self._parallel_runs, thread_name_prefix="onnx-run")
            if self._parallel_runs > 1
            else None
        )
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._output = self._session.get_outputs()[0].name

    @staticmethod
    def _open(
        model_path: Path, provider: str, total: int, threads_per_run: int, spinning: bool
    ) -> ort.InferenceSession:
        on_cpu = provider == "cpu"
        options = ort.SessionOptions()
        options.intra_op_num_threads = min(threads_per_run, total) if on_cpu else total
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry(
            "session.intra_op.allow_spinning", "1" if spinning else "0"
        )
        # One session serves every parallel run: InferenceSession.run is thread-safe
        # and releases the GIL, and one copy of the weights is shared.
        return ort.InferenceSession(
            str(model_path),
            sess_options=options,
            providers=_providers(provider),
            disabled_optimizers=list(CPU_DISABLED_FUSIONS) if on_cpu else [],
        )

    @property
    def provider(self) -> str:
        """Where the model runs: ``"cuda"`` or ``"cpu"``."""
        return "cuda" if self._session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"

    @property
    def name(self) -> str:
        """``intent-minilm@<version>``, recorded on every classified Mention."""
        return self._name

    @property
    def labels(self) -> tuple[str, ...]:
        """Labels in score order (from ``config.json`` ``id2label``)."""
        return self._labels

    @property
    def max_length(self) -> int:
        """Tokens kept per post, [CLS] and [SEP] included."""
        return self._max_length

    @property
    def batch_size(self) -> int:
        """Posts per inference run."""
        return self._batch_size

    @property
    def parallel_runs(self) -> int:
        """Inference runs that go on at once (one per thread on CPU, 1 on CUDA)."""
        return self._parallel_runs

    def close(self) -> None:
        """Stop the threads of the parallel runs (the classifier cannot be used after)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    @property
    def needs_response_threshold(self) -> float | None:
        """The calibrated minimum needs_response score; ``None``: not calibrated."""
        return self._threshold

    @property
    def has_needs_response_output(self) -> bool:
        """Whether the model has its own needs_response output (else P(c) + P(q) is used)."""
        return self._has_head

    @property
    def reads_post_kind(self) -> bool:
        """Whether the model reads each post's kind (``models/post_kind.py``) before its text."""
        return self._reads_post_kind

    @property
    def post_kinds(self) -> tuple[str, ...]:
        """The kinds the model was trained with; any other kind is read as ``unknown``."""
        return self._post_kinds

    @property
    def label_offsets(self) -> dict[str, float]:
        """Per-label log-score offsets used to pick the label; empty: plain argmax."""
        if self._offsets is None:
            return {}
        return {label: float(v) for label, v in zip(self._labels, self._offsets, strict=True)}

    def needs_response(self, prediction: Prediction) -> bool:
        """Whether a post with this prediction goes to the human queue.

        Args:
            prediction: A Prediction from this classifier.

        Returns:
            ``needs_response_score >= needs_response_threshold`` (or, with no
            threshold, whether the top label is complaint or question).
        """
        if self._threshold is not None and prediction.needs_response_score is not None:
            return prediction.needs_response_score >= self._threshold
        return _needs_response(prediction.scores, self._threshold)

    def predict(
        self, texts: Sequence[str], kinds: Sequence[str | None] | None = None
    ) -> list[Prediction]:
        """Classify ``texts``.

        Args:
            texts: Post texts; an empty sequence gives an empty list.
            kinds: Each post's kind (``review``, ``post``, ``reply_to_brand``,
                ``comment``, ``unknown``; ``None`` or no list: unknown), for a model
                that :attr:`reads_post_kind` (a kind it was not trained with,
                :attr:`post_kinds`, is read as unknown); other models ignore it.

        Returns:
            One Prediction per text, in input order: the label (the most probable,
            or by :attr:`label_offsets` when set), a probability for every label,
            ``needs_response_score`` (the model's needs_response output, or
            ``P(complaint) + P(question)`` for a model without one) and
            ``needs_response`` (that score against :attr:`needs_response_threshold`;
            ``None`` when the model has no threshold).

        Raises:
            TypeError: ``texts`` is a bare string or holds a non-string.
            ValueError: ``kinds`` is not one per text or names an unknown kind.
        """
        probs, need = self.predict_scores(texts, kinds)
        if self._offsets is None:
            chosen = probs.argmax(axis=-1)
        else:
            chosen = apply_offsets(probs, self._offsets)
        predictions = []
        for row, index, nr in zip(probs, chosen, need, strict=True):
            scores = {label: float(p) for label, p in zip(self._labels, row, strict=True)}
            score = float(nr)
            predictions.append(
                Prediction(
                    label=self._labels[int(index)],
                    scores=scores,
                    needs_response=None if self._threshold is None else score >= self._threshold,
                    needs_response_score=score,
                )
            )
        return predictions

    def predict_proba(
        self, texts: Sequence[str], kinds: Sequence[str | None] | None = None
    ) -> np.ndarray:
        """Label probabilities as an array of shape ``(len(texts), len(labels))``.

        Args:
            texts: Post texts, in any order.
            kinds: Each post's kind, as for :meth:`predict`.

        Returns:
            float32 softmax probabilities, rows in input order.

        Raises:
            TypeError: ``texts`` is a bare string or holds a non-string.
        """
        return self.predict_scores(texts, kinds)[0]

    def predict_scores(
        self, texts: Sequence[str], kinds: Sequence[str | None] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Label probabilities and the needs_response score of every text.

        Args:
            texts: Post texts, in any order.
            kinds: Each post's kind, as for :meth:`predict`.

        Returns:
            ``(probabilities, needs_response_score)``: float32 arrays of shapes
            ``(len(texts), len(labels))`` and ``(len(texts),)``, rows in input order.
            The score is the sigmoid of the model's needs_response output, or
            ``P(complaint) + P(question)`` for a model without one.

        Raises:
            TypeError: ``texts`` is a bare string or holds a non-string.
            ValueError: ``kinds`` is not one per text or names an unknown kind.
        """
        if isinstance(texts, str):
            raise TypeError("predict() takes a sequence of texts, not a single string")
        items = list(texts)
        for i, text in enumerate(items):
            if not isinstance(text, str):
                raise TypeError(f"texts[{i}] is {type(text).__name__}, expected str")
        if kinds is not None and len(kinds) != len(items):
            raise ValueError(f"{len(kinds)} kinds for {len(items)} texts")
        if self._reads_post_kind:
            given = kinds if kinds is not None else [None] * len(items)
            items = [
                model_input(text, readable_kind(kind, self._post_kinds))
                for text, kind in zip(items, given, strict=True)
            ]
        out = np.empty((len(items), len(self._labels)), dtype=np.float32)
        need = np.empty(len(items), dtype=np.float32)
        if not items:
            return out, need
        encodings = self._tokenizer.encode_batch(items)
        order = sorted(range(len(items)), key=lambda i: len(encodings[i].ids))
        size = min(self._batch_size, math.ceil(len(order) / self._parallel_runs))
        batches = [order[start : start + size] for start in range(0, len(order), size)]
        groups = [[encodings[i] for i in idx] for idx in batches]
        runner = map if self._pool is None or len(groups) == 1 else self._pool.map
        n = len(self._labels)
        for idx, logits in zip(batches, runner(self._run, groups), strict=True):
            out[idx] = _softmax(logits[:, :n])
            if self._has_head:
                need[idx] = 1.0 / (1.0 + np.exp(-logits[:, n]))
        if not self._has_head:
            cols = [self._labels.index(x) for x in NEEDS_RESPONSE_LABELS if x in self._labels]
            need[:] = out[:, cols].sum(axis=1)
        return out, need

    def _run(self, batch: Sequence[Encoding]) -> np.ndarray:
        width = max(len(enc.ids) for enc in batch)
        ids = np.full((len(batch), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, enc in enumerate(batch):
            ids[row, : len(enc.ids)] = enc.ids
            mask[row, : len(enc.ids)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        result = self._session.run([self._output], feeds)
        return np.asarray(result[0], dtype=np.float32)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return np.asarray(exp / exp.sum(axis=-1, keepdims=True), dtype=np.float32)
