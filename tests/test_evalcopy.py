"""The fast evaluation path (awp_lib.evalcopy) computes the function of the plain eager path.

The plain path is what every evaluation did before: PGD on the model itself, in the default
memory layout, in batches of 500. The fast path folds BN into the convolutions, runs in
channels-last memory where it pays and in batches of ``eval_batch``.
"""
import pytest
import torch
import torch.nn.functional as F

from awp_lib import attacks, data, evalcopy, landscape, models
from awp_lib.config import make_config
from awp_lib.monitor import evaluate_split

EPS, STEP = 0.1, 0.025


def plain_pgd(model, x, y, steps, batch=500, seed=0):
    """(natural accuracy, robust accuracy, mean robust CE) by PGD on ``model`` itself."""
    torch.manual_seed(seed)
    model.eval()
    nat = rob = loss = 0.0
    for i in range(0, len(y), batch):
        xb, yb = x[i:i + batch], y[i:i + batch]
        x_adv = attacks.pgd(model, xb, yb, EPS, STEP, steps)
        with torch.no_grad():
            nat += (model(xb).argmax(1) == yb).sum().item()
            out = model(x_adv)
            rob += (out.argmax(1) == yb).sum().item()
            loss += F.cross_entropy(out, yb, reduction="sum").item()
    return nat / len(y), rob / len(y), loss / len(y)


def fast_pgd(model, x, y, steps, seed=0):
    """The same numbers through the library's fast path (the monitor's evaluate_split; a loader
    takes uint8 images)."""
    cfg = make_config("smoke", eps=EPS, attack_alpha=STEP)
    torch.manual_seed(seed)
    r = evaluate_split(model, data.Loader((x * 255).round().to(torch.uint8), y, 1000), cfg, steps)
    return r["natural"], r["robust"], r["robust_loss"]


def _adversarially_trained_cnn(splits, epochs=2):
    """The preset's SmallCNN (width 16) after two epochs of PGD-3 AT on 2,000 images."""
    torch.manual_seed(0)
    model = models.build_model("smallcnn", "fashion-mnist", width=16)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loader = data.Loader(*splits.train, batch_size=64, shuffle=True, seed=0)
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        model.train()
        for x, y in loader:
            x_adv = attacks.pgd(model, x, y, EPS, 0.04, 3, bn_mode="train")
            opt.zero_grad()
            F.cross_entropy(model(x_adv), y).backward()
            opt.step()
    return model.eval()


def _briefly_trained(model, splits, steps=12):
    """A few natural SGD steps: BN running statistics and weights away from their initial values."""
    torch.manual_seed(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    loader = data.Loader(*splits.train, batch_size=32, shuffle=True, seed=0)
    model.train()
    for i, (x, y) in enumerate(loader):
        if i == steps:
            break
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def at_cnn():
    splits = data.get_splits("fashion-mnist", train_size=2000, test_size=2000, seed=0)
    x, y = splits.test
    return _adversarially_trained_cnn(splits), x.float().div(255), y


def test_smallcnn_fast_path_computes_the_same_function(at_cnn):
    model, x, y = at_cnn
    nat_p, rob_p, loss_p = plain_pgd(model, x, y, 20)
    nat_f, rob_f, loss_f = fast_pgd(model, x, y, 20)
    assert 0.3 < rob_p < nat_p  # a model worth attacking: neither broken nor unattackable
    assert nat_f == nat_p
    assert abs(rob_f - rob_p) <= 0.003, (rob_f, rob_p)      # 0.3 points on 2,000 images
    assert abs(loss_f - loss_p) <= 0.005 * loss_p, (loss_f, loss_p)


def test_fast_path_folds_and_lays_out_as_documented(at_cnn):
    model, x, _ = at_cnn
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = evalcopy.eval_copy(model)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules()) == 0   # all four folded
    assert fast.memory_format == torch.channels_last
    assert not any(p.requires_grad for p in fast.parameters())
    assert all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())   # the model is untouched
    with torch.no_grad():
        assert torch.allclose(fast(evalcopy.as_input(x[:256], fast)), model(x[:256]), atol=1e-4, rtol=1e-4)
    # VGG-19 (conv biases): 16 BNs folded, the same logits; the pre-activation nets keep their BN
    vgg = _randomised_bn(models.build_model("vgg19", "fashion-mnist")).eval()
    fv = evalcopy.eval_copy(vgg)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in fv.modules()) == 0
    assert fv.memory_format == torch.contiguous_format   # slower in channels-last on a CPU
    with torch.no_grad():
        assert torch.allclose(fv(x[:8]), vgg(x[:8]), atol=1e-4, rtol=1e-3)
    for net in (models.build_model("preactresnet18", "fashion-mnist"), models.WideResNet(16, 2, in_channels=1)):
        assert evalcopy.fold_bn(evalcopy.eval_copy(net)) == 0
        assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in evalcopy.eval_copy(net).modules()) > 0
    with pytest.raises(ValueError, match="eval mode"):
        evalcopy.fold_bn(models.build_model("smallcnn", "fashion-mnist").train())


