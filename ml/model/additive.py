"""The additive model: every tree splits on one feature, so the model is a sum of step functions.

With ``model.kind: additive`` LightGBM trains with ``interaction_constraints`` putting each feature
in its own group, so each tree's splits all use one feature. The margin is then

    margin = constant + sum_j g_j(x_j)

where ``constant`` sums the trees without a split and ``g_j`` sums the trees on feature j: a step
function of x_j alone. :func:`compile_additive` reads the trees (``Booster.dump_model``) and folds
each feature's trees into one table, so explaining a customer is one ``searchsorted`` per feature:

- numeric: the sorted distinct split thresholds t_1 < ... < t_k; value x falls in bucket
  i = #{t < x} (LightGBM sends x left when x <= t), the table holds g_j for each of the k + 1
  buckets, plus the value for a missing x. LightGBM's missing-value routing is followed exactly:
  ``missing_type`` NaN sends NaN the node's default way; None turns NaN into 0.0 first; Zero sends
  NaN and zeros the default way. LightGBM reads any |x| <= 1e-35 (its kZeroThreshold, as a float)
  as 0.0 before the trees see it, so the table also holds the value for that zero range.
- categorical (``decision_type == '=='``, threshold ``'1||3'`` = the category codes going left):
  one value per category code, one for a missing category, one for any other code.

TreeSHAP (``pred_contrib``) of a one-feature tree is its output minus its cover-weighted mean leaf
E_t, so the contribution of feature j is ``g_j(x_j) - sum_{t on j} E_t`` and the bias is
``sum_t E_t``: :meth:`AdditiveTables.log_odds` reproduces ``pred_contrib`` to float rounding.

:func:`learned_card` turns a fitted additive model into a card (``M/cards/learned.yaml``) when the
health score is linear in the margin (sigmoid calibration on the odds scale): see its docstring.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ml.errors import ModelError, quiet

# LightGBM's kZeroThreshold (the float 1e-35f): its predictor reads any |x| <= it as exactly 0.0
ZERO_THRESHOLD = float(np.float32(1e-35))
KINDS = ("full", "additive")


@dataclass(frozen=True)
class FeatureTable:
    """One feature's step function g_j (the sum of its trees' outputs, in log-odds)."""

    name: str
    categorical: bool
    thresholds: np.ndarray  # numeric: sorted distinct split thresholds (empty for categorical)
    values: np.ndarray  # numeric: g per bucket (k + 1); categorical: g per code, then any other code
    missing: float  # g for a missing value
    zero: float  # numeric: g for |x| <= ZERO_THRESHOLD (read as 0.0; missing_type Zero nodes send it the default way)
    expected: float  # sum over the feature's trees of the cover-weighted mean leaf (TreeSHAP's E_t)
    n_trees: int

    def lookup(self, column: pd.Series | np.ndarray, *, centred: bool = False) -> np.ndarray:
        """g_j for every value of the column (as in the model's feature matrix); ``centred``: minus
        the feature's expected value (its TreeSHAP contribution). One ``searchsorted`` and one take
        per column (see :meth:`fast_table`)."""
        return self.table(centred)[self.index(column)]

    def index(self, column: pd.Series | np.ndarray) -> np.ndarray:
        """Each value's entry in :meth:`table`."""
        if self.categorical:
            if isinstance(column, pd.Series) and isinstance(column.dtype, pd.CategoricalDtype):
                codes = column.cat.codes.to_numpy()
            else:
                x = np.asarray(column, dtype=float)
                codes = np.where(np.isnan(x), -1, np.nan_to_num(x, nan=-1))
            other = len(self.values) - 1  # codes: -1 missing, 0..other-1 named, `other` any other code
            return np.clip(codes, -1, other).astype(np.intp)  # -1 -> the table's last entry: missing
        cuts = self.fast_table[0]
        x = np.asarray(column, dtype=float)
        small = _small_integers(x)
        if small is None:
            return np.searchsorted(cuts, x, side="left")
        xi, lo, hi, nan = small  # counts and the like: one table lookup per value, not a binary search
        by_value = np.searchsorted(cuts, np.arange(lo, hi + 1, dtype=float), side="left")
        return np.where(nan, len(cuts), by_value[xi - lo])

    def table(self, centred: bool = False) -> np.ndarray:
        """The values :meth:`index` points into (categorical: per code, then any other code, then
        missing; numeric: see :meth:`fast_table`)."""
        table = np.append(self.values, self.missing) if self.categorical else self.fast_table[1]
        return table - self.expected if centred else table

    def exact_lookup(self, x: np.ndarray) -> np.ndarray:
        """LightGBM's rules spelled out (reference for :meth:`fast_table`): NaN -> the missing value,
        |x| <= ZERO_THRESHOLD -> the zero value, else the value of bucket #{t < x}."""
        x = np.asarray(x, dtype=float)
        out = self.values[np.searchsorted(self.thresholds, x, side="left")]
        out = np.where(np.abs(x) <= ZERO_THRESHOLD, self.zero, out)
        return np.where(np.isnan(x), self.missing, out)

    @functools.cached_property
    def fast_table(self) -> tuple[np.ndarray, np.ndarray]:
        """(cuts, values) with ``values[searchsorted(cuts, x, 'left')]`` equal to :meth:`exact_lookup`
        for every x: LightGBM's zero range [-Z, Z] becomes its own bucket (cuts prev(-Z) and Z, the
        thresholds inside it dropped), and a last cut +inf sends NaN (sorted after +inf) to a final
        entry holding the missing value. Each bucket's value is the exact lookup of its upper end."""
        z = ZERO_THRESHOLD
        t = self.thresholds
        cuts = np.unique(np.concatenate([t[(t < -z) | (t > z)], [np.nextafter(-z, -np.inf), z]]))
        reps = np.append(cuts, np.nextafter(cuts[-1], np.inf))  # one value inside each bucket
        values = np.append(self.exact_lookup(reps), self.missing)
        return np.append(cuts, np.inf), values

    @property
    def zero_is_special(self) -> bool:
        """True when zero does not get its bucket's value (missing_type Zero: ``zero_as_missing``)."""
        return not self.categorical and self.zero != self.values[np.searchsorted(self.thresholds, 0.0, side="left")]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "categorical": self.categorical,
            "thresholds": self.thresholds.tolist(),
            "values": self.values.tolist(),
            "missing": self.missing,
            "zero": self.zero,
            "expected": self.expected,
            "n_trees": self.n_trees,
        }


