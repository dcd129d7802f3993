"""The paper's reproduction suites, one per table or figure: what each expands into.

A suite expands into papermill executions (dataset × norm × method × seed), each an
:class:`Execution` of a notebook of the book with its parameters and the training :class:`Run` it
makes: the table suites (``table3``, ``table4``, ``table5``, ``benchmark-wrn``) execute the
replication-run page ``book/run.ipynb`` with the run's config; the figure suites
(``fig7-schedules`` ... ``fig10-l2``) execute chapter 3 with the variant's parameters (at
``paper``, those of ``configs/ch3-paper-*.yaml``). Runs are named by the one namer, so a suite
reuses the chapters' runs and the chapters reuse a suite's. :func:`gpu_hours` estimates each
one's cost. Executing them is :mod:`awp_lib.book.reproduce`'s job.

At ``smoke`` and ``cpu`` the suites run their miniature: Fashion-MNIST (the only dataset on
disk offline) and the profile's model, so a dataset or architecture axis collapses to one value;
:data:`MINIATURE_NOTES` says which.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..awp import GAMMA_APPENDIX_F, GAMMA_TABLE3
from ..config import L2_EPS, Config, make_config, parse_value, threat
from ..data import TEST_SIZES
from ..validate import check_choice
from .runlist import CH3_WIDTH, ch3_paper_knobs, ch3_run, named
from .store import Run

RUN_NOTEBOOK = "book/run.ipynb"
CH3_NOTEBOOK = "book/ch3_landscape.ipynb"
REGULARIZERS = ("l1", "l2", "cutout", "mixup")
SEEDS = {"smoke": 2, "cpu": 5, "paper": 5}


# ----------------------------------------------------------------------------- executions and suites
@dataclass
class Execution:
    """One papermill execution: ``notebook`` with ``parameters``, kept in ``runs/<profile>/<name>``;
    ``run``: the training run it makes (for a table suite, the run of that folder; for a figure
    suite, the run chapter 3 trains); ``axes``: dataset, norm, method, seed, for listings."""
    name: str
    notebook: str
    parameters: dict
    run: Run
    axes: dict = field(default_factory=dict)

    @property
    def config(self) -> Config:
        return self.run.config


def _methods(names, gamma: float = GAMMA_APPENDIX_F) -> dict[str, dict]:
    # AT and AT-AWP: the final evaluation on the whole test split (as the chapters' runs of the claims)
    table = {"AT": dict(method="at", final_test_size=None), "AT-AWP": dict(method="at", awp_gamma=gamma,
                                                                         final_test_size=None)}
    table.update({f"AT+{r.upper()}": dict(method="at", regularizer=r) for r in REGULARIZERS})
    # their AWP warm-up is the profile's (paper: 10 epochs, as the official codes)
    table.update({"TRADES-AWP": dict(method="trades", awp_gamma=GAMMA_APPENDIX_F),
                  "MART-AWP": dict(method="mart", awp_gamma=GAMMA_APPENDIX_F)})
    return {n: table[n] for n in names}


def _table_runs(profile, datasets, norms, method_names, seeds, overrides, extra=None, battery="pgd20",
                gamma: float = GAMMA_APPENDIX_F) -> list[Execution]:
    datasets = datasets if profile == "paper" else ["fashion-mnist"]
    out = []
    for d in datasets:
        for norm in norms:
            for m, mcfg in _methods(method_names, gamma).items():
                for s in seeds:
                    kw = {**threat(profile, d, norm), **mcfg, **(extra or {}), **overrides, "seed": s}
                    if kw.get("awp_gamma", 0) > 0 and profile == "paper" and d == "svhn":
                        kw.setdefault("awp_warmup", 5)
                    run = named(profile, kw)
                    cfg = run.config
                    out.append(Execution(run.name, RUN_NOTEBOOK, {"profile": profile, "name": run.name,
                                                                  "config": dict(kw), "battery": battery},
                                         run, {"dataset": cfg.dataset, "norm": cfg.norm, "method": m, "seed": s}))
    return out


def _ch3_runs(profile, variants: dict[str, dict], overrides) -> list[Execution]:
    """Chapter 3 with each variant's knobs (schedule, model, dataset, norm, eps) at seed 0."""
    if overrides:
        raise ValueError(f"the figure suites execute chapter 3, which takes no config overrides; got "
                         f"{sorted(overrides)} (a parameter file applies to the table suites)")
    out = []
    for label, knobs in variants.items():
        run = ch3_run(profile, 0, **{k: str(v) for k, v in knobs.items()})
        params = {"profile": profile, **{k: str(v) for k, v in knobs.items()}}
        cfg = run.config
        out.append(Execution(f"ch3-{label}", CH3_NOTEBOOK, params, run,
                             {"dataset": cfg.dataset, "norm": cfg.norm, "method": f"AT ({label})", "seed": 0}))
    return out


