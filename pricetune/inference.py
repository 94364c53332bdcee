"""Prices from a trained adapter: batched generation, probability-aware decoding, and `Pricer`.

    pricetune predict --run runs/price-...-demo "Title: 1.01 carat Ideal cut round diamond ..."
    pricetune predict --run runs/price-...-demo --file items.jsonl --out prices.jsonl

    from pricetune.inference import Pricer
    pricer = Pricer.from_run("runs/price-...-demo")
    pricer.price("Title: ...\\nCategory: ...")          # -> 4215.0
    pricer.price_many([...])                            # -> [...]

Generation truncates prompts exactly as training did (data.encode_prompt), sorts them by length so
batches carry little padding, pads on the left, and stops a sequence as soon as its price is complete.
Decoding, all on top of one pass over each prompt (its KV cache is shared by every continuation):
`greedy` (the course's); `expected`: the probability-weighted mean of the most likely whole-dollar
prices (`price_distributions`); `median`: the median of 64 prices drawn from the model
(`sample_prices`), which estimates the median of the model's price distribution, the answer that
minimises the expected absolute error, the course's metric.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import zlib
from array import array
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from .data import MAX_PRICE_DIGITS, encode_prompts, in_length_order, make_prompt
from .errors import PricetuneError
from .hub import CONFIG_NAME
from .metrics import parse_price

MAX_NEW_TOKENS = 8  # "12345.67" in a digit-per-token vocabulary, without EOS
DECODES = ("greedy", "expected", "median")
_COMPLETE = re.compile(r"\d[\d,]*(?:\.\d*)?[^\d.,]")


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: object
    max_length: int
    label: str
    objective: str = "generate"
    scale: object = None  # regression.PriceScale for regress runs

    def price(self, prompts: list[str], decode: str = "greedy", batch_size: int = 16, samples: int = 64,
              progress: bool = False) -> list[tuple[str, float | None]]:
        """(text, price) for each prompt: decoding for generate runs, one forward pass for regress."""
        if self.objective == "regress":
            from .regression import regress_prices

            return regress_prices(self.model, self.tokenizer, prompts, self.scale, self.max_length, batch_size,
                                  progress=progress)
        return generate_prices(self.model, self.tokenizer, prompts, self.max_length, batch_size, decode,
                               samples=samples, progress=progress)


def run_paths(run: str) -> tuple[Path, Path]:
    """(run directory, adapter directory) for a run or one of its checkpoints."""
    path = Path(run)
    if not (path / "config.yaml").is_file() and (path.parent / "config.yaml").is_file() \
            and path.name.startswith("checkpoint-"):
        return path.parent, path
    return path, path


# ------------------------------------------------------------------------------------------------
# Loading


def beside_adapter(adapter: str, name: str) -> Path | None:
    """The file `name` next to a local or Hub adapter (a Hub file lands in the Hub cache), or None."""
    local = Path(adapter)
    if local.is_dir():
        return local / name if (local / name).is_file() else None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HFValidationError

    try:
        return Path(hf_hub_download(adapter, name))
    except (OSError, EntryNotFoundError, HFValidationError):  # not there, offline, no access: the caller falls back
        return None


def load_model(
    run: str | None = None,
    adapter: str | None = None,
    base_model: str | None = None,
    quantization: str | None = None,
    precision: str = "auto",
) -> LoadedModel:
    """A run directory, a Hub (or local) adapter, or a bare base model, ready to generate."""
    from .config import load_run_config
    from .modeling import load_adapter, load_base_model, load_tokenizer, pick_precision

    max_length = 128
    adapter_path = None
    objective, scale = "generate", None
    if run is not None:
        run_dir, adapter_dir = run_paths(run)
        cfg = load_run_config(run_dir)
        if not (adapter_dir / "adapter_config.json").is_file():
            raise PricetuneError(f"{run} has no adapter yet (adapter_config.json); did training finish?")
        base_model = base_model or cfg.base_model
        quantization = quantization or cfg.quantization
        max_length = cfg.max_length
        adapter_path = str(adapter_dir)
        label = run_dir.name if adapter_dir == run_dir else f"{run_dir.name}/{adapter_dir.name}"
        objective = cfg.objective
        if objective == "regress":
            from .regression import PriceScale

            scale = PriceScale.load(adapter_dir if (adapter_dir / "regression_head.json").is_file() else run_dir)
    elif adapter is not None:
        from peft import PeftConfig

        try:
            peft_cfg = PeftConfig.from_pretrained(adapter)
        except Exception as e:  # network, auth, not found
            raise PricetuneError(
                f"could not read adapter {adapter!r} ({type(e).__name__}); offline, pass --run RUN_DIR instead"
            ) from None
        base_model = base_model or peft_cfg.base_model_name_or_path
        adapter_path = adapter
        label = adapter
        # a pushed run carries its config as CONFIG_NAME; a local run directory as config.yaml
        pushed = beside_adapter(adapter, CONFIG_NAME) or (
            beside_adapter(adapter, "config.yaml") if Path(adapter).is_dir() else None)
        if pushed is not None:  # load and cut prompts as the run was trained
            import yaml

            trained = yaml.safe_load(pushed.read_text(encoding="utf-8")) or {}
            max_length = int(trained.get("max_length") or max_length)
            quantization = quantization or trained.get("quantization")
        if peft_cfg.task_type == "SEQ_CLS":  # a pushed regress run: its head's scale travels beside the adapter
            from .regression import HEAD_FILE, PriceScale

            objective = "regress"
            head = beside_adapter(adapter, HEAD_FILE)
            scale = PriceScale.load(head.parent if head is not None else adapter)
    elif base_model is not None:
        label = f"{base_model} (no adapter)"
    else:
        raise PricetuneError("say what to load: a run directory, --adapter HUB_ID, or --base-model NAME --no-adapter")
    quantization = quantization or "4bit"
    precision = pick_precision(precision)
    tokenizer = load_tokenizer(base_model, padding_side="left")
    model = load_base_model(base_model, quantization, precision, objective=objective,
                            pad_token_id=tokenizer.pad_token_id, num_layers=scale.layers if scale else None)
    if adapter_path is not None:
        model = load_adapter(model, adapter_path, quantized=quantization != "none")
    model.eval()
    if objective == "generate":
        model.config.use_cache = True
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return LoadedModel(model, tokenizer, max_length, label, objective, scale)


# ------------------------------------------------------------------------------------------------
# Generation


class PriceComplete(StoppingCriteria):
    """Done once the generated text holds a number followed by something that is not part of it."""

    def __init__(self, tokenizer, prompt_len: int):
        self.tokenizer, self.prompt_len = tokenizer, prompt_len

    def __call__(self, input_ids, scores, **kwargs):
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_len:], skip_special_tokens=True)
        return torch.tensor([bool(_COMPLETE.search(t)) for t in texts], device=input_ids.device)


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


def _vocab(model, tokenizer) -> DigitVocab:
    return digit_vocab(tokenizer, model.get_output_embeddings().weight.shape[0])


def _batch(tokenizer, id_lists: list[list[int]], device):
    padded = tokenizer.pad({"input_ids": id_lists}, padding_side="left", return_tensors="pt")
    return padded["input_ids"].to(device), padded["attention_mask"].to(device)


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
        input_ids, attention_mask = _batch(tokenizer, ids, device)
        return decoder(model, tokenizer, input_ids, attention_mask, width=width, samples=samples)

    encoded = encode_prompts(tokenizer, [make_prompt(p) for p in prompts], max_length)
    return in_length_order(encoded, batch_size, run_batch, f"pricing ({decode})", progress)


# ------------------------------------------------------------------------------------------------
# The Python API


class Pricer:
    """Prices products from descriptions, like the reference service's `Pricer.price`."""

    def __init__(self, loaded: LoadedModel, decode: str = "greedy", batch_size: int = 16, samples: int = 64):
        self.loaded, self.decode, self.batch_size, self.samples = loaded, decode, batch_size, samples

    @classmethod
    def from_run(cls, run_dir: str, **kwargs) -> Pricer:
        return cls(load_model(run=run_dir), **kwargs)

    @classmethod
    def from_hub(cls, adapter_id: str, base_model: str | None = None, **kwargs) -> Pricer:
        return cls(load_model(adapter=adapter_id, base_model=base_model), **kwargs)

    @classmethod
    def from_ensemble(cls, folder: str, **kwargs) -> Pricer:
        """An ensemble made by `pricetune ensemble`: its members priced and combined with its weights."""
        from .ensemble import Ensemble

        pricer = cls(None, **kwargs)
        pricer.ensemble = Ensemble.load(folder)
        pricer.members = pricer.ensemble.predictors()
        return pricer

    ensemble = None

    def price_items(self, descriptions: list[str]) -> list[float | None]:
        """Prices in input order; None where the model's answer held no price."""
        if self.ensemble is not None:
            return self.ensemble.predict(descriptions, self.members)
        return [p for _, p in self.loaded.price(descriptions, self.decode, self.batch_size, self.samples)]

    def price_many(self, descriptions: list[str]) -> list[float]:
        """Prices in input order; an answer without a number is 0.0, as in the course."""
        return [0.0 if p is None else float(p) for p in self.price_items(descriptions)]

    def price(self, description: str) -> float:
        return self.price_many([description])[0]