@dataclass(frozen=True)
class AdditiveTables:
    """The compiled additive model: one :class:`FeatureTable` per feature (in the model's order)."""

    features: tuple[FeatureTable, ...]
    constant: float  # sum of the leaf values of trees without a split
    constant_expected: float  # the same trees' share of the bias (equal to ``constant``)

    @property
    def bias(self) -> float:
        """TreeSHAP's base value: the sum of every tree's cover-weighted mean leaf."""
        return self.constant_expected + float(sum(f.expected for f in self.features))

    def raw(self, X: pd.DataFrame, *, centred: bool = False) -> np.ndarray:
        """rows x features matrix of g_j(x_j) (``centred``: minus each feature's expected value, i.e.
        the TreeSHAP contributions), filled column by column (Fortran order)."""
        G = np.empty((len(X), len(self.features)), order="F")
        for j, f in enumerate(self.features):
            G[:, j] = f.lookup(X[f.name], centred=centred)
        return G

    def log_odds(self, X: pd.DataFrame) -> tuple[np.ndarray, float, np.ndarray]:
        """(phi, bias, margin): per-feature log-odds contributions equal to LightGBM's ``pred_contrib``
        columns, its last column (the bias), and the margin bias + sum(phi)."""
        phi = self.raw(X, centred=True)
        margin = self.bias + phi.sum(axis=1)
        return phi, self.bias, margin


