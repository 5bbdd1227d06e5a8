"""Monitoring a model against its history: population stability, missing values, new categories, and
realised churn and calibration once the labels have matured; a verdict with its reasons.

**PSI** (population stability index) of a feature between the training reference and a scoring:
``sum_i (c_i - r_i) * ln(c_i / r_i)`` over bins i, with r and c the shares of rows in each bin.
Numeric features use the reference's deciles as bin edges (ties merged), plus one bin for missing
values; categorical features use their training categories, one bin for categories unseen in
training and one for missing. Empty bins count as a share of 1e-4 (so a bin that empties or fills
gives a large but finite term). The usual reading: < 0.1 stable, 0.1-0.25 watch, >= 0.25 shifted.
It is a small numpy function of our own: the drift libraries (evidently, nannyml, alibi-detect)
bring heavy dependencies for a formula of three lines.

The training reference (bin edges and shares of every feature, of the health score and of the
manual score, on the rows the model was fitted on) is written to ``monitor_reference.json`` in the
model directory at training. Model directories trained before it existed still load: the monitor
then compares with the first scoring date in the history and says so.

**Realised churn.** With labelled snapshots (the card's label column; empty = not known yet), each
past scoring date whose horizon has passed (date + horizon_days <= the last snapshot date in the
labelled data) and whose customers have labels is compared with what happened: churn per band,
predicted vs observed per 10-point score bin, ECE (10 equal-count bins) and the calibration slope
and intercept (logistic regression of the outcome on logit(p): 1 and 0 when calibrated).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ml.errors import DataError, warn
from ml.monitor.history import VALUE, History

REFERENCE_FILE = "monitor_reference.json"
REFERENCE_FORMAT = 1
N_BINS = 10
EPS = 1e-4
PSI_WATCH, PSI_SHIFTED = 0.1, 0.25
MIN_ROWS = 100  # fewer rows than this: PSI and calibration are reported but do not move the verdict
MISSING_JUMP = 0.10  # a rise of the missing share by 10 points is worth a look
NEW_CATEGORY_SHARE = 0.01
CALIBRATION_GAP = 0.05  # |observed - predicted| churn that calls for retraining (when significant)
CALIBRATION_Z = 3.0
WATCH_GAP, WATCH_Z = 0.02, 2.0
SCORE_BINS = np.arange(0, 101, 10)


# ---- PSI -----------------------------------------------------------------------------------------
def psi(reference: np.ndarray, current: np.ndarray, eps: float = EPS) -> float:
    """Population stability index between two vectors of bin shares (each summing to 1)."""
    r = np.maximum(np.asarray(reference, float), eps)
    c = np.maximum(np.asarray(current, float), eps)
    return float(np.sum((c - r) * np.log(c / r)))


def psi_status(value: float | None) -> str:
    if value is None or not np.isfinite(value):
        return "unknown"
    return "stable" if value < PSI_WATCH else "watch" if value < PSI_SHIFTED else "shifted"


def numeric_edges(values: np.ndarray, bins: int = N_BINS) -> list[float]:
    """Interior bin edges: the quantiles 1/bins ... (bins-1)/bins of the non-missing values, ties merged."""
    v = np.asarray(values, float)
    v = v[~np.isnan(v)]
    if not len(v):
        return []
    return sorted(set(np.quantile(v, np.arange(1, bins) / bins).tolist()))


def numeric_shares(values: np.ndarray, edges: list[float]) -> np.ndarray:
    """Shares of rows in each bin (``len(edges) + 1`` bins, right-closed at each edge) and, last, missing."""
    v = np.asarray(values, float)
    miss = np.isnan(v)
    idx = np.searchsorted(np.asarray(edges, float), v[~miss], side="left")
    counts = np.bincount(idx, minlength=len(edges) + 1).astype(float)
    counts = np.append(counts, miss.sum())
    return counts / max(len(v), 1)


def categorical_shares(values, categories: list[str]) -> tuple[np.ndarray, dict[str, float]]:
    """Shares per known category, then unseen categories together, then missing; and the unseen ones."""
    s = pd.Series(values, dtype=object)
    n = max(len(s), 1)
    miss = s.isna()
    text = s[~miss].astype(str)
    counts = text.value_counts()
    known = counts.reindex(categories, fill_value=0).to_numpy(float)
    new = counts.drop(labels=[c for c in categories if c in counts.index])
    shares = np.concatenate([known, [new.sum(), miss.sum()]]) / n
    return shares, {str(k): float(v / n) for k, v in new.items()}


def _spec(values, kind: str) -> dict[str, Any]:
    if kind == "categorical":
        s = pd.Series(values, dtype=object)
        cats = sorted(s.dropna().astype(str).unique().tolist())
        shares, _ = categorical_shares(values, cats)
        return {"kind": kind, "categories": cats, "shares": shares.tolist(), "rows": len(s)}
    v = np.asarray(values, float)
    edges = numeric_edges(v)
    return {"kind": "numeric", "edges": edges, "shares": numeric_shares(v, edges).tolist(), "rows": len(v)}


def compare(spec: dict[str, Any], values) -> dict[str, Any]:
    """PSI of ``values`` against a reference ``spec``, its reading, the rows, missing shares and (for
    categorical features) the categories the reference never saw."""
    n = len(values)
    if spec["kind"] == "categorical":
        shares, new = categorical_shares(values, spec["categories"])
    else:
        shares, new = numeric_shares(values, spec["edges"]), {}
    value = psi(spec["shares"], shares) if n else None
    return {
        "psi": value,
        "status": psi_status(value),
        "rows": n,
        "reference_rows": spec["rows"],
        "missing_share": float(shares[-1]) if n else None,
        "reference_missing_share": float(spec["shares"][-1]),
        "new_categories": new,
    }


# ---- the training reference ----------------------------------------------------------------------
def reference_profile(model, frame: pd.DataFrame, X: pd.DataFrame | None = None) -> dict[str, Any]:
    """The reference the monitor compares with: bins and shares of every model feature, of the health
    score and of the manual score over ``frame`` (the rows the model was fitted on)."""
    from ml._lgb import predict_kw
    from ml.model.features import CATEGORICAL

    X = model.schema_.matrix(frame, strict=False) if X is None else X
    margin = model.booster_.predict(X, raw_score=True, **predict_kw())
    scores = model.scores(frame, margin)
    features = {}
    for f in model.schema_.features:
        col = X[f.name]
        if f.kind == CATEGORICAL:
            features[f.name] = _spec(col.astype(object).where(col.notna(), None).to_numpy(), "categorical")
        else:
            features[f.name] = _spec(col.to_numpy(dtype=float), "numeric")
    return {
        "format": REFERENCE_FORMAT,
        "source": "the rows the saved model was fitted on (every matured row after a refit, else train + validation)",
        "rows": len(frame),
        "features": features,
        "health_score": _spec(scores["health_score"].to_numpy(float), "numeric"),
        "manual_score": _spec(scores["manual_score"].to_numpy(float), "numeric"),
    }


def load_reference(model) -> dict[str, Any] | None:
    d = getattr(model, "model_dir_", None)
    path = None if d is None else Path(d) / REFERENCE_FILE
    if path is None or not path.exists():
        return None
    ref = json.loads(path.read_text(encoding="utf-8"))
    return ref if ref.get("format") == REFERENCE_FORMAT else None


def _history_reference(rows: pd.DataFrame, features: list[str], kinds: dict[str, str]) -> dict[str, Any]:
    feats = {f: _spec(rows[VALUE + f].to_numpy(), kinds.get(f, "numeric")) for f in features if VALUE + f in rows}
    return {
        "format": REFERENCE_FORMAT,
        "rows": len(rows),
        "features": feats,
        "health_score": _spec(rows["health_score"].to_numpy(float), "numeric"),
        "manual_score": _spec(rows["manual_score"].to_numpy(float), "numeric"),
    }


# ---- realised churn ----------------------------------------------------------------------------------
def _labels(frame: pd.DataFrame, card) -> pd.DataFrame:
    from ml.model.features import label_array

    need = [card.id_column, card.date_column, card.label_column]
    if not card.date_column or not card.label_column:
        raise DataError(
            "realised churn needs the card's date_column and label_column (to match labels to scoring dates); "
            "set both in the card."
        )
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise DataError(f"--data is missing column(s) {missing}; it needs {need} (labelled snapshots).")
    out = pd.DataFrame(
        {
            "customer_id": frame[card.id_column].astype(str).to_numpy(),
            "scoring_date": pd.to_datetime(frame[card.date_column], errors="coerce").dt.normalize().to_numpy(),
        }
    )
    lab = frame[card.label_column]
    known = lab.notna().to_numpy() & ~(lab.astype("string").str.strip() == "").fillna(False).to_numpy()
    y = np.full(len(frame), np.nan)
    if known.any():
        y[known] = label_array(frame.loc[known], card.label_column)
    out["churned"] = y
    if out["scoring_date"].isna().any():
        raise DataError(f"--data: column {card.date_column!r} has values that are not dates; fix or drop those rows.")
    return out


def realised_churn(history: History, card, labelled: pd.DataFrame, dates: list[dt.date]) -> dict[str, Any]:
    """Per past scoring date whose labels have matured: observed vs predicted churn (see the module
    docstring); the dates still waiting for their horizon are listed as ``pending``."""
    from ml.model.evaluate import calibration_metrics

    labels = _labels(labelled, card)
    end = labels["scoring_date"].max()
    horizon = pd.Timedelta(days=card.horizon_days)
    matured = [d for d in dates if pd.Timestamp(d) + horizon <= end]
    pending = [str(d) for d in dates if d not in matured]
    out: dict[str, Any] = {
        "horizon_days": card.horizon_days,
        "labels_until": str(end.date()),
        "by_date": [],
        "pending_dates": pending,
    }
    if not matured:
        return out
    rows = history.frame(["customer_id", "scoring_date", "health_score", "band", "churn_probability"], dates=matured)
    rows["scoring_date"] = pd.to_datetime(rows["scoring_date"]).dt.normalize()
    joined = rows.merge(labels, on=["customer_id", "scoring_date"], how="inner")
    joined = joined[joined["churned"].notna()]
    band_order = [b.name for b in card.bands]
    for day, g in joined.groupby("scoring_date", sort=True):
        y = g["churned"].to_numpy(int)
        p = g["churn_probability"].to_numpy(float)
        if len(g) == 0:
            continue
        m = calibration_metrics(p, y, g["band"].astype(str).to_numpy(), band_order)
        m.pop("reliability", None)
        n = len(g)
        gap = float(y.mean() - p.mean())
        se = float(np.sqrt(max(p.mean() * (1 - p.mean()), 1e-12) / n))
        bins = pd.cut(g["health_score"], SCORE_BINS, right=False, include_lowest=True)
        by_score = (
            pd.DataFrame({"bin": bins, "p": p, "y": y})
            .groupby("bin", observed=True)
            .agg(rows=("p", "size"), predicted=("p", "mean"), observed=("y", "mean"))
        )
        score_rows = [
            {
                "scores": f"{int(iv.left)}–{int(iv.right)}",
                "rows": int(r.rows),
                "predicted": float(r.predicted),
                "observed": float(r.observed),
            }
            for iv, r in by_score.iterrows()
        ]
        out["by_date"].append(
            {
                "date": str(pd.Timestamp(day).date()),
                "rows": n,
                "churners": int(y.sum()),
                "gap": gap,
                "z": gap / se,
                **m,
                "by_score": score_rows,
                "sentence": _sentence(score_rows, str(pd.Timestamp(day).date())),
            }
        )
    return out


def _sentence(score_rows: list[dict], day: str) -> str:
    """The score bin (with >= 50 rows) furthest from its prediction, in words."""
    big = [r for r in score_rows if r["rows"] >= 50] or score_rows
    if not big:
        return ""
    r = max(big, key=lambda r: abs(r["observed"] - r["predicted"]))
    return (
        f"the customers scored {r['scores']} on {day} churned at {r['observed']:.0%}; "
        f"the model said {r['predicted']:.0%} ({r['rows']:,} customers)"
    )


# ---- the monitor -------------------------------------------------------------------------------------
def monitor(
    model,
    history: str | os.PathLike | History,
    *,
    labelled: pd.DataFrame | None = None,
    as_of: dt.date | str | None = None,
) -> dict[str, Any]:
    """Drift of the latest scoring (on or before ``as_of``) against the training reference, realised
    churn per past scoring date when ``labelled`` snapshots are given, and a verdict (ok, watch,
    retrain) with its reasons. JSON-ready."""
    from ml.model.features import CATEGORICAL
    from ml.monitor.alerts import resolve_as_of

    hist = history if isinstance(history, History) else History(history)
    hist.require()
    card = model.card
    all_dates = hist.dates()
    day = resolve_as_of(all_dates, as_of, str(hist.path))
    dates = [d for d in all_dates if d <= day]
    features = model.schema_.names
    kinds = {f.name: ("categorical" if f.kind == CATEGORICAL else "numeric") for f in model.schema_.features}
    have = set(hist.columns([day]))
    cols = ["customer_id", "health_score", "manual_score", *[VALUE + f for f in features if VALUE + f in have]]
    latest = hist.frame(cols, dates=[day])
    reference = load_reference(model)
    reasons: list[tuple[str, str]] = []  # (level, text)
    if reference is None:
        first = dates[0]
        warn(
            f"the model directory has no {REFERENCE_FILE} (trained before monitoring existed), so drift is "
            f"measured against the first scoring in the history ({first}) instead of the training data; "
            "retrain the model to monitor against its training data."
        )
        first_cols = ["customer_id", "health_score", "manual_score"]
        first_cols += [VALUE + f for f in features if VALUE + f in set(hist.columns([first]))]
        reference = _history_reference(hist.frame(first_cols, dates=[first]), features, kinds)
        reference_source = f"first scoring in the history ({first})"
    else:
        reference_source = reference.get("source", "training rows")

    drift: dict[str, Any] = {}
    for key in ("health_score", "manual_score"):
        drift[key] = compare(reference[key], latest[key].to_numpy(float))
    per_feature = {}
    for f in features:
        if f not in reference["features"] or VALUE + f not in latest:
            continue
        v = latest[VALUE + f]
        values = v.astype(object).where(v.notna(), None).to_numpy() if kinds[f] == "categorical" else v.to_numpy(float)
        per_feature[f] = compare(reference["features"][f], values)
    drift["indicators"] = per_feature

    # the score's PSI at every scoring date: a trend, not only today's number
    all_scores = hist.frame(["scoring_date", "health_score"], dates=dates)
    by_date = [
        {"date": str(pd.Timestamp(d).date()), **_psi_only(compare(reference["health_score"], g.to_numpy(float)))}
        for d, g in all_scores.groupby("scoring_date", sort=True)["health_score"]
    ]

    # verdict
    score = drift["health_score"]
    if score["rows"] >= MIN_ROWS and score["psi"] is not None:
        if score["psi"] >= PSI_SHIFTED:
            reasons.append(("retrain", f"the health score's distribution shifted: PSI {score['psi']:.3f} (>= 0.25)"))
        elif score["psi"] >= PSI_WATCH:
            reasons.append(("watch", f"the health score's distribution moved: PSI {score['psi']:.3f} (0.1–0.25)"))
    for f, r in per_feature.items():
        if r["rows"] < MIN_ROWS or r["psi"] is None:
            continue
        if r["psi"] >= PSI_WATCH:
            reasons.append(("watch", f"{f}: PSI {r['psi']:.3f} ({r['status']}) on {r['rows']:,} customers"))
        jump = (r["missing_share"] or 0) - r["reference_missing_share"]
        if jump >= MISSING_JUMP:
            reasons.append(
                (
                    "watch",
                    f"{f}: {r['missing_share']:.0%} missing, {r['reference_missing_share']:.0%} in the reference",
                )
            )
        new = {k: v for k, v in r["new_categories"].items() if v >= NEW_CATEGORY_SHARE}
        if new:
            listed = ", ".join(f"{k!r} {v:.1%}" for k, v in sorted(new.items(), key=lambda kv: -kv[1])[:5])
            reasons.append(("watch", f"{f}: categories unseen in training: {listed}"))

    realised = None
    if labelled is not None:
        realised = realised_churn(hist, card, labelled, dates)
        mature = [r for r in realised["by_date"] if r["rows"] >= MIN_ROWS]
        if not mature:
            reasons.append(("info", "no scoring date has matured labels yet (date + horizon after the labels end)"))
        else:
            last = mature[-1]
            what = (
                f"{last['date']}: {last['rows']:,} customers churned at {last['observed_rate']:.1%}, "
                f"the model said {last['mean_predicted']:.1%} (ECE {last['ece']:.3f}"
                + (f", slope {last['calibration_slope']:.2f})" if last["calibration_slope"] is not None else ")")
            )
            if abs(last["gap"]) >= CALIBRATION_GAP and abs(last["z"]) >= CALIBRATION_Z:
                reasons.append(("retrain", f"realised churn departs from the predictions: {what}"))
            elif abs(last["gap"]) >= WATCH_GAP and abs(last["z"]) >= WATCH_Z:
                reasons.append(("watch", f"realised churn drifts from the predictions: {what}"))
            else:
                reasons.append(("info", f"realised churn matches the predictions: {what}"))

    levels = [lvl for lvl, _ in reasons]
    verdict = "retrain" if "retrain" in levels else "watch" if "watch" in levels else "ok"
    ordered = sorted(reasons, key=lambda r: ("retrain", "watch", "info").index(r[0]))
    return {
        "as_of": str(day),
        "history": str(hist.path),
        "model_dir": None if getattr(model, "model_dir_", None) is None else str(model.model_dir_),
        "reference": reference_source,
        "reference_rows": reference["rows"],
        "scoring_dates": [str(d) for d in dates],
        "drift": drift,
        "score_psi_by_date": by_date,
        "realised": realised,
        "verdict": verdict,
        "reasons": [f"{lvl}: {text}" for lvl, text in ordered],
    }


def _psi_only(r: dict[str, Any]) -> dict[str, Any]:
    return {"psi": r["psi"], "status": r["status"], "rows": r["rows"]}


# ---- MLflow --------------------------------------------------------------------------------------------
def monitor_metrics(result: dict[str, Any]) -> dict[str, float]:
    """Flat metrics for MLflow: psi.<feature>, psi.health_score, missing.<feature>, realised.* of the
    latest matured date, verdict as a number (0 ok, 1 watch, 2 retrain)."""
    out: dict[str, float] = {}
    d = result["drift"]
    for key in ("health_score", "manual_score"):
        if d[key]["psi"] is not None:
            out[f"psi.{key}"] = d[key]["psi"]
    for f, r in d["indicators"].items():
        if r["psi"] is not None:
            out[f"psi.{f}"] = r["psi"]
            out[f"missing.{f}"] = r["missing_share"]
    real = result.get("realised") or {}
    if real.get("by_date"):
        last = real["by_date"][-1]
        for k in ("ece", "observed_rate", "mean_predicted", "calibration_slope", "calibration_intercept", "rows"):
            if last.get(k) is not None:
                out[f"realised.{k}"] = float(last[k])
    out["verdict"] = float(("ok", "watch", "retrain").index(result["verdict"]))
    return {k.replace(" ", "_"): float(v) for k, v in out.items() if v is not None and np.isfinite(v)}


def log_monitor_run(result: dict[str, Any], model, model_uri: str | None = None) -> tuple[str, str | None]:
    """Log the monitor's metrics and JSON to an MLflow run linked to the model's training run (a child
    run of it when found: tag ``mlflow.parentRunId``). Returns (monitor run id, training run id or None)."""
    from ml.serving.tracking import DEFAULT_EXPERIMENT, mlflow_module

    mlflow = mlflow_module()
    client = mlflow.MlflowClient()
    parent = _training_run(client, model, model_uri)
    if parent is not None:
        experiment_id = parent.info.experiment_id
    else:
        exp = mlflow.set_experiment(model.card.experiment or DEFAULT_EXPERIMENT)
        experiment_id = exp.experiment_id
    tags = {
        "healthscore.kind": "monitor",
        "healthscore.card": model.card.name,
        "healthscore.verdict": result["verdict"],
    }
    if parent is not None:
        tags |= {"mlflow.parentRunId": parent.info.run_id, "healthscore.training_run": parent.info.run_id}
    run = client.create_run(experiment_id, tags=tags, run_name=f"monitor {model.card.name} {result['as_of']}")
    rid = run.info.run_id
    try:
        from mlflow.entities import Metric, Param

        now = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
        metrics = [Metric(k, v, now, 0) for k, v in monitor_metrics(result).items()]
        params = [Param("as_of", result["as_of"]), Param("history", result["history"][:500])]
        client.log_batch(rid, metrics=metrics, params=params)
        client.log_dict(rid, result, "monitor.json")
        client.set_terminated(rid, "FINISHED")
    except Exception:
        client.set_terminated(rid, "FAILED")
        raise
    return rid, None if parent is None else parent.info.run_id


def _training_run(client, model, model_uri: str | None):
    """The MLflow run that trained ``model``: the registry's run for a models:/ URI, else the run tagged
    with the model directory's path. None when not found."""
    try:
        if model_uri and model_uri.startswith("models:/"):
            body = model_uri.removeprefix("models:/")
            if "@" in body:
                name, alias = body.split("@", 1)
                mv = client.get_model_version_by_alias(name, alias)
            else:
                name, _, version = body.rpartition("/")
                mv = client.get_model_version(name, version)
            return client.get_run(mv.run_id)
        d = getattr(model, "model_dir_", None)
        if d is None:
            return None
        path = str(Path(d).resolve()).replace("'", "\\'")
        runs = client.search_runs(
            [e.experiment_id for e in client.search_experiments()],
            filter_string=f"tags.`healthscore.model_dir` = '{path}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return runs[0] if runs else None
    except Exception:  # an unreachable or empty store: the monitor run stands alone
        return None
