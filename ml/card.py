"""The manual health card: a validated YAML file parsed once into typed objects.

The card is data: indicators (column, direction, scoring rule, weight), the missing-data policy and
the bands. A card with a top-level ``offset`` is a *points card* (the learned card is one): every
customer starts with ``offset`` points and each indicator adds ``weight x sub-score / 100``, so the
weights need not total 100; ``missing_score`` on an indicator gives a missing value that sub-score
(instead of the ``missing`` policy). Every check names the field (``indicators[2].scoring.worst``), what it found and the fix;
the allowed keys in each error are built from the same constants the checks use.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ml.errors import CardError, DataError

DIRECTIONS = ("higher_is_better", "lower_is_better", "none")
SCORING_METHODS = ("identity", "linear", "thresholds", "percentile", "boolean", "categorical")
MISSING_POLICIES = ("renormalize", "neutral", "worst")
BAND_MODES = ("fixed", "quantile")
MONOTONE_MODES = ("auto", "true", "false")
CALIBRATION_METHODS = ("auto", "sigmoid", "isotonic")
HEALTH_SCALES = ("probability", "odds")

CARD_KEYS = (
    "version",
    "name",
    "id_column",
    "date_column",
    "label_column",
    "horizon_days",
    "normalize",
    "indicators",
    "missing",
    "bands",
    "bands_by",
    "model",
    "calibration",
    "experiment",
    "alerts",
    "cooldown_days",
    "actions",
    "offset",
    "value_column",
)
REQUIRED_CARD_KEYS = ("id_column", "indicators", "bands")
INDICATOR_KEYS = ("name", "column", "weight", "direction", "scoring", "label", "missing", "missing_score")
REQUIRED_INDICATOR_KEYS = ("name", "column", "weight", "scoring")
BAND_KEYS = ("name", "min", "max", "color")
# keys each scoring method accepts besides `method`
SCORING_KEYS: dict[str, tuple[str, ...]] = {
    "identity": (),
    "linear": ("worst", "best"),
    "thresholds": ("cuts", "scores"),
    "percentile": ("reference",),
    "boolean": ("true_score", "false_score"),
    "categorical": ("map",),
}
MODEL_KINDS = ("full", "additive")
MODEL_KEYS = (
    "extra_features",
    "monotone",
    "params",
    "num_boost_round",
    "early_stopping_rounds",
    "holdout_fraction",
    "calibration_fraction",
    "validation_fraction",
    "n_refits",
    "seed",
    "kind",
    "refit",
)
CALIBRATION_KEYS = ("method", "scale", "anchor_score", "pdo")
# alert rules (see "Alerts" in the README): keys each rule type accepts besides `name` and `type`
ALERT_TYPES: dict[str, tuple[str, ...]] = {
    "score_drop": ("points", "days"),
    "band_entered": ("bands",),
    "indicator_change": ("indicator", "pct", "days"),
    "threshold": ("indicator", "below", "above"),
}
REQUIRED_ALERT_KEYS: dict[str, tuple[str, ...]] = {
    "score_drop": ("points", "days"),
    "band_entered": ("bands",),
    "indicator_change": ("indicator", "pct", "days"),
    "threshold": ("indicator",),
}
ACTION_KEYS = ("when", "owner", "playbook")
ACTION_WHEN_KEYS = ("band", "alert")
DEFAULT_COOLDOWN_DAYS = 14
DEFAULT_BAND_COLORS = ("#2e7d32", "#f9a825", "#c62828")  # green, yellow, red: highest band first
DEFAULT_MODEL_NAME = "health-score"
# Bounds on the card's size: a card holds a few hundred values. YAML aliases can make a small file
# expand to billions of values (an "alias bomb"); the file is checked before anything is built from it.
MAX_CARD_VALUES = 20_000  # every scalar, list and mapping, counted after expanding aliases
MAX_COLLECTION_ITEMS = 2_000  # entries in any one list or mapping
MAX_CARD_DEPTH = 32  # nesting of lists and mappings
_COLOR = re.compile(r"^(#[0-9a-fA-F]{3}|#[0-9a-fA-F]{6}|[a-zA-Z]{3,20})$")


def allowed_text(keys: Iterable[str]) -> str:
    return ", ".join(keys)


def check_keys(found: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    """One :class:`CardError` for keys outside ``allowed``, listing the allowed set (YAML files: the card,
    the snapshot spec)."""
    unknown = [k for k in found if k not in allowed]
    booleans = [k for k in unknown if isinstance(k, bool)]
    if booleans:
        raise CardError(
            f"{where}: YAML read a key as {booleans[0]} (it does that to unquoted on, off, yes, no); allowed keys "
            f"are: {allowed_text(allowed)}. Fix the key or quote it."
        )
    if unknown:
        raise CardError(
            f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
            f"allowed keys are: {allowed_text(allowed)}. Fix the spelling or remove the key."
        )


def require_keys(found: Mapping[str, Any], required: Iterable[str], where: str) -> None:
    missing = [k for k in required if k not in found]
    if missing:
        raise CardError(
            f"{where}: missing required key{'s' if len(missing) > 1 else ''} "
            f"{', '.join(map(repr, missing))}; add {'them' if len(missing) > 1 else 'it'}."
        )


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CardError(f"{where}: expected a finite number, got {value!r}; write a number such as 10.")
    return float(value)


def _choice(value: Any, allowed: tuple[str, ...], where: str) -> str:
    if isinstance(value, bool):  # YAML turns `true`/`false` into booleans
        value = str(value).lower()
    if value not in allowed:
        raise CardError(f"{where}: got {value!r}; use one of: {allowed_text(allowed)}.")
    return str(value)


@dataclass(frozen=True)
class Scoring:
    """How one indicator's raw value becomes a 0-100 sub-score."""

    method: str
    worst: float | None = None
    best: float | None = None
    cuts: tuple[float, ...] = ()
    scores: tuple[float, ...] = ()
    true_score: float = 100.0
    false_score: float = 0.0
    map: Mapping[str, float] = field(default_factory=dict)
    # percentile: a stored reference population (sorted distinct values and their counts), so the
    # card scores alike on any data; empty = rank within the data being scored (or a model's fit rows)
    reference_values: tuple[float, ...] = ()
    reference_counts: tuple[int, ...] = ()

    def reference(self):
        """The stored percentile reference as a sorted array (None when the card stores none)."""
        if not self.reference_values:
            return None
        import numpy as np

        return np.repeat(np.asarray(self.reference_values, float), np.asarray(self.reference_counts, np.int64))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method}
        if self.method == "linear":
            out.update(worst=self.worst, best=self.best)
        elif self.method == "thresholds":
            out.update(cuts=list(self.cuts), scores=list(self.scores))
        elif self.method == "boolean":
            out.update(true_score=self.true_score, false_score=self.false_score)
        elif self.method == "categorical":
            out.update(map=dict(self.map))
        elif self.method == "percentile" and self.reference_values:
            out.update(reference={"values": list(self.reference_values), "counts": list(self.reference_counts)})
        return out


