"""The training runs the book's pages read, defined once.

Each chapter gets its runs from here (``ch1_runs``, ``ch4_at_awp`` ...), with the chapter's
own papermill parameters, and :func:`book_runs` lists every run of every page at its default
parameters. Every function returns :class:`~awp_lib.book.store.Run` (profile first in every
signature), or a dict of them keyed by run name or, where a chapter names its runs by role, by label. ``make book`` first trains that list
(``python -m awp_lib book-runs``: one progress bar over runs, one line per finished run,
an interrupted build resumes where it stopped), then executes the notebooks with
``AWP_BOOK_RUNS=read``: in that mode :meth:`Run.rows <awp_lib.book.store.Run.rows>` only reads finished runs,
and a page asking for a run missing from this list fails, naming it.
"""
from __future__ import annotations

import math

import yaml

from ..awp import GAMMA_APPENDIX_F, GAMMA_TABLE3
from ..config import L2_EPS, make_config, threat
from ..data import project_root
from ..names import run_name
from ..validate import check_choice, parse_number
from .store import Run

# Per profile, the knobs of each chapter that decide which runs it trains.
CH1 = {  # epochs of both models; `monitor`: the loop's cheap per-epoch check (the chapter attacks itself)
    "smoke": dict(epochs=2, monitor=dict(val_size=100, eval_train_size=100, test_size=100, eval_attack_steps=3)),
    "cpu": dict(epochs=10, monitor=dict(val_size=100, eval_train_size=100, test_size=100, eval_attack_steps=3)),
    "paper": dict(epochs=200, monitor=dict(eval_train_size=1000, test_size=1000, eval_attack_steps=10)),
}
# Chapter 2's learning-rate schedules (Appendix C.1).
CH2_SCHEDULES = {p: "piecewise,cosine,cyclic" for p in ("smoke", "cpu", "paper")}
# Chapter 2's "When does robust overfitting happen?": AT at seed 0 with one knob changed each
# (capacity, training-set size, random label noise); `None`: the section is skipped.
CH2_WHEN = {
    "smoke": {"mlp": dict(model="mlp"), "n64": dict(train_size=64), "noise0.2": dict(label_noise=0.2)},
    "cpu": {"mlp": dict(model="mlp"), "n500": dict(train_size=500), "noise0.2": dict(label_noise=0.2)},
    "paper": None,
}
# Chapter 3's "Appendix C at this scale": AT under each setting of Figures 7-10 the profile trains.
# `width`: the second SmallCNN width (Figure 8's other architecture at the miniature's scale);
# paper: the settings of configs/ch3-paper-<name>.yaml instead.
CH3_WIDTH = {"smoke": 16, "cpu": 8, "paper": None}
CH3_PAPER_SETTINGS = ("cosine", "cyclic", "vgg19", "wrn-34-10", "cifar100", "svhn", "l2")
# Chapter 4. The budgets are the paper's, fixed before any AWP run: `gamma` for AT vs AT-AWP, the
# gamma sweep's centre and the controls (Table 3), `gamma_tables` for the regulariser tables
# (Tables 4 and 5, Appendix F). `controls`: runs beside AT and AT-AWP (random direction at gamma and
# 10 gamma, one global budget, EMA of the weights), for `control_seeds` seeds.
CH4 = {
    "smoke": dict(seeds=1, gamma=GAMMA_TABLE3, gamma_tables=GAMMA_APPENDIX_F, gammas=[0, GAMMA_TABLE3],
                  regularizers=["l2"], norms=["linf"], control_seeds=1),
    "cpu": dict(seeds=5, gamma=GAMMA_TABLE3, gamma_tables=GAMMA_APPENDIX_F,
                gammas=[0, GAMMA_APPENDIX_F, GAMMA_TABLE3, 2e-2], regularizers=["l2", "mixup"],
                norms=["linf"], control_seeds=1),
    "paper": dict(seeds=5, gamma=GAMMA_TABLE3, gamma_tables=GAMMA_APPENDIX_F,
                  gammas=[0, 1e-3, 2.5e-3, 5e-3, 1e-2, 2e-2], regularizers=["l1", "l2", "cutout", "mixup"],
                  norms=["linf", "l2"], control_seeds=3),
}
CONTROLS = ("at", "awp", "rwp", "rwp10", "awp-global", "ema")
CH5_METHODS = ("trades", "mart", "rst")
CH5 = {  # `extra`: overrides of all six runs; `method_extra`: per method (paper: the tables' WRN-34-10)
    "smoke": dict(extra={}, method_extra={}, gamma=GAMMA_APPENDIX_F, methods=list(CH5_METHODS)),
    # cpu: MART at the MART code's lr 0.01 (at 0.1 it diverged to NaN at epoch 19 on the miniature)
    "cpu": dict(extra={"epochs": 40}, method_extra={"mart": {"lr": 0.01}}, gamma=GAMMA_APPENDIX_F,
                methods=list(CH5_METHODS)),
    "paper": dict(extra={}, method_extra={"trades": {"model": "wrn-34-10"}, "mart": {"model": "wrn-34-10"}},
                  gamma=GAMMA_APPENDIX_F, methods=["trades", "mart"]),
}
# book/run.ipynb's default `config`: chapter 4's AT-AWP run of seed 0
RUN_PAGE_CONFIG = {"method": "at", "awp_gamma": GAMMA_TABLE3, "final_test_size": None}


