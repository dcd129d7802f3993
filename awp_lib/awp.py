"""Adversarial Weight Perturbation: Algorithm 2 of the paper, in its general form.

The weight perturbation ``v`` lives on conv and linear kernels only (parameters with more than
one dimension); biases and BN parameters and buffers are never perturbed. Each of the K₂
ascent steps (Algorithm 2, line 13) moves ``v`` by η₂·‖w_l‖·g_l/‖g_l‖ per layer ``l`` along
the gradient g of the *method's own loss* at w + v, then projects onto the layer-wise ball
‖v_l‖ ≤ γ‖w_l‖ (Π_γ, Eq. 15). With A = K₂ = 1 and the default η₂ = γ/(A·K₂) this is the
official code: ‖v_l‖ = γ‖w_l‖ along the layer-normalised gradient.

Two controls, options of the same class and of the training loop:

* ``direction="random"``: v is a fresh Gaussian direction per batch (drawn from
  :attr:`AWP.generator`), rescaled onto the budget's sphere; no gradient is taken, K₂ and η₂
  are unused. Does the *adversarial* direction matter, or only the size of the perturbation?
* ``scope="global"``: one budget ‖v‖ ≤ γ‖w‖ over all perturbed kernels together (norms of the
  concatenations) instead of Eq. 15's per layer; an ascent step moves v by η₂·‖w‖·g/‖g‖.

Differences from the official implementation (explained in chapter 4): no proxy model is
copied; the weight attack runs on the real model in place, its BN running statistics are
saved and put back, and gradients come from ``torch.autograd.grad``, so neither ``.grad`` nor
the optimizer state is touched.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .precision import weights_changed
from .validate import check_choice


def perturbable(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The parameters AWP perturbs: conv and linear kernels (``dim > 1``)."""
    return [(n, p) for n, p in model.named_parameters() if p.dim() > 1 and p.requires_grad]


# The budgets. AT vs AT-AWP: 1e-2, from the official AT-AWP code's logs behind Table 3
# (awp_size=0.01; the paper states no γ for Table 3). Tables 4 and 5: Appendix F's 5e-3 ("For AWP,
# we all set γ = 5 × 10⁻³"), which the book also gives TRADES-, MART- and RST-AWP (the official
# TRADES-AWP code's default; no MART-AWP or RST-AWP code was published).
GAMMA_TABLE3 = 1e-2
GAMMA_APPENDIX_F = 5e-3

DIRECTIONS = ("adversarial", "random")
SCOPES = ("layer", "global")


def _norms(w) -> list[torch.Tensor]:
    return [wl.norm() if wl.dim() else wl for wl in w]


