"""Plots saved with a model: reliability (model and manual card), SHAP summary and dependence plots.

All in health points, drawn with matplotlib (Agg, no display). ``svg`` returns inline SVG text for
the HTML report.
"""

from __future__ import annotations

import io
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from markupsafe import Markup

from ml.errors import warn

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


def pyplot() -> _Figures:
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
    plt = pyplot()
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
    plt = pyplot()
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
    ax.set_yticks(range(len(order)), [mpl_text(labels[j]) for j in order])
    ax.axvline(0, color="#616161", lw=0.8)
    ax.set(xlabel="health points (negative = lowers the score)", title="Drivers of the health score (held-out rows)")
    return fig


def dependence_figure(points: pd.Series, values: pd.Series, label: str):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 3.2))
    if isinstance(values.dtype, pd.CategoricalDtype):
        cats = list(values.cat.categories)
        x = values.cat.codes.to_numpy(dtype=float)
        ax.set_xticks(range(len(cats)), [mpl_text(c) for c in cats], rotation=30)
    else:
        x = values.to_numpy(dtype=float)
    ax.scatter(x, points.to_numpy(), s=4, alpha=0.5, color="#1565c0", linewidths=0)
    ax.axhline(0, color="#616161", lw=0.8)
    ax.set(xlabel=mpl_text(label), ylabel="health points", title=mpl_text(label))
    return fig


def shape_figure(curve):
    """An additive model's learned points curve for one indicator (a step line, or bars for booleans and
    categories) beside the manual card's points for the same values, with the data's distribution below."""
    plt = pyplot()
    fig, (ax, dist) = plt.subplots(2, 1, figsize=(5.0, 3.6), sharex=curve.kind == "numeric")
    fig.subplots_adjust(hspace=0.08)
    label = mpl_text(curve.label)
    if curve.kind == "numeric":
        vals = curve.values[~np.isnan(curve.values)]
        lo, hi = np.quantile(vals, [0.005, 0.995]) if len(vals) else (0.0, 1.0)
        edges = np.concatenate([[lo], curve.x, [hi]])
        ax.step(edges, np.append(curve.points, curve.points[-1]), where="post", color=_MODEL_BLUE, label="learned")
        if curve.manual_points is not None:
            ax.plot(curve.manual_x, curve.manual_points, color=_MANUAL_ORANGE, ls="--", label="your card")
        dist.hist(np.clip(vals, lo, hi), bins=40, color="#9e9e9e")
        dist.set_xlabel(label)
    else:
        x = np.arange(len(curve.x))
        w = 0.38 if curve.manual_points is not None else 0.7
        ax.bar(
            x - (w / 2 if curve.manual_points is not None else 0), curve.points, w, color=_MODEL_BLUE, label="learned"
        )
        if curve.manual_points is not None:
            ax.bar(x + w / 2, curve.manual_points, w, color=_MANUAL_ORANGE, alpha=0.7, label="your card")
        codes = curve.values[~np.isnan(curve.values.astype(float))].astype(int) if len(curve.values) else []
        counts = np.bincount(np.asarray(codes, dtype=int), minlength=len(curve.x))[: len(curve.x)]
        dist.bar(x, counts, 0.7, color="#9e9e9e")
        dist.set_xticks(x, [mpl_text(c) for c in curve.x], rotation=30 if len(x) > 4 else 0)
        ax.set_xticks(x, [])
    ax.axhline(0, color="#616161", lw=0.8)
    ax.set(ylabel="health points", title=label)
    ax.legend(loc="best", fontsize=7, frameon=False)
    dist.set_ylabel("rows", fontsize=8)
    dist.tick_params(labelsize=7)
    return fig


def _file_name(name: str) -> str:
    """An indicator name as a safe file name part (column names may hold spaces or slashes)."""
    import re

    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "feature"


def write_model_plots(model, frame: pd.DataFrame, y: np.ndarray, metrics: dict, out_dir: Path) -> None:
    """reliability.png, shap_summary.png and plots/dependence_<indicator>.png under ``out_dir`` (and, for
    an additive model, plots/shape_<indicator>.png: the learned points curve beside the card's rule)."""
    from ml.model.explain import contributions, feature_labels

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
    if getattr(model, "kind_", "full") == "additive":  # the learned points curve of each indicator
        from ml.model.additive import shape_curves

        for curve in shape_curves(model, frame):
            save(shape_figure(curve), out_dir / "plots" / f"shape_{_file_name(curve.name)}.png", dpi=90)