@dataclass
class Suite:
    name: str
    what: str
    kind: str  # "table" or "figure"

    def runs(self, profile: str, overrides: dict | None = None, seeds: int | None = None) -> list[Execution]:
        overrides = dict(overrides or {})
        seed_list = list(range(seeds or SEEDS[profile]))
        mini = profile != "paper"
        n = self.name
        if n == "table3":
            return _table_runs(profile, ["cifar10", "cifar100", "svhn"], ["linf", "l2"], ["AT", "AT-AWP"],
                               seed_list, overrides, gamma=GAMMA_TABLE3)
        if n in ("table4", "table5"):
            return _table_runs(profile, ["cifar10"], ["linf" if n == "table4" else "l2"],
                               ["AT", *[f"AT+{r.upper()}" for r in REGULARIZERS], "AT-AWP"], seed_list, overrides)
        if n == "benchmark-wrn":
            extra = {} if mini else {"model": "wrn-34-10"}
            return _table_runs(profile, ["cifar10"], ["linf"], ["AT-AWP", "TRADES-AWP", "MART-AWP"],
                               seed_list[:1] if seeds is None else seed_list, overrides, extra, battery="full")
        if n == "fig7-schedules":
            return _ch3_runs(profile, {s: {"schedule": s} for s in ("cosine", "cyclic")}, overrides)
        if n == "fig8-architectures":
            other = "mlp" if make_config(profile).model == "smallcnn" else "smallcnn"
            # the miniature: chapter 3's second CNN width (a run of the book's list) and the MLP
            variants = {f"width{CH3_WIDTH[profile]}": {"width": CH3_WIDTH[profile]}, other: {"model": other}} \
                if mini else {m: ch3_paper_knobs(m) for m in ("vgg19", "wrn-34-10")}
            return _ch3_runs(profile, variants, overrides)
        if n == "fig9-datasets":
            return [] if mini else _ch3_runs(profile, {d: ch3_paper_knobs(d) for d in ("cifar100", "svhn")}, overrides)
        if n == "fig10-l2":
            return _ch3_runs(profile, {"l2": {"norm": "l2", "eps": L2_EPS[profile] if mini else "128/255"}}, overrides)
        raise AssertionError(n)


