"""Checkpoints of our runs and of third parties, loaded safely into the model they need.

A checkpoint inside ``<run>/checkpoints/`` of one of our training runs carries its config
(``<run>/config.json``): architecture, dataset and normalisation are read from it. Any other
file (the published AWP, TRADES, MART, RobustBench or Rice et al. models) needs the
architecture and the dataset (``--model``, ``--dataset``), and its input normalisation, which
differs by source:

* ``none`` ([0, 1] inputs): the TRADES, MART and TRADES-AWP WideResNets of the official code,
  RobustBench's ``Wu2020Adversarial`` (TRADES-AWP WRN-34-10) among them;
* ``dataset`` (the dataset's mean/std): the PreAct ResNets of Rice et al. and of AT-AWP
  (official ``at-awp/train_cifar*.py``), the AT-AWP WideResNets of that code, and our runs.

The default for a third-party file follows the architecture: ``none`` for WideResNets (the
TRADES convention of the AWP WRN checkpoints and RobustBench), ``dataset`` otherwise; the
AT-AWP WideResNets of the official ``at-awp`` code need ``--normalize dataset``.

Published key layouts, all read with ``torch.load(weights_only=True)``: a bare state dict, or a
dict holding one under ``state_dict`` / ``model`` / ``model_state_dict``; ``module.`` prefixes
of ``nn.DataParallel`` are stripped; the unused ``sub_block1`` of TRADES/MART WideResNets is
dropped. Keys that still do not match are reported by name. A file holding arbitrary pickled
objects is refused: unpickling it could run code.
"""
from __future__ import annotations

import argparse
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from . import data
from .attacks import check_eps
from .config import load_saved
from .config import resolve_device as resolve
from .data import DATASETS
from .models import MODELS, NORMALIZE, build_model
from .runs import RunDir
from .validate import check_choice, parse_number

WRAPPER_KEYS = ("state_dict", "model", "model_state_dict")
UNUSED_BLOCKS = ("sub_block1",)  # built but never used in forward() by the TRADES / MART WideResNets
SHOW = 5  # names shown per kind of mismatch


def _first_line(e: BaseException) -> str:
    lines = [ln for ln in str(e).splitlines() if ln.strip()]
    return lines[0][:200] if lines else type(e).__name__


