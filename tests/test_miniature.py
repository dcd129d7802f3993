"""The cpu miniature's pieces: label noise, the robust test loss, seed summaries, the chapters' runs."""
import json
import math

import pytest
import torch
import torch.nn.functional as F

from awp_lib import attacks, book, data, models, names
from awp_lib import train as T
from awp_lib.book import report, runlist
from awp_lib.config import make_config


@pytest.fixture(scope="module")
def tiny():
    return data.get_splits("fashion-mnist", train_size=200, val_size=100, test_size=100, seed=0)


def test_flip_labels_changes_exactly_that_fraction_to_other_classes(tiny):
    noisy = data.flip_labels(tiny, 0.2, seed=3)
    changed = noisy.train[1] != tiny.train[1]
    assert changed.sum().item() == 40                       # round(0.2 * 200), every one to another class
    assert torch.equal(noisy.train[0], tiny.train[0])
    for part in ("val", "test", "pool"):                    # only the training labels are noisy
        assert torch.equal(getattr(noisy, part)[1], getattr(tiny, part)[1])
    assert torch.equal(data.flip_labels(tiny, 0.2, seed=3).train[1], noisy.train[1])      # seeded
    assert not torch.equal(data.flip_labels(tiny, 0.2, seed=4).train[1], noisy.train[1])
    assert torch.equal(data.flip_labels(tiny, 0.0).train[1], tiny.train[1])
    with pytest.raises(ValueError, match=r"label_noise=1\.5 is invalid"):
        make_config("smoke", label_noise=1.5)
    with pytest.raises(ValueError, match=r"label_noise=1\.0 is invalid"):
        data.flip_labels(tiny, 1.0)


def test_robust_loss_is_the_cross_entropy_at_the_pgd_examples(tiny):
    cfg = make_config("smoke")
    torch.manual_seed(0)
    model = models.build_model("smallcnn", "fashion-mnist", 4).eval()
    loader = data.Loader(*tiny.test, 64)
    torch.manual_seed(7)
    got = T.evaluate_split(model, loader, cfg, 3)
    torch.manual_seed(7)
    total, n, hits, nat = 0.0, 0, 0, 0
    for x, y in loader:
        x_adv = attacks.pgd(model, x, y, cfg.eps, cfg.alpha, 3, cfg.norm, bn_mode="eval")
        with torch.no_grad():
            out = model(x_adv)
            nat += (model(x).argmax(1) == y).sum().item()
        total += F.cross_entropy(out, y, reduction="sum").item()
        hits += (out.argmax(1) == y).sum().item()
        n += len(y)
    assert got["robust_loss"] == pytest.approx(total / n, rel=1e-5)
    assert got["robust"] == pytest.approx(hits / n)
    assert got["natural"] == nat / n


def test_training_rows_carry_the_robust_losses_and_label_noise_trains(tmp_path, tiny):
    cfg = make_config("smoke", epochs=1, train_size=200, val_size=100, test_size=100, label_noise=0.3)
    rows = T.train(cfg, tmp_path / "run", progress="none")
    for part in ("train", "val", "test"):
        assert rows[-1][f"{part}_robust_loss"] > 0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["label_noise"] == 0.3
    assert report.method_label(cfg.to_dict()) == "AT (30% noisy labels)"


def test_summarize_means_standard_errors_and_validation_drop():
    def run(vals, final):
        rows = [{"epoch": e + 1, "lr": 0.1, "val_robust": v, "test_robust": t, "test_natural": 0.9,
                 "train_robust": 0.8, "gap": 0.8 - t} for e, (v, t) in enumerate(vals)]
        rows[-1].update(final)
        return rows
    a = run([(0.5, 0.4), (0.6, 0.5), (0.55, 0.45)], {})
    b = run([(0.5, 0.4), (0.7, 0.6), (0.6, 0.5)], {})
    s = book.summarize([a, b])
    assert s["n"] == 2 and len(s["per_seed"]) == 2
    assert s["val_drop"] == pytest.approx((0.05 + 0.1) / 2)
    assert s["drop"] == pytest.approx((0.05 + 0.1) / 2)
    sd = math.sqrt(((0.05 - 0.075) ** 2 + (0.1 - 0.075) ** 2) / 1)
    assert s["std"]["drop"] == pytest.approx(sd) and s["se"]["drop"] == pytest.approx(sd / math.sqrt(2))
    assert book.decay_epochs([{"epoch": 1, "lr": 0.1}, {"epoch": 2, "lr": 0.01}, {"epoch": 3, "lr": 0.01}]) == [1]
    assert book.gap_at(a, 2) == pytest.approx(0.3) and math.isnan(book.gap_at(a, 0))
    assert book.at_epoch(a, 3, "test_robust") == pytest.approx(0.45) and math.isnan(book.at_epoch(a, 3, "x"))


