import json

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
    assert json.loads((out / "pricetune_export.json").read_text())["dtype"] == "fp32"

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

    # a folder that is not empty is never overwritten; a bad dtype is refused before loading
    assert main(["export", str(run), "--out", str(out)]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nope"), "--out", str(tmp_path / "m2")]) == 2
    assert not (tmp_path / "m2").exists()
