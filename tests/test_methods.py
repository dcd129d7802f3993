"""TRADES and MART losses against hand-computed values on tiny tensors."""
import math

import pytest
import torch

from awp_lib import methods
from awp_lib.config import make_config


class Table(torch.nn.Module):
    """A 'model' that returns fixed logits for two known inputs (x = 0 or 1)."""

    def __init__(self, logits_nat, logits_adv):
        super().__init__()
        self.nat, self.adv = torch.tensor(logits_nat), torch.tensor(logits_adv)

    def forward(self, x):
        return self.nat if x.flatten()[0] == 0 else self.adv


def softmax(z):
    e = [math.exp(v) for v in z]
    return [v / sum(e) for v in e]


NAT, ADV = [[2.0, 0.0, -1.0]], [[0.5, 1.0, 0.0]]


def test_trades_loss_by_hand():
    cfg = make_config("smoke", method="trades", beta=6.0)
    m = Table(NAT, ADV)
    x, x_adv, y = torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2), torch.tensor([0])
    p, q = softmax(NAT[0]), softmax(ADV[0])
    ce = -math.log(p[0])
    kl = sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
    assert methods.trades_loss(m, x, x_adv, y, cfg).item() == pytest.approx(ce + 6 * kl, rel=1e-5)


def test_mart_loss_by_hand():
    cfg = make_config("smoke", method="mart", beta=6.0)
    m = Table(NAT, ADV)
    x, x_adv, y = torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2), torch.tensor([0])
    p, q = softmax(NAT[0]), softmax(ADV[0])
    # BCE on x': CE + -log(1 - max_{k != y} q_k); the runner-up of q is class 1 (q_1 is the max, != y)
    bce = -math.log(q[0]) - math.log(1.0001 - q[1])
    kl = sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
    expected = bce + 6 * kl * (1 - p[0])
    assert methods.mart_loss(m, x, x_adv, y, cfg).item() == pytest.approx(expected, rel=1e-4)


def test_at_loss_and_unknown_method():
    m = Table(NAT, ADV)
    y = torch.tensor([1])
    assert methods.at_loss(m, None, torch.ones(1, 1, 2, 2), y).item() == pytest.approx(-math.log(softmax(ADV[0])[1]), rel=1e-5)
    with pytest.raises(ValueError, match="unknown method 'pgdat'; valid choices: standard, at, trades, mart, rst"):
        methods.get("pgdat")


def test_trades_attack_stays_in_ball():
    from awp_lib import models
    torch.manual_seed(0)
    model = models.build_model("smallcnn", "fashion-mnist", width=4)
    cfg = make_config("smoke", method="trades", eps=0.1)
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    x_adv = methods.trades_perturb(model, x, y, cfg)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    assert (x_adv - x).abs().max() > 0.05