def named(profile: str, overrides: dict, label: str | None = None, prefix: str = "") -> Run:
    """The :class:`Run` of ``overrides`` at ``profile``, named by the one namer
    (:func:`awp_lib.names.run_name`)."""
    return Run(profile, run_name(make_config(profile, **overrides), label, prefix), overrides)


def by_name(runs) -> dict[str, Run]:
    return {r.name: r for r in runs}


# ----------------------------------------------------------------------------- chapter 1
def ch1_runs(profile: str, seed: int = 0, epochs: int = 0) -> dict[str, Run]:
    """The standard and the adversarially trained model of chapter 1, keyed by method."""
    s = CH1[profile]
    return {m: named(profile, dict(method=m, epochs=epochs or s["epochs"], seed=seed, **s["monitor"]),
                     label=f"ch1-{m}") for m in ("standard", "at")}


# ----------------------------------------------------------------------------- chapter 2
def ch2_runs(profile: str, seed: int = 0, schedules: str = "", epochs: int = 0) -> dict[str, Run]:
    """AT under each learning-rate schedule (Appendix C.1; empty: the profile's), keyed by schedule."""
    out = {}
    for s in [x.strip() for x in (schedules or CH2_SCHEDULES[profile]).split(",") if x.strip()]:
        check_choice("schedule", s, ("piecewise", "cosine", "cyclic", "constant"))
        if s == "piecewise" and not epochs:  # the preset's schedule: chapter 4's AT run
            out[s] = ch4_at_awp(profile, 0, seed)
            continue
        out[s] = named(profile, dict(method="at", seed=seed, schedule=s, **({"epochs": epochs} if epochs else {})))
    return out


def ch2_when_runs(profile: str, seed: int = 0) -> dict[str, Run]:
    """The runs of "When does robust overfitting happen?", keyed by label (``mlp``, ``n500`` ...)."""
    return {label: named(profile, dict(method="at", seed=seed, **kw), label=f"ch2-{label}")
            for label, kw in (CH2_WHEN[profile] or {}).items()}


def ch2_all(profile: str) -> dict[str, Run]:
    seeds = range(CH4[profile]["seeds"])  # chapter 2 reads the AT seeds that chapter 4 trains
    return by_name([*ch2_runs(profile).values(), *(ch4_at_awp(profile, 0, s) for s in seeds),
                    *ch2_when_runs(profile).values()])


# ----------------------------------------------------------------------------- chapter 3
def ch3_run(profile: str, seed: int = 0, schedule: str = "piecewise", model: str = "", dataset: str = "",
            norm: str = "", eps: str = "", width: int | str = 0) -> Run:
    """Chapter 3's run: chapter 2's AT run, or an Appendix C variant (a knob other than the preset's;
    empty or 0: the preset's)."""
    preset = make_config(profile)
    schedule = schedule or "piecewise"
    knobs = {"schedule": schedule, "model": model, "dataset": dataset, "norm": norm, "width": int(width or 0)}
    overrides = {k: v for k, v in knobs.items() if v and v != getattr(preset, k)}
    if str(eps).strip():
        value = parse_number(eps)  # papermill passes "128/255" as a string
        if not math.isclose(value, preset.eps):
            overrides["eps"] = value
    if "norm" in overrides or "eps" in overrides:
        overrides["attack_alpha"] = None  # the step follows the norm's rule: eps/4 (L-inf), eps*15/128 (L2)
    if not overrides:  # the preset: chapter 2's and chapter 4's AT run
        return ch4_at_awp(profile, 0, seed)
    return named(profile, dict(method="at", seed=seed, **overrides))


def ch3_paper_knobs(name: str) -> dict:
    """Chapter 3's parameters for the paper's setting ``name`` (``configs/ch3-paper-<name>.yaml``)."""
    check_choice("Appendix C setting", name, CH3_PAPER_SETTINGS)
    knobs = yaml.safe_load((project_root() / "configs" / f"ch3-paper-{name}.yaml").read_text())
    knobs.pop("profile", None)
    return knobs


