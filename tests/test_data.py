"""Dataset loaders on small files the tests write in the real on-disk formats."""
import pickle

import numpy as np
import pytest
import torch

from awp_lib import data


def write_cifar(root, name, n_train=20, n_test=10, rng=np.random.default_rng(0)):
    folder, label_key = ("cifar-10-batches-py", "labels") if name == "cifar10" else ("cifar-100-python", "fine_labels")
    k = 10 if name == "cifar10" else 100
    d = root / folder
    d.mkdir(parents=True)
    files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"] if name == "cifar10" else ["train", "test"]
    stored = {}
    for f in files:
        n = n_test if "test" in f else (n_train if name == "cifar100" else n_train // 5)
        entry = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), label_key: rng.integers(0, k, n).tolist()}
        stored[f] = entry
        with open(d / f, "wb") as fh:
            pickle.dump(entry, fh)
    meta = ("batches.meta", "label_names") if name == "cifar10" else ("meta", "fine_label_names")
    with open(d / meta[0], "wb") as fh:
        pickle.dump({meta[1]: [f"c{i}" for i in range(k)]}, fh)
    return stored


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_real_format(tmp_path, name):
    stored = write_cifar(tmp_path, name)
    x, y = data.load_dataset(name, train=False, root=tmp_path)
    test_entry = stored["test_batch" if name == "cifar10" else "test"]
    assert x.shape == (10, 3, 32, 32) and x.dtype == torch.uint8
    # the first image, channel 0, is the first 1024 bytes of the row (CIFAR's channel-major layout)
    assert torch.equal(x[0, 0].flatten(), torch.from_numpy(test_entry["data"][0, :1024]))
    label_key = "labels" if name == "cifar10" else "fine_labels"
    assert y.tolist() == test_entry[label_key]
    xtr, _ = data.load_dataset(name, train=True, root=tmp_path)
    assert len(xtr) == 20


def test_svhn_real_format(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    rng = np.random.default_rng(0)
    for split, n in (("train", 30), ("test", 12)):
        X = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = rng.integers(1, 11, (n, 1)).astype(np.uint8)  # SVHN stores digit 0 as label 10
        scipy_io.savemat(tmp_path / f"{split}_32x32.mat", {"X": X, "y": y})
        if split == "test":
            X_test, y_test = X, y
    x, labels = data.load_dataset("svhn", train=False, root=tmp_path)
    assert x.shape == (12, 3, 32, 32)
    assert torch.equal(x[3, 1], torch.from_numpy(X_test[:, :, 1, 3]).T.contiguous()) or \
        torch.equal(x[3, 1], torch.from_numpy(X_test[:, :, 1, 3]))
    expected = y_test[:, 0].astype(np.int64) % 10
    assert labels.tolist() == expected.tolist() and labels.max() <= 9
    s = data.get_splits("svhn", root=tmp_path, val_size=5, seed=0)
    assert len(s.val[1]) == 5 and len(s.train[1]) == 25


def test_missing_dataset_says_where_and_how(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        data.load_dataset("cifar10", train=True, root=tmp_path)
    msg = str(e.value)
    assert str(tmp_path.resolve()) in msg and "--download cifar10" in msg


def test_missing_fashion_mnist(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        data.prepare_fashion_mnist(tmp_path, source=tmp_path / "nowhere")
    assert "apt-get install dataset-fashion-mnist" in str(e.value) and "nowhere" in str(e.value)


def test_unknown_dataset():
    with pytest.raises(ValueError, match=r"unknown dataset 'mnist'; valid choices: fashion-mnist, cifar10"):
        data.get_splits("mnist")


def test_fashion_mnist_splits_are_disjoint_and_seeded(fmnist):
    s2 = data.get_splits("fashion-mnist", train_size=2000, test_size=500, seed=0)
    assert torch.equal(fmnist.train[0], s2.train[0]) and torch.equal(fmnist.test[1], s2.test[1])
    s3 = data.get_splits("fashion-mnist", train_size=2000, test_size=500, seed=1)
    assert not torch.equal(fmnist.train[1], s3.train[1])
    # validation held out of the training set: no identical image appears in both
    tr = {bytes(t.numpy()) for t in fmnist.train[0]}
    assert not any(bytes(v.numpy()) in tr for v in fmnist.val[0][:50])
    assert len(fmnist.val[1]) == data.default_val_size(2000, 60000) == 100
    assert len(fmnist.train[1]) + len(fmnist.val[1]) + len(fmnist.pool[1]) == 60000
    assert data.default_val_size(49000, 50000) == 980 and data.default_val_size(50000 - 1000, 50000) >= 980


@pytest.mark.parametrize("kw", [dict(train_size=0), dict(train_size=70000), dict(test_size=-1), dict(val_size=1.5)])
def test_bad_sizes(kw):
    with pytest.raises(ValueError, match=list(kw)[0]):
        data.get_splits("fashion-mnist", **kw)


def test_loader_reproducible_and_augmentation():
    x = torch.randint(0, 256, (50, 3, 32, 32), dtype=torch.uint8)
    y = torch.arange(50)
    a = data.Loader(x, y, batch_size=16, shuffle=True, augment="crop-flip", seed=3)
    b = data.Loader(x, y, batch_size=16, shuffle=True, augment="crop-flip", seed=3)
    a.set_epoch(2), b.set_epoch(2)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
        assert xa.min() >= 0 and xa.max() <= 1
    b.set_epoch(3)
    assert not torch.equal(next(iter(a))[1], next(iter(b))[1])
    assert len(a) == 4
    # the crop-flip of one image is a shifted (possibly mirrored) window of the zero-padded original
    img = torch.rand(1, 1, 8, 8)
    out = data.augment_batch(img, "crop-flip", torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(img, (4, 4, 4, 4))[0, 0]
    windows = [padded[i:i + 8, j:j + 8] for i in range(9) for j in range(9)]
    assert any(torch.equal(out[0, 0], w) or torch.equal(out[0, 0], w.flip(1)) for w in windows)
    with pytest.raises(ValueError, match="valid choices: none, crop-flip"):
        data.Loader(x, y, augment="cutmix")
