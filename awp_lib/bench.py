"""Benchmarks as ratios measured side by side in one run: ``python -m awp_lib bench`` prints JSON.

Each benchmark interleaves the two contenders (A B A B ...) so that machine noise hits both,
and reports the ratio of medians with both absolute times.
"""
from __future__ import annotations

import statistics
import time

import torch

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
    from . import data, models
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
    import torchattacks
    from . import attacks
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


def run(names=None, device="cpu", quick=False) -> dict:
    """Run the named benchmarks (all by default) and return ``{name: result}``."""
    names = names or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        raise ValueError(f"unknown benchmark {unknown[0]!r}; valid choices: {', '.join(BENCHES)}")
    result = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads()}
    for n in names:
        result[n] = BENCHES[n](device=device, quick=quick)
    return result
