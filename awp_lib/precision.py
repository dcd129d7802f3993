"""Mixed precision that cannot hide a weight perturbation.

``torch.autocast`` by default casts each fp32 parameter to bf16 once per outermost autocast
region and reuses that copy for every later forward pass of the region. A method that changes
the fp32 weights *in place* between two forward passes of one region (AWP's w + v and its
restore, a SAM-style ascent, a landscape's w + αd) would then compute the later passes at the
old weights: the perturbation silently does nothing.

Two guards, so that neither the library's loop nor a reader's own autocast region can fall
into it:

* :func:`autocast` is the only autocast region the library opens: the weight cache is off, so
  every forward pass casts the weights as they are now (it costs one cast per weight per pass).
* :func:`weights_changed` is called by every in-place writer of weights (AWP's perturb and
  restore, the landscape's moves, weight averaging): it empties the cache of any enclosing
  region, a user's ``torch.autocast`` with the cache on included.
"""
from __future__ import annotations

import logging
import shutil
import warnings

import torch

from .validate import check_choice

AMP = ("none", "bf16", "auto")


def autocast(device: torch.device | str, amp: str):
    """The autocast region of training and evaluation: bf16 when ``amp == "bf16"`` (else a no-op
    region), with the weight cache off."""
    check_choice("amp", amp, AMP[:2])
    device_type = torch.device(device).type
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=amp == "bf16", cache_enabled=False)


def weights_changed() -> None:
    """Call after writing parameters in place: forgets the bf16 copies an enclosing autocast
    region may hold, so the next forward pass sees the new weights."""
    torch.clear_autocast_cache()


def compiled(model: torch.nn.Module, device: torch.device | str = "cpu") -> torch.nn.Module:
    """``torch.compile(model)``; on a CPU without the C++ compiler the inductor needs, the model
    itself, with a warning (the numbers differ by rounding only: tests/test_precision.py)."""
    if torch.device(device).type == "cpu":
        # importing the inductor looks for CUDA and warns that none is found: on a CPU run, not news
        quiet = logging.getLogger("torch.utils.cpp_extension")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            from torch._inductor import cpp_builder  # optional dependency: loaded only to compile
        finally:
            quiet.setLevel(level)
        name = cpp_builder.get_cpp_compiler()
        if shutil.which(name) is None:
            warnings.warn(f"compile=True, but no C++ compiler {name!r} was found for torch.compile: "
                          "training runs eagerly (the same method; the numbers differ by rounding)")
            return model
    return torch.compile(model)