# ---- report figures -------------------------------------------------------------------------------
WATERFALL_STEPS = 8  # largest contributions drawn; the rest are grouped as "other"
_FALLBACK_COLOR = "#757575"
_NEG, _POS, _NEUTRAL = "#c62828", "#2e7d32", "#78909c"
_MODEL_BLUE, _MANUAL_ORANGE, _LINEAR_GREEN = "#1565c0", "#ef6c00", "#558b2f"


def finite(x: Any) -> float | None:
    """``x`` as a float, or None when missing / not finite."""
    if x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def points_text(x: Any) -> str:
    v = finite(x)
    if v is None:
        return "–"
    v = round(v, 1) or 0.0  # no "-0.0"
    return f"{v:+.1f}"


def value_text(v: Any, limit: int = 40) -> str:
    """An indicator value as short text: 'missing', 'yes'/'no', 3 significant digits, or the string."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "missing"
    if isinstance(v, bool | np.bool_):
        return "yes" if v else "no"
    if isinstance(v, int | np.integer):
        return f"{int(v):,}"
    if isinstance(v, float | np.floating):
        return f"{float(v):.3g}"
    s = str(v)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def mpl_text(s: str) -> str:
    """Text for a matplotlib label: ``$`` would start mathtext (and fail on customer data)."""
    return str(s).replace("$", r"\$")


def band_colors(card) -> dict[str, str]:
    """Each band's colour from the card, normalised to #rrggbb (the colour goes into a style attribute
    and into matplotlib, so it must be a real colour, not arbitrary text)."""
    from matplotlib.colors import to_hex

    out = {}
    for b in card.bands:
        try:
            out[b.name] = to_hex(b.color)
        except ValueError:
            warn(
                f"band {b.name!r}: color {b.color!r} is not a colour matplotlib knows; the report draws it "
                f"in grey. Use a hex colour like '#2e7d32' or a CSS colour name."
            )
            out[b.name] = _FALLBACK_COLOR
    return out


# ---- SVG -------------------------------------------------------------------------------------------
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.S)
_ID = re.compile(r'\bid="([^"]+)"')


def inline_svg(fig, prefix: str) -> Markup:
    """Our own figure as inline SVG markup: metadata dropped, every id prefixed so that several SVGs
    in one page never share an id. The only place in the report where markup bypasses escaping:
    matplotlib escapes the text it writes (labels may hold customer data)."""
    text = _METADATA.sub("", svg(fig), count=1)
    ids = sorted(set(_ID.findall(text)), key=len, reverse=True)
    if ids:
        pattern = re.compile(r'(id="|#)(' + "|".join(map(re.escape, ids)) + r')(?=["\)])')
        text = pattern.sub(lambda m: f"{m.group(1)}{prefix}-{m.group(2)}", text)
    text = text.replace("<svg ", f'<svg role="img" aria-labelledby="{prefix}-caption" ', 1)
    return Markup(text)


def _band_bars(ax, x, vals, width, colors, hatch, alpha, label=None):
    """One series of per-band bars: the model solid, the manual card hatched, in the band's colour."""
    return ax.bar(
        x,
        vals,
        width * 0.95,
        color=colors,
        alpha=alpha,
        hatch=hatch,
        edgecolor=colors if hatch is None else "#424242",
        linewidth=0.6,
        label=label,
    )


def band_distribution_figure(counts: pd.DataFrame, colors: dict[str, str]):
    """Grouped bars per band: the model (solid) and the manual card (hatched), in the band's colour.
    ``counts`` has one row per band and the columns ``model`` and ``manual``."""
    from matplotlib.patches import Patch

    plt = pyplot()
    bands = list(counts.index)
    fig, ax = plt.subplots(figsize=(6.4, 3.0))
    x = np.arange(len(bands))
    w = 0.38
    total = {k: max(int(counts[k].sum()), 1) for k in ("model", "manual")}
    for off, key, hatch, alpha in ((-w / 2, "model", None, 1.0), (w / 2, "manual", "///", 0.45)):
        vals = counts[key].to_numpy()
        cols = [colors.get(b, _FALLBACK_COLOR) for b in bands]
        bars = _band_bars(ax, x + off, vals, w, cols, hatch, alpha)
        for rect, v in zip(bars, vals, strict=True):
            ax.annotate(
                f"{int(v):,}\n{v / total[key]:.0%}",
                (rect.get_x() + rect.get_width() / 2, rect.get_height()),
                ha="center",
                va="bottom",
                fontsize=7.5,
                xytext=(0, 2),
                textcoords="offset points",
            )
    ax.set_xticks(x, [mpl_text(b) for b in bands])
    ax.set_ylabel("customers")
    ax.set_ylim(0, max(1, counts.to_numpy().max()) * 1.2)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(
        handles=[
            Patch(facecolor="#9e9e9e", label="model"),
            Patch(facecolor="#e0e0e0", hatch="///", edgecolor="#424242", label="manual card"),
        ],
        frameon=False,
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
        ncols=2,
    )
    return fig


