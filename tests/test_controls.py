"""Issue 13's controls: AWP with a random direction, AWP with one global budget, weight averaging
(EMA, SWA). The resumed-equals-uninterrupted runs of each are in test_train.py."""
import argparse

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.testing import assert_close

from awp_lib import data, models, names
from awp_lib import train as T
from awp_lib.averaging import WeightAverage
from awp_lib.awp import AWP, perturbable, project, project_layerwise
from awp_lib.book import report
from awp_lib.config import make_config
from awp_lib.io import load_torch

GAMMA = 0.02


def setup(seed=0):
    torch.manual_seed(seed)
    model = models.build_model("preactresnet18", "fashion-mnist", width=8).train()
    x, y = torch.rand(16, 1, 28, 28), torch.randint(0, 10, (16,))
    return model, x, y, lambda: F.cross_entropy(model(x), y)


def kernels(model):
    return [p.detach().clone() for _, p in perturbable(model)]


def no_gradient():
    pytest.fail("a random direction must not take the loss (nor its gradient)")


def layer_ratios(v, w):
    return torch.stack([vl.norm() / wl.norm() for vl, wl in zip(v, w)])


def total(ts):
    return torch.stack([t.norm() for t in ts]).norm()


# ----------------------------------------------------------------------------- random direction
def test_random_direction_has_the_layer_norm_and_no_gradient():
    model, x, y, loss = setup()
    w = kernels(model)
    awp = AWP(model, gamma=GAMMA, direction="random")
    awp.generator = torch.Generator().manual_seed(5)
    v = awp.perturb(no_gradient)
    # exactly γ‖w_l‖ per layer, along the generator's Gaussian draws
    g = torch.Generator().manual_seed(5)
    for vl, wl, (_, p) in zip(v, w, perturbable(model)):
        d = torch.randn(wl.shape, generator=g)
        assert_close(vl.norm(), GAMMA * wl.norm())
        assert_close(vl, GAMMA * wl.norm() * d / d.norm())
        assert_close(p.detach() - wl, vl)                 # applied: the model is at w + v
    assert awp.perturb(no_gradient) is v                 # the next alternation keeps this batch's v
    awp.restore()
    assert_close([p.detach() for _, p in perturbable(model)], w)   # back to w (up to float rounding)
    # another batch, another model state: the same draws give the same v (nothing gradient-dependent)
    other = setup(seed=1)[3]
    awp.generator = torch.Generator().manual_seed(5)
    assert all(torch.equal(a, b) for a, b in zip(awp.perturb(other), v))
    awp.restore()
    fresh = awp.perturb(no_gradient)                      # the next batch: a fresh direction
    assert not any(torch.equal(a, b) for a, b in zip(fresh, v))
    assert_close(layer_ratios(fresh, w), torch.full((len(w),), GAMMA))
    awp.restore()


def test_random_global_direction():
    model, x, y, loss = setup()
    w = kernels(model)
    awp = AWP(model, gamma=GAMMA, direction="random", scope="global")
    v = awp.perturb(no_gradient)
    assert_close(total(v), GAMMA * total(w))
    assert (layer_ratios(v, w) - GAMMA).abs().max() > 0.1 * GAMMA   # not γ per layer
    awp.restore()


# ----------------------------------------------------------------------------- global scope
def test_project_global_by_hand():
    w = [torch.tensor([3.0]), torch.tensor([4.0])]                  # ‖w‖ = 5: global budget 0.5 at γ = 0.1
    v = [torch.tensor([1.0]), torch.tensor([0.0])]
    assert_close(project(v, w, 0.1, "global"), [torch.tensor([0.5]), torch.tensor([0.0])])
    assert_close(project_layerwise(v, w, 0.1), [torch.tensor([0.3]), torch.tensor([0.0])])  # per layer: 0.3
    inside = [torch.tensor([0.2]), torch.tensor([0.2])]              # ‖v‖ = 0.28 < 0.5: unchanged
    assert all(torch.equal(a, b) for a, b in zip(project(inside, w, 0.1, "global"), inside))