@pytest.mark.parametrize("profile", ["smoke", "cpu"])
def test_chapter_runs_cover_seeds_the_when_section_and_the_controls(profile):
    runs = runlist.book_runs(profile)
    for s in range(runlist.CH4[profile]["seeds"]):
        assert f"at-piecewise-s{s}" in runs and f"at-awp{runlist.CH4[profile]['gamma']:g}-s{s}" in runs
    for run in runlist.ch2_when_runs(profile).values():
        assert runs[run.name].overrides == run.overrides
    g = runlist.CH4[profile]["gamma"]
    want = {"rwp": f"at-rwp{g:g}-s0", "rwp10": f"at-rwp{10 * g:g}-s0", "awp-global": f"at-awp{g:g}-global-s0",
            "ema": "at-ema-s0", "at": "at-piecewise-s0", "awp": f"at-awp{g:g}-s0"}
    for label, name in want.items():
        run = runlist.ch4_control(profile, label, 0)
        assert run.name == name and name in runs
        assert names.run_name(run.config) == name      # the name says the config
    assert runs[want["rwp10"]].config.awp_gamma == pytest.approx(10 * g)
    with pytest.raises(ValueError, match="control 'sam'.*at, awp, rwp, rwp10, awp-global, ema"):
        runlist.ch4_control(profile, "sam", 0)


def test_report_uses_the_final_evaluation_when_a_run_has_one(tmp_path):
    cfg = make_config("smoke", epochs=2)
    rows = [{"epoch": 1, "lr": 0.1, "val_robust": 0.5, "test_robust": 0.4, "test_natural": 0.8, "train_robust": 0.5,
             "gap": 0.1},
            {"epoch": 2, "lr": 0.1, "val_robust": 0.4, "test_robust": 0.3, "test_natural": 0.7, "train_robust": 0.6,
             "gap": 0.3, "final_test_robust": 0.35, "final_test_natural": 0.75, "final_train_robust": 0.65,
             "final_attack": "PGD-20"}]
    rows[0].update(final_test_robust=0.45, final_test_natural=0.85, final_train_robust=0.55, final_attack="PGD-20")
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.json").write_text(json.dumps(cfg.to_dict()))
    (tmp_path / "r" / "metrics.json").write_text(json.dumps(rows))
    s = report.run_summary(tmp_path / "r")
    assert (s["robust_best"], s["robust_last"], s["natural_last"]) == pytest.approx((45, 35, 75))
    assert s["gap_last"] == pytest.approx(30) and s["attack"] == "PGD-20"


def test_chapter_settings_come_from_configs_and_bad_names_are_named():
    s = book.settings("ch4", "cpu")
    assert 0.0 in s["landscape"]["alphas"] and s["flatness"]["n"] > 0
    for ch in ("ch1", "ch3", "ch4", "ch5"):
        for profile in ("smoke", "cpu", "paper"):
            assert isinstance(book.settings(ch, profile), dict)
    with pytest.raises(ValueError, match="chapter.*'ch9'.*ch1, ch3, ch4, ch5"):
        book.settings("ch9", "cpu")
    with pytest.raises(ValueError, match="profile of ch4.*'laptop'.*smoke, cpu, paper"):
        book.settings("ch4", "laptop")


def test_one_colour_per_method_across_the_book(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.colors as mc
    import matplotlib.pyplot as plt
    rgb = {k: mc.to_hex(c) for k, c in book.COLORS.items()}
    assert len(set(rgb.values())) == len(rgb), f"two methods share a colour: {rgb}"
    # every method label a cpu-book run gets has its colour; families follow AT / AT-AWP
    for name, run in runlist.book_runs("cpu").items():
        label = report.method_label(run.config.to_dict())
        assert book.color_of(label) in book.COLORS.values(), (name, label)
    assert book.color_of("AT-AWP-global") == book.COLORS["AT-AWP global"]
    assert book.color_of("AT (cosine)") == book.COLORS["AT"]
    assert book.color_of("TRADES-AWP") == book.COLORS["AT-AWP"] != book.color_of("TRADES")
    # plot_curves draws every split of a run in the colour it is given
    rows = [{"epoch": e, "lr": 0.1, "train_robust": 0.5, "val_robust": 0.4, "test_robust": 0.4,
             "test_natural": 0.7, "gap": 0.1, "train_robust_loss": 1.0, "test_robust_loss": 1.2}
            for e in (1, 2)]
    fig, (ax, lax) = plt.subplots(1, 2)
    book.plot_curves(rows, ax=ax, loss_ax=lax, color=book.COLORS["AT-AWP"])
    drawn = {l.get_label(): mc.to_hex(l.get_color()) for a in (ax, lax) for l in a.get_lines()
             if not l.get_label().startswith("_")}
    red = mc.to_hex(book.COLORS["AT-AWP"])
    assert {k for k, v in drawn.items() if v == red} == {
        "train robust (at w)", "validation robust", "test robust", "robust loss, train", "robust loss, test"}
    plt.close(fig)