def weights_figure(weights: pd.DataFrame, labels: dict[str, str]):
    """Horizontal bars per indicator: manual weight, mean |SHAP| share and best linear weights (points
    out of 100), with the refits' 90 % intervals as error bars."""
    plt = pyplot()
    w = weights.iloc[::-1].reset_index(drop=True)  # first indicator on top
    n = len(w)
    fig, ax = plt.subplots(figsize=(6.8, 0.42 * n + 1.1))
    y = np.arange(n)
    h = 0.27

    def interval(lo_col, hi_col, mask):
        lo = pd.to_numeric(w[lo_col], errors="coerce").to_numpy(float)
        hi = pd.to_numeric(w[hi_col], errors="coerce").to_numpy(float)
        ok = mask & ~np.isnan(lo) & ~np.isnan(hi)
        return ok, (lo + hi) / 2, (hi - lo) / 2

    in_card = w["in_scorecard"].astype(bool).to_numpy()
    ax.barh(y + h, w["manual"].astype(float), h, color="#9e9e9e", label="manual")
    ax.barh(y, w["shap"].astype(float), h, color=_MODEL_BLUE, label="SHAP share")
    ok, mid, half = interval("shap_low", "shap_high", np.ones(n, bool))
    if ok.any():
        ax.errorbar(mid[ok], y[ok], xerr=half[ok], fmt="none", ecolor="#0d2b52", elinewidth=1, capsize=2.5)
    lin = np.where(in_card, w["linear"].astype(float), np.nan)
    ax.barh(y - h, lin, h, color=_LINEAR_GREEN, label="linear (card indicators)")
    ok, mid, half = interval("linear_low", "linear_high", in_card)
    if ok.any():
        ax.errorbar(mid[ok], y[ok] - h, xerr=half[ok], fmt="none", ecolor="#2b4a10", elinewidth=1, capsize=2.5)
    names = [
        labels.get(str(i), str(i)) + ("" if c else " (extra)") for i, c in zip(w["indicator"], in_card, strict=True)
    ]
    ax.set_yticks(y, [mpl_text(s) for s in names])
    ax.set_xlabel("points out of 100 (bars: 90 % interval over refits)")
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(frameon=False, loc="lower right")
    ax.set_ylim(-0.6, n - 0.4)
    return fig