# ---- compiling ---------------------------------------------------------------------------------------
SMALL_INTEGER_RANGE = 4096  # integer-valued columns spanning at most this many values index a lookup table


def _small_integers(x: np.ndarray):
    """(x as int64 with NaN as the minimum, min, max, NaN mask) when every value is NaN or an integer
    within SMALL_INTEGER_RANGE values, else None. Cheap checks first: most float columns fail at once."""
    if len(x) == 0 or not (np.isnan(x[:64]) | (x[:64] == np.floor(x[:64]))).all():
        return None
    nan = np.isnan(x)
    with np.errstate(invalid="ignore"):
        xi = x.astype(np.int64)  # NaN and +-inf become garbage here; NaN is masked, inf fails below
    if not ((xi == x) | nan).all():
        return None
    if nan.all():
        return None
    lo, hi = int(xi[~nan].min()), int(xi[~nan].max())
    if hi - lo >= SMALL_INTEGER_RANGE:
        return None
    return np.where(nan, lo, xi), lo, hi, nan


def _is_leaf(node: dict) -> bool:
    return "split_index" not in node


def _walk(node: dict):
    yield node
    if not _is_leaf(node):
        yield from _walk(node["left_child"])
        yield from _walk(node["right_child"])


def _expected(tree: dict) -> float:
    """LightGBM's ``Tree::ExpectedValue``: leaves weighted by their training counts."""
    root = tree["tree_structure"]
    if _is_leaf(root):
        return float(root["leaf_value"])
    total = float(root["internal_count"])
    return float(sum(n["leaf_count"] / total * n["leaf_value"] for n in _walk(root) if _is_leaf(n)))


def _categories_left(node: dict) -> set[int]:
    return {int(c) for c in str(node["threshold"]).split("||") if c != ""}


