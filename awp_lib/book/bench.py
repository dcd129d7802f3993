"""Benchmarks as ratios measured side by side in one run: ``python -m awp_lib bench`` prints JSON.

Each benchmark interleaves the two contenders (A B A B ...) so that machine noise hits both,
and reports the ratio of medians with both absolute times.
"""
from __future__ import annotations

import copy
import heapq
import json
import os
import statistics
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from .. import attacks, data, evalcopy, methods, models
from .. import awp as awp_module
from .. import landscape as L
from ..attacks import pgd
from ..awp import AWP, GAMMA_TABLE3
from ..config import bf16_fast, make_config
from ..data import Splits, data_root, project_root
from ..precision import autocast, compiled
from ..precision_check import awp_step_effect
from ..monitor import final_test_images, final_train_images
from ..train import train, train_step
from . import runlist
from .build import run_seconds, train_runs
from .store import Run

BENCHES = {}


def bench(fn):
    BENCHES[fn.__name__] = fn
    return fn


def timed_pair(a, b, repeats: int = 7, warmup: int = 1) -> dict:
    """Median seconds of ``a()`` and ``b()``, interleaved; ``ratio`` = a / b."""
    for _ in range(warmup):
        a(), b()
    ta, tb = [], []
    for _ in range(repeats):
        for f, t in ((a, ta), (b, tb)):
            t0 = time.perf_counter()
            f()
            t.append(time.perf_counter() - t0)
    ma, mb = statistics.median(ta), statistics.median(tb)
    return {"ratio": round(ma / mb, 4), "a_s": round(ma, 5), "b_s": round(mb, 5)}


def _small_trained_model(device, n=2000, epochs=2):
    s = data.get_splits("fashion-mnist", train_size=n, test_size=512, seed=0)
    torch.manual_seed(0)
    model = models.build_model("smallcnn", "fashion-mnist").to(device)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    loader = data.Loader(*s.train, batch_size=128, shuffle=True, device=device)
    for e in range(epochs):
        loader.set_epoch(e)
        for x, y in loader:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    x, y = s.test
    return model.eval(), x.float().div(255).to(device), y.to(device)


@bench
def pgd_vs_torchattacks(device="cpu", quick=False):
    """Our PGD-10 time / torchattacks' PGD-10 time (goal <= 0.90), same model and batch; both robust accuracies."""
    import torchattacks  # optional dependency (a benchmark peer)
    model, x, y = _small_trained_model(device)
    x, y = x[:256], y[:256]
    eps, alpha, steps = 0.1, 0.025, 10
    ta = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)
    out = timed_pair(lambda: attacks.pgd(model, x, y, eps, alpha, steps), lambda: ta(x, y), repeats=3 if quick else 7)
    torch.manual_seed(0)
    for name, x_adv in (("ours", attacks.pgd(model, x, y, eps, alpha, steps)), ("torchattacks", ta(x, y))):
        with torch.no_grad():
            out[f"{name}_robust_acc"] = (model(x_adv).argmax(1) == y).float().mean().item()
    out.update(goal="<= 0.90", model="smallcnn", batch=len(y), steps=steps)
    return out


def _at_trained_cnn(device, n=2000, epochs=2):
    """The ``cpu`` preset's SmallCNN (width 16) after ``epochs`` of PGD-3 AT on ``n`` images, and
    2,000 test images: a model whose robust accuracy is neither 0 nor its natural accuracy."""
    s = data.get_splits("fashion-mnist", train_size=n, test_size=2000, seed=0)
    torch.manual_seed(0)
    model = models.build_model("smallcnn", "fashion-mnist", width=16).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loader = data.Loader(*s.train, batch_size=64, shuffle=True, device=device)
    for e in range(epochs):
        loader.set_epoch(e)
        model.train()
        for x, y in loader:
            x_adv = attacks.pgd(model, x, y, 0.1, 0.04, 3, bn_mode="train")
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x_adv), y).backward()
            opt.step()
    x, y = s.test
    return model.eval(), x.float().div(255).to(device), y.to(device)


