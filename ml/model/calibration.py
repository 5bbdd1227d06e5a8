"""From a risk margin to P(churn within the horizon) to the 0-100 health scale.

``ScoreCalibrator`` is fitted on a slice the model never trained on. ``sigmoid`` is Platt scaling on
the raw margin (LightGBM's ``raw_score``), never on probabilities. ``isotonic`` fits an isotonic
regression and then interpolates linearly between the centres of its blocks, so the map is strictly
increasing: it creates no ties and reorders no one (plain isotonic would tie whole blocks). Beyond the
outermost block centres it follows the Platt curve, rescaled to join continuously. ``auto`` picks
isotonic only for large slices (>= 5,000 rows and >= 250 churners), where its flexibility pays, and
records why.

The health scale is a pure function of the probability:
- ``probability``: health = 100 x (1 - p); Healthy >= 80 reads "at most 20 % risk".
- ``odds``: points to double the odds. health = anchor + pdo x log2(base_odds / odds), where odds =
  p / (1 - p) and base_odds is the calibration slice's churn odds: the base rate sits at ``anchor``
  (default 70) and every ``pdo`` points (default 10) halve the odds. Exactly linear on [5, 95]; beyond,
  it bends smoothly towards 0 and 100 (``soft_bounds``) instead of clipping, so scores never tie.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import minimize

from ml.errors import DataError, warn

ISOTONIC_MIN_ROWS = 5000
ISOTONIC_MIN_POSITIVES = 250
_EPS = 1e-9


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _logit(p):
    p = np.clip(p, 1e-15, 1 - 1e-15)
    return np.log(p / (1 - p))


def fit_platt(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Unregularised 1-D logistic regression p = sigmoid(a x + b), fitted by L-BFGS on standardised x."""
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    mu, sd = x.mean(), x.std() or 1.0
    xs = (x - mu) / sd

    def loss(t):
        z = t[0] * xs + t[1]
        p = _sigmoid(z)
        return np.mean(np.logaddexp(0, z) - y * z), np.array([np.mean((p - y) * xs), np.mean(p - y)])

    base = np.clip(y.mean(), 1e-6, 1 - 1e-6)
    res = minimize(loss, np.array([1.0, np.log(base / (1 - base))]), jac=True, method="L-BFGS-B")
    if not res.success:
        warn(f"the logistic calibration fit did not converge ({res.message}); its probabilities may be off.")
    a_s, b_s = res.x
    return float(a_s / sd), float(b_s - a_s * mu / sd)


