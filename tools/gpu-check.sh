#!/usr/bin/env bash
# GPU check: run from the repository root on a machine where only PyTorch
# (>= 2.11) is installed and nothing can be downloaded:
#     PYTHONPATH=. bash tools/gpu-check.sh            (finishes within ~8 minutes on one GPU)
# Prints one JSON object: the device; that one AT-AWP step under the paper profile's precision
# changes the loss and the weights as fp32 does (awp_precision.awp_seen); bench epoch_speed on
# CUDA (PreAct ResNet-18 AT-AWP CIFAR-10 step: fp32 vs bf16 + channels_last, torch.compile on
# top) and a short run of the paper profile on random CIFAR-shaped tensors. Record the numbers
# in the README.
# AWP_GPU_CHECK_DEVICE=cpu and AWP_GPU_CHECK_SMALL=1 run the same code on a CPU (the tests do).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PYTHONPATH="${PYTHONPATH:-.}"
exec "${PYTHON:-python3}" - <<'PY'
import json, os, time
import torch
from awp_lib.book import bench
device = os.environ.get("AWP_GPU_CHECK_DEVICE", "cuda")
small = os.environ.get("AWP_GPU_CHECK_SMALL") == "1"
if device.startswith("cuda") and not torch.cuda.is_available():
    raise SystemExit("gpu-check: no CUDA device (set AWP_GPU_CHECK_DEVICE=cpu to try it on a CPU)")
t0 = time.perf_counter()
out = {"torch": torch.__version__, "device": device,
       "device_name": torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu"}
out["awp_precision"] = bench.paper_awp_precision(device, batch=8 if small else 128)
if small:
    out["paper_run"] = bench.paper_run(device, n_train=16, n_eval=8, epochs=1)
else:
    out["epoch_speed"] = bench.epoch_speed(device=device)
    out["paper_run"] = bench.paper_run(device)
out["seconds"] = round(time.perf_counter() - t0, 1)
print(json.dumps(out, indent=1))
PY
