"""A run stuck at chance stops with an error; the profiles' AWP warm-ups."""
import json
import math

import pytest

from awp_lib import data, methods
from awp_lib import stuck as S
from awp_lib import train as T
from awp_lib.book import build, runlist
from awp_lib.book.store import Run
from awp_lib.config import make_config
from awp_lib.io import load_torch

TIMES = ("time_train", "time_total", "time_final")


def cfg_(**kw):
    return make_config("smoke", **{"epochs": 8, "train_size": 192, "val_size": 100, "test_size": 100,
                                   "final_attack_steps": 0, **kw})


def test_a_collapsed_run_fails_within_three_epochs_naming_run_epoch_and_remedies(tmp_path, tiny):
    # gamma = 1: the perturbation is as large as the weights, and AT-AWP falls to a constant prediction
    out = tmp_path / "collapsing"
    cfg = cfg_(awp_gamma=1.0)
    with pytest.raises(S.TrainingStuck) as err:
        T.train(cfg, out, tiny, progress="none")
    rows = json.loads((out / "metrics.json").read_text())
    stopped = rows[-1]["epoch"]
    at_chance = [r["epoch"] for r in rows if r["val_natural"] <= 0.12]
    assert at_chance, rows
    assert stopped < cfg.epochs and stopped - at_chance[0] <= 2, (stopped, at_chance)
    msg = str(err.value)
    for needle in (str(out), f"epoch {stopped}", "stuck at chance", "--awp-warmup", "--awp-gamma", "--lr"):
        assert needle in msg, (needle, msg)
    assert isinstance(err.value, S.TrainingDiverged)
    # what was computed is kept, and asking again fails at once without training
    assert load_torch(out / "checkpoints" / "last.pt")["epoch"] == stopped
    with pytest.raises(S.TrainingStuck):
        T.train(cfg, out, tiny, progress="none")
    assert json.loads((out / "metrics.json").read_text()) == rows


def test_the_loss_of_a_uniform_prediction_per_method():
    cfg = make_config("smoke")
    for m in ("standard", "at", "trades", "rst"):
        assert methods.chance_loss(m, 10, cfg) == pytest.approx(math.log(10), rel=1e-5)
    # MART's BCE adds -log(1 - max_{k != y} p_k) = -log(0.9)
    assert methods.chance_loss("mart", 10, cfg) == pytest.approx(math.log(10) - math.log(0.9), rel=1e-3)
    assert methods.chance_loss("at", 100, cfg) == pytest.approx(math.log(100), rel=1e-5)


def test_a_healthy_run_is_unchanged_by_the_check(tmp_path, tiny):
    checked = T.train(cfg_(epochs=4), tmp_path / "a", tiny, progress="none")
    unchecked = T.train(cfg_(epochs=4, stuck_epochs=0), tmp_path / "b", tiny, progress="none")
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMES} for r in rows]  # noqa: E731
    assert len(checked) == 4 and strip(checked) == strip(unchecked)


def rows_(losses, natural=None, every=1):
    rows = [{"epoch": e, "train_loss": x} for e, x in enumerate(losses, 1)]
    for r in rows:
        if natural is not None and r["epoch"] % every == 0:
            r["val_natural"] = natural
    return rows


def test_stuck_at_chance_counts_epochs_after_the_warmup_only():
    ln10 = math.log(10)
    cfg = make_config("cpu", awp_gamma=0.01)   # warm-up 5
    assert S.stuck_at_chance(cfg, rows_([1.2] * 5 + [ln10] * 2), 10) is None
    assert "within 1% of 2.303, the AT loss of a uniform prediction" in S.stuck_at_chance(
        cfg, rows_([1.2] * 5 + [ln10 * 1.005] * 3), 10)
    # during the warm-up, at ln 10 or not, nothing is counted
    assert S.stuck_at_chance(cfg, rows_([ln10] * 5), 10) is None
    # 2 % away from ln(C) is learning, not chance; ln(100) for 100 classes
    assert S.stuck_at_chance(cfg, rows_([1.2] * 5 + [ln10 * 0.98] * 3), 10) is None
    assert S.stuck_at_chance(cfg, rows_([1.2] * 5 + [math.log(100)] * 3), 100) is not None
    # the monitor's natural accuracy at chance + 2 points on 3 evaluated epochs in a row
    assert "validation natural accuracy" in S.stuck_at_chance(cfg, rows_([2.0] * 20, 0.115, every=5), 10)
    assert S.stuck_at_chance(cfg, rows_([2.0] * 20, 0.125, every=5), 10) is None
    assert S.stuck_at_chance(make_config("cpu", stuck_epochs=0), rows_([ln10] * 9), 10) is None


def test_stuck_runs_are_listed_as_stuck_and_failed_by_book_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("AWP_DATA", str(data.data_root()))
    monkeypatch.setenv("AWP_HOME", str(tmp_path))   # runs under tmp_path/runs, in the workers too
    kw = dict(epochs=8, train_size=192, val_size=100, test_size=100, final_attack_steps=0, awp_gamma=1.0)
    run = Run("smoke", "collapsing", kw)
    with pytest.raises(build.RunsFailed, match="collapsing: TrainingStuck: .*stuck at chance"):
        build.train_runs({"collapsing": run}, progress="none", jobs=1)
    assert run.state() == "stuck"
    assert not run.folder.checkpoint(8).exists()
    # a page asking for it in the build fails, naming it; nothing reads its numbers as a result
    monkeypatch.setenv("AWP_BOOK_RUNS", "read")
    monkeypatch.setattr(runlist, "book_runs", lambda profile: {"collapsing": run})
    with pytest.raises(RuntimeError, match="'collapsing' is stuck at chance"):
        run.rows()
    # a run expected to collapse (chapter 4's demonstration) is read with the reason it stopped
    rows, why = run.stuck()
    assert "stuck at chance" in why and rows[-1]["epoch"] < 8


@pytest.mark.parametrize("profile,kw,warmup", [
    ("cpu", dict(awp_gamma=0.01), 5),                          # 5 % of the preset's 100 epochs
    ("cpu", dict(awp_gamma=0.01, awp_direction="random"), 5),  # the controls too
    ("cpu", dict(method="trades", awp_gamma=5e-3, epochs=40), 2),  # chapter 5's 40 epochs
    ("cpu", dict(method="mart", awp_gamma=5e-3, epochs=40), 2),
    ("cpu", dict(), 0),                                        # no AWP, no warm-up
    ("smoke", dict(awp_gamma=0.01), 0),                        # its two epochs must see AWP act
    ("paper", dict(awp_gamma=0.01), 0),                        # the official AT-AWP code
    ("paper", dict(method="trades", awp_gamma=5e-3), 10),      # the official TRADES-AWP code
    ("paper", dict(method="mart", awp_gamma=5e-3), 10),
    ("cpu", dict(awp_gamma=0.01, awp_warmup=0), 0),            # an explicit value wins
])
def test_awp_warmup_defaults_by_profile(profile, kw, warmup):
    cfg = make_config(profile, **kw)
    assert cfg.awp_warmup == warmup
    assert cfg.to_dict()["awp_warmup"] == warmup   # recorded as a number in the run's config


def test_every_awp_run_of_the_cpu_book_warms_up_and_the_smoke_book_does_not():
    for profile, expected in (("cpu", lambda c: round(0.05 * c.epochs)), ("smoke", lambda c: 0)):
        for name, run in runlist.book_runs(profile).items():
            cfg = run.config
            if cfg.awp_gamma > 0 and name not in runlist.expected_stuck(profile):
                assert cfg.awp_warmup == expected(cfg), (profile, name, cfg.awp_warmup)
