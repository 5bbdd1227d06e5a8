"""``HealthModel``: a LightGBM churn model on the card's raw indicators, calibrated onto the health scale,
with the manual card fitted and calibrated beside it so both read as churn probabilities.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from ml._lgb import lgb_threads, predict_kw
from ml.card import Card
from ml.errors import DataError, quiet, warn
from ml.model.audit import DirectionCheck, audit_directions
from ml.model.calibration import ScoreCalibrator, probability_to_health
from ml.model.explain import (
    Contributions,
    category_reference_points,
    contributions,
    driver_text,
    mean_subscores,
)
from ml.model.features import CATEGORICAL, FeatureSchema, label_values, monotone_constraints
from ml.model.splits import Splits, make_splits
from ml.scorecard import WeightedScorecard, assign_bands

MIN_TRAIN_ROWS = 200
MIN_TRAIN_CHURNERS = 20
LEAKAGE_AUC = 0.98
DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 50,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "cat_smooth": 10,
    "deterministic": True,
    "force_col_wise": True,
    "verbose": -1,
}


REFERENCE_POINTS = 10_001  # a stored percentile reference keeps at most this many quantiles


def _single_feature_auc(x: np.ndarray, y: np.ndarray) -> float:
    """max(AUC, 1 - AUC) of one numeric column against the label (missing values excluded)."""
    from sklearn.metrics import roc_auc_score

    ok = ~np.isnan(x)
    if ok.sum() < 10 or len(np.unique(y[ok])) < 2 or np.unique(x[ok]).size < 2:
        return 0.5
    auc = roc_auc_score(y[ok], x[ok])
    return float(max(auc, 1 - auc))


def value_array(frame: pd.DataFrame, column: str) -> np.ndarray:
    """The card's ``value_column`` (ARR, MRR, seats ...) as floats; missing values stay NaN."""
    if column not in frame.columns:
        raise DataError(
            f"data is missing the value column {column!r} (the card's value_column, used for value_at_risk); "
            "add it or remove `value_column` from the card."
        )
    s = frame[column]
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        return s.to_numpy(dtype=float, na_value=np.nan)
    v = pd.to_numeric(s, errors="coerce")
    bad = v.isna() & s.notna() & s.astype("string").str.strip().ne("").fillna(False)
    if bad.any():
        raise DataError(
            f"value column {column!r} must hold numbers (ARR, MRR, seats ...), found text in {int(bad.sum())} "
            f"row(s), e.g. {pd.unique(s[bad].astype(str))[:3].tolist()}; clean the column."
        )
    return v.to_numpy(dtype=float, na_value=np.nan)


def train_booster(X, y, train_idx, valid_idx, params, spec, num_boost_round=None) -> lgb.Booster:
    """LightGBM on rows ``train_idx``: early-stopped on ``valid_idx`` (the card's ``model`` section
    ``spec`` sets the rounds), or exactly ``num_boost_round`` trees when given (refits)."""
    dtrain = lgb.Dataset(X.iloc[train_idx], label=y[train_idx], free_raw_data=True)
    if num_boost_round is not None:
        return lgb.train(params, dtrain, num_boost_round=num_boost_round)
    dvalid = lgb.Dataset(X.iloc[valid_idx], label=y[valid_idx], reference=dtrain)
    callbacks = []
    if len(valid_idx) and 0 < y[valid_idx].sum() < len(valid_idx):
        callbacks.append(lgb.early_stopping(spec.early_stopping_rounds, verbose=False))
    return lgb.train(
        {**params, "metric": "binary_logloss"},
        dtrain,
        num_boost_round=spec.num_boost_round,
        valid_sets=[dvalid],
        valid_names=["valid"],
        callbacks=callbacks,
    )


