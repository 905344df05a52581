"""Length-bucketed batches for training and scoring the torch classifier (needs torch).

Posts are padded only to the longest post of their batch; training batches are
sorted by length inside seeded windows, scoring batches fully.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel

from models.evaluation import LABELS

Example = tuple[list[int], int]

__all__ = ["Example", "bucketed_batches", "collate", "predict_ids", "predict_logits"]


def bucketed_batches(
    examples: Sequence[Example], batch_size: int, rng: random.Random, window: int = 50
) -> list[list[int]]:
    """Shuffle, sort by length inside windows of ``window`` batches, then shuffle the batches.

    Args:
        examples: Encoded examples.
        batch_size: Posts per batch.
        rng: Seeded random source (the only randomness used).
        window: Batches per sorting window; bigger means less padding, less randomness.

    Returns:
        Lists of example indices, one per batch.
    """
    order = list(range(len(examples)))
    rng.shuffle(order)
    span = batch_size * window
    batches: list[list[int]] = []
    for start in range(0, len(order), span):
        chunk = sorted(order[start : start + span], key=lambda i: len(examples[i][0]))
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def collate(examples: Sequence[Example], indices: Sequence[int], pad_id: int) -> dict[str, Any]:
    """Pad one batch to its own longest post.

    Args:
        examples: Encoded examples.
        indices: The batch's example indices.
        pad_id: The tokenizer's padding id.

    Returns:
        Tensors ``input_ids``, ``attention_mask``, ``token_type_ids`` and ``labels``.
    """
    width = max(len(examples[i][0]) for i in indices)
    ids = torch.full((len(indices), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(indices), width), dtype=torch.long)
    for row, i in enumerate(indices):
        seq = examples[i][0]
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    labels = torch.tensor([examples[i][1] for i in indices], dtype=torch.long)
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "token_type_ids": torch.zeros_like(ids),
        "labels": labels,
    }


@torch.no_grad()
def predict_logits(
    model: PreTrainedModel, examples: Sequence[Example], pad_id: int, batch_size: int = 64
) -> np.ndarray:
    """Raw logits for ``examples`` in input order (eval mode, length-sorted batches).

    Args:
        model: The classifier.
        examples: Encoded examples.
        pad_id: The tokenizer's padding id.
        batch_size: Posts per forward pass.

    Returns:
        A float array, one row of logits per example (the labels', then the
        needs_response head's when the model has one).
    """
    model.eval()
    order = sorted(range(len(examples)), key=lambda i: len(examples[i][0]))
    out = np.zeros((len(examples), int(model.config.num_labels or len(LABELS))), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = collate(examples, idx, pad_id)
        batch.pop("labels")
        out[idx] = model(**batch).logits.float().numpy()
    return out


def predict_ids(
    model: PreTrainedModel, examples: Sequence[Example], pad_id: int, batch_size: int = 64
) -> np.ndarray:
    """Argmax label ids for ``examples`` in input order (a needs_response head is ignored).

    Args:
        model: The classifier.
        examples: Encoded examples.
        pad_id: The tokenizer's padding id.
        batch_size: Posts per forward pass.

    Returns:
        An int array of predicted label ids.
    """
    logits = predict_logits(model, examples, pad_id, batch_size)
    return np.asarray(logits[:, : len(LABELS)].argmax(-1), dtype=np.int64)
