"""Each customer's drivers in health points that add up to the score shown.

**Model.** LightGBM's own TreeSHAP (``pred_contrib=True``) splits the churn margin into a base value
b (the model's expected margin) and one log-odds contribution phi_j per feature, with
``b + sum_j phi_j = margin``. The health score is a strictly decreasing function H of the margin
(calibration, then the health scale), so each customer's log-odds contributions are converted with
that customer's *secant slope*

    s = (H(margin) - H(b)) / (margin - b),    points_j = s * phi_j,    base_score = H(b)

(the derivative H'(b) when margin = b; ``margin - b`` is taken as ``sum_j phi_j`` and H(margin) from
LightGBM's own margin, the one ``predict`` scores with, so the points add up to the score ``predict``
shows). Then ``base_score + sum_j points_j = H(margin)`` exactly, and
since s < 0 for every customer, each contribution keeps its meaning (more churn risk = fewer health
points) and the order of their sizes. The shap package is only used to cross-check these values.

**Manual card.** Points per indicator relative to the card's score at the portfolio's average
sub-scores (mean over the reference rows): contribution_j = points_j - w_j x mean_subscore_j / 100,
and base_score = sum_j w_j x mean_subscore_j / 100, so base + sum = the manual score exactly. Under
``missing: renormalize`` a missing indicator's points are what renormalizing did: it is scored like
the customer's other indicators (``card_points``), so it is shown as missing, not charged points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml._lgb import predict_kw
from ml.errors import DataError
from ml.model.additive import additive_tables, is_additive
from ml.model.features import CATEGORICAL
from ml.scorecard import NUMERIC_LIMIT

_DELTA = 1e-4


@dataclass(frozen=True)
class Contributions:
    """Per-customer x per-indicator points plus a base value: one shape for the model and the card."""

    points: pd.DataFrame  # rows x indicators, health points
    base_score: float
    score: np.ndarray  # base_score + points.sum(axis=1)
    margin: np.ndarray | None = None  # model only: raw log-odds margin
    log_odds: np.ndarray | None = None  # model only: TreeSHAP values (rows x features)


def _health_of_margin(model, margin: np.ndarray) -> np.ndarray:
    return model.health_from_probability(model.calibrator_.predict_proba(margin))


def contributions(model, X: pd.DataFrame, margin: np.ndarray | None = None, *, log_odds: bool = True) -> Contributions:
    """Model contributions in health points (see the module docstring); ``X`` is the feature matrix.

    The score they add up to is computed from LightGBM's own margin (``margin``, if the caller has it
    already), exactly as ``HealthModel.predict`` computes it: the TreeSHAP sum can differ from that
    margin in the last bits, so it only sets each customer's slope.

    For an additive model (``model.kind: additive``) the log-odds contributions come from the
    compiled step tables (:mod:`ml.model.additive`: one ``searchsorted`` per feature, equal to
    ``pred_contrib``) and, when no ``margin`` is given, so does the margin (equal to LightGBM's to
    float rounding): no tree is walked. ``log_odds=False`` skips keeping the log-odds matrix
    (``Contributions.log_odds`` is then None), which an additive model need not build at all."""
    if is_additive(model):
        tables = additive_tables(model)
        points = np.empty((len(X), len(tables.features)), order="F")  # filled column by column
        delta = np.zeros(len(X))
        for j, f in enumerate(tables.features):
            np.take(f.table(centred=True), f.index(X[f.name]), out=points[:, j])  # log-odds, for now
            delta += points[:, j]
        b = tables.bias
        if margin is None:
            margin = b + delta
        slope, health, base = _secant_slopes(model, b, margin, delta)
        phi = points.copy(order="F") if log_odds else None
        points *= slope[:, None]  # in place: no second matrix unless the log-odds are wanted
        return _contributions(model, X.index, points, base, health, margin, phi)
    raw = model.booster_.predict(X, pred_contrib=True, **predict_kw())
    phi, b = raw[:, :-1], float(raw[0, -1]) if len(raw) else 0.0  # the model's expected margin
    if margin is None:
        margin = model.booster_.predict(X, raw_score=True, **predict_kw())
    return log_odds_to_points(model, X.index, phi, b, margin)


def _secant_slopes(model, b: float, margin: np.ndarray, delta: np.ndarray):
    """(slope per row, H(margin), H(b)): s = (H(margin) - H(b)) / delta, or H'(b) where delta ~ 0."""
    health = _health_of_margin(model, margin)
    base = float(_health_of_margin(model, np.array([b]))[0])
    small = np.abs(delta) < 1e-9
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = np.where(small, 0.0, (health - base) / np.where(small, 1.0, delta))
    if small.any():
        deriv = (
            _health_of_margin(model, np.array([b + _DELTA]))[0] - _health_of_margin(model, np.array([b - _DELTA]))[0]
        ) / (2 * _DELTA)
        slope = np.where(small, deriv, slope)
    return slope, health, base


