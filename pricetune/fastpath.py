"""The fast training path's layer changes: same maths as the stock layers, less time and memory.

    from pricetune.fastpath import speed_up
    speed_up(peft_model)            # after get_peft_model; pricetune train does it when `fast: true`

What it changes, and why (measured step by step with torch.profiler on 2 CPU cores: the tables of
docs/PERFORMANCE.md, "What each change gave"):

- LoRA dropout (`_DropoutLinear`, fused into each LoRA A matrix): the stock `nn.Dropout` draws one
  float per value with `bernoulli_` (one value at a time on a CPU without Intel's MKL path) and
  backward keeps, per projection, a mask and the dropped-out input. Here the mask comes from 16-bit
  slices of 64-bit random words and nothing of it is kept: backward draws it again from the saved
  generator state, and the kept input is the one tensor q, k and v share. The drop probability is
  rounded to a multiple of 2**-16 (0.1 becomes 0.1000061); the random stream is torch's own, so
  `set_seed` still fixes it.
- SwiGLU MLP (`silu_mul`): keeps gate and up, not also silu(gate), and recomputes silu in backward
  (aten's fused `silu_backward`): a third of the MLP's activation memory, no slower.
- RMSNorm (`_RMSNorm`): keeps the bf16 input and the per-row 1/rms instead of a float32 copy.
- Attention (`causal_attention`): batched matmuls with the probabilities recomputed in backward, in
  place of torch's CPU flash attention, whose backward pass is the slow part; the same tensors kept.
Dropping the attention mask for right-padded batches is in `training.completion_loss`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_U16 = 1 << 16


def keep_mask(shape, p: float, device=None, generator: torch.Generator | None = None) -> torch.Tensor:
    """A bool tensor, True with probability 1 - round(p * 2**16) / 2**16 (torch's default generator
    unless one is given)."""
    n = 1
    for s in shape:
        n *= s
    words = torch.empty((n + 2) // 3, dtype=torch.int64, device=device).random_(generator=generator)
    # random_() on int64 fills [0, 2**63): the low three 16-bit slices of each word are uniform,
    # the top one lacks its sign bit and is dropped
    u16 = words.view(torch.int16).view(-1, 4)[:, :3].reshape(-1)[:n]
    threshold = round(p * _U16) - (_U16 >> 1)  # int16 values are uniform on [-2**15, 2**15)
    return (u16 >= threshold).view(shape)


class _DropoutLinear(torch.autograd.Function):
    """linear(dropout(x, p), weight): a LoRA A matrix with its input dropout.

    Keeps x (one tensor for q, k and v, which read the same input) and the random generator's state
    instead of a dropped-out copy per projection and its mask; backward draws the same mask again
    from the saved state. Runs under the forward pass's autocast state in both directions.
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu")
    def forward(ctx, x, weight, p):
        state = torch.get_rng_state()
        scale = 1.0 / (1.0 - p)
        dropped = torch.where(keep_mask(x.shape, p, x.device), x * scale, 0)
        ctx.save_for_backward(x, weight, state)
        ctx.p, ctx.scale = p, scale
        return F.linear(dropped, weight)

    @staticmethod
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, grad):
        x, weight, state = ctx.saved_tensors
        generator = torch.Generator(device=x.device)
        generator.set_state(state)
        keep = keep_mask(x.shape, ctx.p, x.device, generator)
        grad_x = grad_w = None
        if ctx.needs_input_grad[1]:
            dropped = torch.where(keep, x * ctx.scale, 0)
            grad_w = torch.matmul(grad.reshape(-1, grad.shape[-1]).t(), dropped.reshape(-1, x.shape[-1]))
            grad_w = grad_w.to(weight.dtype)
        if ctx.needs_input_grad[0]:
            grad_x = torch.where(keep, torch.matmul(grad, weight.to(grad.dtype)) * ctx.scale, 0).to(x.dtype)
        return grad_x, grad_w, None


class DropoutLinear(nn.Linear):
    """A LoRA A matrix with its input dropout fused in (`_DropoutLinear`) while training on a CPU;
    plain dropout then linear elsewhere. Shares the weight of the nn.Linear it replaces, so the
    parameter's name and the saved adapter are unchanged."""

    def __init__(self, linear: nn.Linear, p: float):
        super().__init__(linear.in_features, linear.out_features, bias=linear.bias is not None,
                         device="meta", dtype=linear.weight.dtype)
        self.weight, self.bias, self.p = linear.weight, linear.bias, p

    def forward(self, x):
        if not self.training or x.device.type != "cpu" or self.bias is not None:
            return F.linear(F.dropout(x, self.p, self.training), self.weight, self.bias)
        return _DropoutLinear.apply(x, self.weight, self.p)


