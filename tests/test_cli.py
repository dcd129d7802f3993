"""Every command of ``python -m awp_lib`` ends a failure with one ``error:`` line and a non-zero
exit, never a traceback: bad input exits 2, work that failed (runs, a suite, a busy folder) 1."""
import subprocess
import sys

import pytest


def run_cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "awp_lib", *args], capture_output=True, text=True,
                          timeout=600, **kw)


def assert_one_error_line(p, code, *words):
    assert p.returncode == code, (p.returncode, p.stderr[-2000:])
    assert "Traceback" not in p.stderr, p.stderr[-2000:]
    errors = [line for line in p.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and p.stderr.rstrip().splitlines()[-1] == errors[0], p.stderr[-2000:]
    for w in words:
        assert w in errors[0], (w, errors[0])


@pytest.mark.parametrize("args,words", [
    (["train", "--profile", "smoke", "--lr", "-1"], ["lr=-1", ">= 0"]),
    (["book-runs", "--profile", "gpu"], ["'gpu'", "smoke, cpu, paper"]),
    (["book-pages", "--profile", "smoke", "--only", "nope"], ["'nope'", "book/ch1_attacks.ipynb"]),
    (["reproduce", "table33"], ["'table33'", "table3"]),
    (["evaluate", "no/such/model.pt"], ["no/such/model.pt", "not found"]),
    (["landscape", "no/such/model.pt"], ["no/such/model.pt", "not found"]),
    (["levers", "--settings", "nope"], ["'nope'", "w16"]),
    (["bench", "--only", "nope"], ["'nope'", "cpu_run"]),
])
def test_bad_input_ends_in_one_error_line_and_exit_2(args, words):
    assert_one_error_line(run_cli(*args), 2, *words)


def test_a_checkpoint_that_is_not_one_is_refused_with_an_error_line(tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_text("not a checkpoint")
    for cmd in ("evaluate", "landscape"):
        p = run_cli(cmd, str(bad), "--model", "smallcnn", "--dataset", "fashion-mnist")
        assert_one_error_line(p, 2, str(bad), "weights_only=True")


def test_a_failing_reproduce_suite_exits_1_naming_the_failed_run(tmp_path):
    """Its one run asks for a GPU this machine lacks: the suite reports it and exits 1."""
    params = tmp_path / "gpu.yaml"
    params.write_text("device: cuda\n")
    p = run_cli("reproduce", "table3", "--profile", "smoke", "--seeds", "1", "--only", "at-piecewise-s0",
                "-f", str(params), "--runs-root", str(tmp_path / "runs"), "--quiet")
    if "1 of 1 runs failed" not in p.stderr:  # a machine with a GPU trains it: nothing to check here
        pytest.skip("CUDA is available here")
    assert_one_error_line(p, 1, "1 of 1 runs failed", "at-piecewise-s0")