class ScoreCalibrator:
    """Maps a risk margin (higher = more churn) to P(churn). ``fit`` returns self.

    Fitted attributes: ``method_`` (sigmoid, isotonic or constant), ``reason_`` (why that method),
    ``a_``, ``b_`` (the Platt curve ``sigmoid(a_ * margin + b_)``), ``rows_``, ``churners_`` and
    ``base_rate_`` of the calibration slice, and for isotonic the strictly increasing knots
    ``knots_x_`` / ``knots_p_`` (empty otherwise).
    """

    def __init__(self, method: str = "auto", allow_flat: bool = False):
        self.method = method
        self.allow_flat = allow_flat  # if the margin does not rank churn: map everything to the base rate

    def __repr__(self) -> str:
        return f"ScoreCalibrator(method={self.method!r}, allow_flat={self.allow_flat!r})"

    def _set(self, method: str, reason: str, a: float, b: float, n: int, k: int, knots=((), ())) -> None:
        self.method_, self.reason_ = method, reason
        self.a_, self.b_ = float(a), float(b)
        self.rows_, self.churners_, self.base_rate_ = int(n), int(k), k / n
        self.knots_x_ = np.asarray(knots[0], float)
        self.knots_p_ = np.asarray(knots[1], float)

    def fit(self, margin: np.ndarray, y: np.ndarray) -> ScoreCalibrator:
        margin = np.asarray(margin, float)
        y = np.asarray(y, int)
        n, k = len(y), int(y.sum())
        if n == 0 or k == 0 or k == n:
            raise DataError(
                f"calibration slice has {n} rows and {k} churners; it needs both churners and non-churners. "
                "Provide more labelled data or raise model.calibration_fraction."
            )
        method, reason = self.method, f"chosen in the card (calibration.method: {self.method})"
        if method == "auto":
            big = n >= ISOTONIC_MIN_ROWS and k >= ISOTONIC_MIN_POSITIVES
            method = "isotonic" if big else "sigmoid"
            reason = (
                f"auto: {n:,} rows and {k:,} churners in the calibration slice; isotonic needs >= "
                f"{ISOTONIC_MIN_ROWS:,} rows and >= {ISOTONIC_MIN_POSITIVES} churners, else sigmoid "
                "(isotonic overfits and ties on small slices)"
            )
        elif method == "isotonic" and n < 1000:
            warn(f"isotonic calibration on only {n} rows overfits; consider calibration.method: sigmoid.")
        a, b = fit_platt(margin, y)
        if a <= 0 and self.allow_flat:
            warn(
                f"on the calibration slice ({n:,} rows), churn does not rise as this score falls "
                f"(Platt slope {-a:.3g}); every score maps to the base churn rate {k / n:.1%}."
            )
            self._set("constant", "the score does not rank churn on the calibration slice", 0.0, _logit(k / n), n, k)
            return self
        if a <= 0:
            raise DataError(
                f"on the calibration slice, churn does not rise with the model's risk (Platt slope {a:.3g}); "
                "the model has no usable signal. Check the label and features."
            )
        knots: tuple = ((), ())
        if method == "isotonic":
            from sklearn.isotonic import IsotonicRegression

            order = np.argsort(margin, kind="stable")
            xs, ys = margin[order], y[order]
            fitted = IsotonicRegression(out_of_bounds="clip").fit(xs, ys).predict(xs)
            # blocks of equal fitted value -> centre (mean margin) and value
            change = np.flatnonzero(np.diff(fitted) != 0) + 1
            starts = np.concatenate([[0], change])
            ends = np.concatenate([change, [len(xs)]])
            centres = np.add.reduceat(xs, starts) / (ends - starts)
            values = fitted[starts]
            lo, hi = 0.5 / n, 1 - 0.5 / n
            values = np.clip(values, lo, hi)
            # strictly increasing knots (distinct centres and values)
            keep = np.concatenate([[True], np.diff(centres) > 0])
            centres, values = centres[keep], values[keep]
            values = np.maximum.accumulate(values) + np.arange(len(values)) * _EPS
            knots = (centres, values)
        self._set(method, reason, a, b, n, k, knots)
        return self

    def predict_proba(self, margin: np.ndarray) -> np.ndarray:
        if not hasattr(self, "method_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("ScoreCalibrator is not fitted; call fit(margin, y) first.")
        m = np.asarray(margin, float)
        a, b = self.a_, self.b_
        platt = _sigmoid(a * m + b)
        kx, kp = self.knots_x_, self.knots_p_
        if self.method_ != "isotonic" or len(kx) <= 1:
            return platt
        p = np.interp(m, kx, kp)
        left, right = m < kx[0], m > kx[-1]
        # tails: the Platt curve rescaled to meet the first/last knot (strictly increasing, continuous)
        p0, pl = _sigmoid(a * kx[0] + b), _sigmoid(a * kx[-1] + b)
        p = np.where(left, platt * kp[0] / p0, p)
        p = np.where(right, 1 - (1 - platt) * (1 - kp[-1]) / (1 - pl), p)
        return p

    def to_dict(self) -> dict[str, Any]:
        """The fitted state as JSON-ready data (the model directory's format)."""
        d: dict[str, Any] = {
            "method": self.method_,
            "reason": self.reason_,
            "a": self.a_,
            "b": self.b_,
            "rows": self.rows_,
            "churners": self.churners_,
            "base_rate": self.base_rate_,
        }
        if self.method_ == "isotonic":
            d.update(knots_x=self.knots_x_.tolist(), knots_p=self.knots_p_.tolist())
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScoreCalibrator:
        c = cls(method=d["method"], allow_flat=d["method"] == "constant")
        c._set(
            d["method"],
            d["reason"],
            d["a"],
            d["b"],
            d["rows"],
            d["churners"],
            (d.get("knots_x", ()), d.get("knots_p", ())),
        )
        c.base_rate_ = d["base_rate"]
        return c


def probability_to_health(
    p: np.ndarray,
    scale: str = "probability",
    *,
    base_rate: float | None = None,
    anchor: float = 70.0,
    pdo: float = 10.0,
) -> np.ndarray:
    """Churn probability -> health score 0-100 (strictly decreasing on the probability scale)."""
    p = np.asarray(p, float)
    if scale == "probability":
        return 100.0 * (1.0 - p)
    if scale == "odds":
        if base_rate is None:
            raise ValueError("the odds scale needs the base churn rate")
        log2_odds = (_logit(p) - _logit(base_rate)) / np.log(2)
        return soft_bounds(anchor - pdo * log2_odds)
    raise ValueError(f"unknown health scale {scale!r}")


SOFT_EDGE = 5.0  # the odds scale is linear on [5, 95] and bends smoothly towards 0 and 100 beyond


def soft_bounds(h: np.ndarray) -> np.ndarray:
    """Keep a score within (0, 100) without ties: the identity on [5, 95]; beyond, an exponential
    approach to the bound that joins with the same value and slope (100 - 5 exp(-(h - 95) / 5) above
    95, 5 exp((h - 5) / 5) below 5). Strictly increasing, so no two margins share a score, unlike a
    clip (which tied every customer beyond the bounds and broke ranking by health = ranking by margin)."""
    h = np.asarray(h, float)
    e = SOFT_EDGE
    with np.errstate(over="ignore"):
        high = 100.0 - e * np.exp(-(h - (100.0 - e)) / e)
        low = e * np.exp((h - e) / e)
    return np.where(h > 100.0 - e, high, np.where(h < e, low, h))


def inverse_soft_bounds(s: np.ndarray) -> np.ndarray:
    """The inverse of :func:`soft_bounds` on (0, 100)."""
    s = np.asarray(s, float)
    e = SOFT_EDGE
    with np.errstate(divide="ignore", invalid="ignore"):
        high = (100.0 - e) - e * np.log((100.0 - s) / e)
        low = e + e * np.log(s / e)
    return np.where(s > 100.0 - e, high, np.where(s < e, low, s))


def health_to_probability(
    h: np.ndarray,
    scale: str = "probability",
    *,
    base_rate: float | None = None,
    anchor: float = 70.0,
    pdo: float = 10.0,
) -> np.ndarray:
    """The inverse of :func:`probability_to_health` (within the clipping of the odds scale)."""
    h = np.asarray(h, float)
    if scale == "probability":
        return 1.0 - h / 100.0
    if base_rate is None:
        raise ValueError("the odds scale needs the base churn rate")
    return _sigmoid(_logit(base_rate) + (anchor - inverse_soft_bounds(h)) / pdo * np.log(2))