class HealthModel:
    """Churn model + calibration + the manual card, trained from one card and labelled snapshots.

    ``fit(frame)`` splits the rows (time-aware, grouped by customer), audits the declared directions,
    trains LightGBM with monotone constraints where the data agrees, calibrates on a slice it never
    trained on, and fits the manual card and its own calibration on the same slice.
    """

    def __init__(self, card: Card):
        self.card = card

    # ---------------------------------------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        return {
            **DEFAULT_PARAMS,
            "num_threads": lgb_threads(),
            "seed": self.card.model.seed,
            **dict(self.card.model.params),
        }

    def fit(self, frame: pd.DataFrame) -> HealthModel:
        self.fit_arrays(frame)
        return self

    def fit_arrays(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
        """``fit``, returning the feature matrix and labels it built (rows of ``frame`` in order), so
        the training pipeline does not build them again. The labels are floats: 1/0, and NaN where the
        label is empty (censored rows: counted in ``rows_censored_``, in no slice, never fitted on)."""
        card = self.card
        card.check_columns(frame.columns, need_label=True, extra=card.model.extra_features)
        frame = frame.reset_index(drop=True)
        y = label_values(frame, card.label_column)
        known = ~np.isnan(y)
        n, k = int(known.sum()), int(np.nansum(y))
        self.rows_censored_ = int(len(y) - n)
        if k == 0 or k == n:
            raise DataError(
                f"label column {card.label_column!r} has a single class ({'all churned' if k else 'no churners'} "
                f"in {n:,} rows"
                + (f"; {self.rows_censored_:,} more rows have an empty label (not known yet)" if n < len(y) else "")
                + "); training needs both churners and non-churners."
            )
        ids = frame[card.id_column]
        if ids.isna().any():
            raise DataError(
                f"id column {card.id_column!r} is empty in {int(ids.isna().sum())} row(s); every snapshot needs "
                "its customer's id (splits keep each customer in one slice). Fill or drop those rows."
            )
        keys = [card.id_column] + ([card.date_column] if card.date_column else [])
        dup = frame.duplicated(keys)
        if dup.any():
            example = frame.loc[dup, keys].iloc[0].astype(str).tolist()
            warn(
                f"{int(dup.sum())} row(s) repeat an earlier ({', '.join(keys)}) pair, e.g. {example}; "
                "duplicated snapshots weigh those customers twice. Deduplicate the data if unintended."
            )
        schema = FeatureSchema.learn(card, frame)
        X = schema.matrix(frame, strict=False)  # data warnings (stray text ...) once, on all rows
        self._check_features(X.loc[known], y[known], schema)
        splits = make_splits(frame, y, card)
        tr = splits.train
        if len(tr) < MIN_TRAIN_ROWS or y[tr].sum() < MIN_TRAIN_CHURNERS:
            raise DataError(
                f"the training slice has {len(tr):,} rows and {int(y[tr].sum())} churners; at least "
                f"{MIN_TRAIN_ROWS} rows and {MIN_TRAIN_CHURNERS} churners are needed. Provide more history "
                "(more customers or snapshot dates) or lower model.holdout_fraction / calibration_fraction."
            )
        for name in ("valid", "calibration", "holdout"):
            idx = splits.rows(name)
            if len(idx) < MIN_TRAIN_ROWS or y[idx].sum() < MIN_TRAIN_CHURNERS:
                if y[idx].sum() == 0 or y[idx].sum() == len(idx):
                    raise DataError(
                        f"the {name} slice has {len(idx):,} rows and {int(y[idx].sum())} churners: a single "
                        "class. Provide more labelled data."
                    )
                warn(
                    f"the {name} slice has only {len(idx):,} rows and {int(y[idx].sum())} churners "
                    f"(fewer than ~{MIN_TRAIN_ROWS} rows / {MIN_TRAIN_CHURNERS} churners); its results are noisy."
                )

        fit_rows = np.concatenate([splits.train, splits.valid])
        customers = pd.factorize(frame[card.id_column].astype(str))[0]
        self.audit_: list[DirectionCheck] = audit_directions(
            X.iloc[fit_rows], y[fit_rows], schema, groups=customers[fit_rows]
        )
        contradicted = {c.indicator for c in self.audit_ if c.verdict == "contradicted"}
        mode = card.model.monotone
        if mode == "false":
            constraints = [0] * len(schema.features)
        else:
            constraints = monotone_constraints(schema, free=contradicted if mode == "auto" else set())
            if mode == "true":
                for c in self.audit_:
                    if c.verdict == "contradicted":
                        warn(
                            f"direction of {c.indicator!r} is contradicted by the data ({c.evidence}), "
                            "but model.monotone: true constrains it anyway; consider monotone: auto."
                        )
        by_name = dict(zip(schema.names, constraints, strict=True))
        self.audit_ = [dataclasses.replace(c, constrained=by_name[c.indicator] != 0) for c in self.audit_]
        for c in self.audit_:
            if c.verdict == "contradicted":
                warn(
                    f"indicator {c.indicator!r}: {c.evidence}"
                    + ("; left unconstrained in the model." if mode == "auto" else ".")
                )

        params = {**self.params(), "monotone_constraints": constraints}
        self.kind_ = card.model.kind
        if self.kind_ == "additive":  # each feature its own group: every tree splits on one feature
            params["interaction_constraints"] = [[i] for i in range(len(schema.features))]
        self.additive_tables_ = None  # compiled on first use (ml.model.additive)
        self.booster_ = train_booster(X, y, splits.train, splits.valid, params, card.model)
        self.best_iteration_ = int(self.booster_.best_iteration or self.booster_.current_iteration())
        self.schema_ = schema
        self.params_ = params
        self._finish(frame, X, y, fit_rows, splits.calibration)
        self.splits_: Splits = splits
        dates = pd.to_datetime(frame[card.date_column], errors="coerce") if card.date_column else None
        self.split_summary_ = splits.summary(y, dates)
        self.n_rows_ = len(fit_rows)
        self.fit_rows_ = np.sort(fit_rows)  # positions (in ``frame``) of the rows the booster learnt from
        return X, y

    def _finish(self, frame: pd.DataFrame, X: pd.DataFrame, y: np.ndarray, fit_rows, cal) -> None:
        """Everything after the booster: the calibrator (on rows ``cal``, never trained on), the manual
        card (reference population: ``fit_rows``) and its calibration, quantile band cuts and the
        reference values of the explanation text."""
        card, schema = self.card, self.schema_
        margin = self.booster_.predict(X.iloc[cal], raw_score=True, **predict_kw())
        self.calibrator_ = ScoreCalibrator(card.calibration.method).fit(margin, y[cal])
        base_rate = float(y[cal].mean())
        self.base_rate_ = base_rate

        # the manual card: reference population = the rows the model learnt from. Its data warnings
        # are given once, on all rows; the slices below would repeat them with other counts.
        self.scorecard_ = WeightedScorecard(card)
        with quiet():  # compressed already here, so that a reloaded model scores alike
            self.scorecard_.fit(frame.iloc[fit_rows], max_reference=REFERENCE_POINTS)
        self.scorecard_.subscores(frame)  # the card's own data warnings (unmapped categories ...), once
        with quiet():
            self.manual_base_subscores_ = mean_subscores(self.scorecard_, frame.iloc[fit_rows])
            manual = self.scorecard_.score(frame.iloc[cal])["health_score"].to_numpy()
        ok = ~np.isnan(manual)
        self.manual_calibrator_ = ScoreCalibrator(card.calibration.method, allow_flat=True).fit(-manual[ok], y[cal][ok])

        # quantile bands for the model's health score are placed on the calibration slice
        self.band_cuts_ = None
        if card.bands_by == "quantile":
            h = self.health_from_probability(self.calibrator_.predict_proba(margin))
            cuts = np.percentile(h, [b.min for b in card.bands])
            cuts[-1] = -np.inf
            self.band_cuts_ = cuts

        # reference points for the explanation text: portfolio medians / most common category
        self.reference_values_ = {}
        for f in schema.features:
            col = X[f.name].iloc[fit_rows]
            if f.kind == CATEGORICAL:
                mode_ = col.mode(dropna=True)
                self.reference_values_[f.name] = None if mode_.empty else str(mode_.iloc[0])
            else:
                med = float(np.nanmedian(col.to_numpy(dtype=float))) if col.notna().any() else None
                self.reference_values_[f.name] = med
        self.reference_points_ = category_reference_points(self, X.iloc[fit_rows])

    def refit(self, frame: pd.DataFrame, X: pd.DataFrame, y: np.ndarray, fit_rows, cal_rows, trees: int) -> HealthModel:
        """A copy of this (fitted) model refitted with exactly ``trees`` trees on rows ``fit_rows`` and
        calibrated on ``cal_rows`` (rows it did not train on); same card, schema, parameters and
        monotone constraints (the direction audit of the backtest). ``splits_`` stays the backtest's."""
        self.check_fitted()
        new = HealthModel(self.card)
        new.schema_, new.params_, new.audit_ = self.schema_, self.params_, self.audit_
        if hasattr(self, "kind_"):
            new.kind_ = self.kind_
        new.rows_censored_ = getattr(self, "rows_censored_", 0)
        new.booster_ = train_booster(
            X, y, np.asarray(fit_rows), None, self.params_, self.card.model, num_boost_round=trees
        )
        new.best_iteration_ = int(trees)
        new._finish(frame.reset_index(drop=True), X, y, np.asarray(fit_rows), np.asarray(cal_rows))
        new.splits_ = self.splits_
        new.split_summary_ = self.split_summary_
        new.n_rows_ = int(len(fit_rows))
        new.fit_rows_ = np.sort(np.asarray(fit_rows))
        return new

    # ---------------------------------------------------------------------------------------------
    def _check_features(self, X: pd.DataFrame, y: np.ndarray, schema: FeatureSchema) -> None:
        for f in schema.features:
            col = X[f.name]
            if f.kind == CATEGORICAL:
                distinct = col.nunique(dropna=True)
                values = None
            else:
                values = col.to_numpy(dtype=float)
                distinct = np.unique(values[~np.isnan(values)]).size
            if distinct <= 1:
                warn(
                    f"feature {f.name!r} (column {f.column!r}) is constant ({distinct} distinct value); "
                    "it cannot inform the model. Check the column or drop it."
                )
                continue
            if values is not None:
                auc = _single_feature_auc(values, y)
                if auc >= LEAKAGE_AUC:
                    warn(
                        f"feature {f.name!r} (column {f.column!r}) alone separates churners almost perfectly "
                        f"(AUC {auc:.3f}): likely label leakage (a value recorded after the churn?). "
                        "Check how the column is built."
                    )

    def check_fitted(self) -> None:
        if not hasattr(self, "booster_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("This HealthModel is not fitted yet; call fit(frame) or load a model directory.")

    def health_from_probability(self, p: np.ndarray) -> np.ndarray:
        """Churn probability -> health score on the card's scale."""
        cal = self.card.calibration
        return probability_to_health(p, cal.scale, base_rate=self.base_rate_, anchor=cal.anchor_score, pdo=cal.pdo)

    # ---------------------------------------------------------------------------------------------
    def margin(self, frame: pd.DataFrame) -> np.ndarray:
        """LightGBM's raw churn margin (log-odds before calibration)."""
        self.check_fitted()
        return self.booster_.predict(self.schema_.matrix(frame), raw_score=True, **predict_kw())

    def predict(
        self, frame: pd.DataFrame, *, drivers: int = 3, strict: bool = True, unseen: str = "error"
    ) -> pd.DataFrame:
        """Per row: id (and date), ``health_score``, ``band``, ``churn_probability``, ``manual_score``,
        ``manual_band``, ``manual_churn_probability``, ``value`` and ``value_at_risk`` (value x churn
        probability; only when the card has a ``value_column``) and ``driver_1..k`` (when ``drivers`` > 0).
        ``unseen="missing"``: a category unseen in training scores as missing, with a warning."""
        table, _, _ = self.predict_with_points(frame, drivers=drivers, strict=strict, unseen=unseen, points=False)
        return table

    def predict_with_points(
        self,
        frame: pd.DataFrame,
        *,
        drivers: int = 3,
        strict: bool = True,
        unseen: str = "error",
        points: bool = True,
    ) -> tuple[pd.DataFrame, Contributions | None, pd.DataFrame]:
        """``predict``'s table, the contributions behind its drivers (health points per indicator; None
        when neither ``points`` nor ``drivers`` asks for them, or for no rows) and the feature matrix,
        from one pass: the history stores the points of the very scoring it records."""
        self.check_fitted()
        card = self.card
        if card.id_column not in frame.columns:
            raise DataError(f"data is missing the id column {card.id_column!r}; add it (the card's id_column).")
        X = self.schema_.matrix(frame, strict=strict, unseen=unseen)
        if len(X) == 0:  # LightGBM refuses empty input: an empty table with the output columns
            with quiet():
                return self.predict(frame.iloc[:0].reindex(range(1)), drivers=drivers).iloc[:0], None, X
        # the numbers always come from LightGBM's own margin; the TreeSHAP sum can differ from it in
        # the last bits, which would make scores depend on whether drivers were asked for
        margin = self.booster_.predict(X, raw_score=True, **predict_kw())
        out = self.scores(frame, margin)
        contrib = contributions(self, X, margin, log_odds=False) if (drivers or points) else None
        if drivers:
            texts = driver_text(self, X, contrib, k=drivers)
            for j in range(drivers):
                out[f"driver_{j + 1}"] = texts[j]
        return out, contrib, X

    def scores(self, frame: pd.DataFrame, margin: np.ndarray) -> pd.DataFrame:
        """``predict``'s columns (without drivers) from the rows and their LightGBM margin."""
        card = self.card
        p = self.calibrator_.predict_proba(margin)
        health = self.health_from_probability(p)
        manual = self.scorecard_.score(frame)
        ms = manual["health_score"].to_numpy()
        mp = np.full(len(ms), np.nan)
        ok = ~np.isnan(ms)
        mp[ok] = self.manual_calibrator_.predict_proba(-ms[ok])
        keys = [card.id_column] + ([card.date_column] if card.date_column and card.date_column in frame else [])
        out = frame[keys].reset_index(drop=True).copy()
        out["health_score"] = health
        out["band"] = assign_bands(health, card.bands, self.band_cuts_)
        out["churn_probability"] = p
        out["manual_score"] = ms
        out["manual_band"] = pd.Categorical(np.asarray(manual["band"]), categories=[b.name for b in card.bands])
        out["manual_churn_probability"] = mp
        if card.value_column and card.value_column in frame.columns:  # data without it: no value columns
            value = value_array(frame, card.value_column)
            out["value"] = value
            out["value_at_risk"] = value * p
        return out
