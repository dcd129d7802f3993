"""One training loop for every method, with or without AWP (Algorithm 2).

Per epoch it records, at the weights w (never at w + v): train robust accuracy on a fixed
training subset, validation robust accuracy (which selects ``best``; the test set never
does), test natural and robust accuracy, losses, learning rate and time. Metrics (JSON and
CSV) and checkpoints (``last.pt``, ``best.pt``) are written atomically every epoch, and
running the same command with the same ``out`` resumes an interrupted run: each epoch's
randomness is seeded by ``(seed, epoch)``, so a resumed run equals an uninterrupted one.

Options of the same loop: AWP's direction (adversarial or random) and scope (per layer or
global), :mod:`awp_lib.awp`; weight averaging (EMA or SWA), :mod:`awp_lib.averaging`: when on,
the evaluation, ``best`` and the checkpoints' ``model`` are the averaged weights.
"""
from __future__ import annotations

import argparse
import functools
import json
import math
import os
import time
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from . import data, methods, models
from .averaging import WeightAverage
from .awp import AWP
from .config import Config, keys, make_config, resolve_device
from .config import parse_value as _parse_value
from .distributed import _mean_over_processes, _sum_over_processes, distributed
from .evalcopy import eval_batch
from .io import load_torch, save_torch
from .monitor import evaluate_split, final_done, final_evaluation
from .names import run_name
from .precision import autocast, compiled
from .progress import _bar, _log, _report
from .regularizers import cutout, mixup, weight_penalty
from .resume import prepare
from .rst import rst_loader
from .runs import RunDir
from .stuck import TrainingDiverged, check_stuck
from .validate import check_choice


# ----------------------------------------------------------------------------- schedules (C.1)
def lr_at(cfg: Config, t: float) -> float:
    """Learning rate at fractional epoch ``t``: piecewise (x0.1 at each fraction of ``decays``), cosine
    lr/2·(cos(πt/T) + 1), cyclic (0 → ``cyclic_lr`` at ``cyclic_peak``·T → 0 at T), or constant."""
    T = cfg.epochs
    if cfg.schedule == "piecewise":
        return cfg.lr * (0.1 ** sum(t >= d * T for d in cfg.decays))
    if cfg.schedule == "cosine":
        return cfg.lr / 2 * (math.cos(math.pi * t / T) + 1)
    if cfg.schedule == "cyclic":
        peak = cfg.cyclic_peak * T
        return cfg.cyclic_lr * (t / peak if t < peak else max(0.0, (T - t) / (T - peak)))
    return cfg.lr


# ----------------------------------------------------------------------------- one step
def train_step(model, opt, method: methods.Method, cfg: Config, x, y, awp: AWP | None = None,
               num_classes: int = 10, ddp=None) -> torch.Tensor:
    """One mini-batch of Algorithm 2 (plain ``method`` training when ``awp`` is None); returns the loss.

    Input attack at w + v, then K₂ weight-ascent steps, ``A`` times (lines 5-15); the gradient
    of the method's loss at w + v; restore w; optimizer step (line 16). Under torchrun, ``ddp``
    (the model wrapped in DistributedDataParallel) computes that loss, so that its backward
    averages the gradient over the processes.
    """
    target = y
    if cfg.regularizer == "cutout":
        x = cutout(x, int(cfg.reg))
    elif cfg.regularizer == "mixup":
        x, target = mixup(x, y, cfg.reg, num_classes)
    for _ in range(cfg.awp_alternations if awp is not None else 1):
        x_adv = method.perturb(model, x, target, cfg)
        if awp is not None:
            awp.perturb(lambda: method.loss(model, x, x_adv, target, cfg))
    loss = method.loss(ddp or model, x, x_adv, target, cfg)
    if cfg.regularizer in ("l1", "l2"):
        loss = loss + weight_penalty(model, cfg.regularizer, cfg.reg)
    if not torch.isfinite(loss):
        if awp is not None:
            awp.restore()
        raise TrainingDiverged(f"loss became {loss.item()}")
    opt.zero_grad(set_to_none=True)
    loss.backward()      # gradient taken at w + v
    if awp is not None:
        awp.restore()    # back to w ...
    opt.step()           # ... and w <- w - lr * grad(w + v)   (Algorithm 2, line 16)
    return loss.detach()


# ----------------------------------------------------------------------------- the loop
def train(cfg: Config, out: str | os.PathLike | None = None, splits: data.Splits | None = None,
          progress: str = "auto", other_config: str = "refuse") -> list[dict]:
    """Train ``cfg`` and return its per-epoch metrics; with ``out``, write and resume a run there.

    What happens to a folder that holds a run is :func:`plan`'s: a finished run is read back, an
    interrupted one resumes, one trained under older semantics is set aside and trained again; one
    trained under another config is refused (``other_config="refuse"``) or set aside
    (``"set-aside"``, the book's run list when it changed). ``progress``: ``auto`` (a tqdm bar in a
    terminal, one line per epoch otherwise), ``bar``, ``line`` or ``none``. Under ``torchrun
    --nproc-per-node N`` each process trains on its share of every batch of ``cfg.batch_size``
    (DistributedDataParallel) and process 0 writes the run, holding the folder's lock
    (:meth:`awp_lib.runs.RunDir.training`) for as long as it writes: a second trainer of the same
    folder fails at once, naming the first (:class:`awp_lib.runs.RunBusy`).
    """
    cfg.validate()
    check_choice("other_config", other_config, ("refuse", "set-aside"))
    if out is None or int(os.environ.get("RANK", "0")) != 0:
        return _train(cfg, None if out is None else RunDir(out), splits, progress, other_config)
    run = RunDir(out)
    with run.training():
        return _train(cfg, run, splits, progress, other_config)


