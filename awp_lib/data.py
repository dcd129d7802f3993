"""Datasets as in-memory uint8 tensors, a seeded validation split, and a batch loader.

All images are kept as ``uint8`` tensors of shape ``N x C x H x W`` and converted to floats in
[0, 1] batch by batch; normalisation lives inside the model (:mod:`awp_lib.models`). Keeping
the data as tensors makes epochs reproducible from ``(seed, epoch)`` alone, which is what
lets an interrupted run resume bit-identically.

Datasets: ``fashion-mnist`` (the default of the small profiles), ``cifar10``, ``cifar100``,
``svhn``, read by torchvision's dataset classes from ``root`` (env ``AWP_DATA``, default
``./data``). Nothing is downloaded unless ``download=True``.
"""
from __future__ import annotations

import gzip
import os
import pickle
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from .validate import check_choice

DATASETS = ("fashion-mnist", "cifar10", "cifar100", "svhn")
NUM_CLASSES = {"fashion-mnist": 10, "cifar10": 10, "cifar100": 100, "svhn": 10}
# The class names of the datasets whose pictures the book shows (index = label).
CLASS_NAMES = {
    "fashion-mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                      "Sneaker", "Bag", "Ankle boot"),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                "truck"),
    "svhn": tuple(str(d) for d in range(10)),
}
SHAPES = {"fashion-mnist": (1, 28, 28), "cifar10": (3, 32, 32), "cifar100": (3, 32, 32), "svhn": (3, 32, 32)}
# Per-channel mean/std of the training sets, used by the Normalize layer inside each model.
MEAN_STD = {
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "svhn": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
}
# The paper's augmentation: pad-4 random crop + horizontal flip for CIFAR; none for SVHN
# (digits are not flip-invariant) and none for Fashion-MNIST by default.
AUGMENT = {"fashion-mnist": "none", "cifar10": "crop-flip", "cifar100": "crop-flip", "svhn": "none"}
# Images in each dataset's test split.
TEST_SIZES = {"cifar10": 10_000, "cifar100": 10_000, "svhn": 26_032, "fashion-mnist": 10_000}
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
PAPER_VAL_SIZE = 1000  # held out of the training set at paper scale (Rice et al. 2020)


