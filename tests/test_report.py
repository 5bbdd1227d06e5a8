"""The HTML report: every section, self-contained (no external references), customer data escaped,
the card's band colours, the at-risk list sorted by churn probability, computed once."""

from __future__ import annotations

import copy
import json
import re
import warnings
from html import unescape
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml.card import load_card
from ml.data.generate import generate_snapshots
from ml.errors import DataError, HealthScoreWarning
from ml.pipeline import train
from ml.report.figures import band_colors, inline_svg, waterfall_figure
from ml.report.report import (
    CSP,
    HEALTH_SCORES,
    MIN_AT_RISK,
    SECTIONS,
    HealthReport,
    build_report,
    write_report,
)
from ml.serving.bundle import load_model

pytestmark = pytest.mark.slow  # trains models: `make test-fast` skips this module

REPO = Path(__file__).resolve().parents[1]
HOSTILE_ID = "<script>alert(1)</script>"
# a reference to anything outside the page: scheme-relative or absolute URL in src/href/url()/@import
EXTERNAL = re.compile(
    r"""(?:\b(?:src|href|action|poster|srcset)\s*=\s*["']?\s*(?:[a-z][a-z0-9+.-]*:)?//"""
    r"""|url\(\s*["']?\s*(?:[a-z][a-z0-9+.-]*:)?//|@import)""",
    re.IGNORECASE,
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small model trained once, written to a temp dir and loaded back (as the CLI would)."""
    card = load_card(REPO / "configs" / "default.yaml")
    frame = generate_snapshots(1200, 8, seed=3).frame
    model_dir = tmp_path_factory.mktemp("report") / "model"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HealthScoreWarning)
        result = train(card, frame, model_dir, n_refits=2, plots=False, mlflow_files=False)
    return result, load_model(model_dir), frame


@pytest.fixture(scope="module")
def report(trained) -> HealthReport:
    _, model, frame = trained
    return build_report(model, frame)


@pytest.fixture(scope="module")
def html(report) -> str:
    return report.to_html()


@pytest.fixture(scope="module")
def hostile(trained, report):
    """The report with the riskiest customer's id replaced by a script tag (so it is listed)."""
    _, model, frame = trained
    riskiest = report.at_risk[model.card.id_column].iloc[0]
    f = frame.copy()
    ids = f[model.card.id_column].astype(object)
    f[model.card.id_column] = ids.where(ids != riskiest, HOSTILE_ID)
    return build_report(model, f).to_html()


# ---- content ---------------------------------------------------------------------------------------
def test_every_section_heading_is_present(html):
    for anchor, title in SECTIONS:
        assert f'<section id="{anchor}">' in html
        assert f"<h2>{title}</h2>" in html


def test_charts_are_inline_svg(report, html):
    n_svg = html.count("<svg ")
    # bands, weights, reliability, churn per band, one waterfall per explained customer
    assert n_svg == 4 + len(report.explanations)
    assert len(report.explanations) == min(10, len(report.at_risk))
    assert "<img" not in html.lower()


def test_the_page_references_nothing_outside_itself(html, hostile):
    for page in (html, hostile):
        assert not EXTERNAL.findall(page)
        assert not re.search(r"<(?:script|link|iframe|object|embed|img)\b", page, re.IGNORECASE)
        # every link is an in-page anchor, or a relative link to an adoptable card in the model directory
        hrefs = re.findall(r'\bhref="([^"]*)"', page)
        card_link = re.compile(r"[\w./-]*/cards/(shap|gain|linear)\.yaml")
        odd = [h for h in hrefs if not h.startswith("#") and not card_link.fullmatch(h)]
        assert hrefs and not odd, odd[:5]
    # and a Content-Security-Policy forbids any that would slip in (quotes are entity-escaped)
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1)
    assert unescape(csp) == CSP


def test_customer_ids_are_escaped(hostile):
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in hostile
    assert HOSTILE_ID not in hostile
    assert "<script" not in hostile.lower()
    # listed in the at-risk table and explained in "why at risk"
    assert hostile.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 2


def test_driver_text_and_categories_are_escaped(trained):
    """Text from the data (drivers, values, bands) reaches the page escaped, through any column."""
    _, model, frame = trained
    rep = build_report(model, frame)
    rows = [dict(r) for r in rep.at_risk_rows]
    rows[0]["drivers"] = ["plan <img src=x onerror=alert(2)>: -3 points"]
    rep.__dict__["at_risk_rows"] = rows  # the cached value the template reads
    html = rep.to_html()
    assert "plan &lt;img src=x onerror=alert(2)&gt;: -3 points" in html
    assert "<img" not in html