def read_weights(path) -> object:
    """``torch.load(path, weights_only=True)`` on the CPU, with clear errors naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL (\S+)", str(e))
        if found:
            raise ValueError(
                f"{path} refused: it holds pickled objects other than tensors, numbers, strings and "
                f"containers (e.g. {found.group(1)}), which torch.load(weights_only=True) does not read "
                "because unpickling them can run arbitrary code. If you trust its source, load it once "
                "with weights_only=False and save its model.state_dict() with torch.save") from None
        detail = re.search(r"WeightsUnpickler error:\s*(.+)", str(e))
        raise ValueError(f"{path} is not a PyTorch checkpoint torch.load(weights_only=True) can read ("
                         f"{detail.group(1).strip() if detail else _first_line(e)}); it was not loaded") from None
    except Exception as e:  # truncated or not a PyTorch file at all
        raise ValueError(f"{path} is not a PyTorch checkpoint torch.load can read "
                         f"({type(e).__name__}: {_first_line(e)})") from None


def _is_state_dict(obj) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(torch.is_tensor(v) for v in obj.values())


def unwrap(obj, path="checkpoint") -> tuple[dict, str | None]:
    """The state dict in ``obj`` and the key it was found under (``None``: ``obj`` is one)."""
    if _is_state_dict(obj):
        return obj, None
    if isinstance(obj, dict):
        for key in WRAPPER_KEYS:
            if _is_state_dict(obj.get(key)):
                return obj[key], key
    top = ", ".join(map(repr, list(obj)[:8])) if isinstance(obj, dict) else type(obj).__name__
    raise ValueError(f"{path} holds no state dict: expected a dict of tensors, or a dict holding one "
                     f"under {', '.join(map(repr, WRAPPER_KEYS))}; found {top or 'an empty dict'}")


def remap(state: dict) -> tuple[dict, dict]:
    """Strip ``module.`` prefixes and drop the unused ``sub_block1``; returns the state and what was done."""
    out, stripped, dropped = {}, 0, 0
    for k, v in state.items():
        name = k
        while name.startswith("module."):
            name = name[len("module."):]
        stripped += name != k
        if any(name.startswith(f"{b}.") or f".{b}." in name for b in UNUSED_BLOCKS):
            dropped += 1
            continue
        out[name] = v
    return out, {"tensors": len(out), "stripped_module_prefix": stripped, "dropped_sub_block1": dropped}


def _names(keys: list[str]) -> str:
    more = f" (+{len(keys) - SHOW} more)" if len(keys) > SHOW else ""
    return ", ".join(keys[:SHOW]) + more


def load_weights(model: nn.Module, path, strict: bool = True, hint: str = "") -> dict:
    """Load the weights of ``path`` (ours or a published layout) into ``model``; returns a report.

    Missing ``num_batches_tracked`` counters (checkpoints of old PyTorch) keep the model's. Any
    other missing or unexpected key (with ``strict``), or a shape mismatch, raises ``ValueError``
    naming the first few; ``hint`` ends the message (e.g. which flag to check).
    """
    state, wrapper = unwrap(read_weights(path), path)
    state, report = remap(state)
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in state and state[k].shape != own[k].shape]
    problems = []
    if strict and missing:
        problems.append(f"{len(missing)} missing: {_names(missing)}")
    if strict and unexpected:
        problems.append(f"{len(unexpected)} unexpected: {_names(unexpected)}")
    if shapes:
        problems.append(f"{len(shapes)} of another shape (file vs model): {_names(shapes)}")
    if problems:
        raise ValueError(f"{path}: its weights do not fit the {type(model).__name__} built for it ("
                         + "; ".join(problems) + ")" + (f". {hint}" if hint else ""))
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    return {**report, "wrapper": wrapper}


def load_checkpoint(model: nn.Module, path, strict: bool = True) -> nn.Module:
    """Load weights (ours or third-party) with ``weights_only=True``; returns ``model``.

    Accepts a bare state dict or a dict holding one under ``model``/``state_dict``/``model_state_dict``.
    A file holding arbitrary pickled objects is refused; keys that do not match are named
    (:func:`awp_lib.checkpoints.load_weights`).
    """
    load_weights(model, path, strict=strict)
    return model


# ----------------------------------------------------------------------------- checkpoint -> model
@dataclass
class Loaded:
    """A model rebuilt from a checkpoint, and where its settings came from."""
    model: nn.Module
    path: Path
    source: str                  # "run" (config read from the run) or "file" (third-party)
    arch: str
    dataset: str
    normalize: str
    width: int
    cfg: object = None           # the run's Config (source "run")
    notes: list[str] = field(default_factory=list)
    load: dict = field(default_factory=dict)

    @property
    def run(self) -> Path | None:
        return self.path.parent.parent if self.source == "run" else None

    def describe(self) -> dict:
        return {"checkpoint": str(self.path), "source": self.source,
                "run": str(self.run) if self.run else None, "model": self.arch, "dataset": self.dataset,
                "normalize": self.normalize, "width": self.width, "load": self.load, "notes": self.notes}


def run_config_path(checkpoint) -> Path:
    """The ``config.json`` of the run a checkpoint ``<run>/checkpoints/X.pt`` would belong to."""
    return RunDir(Path(checkpoint).parent.parent).config_file


def is_run_checkpoint(checkpoint) -> bool:
    """True for ``<run>/checkpoints/X.pt`` with ``<run>/config.json`` beside."""
    return RunDir.of_checkpoint(checkpoint) is not None


def load_run_model(checkpoint):
    """Rebuild a model from ``<run>/checkpoints/X.pt`` and its ``<run>/config.json``."""
    if Path(checkpoint).is_file() and not is_run_checkpoint(checkpoint):
        raise FileNotFoundError(f"{run_config_path(checkpoint)} not found: the checkpoint must sit in "
                                "<run>/checkpoints/ of a training run")
    loaded = load_model(checkpoint)
    return loaded.model, loaded.cfg


def default_normalize(arch: str) -> tuple[str, str]:
    """The normalisation a third-party ``arch`` checkpoint most likely expects, and why."""
    if arch.startswith("wrn-"):
        return "none", ("normalize none: WideResNet checkpoints of TRADES, MART, TRADES-AWP and "
                        "RobustBench's Wu2020Adversarial take [0, 1] inputs (the AT-AWP WideResNets "
                        "of the official at-awp code need --normalize dataset)")
    return "dataset", ("normalize dataset: the Rice et al. and AT-AWP PreAct ResNets normalise with "
                       "the dataset's mean and std (pass --normalize none for [0, 1] inputs)")


def load_model(checkpoint, model: str | None = None, dataset: str | None = None,
               normalize: str | None = None, width: int | None = None, device="cpu") -> Loaded:
    """Rebuild the model of ``checkpoint`` in eval mode.

    A checkpoint of one of our runs needs no argument (given ones must agree with the run's
    config); any other file needs ``model`` and ``dataset``; ``normalize`` defaults by
    architecture (:func:`default_normalize`).
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    if normalize is not None:
        check_choice("--normalize", normalize, NORMALIZE)
    notes = []
    if is_run_checkpoint(path):
        cfg_path = run_config_path(path)
        cfg = load_saved(cfg_path)
        for flag, given, own in (("--model", model, cfg.model), ("--dataset", dataset, cfg.dataset),
                                 ("--normalize", normalize, "dataset"), ("--width", width, cfg.width)):
            if given is not None and given != own:
                raise ValueError(f"{flag} {given!r} disagrees with the run's config ({cfg_path}: {own!r}); "
                                 f"drop {flag} for a checkpoint of one of our runs")
        arch, ds, norm_, w, source = cfg.model, cfg.dataset, "dataset", cfg.width, "run"
        notes.append(f"run checkpoint: {arch} on {ds}, normalize dataset (from {cfg_path})")
    else:
        missing = [f for f, v in (("--model", model), ("--dataset", dataset)) if v is None]
        if missing:
            raise ValueError(
                f"{path} is not a checkpoint of one of our runs (no {run_config_path(path)}): a "
                f"third-party file needs {' and '.join(missing)}, e.g. --model wrn-34-10 --dataset "
                f"cifar10 (--model: {', '.join(MODELS)}; --dataset: {', '.join(DATASETS)})")
        check_choice("--model", model, MODELS)
        check_choice("--dataset", dataset, DATASETS)
        cfg, arch, ds, w, source = None, model, dataset, 16 if width is None else width, "file"
        if normalize is None:
            norm_, why = default_normalize(arch)
            notes.append(why)
        else:
            norm_ = normalize
            notes.append(f"normalize {normalize} (--normalize)")
    net = build_model(arch, ds, w, normalize=norm_)
    hint = ("Check --model and --dataset (the number of classes)" if source == "file"
            else f"The run's config says model={arch!r}, dataset={ds!r}")
    report = load_weights(net, path, hint=hint)
    extra = []
    if report["stripped_module_prefix"]:
        extra.append(f"stripped 'module.' from {report['stripped_module_prefix']} keys")
    if report["dropped_sub_block1"]:
        extra.append(f"dropped {report['dropped_sub_block1']} tensors of the unused sub_block1")
    notes.append(f"loaded {report['tensors']} tensors" + (f" from {report['wrapper']!r}" if report["wrapper"] else "")
                 + (f" ({'; '.join(extra)})" if extra else ""))
    return Loaded(net.to(device).eval(), path, source, arch, ds, norm_, w, cfg, notes, report)


