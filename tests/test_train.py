"""The training loop: resume, determinism, validation, divergence, CLI."""
import json
import math
import subprocess
import sys

import pytest
import torch

from awp_lib import data
from awp_lib import stuck
from awp_lib import train as T
from awp_lib.config import make_config
from awp_lib.io import load_torch
from awp_lib.rst import MixedLoader
from awp_lib.regularizers import cutout

TIMES = ("time_train", "time_total", "time_final")


def cfg_(**kw):
    return make_config("smoke", **{"epochs": 3, "train_size": 192, "val_size": 100, "test_size": 100, **kw})


def strip(rows):
    return [{k: v for k, v in r.items() if k not in TIMES} for r in rows]


def same_weights(a, b):
    """The same model (and, with weight averaging, the same trained weights and update count)."""
    ca, cb = load_torch(a), load_torch(b)
    assert ca.keys() == cb.keys() and ca.get("average_n") == cb.get("average_n")
    return all(torch.equal(ca[m][k], cb[m][k]) for m in ("model", "trained") if m in ca for k in ca[m])


@pytest.mark.parametrize("kw", [
    dict(method="at"), dict(method="trades", awp_gamma=5e-3),
    # the controls of issue 13
    dict(awp_gamma=1e-2, awp_direction="random"), dict(awp_gamma=1e-2, awp_scope="global"),
    dict(weight_average="ema"), dict(weight_average="swa", swa_start=0.34),  # SWA averages epochs 2 and 3
], ids=lambda kw: "-".join(f"{v}" for v in kw.values()))
def test_resume_equals_uninterrupted(tmp_path, tiny, monkeypatch, kw):
    cfg = cfg_(**kw)
    full = T.train(cfg, tmp_path / "full", tiny, progress="none")
    original = T._report

    def crash_after_two(bar, progress, row, c):
        original(bar, progress, row, c)
        if row["epoch"] == 2:
            raise KeyboardInterrupt
    monkeypatch.setattr(T, "_report", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        T.train(cfg, tmp_path / "resumed", tiny, progress="none")
    assert load_torch(tmp_path / "resumed/checkpoints/last.pt")["epoch"] == 2
    monkeypatch.setattr(T, "_report", original)
    resumed = T.train(cfg, tmp_path / "resumed", tiny, progress="none")
    assert strip(resumed) == strip(full)
    assert same_weights(tmp_path / "full/checkpoints/last.pt", tmp_path / "resumed/checkpoints/last.pt")
    # a finished run does nothing the second time
    again = T.train(cfg, tmp_path / "resumed", tiny, progress="none")
    assert strip(again) == strip(full)


def test_same_seed_same_metrics_and_outputs(tmp_path, tiny):
    cfg = cfg_(method="mart", awp_gamma=1e-2, epochs=2)
    a = T.train(cfg, tmp_path / "a", tiny, progress="none")
    b = T.train(cfg, tmp_path / "b", tiny, progress="none")
    assert strip(a) == strip(b)
    c = T.train(cfg_(method="mart", awp_gamma=1e-2, epochs=2, seed=1), None, tiny, progress="none")
    assert strip(c) != strip(a)
    for row in a:
        for k in ("train_robust", "val_robust", "test_natural", "test_robust"):
            assert 0 <= row[k] <= 1
        assert row["test_robust"] <= row["test_natural"]
    saved = json.loads((tmp_path / "a/metrics.json").read_text())
    assert strip(saved) == strip(a)
    assert (tmp_path / "a/metrics.csv").read_text().splitlines()[0].startswith("epoch,lr,train_loss")
    assert {p.name for p in (tmp_path / "a/checkpoints").iterdir()} >= {"last.pt", "best.pt"}
    best_epoch = max(a, key=lambda r: r["val_robust"])["epoch"]
    assert load_torch(tmp_path / "a/checkpoints/best.pt")["epoch"] == best_epoch


def test_changed_config_in_same_folder_refused(tmp_path, tiny):
    T.train(cfg_(epochs=1), tmp_path, tiny, progress="none")
    with pytest.raises(ValueError, match=r"awp_gamma: 0.0 -> 0.01"):
        T.train(cfg_(epochs=1, awp_gamma=0.01), tmp_path, tiny, progress="none")


def test_nan_stops_and_keeps_last_good_checkpoint(tmp_path, tiny, monkeypatch):
    monkeypatch.setattr(T, "lr_at", lambda cfg, t: 0.05 if t < 1 else 1e30)
    with pytest.raises(stuck.TrainingDiverged, match="epoch 2.*last good checkpoint.*last.pt \\(epoch 1\\)"):
        T.train(cfg_(epochs=3), tmp_path, tiny, progress="none")
    ck = load_torch(tmp_path / "checkpoints/last.pt")
    assert ck["epoch"] == 1 and all(torch.isfinite(v).all() for v in ck["model"].values())


def test_refuses_checkpoint_with_pickled_objects(tmp_path):
    import collections
    torch.save({"model": {}, "x": collections.OrderedDict, "f": math.floor}, tmp_path / "bad.pt")
    with pytest.raises(Exception, match="(?i)weights_only|unsupported global"):
        load_torch(tmp_path / "bad.pt")


@pytest.mark.parametrize("kw,needle", [
    (dict(method="pgd"), "unknown method 'pgd'"), (dict(schedule="step"), "unknown schedule 'step'"),
    (dict(dataset="mnist"), "unknown dataset 'mnist'"), (dict(norm="l1"), "unknown norm 'l1'"),
    (dict(model="resnet"), "unknown model 'resnet'"), (dict(awp_gamma=-1e-3), "awp_gamma=-0.001"),
    (dict(eps=0), "eps=0"), (dict(eps=8), "eps=8 is above 1"), (dict(epochs=0), "epochs=0"),
    (dict(awp_gama=0.01), "unknown config key 'awp_gama'; did you mean 'awp_gamma'"),
    (dict(regularizer="mixup", method="trades"), "mixup"), (dict(regularizer="dropout"), "valid choices: none, l1"),
])
def test_bad_config(kw, needle):
    with pytest.raises(ValueError) as e:
        make_config("smoke", **kw)
    assert needle in str(e.value)
    if "unknown" in needle:
        assert "valid" in str(e.value)


def test_schedules():
    c = make_config("smoke", epochs=200, lr=0.1)
    assert T.lr_at(c, 0) == 0.1 and T.lr_at(c, 100) == pytest.approx(0.01) and T.lr_at(c, 150) == pytest.approx(0.001)
    c = make_config("smoke", epochs=200, lr=0.1, schedule="cosine")
    assert T.lr_at(c, 100) == pytest.approx(0.05 * (math.cos(math.pi / 2) + 1))  # the paper: 0.05(cos(πt/200)+1)
    c = make_config("smoke", epochs=200, lr=0.2, schedule="cyclic")
    assert T.lr_at(c, 0) == 0 and T.lr_at(c, 80) == pytest.approx(0.2) and T.lr_at(c, 140) == pytest.approx(0.1)


def test_the_cyclic_schedule_peaks_at_its_own_rate_as_appendix_c1():
    """Appendix C.1: linearly from 0 to its maximum (0.2 at the 80th of 200 epochs), then linearly to
    0 at the 200th, whatever the piecewise schedule's lr; each profile has its own peak, recorded."""
    c = make_config("paper", schedule="cyclic")
    assert c.lr == 0.1 and c.cyclic_lr == 0.2 and c.to_dict()["cyclic_lr"] == 0.2
    ts = [0, 20, 40, 80, 120, 160, 200]
    assert [T.lr_at(c, t) for t in ts] == pytest.approx([0, 0.05, 0.1, 0.2, 0.1333333, 0.0666667, 0])
    peak = max(range(0, 2001), key=lambda i: T.lr_at(c, i / 10)) / 10
    assert peak == pytest.approx(0.4 * c.epochs)
    assert make_config("cpu", schedule="cyclic", cyclic_lr=0.05).cyclic_lr == 0.05
    assert make_config("cpu").cyclic_lr is None    # other schedules: no key value, names unchanged
    with pytest.raises(ValueError, match="cyclic_lr=0.2 is invalid.*schedule='piecewise'"):
        make_config("cpu", cyclic_lr=0.2)
    with pytest.raises(ValueError, match="cyclic_lr=-1"):
        make_config("cpu", schedule="cyclic", cyclic_lr=-1)


def test_lr_applied_to_every_param_group(tmp_path, tiny, monkeypatch):
    seen = []
    real_step = torch.optim.SGD.step

    def spy(self, *a, **k):
        seen.append([g["lr"] for g in self.param_groups])
        return real_step(self, *a, **k)
    monkeypatch.setattr(torch.optim.SGD, "step", spy)
    T.train(cfg_(epochs=2, schedule="cosine"), None, tiny, progress="none")
    assert len({tuple(s) for s in seen}) > 2  # changes per iteration, not per epoch
    assert seen[0][0] == pytest.approx(0.05)


@pytest.mark.parametrize("kw", [dict(method="rst", awp_gamma=5e-3), dict(regularizer="mixup"),
                                dict(regularizer="cutout"), dict(regularizer="l1"), dict(regularizer="l2"),
                                dict(awp_gamma=1e-2, awp_steps=2, awp_alternations=2, awp_warmup=1)])
def test_variants_run_and_change_training(tiny, kw):
    """Each variant trains (finite losses) and changes what AT computes from the same seed: from
    its first epoch, or, with an AWP warm-up of one epoch, from its second epoch on only."""
    rows = T.train(cfg_(epochs=2, **kw), None, tiny, progress="none")
    at = T.train(cfg_(epochs=2, method="at"), None, tiny, progress="none")
    assert len(rows) == 2 and all(math.isfinite(r["train_loss"]) for r in rows)
    losses, at_losses = [r["train_loss"] for r in rows], [r["train_loss"] for r in at]
    if kw.get("awp_warmup"):
        assert [r["awp"] for r in rows] == [False, True]
        assert losses[0] == at_losses[0] and losses[1] != at_losses[1]
    else:
        assert losses[0] != at_losses[0]


def test_mixed_loader_fraction(tiny):
    lab = data.Loader(*tiny.train, 32, True)
    pool = data.Loader(tiny.pool[0][:100], torch.full((100,), 9), 32, True, drop_last=True)
    for x, y in MixedLoader(lab, pool, 0.5):
        assert len(y) == 64 and (y[32:] == 9).all()


def test_cutout_patch():
    x = torch.ones(4, 1, 28, 28)
    out = cutout(x, 14)
    zeros = (out == 0).flatten(1).sum(1)
    assert (zeros <= 14 * 14).all() and (zeros >= 7 * 7).all()


def test_cli_smoke(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "awp_lib", "train", "--dataset", "fashion-mnist", "--method", "trades",
           "--awp-gamma", "5e-3", "--profile", "smoke", "--out", str(out), "--eps", "25/255"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["epochs"] == 2
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["eps"] == pytest.approx(25 / 255) and cfg["awp_gamma"] == 5e-3 and cfg["method"] == "trades"
    assert (out / "metrics.csv").exists() and (out / "checkpoints/last.pt").exists()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert "nothing to do" in r.stdout
    bad = subprocess.run(cmd[:4] + ["--awp-gama", "1"], capture_output=True, text=True)
    assert bad.returncode != 0 and "--awp-gama" in bad.stderr
    bad = subprocess.run(cmd[:4] + ["--method", "sgd", "--out", str(tmp_path / "x")], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown method 'sgd'" in bad.stderr


def test_changing_only_the_final_evaluation_keeps_training_and_redoes_the_evaluation(tmp_path, tiny):
    out = tmp_path / "run"
    first = T.train(cfg_(epochs=2, final_attack_steps=0), out, tiny, progress="none")
    assert "final_test_robust" not in first[-1]
    weights = load_torch(out / "checkpoints" / "last.pt")["model"]
    again = T.train(cfg_(epochs=2, final_attack_steps=3, final_test_size=50), out, tiny, progress="none")
    assert strip(again)[0] == strip(first)[0]                       # training kept as it was
    assert again[-1]["final_attack"] == "PGD-3" and 0 <= again[-1]["final_test_robust"] <= 1
    saved = json.loads((out / "config.json").read_text())
    assert (saved["final_attack_steps"], saved["final_test_size"]) == (3, 50)
    assert all(torch.equal(weights[k], v) for k, v in load_torch(out / "checkpoints" / "last.pt")["model"].items())
    with pytest.raises(ValueError, match="another config.*epochs"):
        T.train(cfg_(epochs=3, final_attack_steps=3, final_test_size=50), out, tiny, progress="none")


def test_two_trainings_of_one_folder_the_second_fails_naming_the_first(tmp_path):
    """train() holds the folder's lock for as long as it writes: a second trainer fails at once,
    naming the holder, and leaves the folder as it was; a lock of a dead process is free."""
    import os
    import socket
    import time

    from awp_lib.runs import RunBusy, RunDir
    out = tmp_path / "run"
    run = RunDir(out)
    argv = [sys.executable, "-m", "awp_lib", "train", "--profile", "smoke", "--epochs", "6", "--out", str(out),
            "--progress", "none"]
    with run.training():   # held, as by another trainer: the command line fails with one error line
        second = subprocess.run(argv, capture_output=True, text=True)
        here = f"{socket.gethostname()}:{os.getpid()}"
        assert second.returncode == 1 and f"error: run folder {out} (training) is held by {here}" in second.stderr
        assert "Traceback" not in second.stderr and run.rows() == []
    first = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)   # a real trainer
    deadline = time.time() + 120
    while run.trainer() is None and first.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    holder = run.trainer()   # held from before its data loads to after its last write: seconds
    assert holder == f"{socket.gethostname()}:{first.pid}"
    with pytest.raises(RunBusy, match=f"held by {holder}"):
        T.train(make_config("smoke", epochs=6), out, progress="none")
    assert first.wait(timeout=300) == 0 and run.trainer() is None and not run.train_lock.exists()
    assert [r["epoch"] for r in run.rows()] == list(range(1, 7))        # the first run's folder, intact
    run.train_lock.write_text(f"{socket.gethostname()}:999999999")        # a crashed process's file
    assert len(T.train(make_config("smoke", epochs=6), out, progress="none")) == 6   # free: no lock held
    assert not run.train_lock.exists()