def test_global_scope_one_budget_over_all_layers():
    model, x, y, loss = setup()
    w = kernels(model)
    g = torch.autograd.grad(loss(), [p for _, p in perturbable(model)])
    awp = AWP(model, gamma=GAMMA, scope="global")
    v = awp.perturb(loss)
    assert_close(total(v), GAMMA * total(w))                          # ‖v‖ = γ‖w‖ over all layers together
    assert (layer_ratios(v, w) - GAMMA).abs().max() > 0.1 * GAMMA    # and not γ‖w_l‖ per layer
    for vl, gl in zip(v, g):                                          # K₂ = 1: γ‖w‖·g/‖g‖
        assert_close(vl, GAMMA * total(w) * gl / total(g), atol=1e-7, rtol=1e-4)
    awp.restore()
    awp = AWP(model, gamma=GAMMA, steps=3, scope="global")
    v = awp.perturb(loss)
    assert total(v) <= GAMMA * total(w) * (1 + 1e-5)
    awp.restore()


# ----------------------------------------------------------------------------- weight averaging
def test_ema_equals_hand_computed_average():
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = WeightAverage(model, "ema", ema_decay=0.99)
    for w in (1.0, 2.0):
        with torch.no_grad():
            model.weight.fill_(w)
        ema.after_step(model)
    # d₀ = min(0.99, 1/10) = 0.1: 0.1·0 + 0.9·1 = 0.9; d₁ = 2/11: (2/11)·0.9 + (9/11)·2 = 1.8
    assert_close(ema.model.weight, torch.tensor([[1.8]]))
    assert ema.n == 2 and ema.evaluated(model) is ema.model


def test_ema_of_a_trained_model_with_batch_norm():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    ema = WeightAverage(model, "ema", ema_decay=0.5)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for t in range(20):
        opt.zero_grad()
        F.cross_entropy(model(torch.randn(8, 3)), torch.randint(0, 2, (8,))).backward()
        opt.step()
        ema.after_step(model)
        d = min(0.5, (1 + t) / (10 + t))   # the warm-up, then the decay from t = 8 on
        expected = {k: d * expected[k] + (1 - d) * w if w.is_floating_point() else w.clone()
                    for k, w in model.state_dict().items()}
    for k, v in ema.model.state_dict().items():
        assert_close(v, expected[k], msg=k)
    assert ema.model.state_dict()["1.num_batches_tracked"] == 20


def test_swa_mean_and_batch_norm_recomputed():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    swa = WeightAverage(model, "swa", swa_start=0.5, epochs=4)       # averages epochs 3 and 4
    x = torch.randn(64, 3) * 2 + 1
    loader = [(x[:32], None), (x[32:], None)]
    snapshots = []
    for epoch in range(4):
        with torch.no_grad():                                        # "training": new weights and stats
            for p in model.parameters():
                p.copy_(torch.randn_like(p))
            model[1].running_mean.fill_(5.0)
        snapshots.append([p.detach().clone() for p in model.parameters()])
        assert swa.after_epoch(model, epoch, loader) == (epoch >= 2)
        assert (swa.evaluated(model) is model) == (epoch < 2)          # the model itself until SWA starts
    for a, s2, s3 in zip(swa.model.parameters(), snapshots[2], snapshots[3]):
        assert_close(a, (s2 + s3) / 2)
    # BN statistics of the averaged weights, recomputed: the mean over the data of Linear_avg(x),
    # and the mean of the two batches' unbiased variances (update_bn's cumulative average)
    with torch.no_grad():
        h = swa.model[0](x)
    bn = swa.model[1]
    assert_close(bn.running_mean, h.mean(0))
    assert_close(bn.running_var, (h[:32].var(0) + h[32:].var(0)) / 2)
    assert bn.num_batches_tracked == 2 and swa.n == 2
    mlp = nn.Linear(2, 2)                                             # no BN: nothing to recompute
    assert WeightAverage(mlp, "swa", swa_start=0.0, epochs=1).after_epoch(mlp, 0, loader)


