"""The model's feature matrix: the card's indicator columns as raw values plus ``model.extra_features``.

The schema is learned once at training (each feature's kind and, for text, its categories) and then
enforced at scoring, so drift between training and scoring data is one clear error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ml.card import Card, Indicator
from ml.errors import DataError, rows_text, warn
from ml.scorecard import boolean_values, categorical_keys, numeric_values

NUMERIC, CATEGORICAL = "numeric", "categorical"


@dataclass(frozen=True)
class Feature:
    name: str  # the card's indicator name, or the column name for extra features
    column: str
    kind: str  # numeric | categorical
    in_scorecard: bool
    direction: str = "none"
    categories: tuple[str, ...] = ()
    boolean: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "column": self.column,
            "kind": self.kind,
            "in_scorecard": self.in_scorecard,
            "direction": self.direction,
            "categories": list(self.categories),
            "boolean": self.boolean,
        }


@dataclass(frozen=True)
class FeatureSchema:
    features: tuple[Feature, ...] = field(default_factory=tuple)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def columns(self) -> list[str]:
        return [f.column for f in self.features]

    def to_dict(self) -> dict[str, Any]:
        return {"features": [f.to_dict() for f in self.features]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureSchema:
        return cls(tuple(Feature(**{**f, "categories": tuple(f["categories"])}) for f in d["features"]))

    # -- building and applying
    @classmethod
    def learn(cls, card: Card, frame: pd.DataFrame) -> FeatureSchema:
        feats: list[Feature] = []
        for ind in card.indicators:
            feats.append(_learn_one(frame[ind.column], ind.name, ind.column, True, ind))
        for col in card.model.extra_features:
            feats.append(_learn_one(frame[col], col, col, False, None))
        return cls(tuple(feats))

    def check(self, frame: pd.DataFrame, *, strict: bool = True, unseen: str = "error") -> None:
        """One error listing every missing column, new category and wrong type at once. With
        ``strict=False`` (training) stray text in a numeric column is left to the converter, which
        warns and treats it as missing, as the manual card does. ``unseen="missing"`` turns categories
        unseen in training from an error into a warning naming the values and rows: those rows are
        scored with that feature missing."""
        missing = [c for c in self.columns if c not in frame.columns]
        problems: list[str] = []
        if missing:
            import difflib

            expected = set(self.columns)
            unexpected = [str(c) for c in frame.columns if c not in expected]
            hints = []
            for c in missing:
                lower = {u.lower().replace(" ", "_"): u for u in unexpected}
                match = lower.get(c.lower().replace(" ", "_")) or next(
                    iter(difflib.get_close_matches(c, unexpected, n=1, cutoff=0.8)), None
                )
                if match:
                    hints.append(f"{match!r} looks like {c!r}")
            problems.append(f"missing column(s) {missing}")
            problems.append(
                f"columns the model does not use: {unexpected[:20]}" + ("..." if len(unexpected) > 20 else "")
            )
            if hints:
                problems.append("; ".join(hints))
        for f in self.features:
            if f.column not in frame.columns:
                continue
            s = frame[f.column]
            if f.kind == CATEGORICAL:
                seen = pd.unique(categorical_keys(s).dropna())
                new = sorted(set(seen) - set(f.categories))
                if new and unseen == "missing":
                    keys = categorical_keys(s)
                    rows = keys.notna().to_numpy() & ~keys.isin(list(f.categories)).fillna(False).to_numpy()
                    warn(
                        f"column {f.column!r} has categories unseen in training: {new[:10]} in "
                        f"{rows_text(frame.index, rows)}; those rows are scored with {f.name!r} missing "
                        f"(known: {list(f.categories)[:10]}). Use --strict to refuse them, or retrain."
                    )
                elif new:
                    problems.append(
                        f"column {f.column!r} has categories unseen in training: {new[:10]} "
                        f"(known: {list(f.categories)[:10]})"
                    )
            elif strict and not f.boolean and not (pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s)):
                converted = pd.to_numeric(s, errors="coerce")
                text = s.astype("string").str.strip()
                bad = converted.isna() & s.notna() & text.ne("").fillna(False)  # blanks are just missing
                if bad.any():
                    problems.append(
                        f"column {f.column!r} should be numeric but holds text in {int(bad.sum())} row(s), "
                        f"e.g. {pd.unique(s[bad].astype(str))[:3].tolist()}"
                    )
        if problems:
            expected = ", ".join(self.columns)
            raise DataError(
                "data does not match the model's schema: "
                + "; ".join(problems)
                + f". The model expects columns: {expected}. Fix the data or retrain on the new schema."
            )

    def matrix(self, frame: pd.DataFrame, *, strict: bool = True, unseen: str = "error") -> pd.DataFrame:
        """The LightGBM input: float columns and fixed-category categoricals, named by feature name
        (a category unseen in training is missing there; see :meth:`check` for ``unseen``)."""
        self.check(frame, strict=strict, unseen=unseen)
        cols: dict[str, Any] = {}
        for f in self.features:
            s = frame[f.column]
            if f.kind == CATEGORICAL:
                keys = categorical_keys(s)
                # a category unseen in training (allowed by `unseen="missing"`) is missing here; masking it
                # first keeps pandas from warning (pandas 4 will refuse values outside the categories)
                known = keys.notna() & keys.isin(f.categories)
                cols[f.name] = pd.Categorical(keys.astype(object).where(known, None), categories=list(f.categories))
            elif f.boolean:
                cols[f.name] = boolean_values(s, _pseudo(f))
            else:
                cols[f.name] = numeric_values(s, _pseudo(f))
        return pd.DataFrame(cols, index=frame.index)


def _pseudo(f: Feature) -> Indicator:
    """A stand-in indicator so the scorecard's converters can name the column in their messages."""
    from ml.card import Scoring

    return Indicator(
        name=f.name,
        column=f.column,
        weight=0.0,
        direction=f.direction,
        scoring=Scoring("boolean" if f.boolean else "linear"),
        label=f.name,
    )