def _contributions(model, index, points, base, health, margin, phi) -> Contributions:
    return Contributions(
        points=pd.DataFrame(points, index=index, columns=model.schema_.names, copy=False),
        base_score=base,
        score=health,
        margin=margin,
        log_odds=phi,
    )


def log_odds_to_points(model, index, phi: np.ndarray, b: float, margin: np.ndarray) -> Contributions:
    """Log-odds contributions ``phi`` (rows x features) around the base margin ``b`` -> health points,
    each row by its secant slope, so that base_score + sum(points) = H(margin)."""
    slope, health, base = _secant_slopes(model, b, margin, phi.sum(axis=1))  # sum = TreeSHAP margin - b
    return _contributions(model, index, phi * slope[:, None], base, health, margin, phi)


def card_points(scorecard, frame: pd.DataFrame) -> np.ndarray:
    """Each indicator's points in the card's score, as the breakdown shows them: weight x sub-score /
    100 (plus a points card's ``offset``, which belongs to the base). A missing value under ``renormalize`` is scored like the customer's other indicators
    (renormalizing makes the score the weighted mean of the known sub-scores, which is the same as
    giving the missing indicator that mean), so it gets weight x that mean, never a penalty; under
    ``neutral``/``worst`` (or its ``missing_score``) what the card says. The points sum to the card's
    score (less any offset) exactly."""
    card = scorecard.card
    S = scorecard.subscores(frame).to_numpy()
    w = np.array([ind.weight for ind in card.indicators], float)
    policies = [ind.missing or card.missing for ind in card.indicators]
    inds = card.indicators
    fill = np.array(
        [
            ind.missing_score if ind.missing_score is not None else 50.0 if p == "neutral" else 0.0
            for ind, p in zip(inds, policies, strict=True)
        ]
    )
    renorm = np.array([p == "renormalize" and ind.missing_score is None for ind, p in zip(inds, policies, strict=True)])
    present = ~np.isnan(S)
    filled = np.where(present, S, fill)
    counted = present | ~renorm
    w_eff = w * counted
    denom = w_eff.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(denom > 0, (filled * w_eff).sum(axis=1, keepdims=True) / denom, np.nan)
    return np.where(counted, filled, mean) * w / 100.0


def card_contributions(scorecard, frame: pd.DataFrame, base_subscores: np.ndarray) -> Contributions:
    """The manual card's points per indicator relative to its score at ``base_subscores``."""
    card = scorecard.card
    w = np.array([ind.weight for ind in card.indicators])
    base_points = w * np.asarray(base_subscores, float) / 100.0
    pts = card_points(scorecard, frame)
    offset = card.offset or 0.0  # a points card's starting points belong to the base
    score = pts.sum(axis=1) + offset
    score[np.isnan(pts).all(axis=1)] = np.nan
    contrib = pts - base_points
    return Contributions(
        points=pd.DataFrame(contrib, index=frame.index, columns=card.names),
        base_score=float(base_points.sum()) + offset,
        score=score,
    )


