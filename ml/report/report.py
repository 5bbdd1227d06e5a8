"""``HealthReport``: one self-contained HTML file on a trained model and a table of snapshots.

``build_report(model, frame)`` computes everything once (``cached_property``) and renders it as HTML
(``to_html``) or as a JSON summary (``to_json``). The HTML opens offline: CSS inline, charts as
inline SVG, no scripts, no external requests (a Content-Security-Policy forbids them), rendered from
the jinja2 templates in ``ml/templates`` with autoescaping on. The only markup that is not escaped
is the SVG this module draws itself (:func:`inline_svg`); every customer-provided string (ids, category
values, driver text) reaches the page escaped, in HTML by jinja2 and in the SVG by matplotlib.

Sections: overview; portfolio by band (model vs manual card); manual vs proposed weights (from the
model directory's ``weights.csv``); what each score means (reliability and churn per band from
``metrics.json``, health score -> churn probability); at-risk customers and their top drivers; why
they are at risk (a waterfall of each customer's points, beside the manual card's breakdown).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ml.errors import DataError
from ml.report.figures import (
    band_colors,
    band_distribution_figure,
    churn_by_band_figure,
    finite,
    inline_svg,
    points_text,
    reliability_figure,
    value_text,
    waterfall_figure,
    weights_figure,
)

SECTIONS = (
    ("overview", "Overview"),
    ("bands", "Portfolio by band"),
    ("weights", "Manual vs proposed weights"),
    ("meaning", "What each score means"),
    ("at-risk", "At-risk customers"),
    ("why", "Why at risk"),
)
TRENDS_SECTION = ("trends", "Trends")  # shown when the report is given a score history
MAX_AT_RISK = 50  # rows of the at-risk table
MIN_AT_RISK = 10  # topped up with the next riskiest customers when the lowest band holds fewer
MAX_EXPLAINED = 10  # customers with a waterfall
HEALTH_SCORES = (90, 80, 70, 60, 50, 40)
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
SCORER_NAMES = {
    "manual": "Manual card",
    "card_shap": "Card, SHAP weights",
    "card_gain": "Card, gain weights",
    "card_linear": "Card, linear weights",
    "model": "Model",
    "model_full": "Model (full)",
    "model_additive": "Model (additive)",
}
LEARNED_SECTION = ("learned", "Learned card")  # after the weights, for an additive model only


# ---- small helpers ---------------------------------------------------------------------------------
def _num(x: Any, digits: int = 1) -> str:
    v = finite(x)
    return "–" if v is None else f"{v:,.{digits}f}"


def _pct(x: Any, digits: int = 1) -> str:
    v = finite(x)
    return "–" if v is None else f"{v:.{digits}%}"


def _jsonable(o: Any) -> Any:
    """Nested data with numpy scalars as Python ones and NaN/inf as None (strict JSON)."""
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_jsonable(v) for v in o]
    if isinstance(o, np.bool_ | bool):
        return bool(o)
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, float | np.floating):
        return finite(o)
    if isinstance(o, pd.Timestamp | dt.date):
        return str(o.date() if isinstance(o, pd.Timestamp) else o)
    if o is pd.NaT or o is pd.NA:
        return None
    return o


# ---- the report ------------------------------------------------------------------------------------
class HealthReport:
    """Everything in the report, computed once from ``model`` and ``frame``; render with
    :meth:`to_html` or :meth:`to_json`.

    ``frame`` holds snapshots to score (the label is not needed). With a date column, each customer's
    latest snapshot is scored. ``model_dir`` (default: the directory the model was loaded from) is
    where ``weights.csv`` and ``metrics.json`` are read; sections that need them are skipped without.
    """

    def __init__(
        self,
        model,
        frame: pd.DataFrame,
        *,
        model_dir: str | os.PathLike | None = None,
        max_at_risk: int = MAX_AT_RISK,
        max_explained: int = MAX_EXPLAINED,
        history: str | os.PathLike | None = None,
        include_inactive: bool = False,
    ):
        model.check_fitted()
        card = model.card
        if card.id_column not in frame.columns:
            raise DataError(f"data is missing the id column {card.id_column!r}; add it (the card's id_column).")
        if len(frame) == 0:
            raise DataError("the data has no rows; the report needs at least one snapshot to score.")
        self.model = model
        self.frame = frame
        d = model_dir if model_dir is not None else getattr(model, "model_dir_", None)
        self.model_dir = None if d is None else Path(d)
        self.max_at_risk = max_at_risk
        self.max_explained = max_explained
        self.history = None if history is None else Path(history)
        self.include_inactive = include_inactive
        self.link_base: Path | None = None  # directory the HTML is written to (relative links)

    # ---- data ----------------------------------------------------------------------------------
    @property
    def card(self):
        return self.model.card

    @cached_property
    def _date_column(self) -> str | None:
        c = self.card.date_column
        return c if c and c in self.frame.columns else None

    @cached_property
    def dates(self) -> pd.Series | None:
        if self._date_column is None:
            return None
        return pd.to_datetime(self.frame[self._date_column], errors="coerce")

    @cached_property
    def latest(self) -> pd.DataFrame:
        """One row per customer: the latest snapshot (the last row when there is no date column)."""
        f = self.frame
        if self.dates is not None:
            order = np.argsort(self.dates.to_numpy(), kind="stable")  # NaT sorts last...
            nat = self.dates.isna().to_numpy()[order]
            order = np.concatenate([order[nat], order[~nat]])  # ...so put it first: never "latest"
            f = f.iloc[order]
        return f.drop_duplicates(self.card.id_column, keep="last").reset_index(drop=True)

    @cached_property
    def current(self) -> pd.DataFrame:
        """The current book: each customer's latest snapshot when it is on the latest snapshot date
        (customers whose last snapshot is older have left); every latest snapshot with
        ``include_inactive``."""
        if self.include_inactive or self.dates is None:
            return self.latest
        d = pd.to_datetime(self.latest[self._date_column], errors="coerce")
        return self.latest.loc[d.eq(d.max()).to_numpy()].reset_index(drop=True)

    @cached_property
    def left_out(self) -> int:
        """Customers whose latest snapshot is older than the latest date, left out of the book."""
        return int(len(self.latest) - len(self.current))

    @cached_property
    def has_value(self) -> bool:
        return bool(self.card.value_column) and self.card.value_column in self.current.columns

    @cached_property
    def sort_key(self) -> str:
        return "value_at_risk" if self.has_value else "churn_probability"

    @cached_property
    def predictions(self) -> pd.DataFrame:
        """``model.predict`` on the current book, by value at risk (when the card has a value column)
        or churn probability, highest first."""
        pred = self.model.predict(self.current, drivers=3)
        return pred.sort_values(
            [self.sort_key, "churn_probability"], ascending=False, kind="stable", na_position="last"
        ).reset_index(drop=True)

    @cached_property
    def value_summary(self) -> dict[str, Any] | None:
        """Value and value at risk per band of the current book, and the sentence leading the list."""
        if not self.has_value:
            return None
        from ml.model.book import money, value_by_band, value_sentence

        order = [b.name for b in self.card.bands]
        table = value_by_band(self.predictions, order)
        return {
            "column": self.card.value_column,
            "sentence": value_sentence(table, self.lowest_band, self.card.value_column),
            "rows": [
                {
                    "band": b,
                    "customers": int(r.customers),
                    "value": money(r.value),
                    "value_at_risk": money(r.value_at_risk),
                    "top_share": finite(r.top_share),
                }
                for b, r in table.iterrows()
            ],
        }

    @cached_property
    def cards(self) -> list[dict[str, str]]:
        """The adoptable proposal cards written by ``train`` (``cards/<proposal>.yaml``), as links
        relative to where the report is written (``link_base``; the working directory until then): a
        relative link opens the file beside the report and requests nothing from anywhere else."""
        if self.model_dir is None or not (self.model_dir / "cards").is_dir():
            return []
        base = Path(self.link_base) if self.link_base is not None else Path.cwd()
        return [
            {"name": p.stem, "path": str(p), "href": Path(os.path.relpath(p.resolve(), base.resolve())).as_posix()}
            for p in sorted((self.model_dir / "cards").glob("*.yaml"))
        ]

    @cached_property
    def colors(self) -> dict[str, str]:
        return band_colors(self.card)

    @cached_property
    def labels(self) -> dict[str, str]:
        from ml.model.explain import feature_labels

        return dict(zip(self.model.schema_.names, feature_labels(self.model), strict=True))

    @cached_property
    def band_counts(self) -> pd.DataFrame:
        order = [b.name for b in self.card.bands]
        p = self.predictions
        return pd.DataFrame(
            {
                "model": pd.Series(np.asarray(p["band"], dtype=object)).value_counts().reindex(order, fill_value=0),
                "manual": pd.Series(np.asarray(p["manual_band"], dtype=object))
                .value_counts()
                .reindex(order, fill_value=0),
            }
        ).astype(int)

    def _read_model_file(self, name: str):
        if self.model_dir is None or not (self.model_dir / name).exists():
            return None
        path = self.model_dir / name
        if name.endswith(".json"):
            return json.loads(path.read_text(encoding="utf-8"))
        table = pd.read_csv(path, dtype={"flag": str, "direction_check": str, "direction": str})
        for col in ("flag", "direction_check", "direction"):
            if col in table:
                table[col] = table[col].fillna("")
        return table

    @cached_property
    def weights(self) -> pd.DataFrame | None:
        """``weights.csv`` of the model directory, or None."""
        return self._read_model_file("weights.csv")

    @cached_property
    def metrics(self) -> dict | None:
        """``metrics.json`` of the model directory, or None."""
        return self._read_model_file("metrics.json")

    @cached_property
    def health_table(self) -> list[dict]:
        """What a health score means: P(churn) at 90, 80, ... for the model, and the manual card's."""
        from ml.model.calibration import health_to_probability
        from ml.scorecard import assign_bands

        cal = self.card.calibration
        h = np.array(HEALTH_SCORES, float)
        p = health_to_probability(h, cal.scale, base_rate=self.model.base_rate_, anchor=cal.anchor_score, pdo=cal.pdo)
        manual_p = self.model.manual_calibrator_.predict_proba(-h)
        bands = assign_bands(h, self.card.bands, self.model.band_cuts_)
        mbands = assign_bands(h, self.card.bands, self.model.scorecard_.band_cuts_)
        return [
            {
                "health": int(s),
                "probability": float(pp),
                "band": None if pd.isna(b) else str(b),
                "manual_probability": float(mp),
                "manual_band": None if pd.isna(mb) else str(mb),
            }
            for s, pp, b, mp, mb in zip(h, p, bands, manual_p, mbands, strict=True)
        ]

    @cached_property
    def lowest_band(self) -> str:
        return self.card.bands[-1].name

    @cached_property
    def at_risk(self) -> pd.DataFrame:
        """Customers in the lowest band, riskiest first (at most ``max_at_risk``); topped up to
        ``MIN_AT_RISK`` with the next riskiest customers when the lowest band holds fewer."""
        p = self.predictions
        low = p[np.asarray(p["band"], dtype=object) == self.lowest_band]
        target = min(self.max_at_risk, max(len(low), MIN_AT_RISK))
        if len(low) >= target:
            out = low.head(target)
        else:
            others = p.drop(index=low.index).head(target - len(low))
            out = pd.concat([low, others]).sort_values(
                [self.sort_key, "churn_probability"], ascending=False, kind="stable", na_position="last"
            )
        return out.reset_index(drop=True)

    @cached_property
    def explanations(self) -> list[dict]:
        """``explain_customer`` for the riskiest ``max_explained`` customers of the at-risk table."""
        from ml.model.explain import explain_customer

        ids = self.at_risk[self.card.id_column].head(self.max_explained)
        return [explain_customer(self.model, self.current, cid) for cid in ids]

    @cached_property
    def trends(self):
        """Trends from the score history (``history``), or None: band shares over time, the at-risk
        customers' score lines, what changed since the previous scoring."""
        if self.history is None:
            return None
        from ml.monitor.trends import trend_summary

        ids = [str(c) for c in self.at_risk[self.card.id_column].head(self.max_explained)]
        return trend_summary(self.history, self.card, customers=ids)

    # ---- views -----------------------------------------------------------------------------------
    @cached_property
    def overview(self) -> dict[str, Any]:
        card, model = self.card, self.model
        ids = self.frame[card.id_column]
        out: dict[str, Any] = {
            "card": card.name,
            "model_dir": None if self.model_dir is None else str(self.model_dir),
            "rows": len(self.frame),
            "customers": int(ids.nunique()),
            "current_customers": int(len(self.current)),
            "left_out": self.left_out,
            "include_inactive": self.include_inactive,
            "date_column": self._date_column,
            "first_date": None,
            "last_date": None,
            "snapshot_dates": None,
            "stale_customers": 0,
            "trained_rows": getattr(model, "n_rows_", None),
            "calibration": model.calibrator_.to_dict().get("method"),
            "scale": card.calibration.scale,
            "base_rate": float(model.base_rate_),
            "horizon_days": card.horizon_days,
            "lowest_band": self.lowest_band,
            "in_lowest_band": int(self.band_counts.loc[self.lowest_band, "model"]),
            "versions": getattr(model, "versions_", {}) or {},
            "generated": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        }
        if self.dates is not None and self.dates.notna().any():
            d = self.dates
            last = d.max()
            latest = pd.to_datetime(self.latest[self._date_column], errors="coerce")
            out.update(
                first_date=str(d.min().date()),
                last_date=str(last.date()),
                snapshot_dates=int(d.nunique()),
                stale_customers=int((latest < last).sum()),
            )
        m = self.metrics or {}
        out["holdout"] = m.get("holdout")
        out["evaluation"] = m.get("evaluation")
        out["saved_model"] = m.get("saved_model")
        out["rows_censored"] = m.get("rows_censored")
        split = getattr(model, "split_summary_", None) or {}
        slices = split.get("slices", {})
        out["backtest_fit_rows"] = sum(slices[k]["rows"] for k in ("train", "valid") if k in slices) or None
        return out

    @cached_property
    def weight_rows(self) -> list[dict] | None:
        w = self.weights
        if w is None:
            return None
        rows = []
        for r in w.to_dict(orient="records"):
            in_card = bool(r.get("in_scorecard"))
            rows.append(
                {
                    "indicator": r["indicator"],
                    "label": self.labels.get(r["indicator"], r["indicator"]),
                    "column": r.get("column", ""),
                    "in_scorecard": in_card,
                    "manual": finite(r.get("manual")),
                    "shap": finite(r.get("shap")),
                    "shap_low": finite(r.get("shap_low")),
                    "shap_high": finite(r.get("shap_high")),
                    "gain": finite(r.get("gain")),
                    "linear": finite(r.get("linear")) if in_card else None,
                    "linear_low": finite(r.get("linear_low")) if in_card else None,
                    "linear_high": finite(r.get("linear_high")) if in_card else None,
                    "direction": r.get("direction", ""),
                    "direction_check": r.get("direction_check", ""),
                    "constrained": bool(r.get("constrained", False)),
                    "flag": r.get("flag", ""),
                }
            )
        return rows

    @cached_property
    def ranking_rows(self) -> list[dict]:
        if not self.metrics or "ranking" not in self.metrics:
            return []
        order = [b.name for b in self.card.bands]
        return [
            {
                "key": k,
                "name": SCORER_NAMES.get(k, k),
                "roc_auc": m.get("roc_auc"),
                "lift": m.get("top_decile_lift"),
                "capture": m.get("at_risk_capture"),
                "capture_at_card_share": m.get("capture_at_card_share"),
                "bands": [
                    {"band": b, "rate": m["churn_rate_by_band"].get(b), "rows": m.get("rows_by_band", {}).get(b, 0)}
                    for b in order
                ],
            }
            for k, m in self.metrics["ranking"].items()
        ]

    @cached_property
    def at_risk_rows(self) -> list[dict]:
        card = self.card
        out = []
        for r in self.at_risk.to_dict(orient="records"):
            drivers = [r[c] for c in ("driver_1", "driver_2", "driver_3") if isinstance(r.get(c), str) and r.get(c)]
            date = r.get(self._date_column) if self._date_column else None
            out.append(
                {
                    "customer_id": str(r[card.id_column]),
                    "date": None if date is None or pd.isna(date) else str(pd.Timestamp(date).date()),
                    "health_score": finite(r["health_score"]),
                    "band": None if pd.isna(r["band"]) else str(r["band"]),
                    "churn_probability": finite(r["churn_probability"]),
                    "manual_score": finite(r["manual_score"]),
                    "manual_band": None if pd.isna(r["manual_band"]) else str(r["manual_band"]),
                    "manual_churn_probability": finite(r["manual_churn_probability"]),
                    "value": finite(r.get("value")),
                    "value_at_risk": finite(r.get("value_at_risk")),
                    "drivers": drivers,
                }
            )
        return out

    @cached_property
    def sections(self) -> tuple[tuple[str, str], ...]:
        """The table of contents: the trends section with a history, the learned card for an additive model."""
        sections = SECTIONS if self.trends is None else (*SECTIONS[:5], TRENDS_SECTION, *SECTIONS[5:])
        if getattr(self.model, "kind_", "full") != "additive":
            return sections
        at = [k for k, _ in sections].index("weights") + 1
        return (*sections[:at], LEARNED_SECTION, *sections[at:])

    @cached_property
    def shapes(self) -> list[dict[str, Any]]:
        """An additive model's learned points curve per indicator beside the card's rule (else empty)."""
        if getattr(self.model, "kind_", "full") != "additive":
            return []
        from ml.model.additive import shape_curves
        from ml.report.figures import shape_figure

        return [
            {
                "label": c.label,
                "text": c.text,
                "rule": c.manual_rule,
                "svg": inline_svg(shape_figure(c), f"svg-shape-{i}"),
            }
            for i, c in enumerate(shape_curves(self.model, self.latest))
        ]

    @cached_property
    def learned_card(self) -> dict[str, Any] | None:
        """metrics.json's note on the learned card (written, or why not)."""
        return (self.metrics or {}).get("learned_card")

    @cached_property
    def charts(self) -> dict[str, Any]:
        """Inline SVG per chart (``why`` is a list, one per explained customer)."""
        order = [b.name for b in self.card.bands]
        charts: dict[str, Any] = {
            "bands": inline_svg(band_distribution_figure(self.band_counts, self.colors), "svg-bands")
        }
        if self.weights is not None and len(self.weights):
            charts["weights"] = inline_svg(weights_figure(self.weights, self.labels), "svg-weights")
        cal = (self.metrics or {}).get("calibration", {})
        if all(k in cal and "reliability" in cal[k] for k in ("model", "manual")):
            charts["reliability"] = inline_svg(reliability_figure(self.metrics), "svg-reliability")
        if (self.metrics or {}).get("ranking"):
            charts["churn_by_band"] = inline_svg(
                churn_by_band_figure(self.metrics["ranking"], order, self.colors), "svg-churn-by-band"
            )
        if self.trends is not None:
            from ml.report.figures import band_shares_figure, score_lines_figure

            t = self.trends
            charts["band_shares"] = inline_svg(
                band_shares_figure(t.band_shares, t.manual_band_shares, self.colors), "svg-band-shares"
            )
            charts["score_lines"] = inline_svg(score_lines_figure(t.lines, self.card, self.colors), "svg-score-lines")
        charts["why"] = [
            inline_svg(waterfall_figure(e, band_colors=self.colors), f"svg-why-{i}")
            for i, e in enumerate(self.explanations)
        ]
        return charts

    @cached_property
    def summary(self) -> dict[str, Any]:
        """The report's content as JSON-ready data (no charts)."""
        cal = (self.metrics or {}).get("calibration", {})
        return _jsonable(
            {
                "overview": self.overview,
                "bands": {k: self.band_counts[k].to_dict() for k in ("model", "manual")},
                "weights": self.weight_rows,
                "calibration": {
                    k: {"ece": cal[k].get("ece"), "brier": cal[k].get("brier")} for k in ("model", "manual") if k in cal
                }
                or None,
                "ranking": self.ranking_rows or None,
                "health_to_probability": self.health_table,
                "at_risk": self.at_risk_rows,
                "value": self.value_summary,
                "cards": [{"name": c["name"], "path": c["path"]} for c in self.cards],
                "explained": [
                    {
                        "customer_id": e["customer_id"],
                        "health_score": e["health_score"],
                        "base_score": e["base_score"],
                        "contributions": [
                            {"indicator": c["indicator"], "points": c["points"]} for c in e["contributions"]
                        ],
                    }
                    for e in self.explanations
                ],
                "trends": None if self.trends is None else self.trends.to_dict(),
            }
        )

    # ---- rendering -------------------------------------------------------------------------------
    def to_html(self) -> str:
        return (
            _env()
            .get_template("report.html.j2")
            .render(
                r=self,
                o=self.overview,
                card=self.card,
                sections=self.sections,
                trends=self.trends,
                csp=CSP,
                colors=self.colors,
                band_order=[b.name for b in self.card.bands],
                charts=self.charts,
                why=list(zip(self.explanations, self.charts["why"], strict=True)),
            )
        )

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.summary, indent=indent, allow_nan=False)