def images(loaded: Loaded, split: str = "test", n: int | None = None, root=None,
           flag: str = "--n") -> tuple[tuple[torch.Tensor, torch.Tensor], str]:
    """Up to ``n`` images of ``split`` for ``loaded`` (``None``: all), and a line saying which.

    A run's splits are its own (``get_splits`` with its config: the same seeded subsets it
    was trained and evaluated on); a third-party model gets the first ``n`` images of the
    dataset's split (as RobustBench does). ``n`` above what the split holds is capped, and the
    line says so.
    """
    check_choice("split", split, ("train", "test"))
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise ValueError(f"{flag} {n!r} is invalid: a number of images >= 1")
    if loaded.source == "run":
        c = loaded.cfg
        s = data.get_splits(c.dataset, c.train_size, c.val_size, c.test_size, c.seed, root=root)
        x, y = s.train if split == "train" else s.test
        where = f"the run's {split} split"
    else:
        x, y = data.load_dataset(loaded.dataset, split == "train", root)
        where = f"the {loaded.dataset} {split} set"
    if n is None:
        return (x, y), f"{len(y)} images: all of {where}"
    if n > len(y):
        return (x, y), f"{flag} {n} capped at the {len(y)} images of {where}"
    return (x[:n], y[:n]), f"{n} images: the first {n} of {where} ({len(y)})"


