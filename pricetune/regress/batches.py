"""Regress rows as the model sees them: prompt ids cut exactly as at inference, standardised targets,
and the collator that right-pads them."""

from __future__ import annotations

import torch

from ..data import encode_prompts, map_batched
from .scale import PriceScale


def tokenize_regression_rows(tokenizer, rows: list[dict], max_length: int, scale: PriceScale):
    """A `datasets.Dataset` of prompt ids (cut exactly as at inference) and standardised targets."""

    def encode(batch: dict) -> dict:
        return {"input_ids": encode_prompts(tokenizer, batch["prompt"], max_length),
                "labels": [scale.target(p) for p in batch["price"]]}

    return map_batched(rows, ["prompt", "price"], encode, "tokenizing")


class RegressionCollator:
    """Right-pads prompt ids; float labels. Right padding keeps every real token at the position it
    has alone, so a prompt's output does not depend on its batch."""

    def __init__(self, pad_token_id: int):
        self.pad = pad_token_id

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), self.pad, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        for i, f in enumerate(features):
            ids[i, : len(f["input_ids"])] = torch.tensor(f["input_ids"])
            mask[i, : len(f["input_ids"])] = 1
        batch = {"input_ids": ids, "attention_mask": mask}
        if "labels" in features[0]:
            batch["labels"] = torch.tensor([float(f["labels"]) for f in features])
        return batch