def _eval_buckets(node: dict, buckets: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """A numeric tree's output for each bucket index (values not missing and not zero)."""
    if _is_leaf(node):
        return np.full(len(buckets), float(node["leaf_value"]))
    m = int(np.searchsorted(thresholds, float(node["threshold"]), side="left"))
    return np.where(
        buckets <= m,
        _eval_buckets(node["left_child"], buckets, thresholds),
        _eval_buckets(node["right_child"], buckets, thresholds),
    )


def _eval_special(node: dict, missing: bool) -> float:
    """A tree's output for a missing value (NaN) or for zero, by LightGBM's rule for each node's
    missing type (``Tree::NumericalDecision`` / ``CategoricalDecision``)."""
    while not _is_leaf(node):
        mtype = node["missing_type"]
        if node["decision_type"] == "==":
            left = not missing and 0 in _categories_left(node)  # a missing category always goes right
        elif (missing and mtype == "NaN") or mtype == "Zero":  # None turns NaN into 0.0; Zero: 0.0 is missing
            left = bool(node["default_left"])
        else:
            left = 0.0 <= float(node["threshold"])
        node = node["left_child"] if left else node["right_child"]
    return float(node["leaf_value"])


def _eval_codes(node: dict, codes: np.ndarray) -> np.ndarray:
    if _is_leaf(node):
        return np.full(len(codes), float(node["leaf_value"]))
    left = np.isin(codes, list(_categories_left(node)))
    return np.where(left, _eval_codes(node["left_child"], codes), _eval_codes(node["right_child"], codes))


def compile_additive(booster, n_categories: dict[str, int] | None = None) -> AdditiveTables:
    """Fold an additive booster's trees into one table per feature.

    ``n_categories`` names the categorical features with their number of category codes (the
    schema's categories); without it a feature is categorical when a split says so, and the codes
    seen in the splits set the table's size. Raises
    :class:`ModelError` when a tree splits on more than one feature (not an additive model)."""
    dump = booster.dump_model()
    names: list[str] = list(dump["feature_names"])
    n_categories = n_categories or {}
    per_feature: dict[int, list[dict]] = {j: [] for j in range(len(names))}
    constant = 0.0
    constant_expected = 0.0
    for t, tree in enumerate(dump["tree_info"]):
        root = tree["tree_structure"]
        if _is_leaf(root):
            constant += float(root["leaf_value"])
            constant_expected += _expected(tree)
            continue
        used = {int(n["split_feature"]) for n in _walk(root) if not _is_leaf(n)}
        if len(used) > 1:
            shown = sorted(names[j] for j in used)
            raise ModelError(
                f"tree {t} splits on several features ({shown}), so the model is not additive; "
                "train it with model.kind: additive (one interaction group per feature)."
            )
        per_feature[used.pop()].append(tree)

    tables = []
    for j, name in enumerate(names):
        trees = per_feature[j]
        nodes = [n for tree in trees for n in _walk(tree["tree_structure"]) if not _is_leaf(n)]
        categorical = name in n_categories or any(n["decision_type"] == "==" for n in nodes)
        expected = float(sum(_expected(tree) for tree in trees))
        missing = float(sum(_eval_special(tree["tree_structure"], True) for tree in trees))
        zero = float(sum(_eval_special(tree["tree_structure"], False) for tree in trees))
        if categorical:
            seen = max((max(_categories_left(n), default=-1) for n in nodes), default=-1)
            k = max(n_categories.get(name, 0), seen + 1)
            codes = np.arange(k + 1)  # the last code stands for any category the splits never name
            values = np.zeros(k + 1)
            for tree in trees:
                values += _eval_codes(tree["tree_structure"], codes)
            tables.append(FeatureTable(name, True, np.empty(0), values, missing, zero, expected, len(trees)))
            continue
        thresholds = np.unique(np.array([float(n["threshold"]) for n in nodes], dtype=float))
        buckets = np.arange(len(thresholds) + 1)
        values = np.zeros(len(buckets))
        for tree in trees:
            values += _eval_buckets(tree["tree_structure"], buckets, thresholds)
        tables.append(FeatureTable(name, False, thresholds, values, missing, zero, expected, len(trees)))
    return AdditiveTables(tuple(tables), constant, constant_expected)


def additive_tables(model) -> AdditiveTables:
    """The fitted model's compiled tables (compiled once, then kept on the model)."""
    tables = getattr(model, "additive_tables_", None)
    if tables is None:
        from ml.model.features import CATEGORICAL

        n_cat = {f.name: len(f.categories) for f in model.schema_.features if f.kind == CATEGORICAL}
        tables = compile_additive(model.booster_, n_cat)
        model.additive_tables_ = tables
    return tables


def is_additive(model) -> bool:
    return getattr(model, "kind_", "full") == "additive"


# ---- the learned card ----------------------------------------------------------------------------
LEARNED_CARD = "cards/learned.yaml"


def health_slope(model) -> float:
    """d health / d margin at the model's base margin (health points per unit of log-odds). Exact and
    the same for every customer on the odds scale with sigmoid calibration: -pdo x a / ln 2."""
    b = additive_tables(model).bias
    d = 1e-4
    h = model.health_from_probability(model.calibrator_.predict_proba(np.array([b - d, b + d])))
    return float((h[1] - h[0]) / (2 * d))


def learned_card_reason(model) -> str | None:
    """Why the model cannot be written as a card (None when it can)."""
    if not is_additive(model):
        return "the model is not additive (model.kind: full); train with --kind additive for a learned card"
    cal = model.card.calibration
    method = model.calibrator_.method_
    if cal.scale != "odds" or method != "sigmoid":
        return (
            "the health score is a card (linear in the model's margin) only with sigmoid calibration on the odds "
            f"scale (calibration: {{method: sigmoid, scale: odds}}); this model uses {method} calibration on the "
            f"{cal.scale} scale, so no learned card is written"
        )
    if not any(t.n_trees for t in additive_tables(model).features):
        return "the model never split on any indicator (every customer gets the same score)"
    if any(t.zero_is_special for t in additive_tables(model).features):
        return "the model treats zeros as missing (zero_as_missing), which a card's thresholds cannot express"
    return None


def _monotone_direction(scores: np.ndarray, declared: str) -> str:
    steps = np.diff(scores)
    rising, falling = bool(np.all(steps >= 0)), bool(np.all(steps <= 0))
    if declared == "higher_is_better" and rising or declared == "lower_is_better" and falling:
        return declared
    return "none"


def learned_card(model) -> dict[str, Any]:
    """The fitted additive model as a points card (a mapping for ``parse_card``/YAML).

    On the odds scale with sigmoid calibration the health score is linear in the margin:

        health = anchor + pdo log2(base_odds) - pdo (a margin + b) / ln 2,   margin = c + sum_j g_j(x_j)

    so health = C - k sum_j g_j(x_j) with k = pdo a / ln 2. Indicator j earns P_j(x) = -k g_j(x)
    points; with lo_j and hi_j its fewest and most points (missing value included) it gets
    ``weight = hi_j - lo_j``, sub-scores ``100 (P_j - lo_j) / weight`` and the card's
    ``offset = C + sum_j lo_j``. Numeric indicators use ``thresholds`` with cut ``nextafter(t, inf)``
    for each split threshold t: the card's rule (x < cut -> the lower score) then puts exactly the
    values LightGBM sends left (x <= t) below the cut. Booleans use ``boolean``, categories
    ``categorical``; a missing value gets ``missing_score``. Scores are clipped to [0, 100] as the
    model's are, so the card reproduces ``health_score`` wherever the score is not clipped."""
    reason = learned_card_reason(model)
    if reason is not None:
        raise ModelError(f"no learned card: {reason}.")
    from ml.model.features import CATEGORICAL

    card, cal, calibrator = model.card, model.card.calibration, model.calibrator_
    tables = additive_tables(model)
    ln2 = np.log(2.0)
    base = model.base_rate_
    k = cal.pdo * calibrator.a_ / ln2
    offset = (
        cal.anchor_score
        + cal.pdo * np.log(base / (1 - base)) / ln2
        - cal.pdo * (calibrator.a_ * tables.constant + calibrator.b_) / ln2
    )
    declared = {ind.name: ind.direction for ind in card.indicators}
    labels = {ind.name: ind.label for ind in card.indicators}
    indicators = []
    for f, t in zip(model.schema_.features, tables.features, strict=True):
        if f.kind == CATEGORICAL:
            states = -k * t.values[: len(f.categories)]
        elif f.boolean:
            states = -k * t.lookup(np.array([0.0, 1.0]))
        else:
            states = -k * t.values
        missing = -k * t.missing
        lo, hi = float(min(states.min(initial=missing), missing)), float(max(states.max(initial=missing), missing))
        weight = hi - lo
        sub = np.clip((states - lo) / weight * 100.0, 0.0, 100.0) if weight > 0 else np.zeros(len(states))
        miss_sub = float(np.clip((missing - lo) / weight * 100.0, 0.0, 100.0)) if weight > 0 else 0.0
        offset += lo
        direction = declared.get(f.name, f.direction)
        if f.kind == CATEGORICAL:
            scoring = {"method": "categorical", "map": {c: float(s) for c, s in zip(f.categories, sub, strict=True)}}
        elif f.boolean:
            scoring = {"method": "boolean", "true_score": float(sub[1]), "false_score": float(sub[0])}
        elif len(t.thresholds):
            direction = _monotone_direction(sub, direction)
            cuts = np.nextafter(t.thresholds, np.inf)
            scoring = {"method": "thresholds", "cuts": [float(c) for c in cuts], "scores": [float(s) for s in sub]}
        else:  # the model never split on it: no points either way
            scoring = {"method": "thresholds", "cuts": [0.0], "scores": [0.0, 0.0]}
        indicators.append(
            {
                "name": f.name,
                "label": labels.get(f.name, f.name),
                "column": f.column,
                "weight": float(weight),
                "direction": direction,
                "scoring": scoring,
                "missing_score": miss_sub,
            }
        )
    out: dict[str, Any] = {"version": 1, "name": f"{card.name}-learned", "id_column": card.id_column}
    for key in ("date_column", "label_column"):
        if getattr(card, key):
            out[key] = getattr(card, key)
    out["horizon_days"] = card.horizon_days
    out["offset"] = float(offset)
    out["indicators"] = indicators
    out["bands"] = [dict(b) for b in card.raw["bands"]]
    if card.bands_by != "fixed":
        out["bands_by"] = card.bands_by
    out["calibration"] = {"method": "sigmoid", "scale": "odds", "anchor_score": cal.anchor_score, "pdo": cal.pdo}
    return out


def learned_card_yaml(model) -> str:
    """:func:`learned_card` as YAML with a header saying what it is (floats written to round-trip)."""
    import yaml

    class Dumper(yaml.SafeDumper):  # lists of numbers on one line: `cuts: [2.65, 3.25]`
        pass

    def flow_lists(dumper, data):
        flat = all(not isinstance(v, list | dict) for v in data)
        return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flat)

    Dumper.add_representer(list, flow_lists)
    body = yaml.dump(learned_card(model), Dumper=Dumper, sort_keys=False, allow_unicode=True, width=1000)
    header = (
        f"# The learned card: model {model.card.name!r} (model.kind: additive) written in the card format.\n"
        "# score = offset + sum of weight x sub-score / 100, clipped to 0-100: the model's health_score.\n"
        "# Each indicator's weight is the points between its worst and best value; `thresholds` give the\n"
        "# lower score to values below each cut; `missing_score` is the sub-score of a missing value.\n"
        "# Run it as any card: healthscore score --config cards/learned.yaml --data ... --out ...\n"
    )
    return header + body


