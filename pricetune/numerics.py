"""One guard for the CPU maths torch hands to Intel's MKL: each VML function's kernel is chosen before
two threads can race to choose it.

    from pricetune.numerics import settle_mkl
    settle_mkl()    # once per process, before the first model or net; pricetune's loaders call it

torch's x86 wheels (2.13 bundles oneMKL 2024.2) compute float and double cos, sin, exp, log, sqrt,
tanh and others with MKL's VML, each thread on its own chunk of the tensor. MKL picks a function's
kernel on that function's first call; when two threads make that first call together, one of them
can run a low-accuracy kernel over its whole chunk (pytorch/pytorch#188792: gone in oneMKL 2025.0, a
torch fix pending). In pricetune that was the rotary embedding's `cos` in the first batch a process
priced: on a 2-core Xeon, 15 to 29 of 100 fresh processes computed half of it with errors of 1.5e-4
instead of 3.6e-8, and 3 of 40 processes pricing the demo's first batch moved 14 of its 16 greedy
prices, by up to 1.7% (docs/results/first-call/). A one-element call runs on the calling thread alone,
so the choice is made once, without a race, and every later call is the accurate kernel.
"""

from __future__ import annotations

from functools import cache

# the unary functions ATen sends to VML for contiguous float and double tensors (aten/src/ATen/cpu/vml.h)
VML_FUNCTIONS = ("abs", "acos", "asin", "atan", "cos", "erf", "erfc", "exp", "expm1", "log", "log10", "log1p",
                 "log2", "sin", "sqrt", "tan", "tanh", "trunc")


@cache
def settle_mkl() -> None:
    """Call each VML function once on one element, single-threaded (a no-op without MKL)."""
    import torch

    if not torch.backends.mkl.is_available():
        return
    for dtype in (torch.float32, torch.float64):
        x = torch.full((1,), 0.5, dtype=dtype)
        for name in VML_FUNCTIONS:
            getattr(torch, name)(x)