def mean_subscores(scorecard, frame: pd.DataFrame) -> np.ndarray:
    """Average sub-score of each indicator over ``frame`` (missing values skipped; 50 if never seen)."""
    S = scorecard.subscores(frame).to_numpy()
    with np.errstate(invalid="ignore"):
        m = np.where(np.isnan(S).all(axis=0), 50.0, np.nanmean(np.where(np.isnan(S).all(axis=0), 50.0, S), axis=0))
    return m


# ---- text ----------------------------------------------------------------------------------------
_STR = np.dtypes.StringDType()


def number_texts(x: np.ndarray) -> np.ndarray:
    """Vectorised short text of numbers: integers without '.0', others to 3 significant digits."""
    x = np.asarray(x, float)
    out = np.full(len(x), "missing", dtype=_STR)
    ok = ~np.isnan(x)
    if not ok.any():
        return out
    v = x[ok]
    mag = np.floor(np.log10(np.maximum(np.abs(v), 1e-12)))
    decimals = np.clip(2 - mag, 0, 6)
    r = np.round(v * 10**decimals) / 10**decimals
    # integers as integers, but only where int64 holds them exactly (never -9223372036854775808)
    is_int = (r == np.round(r)) & (np.abs(r) < 1e15)
    whole = np.where(is_int, np.round(r), 0.0).astype(np.int64).astype(_STR)
    huge = np.abs(r) >= 1e15  # 3 significant digits in scientific notation: 1.23e+20
    sci = np.char.mod("%.3g", np.where(huge, r, 0.0)).astype(_STR)
    txt = np.where(is_int, whole, np.where(huge, sci, r.astype(_STR)))
    out[ok] = txt
    return out


def _fmt_points(p: np.ndarray) -> np.ndarray:
    r = np.round(np.asarray(p, float), 1)
    r = np.where(r == 0, 0.0, r)  # no "-0.0"
    sign = np.where(r > 0, "+", "").astype(_STR)
    body = np.where(r == np.round(r), np.round(r).astype(np.int64).astype(_STR), r.astype(_STR))
    return np.strings.add(np.strings.add(sign, body), " points")


def _value_codes(model, col: pd.Series, j: int) -> tuple[np.ndarray, np.ndarray]:
    """(texts, codes): the value text of each row is ``texts[codes]``; each distinct value is
    formatted once (a million rows hold far fewer distinct values)."""
    f = model.schema_.features[j]
    if f.kind == CATEGORICAL:
        cats = np.asarray(col.cat.categories.astype(str), dtype=object)
        codes = col.cat.codes.to_numpy().astype(np.int64)
        return np.append(cats, "missing").astype(_STR), np.where(codes < 0, len(cats), codes)
    x = col.to_numpy(dtype=float)
    if f.boolean:
        return np.array(["no", "yes", "missing"], dtype=_STR), np.where(np.isnan(x), 2, np.where(x == 1, 1, 0))
    codes, distinct = pd.factorize(x, use_na_sentinel=False)  # hashing: no sort of a million values
    return number_texts(distinct), codes


def _top_negative(pts: np.ndarray, k: int) -> np.ndarray:
    """Column indices of each row's k smallest values, smallest first, ties to the first column (the
    first k of a stable argsort, NaN last). Column-wise passes (a row minimum, then the first column
    holding it), k times: far cheaper than sorting a million short rows. Returns (indices, values)."""
    n, p = pts.shape
    work = np.asfortranarray(np.fmin(pts, np.inf))  # a copy, NaN read as +inf; columns contiguous
    rows = np.arange(n)
    out = np.empty((n, k), dtype=np.int64)
    values = np.empty((n, k))
    for r in range(k):
        low = work.min(axis=1)
        first = np.full(n, p - 1, dtype=np.int64)
        for j in range(p - 2, -1, -1):
            first[work[:, j] == low] = j
        out[:, r], values[:, r] = first, low
        work[rows, first] = np.inf
    return out, values


