"""`python -m awp_lib evaluate` and `landscape` on run checkpoints and on the published layouts.

Published checkpoints cannot be downloaded here: the tests build models with our
architectures, save their weights in each published layout, and write small CIFAR-10 files
in the real on-disk format whose test labels are the source model's own predictions, so that
a correctly loaded (and correctly normalised) model scores exactly 100% natural accuracy.
"""
import json
import pickle
import shutil
from pathlib import Path

import nbformat
import pytest
import torch
from test_data import write_cifar

from awp_lib import attacks as A
from awp_lib import checkpoints, data, models
from awp_lib.__main__ import main
from awp_lib.checkpoints import load_run_model

ROOT = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- helpers
def cli(capsys, *argv):
    """Run the command line; returns (exit code, stdout, stderr)."""
    try:
        main([str(a) for a in argv])
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def labelled_cifar(root: Path, model, n_test: int) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10 files in the real format (tests/test_data.py) whose test labels are ``model``'s predictions."""
    write_cifar(root, "cifar10", n_train=20, n_test=n_test)
    x, _ = data.load_dataset("cifar10", False, root)
    with torch.no_grad():
        pred = model.eval()(x.float() / 255).argmax(1)
    path = root / "cifar-10-batches-py" / "test_batch"
    entry = pickle.loads(path.read_bytes())
    entry["labels"] = pred.tolist()
    path.write_bytes(pickle.dumps(entry))
    return x.float() / 255, pred


def fgsm_accuracy(model, x, y, eps):
    with torch.no_grad():
        return (model(A.fgsm(model, x, y, eps)).argmax(1) == y).float().mean().item()


def dataparallel(state):  # AT-AWP / Rice et al. / TRADES: model.state_dict() of nn.DataParallel
    return {f"module.{k}": v for k, v in state.items()}


LAYOUTS = {
    "dataparallel": dataparallel,
    "robustbench": lambda s: {"state_dict": dataparallel(s)},  # {"state_dict": ...} with module. keys
    "model-dict": lambda s: {"model": s, "epoch": 200, "best_robust": 0.55},  # a training script's dict
}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """A finished smoke run (SmallCNN, Fashion-MNIST, 256 training and 200 test images)."""
    from awp_lib import train
    from awp_lib.config import make_config
    out = tmp_path_factory.mktemp("runs") / "smoke" / "at-s0"
    train.train(make_config("smoke"), out, progress="none")
    return out


@pytest.fixture(scope="module")
def preact(tmp_path_factory):
    """A PreAct ResNet-18 (CIFAR mean/std inside, as the Rice et al. and AT-AWP ones) and its data."""
    torch.manual_seed(0)
    src = models.build_model("preactresnet18", "cifar10").eval()
    root = tmp_path_factory.mktemp("cifar-preact")
    x, y = labelled_cifar(root, src, n_test=8)
    return src, root, x, y


def save_layout(path: Path, layout: str, state: dict) -> Path:
    torch.save(LAYOUTS[layout](state), path)
    return path


# ----------------------------------------------------------------------------- evaluate: our runs
def test_evaluate_run_checkpoint_needs_no_flags(smoke_run, capsys):
    ck = smoke_run / "checkpoints" / "last.pt"
    code, out, err = cli(capsys, "evaluate", ck, "--attacks", "natural,fgsm,pgd20,autoattack", "--n", 16)
    assert code == 0, err
    res = json.loads((smoke_run / "evaluate" / "evaluate-last.json").read_text())
    assert json.loads(out.strip().splitlines()[-1])["accuracy"] == res["accuracy"]
    assert (res["source"], res["model"], res["dataset"], res["normalize"]) == ("run", "smallcnn", "fashion-mnist",
                                                                               "dataset")
    assert res["threat"] == {"norm": "linf", "eps": 0.1, "alpha": 0.025} and res["n"] == 16
    assert list(res["accuracy"]) == ["natural", "fgsm", "pgd20", "autoattack"]
    # the numbers are those of the run's model on the first 16 images of the run's own test split
    model, cfg = load_run_model(ck)
    s = data.get_splits(cfg.dataset, cfg.train_size, cfg.val_size, cfg.test_size, cfg.seed)
    x, y = s.test[0][:16].float() / 255, s.test[1][:16]
    with torch.no_grad():
        natural = (model(x).argmax(1) == y).float().mean().item()
    assert res["accuracy"]["natural"] == pytest.approx(natural)
    assert res["accuracy"]["fgsm"] == pytest.approx(fgsm_accuracy(model, x, y, 0.1))
    assert 0 <= res["accuracy"]["autoattack"] <= res["accuracy"]["natural"]
    md = (smoke_run / "evaluate" / "evaluate-last.md").read_text()
    assert f"| natural | {100 * natural:.2f} |" in md and "| AutoAttack (standard) |" in md
    assert "PGD-20:" in err and "autoattack: robust accuracy" in err  # progress: one line per attack, AA's log


