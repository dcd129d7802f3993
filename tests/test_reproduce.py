"""``python -m awp_lib reproduce``: suite expansion, checks before any run, skip/resume, aggregation."""
import json
import math
import subprocess
import sys

import pytest

from awp_lib import names, semantics, train
from awp_lib.book import build, report, reproduce, suites
from awp_lib.config import make_config


def test_table3_paper_expands_to_the_60_runs_of_the_paper():
    runs = suites.get_suite("table3").runs("paper")
    assert len(runs) == 60 and len({r.name for r in runs}) == 60
    axes = {(r.axes["dataset"], r.axes["norm"], r.axes["method"], r.axes["seed"]) for r in runs}
    assert axes == {(d, n, m, s) for d in ("cifar10", "cifar100", "svhn") for n in ("linf", "l2")
                    for m in ("AT", "AT-AWP") for s in range(5)}
    for r in runs:
        c = r.config
        assert (c.model, c.epochs, c.batch_size) == ("preactresnet18", 200, 128)
        assert c.awp_gamma == (1e-2 if r.axes["method"] == "AT-AWP" else 0)   # the official Table 3 logs
        assert math.isclose(c.eps, 8 / 255 if c.norm == "linf" else 128 / 255)
        assert math.isclose(c.alpha, (1 / 255 if c.dataset == "svhn" else 2 / 255) if c.norm == "linf" else 15 / 255)
        assert c.lr == (0.01 if c.dataset == "svhn" else 0.1)
        assert r.notebook == suites.RUN_NOTEBOOK and r.parameters["name"] == r.name
    assert sum(r.config.awp_warmup == 5 for r in runs) == 10  # SVHN AT-AWP: AWP after 5 epochs


def test_other_suites_expand():
    t4 = suites.get_suite("table4").runs("paper")
    assert len(t4) == 30 and {r.config.regularizer for r in t4} == {"none", "l1", "l2", "cutout", "mixup"}
    assert all(r.config.norm == "linf" for r in t4)
    assert {r.config.awp_gamma for r in t4} == {0, 5e-3}   # Appendix F's budget for Tables 4 and 5
    assert all(r.config.norm == "l2" for r in suites.get_suite("table5").runs("paper"))
    wrn = suites.get_suite("benchmark-wrn").runs("paper")
    assert [r.config.method for r in wrn] == ["at", "trades", "mart"] and {r.config.model for r in wrn} == {"wrn-34-10"}
    assert all(r.parameters["battery"] == "full" for r in wrn)
    fig7 = suites.get_suite("fig7-schedules").runs("paper")
    assert [r.parameters["schedule"] for r in fig7] == ["cosine", "cyclic"] and fig7[0].notebook == suites.CH3_NOTEBOOK
    fig10 = suites.get_suite("fig10-l2").runs("paper")[0]
    assert fig10.parameters["eps"] == "128/255" and math.isclose(fig10.config.eps, 128 / 255)
    assert suites.get_suite("fig9-datasets").runs("smoke") == []   # one dataset offline
    smoke = suites.get_suite("table3").runs("smoke")
    assert len(smoke) == 8 and {r.config.dataset for r in smoke} == {"fashion-mnist"}
    # a suite shares the chapters' runs: same names for the same configs
    assert names.run_name(make_config("cpu", method="at", seed=3)) == "at-piecewise-s3"
    assert names.run_name(make_config("cpu", method="at", awp_gamma=1e-2, seed=0)) == "at-awp0.01-s0"
    assert names.run_name(make_config("cpu", method="at", regularizer="l2", seed=0)) == "at-l2-s0"
    with pytest.raises(ValueError, match="table33.*table3"):
        suites.get_suite("table33")


def test_dry_run_lists_the_plan_and_gpu_hours(tmp_path):
    out = subprocess.run([sys.executable, "-m", "awp_lib", "reproduce", "table3", "--profile", "paper", "--dry-run",
                          "--runs-root", str(tmp_path)], capture_output=True, text=True, check=True).stdout
    assert "60 runs, 0 done, 60 to run" in out
    assert out.count(" new ") == 60   # the state words of awp_lib.runs.STATES
    hours = float(out.split("estimated ")[1].split(" GPU-hours")[0])
    assert 50 < hours < 500
    assert not any(tmp_path.iterdir()), "a dry run must not create run folders"


