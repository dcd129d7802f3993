"""The book wing: what the chapters and the book's commands use on top of the core library.

The core (``awp_lib.*``: data, models, attacks, AWP, methods, training, evaluation) never imports
this package; ``make test`` checks it (import-linter, ``pyproject.toml``). One module per job:

* :mod:`~awp_lib.book.runlist`: the runs each chapter reads, named by the one namer;
* :mod:`~awp_lib.book.store`: :class:`Run`, one run, trained or read under ``runs/<profile>/``;
* :mod:`~awp_lib.book.build`: ``python -m awp_lib book-runs``, training the whole list;
* :mod:`~awp_lib.book.summaries`: a run's headline numbers, and over seeds;
* :mod:`~awp_lib.book.epochs`: the epochs the chapters point at (decays, late stage, checkpoints);
* :mod:`~awp_lib.book.checks`: the sanity checks of metrics and batteries;
* :mod:`~awp_lib.book.reattack`: stored checkpoints measured again (monitor agreement, flatness);
* :mod:`~awp_lib.book.claims`: the claims tested on them, printed as holds or FAILS;
* :mod:`~awp_lib.book.results`: the chapters' settings and ``results/<profile>/*.json``;
* :mod:`~awp_lib.book.plots`: colours, learning curves, sliders, source listings;
* :mod:`~awp_lib.book.report`, :mod:`~awp_lib.book.reproduce`: the replication tables and suites;
* :mod:`~awp_lib.book.levers`, :mod:`~awp_lib.book.bench`: the miniature's lever study, speed ratios.

The chapters call the helpers they share as ``book.<name>`` (``from awp_lib import book``):
they are the names below.
"""
from ..data import project_root
from .checks import check_attacks, check_metrics
from .claims import count
from .epochs import after_decay, at_epoch, decay_epochs, gap_at, landscape_checkpoints, late_stage_start
from .plots import COLORS, SPLIT_STYLES, color_of, fig_png, figure_slider, plot_band, plot_curves, show_source
from .reattack import RunFlatness, monitor_agreement
from .results import load_results, save_results, settings, start_page
from .store import Run, runs_folder
from .summaries import attacks_of, best_last, correlation, final_numbers, mean_std, paired, stack, summarize

__all__ = ["project_root", "check_attacks", "check_metrics", "count", "after_decay", "at_epoch", "decay_epochs", "gap_at",
           "landscape_checkpoints", "late_stage_start", "COLORS", "SPLIT_STYLES", "color_of", "fig_png",
           "figure_slider", "plot_band", "plot_curves", "show_source", "RunFlatness", "monitor_agreement",
           "load_results", "save_results", "settings", "start_page", "Run", "runs_folder", "attacks_of",
           "best_last", "correlation", "final_numbers", "mean_std", "paired", "stack", "summarize"]
