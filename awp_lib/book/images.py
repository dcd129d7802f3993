"""Pictures of examples and their attacks: the images a model sees, titled with its predictions
(red when wrong), the perturbations amplified, and accuracy against the radius."""
from __future__ import annotations

from ..evaluate import predict


def show_image(ax, img, title: str | None = None, wrong: bool = False) -> None:
    """One image (``C x H x W`` in [0, 1]) on ``ax``, without ticks; ``title`` red when ``wrong``."""
    img = img.detach().cpu()
    ax.imshow(img[0] if img.shape[0] == 1 else img.permute(1, 2, 0), cmap="gray", vmin=0, vmax=1,
              interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title, fontsize=6.5, color="red" if wrong else "black", pad=2)


def prediction_row(axes, model, x, y, classes) -> None:
    """The images ``x`` on ``axes``, one each, titled with the model's predictions."""
    p = predict(model, x)
    for j, ax in enumerate(axes):
        show_image(ax, x[j], classes[p[j]], bool(p[j] != y[j]))


def attack_grid(model, x, y, adversarial: dict, classes, title: str, n: int = 8):
    """Rows: the clean images, then per attack (``{name: x'}``) the perturbation amplified (its
    largest |δ| of the row to black or white, δ = 0 to grey) and x', titled with the model's
    predictions. Returns the figure."""
    import matplotlib.pyplot as plt  # CLI start-up time
    n = min(n, len(y))
    rows = 1 + 2 * len(adversarial)
    fig, axes = plt.subplots(rows, n, figsize=(0.85 * n, 0.95 * rows), squeeze=False)
    prediction_row(axes[0], model, x[:n], y[:n], classes)
    axes[0, 0].set_ylabel("clean", fontsize=8)
    for i, (name, x_adv) in enumerate(adversarial.items()):
        delta = (x_adv - x)[:n]
        amplified = 0.5 + delta / (2 * delta.abs().amax().clamp_min(1e-12))
        for j in range(n):
            show_image(axes[1 + 2 * i, j], amplified[j])
        prediction_row(axes[2 + 2 * i], model, x_adv[:n], y[:n], classes)
        axes[1 + 2 * i, 0].set_ylabel(f"{name}\n$\\delta$ (ampl.)", fontsize=8)
        axes[2 + 2 * i, 0].set_ylabel(f"{name}\n$x'$", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(h_pad=0.3, w_pad=0.2)
    return fig


def accuracy_vs_eps(ax, eps_values, curves: dict, colors: dict, train_eps: float, fmt=str,
                    mark: float | None = None) -> None:
    """Accuracy (%) against the attack radius, one line per model (``curves``: ``{label:
    [accuracy per eps]}``, ``colors``: ``{label: colour}``); the training radius dotted, ``mark``
    a solid line."""
    for label, acc in curves.items():
        ax.plot(eps_values, [100 * a for a in acc], "o-", color=colors[label], label=label)
    ax.axvline(train_eps, color="gray", ls=":", lw=1, label=f"training $\\epsilon$ = {fmt(train_eps)}")
    if mark is not None:
        ax.axvline(mark, color="black", lw=1.5)
    ax.set(xlabel="$\\epsilon$ ($L_\\infty$)", ylabel="accuracy (%)", ylim=(-2, 102))
    ax.set_xticks(eps_values, [fmt(e) for e in eps_values], fontsize=8, rotation=45)
    ax.legend(fontsize=8)


def markdown_table(header: list[str], rows: list[list]):
    """A Markdown table (it renders the math of its cells on the page), for ``display``."""
    from IPython.display import Markdown  # optional dependency (the pages)
    lines = [header, ["---"] * len(header), *rows]
    return Markdown("\n".join("| " + " | ".join(map(str, r)) + " |" for r in lines))


def radius_text(eps: float, dataset: str) -> str:
    """A radius as the book writes it: ``0.1`` on Fashion-MNIST, ``8/255`` on the other datasets."""
    return f"{eps:g}" if dataset == "fashion-mnist" else f"{eps * 255:g}/255"