def _pgd_numbers(model, x, y, batch, steps=20, eps=0.1, alpha=0.025):
    """(natural accuracy, PGD-``steps`` accuracy, mean robust CE) of ``model`` itself in ``batch``es."""
    torch.manual_seed(0)
    nat = rob = loss = 0.0
    for i in range(0, len(y), batch):
        xb, yb = x[i:i + batch], y[i:i + batch]
        x_adv = attacks.pgd(model, xb, yb, eps, alpha, steps)
        with torch.no_grad():
            out = model(torch.cat([xb, x_adv]))
        hit = out.argmax(1) == torch.cat([yb, yb])
        nat, rob = nat + hit[:len(yb)].sum().item(), rob + hit[len(yb):].sum().item()
        loss += torch.nn.functional.cross_entropy(out[len(yb):], yb, reduction="sum").item()
    return round(nat / len(y), 4), round(rob / len(y), 4), round(loss / len(y), 4)


@bench
def eval_fast_vs_plain(device="cpu", quick=False):
    """PGD-20 on 1,000 test images of an AT-trained SmallCNN (the preset's) at one thread: the
    fast evaluation path (``evalcopy.eval_copy``, batches of ``eval_batch``) / the plain eager
    path (the model itself, default memory layout, batches of 512, what every evaluation ran
    before); goal <= 0.65. Both paths' natural and robust accuracy and robust loss."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, x, y = _at_trained_cnn(device)
        x, y = (x[:250], y[:250]) if quick else (x[:1000], y[:1000])

        def fast_path():
            fast = evalcopy.eval_copy(model)
            return _pgd_numbers(fast, evalcopy.as_input(x, fast), y, evalcopy.eval_batch(device))
        out = timed_pair(fast_path, lambda: _pgd_numbers(model, x, y, 512), repeats=2 if quick else 3)
        names = ("natural", "robust", "robust_loss")
        out.update(fast=dict(zip(names, fast_path())), plain=dict(zip(names, _pgd_numbers(model, x, y, 512))))
    finally:
        torch.set_num_threads(threads)
    out.update(goal="<= 0.65", model="smallcnn width 16 (AT, 2 epochs)", images=len(y), attack="PGD-20",
               fast_batch=evalcopy.eval_batch(device), plain_batch=512, threads=1)
    return out


@bench
def eval_batch(device="cpu", quick=False):
    """Seconds of the fast path's PGD-20 on 512 test images of the AT-trained SmallCNN at one thread,
    per batch size, relative to batch 512: the fastest is ``evalcopy.CPU_EVAL_BATCH``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, x, y = _at_trained_cnn(device)
        x, y = x[:512], y[:512]
        fast = evalcopy.eval_copy(model)
        xs = evalcopy.as_input(x, fast)
        secs = {}
        for b in (32, 64, 128, 256, 512):
            _pgd_numbers(fast, xs, y, b, steps=2)
            ts = []
            for _ in range(1 if quick else 3):
                t0 = time.perf_counter()
                _pgd_numbers(fast, xs, y, b)
                ts.append(time.perf_counter() - t0)
            secs[b] = statistics.median(ts)
    finally:
        torch.set_num_threads(threads)
    return {"relative_to_512": {b: round(t / secs[512], 3) for b, t in secs.items()},
            "fastest": min(secs, key=secs.get), "chosen": evalcopy.eval_batch(device), "threads": 1}


