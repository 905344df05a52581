"""The graph that is exported for serving: the last layer computed for [CLS] only.

A BERT sequence classifier reads one vector, the last layer's output at the
[CLS] position (the pooler takes ``hidden[:, 0]``). Every other position of the
last layer is computed and thrown away. :class:`ClsOnlyLastLayer` runs the
first ``n - 1`` layers as usual and the last one for [CLS] alone: keys and
values still come from every token (attention looks at all of them), but the
query, the attention output projection, the feed-forward block and both layer
norms run on one row per post instead of ~28. The result is the same function
(logits within float rounding of the full model; ``models.export`` checks the
exported graph against the plain transformers model and fails past
:data:`MAX_PROB_DIFF`), with about a sixth less compute for a 6-layer model:
measured on the 2-core machine, 1,495-1,532 vs 1,221-1,337 posts/s for the same
int8 weights (``tests/perf/bench_classifier.py --repeats 5``).

Needs torch (the ``train`` extra); serving only sees the exported ONNX graph.
"""

from __future__ import annotations

import math

import torch
from torch import nn

# Largest probability difference allowed between the exported fp32 graph and the
# plain transformers model on dev posts (float rounding is ~1e-6).
MAX_PROB_DIFF = 1e-4


class ClsOnlyLastLayer(nn.Module):
    """Wrap a ``BertForSequenceClassification`` so its last layer runs for [CLS] only.

    The wrapped model is changed in place (its encoder keeps ``n - 1`` layers);
    load a fresh copy for anything else.

    Args:
        model: A BERT-family sequence classifier in eval mode (eager attention).

    Raises:
        ValueError: The model is not a BERT sequence classifier with >= 2 layers.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        bert = getattr(model, "bert", None)
        if bert is None or not hasattr(model, "classifier") or bert.pooler is None:
            raise ValueError("ClsOnlyLastLayer needs a BertForSequenceClassification")
        layers = bert.encoder.layer
        if len(layers) < 2:
            raise ValueError(f"ClsOnlyLastLayer needs >= 2 layers, got {len(layers)}")
        self.model = model
        self.last = layers[-1]
        bert.encoder.layer = layers[:-1]

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor,
    ) -> torch.Tensor:
        """Logits, shape (batch, labels), for right-padded posts starting with [CLS]."""
        hidden = self.model.bert(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            return_dict=True,
        ).last_hidden_state
        attention = self.last.attention.self
        heads, size = attention.num_attention_heads, attention.attention_head_size
        batch, tokens, _ = hidden.shape
        cls = hidden[:, :1]
        query = attention.query(cls).view(batch, 1, heads, size).transpose(1, 2)
        key = attention.key(hidden).view(batch, tokens, heads, size).transpose(1, 2)
        value = attention.value(hidden).view(batch, tokens, heads, size).transpose(1, 2)
        scores = torch.matmul(query, key.transpose(-1, -2)) / math.sqrt(size)
        # The same additive mask as transformers' eager attention: padding gets dtype.min.
        padding = 1.0 - attention_mask[:, None, None, :].to(scores.dtype)
        probs = torch.softmax(scores + padding * torch.finfo(scores.dtype).min, dim=-1)
        context = torch.matmul(probs, value).transpose(1, 2).reshape(batch, 1, heads * size)
        attended = self.last.attention.output(context, cls)
        out = self.last.output(self.last.intermediate(attended), attended)
        return self.model.classifier(self.model.dropout(self.model.bert.pooler(out)))