def test_run_checkpoint_flags_must_agree(smoke_run, capsys):
    code, _, err = cli(capsys, "evaluate", smoke_run / "checkpoints" / "last.pt", "--model", "wrn-34-10")
    assert code == 2 and "--model 'wrn-34-10' disagrees with the run's config" in err and "'smallcnn'" in err


def test_bad_attack_names_the_choices(smoke_run, capsys):
    code, _, err = cli(capsys, "evaluate", smoke_run / "checkpoints" / "last.pt", "--attacks", "natural,pgd7")
    assert code == 2
    assert "unknown attack (--attacks) 'pgd7'; valid choices: natural, fgsm, pgd20, pgd100, cw, autoattack" in err


# ----------------------------------------------------------------------------- evaluate: published layouts
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_evaluate_published_preact_layouts(preact, tmp_path, capsys, layout):
    src, root, x, y = preact
    ck = save_layout(tmp_path / f"{layout}.pt", layout, src.state_dict())
    code, out, err = cli(capsys, "evaluate", ck, "--model", "preactresnet18", "--dataset", "cifar10",
                         "--attacks", "natural,fgsm", "--n", 1000, "--root", root, "--device", "cpu")
    assert code == 0, err
    res = json.loads((tmp_path / "evaluate" / f"evaluate-{layout}.json").read_text())
    assert res["source"] == "file" and res["normalize"] == "dataset" and "Rice et al." in res["notes"][0]
    assert res["n"] == 8 and "--n 1000 capped at the 8 images of the cifar10 test set" in res["images"]
    assert res["threat"]["eps"] == pytest.approx(8 / 255) and res["threat"]["norm"] == "linf"
    assert res["accuracy"]["natural"] == 1.0  # the labels are the source model's predictions
    assert res["accuracy"]["fgsm"] == pytest.approx(fgsm_accuracy(src, x, y, 8 / 255))
    n_keys = len(src.state_dict())
    wrapper = {"dataparallel": None, "robustbench": "state_dict", "model-dict": "model"}[layout]
    assert res["load"] == {"tensors": n_keys, "stripped_module_prefix": 0 if layout == "model-dict" else n_keys,
                           "dropped_sub_block1": 0, "wrapper": wrapper}


def test_normalisation_is_explicit(preact, tmp_path):
    src, _, x, _ = preact
    ck = save_layout(tmp_path / "at-awp.pt", "dataparallel", src.state_dict())
    right = checkpoints.load_model(ck, "preactresnet18", "cifar10")
    wrong = checkpoints.load_model(ck, "preactresnet18", "cifar10", normalize="none")
    with torch.no_grad():
        assert torch.equal(right.model(x), src(x))
        assert not torch.allclose(wrong.model(x), src(x), atol=1e-3)
    assert (right.normalize, wrong.normalize) == ("dataset", "none")
    assert checkpoints.default_normalize("wrn-34-10")[0] == "none"
    with pytest.raises(ValueError, match=r"unknown --normalize 'meanstd'; valid choices: dataset, none"):
        checkpoints.load_model(ck, "preactresnet18", "cifar10", normalize="meanstd")


def test_evaluate_trades_wideresnet_with_sub_block1(tmp_path, capsys):
    """TRADES-AWP / TRADES / MART layout: WRN-34-10 on [0, 1] inputs, DataParallel keys, an unused sub_block1."""
    torch.manual_seed(0)
    src = models.build_model("wrn-34-10", "cifar10", normalize="none").eval()
    x, y = labelled_cifar(tmp_path / "cifar", src, n_test=3)
    state = dataparallel(src.state_dict())
    block1 = {k: v for k, v in src.state_dict().items() if k.startswith("block1.")}
    state.update({f"module.sub_block1.{k[len('block1.'):]}": torch.randn_like(v.float()).to(v.dtype)
                  for k, v in block1.items()})
    ck = tmp_path / "model-wideres-epoch76.pt"
    torch.save(state, ck)
    code, _, err = cli(capsys, "evaluate", ck, "--model", "wrn-34-10", "--dataset", "cifar10",
                       "--attacks", "natural,fgsm", "--root", tmp_path / "cifar", "--out", tmp_path / "eval")
    assert code == 0, err
    res = json.loads((tmp_path / "eval" / "evaluate-model-wideres-epoch76.json").read_text())
    assert res["normalize"] == "none" and "TRADES" in res["notes"][0]  # the default for WideResNets, said
    assert res["load"]["dropped_sub_block1"] == len(block1) > 0
    assert res["load"]["stripped_module_prefix"] == len(state)  # every key, sub_block1 included
    assert res["n"] == 3 and res["accuracy"]["natural"] == 1.0
    assert res["accuracy"]["fgsm"] == pytest.approx(fgsm_accuracy(src, x, y, 8 / 255))
    assert f"dropped {len(block1)} tensors of the unused sub_block1" in err


