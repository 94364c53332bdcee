"""Reading a price distribution out of a generate model, one digit token at a time, on top of one
pass over each prompt (its KV cache is shared by every continuation): the most likely whole-dollar
prices (`price_distributions`) and prices drawn from the model (`sample_prices`)."""

from __future__ import annotations

import math
import zlib
from array import array
from dataclasses import dataclass
from functools import lru_cache

import torch

from ..data import MAX_PRICE_DIGITS
from ..errors import PricetuneError


@dataclass(frozen=True)
class DigitVocab:
    """The tokens that spell digits, for walking a price's integer part token by token."""

    ids: torch.Tensor  # token ids whose text is only digits ("7"; "64" or "640" in Llama 3's vocabulary)
    texts: tuple[str, ...]
    is_digit: torch.Tensor  # [vocab] bool
    leading_zero: torch.Tensor  # [len(ids)] bool: "05", "00"...: no price starts with one


@lru_cache(maxsize=8)
def digit_vocab(tokenizer, vocab_size: int) -> DigitVocab:
    pairs = [(i, tokenizer.decode([i])) for i in range(min(len(tokenizer), vocab_size))]
    pairs = [(i, t) for i, t in pairs if t.isascii() and t.isdigit()]
    if not pairs:
        raise PricetuneError("this tokenizer has no digit tokens; use --decode greedy")
    ids = torch.tensor([i for i, _ in pairs])
    is_digit = torch.zeros(vocab_size, dtype=torch.bool)
    is_digit[ids] = True
    lead0 = torch.tensor([t[0] == "0" and len(t) > 1 for _, t in pairs])
    return DigitVocab(ids, tuple(t for _, t in pairs), is_digit, lead0)


class _DigitWalk:
    """Rows of digit prefixes growing on top of one shared prompt pass (the prompts' KV cache is
    reordered and extended, never recomputed)."""

    def __init__(self, model, input_ids, attention_mask, vocab: DigitVocab, max_digits: int = MAX_PRICE_DIGITS):
        self.model, self.device, self.max_digits = model, input_ids.device, max_digits
        self.ids = vocab.ids.to(self.device)
        self.token_len = torch.tensor([len(t) for t in vocab.texts], device=self.device)
        self.is_digit = vocab.is_digit.to(self.device)
        self.lead0 = vocab.leading_zero.to(self.device)
        self.texts = vocab.texts
        # Left padding: positions count real tokens only, as generate() does, so the rotary
        # positions of the prompt and of every digit appended later agree.
        positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                    use_cache=True, logits_to_keep=1)
        self.cache, self.mask = out.cache, attention_mask
        self.positions = positions[:, -1]
        self.logits = out.logits[:, -1].float()
        if self.logits.shape[-1] != self.is_digit.shape[0]:
            raise PricetuneError("tokenizer and model disagree on the vocabulary size")
        self.row_item = list(range(input_ids.shape[0]))
        self.row_text = [""] * input_ids.shape[0]

    def scores(self):
        """Per row: log-probabilities of each digit token (-inf where it would make a leading zero)
        and of ending the integer part here (any non-digit token)."""
        logp = torch.log_softmax(self.logits, dim=-1)
        starts = torch.tensor([t == "" for t in self.row_text], device=self.device)
        zero = torch.tensor([t == "0" for t in self.row_text], device=self.device)
        length = torch.tensor([len(t) for t in self.row_text], device=self.device)
        # a price has at most max_digits digits, however many digits a token spells (Llama 3: 1-3)
        too_long = length[:, None] + self.token_len[None, :] > self.max_digits
        digits = logp[:, self.ids].masked_fill(
            (starts[:, None] & self.lead0[None, :]) | zero[:, None] | too_long, float("-inf"))
        end = torch.logsumexp(logp.masked_fill(self.is_digit, float("-inf")), dim=-1)
        end = end.masked_fill(length >= self.max_digits, 0.0)  # no digit may follow: the price ends here
        return digits, end.masked_fill(starts, float("-inf"))

    def extend(self, parents: list[int], tokens: list[int]) -> None:
        parent_idx = torch.tensor(parents, device=self.device)
        token_idx = torch.tensor(tokens, device=self.device)
        self.row_item = [self.row_item[p] for p in parents]
        self.row_text = [self.row_text[p] + self.texts[t] for p, t in zip(parents, tokens)]
        self.cache.reorder_cache(parent_idx)
        self.mask = torch.cat([self.mask[parent_idx], self.mask.new_ones(len(parents), 1)], dim=1)
        self.positions = self.positions[parent_idx] + 1
        out = self.model(input_ids=self.ids[token_idx][:, None], attention_mask=self.mask,
                         position_ids=self.positions[:, None], cache=self.cache, use_cache=True)
        self.cache, self.logits = out.cache, out.logits[:, -1].float()