@dataclass(frozen=True)
class Indicator:
    name: str
    column: str
    weight: float
    direction: str
    scoring: Scoring
    label: str
    missing: str | None = None  # per-indicator override of the card's policy
    missing_score: float | None = None  # sub-score (0-100) of a missing value; overrides any policy

    @property
    def sign(self) -> int:
        """+1 when higher raw values are healthier, -1 when lower are, 0 when undeclared."""
        return {"higher_is_better": 1, "lower_is_better": -1}.get(self.direction, 0)


@dataclass(frozen=True)
class Band:
    name: str
    min: float
    color: str
    max: float | None = None


@dataclass(frozen=True)
class ModelSpec:
    """The card's optional ``model:`` section (the learned-weights model). ``kind``: ``full`` (trees
    may combine indicators) or ``additive`` (each tree uses one indicator: a learned card)."""

    kind: str = "full"
    extra_features: tuple[str, ...] = ()
    monotone: str = "auto"
    params: Mapping[str, Any] = field(default_factory=dict)
    num_boost_round: int = 2000
    early_stopping_rounds: int = 50
    holdout_fraction: float = 0.2
    calibration_fraction: float = 0.2
    validation_fraction: float = 0.15
    n_refits: int = 10
    seed: int = 0
    refit: bool = True  # save a model refitted on every matured row after the backtest


@dataclass(frozen=True)
class CalibrationSpec:
    method: str = "auto"
    scale: str = "probability"
    anchor_score: float = 70.0
    pdo: float = 10.0


@dataclass(frozen=True)
class AlertRule:
    """One alert rule of the card's ``alerts:`` list (which fields apply depends on ``type``)."""

    name: str
    type: str
    points: float | None = None  # score_drop: the score fell by at least this many points ...
    days: int | None = None  # ... (score_drop, indicator_change) compared with scorings this many days back
    bands: tuple[str, ...] = ()  # band_entered
    indicator: str | None = None  # indicator_change, threshold: an indicator or extra feature name
    pct: float | None = None  # indicator_change: relative change in percent (-40 = fell by 40 % or more)
    below: float | None = None  # threshold
    above: float | None = None  # threshold


@dataclass(frozen=True)
class Action:
    """Who acts on an alert and how: the first action whose ``when`` matches an alert applies."""

    owner: str
    playbook: str
    band: str | None = None  # matches alerts of customers now in this band
    alert: str | None = None  # matches alerts of this rule