def churn_by_band_figure(ranking: dict, band_order: list[str], colors: dict[str, str]):
    """Observed churn rate per band on held-out rows: the model (solid) and the manual card (hatched)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    x = np.arange(len(band_order))
    w = 0.38
    top = 0.0
    for off, key, hatch, alpha in ((-w / 2, "model", None, 1.0), (w / 2, "manual", "///", 0.45)):
        if key not in ranking:
            continue
        rates = [finite(ranking[key]["churn_rate_by_band"].get(b)) for b in band_order]
        rows = ranking[key].get("rows_by_band", {})
        cols = [colors.get(b, _FALLBACK_COLOR) for b in band_order]
        vals = [0.0 if r is None else r for r in rates]
        _band_bars(ax, x + off, vals, w, cols, hatch, alpha, label="model" if key == "model" else "manual card")
        for xi, r, b in zip(x + off, rates, band_order, strict=True):
            txt = "no rows" if r is None else f"{r:.0%}\n(n={rows.get(b, 0):,})"
            ax.annotate(
                txt,
                (xi, 0 if r is None else r),
                ha="center",
                va="bottom",
                fontsize=7,
                xytext=(0, 2),
                textcoords="offset points",
            )
        top = max([top, *vals])
    ax.set_xticks(x, [mpl_text(b) for b in band_order])
    ax.set_ylim(0, max(top * 1.3, 0.05))
    ax.yaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    ax.set(ylabel="observed churn rate", title="Churn within the horizon, per band (held-out rows)")
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(frameon=False, loc="upper left")
    return fig


def waterfall_figure(explanation: dict, steps: int = WATERFALL_STEPS, band_colors: dict[str, str] | None = None):
    """One customer's health score built up from the model's base score: the ``steps`` largest
    contributions (health points), the rest grouped as "other", then the score. ``explanation`` is
    :func:`ml.explain.explain_customer`'s result."""
    plt = pyplot()
    items = sorted(explanation["contributions"], key=lambda d: -abs(d["points"]))
    top, rest = items[:steps], items[steps:]
    rows = [(f"{it['label']} = {value_text(it['value'])}", float(it["points"])) for it in top]
    if rest:
        rows.append((f"other ({len(rest)} indicators)", float(sum(it["points"] for it in rest))))
    base, score = float(explanation["base_score"]), float(explanation["health_score"])
    labels = ["base score (portfolio average)", *[r[0] for r in rows], "health score"]
    n = len(labels)
    fig, ax = plt.subplots(figsize=(5.0, 0.27 * n + 0.8))
    y = np.arange(n)[::-1]
    final_color = (band_colors or {}).get(explanation.get("band"), _MODEL_BLUE)
    ax.barh(y[0], base, 0.6, color=_NEUTRAL)
    ax.annotate(f"{base:.1f}", (base, y[0]), xytext=(3, 0), textcoords="offset points", va="center", fontsize=7.5)
    running = base
    for i, (_, pts) in enumerate(rows, start=1):
        left = running + min(pts, 0.0)
        ax.barh(y[i], abs(pts), 0.6, left=left, color=_NEG if pts < 0 else _POS)
        ax.plot([running, running], [y[i - 1] - 0.3, y[i] + 0.3], color="#9e9e9e", lw=0.6)
        end = running + pts
        ax.annotate(
            points_text(pts),
            (max(running, end), y[i]),
            xytext=(3, 0),
            textcoords="offset points",
            va="center",
            fontsize=7.5,
        )
        running = end
    ax.plot([running, running], [y[-2] - 0.3, y[-1] + 0.3], color="#9e9e9e", lw=0.6)
    ax.barh(y[-1], score, 0.6, color=final_color)
    ax.annotate(
        f"{score:.1f}",
        (score, y[-1]),
        xytext=(3, 0),
        textcoords="offset points",
        va="center",
        fontsize=7.5,
        fontweight="bold",
    )
    ax.set_yticks(y, [mpl_text(s) for s in labels])
    lo = min(base, score, *np.cumsum([base] + [r[1] for r in rows]))
    ax.set_xlim(max(0.0, lo - 12), min(100.0, max(base, score) + 8) if max(base, score) < 95 else 104)
    ax.set_xlabel("health points")
    ax.spines[["top", "right"]].set_visible(False)
    return fig


# ---- trends (from the score history) ------------------------------------------------------------------
def band_shares_figure(model: pd.DataFrame, manual: pd.DataFrame, colors: dict[str, str]):
    """Share of customers per band at each scoring date, stacked (lowest band at the bottom): the model
    on the left, the manual card on the right. Rows are dates, columns bands (highest first)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(8.6, 2.8), sharey=True)
    for ax, shares, title in ((axes[0], model, "model"), (axes[1], manual, "manual card")):
        x = np.arange(len(shares))
        bands = list(shares.columns)[::-1]  # lowest band first, at the bottom
        ax.stackplot(
            x,
            [shares[b].to_numpy(float) for b in bands],
            colors=[colors.get(b, _FALLBACK_COLOR) for b in bands],
            labels=[mpl_text(b) for b in bands],
            alpha=0.85,
        )
        step = max(1, len(x) // 6)
        ax.set_xticks(x[::step], [str(d) for d in shares.index[::step]], fontsize=7, rotation=30, ha="right")
        ax.set_xlim(0, max(len(x) - 1, 1))
        ax.set_ylim(0, 1)
        ax.set_title(title, fontsize=9)
        ax.spines[["top", "right"]].set_visible(False)
    axes[0].set_ylabel("share of customers")
    axes[0].yaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles[::-1], labels[::-1], frameon=False, loc="upper center", ncols=len(labels), fontsize=8)
    fig.subplots_adjust(top=0.78)
    return fig


def score_lines_figure(lines: dict[str, pd.Series], card, colors: dict[str, str]):
    """Each chosen customer's health score over the scoring dates, over the bands' colours."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.8, 3.2))
    mins = [b.min for b in card.bands]
    tops = [100.0, *mins[:-1]]
    for b, lo, hi in zip(card.bands, mins, tops, strict=True) if card.bands_by == "fixed" else ():
        ax.axhspan(lo, hi, color=colors.get(b.name, _FALLBACK_COLOR), alpha=0.08, lw=0)
    for cid, s in lines.items():
        ax.plot(
            pd.to_datetime(s.index), s.to_numpy(float), marker="o", ms=3, lw=1.2, label=mpl_text(value_text(cid, 18))
        )
    ax.set_ylim(0, 100)
    ax.set_ylabel("health score")
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(axis="x", labelsize=7)
    if lines:
        ax.legend(frameon=False, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return fig