def test_svg_text_is_escaped_and_dollar_is_not_mathtext():
    explanation = {
        "band": "At risk",
        "base_score": 80.0,
        "health_score": 50.0,
        "contributions": [
            {"label": "plan", "value": "<script>x</script> & $5 plan", "points": -20.0},
            {"label": "CSAT", "value": 2.25, "points": -12.0},
            {"label": "logins", "value": None, "points": 2.0},
        ],
    }
    svg = str(inline_svg(waterfall_figure(explanation), "t"))
    assert "&lt;script&gt;x&lt;/script&gt; &amp; $5 plan" in svg
    assert "<script" not in svg
    assert "plan = &lt;script&gt;" in svg and "logins = missing" in svg


def test_svg_ids_are_prefixed_and_resolve_within_their_svg(report):
    a, b = str(report.charts["bands"]), str(report.charts["weights"])
    ids_a, ids_b = set(re.findall(r'\bid="([^"]+)"', a)), set(re.findall(r'\bid="([^"]+)"', b))
    assert ids_a and ids_b and not ids_a & ids_b
    assert all(i.startswith("svg-bands-") for i in ids_a)
    for svg, ids in ((a, ids_a), (b, ids_b)):
        refs = set(re.findall(r'(?:href="#|url\(#)([^")]+)', svg))
        assert refs and refs <= ids
    assert "<metadata>" not in a


def test_band_colours_come_from_the_card(report, html):
    for band in report.card.bands:
        assert band.color.lower() in html.lower()
        assert f"--c: {band.color.lower()}" in html  # the band chips


def test_band_colour_that_is_not_a_colour_is_drawn_grey(report):
    import dataclasses

    bands = (dataclasses.replace(report.card.bands[0], color="red; background: url(//x)"), *report.card.bands[1:])
    card = dataclasses.replace(report.card, bands=bands)
    with pytest.warns(HealthScoreWarning, match="not a colour"):
        colors = band_colors(card)
    assert colors[bands[0].name] == "#757575"


def test_at_risk_table_is_sorted_by_value_at_risk_descending(report, html):
    # the default card has a value column (arr): the list is ordered by what is at stake
    table = report.at_risk
    assert report.card.value_column == "arr"
    v = table["value_at_risk"].to_numpy()
    assert len(v) >= 2 and np.all(np.diff(v) <= 0)
    np.testing.assert_allclose(v, table["value"] * table["churn_probability"], rtol=1e-12)
    lowest = report.card.bands[-1].name
    in_lowest = report.predictions[np.asarray(report.predictions["band"], dtype=object) == lowest]
    # every customer of the lowest band is listed (up to the cap), topped up to MIN_AT_RISK rows
    assert set(in_lowest["customer_id"].head(50)) <= set(table["customer_id"])
    assert len(table) == min(50, max(len(in_lowest), MIN_AT_RISK))
    # the HTML rows come in the same order, and their probabilities descend
    section = html[html.index('<section id="at-risk">') : html.index('<section id="why">')]
    ids = re.findall(r'<td class="id">(.*?)(?: <span class="sub">.*?</span>)?</td>', section)
    assert ids == table["customer_id"].astype(str).tolist()
    shown = [float(x) for x in re.findall(r'<td class="n p">([\d.]+)%</td>', section)]
    assert shown == [round(100 * p, 1) for p in table["churn_probability"]] and len(shown) == len(ids)
    assert report.value_summary["sentence"] in html


def test_one_row_per_customer_from_their_latest_snapshot(trained, report):
    _, model, frame = trained
    latest = report.latest
    assert latest["customer_id"].is_unique
    assert len(latest) == frame["customer_id"].nunique()
    last = frame.groupby("customer_id")["snapshot_date"].max()
    assert (latest.set_index("customer_id")["snapshot_date"] == last.reindex(latest["customer_id"])).all()


def test_waterfalls_add_up_to_the_score(report):
    for e in report.explanations:
        total = e["base_score"] + sum(c["points"] for c in e["contributions"])
        assert total == pytest.approx(e["health_score"], abs=1e-6)
        m = e["manual"]
        if m["score"] is not None:
            assert m["base_score"] + sum(c["points"] for c in m["contributions"]) == pytest.approx(m["score"], abs=1e-6)


