"""Alerts on the score history: the card's rules, fired on entry into a condition, with the drivers
of the change, an owner and a playbook; optionally POSTed to a webhook.

Rules (the card's ``alerts:``; ``days`` counts back from the scoring evaluated, inclusive):

* ``score_drop`` {points, days}: the health score is at least ``points`` below the highest score the
  customer had at a scoring within the last ``days`` days;
* ``band_entered`` {bands}: the customer is in one of ``bands`` and was in another band at their
  previous scoring;
* ``indicator_change`` {indicator, pct, days}: the indicator's value changed by ``pct`` % or more
  (``pct: -40``: fell by 40 % or more; ``pct: 50``: rose by 50 % or more) against its highest
  (falls) or lowest (rises) positive value at a scoring within the last ``days`` days;
* ``threshold`` {indicator, below | above}: the value is below (above) the threshold.

A rule fires for a customer at a scoring where its condition holds and did not hold at the
customer's previous scoring (entry, not every run while it holds), and not within ``cooldown_days``
of that rule's last firing for that customer. The state is replayed from the history on every call
(no state file): the same history, card and date always give the same alerts. Everything is computed
on a customers x scoring-dates grid, one vectorised step per scoring date.

``previous_score``/``previous_band`` are those of the scoring the alert compares with (the scoring
with the highest score in the window for ``score_drop``, the most extreme value for
``indicator_change``, the previous scoring otherwise); ``driver_1..3`` are the features whose health
points fell most between that scoring and this one, with their values before → after.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml.errors import DataError, warn
from ml.model.explain import number_texts
from ml.monitor.history import POINTS, VALUE, History

ALERT_COLUMNS = (
    "customer_id",
    "as_of",
    "alert",
    "detail",
    "health_score",
    "previous_score",
    "band",
    "previous_band",
    "driver_1",
    "driver_2",
    "driver_3",
    "owner",
    "playbook",
)
MINUS = "\u2212"
_STR = np.dtypes.StringDType()
MIN_DRIVER_POINTS = 0.05  # a feature must have lost more than this many points to be named a driver


# ---- the grid -------------------------------------------------------------------------------------
@dataclass
class Grid:
    """The history as customers x scoring dates (NaN / -1 where a customer was not scored)."""

    ids: np.ndarray  # customer ids (str), one per grid row
    dates: np.ndarray  # datetime64[D], ascending
    score: np.ndarray  # health score
    band: np.ndarray  # index into the card's bands (0 = highest), -1 = not scored / unknown band
    values: dict[str, np.ndarray]  # value__<indicator> for the indicators the rules use
    present: np.ndarray  # scored at that date
    prev: np.ndarray  # column of the customer's previous scoring, -1 if none


def load_grid(history: History, card, dates: list[dt.date], indicators: list[str]) -> Grid:
    """Read the columns the rules need for ``dates`` and lay them out as a grid. DuckDB does the
    coding (customer -> row number, date -> day number, band -> the card's band index), so only
    numbers and the distinct ids leave the query."""
    schema = history.schema(dates)
    missing = [i for i in indicators if VALUE + i not in schema]
    if missing:
        raise DataError(
            f"{history.path}: the history has no values for indicator(s) {missing} used by the card's alerts "
            "(scored by a model without them?); fix `indicator:` in the alert rules or re-score."
        )
    text = [i for i in indicators if not schema[VALUE + i].startswith(("double", "float"))]
    if text:
        raise DataError(
            f"alert rules compare numbers, but indicator(s) {text} hold text values in the history; "
            "use a numeric indicator (or band / score rules) instead."
        )
    import pyarrow.compute as pc

    con = history.connection()
    cols = ["customer_id", "scoring_date", "health_score", "band", *[VALUE + i for i in indicators]]
    src = history.relation_sql(cols, dates=dates)
    order = [b.name for b in card.bands]
    band_case = " ".join(f"WHEN ? THEN {i}" for i in range(len(order)))
    values = ", ".join(f'"{VALUE}{i}"::DOUBLE AS "v{k}"' for k, i in enumerate(indicators))
    table = con.sql(
        "SELECT customer_id, date_diff('day', DATE '1970-01-01', scoring_date::DATE)::INTEGER AS day, "
        f"health_score::DOUBLE AS score, (CASE band::VARCHAR {band_case} WHEN NULL THEN -1 ELSE -2 END)::SMALLINT AS band"
        + (f", {values}" if values else "")
        + f" FROM ({src})",
        params=order,
    ).to_arrow_table()
    enc = pc.dictionary_encode(table["customer_id"].combine_chunks())  # customer -> grid row, one hash pass
    ids = np.asarray(enc.dictionary.to_pylist(), dtype=object)
    got = {name: table[name].to_numpy() for name in table.column_names if name != "customer_id"}
    got["code"] = enc.indices.to_numpy()
    grid_dates = np.array(sorted({np.datetime64(d, "D") for d in dates}), dtype="datetime64[D]")
    rows = np.asarray(got["code"], dtype=np.int64)
    day = np.asarray(got["day"], dtype=np.int64)
    first = int(grid_dates[0].astype(np.int64)) if len(grid_dates) else 0
    lookup = np.full(int(grid_dates[-1].astype(np.int64)) - first + 1 if len(grid_dates) else 1, -1, np.int64)
    lookup[grid_dates.astype(np.int64) - first] = np.arange(len(grid_dates))
    col = lookup[day - first]  # day number -> grid column, without a search per row
    shape = (len(ids), len(grid_dates))

    def dense(v: np.ndarray, fill, dtype) -> np.ndarray:  # column-major: the rules walk the dates
        out = np.full(shape, fill, dtype=dtype, order="F")
        out[rows, col] = v
        return out

    def numbers(name: str) -> np.ndarray:
        return np.asarray(got[name], float)  # Arrow gives NaN for nulls in float columns

    present = dense(np.ones(len(rows), bool), False, bool)
    # column of each customer's previous scoring: running max of the scored columns, shifted by one
    last = np.maximum.accumulate(np.where(present, np.arange(shape[1]), -1), axis=1)
    prev = np.full(shape, -1, dtype=np.int64, order="F")
    prev[:, 1:] = last[:, :-1]
    band = table["band"].fill_null(-1).to_numpy()
    if (band == -2).any():  # a band the card does not define: say which (a second scan, only then)
        found = [r[0] for r in con.execute(f"SELECT DISTINCT band::VARCHAR FROM ({src})").fetchall()]
        warn(
            f"the history holds band(s) {sorted(b for b in found if b is not None and b not in order)} that the "
            f"card does not define (bands: {order}); band rules treat them as no band. Use the card the model "
            "was trained with."
        )
        band = np.where(band == -2, -1, band)
    return Grid(
        ids=ids,
        dates=grid_dates,
        score=dense(numbers("score"), np.nan, float),
        band=dense(np.asarray(band, np.int16), -1, np.int16),
        values={i: dense(numbers(f"v{k}"), np.nan, float) for k, i in enumerate(indicators)},
        present=present,
        prev=prev,
    )


# ---- rules ------------------------------------------------------------------------------------------
@dataclass
class RuleState:
    """A rule's condition at every grid cell and the column each cell compares with (-1: none)."""

    cond: np.ndarray
    ref: np.ndarray


def _window(grid: Grid, j: int, days: int) -> np.ndarray:
    """Columns before ``j`` within ``days`` days of it (inclusive)."""
    lo = grid.dates[j] - np.timedelta64(days, "D")
    return np.flatnonzero((grid.dates >= lo) & (np.arange(len(grid.dates)) < j))


def _extreme(m: np.ndarray, cols: np.ndarray, *, largest: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the largest (smallest) value among ``cols`` and its column; NaN / -1 when none."""
    n = m.shape[0]
    if len(cols) == 0:
        return np.full(n, np.nan), np.full(n, -1)
    sub = m[:, cols]
    fill = -np.inf if largest else np.inf
    filled = np.where(np.isnan(sub), fill, sub)
    k = np.argmax(filled, axis=1) if largest else np.argmin(filled, axis=1)
    val = filled[np.arange(n), k]
    none = np.isinf(val) & (val == fill)
    return np.where(none, np.nan, val), np.where(none, -1, cols[k])


def rule_state(rule, grid: Grid, upto: int, band_order: list[str] | None = None) -> RuleState:
    """The condition of ``rule`` at columns 0..``upto`` (vectorised over customers; the window rules
    take one step per scoring date). ``band_order``: the card's band names, highest first (the grid's
    band codes index it)."""
    n, d = grid.score.shape
    rows = np.arange(n)[:, None]
    prev = grid.prev
    has_prev = prev >= 0
    if rule.type in ("band_entered", "threshold"):  # no window: whole-grid operations
        if rule.type == "band_entered":
            watched = [i for i, b in enumerate(band_order or []) if b in rule.bands]
            inside = np.isin(grid.band, watched)
            was = grid.band[rows, np.maximum(prev, 0)]
            cond = grid.present & inside & has_prev & (was >= 0) & ~inside[rows, np.maximum(prev, 0)]
        else:
            v = grid.values[rule.indicator]
            cond = grid.present & ((v < rule.below) if rule.below is not None else (v > rule.above))
        cond[:, upto + 1 :] = False
        return RuleState(np.asfortranarray(cond), np.where(cond, prev, -1))
    cond = np.zeros((n, d), bool, order="F")
    ref = np.full((n, d), -1, dtype=np.int64, order="F")
    if rule.type == "score_drop":
        m, largest = grid.score, True
    else:  # indicator_change: against the highest (falls) or lowest (rises) positive value in the window
        v = grid.values[rule.indicator]
        m, largest = np.asfortranarray(np.where(v > 0, v, np.nan)), rule.pct < 0
    for j in range(upto + 1):  # one vectorised step per scoring date
        base, k = _extreme(m, _window(grid, j, rule.days), largest=largest)
        here = grid.present[:, j]
        if rule.type == "score_drop":
            c = here & (grid.score[:, j] <= base - rule.points)
        else:
            v = grid.values[rule.indicator][:, j]
            with np.errstate(invalid="ignore", divide="ignore"):
                change = (v - base) / base * 100.0
            c = here & ~np.isnan(change) & ((change <= rule.pct) if largest else (change >= rule.pct))
        cond[:, j] = c
        ref[:, j] = np.where(c, k, -1)
    return RuleState(cond, ref)


def fire(state: RuleState, grid: Grid, upto: int, cooldown_days: int) -> np.ndarray:
    """Cells where the rule fires: entry into the condition, outside the cooldown of its last firing."""
    n, d = state.cond.shape
    rows = np.arange(n)
    fired = np.zeros((n, d), bool, order="F")
    last = np.full(n, np.iinfo(np.int64).min // 2, dtype=np.int64)  # day number of the last firing
    days = grid.dates.astype(np.int64)
    for j in range(upto + 1):
        prev = grid.prev[:, j]
        held_before = np.where(prev >= 0, state.cond[rows, np.maximum(prev, 0)], False)
        entry = state.cond[:, j] & ~held_before
        f = entry & (days[j] - last >= cooldown_days)
        last[f] = days[j]
        fired[:, j] = f
    return fired


# ---- texts -----------------------------------------------------------------------------------------
def _one_decimal(x: np.ndarray) -> np.ndarray:
    """'71.2', '55.0', '−3.5' (a true minus sign), 'missing' for NaN."""
    x = np.asarray(x, float)
    r = np.round(np.abs(x), 1)
    body = np.where(r == np.floor(r), np.strings.add(np.floor(r).astype(np.int64).astype(_STR), ".0"), r.astype(_STR))
    sign = np.where((x < 0) & (r > 0), MINUS, "").astype(_STR)
    return np.where(np.isnan(x), "missing", np.strings.add(sign, body)).astype(_STR)


def _signed(x: np.ndarray, suffix: str = "") -> np.ndarray:
    s = _one_decimal(x)
    plus = np.where(np.round(np.asarray(x, float), 1) > 0, "+", "").astype(_STR)
    return np.strings.add(np.strings.add(plus, s), suffix)


def _values_text(x: np.ndarray) -> np.ndarray:
    return np.asarray(number_texts(np.asarray(x, float)), dtype=_STR)


def _days(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a - b).astype("timedelta64[D]").astype(np.int64).astype(_STR)


def feature_labels(card, features) -> dict[str, str]:
    labels = {ind.name: ind.label for ind in card.indicators}
    return {f: labels.get(f, f) for f in features}


def driver_texts(
    before: pd.DataFrame, after: pd.DataFrame, features: list[str], labels: dict[str, str], k: int = 3
) -> list[np.ndarray]:
    """For ranks 1..k, per row, the feature whose points fell most from ``before`` to ``after`` (rows
    aligned), "Product activity 20 → 11: −6.1 points"; empty where no feature lost points. ``before``
    rows that are all missing (no earlier scoring) give no driver."""
    n = len(after)
    out = [np.full(n, "", dtype=object) for _ in range(k)]
    if n == 0 or not features:
        return out
    pb = before[[POINTS + f for f in features]].to_numpy(dtype=float)
    pa_ = after[[POINTS + f for f in features]].to_numpy(dtype=float)
    delta = np.where(np.isnan(pb) | np.isnan(pa_), 0.0, pa_ - pb)
    order = np.argsort(delta, axis=1, kind="stable")
    rows = np.arange(n)
    for r in range(min(k, len(features))):
        idx = order[:, r]
        val = delta[rows, idx]
        falls = val < -MIN_DRIVER_POINTS
        text = np.full(n, "", dtype=_STR)
        for j in np.unique(idx[falls]):  # one vectorised pass per (rank, feature)
            m = falls & (idx == j)
            f = features[j]
            vb, va = before[VALUE + f].to_numpy()[m], after[VALUE + f].to_numpy()[m]
            tb, ta = _feature_values(vb), _feature_values(va)
            body = np.strings.add(np.strings.add(f"{labels[f]} ", tb), " → ")
            body = np.strings.add(np.strings.add(body, ta), ": ")
            text[m] = np.strings.add(np.strings.add(body, _one_decimal(val[m])), " points")
        out[r] = text.astype(object)
    return out


def _feature_values(v: np.ndarray) -> np.ndarray:
    try:
        return _values_text(v.astype(float))
    except (TypeError, ValueError):  # categorical values: text
        s = pd.Series(v, dtype=object)
        return np.asarray(s.where(s.notna(), "missing").astype(str), dtype=_STR)


# ---- evaluating the rules ------------------------------------------------------------------------------
def resolve_as_of(dates: list[dt.date], as_of: dt.date | str | None, where: str) -> dt.date:
    if not dates:
        raise DataError(f"{where}: the history holds no scorings.")
    if as_of is None:
        return dates[-1]
    try:
        day = pd.Timestamp(as_of).date()
    except (ValueError, TypeError):
        raise DataError(f"--as-of: {as_of!r} is not a date; write it as YYYY-MM-DD.") from None
    earlier = [d for d in dates if d <= day]
    if not earlier:
        raise DataError(
            f"--as-of {day}: the history starts on {dates[0]}, so nothing was scored by then; "
            f"pick a date from {dates[0]} to {dates[-1]}."
        )
    return earlier[-1]


def evaluate_alerts(history: str | os.PathLike | History, card, *, as_of=None) -> pd.DataFrame:
    """The alerts firing at the latest scoring on or before ``as_of`` (default: the latest scoring),
    one row per (customer, rule), in ``ALERT_COLUMNS`` order, sorted by rule (card order) then health."""
    hist = history if isinstance(history, History) else History(history)
    hist.require()
    if not card.alerts:
        raise DataError(
            "the card has no `alerts:`; add rules such as "
            "`alerts: [{name: dropped, type: score_drop, points: 10, days: 30}]` (see the README)."
        )
    all_dates = hist.dates()
    day = resolve_as_of(all_dates, as_of, str(hist.path))
    dates = [d for d in all_dates if d <= day]
    indicators = sorted({r.indicator for r in card.alerts if r.indicator})
    grid = load_grid(hist, card, dates, indicators)
    j = len(grid.dates) - 1
    parts = []
    for rule in card.alerts:
        state = rule_state(rule, grid, j, [b.name for b in card.bands])
        fired = fire(state, grid, j, card.cooldown_days)
        rows = np.flatnonzero(fired[:, j])
        parts.append((rule, rows, state.ref[rows, j]))
    return _alert_table(hist, card, grid, j, parts)


def _alert_table(hist: History, card, grid: Grid, j: int, parts) -> pd.DataFrame:
    band_names = np.array([b.name for b in card.bands] + [""], dtype=object)
    pieces = []
    for rule, rows, ref in parts:
        if not len(rows):
            continue
        cur = grid.score[rows, j]
        has_ref = ref >= 0
        refc = np.maximum(ref, 0)
        prev_score = np.where(has_ref, grid.score[rows, refc], np.nan)
        prev_band = np.where(has_ref, band_names[grid.band[rows, refc]], "")
        ref_date = np.where(has_ref, grid.dates[refc], np.datetime64("NaT"))
        day = np.full(len(rows), grid.dates[j])
        if rule.type == "score_drop":
            detail = np.strings.add(np.strings.add("health ", _one_decimal(prev_score)), " → ")
            detail = np.strings.add(np.strings.add(detail, _one_decimal(cur)), " (")
            detail = np.strings.add(np.strings.add(detail, _one_decimal(cur - prev_score)), " in ")
            detail = np.strings.add(np.strings.add(detail, _days(day, ref_date)), " days)")
        elif rule.type == "band_entered":
            detail = np.strings.add(np.asarray(prev_band, dtype=_STR), " → ")
            detail = np.strings.add(detail, np.asarray(band_names[grid.band[rows, j]], dtype=_STR))
            detail = np.strings.add(np.strings.add(detail, " (health "), _one_decimal(prev_score))
            detail = np.strings.add(np.strings.add(detail, " → "), _one_decimal(cur))
            detail = np.strings.add(detail, ")")
        elif rule.type == "indicator_change":
            v = grid.values[rule.indicator]
            after = v[rows, j]
            before = np.where(has_ref, v[rows, refc], np.nan)
            label = feature_labels(card, [rule.indicator])[rule.indicator]
            detail = np.strings.add(np.strings.add(f"{label} ", _values_text(before)), " → ")
            detail = np.strings.add(np.strings.add(detail, _values_text(after)), " (")
            detail = np.strings.add(detail, _signed((after - before) / before * 100.0, " %"))
            detail = np.strings.add(np.strings.add(detail, " in "), _days(day, ref_date))
            detail = np.strings.add(detail, " days)")
        else:
            after = grid.values[rule.indicator][rows, j]
            label = feature_labels(card, [rule.indicator])[rule.indicator]
            limit = f"below {rule.below:g}" if rule.below is not None else f"above {rule.above:g}"
            detail = np.strings.add(np.strings.add(f"{label} ", _values_text(after)), f" ({limit})")
        pieces.append(
            pd.DataFrame(
                {
                    "customer_id": grid.ids[rows],
                    "as_of": str(grid.dates[j]),
                    "alert": rule.name,
                    "detail": np.asarray(detail, dtype=object),
                    "health_score": cur,
                    "previous_score": prev_score,
                    "band": band_names[grid.band[rows, j]],
                    "previous_band": prev_band,
                    "_ref_date": ref_date,
                }
            )
        )
    if not pieces:
        empty = pd.DataFrame({c: pd.Series(dtype=float if "score" in c else object) for c in ALERT_COLUMNS})
        return empty
    out = pd.concat(pieces, ignore_index=True)
    _add_drivers(hist, card, out)
    _add_actions(card, out)
    out["band"] = out["band"].replace("", None)
    out["previous_band"] = out["previous_band"].replace("", None)
    return out[list(ALERT_COLUMNS)]


def _add_drivers(hist: History, card, out: pd.DataFrame) -> None:
    """driver_1..3 from the points of the two scorings each alert compares."""
    as_of = pd.Timestamp(out["as_of"].iloc[0])
    ref_dates = pd.to_datetime(out["_ref_date"])
    wanted = sorted({as_of.date(), *[d.date() for d in ref_dates.dropna().unique()]})
    cols = hist.columns(wanted)
    features = [c[len(POINTS) :] for c in cols if c.startswith(POINTS) and VALUE + c[len(POINTS) :] in cols]
    rows = hist.frame(
        ["customer_id", "scoring_date", *[p + f for f in features for p in (POINTS, VALUE)]],
        dates=wanted,
        customers=pd.unique(out["customer_id"]),
    )
    rows["scoring_date"] = pd.to_datetime(rows["scoring_date"])
    rows = rows.set_index(["customer_id", "scoring_date"])
    key_after = pd.MultiIndex.from_arrays([out["customer_id"], pd.Series(as_of, index=out.index)])
    key_before = pd.MultiIndex.from_arrays([out["customer_id"], ref_dates])
    after = rows.reindex(key_after).reset_index(drop=True)
    before = rows.reindex(key_before).reset_index(drop=True)
    texts = driver_texts(before, after, features, feature_labels(card, features))
    for r in range(3):
        out[f"driver_{r + 1}"] = texts[r]


def _add_actions(card, out: pd.DataFrame) -> None:
    """owner and playbook of the first action (in card order) whose `when` matches the alert."""
    owner = np.full(len(out), "", dtype=object)
    playbook = np.full(len(out), "", dtype=object)
    done = np.zeros(len(out), bool)
    for a in card.actions:
        m = ~done
        if a.band is not None:
            m &= (out["band"] == a.band).to_numpy()
        if a.alert is not None:
            m &= (out["alert"] == a.alert).to_numpy()
        owner[m], playbook[m] = a.owner, a.playbook
        done |= m
    out["owner"], out["playbook"] = owner, playbook


# ---- webhook -------------------------------------------------------------------------------------------
def alerts_payload(alerts: pd.DataFrame) -> dict:
    """The JSON body POSTed to a webhook: ``{"as_of", "count", "alerts": [row, ...]}`` (NaN -> null)."""
    records = alerts.astype(object).where(alerts.notna(), None).to_dict(orient="records")
    as_of = None if alerts.empty else str(alerts["as_of"].iloc[0])
    return {"as_of": as_of, "count": len(records), "alerts": records}


def post_alerts(
    url: str,
    alerts: pd.DataFrame,
    *,
    timeout: float = 10.0,
    retries: int = 3,
    backoff: float = 0.5,
) -> bool:
    """POST the alerts as JSON to ``url``. Retries (``backoff`` x 2^attempt seconds apart) on a 5xx
    answer, a connection error or a timeout; a 4xx answer is not retried. Returns True on success;
    on failure warns with the last error and returns False (the caller's CSV is written anyway)."""
    if not url.startswith(("http://", "https://")):
        raise DataError(f"--webhook: {url!r} is not an http(s) URL; pass e.g. https://hooks.example.com/alerts.")
    body = json.dumps(alerts_payload(alerts), ensure_ascii=False, allow_nan=False).encode("utf-8")
    last = ""
    for attempt in range(retries + 1):
        req = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": "application/json; charset=utf-8"}
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # the scheme was checked above
                resp.read()
                return True
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code} {exc.reason}"
            if exc.code < 500:
                break
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            last = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
        if attempt < retries:
            time.sleep(backoff * 2**attempt)
    warn(f"webhook {url} failed after {attempt + 1} attempt(s) ({last}); the alerts were not delivered there.")
    return False
