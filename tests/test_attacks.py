import pytest
import torch
import torch.nn.functional as F

from awp_lib import attacks as A
from awp_lib import data
from awp_lib.evaluate import evaluate


def batch(fmnist, n=128):
    return fmnist.test[0][:n].float() / 255, fmnist.test[1][:n]


@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 1.5)])
@pytest.mark.parametrize("attack", ["fgsm", "pgd", "pgd-restarts", "cw", "fgsm-rs"])
def test_outputs_in_ball_and_box(trained_cnn, fmnist, norm, eps, attack):
    x, y = batch(fmnist)
    kw = dict(alpha=eps / 4, steps=5, norm=norm)
    x_adv = {"fgsm": lambda: A.fgsm(trained_cnn, x, y, eps, norm),
             "fgsm-rs": lambda: A.fgsm(trained_cnn, x, y, eps, norm, random_start=True),
             "pgd": lambda: A.pgd(trained_cnn, x, y, eps, **kw),
             "pgd-restarts": lambda: A.pgd(trained_cnn, x, y, eps, restarts=3, **kw),
             "cw": lambda: A.cw(trained_cnn, x, y, eps, **kw)}[attack]()
    d = (x_adv - x).flatten(1)
    size = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
    assert size.max().item() <= eps + 1e-5
    assert size.max().item() > 0.5 * eps  # the attack actually moved
    assert x_adv.min() >= 0 and x_adv.max() <= 1


def test_projection_norms():
    torch.manual_seed(0)
    d = torch.randn(16, 3, 8, 8) * 3
    assert A.project(d, 0.3, "linf").abs().amax().item() == pytest.approx(0.3)
    p = A.project(d, 2.0, "l2")
    assert torch.allclose(p.flatten(1).norm(dim=1), torch.full((16,), 2.0), atol=1e-5)
    small = d * 1e-3
    assert torch.equal(A.project(small, 2.0, "l2"), small)  # inside the ball: unchanged
    for norm, eps in (("linf", 0.1), ("l2", 1.0)):
        x = torch.rand(64, 1, 28, 28)
        s = A.init_delta(x, eps, norm).flatten(1)
        size = s.abs().amax(1) if norm == "linf" else s.norm(dim=1)
        assert size.max() <= eps + 1e-6 and ((x.flatten(1) + s) >= 0).all() and ((x.flatten(1) + s) <= 1).all()


def test_loss_ordering(trained_cnn, fmnist):
    x, y = batch(fmnist, 256)
    eps = 0.1
    with torch.no_grad():
        clean = F.cross_entropy(trained_cnn(x), y).item()
        fg = F.cross_entropy(trained_cnn(A.fgsm(trained_cnn, x, y, eps)), y).item()
        pg = F.cross_entropy(trained_cnn(A.pgd(trained_cnn, x, y, eps, eps / 4, 10)), y).item()
    assert pg >= fg >= clean, (clean, fg, pg)
    assert pg > clean + 0.5


def test_restarts_keep_worst(trained_cnn, fmnist):
    x, y = batch(fmnist, 256)
    torch.manual_seed(1)
    one = A.pgd(trained_cnn, x, y, 0.05, 0.0125, 5)
    torch.manual_seed(1)
    many = A.pgd(trained_cnn, x, y, 0.05, 0.0125, 5, restarts=4)
    with torch.no_grad():
        acc_one = (trained_cnn(one).argmax(1) == y).float().mean()
        acc_many = (trained_cnn(many).argmax(1) == y).float().mean()
    assert acc_many <= acc_one


def test_bn_mode_and_params_restored():
    from awp_lib.models import build_model
    model = build_model("preactresnet18", "fashion-mnist").train()
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    A.pgd(model, x, y, 0.1, 0.025, 2, bn_mode="eval")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # eval: BN stats untouched
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert all(p.grad is None for p in model.parameters())
    A.pgd(model, x, y, 0.1, 0.025, 2, bn_mode="train")
    assert not torch.equal(before["bn.running_mean"], model.state_dict()["bn.running_mean"])  # train: stats move
    model.eval()
    A.pgd(model, x, y, 0.1, 0.025, 1, bn_mode="train")
    assert not model.training


def test_agrees_with_torchattacks(trained_cnn, fmnist):
    torchattacks = pytest.importorskip("torchattacks", reason="installed by `make venv`")
    x, y = batch(fmnist, 500)
    eps, alpha, steps = 0.1, 0.025, 10
    torch.manual_seed(0)
    ours = (trained_cnn(A.pgd(trained_cnn, x, y, eps, alpha, steps)).argmax(1) == y).float().mean().item()
    theirs_adv = torchattacks.PGD(trained_cnn, eps=eps, alpha=alpha, steps=steps, random_start=True)(x, y)
    theirs = (trained_cnn(theirs_adv).argmax(1) == y).float().mean().item()
    assert abs(ours - theirs) <= 0.02, (ours, theirs)
    assert ours < (trained_cnn(x).argmax(1) == y).float().mean().item()


def test_evaluate_battery(trained_cnn, fmnist):
    loader = data.Loader(*fmnist.test, batch_size=250)
    r = evaluate(trained_cnn, loader, 0.1, attacks=("natural", "fgsm", "pgd20", "cw"))
    assert set(r) == {"natural", "fgsm", "pgd20", "cw"}
    assert all(0 <= v <= 1 for v in r.values())
    assert r["pgd20"] <= r["fgsm"] <= r["natural"] and r["natural"] > 0.6


def test_evaluate_is_callable_from_the_package(trained_cnn, fmnist):
    import awp_lib
    loader = data.Loader(fmnist.test[0][:100], fmnist.test[1][:100], batch_size=100)
    r = awp_lib.evaluate.evaluate(trained_cnn, loader, 0.1, attacks=("natural", "pgd20"))
    assert r["pgd20"] <= r["natural"] and awp_lib.evaluate.default_alpha(8 / 255, "linf") == pytest.approx(2 / 255)


def test_autoattack_runs(trained_cnn, fmnist):
    x, y = batch(fmnist, 16)
    from awp_lib.evaluate import autoattack
    x_adv = autoattack(trained_cnn, x, y, 0.1)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-5
    with torch.no_grad():
        assert (trained_cnn(x_adv).argmax(1) == y).sum() <= (trained_cnn(x).argmax(1) == y).sum()


@pytest.mark.parametrize("kwargs,needle", [
    (dict(eps=-0.1), "eps=-0.1"), (dict(eps=8), "eps=8"), (dict(eps=0), "eps=0"),
    (dict(norm="l3"), "'l3'"), (dict(loss="hinge"), "'hinge'"), (dict(bn_mode="frozen"), "'frozen'"),
])
def test_bad_arguments(trained_cnn, kwargs, needle):
    x, y = torch.rand(4, 1, 28, 28), torch.randint(0, 10, (4,))
    args = dict(eps=0.1, alpha=0.01, steps=1) | kwargs
    with pytest.raises(ValueError) as e:
        A.pgd(trained_cnn, x, y, **args)
    assert needle in str(e.value)
    if "norm" in kwargs or "loss" in kwargs or "bn_mode" in kwargs:
        assert "valid choices" in str(e.value)


def test_mismatched_shapes(trained_cnn):
    with pytest.raises(ValueError, match="mismatched shapes"):
        A.pgd(trained_cnn, torch.rand(4, 1, 28, 28), torch.zeros(3, dtype=torch.long), 0.1, 0.01, 1)
    with pytest.raises(ValueError, match="unknown attack 'pgd7'"):
        evaluate(trained_cnn, [], 0.1, attacks=("pgd7",))
