"""Alerts on a scripted history: each rule fires once on entry into its condition, the cooldown holds
it back, drivers name the features that lost most points, actions route it; the webhook receives the
JSON on loopback and retries after a 500; the CLI writes the CSV with the exact columns."""

from __future__ import annotations

import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ml.card import parse_card
from ml.cli.app import app
from ml.errors import CardError, DataError, HealthScoreWarning
from ml.monitor.alerts import ALERT_COLUMNS, evaluate_alerts, post_alerts
from ml.monitor.history import History, ModelIdentity, ScoredRun, append_scores

FEATURES = ("interactions", "response", "resolution", "csat", "activity")
RULES = [
    {"name": "dropped", "type": "score_drop", "points": 10, "days": 31},
    {"name": "entered_at_risk", "type": "band_entered", "bands": ["At risk"]},
    {"name": "usage_down", "type": "indicator_change", "indicator": "activity", "pct": -40, "days": 31},
    {"name": "no_logins", "type": "threshold", "indicator": "activity", "below": 1},
]
ACTIONS = [
    {"when": {"band": "At risk"}, "owner": "senior-cs", "playbook": "Call within 48 h; review open tickets"},
    {"when": {"alert": "usage_down"}, "owner": "csm", "playbook": "Adoption session"},
]
MONTHS = [dt.date(2024, 1, 1), dt.date(2024, 2, 1), dt.date(2024, 3, 1), dt.date(2024, 4, 1)]


@pytest.fixture
def card(card_dict):
    return parse_card(card_dict(alerts=RULES, cooldown_days=14, actions=ACTIONS))


def band_of(score: float) -> str:
    return "Healthy" if score >= 80 else "Stable" if score >= 60 else "At risk"


def scored(card, day, rows) -> tuple[ScoredRun, pd.DataFrame]:
    """A run as `score_with_points` returns it: rows = {customer: (score, {feature: (points, value)})}."""
    ids = list(rows)
    scores = np.array([rows[c][0] for c in ids], float)
    bands = pd.Categorical([band_of(s) for s in scores], categories=[b.name for b in card.bands])
    table = pd.DataFrame(
        {
            "customer_id": ids,
            "health_score": scores,
            "band": bands,
            "churn_probability": 1 - scores / 100,
            "manual_score": scores - 1,
            "manual_band": pd.Categorical([band_of(s - 1) for s in scores], categories=bands.categories),
            "manual_churn_probability": 1 - scores / 100,
        }
    )
    points = pd.DataFrame({f: [rows[c][1].get(f, (0.0, 1.0))[0] for c in ids] for f in FEATURES})
    values = pd.DataFrame({f: [float(rows[c][1].get(f, (0.0, 1.0))[1]) for c in ids] for f in FEATURES})
    return ScoredRun(table, points, values), table


def write_history(path, card, script: dict[dt.date, dict]) -> History:
    ident = ModelIdentity("abcdef012345", "models/test", "1", card.sha256)
    for day, rows in script.items():
        run, _ = scored(card, day, rows)
        append_scores(path, run, card, ident, run_date=day, scored_at=dt.datetime(2024, 6, 1, tzinfo=dt.UTC))
    return History(path)


def flat(score, activity=20.0, **pts):
    """A customer's scoring: ``pts`` feature -> (points, value); activity holds its login count."""
    return (score, {"activity": (0.0, activity), **pts})


# The script: A drops 16 points in March (Healthy -> Stable), B enters At risk in March (−5 only),
# C's usage falls 45 % in March (20 -> 11), D stays flat. April: everybody stays where March left them.
SCRIPT = {
    MONTHS[0]: {"A": flat(91.0), "B": flat(65.0), "C": flat(86.0), "D": flat(85.0)},
    MONTHS[1]: {
        "A": flat(90.2, csat=(2.0, 4.5), response=(1.0, 30)),
        "B": flat(63.0, resolution=(0.0, 0.8)),
        "C": flat(86.0),
        "D": flat(85.0),
    },
    MONTHS[2]: {
        "A": flat(74.2, csat=(-8.0, 2.1), response=(-5.0, 240)),  # −16.0 points
        "B": flat(58.0, resolution=(-4.0, 0.5)),
        "C": flat(84.0, activity=11.0),
        "D": flat(85.0),
    },
    MONTHS[3]: {
        "A": flat(74.0, csat=(-8.0, 2.1), response=(-5.0, 240)),
        "B": flat(57.5, resolution=(-4.0, 0.5)),
        "C": flat(84.0, activity=11.0),
        "D": flat(85.0),
    },
}
# activity's points fall with the logins for C
SCRIPT[MONTHS[2]]["C"][1]["activity"] = (-2.5, 11.0)
SCRIPT[MONTHS[3]]["C"][1]["activity"] = (-2.5, 11.0)