def _learn_one(s: pd.Series, name: str, column: str, in_card: bool, ind: Indicator | None) -> Feature:
    direction = ind.direction if ind is not None else "none"
    method = ind.scoring.method if ind is not None else None
    if method == "boolean" or pd.api.types.is_bool_dtype(s):
        return Feature(name, column, NUMERIC, in_card, direction, boolean=True)
    if pd.api.types.is_datetime64_any_dtype(s):
        raise DataError(
            f"column {column!r} holds dates; the model needs numbers or categories. "
            "Derive a number first (e.g. days since the date)."
        )
    if method == "categorical" or not pd.api.types.is_numeric_dtype(s):
        converted = pd.to_numeric(s, errors="coerce") if method != "categorical" else None
        if converted is not None and converted.notna().sum() >= 0.95 * s.notna().sum() and s.notna().any():
            return Feature(name, column, NUMERIC, in_card, direction)  # numbers stored as text
        cats = tuple(sorted(pd.unique(categorical_keys(s).dropna())))
        if len(cats) > 200:
            raise DataError(
                f"column {column!r} is text with {len(cats)} distinct values; too many for a category. "
                "Drop it from model.extra_features or group its values."
            )
        return Feature(
            name, column, CATEGORICAL, in_card, "none" if method != "categorical" else direction, categories=cats
        )
    return Feature(name, column, NUMERIC, in_card, direction)


def monotone_constraints(schema: FeatureSchema, free: set[str] = frozenset()) -> list[int]:
    """LightGBM's positional ``monotone_constraints`` for the churn margin, built from feature names:
    higher_is_better -> -1 (more of it, less churn), lower_is_better -> +1, else 0."""
    out = []
    for f in schema.features:
        if f.kind != NUMERIC or f.name in free:
            out.append(0)
        else:
            out.append({"higher_is_better": -1, "lower_is_better": 1}.get(f.direction, 0))
    return out


def label_values(frame: pd.DataFrame, column: str) -> np.ndarray:
    """The churn label as floats: 1.0 churned, 0.0 retained, NaN where it is empty (censored: the
    label window has not elapsed, so nobody knows yet). A value that is present but is not
    0/1/true/false/yes/no is an error naming what was found."""
    s = frame[column]
    if pd.api.types.is_bool_dtype(s):
        return s.astype(float).to_numpy(na_value=np.nan)
    if pd.api.types.is_numeric_dtype(s):
        y = s.to_numpy(dtype=float, na_value=np.nan)
        bad = ~np.isnan(y) & ~np.isin(y, (0.0, 1.0))
        if bad.any():
            found = [int(v) if float(v).is_integer() else float(v) for v in sorted(pd.unique(y[bad]))[:5]]
            raise DataError(
                f"label column {column!r} must be 0/1, found {found} in {int(bad.sum())} row(s); "
                "encode churned as 1 and retained as 0 (leave it empty where it is not known yet)."
            )
        return y
    text = s.astype("string").str.strip().str.lower()
    empty = text.isna() | text.eq("").fillna(True)
    y = text.map({"1": 1.0, "true": 1.0, "yes": 1.0, "y": 1.0, "0": 0.0, "false": 0.0, "no": 0.0, "n": 0.0})
    bad = y.isna() & ~empty
    if bad.any():
        found = pd.unique(s[bad.to_numpy()].astype(str))[:5].tolist()
        raise DataError(
            f"label column {column!r} must be 0/1 (or yes/no, true/false), found {found} in {int(bad.sum())} "
            "row(s); recode it (leave it empty where it is not known yet)."
        )
    return y.astype(float).to_numpy(na_value=np.nan)


def label_array(frame: pd.DataFrame, column: str) -> np.ndarray:
    """The churn label as 0/1 integers, for callers that need every row labelled: an empty label is
    an error here (``label_values`` keeps empty labels as NaN: censored rows)."""
    y = label_values(frame, column)
    empty = np.isnan(y)
    if empty.any():
        raise DataError(f"label column {column!r} has {int(empty.sum())} missing value(s); drop those rows.")
    return y.astype(int)
