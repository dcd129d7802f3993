"""AWP is AWP under every precision the machine offers.

Under bf16 autocast with its weight cache, a weight perturbation made in place after the attack's
forward passes is invisible to the loss: AT-AWP trains plain AT, and its weights differ from AT's
by rounding only. These tests train AT and its AWP variants from the same seed and check that the
weights end as far apart as they do in fp32.
"""
import json

import pytest
import torch

from awp_lib import config, data, precision_check, semantics, train
from awp_lib.io import load_torch
from awp_lib.runs import RunDir

# (device, amp) pairs: fp32 and bf16 on the CPU always (bf16 is emulated where it is not native,
# still exact in its rounding), and on CUDA when present.
PRECISIONS = [("cpu", "none"), ("cpu", "bf16")] + (
    [("cuda", "none"), ("cuda", "bf16")] if torch.cuda.is_available() else [])
# AWP and its controls, each beside the method it perturbs (same seed, AWP off)
VARIANTS = {
    "at-awp": (dict(method="at"), dict(awp_gamma=0.01)),
    "at-rwp": (dict(method="at"), dict(awp_gamma=0.01, awp_direction="random")),
    "at-awp-global": (dict(method="at"), dict(awp_gamma=0.01, awp_scope="global")),
    "trades-awp": (dict(method="trades"), dict(awp_gamma=0.01)),
}
SMALL = dict(epochs=1, train_size=192, val_size=100, test_size=100, eval_train_size=100, final_attack_steps=0,
             eval_attack_steps=1, channels_last=False)


def _weights_after_epoch(tmp_path, device, amp, **kw) -> torch.Tensor:
    cfg = config.make_config("smoke", device=device, amp=amp, **SMALL, **kw)
    out = tmp_path / (f"{device}-{amp}-" + "-".join(f"{k}{v}" for k, v in sorted(kw.items())))
    train.train(cfg, out, progress="none")
    state = load_torch(out / "checkpoints" / "last.pt")["model"]
    return torch.cat([v.float().flatten() for k, v in state.items() if v.is_floating_point()])


_distance = {}


def _awp_distance(tmp_path, device, amp, variant) -> float:
    """‖w(variant) − w(its method)‖ after one epoch from the same seed."""
    key = (device, amp, variant)
    if key not in _distance:
        base, awp = VARIANTS[variant]
        w0 = _weights_after_epoch(tmp_path, device, amp, **base)
        w1 = _weights_after_epoch(tmp_path, device, amp, **base, **awp)
        _distance[key] = (w1 - w0).norm().item()
    return _distance[key]


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("device,amp", [p for p in PRECISIONS if p[1] != "none"])
def test_awp_changes_training_as_in_fp32(tmp_path, device, amp, variant):
    reference = _awp_distance(tmp_path, device, "none", variant)
    distance = _awp_distance(tmp_path, device, amp, variant)
    assert reference > 1e-2, f"{variant}: AWP moved fp32 training by {reference:.2e} only"
    # AWP hidden by the precision: the distance is rounding (~1e-7), not comparable to fp32's
    assert 0.3 * reference < distance < 3 * reference, (
        f"{variant} under {amp} on {device}: weights {distance:.3g} from its method's, {reference:.3g} in fp32")


@pytest.fixture(scope="module")
def batch():
    splits = data.get_splits("fashion-mnist", 256, 100, 100, 0)
    return next(iter(data.Loader(*splits.train, 64)))


@pytest.mark.parametrize("mode", ["bf16", "bf16-cached"])
def test_one_awp_step_loss_matches_fp32(batch, mode):
    """The loss at w + v under bf16 (the library's region, or a caller's region with the weight
    cache on) is fp32's within bf16's rounding, and differs from the loss at w by more than that."""
    x, y = batch
    cfg = config.make_config("cpu", amp="none")
    fp32 = precision_check.awp_step_effect(cfg, x, y, "fp32", gamma=0.01)
    low = precision_check.awp_step_effect(cfg, x, y, mode, gamma=0.01)
    tol = 0.01 * fp32["loss_awp"]       # bf16 keeps 8 bits of mantissa: ~0.4% per rounding
    assert fp32["loss_awp"] - fp32["loss"] > 5 * tol
    assert abs(low["loss_awp"] - fp32["loss_awp"]) < tol, (low, fp32)
    assert abs(low["loss"] - fp32["loss"]) < tol, (low, fp32)
    assert low["weight_diff"] > 0.3 * fp32["weight_diff"]


