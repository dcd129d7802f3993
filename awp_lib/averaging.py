"""Weight averaging of a training run, a control for AWP's flatter minima.

* ``ema``: an exponential moving average of the weights, updated after every optimizer step.
  After the t-th update (t = 0, 1, ...), with d_t = min(``ema_decay``, (1 + t)/(10 + t)),
  w̄ ← d_t·w̄ + (1 − d_t)·w, starting from w̄ = the initial weights. The warm-up of d_t (as in
  TensorFlow's ``ExponentialMovingAverage`` with ``num_updates``) keeps short runs from being
  averaged with their random initialisation. Floating-point buffers (BN running statistics)
  are averaged alike, integer ones copied. ``ema_decay`` is per step; the default 0.99 averages
  over ~1/(1 − d) = 100 steps: about 6 epochs of the cpu profile (16 steps an epoch), a quarter
  of an epoch at paper scale (391 steps), where 0.999 (~2.5 epochs) is the usual choice.
* ``swa`` (Izmailov et al. 2018): the plain mean of the weights at the end of every epoch after
  the first ``swa_start``·epochs; then the BN statistics are recomputed on the training set
  (``torch.optim.swa_utils.update_bn``): the average of running statistics is not the statistics
  of the averaged weights. Before the first such epoch the averaged model is the model itself.
  The lr schedule is the configured one (Izmailov et al. hold a high constant lr meanwhile).

When averaging is on, the per-epoch evaluation, ``best``, the checkpoints' ``model`` and the
final evaluation are those of the averaged weights; ``last.pt`` also holds the trained weights
(``trained``) and the update count (``average_n``), so that a resumed run equals an
uninterrupted one.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn
from torch.optim.swa_utils import update_bn

from .precision import weights_changed
from .validate import check_choice

AVERAGES = ("none", "ema", "swa")


class WeightAverage:
    """The averaged copy of ``model`` (``kind`` = ``none`` keeps no copy)."""

    def __init__(self, model: nn.Module, kind: str = "none", ema_decay: float = 0.99,
                 swa_start: float = 0.75, epochs: int = 1):
        check_choice("weight_average", kind, AVERAGES)
        # SWA averages the epochs e (1-based) with e > swa_start·epochs
        self.kind, self.decay, self.first_epoch = kind, ema_decay, math.floor(swa_start * epochs + 1e-9) + 1
        self.n = 0  # updates so far: optimizer steps (ema) or averaged epochs (swa)
        self.model = None
        if kind != "none":
            self.model = copy.deepcopy(model)
            for p in self.model.parameters():
                p.requires_grad_(False)
        # Data-parallel training sets this to average the recomputed BN statistics over processes.
        self.buffer_reduce = None

    def evaluated(self, model: nn.Module) -> nn.Module:
        """The module to evaluate and checkpoint: the average, or ``model`` where there is none yet."""
        return model if self.model is None or (self.kind == "swa" and self.n == 0) else self.model

    @torch.no_grad()
    def after_step(self, model: nn.Module) -> None:
        """EMA: w̄ ← d_t·w̄ + (1 − d_t)·w after optimizer step t (nothing for the other kinds)."""
        if self.kind != "ema":
            return
        d = min(self.decay, (1 + self.n) / (10 + self.n))
        for a, w in zip(self.model.state_dict().values(), model.state_dict().values()):
            if a.is_floating_point():
                a.mul_(d).add_(w.detach(), alpha=1 - d)
            else:
                a.copy_(w)
        weights_changed()
        self.n += 1

    @torch.no_grad()
    def after_epoch(self, model: nn.Module, epoch: int, loader) -> bool:
        """SWA: from epoch ``swa_start``·epochs + 1 (1-based) on, add the weights to the mean and
        recompute BN statistics on ``loader``; whether it did."""
        if self.kind != "swa" or epoch + 1 < self.first_epoch:
            return False
        for a, w in zip(self.model.parameters(), model.parameters()):
            if self.n == 0:
                a.copy_(w)
            else:
                a.add_(w.detach() - a, alpha=1 / (self.n + 1))  # w̄ ← w̄ + (w − w̄)/(n + 1)
        for a, w in zip(self.model.buffers(), model.buffers()):
            a.copy_(w)  # BN statistics are recomputed below; other buffers follow the model
        weights_changed()
        recompute_bn(self.model, loader)
        if self.buffer_reduce is not None:
            self.buffer_reduce([b for m in _bn_modules(self.model) for b in (m.running_mean, m.running_var)])
        self.n += 1
        return True

    def load(self, state: dict, n: int) -> None:
        """Resume: the averaged weights (a checkpoint's ``model``) and the update count."""
        if self.model is not None:
            self.model.load_state_dict(state)
            weights_changed()
        self.n = n


def _bn_modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def recompute_bn(model: nn.Module, loader) -> None:
    """BN running statistics of ``model`` as the plain average over one pass of ``loader``
    (``update_bn``: momentum None, train mode); a model without BN is left as it is."""
    if _bn_modules(model):
        with torch.no_grad():
            update_bn(loader, model)
