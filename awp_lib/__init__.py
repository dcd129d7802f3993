"""awp_lib: the library behind the AWP book (Wu, Xia, Wang, NeurIPS 2020).

Modules: ``data`` (datasets, splits, loaders), ``models`` (normalisation inside, inputs in
[0, 1]), ``attacks`` (Eq. 13-14, CW), ``evaluate`` (the evaluation battery), ``bench``.
"""
__version__ = "0.1.0"