class _SiluMul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gate, up):
        ctx.save_for_backward(gate, up)
        return F.silu(gate) * up

    @staticmethod
    def backward(ctx, grad):
        gate, up = ctx.saved_tensors
        # aten's fused silu_backward: the stock module's own gradient kernel, one pass over gate
        return torch.ops.aten.silu_backward(grad * up, gate), grad * F.silu(gate)


def silu_mul(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up, keeping only gate and up for the backward pass."""
    return _SiluMul.apply(gate, up)


class _RMSNorm(torch.autograd.Function):
    """weight * (x / rms(x)) as transformers' LlamaRMSNorm computes it (float32 inside, back to x's
    dtype before the weight), for a frozen weight. Keeps x in its own dtype and the 1/rms per row,
    where the stock module keeps x's float32 copy: half the memory for bf16 x, same gradient."""

    @staticmethod
    def forward(ctx, x, weight, eps):
        wide = x.to(torch.float32)
        rstd = torch.rsqrt(wide.pow(2).mean(-1, keepdim=True) + eps)
        ctx.save_for_backward(x, weight, rstd)
        return weight * (wide * rstd).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        x, weight, rstd = ctx.saved_tensors
        wide = x.to(torch.float32)
        grad_normed = (grad * weight).to(x.dtype).to(torch.float32)
        # d/dx of x * rstd(x): rstd * (g - x * rstd^2 * mean(g * x))
        inner = (grad_normed * wide).mean(-1, keepdim=True)
        grad_x = rstd * (grad_normed - wide * rstd.pow(2) * inner)
        return grad_x.to(x.dtype), None, None


# transformers' norms whose forward is exactly the LlamaRMSNorm formula above
_RMS_NORMS = {"LlamaRMSNorm", "MistralRMSNorm", "Qwen2RMSNorm"}


class FastRMSNorm(nn.Module):
    """transformers' LlamaRMSNorm (frozen weight) through `_RMSNorm`: same output and gradient,
    half the memory kept for a bf16 input. Shares the replaced norm's weight."""

    def __init__(self, norm: nn.Module):
        super().__init__()
        self.weight, self.variance_epsilon = norm.weight, norm.variance_epsilon

    def forward(self, x):
        return _RMSNorm.apply(x, self.weight, self.variance_epsilon)


class FastSwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)) with `silu_mul`, keeping gate and up only for backward. Holds the
    replaced MLP's own projections (LoRA-wrapped or not), so parameter names are unchanged."""

    def __init__(self, mlp: nn.Module):
        super().__init__()
        self.gate_proj, self.up_proj, self.down_proj = mlp.gate_proj, mlp.up_proj, mlp.down_proj

    def forward(self, x):
        return self.down_proj(silu_mul(self.gate_proj(x), self.up_proj(x)))


def _is_swiglu(module: nn.Module) -> bool:
    act = getattr(module, "act_fn", None)
    silu = isinstance(act, nn.SiLU) or type(act).__name__ == "SiLUActivation"
    return silu and all(hasattr(module, n) for n in ("gate_proj", "up_proj", "down_proj"))


