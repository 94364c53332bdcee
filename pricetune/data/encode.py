"""Tokenization, one rule for training and inference: a prompt is cut in its item text, never in the
question or the closing "Price is $"; in training only the completion (and EOS) carries loss.

    from pricetune.data import encode_prompts
    ids = encode_prompts(tokenizer, prompts, max_length=192)
"""

from __future__ import annotations

from typing import Callable

from ..errors import DataError
from .rows import COMPLETION_RESERVE, PRICE_TRAILER


def _split_prompt(prompt: str) -> tuple[str, str]:
    i = prompt.rfind(PRICE_TRAILER)
    if i < 0:
        return prompt, ""
    # Keep the blank line before "Price is $" with the trailer so it is never cut
    j = i
    while j > 0 and prompt[j - 1] in "\n ":
        j -= 1
    return prompt[:j], prompt[j:]


def encode_prompts(tokenizer, prompts: list[str], max_length: int, reserve: int = COMPLETION_RESERVE) -> list[list[int]]:
    """Prompt token ids, each cut to leave `reserve` tokens for the price: the item text loses its
    end, the question line and the closing "Price is $" always stay. Training and inference share
    this; the tokenizer runs once per list (batched)."""
    parts = [_split_prompt(p) for p in prompts]
    bodies = tokenizer([body for body, _ in parts], add_special_tokens=True)["input_ids"]
    tails = tokenizer([tail for _, tail in parts], add_special_tokens=False)["input_ids"]
    out = []
    for (_, tail), body_ids, tail_ids in zip(parts, bodies, tails):
        budget = max_length - reserve - len(tail_ids)
        if budget < 1:
            raise DataError(
                f"max_length {max_length} cannot hold the closing {tail!r} and the price; raise --max-length"
            )
        out.append(body_ids[:budget] + tail_ids)
    return out


def encode_prompt(tokenizer, prompt: str, max_length: int, reserve: int = COMPLETION_RESERVE) -> list[int]:
    """One prompt's ids (`encode_prompts`)."""
    return encode_prompts(tokenizer, [prompt], max_length, reserve)[0]


def encode_examples(tokenizer, prompts: list[str], completions: list[str], max_length: int) -> dict[str, list]:
    """input_ids and labels for training rows (labels are -100 on the prompt)."""
    eos = [tokenizer.eos_token_id]
    completion_ids = [ids + eos for ids in tokenizer(completions, add_special_tokens=False)["input_ids"]]
    prompt_ids = encode_prompts(tokenizer, prompts, max_length)
    return {
        "input_ids": [p + c for p, c in zip(prompt_ids, completion_ids)],
        "labels": [[-100] * len(p) + c for p, c in zip(prompt_ids, completion_ids)],
    }


def encode_example(tokenizer, prompt: str, completion: str, max_length: int) -> dict[str, list[int]]:
    """input_ids and labels for one training row (`encode_examples`)."""
    out = encode_examples(tokenizer, [prompt], [completion], max_length)
    return {key: value[0] for key, value in out.items()}


def map_batched(rows: list[dict], columns: list[str], fn, desc: str):
    """A `datasets.Dataset` of `fn` over `rows`' columns, 1,000 rows per tokenizer call (with a
    progress bar on large sets: the full preset has 800k rows)."""
    from datasets import Dataset

    ds = Dataset.from_dict({c: [r[c] for r in rows] for c in columns})
    # new_fingerprint: the function holds a tokenizer, which datasets cannot hash (it would warn)
    return ds.map(fn, batched=True, batch_size=1000, remove_columns=columns, desc=desc,
                  new_fingerprint=f"{desc}-{len(rows)}")


def tokenize_rows(tokenizer, rows: list[dict], max_length: int):
    """A `datasets.Dataset` with input_ids and labels, ready for the trainer (no further preparation)."""
    return map_batched(rows, ["prompt", "completion"],
                       lambda b: encode_examples(tokenizer, b["prompt"], b["completion"], max_length), "tokenizing")


def is_right_padded(mask) -> bool:
    """True when every row of an attention mask (a [batch, length] tensor) is ones followed only by
    zeros: the layout the training collators make, where causal attention needs no mask."""
    return bool((mask[:, 1:] <= mask[:, :-1]).all())


def in_length_order(encoded: list[list[int]], batch_size: int, run_batch: Callable[[list[list[int]]], list],
                    desc: str, progress: bool = False) -> list:
    """`run_batch` over batches of prompts of similar length (longest first: the memory peak comes at
    once, not after minutes), the results back in input order; a progress bar when asked."""
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    results: list = [None] * len(encoded)
    bar = None
    if progress:
        import sys

        from tqdm.auto import tqdm

        bar = tqdm(total=len(order), desc=desc, unit="item", file=sys.stderr)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        for i, result in zip(idx, run_batch([encoded[i] for i in idx])):
            results[i] = result
        if bar:
            bar.update(len(idx))
    if bar:
        bar.close()
    return results