@bench
def eval_layouts(device="cpu", quick=False):
    """PGD-2 on 64 random 28 x 28 images at one thread, per architecture: the eval copy in
    channels-last / in the default layout (both with BN folded). Below 1: channels-last pays,
    what each model's ``channels_last_on_cpu`` says."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = {}
    try:
        torch.manual_seed(0)
        x, y = torch.rand(64, 1, 28, 28, device=device), torch.randint(0, 10, (64,), device=device)
        nets = {"smallcnn": models.build_model("smallcnn", "fashion-mnist"),
                "preactresnet18": models.build_model("preactresnet18", "fashion-mnist"),
                "wrn-16-4": models.WideResNet(16, 4, in_channels=1), "vgg19": models.build_model("vgg19", "fashion-mnist")}
        for name, net in nets.items():
            net = net.to(device).eval()
            plain = evalcopy.eval_copy(net).to(memory_format=torch.contiguous_format)
            cl = copy.deepcopy(plain).to(memory_format=torch.channels_last)
            xc = x.contiguous(memory_format=torch.channels_last)
            r = timed_pair(lambda: attacks.pgd(cl, xc, y, 0.1, 0.025, 2), lambda: attacks.pgd(plain, x, y, 0.1, 0.025, 2),
                           repeats=1 if quick else 3)
            out[name] = {"channels_last_over_default": r["ratio"], "channels_last_on_cpu": net.channels_last_on_cpu}
    finally:
        torch.set_num_threads(threads)
    return out


@bench
def train_channels_last(device="cpu", quick=False):
    """The ``cpu`` preset's compiled training step (AT and AT-AWP at γ = 1e-2, batch 64, one
    thread) over one epoch of its 1,000 images: channels-last memory / the default layout.
    Above 1 for AT-AWP on this project's CPU, so the preset trains in the default layout."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    s = data.get_splits("fashion-mnist", 1000, 1000, None, 0)
    out = {}
    try:
        for gamma in (0.0, 1e-2):
            secs = {}
            for cl in (False, True):
                cfg = make_config("cpu", channels_last=cl, awp_gamma=gamma, device=device)
                torch.manual_seed(0)
                model = models.build_model("smallcnn", "fashion-mnist", 16).to(device)
                model = model.to(memory_format=torch.channels_last) if cl else model
                opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
                net, awp = compiled(model, device), (AWP(model, gamma) if gamma else None)
                batches = list(data.Loader(*s.train, 64, True, "none", 0, device, channels_last=cl))
                model.train()
                ts = []
                for r in range(2 if quick else 4):  # the first pass compiles
                    t0 = time.perf_counter()
                    for x, y in batches:
                        train_step(net, opt, methods.get("at"), cfg, x, y, awp)
                    ts.append(time.perf_counter() - t0)
                secs[cl] = statistics.median(ts[1:])
            out["at-awp" if gamma else "at"] = {"ratio": round(secs[True] / secs[False], 3),
                                                "channels_last_s": round(secs[True], 2),
                                                "default_s": round(secs[False], 2)}
    finally:
        torch.set_num_threads(threads)
    return {**out, "what": "one epoch (16 steps) of the compiled step; ratio = channels-last / default",
            "preset_channels_last": make_config("cpu").channels_last}


class ProxyAWP:
    """The official code's AWP (``utils_awp.AdvWeightPerturb``), kept here only as a benchmark peer:
    a deep-copied proxy model, ``load_state_dict`` every batch, one SGD ascent step on the proxy,
    then the layer-normalised difference added to the real model."""

    def __init__(self, model, gamma, loss_fn):
        self.model, self.gamma, self.loss_fn = model, gamma, loss_fn
        self.proxy = copy.deepcopy(model)
        self.proxy_opt = torch.optim.SGD(self.proxy.parameters(), lr=0.01)

    def calc_awp(self, x, x_adv, y):
        self.proxy.load_state_dict(self.model.state_dict())
        self.proxy.train()
        loss = -self.loss_fn(self.proxy, x, x_adv, y)
        self.proxy_opt.zero_grad()
        loss.backward()
        self.proxy_opt.step()
        diff = {}
        ms, ps = dict(self.model.named_parameters()), dict(self.proxy.named_parameters())
        for k, w in ms.items():
            if w.dim() <= 1:
                continue
            d = ps[k].detach() - w.detach()
            diff[k] = w.detach().norm() / (d.norm() + 1e-20) * d
        return diff

    @torch.no_grad()
    def add(self, diff, coeff):
        for k, p in self.model.named_parameters():
            if k in diff:
                p.add_(coeff * self.gamma * diff[k])


def _at_setup(device, batch=128, gamma=1e-2):
    """PreActResNet-18 on a GPU; on a CPU a SmallCNN of width 32 (a ResNet step takes ~25 s there)."""
    arch = "smallcnn" if str(device) == "cpu" else "preactresnet18"
    cfg = make_config("smoke", model=arch, width=32, eps=0.1, attack_steps=10, awp_gamma=gamma)
    torch.manual_seed(0)
    model = models.build_model(arch, "fashion-mnist", width=32).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    s = data.get_splits("fashion-mnist", train_size=batch, val_size=100, test_size=100, seed=0)
    x, y = s.train[0].float().div(255).to(device), s.train[1].to(device)
    return cfg, model, opt, methods.get("at"), x, y


@bench
def awp_overhead(device="cpu", quick=False):
    """AT-AWP step time / AT step time (goal <= 1.10): PGD-10 input attack + AWP + update."""
    cfg, model, opt, method, x, y = _at_setup(device)
    awp = AWP(model, cfg.awp_gamma)
    out = timed_pair(lambda: train_step(model, opt, method, cfg, x, y, awp),
                     lambda: train_step(model, opt, method, cfg, x, y, None), repeats=2 if quick else 5)
    out.update(goal="<= 1.10", model=cfg.model, batch=len(y), attack_steps=cfg.attack_steps,
               paper_official_logs="CIFAR-10 Linf PreActResNet-18: 302.0 / 277.4 s per epoch = 1.089")
    return out


