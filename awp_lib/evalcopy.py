"""The model an evaluation attacks: an eval-mode copy that computes the same function for less.

Every attack on a model in eval mode (the training loop's monitor and final evaluation, the
battery of :mod:`awp_lib.evaluate`, AutoAttack, each point of a landscape or of a flatness
measure) runs on :func:`eval_copy` of the model as it is at that moment:

* **BN folded.** In eval mode a BatchNorm that directly follows a convolution is an affine map
  of that convolution's output, so it is folded into the convolution's kernel and bias
  (``torch.nn.utils.fusion.fuse_conv_bn_eval``): one pass over the activations instead of two.
  Only a BN that follows its convolution inside one ``nn.Sequential`` is folded (SmallCNN,
  VGG-19); the pre-activation blocks of PreActResNet and WideResNet normalise *before* their
  convolutions and keep their BN.
* **Channels-last memory** for convolutional models where it pays: on a CPU for the models
  whose class says so (SmallCNN and WideResNet; PreActResNet-18 gains nothing, VGG-19's
  512-channel layers at a few pixels are slower in it), on a GPU under a bf16/fp16 autocast
  region (tensor cores); fp32 on a GPU keeps the default layout.
* **No parameter gradients**: the copy's parameters do not require grad, so an attack's
  backward pass computes input gradients only.

The copy is taken from the weights as they are now, so a copy made after a weight change
(a landscape's w + αd, AWP's w + v) attacks the changed weights; it shares nothing with the
model, which is never modified. Its logits equal the model's to rounding (tests/test_evalcopy.py
checks accuracy, PGD-20 robust accuracy and robust loss on trained SmallCNN, PreActResNet-18 and
WideResNet models, and that a weight perturbation moves the copy's loss as it moves the model's).

:func:`eval_batch` is the one batch size of every evaluation: the fastest at one CPU thread
(``python -m awp_lib bench --only eval_batch``), a large one on a GPU.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

# Images per attacked batch: on a CPU the fastest at one thread (bench eval_batch), on a GPU
# large enough to fill it.
CPU_EVAL_BATCH = 64
GPU_EVAL_BATCH = 512


def eval_batch(device: torch.device | str = "cpu") -> int:
    """The batch size every evaluation attacks with on ``device``."""
    return GPU_EVAL_BATCH if torch.device(device).type == "cuda" else CPU_EVAL_BATCH


def fold_bn(model: nn.Module) -> int:
    """Fold, in place, each eval-mode BatchNorm2d that directly follows a Conv2d in an
    ``nn.Sequential`` into that convolution (the BN becomes an identity); returns how many were
    folded. ``model`` must be in eval mode: the fold uses the running statistics."""
    if model.training:
        raise ValueError("fold_bn needs a model in eval mode: folding uses BN's running statistics")
    folded = 0
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = seq._modules[a], seq._modules[b]
            if (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats
                    and bn.running_mean is not None and conv.out_channels == bn.num_features):
                seq._modules[a] = fuse_conv_bn_eval(conv, bn)
                seq._modules[b] = nn.Identity()
                folded += 1
    return folded


def has_conv(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def channels_last_pays(model: nn.Module, device: torch.device | str) -> bool:
    """Whether channels-last memory speeds up ``model``'s passes on ``device``: on a CPU where the
    model's class says so (``channels_last_on_cpu``, measured by ``bench eval_layouts``; unknown
    models keep the default layout), on a GPU for conv nets under a bf16/fp16 autocast region."""
    if not has_conv(model):
        return False
    device = torch.device(device)
    if device.type == "cpu":
        return bool(getattr(model, "channels_last_on_cpu", False))
    return torch.is_autocast_enabled(device.type)


def eval_copy(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` (a compiled model's original module) with BN folded into
    the convolutions, channels-last where it pays and no parameter gradients; ``model`` is not
    changed. Make it after the last weight change it must see."""
    model = getattr(model, "_orig_mod", model)  # torch.compile's wrapper: copy the module itself
    with torch.no_grad():
        fast = copy.deepcopy(model).eval()
        for p in fast.parameters():
            p.grad = None
        fast.requires_grad_(False)
        fold_bn(fast)
        param = next(fast.parameters(), None)
        fast.memory_format = torch.contiguous_format
        if param is not None and channels_last_pays(fast, param.device):
            fast = fast.to(memory_format=torch.channels_last)
            fast.memory_format = torch.channels_last
    return fast


def chunks(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    """``(x, y)`` in batches of :func:`eval_batch`, each ``x`` in the memory format of the
    :func:`eval_copy` ``model``: how every evaluation feeds an attack, whatever its loader's batch."""
    b = eval_batch(x.device)
    for i in range(0, len(y), b):
        yield as_input(x[i:i + b], model), y[i:i + b]


def as_input(x: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """``x`` in the memory format of an :func:`eval_copy` (a 4-D image batch only), so
    that an attack's ``x + δ`` and its gradient stay in that layout."""
    fmt = getattr(model, "memory_format", torch.contiguous_format)
    return x.contiguous(memory_format=fmt) if x.dim() == 4 else x
