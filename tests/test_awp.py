"""AWP (Algorithm 2): budget, projection, side effects, restore."""
import pytest
import torch
import torch.nn.functional as F

from awp_lib import models
from awp_lib.awp import AWP, perturbable, project_layerwise


def setup(seed=0, arch="preactresnet18"):
    torch.manual_seed(seed)
    model = models.build_model(arch, "fashion-mnist", width=8).train()
    x, y = torch.rand(16, 1, 28, 28), torch.randint(0, 10, (16,))
    return model, x, y, lambda: F.cross_entropy(model(x), y)


def test_project_layerwise_by_hand():
    w = [torch.tensor([3.0, 4.0]), torch.ones(2, 2)]          # norms 5 and 2
    v = [torch.tensor([0.6, 0.8]), torch.tensor([[0.01, 0.0], [0.0, 0.0]])]  # norms 1 and 0.01
    out = project_layerwise(v, w, gamma=0.1)                 # budgets 0.5 and 0.2
    assert torch.allclose(out[0], torch.tensor([0.3, 0.4]))  # outside: scaled onto the sphere
    assert torch.equal(out[1], v[1])                          # inside: unchanged


@pytest.mark.parametrize("steps,alternations", [(1, 1), (3, 1), (2, 2)])
def test_budget_per_layer(steps, alternations):
    model, x, y, loss = setup()
    w = {n: p.detach().clone() for n, p in perturbable(model)}
    awp = AWP(model, gamma=0.01, steps=steps, alternations=alternations)
    for _ in range(alternations):
        awp.perturb(loss)
    for (n, p), v in zip(perturbable(model), awp.v):
        ratio = (p.detach() - w[n]).norm() / w[n].norm()
        assert ratio <= 0.01 * (1 + 1e-4), (n, ratio)
        if steps == 1 and alternations == 1:
            assert ratio == pytest.approx(0.01, rel=1e-4)  # K2 = 1: on the boundary, as the official code
    assert awp.step_size == pytest.approx(0.01 / (steps * alternations))


def test_k2_1_matches_official_direction():
    model, x, y, loss = setup()
    params = [p for _, p in perturbable(model)]
    g = torch.autograd.grad(loss(), params)
    w = [p.detach().clone() for p in params]
    AWP(model, gamma=0.02).perturb(loss)
    for p, wl, gl in zip(params, w, g):
        expected = 0.02 * wl.norm() * gl / gl.norm()  # official: v_l = γ‖w_l‖ g_l/‖g_l‖
        assert torch.allclose(p.detach() - wl, expected, atol=1e-6)


def test_only_kernels_perturbed_and_restore():
    model, x, y, loss = setup()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    awp = AWP(model, gamma=0.05, steps=2)
    awp.perturb(loss)
    after = model.state_dict()
    for k, v in after.items():
        changed = not torch.equal(v, before[k])
        assert changed == (k.endswith("weight") and v.dim() > 1), k  # BN buffers/affine, biases untouched
    awp.restore()
    for k, v in model.state_dict().items():
        assert torch.allclose(v.float(), before[k].float(), atol=1e-6), k


def test_optimizer_state_and_grads_untouched():
    model, x, y, loss = setup()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss().backward()
    opt.step()
    grads = [p.grad.clone() for p in model.parameters()]
    mom = [opt.state[p]["momentum_buffer"].clone() for p in model.parameters()]
    awp = AWP(model, gamma=0.01)
    awp.perturb(loss)
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads))
    assert all(torch.equal(opt.state[p]["momentum_buffer"], m) for p, m in zip(model.parameters(), mom))
    awp.restore()


def test_gradient_taken_at_w_plus_v():
    model, x, y, loss = setup()
    awp = AWP(model, gamma=0.05)
    awp.perturb(loss)
    g_wv = torch.autograd.grad(loss(), list(model.parameters()))
    awp.restore()
    g_w = torch.autograd.grad(loss(), list(model.parameters()))
    model.zero_grad()
    awp.perturb(loss)
    loss().backward()
    awp.restore()
    dist = lambda ga, gb: sum((a - b).norm() ** 2 for a, b in zip(ga, gb)).sqrt()
    # the trainer's gradient is the one at w + v (up to float noise), far from the one at w
    assert dist([p.grad for p in model.parameters()], g_wv) < 0.05 * dist(g_wv, g_w)


def test_gamma_zero_and_bad_arguments():
    model, x, y, loss = setup(arch="smallcnn")
    before = [p.clone() for p in model.parameters()]
    AWP(model, gamma=0).perturb(loss)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    with pytest.raises(ValueError, match="gamma=-0.1"):
        AWP(model, gamma=-0.1)
    with pytest.raises(ValueError, match="steps=0"):
        AWP(model, gamma=0.1, steps=0)
