"""One config object for a training run, validated before any work.

Reachable from Python (``make_config(profile, **overrides)``), the CLI
(``python -m awp_lib train --awp-gamma 5e-3 ...``) and papermill parameters (a notebook's
``parameters`` cell passes its values to :func:`make_config`).

Names follow the paper: ε → ``eps``, η₁ → ``attack_alpha``, K₁ → ``attack_steps``,
γ → ``awp_gamma``, K₂ → ``awp_steps``, A → ``awp_alternations``, η₂ → ``awp_step``, β → ``beta``.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import os
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from .attacks import NORMS, check_eps
from .averaging import AVERAGES
from .awp import DIRECTIONS, SCOPES
from .data import DATASETS
from .evaluate import default_alpha
from .methods import METHODS
from .models import MODELS
from .precision import AMP
from .validate import check_choice, parse_number

PROFILES = ("smoke", "cpu", "paper")
SCHEDULES = ("piecewise", "cosine", "cyclic", "constant")
REGULARIZERS = ("none", "l1", "l2", "cutout", "mixup")
ATTACK_BN = ("auto", "eval", "train")


AUGMENTS = ("none", "crop-flip")
# The config keys whose values are names from a fixed list (``augment`` may also be None: the paper's).
CHOICES = {"profile": PROFILES, "dataset": DATASETS, "model": MODELS, "method": METHODS, "norm": NORMS,
           "schedule": SCHEDULES, "regularizer": REGULARIZERS, "attack_bn": ATTACK_BN, "amp": AMP,
           "awp_direction": DIRECTIONS, "awp_scope": SCOPES, "weight_average": AVERAGES, "augment": AUGMENTS}


@dataclass
class Config:
    profile: str = "cpu"
    # data and model
    dataset: str = "fashion-mnist"
    model: str = "smallcnn"
    width: int = 16                  # smallcnn only
    train_size: int | None = None    # None: the whole training set (minus validation)
    val_size: int | None = None      # None: 1,000 at paper scale, proportionate (>= 100) for subsets
    test_size: int | None = None     # None: the whole test set
    augment: str | None = None       # None: the paper's (crop-flip for CIFAR, none otherwise)
    label_noise: float = 0.0         # fraction of training labels flipped to another class (seeded)
    # method and threat model
    method: str = "at"               # standard | at | trades | mart | rst
    norm: str = "linf"
    eps: float = 0.1                 # ε
    attack_alpha: float | None = None  # η₁; None: ε/4 (L∞) or ε·15/128 (L2)
    attack_steps: int = 10           # K₁
    attack_bn: str = "auto"          # BN mode while attacking in training; auto: train for AT (official), eval otherwise
    beta: float = 6.0                # β of TRADES / MART / RST
    unsup_fraction: float = 0.5      # RST: share of pseudo-labelled examples per batch
    pseudo_epochs: int = 10          # RST: epochs of the standard model that pseudo-labels the pool
    # AWP (Algorithm 2)
    awp_gamma: float = 0.0           # γ; 0 disables AWP
    awp_steps: int = 1               # K₂
    awp_alternations: int = 1        # A
    awp_step: float | None = None    # η₂; None: γ/(A·K₂)
    awp_warmup: int | None = None    # epochs of plain training before AWP starts; None: the
    #                                  profile's (default_awp_warmup), recorded as a number
    awp_direction: str = "adversarial"  # adversarial (Algorithm 2) | random: a fresh Gaussian direction per
    #                                  batch rescaled to the budget's sphere, no gradient (a control)
    awp_scope: str = "layer"         # layer: ‖v_l‖ ≤ γ‖w_l‖ per kernel (Eq. 15) | global: ‖v‖ ≤ γ‖w‖ over all
    # optimisation
    epochs: int = 30
    batch_size: int = 128
    lr: float = 0.1                  # peak learning rate
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    schedule: str = "piecewise"      # piecewise (x0.1 at each of `decays`) | cosine | cyclic | constant
    decays: list = dataclasses.field(default_factory=lambda: [0.5, 0.75])  # piecewise: fractions of training
    cyclic_peak: float = 0.4         # cyclic: fraction of training where lr peaks (80/200 in the paper)
    cyclic_lr: float | None = None   # cyclic: the peak learning rate; None: the profile's
    #                                  (default_cyclic_lr), recorded as a number; unused otherwise
    regularizer: str = "none"        # Appendix F: none | l1 | l2 | cutout | mixup
    reg_strength: float | None = None  # l1 5e-6, l2 5e-3, cutout patch 14 (px), mixup α 1.4
    # weight averaging (awp_lib.averaging): none | ema | swa; when on, the evaluation, `best` and the
    # checkpoints are those of the averaged weights
    weight_average: str = "none"
    ema_decay: float = 0.99          # EMA decay per optimizer step (horizon ~100 steps), warmed up
    swa_start: float = 0.75          # SWA averages the epochs after this fraction of training
    # per-epoch monitor (cheap: it only picks `best` on validation and draws the curves) ...
    eval_attack_steps: int = 10      # PGD steps for train/val/test robust accuracy per evaluated epoch
    eval_train_size: int = 1000      # training images (fixed subset) for train robust accuracy at w
    eval_test_size: int | None = None  # test images (fixed subset) per evaluated epoch; None: the whole split
    final_train_size: int | None = None  # train images of the final evaluation; None: eval_train_size
    eval_every: int = 1
    # a run whose training loss sits at its method's loss of a uniform prediction (ln(classes) for
    # AT), or its monitored natural accuracy at chance, for this many consecutive epochs after the
    # AWP warm-up stops with an error (stuck.stuck_at_chance; 0: never)
    stuck_epochs: int = 3
    # ... and the full-strength evaluation of the best and last checkpoints at the end (0: none):
    # natural and PGD-`final_attack_steps` on the test split (its first `final_test_size` images; None:
    # all of it), validation and the first `final_train_size` training images
    final_attack_steps: int = 0
    final_test_size: int | None = None
    seed: int = 0
    device: str = "auto"             # auto | cpu | cuda | cuda:N
    # speed (the numbers change by rounding, never the method: awp_lib.precision)
    amp: str = "none"                # none (fp32) | bf16 | auto: bf16 autocast for training and evaluation;
    #                                  auto resolves (and is recorded) as bf16 for conv nets on a CPU with
    #                                  avx512_bf16 or a GPU with bf16, as none elsewhere
    channels_last: bool = False      # channels_last memory format for conv nets; "auto": with bf16 on a
    #                                  GPU only (on CPUs it was slower: README, measured)
    compile: bool = False            # torch.compile the model for the training step (the numbers change by
    #                                  rounding: tests/test_precision.py); eager where no C++ compiler is found

    def __post_init__(self):
        if isinstance(self.decays, str):  # the CLI and papermill: "0.25,0.75"
            self.decays = [parse_value(d) for d in self.decays.split(",") if d.strip()]
        if isinstance(self.decays, tuple):
            self.decays = list(self.decays)
        if self.awp_warmup is None:
            self.awp_warmup = default_awp_warmup(self.profile, self.method, self.epochs, self.awp_gamma)
        if self.cyclic_lr is None and self.schedule == "cyclic":
            self.cyclic_lr = CYCLIC_LR[self.profile]
        if self.amp == "auto":
            self.amp = resolve_amp(self.model, self.device)
        if self.channels_last == "auto":
            self.channels_last = self.amp == "bf16" and resolve_device(self.device).type == "cuda"
        self.validate()

    # ----- derived values (not stored) -----
    @property
    def alpha(self) -> float:
        return default_alpha(self.eps, self.norm) if self.attack_alpha is None else self.attack_alpha

    @property
    def bn_mode(self) -> str:
        return ("train" if self.method == "at" else "eval") if self.attack_bn == "auto" else self.attack_bn

    @property
    def reg(self) -> float:
        return {"none": 0.0, "l1": 5e-6, "l2": 5e-3, "cutout": 14, "mixup": 1.4}[self.regularizer] \
            if self.reg_strength is None else self.reg_strength

    @property
    def awp_tag(self) -> str:
        """The run-name part of AWP: ``-awp0.01``; ``-rwp0.01`` (random direction); ``-global`` after it
        for one global budget; empty without AWP."""
        if self.awp_gamma == 0:
            return ""
        kind = "rwp" if self.awp_direction == "random" else "awp"
        return f"-{kind}{self.awp_gamma:g}" + ("-global" if self.awp_scope == "global" else "")

    @property
    def average_tag(self) -> str:
        """The run-name part of weight averaging: ``-ema``, ``-swa`` or empty."""
        return "" if self.weight_average == "none" else f"-{self.weight_average}"

    def validate(self) -> None:
        for k, choices in CHOICES.items():
            if k != "augment" or self.augment is not None:
                check_choice(k, getattr(self, k), choices)
        awp_only = {k: getattr(self, k) for k, d in (("awp_direction", "adversarial"), ("awp_scope", "layer"))
                    if getattr(self, k) != d}
        if self.awp_gamma == 0 and awp_only:
            raise ValueError(", ".join(f"{k}={v!r}" for k, v in awp_only.items())
                             + " shapes the AWP perturbation: it needs awp_gamma > 0 (got 0)")
        for k in ("channels_last", "compile", "nesterov"):
            if not isinstance(getattr(self, k), bool):
                raise ValueError(f"{k}={getattr(self, k)!r} is invalid: true or false")
        check_eps(self.eps, self.norm)
        if not isinstance(self.final_attack_steps, int) or self.final_attack_steps < 0:
            raise ValueError(f"final_attack_steps={self.final_attack_steps!r} is invalid: a number of PGD "
                             "steps >= 0 (0: no final evaluation)")
        positive_ints = ("width", "attack_steps", "awp_steps", "awp_alternations", "epochs", "batch_size",
                         "eval_attack_steps", "eval_train_size", "eval_every", "pseudo_epochs")
        for k in positive_ints:
            v = getattr(self, k)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"{k}={v!r} is invalid: it must be a positive integer")
        for k in ("train_size", "val_size", "test_size", "eval_test_size", "final_train_size", "final_test_size"):
            v = getattr(self, k)
            if v is not None and (not isinstance(v, int) or v <= 0):
                raise ValueError(f"{k}={v!r} is invalid: a positive integer, or None for the whole set")
        if not isinstance(self.stuck_epochs, int) or isinstance(self.stuck_epochs, bool) or self.stuck_epochs < 0:
            raise ValueError(f"stuck_epochs={self.stuck_epochs!r} is invalid: a number of epochs >= 0 (0: no check)")
        if self.cyclic_lr is not None and (self.schedule != "cyclic" or not self.cyclic_lr > 0):
            raise ValueError(f"cyclic_lr={self.cyclic_lr!r} is invalid: the cyclic schedule's peak learning "
                             f"rate, > 0, with schedule='cyclic' (got schedule={self.schedule!r})")
        nonneg = ("awp_gamma", "lr", "weight_decay", "momentum", "beta", "awp_warmup")
        for k in nonneg:
            v = getattr(self, k)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not v >= 0:
                raise ValueError(f"{k}={v!r} is invalid: it must be a number >= 0")
        for k in ("attack_alpha", "awp_step", "reg_strength"):
            v = getattr(self, k)
            if v is not None and (not isinstance(v, (int, float)) or not v > 0):
                raise ValueError(f"{k}={v!r} is invalid: a positive number, or None for the default")
        if not (isinstance(self.ema_decay, (int, float)) and not isinstance(self.ema_decay, bool)
                and 0 < self.ema_decay < 1):
            raise ValueError(f"ema_decay={self.ema_decay!r} is invalid: a decay per step strictly between 0 and 1")
        if not (isinstance(self.swa_start, (int, float)) and not isinstance(self.swa_start, bool)
                and 0 <= self.swa_start < 1):
            raise ValueError(f"swa_start={self.swa_start!r} is invalid: a fraction of training in [0, 1)")
        if not (isinstance(self.label_noise, (int, float)) and not isinstance(self.label_noise, bool)
                and 0 <= self.label_noise < 1):
            raise ValueError(f"label_noise={self.label_noise!r} is invalid: a fraction of training labels in [0, 1)")
        if not (isinstance(self.decays, list) and all(isinstance(d, (int, float)) and not isinstance(d, bool)
                                                      and 0 < d < 1 for d in self.decays)
                and self.decays == sorted(self.decays)):
            raise ValueError(f"decays={self.decays!r} is invalid: increasing fractions of training strictly "
                             "between 0 and 1, e.g. 0.5,0.75")
        if not 0 < self.cyclic_peak < 1:
            raise ValueError(f"cyclic_peak={self.cyclic_peak!r} is invalid: a fraction strictly between 0 and 1")
        if not 0 <= self.unsup_fraction < 1:
            raise ValueError(f"unsup_fraction={self.unsup_fraction!r} is invalid: a fraction in [0, 1)")
        if self.regularizer == "mixup" and self.method != "at":
            raise ValueError(f"regularizer='mixup' is defined for method='at' only (got method={self.method!r})")
        resolve_device(self.device)  # a bad name raises, naming the valid ones

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# Profile presets: `smoke` (CI, seconds), `cpu` (a laptop, minutes), `paper` (a GPU, the paper's settings).
PRESETS = {
    "smoke": dict(dataset="fashion-mnist", model="smallcnn", width=8, train_size=256, val_size=100, test_size=200,
                  eps=0.1, attack_steps=3, epochs=2, batch_size=64, lr=0.05, eval_attack_steps=3,
                  eval_train_size=200, pseudo_epochs=1, final_attack_steps=5),
    # cpu: the miniature where AT overfits robustly, chosen on AT's validation curves alone (the lever
    # study, awp_lib.book.levers and chapter 2): a SmallCNN of width 16 on 1,000 Fashion-MNIST images,
    # PGD-3 (step 0.04) at eps = 0.1, batch 64, 100 epochs with decays after epochs 20 and 80 (1,600
    # SGD steps, 1,280 after the first decay). fp32 on every CPU: bf16 is several times slower where
    # it is emulated, and its numbers would differ from one CPU to the next.
    "cpu": dict(dataset="fashion-mnist", model="smallcnn", width=16, train_size=1000, val_size=1000,
                test_size=None, final_test_size=2000, eps=0.1, attack_steps=3, attack_alpha=0.04, epochs=100,
                batch_size=64, lr=0.1, weight_decay=5e-4, decays=[0.2, 0.8], amp="none", channels_last=False,
                pseudo_epochs=10, compile=True,
                # the monitor: PGD-5 on the 1,000 validation images (they pick `best`) and, for the
                # curves, on 250 train and 250 test images, every 5 epochs; best and last then get
                # PGD-20 on 500 train images, the validation split and the first `final_test_size`
                # test images (all 10,000 for the runs of the seed-averaged claims: runlist.CLAIM_EVAL)
                eval_attack_steps=5, eval_train_size=250, eval_test_size=250, eval_every=5,
                final_attack_steps=20, final_train_size=500),
    "paper": dict(dataset="cifar10", model="preactresnet18", eps=8 / 255, attack_alpha=2 / 255, attack_steps=10,
                  epochs=200, batch_size=128, lr=0.1, eval_attack_steps=10, eval_train_size=1000,
                  eval_test_size=1000, final_attack_steps=20,
                  test_size=None, train_size=None, val_size=1000, amp="bf16", channels_last=True),
}


# The cyclic schedule's peak learning rate by profile: ``paper`` Appendix C.1's 0.2 (twice the
# piecewise schedule's 0.1); ``cpu`` chosen on AT's validation robust accuracy alone over the peaks
# 0.05, 0.1 and 0.2 (README, measured): they were within half a point of each other, less than the
# validation split's standard error, so the miniature keeps the paper's ratio; ``smoke`` as ``paper``.
CYCLIC_LR = {"paper": 0.2, "cpu": 0.2, "smoke": 0.2}


def default_awp_warmup(profile: str, method: str, epochs: int, awp_gamma: float) -> int:
    """Epochs of plain training before AWP starts, by profile. ``cpu``: 5 % of the epochs for every
    AWP-family run (the official TRADES-AWP ratio, 10 of 200), because at the miniature's learning
    rate AWP from the first step can push AT-AWP to a constant prediction it never leaves (chapter 4);
    ``paper``: the official codes' values (AT-AWP 0, TRADES-AWP 10), with MART- and RST-AWP, which
    have no official code, as TRADES-AWP (10); ``smoke``: 0, so that
    its two-epoch runs see AWP act. 0 for runs without AWP."""
    if not awp_gamma or profile == "smoke":
        return 0
    if profile == "cpu":
        return round(0.05 * epochs)
    return 0 if method == "at" else 10


# The L2 radius of each profile (Fashion-MNIST: 784 pixels in [0, 1]; CIFAR: the paper's 128/255).
L2_EPS = {"paper": 128 / 255, "cpu": 1.0, "smoke": 1.0}


def threat(profile: str, dataset: str, norm: str) -> dict:
    """Config overrides of a dataset and threat model (the official settings at ``paper``)."""
    out = {"dataset": dataset} if profile == "paper" else {}
    if norm == "l2":
        out.update(norm="l2", eps=L2_EPS[profile], attack_alpha=None)   # step ε·15/128
    if profile == "paper" and dataset == "svhn":   # official SVHN runs: lr 0.01, step 1/255, AWP after 5 epochs
        out.update(lr=0.01)
        if norm == "linf":
            out.update(attack_alpha=1 / 255)
    return out


def bf16_fast(device: str = "auto") -> bool:
    """Whether bf16 autocast runs natively: a CUDA GPU with bf16, or a CPU with avx512_bf16 / AMX."""
    if resolve_device(device).type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    cpu = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    return bool(cpu() or amx())


def resolve_device(name: str = "auto"):
    """The ``torch.device`` a config's ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``) trains on."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        if name in ("cpu", "cuda") or str(name).startswith("cuda:"):
            return torch.device(name)
    except RuntimeError:  # e.g. cuda:x
        pass
    raise ValueError(f"unknown device {name!r}; valid choices: auto, cpu, cuda, cuda:N")