@pytest.fixture
def history(tmp_path, card):
    return write_history(tmp_path / "H", card, SCRIPT)


def test_scripted_history_fires_each_expected_alert_once(history, card):
    fired = {day: evaluate_alerts(history, card, as_of=day) for day in MONTHS}
    assert fired[MONTHS[0]].empty and fired[MONTHS[1]].empty and fired[MONTHS[3]].empty
    march = fired[MONTHS[2]]
    assert list(march.columns) == list(ALERT_COLUMNS)
    got = sorted(zip(march["customer_id"], march["alert"], strict=True))
    assert got == [("A", "dropped"), ("B", "entered_at_risk"), ("C", "usage_down")]
    a, b, c = (march.set_index("customer_id").loc[x] for x in "ABC")
    # A: best score within 31 days of March 1st is 90.2 (Feb 1st, 29 days earlier): 90.2 -> 74.2 = −16.0
    assert a["detail"] == "health 90.2 → 74.2 (−16.0 in 29 days)"
    assert (a["health_score"], a["previous_score"], a["band"], a["previous_band"]) == (74.2, 90.2, "Stable", "Healthy")
    # A's points: csat 2 -> −8 (−10), response 1 -> −5 (−6): csat first
    assert a["driver_1"] == "csat 4.5 → 2.1: −10.0 points"
    assert a["driver_2"] == "response 30 → 240: −6.0 points"
    assert a["driver_3"] == ""
    assert (a["owner"], a["playbook"]) == ("", "")  # Stable, and not usage_down: no action matches
    assert b["detail"] == "Stable → At risk (health 63.0 → 58.0)"
    assert b["driver_1"] == "resolution 0.8 → 0.5: −4.0 points"
    assert (b["owner"], b["playbook"]) == ("senior-cs", "Call within 48 h; review open tickets")
    assert c["detail"] == "activity 20 → 11 (−45.0 % in 29 days)"
    assert c["driver_1"] == "activity 20 → 11: −2.5 points"
    assert (c["owner"], c["playbook"]) == ("csm", "Adoption session")
    assert march["as_of"].unique().tolist() == ["2024-03-01"]


def test_as_of_between_scorings_uses_the_latest_scoring_before(history, card):
    a = evaluate_alerts(history, card, as_of="2024-03-20")
    assert sorted(a["customer_id"]) == ["A", "B", "C"]
    assert evaluate_alerts(history, card)["customer_id"].tolist() == []  # default: the latest (April)
    with pytest.raises(DataError, match=r"--as-of 2023-12-01: the history starts on 2024-01-01"):
        evaluate_alerts(history, card, as_of="2023-12-01")
    with pytest.raises(DataError, match=r"--as-of: 'soon' is not a date"):
        evaluate_alerts(history, card, as_of="soon")


def weekly(start: dt.date, n: int) -> list[dt.date]:
    return [start + dt.timedelta(days=7 * i) for i in range(n)]


@pytest.mark.parametrize(
    ("cooldown", "expected"),
    [
        # B flaps into At risk at weeks 1, 3 and 5 (days 7, 21 and 35): entries 14 days apart
        (0, [1, 3, 5]),
        (14, [1, 3, 5]),  # 21 - 7 = 14 >= 14: fires again; 35 - 21 = 14: again
        (15, [1, 5]),  # week 3 is held back (14 < 15); week 5 is 28 days after the last firing
        (30, [1]),  # 28 < 30: week 5 is held back too
    ],
)
def test_cooldown_holds_back_a_rule_after_it_fired(tmp_path, card_dict, cooldown, expected):
    card = parse_card(card_dict(alerts=RULES[1:2], cooldown_days=cooldown))
    days = weekly(dt.date(2024, 1, 1), 6)
    scores = [65.0, 58.0, 62.0, 57.0, 63.0, 56.0]
    hist = write_history(tmp_path / "H", card, {d: {"B": flat(s)} for d, s in zip(days, scores, strict=True)})
    fired = [i for i, d in enumerate(days) if len(evaluate_alerts(hist, card, as_of=d))]
    assert fired == expected