def ch3_settings(profile: str, seed: int = 0) -> dict[str, Run]:
    """The AT runs of chapter 3's "Appendix C at this scale", keyed by setting, the preset first:
    at ``smoke`` and ``cpu`` the preset, the cosine and cyclic schedules, the L2 threat model, a
    second CNN width and chapter 2's "when" runs (MLP, fewer images, label noise), all of the run
    list; at ``paper`` the runs of ``configs/ch3-paper-*.yaml`` (trained by ``reproduce fig7-schedules``
    ... ``fig10-l2``, not by the book build)."""
    out = {"preset": ch4_at_awp(profile, 0, seed)}
    if profile == "paper":
        for name in CH3_PAPER_SETTINGS:
            out[name] = ch3_run(profile, seed, **{k: str(v) for k, v in ch3_paper_knobs(name).items()})
        return out
    out.update({s: ch2_runs(profile, seed, s)[s] for s in ("cosine", "cyclic")})
    out["l2"] = ch3_run(profile, seed, norm="l2", eps=str(L2_EPS[profile]))
    out[f"width{CH3_WIDTH[profile]}"] = ch3_run(profile, seed, width=CH3_WIDTH[profile])
    out.update(ch2_when_runs(profile, seed))
    return out


def ch3_results_name(name: str, seed: int = 0) -> str:
    """Chapter 3's ``results/<profile>/<this>.json`` for its run (:func:`ch3_run`): ``ch3`` on
    chapter 2's AT run, ``ch3-<variant>`` (e.g. ``ch3-cosine``, ``ch3-piecewise-l2-eps1.5``) else."""
    variant = name.removeprefix("at-").removesuffix(f"-s{seed}")
    return "ch3" if variant == "piecewise" else f"ch3-{variant}"


# ----------------------------------------------------------------------------- chapter 4
def ch4_params(profile: str, seeds: int = 0, gamma: float = 0.0, gammas: str = "", regularizers: str = "",
               norms: str = "") -> dict:
    """Chapter 4's parameters with the profile's defaults filled in, checked."""
    s = CH4[profile]
    p = {"seeds": list(range(seeds or s["seeds"])), "gamma": float(gamma or s["gamma"]),
         "gammas": sorted({float(g) for g in str(gammas).split(",") if g.strip()} if str(gammas).strip()
                          else set(s["gammas"])),
         "regularizers": [r.strip() for r in regularizers.split(",") if r.strip()] or list(s["regularizers"]),
         "norms": [n.strip() for n in norms.split(",") if n.strip()] or list(s["norms"])}
    for r in p["regularizers"]:
        check_choice("regularizer", r, ("l1", "l2", "cutout", "mixup"))
    for n in p["norms"]:
        check_choice("threat model (norms)", n, ("linf", "l2"))
    if not (p["seeds"] and p["gamma"] > 0 and all(g >= 0 for g in p["gammas"])):
        raise ValueError(f"seeds={seeds}, gamma={gamma}, gammas={gammas!r}: need seeds >= 1, gamma > 0, gammas >= 0")
    return p


# The runs behind the seed-averaged claims (AT, and AT-AWP at Table 3's budget) get their final
# evaluation on the whole test split; the profile's `final_test_size` applies to the others.
CLAIM_EVAL = {"final_test_size": None}


def ch4_at_awp(profile: str, g: float, s: int) -> Run:
    """AT (``g`` = 0: chapter 2's run) or AT-AWP with budget ``g``, seed ``s``."""
    claim = CLAIM_EVAL if g in (0, GAMMA_TABLE3) else {}
    return named(profile, dict(method="at", seed=s, **({"awp_gamma": g} if g else {}), **claim))


def ch4_collapse_run(profile: str) -> Run:
    """AT-AWP of seed 2 without the AWP warm-up, every epoch monitored: at ``cpu`` it falls to a
    constant prediction and the stuck check stops it within a few epochs (chapter 4's box)."""
    return named(profile, dict(method="at", seed=2, awp_gamma=GAMMA_TABLE3, awp_warmup=0, eval_every=1,
                               final_attack_steps=0), label=f"at-awp{GAMMA_TABLE3:g}-nowarmup")


def expected_stuck(profile: str) -> set[str]:
    """The listed runs that demonstrate a collapse: stopping stuck at chance is their result."""
    return {ch4_collapse_run(profile).name}