def resolve_amp(model: str, device: str = "auto") -> str:
    """``amp="auto"``: ``bf16`` for conv nets where bf16 is native (:func:`bf16_fast`), else ``none``."""
    return "bf16" if model != "mlp" and bf16_fast(device) else "none"


def default_profile() -> str:
    """``$AWP_PROFILE`` if set (the book build and nbval use ``smoke``), else ``cpu``."""
    p = os.environ.get("AWP_PROFILE", "cpu")
    check_choice("profile (from $AWP_PROFILE)", p, PROFILES)
    return p


def keys() -> list[str]:
    return [f.name for f in fields(Config)]


def make_config(profile: str | None = None, **overrides) -> Config:
    """The ``profile`` preset with ``overrides`` on top; a misspelt key raises, naming it."""
    profile = profile or default_profile()
    check_choice("profile", profile, PROFILES)
    for k in overrides:
        if k not in keys():
            near = difflib.get_close_matches(k, keys(), n=1)
            hint = f" did you mean {near[0]!r}?" if near else ""
            raise ValueError(f"unknown config key {k!r};{hint} valid keys: {', '.join(keys())}")
    return Config(**{**PRESETS[profile], **overrides, "profile": profile})


def parse_value(text: str, key: str | None = None):
    """CLI and papermill strings → Python values: ints, floats, fractions like 8/255, None, booleans.

    For a ``key`` of :data:`CHOICES`, a valid choice stays the string it is (``--amp none`` is
    ``"none"``, not None)."""
    if key in CHOICES and text.strip() in CHOICES[key]:
        return text.strip()
    low = text.strip().lower()
    if low in ("none", "null"):
        return None
    if low in ("true", "false"):
        return low == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return parse_number(text)
    except ValueError:
        return text


def load_saved(path) -> Config:
    """The :class:`Config` of a run's ``config.json`` (records beside the config's keys, such as the
    training semantics version, are left out)."""
    saved = json.loads(Path(path).read_text())
    return Config(**{k: v for k, v in saved.items() if k in keys()})


def config_diff(old: dict, new: Config) -> dict:
    """Keys whose values differ between a saved config (a run's ``config.json``) and ``new``, as
    ``{key: (old, new)}``; ``device`` is ignored, and keys added to Config after the run was saved
    count as their defaults."""
    defaults = {f.name: f.default_factory() if f.default is dataclasses.MISSING else f.default
                for f in fields(Config)}
    return {k: (old.get(k, defaults[k]), v) for k, v in new.to_dict().items()
            if k != "device" and old.get(k, defaults[k]) != v}
