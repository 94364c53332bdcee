"""Prices from a trained adapter: batched generation, probability-aware decoding, and `Pricer`.

    pricetune predict --run runs/price-...-demo "Title: 1.01 carat Ideal cut round diamond ..."
    pricetune predict --run runs/price-...-demo --file items.jsonl --out prices.jsonl

    from pricetune.inference import Pricer
    pricer = Pricer.from_run("runs/price-...-demo")
    pricer.price("Title: ...\\nCategory: ...")          # -> 4215.0
    pricer.price_many([...])                            # -> [...]

Generation truncates prompts exactly as training did (data.encode_prompt), sorts them by length so
batches carry little padding, pads on the left, and stops a sequence as soon as its price is complete.
Decoding: `greedy` (the course's), or `expected` / `median`: a beam search returns the most likely
completions with their log-probabilities, and the price is their probability-weighted mean / median.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from .data import encode_prompt, make_prompt
from .errors import PricetuneError
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


# ------------------------------------------------------------------------------------------------
# Loading


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
    if run is not None:
        cfg = load_run_config(run)
        if not (Path(run) / "adapter_config.json").is_file():
            raise PricetuneError(f"{run} has no adapter yet (adapter_config.json); did training finish?")
        base_model = base_model or cfg.base_model
        quantization = quantization or cfg.quantization
        max_length = cfg.max_length
        adapter_path = str(run)
        label = Path(run).name
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
    elif base_model is not None:
        label = f"{base_model} (no adapter)"
    else:
        raise PricetuneError("say what to load: a run directory, --adapter HUB_ID, or --base-model NAME --no-adapter")
    quantization = quantization or "4bit"
    precision = pick_precision(precision)
    tokenizer = load_tokenizer(base_model, padding_side="left")
    model = load_base_model(base_model, quantization, precision)
    if adapter_path is not None:
        model = load_adapter(model, adapter_path, quantized=quantization != "none")
    model.eval()
    model.config.use_cache = True
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return LoadedModel(model, tokenizer, max_length, label)


# ------------------------------------------------------------------------------------------------
# Generation


class PriceComplete(StoppingCriteria):
    """Done once the generated text holds a number followed by something that is not part of it."""

    def __init__(self, tokenizer, prompt_len: int):
        self.tokenizer, self.prompt_len = tokenizer, prompt_len

    def __call__(self, input_ids, scores, **kwargs):
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_len:], skip_special_tokens=True)
        return torch.tensor([bool(_COMPLETE.search(t)) for t in texts], device=input_ids.device)


@lru_cache(maxsize=8)
def _stop_token_ids(tokenizer) -> tuple[int, ...]:
    """Every token that is not digits: the whole-dollar part of the price ends there (completions
    are "64.00"), so beam search stops a candidate at its "." instead of spelling out the cents."""
    ids = [i for i in tokenizer.get_vocab().values() if not tokenizer.decode([i]).strip().isdigit()]
    return tuple(sorted(set(ids) | {tokenizer.eos_token_id}))


def _batch(tokenizer, id_lists: list[list[int]], device):
    padded = tokenizer.pad({"input_ids": id_lists}, padding_side="left", return_tensors="pt")
    return padded["input_ids"].to(device), padded["attention_mask"].to(device)


def weighted_price(prices: list[float | None], logprobs: list[float], how: str) -> float | None:
    """Probability-weighted mean or median of candidate prices (unparseable candidates dropped)."""
    pairs = [(p, lp) for p, lp in zip(prices, logprobs) if p is not None]
    if not pairs:
        return None
    top = max(lp for _, lp in pairs)
    weights = [(p, float(torch.tensor(lp - top).exp())) for p, lp in pairs]
    total = sum(w for _, w in weights)
    if how == "expected":
        return sum(p * w for p, w in weights) / total
    acc = 0.0
    for p, w in sorted(weights):
        acc += w
        if acc >= total / 2:
            return p
    return sorted(weights)[-1][0]


@torch.inference_mode()
def generate_prices(
    model,
    tokenizer,
    prompts: list[str],
    max_length: int = 128,
    batch_size: int = 16,
    decode: str = "greedy",
    beams: int = 6,
    progress: bool = False,
) -> list[tuple[str, float | None]]:
    """(raw text, parsed price) for each prompt, in the input order."""
    if decode not in DECODES:
        raise PricetuneError(f"decode must be one of {', '.join(DECODES)}")
    device = next(model.parameters()).device
    encoded = [encode_prompt(tokenizer, make_prompt(p), max_length) for p in prompts]
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    results: list[tuple[str, float | None] | None] = [None] * len(encoded)
    if decode != "greedy":
        batch_size = max(1, batch_size // beams)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(order), desc=f"pricing ({decode})", unit="item", file=sys.stderr)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        input_ids, attention_mask = _batch(tokenizer, [encoded[i] for i in idx], device)
        n_prompt = input_ids.shape[1]
        if decode == "greedy":
            out = model.generate(
                input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=MAX_NEW_TOKENS,
                do_sample=False, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                stopping_criteria=StoppingCriteriaList([PriceComplete(tokenizer, n_prompt)]),
            )
            texts = tokenizer.batch_decode(out[:, n_prompt:], skip_special_tokens=True)
            for i, text in zip(idx, texts):
                results[i] = (text, parse_price(text))
        else:
            out = model.generate(
                input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=MAX_NEW_TOKENS,
                do_sample=False, num_beams=beams, num_return_sequences=beams, length_penalty=0.0,
                early_stopping=True, output_scores=True, return_dict_in_generate=True,
                pad_token_id=tokenizer.pad_token_id, eos_token_id=list(_stop_token_ids(tokenizer)),
            )
            texts = tokenizer.batch_decode(out.sequences[:, n_prompt:], skip_special_tokens=True)
            scores = out.sequences_scores.float().tolist()
            for j, i in enumerate(idx):
                cand = texts[j * beams:(j + 1) * beams]
                price = weighted_price([parse_price(t) for t in cand], scores[j * beams:(j + 1) * beams], decode)
                results[i] = (cand[0], price)
        if bar:
            bar.update(len(idx))
    if bar:
        bar.close()
    return results  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------------
# The Python API


class Pricer:
    """Prices products from descriptions, like the reference service's `Pricer.price`."""

    def __init__(self, loaded: LoadedModel, decode: str = "greedy", batch_size: int = 16):
        self.loaded, self.decode, self.batch_size = loaded, decode, batch_size

    @classmethod
    def from_run(cls, run_dir: str, **kwargs) -> Pricer:
        return cls(load_model(run=run_dir), **kwargs)

    @classmethod
    def from_hub(cls, adapter_id: str, base_model: str | None = None, **kwargs) -> Pricer:
        return cls(load_model(adapter=adapter_id, base_model=base_model), **kwargs)

    def price_many(self, descriptions: list[str]) -> list[float]:
        """Prices in input order; an answer without a number is 0.0, as in the course."""
        lm = self.loaded
        out = generate_prices(lm.model, lm.tokenizer, descriptions, lm.max_length, self.batch_size, self.decode)
        return [0.0 if p is None else float(p) for _, p in out]

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
                   help="greedy (the course's), or expected/median: probability-weighted over the top beams.")
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
    out = generate_prices(lm.model, lm.tokenizer, [t for _, t in items], lm.max_length, ns.batch_size,
                          ns.decode, progress=len(items) > 1)
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
