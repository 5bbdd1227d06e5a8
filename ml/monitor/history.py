"""The score history: every scoring run appended to a directory of Parquet files, queried with DuckDB.

Layout of a history directory ``H``::

    H/date=2024-06-01/model=3f2a9c0e1b7d.parquet     one file per scoring date and model
    H/date=2024-07-01/model=3f2a9c0e1b7d.parquet
    H/date=2024-07-01/model=91c4d2aa03fe.parquet     the same date scored by another model: kept, marked

Why files and not one DuckDB database: appending a run is writing Parquet (as cheap as writing the
predictions themselves), re-scoring a date with the same model replaces one file atomically (no
duplicates, no delete-and-vacuum), nothing holds a lock between runs, any tool reads the files, and
DuckDB queries them in place (``read_parquet('H/*/*.parquet', union_by_name = true)``). The model
id in the file name is a hash of the model directory's manifest, so "same model" means the same
model files, wherever they were loaded from.

One row per customer and scoring date: the scoring date (the rows' snapshot date from the card's
``date_column``, else the run's date), ``health_score``, ``band``, ``churn_probability``,
``manual_score``, ``manual_band``, ``manual_churn_probability``, ``points__<feature>`` (the health
points of every model feature, as ``explain`` shows them) and ``value__<feature>`` (the raw value the
model saw), and the run's ``model_id``, ``model_uri``, ``model_version``, ``card_sha256`` and
``scored_at`` (UTC). When a date holds runs of several models, queries take each customer's most
recently scored row for that date (``latest_per_date``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ml.data.io import atomic_path
from ml.errors import DataError, warn
from ml.model import SCORE_COLUMNS

POINTS, VALUE = "points__", "value__"
RUN_COLUMNS = ("model_id", "model_uri", "model_version", "card_sha256", "scored_at")
_DATE_DIR = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")
_MODEL_FILE = re.compile(r"^model=([0-9a-f]{6,64})\.parquet$")


# ---- scoring with points ---------------------------------------------------------------------
@dataclass
class ScoredRun:
    """``predict``'s table plus what the history keeps beside it: each feature's points and value."""

    table: pd.DataFrame  # exactly HealthModel.predict's columns and rows
    points: pd.DataFrame  # rows x features, health points (base + sum = health_score)
    values: pd.DataFrame  # rows x features, the values the model saw (float, or text for categories)


def score_with_points(
    model, frame: pd.DataFrame, *, drivers: int = 3, strict: bool = True, unseen: str = "error"
) -> ScoredRun:
    """``model.predict(frame, drivers=drivers, strict=strict, unseen=unseen)`` and the points and
    values the history stores, from one pass over the model (the same margin, contributions and
    driver texts ``predict`` computes)."""
    table, contrib, X = model.predict_with_points(frame, drivers=drivers, strict=strict, unseen=unseen)
    if contrib is None:  # no rows
        empty = pd.DataFrame(columns=model.schema_.names, dtype=float)
        return ScoredRun(table, empty, empty)
    return ScoredRun(table, contrib.points.reset_index(drop=True), X.reset_index(drop=True))


# ---- model identity ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelIdentity:
    model_id: str  # 12 hex digits: the same model files give the same id
    model_uri: str = ""  # what the user passed (a directory or models:/ URI)
    model_version: str = ""  # the registered version, when known
    card_sha256: str = ""


def model_identity(model, uri: str | os.PathLike | None = None, version: str | int | None = None) -> ModelIdentity:
    """The identity a history row records for ``model``: a hash of its directory's manifest when it
    was loaded from one, else of its booster and card."""
    h = hashlib.sha256()
    d = getattr(model, "model_dir_", None)
    manifest = None if d is None else Path(d) / "MANIFEST.json"
    if manifest is not None and manifest.exists():
        import json

        files = json.loads(manifest.read_text(encoding="utf-8")).get("files", {})
        for name in ("model.txt", "model.json"):
            h.update(f"{name}:{files.get(name, {}).get('sha256', '')};".encode())
    else:
        h.update(model.booster_.model_to_string().encode())
        h.update(model.card.sha256.encode())
    if uri is None and d is not None:
        uri = str(Path(d).resolve())
    return ModelIdentity(
        model_id=h.hexdigest()[:12],
        model_uri="" if uri is None else str(uri),
        model_version="" if version is None else str(version),
        card_sha256=model.card.sha256,
    )


# ---- the store ------------------------------------------------------------------------------------
def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


@dataclass
class History:
    """A history directory (see the module docstring). ``History(path)`` does not create anything;
    :func:`append_scores` does."""

    path: Path
    _con: object = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    # -- files
    def files(self, dates: Sequence[dt.date] | None = None) -> list[Path]:
        """The Parquet files, oldest date first (only those of ``dates`` when given)."""
        if not self.path.is_dir():
            return []
        wanted = None if dates is None else {str(d) for d in dates}
        out = []
        for sub in sorted(self.path.iterdir()):
            m = _DATE_DIR.match(sub.name)
            if not m or not sub.is_dir() or (wanted is not None and m.group(1) not in wanted):
                continue
            out += sorted(p for p in sub.iterdir() if _MODEL_FILE.match(p.name))
        return out

    def dates(self) -> list[dt.date]:
        """The scoring dates held, oldest first."""
        return sorted({dt.date.fromisoformat(_DATE_DIR.match(p.parent.name).group(1)) for p in self.files()})

    def require(self) -> History:
        """Raise one clear error when the directory holds no scorings."""
        if not self.path.exists():
            raise DataError(
                f"{self.path}: no such history directory; write one with "
                f"`healthscore predict ... --history {self.path}`."
            )
        if not self.files():
            raise DataError(
                f"{self.path}: the history holds no scorings (no date=YYYY-MM-DD/model=*.parquet files); "
                f"append runs with `healthscore predict ... --history {self.path}`."
            )
        return self

    # -- queries
    def connection(self):
        if self._con is None:
            import duckdb

            threads = os.environ.get("HEALTHSCORE_THREADS")  # DuckDB's own default otherwise (no spinning)
            self._con = duckdb.connect(config={"threads": max(1, int(threads))} if threads else {})
            self._con.execute("SET enable_progress_bar = false")  # no bar on the terminal for long scans
        return self._con

    def schema(self, dates=None) -> dict[str, str]:
        """Column -> Arrow type name over the files (of ``dates``), read from the Parquet footers only."""
        import pyarrow.parquet as pq

        out: dict[str, str] = {}
        for p in self.files(dates):
            for f in pq.read_schema(p):
                t = f.type.value_type if hasattr(f.type, "value_type") else f.type
                out.setdefault(f.name, str(t))
        return out

    def columns(self, dates=None) -> list[str]:
        """Every column of the history (the union over its files, or those of ``dates``)."""
        return list(self.schema(dates))

    def source(self, dates: Sequence[dt.date] | None = None) -> str:
        """The SQL table expression reading the files (of ``dates``)."""
        files = self.files(dates)
        if not files:
            raise DataError(f"{self.path}: no scorings for the dates asked for ({list(map(str, dates or []))}).")
        listed = ", ".join(_sql_str(str(p)) for p in files)
        return f"read_parquet([{listed}], union_by_name = true, hive_partitioning = false)"

    def relation_sql(self, columns: Sequence[str] | None = None, *, dates=None, latest: bool = True) -> str:
        """SQL selecting ``columns`` (all when None) with one row per customer and date: when a date
        holds several models' runs, each customer's most recently scored row."""
        cols = "*" if columns is None else ", ".join(f'"{c}"' for c in columns)
        src = self.source(dates)
        files = self.files(dates)
        several = len({p.parent for p in files}) < len(files)
        if latest and several:
            return (
                f"SELECT {cols} FROM {src} QUALIFY row_number() OVER "
                "(PARTITION BY customer_id, scoring_date ORDER BY scored_at DESC, model_id) = 1"
            )
        return f"SELECT {cols} FROM {src}"

    def frame(
        self, columns: Sequence[str] | None = None, *, dates=None, customers: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """The rows (deduplicated per customer and date) as a DataFrame, by customer then date."""
        sql = self.relation_sql(columns, dates=dates)
        params: list = []
        if customers is not None:
            sql = f"SELECT * FROM ({sql}) WHERE customer_id IN (SELECT unnest(?::VARCHAR[]))"
            params.append([str(c) for c in customers])
        return self.query(f"{sql} ORDER BY customer_id, scoring_date", params)

    def query(self, sql: str, params: list | None = None) -> pd.DataFrame:
        """Run ``sql`` (which may read :meth:`source`) and return a DataFrame (through Arrow)."""
        return self.connection().sql(sql, params=params or None).to_arrow_table().to_pandas(date_as_object=False)

    def customer(self, customer_id: str) -> pd.DataFrame:
        """Every row of one customer (all models), oldest first; one clear error if unknown."""
        con = self.require().connection()
        rows = self.query(
            f"SELECT * FROM {self.source()} WHERE customer_id = ? ORDER BY scoring_date, scored_at", [str(customer_id)]
        )
        if rows.empty:
            sample = [r[0] for r in con.execute(f"SELECT DISTINCT customer_id FROM {self.source()} LIMIT 5").fetchall()]
            raise DataError(
                f"customer {customer_id!r} is not in the history {self.path} (e.g. {sample}); check the id."
            )
        return rows


# ---- appending -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class AppendResult:
    files: tuple[Path, ...]
    rows: int
    dates: tuple[dt.date, ...]
    replaced: int  # rows of an earlier run of the same model and date that this run replaced


def scoring_dates(frame: pd.DataFrame, card, run_date: dt.date | None = None) -> np.ndarray:
    """The scoring date of each row (datetime64[D]): its snapshot date, or ``run_date`` (default:
    today, UTC) when the card has no date column."""
    col = card.date_column
    if col and col in frame.columns:
        with warnings.catch_warnings():  # mixed or odd formats fall back to dateutil; bad ones are reported below
            warnings.filterwarnings("ignore", "Could not infer format", UserWarning)
            d = pd.to_datetime(frame[col], errors="coerce")
        bad = d.isna() & frame[col].notna()
        if d.isna().any():
            example = frame.loc[bad, col].astype(str).head(3).tolist() if bad.any() else ["(empty)"]
            raise DataError(
                f"column {col!r} (the card's date_column) has {int(d.isna().sum())} row(s) that are not dates, "
                f"e.g. {example}; the history files rows by their snapshot date. Fix or drop those rows."
            )
        return d.to_numpy().astype("datetime64[D]")
    day = run_date or dt.datetime.now(dt.UTC).date()
    return np.full(len(frame), np.datetime64(day, "D"))


def _id_array(ids: pd.Series):
    import pyarrow as pa

    if pd.api.types.is_string_dtype(ids) and not pd.api.types.is_object_dtype(ids):
        return pa.array(ids, type=pa.string())
    return pa.array(ids.astype(str).to_numpy(dtype=object), type=pa.string())


def _constant(value: str, n: int):
    import pyarrow as pa

    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array([value], pa.string()))


def run_table(run: ScoredRun, card, identity: ModelIdentity, dates: np.ndarray, scored_at: dt.datetime):
    """The Arrow table of one run, in history columns (rows in the run's order)."""
    import pyarrow as pa

    t = run.table
    n = len(t)
    cols: dict[str, pa.Array] = {
        "customer_id": _id_array(t[card.id_column]),
        "scoring_date": pa.array(dates.astype("datetime64[D]"), pa.date32()),
    }
    for c in SCORE_COLUMNS:
        s = t[c]
        if isinstance(s.dtype, pd.CategoricalDtype):
            cols[c] = pa.array(s).cast(pa.dictionary(pa.int32(), pa.string()))  # dictionary-encoded
        else:
            cols[c] = pa.array(s.to_numpy(dtype=float), pa.float64())
    # float64 columns go to Arrow without a copy
    for name in run.points.columns:
        cols[POINTS + name] = pa.array(run.points[name].to_numpy(dtype=float), pa.float64())
    for name in run.values.columns:
        v = run.values[name]
        if isinstance(v.dtype, pd.CategoricalDtype):
            cols[VALUE + name] = pa.array(v).cast(pa.dictionary(pa.int32(), pa.string()))
        else:
            cols[VALUE + name] = pa.array(v.to_numpy(dtype=float), pa.float64())
    cols["model_id"] = _constant(identity.model_id, n)
    cols["model_uri"] = _constant(identity.model_uri, n)
    cols["model_version"] = _constant(identity.model_version, n)
    cols["card_sha256"] = _constant(identity.card_sha256, n)
    stamp = pd.Timestamp(scored_at).tz_convert("UTC") if pd.Timestamp(scored_at).tzinfo else pd.Timestamp(scored_at)
    cols["scored_at"] = pa.array(np.full(n, stamp.tz_localize(None).to_datetime64()), pa.timestamp("us", tz="UTC"))
    return pa.table(cols)


def append_scores(
    history: str | os.PathLike | History,
    run: ScoredRun,
    card,
    identity: ModelIdentity,
    *,
    run_date: dt.date | None = None,
    scored_at: dt.datetime | None = None,
    frame: pd.DataFrame | None = None,
) -> AppendResult:
    """Append a scored run to the history: one file per scoring date for this model, written
    atomically. Re-scoring a date with the same model replaces those customers' rows (others scored
    earlier that day are kept); another model's file for that date is left alone.

    The scoring dates come from the run's table (its date column) or ``run_date``."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    hist = history if isinstance(history, History) else History(Path(history))
    if hist.path.exists() and not hist.path.is_dir():
        raise DataError(f"{hist.path}: --history must be a directory (or a path to create one), not a file.")
    t = run.table
    if len(t) == 0:
        return AppendResult((), 0, (), 0)
    scored_at = scored_at or dt.datetime.now(dt.UTC)
    dates = scoring_dates(frame if frame is not None else t, card, run_date)
    table = run_table(run, card, identity, dates, scored_at)
    day_numbers = dates.astype(np.int64)
    if len(dates) > 1 and np.any(np.diff(day_numbers) < 0):  # group the rows by date: one sort, then slices
        order = np.argsort(day_numbers, kind="stable")
        table, dates, day_numbers = table.take(pa.array(order)), dates[order], day_numbers[order]
    cuts = [0, *(np.flatnonzero(np.diff(day_numbers)) + 1).tolist(), len(dates)]
    # Parquet's dictionary encoding pays for repeated text (bands, the run's constants, dates); on
    # float columns and unique ids it costs most of the write and saves nothing
    text_columns = [
        f.name for f in table.schema if pa.types.is_dictionary(f.type) or f.name in ("scoring_date", "scored_at")
    ]
    written, replaced, rows, duplicated = [], 0, 0, []
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        part = table.slice(a, b - a)
        day = str(dates[a])
        if len(pc.unique(part["customer_id"])) < len(part):  # one customer twice on one date
            keep = ~part["customer_id"].to_pandas().duplicated(keep="last").to_numpy()
            duplicated.append((day, int((~keep).sum()), part["customer_id"].filter(pa.array(~keep))[0].as_py()))
            part = part.filter(pa.array(keep))
        rows += len(part)
        target = hist.path / f"date={day}" / f"model={identity.model_id}.parquet"
        if target.exists():
            old = pq.read_table(target)
            keep_old = pc.invert(pc.is_in(old["customer_id"], value_set=part["customer_id"]))
            replaced += len(old) - int(pc.sum(keep_old).as_py() or 0)
            kept = old.filter(keep_old)
            if len(kept):
                part = pa.concat_tables([kept, part.select(kept.column_names)], promote_options="permissive")
        with atomic_path(target) as tmp:
            pq.write_table(part, tmp, use_dictionary=text_columns, write_statistics=["scoring_date"])
        written.append(target)
    if duplicated:
        n = sum(k for _, k, _ in duplicated)
        day, _, example = duplicated[0]
        warn(
            f"{n} row(s) score a customer twice on the same date (e.g. {example} on {day}); the history keeps "
            "the last of each. Deduplicate the snapshots if unintended."
        )
    uniq = [dt.date.fromisoformat(str(dates[a])) for a in cuts[:-1]]
    return AppendResult(tuple(written), rows, tuple(uniq), replaced)


# ---- one customer over time ------------------------------------------------------------------------
def customer_timeline(history: str | os.PathLike | History, customer_id: str, *, top: int = 3) -> pd.DataFrame:
    """One customer's scorings, oldest first: date, health, band, churn probability, manual score and
    band, the model, and the ``top`` indicators whose points moved most since the previous scoring
    (``moved``: "Product activity 20 → 11: −6.1 points")."""
    hist = history if isinstance(history, History) else History(Path(history))
    rows = hist.customer(customer_id)
    rows = rows.sort_values(["scoring_date", "scored_at"], kind="stable").reset_index(drop=True)
    features = [c[len(POINTS) :] for c in rows.columns if c.startswith(POINTS)]
    moved = [""] * len(rows)
    for i in range(1, len(rows)):  # one customer's handful of scorings: a short loop over dates
        prev, cur = rows.iloc[i - 1], rows.iloc[i]
        moved[i] = "; ".join(movement_texts(prev, cur, features, top=top))
    out = rows[["scoring_date", *SCORE_COLUMNS, "model_id", "model_version"]].copy()
    out["moved"] = moved
    return out


def movement_texts(prev: pd.Series, cur: pd.Series, features: Sequence[str], *, top: int = 3, labels=None) -> list:
    """The ``top`` features whose points changed most (by size) between two rows of the history."""
    labels = labels or {}
    deltas = []
    for f in features:
        a, b = prev.get(POINTS + f), cur.get(POINTS + f)
        if a is None or b is None or pd.isna(a) or pd.isna(b):
            continue
        deltas.append((abs(b - a), f, b - a))
    deltas.sort(key=lambda x: -x[0])
    out = []
    for size, f, delta in deltas[:top]:
        if size < 0.05:
            break
        before, after = prev.get(VALUE + f), cur.get(VALUE + f)
        out.append(
            f"{labels.get(f, f)} {value_str(before)} → {value_str(after)}: {'+' if delta > 0 else '−'}{abs(delta):.1f} points"
        )
    return out


def value_str(v) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
        return "missing"
    if isinstance(v, float | np.floating):
        return f"{v:.3g}" if v != round(v) else str(int(round(v)))
    return str(v)
