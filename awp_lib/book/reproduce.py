"""Paper reproductions, one command per table or figure: ``python -m awp_lib reproduce SUITE``.

A suite (:mod:`awp_lib.book.suites`) expands into papermill executions of the book's notebooks.
Every execution has a folder ``runs/<profile>/<name>/`` that keeps its executed notebook
(``notebook.ipynb``, written as it runs), and for a training run its ``config.json``, metrics and
checkpoints. ``done.json`` marks a finished execution: finished ones are skipped, an interrupted
one is executed again and its training resumes from its last checkpoint. The results are
aggregated into the replication-report tables (``awp_lib.book.report``; chapter 6 reads the same
folders) and written to ``results/<profile>/reproduce-<suite>.json`` and ``.md``.

Execution is local by default, one after another. ``--executor slurm`` submits each as a Slurm
job through submitit; ``--gpus N`` trains each run on N GPUs with torchrun (DDP).
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import signal
import time
from pathlib import Path

import torch

from .. import semantics
from ..config import default_profile
from ..data import project_root
from ..io import save_text
from ..resume import plan
from ..runs import RunBusy, RunDir
from ..validate import check_choice
from . import report
from .build import RunsFailed
from .results import save_results
from .suites import (MINIATURE_NOTES, PASS_SECONDS, RUN_NOTEBOOK, SUITES, Execution, Suite,
                     get_suite, gpu_hours, load_parameter_file)


def check_runs(runs: list[Execution], root: Path) -> None:
    """Before anything runs: every notebook exists, its parameters are ones it declares, and no run
    folder holds a run with another config (which the trainer would refuse half-way through a suite)."""
    declared = {}
    for r in runs:
        if r.notebook not in declared:
            path = project_root() / r.notebook
            if not path.exists():
                raise FileNotFoundError(f"{path} (the notebook of run {r.name}) does not exist")
            declared[r.notebook] = set(_notebook_parameters(path))
        unknown = set(r.parameters) - declared[r.notebook]
        if unknown:
            raise ValueError(f"run {r.name}: {r.notebook} has no parameter(s) {sorted(unknown)}; "
                             f"it takes {sorted(declared[r.notebook])}")
        folder = RunDir(root / r.config.profile / r.name)
        p = plan(folder, r.config) if r.notebook == RUN_NOTEBOOK else None
        if p is not None and p.action == "other-config":
            raise ValueError(f"{folder.path} holds a run with another config ({', '.join(p.diff)}); "
                             "use --runs-root to keep both, or delete that folder")


def _notebook_parameters(path: Path) -> list[str]:
    import papermill  # optional dependency (the suites)
    return list(papermill.inspect_notebook(str(path)))


# ----------------------------------------------------------------------------- execution
def status(run: Execution, root: Path) -> str:
    """A state word of :data:`awp_lib.runs.STATES`, with a detail where one helps: ``done``;
    ``stale`` (done under older training semantics: done again); ``busy (host:pid)`` (another
    process executes it or trains its folder); ``partial (epoch e/E)`` (its training was
    interrupted), ``partial (trained, notebook not finished)`` or ``partial`` (its notebook was
    interrupted); or ``new``."""
    folder = RunDir(root / run.config.profile / run.name)
    if _done(folder):
        return "done"
    if folder.is_stale():
        return "stale"  # trained or executed under older training semantics: done again
    owner = folder.executor() or folder.trainer()
    if owner is not None:
        return f"busy ({owner})"
    rows = folder.rows() if run.notebook == RUN_NOTEBOOK else []
    if rows:
        epoch = rows[-1]["epoch"]
        return ("partial (trained, notebook not finished)" if epoch >= run.config.epochs
                else f"partial (epoch {epoch}/{run.config.epochs})")
    return "partial" if folder.notebook.exists() else "new"


def _done(folder: RunDir) -> bool:
    """Executed to the end under today's training semantics."""
    return semantics.recorded(folder.done_file) == semantics.TRAINING_SEMANTICS


