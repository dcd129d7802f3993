"""awp_lib.book: the helpers every chapter uses."""
import json

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
    assert path == tmp_path / "results" / "smoke" / "ch9.json"
    assert json.loads(path.read_text())["at"]["best_test_robust"] == 0.5
    assert book.load_results("smoke", "ch9")["profile"] == "smoke"
    assert book.run_dir("cpu", "x") == tmp_path / "runs" / "cpu" / "x"
    with pytest.raises(ValueError, match="unknown profile 'gpu'"):
        book.check_profile("gpu")


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