def test_threshold_fires_on_entry_and_a_new_customer_below_it(tmp_path, card):
    script = {
        MONTHS[0]: {"E": flat(70.0, activity=3.0)},
        MONTHS[1]: {"E": flat(69.0, activity=0.0), "F": flat(60.0, activity=0.0)},
        MONTHS[2]: {"E": flat(69.0, activity=0.0), "F": flat(60.0, activity=0.0)},
    }
    hist = write_history(tmp_path / "H", card, script)
    feb = evaluate_alerts(hist, card, as_of=MONTHS[1])
    assert sorted(zip(feb["customer_id"], feb["alert"], strict=True)) == [
        ("E", "no_logins"),
        ("E", "usage_down"),
        ("F", "no_logins"),
    ]
    f = feb[(feb["customer_id"] == "F")].iloc[0]
    assert f["detail"] == "activity 0 (below 1)" and np.isnan(f["previous_score"]) and f["driver_1"] == ""
    assert evaluate_alerts(hist, card, as_of=MONTHS[2]).empty


def test_a_second_model_on_the_same_date_is_kept_and_the_latest_scoring_counts(history, card, tmp_path):
    run, _ = scored(card, MONTHS[3], {"A": flat(40.0), "B": flat(57.5), "C": flat(84.0), "D": flat(85.0)})
    other = ModelIdentity("999999999999", "models/other", "2", card.sha256)
    append_scores(history.path, run, card, other, run_date=MONTHS[3], scored_at=dt.datetime(2024, 7, 1, tzinfo=dt.UTC))
    assert len(history.files([MONTHS[3]])) == 2
    april = evaluate_alerts(history, card, as_of=MONTHS[3])
    # the newer model's 40.0 counts: A enters At risk; `dropped` held already in March (entry only)
    assert sorted(zip(april["customer_id"], april["alert"], strict=True)) == [("A", "entered_at_risk")]
    assert april["previous_score"].tolist() == [74.2]
    rows = history.customer("A")
    assert sorted(rows.loc[rows["scoring_date"] == pd.Timestamp(MONTHS[3]), "model_id"]) == [
        "999999999999",
        "abcdef012345",
    ]


def test_rescoring_the_same_date_with_the_same_model_replaces_rows(history, card):
    run, _ = scored(card, MONTHS[3], {"A": flat(10.0)})
    ident = ModelIdentity("abcdef012345", "models/test", "1", card.sha256)
    res = append_scores(history, run, card, ident, run_date=MONTHS[3])
    assert res.replaced == 1 and res.rows == 1
    april = history.frame(["customer_id", "health_score"], dates=[MONTHS[3]])
    assert april.set_index("customer_id")["health_score"].to_dict() == {"A": 10.0, "B": 57.5, "C": 84.0, "D": 85.0}


def test_empty_alerts_table_has_the_columns(history, card):
    out = evaluate_alerts(history, card, as_of=MONTHS[0])
    assert list(out.columns) == list(ALERT_COLUMNS) and out.empty


def test_a_card_without_rules_and_a_missing_history_are_clear_errors(history, card_dict, tmp_path):
    with pytest.raises(DataError, match=r"the card has no `alerts:`"):
        evaluate_alerts(history, parse_card(card_dict()))
    with pytest.raises(DataError, match=r"no such history directory"):
        evaluate_alerts(tmp_path / "nope", parse_card(card_dict(alerts=RULES)))