def _randomised_bn(model):
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
            m.weight.data.copy_(1 + 0.2 * torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(0.1 * torch.randn(m.num_features, generator=g))
    return model


@pytest.mark.parametrize("arch", ["preactresnet18", "wrn-16-2"])
def test_residual_nets_fast_path_computes_the_same_function(arch):
    splits = data.get_splits("fashion-mnist", train_size=400, test_size=200, seed=0)
    torch.manual_seed(0)
    net = (models.build_model(arch, "fashion-mnist") if arch == "preactresnet18"
           else models.WideResNet(16, 2, in_channels=1, mean=(0.5,), std=(0.5,)))
    model = _briefly_trained(net, splits)
    x, y = splits.test[0][:128].float().div(255), splits.test[1][:128]
    with torch.no_grad():
        fast = evalcopy.eval_copy(model)
        assert torch.allclose(fast(evalcopy.as_input(x, fast)), model(x), atol=1e-4, rtol=1e-4)
    nat_p, rob_p, loss_p = plain_pgd(model, x, y, 5)
    nat_f, rob_f, loss_f = fast_pgd(model, x, y, 5)
    assert nat_f == nat_p
    assert abs(rob_f - rob_p) <= 1 / 128 + 1e-9, (rob_f, rob_p)   # at most one image of 128
    assert abs(loss_f - loss_p) <= 0.005 * loss_p, (loss_f, loss_p)


def test_a_weight_perturbation_moves_the_copy_as_it_moves_the_model(at_cnn):
    """ρ(w) and ρ(w + αd) on the fast path (a copy folded after the move) equal the plain path's."""
    model, x, y = at_cnn
    x, y = x[:256], y[:256]
    d = landscape.random_direction(model, seed=3)

    def plain_rho(seed):
        torch.manual_seed(seed)
        x_adv = attacks.pgd(model, x, y, EPS, STEP, 10)
        with torch.no_grad():
            return F.cross_entropy(model(x_adv), y).item()

    def fast_rho(seed):
        return landscape.robust_losses(model, [(x, y)], EPS, STEP, 10, seed=seed).mean().item()
    at_w = plain_rho(1), fast_rho(1)
    with landscape.moved(model, [d], [0.5]):
        moved = plain_rho(1), fast_rho(1)
    assert moved[0] > at_w[0] + 0.05   # the move changes the loss ...
    for p, f in (at_w, moved):          # ... and both paths see the same loss at both weights
        assert abs(f - p) <= 1e-3 * p, (f, p)
    assert abs((moved[1] - at_w[1]) - (moved[0] - at_w[0])) <= 2e-3 * moved[0]


def test_batching_does_not_change_the_attack(at_cnn):
    """The random starts are drawn in input order, so the eval batch does not change the examples."""
    model, x, y = at_cnn
    fast = evalcopy.eval_copy(model)
    x, y = x[:200], y[:200]
    torch.manual_seed(5)
    whole = attacks.pgd(fast, evalcopy.as_input(x, fast), y, EPS, STEP, 3)
    torch.manual_seed(5)
    pieces = torch.cat([attacks.pgd(fast, xb, yb, EPS, STEP, 3) for xb, yb in evalcopy.chunks(fast, x, y)])
    assert torch.allclose(whole, pieces, atol=1e-6)


def test_eval_batch_is_one_setting_per_device():
    assert evalcopy.eval_batch("cpu") == evalcopy.CPU_EVAL_BATCH
    assert evalcopy.eval_batch(torch.device("cuda", 0)) == evalcopy.GPU_EVAL_BATCH
