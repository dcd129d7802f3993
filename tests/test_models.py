import pytest
import torch

from awp_lib import checkpoints, models


@pytest.mark.parametrize("name", models.MODELS)
@pytest.mark.parametrize("dataset,shape", [("fashion-mnist", (2, 1, 28, 28)), ("cifar100", (2, 3, 32, 32))])
def test_shapes(name, dataset, shape):
    if name.startswith("wrn") and dataset == "cifar100":
        pytest.skip("covered on fashion-mnist; WRNs are slow on CPU")
    m = models.build_model(name, dataset).eval()
    out = m(torch.rand(shape))
    assert out.shape == (2, 100 if dataset == "cifar100" else 10)


def test_normalisation_inside():
    m = models.build_model("smallcnn", "cifar10")
    assert torch.allclose(m.normalize(torch.ones(1, 3, 1, 1)).flatten(),
                          (1 - torch.tensor([0.4914, 0.4822, 0.4465])) / torch.tensor([0.2471, 0.2435, 0.2616]))
    assert not any("normalize" in k for k in m.state_dict())  # third-party checkpoints have no such keys


def test_load_third_party_checkpoint(tmp_path):
    src = models.build_model("wrn-28-10", "cifar10")
    state = {f"module.{k}": v for k, v in src.state_dict().items()}
    state["module.sub_block1.layer.0.conv1.weight"] = torch.zeros(3)  # the unused TRADES/MART block
    torch.save({"state_dict": state}, tmp_path / "ckpt.pt")
    dst = checkpoints.load_checkpoint(models.build_model("wrn-28-10", "cifar10"), tmp_path / "ckpt.pt")
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), dst.state_dict().values()))


class Evil:
    """An arbitrary class: unpickling it could run code, so a safe loader must refuse it."""


def test_refuses_pickled_objects(tmp_path):
    torch.save({"model": {}, "extra": Evil()}, tmp_path / "evil.pt")  # an arbitrary pickled object
    with pytest.raises(Exception, match="(?i)weights_only|unsupported global"):
        checkpoints.load_checkpoint(models.build_model("smallcnn", "fashion-mnist"), tmp_path / "evil.pt")


def test_unknown_model():
    with pytest.raises(ValueError, match=r"unknown model 'resnet50'; valid choices: mlp, smallcnn, preactresnet18"):
        models.build_model("resnet50")
    with pytest.raises(ValueError, match="depth=30"):
        models.WideResNet(depth=30)