@bench
def awp_vs_proxy(device="cpu", quick=False):
    """Our AWP / the official proxy-model AWP (goal <= 0.97), the weight part of a step:
    weight attack + loss at w+v + backward + restore + optimizer step, same model, batch and x'."""
    cfg, model, opt, method, x, y = _at_setup(device)
    x_adv = pgd(model, x, y, cfg.eps, cfg.alpha, cfg.attack_steps, bn_mode="eval")
    ours, proxy = AWP(model, cfg.awp_gamma), ProxyAWP(model, cfg.awp_gamma, method.loss)
    loss = lambda: method.loss(model, x, x_adv, y)

    def step_ours():
        ours.perturb(loss)
        opt.zero_grad()
        loss().backward()
        ours.restore()
        opt.step()

    def step_proxy():
        diff = proxy.calc_awp(x, x_adv, y)
        proxy.add(diff, 1.0)
        opt.zero_grad()
        loss().backward()
        opt.step()
        proxy.add(diff, -1.0)
    out = timed_pair(step_ours, step_proxy, repeats=3 if quick else 9)
    out.update(goal="<= 0.97", model=cfg.model, batch=len(y))
    return out


@bench
def landscape_overhead(device="cpu", quick=False):
    """1-D landscape time / (points x one PGD robust-loss pass on the same data) (goal <= 1.10),
    and the speed-up over a naive loop that deep-copies the model for every α."""
    model, x, y = _small_trained_model(device)
    data = (x[:512], y[:512])
    alphas = [-1.0, -0.5, 0.0, 0.5, 1.0]
    kw = dict(eps=0.1, attack_alpha=0.025, attack_steps=10, n=512)
    batches = L._batches(data, 512)

    def ours():
        L.landscape_1d(model, data, alphas, k=1, **kw)

    def plain_passes():
        for _ in alphas:
            L.robust_losses(model, batches, 0.1, 0.025, 10)

    def naive():
        d = L.random_direction(model, 0)
        for a in alphas:
            m = copy.deepcopy(model)
            with torch.no_grad():
                for n, p in m.named_parameters():
                    p.add_(a * d[n])
            L.robust_losses(m, batches, 0.1, 0.025, 10)
    out = timed_pair(ours, plain_passes, repeats=2 if quick else 5)
    naive_vs = timed_pair(naive, ours, repeats=2 if quick else 5)
    out.update(goal="<= 1.10", points=len(alphas), n=512, speedup_over_naive_deepcopy=naive_vs["ratio"],
               naive_s=naive_vs["a_s"])
    return out


