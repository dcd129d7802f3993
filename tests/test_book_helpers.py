"""awp_lib.book: the helpers every chapter uses."""
import json
from pathlib import Path

import pytest

from awp_lib import book


def rows():
    # epochs 1-4; validation peaks at epoch 2, test falls afterwards, the gap opens at epoch 3
    r = [(0.40, 0.40, 0.38), (0.55, 0.50, 0.49), (0.70, 0.48, 0.47), (0.85, 0.46, 0.44)]
    return [{"epoch": i + 1, "lr": 0.1 if i < 2 else 0.01, "train_robust": tr, "val_robust": va, "test_robust": te,
             "test_natural": te + 0.2, "gap": tr - te} for i, (tr, va, te) in enumerate(r)]


def test_best_last_selects_on_validation_never_test():
    r = rows()
    r[3]["test_robust"] = 0.9  # the best *test* epoch must not be chosen
    out = book.best_last(r)
    assert out["best_epoch"] == 2 and out["best_test_robust"] == 0.49 and out["last_test_robust"] == 0.9
    assert out["drop"] == pytest.approx(0.49 - 0.9)


def test_late_stage_start():
    assert book.late_stage_start(rows()) == 3
    assert book.late_stage_start(rows()[:2]) is None


def test_results_go_to_project_root(tmp_path, monkeypatch):
    (tmp_path / "_toc.yml").write_text("root: intro\n")
    (tmp_path / "book").mkdir()
    monkeypatch.chdir(tmp_path / "book")  # notebooks run with book/ as cwd
    monkeypatch.delenv("AWP_HOME", raising=False)
    path = book.save_results("smoke", "ch9", {"at": {"best_test_robust": 0.5}})
    import numpy as np
    import torch
    odd = book.save_results("smoke", "ch8", {"se": float("nan"), "r": [np.float64(0.25), float("inf")],
                                             "n": torch.tensor(3), "p": np.float64("nan")})
    assert "NaN" not in odd.read_text() and "Infinity" not in odd.read_text()
    got = json.loads(odd.read_text())
    assert got["se"] is None and got["r"] == [0.25, None] and got["n"] == 3 and got["p"] is None
    assert path == tmp_path / "results" / "smoke" / "ch9.json"
    assert json.loads(path.read_text())["at"]["best_test_robust"] == 0.5
    assert book.load_results("smoke", "ch9")["profile"] == "smoke"
    assert book.Run("cpu", "x").folder.path == tmp_path / "runs" / "cpu" / "x"
    assert book.runs_folder("cpu", "elsewhere") == Path("elsewhere") / "cpu"
    with pytest.raises(ValueError, match="unknown profile 'gpu'"):
        book.start_page("gpu")


def test_figure_slider_links_slider_and_stack():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figs = {}
    for v in (0.0, 0.1):
        fig, ax = plt.subplots()
        ax.plot([0, 1], [0, v])
        figs[v] = fig
    box = book.figure_slider(figs, "ε")
    (label, slider), stack = box.children[0].children, box.children[1]
    assert "ε" in label.value and slider.description == ""
    assert "awp-slider" in slider._dom_classes and "awp-stack" in stack._dom_classes
    assert len(stack.children) == 2 and stack.selected_index == 0 and list(slider.options) == ["0.0", "0.1"]
    assert stack.children[0].value != stack.children[1].value


def test_check_attacks_names_the_model_and_the_broken_order():
    fine = {"natural": 0.8, "fgsm": 0.5, "pgd20": 0.4, "pgd100": 0.39, "cw": 0.38,
            "aa_subset_natural": 0.75, "aa_subset_pgd100": 0.4, "autoattack": 0.37, "seconds_battery": 9.0}
    book.check_attacks({"m": fine}, ordered=True)
    with pytest.raises(AssertionError, match=r"m: pgd100 above pgd20"):
        book.check_attacks({"m": {**fine, "pgd100": 0.45}}, ordered=True)
    book.check_attacks({"m": {**fine, "pgd100": 0.45}})  # the order is checked only when asked
    with pytest.raises(AssertionError, match=r"last: autoattack above natural"):
        book.check_attacks({"last": {**fine, "autoattack": 0.8}})  # above the subset's natural 0.75
    with pytest.raises(AssertionError, match=r"fgsm = 1.5 is not an accuracy"):
        book.check_attacks({"best": {**fine, "fgsm": 1.5}})


def test_check_metrics_counts_epochs():
    rows = [{"epoch": 1, "train_loss": 2.0}]
    book.check_metrics({"r": rows}, epochs=1)
    with pytest.raises(AssertionError, match="r: 1 epochs recorded, 2 expected"):
        book.check_metrics({"r": rows}, epochs=2)


def test_beside_paper_one_run_and_the_papers_row():
    from awp_lib.book import report
    from awp_lib.config import make_config
    summary = {"best_test_robust": 0.5, "last_test_robust": 0.45, "best_test_natural": 0.8,
               "last_test_natural": 0.81}
    paper_cfg = make_config("paper", awp_gamma=0.01).to_dict()   # CIFAR-10, L-inf, AT-AWP
    grid = report.beside_paper(paper_cfg, summary)
    assert grid["robust, best"] == {"ours (this run, %)": 50.0, "paper (%)": "55.39 ± 0.39"}
    assert grid["natural, last"]["ours (this run, %)"] == 81.0
    assert report.paper_numbers("cifar10", "linf", "AT", ("drop", "last_gap")) == ["8.35", "—"]
    cpu = report.beside_paper(make_config("cpu").to_dict(), summary)  # no paper row: a dash
    assert {v["paper (%)"] for v in cpu.values()} == {"—"}


def test_show_source_shows_one_block(monkeypatch):
    from awp_lib import train
    from awp_lib.book import plots
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj.data))
    plots.show_source(train.train_step, "if awp is not None:")
    assert shown[0].startswith("if awp is not None:") and "awp.perturb" in shown[0]
    assert "opt.step()" not in shown[0]
    with pytest.raises(ValueError, match="'no such line' is not in the source of train_step"):
        plots.show_source(train.train_step, "no such line")
