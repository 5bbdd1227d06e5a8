"""The score history store: one Parquet file per scoring date and model, predict's numbers unchanged,
points that add up to the score, the scoring date, duplicates, identities and bad input."""

from __future__ import annotations

import datetime as dt
import warnings

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from ml.card import parse_card
from ml.data.generate import generate_snapshots
from ml.errors import DataError, HealthScoreWarning
from ml.model.explain import contributions
from ml.monitor.history import (
    POINTS,
    VALUE,
    History,
    append_scores,
    customer_timeline,
    model_identity,
    score_with_points,
)
from ml.pipeline import train
from ml.serving.bundle import load_model

pytestmark = pytest.mark.slow  # trains models: `make test-fast` skips this module


@pytest.fixture(scope="module")
def trained(tmp_path_factory, default_card_raw):
    root = tmp_path_factory.mktemp("history")
    card = parse_card(default_card_raw())
    frame = generate_snapshots(500, 6, seed=2).frame
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HealthScoreWarning)
        train(card, frame, root / "model", n_refits=0, plots=False, mlflow_files=False)
    return root, card, frame, load_model(root / "model")


def test_score_with_points_gives_predicts_table_and_points_that_add_up(trained):
    _, card, frame, model = trained
    rows = frame.iloc[:300]
    run = score_with_points(model, rows)
    pd.testing.assert_frame_equal(run.table, model.predict(rows))
    base = contributions(model, model.schema_.matrix(rows)).base_score
    np.testing.assert_allclose(base + run.points.sum(axis=1), run.table["health_score"], atol=1e-9)
    assert list(run.points.columns) == model.schema_.names == list(run.values.columns)


def test_layout_columns_and_one_file_per_date(trained, tmp_path):
    _, card, frame, model = trained
    ident = model_identity(model)
    res = append_scores(tmp_path / "H", score_with_points(model, frame), card, ident, frame=frame)
    dates = sorted(pd.to_datetime(frame["snapshot_date"]).dt.date.unique())
    assert res.dates == tuple(dates) and res.rows == len(frame) and res.replaced == 0
    assert [p.relative_to(tmp_path / "H").as_posix() for p in res.files] == [
        f"date={d}/model={ident.model_id}.parquet" for d in dates
    ]
    t = pq.read_table(res.files[0])
    assert t.num_rows == int((pd.to_datetime(frame["snapshot_date"]).dt.date == dates[0]).sum())
    names = set(t.column_names)
    assert {POINTS + f for f in model.schema_.names} <= names and {VALUE + f for f in model.schema_.names} <= names
    assert {"health_score", "band", "churn_probability", "manual_score", "manual_band", "scored_at"} <= names
    assert set(t["model_id"].to_pylist()) == {ident.model_id} and set(t["card_sha256"].to_pylist()) == {card.sha256}
    # the history holds exactly predict's numbers
    hist = History(tmp_path / "H")
    back = hist.frame(["customer_id", "scoring_date", "health_score", "band"])
    want = model.predict(frame, drivers=0)
    merged = back.merge(
        want.assign(scoring_date=pd.to_datetime(want["snapshot_date"])), on=["customer_id", "scoring_date"]
    )
    assert len(merged) == len(frame)
    np.testing.assert_array_equal(merged["health_score_x"], merged["health_score_y"])
    assert (merged["band_x"].astype(str) == merged["band_y"].astype(str)).all()


def test_same_model_files_give_the_same_id(trained, tmp_path):
    root, _, _, model = trained
    again = load_model(root / "model")
    assert model_identity(model).model_id == model_identity(again).model_id
    assert len(model_identity(model).model_id) == 12
    assert model_identity(model, "models:/health-score@champion", 3).model_version == "3"


def test_without_a_date_column_the_run_date_is_the_scoring_date(trained, tmp_path, default_card_raw):
    _, _, frame, model = trained
    raw = default_card_raw()
    raw.pop("date_column")
    card = parse_card(raw)
    run = score_with_points(model, frame.iloc[:50])  # a card without a date column: rows carry no date
    rows = frame.iloc[:50].drop(columns="snapshot_date")
    res = append_scores(tmp_path / "H", run, card, model_identity(model), run_date=dt.date(2025, 3, 4), frame=rows)
    assert res.dates == (dt.date(2025, 3, 4),) and res.rows == 50
    res = append_scores(tmp_path / "H2", run, card, model_identity(model), frame=rows)
    assert res.dates == (dt.datetime.now(dt.UTC).date(),)


def test_duplicates_in_one_run_keep_the_last_with_a_warning(trained, tmp_path):
    _, card, frame, model = trained
    rows = frame[frame["snapshot_date"] == frame["snapshot_date"].max()].iloc[:20]
    twice = pd.concat([rows, rows.iloc[:3]], ignore_index=True)
    with pytest.warns(HealthScoreWarning, match=r"3 row\(s\) score a customer twice on the same date"):
        res = append_scores(tmp_path / "H", score_with_points(model, twice), card, model_identity(model), frame=twice)
    assert res.rows == 20
    assert History(tmp_path / "H").frame(["customer_id"])["customer_id"].is_unique


@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("file", r"--history must be a directory"),
        ("bad_date", r"column 'snapshot_date' \(the card's date_column\) has 1 row\(s\) that are not dates"),
    ],
)
def test_bad_input(trained, tmp_path, case, match):
    _, card, frame, model = trained
    rows = frame.iloc[:5].copy()
    target = tmp_path / "H"
    if case == "file":
        target.write_text("not a directory")
    run = score_with_points(model, rows)
    if case == "bad_date":
        rows["snapshot_date"] = rows["snapshot_date"].astype(str)
        rows.loc[rows.index[0], "snapshot_date"] = "soon"
    with pytest.raises(DataError, match=match):
        append_scores(target, run, card, model_identity(model), frame=rows)


def test_empty_and_missing_histories(tmp_path):
    with pytest.raises(DataError, match=r"no such history directory"):
        History(tmp_path / "nope").require()
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"the history holds no scorings"):
        History(tmp_path / "empty").require()


def test_customer_timeline_names_what_moved(trained, tmp_path):
    _, card, frame, model = trained
    append_scores(tmp_path / "H", score_with_points(model, frame), card, model_identity(model), frame=frame)
    counts = frame["customer_id"].value_counts()
    cid = counts.index[0]
    tl = customer_timeline(tmp_path / "H", cid)
    assert len(tl) == counts.iloc[0] and tl["scoring_date"].is_monotonic_increasing
    assert tl["moved"].iloc[0] == ""
    moved = [m for m in tl["moved"].iloc[1:] if m]
    assert moved and all(" → " in part and part.endswith(" points") for m in moved for part in m.split("; "))