# ---- shape curves ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ShapeCurve:
    """One indicator's learned points curve (health points relative to the average customer, i.e. its
    TreeSHAP contribution at the base score's slope) beside the manual card's points for the same values.

    Numeric: ``x`` holds the step edges (the split thresholds within the data's range) and ``points``
    the level of each step (len(x) + 1); boolean / categorical: ``x`` holds the category names."""

    name: str
    label: str
    kind: str  # numeric | boolean | categorical
    x: list
    points: np.ndarray
    missing_points: float
    values: np.ndarray  # the data's values (numeric) or category codes, for the distribution below
    manual_x: np.ndarray | None = None
    manual_points: np.ndarray | None = None
    manual_rule: str = ""
    text: str = ""


def _manual_rule(ind) -> str:
    sc = ind.scoring
    w = f"{ind.weight:g} points"
    if sc.method == "linear":
        return f"your card gives {ind.label} {w} spread linearly from {sc.worst:g} to {sc.best:g}"
    if sc.method == "thresholds":
        return f"your card gives {ind.label} {w} in steps at {', '.join(f'{c:g}' for c in sc.cuts)}"
    if sc.method == "percentile":
        return f"your card gives {ind.label} {w} by percentile rank in the portfolio"
    if sc.method == "boolean":
        return f"your card gives {ind.label} {w}: {sc.true_score:g} sub-score if yes, {sc.false_score:g} if no"
    if sc.method == "categorical":
        return f"your card gives {ind.label} {w} by category"
    return f"your card gives {ind.label} {w} (its value as the sub-score)"


