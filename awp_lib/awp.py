"""Adversarial Weight Perturbation: Algorithm 2 of the paper, in its general form.

The weight perturbation ``v`` lives on conv and linear kernels only (parameters with more than
one dimension); biases and BN parameters and buffers are never perturbed. Each of the K₂
ascent steps (Algorithm 2, line 13) moves ``v`` by η₂·‖w_l‖·g_l/‖g_l‖ per layer ``l`` along
the gradient g of the *method's own loss* at w + v, then projects onto the layer-wise ball
‖v_l‖ ≤ γ‖w_l‖ (Π_γ, Eq. 15). With A = K₂ = 1 and the default η₂ = γ/(A·K₂) this is the
official code: ‖v_l‖ = γ‖w_l‖ along the layer-normalised gradient.

Differences from the official implementation (explained in chapter 4): no proxy model is
copied; the weight attack runs on the real model in place, its BN running statistics are
saved and put back, and gradients come from ``torch.autograd.grad``, so neither ``.grad`` nor
the optimizer state is touched.
"""
from __future__ import annotations

import torch
import torch.nn as nn


def perturbable(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The parameters AWP perturbs: conv and linear kernels (``dim > 1``)."""
    return [(n, p) for n, p in model.named_parameters() if p.dim() > 1 and p.requires_grad]


def project_layerwise(v: list[torch.Tensor], w: list[torch.Tensor], gamma: float) -> list[torch.Tensor]:
    """Π_γ (Eq. 15): rescale each v_l with ‖v_l‖ > γ‖w_l‖ onto the sphere of radius γ‖w_l‖.

    ``w`` holds the layers' weights, or just their norms ‖w_l‖ (0-d tensors).
    """
    out = []
    for vl, wl in zip(v, w):
        radius, norm = gamma * (wl.norm() if wl.dim() else wl), vl.norm()
        out.append(vl * (radius / norm) if norm > radius else vl)
    return out


class AWP:
    """Weight perturbation v for ``model`` with budget γ = ``gamma``.

    ``steps`` = K₂, ``alternations`` = A (used by the trainer, which alternates input and
    weight attacks), ``step_size`` = η₂ (default γ/(A·K₂)).

    Usage per mini-batch (the trainer does this)::

        awp.perturb(lambda: method_loss(model, x, x_adv, y))   # w <- w + v
        method_loss(model, x, x_adv, y).backward()             # gradient at w + v
        awp.restore()                                          # w <- w
        optimizer.step()                                       # Algorithm 2, line 16
    """

    def __init__(self, model: nn.Module, gamma: float, steps: int = 1, alternations: int = 1,
                 step_size: float | None = None):
        if not gamma >= 0:
            raise ValueError(f"gamma={gamma!r} is invalid: the AWP budget must be >= 0")
        if not (isinstance(steps, int) and steps >= 1 and isinstance(alternations, int) and alternations >= 1):
            raise ValueError(f"awp steps={steps!r} and alternations={alternations!r} must be positive integers")
        self.model, self.gamma, self.steps, self.alternations = model, gamma, steps, alternations
        self.step_size = gamma / (alternations * steps) if step_size is None else step_size
        named = perturbable(model)
        self.names, self.params = (tuple(n for n, _ in named), tuple(p for _, p in named))
        self.v = None  # the perturbation currently applied, or None
        # Data-parallel training sets this to average the weight gradients over processes, so that
        # every process finds the same v as one process on the whole batch.
        self.grad_reduce = None

    def _bn_buffers(self):
        return [b for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) for b in m.buffers()]

    @torch.no_grad()
    def _apply(self, delta, sign=1.0):
        for p, d in zip(self.params, delta):
            p.add_(d, alpha=sign)

    def perturb(self, loss_fn, steps: int | None = None) -> list[torch.Tensor]:
        """Run K₂ projected ascent steps on v (continuing from the current v), leave w + v applied.

        ``loss_fn()`` must compute the method's loss with the model as it is (at w + v).
        BN running statistics are restored after the extra forward passes.
        """
        if self.gamma == 0:
            return []
        saved = [b.clone() for b in self._bn_buffers()]
        if self.v is None:  # a new batch: ‖w_l‖ is fixed until restore()
            self.w_norms = [p.detach().norm() for p in self.params]
        v = self.v or [torch.zeros_like(p) for p in self.params]
        for _ in range(steps or self.steps):
            grads = torch.autograd.grad(loss_fn(), self.params, allow_unused=True)
            if self.grad_reduce is not None:
                grads = self.grad_reduce([torch.zeros_like(p) if g is None else g for p, g in zip(self.params, grads)])
            new_v = [vl if g is None else vl + (self.step_size * wn / (g.norm() + 1e-20)) * g
                     for vl, g, wn in zip(v, grads, self.w_norms)]
            new_v = project_layerwise(new_v, self.w_norms, self.gamma)
            self._apply([nv - vl for nv, vl in zip(new_v, v)])
            v = new_v
        with torch.no_grad():
            for b, s in zip(self._bn_buffers(), saved):
                b.copy_(s)
        self.v = v
        return v

    def restore(self) -> None:
        """Subtract v: the weights return to w (Algorithm 2, line 16)."""
        if self.v is not None:
            self._apply(self.v, -1.0)
            self.v = None