@torch.inference_mode()
def price_distributions(
    model, input_ids, attention_mask, vocab: DigitVocab, width: int = 12, max_digits: int = MAX_PRICE_DIGITS,
    min_logprob: float = -12.0,
) -> list[list[tuple[int, float]]]:
    """The most likely whole-dollar prices and their log-probabilities, for each prompt of a
    left-padded batch.

    The integer part of a price is a path through the digit tokens that ends at the first token that
    is not a digit (the "." of "64.00", or EOS). After one pass over the prompts, each further pass
    extends, per prompt, the `width` most likely digit prefixes by one token and records each
    prefix's probability of ending there; a price has at most `max_digits` digits (counted in
    digits, not tokens), and a path that reaches them ends. Paths below exp(min_logprob) are
    dropped. The probabilities are the model's own, not renormalised: their total is the share of
    the model's mass the walk covered.
    """
    walk = _DigitWalk(model, input_ids, attention_mask, vocab, max_digits)
    found: list[list[tuple[int, float]]] = [[] for _ in range(input_ids.shape[0])]
    row_logp = torch.zeros(input_ids.shape[0], device=walk.device)
    for depth in range(max_digits + 1):  # every step adds at least one digit
        digits, end = walk.scores()
        if depth > 0:
            for r, value in enumerate((row_logp + end).tolist()):
                found[walk.row_item[r]].append((int(walk.row_text[r]), value))
        cand = row_logp[:, None] + digits  # [rows, digit tokens]
        n_tok = cand.shape[1]
        parents, tokens = [], []
        for item in range(len(found)):
            rows = [r for r, i in enumerate(walk.row_item) if i == item]
            if not rows:
                continue
            top = cand[rows].flatten().topk(min(width, len(rows) * n_tok))
            for value, index in zip(top.values.tolist(), top.indices.tolist()):
                if value > min_logprob:
                    parents.append(rows[index // n_tok])
                    tokens.append(index % n_tok)
        if not parents:
            break
        row_logp = cand[torch.tensor(parents), torch.tensor(tokens)]
        walk.extend(parents, tokens)
    return found


def item_seed(prompt_ids: list[int], seed: int = 0) -> int:
    """A draw seed that comes from the item itself: distinct items get independent streams, and an
    item gets the same draws alone, in any batch, in any order."""
    return zlib.crc32(array("q", prompt_ids).tobytes()) ^ seed


@torch.inference_mode()
def sample_prices(
    model, input_ids, attention_mask, vocab: DigitVocab, samples: int = 64, max_digits: int = MAX_PRICE_DIGITS,
    seeds: list[int] | None = None,
) -> list[list[int]]:
    """`samples` whole-dollar prices drawn from the model for each prompt of a left-padded batch,
    digit token by digit token on top of one shared prompt pass. `seeds`: one per prompt (default:
    `item_seed` of its tokens), so an item gets the same draws in any batch while different items
    draw independently. Unlike the most likely paths, the draws are an unbiased picture of the
    model's price distribution: their median estimates the distribution's median."""
    walk = _DigitWalk(model, input_ids, attention_mask, vocab, max_digits)
    n_items = input_ids.shape[0]
    if seeds is None:
        seeds = [item_seed(row[mask.bool()].tolist()) for row, mask in zip(input_ids.cpu(), attention_mask.cpu())]
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    found: list[list[int]] = [[] for _ in range(n_items)]
    counts = [samples] * n_items  # draws on each walk row; draws that share a prefix share its row
    for _ in range(max_digits + 1):  # every step adds at least one digit
        digits, end = walk.scores()
        probs = torch.cat([digits, end[:, None]], dim=1).exp().cpu()
        stop = probs.shape[1] - 1
        parents, tokens, next_counts = [], [], []
        for row, (item, n) in enumerate(zip(walk.row_item, counts)):
            drawn = torch.multinomial(probs[row], n, replacement=True, generator=gens[item])
            tally = torch.bincount(drawn, minlength=probs.shape[1]).tolist()
            if tally[stop]:  # these draws end here: complete prices
                found[item] += [int(walk.row_text[row])] * tally[stop]
            for token, k in enumerate(tally[:stop]):
                if k:
                    parents.append(row)
                    tokens.append(token)
                    next_counts.append(k)
        if not parents:
            break
        walk.extend(parents, tokens)
        counts = next_counts
    return found


def weighted_price(prices: list[float | None], logprobs: list[float], how: str) -> float | None:
    """Probability-weighted mean or median of candidate prices (unparseable candidates dropped)."""
    pairs = [(p, lp) for p, lp in zip(prices, logprobs) if p is not None]
    if not pairs:
        return None
    top = max(lp for _, lp in pairs)
    weights = [(p, math.exp(lp - top)) for p, lp in pairs]
    total = sum(w for _, w in weights)
    if how == "expected":
        return sum(p * w for p, w in weights) / total
    acc = 0.0
    for p, w in sorted(weights):
        acc += w
        if acc >= total / 2:
            return p
    return sorted(weights)[-1][0]
