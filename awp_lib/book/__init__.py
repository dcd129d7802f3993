"""The book wing: what the chapters and the book's commands use on top of the core library.

The core (``awp_lib.*``: data, models, attacks, AWP, methods, training, evaluation) never imports
this package; ``make test`` checks it (import-linter, ``pyproject.toml``). One module per job:

* :mod:`~awp_lib.book.runlist`: the runs each chapter reads, named by the one namer;
* :mod:`~awp_lib.book.store`: training or reading those runs under ``runs/<profile>/``;
* :mod:`~awp_lib.book.build`: ``python -m awp_lib book-runs``, training the whole list;
* :mod:`~awp_lib.book.summaries`: a run's headline numbers, and over seeds;
* :mod:`~awp_lib.book.claims`: the claims tested on them, printed as holds or FAILS;
* :mod:`~awp_lib.book.results`: the chapters' settings and ``results/<profile>/*.json``;
* :mod:`~awp_lib.book.plots`: colours, learning curves, sliders, source listings;
* :mod:`~awp_lib.book.report`, :mod:`~awp_lib.book.reproduce`: the replication tables and suites;
* :mod:`~awp_lib.book.levers`, :mod:`~awp_lib.book.bench`: the miniature's lever study, speed ratios.

The chapters call the helpers they share as ``book.<name>`` (``from awp_lib import book``):
they are the names below.
"""
from ..data import project_root
from .plots import COLORS, SPLIT_STYLES, color_of, fig_png, figure_slider, plot_band, plot_curves, show_source
from .results import start_page, load_results, save_results, settings
from .store import load_run_model, pseudo_labels, run_dir, saved_epochs, run_record, run_state, stuck_run, train_run
from .summaries import (RunFlatness, after_decay, at_epoch, attacks_of, best_last, check_attacks,
                        check_metrics, correlation, decay_epochs, final_numbers, gap_at,
                        landscape_checkpoints, late_stage_start, mean_std, monitor_agreement, paired, stack, summarize)

__all__ = ["project_root", "COLORS", "SPLIT_STYLES", "color_of", "fig_png", "figure_slider", "plot_band",
           "plot_curves", "show_source", "start_page", "load_results", "save_results", "settings",
           "load_run_model", "pseudo_labels", "run_dir", "saved_epochs", "run_record", "run_state", "stuck_run", "train_run",
           "RunFlatness", "after_decay", "at_epoch", "attacks_of", "best_last", "check_attacks",
           "check_metrics", "correlation", "decay_epochs", "landscape_checkpoints", "final_numbers", "gap_at", "late_stage_start", "mean_std",
           "monitor_agreement", "paired", "stack", "summarize"]
