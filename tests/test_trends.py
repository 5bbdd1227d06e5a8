"""Trends from the score history and the report's Trends section: band shares per date (model and
manual card), the at-risk customers' score lines, what changed since the previous scoring."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ml.card import parse_card
from ml.cli.app import app
from ml.data.generate import generate_snapshots
from ml.errors import HealthScoreWarning
from ml.monitor.history import History, append_scores, model_identity, score_with_points
from ml.monitor.trends import trend_summary
from ml.pipeline import train
from ml.report.report import SECTIONS, build_report
from ml.serving.bundle import load_model

pytestmark = pytest.mark.slow  # trains models: `make test-fast` skips this module


@pytest.fixture(scope="module")
def scored(tmp_path_factory, default_card_raw):
    root = tmp_path_factory.mktemp("trends")
    card = parse_card(default_card_raw())
    frame = generate_snapshots(600, 8, seed=4).frame
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HealthScoreWarning)
        train(card, frame, root / "model", n_refits=0, plots=False, mlflow_files=True)
    model = load_model(root / "model")
    hist = History(root / "H")
    dates = sorted(frame["snapshot_date"].unique())[-3:]
    for d in dates:
        rows = frame[frame["snapshot_date"] == d]
        append_scores(hist, score_with_points(model, rows), card, model_identity(model), frame=rows)
    return {"root": root, "card": card, "frame": frame, "model": model, "hist": hist, "dates": dates}


def test_band_shares_transitions_and_drops(scored):
    card, hist, frame = scored["card"], scored["hist"], scored["frame"]
    t = trend_summary(hist, card)
    assert t.dates == [str(pd.Timestamp(d).date()) for d in scored["dates"]]
    assert list(t.band_shares.columns) == ["Healthy", "Stable", "At risk"]
    np.testing.assert_allclose(t.band_shares.sum(axis=1), 1.0)
    # the shares are the model's bands at each date, as predict gives them
    last = frame[frame["snapshot_date"] == scored["dates"][-1]]
    pred = scored["model"].predict(last, drivers=0)
    expected = pred["band"].astype(str).value_counts(normalize=True)
    for b in ["Healthy", "Stable", "At risk"]:
        assert t.band_shares.loc[t.latest, b] == pytest.approx(expected.get(b, 0.0))
    # transitions count every customer scored on both dates once
    assert int(t.transitions.to_numpy().sum()) == t.compared
    assert t.moved == t.compared - int(np.trace(t.transitions.to_numpy()))
    # the biggest drops, worst first, with drivers that name a feature's before -> after
    changes = [d["change"] for d in t.drops]
    assert changes == sorted(changes) and all(c < 0 for c in changes)
    assert all(d["health_score"] - d["previous_score"] == pytest.approx(d["change"]) for d in t.drops)
    assert any(" → " in x and x.endswith(" points") for d in t.drops for x in d["drivers"])
    # default score lines: the lowest band at the latest scoring, lowest first
    assert len(t.lines) <= 10
    for s in t.lines.values():
        assert s.index.is_monotonic_increasing


def test_report_with_history_shows_the_trends(scored):
    latest = scored["frame"][scored["frame"]["snapshot_date"] == scored["dates"][-1]]
    report = build_report(scored["model"], latest, history=scored["hist"].path)
    html = report.to_html()
    assert '<section id="trends">' in html and 'href="#trends"' in html
    assert "What changed since the last scoring" in html and "Biggest drops" in html
    assert html.count("<svg") >= 2 + 2  # bands + ... plus the two trend charts
    assert 'id="svg-band-shares-caption"' in html and 'id="svg-score-lines-caption"' in html
    summary = report.summary["trends"]
    assert summary["latest"] == str(pd.Timestamp(scored["dates"][-1]).date())
    at_risk_ids = [r["customer_id"] for r in report.at_risk_rows[: report.max_explained]]
    assert list(summary["lines"]) == [c for c in at_risk_ids if c in summary["lines"]]
    plain = build_report(scored["model"], latest).to_html()
    assert '<section id="trends">' not in plain and [s for s, _ in SECTIONS] == [
        "overview",
        "bands",
        "weights",
        "meaning",
        "at-risk",
        "why",
    ]


def test_cli_report_history(scored, tmp_path):
    latest = scored["frame"][scored["frame"]["snapshot_date"] == scored["dates"][-1]]
    latest.to_csv(tmp_path / "latest.csv", index=False)
    args = ["report", "--model", str(scored["root"] / "model"), "--data", str(tmp_path / "latest.csv")]
    r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "r.html"), "--history", str(scored["hist"].path)])
    assert r.exit_code == 0, r.output
    assert '<section id="trends">' in (tmp_path / "r.html").read_text()
    r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "r2.html"), "--history", str(tmp_path / "none")])
    assert r.exit_code == 1 and "no such history directory" in r.output
    assert not (tmp_path / "r2.html").exists()
