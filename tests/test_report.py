import json
import math

from awp_lib.book import report


def write_run(root, name, seed, awp, test_robust, epochs=4):
    d = root / name
    d.mkdir(parents=True)
    cfg = {"dataset": "fashion-mnist", "norm": "linf", "method": "at", "regularizer": "none", "awp_gamma": awp,
           "seed": seed, "model": "mlp", "epochs": epochs, "eps": 0.1}
    (d / "config.json").write_text(json.dumps(cfg))
    rows = [{"epoch": e + 1, "val_robust": v, "test_robust": t, "test_natural": t + 0.2, "train_robust": t + 0.1,
             "gap": 0.1}
            for e, (v, t) in enumerate(zip([0.3, 0.5, 0.4, 0.35], test_robust))]
    (d / "metrics.json").write_text(json.dumps(rows))


def test_aggregate_mean_std_over_seeds(tmp_path):
    write_run(tmp_path, "at-s0", 0, 0, [0.30, 0.50, 0.45, 0.40])
    write_run(tmp_path, "at-s1", 1, 0, [0.30, 0.54, 0.45, 0.44])
    write_run(tmp_path, "awp-s0", 0, 0.01, [0.30, 0.52, 0.50, 0.50])
    write_run(tmp_path, "unfinished", 2, 0, [0.3, 0.3, 0.3, 0.3], epochs=10)
    rows = {r["method"]: r for r in report.aggregate(report.collect(tmp_path))}
    assert set(rows) == {"AT", "AT-AWP"}
    at = rows["AT"]
    assert at["seeds"] == [0, 1]
    assert math.isclose(at["robust_best"][0], 52.0) and math.isclose(at["robust_best"][1], math.sqrt(8))  # epoch 2 by val
    assert math.isclose(at["robust_last"][0], 42.0)
    assert math.isclose(at["natural_last"][0], 62.0)
    assert report.fmt(rows["AT-AWP"]["robust_last"]) == "50.00"
    assert report.fmt((1.0, 0.5)) == "1.00 ± 0.50"


def test_paper_table_shape():
    assert all(len(v) == 4 for v in report.PAPER.values())
    assert report.PAPER[("cifar10", "linf", "AT")][0] == (52.79, .21)
    assert report.method_label({"method": "trades", "awp_gamma": 5e-3}) == "TRADES-AWP"
    assert report.method_label({"method": "at", "regularizer": "mixup", "awp_gamma": 0}) == "AT+MIXUP"


def test_aggregate_separates_configs_and_counts_copies_once(tmp_path):
    write_run(tmp_path, "at-s0", 0, 0, [0.30, 0.50, 0.45, 0.40])
    write_run(tmp_path, "at-s0-copy", 0, 0, [0.30, 0.50, 0.45, 0.40])
    write_run(tmp_path, "at-cosine-s0", 0, 0, [0.30, 0.50, 0.45, 0.20])
    cfg = json.loads((tmp_path / "at-cosine-s0" / "config.json").read_text())
    (tmp_path / "at-cosine-s0" / "config.json").write_text(json.dumps({**cfg, "schedule": "cosine"}))
    rows = {r["method"]: r for r in report.aggregate(report.collect(tmp_path))}
    assert set(rows) == {"AT", "AT (cosine)"}
    assert rows["AT"]["seeds"] == [0] and math.isclose(rows["AT"]["robust_last"][0], 40.0)
    assert math.isclose(rows["AT (cosine)"]["robust_last"][0], 20.0)
    assert [s["run"] for s in report.collect(tmp_path, names=["at-cosine-s0", "missing"])] == ["at-cosine-s0"]
    # a demonstration run (chapter 4's collapse) is not an experiment of the report
    assert {s["run"] for s in report.collect(tmp_path, skip={"at-cosine-s0"})} == {"at-s0", "at-s0-copy"}


def test_runs_table_and_the_paper_grid(tmp_path):
    write_run(tmp_path, "at-s0", 0, 0, [0.30, 0.50, 0.45, 0.40])
    write_run(tmp_path, "at-s1", 1, 0, [0.30, 0.54, 0.45, 0.44])
    write_run(tmp_path, "awp-s0", 0, 0.01, [0.30, 0.52, 0.50, 0.50])
    rows = report.aggregate(report.collect(tmp_path))
    table = report.runs_table(rows)
    assert [(t["method"], t["seeds"], t["robust last"]) for t in table] == [("AT", 2, "42.00 ± 2.83"),
                                                                            ("AT-AWP", 1, "50.00")]
    grid = {(g["dataset"], g["norm"], g["method"]): g for g in report.paper_grid(rows)}
    ours = grid[("fashion-mnist", "linf", "AT")]
    assert ours["ours: γ, seeds"] == "0, 2" and ours["paper: robust best"] == "—"
    cifar = grid[("cifar10", "linf", "AT-AWP")]
    assert cifar["ours: robust last"] == "absent" and cifar["paper: robust last"] == "54.73 ± 0.16"
    assert ("cifar10", "linf", "AT+L2") not in grid   # a method not asked for
    assert [t["experiment"] for t in table] == ["at", "awp"] and table[0]["γ"] == "—"