@dataclass(frozen=True)
class Card:
    """A parsed, validated health card."""

    id_column: str
    indicators: tuple[Indicator, ...]
    bands: tuple[Band, ...]
    version: int = 1
    name: str = DEFAULT_MODEL_NAME
    date_column: str | None = None
    label_column: str | None = None
    horizon_days: int = 90
    missing: str = "renormalize"
    bands_by: str = "fixed"
    model: ModelSpec = field(default_factory=ModelSpec)
    calibration: CalibrationSpec = field(default_factory=CalibrationSpec)
    experiment: str | None = None
    alerts: tuple[AlertRule, ...] = ()
    cooldown_days: int = DEFAULT_COOLDOWN_DAYS
    actions: tuple[Action, ...] = ()
    offset: float | None = None  # a points card: points every customer starts with (see parse_card)
    value_column: str | None = None  # what each customer is worth (ARR, MRR, seats): value at risk
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    # ---- convenience -------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return [ind.name for ind in self.indicators]

    @property
    def columns(self) -> list[str]:
        return [ind.column for ind in self.indicators]

    @property
    def weights(self) -> dict[str, float]:
        return {ind.name: ind.weight for ind in self.indicators}

    def indicator(self, name: str) -> Indicator:
        for ind in self.indicators:
            if ind.name == name:
                return ind
        raise KeyError(name)

    def to_yaml(self) -> str:
        return yaml.safe_dump(dict(self.raw), sort_keys=False, allow_unicode=True)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.to_yaml().encode()).hexdigest()

    def check_columns(self, columns: Iterable[str], *, need_label: bool = False, extra: Iterable[str] = ()) -> None:
        """Raise one :class:`DataError` listing every column the card needs that the data lacks."""
        present = set(columns)
        wanted: list[tuple[str, str]] = [(self.id_column, "id_column")]
        if self.date_column:
            wanted.append((self.date_column, "date_column"))
        if need_label:
            if not self.label_column:
                raise CardError(
                    "label_column: not set, but training needs the churn label; "
                    "add `label_column: <column>` to the card."
                )
            wanted.append((self.label_column, "label_column"))
        wanted += [(ind.column, f"indicator {ind.name!r}") for ind in self.indicators]
        wanted += [(col, "model.extra_features") for col in extra]
        missing = [(c, why) for c, why in wanted if c not in present]
        if missing:
            listed = "; ".join(f"{c!r} (needed by {why})" for c, why in missing)
            available = sorted(present)
            shown = ", ".join(map(repr, available[:30])) + (" ..." if len(available) > 30 else "")
            raise DataError(
                f"data is missing column{'s' if len(missing) > 1 else ''} {listed}. "
                f"Available columns: {shown}. Rename the data's columns or fix `column:` in the card."
            )


# ---- parsing -------------------------------------------------------------------------------------
def _parse_scoring(raw: Any, where: str, direction: str) -> Scoring:
    if not isinstance(raw, Mapping):
        raise CardError(f"{where}: expected a mapping with `method:`, got {raw!r}.")
    if "method" not in raw:
        raise CardError(f"{where}: missing `method`; use one of: {allowed_text(SCORING_METHODS)}.")
    method = raw["method"]
    if method not in SCORING_METHODS:
        raise CardError(
            f"{where}.method: unknown scoring method {method!r}; use one of: {allowed_text(SCORING_METHODS)}."
        )
    check_keys(raw, ("method", *SCORING_KEYS[method]), f"{where} (method {method})")
    if method == "linear":
        require_keys(raw, ("worst", "best"), where)
        worst, best = _number(raw["worst"], f"{where}.worst"), _number(raw["best"], f"{where}.best")
        if worst == best:
            raise CardError(
                f"{where}: linear scoring needs worst != best, got both {worst:g}; "
                "set `worst` to the value scored 0 and `best` to the value scored 100."
            )
        implied = "higher_is_better" if best > worst else "lower_is_better"
        if direction != "none" and direction != implied:
            raise CardError(
                f"{where}: worst={worst:g}, best={best:g} scores {implied.replace('_', ' ')}, "
                f"but the indicator's direction is {direction}; swap worst and best or fix `direction`."
            )
        return Scoring(method, worst=worst, best=best)
    if method == "thresholds":
        require_keys(raw, ("cuts", "scores"), where)
        cuts, scores = raw["cuts"], raw["scores"]
        if not isinstance(cuts, list) or not isinstance(scores, list) or not cuts:
            raise CardError(f"{where}: `cuts` and `scores` must be non-empty lists, got {cuts!r} and {scores!r}.")
        cuts_f = tuple(_number(c, f"{where}.cuts") for c in cuts)
        scores_f = tuple(_number(s, f"{where}.scores") for s in scores)
        if len(scores_f) != len(cuts_f) + 1:
            raise CardError(
                f"{where}: thresholds need len(scores) = len(cuts) + 1, got {len(cuts_f)} cuts and "
                f"{len(scores_f)} scores; give one score below the first cut, one per gap, one above the last."
            )
        if any(b <= a for a, b in zip(cuts_f, cuts_f[1:], strict=False)):
            raise CardError(f"{where}.cuts: must be strictly increasing, got {list(cuts)}; sort them.")
        _check_subscores(scores_f, f"{where}.scores")
        _check_monotone(scores_f, direction, f"{where}.scores")
        return Scoring(method, cuts=cuts_f, scores=scores_f)
    if method == "percentile":
        if direction == "none":
            raise CardError(
                f"{where}: percentile scoring needs a direction; set `direction:` to "
                "higher_is_better or lower_is_better."
            )
        if "reference" not in raw:
            return Scoring(method)
        return _parse_reference(raw["reference"], f"{where}.reference")
    if method == "boolean":
        t = _number(raw.get("true_score", 100), f"{where}.true_score")
        f_ = _number(raw.get("false_score", 0), f"{where}.false_score")
        _check_subscores((t, f_), where)
        return Scoring(method, true_score=t, false_score=f_)
    if method == "categorical":
        require_keys(raw, ("map",), where)
        mapping = raw["map"]
        if not isinstance(mapping, Mapping) or not mapping:
            raise CardError(f"{where}.map: expected a non-empty mapping value -> score, got {mapping!r}.")
        unquoted = [k for k in mapping if isinstance(k, bool) or k is None]
        if unquoted:
            raise CardError(
                f"{where}.map: YAML read key(s) {unquoted} as true/false/null (it does that to unquoted yes, no, "
                "on, off, true, false, null); quote them, e.g. 'yes': 100."
            )
        parsed = {str(k): _number(v, f"{where}.map[{k!r}]") for k, v in mapping.items()}
        _check_subscores(tuple(parsed.values()), f"{where}.map")
        return Scoring(method, map=parsed)
    return Scoring(method)  # identity