# ------------------------------------------------------------------------------------------------
# CLI


def add_model_arguments(p) -> None:
    p.add_argument("--adapter", metavar="ID_OR_DIR", help="A LoRA adapter on the Hub (user/name) or in a directory.")
    p.add_argument("--base-model", help="Base model (default: the run's, or the adapter's base).")
    p.add_argument("--no-adapter", action="store_true", help="Use the bare base model (needs --base-model).")
    p.add_argument("--quantization", choices=["4bit", "8bit", "none"],
                   help="Quantization of the base (default: as the run was trained, else 4bit).")
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp16", "fp32"],
                   help="Compute precision (default: auto, as in training).")
    p.add_argument("--decode", default="greedy", choices=list(DECODES),
                   help="greedy (the course's); expected: probability-weighted mean of the most likely prices; "
                        "median: median of 64 prices drawn from the model (best MAE).")
    p.add_argument("--samples", type=int, default=64,
                   help="Prices drawn per item for --decode median (default 64; more: a steadier median).")
    p.add_argument("--batch-size", type=int, default=16, help="Prompts generated together (default 16).")


def load_from_args(ns) -> LoadedModel:
    if ns.no_adapter:
        if not ns.base_model:
            raise PricetuneError("--no-adapter needs --base-model")
        return load_model(base_model=ns.base_model, quantization=ns.quantization, precision=ns.precision)
    return load_model(run=getattr(ns, "run", None), adapter=ns.adapter, base_model=ns.base_model,
                      quantization=ns.quantization, precision=ns.precision)