@bench
def epoch_speed(device="cpu", quick=False):
    """The ``paper`` profile's speed settings: one AT-AWP training step (PGD-10 at 8/255, γ = 5e-3,
    batch 128) in fp32 / with bf16 autocast and channels_last (``ratio`` > 1: faster), and the
    CIFAR-10 epoch time (49,000 training images) the faster one projects; goal <= 25 s on one H100
    for PreAct ResNet-18. On a GPU also torch.compile on top. On a CPU a SmallCNN on 28 x 28 inputs
    stands in (a ResNet step takes ~25 s there), so its projection is not the goal's."""
    cuda = torch.device(device).type == "cuda"
    arch, dataset, shape = ("preactresnet18", "cifar10", (3, 32, 32)) if cuda else ("smallcnn", "fashion-mnist", (1, 28, 28))
    torch.manual_seed(0)
    x, y = torch.rand(128, *shape, device=device), torch.randint(0, 10, (128,), device=device)

    def step_fn(fast: bool, compiled: bool = False):
        cfg = make_config("paper", model=arch, dataset=dataset, awp_gamma=5e-3, amp="bf16" if fast else "none",
                          channels_last=fast, compile=compiled)
        torch.manual_seed(0)
        model = models.build_model(arch, dataset).to(device)
        xs = x
        if fast:
            model, xs = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
        net = torch.compile(model) if compiled else model
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        awp, method = AWP(model, cfg.awp_gamma), methods.get("at")

        def step():
            with autocast(device, "bf16" if fast else "none"):
                train_step(net, opt, method, cfg, xs, y, awp)
            if cuda:
                torch.cuda.synchronize()
        return step

    repeats = 2 if quick else 5
    out = timed_pair(step_fn(False), step_fn(True), repeats=repeats)
    fastest = out["b_s"]
    if cuda and not quick:
        comp = timed_pair(step_fn(True), step_fn(True, compiled=True), repeats=repeats, warmup=3)
        out["compile_ratio"] = comp["ratio"]
        fastest = min(fastest, comp["b_s"])
    steps = -(-49_000 // 128)
    out.update(model=arch, input=list(shape), batch=128, attack_steps=10, gamma=5e-3,
               projected_epoch_s=round(steps * fastest, 1), goal="<= 25 s per CIFAR-10 epoch on one H100 "
               "(PreAct ResNet-18)", official_logs_s=302.0)
    return out


@bench
def amp_cost(device="cpu", quick=False):
    """The cost of seeing w + v under bf16: one AT-AWP step (γ = 1e-2) of the ``cpu`` preset's
    model and batch in bf16 as the library runs it (weight cache off, emptied when AWP writes the
    weights) / in fp32, and / in bf16 with the cache on and no guard (what hid AWP: its loss and
    weights are then AT's). ``hidden`` tells whether each variant's step saw the perturbation."""

    cfg = make_config("cpu", device=device, awp_gamma=GAMMA_TABLE3)
    s = data.get_splits(cfg.dataset, cfg.train_size, cfg.val_size, cfg.test_size, 0)
    x, y = next(iter(data.Loader(*s.train, cfg.batch_size, device=device)))

    @contextmanager
    def unguarded():  # the guard that empties a caller's cache, switched off
        guard, awp_module.weights_changed = awp_module.weights_changed, lambda: None
        try:
            yield
        finally:
            awp_module.weights_changed = guard

    def step(mode, guarded=True):
        def go():
            if guarded:
                return awp_step_effect(cfg, x, y, mode)
            with unguarded():
                return awp_step_effect(cfg, x, y, mode)
        return go
    repeats = 3 if quick else 7
    fixed_vs_fp32 = timed_pair(step("bf16"), step("fp32"), repeats)
    fixed_vs_cached = timed_pair(step("bf16"), step("bf16-cached", guarded=False), repeats)
    effects = {"fp32": step("fp32")(), "bf16": step("bf16")(), "bf16_cached_unguarded": step("bf16-cached", False)()}
    return {"bf16_fixed_over_fp32": fixed_vs_fp32, "bf16_fixed_over_bf16_cached": fixed_vs_cached,
            "hidden": {k: abs(v["loss_awp"] - v["loss"]) < 1e-6 for k, v in effects.items()},
            "weight_diff": {k: round(v["weight_diff"], 5) for k, v in effects.items()},
            "what": "one AT-AWP step incl. one AT step (awp_step_effect), cpu preset, batch "
                    f"{cfg.batch_size}; ratio = a_s / b_s", "bf16_native": _bf16_native(device)}


def _bf16_native(device) -> bool:
    return bf16_fast(device)


def makespan(minutes: list[float], workers: int, efficiency: float = 1.0) -> float:
    """Wall minutes of independent runs on ``workers`` parallel slots, longest first onto the least
    loaded slot; each run takes ``minutes / efficiency`` (the parallel slow-down of shared cores)."""
    slots = [0.0] * max(1, workers)
    for m in sorted(minutes, reverse=True):
        heapq.heappush(slots, heapq.heappop(slots) + m / efficiency)
    return max(slots)


@bench
def jobs_speedup(device="cpu", quick=False):
    """``book-runs --jobs 2`` vs ``--jobs 1`` on the same four short ``cpu`` runs (one thread each):
    wall seconds of both, ``speedup`` = jobs 1 / jobs 2, and ``efficiency`` = speedup / 2 (what
    one run keeps of its speed while another shares the cores), used by :func:`cpu_run`'s projection."""

    runs = {f"jobs-bench-s{i}": Run("cpu", f"jobs-bench-s{i}", dict(
        method="at", seed=i, epochs=2 if quick else 5, eval_every=1, final_attack_steps=0, device=device))
        for i in range(4)}
    saved = {k: os.environ.get(k) for k in ("AWP_HOME", "AWP_DATA")}
    os.environ["AWP_DATA"] = str(data_root())
    wall = {}
    try:
        for jobs in (1, 2):
            with tempfile.TemporaryDirectory() as tmp:
                os.environ["AWP_HOME"] = tmp
                t0 = time.perf_counter()
                train_runs(runs, "none", jobs)
                wall[jobs] = time.perf_counter() - t0
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    speedup = wall[1] / wall[2]
    return {"jobs1_s": round(wall[1], 1), "jobs2_s": round(wall[2], 1), "speedup": round(speedup, 3),
            "efficiency": round(speedup / 2, 3), "runs": len(runs), "epochs": runs["jobs-bench-s0"]["epochs"],
            "cores": os.cpu_count()}


@bench
def cpu_run(device="cpu", quick=False, speed: dict | None = None):
    """One ``cpu``-preset AT run at one thread (as ``book-runs`` trains each), timed: training vs
    evaluation (per-epoch monitor + the final PGD-20 of best and last), ``eval_fraction`` (goal
    <= 0.30); one epoch of each method; and the book's cost: every run of ``awp_lib.book.runlist`` at
    the measured cost per epoch (scaled per method), per monitor evaluation and per final test
    image, scheduled on 2 and on 8 parallel slots (:func:`makespan`, slowed by the ``--jobs``
    efficiency measured by :func:`jobs_speedup`), then the pages, one thread each, scheduled the
    same way at the seconds the last cpu build measured (``_build/cell-times-cpu.json``). Goals:
    the book <= 75 min on 2 cores, <= 25 min on 8. ``quick``: a quarter of the epochs. ``speed``: a
    :func:`jobs_speedup` result of the same machine (measured here when not given; its quick
    form is dominated by process start-up and compilation, so it is not used for the projection)."""

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        base = make_config("cpu", method="at", device=device)
        epochs = max(base.eval_every, base.epochs // 4) if quick else base.epochs
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            rows = train(make_config("cpu", method="at", device=device, epochs=epochs), Path(tmp) / "cpu-run",
                         progress="none")
            wall = time.perf_counter() - t0
            per_method = {}
            for name, kw in {"at": {}, "at-awp": {"awp_gamma": 1e-2}, "standard": {"method": "standard"},
                             "trades": {"method": "trades"}, "mart": {"method": "mart"},
                             "rst": {"method": "rst", "pseudo_epochs": 1}}.items():
                r = train(make_config("cpu", **{"method": "at", **kw, "device": device, "epochs": 1,
                                                "final_attack_steps": 0, "compile": False}),
                          Path(tmp) / name, progress="none")  # eager: one epoch would time the compiler
                per_method[name] = r[0]["time_train"]
        speed = speed or jobs_speedup(device)
    finally:
        torch.set_num_threads(threads)
    t_train = sum(r["time_train"] for r in rows)
    evals = [r for r in rows if "val_robust" in r]
    t_monitor = sum(r["time_total"] - r["time_train"] for r in evals)
    t_final = sum(r.get("time_final", 0.0) for r in rows)
    per_epoch = t_train / len(rows)
    monitor_images = min(base.eval_train_size, base.train_size) + base.val_size + base.eval_test_size
    per_eval_image = t_monitor / max(1, len(evals)) / monitor_images * 6 / (base.eval_attack_steps + 1)
    final_images = final_test_images(base) + final_train_images(base) + base.val_size
    per_final_image = t_final / (2 * final_images) * 6 / (base.final_attack_steps + 1)
    cost = {k: v / per_method["at"] for k, v in per_method.items()}
    stuck = runlist.expected_stuck("cpu")  # they stop within a few epochs
    run_min = [run_seconds(run.config, per_epoch, (per_eval_image + per_final_image) / 2, cost) / 60
               for name, run in runlist.book_runs("cpu").items() if name not in stuck]
    times = project_root() / "_build" / "cell-times-cpu.json"
    page_min = [sum(c["seconds"] for c in nb) / 60 for nb in json.loads(times.read_text())["notebooks"].values()] \
        if times.exists() else []
    cells_min = sum(page_min) if page_min else None
    # runs, then pages: each scheduled longest first on n slots (one thread each), slowed by --jobs' efficiency
    on = {n: makespan(run_min, n, speed["efficiency"] if n > 1 else 1.0)
          + makespan(page_min, n, speed["efficiency"] if n > 1 else 1.0) for n in (2, 8)}
    return {"model": base.model, "width": base.width, "epochs": epochs, "threads": 1, "wall_s": round(wall, 1),
            "train_s": round(t_train, 1), "monitor_s": round(t_monitor, 1), "final_s": round(t_final, 1),
            "eval_fraction": round((t_monitor + t_final) / wall, 3), "goal": "eval_fraction <= 0.30",
            "monitor": f"PGD-{base.eval_attack_steps} every {base.eval_every} epochs",
            "final": f"PGD-{base.final_attack_steps} of best and last", "amp": base.amp,
            "epoch_s_by_method": {k: round(v, 2) for k, v in per_method.items()},
            "jobs_efficiency": speed["efficiency"], "book_runs": len(run_min),
            "book_training_core_min": round(sum(run_min), 1),
            "book_cells_min": round(cells_min, 1) if cells_min is not None else "no cpu build measured yet",
            "book_pages_min_2_cores": round(makespan(page_min, 2, speed["efficiency"]), 1),
            "book_pages_min_8_cores": round(makespan(page_min, 8, speed["efficiency"]), 1),
            "projected_book_min_2_cores": round(on[2], 1), "projected_book_min_8_cores": round(on[8], 1),
            "goal_book": "<= 75 min on 2 cores, <= 25 min on 8"}


def run(names=None, device="cpu", quick=False) -> dict:
    """Run the named benchmarks (all by default) and return ``{name: result}``."""
    names = names or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        raise ValueError(f"unknown benchmark {unknown[0]!r}; valid choices: {', '.join(BENCHES)}")
    result = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads()}
    for n in sorted(names, key=lambda n: n == "cpu_run"):  # last: it reuses jobs_speedup's result
        reuse = {"speed": result["jobs_speedup"]} if n == "cpu_run" and "jobs_speedup" in result else {}
        result[n] = BENCHES[n](device=device, quick=quick, **reuse)
    return result


def paper_awp_precision(device: str = "cuda", batch: int = 128) -> dict:
    """One AT-AWP step of the ``paper`` profile (PreAct ResNet-18, γ = 1e-2) on a random CIFAR-shaped
    batch, in fp32 and under the profile's precision: both losses and how far AWP moved the weights
    from AT's. ``awp_seen``: the loss at w + v differs from AT's and the weights moved at least 0.3x
    as far as in fp32. Used by ``tools/gpu-check.sh``."""
    cfg = make_config("paper", device=device, awp_gamma=GAMMA_TABLE3)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, 32, 32, generator=g).to(device)
    y = torch.randint(0, 10, (batch,), generator=g).to(device)
    mode = "bf16" if cfg.amp == "bf16" else "fp32"
    out = {"amp": cfg.amp, "fp32": awp_step_effect(cfg, x, y, "fp32"), cfg.amp: awp_step_effect(cfg, x, y, mode)}
    low, ref = out[cfg.amp], out["fp32"]
    out["awp_seen"] = abs(low["loss_awp"] - low["loss"]) > 1e-4 and low["weight_diff"] > 0.3 * ref["weight_diff"]
    return out


