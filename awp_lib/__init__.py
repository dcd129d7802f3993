"""awp_lib: the library behind the AWP book (Wu, Xia, Wang, NeurIPS 2020).

The core, one job per module, each importing only the modules below it (``pyproject.toml``):

* ``__main__``: the command line, ``python -m awp_lib {train,evaluate,landscape,reproduce,...}``;
* ``evaluate_cli``, ``landscape``, ``precision_check``: the battery on any checkpoint; Algorithm 1
  and flatness; AWP under mixed precision, checked;
* ``train``: one training loop for every method, with or without AWP, and its command;
* ``resume``: what training does with a run folder that already holds a run;
* ``checkpoints``, ``monitor``, ``names``, ``rst``, ``stuck``: safe loading of our and published
  weights; a run's evaluation per epoch and at the end; the one run namer; RST's pseudo-labels; a
  run stuck at chance;
* ``runs``: a run folder's layout, reads and lock;
* ``config``: one validated config, the profiles' presets, threat models;
* ``averaging``, ``evaluate``, ``methods``, ``regularizers``: EMA and SWA; the attack battery;
  AT, TRADES, MART, RST; Appendix F's regularisers;
* ``attacks``, ``awp``, ``evalcopy``, ``models``: FGSM, PGD, CW∞ (Eq. 13-14); Algorithm 2 and its
  controls; the model every evaluation attacks (BN folded, channels-last); the networks;
* ``data``, ``precision``: datasets, splits, loaders; bf16 autocast that sees in-place weight
  changes, ``torch.compile`` with an eager fallback;
* ``distributed``, ``io``, ``progress``, ``semantics``: torchrun; atomic writes and safe loads;
  progress lines; the training-semantics version;
* ``validate``: choices and numbers checked, with errors that name the choices.

The book wing, :mod:`awp_lib.book`, builds the book's pages on top; the core never imports it.
"""
__version__ = "0.1.0"
