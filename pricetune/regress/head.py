"""What the regress head reads, and pricing with it.

    from pricetune.regress import PriceScale, regress_prices
    regress_prices(model, tokenizer, ["Title: USB-C cable, 2 m"], PriceScale.load(run_dir))
"""

from __future__ import annotations

import math

import torch

from ..data import encode_prompts, in_length_order, is_right_padded, make_prompt
from ..modeling import head_names, is_encoder
from .batches import RegressionCollator
from .scale import PriceScale


def head_outputs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                 pooling: str = "last") -> torch.Tensor:
    """The head's output for each row of a right-padded batch, shape [batch]: read at the last real
    token (`last`, transformers' own sequence-classification output) or on the mean of the final
    hidden states over the real tokens (`mean`)."""
    mask = attention_mask
    if attention_mask is not None and is_right_padded(attention_mask) and not is_encoder(_config(model)):
        # causal attention never lets a real token see the padding after it; transformers finds the
        # last real token from input_ids, so the mask changes nothing but the attention kernel (an
        # encoder's tokens see both ways: it keeps its mask)
        attention_mask = None
    if pooling == "last":
        out = model(input_ids=input_ids, attention_mask=attention_mask).logits
    else:
        pooled = mean_over_tokens(final_states(model, input_ids, attention_mask),
                                  mask if mask is not None else torch.ones_like(input_ids))
        head = score_layer(model)
        out = head(pooled.to(next(head.parameters()).dtype))
    return out.reshape(-1)


def final_states(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """The final, normed hidden states the head reads, [batch, seq, dim]. Through the model's own
    forward, and so through a DDP wrapper, which syncs gradients only for what its forward ran."""
    return model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True).hidden_states[-1]


def mean_over_tokens(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[batch, seq, dim] states averaged over the real tokens of each row (mask 1), in float32."""
    weights = mask.to(torch.float32).unsqueeze(-1)
    return (hidden.float() * weights).sum(1) / weights.sum(1)


def _config(model):
    return getattr(model, "module", model).config  # through DistributedDataParallel


def score_layer(model) -> torch.nn.Module:
    """The scalar head of a (DDP-wrapped, PEFT-wrapped or merged) sequence-classification model:
    `score` for a decoder, `classifier` for a BERT-like encoder."""
    inner = getattr(model, "module", model)  # DistributedDataParallel
    if hasattr(inner, "get_base_model"):  # PEFT: the head is its modules_to_save wrapper (the trained copy)
        inner = inner.get_base_model()
    return getattr(inner, head_names(inner)[0])


@torch.inference_mode()
def regress_prices(model, tokenizer, prompts: list[str], scale: PriceScale, max_length: int = 128,
                   batch_size: int = 16, progress: bool = False) -> list[tuple[str, float | None]]:
    """(text, price) for each prompt, in input order: one forward pass per batch, no decoding."""
    device = next(model.parameters()).device
    collate = RegressionCollator(tokenizer.pad_token_id)

    def run_batch(ids: list[list[int]]) -> list[tuple[str, float | None]]:
        batch = collate([{"input_ids": x} for x in ids])
        out = head_outputs(model, batch["input_ids"].to(device), batch["attention_mask"].to(device), scale.pooling)
        return [(f"{p:.2f}", float(p)) if math.isfinite(p) else ("", None) for p in scale.price(out).tolist()]

    encoded = encode_prompts(tokenizer, [make_prompt(p) for p in prompts], max_length)
    return in_length_order(encoded, batch_size, run_batch, "pricing (regress)", progress)
