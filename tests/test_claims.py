"""The claims of chapters 2 and 4, computed from runs' metrics through book.best_last and summarize."""
import pytest

from awp_lib import book
from awp_lib.book import claims


def run(best, last, loss_best=1.0, loss_last=1.0, train_last=0.8, natural=0.8):
    """Metrics of a run evaluated at epochs 10 (best on validation) and 20 (last), with final numbers."""
    def row(epoch, val, test, loss, train):
        return {"epoch": epoch, "lr": 0.1, "val_robust": val, "test_robust": test, "test_natural": natural,
                "train_robust": train, "test_robust_loss": loss, "final_attack": "PGD-20",
                "final_test_robust": test, "final_test_natural": natural, "final_train_robust": train,
                "final_test_robust_loss": loss}
    return [row(10, 0.7, best, loss_best, 0.7), row(20, 0.6, last, loss_last, train_last)]


def at_runs(drops, rises):
    return book.summarize([run(0.66, 0.66 - d, 1.0, 1.0 + r) for d, r in zip(drops, rises)])


def test_loss_rise_is_last_over_best_of_the_final_evaluation():
    got = book.best_last(run(0.66, 0.64, loss_best=0.8, loss_last=1.0))
    assert got["loss_rise"] == pytest.approx(0.25) and got["drop"] == pytest.approx(0.02)
    summ = at_runs([0.01, 0.02], [0.2, 0.3])
    assert summ["loss_rise"] == pytest.approx(0.25) and len(summ["per_seed"]) == 2
    assert summ["se"]["loss_rise"] == pytest.approx(0.05)


def test_chapter2_claims_hold_and_fail_on_the_numbers():
    held = claims.robust_overfitting(at_runs([0.0035, 0.0173, 0.0125, 0.0122, 0.0122], [0.1, 0.18, 0.24, 0.2, 0.15]))
    assert [h for _, h, _ in held] == [True, True]
    assert "falls on 5 of 5" in held[0][2]
    # falls on 3 of 5 only; a loss that rises on some seeds and falls on others
    failed = claims.robust_overfitting(at_runs([0.01, 0.01, 0.01, -0.01, -0.01], [0.2, -0.2, 0.1, -0.1, 0.0]))
    assert [h for _, h, _ in failed] == [False, False]
    # one seed: no standard error, no claim beyond it
    assert not claims.robust_overfitting(at_runs([0.05], [0.5]))[0][1]


def test_chapter4_claims():
    at = at_runs([0.012, 0.017, 0.013, 0.012, 0.012], [0.18, 0.24, 0.2, 0.2, 0.2])
    awp = book.summarize([run(0.67, 0.669 - 0.001 * i, 1.0, 1.02) for i in range(5)])
    paired = book.paired(at, awp, "last_test_robust")
    got = claims.awp_vs_at(at, awp, paired) + claims.sharpness(at_best=0.1, at_last=0.3, awp_last=0.2)
    assert len(got) == 6 and all(h for _, h, _ in got), got
    assert [h for _, h, _ in claims.sharpness(at_best=0.3, at_last=0.2, awp_last=0.25)] == [False, False]
    # AT-AWP no better than AT: (i)-(iii) fail
    same = claims.awp_vs_at(at, at, book.paired(at, at, "last_test_robust"))
    assert [h for _, h, _ in same[:3]] == [False, False, False]


def test_recorder_prints_and_saves(capsys):
    rec = claims.Claims()
    rec.add("a", True, "1")
    rec.add("b", False, "2")
    out = capsys.readouterr().out
    assert "holds:  a  [1]" in out and "FAILS:  b  [2]" in out
    assert rec.records() == [{"claim": "a", "holds": True, "numbers": "1"},
                             {"claim": "b", "holds": False, "numbers": "2"}]
    assert rec.held() == 1 and rec.summary() == "holds: a; FAILS: b"


def test_check_metrics_names_the_bad_run_and_epoch():
    good = run(0.66, 0.64)
    for r in good:
        r.update(train_natural=0.9, val_natural=0.8)
    book.check_metrics({"a": good})
    bad = [dict(r) for r in good]
    bad[1]["val_robust"] = 0.95   # above its natural accuracy
    with pytest.raises(AssertionError, match="b, epoch 20: val natural 0.8, robust 0.95"):
        book.check_metrics({"a": good, "b": bad})


def test_stack_and_band():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    runs = [run(0.6, 0.5), run(0.7, 0.6)]
    ep, a = book.stack(runs, "test_robust")
    assert list(ep) == [10, 20] and a.shape == (2, 2) and a[1, 1] == pytest.approx(60)
    assert book.stack(runs, "test_robust_loss")[1][0, 0] == pytest.approx(1.0)   # losses unscaled
    fig, ax = plt.subplots()
    book.plot_band(ax, runs, "test_robust", "C3", "AT-AWP")
    assert ax.get_legend_handles_labels()[1] == ["AT-AWP (mean of 2)"] and len(ax.collections) == 1
    plt.close(fig)


def test_formatting_of_means_and_paired_differences():
    at = at_runs([0.01, 0.02], [0.2, 0.3])
    assert claims.pm(at, "drop") == "1.5 ± 0.5"                       # points
    assert claims.pm(at, "last_test_robust_loss") == "1.250 ± 0.050"  # a loss, as it is
    paired = book.paired(at, at_runs([0.0, 0.0], [0.0, 0.1]), "drop")
    assert claims.pm_paired(paired, "drop") == "-1.5 ± 0.5"
    one = book.paired(at_runs([0.01], [0.2]), at_runs([0.0], [0.0]), "drop")
    assert claims.pm_paired(one, "drop") == "-1.0" and claims.pm(at_runs([0.01], [0.2]), "drop") == "1.0"