def test_the_trap_itself(batch):
    """What the guards protect against: in one autocast region with the weight cache on, a weight
    change in place after a forward pass is not seen; with the cache off, or in fp32, it is."""
    from awp_lib import models
    x, y = batch
    torch.manual_seed(0)
    model = models.build_model("smallcnn", "fashion-mnist", 8)
    v = {n: 0.05 * p.detach().norm() * torch.randn_like(p) / p.numel() ** 0.5
         for n, p in model.named_parameters() if p.dim() > 1}
    rise = {}
    for amp, cache in (("none", False), ("bf16", True), ("bf16", False)):
        before, after = precision_check.loss_after_in_place_change(model, x, y, v, "cpu", amp, cache)
        rise[amp, cache] = after - before
    assert abs(rise["none", False]) > 1e-3
    assert rise["bf16", True] == 0.0
    assert abs(rise["bf16", False] - rise["none", False]) < 0.1 * abs(rise["none", False]) + 5e-3


def test_cpu_profile_trains_fp32_everywhere():
    cpu = config.make_config("cpu")
    assert (cpu.amp, cpu.channels_last) == ("none", False)
    assert config.make_config("cpu", amp="bf16").amp == "bf16"   # bf16 stays an explicit option


def test_choice_values_survive_the_cli_parser():
    """``--amp none`` is the string "none" (not None); so is every "none" of a choice key."""
    import argparse
    parser = argparse.ArgumentParser()
    train.register_cli(parser.add_subparsers())
    args = parser.parse_args(["train", "--amp", "none", "--regularizer", "none", "--weight-average", "none",
                              "--augment", "none", "--eps", "8/255", "--attack-alpha", "None"])
    assert (args.amp, args.regularizer, args.weight_average, args.augment) == ("none",) * 4
    assert args.eps == pytest.approx(8 / 255) and args.attack_alpha is None
    overrides = {k: v for k, v in vars(args).items() if k in config.keys() and k != "profile"}
    assert config.make_config("smoke", **overrides).augment == "none"


def test_stale_run_is_set_aside_and_retrained(tmp_path):
    cfg = config.make_config("smoke", **SMALL)
    out = tmp_path / "run"
    train.train(cfg, out, progress="none")
    saved = json.loads((out / "config.json").read_text())
    assert saved[semantics.KEY] == semantics.TRAINING_SEMANTICS
    # a run written before the key existed (version 1): finished, but trained under other semantics
    del saved[semantics.KEY]
    (out / "config.json").write_text(json.dumps(saved))
    (out / "marker").write_text("trained under v1")
    assert RunDir(out).is_stale()
    train.train(cfg, out, progress="none")
    aside = tmp_path / "run.stale-v1"
    assert (aside / "marker").read_text() == "trained under v1"     # kept, not deleted
    assert not (out / "marker").exists() and not RunDir(out).is_stale()
    assert json.loads((out / "config.json").read_text())[semantics.KEY] == semantics.TRAINING_SEMANTICS
    old, new = load_torch(aside / "checkpoints" / "last.pt"), load_torch(out / "checkpoints" / "last.pt")
    assert all(torch.equal(old["model"][k], new["model"][k]) for k in old["model"])  # retrained: same config


@pytest.mark.parametrize("method", ["at", "trades"])
def test_compiled_step_is_the_eager_step(batch, method):
    """torch.compile (on at the cpu profile) changes rounding only: one step's losses without and
    with AWP equal eager's to rounding (amplified a little by the attack's sign of the gradient),
    the weights after the step differ by a fraction of what AWP moves them, and AWP moves the compiled
    step's weights as far from its method's as it moves eager's."""
    x, y = batch
    cfg = config.make_config("cpu", method=method, compile=False)
    eager = precision_check.awp_step_effect(cfg, x, y, "fp32", gamma=0.01, keep_weights=True)
    comp = precision_check.awp_step_effect(cfg, x, y, "fp32", gamma=0.01, compile=True, keep_weights=True)
    rise = eager["loss_awp"] - eager["loss"]
    assert rise > 0.05 * eager["loss"]                        # AWP changes the loss the step takes
    for key in ("loss", "loss_awp"):
        assert abs(comp[key] - eager[key]) < 0.01 * rise, (key, comp[key], eager[key])
    assert (comp["weights"] - eager["weights"]).norm() < 0.25 * eager["weight_diff"]
    assert comp["weight_diff"] == pytest.approx(eager["weight_diff"], rel=0.05)
    assert config.make_config("cpu").compile    # the profile this guards


def test_compile_falls_back_to_eager_without_a_compiler(monkeypatch):
    """A reader's CPU without the C++ compiler the inductor needs trains eagerly, with a warning
    naming the compiler; with one, the model is compiled."""
    from awp_lib import models, precision
    model = models.build_model("smallcnn", "fashion-mnist", 8)
    monkeypatch.setattr(precision.shutil, "which", lambda name: None)
    with pytest.warns(UserWarning, match="no C\\+\\+ compiler .* was found for torch.compile"):
        assert precision.compiled(model) is model
    monkeypatch.setattr(precision.shutil, "which", lambda name: f"/usr/bin/{name}")
    assert precision.compiled(model) is not model
