"""The book's run list (awp_lib.book.runlist), the read-only mode of the book build, and the
live-widget cells that the build must not execute (jupyter/nbclient#312).

The coverage of the list is enforced where the chapters execute: ``make test`` trains the
smoke list, then runs every chapter under nbval with ``AWP_BOOK_RUNS=read``, in which a page
asking for a run missing from the list raises (tested here on a run of its own).
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import nbformat
import pytest

from awp_lib import data
from awp_lib.book import build, runlist
from awp_lib.book.store import Run
from awp_lib.config import make_config

REPO = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((REPO / "book").glob("*.ipynb"))
LIVE = re.compile(r"\binteract(ive)?\s*\(|@widgets\.interact|\.observe\s*\(")


@pytest.mark.parametrize("profile", ["smoke", "cpu", "paper"])
def test_book_runs_are_valid_and_consistent(profile):
    runs = runlist.book_runs(profile)
    assert len(runs) >= 10
    for name, run in runs.items():
        cfg = make_config(profile, **run.overrides)          # raises on a bad key or value
        assert run.name == name and run.profile == profile and name.endswith(f"-s{cfg.seed}"), name
    # chapters share runs: chapter 2's AT seed 0 is chapter 3's and chapter 4's
    assert runlist.ch3_run(profile).name in runs
    assert runlist.ch4_at_awp(profile, 0, 0).name == "at-piecewise-s0" == runlist.ch2_runs(profile)["piecewise"].name
    assert runlist.run_page_run(profile).name in runs


def test_chapter_parameters_are_checked():
    with pytest.raises(ValueError, match="'dropout'.*l1, l2, cutout, mixup"):
        runlist.ch4_params("smoke", regularizers="dropout")
    with pytest.raises(ValueError, match="'pgd'.*trades, mart, rst"):
        runlist.ch5_runs("smoke", methods="pgd")
    assert runlist.ch4_params("cpu")["seeds"] == [0, 1, 2, 3, 4]
    assert runlist.ch3_run("smoke", norm="l2", eps="1").name == "at-piecewise-l2-eps1-s0"
    assert runlist.ch3_results_name("at-piecewise-l2-eps1-s0") == "ch3-piecewise-l2-eps1"
    assert runlist.ch3_results_name(runlist.ch3_run("smoke", seed=2).name, 2) == "ch3"
    assert runlist.ch3_results_name(runlist.ch3_run("smoke", schedule="cosine").name) == "ch3-cosine"


@pytest.fixture()
def runs_root(tmp_path, monkeypatch):
    """Runs under ``tmp_path/runs`` (``$AWP_HOME``, which the worker processes inherit), data as before."""
    monkeypatch.setenv("AWP_DATA", str(data.data_root()))
    monkeypatch.setenv("AWP_HOME", str(tmp_path))
    return tmp_path / "runs"


def test_a_runs_numbers_do_not_depend_on_jobs(tmp_path, monkeypatch):
    """Two smoke runs trained one at a time and two at a time end with exactly the same metrics."""
    import json
    monkeypatch.setenv("AWP_DATA", str(data.data_root()))
    metrics = {}
    for jobs in (1, 2):
        monkeypatch.setenv("AWP_HOME", str(tmp_path / f"jobs{jobs}"))
        done = build.train_all("smoke", only="ch1-*", progress="line", jobs=jobs)
        assert sorted(r["run"] for r in done) == ["ch1-at-s0", "ch1-standard-s0"]
        metrics[jobs] = {n: json.loads((tmp_path / f"jobs{jobs}" / "runs" / "smoke" / n / "metrics.json")
                                       .read_text()) for n in ("ch1-at-s0", "ch1-standard-s0")}
    strip = lambda rows: [{k: v for k, v in r.items() if not k.startswith("time")} for r in rows]  # noqa: E731
    assert {n: strip(r) for n, r in metrics[1].items()} == {n: strip(r) for n, r in metrics[2].items()}


def test_a_failed_run_is_reported_and_the_others_finish(runs_root, monkeypatch, capsys):
    real = runlist.book_runs
    monkeypatch.setattr(runlist, "book_runs", lambda profile: {
        **{k: v for k, v in real(profile).items() if k == "ch1-at-s0"},
        "ch1-bad-s0": Run(profile, "ch1-bad-s0", dict(method="at", lr=-1.0))})
    with pytest.raises(build.RunsFailed, match="ch1-bad-s0: ValueError: lr=-1.0"):
        build.train_all("smoke", progress="line", jobs=2)
    out = capsys.readouterr().out
    assert "FAILED ch1-bad-s0" in out and "done ch1-at-s0" in out
    assert runlist.book_runs("smoke")["ch1-at-s0"].state() == "done"


def test_train_all_trains_then_skips_and_read_mode_reads(runs_root, monkeypatch, capsys):
    first = build.train_all("smoke", only="ch1-*", progress="line")
    assert [r["run"] for r in first] == ["ch1-standard-s0", "ch1-at-s0"]
    out = capsys.readouterr().out
    assert "2 in all, 0 done" in out and "done ch1-at-s0:" in out and "test_robust=" in out
    assert build.train_all("smoke", only="ch1-*", progress="line") == []   # nothing left to do
    assert "2 in all, 2 done" in capsys.readouterr().out
    run = runlist.ch1_runs("smoke")["standard"]
    assert run.state() == "done"
    # asked for with another final evaluation: not done (book-runs redoes that evaluation)
    assert run.with_config(final_attack_steps=2).state() == "partial"
    monkeypatch.setenv("AWP_BOOK_RUNS", "read")
    from awp_lib.runs import RunDir

    def no_lock(self):
        raise AssertionError("a page reading a finished run took the training lock")
    monkeypatch.setattr(RunDir, "training", no_lock)   # pages read side by side: never a lock
    rows = run.rows()
    assert len(rows) == run.config.epochs and 0 <= rows[-1]["test_robust"] <= 1


def test_read_mode_refuses_unlisted_and_unfinished_runs(runs_root, monkeypatch):
    monkeypatch.setenv("AWP_BOOK_RUNS", "read")
    with pytest.raises(RuntimeError, match=r"'at-mystery-s0'.*not in the book's run list.*runlist"):
        Run("smoke", "at-mystery-s0", dict(method="at")).rows()
    with pytest.raises(RuntimeError, match="another config"):
        runlist.ch4_at_awp("smoke", 0, 0).with_config(lr=0.3).rows()
    with pytest.raises(RuntimeError, match="not finished.*book-runs --profile smoke"):
        runlist.ch4_at_awp("smoke", 0, 0).rows()
    assert not (runs_root / "smoke" / "at-piecewise-s0").exists()   # nothing was trained


def test_live_widget_cells_are_not_executed_by_the_build():
    found = 0
    for path in CHAPTERS:
        for i, cell in enumerate(nbformat.read(path, 4).cells):
            if cell.cell_type == "code" and LIVE.search(cell.source):
                tags = cell.metadata.get("tags", [])
                where = f"{path.name} cell {i}"
                assert "skip-execution" in tags, f"{where} runs a live widget: tag it skip-execution"
                assert "nbval-skip" in tags, f"{where} runs a live widget: tag it nbval-skip"
                found += 1
    assert found >= 1  # chapter 1's epsilon slider


def test_chapter_with_live_widget_executes_repeatedly_without_stalling(monkeypatch):
    """Chapter 1 at smoke, executed three times as the book build executes it (nbclient, which
    skips skip-execution cells), each under a bounded time: a reintroduced deadlock fails here."""
    from nbclient import NotebookClient
    build.train_all("smoke", only="ch1-*", progress="line")
    monkeypatch.setenv("AWP_PROFILE", "smoke")
    monkeypatch.setenv("AWP_BOOK_RUNS", "read")
    for attempt in range(3):
        nb = nbformat.read(REPO / "book" / "ch1_attacks.ipynb", 4)
        t0 = time.perf_counter()
        NotebookClient(nb, timeout=120, kernel_name="python3",
                       resources={"metadata": {"path": str(REPO / "book")}}).execute()
        took = time.perf_counter() - t0
        assert took < 240, f"execution {attempt + 1} took {took:.0f} s"
        live = [c for c in nb.cells if "skip-execution" in c.metadata.get("tags", [])]
        assert live and all(not c.get("outputs") for c in live)


def test_a_run_trained_with_another_config_is_set_aside_and_trained_again(runs_root):
    """The run list changed a training key (here the learning rate; a cut such as compile or the
    monitor's sizes alike): the old run is not reused but kept aside, and the listed one trains."""
    run = runlist.ch1_runs("smoke")["standard"]
    name, old = run.name, run.with_config(lr=0.01)
    old.rows()
    assert old.state() == "done"
    assert run.state() == "stale"
    rows = run.rows()
    assert len(rows) == run.config.epochs and run.state() == "done"
    aside = runs_root / "smoke" / f"{name}.other-config"
    assert json.loads((aside / "config.json").read_text())["lr"] == 0.01
    # a change of the final evaluation alone keeps the training (the evaluation is redone)
    assert run.with_config(final_attack_steps=2).state() == "partial"