@lru_cache(maxsize=1)
def _env():
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(
        loader=PackageLoader("ml.report", "templates"),
        autoescape=select_autoescape(default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(num=_num, pct=_pct, points=points_text, value=value_text)
    return env


def build_report(
    model,
    frame: pd.DataFrame,
    *,
    model_dir: str | os.PathLike | None = None,
    history: str | os.PathLike | None = None,
    include_inactive: bool = False,
) -> HealthReport:
    """The report on ``frame`` (snapshots; each customer's latest is scored) for a fitted ``model``;
    with ``history`` (a score history directory) it adds the trends."""
    return HealthReport(model, frame, model_dir=model_dir, history=history, include_inactive=include_inactive)


def write_report(
    model,
    frame: pd.DataFrame,
    out_path: str | os.PathLike,
    *,
    model_dir: str | os.PathLike | None = None,
    history: str | os.PathLike | None = None,
    include_inactive: bool = False,
) -> HealthReport:
    """Build the report and write its HTML to ``out_path`` atomically; returns the report (its
    ``summary`` serves the CLI's one-line output)."""
    from ml.data.io import write_text

    report = build_report(model, frame, model_dir=model_dir, history=history, include_inactive=include_inactive)
    report.link_base = Path(out_path).parent
    write_text(report.to_html(), out_path)
    return report