def test_bad_parameter_file_fails_before_any_run(tmp_path):
    cases = {"epochz: 3\n": "epochz.*did you mean 'epochs'", "epochs: -1\n": "epochs=-1",
             "schedule: linear\n": "linear", "seed: 3\n": "seed", "- 1\n": "mapping"}
    for text, pattern in cases.items():
        f = tmp_path / "params.yaml"
        f.write_text(text)
        with pytest.raises(ValueError, match=pattern):
            suites.load_parameter_file(f)
    f.write_text("epochz: 3\n")
    p = subprocess.run([sys.executable, "-m", "awp_lib", "reproduce", "table3", "--profile", "smoke", "-f", str(f),
                        "--runs-root", str(tmp_path / "runs")], capture_output=True, text=True)
    assert p.returncode == 2 and "epochz" in p.stderr and "epochs" in p.stderr
    assert not (tmp_path / "runs").exists()
    f.write_text("epochs: 1\nlr: 0.02\n")
    assert suites.load_parameter_file(f) == {"epochs": 1, "lr": 0.02}
    runs = suites.get_suite("table3").runs("smoke", suites.load_parameter_file(f))
    assert all(r.config.epochs == 1 and r.config.lr == 0.02 for r in runs)


def test_a_folder_with_another_config_is_refused_before_any_run(tmp_path):
    run = suites.get_suite("table3").runs("smoke")[0]
    folder = tmp_path / "smoke" / run.name
    folder.mkdir(parents=True)
    saved = {**run.config.to_dict(), semantics.KEY: semantics.TRAINING_SEMANTICS, "epochs": 7}
    (folder / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match="another config.*epochs"):
        reproduce.run_suite("table3", "smoke", runs_root=str(tmp_path), out=lambda m: None)
    assert not (tmp_path / "smoke" / suites.get_suite("table3").runs("smoke")[1].name).exists()


def _interrupt_after_first_epoch(monkeypatch):
    def stop(bar, progress, row, cfg):
        if row["epoch"] == 1:
            raise KeyboardInterrupt
    monkeypatch.setattr(train, "_report", stop)


def test_reproduce_skips_finished_runs_and_resumes_interrupted_ones(tmp_path, monkeypatch):
    root, log = tmp_path / "runs", []
    kw = dict(profile="smoke", only="at-awp0.01-s*", runs_root=str(root), log_output=False, out=log.append)
    first = reproduce.run_suite("table3", max_runs=1, **kw)
    assert first["executed"] == ["at-awp0.01-s0"]
    done0 = root / "smoke" / "at-awp0.01-s0"
    assert (done0 / "done.json").exists() and (done0 / "notebook.ipynb").exists()
    assert (done0 / "checkpoints" / "last.pt").exists()
    stamp = {p.name: p.stat().st_mtime_ns for p in done0.iterdir() if p.is_file()}

    # seed 1 is interrupted after its first epoch (as by a kill): a checkpoint, no done.json
    run1 = [r for r in suites.get_suite("table3").runs("smoke") if r.name == "at-awp0.01-s1"][0]
    with monkeypatch.context() as m:
        _interrupt_after_first_epoch(m)
        with pytest.raises(KeyboardInterrupt):
            train.train(run1.config, root / "smoke" / run1.name, progress="none")
    row1 = json.loads((root / "smoke" / run1.name / "metrics.json").read_text())
    assert len(row1) == 1
    assert reproduce.status(run1, root) == "partial (epoch 1/2)"

    second = reproduce.run_suite("table3", **kw)
    assert second["executed"] == ["at-awp0.01-s1"], "the finished run must be skipped"
    assert {p.name: p.stat().st_mtime_ns for p in done0.iterdir() if p.is_file()} == stamp
    rows = json.loads((root / "smoke" / run1.name / "metrics.json").read_text())
    # (the final evaluation adds final_* columns to the best epoch's row: compare the rest)
    assert [r["epoch"] for r in rows] == [1, 2], "resumed, not restarted"
    assert {k: rows[0][k] for k in row1[0]} == row1[0], "resumed, not restarted"
    nb = json.loads((root / "smoke" / run1.name / "notebook.ipynb").read_text())
    assert nb["metadata"]["papermill"]["parameters"]["name"] == "at-awp0.01-s1"

    # the aggregated table: AT-AWP, 2 seeds, mean of the two runs' numbers
    table = json.loads((reproduce.project_root() / "results" / "smoke" / "reproduce-table3.json").read_text())
    (row,) = [r for r in table["table"] if r["method"] == "AT-AWP" and r["norm"] == "linf"]
    assert row["seeds"] == [0, 1]
    sums = [report.run_summary(root / "smoke" / n) for n in ("at-awp0.01-s0", "at-awp0.01-s1")]
    assert math.isclose(row["robust_last"][0], (sums[0]["robust_last"] + sums[1]["robust_last"]) / 2)
    third = reproduce.run_suite("table3", **kw)
    assert third["executed"] == []


