"""RST (Carmon et al. 2019): pseudo-labels for an unlabelled pool, and batches mixing them in."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from . import data, models
from .config import Config
from .distributed import _from_rank0
from .io import load_torch, save_torch
from .runs import RunDir


def pseudo_label(cfg: Config, splits: data.Splits, device) -> torch.Tensor:
    """Train a standard (non-robust) model on the labelled set, then label the pool with it."""
    torch.manual_seed(cfg.seed + 7)
    model = models.build_model(cfg.model, cfg.dataset, cfg.width).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    loader = data.Loader(*splits.train, cfg.batch_size, True, cfg.augment or data.AUGMENT[cfg.dataset],
                         cfg.seed + 7, device)
    steps = cfg.pseudo_epochs * len(loader)
    for e in range(cfg.pseudo_epochs):
        loader.set_epoch(e)
        model.train()
        for i, (x, y) in enumerate(loader):
            for g in opt.param_groups:
                g["lr"] = cfg.lr / 2 * (math.cos(math.pi * (e * len(loader) + i) / steps) + 1)
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
    model.eval()
    pool = data.Loader(splits.pool[0], splits.pool[1], 512, device=device)
    with torch.no_grad():
        return torch.cat([model(x).argmax(1).cpu() for x, _ in pool])


class MixedLoader:
    """RST batches: a ``1 − unsup_fraction`` share of labelled images, the rest pseudo-labelled.

    An epoch is one pass over the labelled set.
    """

    def __init__(self, labelled: data.Loader, pseudo: data.Loader, unsup_fraction: float):
        self.labelled, self.pseudo, self.f = labelled, pseudo, unsup_fraction

    def set_epoch(self, e):
        self.labelled.set_epoch(e)
        self.pseudo.set_epoch(e)

    def __len__(self):
        return len(self.labelled)

    def __iter__(self):
        it = iter(self.pseudo)
        for x, y in self.labelled:
            try:
                xu, yu = next(it)
            except StopIteration:
                it = iter(self.pseudo)
                xu, yu = next(it)
            yield torch.cat([x, xu]), torch.cat([y, yu])


def rst_loader(cfg: Config, splits: data.Splits, out, device, augment: str, shard: dict, writer: bool) -> MixedLoader:
    """The RST training batches. The pseudo-labels are read from ``out/pseudo_labels.pt`` if a
    previous (interrupted) run made them; else process 0 makes them, shares them and saves them."""
    labels_path = RunDir(out).pseudo_labels if out else None
    if labels_path is not None and labels_path.exists():
        pseudo = load_torch(labels_path)
    else:
        pseudo = _from_rank0(pseudo_label(cfg, splits, device) if writer
                             else torch.zeros(len(splits.pool[1]), dtype=torch.long), device)
        if labels_path is not None and writer:
            save_torch(pseudo, labels_path)
    n_lab = max(1, round(cfg.batch_size * (1 - cfg.unsup_fraction)))
    return MixedLoader(data.Loader(*splits.train, n_lab, True, augment, cfg.seed, device, **shard),
                       data.Loader(splits.pool[0], pseudo, cfg.batch_size - n_lab, True, augment,
                                   cfg.seed + 1, device, drop_last=len(pseudo) >= cfg.batch_size - n_lab, **shard),
                       cfg.unsup_fraction)
