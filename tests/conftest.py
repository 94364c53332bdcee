"""Shared fixtures: a tiny random Llama (fast), the real SmolLM2 tokenizer, small datasets on disk."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")



@pytest.fixture(autouse=True)
def own_test_ledger(tmp_path_factory, monkeypatch):
    """Each test's evaluations of a test split go to a ledger of its own, never the user's."""
    monkeypatch.setenv("PRICETUNE_LEDGER", str(tmp_path_factory.mktemp("ledger") / "test-ledger.jsonl"))


REPO = Path(__file__).resolve().parent.parent
SHARED_AMAZON = REPO.parent / "shared" / "data" / "amazon-items"


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def demo_splits():
    from pricetune.data import demo_rows

    return demo_rows()


@pytest.fixture(scope="session")
def tokenizer():
    """The real SmolLM2 tokenizer (digits are single tokens), right padding as in training."""
    from pricetune.modeling import load_tokenizer

    return load_tokenizer("smollm2-135m")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer) -> Path:
    """A randomly initialised 2-layer Llama with SmolLM2's vocabulary, saved as a local model dir."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id, tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(cfg)
    d = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(d)
    tokenizer.save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def small_dataset_dir(tmp_path_factory, demo_splits) -> Path:
    """train/val/test jsonl files of real diamonds: 48 / 16 / 16 rows."""
    d = tmp_path_factory.mktemp("small-data")
    write_jsonl(d / "train.jsonl", demo_splits["train"][:48])
    write_jsonl(d / "val.jsonl", demo_splits["val"][:16])
    write_jsonl(d / "test.jsonl", demo_splits["test"][:16])
    return d


def tiny_overrides(model_dir: Path, data_dir: Path, out: Path, **extra) -> dict:
    base = dict(
        objective="generate", base_model=str(model_dir), dataset=str(data_dir), output_dir=str(out), quantization="4bit",
        precision="fp32", max_steps=2, batch_size=8, val_size=8, lora_r=8, lora_alpha=16, lora_dropout=0.0,
        logging_steps=1, save_steps=1, eval_steps=1, learning_rate=1e-2, gradient_checkpointing=False,
        push_to_hub=False,
    )
    base.update(extra)
    return base


def train_cli_args(overrides: dict) -> list[str]:
    """`pricetune train` arguments for a dict of config values (booleans as --x / --no-x)."""
    args = ["train"]
    for k, v in overrides.items():
        flag = "--" + k.replace("_", "-")
        args += [flag] if v is True else [f"--no-{flag[2:]}"] if v is False else [flag, str(v)]
    return args