def test_aggregate_suite_from_run_folders_the_test_writes(tmp_path):
    suite = suites.get_suite("table4")
    runs = suite.runs("smoke", seeds=3)
    for r in runs[:4]:   # AT seeds 0-2, AT+L1 seed 0
        d = tmp_path / "smoke" / r.name
        d.mkdir(parents=True)
        (d / "config.json").write_text(json.dumps(r.config.to_dict()))
        t = 0.3 + 0.01 * r.config.seed
        rows = [{"epoch": e + 1, "val_robust": 0.4 + 0.1 * (e == 0), "test_robust": t + 0.1 * (e == 0),
                 "test_natural": 0.8, "train_robust": t + 0.1 * (e == 0) + 0.2, "gap": 0.2}
                for e in range(r.config.epochs)]
        (d / "metrics.json").write_text(json.dumps(rows))
    log = []
    rows = reproduce.aggregate_suite(suite, runs, tmp_path, "smoke", log.append)
    by = {r["method"]: r for r in rows}
    assert by["AT"]["seeds"] == [0, 1, 2] and math.isclose(by["AT"]["robust_last"][0], 31.0)
    assert math.isclose(by["AT"]["robust_last"][1], 1.0) and math.isclose(by["AT"]["robust_best"][0], 41.0)
    assert by["AT+L1"]["seeds"] == [0]
    md = (reproduce.project_root() / "results" / "smoke" / "reproduce-table4.md").read_text()
    assert "| fashion-mnist | linf | AT | smallcnn | 3 | 41.00 ± 1.00 | 31.00 ± 1.00 |" in md
    assert f"{len(runs) - 4} of the suite's {len(runs)} training runs are not finished" in md


def test_slurm_executor_runs_the_same_function_through_submitit(tmp_path):
    # submitit's "debug" cluster runs the job in this process when its result is asked for: the
    # job is the pickled execute_run of a local run, so the Slurm path is the local path.
    runs = [r for r in suites.get_suite("table3").runs("smoke", seeds=1) if r.name == "at-awp0.01-s0"]
    jobs = reproduce.submit_slurm(runs, tmp_path, 1, {"cluster": "debug", "slurm_partition": "gpu"})
    info = jobs[0].result()
    assert info["run"] == "at-awp0.01-s0"
    assert (tmp_path / "smoke" / "at-awp0.01-s0" / "done.json").exists()
    assert reproduce.status(runs[0], tmp_path) == "done"


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_a_failing_run_does_not_stop_the_others(tmp_path):
    runs = suites.get_suite("table3").runs("smoke", {"device": "cuda"}, seeds=1)
    log = []
    with pytest.raises(build.RunsFailed, match="2 of 2 runs failed") as e:
        reproduce.run_suite("table3", "smoke", {"device": "cuda"}, seeds=1, only="at-piecewise-s0,at-awp0.01-s0", runs_root=str(tmp_path),
                            log_output=False, out=log.append)
    assert "at-piecewise-s0" in str(e.value) and "at-awp0.01-s0" in str(e.value)
    for r in runs[:2]:
        assert (tmp_path / "smoke" / r.name / "notebook.ipynb").exists()
        assert reproduce.status(r, tmp_path) != "done"


def test_a_run_executed_elsewhere_is_skipped_and_a_stale_lock_taken_over(tmp_path):
    import socket

    from awp_lib.runs import RunDir
    run = [r for r in suites.get_suite("table3").runs("smoke", seeds=1) if r.name == "at-piecewise-s0"][0]
    folder = tmp_path / "smoke" / run.name
    folder.mkdir(parents=True)
    with RunDir(folder).executing():   # held, as by another suite (an flock: per open file)
        assert reproduce.status(run, tmp_path).startswith("busy (")
        log = []
        res = reproduce.run_suite("table3", "smoke", seeds=1, only=run.name, runs_root=str(tmp_path), out=log.append)
        assert res["executed"] == [] and any("skipped" in m for m in log)
    (folder / ".lock").write_text(f"{socket.gethostname()}:999999999")   # a crashed process's file: no lock held
    assert reproduce.status(run, tmp_path) == "new"


def test_a_run_finished_by_another_process_meanwhile_is_not_executed_again(tmp_path):
    run = suites.get_suite("table3").runs("smoke", seeds=1)[0]
    folder = tmp_path / "smoke" / run.name
    folder.mkdir(parents=True)
    (folder / "done.json").write_text(json.dumps({"run": run.name, "seconds": 1.0}))
    assert reproduce.status(run, tmp_path) == "stale"  # executed under training semantics v1: done again
    (folder / "done.json").write_text(json.dumps({"run": run.name, "seconds": 1.0,
                                                  semantics.KEY: semantics.TRAINING_SEMANTICS}))
    assert reproduce.status(run, tmp_path) == "done"
    info = reproduce.execute_run(run, str(tmp_path))
    assert info["already_done"] and not (folder / "notebook.ipynb").exists() and not (folder / ".lock").exists()