def _train(cfg: Config, run: RunDir | None, splits, progress, other_config="refuse") -> list[dict]:
    rank, world, device = distributed(resolve_device(cfg.device))
    if cfg.batch_size % world:
        raise ValueError(f"batch_size={cfg.batch_size} must be a multiple of the {world} torchrun processes")
    writer = rank == 0
    progress = progress if writer else "none"
    out = run.path if run is not None else None
    rows, start, best = [], 0, {"val_robust": -1.0, "epoch": None}
    ck = None  # the last checkpoint of an interrupted or finished run, read once
    if run is not None:
        p = prepare(run, cfg, progress, other_config, writer, world)
        ck = p.ck
        if ck is not None and ck["epoch"] >= cfg.epochs and final_done(cfg, json.loads(ck["metrics"])):
            # finished: no data, model or pseudo-labels to prepare
            _log(progress, f"{out}: finished ({cfg.epochs} epochs); nothing to do")
            return json.loads(ck["metrics"])
    if splits is None:
        splits = data.get_splits(cfg.dataset, cfg.train_size, cfg.val_size, cfg.test_size, cfg.seed)
    if cfg.label_noise > 0:
        splits = data.flip_labels(splits, cfg.label_noise, cfg.seed)
    torch.manual_seed(cfg.seed)
    model = models.build_model(cfg.model, cfg.dataset, cfg.width).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
    method = methods.get(cfg.method)
    awp = AWP(model, cfg.awp_gamma, cfg.awp_steps, cfg.awp_alternations, cfg.awp_step, cfg.awp_direction,
              cfg.awp_scope) if cfg.awp_gamma > 0 else None
    avg = WeightAverage(model, cfg.weight_average, cfg.ema_decay, cfg.swa_start, cfg.epochs)
    # `net` runs the attacks and AWP's ascent; `ddp` (data parallel) the loss whose gradient updates w
    net = compiled(model, device) if cfg.compile else model
    ddp = None
    if world > 1:
        ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        ddp = compiled(ddp, device) if cfg.compile else ddp
        if awp is not None:
            awp.grad_reduce = lambda grads: _mean_over_processes(grads, world)
        avg.buffer_reduce = lambda buffers: _mean_over_processes(buffers, world)

    augment = cfg.augment or data.AUGMENT[cfg.dataset]
    shard = dict(shard=(rank, world), channels_last=cfg.channels_last)
    train_loader = data.Loader(*splits.train, cfg.batch_size, True, augment, cfg.seed, device, **shard)
    if cfg.method == "rst":
        train_loader = rst_loader(cfg, splits, out, device, augment, shard, writer)
    n_eval = min(cfg.eval_train_size, len(splits.train[1]))
    eb = eval_batch(device) * world
    train_eval = data.Loader(splits.train[0][:n_eval], splits.train[1][:n_eval], eb, device=device, **shard)
    val_loader = data.Loader(*splits.val, eb, device=device, **shard)
    n_test = min(cfg.eval_test_size or len(splits.test[1]), len(splits.test[1]))
    test_loader = data.Loader(splits.test[0][:n_test], splits.test[1][:n_test], eb, device=device, **shard)
    amp = autocast(device, cfg.amp)   # bf16 without the weight cache: AWP's w + v is seen

    if ck is not None:  # resume
        model.load_state_dict(ck.get("trained", ck["model"]))  # with averaging, "model" is the average
        avg.load(ck["model"], ck.get("average_n", 0))
        opt.load_state_dict(ck["optimizer"])
        rows, start, best = json.loads(ck["metrics"]), ck["epoch"], json.loads(ck["best"])
        check_stuck(cfg, rows, splits.num_classes, out)  # stopped stuck: it stays stuck

    bar = _bar(progress, cfg.epochs, start)
    for epoch in range(start, cfg.epochs):
        t0 = time.perf_counter()
        torch.manual_seed(cfg.seed * 1_000_003 + epoch + 7919 * rank)
        train_loader.set_epoch(epoch)
        use_awp = awp is not None and epoch >= cfg.awp_warmup
        if awp is not None:  # a random direction from (seed, epoch): the same in every process, and resumed
            awp.generator = torch.Generator(device).manual_seed(cfg.seed * 1_000_003 + epoch + 104_723)
        model.train()
        tot_loss = tot_n = 0.0
        for i, (x, y) in enumerate(train_loader):
            lr = lr_at(cfg, epoch + i / len(train_loader))
            for g in opt.param_groups:  # every group, every iteration
                g["lr"] = lr
            try:
                with amp:
                    loss = train_step(net, opt, method, cfg, x, y, awp if use_awp else None, splits.num_classes, ddp)
                avg.after_step(model)
            except TrainingDiverged as e:
                raise TrainingDiverged(
                    f"{e} at epoch {epoch + 1}, batch {i + 1} (lr={lr:g}); "
                    + (f"the last good checkpoint is {run.checkpoint('last')} (epoch {epoch})"
                       if out is not None and epoch > 0 else "no checkpoint was written yet")
                    + ". Try a smaller lr or gamma.") from None
            tot_loss += loss.item() * len(y)
            tot_n += len(y)
        tot_loss, tot_n = _sum_over_processes([tot_loss, tot_n], device)
        with amp:
            avg.after_epoch(model, epoch, train_loader)   # SWA (BN statistics recomputed)
        ev = avg.evaluated(model)   # the weights evaluated and checkpointed
        t_train = time.perf_counter() - t0
        row = {"epoch": epoch + 1, "lr": lr, "train_loss": tot_loss / tot_n, "awp": use_awp}
        if cfg.weight_average != "none":
            row["averaged"] = avg.n
        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
            with amp:
                for part, loader in (("train", train_eval), ("val", val_loader), ("test", test_loader)):
                    r = evaluate_split(ev, loader, cfg, cfg.eval_attack_steps)
                    row[f"{part}_natural"], row[f"{part}_robust"] = r["natural"], r["robust"]
                    row[f"{part}_robust_loss"] = r["robust_loss"]
            row["gap"] = row["train_robust"] - row["test_robust"]
        row["time_train"], row["time_total"] = t_train, time.perf_counter() - t0
        rows.append(row)
        if "val_robust" in row and row["val_robust"] > best["val_robust"]:
            best = {"val_robust": row["val_robust"], "epoch": epoch + 1}
            if out is not None and writer:
                save_torch({"model": ev.state_dict(), "epoch": epoch + 1}, run.checkpoint("best"))
        if out is not None and writer:
            if _keep_epoch(cfg, epoch + 1):
                save_torch({"model": ev.state_dict(), "epoch": epoch + 1}, run.checkpoint(epoch + 1))
            run.write_rows(rows)
            averaged = {"trained": model.state_dict(), "average_n": avg.n} if avg.model is not None else {}
            save_torch({"model": ev.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch + 1,
                        "metrics": json.dumps(rows), "best": json.dumps(best), **averaged},
                       run.checkpoint("last"))
        _report(bar, progress, row, cfg)
        check_stuck(cfg, rows, splits.num_classes, out)
    if bar is not None:
        bar.close()
    if not final_done(cfg, rows):
        rows = final_evaluation(cfg, avg.evaluated(model), rows, best, run, splits, device, amp, shard, writer)
        if run is not None and writer:
            ck = load_torch(run.checkpoint("last"))
            save_torch({**ck, "metrics": json.dumps(rows)}, run.checkpoint("last"))
            run.write_rows(rows)
    return rows


