"""The report's figures: confusion matrices, per-condition bars, training curves, UA against labelled fraction and
the t-SNE of MMIN's imagined against ground-truth embeddings (the seed talk's figure 3).

Every function returns a matplotlib `Figure` (built without pyplot: no global state, nothing shown) with a title
and labelled axes; `save_png` writes it byte-identically for the same inputs (Agg, fixed dpi, no Software/date
metadata). Numbers come in as arrays and `Stat`s: this module never reads a file.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.style
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sklearn.manifold import TSNE
from threadpoolctl import threadpool_limits

from pipeline.report.inputs import Stat

COLOURS = "tab10"


def _colour(i: int) -> Any:
    return matplotlib.colormaps[COLOURS](i % 10)


@contextmanager
def figure_style() -> Iterator[None]:
    """Matplotlib's default style while figures are built and drawn: a lab member's matplotlibrc must not change
    the report's bytes."""
    with matplotlib.style.context("default"):
        yield


def wrapped(title: str, width_inches: float) -> str:
    """The title broken into lines that fit the figure's width (about 8 characters per inch at 12 pt)."""
    return textwrap.fill(title, width=max(20, int(width_inches * 8)))


def save_png(fig: Figure, path: Path, dpi: int) -> None:
    """Write `fig` as PNG with no metadata that varies between runs; the figure is closed afterwards."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, format="png", dpi=dpi, metadata={"Software": None})
    tmp.replace(path)
    fig.clf()


def confusion_figure(cm: np.ndarray, classes: Sequence[str], title: str, normalize: bool) -> Figure:
    """Rows true class, columns predicted; `normalize` shows row shares (recall) with counts beneath."""
    cm = np.asarray(cm, dtype=np.float64)
    support = cm.sum(axis=1, keepdims=True)
    shown = np.divide(cm, support, out=np.zeros_like(cm), where=support > 0) if normalize else cm
    n = len(classes)
    fig = Figure(figsize=(1.2 * n + 2.5, 1.1 * n + 1.8))
    ax = fig.add_subplot()
    image = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else max(shown.max(), 1))
    bar = fig.colorbar(image, ax=ax)
    bar.set_label("share of the true class" if normalize else "utterances")
    threshold = (1 if normalize else shown.max()) / 2
    for i in range(n):
        for j in range(n):
            text = f"{shown[i, j]:.2f}\n({int(cm[i, j])})" if normalize else f"{int(cm[i, j])}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="white" if shown[i, j] > threshold else "black")
    ax.set_xticks(range(n), list(classes), rotation=45, ha="right")
    ax.set_yticks(range(n), list(classes))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(wrapped(title, fig.get_figwidth() - 1))
    fig.tight_layout()
    return fig


def condition_bars_figure(stats: Mapping[str, Mapping[str, Stat]], columns: Mapping[str, str], title: str,
                          metric_label: str) -> Figure:
    """Grouped bars: one group per test condition (`columns`: condition -> header, in order), one bar per model
    (`stats`: model label -> condition -> Stat), std as error bars. Missing values leave a gap."""
    models = list(stats)
    conditions = list(columns)
    width = 0.8 / max(len(models), 1)
    fig = Figure(figsize=(max(6.0, 1.1 * len(conditions) + 2), 4.2))
    ax = fig.add_subplot()
    x = np.arange(len(conditions))
    for k, model in enumerate(models):
        values = [stats[model].get(c) for c in conditions]
        means = [v.mean if v is not None and v.available else np.nan for v in values]
        stds = [v.std if v is not None and v.available else np.nan for v in values]
        ax.bar(x - 0.4 + width * (k + 0.5), means, width, yerr=stds, capsize=2, label=model, color=_colour(k))
    ax.set_xticks(x, [columns[c] for c in conditions])
    ax.set_xlabel("test condition (available modalities)")
    ax.set_ylabel(f"{metric_label} (mean ± std over runs)")
    ax.set_ylim(0, 1.2)  # room above 1 for the legend: scores are shares
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_title(wrapped(title, fig.get_figwidth()))
    ax.legend(fontsize=8, ncols=min(len(models), 5), loc="upper center")
    fig.tight_layout()
    return fig


def curves_figure(curves: Mapping[str, Mapping[str, np.ndarray]], loss: str, score: str, title: str,
                  loss_label: str, score_label: str) -> Figure:
    """Two panels, train loss and a validation score per epoch, one line per model (`curves`: model label ->
    columns). A model that did not log a column is left out of that panel."""
    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2)
    for ax, column, label in ((axes[0], loss, loss_label), (axes[1], score, score_label)):
        drawn = 0
        for k, (model, columns) in enumerate(curves.items()):
            if column in columns and np.isfinite(columns[column]).any():
                ax.plot(columns["epoch"], columns[column], marker=".", label=model, color=_colour(k))
                drawn += 1
        if drawn:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, f"no model logged {column}", ha="center", va="center", transform=ax.transAxes)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_title(f"{label} per epoch")
    fig.suptitle(wrapped(title, fig.get_figwidth()))
    fig.tight_layout()
    return fig


def sweep_figure(stats: Mapping[str, Mapping[float, Stat]], title: str, metric_label: str) -> Figure:
    """The metric against the labelled fraction, one line per model with std error bars."""
    fig = Figure(figsize=(6, 4.2))
    ax = fig.add_subplot()
    fractions: set[float] = set()
    for k, (model, points) in enumerate(stats.items()):
        xs = sorted(f for f, s in points.items() if s.available)
        fractions.update(xs)
        ax.errorbar(xs, [points[f].mean for f in xs], yerr=[points[f].std for f in xs], marker="o", capsize=3,
                    label=model, color=_colour(k))
    ax.set_xticks(sorted(fractions), [f"{f:g}" for f in sorted(fractions)])
    ax.set_xlabel("labelled fraction of the training set")
    ax.set_ylabel(f"{metric_label} (mean ± std over runs)")
    ax.set_title(wrapped(title, fig.get_figwidth()))
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def tsne_points(imagined: np.ndarray, target: np.ndarray, config: Mapping[str, Any]) -> np.ndarray:
    """A joint 2-D t-SNE of the imagined and ground-truth vectors (rows: imagined first, then targets).

    One thread: Barnes-Hut t-SNE sums forces in parallel, and a different thread count changes the low bits, so
    the figure would not be byte-identical from one machine to the next."""
    points = np.concatenate([imagined, target]).astype(np.float64)
    perplexity = min(float(config["perplexity"]), (len(points) - 1) / 3)
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto",
                random_state=int(config["random_state"]))
    with threadpool_limits(limits=1):
        return tsne.fit_transform(points)


def tsne_figure(points: np.ndarray, labels: np.ndarray, classes: Sequence[str], title: str) -> Figure:
    """Colour by class, marker by origin: circles = ground truth (forward target), crosses = imagined."""
    n = len(points) // 2
    fig = Figure(figsize=(6.5, 5.5))
    ax = fig.add_subplot()
    for origin, rows, marker in (("ground truth", slice(n, 2 * n), "o"), ("imagined", slice(0, n), "x")):
        for c, name in enumerate(classes):
            keep = labels == c
            if keep.any():
                xy = points[rows][keep]
                style = {"facecolors": "none", "edgecolors": _colour(c)} if marker == "o" else {"color": _colour(c)}
                ax.scatter(xy[:, 0], xy[:, 1], s=14, marker=marker, alpha=0.75, label=f"{name} ({origin})", **style)
    ax.set_xlabel("t-SNE dimension 1")
    ax.set_ylabel("t-SNE dimension 2")
    ax.set_title(wrapped(title, fig.get_figwidth()))
    ax.legend(fontsize=7, ncols=2, loc="best")
    fig.tight_layout()
    return fig


def claims_figure(rows: Sequence[tuple[str, float, float, float, bool]], title: str, level: str) -> Figure:
    """The claimed orderings as paired differences: one horizontal bar per claim (`rows`: label, mean difference
    better - worse, interval low, interval high, holds), the interval as error bar, a line at 0. Green: the
    interval lies above 0 (the claim holds on these runs); grey: it does not."""
    fig = Figure(figsize=(9.0, 0.45 * len(rows) + 2.0))
    ax = fig.add_subplot()
    y = np.arange(len(rows))[::-1]
    means = np.array([r[1] for r in rows], dtype=np.float64)
    errors = np.array([[r[1] - r[2] for r in rows], [r[3] - r[1] for r in rows]], dtype=np.float64)
    colours = ["tab:green" if r[4] else "tab:gray" for r in rows]
    ax.barh(y, means, xerr=np.nan_to_num(errors), color=colours, capsize=3, height=0.6)
    ax.axvline(0.0, color="black", linewidth=1)
    ax.set_yticks(y, [textwrap.fill(r[0], 34) for r in rows], fontsize=8)
    ax.set_xlabel(f"better - worse: mean paired difference, {level} interval")
    ax.set_title(wrapped(title, fig.get_figwidth() - 3.5))
    fig.tight_layout()
    return fig