def _wide(x: torch.Tensor) -> torch.Tensor:
    """x in float32, or float64 if it is already (softmax sums need the range bf16 lacks)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


class _CausalAttention(torch.autograd.Function):
    """Causal softmax attention that keeps what flash attention keeps for backward (q, k, v, output,
    log-sum-exp) but computes with batched matmuls, recomputing the probabilities in backward.

    q: (B, Hkv, G*L, D), the G query heads of each key/value head stacked along the rows;
    k, v: (B, Hkv, L, D). Scores and softmax in float32, matmuls in the inputs' dtype.
    """

    @staticmethod
    def _probs(q, k, lse, scale, blocked):
        scores = _wide(torch.matmul(q, k.transpose(-1, -2))).mul_(scale).masked_fill_(blocked, float("-inf"))
        if lse is None:
            lse = torch.logsumexp(scores, dim=-1, keepdim=True)
        return scores.sub_(lse).exp_(), lse

    @staticmethod
    def forward(ctx, q, k, v, scale):
        seq = k.shape[2]
        blocked = torch.ones(seq, seq, dtype=torch.bool, device=q.device).triu_(1).repeat(q.shape[2] // seq, 1)
        probs, lse = _CausalAttention._probs(q, k, None, scale, blocked)
        out = torch.matmul(probs.to(v.dtype), v)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.scale, ctx.blocked = scale, blocked
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, out, lse = ctx.saved_tensors
        probs, _ = _CausalAttention._probs(q, k, lse, ctx.scale, ctx.blocked)
        grad_out = grad_out.to(v.dtype)
        grad_v = torch.matmul(probs.to(v.dtype).transpose(-1, -2), grad_out)
        grad_probs = _wide(torch.matmul(grad_out, v.transpose(-1, -2)))
        delta = (_wide(grad_out) * _wide(out)).sum(-1, keepdim=True)
        grad_scores = probs.mul_(grad_probs.sub_(delta)).mul_(ctx.scale).to(q.dtype)
        grad_q = torch.matmul(grad_scores, k)
        grad_k = torch.matmul(grad_scores.transpose(-1, -2), q)
        return grad_q, grad_k, grad_v, None


def causal_attention(query, key, value, scale: float) -> torch.Tensor:
    """softmax(q k^T * scale + causal mask) v for query (B, H, L, D) and key/value (B, Hkv, L, D),
    H a multiple of Hkv (grouped-query attention). Returns (B, L, H, D), as transformers expects."""
    b, heads, seq, dim = query.shape
    kv_heads = key.shape[1]
    q = query.reshape(b, kv_heads, heads // kv_heads * seq, dim)  # head h uses kv head h // G
    out = _CausalAttention.apply(q, key, value, scale)
    return out.view(b, heads, seq, dim).transpose(1, 2).contiguous()


def _cpu_training_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """transformers attention interface: `causal_attention` for unmasked causal CPU training,
    the stock SDPA for everything else (masks, decoding, GPUs, no grad, attention dropout)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    plain = (
        attention_mask is None and query.device.type == "cpu" and torch.is_grad_enabled() and dropout == 0
        and getattr(module, "is_causal", True) and kwargs.get("is_causal") is not False
        and query.shape[2] == key.shape[2] and kwargs.get("softcap") is None and kwargs.get("sliding_window") is None
    )
    if not plain:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    return causal_attention(query, key, value, scale), None


ATTENTION = "pricetune_cpu_train"


def use_cpu_training_attention(model: nn.Module) -> bool:
    """Switch a model that uses SDPA to `_cpu_training_attention`; False when it uses anything else."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    config = getattr(model, "config", None)
    if config is None or config._attn_implementation not in ("sdpa", ATTENTION):
        return False
    AttentionInterface.register(ATTENTION, _cpu_training_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION, sdpa_mask)  # same masks as SDPA: none when causal suffices
    model.set_attn_implementation(ATTENTION)
    return True


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def speed_up(model: nn.Module, dropout: bool = True, swiglu: bool = True, attention: bool = True,
             rms_norm: bool = True) -> dict:
    """Replace, in place, each LoRA A matrix that has input dropout by a `DropoutLinear` (its dropout
    becomes an Identity), each frozen RMSNorm by a `FastRMSNorm`, each SwiGLU MLP by a `FastSwiGLU`,
    and switch SDPA to `_cpu_training_attention`; returns what changed. Parameters are shared, never
    copied, so names, the optimizer and the saved adapter are unchanged. (The switches are for
    bench/studies/ablation.py, which measures each change alone.)"""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    attn = attention and use_cpu_training_attention(base)
    dropouts = mlps = norms = 0
    for module in list(model.modules()):
        lora_dropout, lora_a = getattr(module, "lora_dropout", None), getattr(module, "lora_A", None)
        if dropout and isinstance(lora_dropout, nn.ModuleDict) and isinstance(lora_a, nn.ModuleDict):
            for key, drop in list(lora_dropout.items()):
                linear = lora_a[key] if key in lora_a else None
                if type(drop) is nn.Dropout and drop.p > 0 and type(linear) is nn.Linear and linear.bias is None:
                    lora_a[key] = DropoutLinear(linear, drop.p)
                    lora_dropout[key] = nn.Identity()  # the dropout now happens inside lora_A
                    dropouts += 1
    for name, module in list(model.named_modules()):
        if rms_norm and type(module).__name__ in _RMS_NORMS and not module.weight.requires_grad:
            _replace(model, name, FastRMSNorm(module))
            norms += 1
        elif swiglu and _is_swiglu(module):
            _replace(model, name, FastSwiGLU(module))
            mlps += 1
    return {"lora_dropouts": dropouts, "swiglu_mlps": mlps, "rms_norms": norms,
            "attention": ATTENTION if attn else None}
