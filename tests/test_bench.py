from awp_lib.book import bench


def test_epoch_speed_reports_a_ratio_and_a_projection():
    out = bench.run(["epoch_speed"], device="cpu", quick=True)["epoch_speed"]
    assert out["ratio"] > 0 and out["a_s"] > 0 and out["b_s"] > 0
    assert out["model"] == "smallcnn" and out["projected_epoch_s"] == round(383 * out["b_s"], 1)


def test_gpu_check_script_runs_on_a_cpu():
    """tools/gpu-check.sh, its CPU-runnable part: the paper profile's short run on random
    CIFAR-shaped tensors, printed as one JSON object (the GPU machine runs the full script)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path
    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ, AWP_GPU_CHECK_DEVICE="cpu", AWP_GPU_CHECK_SMALL="1", PYTHON=sys.executable,
               PYTHONPATH=str(repo))
    out = subprocess.run(["bash", str(repo / "tools" / "gpu-check.sh")], env=env, capture_output=True,
                         text=True, timeout=600, check=True).stdout
    result = json.loads(out)
    run = result["paper_run"]
    assert result["device"] == "cpu" and run["model"] == "preactresnet18" and run["amp"] == "bf16"
    assert run["epochs"] == 1 and len(run["epoch_train_s"]) == 1 and run["epoch_train_s"][0] > 0
    assert run["projected_cifar10_train_epoch_s"] > 0
    check = result["awp_precision"]     # the paper profile's bf16 sees AWP's w + v as fp32 does
    assert check["amp"] == "bf16" and check["awp_seen"] is True
    assert check["bf16"]["loss_awp"] != check["bf16"]["loss"]


def test_makespan_schedules_longest_first_on_the_least_loaded_slot():
    assert bench.makespan([3, 3, 2, 2, 2], 2) == 7          # 3+2+2 | 3+2 (longest first, greedy)
    assert bench.makespan([3, 3, 2, 2, 2], 2, efficiency=0.5) == 14
    assert bench.makespan([3, 3, 2, 2, 2], 8) == 3           # more slots than runs: the longest run
    assert bench.makespan([5, 1, 1, 1, 1, 1], 2) == 5


def test_cpu_run_projects_with_the_jobs_speedup_measured_in_the_same_run(monkeypatch):
    calls = []

    def jobs(device, quick):
        calls.append("jobs_speedup")
        return {"efficiency": 0.9}

    def cpu_run(device, quick, speed=None):
        calls.append("cpu_run")
        return {"speed": speed}

    monkeypatch.setitem(bench.BENCHES, "jobs_speedup", jobs)
    monkeypatch.setitem(bench.BENCHES, "cpu_run", cpu_run)
    out = bench.run(["cpu_run", "jobs_speedup"])
    assert calls == ["jobs_speedup", "cpu_run"]  # measured once, then reused
    assert out["cpu_run"]["speed"] == {"efficiency": 0.9}
    assert bench.run(["cpu_run"])["cpu_run"]["speed"] is None  # alone: cpu_run measures it
