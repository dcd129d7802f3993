"""Models of the paper, with input normalisation inside: inputs are always in [0, 1].

Parameter names follow the public checkpoints (PreActResNet-18 of Rice et al. / the AWP code,
WideResNet of TRADES/MART), so :func:`awp_lib.checkpoints.load_checkpoint` can load third-party weights.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .data import MEAN_STD, NUM_CLASSES, SHAPES
from .validate import check_choice

MODELS = ("mlp", "smallcnn", "preactresnet18", "wrn-28-10", "wrn-34-10", "vgg19")


class Normalize(nn.Module):
    """(x − mean) / std per channel. Buffers are not saved, so third-party checkpoints load."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x):
        return (x - self.mean) / self.std


class MLP(nn.Module):
    """Two hidden ReLU layers of ``hidden`` units: cheap on a CPU, with room to memorise a small training set."""

    def __init__(self, in_features=784, num_classes=10, hidden=1024, mean=(0.5,), std=(0.5,)):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.net(self.normalize(x))


class SmallCNN(nn.Module):
    """Four 3x3 conv-BN-ReLU layers (width ``w``, ``2w``), two max-pools, one hidden linear layer: sized for CPU chapters."""
    channels_last_on_cpu = True  # faster attacks in channels-last memory on a CPU (bench eval_layouts)

    def __init__(self, in_channels=1, num_classes=10, width=16, hidden=128, image_size=28, mean=(0.5,), std=(0.5,)):
        super().__init__()
        self.normalize = Normalize(mean, std)
        w = width

        def block(cin, cout):
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
        self.features = nn.Sequential(*block(in_channels, w), *block(w, w), nn.MaxPool2d(2),
                                      *block(w, 2 * w), *block(2 * w, 2 * w), nn.MaxPool2d(2))
        side = image_size // 4
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(2 * w * side * side, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.classifier(self.features(self.normalize(x)))


class PreActBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False))

    def forward(self, x):
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if hasattr(self, "shortcut") else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet18(nn.Module):
    """PreAct ResNet-18 (He et al. 2016), the paper's main architecture."""
    channels_last_on_cpu = False  # no faster in channels-last memory on a CPU (bench eval_layouts)

    def __init__(self, in_channels=3, num_classes=10, mean=(0.,), std=(1.,)):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.in_planes = 64
        self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        self.layer1 = self._make_layer(64, 1)
        self.layer2 = self._make_layer(128, 2)
        self.layer3 = self._make_layer(256, 2)
        self.layer4 = self._make_layer(512, 2)
        self.bn = nn.BatchNorm2d(512)
        self.linear = nn.Linear(512, num_classes)

    def _make_layer(self, planes, stride):
        layers = []
        for s in (stride, 1):
            layers.append(PreActBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x):
        out = self.conv1(self.normalize(x))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.relu(self.bn(out))
        return self.linear(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


class WideBasic(nn.Module):
    def __init__(self, in_planes, out_planes, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, 1, 1, bias=False)
        self.equal_in_out = in_planes == out_planes
        self.convShortcut = None if self.equal_in_out else nn.Conv2d(in_planes, out_planes, 1, stride, 0, bias=False)

    def forward(self, x):
        o = self.relu1(self.bn1(x))
        y = self.conv2(self.relu2(self.bn2(self.conv1(o))))
        return y + (x if self.equal_in_out else self.convShortcut(o))


class NetworkBlock(nn.Module):
    def __init__(self, n, in_planes, out_planes, stride):
        super().__init__()
        self.layer = nn.Sequential(*[WideBasic(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1)
                                     for i in range(n)])

    def forward(self, x):
        return self.layer(x)


class WideResNet(nn.Module):
    """WideResNet-depth-widen (Zagoruyko & Komodakis), key names of the TRADES/MART/AWP code."""
    channels_last_on_cpu = True  # faster attacks in channels-last memory on a CPU (bench eval_layouts)

    def __init__(self, depth=34, widen=10, in_channels=3, num_classes=10, mean=(0.,), std=(1.,)):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WideResNet depth={depth} is invalid: depth - 4 must be divisible by 6 (e.g. 28, 34)")
        n = (depth - 4) // 6
        ch = [16, 16 * widen, 32 * widen, 64 * widen]
        self.normalize = Normalize(mean, std)
        self.conv1 = nn.Conv2d(in_channels, ch[0], 3, 1, 1, bias=False)
        self.block1 = NetworkBlock(n, ch[0], ch[1], 1)
        self.block2 = NetworkBlock(n, ch[1], ch[2], 2)
        self.block3 = NetworkBlock(n, ch[2], ch[3], 2)
        self.bn1 = nn.BatchNorm2d(ch[3])
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(ch[3], num_classes)

    def forward(self, x):
        out = self.block3(self.block2(self.block1(self.conv1(self.normalize(x)))))
        out = self.relu(self.bn1(out))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


class VGG19(nn.Module):
    """VGG-19 with batch norm; ceil-mode pooling so 28x28 inputs reach 1x1 too."""
    channels_last_on_cpu = False  # its attacks are slower in channels-last memory on a CPU (bench eval_layouts)
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]

    def __init__(self, in_channels=3, num_classes=10, mean=(0.,), std=(1.,)):
        super().__init__()
        self.normalize = Normalize(mean, std)
        layers, c = [], in_channels
        for v in self.cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                c = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(512, num_classes)

    def forward(self, x):
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.features(self.normalize(x)), 1), 1))


NORMALIZE = ("dataset", "none")


def build_model(name: str, dataset: str = "cifar10", width: int = 16, normalize: str = "dataset") -> nn.Module:
    """A model of ``MODELS`` for ``dataset``, with that dataset's normalisation inside.

    ``width`` applies to ``smallcnn`` (channels of its first conv layers) and ``mlp``
    (hidden units = 64·width, so the default 16 gives 1,024). ``normalize``: ``dataset``
    (the dataset's mean/std, what our runs and the Rice et al. / AT-AWP checkpoints use) or
    ``none`` (the identity: TRADES, MART and TRADES-AWP WideResNets take raw [0, 1] inputs).
    """
    check_choice("model", name, MODELS)
    check_choice("dataset", dataset, tuple(NUM_CLASSES))
    check_choice("normalize", normalize, NORMALIZE)
    c, h, _ = SHAPES[dataset]
    mean, std = MEAN_STD[dataset] if normalize == "dataset" else ((0.0,) * c, (1.0,) * c)
    kw = dict(in_channels=c, num_classes=NUM_CLASSES[dataset], mean=mean, std=std)
    if name == "mlp":
        return MLP(c * h * SHAPES[dataset][2], hidden=64 * width, **{k: v for k, v in kw.items() if k != "in_channels"})
    if name == "smallcnn":
        return SmallCNN(width=width, image_size=h, **kw)
    if name == "preactresnet18":
        return PreActResNet18(**kw)
    if name.startswith("wrn-"):
        _, depth, widen = name.split("-")
        return WideResNet(int(depth), int(widen), **kw)
    return VGG19(**kw)