def _parse_reference(ref: Any, where: str) -> Scoring:
    """``reference: {values: [...], counts: [...]}``: sorted distinct numbers and how often each occurs
    in the reference population (counts default to 1 each)."""
    if not isinstance(ref, Mapping) or "values" not in ref:
        raise CardError(
            f"{where}: expected a mapping {{values: [...], counts: [...]}} (the reference population's sorted "
            f"distinct values and their counts), got {str(ref)[:80]!r}."
        )
    check_keys(ref, ("values", "counts"), where)
    values = ref["values"]
    if not isinstance(values, list) or not values:
        raise CardError(f"{where}.values: expected a non-empty list of numbers, got {str(values)[:80]!r}.")
    vals = tuple(_number(v, f"{where}.values") for v in values)
    if any(b <= a for a, b in zip(vals, vals[1:], strict=False)):
        raise CardError(f"{where}.values: must be strictly increasing (sorted, distinct); sort them.")
    counts = ref.get("counts", [1] * len(vals))
    if not isinstance(counts, list) or len(counts) != len(vals):
        raise CardError(
            f"{where}.counts: expected one count per value ({len(vals)}), got "
            f"{len(counts) if isinstance(counts, list) else repr(counts)}; give one positive integer per value."
        )
    bad = [c for c in counts if isinstance(c, bool) or not isinstance(c, int) or c < 1]
    if bad:
        raise CardError(f"{where}.counts: expected positive integers, got {bad[:5]}.")
    return Scoring("percentile", reference_values=vals, reference_counts=tuple(int(c) for c in counts))


def _check_subscores(values: tuple[float, ...], where: str) -> None:
    bad = [v for v in values if not 0 <= v <= 100]
    if bad:
        raise CardError(f"{where}: sub-scores must lie in [0, 100], got {bad}; rescale them.")


def _check_monotone(scores: tuple[float, ...], direction: str, where: str) -> None:
    steps = [b - a for a, b in zip(scores, scores[1:], strict=False)]
    if direction == "higher_is_better" and any(s < 0 for s in steps):
        raise CardError(
            f"{where}: {list(scores)} falls as the value rises, but direction is higher_is_better; "
            "reorder the scores or fix `direction`."
        )
    if direction == "lower_is_better" and any(s > 0 for s in steps):
        raise CardError(
            f"{where}: {list(scores)} rises with the value, but direction is lower_is_better; "
            "reorder the scores or fix `direction`."
        )


def _parse_indicator(raw: Any, i: int, card_missing: str) -> Indicator:
    where = f"indicators[{i}]"
    if not isinstance(raw, Mapping):
        raise CardError(f"{where}: expected a mapping, got {raw!r}.")
    name = raw.get("name")
    if name is not None:
        where = f"indicators[{i}] ({name})"
    check_keys(raw, INDICATOR_KEYS, where)
    require_keys(raw, REQUIRED_INDICATOR_KEYS, where)
    if not isinstance(name, str) or not name.strip():
        raise CardError(f"{where}.name: expected a non-empty string, got {name!r}.")
    column = raw["column"]
    if not isinstance(column, str) or not column:
        raise CardError(f"{where}.column: expected a column name, got {column!r}.")
    weight = _number(raw["weight"], f"{where}.weight")
    if weight < 0:
        raise CardError(f"{where}.weight: must be >= 0, got {weight:g}.")
    direction = _choice(raw.get("direction", "higher_is_better"), DIRECTIONS, f"{where}.direction")
    scoring = _parse_scoring(raw["scoring"], f"{where}.scoring", direction)
    missing = raw.get("missing")
    if missing is not None:
        missing = _choice(missing, MISSING_POLICIES, f"{where}.missing")
    missing_score = raw.get("missing_score")
    if missing_score is not None:
        if missing is not None:
            raise CardError(
                f"{where}: both `missing: {missing}` and `missing_score: {missing_score}` are set; "
                "keep one (missing_score gives a missing value that sub-score)."
            )
        missing_score = _number(missing_score, f"{where}.missing_score")
        _check_subscores((missing_score,), f"{where}.missing_score")
    return Indicator(
        name=name,
        column=column,
        weight=weight,
        direction=direction,
        scoring=scoring,
        label=str(raw.get("label", name)),
        missing=missing,
        missing_score=missing_score,
    )