def _radii(v, w, gamma: float, scope: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(‖v‖, γ‖w‖)`` per layer (``layer``), or the pair of the concatenations for every layer (``global``)."""
    vn, wn = _norms(v), _norms(w)
    if scope == "global":
        return [(torch.stack(vn).norm(), gamma * torch.stack(wn).norm())] * len(v)
    return [(a, gamma * b) for a, b in zip(vn, wn)]


def project(v: list[torch.Tensor], w: list[torch.Tensor], gamma: float, scope: str = "layer") -> list[torch.Tensor]:
    """Π_γ: rescale v onto the sphere of its budget where it lies outside, else leave it.

    ``layer`` (Eq. 15): each v_l with ‖v_l‖ > γ‖w_l‖; ``global``: all of v when ‖v‖ > γ‖w‖.
    ``w`` holds the layers' weights, or just their norms ‖w_l‖ (0-d tensors).
    """
    return [vl * (radius / norm) if norm > radius else vl for vl, (norm, radius) in zip(v, _radii(v, w, gamma, scope))]


def project_layerwise(v: list[torch.Tensor], w: list[torch.Tensor], gamma: float) -> list[torch.Tensor]:
    """Π_γ of Eq. 15: :func:`project` with ``scope="layer"``."""
    return project(v, w, gamma, "layer")


def onto_sphere(v: list[torch.Tensor], w: list[torch.Tensor], gamma: float, scope: str = "layer") -> list[torch.Tensor]:
    """v rescaled to norm exactly γ‖w_l‖ per layer (``layer``) or γ‖w‖ in all (``global``)."""
    return [vl * (radius / norm) for vl, (norm, radius) in zip(v, _radii(v, w, gamma, scope))]


class AWP:
    """Weight perturbation v for ``model`` with budget γ = ``gamma``.

    ``steps`` = K₂, ``alternations`` = A (used by the trainer, which alternates input and
    weight attacks), ``step_size`` = η₂ (default γ/(A·K₂)).

    ``direction`` = ``adversarial`` | ``random`` and ``scope`` = ``layer`` | ``global``: see the
    module's docstring.

    Usage per mini-batch (the trainer does this)::

        awp.perturb(lambda: method_loss(model, x, x_adv, y))   # w <- w + v
        method_loss(model, x, x_adv, y).backward()             # gradient at w + v
        awp.restore()                                          # w <- w
        optimizer.step()                                       # Algorithm 2, line 16
    """

    def __init__(self, model: nn.Module, gamma: float, steps: int = 1, alternations: int = 1,
                 step_size: float | None = None, direction: str = "adversarial", scope: str = "layer"):
        check_choice("awp direction", direction, DIRECTIONS)
        check_choice("awp scope", scope, SCOPES)
        if not gamma >= 0:
            raise ValueError(f"gamma={gamma!r} is invalid: the AWP budget must be >= 0")
        if not (isinstance(steps, int) and steps >= 1 and isinstance(alternations, int) and alternations >= 1):
            raise ValueError(f"awp steps={steps!r} and alternations={alternations!r} must be positive integers")
        self.model, self.gamma, self.steps, self.alternations = model, gamma, steps, alternations
        self.direction, self.scope = direction, scope
        self.step_size = gamma / (alternations * steps) if step_size is None else step_size
        named = perturbable(model)
        self.names, self.params = (tuple(n for n, _ in named), tuple(p for _, p in named))
        self.v = None  # the perturbation currently applied, or None
        # Data-parallel training sets this to average the weight gradients over processes, so that
        # every process finds the same v as one process on the whole batch.
        self.grad_reduce = None
        # The random direction's source (None: the global RNG). The trainer seeds one per epoch from
        # (seed, epoch) alone, so that every torchrun process draws the same v, and resumed runs too.
        self.generator: torch.Generator | None = None

    def _bn_buffers(self):
        return [b for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) for b in m.buffers()]

    @torch.no_grad()
    def _apply(self, delta, sign=1.0):
        for p, d in zip(self.params, delta):
            p.add_(d, alpha=sign)
        weights_changed()  # an enclosing autocast region must not reuse its bf16 copies of w

    def perturb(self, loss_fn, steps: int | None = None) -> list[torch.Tensor]:
        """Run K₂ projected ascent steps on v (continuing from the current v), leave w + v applied.

        ``loss_fn()`` must compute the method's loss with the model as it is (at w + v).
        BN running statistics are restored after the extra forward passes. A ``random`` direction
        is drawn once per batch (the first call after :meth:`restore`); ``loss_fn`` is not called.
        """
        if self.gamma == 0:
            return []
        if self.v is None:  # a new batch: ‖w_l‖ is fixed until restore()
            self.w_norms = [p.detach().norm() for p in self.params]
        if self.direction == "random":
            if self.v is None:
                d = [torch.randn(p.shape, generator=self.generator, device=p.device, dtype=p.dtype)
                     for p in self.params]
                self.v = onto_sphere(d, self.w_norms, self.gamma, self.scope)
                self._apply(self.v)
            return self.v
        saved = [b.clone() for b in self._bn_buffers()]
        v = self.v or [torch.zeros_like(p) for p in self.params]
        for _ in range(steps or self.steps):
            grads = torch.autograd.grad(loss_fn(), self.params, allow_unused=True)
            grads = [torch.zeros_like(p) if g is None else g for p, g in zip(self.params, grads)]
            if self.grad_reduce is not None:
                grads = self.grad_reduce(grads)
            if self.scope == "layer":   # η₂·‖w_l‖·g_l/‖g_l‖ per layer (Algorithm 2, line 13)
                scales = [self.step_size * wn / (g.norm() + 1e-20) for g, wn in zip(grads, self.w_norms)]
            else:                       # η₂·‖w‖·g/‖g‖ over all kernels together
                gn, wn = torch.stack(_norms(grads)).norm(), torch.stack(self.w_norms).norm()
                scales = [self.step_size * wn / (gn + 1e-20)] * len(grads)
            new_v = project([vl + c * g for vl, g, c in zip(v, grads, scales)], self.w_norms, self.gamma, self.scope)
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