def project_root() -> Path:
    """The repository root: the first folder upwards from the cwd holding ``_toc.yml`` (else the cwd).

    Notebooks execute with ``book/`` as their working directory; runs and results still go
    to the root's ``runs/`` and ``results/``. ``$AWP_HOME`` overrides.
    """
    if os.environ.get("AWP_HOME"):
        return Path(os.environ["AWP_HOME"])
    here = Path.cwd().resolve()
    for p in (here, *here.parents):
        if (p / "_toc.yml").exists():
            return p
    return here


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data directory: ``root``, else env ``AWP_DATA``, else ``data/`` of the repository (the first
    folder upwards from the cwd with ``_toc.yml``; notebooks run in ``book/``), else ``./data``."""
    if root is not None:
        return Path(root)
    if os.environ.get("AWP_DATA"):
        return Path(os.environ["AWP_DATA"])
    return project_root() / "data"


def prepare_fashion_mnist(root=None, source: Path = DEBIAN_FASHION_MNIST) -> Path:
    """Gunzip Debian's ``dataset-fashion-mnist`` files into ``<root>/FashionMNIST/raw/``.

    Idempotent: files already there are kept. Returns the raw folder.
    """
    raw = data_root(root) / "FashionMNIST" / "raw"
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    if all((raw / n).exists() for n in names):
        return raw
    if not all((source / f"{n}.gz").exists() for n in names):
        raise FileNotFoundError(
            f"Fashion-MNIST not found: looked in {raw} and in {source}. Get it with "
            "`apt-get install dataset-fashion-mnist` (Debian), or call "
            "awp_lib.data.load_dataset('fashion-mnist', download=True) where the internet is reachable.")
    raw.mkdir(parents=True, exist_ok=True)
    for n in names:
        if not (raw / n).exists():
            tmp = raw / f".{n}.{os.getpid()}.tmp"  # per process: torchrun ranks may prepare at once
            with gzip.open(source / f"{n}.gz", "rb") as fin, open(tmp, "wb") as fout:
                shutil.copyfileobj(fin, fout)
            os.replace(tmp, raw / n)
    return raw


def _no_md5(cls):
    """A torchvision dataset class that checks files exist instead of hashing ~170 MB on every load."""
    class Checked(cls):
        def _check_integrity(self):  # CIFAR / SVHN
            base = Path(self.root) / getattr(self, "base_folder", "")
            if cls.__name__ == "SVHN":
                return (Path(self.root) / self.filename).exists()
            return all((base / f[0]).exists() for f in self.train_list + self.test_list)

        def _load_meta(self):  # CIFAR: the class names, without the md5 check
            path = Path(self.root) / self.base_folder / self.meta["filename"]
            if not path.exists():
                raise RuntimeError(f"{path} is missing")
            with open(path, "rb") as f:
                self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
            self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
    Checked.__name__ = cls.__name__
    return Checked


def load_dataset(name: str, train: bool, root=None, download: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(x, y)``: uint8 images ``N x C x H x W`` and int64 labels, via torchvision's classes."""
    import torchvision.datasets as tvd  # CLI start-up time
    check_choice("dataset", name, DATASETS)
    root = data_root(root)
    how = {
        "fashion-mnist": "apt-get install dataset-fashion-mnist, then `python -m awp_lib data`",
        "cifar10": "`python -m awp_lib data --download cifar10` (or torchvision.datasets.CIFAR10(root, download=True))",
        "cifar100": "`python -m awp_lib data --download cifar100`",
        "svhn": "`python -m awp_lib data --download svhn`",
    }[name]
    try:
        if name == "fashion-mnist":
            if not download:
                prepare_fashion_mnist(root)
            ds = tvd.FashionMNIST(str(root), train=train, download=download)
            return ds.data.unsqueeze(1).contiguous(), ds.targets.long()
        if name in ("cifar10", "cifar100"):
            cls = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
            ds = (cls if download else _no_md5(cls))(str(root), train=train, download=download)
            x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
            return x, torch.tensor(ds.targets, dtype=torch.long)
        ds = (tvd.SVHN if download else _no_md5(tvd.SVHN))(str(root), split="train" if train else "test", download=download)
        return torch.from_numpy(ds.data).contiguous(), torch.from_numpy(ds.labels).long()
    except (RuntimeError, FileNotFoundError) as e:
        raise FileNotFoundError(f"dataset {name!r} ({'train' if train else 'test'}) not found under {root.resolve()}: "
                                f"{e}. Get it with {how}; set AWP_DATA to use another folder.") from e


@dataclass
class Splits:
    """Train / validation / test tensors, plus the unused rest of the training set (``pool``).

    ``pool`` holds training images left out of a subset; RST uses it as its unlabelled pool
    (its labels are kept only so that tests can measure pseudo-label quality).
    """
    name: str
    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    pool: tuple[torch.Tensor, torch.Tensor]

    @property
    def num_classes(self) -> int:
        return NUM_CLASSES[self.name]


def default_val_size(train_size: int, full_size: int) -> int:
    """1,000 images at paper scale, proportionate for subsets, never fewer than 100."""
    return max(100, round(PAPER_VAL_SIZE * train_size / full_size))


def get_splits(name: str, train_size: int | None = None, val_size: int | None = None,
               test_size: int | None = None, seed: int = 0, root=None, download: bool = False) -> Splits:
    """Load ``name`` and split it with a seeded permutation of the training set.

    The first ``val_size`` permuted training images form the validation split (never used
    for training), the next ``train_size`` the training set, the rest the pool. ``test_size``
    takes a seeded subset of the test set.
    """
    xtr, ytr = load_dataset(name, True, root, download)
    xte, yte = load_dataset(name, False, root, download)
    n = len(ytr)
    for key, v, limit in (("train_size", train_size, n), ("test_size", test_size, len(yte)), ("val_size", val_size, n)):
        if v is not None and not (isinstance(v, int) and 0 < v <= limit):
            raise ValueError(f"{key}={v!r} is invalid: use a positive integer at most {limit} for {name}")
    if val_size is None:
        val_size = default_val_size(train_size or n - PAPER_VAL_SIZE, n)
    if train_size is None:
        train_size = n - val_size
    if train_size + val_size > n:
        raise ValueError(f"train_size={train_size} + val_size={val_size} exceeds the {n} training images of {name}")
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    iv, itr, ipool = perm[:val_size], perm[val_size:val_size + train_size], perm[val_size + train_size:]
    ite = torch.randperm(len(yte), generator=g)[:test_size] if test_size else torch.arange(len(yte))
    return Splits(name, (xtr[itr], ytr[itr]), (xtr[iv], ytr[iv]), (xte[ite], yte[ite]), (xtr[ipool], ytr[ipool]))