SUITES = {s.name: s for s in (
    Suite("table3", "Table 3: AT vs AT-AWP, CIFAR-10/100 and SVHN × L∞/L2, 5 seeds", "table"),
    Suite("table4", "Table 4: AT, +L1/L2/cutout/mixup, AT-AWP; CIFAR-10 L∞, 5 seeds", "table"),
    Suite("table5", "Table 5: as Table 4 under L2 (ε = 128/255)", "table"),
    Suite("fig7-schedules", "Figure 7: landscapes under the cosine and cyclic schedules (chapter 3)", "figure"),
    Suite("fig8-architectures", "Figure 8: landscapes of VGG-19 and WRN-34-10 (chapter 3)", "figure"),
    Suite("fig9-datasets", "Figure 9: landscapes on CIFAR-100 and SVHN (chapter 3)", "figure"),
    Suite("fig10-l2", "Figure 10: landscapes under the L2 threat model (chapter 3)", "figure"),
    Suite("benchmark-wrn", "the WRN-34-10 benchmark: AT-AWP, TRADES-AWP, MART-AWP with the full battery "
                           "and AutoAttack (RST-AWP needs the withdrawn 500K TinyImages pool)", "table"),
)}
MINIATURE_NOTES = {
    "table3": "the dataset axis is Fashion-MNIST only",
    "table4": "Fashion-MNIST instead of CIFAR-10", "table5": "Fashion-MNIST instead of CIFAR-10",
    "benchmark-wrn": "the profile's model instead of WRN-34-10",
    "fig8-architectures": "a second CNN width and an MLP instead of VGG-19 and WRN-34-10",
    "fig9-datasets": "no run: the miniature has one dataset (Fashion-MNIST); CIFAR-100 and SVHN need downloads",
}


def get_suite(name: str) -> Suite:
    check_choice("suite", name, tuple(SUITES))
    return SUITES[name]


# ----------------------------------------------------------------------------- parameter files and cost
def load_parameter_file(path) -> dict:
    """Config overrides for every run of a table suite, from YAML or JSON; keys and values are checked
    here, before any run starts (``make_config`` names a bad key or value)."""
    text = Path(path).read_text()
    values = yaml.safe_load(text) if text.strip() else {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of config keys to values, got {type(values).__name__}")
    if "profile" in values:
        raise ValueError(f"{path}: 'profile' is chosen with --profile, not in the parameter file")
    if "seed" in values:
        raise ValueError(f"{path}: 'seed' is set by the suite (use --seeds N for seeds 0..N-1)")
    values = {k: parse_value(v, k) if isinstance(v, str) else v for k, v in values.items()}
    try:
        make_config("smoke", **values)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path}: {e}") from None
    return values



# Per-image cost of one forward+backward pass on one H100 (bf16, channels_last), in seconds: an
# ESTIMATE calibrated so that PreAct ResNet-18 AT-AWP on CIFAR-10 (12 passes per image) takes 25 s an
# epoch (the speed goal of the paper profile, not a measurement); other models scale by forward FLOPs at 32 x 32.
PASS_SECONDS = 25.0 / (49_000 * 12)
MODEL_COST = {"preactresnet18": 1.0, "vgg19": 0.71, "wrn-28-10": 9.4, "wrn-34-10": 11.3, "smallcnn": 0.02, "mlp": 0.01}
TRAIN_IMAGES = {"cifar10": 49_000, "cifar100": 49_000, "svhn": 72_257, "fashion-mnist": 59_000}


def gpu_hours(run: Execution) -> float:
    """Estimated hours on one H100 (see ``PASS_SECONDS``); chapter 3 runs add their landscapes."""
    c = run.config
    n_train = c.train_size or TRAIN_IMAGES[c.dataset]
    weight_ascent = c.awp_gamma > 0 and c.awp_direction == "adversarial"  # a random direction takes no gradient
    per_image = c.attack_steps + 1 + (c.awp_steps * c.awp_alternations if weight_ascent else 0)
    per_image += 1 if c.method in ("trades", "mart") else 0
    passes = c.epochs * n_train * per_image
    n_eval = min(c.eval_train_size, n_train) + (c.val_size or 1000) + (c.test_size or TEST_SIZES[c.dataset])
    passes += math.ceil(c.epochs / c.eval_every) * n_eval * (c.eval_attack_steps + 2)
    if run.notebook == CH3_NOTEBOOK:  # 1-D: 10 directions x 21 alphas on the training set; 2-D: 3 x 21 x 21 on 10k
        passes += (10 * 21 * n_train + 3 * 21 * 21 * min(n_train, 10_000)) * (c.attack_steps + 1)
    return passes * PASS_SECONDS * MODEL_COST[c.model] / 3600