def add_predict_arguments(p) -> None:
    p.description = "Price one description (a bare description is wrapped in the training prompt) or a jsonl file."
    p.add_argument("description", nargs="?", help="Item text; a full prompt ending in 'Price is $' is used as is.")
    p.add_argument("--run", metavar="RUN_DIR", help="A pricetune run directory.")
    p.add_argument("--file", help="jsonl of items, each with a 'prompt' (or 'description') field.")
    p.add_argument("--out", help="Where to write the priced jsonl (default: stdout).")
    add_model_arguments(p)


def predict_cli(ns) -> int:
    if bool(ns.description) == bool(ns.file):
        raise PricetuneError("give either a description or --file items.jsonl")
    if ns.samples < 1:
        raise PricetuneError("--samples must be >= 1")
    items = []
    if ns.file:
        from .data import iter_jsonl

        for where, row in iter_jsonl(Path(ns.file)):
            text = row.get("prompt") or row.get("description") if isinstance(row, dict) else None
            if not isinstance(text, str) or not text.strip():
                raise PricetuneError(f"{where}: needs a non-empty 'prompt' or 'description' field")
            items.append((row, text))
    else:
        items = [({"description": ns.description}, ns.description)]
    lm = load_from_args(ns)
    out = lm.price([t for _, t in items], ns.decode, ns.batch_size, ns.samples, progress=len(items) > 1)
    if not ns.file:
        text, price = out[0]
        print("no price in the answer: " + repr(text) if price is None else f"${price:,.2f}")
        return 0 if price is not None else 1
    lines = [json.dumps({**row, "prediction": text, "price_predicted": price}) for (row, _), (text, price) in
             zip(items, out)]
    if ns.out:
        Path(ns.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"wrote {len(lines)} prices to {ns.out}")
    else:
        print("\n".join(lines))
    return 0
