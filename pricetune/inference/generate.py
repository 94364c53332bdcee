"""Pricing with a generate model: batched generation and the three decodings.

`greedy` (the course's): the most likely next token until the price is complete; `expected`: the
probability-weighted mean of the most likely whole-dollar prices; `median`: the median of prices
drawn from the model, an estimate of the median of its price distribution, the answer that
minimises the expected absolute error, the course's metric (the last two: decode.py).
"""

from __future__ import annotations

import re
import statistics

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from ..data import encode_prompts, in_length_order, make_prompt
from ..errors import PricetuneError
from ..metrics import parse_price
from ..options import DECODES
from .decode import (
    DigitVocab,
    digit_vocab,
    price_distributions,
    sample_prices,
    weighted_price,
)

MAX_NEW_TOKENS = 8  # "12345.67" in a digit-per-token vocabulary, without EOS
_COMPLETE = re.compile(r"\d[\d,]*(?:\.\d*)?[^\d.,]")


class PriceComplete(StoppingCriteria):
    """Done once the generated text holds a number followed by something that is not part of it."""

    def __init__(self, tokenizer, prompt_len: int):
        self.tokenizer, self.prompt_len = tokenizer, prompt_len

    def __call__(self, input_ids, scores, **kwargs):
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_len:], skip_special_tokens=True)
        return torch.tensor([bool(_COMPLETE.search(t)) for t in texts], device=input_ids.device)


def _vocab(model, tokenizer) -> DigitVocab:
    return digit_vocab(tokenizer, model.get_output_embeddings().weight.shape[0])


def left_padded(tokenizer, id_lists: list[list[int]], device):
    """(input_ids, attention_mask) of token-id lists padded on the left, as generation wants them."""
    padded = tokenizer.pad({"input_ids": id_lists}, padding_side="left", return_tensors="pt")
    return padded["input_ids"].to(device), padded["attention_mask"].to(device)


def _greedy(model, tokenizer, input_ids, attention_mask, **_) -> list[tuple[str, float | None]]:
    """The course's decoding: the most likely next token, until the price is complete."""
    n_prompt = input_ids.shape[1]
    out = model.generate(
        input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=MAX_NEW_TOKENS,
        do_sample=False, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        stopping_criteria=StoppingCriteriaList([PriceComplete(tokenizer, n_prompt)]),
    )
    texts = tokenizer.batch_decode(out[:, n_prompt:], skip_special_tokens=True)
    return [(text, parse_price(text)) for text in texts]


def _expected(model, tokenizer, input_ids, attention_mask, width: int = 12, **_) -> list[tuple[str, float | None]]:
    """Probability-weighted mean of the `width` most likely whole-dollar prices."""
    out = []
    for dist in price_distributions(model, input_ids, attention_mask, _vocab(model, tokenizer), width=width):
        best = max(dist, key=lambda pair: pair[1], default=None)
        price = weighted_price([float(v) for v, _ in dist], [lp for _, lp in dist], "expected")
        out.append((f"{best[0]}.00" if best else "", price))
    return out


def _median(model, tokenizer, input_ids, attention_mask, samples: int = 64, **_) -> list[tuple[str, float | None]]:
    """The median of `samples` prices drawn from the model."""
    out = []
    for prices in sample_prices(model, input_ids, attention_mask, _vocab(model, tokenizer), samples=samples):
        price = float(statistics.median_low(prices)) if prices else None
        out.append((f"{price:.2f}" if price is not None else "", price))
    return out


@torch.inference_mode()
def generate_prices(
    model,
    tokenizer,
    prompts: list[str],
    max_length: int = 128,
    batch_size: int = 16,
    decode: str = "greedy",
    width: int = 12,
    samples: int = 64,
    progress: bool = False,
) -> list[tuple[str, float | None]]:
    """(raw text, parsed price) for each prompt, in the input order."""
    if decode not in DECODES:
        raise PricetuneError(f"decode must be one of {', '.join(DECODES)}")
    if samples < 1 or width < 1:
        raise PricetuneError("--samples and width must be >= 1")
    device = next(model.parameters()).device
    decoder = {"greedy": _greedy, "expected": _expected, "median": _median}[decode]

    def run_batch(ids: list[list[int]]) -> list[tuple[str, float | None]]:
        input_ids, attention_mask = left_padded(tokenizer, ids, device)
        return decoder(model, tokenizer, input_ids, attention_mask, width=width, samples=samples)

    encoded = encode_prompts(tokenizer, [make_prompt(p) for p in prompts], max_length)
    return in_length_order(encoded, batch_size, run_batch, f"pricing ({decode})", progress)