def test_averaging_leaves_training_alone_and_reports_the_average(tmp_path):
    tiny = data.get_splits("fashion-mnist", train_size=192, val_size=100, test_size=100, seed=0)
    kw = dict(epochs=2, train_size=192, val_size=100, test_size=100, final_attack_steps=0)
    runs = {}
    for avg in ("none", "ema", "swa"):
        cfg = make_config("smoke", weight_average=avg, swa_start=0.0, **kw)
        rows = T.train(cfg, tmp_path / avg, tiny, progress="none")
        runs[avg] = rows, load_torch(tmp_path / avg / "checkpoints" / "last.pt")
    rows_none, plain = runs["none"]
    assert "trained" not in plain and "averaged" not in rows_none[0]
    epochs = [load_torch(tmp_path / "none" / "checkpoints" / f"epoch{e}.pt")["model"] for e in (1, 2)]
    for avg, n in (("ema", [3, 6]), ("swa", [1, 2])):                  # 3 steps an epoch; 1 average an epoch
        rows, ck = runs[avg]
        assert [r["averaged"] for r in rows] == n
        assert [r["train_loss"] for r in rows] == [r["train_loss"] for r in rows_none]
        assert all(torch.equal(ck["trained"][k], plain["model"][k]) for k in plain["model"])  # same training
        assert not torch.equal(ck["model"]["features.0.weight"], ck["trained"]["features.0.weight"])
        best = load_torch(tmp_path / avg / "checkpoints" / "best.pt")
        if best["epoch"] == 2:
            assert all(torch.equal(best["model"][k], ck["model"][k]) for k in ck["model"])
    swa = runs["swa"][1]["model"]
    for k, v in swa.items():
        if k.endswith(("weight", "bias")):                             # SWA: the mean of the epochs' weights
            assert_close(v, (epochs[0][k] + epochs[1][k]) / 2, msg=k)
        elif k.endswith("running_mean"):                               # BN statistics recomputed
            assert not torch.allclose(v, runs["swa"][1]["trained"][k])


# ----------------------------------------------------------------------------- config, CLI, names
@pytest.mark.parametrize("kw,needle", [
    (dict(awp_gamma=0.01, awp_direction="sign"), "unknown awp_direction 'sign'; valid choices: adversarial, random"),
    (dict(awp_gamma=0.01, awp_scope="model"), "unknown awp_scope 'model'; valid choices: layer, global"),
    (dict(weight_average="polyak"), "unknown weight_average 'polyak'; valid choices: none, ema, swa"),
    (dict(awp_direction="random"), "awp_direction='random' shapes the AWP perturbation: it needs awp_gamma > 0"),
    (dict(ema_decay=1.0), "ema_decay=1.0 is invalid"), (dict(swa_start=1.0), "swa_start=1.0 is invalid"),
])
def test_bad_values_name_themselves(kw, needle):
    with pytest.raises(ValueError) as e:
        make_config("smoke", **kw)
    assert needle in str(e.value)
    with pytest.raises(ValueError, match="unknown awp direction 'sign'"):
        AWP(nn.Linear(2, 2), 0.01, direction="sign")


def test_cli_flags_and_run_names():
    parser = argparse.ArgumentParser()
    T.register_cli(parser.add_subparsers())
    args = parser.parse_args(["train", "--awp-direction", "random", "--awp-scope", "global",
                              "--weight-average", "swa", "--swa-start", "0.5", "--ema-decay", "0.999"])
    assert (args.awp_direction, args.awp_scope, args.weight_average, args.swa_start, args.ema_decay) == \
        ("random", "global", "swa", 0.5, 0.999)
    expected = {
        "at-awp0.01-s0": dict(awp_gamma=0.01), "at-rwp0.01-s0": dict(awp_gamma=0.01, awp_direction="random"),
        "at-awp0.01-global-s0": dict(awp_gamma=0.01, awp_scope="global"),
        "at-rwp0.01-global-s0": dict(awp_gamma=0.01, awp_direction="random", awp_scope="global"),
        "at-ema-s0": dict(weight_average="ema"), "at-awp0.01-swa-s0": dict(awp_gamma=0.01, weight_average="swa"),
        "at-piecewise-s0": dict(), "trades-awp0.005-s0": dict(method="trades", awp_gamma=0.005),
    }
    for name, kw in expected.items():
        cfg = make_config("cpu", **kw)
        assert names.run_name(cfg) == name
    labels = {report.method_label(make_config("cpu", **kw).to_dict()) for kw in expected.values()}
    assert labels == {"AT-AWP", "AT-RWP", "AT-AWP-global", "AT-RWP-global", "AT+EMA", "AT-AWP+SWA", "AT",
                      "TRADES-AWP"}                                    # tables never pool a control with AWP
    outs = {str(T.default_out(make_config("cpu", **kw))) for kw in expected.values()}
    assert len(outs) == len(expected)                                    # no two controls share a folder
    assert str(T.default_out(make_config("cpu", awp_gamma=0.01, awp_direction="random"))) == \
        "runs/cpu/at-rwp0.01-s0"  # the one namer: the same name as the book and the suites
