"""The reference path on one CUDA GPU: what a CPU cannot check (the suite skips these without CUDA).

    .venv/bin/python -m pytest -q -m gpu          # on a machine with a GPU

On a CPU the 4-bit base still loads (bitsandbytes' CPU kernels), but the paged optimizer falls back to
AdamW, the precision is the CPU's and nothing is placed on a GPU; these tests check the CUDA side of
each of those choices on the tiny model, as the course's Colab users run the recipe.
"""

import pytest
import torch

from pricetune.config import resolve_config

from .conftest import tiny_overrides

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def _expected_precision() -> str:
    major, _ = torch.cuda.get_device_capability()
    return "bf16" if major >= 8 else "fp16"


def test_the_lite_recipe_trains_on_cuda_as_written(tiny_model_dir, small_dataset_dir, tmp_path, demo_splits):
    """lite's own settings (4-bit nf4 + double quant, paged AdamW 32-bit, automatic precision), no fallback."""
    from pricetune.inference import Pricer
    from pricetune.training import prepare_trainer

    cfg = resolve_config("lite", overrides=tiny_overrides(tiny_model_dir, small_dataset_dir, tmp_path / "run",
                                                         precision="auto", max_steps=3))
    assert cfg.optim == "paged_adamw_32bit" and cfg.quantization == "4bit" and cfg.double_quant
    notices: list[str] = []
    trainer, ctx = prepare_trainer(cfg, log=notices.append)
    assert not [n for n in notices if "needs CUDA" in n], notices
    assert trainer.args.optim.value == "paged_adamw_32bit"
    expected = _expected_precision()
    assert getattr(trainer.args, expected) is True
    model = trainer.model
    linear4 = [m for m in model.modules() if type(m).__name__ == "Linear4bit"]
    assert linear4 and all(m.weight.device.type == "cuda" for m in linear4)
    assert linear4[0].weight.quant_state.quant_type == "nf4" and linear4[0].weight.quant_state.nested  # double quant
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    trainer.train()
    after = dict(model.named_parameters())
    assert any(not torch.equal(before[n], after[n].detach()) for n in before if "lora_B" in n), "LoRA did not train"
    trainer.save_model()

    pricer = Pricer.from_run(str(tmp_path / "run"), batch_size=4)
    assert next(pricer.loaded.model.parameters()).device.type == "cuda"
    prices = pricer.price_many([r["prompt"] for r in demo_splits["test"][:4]])
    assert len(prices) == 4 and all(p is None or p >= 0 for p in prices)


def test_a_4bit_regress_run_on_cuda_prices_the_same_after_reload(tiny_model_dir, small_dataset_dir, tmp_path,
                                                                demo_splits):
    from pricetune.inference import Pricer
    from pricetune.training import train

    out = tmp_path / "regress-run"
    cfg = resolve_config("demo", overrides=tiny_overrides(tiny_model_dir, small_dataset_dir, out, objective="regress",
                                                         precision="auto", max_steps=4, max_length=64))
    summary = train(cfg, log=lambda _: None)
    assert summary["device"] == "cuda" and summary["precision"] == _expected_precision()
    prompts = [r["prompt"] for r in demo_splits["test"][:6]]
    first = Pricer.from_run(str(out), batch_size=4).price_many(prompts)
    again = Pricer.from_run(str(out), batch_size=1).price_many(prompts)
    # one sequence at a time against four padded together: the same prices up to bf16 rounding
    assert first == pytest.approx(again, rel=2e-2)
    assert len(set(first)) > 1 and all(p > 0 for p in first)