# ---- card validation ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"alerts": {"name": "x"}}, r"alerts: expected a list of rules"),
        ({"alerts": [{"name": "x", "type": "drop"}]}, r"alerts\[0\] \(x\)\.type: got 'drop'; use one of: score_drop"),
        ({"alerts": [{"type": "score_drop", "points": 5, "days": 3}]}, r"alerts\[0\]: missing required key 'name'"),
        (
            {"alerts": [{"name": "x", "type": "score_drop", "points": 5, "days": 3, "pct": 4}]},
            r"alerts\[0\] \(x\) \(type score_drop\): unknown key 'pct'; allowed keys are: name, type, points, days",
        ),
        ({"alerts": [{"name": "x", "type": "score_drop", "points": 5}]}, r"missing required key 'days'"),
        ({"alerts": [{"name": "x", "type": "score_drop", "points": -5, "days": 3}]}, r"\.points: a drop is a positive"),
        ({"alerts": [{"name": "x", "type": "score_drop", "points": 5, "days": "30"}]}, r"\.days: expected a positive"),
        ({"alerts": [{"name": "x", "type": "score_drop", "points": "ten", "days": 3}]}, r"\.points: expected a finite"),
        ({"alerts": [{"name": "x", "type": "band_entered", "bands": ["Risky"]}]}, r"unknown band\(s\) \['Risky'\]"),
        ({"alerts": [{"name": "x", "type": "band_entered", "bands": [1]}]}, r"\.bands: expected a list of band names"),
        (
            {"alerts": [{"name": "x", "type": "threshold", "indicator": "logins", "below": 1}]},
            r"\.indicator: unknown indicator 'logins'; use one of: interactions, response",
        ),
        ({"alerts": [{"name": "x", "type": "threshold", "indicator": "csat"}]}, r"exactly one of `below` or `above`"),
        (
            {"alerts": [{"name": "x", "type": "threshold", "indicator": "csat", "below": 1, "above": 4}]},
            r"exactly one of `below` or `above`",
        ),
        (
            {"alerts": [{"name": "x", "type": "indicator_change", "indicator": "csat", "pct": 0, "days": 3}]},
            r"\.pct: expected a change in percent other than 0",
        ),
        (
            {"alerts": [RULES[0], {**RULES[0]}]},
            r"alerts: duplicate name\(s\) \['dropped'\]",
        ),
        ({"cooldown_days": -1}, r"cooldown_days: expected a whole number of days >= 0, got -1"),
        ({"cooldown_days": 1.5}, r"cooldown_days: expected a whole number"),
        ({"actions": [{"when": {"band": "At risk"}, "owner": "x"}]}, r"actions\[0\]: missing required key 'playbook'"),
        (
            {"actions": [{"when": {"band": "Risky"}, "owner": "x", "playbook": "y"}]},
            r"actions\[0\]\.when\.band: unknown band 'Risky'",
        ),
        (
            {"actions": [{"when": {"alert": "nope"}, "owner": "x", "playbook": "y"}]},
            r"actions\[0\]\.when\.alert: unknown alert 'nope'; the card's alerts are: dropped",
        ),
        (
            {"actions": [{"when": {"segment": "smb"}, "owner": "x", "playbook": "y"}]},
            r"actions\[0\]\.when: unknown key 'segment'; allowed keys are: band, alert",
        ),
        ({"actions": [{"when": {}, "owner": "x", "playbook": "y"}]}, r"actions\[0\]\.when: expected a mapping"),
        ({"actions": [{"when": {"band": "At risk"}, "owner": "", "playbook": "y"}]}, r"\.owner: expected a non-empty"),
        ({"alert": []}, r"card: unknown key 'alert'; allowed keys are: .*alerts, cooldown_days, actions"),
    ],
)
def test_bad_alert_config_is_rejected(card_dict, overrides, match):
    raw = card_dict(alerts=RULES)
    raw.update(overrides)
    with pytest.raises(CardError, match=match):
        parse_card(raw)


def test_alert_config_parses_into_typed_rules(card):
    assert [r.type for r in card.alerts] == ["score_drop", "band_entered", "indicator_change", "threshold"]
    assert card.alerts[0].points == 10.0 and card.alerts[0].days == 31
    assert card.alerts[1].bands == ("At risk",) and card.alerts[3].below == 1.0
    assert card.cooldown_days == 14 and card.actions[1].alert == "usage_down" and card.actions[0].band == "At risk"