def execute_run(run: Execution, root: str, gpus: int = 1, log_output: bool = True) -> dict:
    """Execute one run's notebook with papermill (``--log-output``) and mark it done.

    The executed notebook is written to the run folder as it runs; a failure or an interruption
    leaves it there, without ``done.json``, and the next call executes it again (its training
    resumes). Picklable, so that Slurm jobs (submitit) run this same function.
    """
    import papermill as pm  # optional dependency (the suites)
    root = Path(root)
    folder = RunDir(root / run.config.profile / run.name)
    if folder.is_stale():  # trained or executed under older semantics: set aside, redone
        folder.set_aside()
    folder.path.mkdir(parents=True, exist_ok=True)
    params = dict(run.parameters)
    if run.notebook == RUN_NOTEBOOK:
        params.update(runs_root=str(root), gpus=gpus)
    # two suites (or a suite and a Slurm job) never execute one run at once
    with folder.executing():
        if _done(folder):  # finished by another process since this one listed it
            return {**json.loads(folder.done_file.read_text()), "already_done": True}
        t0 = time.time()
        pm.execute_notebook(str(project_root() / run.notebook), str(folder.notebook), parameters=params,
                            kernel_name="python3", cwd=str(project_root() / "book"), log_output=log_output,
                            progress_bar=False, request_save_on_cell_execute=True)
    info = {"run": run.name, "notebook": run.notebook, "parameters": params, "seconds": time.time() - t0,
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"), semantics.KEY: semantics.TRAINING_SEMANTICS}
    save_text(json.dumps(info, indent=1), folder.done_file)
    return info


def run_suite(suite: str, profile: str, overrides: dict | None = None, seeds: int | None = None,
              only: str | None = None, max_runs: int | None = None, runs_root: str | None = None,
              dry_run: bool = False, executor: str = "local", gpus: int = 1, slurm: dict | None = None,
              log_output: bool = True, out=print) -> dict:
    """Expand ``suite``, check it, then execute its runs (or just list them with ``dry_run``)."""
    s = get_suite(suite)
    check_choice("profile", profile, ("smoke", "cpu", "paper"))
    check_choice("executor", executor, ("local", "slurm"))
    if seeds is not None and not (isinstance(seeds, int) and seeds >= 1):
        raise ValueError(f"seeds={seeds!r} is invalid: a positive number of seeds (0..seeds-1)")
    if not (isinstance(gpus, int) and gpus >= 1):
        raise ValueError(f"gpus={gpus!r} is invalid: a positive number of GPUs per run")
    root = Path(runs_root) if runs_root else project_root() / "runs"
    runs = s.runs(profile, overrides, seeds)
    if only:
        globs = [g.strip() for g in only.split(",") if g.strip()]
        runs = [r for r in runs if any(fnmatch.fnmatch(r.name, g) for g in globs)]
    check_runs(runs, root)
    states = {r.name: status(r, root) for r in runs}
    hours = {r.name: gpu_hours(r) for r in runs}
    todo = [r for r in runs if states[r.name] != "done"]
    out(f"suite {suite} ({s.what}), profile {profile}: {len(runs)} runs, {len(runs) - len(todo)} done, "
        f"{len(todo)} to run; runs in {root / profile}")
    if profile != "paper" and suite in MINIATURE_NOTES:
        out(f"  miniature: {MINIATURE_NOTES[suite]}")
    for r in runs:
        a = r.axes
        out(f"  {states[r.name]:>22s}  {r.name:<36s} {a['dataset']:<13s} {a['norm']:<4s} {a['method']:<12s} "
            f"seed {a['seed']}  {r.config.model}, {r.config.epochs} epochs, ~{hours[r.name]:.2f} GPU-h")
    total, left = sum(hours.values()), sum(hours[r.name] for r in todo)
    out(f"estimated {total:.1f} GPU-hours in all, {left:.1f} left, on one H100 (an estimate, not a "
        f"measurement: {PASS_SECONDS * 1e6:.1f} µs per image pass of PreAct ResNet-18, scaled by model FLOPs)")
    summary = {"suite": suite, "profile": profile, "runs": [r.name for r in runs], "status": states,
               "gpu_hours": total, "executed": []}
    if dry_run:
        return summary
    batch = todo[:max_runs] if max_runs else todo
    if profile == "paper" and executor == "local" and batch:
        if not torch.cuda.is_available() and not any(r.config.device.startswith("cuda") for r in batch):
            out("warning: no GPU here; the paper profile's runs will train on the CPU (days per run). "
                "Interrupt with Ctrl-C at any time: the command resumes where it stopped.")
    if executor == "slurm":
        jobs = submit_slurm(batch, root, gpus, slurm or {})
        out(f"submitted {len(jobs)} Slurm jobs: {', '.join(j.job_id for j in jobs)}; run the same command "
            "again to see progress, and without new runs to aggregate")
        summary["jobs"] = [j.job_id for j in jobs]
        return summary
    failed = {}
    for i, r in enumerate(batch, 1):
        out(f"[{i}/{len(batch)}] {r.name}: executing {r.notebook} ({states[r.name]})")
        try:
            info = execute_run(r, str(root), gpus, log_output)
        except RunBusy as e:
            out(f"[{i}/{len(batch)}] {r.name}: skipped, {e}")
            continue
        except KeyboardInterrupt:
            out(f"[{i}/{len(batch)}] {r.name}: interrupted; run the same command again to resume it")
            raise
        except Exception as e:  # one failed run does not stop the others; KeyboardInterrupt does
            failed[r.name] = f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"
            out(f"[{i}/{len(batch)}] {r.name}: FAILED ({failed[r.name]}); see {RunDir(root / profile / r.name).notebook}")
            continue
        if info.get("already_done"):
            out(f"[{i}/{len(batch)}] {r.name}: finished meanwhile by another process")
            continue
        out(f"[{i}/{len(batch)}] {r.name}: done in {info['seconds']:.0f} s")
        summary["executed"].append(r.name)
    summary["tables"] = aggregate_suite(s, runs, root, profile, out)
    if failed:
        raise RunsFailed(f"{len(failed)} of {len(batch)} runs failed (the others are done and aggregated): "
                         + "; ".join(f"{k}: {v}" for k, v in failed.items()))
    return summary


def submit_slurm(runs: list[Execution], root: Path, gpus: int, slurm: dict):
    """One Slurm job per run through submitit; each job calls :func:`execute_run`."""
    import submitit  # optional dependency (Slurm)
    folder = root / runs[0].config.profile / "slurm" if runs else root / "slurm"
    ex = submitit.AutoExecutor(folder=str(folder), cluster=slurm.pop("cluster", None))
    params = {"timeout_min": 60 * 24, "gpus_per_node": gpus, "cpus_per_task": 8 * gpus, "nodes": 1,
              "tasks_per_node": 1, **slurm}
    ex.update_parameters(**params)
    return [ex.submit(execute_run, r, str(root), gpus) for r in runs]


def aggregate_suite(s: Suite, runs: list[Execution], root: Path, profile: str, out=print) -> list[dict]:
    """Mean ± std tables of the suite's finished training runs, beside the paper's; written to
    ``results/<profile>/reproduce-<suite>.{json,md}``."""
    names = [r.name for r in runs if r.notebook == RUN_NOTEBOOK]
    rows = report.aggregate(report.collect(root / profile, names))
    lines = [f"# {s.what}", "", f"profile `{profile}`; ours: mean ± std over the seeds listed; paper: its "
             "appendix (PreAct ResNet-18, 5 runs); robust = PGD-20 at the training ε, best = selected on "
             "validation (ours) / on test (the paper's code)", "",
             "| dataset | norm | method | model | seeds | robust best | robust last | natural best | natural last "
             "| paper robust best | paper robust last | paper natural best | paper natural last |",
             "|" + " --- |" * 13]
    for r in sorted(rows, key=lambda r: (r["dataset"], r["norm"], r["method"])):
        p = report.PAPER.get((r["dataset"], r["norm"], r["method"]))
        lines.append(f"| {r['dataset']} | {r['norm']} | {r['method']} | {r['model']} | {len(r['seeds'])} | "
                     + " | ".join(report.fmt(r[c]) for c in report.COLUMNS) + " | "
                     + " | ".join(report.fmt(v) if p else "—" for v in (p or [None] * 4)) + " |")
    missing = len(names) - sum(len(r["seeds"]) for r in rows)
    if missing:
        lines += ["", f"{missing} of the suite's {len(names)} training runs are not finished (absent above)."]
    if s.kind == "figure":
        lines += ["", "The figures are in the executed chapter 3 notebooks: "
                  + ", ".join(f"`runs/{profile}/{r.name}/{RunDir.NOTEBOOK}`" for r in runs)]
    text = "\n".join(lines) + "\n"
    jpath = save_results(profile, f"reproduce-{s.name}", {
        "suite": s.name, "runs": [r.name for r in runs],
        "table": [{k: (list(v) if isinstance(v, tuple) else v) for k, v in r.items()} for r in rows]})
    save_text(text, jpath.with_suffix(".md"))
    out(text)
    out(f"wrote {jpath} and {jpath.with_suffix('.md').name}")
    return rows


# ----------------------------------------------------------------------------- CLI
def register_cli(sub) -> None:
    p = sub.add_parser("reproduce", help="run a paper table or figure as papermill runs (skips finished runs, "
                                         "resumes interrupted ones) and aggregate the tables",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("suite", help="one of: " + ", ".join(SUITES))
    p.add_argument("--profile", default=None, help="smoke | cpu | paper (default: $AWP_PROFILE or cpu)")
    p.add_argument("-f", "--parameters", default=None,
                   help="YAML/JSON file of config overrides for every run of a table suite (e.g. device, epochs)")
    p.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (default: smoke 2, cpu 5, paper 5)")
    p.add_argument("--only", default=None, help="only runs whose name matches one of these globs (comma list), e.g. 'at-awp*'")
    p.add_argument("--max-runs", type=int, default=None, help="execute at most N runs now (the rest later)")
    p.add_argument("--runs-root", default=None, help="folder of <profile>/<run> folders (default: ./runs)")
    p.add_argument("--dry-run", action="store_true", help="list the runs, their state and the GPU-hour estimate")
    p.add_argument("--executor", default="local", help="local (default) | slurm (submitit)")
    p.add_argument("--gpus", type=int, default=1, help="GPUs per run; > 1 trains with torchrun (DDP)")
    p.add_argument("--slurm", default=None, help="JSON of submitit parameters, e.g. '{\"slurm_partition\": \"gpu\"}'")
    p.add_argument("--quiet", action="store_true", help="do not stream the notebooks' output")
    p.set_defaults(fn=_cmd)


def _cmd(args) -> None:
    if args.parameters and not Path(args.parameters).is_file():
        raise FileNotFoundError(f"parameter file {args.parameters} not found")
    overrides = load_parameter_file(args.parameters) if args.parameters else {}
    slurm = json.loads(args.slurm) if args.slurm else None
    # Slurm preemption and `kill` send SIGTERM: stop like Ctrl-C, so that papermill shuts the kernel down
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    run_suite(args.suite, args.profile or default_profile(), overrides, args.seeds, args.only, args.max_runs,
              args.runs_root, args.dry_run, args.executor, args.gpus, slurm, not args.quiet,
              out=lambda msg: print(msg, flush=True))