def _parse_bands(raw: Any, bands_by: str) -> tuple[Band, ...]:
    if not isinstance(raw, list) or not raw:
        raise CardError(f"bands: expected a non-empty list of {{name, min}}, got {raw!r}.")
    bands: list[Band] = []
    for i, b in enumerate(raw):
        where = f"bands[{i}]"
        if not isinstance(b, Mapping):
            raise CardError(f"{where}: expected a mapping like {{name: Healthy, min: 80}}, got {b!r}.")
        check_keys(b, BAND_KEYS, where)
        require_keys(b, ("name", "min"), where)
        lo = _number(b["min"], f"{where}.min")
        hi = None if b.get("max") is None else _number(b["max"], f"{where}.max")
        if not 0 <= lo <= 100 or (hi is not None and not lo <= hi <= 100):
            raise CardError(f"{where}: need 0 <= min <= max <= 100, got min={lo:g}, max={hi}.")
        color = str(b.get("color") or _default_color(i, len(raw)))
        if not _COLOR.match(color):
            raise CardError(
                f'{where}.color: {color!r} is not a colour; use a hex code like "#2e7d32" or a plain '
                "colour name like green."
            )
        bands.append(Band(name=str(b["name"]), min=lo, color=color, max=hi))
    names = [b.name for b in bands]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise CardError(f"bands: duplicate band name(s) {dup}; give each band its own name.")
    mins = [b.min for b in bands]
    if any(b >= a for a, b in zip(mins, mins[1:], strict=False)):
        raise CardError(
            f"bands: must be listed highest first with strictly decreasing `min`, got mins {mins}; "
            "sort them (Healthy first) and remove duplicates."
        )
    for upper, lower in zip(bands, bands[1:], strict=False):
        if lower.max is not None and lower.max >= upper.min:
            raise CardError(
                f"bands: {lower.name!r} (max {lower.max:g}) overlaps {upper.name!r} (min {upper.min:g}); "
                f"set {lower.name!r} max below {upper.min:g}."
            )
    if mins[-1] != 0:
        raise CardError(
            f"bands: the lowest band {bands[-1].name!r} starts at {mins[-1]:g}, so lower scores fall in "
            "no band; set its `min: 0`."
        )
    if bands_by == "quantile" and any(b.max is not None for b in bands):
        raise CardError("bands: with `bands_by: quantile`, give only `min` (a percentile 0-100), not `max`.")
    return tuple(bands)


def _default_color(i: int, n: int) -> str:
    """Green for the top band, red for the bottom one, yellow between."""
    green, yellow, red = DEFAULT_BAND_COLORS
    return green if i == 0 else red if i == n - 1 else yellow


def _parse_model(raw: Any) -> ModelSpec:
    if raw is None:
        return ModelSpec()
    if not isinstance(raw, Mapping):
        raise CardError(f"model: expected a mapping, got {raw!r}.")
    check_keys(raw, MODEL_KEYS, "model")
    kw: dict[str, Any] = {}
    if "kind" in raw:
        kw["kind"] = _choice(raw["kind"], MODEL_KINDS, "model.kind")
    if "extra_features" in raw:
        extra = raw["extra_features"] or []
        if not isinstance(extra, list) or not all(isinstance(c, str) for c in extra):
            raise CardError(f"model.extra_features: expected a list of column names, got {extra!r}.")
        kw["extra_features"] = tuple(extra)
    if "monotone" in raw:
        kw["monotone"] = _choice(raw["monotone"], MONOTONE_MODES, "model.monotone")
    if "params" in raw:
        params = raw["params"] or {}
        if not isinstance(params, Mapping):
            raise CardError(f"model.params: expected a mapping of LightGBM parameters, got {params!r}.")
        banned = [k for k in params if k in ("is_unbalance", "unbalance", "scale_pos_weight")]
        if banned:
            raise CardError(
                f"model.params: {banned} distort the churn probabilities the health scale is built on; "
                "remove them (calibration handles imbalance)."
            )
        kw["params"] = dict(params)
    for key in ("num_boost_round", "early_stopping_rounds", "n_refits", "seed"):
        if key in raw:
            v = raw[key]
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise CardError(f"model.{key}: expected a non-negative integer, got {v!r}.")
            kw[key] = v
    if "refit" in raw:
        if not isinstance(raw["refit"], bool):
            raise CardError(f"model.refit: expected true or false, got {raw['refit']!r}.")
        kw["refit"] = raw["refit"]
    for key in ("holdout_fraction", "calibration_fraction", "validation_fraction"):
        if key in raw:
            v = _number(raw[key], f"model.{key}")
            if not 0 < v < 0.5:
                raise CardError(f"model.{key}: expected a fraction between 0 and 0.5, got {v:g}.")
            kw[key] = v
    return ModelSpec(**kw)


def _parse_calibration(raw: Any) -> CalibrationSpec:
    if raw is None:
        return CalibrationSpec()
    if not isinstance(raw, Mapping):
        raise CardError(f"calibration: expected a mapping, got {raw!r}.")
    check_keys(raw, CALIBRATION_KEYS, "calibration")
    kw: dict[str, Any] = {}
    if "method" in raw:
        kw["method"] = _choice(raw["method"], CALIBRATION_METHODS, "calibration.method")
    if "scale" in raw:
        kw["scale"] = _choice(raw["scale"], HEALTH_SCALES, "calibration.scale")
    if "anchor_score" in raw:
        kw["anchor_score"] = _number(raw["anchor_score"], "calibration.anchor_score")
        if not 0 < kw["anchor_score"] < 100:
            raise CardError(f"calibration.anchor_score: expected a score in (0, 100), got {kw['anchor_score']:g}.")
    if "pdo" in raw:
        kw["pdo"] = _number(raw["pdo"], "calibration.pdo")
        if kw["pdo"] <= 0:
            raise CardError(f"calibration.pdo: points to double the odds must be > 0, got {kw['pdo']:g}.")
    return CalibrationSpec(**kw)