def test_extra_features_are_valid_alert_indicators(card_dict):
    raw = card_dict(
        alerts=[{"name": "late", "type": "threshold", "indicator": "late_invoices", "above": 0}],
        model={"extra_features": ["late_invoices"]},
    )
    assert parse_card(raw).alerts[0].indicator == "late_invoices"


# ---- webhook -----------------------------------------------------------------------------------
class Recorder(BaseHTTPRequestHandler):
    statuses: list[int] = []
    bodies: list[bytes] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).bodies.append(body)
        status = type(self).statuses.pop(0) if type(self).statuses else 200
        self.send_response(status)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    Recorder.statuses, Recorder.bodies = [], []
    srv = HTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv, f"http://127.0.0.1:{srv.server_address[1]}/hook"
    srv.shutdown()
    srv.server_close()


def test_webhook_receives_the_alerts_as_json_and_retries_after_a_500(history, card, server):
    _, url = server
    Recorder.statuses = [500]
    alerts = evaluate_alerts(history, card, as_of=MONTHS[2])
    assert post_alerts(url, alerts, backoff=0.01) is True
    assert len(Recorder.bodies) == 2  # the 500, then the retry
    assert Recorder.bodies[0] == Recorder.bodies[1]
    payload = json.loads(Recorder.bodies[1])
    assert payload["as_of"] == "2024-03-01" and payload["count"] == 3
    by = {(a["customer_id"], a["alert"]): a for a in payload["alerts"]}
    assert set(by) == {("A", "dropped"), ("B", "entered_at_risk"), ("C", "usage_down")}
    assert by[("A", "dropped")]["previous_score"] == 90.2 and by[("A", "dropped")]["band"] == "Stable"
    assert list(by[("B", "entered_at_risk")]) == list(ALERT_COLUMNS)


def test_webhook_gives_up_with_a_warning(card, history, server):
    _, url = server
    Recorder.statuses = [503, 503, 503]
    alerts = evaluate_alerts(history, card, as_of=MONTHS[2])
    with pytest.warns(HealthScoreWarning, match=r"webhook .* failed after 3 attempt\(s\) \(HTTP 503"):
        assert post_alerts(url, alerts, retries=2, backoff=0.01) is False
    Recorder.statuses = [404]
    with pytest.warns(HealthScoreWarning, match=r"failed after 1 attempt\(s\) \(HTTP 404"):
        assert post_alerts(url, alerts, retries=2, backoff=0.01) is False  # a 4xx is not retried


def test_webhook_connection_refused_is_retried_then_reported(history, card):
    import socket

    with socket.socket() as s:  # a loopback port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.warns(HealthScoreWarning, match=r"failed after 2 attempt\(s\) \(URLError"):
        assert (
            post_alerts(f"http://127.0.0.1:{port}/", pd.DataFrame(columns=ALERT_COLUMNS), retries=1, backoff=0.01)
            is False
        )
    with pytest.raises(DataError, match=r"--webhook: 'ftp://x' is not an http\(s\) URL"):
        post_alerts("ftp://x", pd.DataFrame())


# ---- CLI ------------------------------------------------------------------------------------------
def test_cli_alerts_writes_the_csv_even_when_the_webhook_fails(history, card, tmp_path, card_dict):
    import yaml

    cfg = tmp_path / "card.yaml"
    cfg.write_text(yaml.safe_dump(card_dict(alerts=RULES, cooldown_days=14, actions=ACTIONS)))
    out = tmp_path / "alerts.csv"
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = ["alerts", "--history", str(history.path), "--config", str(cfg), "--as-of", "2024-03-05", "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--webhook", f"http://127.0.0.1:{port}/", "--webhook-retries", "0"])
    assert result.exit_code == 0, result.output
    assert "warning: webhook" in result.output
    table = pd.read_csv(out, keep_default_na=False)
    assert list(table.columns) == list(ALERT_COLUMNS)
    assert sorted(table["alert"]) == ["dropped", "entered_at_risk", "usage_down"]
    assert "3 alerts on 2024-03-01" in result.output
    bad = CliRunner().invoke(
        app, ["alerts", "--history", str(tmp_path / "none"), "--config", str(cfg), "--out", str(out)]
    )
    assert bad.exit_code == 1 and "no such history directory" in bad.output