def _keep_epoch(cfg: Config, epoch: int) -> bool:
    """Also keep the checkpoints the landscape chapters compare: 10 evenly spaced epochs."""
    return epoch % max(1, cfg.epochs // 10) == 0


# ----------------------------------------------------------------------------- CLI
def default_out(cfg: Config) -> Path:
    """``runs/<profile>/<name>``, named as the book and the suites name their runs."""
    return Path("runs") / cfg.profile / run_name(cfg)


def register_cli(sub) -> None:
    p = sub.add_parser("train", help="train one run (any method, with or without AWP); resumes from --out",
                       description="Every config key is a flag; values like 8/255 are accepted.")
    p.add_argument("--profile", default=None, help="smoke | cpu | paper (default: $AWP_PROFILE or cpu)")
    p.add_argument("--out", default=None, help="run folder (default: runs/<profile>/<name>, e.g. at-awp0.01-s0)")
    p.add_argument("--progress", default="auto", choices=["auto", "bar", "line", "none"])
    for k in keys():
        if k != "profile":
            p.add_argument("--" + k.replace("_", "-"), dest=k, type=functools.partial(_parse_value, key=k),
                           default=argparse.SUPPRESS, metavar=k.upper())
    p.set_defaults(fn=_cmd_train)


def _cmd_train(args) -> None:
    overrides = {k: v for k, v in vars(args).items() if k in keys() and k != "profile"}
    cfg = make_config(args.profile, **overrides)
    out = Path(args.out) if args.out else default_out(cfg)
    rows = train(cfg, out, progress=args.progress)
    if int(os.environ.get("RANK", "0")) != 0:
        return
    last = rows[-1]
    print(json.dumps({"out": str(out), "epochs": len(rows), "last": {k: last.get(k) for k in
                      ("test_natural", "test_robust", "train_robust", "val_robust")}}))