def parse_card(raw: Any) -> Card:
    """Validate a card given as a mapping (e.g. loaded from YAML) and return a :class:`Card`."""
    if not isinstance(raw, Mapping):
        raise CardError(f"card: expected a YAML mapping at the top level, got {type(raw).__name__}.")
    _check_size(raw)
    check_keys(raw, CARD_KEYS, "card")
    require_keys(raw, REQUIRED_CARD_KEYS, "card")
    version = raw.get("version", 1)
    if version != 1:
        raise CardError(f"version: this release reads card version 1, got {version!r}; set `version: 1`.")
    for key in ("id_column", "date_column", "label_column", "name", "experiment", "value_column"):
        v = raw.get(key)
        if v is not None and (not isinstance(v, str) or not v):
            raise CardError(f"{key}: expected a column or name (a string), got {v!r}.")
    missing = _choice(raw.get("missing", "renormalize"), MISSING_POLICIES, "missing")
    bands_by = _choice(raw.get("bands_by", "fixed"), BAND_MODES, "bands_by")
    normalize = raw.get("normalize", False)
    if not isinstance(normalize, bool):
        raise CardError(f"normalize: expected true or false, got {normalize!r}.")
    horizon = raw.get("horizon_days", 90)
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon <= 0:
        raise CardError(f"horizon_days: expected a positive number of days, got {horizon!r}.")

    inds_raw = raw["indicators"]
    if not isinstance(inds_raw, list) or not inds_raw:
        raise CardError(f"indicators: expected a non-empty list, got {inds_raw!r}.")
    indicators = [_parse_indicator(r, i, missing) for i, r in enumerate(inds_raw)]
    names = [ind.name for ind in indicators]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise CardError(f"indicators: duplicate name(s) {dup}; each indicator needs a unique `name`.")
    cols = [ind.column for ind in indicators]
    dup_cols = sorted({c for c in cols if cols.count(c) > 1})
    if dup_cols:
        raise CardError(
            f"indicators: column(s) {dup_cols} used by more than one indicator; "
            "score each column once (combine the rules or copy the column)."
        )
    clash = [n for n in (raw.get("id_column"), raw.get("label_column"), raw.get("value_column")) if n in cols]
    if clash:
        raise CardError(f"indicators: column(s) {clash} are also the id, label or value column; use other columns.")

    offset = raw.get("offset")
    if offset is not None:
        offset = _number(offset, "offset")
    total = sum(ind.weight for ind in indicators)
    if total <= 0:
        raise CardError("indicators: weights total 0; give at least one indicator a positive weight.")
    if not math.isclose(total, 100, abs_tol=1e-9):
        if normalize:
            indicators = [dataclasses.replace(ind, weight=ind.weight * 100 / total) for ind in indicators]
        elif offset is not None:
            pass  # a points card: each weight is the points its indicator adds at sub-score 100
        else:
            parts = " + ".join(f"{ind.name} {ind.weight:g}" for ind in indicators)
            raise CardError(
                f"weights must total 100; got {total:g} ({parts}). "
                "Adjust the weights or set `normalize: true` to rescale them."
            )
    bands = _parse_bands(raw["bands"], bands_by)
    model = _parse_model(raw.get("model"))
    alerts, cooldown, actions = _parse_alerting(raw, [ind.name for ind in indicators], model, bands)
    extra_clash = [c for c in model.extra_features if c in cols or c in (raw.get("id_column"), raw.get("label_column"))]
    if extra_clash:
        raise CardError(
            f"model.extra_features: {extra_clash} already used as indicator, id or label columns; remove them."
        )
    return Card(
        id_column=raw["id_column"],
        indicators=tuple(indicators),
        bands=bands,
        version=1,
        name=raw.get("name") or DEFAULT_MODEL_NAME,
        date_column=raw.get("date_column"),
        label_column=raw.get("label_column"),
        horizon_days=horizon,
        missing=missing,
        bands_by=bands_by,
        model=model,
        calibration=_parse_calibration(raw.get("calibration")),
        experiment=raw.get("experiment"),
        alerts=alerts,
        cooldown_days=cooldown,
        actions=actions,
        offset=offset,
        value_column=raw.get("value_column"),
        raw=dict(raw),
    )


def _too_big(what: str, found: str, where: str = "") -> CardError:
    return CardError(
        f"card{where}: {what} ({found}); a card holds a few hundred values. "
        "Remove the repetition (YAML aliases `*name` / merges `<<:` that expand too far) or split the card."
    )