def ch4_reg(profile: str, norm: str, **extra) -> Run:
    """A seed-0 run of the regulariser tables, named as ``reproduce`` names it."""
    kw = dict(method="at", seed=0, **threat(profile, make_config(profile).dataset, norm), **extra)
    if not extra:  # AT: a run of the claims
        kw.update(CLAIM_EVAL)
    return named(profile, kw)


def ch4_control(profile: str, label: str, s: int, gamma: float = 0.0) -> Run:
    """One run of the controls table: ``at``, ``awp`` (gamma), ``rwp`` (a random direction, gamma),
    ``rwp10`` (random, 10 gamma), ``awp-global`` (one budget over all layers) or ``ema``."""
    check_choice("control", label, CONTROLS)
    g = float(gamma or CH4[profile]["gamma"])
    if label in ("at", "awp"):
        return ch4_at_awp(profile, g if label == "awp" else 0, s)
    kw = {"rwp": dict(awp_gamma=g, awp_direction="random"), "rwp10": dict(awp_gamma=10 * g, awp_direction="random"),
          "awp-global": dict(awp_gamma=g, awp_scope="global"), "ema": dict(weight_average="ema")}[label]
    return named(profile, dict(method="at", seed=s, **kw))


def ch4_runs(profile: str, **params) -> dict[str, Run]:
    p = ch4_params(profile, **params)
    runs = [ch4_at_awp(profile, g, s) for g in (0, p["gamma"]) for s in p["seeds"]]
    runs += [ch4_at_awp(profile, g, 0) for g in p["gammas"]]
    for norm in p["norms"]:
        runs += [ch4_reg(profile, norm)] + [ch4_reg(profile, norm, regularizer=r) for r in p["regularizers"]]
        runs += [ch4_reg(profile, norm, awp_gamma=CH4[profile]["gamma_tables"])]
    runs += [ch4_control(profile, c, s, p["gamma"]) for c in CONTROLS for s in range(CH4[profile]["control_seeds"])]
    runs.append(ch4_collapse_run(profile))
    return by_name(runs)


# ----------------------------------------------------------------------------- chapter 5
def ch5_warmup(profile: str, method: str, extra: dict | None = None) -> int:
    """The AWP warm-up of ``method``-AWP in chapter 5: the profile's (``config.default_awp_warmup``)."""
    return make_config(profile, method=method, awp_gamma=CH5[profile]["gamma"], **(extra or {})).awp_warmup


def ch5_extra(profile: str, method: str) -> dict:
    s = CH5[profile]
    return {**s["extra"], **s["method_extra"].get(method, {})}


def ch5_run(profile: str, method: str, g: float, seed: int = 0) -> Run:
    extra = ch5_extra(profile, method)
    awp = {"awp_gamma": g} if g else {}
    label = f"ch5-{method}" + (f"-awp{g:g}" if g else "")  # at paper too, whatever its model
    return named(profile, dict(method=method, seed=seed, **awp, **extra), label=label)


def ch5_runs(profile: str, seed: int = 0, methods: str = "", gamma: float = 0.0) -> dict[tuple[str, float], Run]:
    """The chapter's methods without and with AWP (budget ``gamma``), keyed by ``(method, gamma)``."""
    s = CH5[profile]
    ms = [m.strip() for m in str(methods).split(",") if m.strip()] or s["methods"]
    for m in ms:
        check_choice("method of this chapter", m, CH5_METHODS)
    g = float(gamma or s["gamma"])
    return {(m, x): ch5_run(profile, m, x, seed) for m in ms for x in (0, g)}


# ----------------------------------------------------------------------------- the whole book
def run_page_run(profile: str, config: dict | None = None) -> Run:
    """The run of the replication-run page (``book/run.ipynb``) with its ``config`` overrides."""
    return named(profile, dict(RUN_PAGE_CONFIG if config is None else config))


def book_runs(profile: str) -> dict[str, Run]:
    """Every run the book's pages read at their default parameters, keyed by name.

    A name asked for twice must mean the same config (chapters share runs, e.g. AT seed 0)."""
    out: dict[str, Run] = {}
    parts = [*ch1_runs(profile).values(), *ch2_all(profile).values(), ch3_run(profile),
             *(ch3_settings(profile).values() if profile != "paper" else ()),
             *ch4_runs(profile).values(), *ch5_runs(profile).values(), run_page_run(profile)]
    for run in parts:
        if run.name in out and out[run.name].config.to_dict() != run.config.to_dict():
            raise AssertionError(f"run {run.name!r} is defined twice with different configs: "
                                 f"{out[run.name].overrides} vs {run.overrides}")
        out.setdefault(run.name, run)
    return out
