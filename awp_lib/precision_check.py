"""Does a weight perturbation survive a precision? One training step, measured.

:func:`awp_step_effect` takes one AT step and one AT-AWP step from the same weights, batch and
random state, under a precision, and returns both losses and how far apart the two steps leave
the weights. Under a precision that hides w + v, the AT-AWP loss equals AT's and the weights
differ by rounding only. Chapter 4's box "Weight perturbations and mixed precision", the tests
and ``tools/gpu-check.sh`` call it.

:func:`loss_after_in_place_change` shows the trap itself, without the library's guards: the loss
at w and at w + v inside one autocast region, with its weight cache on or off.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from . import methods, models
from .awp import AWP
from .config import Config
from .precision import autocast, compiled
from .train import train_step

# How a step is run: fp32; bf16 in the library's region (weight cache off); bf16 inside a region of
# the caller with the cache on (the default of torch.autocast), which AWP's guard must empty.
MODES = ("fp32", "bf16", "bf16-cached")


def region(mode: str, device: torch.device | str):
    """The autocast region of ``mode`` (see :data:`MODES`)."""
    device = torch.device(device)
    if mode == "bf16-cached":
        return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=True)  # torch's default
    return autocast(device, "bf16" if mode == "bf16" else "none")


def awp_step_effect(cfg: Config, x: torch.Tensor, y: torch.Tensor, mode: str = "fp32", gamma: float | None = None,
                    direction: str | None = None, scope: str | None = None, seed: int = 0,
                    compile: bool = False, keep_weights: bool = False) -> dict:
    """One step of ``cfg.method`` without and with AWP (budget ``gamma``, default ``cfg.awp_gamma``)
    from the same start, under ``mode`` (and ``torch.compile``-d as training compiles it, with
    ``compile``): ``{"loss": ..., "loss_awp": ..., "weight_diff": ‖w_AWP − w‖}``, and the weights
    after the AWP step as one vector under ``"weights"`` with ``keep_weights``."""
    if mode not in MODES:
        raise ValueError(f"unknown precision mode {mode!r}; valid choices: {', '.join(MODES)}")
    gamma = cfg.awp_gamma if gamma is None else gamma
    if not gamma > 0:
        raise ValueError(f"gamma={gamma!r}: the AWP budget of the comparison must be > 0")
    out, weights = {}, []
    for key, g in (("loss", 0.0), ("loss_awp", gamma)):
        torch.manual_seed(seed)
        model = models.build_model(cfg.model, cfg.dataset, cfg.width).to(x.device)
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        awp = AWP(model, g, cfg.awp_steps, cfg.awp_alternations, cfg.awp_step, direction or cfg.awp_direction,
                  scope or cfg.awp_scope) if g else None
        if awp is not None:
            awp.generator = torch.Generator(x.device).manual_seed(seed + 1)
        torch.manual_seed(seed + 1)  # the attack's random start: the same for both steps
        model.train()
        with region(mode, x.device):
            net = compiled(model, x.device) if compile else model
            out[key] = train_step(net, opt, methods.get(cfg.method), cfg, x, y, awp).item()
        weights.append(torch.cat([p.detach().float().flatten() for p in model.parameters()]))
    out["weight_diff"] = (weights[1] - weights[0]).norm().item()
    if keep_weights:
        out["weights"] = weights[1]
    return out


def loss_after_in_place_change(model, x, y, v: dict, device: torch.device | str, amp: str, cache: bool) -> tuple:
    """``(loss at w, loss at w + v)`` computed in *one* autocast region (``amp`` ``bf16`` or ``none``,
    weight cache ``cache``), with ``v`` (``{parameter name: tensor}``) added in place in between,
    as a SAM- or AWP-style method does; the weights are put back afterwards."""
    device = torch.device(device)
    params = dict(model.named_parameters())
    ctx = (torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=cache) if amp == "bf16"
           else contextlib.nullcontext())
    with ctx:
        before = F.cross_entropy(model(x), y).item()
        with torch.no_grad():
            for n, d in v.items():
                params[n].add_(d)
        after = F.cross_entropy(model(x), y).item()
    with torch.no_grad():
        for n, d in v.items():
            params[n].sub_(d)
    return before, after