# ----------------------------------------------------------------------------- refusals
def test_third_party_file_needs_model_and_dataset(smoke_run, tmp_path, capsys):
    f = tmp_path / "downloads" / "last.pt"  # one of our checkpoints, moved out of its run: no config
    f.parent.mkdir()
    shutil.copy(smoke_run / "checkpoints" / "last.pt", f)
    code, out, err = cli(capsys, "evaluate", f)
    assert code == 2 and "Traceback" not in err
    assert f"{f} is not a checkpoint of one of our runs" in err and "needs --model and --dataset" in err
    code, _, err = cli(capsys, "evaluate", f, "--model", "smallcnn")
    assert code == 2 and "needs --dataset," in err
    code, _, err = cli(capsys, "landscape", f)
    assert code == 2 and "needs --model and --dataset" in err
    code, _, err = cli(capsys, "evaluate", f, "--model", "resnet50", "--dataset", "cifar10")
    assert code == 2 and "unknown --model 'resnet50'; valid choices: mlp, smallcnn" in err
    # with the flags it loads (width 8, as the run was trained)
    code, out, err = cli(capsys, "evaluate", f, "--model", "smallcnn", "--dataset", "fashion-mnist", "--width", 8,
                         "--attacks", "natural", "--n", 10)
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["accuracy"]["natural"] >= 0


def _run_code(marker):
    """What the malicious file makes an unpickler call."""
    Path(marker).write_text("code ran")


class Malicious:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return _run_code, (str(self.marker),)


def test_malicious_pickle_is_refused(preact, tmp_path, capsys):
    src, root, _, _ = preact
    marker = tmp_path / "marker"
    ck = tmp_path / "evil.pt"
    torch.save({"state_dict": src.state_dict(), "hook": Malicious(marker)}, ck)
    code, _, err = cli(capsys, "evaluate", ck, "--model", "preactresnet18", "--dataset", "cifar10", "--root", root)
    assert code == 2 and "Traceback" not in err
    assert f"{ck} refused" in err and "test_evaluate_cli._run_code" in err and "weights_only=True" in err
    assert not marker.exists()
    with pytest.raises(ValueError, match="refused"):
        checkpoints.load_checkpoint(models.build_model("preactresnet18", "cifar10"), ck)
    assert not marker.exists()
    torch.load(ck, weights_only=False)  # what the refusal prevents: the full unpickler runs the file's code
    assert marker.read_text() == "code ran"


def test_mismatched_keys_are_reported(preact, tmp_path, capsys):
    src, root, _, _ = preact
    ck = save_layout(tmp_path / "preact.pt", "robustbench", src.state_dict())
    code, _, err = cli(capsys, "evaluate", ck, "--model", "smallcnn", "--dataset", "cifar10", "--root", root)
    assert code == 2 and "Traceback" not in err
    assert "do not fit the SmallCNN" in err and "missing: features.0.weight" in err
    assert "unexpected: conv1.weight, layer1.0.bn1.weight" in err and "more)" in err
    assert "Check --model and --dataset" in err
    code, _, err = cli(capsys, "evaluate", ck, "--model", "preactresnet18", "--dataset", "cifar100", "--root", root)
    assert code == 2 and ("2 of another shape (file vs model): linear.weight (10, 512) vs (100, 512), "
                            "linear.bias (10,) vs (100,)") in err


def test_unreadable_and_missing_files(tmp_path, capsys):
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=f"{bad} is not a PyTorch checkpoint"):
        checkpoints.read_weights(bad)
    torch.save({"epoch": 3, "note": "no weights"}, tmp_path / "empty.pt")
    with pytest.raises(ValueError, match=r"holds no state dict.*found 'epoch', 'note'"):
        checkpoints.load_weights(models.build_model("smallcnn", "cifar10"), tmp_path / "empty.pt")
    code, _, err = cli(capsys, "evaluate", tmp_path / "nowhere.pt", "--model", "smallcnn", "--dataset", "cifar10")
    assert code == 2 and "nowhere.pt not found" in err