def _fmt(v: float) -> str:
    return "0" if abs(v) <= ZERO_THRESHOLD else f"{v:.3g}"  # LightGBM splits 0 vs more at +-1e-35


def _step_text(label: str, edges: list, i: int) -> str:
    """Where step i of a curve with these edges lies: 'CSAT up to 3.15', 'CSAT 3.15 to 3.95' ..."""
    if i == 0:
        return f"{label} up to {_fmt(edges[0])}"
    if i == len(edges):
        return f"{label} above {_fmt(edges[-1])}"
    return f"{label} {_fmt(edges[i - 1])} to {_fmt(edges[i])}"


def shape_curves(model, frame: pd.DataFrame) -> list[ShapeCurve]:
    """The learned points curve of every feature of an additive model, with the manual card's rule
    for card indicators, for plots (``frame``: rows whose values form the distribution shown)."""
    from ml.model.features import CATEGORICAL
    from ml.scorecard import subscore

    tables = additive_tables(model)
    slope = health_slope(model)
    X = model.schema_.matrix(frame, strict=False)
    card = model.card
    base = dict(zip(card.names, np.asarray(model.manual_base_subscores_, float), strict=True))
    out = []
    for f, t in zip(model.schema_.features, tables.features, strict=True):
        ind = next((i for i in card.indicators if i.name == f.name), None)
        label = ind.label if ind is not None else f.name
        missing = slope * (t.missing - t.expected)
        manual_x = manual_points = None
        if f.kind == CATEGORICAL:
            kind, x = "categorical", list(f.categories)
            points = slope * (t.values[: len(x)] - t.expected)
            values = X[f.name].cat.codes.to_numpy()
            grid = pd.Series(x, dtype=object)
        elif f.boolean:
            kind, x = "boolean", ["no", "yes"]
            points = slope * (t.lookup(np.array([0.0, 1.0])) - t.expected)
            values = X[f.name].to_numpy(dtype=float)
            grid = pd.Series([False, True])
        else:
            kind = "numeric"
            values = X[f.name].to_numpy(dtype=float)
            seen = values[~np.isnan(values)]
            lo, hi = np.quantile(seen, [0.005, 0.995]) if len(seen) else (0.0, 1.0)
            inside = t.thresholds[(t.thresholds >= lo) & (t.thresholds <= hi)]
            x = inside.tolist()
            reps = np.append(inside, np.nextafter(inside[-1], np.inf)) if len(inside) else np.array([(lo + hi) / 2])
            reps[0] = lo if len(inside) else reps[0]  # no threshold between lo and the first edge
            points = slope * (t.lookup(reps) - t.expected)
            grid = pd.Series(np.linspace(lo, hi, 200) if hi > lo else np.array([lo]))
        if ind is not None:
            with quiet():
                sub = subscore(grid, ind, getattr(model.scorecard_, "reference_", {}).get(ind.name))
            manual_x = grid.to_numpy()
            manual_points = ind.weight * (sub - base[ind.name]) / 100.0
        worst, best = int(np.argmin(points)), int(np.argmax(points))
        if t.n_trees == 0:
            text = f"the model does not use {label}"
        elif kind == "numeric" and len(x):
            text = (
                f"{_step_text(label, x, worst)}: {points[worst]:+.1f} points; "
                f"{_step_text(label, x, best)}: {points[best]:+.1f} points"
            )
        elif kind != "numeric":
            text = f"{label} {x[worst]}: {points[worst]:+.1f} points; {label} {x[best]}: {points[best]:+.1f} points"
        else:
            text = f"{label}: {points[0]:+.1f} points across the data's range"
        if t.n_trees:
            text += f"; missing: {(round(missing, 1) or 0.0):+.1f} points (all relative to the average customer)"
        out.append(
            ShapeCurve(
                name=f.name,
                label=label,
                kind=kind,
                x=x,
                points=np.asarray(points, float),
                missing_points=float(missing),
                values=values,
                manual_x=manual_x,
                manual_points=manual_points,
                manual_rule=_manual_rule(ind) if ind is not None else "not on your card",
                text=text,
            )
        )
    return out