def _node_values(node: yaml.Node, memo: dict[int, int], open_: set[int], depth: int = 0) -> int:
    """How many values ``node`` stands for once its aliases are expanded (without expanding them:
    a node an alias points to is the same object, so its size is counted once and reused)."""
    key = id(node)
    if key in memo:
        return memo[key]
    where = f" line {node.start_mark.line + 1}" if node.start_mark is not None else ""
    if isinstance(node, yaml.ScalarNode):
        return 1
    if key in open_:
        raise CardError(f"card{where}: a YAML alias refers to itself (a recursive structure); remove it.")
    if depth > MAX_CARD_DEPTH:
        raise _too_big(f"lists and mappings nested more than {MAX_CARD_DEPTH} deep", f"at{where}")
    if len(node.value) > MAX_COLLECTION_ITEMS:
        raise _too_big(
            f"a list or mapping with {len(node.value):,} entries, more than {MAX_COLLECTION_ITEMS:,}", f"at{where}"
        )
    open_.add(key)
    total = 1
    children = [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else list(node.value)
    for child in children:
        total += _node_values(child, memo, open_, depth + 1)
        if total > MAX_CARD_VALUES:
            raise _too_big(f"it expands to more than {MAX_CARD_VALUES:,} values", f"at{where}")
    open_.discard(key)
    memo[key] = total
    return total


def safe_load_card_yaml(text: str) -> Any:
    """``yaml.safe_load`` with the card's size bounds checked on the composed node graph, before any
    Python object is built (so an alias bomb is refused in microseconds, not expanded)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _node_values(node, {}, set())
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _check_size(raw: Any) -> None:
    """The same bounds on a card given as Python data (``parse_card``): shared sub-objects are
    counted as often as they appear, as LightGBM or a YAML dump would expand them."""
    memo: dict[int, int] = {}

    def size(obj: Any, open_: set[int], depth: int) -> int:
        if not isinstance(obj, Mapping | list | tuple):
            return 1
        key = id(obj)
        if key in memo:
            return memo[key]
        if key in open_:
            raise CardError("card: a value contains itself (a recursive structure); remove it.")
        if depth > MAX_CARD_DEPTH:
            raise _too_big(f"lists and mappings nested more than {MAX_CARD_DEPTH} deep", "nesting")
        if len(obj) > MAX_COLLECTION_ITEMS:
            raise _too_big(f"a list or mapping with {len(obj):,} entries, more than {MAX_COLLECTION_ITEMS:,}", "")
        open_.add(key)
        items = [v for kv in obj.items() for v in kv] if isinstance(obj, Mapping) else list(obj)
        total = 1
        for v in items:
            total += size(v, open_, depth + 1)
            if total > MAX_CARD_VALUES:
                raise _too_big(f"it expands to more than {MAX_CARD_VALUES:,} values", "")
        open_.discard(key)
        memo[key] = total
        return total

    size(raw, set(), 0)


# ---- alerts, cooldown and actions ----------------------------------------------------------------
def _positive_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise CardError(f"{where}: expected a positive whole number of days, got {value!r}; write e.g. 30.")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise CardError(f"{where}: expected a non-empty string, got {value!r}.")
    return value


def _parse_alert(raw: Any, i: int, indicators: list[str], band_names: list[str]) -> AlertRule:
    where = f"alerts[{i}]"
    if not isinstance(raw, Mapping):
        raise CardError(f"{where}: expected a mapping like {{name: dropped, type: score_drop, points: 10, days: 30}}.")
    if isinstance(raw.get("name"), str):
        where = f"alerts[{i}] ({raw['name']})"
    require_keys(raw, ("name", "type"), where)
    name = _text(raw["name"], f"{where}.name")
    kind = _choice(raw["type"], tuple(ALERT_TYPES), f"{where}.type")
    check_keys(raw, ("name", "type", *ALERT_TYPES[kind]), f"{where} (type {kind})")
    require_keys(raw, REQUIRED_ALERT_KEYS[kind], where)
    kw: dict[str, Any] = {}
    if "days" in raw:
        kw["days"] = _positive_int(raw["days"], f"{where}.days")
    if "points" in raw:
        kw["points"] = _number(raw["points"], f"{where}.points")
        if kw["points"] <= 0:
            raise CardError(f"{where}.points: a drop is a positive number of points, got {kw['points']:g}.")
    if "bands" in raw:
        bands = raw["bands"]
        if isinstance(bands, str):
            bands = [bands]
        if not isinstance(bands, list) or not bands or not all(isinstance(b, str) for b in bands):
            raise CardError(f"{where}.bands: expected a list of band names, got {raw['bands']!r}.")
        unknown = [b for b in bands if b not in band_names]
        if unknown:
            raise CardError(
                f"{where}.bands: unknown band(s) {unknown}; the card's bands are: {allowed_text(band_names)}."
            )
        kw["bands"] = tuple(bands)
    if "indicator" in raw:
        ind = raw["indicator"]
        if ind not in indicators:
            raise CardError(
                f"{where}.indicator: unknown indicator {ind!r}; use one of: {allowed_text(indicators)} "
                "(the card's indicator names, or model.extra_features columns)."
            )
        kw["indicator"] = ind
    if "pct" in raw:
        kw["pct"] = _number(raw["pct"], f"{where}.pct")
        if kw["pct"] == 0 or kw["pct"] < -100:
            raise CardError(
                f"{where}.pct: expected a change in percent other than 0 and not below -100 "
                f"(-40 = fell by 40 % or more, 50 = rose by 50 % or more), got {kw['pct']:g}."
            )
    for key in ("below", "above"):
        if key in raw:
            kw[key] = _number(raw[key], f"{where}.{key}")
    if kind == "threshold" and ("below" in kw) == ("above" in kw):
        raise CardError(f"{where}: a threshold rule needs exactly one of `below` or `above`; got {sorted(kw)}.")
    return AlertRule(name=name, type=kind, **kw)


def _parse_action(raw: Any, i: int, alert_names: list[str], band_names: list[str]) -> Action:
    where = f"actions[{i}]"
    if not isinstance(raw, Mapping):
        raise CardError(f'{where}: expected a mapping like {{when: {{band: At risk}}, owner: csm, playbook: "..."}}.')
    check_keys(raw, ACTION_KEYS, where)
    require_keys(raw, ACTION_KEYS, where)
    when = raw["when"]
    if not isinstance(when, Mapping) or not when:
        raise CardError(f"{where}.when: expected a mapping with `band` and/or `alert`, got {when!r}.")
    check_keys(when, ACTION_WHEN_KEYS, f"{where}.when")
    band, alert = when.get("band"), when.get("alert")
    if band is not None and band not in band_names:
        raise CardError(f"{where}.when.band: unknown band {band!r}; the card's bands are: {allowed_text(band_names)}.")
    if alert is not None and alert not in alert_names:
        raise CardError(
            f"{where}.when.alert: unknown alert {alert!r}; the card's alerts are: {allowed_text(alert_names) or '(none)'}."
        )
    return Action(
        owner=_text(raw["owner"], f"{where}.owner"),
        playbook=_text(raw["playbook"], f"{where}.playbook"),
        band=band,
        alert=alert,
    )


def _parse_alerting(
    raw: Mapping[str, Any], indicator_names: list[str], model: ModelSpec, bands: tuple[Band, ...]
) -> tuple[tuple[AlertRule, ...], int, tuple[Action, ...]]:
    """The card's ``alerts``, ``cooldown_days`` and ``actions`` (all optional)."""
    names = [*indicator_names, *model.extra_features]
    band_names = [b.name for b in bands]
    rules_raw = raw.get("alerts") or []
    if not isinstance(rules_raw, list):
        raise CardError(f"alerts: expected a list of rules, got {rules_raw!r}.")
    rules = tuple(_parse_alert(r, i, names, band_names) for i, r in enumerate(rules_raw))
    rule_names = [r.name for r in rules]
    dup = sorted({n for n in rule_names if rule_names.count(n) > 1})
    if dup:
        raise CardError(f"alerts: duplicate name(s) {dup}; each alert rule needs its own `name`.")
    cooldown = raw.get("cooldown_days", DEFAULT_COOLDOWN_DAYS)
    if isinstance(cooldown, bool) or not isinstance(cooldown, int) or cooldown < 0:
        raise CardError(f"cooldown_days: expected a whole number of days >= 0, got {cooldown!r}.")
    actions_raw = raw.get("actions") or []
    if not isinstance(actions_raw, list):
        raise CardError(f"actions: expected a list of {{when, owner, playbook}}, got {actions_raw!r}.")
    actions = tuple(_parse_action(a, i, rule_names, band_names) for i, a in enumerate(actions_raw))
    return rules, cooldown, actions


def card_with_model_kind(card: Card, kind: str) -> Card:
    """The card with ``model.kind`` set (e.g. the kind ``train --kind both`` kept), in its parsed form
    and in the YAML it writes (every other field as it is, even if set in code)."""
    kind = _choice(kind, MODEL_KINDS, "model.kind")
    raw = dict(card.raw)
    raw["model"] = {**(raw.get("model") or {}), "kind": kind}
    return dataclasses.replace(card, model=dataclasses.replace(card.model, kind=kind), raw=raw)


def read_yaml(path: str | Path, what: str = "card", option: str = "--config") -> Any:
    """The content of a YAML file (``what``: card, spec ...; ``option``: the command-line option that
    names it), size-bounded (see :func:`safe_load_card_yaml`), or one :class:`CardError` naming the file."""
    path = Path(path)
    if not path.exists():
        raise CardError(f"{path}: {what} file not found; pass an existing YAML file with {option}.")
    if path.is_dir():
        raise CardError(f"{path}: is a directory; pass the {what}'s YAML file with {option}.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise CardError(
            f"{path}: line {line} is not valid UTF-8 (byte 0x{exc.object[exc.start]:02x}); save the {what} as UTF-8."
        ) from None
    try:
        return safe_load_card_yaml(text)
    except CardError as exc:
        raise CardError(f"{path}: {exc}") from None
    except RecursionError:
        raise CardError(f"{path}: the YAML is nested too deeply to be a {what}; fix the file.") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise CardError(f"{path}: not valid YAML{at} ({getattr(exc, 'problem', exc)}); fix the syntax.") from exc


def load_card(path: str | Path) -> Card:
    """Read and validate a YAML card file (size-bounded: see :func:`safe_load_card_yaml`)."""
    raw = read_yaml(path, "card", "--config")
    try:
        return parse_card(raw)
    except CardError as exc:
        raise CardError(f"{path}: {exc}") from None