def flip_labels(splits: Splits, fraction: float, seed: int = 0) -> Splits:
    """``splits`` with ``fraction`` of the *training* labels replaced by another class drawn
    uniformly (seeded); validation, test and pool keep their true labels."""
    if not 0 <= fraction < 1:
        raise ValueError(f"label_noise={fraction!r} is invalid: a fraction of training labels in [0, 1)")
    x, y = splits.train
    g = torch.Generator().manual_seed(seed + 15_485_863)
    k = round(fraction * len(y))
    idx = torch.randperm(len(y), generator=g)[:k]
    y = y.clone()
    y[idx] = (y[idx] + torch.randint(1, splits.num_classes, (k,), generator=g)) % splits.num_classes
    return replace(splits, train=(x, y))


def augment_batch(x: torch.Tensor, mode: str, generator: torch.Generator) -> torch.Tensor:
    """Pad-4 random crop + random horizontal flip (``crop-flip``) on a float batch, or ``none``."""
    check_choice("augmentation", mode, ("none", "crop-flip"))
    if mode == "none":
        return x
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    dx = torch.randint(0, 9, (n,), generator=generator)
    dy = torch.randint(0, 9, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    rows = (dy[:, None] + torch.arange(h)[None]).to(x.device)  # n x h
    cols = (dx[:, None] + torch.arange(w)[None]).to(x.device)  # n x w
    cols = torch.where(flip.to(x.device)[:, None], cols.flip(1), cols)
    idx = torch.arange(n, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[idx, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()


class Loader:
    """Batches of ``(x in [0,1] float, y)`` from uint8 tensors.

    Shuffling and augmentation are seeded by ``(seed, epoch)``: call :meth:`set_epoch` before
    iterating, and epoch ``e`` yields the same batches in every run, resumed or not.
    """

    def __init__(self, x, y, batch_size: int = 128, shuffle: bool = False, augment: str = "none",
                 seed: int = 0, device: str | torch.device = "cpu", drop_last: bool = False,
                 shard: tuple[int, int] = (0, 1), channels_last: bool = False):
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} images but y has {len(y)} labels")
        if batch_size <= 0:
            raise ValueError(f"batch_size={batch_size!r} must be a positive integer")
        self.x, self.y = x, y
        self.batch_size, self.shuffle, self.augment, self.seed = batch_size, shuffle, augment, seed
        self.device, self.drop_last, self.epoch = torch.device(device), drop_last, 0
        # Data-parallel training (torchrun): process ``rank`` of ``world`` gets images rank, rank + world, ...
        # of every batch, after augmentation, so the processes together see exactly the batches of one.
        self.rank, self.world = shard
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        check_choice("augmentation", augment, ("none", "crop-flip"))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        full, rest = divmod(len(self.y), self.batch_size)
        # a last partial batch is kept unless drop_last, or it has fewer images than processes
        return full + (1 if rest and not self.drop_last and rest >= self.world else 0)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        n = len(self.y)
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            x = augment_batch(self.x[idx].to(self.device, non_blocking=True).float().div_(255), self.augment, g)
            y = self.y[idx].to(self.device, non_blocking=True)
            if self.world > 1:
                x, y = x[self.rank::self.world], y[self.rank::self.world]
            yield (x.contiguous(memory_format=self.memory_format) if x.dim() == 4 else x), y
