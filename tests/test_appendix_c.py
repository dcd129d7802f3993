"""Chapter 3's Appendix C at the book's scale: the settings, the verdicts and the rank test."""
import math

import pytest
import torch

from awp_lib import landscape, models, names
from awp_lib.book import appendix_c, runlist
from awp_lib.config import make_config


@pytest.mark.parametrize("profile", ["smoke", "cpu"])
def test_every_setting_is_a_run_of_the_book_and_differs_in_its_knob(profile):
    settings = runlist.ch3_settings(profile)
    listed = runlist.book_runs(profile)
    assert list(settings)[0] == "preset" and len(settings) == 8
    for label, run in settings.items():
        assert run.name in listed and listed[run.name].config.to_dict() == run.config.to_dict(), label
        assert names.run_name(run.config) == run.name or run.name.startswith("ch2-"), label
    cfg = {label: run.config for label, run in settings.items()}
    assert cfg["cyclic"].schedule == "cyclic" and cfg["cyclic"].cyclic_lr == make_config(profile, schedule="cyclic").cyclic_lr
    assert cfg["l2"].norm == "l2" and cfg[f"width{runlist.CH3_WIDTH[profile]}"].width != cfg["preset"].width
    assert cfg["mlp"].model == "mlp" and cfg["noise0.2"].label_noise == 0.2


def test_the_paper_settings_are_those_of_the_configs_files():
    settings = runlist.ch3_settings("paper")
    assert settings["vgg19"].config.model == "vgg19" and settings["cifar100"].config.dataset == "cifar100"
    assert settings["l2"].name == "at-piecewise-l2-eps0.502-s0" and settings["cyclic"].config.cyclic_lr == 0.2
    with pytest.raises(ValueError, match="'imagenet'.*cosine, cyclic"):
        runlist.ch3_paper_knobs("imagenet")


def test_the_width_is_part_of_a_run_name():
    assert names.run_name(make_config("cpu", width=8)) == "at-piecewise-w8-s0"
    assert names.run_name(make_config("cpu")) == "at-piecewise-s0"
    assert runlist.ch3_run("cpu", width="8").name == "at-piecewise-w8-s0"


def m_(gap_pre, gap_last, flat_pre, flat_last):
    return {"gap_rise": gap_last - gap_pre, "flatness_rise": flat_last - flat_pre}


def test_verdicts():
    assert appendix_c.verdict(m_(0.10, 0.30, 0.2, 0.5)) == "holds"
    assert appendix_c.verdict(m_(0.10, 0.30, 0.5, 0.2)) == "FAILS"
    assert appendix_c.verdict(m_(0.10, 0.12, 0.2, 0.5)) == "gap did not open"   # 2 points < 3
    assert appendix_c.verdict(m_(0.10, 0.12, 0.2, 0.5), threshold=0.01) == "holds"


def test_rank_test_is_exact_for_few_settings_and_sampled_for_many():
    r = appendix_c.rank_test([1, 2, 3, 4], [10, 20, 30, 40])
    assert r["spearman"] == pytest.approx(1) and r["p_value"] == pytest.approx(1 / 24) and r["permutations"] == 24
    assert appendix_c.rank_test([1, 2, 3, 4], [40, 30, 20, 10])["p_value"] == pytest.approx(1.0)
    many = appendix_c.rank_test(list(range(10)), list(range(10)), samples=2000)
    assert many["permutations"] == 2000 and many["p_value"] < 0.01
    assert math.isnan(appendix_c.rank_test([1, 2], [1, 2])["p_value"])


def test_first_direction_of_a_k_direction_curve_is_the_k1_curve():
    torch.manual_seed(0)
    net = models.build_model("smallcnn", "fashion-mnist", 4).eval()
    data = (torch.randint(0, 255, (16, 1, 28, 28), dtype=torch.uint8), torch.randint(0, 10, (16,)))
    kw = dict(alphas=[-0.5, 0.0, 0.5], seed=3, eps=0.1, attack_steps=2, n=16)
    two, one = landscape.landscape_1d(net, data, k=2, **kw), landscape.landscape_1d(net, data, k=1, **kw)
    cut = appendix_c.first_direction(two)
    assert cut["mean"] == pytest.approx(one["mean"]) and cut["k"] == 1 and cut["loss"][0] == pytest.approx(one["loss"][0])
