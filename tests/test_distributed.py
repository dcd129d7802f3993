"""Data-parallel training under torchrun (gloo, 2 CPU processes) against one process; speed knobs."""
import json
import os
import subprocess
import sys

import pytest
import torch

from awp_lib import data
from awp_lib.config import config_diff, make_config
from awp_lib.io import load_torch

COMMON = ["--profile", "smoke", "--model", "mlp", "--width", "2", "--train-size", "256", "--val-size", "100",
          "--test-size", "200", "--batch-size", "64", "--epochs", "2", "--eval-every", "1", "--progress", "none"]


def _train(out, extra, nproc=1):
    head = [sys.executable, "-m", "awp_lib", "train"] if nproc == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
         "-m", "awp_lib", "train"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run(head + COMMON + ["--out", str(out), *extra], capture_output=True, text=True, env=env,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads((out / "metrics.json").read_text()), load_torch(out / "checkpoints" / "last.pt")["model"]


def test_two_gloo_processes_match_one_process(tmp_path):
    # Standard training with AWP has no random input attack: two processes, each on half of every
    # batch, must reach the weights of one process on whole batches (the gradient and AWP's weight
    # gradient are averaged over the processes), up to float summation order.
    extra = ["--method", "standard", "--awp-gamma", "0.01"]
    rows1, w1 = _train(tmp_path / "one", extra)
    rows2, w2 = _train(tmp_path / "two", extra, nproc=2)
    assert w1.keys() == w2.keys()
    for k in w1:
        assert torch.allclose(w1[k], w2[k], rtol=1e-4, atol=1e-5), (k, (w1[k] - w2[k]).abs().max())
    for a, b in zip(rows1, rows2):
        assert abs(a["train_loss"] - b["train_loss"]) < 1e-4
        assert abs(a["test_natural"] - b["test_natural"]) <= 0.005   # evaluation is sharded and summed
    # AT-AWP: the PGD random starts differ per process, so only close, not equal
    extra = ["--method", "at", "--awp-gamma", "0.01"]
    rows1, w1 = _train(tmp_path / "at1", extra)
    rows2, w2 = _train(tmp_path / "at2", extra, nproc=2)
    assert abs(rows1[-1]["train_loss"] - rows2[-1]["train_loss"]) < 0.05 * rows1[-1]["train_loss"]
    assert abs(rows1[-1]["test_robust"] - rows2[-1]["test_robust"]) <= 0.05
    rel = max(((w1[k] - w2[k]).norm() / w1[k].norm()).item() for k in w1 if w1[k].dtype.is_floating_point)
    assert rel < 0.05, rel


def test_two_gloo_processes_random_direction_and_ema_match_one_process(tmp_path):
    # the random direction is drawn from (seed, epoch) alone: every process perturbs alike
    extra = ["--method", "standard", "--awp-gamma", "0.01", "--awp-direction", "random", "--awp-scope", "global",
             "--weight-average", "ema"]
    rows1, w1 = _train(tmp_path / "one", extra)
    rows2, w2 = _train(tmp_path / "two", extra, nproc=2)
    for k in w1:
        assert torch.allclose(w1[k], w2[k], rtol=1e-4, atol=1e-5), (k, (w1[k] - w2[k]).abs().max())
    assert abs(rows1[-1]["train_loss"] - rows2[-1]["train_loss"]) < 1e-4


def test_loader_shards_interleave_to_the_whole_batch():
    x = torch.arange(10 * 4, dtype=torch.uint8).view(10, 1, 2, 2)
    y = torch.arange(10)
    whole = list(data.Loader(x, y, 4, shuffle=True, seed=3))
    shards = [list(data.Loader(x, y, 4, shuffle=True, seed=3, shard=(r, 2))) for r in range(2)]
    assert len(whole) == 3 and all(len(s) == 3 for s in shards)      # 4 + 4 + 2: the last batch kept...
    assert len(data.Loader(x, y, 4, shard=(0, 3))) == 2               # ...unless smaller than the processes
    for b, (xb, yb) in enumerate(whole):
        got = torch.cat([s[b][1] for s in shards])
        assert sorted(got.tolist()) == sorted(yb.tolist())
        assert torch.equal(shards[1][b][1], yb[1::2]) and torch.equal(shards[1][b][0], xb[1::2])
    assert list(data.Loader(x, y, 4, channels_last=True))[0][0].is_contiguous(memory_format=torch.channels_last)


def test_speed_knobs_validated_and_old_runs_still_match():
    cfg = make_config("paper")
    assert (cfg.amp, cfg.channels_last, cfg.compile) == ("bf16", True, False)
    with pytest.raises(ValueError, match="fp16.*none, bf16"):
        make_config("smoke", amp="fp16")
    with pytest.raises(ValueError, match="compile='yes'"):
        make_config("smoke", compile="yes")
    # the keys' defaults (the cpu preset compiles; a run saved without the key did not)
    cpu = make_config("cpu", amp="none", channels_last=False, compile=False)
    saved = {k: v for k, v in cpu.to_dict().items() if k not in ("amp", "channels_last", "compile")}
    assert config_diff(saved, cpu) == {}          # a run saved before these keys existed still resumes
    assert config_diff({**saved, "epochs": 3}, cpu) == {"epochs": (3, cpu.epochs)}


def test_bf16_channels_last_training_runs(tmp_path):
    from awp_lib.train import train
    cfg = make_config("smoke", model="smallcnn", width=4, train_size=128, val_size=100, test_size=100, epochs=1,
                      amp="bf16", channels_last=True, awp_gamma=0.01)
    rows = train(cfg, tmp_path / "run", progress="none")
    assert len(rows) == 1 and 0 <= rows[0]["test_robust"] <= rows[0]["test_natural"] <= 1
    w = load_torch(tmp_path / "run" / "checkpoints" / "last.pt")["model"]
    assert all(v.dtype != torch.bfloat16 for v in w.values()), "weights stay fp32 under autocast"


def test_torch_compile_trains_like_eager(tmp_path):
    from awp_lib.train import train
    kw = dict(model="mlp", width=2, train_size=128, val_size=100, test_size=100, epochs=1, awp_gamma=0.01)
    eager = train(make_config("smoke", **kw), tmp_path / "eager", progress="none")
    compiled = train(make_config("smoke", compile=True, **kw), tmp_path / "compiled", progress="none")
    assert abs(eager[-1]["train_loss"] - compiled[-1]["train_loss"]) < 1e-4
    assert eager[-1]["test_natural"] == compiled[-1]["test_natural"]
