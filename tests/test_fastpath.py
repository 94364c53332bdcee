"""The fast path's layer changes compute what the stock layers compute (pricetune/fastpath.py)."""

import pytest
import torch
import torch.nn.functional as F

from pricetune.fastpath import (
    DropoutLinear,
    FastRMSNorm,
    causal_attention,
    keep_mask,
    silu_mul,
    speed_up,
)
from pricetune.modeling import build_lora_config, load_base_model
from pricetune.training import completion_loss, is_right_padded
from tests.test_training import _batch


def test_keep_mask_rate_and_seeding():
    torch.manual_seed(1)
    a = keep_mask((1000, 1000), 0.1)
    assert a.dtype == torch.bool and a.shape == (1000, 1000)
    # keep probability 1 - 6554/65536 = 0.899994; 1e6 draws: standard error 3e-4
    assert abs(a.float().mean().item() - 0.9) < 0.002
    # neighbouring values (slices of one random word) are not correlated
    flat = a.flatten().float()
    assert abs(torch.corrcoef(torch.stack([flat[:-1], flat[1:]]))[0, 1].item()) < 0.01
    torch.manual_seed(1)
    assert torch.equal(keep_mask((1000, 1000), 0.1), a)
    assert not torch.equal(keep_mask((1000, 1000), 0.1), a)
    assert keep_mask((7,), 0.0).all() and keep_mask((3, 5), 0.5).shape == (3, 5)


@pytest.mark.parametrize("autocast", [False, True])
def test_dropout_fused_into_lora_a_equals_dropout_then_linear(autocast):
    """Forward and both gradients equal nn.Linear applied to x * mask / (1 - p), the mask being the
    one the seed gives; backward draws it again rather than keeping it."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(16, 4, bias=False)
    dtype = torch.bfloat16 if autocast else torch.float64
    if not autocast:
        linear.double()
    x = torch.randn(3, 5, 16, dtype=dtype, requires_grad=True)
    fused = DropoutLinear(linear, 0.3)  # shares linear's weight
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        torch.manual_seed(7)
        y = fused(x)
        torch.manual_seed(7)
        keep = keep_mask(x.shape, 0.3)
        assert 0 < keep.sum() < keep.numel()
        ref = linear(torch.where(keep, x / 0.7, 0))
        torch.manual_seed(99)  # backward must not depend on the generator's state by then
        g = torch.randn_like(ref)
    torch.testing.assert_close(y, ref)
    ours = torch.autograd.grad(y, (x, linear.weight), g)
    stock = torch.autograd.grad(ref, (x, linear.weight), g)
    for a, b in zip(ours, stock):
        assert a.dtype == b.dtype
        torch.testing.assert_close(a, b)
    fused.eval()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        torch.testing.assert_close(fused(x), linear(x))  # no dropout outside training


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rms_norm_equals_llama_rms_norm(dtype):
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    torch.manual_seed(0)
    norm = LlamaRMSNorm(32, 1e-5)
    norm.weight.data = torch.randn(32)
    norm.weight.requires_grad_(False)
    x = torch.randn(4, 6, 32, dtype=dtype, requires_grad=True)
    y, ours = norm(x), FastRMSNorm(norm)(x)
    torch.testing.assert_close(ours, y, rtol=0, atol=0)
    g = torch.randn_like(y)
    torch.testing.assert_close(torch.autograd.grad(ours, x, g)[0], torch.autograd.grad(y, x, g)[0],
                               rtol=1e-5, atol=1e-5)


def test_silu_mul_equals_stock_and_its_gradient_is_exact():
    g = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    u = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(silu_mul(g, u), F.silu(g) * u)
    assert torch.autograd.gradcheck(silu_mul, (g, u))


def test_causal_attention_equals_sdpa_with_grouped_heads():
    torch.manual_seed(0)
    q = torch.randn(2, 6, 9, 8, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 3, 9, 8, dtype=torch.float64, requires_grad=True)
    v = torch.randn(2, 3, 9, 8, dtype=torch.float64, requires_grad=True)
    out = causal_attention(q, k, v, 8**-0.5)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True).transpose(1, 2)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    g = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad(out, (q, k, v), g), torch.autograd.grad(ref, (q, k, v), g)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    assert torch.autograd.gradcheck(lambda q, k, v: causal_attention(q, k, v, 0.3), (q, k, v))


def test_is_right_padded():
    assert is_right_padded(torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0]]))
    assert not is_right_padded(torch.tensor([[1, 1, 1], [0, 1, 1]]))
    assert not is_right_padded(torch.tensor([[1, 0, 1]]))


def _tiny_lora(tiny_model_dir, dropout=0.0):
    from peft import get_peft_model

    torch.manual_seed(0)
    base = load_base_model(str(tiny_model_dir), "none", "fp32")
    cfg = build_lora_config(8, 16, dropout, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj"])
    cfg.init_lora_weights = False  # non-zero B, so gradients reach A as well
    return get_peft_model(base, cfg)


@pytest.mark.parametrize("padding", ["right", "left"])
def test_sped_up_model_gives_the_stock_loss_and_lora_gradients(tiny_model_dir, tokenizer, demo_splits, padding):
    batch = _batch(tokenizer, demo_splits["train"][:6])
    if padding == "left":  # not what training feeds, but it must still be right: the mask is kept then
        lengths = batch["attention_mask"].sum(1)
        for key, fill in [("input_ids", tokenizer.pad_token_id), ("attention_mask", 0), ("labels", -100)]:
            rows = [torch.cat([torch.full((len(r) - n,), fill), r[:n]]) for r, n in zip(batch[key], lengths)]
            batch[key] = torch.stack(rows)
        assert not is_right_padded(batch["attention_mask"])
    stock = _tiny_lora(tiny_model_dir)
    stock.train()
    reference = stock(**batch).loss  # transformers' own loss, SDPA with the padding mask, stock MLP
    reference.backward()
    fast = _tiny_lora(tiny_model_dir)
    changed = speed_up(fast)
    assert changed["swiglu_mlps"] == 2 and changed["rms_norms"] == 5
    assert changed["attention"] == "pricetune_cpu_train"
    fast.train()
    loss, _ = completion_loss(fast, batch)
    loss.backward()
    torch.testing.assert_close(loss, reference, rtol=1e-5, atol=1e-5)
    grads = {n: p.grad for n, p in stock.named_parameters() if p.requires_grad}
    for n, p in fast.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.grad, grads[n], rtol=1e-4, atol=1e-6, msg=n)
    # without gradients (evaluation, generation) the stock SDPA path runs, masks included
    fast.eval(), stock.eval()
    with torch.no_grad():
        torch.testing.assert_close(fast(**batch).logits, stock(**batch).logits, rtol=1e-5, atol=1e-5)


def test_speed_up_fuses_lora_dropout_only_when_there_is_dropout(tiny_model_dir):
    assert speed_up(_tiny_lora(tiny_model_dir, 0.0))["lora_dropouts"] == 0
    model = _tiny_lora(tiny_model_dir, 0.1)
    changed = speed_up(model)
    assert changed["lora_dropouts"] == 10 and changed["rms_norms"] == 5  # 5 targets x 2 layers; 2 x 2 + final
    drops = [m for n, m in model.named_modules() if n.endswith("lora_dropout.default")]
    assert drops and all(isinstance(d, torch.nn.Identity) for d in drops)
    assert speed_up(model)["lora_dropouts"] == 0  # idempotent
    # the adapter saved from a sped-up model is the stock one: same keys, no extra modules
    assert all(k.count("lora_") == 1 for k in model.state_dict() if "lora_" in k)
