"""The manual weighted scorecard: sub-scores 0-100 -> points -> health score -> band.

Everything is vectorised over rows: each indicator is scored with one numpy call, the total is a
matrix product, the band a ``searchsorted``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ml.card import Band, Card, Indicator
from ml.errors import DataError, rows_text, warn

NEUTRAL_SUBSCORE = 50.0
_TRUE = ("true", "yes", "y", "t", "1", "1.0")
_FALSE = ("false", "no", "n", "f", "0", "0.0")
# values beyond single precision are overflows or sentinels (1e308, -9999e99), never a measurement
NUMERIC_LIMIT = float(np.finfo(np.float32).max)


# ---- small pure functions --------------------------------------------------------------------
def assign_bands(
    scores: np.ndarray | pd.Series, bands: tuple[Band, ...], cuts: np.ndarray | None = None
) -> pd.Categorical:
    """Band of each score. ``bands`` are highest first with inclusive ``min``; ``cuts`` overrides
    the mins (same order) for quantile bands. Scores are rounded to 1e-9 first so that a sum that
    lands on 79.99999999999 by floating-point error still reads 80. NaN scores get no band."""
    s = np.asarray(scores, dtype=float)
    ascending = np.asarray([b.min for b in bands] if cuts is None else cuts, dtype=float)[::-1]
    n = len(bands)
    up = np.clip(np.searchsorted(ascending, np.round(s, 9), side="right") - 1, 0, n - 1)
    codes = np.where(np.isnan(s), -1, n - 1 - up)  # categories keep the card's order, highest first
    return pd.Categorical.from_codes(codes, categories=[b.name for b in bands])


def percentile_rank(values: np.ndarray, reference_sorted: np.ndarray) -> np.ndarray:
    """Mid-rank percentile (0-100) of each value within a sorted reference sample (NaN stays NaN)."""
    n = len(reference_sorted)
    if n == 0:
        return np.full(len(values), np.nan)
    # rank each distinct value once: searching sorted keys is several times faster than random ones
    distinct, inverse = np.unique(values, return_inverse=True)
    lo = np.searchsorted(reference_sorted, distinct, side="left")
    hi = np.searchsorted(reference_sorted, distinct, side="right")
    out = ((lo + hi) / (2.0 * n) * 100.0)[inverse].reshape(np.shape(values))
    return np.where(np.isnan(values), np.nan, out)


def numeric_values(series: pd.Series, ind: Indicator) -> np.ndarray:
    """The column as float, text that is not a number becoming NaN with a warning; so do infinite
    values and values beyond +-3.4e38 (:data:`NUMERIC_LIMIT`), with a warning naming the rows."""
    if pd.api.types.is_bool_dtype(series):
        return series.astype(float).to_numpy()
    if pd.api.types.is_numeric_dtype(series):
        return _finite(series.to_numpy(dtype=float, na_value=np.nan), series.index, ind)
    converted = pd.to_numeric(series, errors="coerce")
    bad = converted.isna() & series.notna() & (series.astype(str).str.strip() != "")
    if bad.any() and converted.isna().all():  # text and gaps only: not a single number
        raise DataError(
            f"column {ind.column!r} (indicator {ind.name!r}) must be numeric for {ind.scoring.method} "
            f"scoring, found text such as {series[bad].astype(str).unique()[:3].tolist()}; "
            "clean the column or use `method: categorical` with a map."
        )
    if bad.any():
        examples = series[bad].astype(str).unique()[:5].tolist()
        warn(
            f"column {ind.column!r} (indicator {ind.name!r}): {int(bad.sum())} value(s) are not numbers "
            f"(e.g. {examples}); they are treated as missing."
        )
    return _finite(converted.to_numpy(dtype=float, na_value=np.nan), series.index, ind)


def _finite(x: np.ndarray, index: pd.Index, ind: Indicator) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        out = ~np.isnan(x) & ~(np.abs(x) <= NUMERIC_LIMIT)
    if not out.any():
        return x
    examples = [f"{v:g}" for v in pd.unique(x[out])[:3]]
    warn(
        f"column {ind.column!r} (indicator {ind.name!r}): {int(out.sum())} value(s) are infinite or beyond "
        f"+-{NUMERIC_LIMIT:.1e} ({', '.join(examples)}) in {rows_text(index, out)}; they are treated as "
        "missing. Fix the column (an overflow or a sentinel for 'unknown'?)."
    )
    return np.where(out, np.nan, x)


def check_scale(x: np.ndarray, index: pd.Index, ind: Indicator) -> None:
    """Warn about negative values of an indicator whose card scale starts at 0 or above (a count, a
    duration or a rate: linear ``worst``/``best`` both >= 0, or thresholds whose cuts are all >= 0):
    below the scale they still score (as its end) but are most likely an error in the data."""
    sc = ind.scoring
    anchors = (sc.worst, sc.best) if sc.method == "linear" else sc.cuts if sc.method == "thresholds" else ()
    if not anchors or min(anchors) < 0:
        return
    with np.errstate(invalid="ignore"):
        neg = x < 0
    if neg.any():
        examples = [f"{v:g}" for v in np.sort(pd.unique(x[neg]))[:3]]
        warn(
            f"column {ind.column!r} (indicator {ind.name!r}): {int(neg.sum())} negative value(s) "
            f"({', '.join(examples)}) in {rows_text(index, neg)}, but the card scores it on a scale from "
            f"{min(anchors):g} (a count, duration or rate cannot be negative); they are scored as the end of "
            "the scale. Check the data."
        )


def boolean_values(series: pd.Series, ind: Indicator) -> np.ndarray:
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
        x = series.astype(float).to_numpy()
        bad = ~np.isnan(x) & ~np.isin(x, (0.0, 1.0))
    else:
        text = series.astype("string").str.strip().str.lower()
        x = np.where(
            text.isin(_TRUE).fillna(False).to_numpy(),
            1.0,
            np.where(text.isin(_FALSE).fillna(False).to_numpy(), 0.0, np.nan),
        )
        bad = series.notna().to_numpy() & np.isnan(x)
    if bad.any():
        examples = pd.unique(series[bad].astype(str))[:5].tolist()
        warn(
            f"column {ind.column!r} (indicator {ind.name!r}): {int(bad.sum())} value(s) are not booleans "
            f"(e.g. {examples}); they are treated as missing. Use true/false, yes/no or 1/0."
        )
        x = np.where(bad, np.nan, x)
    return x


def categorical_keys(series: pd.Series) -> pd.Series:
    """Text keys for a categorical lookup: integer-valued numbers as '1', not '1.0'."""
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        num = series.astype(float)
        if (num.dropna() % 1 == 0).all():
            return num.astype("Int64").astype("string")
    return series.astype("string")


def subscore(series: pd.Series, ind: Indicator, reference: np.ndarray | None = None) -> np.ndarray:
    """One indicator's 0-100 sub-score for every row; NaN where the value is missing."""
    sc = ind.scoring
    m = sc.method
    if m == "categorical":
        keys = categorical_keys(series)
        out = keys.map(dict(sc.map)).astype(float).to_numpy(na_value=np.nan)
        unknown = keys.notna().to_numpy() & np.isnan(out)
        if unknown.any():
            counts = keys[unknown].value_counts()
            shown = ", ".join(f"{k!r} ({v})" for k, v in counts.head(10).items())
            warn(
                f"column {ind.column!r} (indicator {ind.name!r}): value(s) not in the card's map: {shown}; "
                f"treated as missing. Add them to `scoring.map` (known: {list(sc.map)})."
            )
        return out
    if m == "boolean":
        x = boolean_values(series, ind)
        return np.where(np.isnan(x), np.nan, np.where(x == 1.0, sc.true_score, sc.false_score))
    x = numeric_values(series, ind)
    check_scale(x, series.index, ind)
    if m == "identity":
        outside = (x < 0) | (x > 100)
        if outside.any():
            warn(
                f"column {ind.column!r} (indicator {ind.name!r}): identity scoring expects 0-100 but "
                f"{int(outside.sum())} value(s) lie outside (min {np.nanmin(x):g}, max {np.nanmax(x):g}); "
                "clipped to [0, 100]."
            )
        return np.clip(x, 0.0, 100.0)
    if m == "linear":
        return np.clip((x - sc.worst) / (sc.best - sc.worst) * 100.0, 0.0, 100.0)
    if m == "thresholds":
        idx = np.searchsorted(np.asarray(sc.cuts), x, side="right")
        scores = np.asarray(sc.scores)[np.minimum(idx, len(sc.scores) - 1)]
        return np.where(np.isnan(x), np.nan, scores)
    if m == "percentile":
        if reference is None:
            raise DataError(f"indicator {ind.name!r}: percentile scoring needs a reference population; call fit first.")
        pct = percentile_rank(x, reference)
        return pct if ind.sign > 0 else 100.0 - pct
    raise AssertionError(m)  # the card parser rejects other methods


