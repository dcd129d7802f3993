"""The book's figures and widgets: one colour per method, learning curves, sliders over
precomputed figures that work in the static HTML, and the real source of library objects."""
from __future__ import annotations

import inspect
import textwrap
import io

from .epochs import decay_epochs, late_stage_start
from .summaries import best_last, stack

# One colour per method across the book, no two alike: every comparison of methods uses these,
# and plot_curves draws a run in its method's colour (the line style tells the split).
COLORS = {"Standard": "k", "AT": "C0", "AT-AWP": "C3", "AT-RWP": "C1", "AT-RWP x10": "C5",
          "AT-AWP global": "C4", "AT+EMA": "C2", "AT+SWA": "C8", "AT+L2": "C6", "AT+MIXUP": "C9",
          "AT+L1": "C7", "AT+CUTOUT": "goldenrod"}


def color_of(label: str) -> str:
    """The colour of a method: its :data:`COLORS` entry (labels as :func:`report.method_label` writes
    them; a trailing " (...)" is ignored), else its family's: a method with AWP is drawn like
    AT-AWP (TRADES-AWP, MART-AWP ...), one without like AT."""
    key = label.split(" (")[0].replace("-AWP-global", "-AWP global")
    if key in COLORS:
        return COLORS[key]
    return COLORS["AT-AWP"] if "-AWP" in key else COLORS["AT"]


# The line style of each split in plot_curves (the colour is the method's).
SPLIT_STYLES = {"train_robust": ("train robust (at w)", "--"), "val_robust": ("validation robust", ":"),
                "test_robust": ("test robust", "-")}


def plot_curves(rows: list[dict], ax=None, title: str = "", legend: bool = True, loss_ax=None,
                color: str = COLORS["AT"]):
    """Learning curves of one run in its method's ``color`` (:func:`color_of`): train robust (at w)
    dashed, validation robust dotted, test robust solid, test natural grey; the learning-rate
    decays, the validation-selected epoch and the late stage (gap > 10%) shaded; with
    ``loss_ax``, the robust train and test *loss* per evaluated epoch there."""
    import matplotlib.pyplot as plt  # CLI start-up time
    ax = ax or plt.subplots(figsize=(6, 3.6))[1]
    ev = [r for r in rows if "val_robust" in r]
    ep = [r["epoch"] for r in ev]
    for key, (label, ls) in SPLIT_STYLES.items():
        ax.plot(ep, [100 * r[key] for r in ev], ls, color=color, label=label,
                lw=1.8 if key == "test_robust" else 1.2)
    ax.plot(ep, [100 * r["test_natural"] for r in ev], "-.", color="0.55", lw=1, label="test natural")
    finals = [r for r in ev if "final_test_robust" in r]
    if finals:  # the full-strength evaluation of the best and last checkpoints
        ax.plot([r["epoch"] for r in finals], [100 * r["final_test_robust"] for r in finals], "*", color=color,
                ms=9, mec="k", mew=0.5, label=f"test robust, {finals[0]['final_attack']} (all test images)")
    late = late_stage_start(ev)
    best = best_last(rows)["best_epoch"]
    for a in (ax, loss_ax) if loss_ax is not None else (ax,):
        if late is not None:
            a.axvspan(late, ep[-1], color="0.5", alpha=0.1, lw=0)
        a.axvline(best, color="0.3", ls=":", lw=1)
        for e in decay_epochs(rows):
            a.axvline(e, color="k", lw=0.5, alpha=0.4)
        a.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)" + (" (lines: monitor)" if finals else ""))
    ax.set_title(title, fontsize=9)
    if legend:
        ax.legend(fontsize=8, loc="lower right")
    if loss_ax is not None and "test_robust_loss" in ev[-1]:
        for part in ("train", "test"):
            loss_ax.plot(ep, [r[f"{part}_robust_loss"] for r in ev], SPLIT_STYLES[f"{part}_robust"][1], color=color,
                         label=f"robust loss, {part}")
        loss_ax.set_ylabel("robust cross-entropy")
        if legend:
            loss_ax.legend(fontsize=8)
    return ax


def plot_band(ax, runs: list[list[dict]], key: str, color: str, label: str) -> None:
    """``key`` over the evaluated epochs of several seeds: the first seed thin, the mean thick,
    a band of ± one standard deviation (with two seeds or more)."""
    ep, a = stack(runs, key)
    ax.plot(ep, a[0], color=color, lw=0.8, alpha=0.6)
    ax.plot(ep, a.mean(0), color=color, lw=2, label=f"{label} (mean of {len(a)})" if len(a) > 1 else label)
    if len(a) > 1:
        sd = a.std(0, ddof=1)
        ax.fill_between(ep, a.mean(0) - sd, a.mean(0) + sd, color=color, alpha=0.2, lw=0)


def fig_png(fig, dpi: int = 90) -> bytes:
    import matplotlib.pyplot as plt  # CLI start-up time
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def figure_slider(figures: dict, description: str, readout=str):
    """A slider over precomputed figures that also works in the static HTML.

    ``figures`` maps each slider value to a matplotlib figure. The slider drives a
    ``widgets.Stack`` through ``jsdlink``, which runs in the browser without a kernel.
    """
    import ipywidgets as widgets  # optional dependency (the pages)
    labels = [readout(k) for k in figures]
    # the label is an HTML widget, not the slider's description: html-manager 1.0 calls MathJax 2's
    # API on descriptions, which fails on pages that load MathJax 3
    slider = widgets.SelectionSlider(options=labels, value=labels[0], description="",
                                     continuous_update=True, layout=widgets.Layout(width="420px"))
    slider.add_class("awp-slider")
    stack = widgets.Stack([widgets.Image(value=fig_png(f), format="png") for f in figures.values()],
                          selected_index=0)
    stack.add_class("awp-stack")
    widgets.jsdlink((slider, "index"), (stack, "selected_index"))
    return widgets.VBox([widgets.HBox([widgets.HTML(f"<b>{description}</b>&nbsp;"), slider]), stack])


def show_source(obj, first: str | None = None, more: int = 0) -> None:
    """Display the real source of an ``awp_lib`` object (never a copy that could drift); with
    ``first``, only the statement on the line holding it and its block (and ``more`` lines)."""
    from IPython.display import Code, display  # optional dependency (the pages)
    text = inspect.getsource(obj)
    if first is not None:
        lines = text.splitlines()
        hits = [k for k, line in enumerate(lines) if first in line]
        if not hits:
            raise ValueError(f"{first!r} is not in the source of {getattr(obj, '__qualname__', obj)}")
        i = hits[0]
        indent = len(lines[i]) - len(lines[i].lstrip())
        j = i + 1
        while j < len(lines) and (not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > indent):
            j += 1
        if j < len(lines) and lines[j].strip()[:1] in ")]}":  # the closing bracket of a literal
            j += 1
        text = textwrap.dedent("\n".join(lines[i:j + more]).rstrip())
    display(Code(text, language="python"))