# ----------------------------------------------------------------------------- landscape
def test_landscape_defaults_on_a_smoke_run(smoke_run, tmp_path, capsys):
    ck = smoke_run / "checkpoints" / "last.pt"
    # default --n 1000, --subset train, --attack-steps; fewer points for speed
    code, out, err = cli(capsys, "landscape", ck, "--dim", 1, "--k", 1, "--alphas=-0.5,0,0.5", "--out", tmp_path)
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["n"] == 256 and summary["images"] == "--n 1000 capped at the 256 images of the run's train split"
    assert "capped at the 256 images" in err
    res = json.loads(Path(summary["json"]).read_text())
    assert len(res["loss"]) == 1 and len(res["loss"][0]) == 3 and res["eps"] == 0.1
    assert all(v > 0 for v in res["loss"][0]) and Path(summary["png"]).stat().st_size > 0
    code, out, err = cli(capsys, "landscape", ck, "--dim", 2, "--alphas=-0.5,0.5", "--subset", "test",
                         "--attack-steps", 2, "--out", tmp_path)
    assert code == 0, err
    res = json.loads(Path(json.loads(out.strip().splitlines()[-1])["json"]).read_text())
    assert res["n"] == 200 and len(res["relative"]) == 2 and len(res["relative"][0]) == 2


@pytest.mark.parametrize("argv,needle", [
    (["--k", "0"], "--k 0 is invalid"), (["--alphas", "1,0"], "--alphas '1,0' is invalid"),
    (["--alphas", "a:b"], "--alphas 'a:b' is invalid"), (["--n", "0"], "--n 0 is invalid"),
    (["--attack-steps", "0"], "--attack-steps 0 is invalid"),
    (["--normalize", "meanstd"], "unknown --normalize 'meanstd'"), (["--device", "tpu"], "unknown --device 'tpu'"),
    (["--norm", "l1"], "unknown --norm 'l1'"),
])
def test_landscape_bad_values_name_the_flag(smoke_run, capsys, argv, needle):
    code, _, err = cli(capsys, "landscape", smoke_run / "checkpoints" / "last.pt", *argv)
    assert code == 2 and needle in err and "Traceback" not in err


def test_landscape_third_party(preact, tmp_path, capsys):
    src, root, _, _ = preact
    ck = save_layout(tmp_path / "at-awp-preact.pt", "dataparallel", src.state_dict())
    code, out, err = cli(capsys, "landscape", ck, "--model", "preactresnet18", "--dataset", "cifar10", "--root", root,
                         "--subset", "test", "--k", 1, "--alphas", "0", "--attack-steps", 1)
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["n"] == 8 and "capped at the 8 images of the cifar10 test set" in summary["images"]
    assert Path(summary["json"]).parent == tmp_path / "landscape"
    res = json.loads(Path(summary["json"]).read_text())
    assert res["checkpoint"]["normalize"] == "dataset" and res["eps"] == pytest.approx(8 / 255)
    assert res["loss"][0][0] > 0


# ----------------------------------------------------------------------------- book/run.ipynb
def _section():
    nb = nbformat.read(ROOT / "book" / "run.ipynb", as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    i = next(i for i, c in enumerate(nb.cells) if c.source.startswith("## Evaluate a published model"))
    return nb, params, nb.cells[i + 1:]


def test_run_page_section_is_clean():
    nb, params, code_cells = _section()
    assert 'checkpoint: str = ""' in params.source
    assert all(c.cell_type == "code" and not c.outputs for c in code_cells) and len(code_cells) == 2
    assert all(not c.get("outputs") for c in nb.cells)
    i = next(i for i, c in enumerate(nb.cells) if c.source.startswith("## Evaluate a published model"))
    new = [ln for c in nb.cells[i:] for ln in c.source.splitlines()]
    assert all(len(ln) <= 88 for ln in new)


def _exec_section(capsys, **params):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    _, param_cell, cells = _section()
    ns = {"pd": pd, "plt": plt, "Path": Path, "device": torch.device("cpu")}
    exec(param_cell.source, ns)
    ns.update(params)
    for c in cells:
        exec(c.source, ns)
    return ns, capsys.readouterr().out


def test_run_page_section_skips_without_checkpoint(capsys):
    ns, out = _exec_section(capsys)
    assert ns["published"] is None and ns["curve"] is None and "section skipped" in out


def test_run_page_section_evaluates_a_checkpoint(smoke_run, capsys):
    ns, out = _exec_section(capsys, checkpoint=str(smoke_run / "checkpoints" / "best.pt"), checkpoint_n=8)
    pub, curve = ns["published"], ns["curve"]
    assert list(pub["accuracy"]) == ["natural", "fgsm", "pgd20", "pgd100", "cw", "autoattack"]
    assert pub["n"] == 8 and all(0 <= v <= 1 for v in pub["accuracy"].values())
    assert curve["k"] == 5 and len(curve["alphas"]) == 21 and curve["n"] == 8
    assert Path(pub["json"]).exists() and Path(curve["png"]).exists() and "accuracy (%)" in out