def paper_run(device: str = "cuda", n_train: int = 4096, n_eval: int = 512, epochs: int = 2) -> dict:
    """A short run of the ``paper`` profile (PreAct ResNet-18, AT-AWP, its amp/channels_last) on
    random CIFAR-shaped tensors (nothing to download): seconds per epoch and the projected
    CIFAR-10 epoch (49,000 images) of training alone. Used by ``tools/gpu-check.sh``."""

    g = torch.Generator().manual_seed(0)

    def fake(n):
        return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g), \
            torch.randint(0, 10, (n,), generator=g)
    splits = Splits("cifar10", fake(n_train), fake(n_eval), fake(n_eval), fake(0))
    cfg = make_config("paper", awp_gamma=5e-3, epochs=epochs, device=device, eval_train_size=n_eval,
                      final_attack_steps=0)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        rows = train(cfg, Path(tmp) / "run", splits, progress="none")
        wall = time.perf_counter() - t0
    per_image = min(r["time_train"] for r in rows) / n_train
    return {"model": cfg.model, "amp": cfg.amp, "channels_last": cfg.channels_last, "epochs": epochs,
            "train_images": n_train, "wall_s": round(wall, 1),
            "epoch_train_s": [round(r["time_train"], 2) for r in rows],
            "epoch_total_s": [round(r["time_total"], 2) for r in rows],
            "projected_cifar10_train_epoch_s": round(per_image * 49_000, 1), "goal": "<= 25 s on one H100/H200"}
