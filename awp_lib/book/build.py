"""Training the book's run list: ``python -m awp_lib book-runs``.

``make book`` first trains every run of :func:`awp_lib.book.runlist.book_runs` (trained, resumed
or skipped; several at a time, one process and one thread each; one progress bar over runs, one
line per finished run), then executes the pages, which only read finished runs.
"""
from __future__ import annotations

import fnmatch
import multiprocessing
import os
import sys
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

import torch
from tqdm.auto import tqdm

from ..config import PROFILES, Config, default_profile
from ..data import TEST_SIZES
from ..progress import format_row
from ..runs import STATES, RunBusy
from ..monitor import final_test_images, final_train_images
from ..stuck import TrainingStuck
from ..validate import check_choice
from . import runlist
from .store import Run


def pending(profile: str) -> dict[str, str]:
    """State of each of the book's runs, one of :data:`awp_lib.runs.STATES` (:meth:`Run.state`)."""
    return {name: run.state() for name, run in runlist.book_runs(profile).items()}


def default_jobs(memory_per_run_gib: float = 1.5) -> int:
    """Parallel runs by default: the cores this process may use, capped by the free memory
    (``memory_per_run_gib`` per run: one torch process training a miniature)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        with open("/proc/meminfo") as f:
            free_kib = next(int(line.split()[1]) for line in f if line.startswith("MemAvailable:"))
        by_memory = int(free_kib / 2**20 / memory_per_run_gib)
    except (OSError, StopIteration):
        by_memory = cores
    return max(1, min(cores, by_memory))


# Relative cost of a training epoch by method (AT = 1; AWP's ascent on top: AWP_COST), for the
# order in which runs start; `bench cpu_run` measures them.
METHOD_COST = {"standard": 0.3, "at": 1.0, "trades": 1.3, "mart": 1.1, "rst": 1.6}
AWP_COST = 1.4


def run_seconds(cfg: Config, epoch_s: float = 1.6, eval_image_s: float = 0.0025,
                method_cost: dict | None = None) -> float:
    """Seconds a run of ``cfg`` takes at one thread: its epochs (``epoch_s`` per AT epoch, scaled by
    ``method_cost`` and AWP), the monitor's PGD-``eval_attack_steps`` evaluations and the final
    PGD of best and last (``eval_image_s`` per image and PGD-5 evaluation, scaled by the steps)."""
    cost = method_cost or METHOD_COST
    kind = "at-awp" if cfg.method == "at" and cfg.awp_gamma > 0 else cfg.method
    per_epoch = cost[kind] if kind in cost else cost[cfg.method] * (AWP_COST if cfg.awp_gamma else 1.0)
    train_n = cfg.train_size or 50_000
    monitor_images = min(cfg.eval_train_size, train_n) + (cfg.val_size or 1000) + min(
        cfg.eval_test_size or TEST_SIZES[cfg.dataset], final_test_images(cfg))
    evals = -(-cfg.epochs // cfg.eval_every)
    per_image = eval_image_s / (5 + 1)  # one PGD step ~ one forward-backward pass
    final_images = final_train_images(cfg) + (cfg.val_size or 1000) + final_test_images(cfg)
    final = 2 * final_images * (cfg.final_attack_steps + 1) * per_image if cfg.final_attack_steps else 0.0
    return cfg.epochs * epoch_s * per_epoch + evals * monitor_images * (cfg.eval_attack_steps + 1) * per_image + final


def _expected_seconds(run: Run) -> float:
    """:func:`run_seconds` of a listed run; 0 for a config that does not validate (its worker
    reports the error)."""
    try:
        return run_seconds(run.config)
    except ValueError:
        return 0.0


def _state(run: Run) -> str:
    """:meth:`Run.state`; ``new`` for a config that does not validate (its worker reports the error)."""
    try:
        return run.state()
    except ValueError:
        return "new"


def _train_one(run: Run) -> dict:
    """One run in a worker process, with one intra-op thread: a run's numbers do not depend on how
    many run beside it (the thread count changes the order of float sums)."""
    torch.set_num_threads(1)
    name = run.name
    t0 = time.perf_counter()
    try:
        rows = run.rows(progress="none")
    except RunBusy as e:  # another process trains it: reported, the others go on
        return {"run": name, "minutes": (time.perf_counter() - t0) / 60, "busy": True,
                "error": f"busy: {e}", "traceback": ""}
    except TrainingStuck as e:  # a failure, unless the run demonstrates a collapse (stuck_ok)
        return {"run": name, "minutes": (time.perf_counter() - t0) / 60, "stuck": True,
                "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
    except Exception as e:  # reported by the parent; the other runs go on
        return {"run": name, "minutes": (time.perf_counter() - t0) / 60,
                "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
    last = rows[-1]
    return {"run": name, "minutes": (time.perf_counter() - t0) / 60, "last": last,
            **{k: last.get(k) for k in ("train_robust", "val_robust", "test_natural", "test_robust")}}


class RunsFailed(RuntimeError):
    """Some runs raised (of the book's list, or of a suite); the others finished."""


def train_all(profile: str, only: str | None = None, progress: str = "auto", jobs: int | None = None) -> list[dict]:
    """Train, resume or skip every run of :func:`book_runs` (or those matching the globs of
    ``only``): :func:`train_runs`."""
    runs = runlist.book_runs(profile)
    if only:
        globs = [g.strip() for g in only.split(",") if g.strip()]
        runs = {k: v for k, v in runs.items() if any(fnmatch.fnmatch(k, g) for g in globs)}
    return train_runs(runs, progress, jobs, f"book runs ({profile})", runlist.expected_stuck(profile))


def train_runs(runs: dict[str, Run], progress: str = "auto", jobs: int | None = None,
               title: str = "runs", stuck_ok: set[str] = frozenset()) -> list[dict]:
    """Train, resume or skip ``runs`` (``{name: Run}``),
    ``jobs`` at a time (default :func:`default_jobs`), each in its own process with one thread;
    one progress bar over the runs, one line per finished or failed run (name, minutes, headline
    numbers). A failed run does not stop the others: :class:`RunsFailed` is raised at the end,
    naming each. A run stuck at chance fails, except those of ``stuck_ok``, whose collapse is
    their result."""
    jobs = default_jobs() if jobs is None else jobs
    if not (isinstance(jobs, int) and jobs >= 1):
        raise ValueError(f"jobs={jobs!r} is invalid: a positive number of parallel runs")
    states = {name: _state(run) for name, run in runs.items()}
    todo = [n for n in runs if states[n] != "done" and not (states[n] == "stuck" and n in stuck_ok)]
    todo.sort(key=lambda n: -_expected_seconds(runs[n]))  # the cores stay busy to the end
    check_choice("progress", progress, ("auto", "bar", "line", "none"))
    say = print if progress != "none" else (lambda *_: None)
    bar = None
    if progress == "bar" or (progress == "auto" and sys.stderr.isatty()):
        bar = tqdm(total=len(runs), initial=len(runs) - len(todo), unit="run", desc=title)
        say = tqdm.write
    count = {s: sum(states[n] == s for n in todo) for s in STATES}
    say(f"{title}: {len(runs)} in all, {len(runs) - len(todo)} done, {count['partial']} to resume, "
        f"{count['stuck']} stuck at chance (they fail again), {count['stale']} stale (set aside, trained "
        f"again), {count['busy']} busy (trained by another process now), {count['new']} new; "
        f"{min(jobs, len(todo) or 1)} at a time, one thread each")
    summary, failed = [], {}
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter per worker: no inherited threads
    with ProcessPoolExecutor(max_workers=min(jobs, len(todo) or 1), mp_context=ctx) as pool:
        pending_ = {pool.submit(_train_one, runs[name]): name for name in todo}
        if bar is None:
            for i, name in enumerate(todo, 1):
                say(f"[{i}/{len(todo)}] queued {name} ({states[name]})")
        finished = 0
        while pending_:
            done, _ = wait(pending_, return_when=FIRST_COMPLETED)
            for f in done:
                pending_.pop(f)
                r = f.result()
                finished += 1
                took = f"{60 * r['minutes']:.0f} s" if r["minutes"] < 2 else f"{r['minutes']:.1f} min"
                if r.get("stuck") and r["run"] in stuck_ok:
                    say(f"[{finished}/{len(todo)}] stopped {r['run']} after {took}, as expected: {r['error']}")
                elif r.get("busy"):
                    failed[r["run"]] = r["error"]
                    say(f"[{finished}/{len(todo)}] skipped {r['run']}, {r['error']}")
                elif "error" in r:
                    failed[r["run"]] = r["error"]
                    say(f"[{finished}/{len(todo)}] FAILED {r['run']} after {took}: {r['error']}\n{r['traceback']}")
                else:
                    say(f"[{finished}/{len(todo)}] done {r['run']}: {took}, {format_row(r.pop('last'))}")
                    summary.append(r)
                if bar is not None:
                    bar.update(1)
    if bar is not None:
        bar.close()
    if failed:
        raise RunsFailed(f"{len(failed)} of {len(todo)} runs failed (the others finished): "
                         + "; ".join(f"{k}: {v}" for k, v in failed.items()))
    return summary


def register_cli(sub) -> None:
    p = sub.add_parser("book-runs", help="train (or resume, or skip) every run the book's pages read",
                       description="The runs are defined in awp_lib/book/runlist.py; `make book` calls this "
                                   "before executing the notebooks, which then only read finished runs.")
    p.add_argument("--profile", default=None, help="smoke | cpu | paper (default: $AWP_PROFILE or cpu)")
    p.add_argument("--only", default=None, help="comma list of globs of run names")
    p.add_argument("--list", action="store_true", help="list the runs and their state; train nothing")
    p.add_argument("--progress", default="auto", choices=["auto", "bar", "line"])
    p.add_argument("--jobs", type=int, default=None,
                   help="runs trained at once, one process and one thread each (default: the cores, "
                        "capped by free memory at 1.5 GiB per run); a run's numbers do not depend on it")
    p.set_defaults(fn=_cmd)


def _cmd(args) -> None:
    profile = args.profile or default_profile()
    check_choice("profile", profile, PROFILES)
    if args.list:
        for name, state in pending(profile).items():
            print(f"{state:8} {name}")
        return
    train_all(profile, args.only, args.progress, args.jobs)