def default_threat(loaded: Loaded, eps: float | None = None, norm: str | None = None) -> tuple[float, str]:
    """ε and norm: given ones, else the run's, else the published models' (8/255 L∞, 0.5 L2)."""
    if norm is not None:
        check_choice("--norm", norm, ("linf", "l2"))
    if loaded.source == "run" and (norm is None or norm == loaded.cfg.norm):
        norm, eps = loaded.cfg.norm, loaded.cfg.eps if eps is None else eps
    norm = norm or "linf"
    eps = ({"linf": 8 / 255, "l2": 0.5}[norm]) if eps is None else eps
    check_eps(eps, norm)
    return eps, norm


def resolve_device(name) -> torch.device:
    """``auto`` (a GPU when there is one), ``cpu``, ``cuda``, ``cuda:N``; a bad name names ``--device``."""
    try:
        dev = resolve(str(name))
    except ValueError:
        raise ValueError(f"unknown --device {name!r}; valid choices: auto, cpu, cuda, cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name!r}: no CUDA GPU is available here; use --device cpu (or auto)")
    return dev


def number(text: str) -> float:
    """A CLI number: ``0.031``, ``8/255`` (:func:`awp_lib.validate.parse_number`)."""
    try:
        return parse_number(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_model_args(p) -> None:
    """The flags that say what a third-party checkpoint is (ignored by run checkpoints)."""
    g = p.add_argument_group("third-party checkpoints (a checkpoint of our runs needs none of these)")
    g.add_argument("--model", default=None, help=f"architecture: {', '.join(MODELS)}")
    g.add_argument("--dataset", default=None, help=f"dataset: {', '.join(DATASETS)}")
    g.add_argument("--normalize", default=None, help="dataset (mean/std inside the model: Rice et al., AT-AWP) | "
                   "none ([0, 1] inputs: TRADES, MART, TRADES-AWP, RobustBench); default: none for "
                   "WideResNets, dataset otherwise")
    g.add_argument("--width", type=int, default=None, help="smallcnn/mlp width (default 16)")
    p.add_argument("--eps", type=number, default=None,
                   help="ε (default: the run's; 8/255 L∞ or 0.5 L2 for a third-party file)")
    p.add_argument("--norm", default=None, help="linf | l2 (default: the run's, else linf)")
    p.add_argument("--root", default=None, help="data folder (default: $AWP_DATA, else data/ of the repository)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