def test_health_score_to_probability_table(report, html):
    # odds scale (the default card): 70 is the base rate, 60 doubles the odds, 80 halves them
    table = {row["health"]: row for row in report.health_table}
    assert list(table) == list(HEALTH_SCORES)
    base = report.model.base_rate_
    odds = base / (1 - base)
    assert table[70]["probability"] == pytest.approx(base)
    assert table[60]["probability"] == pytest.approx(2 * odds / (1 + 2 * odds))
    assert table[80]["probability"] == pytest.approx(0.5 * odds / (1 + 0.5 * odds))
    assert table[90]["band"] == "Healthy" and table[40]["band"] == "At risk"
    manual = [row["manual_probability"] for row in report.health_table]
    assert manual == sorted(manual)  # lower manual score, higher churn
    assert f'<td class="n">{100 * base:.1f}%</td>' in html


def test_weights_and_metrics_come_from_the_model_directory(trained, report, html):
    result, _, _ = trained
    assert len(report.weight_rows) == len(result.weights)
    assert "not on the card, earns" in html  # the generator's late invoices are off the card
    assert report.metrics["holdout"]["rows"] == result.metrics["holdout"]["rows"]
    assert "ECE" in html and "Churn in Healthy" in html


def test_sections_needing_the_model_directory_are_skipped_without_it(trained):
    result, _, frame = trained
    bare = copy.copy(result.model)
    del bare.model_dir_  # as a model fitted in memory, never saved
    html = build_report(bare, frame).to_html()
    assert "No <code>weights.csv</code>" in html and "No <code>metrics.json</code>" in html
    assert html.count("<svg ") == 1 + len(build_report(bare, frame).explanations)
    with_dir = build_report(result.model, frame, model_dir=result.model_dir)
    assert with_dir.weights is not None and with_dir.metrics is not None


def test_computed_once(trained, monkeypatch):
    _, model, frame = trained
    rep = build_report(model, frame)
    calls = []
    original = type(model).predict

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(model), "predict", counting)
    first = rep.to_html()
    assert rep.to_html() == first
    rep.to_json()
    assert len(calls) == 1


def test_json_summary(report):
    data = json.loads(report.to_json())
    assert set(data) >= {"overview", "bands", "weights", "calibration", "health_to_probability", "at_risk", "explained"}
    assert data["overview"]["customers"] == len(report.latest)
    assert [r["customer_id"] for r in data["at_risk"]] == report.at_risk["customer_id"].astype(str).tolist()
    # the bands count the current book: customers whose latest snapshot is on the latest date
    current = data["overview"]["current_customers"]
    assert sum(data["bands"]["model"].values()) == current == len(report.current)
    assert current + data["overview"]["left_out"] == len(report.latest) and data["overview"]["left_out"] > 0
    assert sorted(c["name"] for c in data["cards"]) == ["gain", "linear", "shap"]


def test_write_report_writes_the_html(trained, tmp_path):
    _, model, frame = trained
    out = tmp_path / "sub" / "report.html"
    rep = write_report(model, frame, out)
    assert out.read_text(encoding="utf-8") == rep.to_html()
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]  # no temp file left behind


def test_size_stays_small_for_ten_thousand_customers(trained):
    _, model, _ = trained
    frame = generate_snapshots(10_000, 2, seed=4).frame
    assert len(frame) >= 10_000
    html = build_report(model, frame).to_html()
    assert len(html.encode("utf-8")) < 3_000_000


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda f: f.drop(columns=["customer_id"]), "missing the id column 'customer_id'"),
        (lambda f: f.iloc[:0], "no rows"),
        (lambda f: f.drop(columns=["csat"]), "csat"),
        (lambda f: f.drop(columns=["snapshot_date"]), "snapshot_date"),
    ],
    ids=["no id column", "empty", "missing indicator", "no date column"],
)
def test_bad_data(trained, change, match):
    _, model, frame = trained
    with pytest.raises(DataError, match=match):
        build_report(model, change(frame)).to_html()


def test_a_snapshot_without_a_date_is_never_the_latest(trained):
    _, model, frame = trained
    f = frame.copy()
    cid = f["customer_id"].value_counts().idxmax()  # at least 3 snapshots
    rows = f.index[f["customer_id"] == cid]
    assert len(rows) >= 3
    f.loc[rows[0], "snapshot_date"] = pd.NaT  # the customer's first snapshot loses its date
    f = f.drop(index=rows[-1]).reindex([*f.index.drop(rows[0]), rows[0]])  # and comes last
    latest = build_report(model, f).latest.set_index("customer_id")
    assert latest.loc[cid, "snapshot_date"] == frame.loc[rows[-2], "snapshot_date"]
