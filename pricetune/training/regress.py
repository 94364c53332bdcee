"""The regress objective's trainer: transformers' Trainer on a sequence-classification model whose
head reads the prompt's hidden state (last token or mean), one output trained with L1 or Huber on
standardised log price."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import Trainer

from ..config import RunConfig
from ..modeling import head_names
from ..regress import HEAD_FILE, PriceScale, head_outputs
from .common import AtomicCheckpoints, shared_args


class RegressionTrainer(AtomicCheckpoints, Trainer):
    """transformers' Trainer for the regress objective: L1 (or Huber) on standardised log price,
    the head read at the last prompt token or on the mean over the prompt, all as `scale` says."""

    checkpoint_files = (HEAD_FILE,)
    # The loss is a per-batch mean: Trainer divides it over accumulation steps (the seq-cls model's
    # **kwargs would otherwise make Trainer assume a loss already normalised by num_items_in_batch)
    loss_is_scaled_for_ga = False

    def __init__(self, *args, scale: PriceScale, head_learning_rate: float | None = None, **kwargs):
        # the scale carries the loss and the pooling
        self.scale, self.head_learning_rate = scale, head_learning_rate
        self._total_train_tokens = 0
        super().__init__(*args, **kwargs)

    def create_optimizer(self, model=None):
        """The new head may learn faster than the LoRA weights: its own parameter group."""
        if self.optimizer is not None or self.head_learning_rate is None:
            return super().create_optimizer(model) if self.optimizer is None else self.optimizer
        model = model if model is not None else self.model
        heads = tuple(f"{h}." for h in head_names(model))  # a fully trained model's head has no PEFT wrapper

        def in_head(name: str) -> bool:
            return "modules_to_save" in name or name.startswith(heads)

        head = [p for n, p in model.named_parameters() if p.requires_grad and in_head(n)]
        rest = [p for n, p in model.named_parameters() if p.requires_grad and not in_head(n)]
        optim_cls, optim_kwargs = Trainer.get_optimizer_cls_and_kwargs(self.args, model)
        self.optimizer = optim_cls([
            {"params": rest, "weight_decay": self.args.weight_decay},
            {"params": head, "weight_decay": 0.0, "lr": self.head_learning_rate},
        ], **optim_kwargs)
        return self.optimizer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = head_outputs(model, inputs["input_ids"], inputs.get("attention_mask"), self.scale.pooling)
        loss = self.scale.loss_of(outputs, inputs["labels"])
        if model.training and "attention_mask" in inputs:
            self._total_train_tokens += int(inputs["attention_mask"].sum())
        return (loss, {"logits": outputs}) if return_outputs else loss


def build_regress_args(cfg: RunConfig, run_dir: Path, precision: str, device: str, has_eval: bool):
    """transformers' TrainingArguments for the regress objective (no text, no SFT preparation)."""
    from transformers import TrainingArguments

    return TrainingArguments(**shared_args(cfg, run_dir, precision, device, has_eval),
                             remove_unused_columns=False, prediction_loss_only=True)


def peft_for_training(model, lora, cfg: RunConfig):
    """The base wrapped in LoRA for a plain Trainer, as TRL's SFTTrainer does it for SFT: input
    gradients for checkpointing, and on a quantized base the LoRA weights in bf16 (QLoRA)."""
    from peft import get_peft_model

    model = get_peft_model(model, lora)
    if cfg.gradient_checkpointing:
        model.enable_input_require_grads()
    if cfg.quantization != "none":
        for name, param in model.named_parameters():
            if param.requires_grad and "lora_" in name:
                param.data = param.data.to(torch.bfloat16)
    return model