# ---- the estimator ---------------------------------------------------------------------------
class WeightedScorecard:
    """The manual card as an estimator.

    ``fit(X)`` stores the reference population that ``percentile`` indicators rank against (the card's
    own ``scoring.reference`` when it carries one, else ``X``) and, with
    ``bands_by: quantile``, the score cut-offs of each band; ``score(X)`` then gives every customer
    the same numbers whether scored alone or in a batch.

    Missing values follow the card's policy (per indicator overridable): ``renormalize`` drops the
    indicator's weight and rescales the rest, ``neutral`` scores it 50, ``worst`` scores it 0.
    ``coverage`` is the % of the card's weight that had data.
    """

    def __init__(self, card: Card):
        self.card = card

    # -- fitting
    def fit(self, X: pd.DataFrame, y: Any = None, *, max_reference: int | None = None) -> WeightedScorecard:
        """Store the percentile references (as at most ``max_reference`` evenly spaced quantiles when
        given, e.g. for a model directory) and, for quantile bands, place the band cut-offs."""
        self.card.check_columns(X.columns)
        self.reference_: dict[str, np.ndarray] = {}
        for ind in self.card.indicators:
            if ind.scoring.method == "percentile":
                stored = ind.scoring.reference()
                if stored is not None:  # the card carries its reference population: use it as it is
                    self.reference_[ind.name] = stored
                    continue
                x = numeric_values(X[ind.column], ind)
                ref = np.sort(x[~np.isnan(x)])
                if len(ref) == 0:
                    raise DataError(
                        f"column {ind.column!r} (indicator {ind.name!r}) has no values to rank against; "
                        "percentile scoring needs a reference population with data."
                    )
                if max_reference is not None and len(ref) > max_reference:
                    ref = np.quantile(ref, np.linspace(0, 1, max_reference))
                self.reference_[ind.name] = ref
        self.place_band_cuts(X)
        return self

    def place_band_cuts(self, X: pd.DataFrame) -> WeightedScorecard:
        """With ``bands_by: quantile``, the score cut-offs of each band within ``X`` (a no-op for fixed
        bands). Uses the stored references, so it also serves a re-weighted copy of a fitted card."""
        self.band_cuts_: np.ndarray | None = None
        if self.card.bands_by == "quantile":
            total = self._total(X)[0]
            valid = total[~np.isnan(total)]
            if len(valid) == 0:
                raise DataError("no customer has a score, so quantile bands cannot be placed; check the data.")
            cuts = np.percentile(valid, [b.min for b in self.card.bands])
            cuts[-1] = -np.inf  # the lowest band takes everything below
            self.band_cuts_ = cuts
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "reference_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("This WeightedScorecard is not fitted yet; call fit(X) first.")

    # -- per-indicator tables
    def subscores(self, X: pd.DataFrame) -> pd.DataFrame:
        """Sub-score (0-100) per indicator, NaN where missing; columns are indicator names."""
        self._check_fitted()
        self.card.check_columns(X.columns)
        return pd.DataFrame(self._subscore_matrix(X), index=X.index, columns=self.card.names)

    def _subscore_matrix(self, X: pd.DataFrame) -> np.ndarray:
        ref = getattr(self, "reference_", {})
        cols = [subscore(X[ind.column], ind, ref.get(ind.name)) for ind in self.card.indicators]
        return np.column_stack(cols) if cols else np.empty((len(X), 0))

    def _total(self, X: pd.DataFrame, S: np.ndarray | None = None):
        """(score, points matrix, coverage) from the sub-score matrix."""
        S = self._subscore_matrix(X) if S is None else S
        w = np.array([ind.weight for ind in self.card.indicators])
        present = ~np.isnan(S)
        inds = self.card.indicators
        policies = [ind.missing or self.card.missing for ind in inds]
        fill = np.array(
            [
                ind.missing_score if ind.missing_score is not None else NEUTRAL_SUBSCORE if p == "neutral" else 0.0
                for ind, p in zip(inds, policies, strict=True)
            ]
        )
        renorm = np.array(
            [p == "renormalize" and ind.missing_score is None for ind, p in zip(inds, policies, strict=True)]
        )
        filled = np.where(present, S, fill)
        w_eff = w * (present | ~renorm)
        denom = w_eff.sum(axis=1, keepdims=True)
        offset = self.card.offset
        if offset is not None:  # a points card: a weight is the points at sub-score 100 (they need not total 100)
            denom = denom * 100.0 / w.sum()
        with np.errstate(invalid="ignore", divide="ignore"):
            points = np.where(denom > 0, filled * w_eff / denom, np.nan)
        # rescaled weights (renormalize, normalize: true) can sum a perfect row to 100.00000000000003
        score = np.clip(points.sum(axis=1) + (offset or 0.0), 0.0, 100.0)
        score[denom[:, 0] == 0] = np.nan
        coverage = (present * w).sum(axis=1) / w.sum() * 100.0
        return score, points, coverage

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """Points per indicator (sum = health score); columns are indicator names."""
        self._check_fitted()
        self.card.check_columns(X.columns)
        return pd.DataFrame(self._total(X)[1], index=X.index, columns=self.card.names)

    def score(self, X: pd.DataFrame, *, subscores: bool = False) -> pd.DataFrame:
        """Per customer: ``health_score``, ``band``, ``coverage`` and ``points__<indicator>``
        (and ``subscore__<indicator>`` when asked)."""
        self._check_fitted()
        self.card.check_columns(X.columns)
        S = self._subscore_matrix(X)
        total, points, coverage = self._total(X, S)
        n_unscored = int(np.isnan(total).sum())
        if n_unscored:
            warn(
                f"{n_unscored} of {len(X)} row(s) have no data for any renormalized indicator, so they get no "
                "health score or band; check those rows or use `missing: neutral`."
            )
        out: dict[str, Any] = {
            "health_score": total,
            "band": assign_bands(total, self.card.bands, self.band_cuts_),
            "coverage": coverage,
        }
        for j, name in enumerate(self.card.names):
            out[f"points__{name}"] = points[:, j]
        if subscores:
            for j, name in enumerate(self.card.names):
                out[f"subscore__{name}"] = S[:, j]
        return pd.DataFrame(out, index=X.index)

    # -- persistence of the fitted state (JSON-friendly, no pickle)
    def state(self) -> dict[str, Any]:
        self._check_fitted()
        return {
            "reference": {k: v.tolist() for k, v in self.reference_.items()},
            "band_cuts": None
            if self.band_cuts_ is None
            else [None if not np.isfinite(c) else float(c) for c in self.band_cuts_],
        }

    @classmethod
    def from_state(cls, card: Card, state: Mapping[str, Any]) -> WeightedScorecard:
        sc = cls(card)
        sc.reference_ = {k: np.asarray(v, dtype=float) for k, v in state["reference"].items()}
        cuts = state.get("band_cuts")
        sc.band_cuts_ = None if cuts is None else np.array([-np.inf if c is None else c for c in cuts])
        return sc


def score_table(card: Card, data: pd.DataFrame, *, subscores: bool = False) -> pd.DataFrame:
    """Score ``data`` with ``card`` (percentiles and quantile bands relative to ``data`` itself) and
    return the id (and date) columns followed by the score columns."""
    sc = WeightedScorecard(card).fit(data)
    keys = [card.id_column] + ([card.date_column] if card.date_column else [])
    scored = sc.score(data, subscores=subscores)
    return pd.concat([data[keys].reset_index(drop=True), scored.reset_index(drop=True)], axis=1)
