"""The generate objective's trainer: TRL's SFTTrainer, the model writes the price ("64.00").

The fast loss (`fast: true`, the default) computes the LM head only at the few completion positions
instead of over the full vocabulary at every token, and skips the per-step full-vocabulary
entropy/accuracy metrics; right-padded batches run without an attention mask (causal attention
already keeps real tokens from the padding after them). Same loss, same gradients; measured in
docs/PERFORMANCE.md.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from trl import SFTTrainer

from ..config import RunConfig
from ..data import is_right_padded
from .common import AtomicCheckpoints, shared_args


def completion_loss(model, inputs: dict, num_items_in_batch=None, drop_mask: bool = True) -> tuple[torch.Tensor, int]:
    """Mean next-token cross-entropy over labelled positions, computing the LM head only there.

    Returns the loss and the number of labelled tokens. Equal to the stock causal-LM loss: the
    hidden state at position t predicts label t+1, positions labelled -100 are ignored.
    Under DDP the forward goes through the wrapper, which is what synchronises gradients across
    processes (the model then computes logits for one position only); in one process the decoder
    runs alone. Either way the LM head is applied here, at the completion positions only.
    `drop_mask`: run right-padded batches without their attention mask (same result, faster kernel).
    """
    from torch.nn.parallel import DistributedDataParallel

    mask = inputs.get("attention_mask")
    if drop_mask and mask is not None and is_right_padded(mask):
        # Causal attention never lets a real token see the padding after it, so the mask changes
        # nothing that reaches the loss; without it attention takes its unmasked causal kernel
        mask = None
    if isinstance(model, DistributedDataParallel):
        # DDP synchronises gradients through hooks its forward sets up: go through it, with logits
        # for one position only; under mixed precision the outputs come back in float32
        out = model(input_ids=inputs["input_ids"], attention_mask=mask, use_cache=False,
                    output_hidden_states=True, logits_to_keep=1)
        hidden, unwrapped = out.hidden_states[-1], model.module
    else:
        # One process: the decoder alone, without the full model's outputs and the autocast wrapper
        # accelerate puts around the model's forward (a bf16 model runs in bf16 as loaded)
        unwrapped = model
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        hidden = base.get_decoder()(input_ids=inputs["input_ids"], attention_mask=mask, use_cache=False).last_hidden_state
    head = unwrapped.get_output_embeddings()
    hidden = hidden.to(head.weight.dtype)  # the final (normed) hidden state, as the LM head reads it
    targets = inputs["labels"][:, 1:]
    keep = targets != -100
    logits = head(hidden[:, :-1][keep]).float()
    loss_sum = F.cross_entropy(logits, targets[keep], reduction="sum")
    n = int(keep.sum())
    denom = num_items_in_batch if num_items_in_batch is not None else max(n, 1)
    return loss_sum / torch.as_tensor(denom, device=loss_sum.device).clamp(min=1), n


class PricetuneTrainer(AtomicCheckpoints, SFTTrainer):
    """TRL's SFTTrainer with atomic checkpoints and, when `fast`, the completion-only LM head."""

    def __init__(self, *args, fast: bool = True, drop_mask: bool = True, seeded_order: bool = True, **kwargs):
        self.fast, self.drop_mask, self.seeded_order = fast, drop_mask, seeded_order
        super().__init__(*args, **kwargs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not self.fast:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        loss, _ = completion_loss(model, inputs, num_items_in_batch, self.drop_mask)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes
        if model.training and "attention_mask" in inputs:
            self._total_train_tokens += int(inputs["attention_mask"].sum())
        if return_outputs:
            raise NotImplementedError("the fast loss returns no logits; set fast: false for compute_metrics")
        return loss


def build_sft_config(cfg: RunConfig, run_dir: Path, precision: str, device: str, has_eval: bool):
    """Step 5: TRL's SFTConfig (generate objective)."""
    from trl import SFTConfig

    return SFTConfig(**shared_args(cfg, run_dir, precision, device, has_eval), max_length=None)