def test_the_grid_takes_the_tables_gamma_before_the_most_seeds(tmp_path):
    write_run(tmp_path, "awp0.01-s0", 0, 0.01, [0.30, 0.52, 0.50, 0.50])
    write_run(tmp_path, "awp0.01-s1", 1, 0.01, [0.30, 0.52, 0.50, 0.48])
    write_run(tmp_path, "awp0.005-s0", 0, 0.005, [0.30, 0.52, 0.50, 0.44])
    rows = report.aggregate(report.collect(tmp_path))

    def cell(**kw):
        grid = report.paper_grid(rows, **kw)
        return next(g for g in grid if g["dataset"] == "fashion-mnist" and g["method"] == "AT-AWP")

    assert cell()["ours: γ, seeds"] == "0.01, 2"                    # the most seeds
    assert cell(gamma=5e-3)["ours: γ, seeds"] == "0.005, 1"         # the table's γ
    assert cell(gamma=5e-3)["ours: robust last"] == "44.00"
    assert cell(gamma=0.02)["ours: γ, seeds"] == "0.01, 2"          # none at that γ: most seeds


def test_grid_table_puts_ours_beside_the_papers_under_each_column(tmp_path):
    write_run(tmp_path, "at-s0", 0, 0, [0.30, 0.50, 0.45, 0.40])
    lines = report.paper_grid(report.aggregate(report.collect(tmp_path)))
    table = report.grid_table(lines)
    assert len(table) == len(lines) and "fashion-mnist, linf, AT" in table.index
    assert table.loc["cifar10, linf, AT", ("robust last", "paper")] == "44.44 ± 0.39"
    assert table.loc["fashion-mnist, linf, AT", ("robust last", "ours")] == "40.00"
    assert table.loc["fashion-mnist, linf, AT", ("robust last", "paper")] == "—"


def test_summary_table_keeps_each_number_in_its_unit():
    table = report.summary_table({"best_epoch": 35, "last_test_robust": 0.6381,
                                  "best_test_robust_loss": 0.9303, "loss_rise": 0.151})
    assert table == {"best epoch": 35, "last test robust (%)": 63.81,
                     "best test robust loss": 0.93, "loss rise (%)": 15.1}
    assert isinstance(table["best epoch"], int)


def test_measured_on_names_the_attack_and_test_images_of_each_experiment(tmp_path):
    write_run(tmp_path, "at-s0", 0, 0, [0.30, 0.50, 0.45, 0.40])
    write_run(tmp_path, "awp-s0", 0, 0.01, [0.30, 0.52, 0.50, 0.50])
    write_run(tmp_path, "small-s0", 0, 0, [0.30, 0.50, 0.45, 0.40])
    for name, extra in {"at-s0": {"final_test_size": None},
                        "awp-s0": {"final_test_size": 2000, "test_size": None},
                        "small-s0": {"final_test_size": 2000, "test_size": 100, "width": 8}}.items():
        cfg = json.loads((tmp_path / name / "config.json").read_text())
        (tmp_path / name / "config.json").write_text(json.dumps({**cfg, **extra, "eval_attack_steps": 5}))
        rows = json.loads((tmp_path / name / "metrics.json").read_text())
        for r in rows:  # the final evaluation of every evaluated epoch, as monitor.final_evaluation writes it
            r.update({f"final_{k}": r[k] for k in ("test_robust", "test_natural", "train_robust")},
                     final_attack="PGD-20")
        (tmp_path / name / "metrics.json").write_text(json.dumps(rows))
    rows = report.aggregate(report.collect(tmp_path))
    assert {report.experiment_name(r["runs"][0]): r["test_images"] for r in rows} == \
        {"at": None, "awp": 2000, "small": 100}
    assert report.measured_on(rows) == ["PGD-20 on all test images: at",
                                        "PGD-20 on the first 2,000 test images: awp",
                                        "PGD-20 on the first 100 test images: small"]
    # without a final evaluation the numbers are the monitor's, on its own subset
    assert report.test_images({"eval_test_size": 250, "test_size": None}, final=False) == 250
    assert report.test_images({"eval_test_size": None, "test_size": 100}, final=False) == 100
