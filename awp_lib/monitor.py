"""A run's evaluation: every evaluated epoch (the cheap monitor, whose validation robust accuracy
picks ``best``) and at the end (the full-strength final evaluation of best and last).

Both attack :func:`awp_lib.evalcopy.eval_copy` of the model, BN in eval mode, at the weights w.
"""
from __future__ import annotations

import json
import time

import torch

from . import attacks, data
from .config import Config
from .distributed import _sum_over_processes
from .evalcopy import chunks, eval_batch, eval_copy
from .io import load_torch, save_text, save_torch
from .runs import RunDir


def robust_accuracy(model, loader, cfg: Config, steps: int) -> tuple[float, float]:
    """(natural, PGD-``steps``) accuracy at the current weights, BN in eval mode."""
    r = evaluate_split(model, loader, cfg, steps)
    return r["natural"], r["robust"]


def evaluate_split(model, loader, cfg: Config, steps: int) -> dict:
    """Natural and PGD-``steps`` accuracy and the mean robust cross-entropy (the robust loss
    by which Stutz et al. define robust overfitting) at the current weights, BN in eval mode,
    computed on :func:`awp_lib.evalcopy.eval_copy` of the model in its batches."""
    fast = eval_copy(model)
    nat = rob = loss = n = 0
    for xs, ys in loader:
        for x, y in chunks(fast, xs, ys):
            x_adv = attacks.pgd(fast, x, y, cfg.eps, cfg.alpha, steps, cfg.norm, bn_mode="eval")
            with torch.no_grad():  # one forward pass for both (BN in eval mode: the same numbers)
                out = fast(torch.cat([x, x_adv])).float()
            hit = out.argmax(1) == torch.cat([y, y])
            nat += hit[:len(y)].sum().item()
            rob += hit[len(y):].sum().item()
            loss += torch.nn.functional.cross_entropy(out[len(y):], y, reduction="sum").item()
            n += len(y)
    nat, rob, loss, n = _sum_over_processes([nat, rob, loss, n], next(model.parameters()).device)
    return {"natural": nat / n, "robust": rob / n, "robust_loss": loss / n}


FINAL_PARTS = ("train", "val", "test")
# Config keys of the final evaluation only: changing them on a trained run redoes that evaluation.
FINAL_KEYS = ("final_attack_steps", "final_train_size", "final_test_size")


def forget_final_evaluation(run: RunDir, cfg: Config, diff: dict) -> None:
    """Record the new final-evaluation keys in ``config.json`` and forget the old final numbers
    (in the metrics and the last checkpoint), so that :func:`train` evaluates again."""
    saved = run.saved_config()
    save_text(json.dumps({**saved, **{k: b for k, (_, b) in diff.items()}}, indent=2), run.config_file)

    def forget(rows):
        return [{k: v for k, v in r.items() if not k.startswith("final_") and k != "time_final"} for r in rows]
    last = run.checkpoint("last")
    if last.exists():
        ck = load_torch(last)
        rows = forget(json.loads(ck["metrics"]))
        save_torch({**ck, "metrics": json.dumps(rows)}, last)
        run.write_rows(rows)


def final_test_images(cfg: Config) -> int:
    """How many test images the final evaluation attacks: the first ``final_test_size`` of the
    run's test split (``test_size``, else the dataset's whole test set)."""
    split = cfg.test_size or data.TEST_SIZES[cfg.dataset]
    return min(cfg.final_test_size or split, split)


def final_train_images(cfg: Config) -> int:
    """How many training images the final evaluation attacks: the first ``final_train_size``
    (None: the monitor's ``eval_train_size``)."""
    n = cfg.final_train_size or cfg.eval_train_size
    return min(n, cfg.train_size) if cfg.train_size else n


def final_done(cfg: Config, rows: list[dict]) -> bool:
    """Whether the run's final evaluation is made (a run evaluated before the robust loss was
    recorded counts as not made: its evaluation is redone, its training kept)."""
    return cfg.final_attack_steps == 0 or bool(rows) and "final_test_robust_loss" in rows[-1]


def final_evaluation(cfg: Config, model, rows, best, run, splits, device, amp, shard, writer) -> list[dict]:
    """Natural and PGD-``final_attack_steps`` accuracy of the best and the last checkpoint on the
    train subset, the validation split and the test split (its first ``final_test_size`` images,
    else all of it), written into their epochs' rows as ``final_<part>_natural``,
    ``final_<part>_robust`` and ``final_<part>_robust_loss`` (the mean cross-entropy at the attack's
    inputs); the per-epoch monitor is cheaper."""
    n_eval = min(final_train_images(cfg), len(splits.train[1]))
    n_test = cfg.final_test_size or len(splits.test[1])
    sets = {"train": (splits.train[0][:n_eval], splits.train[1][:n_eval]), "val": splits.val,
            "test": (splits.test[0][:n_test], splits.test[1][:n_test])}
    loaders = {k: data.Loader(*v, eval_batch(device) * shard["shard"][1], device=device, **shard)
               for k, v in sets.items()}
    last_state = {k: v.clone() for k, v in model.state_dict().items()}
    targets = {rows[-1]["epoch"]: last_state}
    if best["epoch"] is not None and best["epoch"] != rows[-1]["epoch"] and run is not None:
        targets[best["epoch"]] = load_torch(run.checkpoint("best"))["model"]
    label = f"PGD-{cfg.final_attack_steps}"
    for epoch, state in targets.items():
        model.load_state_dict(state)
        torch.manual_seed(cfg.seed + 104_729)  # the attacks' random starts: the same after a resume
        row = next(r for r in rows if r["epoch"] == epoch)
        t0 = time.perf_counter()
        with amp:
            for part in FINAL_PARTS:
                r = evaluate_split(model, loaders[part], cfg, cfg.final_attack_steps)
                for k in ("natural", "robust", "robust_loss"):
                    row[f"final_{part}_{k}"] = r[k]
        row["final_attack"], row["time_final"] = label, time.perf_counter() - t0
    model.load_state_dict(last_state)
    return rows
