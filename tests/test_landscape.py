import pytest
import torch

from awp_lib import landscape as L
from awp_lib import models


@pytest.fixture(scope="module")
def bn_model():
    torch.manual_seed(0)
    m = models.build_model("preactresnet18", "fashion-mnist").eval()
    return m


def test_filter_norms_match(bn_model):
    d = L.random_direction(bn_model, seed=3)
    for name, p in bn_model.named_parameters():
        if p.dim() > 1:
            assert torch.allclose(d[name].flatten(1).norm(dim=1), p.detach().flatten(1).norm(dim=1), rtol=1e-4)
        else:
            assert (d[name] == 0).all(), name  # biases and BN: zero by default
    d_bn = L.random_direction(bn_model, seed=3, include_bn=True)
    assert torch.allclose(d_bn["bn.weight"].norm(), bn_model.bn.weight.norm(), rtol=1e-4)
    assert all(torch.equal(d[k], L.random_direction(bn_model, seed=3)[k]) for k in d)  # seeded
    assert not torch.equal(d["conv1.weight"], L.random_direction(bn_model, seed=4)["conv1.weight"])


def test_alpha_zero_is_plain_robust_loss(trained_cnn, fmnist):
    x, y = fmnist.test[0][:200], fmnist.test[1][:200]
    res = L.landscape_1d(trained_cnn, (x, y), [0.0], k=2, seed=0, eps=0.1, attack_steps=5, n=200)
    plain = L.robust_losses(trained_cnn, [(x.float() / 255, y)], 0.1, 0.025, 5, seed=0 * 7919 + 0).mean().item()
    assert res["loss"][0][0] == pytest.approx(plain, rel=1e-5) and res["loss"][1][0] == pytest.approx(plain, rel=1e-5)
    assert res["n"] == 200 and res["stderr"][0][0] > 0


def test_bit_identical_after_runs(trained_cnn, fmnist):
    before = {k: v.clone() for k, v in trained_cnn.state_dict().items()}
    data = (fmnist.test[0][:100], fmnist.test[1][:100])
    L.landscape_1d(trained_cnn, data, [-0.5, 0.5], k=2, attack_steps=2, n=100)
    L.landscape_2d(trained_cnn, data, [-0.5, 0.5], attack_steps=2, n=100)
    L.flatness(trained_cnn, data, alpha0=0.5, k=2, attack_steps=2, awp_steps=2, n=100)
    assert all(torch.equal(before[k], v) for k, v in trained_cnn.state_dict().items())


def test_bn_model_bit_identical_with_include_bn(bn_model):
    before = {k: v.clone() for k, v in bn_model.state_dict().items()}
    data = (torch.rand(32, 1, 28, 28), torch.randint(0, 10, (32,)))
    L.landscape_1d(bn_model, data, [-0.3, 0.3], k=1, attack_steps=1, n=32, include_bn=True)
    assert all(torch.equal(before[k], v) for k, v in bn_model.state_dict().items())


def test_one_seed_one_curve_and_shape(trained_cnn, fmnist):
    data = (fmnist.test[0][:100], fmnist.test[1][:100])
    a = L.landscape_1d(trained_cnn, data, [-1, 0, 1], k=2, seed=5, attack_steps=2, n=100)
    b = L.landscape_1d(trained_cnn, data, [-1, 0, 1], k=2, seed=5, attack_steps=2, n=100)
    assert a == b
    c = L.landscape_1d(trained_cnn, data, [-1, 0, 1], k=2, seed=6, attack_steps=2, n=100)
    assert c["loss"] != a["loss"]
    # moving away from a trained minimum raises the robust loss
    for row in a["loss"]:
        assert max(row[0], row[2]) > row[1]
    two = L.landscape_2d(trained_cnn, data, [-1, 0, 1], attack_steps=2, n=100)
    assert len(two["relative"]) == 3 and two["relative"][1][1] == pytest.approx(0, abs=1e-6)


def test_flatness_is_positive(trained_cnn, fmnist):
    data = (fmnist.train[0][:200], fmnist.train[1][:200])
    f = L.flatness(trained_cnn, data, alpha0=0.5, k=2, gamma=0.05, awp_steps=3, attack_steps=3, n=200)
    assert f["average"] > 0 and f["worst"] > 0 and f["rho"] > 0


@pytest.mark.parametrize("kw,needle", [
    (dict(alphas=[1, 0]), "strictly increasing"), (dict(alphas=[]), "at least one"),
    (dict(alphas=[0, float("nan")]), "finite"), (dict(n=0), "n=0"), (dict(n=10 ** 6), "n=1000000"),
    (dict(k=0), "k=0"),
])
def test_bad_inputs(trained_cnn, fmnist, kw, needle):
    args = dict(alphas=[-1, 0, 1], n=100) | kw
    with pytest.raises(ValueError, match=needle.replace("(", r"\(")):
        L.landscape_1d(trained_cnn, (fmnist.test[0][:500], fmnist.test[1][:500]), **args)


def test_grid_parser():
    assert L._grid("-1:1:5") == [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert L._grid("0,0.5") == [0.0, 0.5]
    with pytest.raises(ValueError, match=">= 1"):
        L._grid("0:1:0")
