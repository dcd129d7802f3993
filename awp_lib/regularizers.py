"""The regularisers of Appendix F, compared with AWP: cutout, mixup, L1 / L2 weight penalties."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .awp import perturbable


def cutout(x: torch.Tensor, size: int) -> torch.Tensor:
    """Zero a random ``size`` x ``size`` patch per image (centre anywhere, clipped at borders)."""
    n, _, h, w = x.shape
    cy, cx = torch.randint(0, h, (n,)), torch.randint(0, w, (n,))
    ys, xs = torch.arange(h)[None], torch.arange(w)[None]
    my = ((ys - cy[:, None]) >= -(size // 2)) & ((ys - cy[:, None]) < size - size // 2)
    mx = ((xs - cx[:, None]) >= -(size // 2)) & ((xs - cx[:, None]) < size - size // 2)
    my, mx = my.to(x.device), mx.to(x.device)
    mask = (my[:, :, None] & mx[:, None, :])[:, None]
    return x.masked_fill(mask, 0.0)


def mixup(x, y, alpha: float, num_classes: int):
    """x̃ = λx + (1−λ)x[π], ỹ = λ·onehot(y) + (1−λ)·onehot(y[π]), λ ~ Beta(α, α)."""
    lam = torch.distributions.Beta(alpha, alpha).sample().item()
    perm = torch.randperm(len(x), device=x.device)
    yo = F.one_hot(y, num_classes).float()
    return lam * x + (1 - lam) * x[perm], lam * yo + (1 - lam) * yo[perm]


def weight_penalty(model, kind: str, strength: float) -> torch.Tensor:
    """λ·Σ|w| (``l1``) or λ·Σw² (``l2``) over conv and linear kernels, added to the training loss."""
    ws = [p for _, p in perturbable(model)]
    if kind == "l1":
        return strength * sum(w.abs().sum() for w in ws)
    return strength * sum(w.pow(2).sum() for w in ws)
