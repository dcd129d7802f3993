"""Cheap per-epoch monitor, the final full-strength evaluation, the CPU fast path, cell timeouts."""
import json
import sys
from pathlib import Path

import nbformat
import pytest
import torch

from awp_lib import book, config, data, models, monitor
from awp_lib import train as T
from awp_lib.config import make_config
from awp_lib.io import load_torch, save_torch

REPO = Path(__file__).resolve().parents[1]


def cfg_(**kw):
    return make_config("smoke", **{"epochs": 3, "train_size": 192, "val_size": 100, "test_size": 100,
                                   "final_attack_steps": 5, **kw})


def test_final_evaluation_of_best_and_last_and_its_resume(tmp_path, tiny):
    cfg = cfg_(eval_test_size=40)
    rows = T.train(cfg, tmp_path / "run", tiny, progress="none")
    best = max(rows, key=lambda r: r["val_robust"])
    for r in {id(best): best, id(rows[-1]): rows[-1]}.values():
        assert r["final_attack"] == "PGD-5"
        for part in ("train", "val", "test"):
            assert 0 <= r[f"final_{part}_robust"] <= r[f"final_{part}_natural"] <= 1
        # the final numbers are on the whole test split (100 images), the monitor's on 40
        assert (100 * r["final_test_natural"]) == pytest.approx(round(100 * r["final_test_natural"]))
        assert (40 * r["test_natural"]) == pytest.approx(round(40 * r["test_natural"]))
    assert [r["epoch"] for r in rows if "final_attack" in r] == sorted({best["epoch"], rows[-1]["epoch"]})
    hb = book.best_last(rows)
    assert hb["last_test_robust"] == rows[-1]["final_test_robust"]
    assert hb["best_test_robust"] == best["final_test_robust"]
    assert book.attacks_of(rows, cfg) == {"monitor": "PGD-3", "headline": "PGD-5"}
    # interrupted after the last epoch but before the final evaluation: the rerun only evaluates
    ck = load_torch(tmp_path / "run/checkpoints/last.pt")
    bare = [{k: v for k, v in r.items() if not k.startswith(("final_", "time_final"))} for r in rows]
    save_torch({**ck, "metrics": json.dumps(bare)}, tmp_path / "run/checkpoints/last.pt")
    again = T.train(cfg, tmp_path / "run", tiny, progress="none")
    strip = lambda rs: [{k: v for k, v in r.items() if not k.startswith("time")} for r in rs]
    assert strip(again) == strip(rows)
    assert strip(json.loads((tmp_path / "run/metrics.json").read_text())) == strip(rows)


def test_monitor_counts_natural_and_robust_in_one_pass(tiny):
    torch.manual_seed(0)
    model = models.build_model("smallcnn", "fashion-mnist", 8).eval()
    loader = data.Loader(*tiny.test, 32)
    nat, rob = monitor.robust_accuracy(model, loader, cfg_(), 3)
    with torch.no_grad():
        direct = sum((model(x).argmax(1) == y).sum().item() for x, y in loader) / 100
    assert nat == direct and 0 <= rob <= nat


def test_amp_auto_is_resolved_and_recorded():
    cnn = make_config("smoke", amp="auto", channels_last="auto")
    assert cnn.amp == ("bf16" if config.bf16_fast("auto") else "none")
    assert cnn.channels_last == (cnn.amp == "bf16" and config.resolve_device("auto").type == "cuda")
    # channels_last made the CPU slower (measured 1.65x): auto never picks it on a CPU
    assert make_config("smoke", amp="bf16", channels_last="auto", device="cpu").channels_last is False
    assert cnn.to_dict()["amp"] in ("bf16", "none")           # config.json never says "auto"
    assert make_config("smoke", model="mlp", amp="auto").amp == "none"
    with pytest.raises(ValueError, match="amp 'fp8'.*none, bf16, auto"):
        make_config("smoke", amp="fp8")
    with pytest.raises(ValueError, match="final_attack_steps=-1"):
        make_config("smoke", final_attack_steps=-1)


def test_a_stalled_cell_fails_naming_notebook_and_cell(tmp_path):
    """The build's per-cell limits (book/_ext/awp_cell_timeouts.py): a cell over its limit raises."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError
    sys.path.insert(0, str(REPO / "book" / "_ext"))
    import awp_cell_timeouts as ext
    ext._LIMITS.update(default=2, long=30)
    ext._install()
    try:
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"),
                                             nbformat.v4.new_code_cell("import time\ntime.sleep(20)")])
        with pytest.raises(CellTimeoutError, match=r"cell 1 .* 2 s limit.*import time"):
            NotebookClient(nb, timeout=600, kernel_name="python3",
                           resources={"metadata": {"path": str(tmp_path)}}).execute()
        slow = nbformat.v4.new_code_cell("import time\ntime.sleep(3)")
        slow.metadata["tags"] = ["long-cell"]
        NotebookClient(nbformat.v4.new_notebook(cells=[slow]), timeout=1, kernel_name="python3",
                       resources={"metadata": {"path": str(tmp_path)}}).execute()   # 30 s for long cells
    finally:
        ext._LIMITS.clear()
