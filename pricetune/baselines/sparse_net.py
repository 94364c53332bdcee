"""The net of the `mlp` baseline: a sparse first layer (an `EmbeddingBag` summing the rows of an item's
non-zero features, each weighted by its value) and a small dense tail. Kept apart from `mlp.py` so
that importing the baselines does not import torch."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..numerics import settle_mkl

HIDDEN = (256, 64, 64)


class SparseNet(nn.Module):
    """features -> 256 -> 64 -> 64 -> 1, ReLUs between; the first layer reads sparse rows."""

    def __init__(self, n_features: int, seed: int):
        super().__init__()
        settle_mkl()  # Adam's first step takes square roots on both threads
        torch.manual_seed(seed)
        self.first = nn.EmbeddingBag(n_features, HIDDEN[0], mode="sum", sparse=True)
        # Glorot-uniform, as Keras' Dense: EmbeddingBag's default N(0, 1) would make a sum over ~1,000
        # binary features start far out of the ReLUs' useful range
        bound = math.sqrt(6.0 / (n_features + HIDDEN[0]))
        nn.init.uniform_(self.first.weight, -bound, bound)
        self.first_bias = nn.Parameter(torch.zeros(HIDDEN[0]))
        layers: list[nn.Module] = [nn.ReLU()]
        for a, b in zip(HIDDEN, HIDDEN[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.rest = nn.Sequential(*layers, nn.Linear(HIDDEN[-1], 1))

    def forward(self, indices, offsets, weights):
        return self.rest(self.first(indices, offsets, per_sample_weights=weights) + self.first_bias).squeeze(-1)

    def optimizers(self, lr: float) -> list[torch.optim.Optimizer]:
        """SparseAdam for the first layer (only the rows a batch touched move), Adam for the rest."""
        dense = [p for name, p in self.named_parameters() if name != "first.weight"]
        return [torch.optim.SparseAdam([self.first.weight], lr=lr), torch.optim.Adam(dense, lr=lr)]


def inputs(x, binary: bool):
    """A CSR matrix's rows as EmbeddingBag inputs: feature indices, row offsets, values (1 if binary)."""
    x = x.tocsr()
    values = np.ones_like(x.data, dtype=np.float32) if binary else x.data.astype(np.float32)
    return (torch.from_numpy(x.indices.astype(np.int64)), torch.from_numpy(x.indptr[:-1].astype(np.int64)),
            torch.from_numpy(values))


def predict_scaled(net: SparseNet, x, binary: bool, batch: int = 2048) -> np.ndarray:
    """The net's outputs (standardised log prices) for the rows of `x`."""
    net.eval()
    with torch.no_grad():
        out = [net(*inputs(x[i:i + batch], binary)).numpy() for i in range(0, x.shape[0], batch)]
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def train_epoch(net: SparseNet, optimizers, x, y: np.ndarray, batch: int, binary: bool, rng: np.random.Generator,
                bar=None) -> None:
    """One pass over the rows in a shuffled order, Huber loss on the standardised log price."""
    net.train()
    order = rng.permutation(x.shape[0])
    for start in range(0, len(order), batch):
        rows = order[start:start + batch]
        loss = nn.functional.huber_loss(net(*inputs(x[rows], binary)), torch.from_numpy(y[rows]))
        for opt in optimizers:
            opt.zero_grad()
        loss.backward()
        for opt in optimizers:
            opt.step()
        if bar is not None:
            bar.update(len(rows))


def from_state(state: dict) -> SparseNet:
    """A net with saved weights (numpy arrays, as `SparseMlp` stores them)."""
    net = SparseNet(state["first.weight"].shape[0], 0)
    net.load_state_dict({k: torch.from_numpy(v.astype(np.float32)) for k, v in state.items()})
    return net


def to_state(net: SparseNet) -> dict:
    """A trained net's weights as numpy arrays, the (large) first layer in float16 to halve the file."""
    return {k: v.detach().numpy().astype(np.float16 if k == "first.weight" else np.float32)
            for k, v in net.state_dict().items()}
