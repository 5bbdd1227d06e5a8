"""Plots saved with a model: reliability (model and manual card), SHAP summary and dependence plots.

All in health points, drawn with matplotlib (Agg, no display). ``svg`` returns inline SVG text for
the HTML report.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

MAX_POINTS = 5000


class _Figures:
    """The part of pyplot's interface these plots use, built on ``matplotlib.figure.Figure``: no
    backend switch and no global state, so plotting here never disturbs a notebook's matplotlib."""

    @staticmethod
    def subplots(*args, **kwargs):
        from matplotlib.figure import Figure

        fig = Figure(figsize=kwargs.pop("figsize", None))
        return fig, fig.subplots(*args, **kwargs)

    @staticmethod
    def close(fig) -> None:  # figures are not registered with pyplot: nothing to release
        pass


def _plt() -> _Figures:
    return _Figures()


_RC = {"svg.fonttype": "none", "svg.hashsalt": "healthscore"}


def save(fig, path, **kwargs) -> None:
    """Save a figure with the package's settings (deterministic SVG ids, text kept as text)."""
    import matplotlib

    with matplotlib.rc_context(_RC):
        fig.savefig(path, bbox_inches="tight", **kwargs)


def svg(fig) -> str:
    """The figure as inline SVG text (no external references)."""
    buf = io.StringIO()
    save(fig, buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg") :]


def reliability_figure(metrics: dict):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.plot([0, 1], [0, 1], ls="--", color="#9e9e9e", lw=1, label="perfect")
    top = 0.0
    for key, color, label in (("model", "#1565c0", "model"), ("manual", "#ef6c00", "manual card")):
        rel = metrics["calibration"][key]["reliability"]
        ax.plot(
            rel["predicted"],
            rel["observed"],
            marker="o",
            color=color,
            label=f"{label} (ECE {metrics['calibration'][key]['ece']:.3f})",
        )
        top = max(top, max(rel["predicted"] + rel["observed"]))
    lim = min(1.0, top * 1.1 + 0.01)
    ax.set(
        xlim=(0, lim),
        ylim=(0, lim),
        xlabel="predicted churn probability",
        ylabel="observed churn rate",
        title="Reliability on held-out rows (10 equal-count bins)",
    )
    ax.legend(loc="upper left", frameon=False)
    return fig


def summary_figure(points: pd.DataFrame, X: pd.DataFrame, labels: list[str]):
    """Beeswarm-like summary: each customer's points per indicator, coloured by the value's rank."""
    plt = _plt()
    order = np.argsort(points.abs().mean().to_numpy())
    fig, ax = plt.subplots(figsize=(6.4, 0.42 * len(order) + 1.2))
    rng = np.random.default_rng(0)
    for pos, j in enumerate(order):
        name = points.columns[j]
        v = points[name].to_numpy()
        col = X[name]
        if isinstance(col.dtype, pd.CategoricalDtype):
            c = col.cat.codes.to_numpy(dtype=float)
        else:
            c = col.to_numpy(dtype=float)
        c = pd.Series(c).rank(pct=True).to_numpy()
        ax.scatter(
            v,
            pos + rng.uniform(-0.3, 0.3, len(v)),
            c=np.nan_to_num(c, nan=0.5),
            cmap="coolwarm",
            s=4,
            alpha=0.6,
            linewidths=0,
        )
    ax.set_yticks(range(len(order)), [labels[j] for j in order])
    ax.axvline(0, color="#616161", lw=0.8)
    ax.set(xlabel="health points (negative = lowers the score)", title="Drivers of the health score (held-out rows)")
    return fig


def dependence_figure(points: pd.Series, values: pd.Series, label: str):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.2, 3.2))
    if isinstance(values.dtype, pd.CategoricalDtype):
        cats = list(values.cat.categories)
        x = values.cat.codes.to_numpy(dtype=float)
        ax.set_xticks(range(len(cats)), cats, rotation=30)
    else:
        x = values.to_numpy(dtype=float)
    ax.scatter(x, points.to_numpy(), s=4, alpha=0.5, color="#1565c0", linewidths=0)
    ax.axhline(0, color="#616161", lw=0.8)
    ax.set(xlabel=label, ylabel="health points", title=label)
    return fig


def _file_name(name: str) -> str:
    """An indicator name as a safe file name part (column names may hold spaces or slashes)."""
    import re

    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "feature"


def write_model_plots(model, frame: pd.DataFrame, y: np.ndarray, metrics: dict, out_dir: Path) -> None:
    """reliability.png, shap_summary.png and plots/dependence_<indicator>.png under ``out_dir``."""
    from ml.explain import contributions, feature_labels

    out_dir = Path(out_dir)
    save(reliability_figure(metrics), out_dir / "reliability.png", dpi=110)
    if len(frame) > MAX_POINTS:  # a seeded random sample: the rows are ordered by customer
        frame = frame.iloc[np.sort(np.random.default_rng(0).choice(len(frame), MAX_POINTS, replace=False))]
    sample = frame
    X = model.schema_.matrix(sample, strict=False)  # training data: stray text was already warned about
    contrib = contributions(model, X)
    labels = feature_labels(model)
    save(summary_figure(contrib.points, X, labels), out_dir / "shap_summary.png", dpi=110)
    (out_dir / "plots").mkdir(exist_ok=True)
    for name, label in zip(model.schema_.names, labels, strict=True):
        save(
            dependence_figure(contrib.points[name], X[name], label),
            out_dir / "plots" / f"dependence_{_file_name(name)}.png",
            dpi=90,
        )