def _reference_text(model, j: int, name: str, values: np.ndarray | None = None):
    """The text after the value: the portfolio's reference. For a category it says what the usual
    value is worth (its average points) rather than repeating the customer's own value."""
    f = model.schema_.features[j]
    ref = model.reference_values_.get(name)
    if ref is None:
        return ""
    if f.kind == CATEGORICAL:
        worth = (getattr(model, "reference_points_", None) or {}).get(name)
        other = f" (usual: {ref}" + ("" if worth is None else f", {_fmt_points(np.array([worth]))[0]} on average") + ")"
        if values is None:
            return other
        return np.where(values == str(ref), " (the usual value)", other).astype(_STR)
    if f.boolean:
        return f" (usual: {'yes' if ref >= 0.5 else 'no'})"
    return f" (portfolio median {number_texts(np.array([ref]))[0]})"


def feature_labels(model) -> list[str]:
    card_labels = {ind.name: ind.label for ind in model.card.indicators}
    return [card_labels.get(n, n) for n in model.schema_.names]


def driver_text(model, X: pd.DataFrame, contrib: Contributions, k: int = 3) -> list[np.ndarray]:
    """For each rank 1..k, one text per customer for the indicator lowering the score most
    ("CSAT 2.1 (portfolio median 4.2): -11 points"; for a category "Plan basic (usual: pro, +1.2
    points on average): -4 points", or "(the usual value)"); empty where nothing more lowers the score.
    Vectorised: one pass per (rank, feature), never per row."""
    pts = contrib.points.to_numpy()
    n, p = pts.shape
    k_eff = min(k, p)
    order, smallest = _top_negative(pts, k_eff)
    labels = feature_labels(model)
    names = model.schema_.names
    out = []
    for r in range(k):
        text = np.full(n, "", dtype=object)
        if r >= k_eff:
            out.append(text)
            continue
        idx, val = order[:, r], smallest[:, r]
        lowers = np.flatnonzero(val < -0.05)
        by_feature = lowers[np.argsort(idx[lowers].astype(np.int16), kind="stable")]  # rows grouped by feature
        starts = np.flatnonzero(np.diff(idx[by_feature], prepend=-1))
        for m in np.split(by_feature, starts[1:]) if len(by_feature) else []:
            j = int(idx[m[0]])
            name = names[j]
            # each distinct (value, rounded points) pair is written once, then indexed
            vtexts, vcodes = _value_codes(model, X[name].iloc[m], j)
            tenths = np.rint(val[m] * 10).astype(np.int64)  # the points text shows round(points, 1)
            lo = tenths.min()
            span = int(tenths.max() - lo) + 1
            pair_codes, pairs = pd.factorize(vcodes * span + (tenths - lo))
            values = vtexts[pairs // span]
            body = np.strings.add(f"{labels[j]} ", values)
            body = np.strings.add(np.strings.add(body, _reference_text(model, j, name, values)), ": ")
            body = np.strings.add(body, _fmt_points((pairs % span + lo) / 10.0))
            text[m] = body.astype(object)[pair_codes]
        out.append(text)
    return out


def explain_customer(model, frame: pd.DataFrame, customer_id: str, *, unseen: str = "error") -> dict:
    """Everything ``healthscore explain`` shows for one customer (their latest snapshot).
    ``unseen="missing"`` scores a category unseen in training as missing (with a warning), as ``predict``.

    Keys: customer_id, health_score, band, churn_probability, base_score, contributions (list of
    {indicator, value, points}, most negative first), manual ({score, band, base_score, contributions}).
    """
    card = model.card
    ids = frame[card.id_column].astype(str)
    rows = frame[ids.to_numpy() == str(customer_id)]
    if rows.empty:
        sample = ids.drop_duplicates().head(5).tolist()
        raise DataError(
            f"customer {customer_id!r} is not in the data's {card.id_column!r} column "
            f"({ids.nunique():,} customers, e.g. {sample}); check the id."
        )
    if card.date_column and card.date_column in rows and len(rows) > 1:
        d = pd.to_datetime(rows[card.date_column], errors="coerce")  # NaT (not a date) is never the latest
        rows = rows.iloc[[int(np.argmax(d.fillna(pd.Timestamp.min).to_numpy()))]]
    row = rows.iloc[[-1]]
    X = model.schema_.matrix(row, unseen=unseen)
    contrib = contributions(model, X, model.booster_.predict(X, raw_score=True, **predict_kw()))
    shown = model.scores(row, contrib.margin).iloc[0]  # the numbers `predict` gives this customer
    labels = feature_labels(model)

    def value_of(name: str, column: str):
        v = row[column].iloc[0]
        if pd.isna(v):
            return None
        v = v.item() if hasattr(v, "item") else v
        if isinstance(v, float) and not abs(v) <= NUMERIC_LIMIT:  # scored as missing (and warned about)
            return None
        return v if isinstance(v, int | float | bool) else str(v)

    def finite(v) -> float | None:  # JSON has no NaN: a missing number is null
        return float(v) if v is not None and np.isfinite(v) else None

    items = [
        {
            "indicator": name,
            "label": label,
            "value": value_of(name, f.column),
            "points": finite(contrib.points[name].iloc[0]),
            "log_odds": finite(contrib.log_odds[0, j]),
        }
        for j, (name, label, f) in enumerate(zip(model.schema_.names, labels, model.schema_.features, strict=True))
    ]
    items.sort(key=lambda d: d["points"])
    mc = card_contributions(model.scorecard_, row, model.manual_base_subscores_)
    manual_items = [
        {
            "indicator": ind.name,
            "label": ind.label,
            "value": value_of(ind.name, ind.column),
            "points": finite(mc.points[ind.name].iloc[0]),
        }
        for ind in card.indicators
    ]
    manual_items.sort(key=lambda d: (d["points"] is None, d["points"] or 0.0))
    out = {
        "customer_id": str(customer_id),
        "health_score": float(shown["health_score"]),
        "band": None if pd.isna(shown["band"]) else str(shown["band"]),
        "churn_probability": float(shown["churn_probability"]),
        "base_score": contrib.base_score,
        "contributions": items,
        "manual": {
            "score": finite(shown["manual_score"]),
            "band": None if pd.isna(shown["manual_band"]) else str(shown["manual_band"]),
            "churn_probability": finite(shown["manual_churn_probability"]),
            "base_score": mc.base_score,
            "contributions": manual_items,
        },
    }
    if card.date_column and card.date_column in row:
        out["snapshot_date"] = str(pd.Timestamp(row[card.date_column].iloc[0]).date())
    return out


REFERENCE_POINT_ROWS = 5_000


def category_reference_points(model, X: pd.DataFrame) -> dict[str, float]:
    """For each categorical feature, the average points (model contributions) of the rows holding its
    most common value, over at most ``REFERENCE_POINT_ROWS`` rows of ``X``: what the usual value is worth."""
    cats = [(j, f.name) for j, f in enumerate(model.schema_.features) if f.kind == CATEGORICAL]
    if not cats or len(X) == 0:
        return {}
    if len(X) > REFERENCE_POINT_ROWS:
        X = X.iloc[np.sort(np.random.default_rng(0).choice(len(X), REFERENCE_POINT_ROWS, replace=False))]
    pts = contributions(model, X).points
    out = {}
    for _, name in cats:
        ref = model.reference_values_.get(name)
        usual = (X[name].astype(object) == ref).to_numpy() if ref is not None else np.zeros(len(X), bool)
        if usual.any():
            out[name] = float(pts[name].to_numpy()[usual].mean())
    return out
