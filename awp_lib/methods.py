"""Adversarial training methods: each is *how it attacks the inputs* + *what loss it trains on*.

Appendix D.3: AWP "is a general method ... the only difference is the method-specific
adversarial loss". So a method here is exactly two functions, and AWP (:mod:`awp_lib.awp`)
ascends whichever ``loss`` the method defines (Eq. 16 for TRADES, Eq. 17 for MART).

* ``standard``: no attack; CE(f(x), y) (natural training, the non-robust baseline).
* ``at`` (Madry et al.): PGD on CE; loss CE(f(x'), y).
* ``trades`` (Zhang et al.): x' maximises KL(f(x) ‖ f(x')) from x + 0.001·N(0, I), BN in eval
  mode; loss CE(f(x), y) + β·KL(f(x) ‖ f(x')) (batch mean).
* ``mart`` (Wang et al.): PGD on CE; loss BCE(f(x'), y) + β·KL(f(x) ‖ f(x'))·(1 − p_y(x)).
* ``rst`` (Carmon et al.): TRADES on batches mixing labelled and pseudo-labelled data
  (the mixing is done by the data side, :class:`awp_lib.rst.MixedLoader`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from . import attacks
from .validate import check_choice

METHODS = ("standard", "at", "trades", "mart", "rst")


@dataclass
class Method:
    name: str
    perturb: Callable  # (model, x, y, cfg) -> x'
    loss: Callable     # (model, x, x', y, cfg) -> scalar


def _pgd_ce(model, x, y, cfg):
    return attacks.pgd(model, x, y, cfg.eps, cfg.alpha, cfg.attack_steps, cfg.norm, bn_mode=cfg.bn_mode)


def at_loss(model, x, x_adv, y, cfg=None):
    """AT: CE(f(x'), y). ``y`` may be soft targets (mixup)."""
    return F.cross_entropy(model(x_adv), y)


def kl_sum(logits_nat: torch.Tensor, logits_adv: torch.Tensor) -> torch.Tensor:
    """Σ_i KL(f(x_i) ‖ f(x'_i)) with f = softmax, as in the TRADES code (``KLDivLoss(sum)``)."""
    return F.kl_div(F.log_softmax(logits_adv, 1), F.softmax(logits_nat, 1), reduction="sum")


def trades_perturb(model, x, y, cfg):
    """Eq. 16: ascend KL(f(x) ‖ f(x')) starting from x + 0.001·N(0, I)."""
    with torch.no_grad(), attacks.attack_mode(model, cfg.bn_mode):
        p_nat = model(x).detach()
    return attacks.pgd(model, x, y, cfg.eps, cfg.alpha, cfg.attack_steps, cfg.norm,
                       loss=lambda logits, _: kl_sum(p_nat, logits), bn_mode=cfg.bn_mode,
                       delta0=0.001 * torch.randn_like(x))


def trades_loss(model, x, x_adv, y, cfg):
    """CE(f(x), y) + β·KL(f(x) ‖ f(x')), averaged over the batch."""
    logits_nat, logits_adv = model(x), model(x_adv)
    return F.cross_entropy(logits_nat, y) + cfg.beta * kl_sum(logits_nat, logits_adv) / len(x)


def mart_loss(model, x, x_adv, y, cfg):
    """MART: BCE(f(x'), y) + β·KL(f(x) ‖ f(x'))·(1 − p_y(x)), as in the MART code.

    BCE = CE(f(x'), y) − log(1 − max_{k≠y} p_k(x')).
    """
    logits_adv, logits_nat = model(x_adv), model(x)
    p_adv, p_nat = F.softmax(logits_adv, 1), F.softmax(logits_nat, 1)
    top2 = p_adv.argsort(1)[:, -2:]
    runner_up = torch.where(top2[:, -1] == y, top2[:, -2], top2[:, -1])
    bce = F.cross_entropy(logits_adv, y) + F.nll_loss(torch.log(1.0001 - p_adv + 1e-12), runner_up)
    kl = F.kl_div(torch.log(p_adv + 1e-12), p_nat, reduction="none").sum(1)
    p_true = p_nat.gather(1, y[:, None]).squeeze(1)
    return bce + cfg.beta * (kl * (1.0000001 - p_true)).mean()


REGISTRY = {
    "standard": Method("standard", lambda model, x, y, cfg: x, lambda model, x, x_adv, y, cfg: F.cross_entropy(model(x), y)),
    "at": Method("at", _pgd_ce, at_loss),
    "trades": Method("trades", trades_perturb, trades_loss),
    "mart": Method("mart", _pgd_ce, mart_loss),
    "rst": Method("rst", trades_perturb, trades_loss),
}


def chance_loss(name: str, num_classes: int, cfg) -> float:
    """The method's loss when the model predicts the uniform distribution for every input, as a
    model stuck at chance does: ln(classes) for CE, TRADES and RST; a little more for MART."""
    def uniform(x):
        return torch.zeros(len(x), num_classes)
    x, y = torch.zeros(2, 1), torch.tensor([0, 1 % num_classes])
    return get(name).loss(uniform, x, x, y, cfg).item()


def get(name: str) -> Method:
    check_choice("method", name, METHODS)
    return REGISTRY[name]
