"""Reading and writing tables (CSV or Parquet) and files, atomically."""

from __future__ import annotations

import contextlib
import csv
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ml.card import Card
from ml.errors import DataError, warn

_CSV = {".csv", ".txt"}
_PARQUET = {".parquet", ".pq"}
_CSV_CHUNK_ROWS = 100_000


def _format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in _CSV or path.name.lower().endswith(".csv.gz"):
        return "csv"
    if suffix in _PARQUET:
        return "parquet"
    raise DataError(f"{path}: unknown table format {suffix!r}; use a .csv or .parquet file.")


def _existing(path: str | os.PathLike) -> tuple[Path, str]:
    """The path and its table format, or one clear error if it is unknown or absent."""
    path = Path(path)
    fmt = _format(path)
    if not path.exists():
        raise DataError(f"{path}: file not found; check the --data path.")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a table; pass a .csv or .parquet file.")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty (0 bytes); pass a table with a header and rows.")
    return path, fmt


def read_table(
    path: str | os.PathLike, columns: Sequence[str] | None = None, *, text: Sequence[str] = ()
) -> pd.DataFrame:
    """Read a CSV or Parquet file. ``columns`` limits the read to those columns when given.

    ``text`` names columns read as text exactly as written in a CSV (ids: ``00000002`` stays
    ``00000002``, never the number 2). A CSV must be UTF-8: a byte that is not is one error naming
    the line, the byte and the column (:func:`check_utf8`). A header that repeats a column name gets
    a warning (pandas reads the repeats as ``name.1`` ...).

    Columns that are absent are not an error here: the caller checks the schema and reports every
    missing column at once.
    """
    path, fmt = _existing(path)
    try:
        if fmt == "parquet":
            if columns is not None:
                import pyarrow.parquet as pq

                present = set(pq.read_schema(path).names)
                columns = [c for c in columns if c in present]
            frame = pd.read_parquet(path, columns=None if columns is None else list(columns))
            _check_binary(frame, path)
            return frame
        check_utf8(path)
        header = csv_header(path)
        _warn_duplicate_header(header, path)
        usecols = None
        if columns is not None:
            wanted = set(columns)
            usecols = lambda c: c in wanted  # noqa: E731
        dtype = {c: str for c in text if c in header} or None
        try:
            return pd.read_csv(path, usecols=usecols, engine="pyarrow", dtype=dtype)
        except (ValueError, TypeError):
            # the pyarrow engine rejects some inputs (e.g. callables on old versions); fall back
            return pd.read_csv(path, usecols=usecols, low_memory=False, dtype=dtype, keep_default_na=True)
    except DataError:
        raise
    except Exception as exc:  # parser errors from pandas/pyarrow
        raise DataError(f"{path}: could not read the table ({type(exc).__name__}: {exc}).") from exc


def _open_bytes(path: Path):
    if path.name.lower().endswith(".gz"):
        import gzip

        return gzip.open(path, "rb")
    return open(path, "rb")


_UTF8_CHUNK = 1 << 24


def check_utf8(path: str | os.PathLike) -> None:
    """Raise one :class:`DataError` at the first byte of a CSV file that is not UTF-8, naming the line,
    the byte within it and the column. Read in blocks, so the file is never held whole.

    The policy is strict on purpose: decoding with replacement characters or as Latin-1 would change
    ids silently (and ids must survive byte for byte)."""
    import codecs

    path = Path(path)
    decoder = codecs.getincrementaldecoder("utf-8")()
    lines = 0  # newlines before the current block
    last_line = b""  # the current line's bytes before the block (for the column)
    with _open_bytes(path) as fh:
        while True:
            block = fh.read(_UTF8_CHUNK)
            final = not block
            try:
                decoder.decode(block, final=final)
            except UnicodeDecodeError as exc:
                # exc.object is the bytes the decoder held back from the last block + this block
                pos = exc.start - (len(exc.object) - len(block))  # < 0: the bad byte ended the last block
                bad = exc.object[exc.start : exc.start + 1]
                before = block[: max(pos, 0)]
                nl = before.rfind(b"\n")
                line = lines + before.count(b"\n") + 1
                if nl >= 0:
                    prefix = before[nl + 1 :]
                elif pos >= 0:
                    prefix = last_line + before
                else:
                    prefix = last_line[: len(last_line) + pos]
                raise DataError(_utf8_message(path, line, prefix, bad)) from None
            if final:
                return
            nl = block.rfind(b"\n")
            lines += block.count(b"\n")
            last_line = block[nl + 1 :] if nl >= 0 else last_line + block
            if len(last_line) > 1 << 20:  # keep only what a column lookup needs
                last_line = last_line[-(1 << 20) :]


def _utf8_message(path: Path, line: int, prefix: bytes, bad: bytes) -> str:
    header = csv_header(path, errors="replace")
    text = prefix.decode("utf-8", errors="replace")
    field_index = len(next(csv.reader([text]), [""])) - 1 if text else 0
    column = header[field_index] if line > 1 and 0 <= field_index < len(header) else None
    where = f", column {column!r}" if column is not None else (" (the header)" if line == 1 else "")
    return (
        f"{path}: line {line}, byte {len(prefix) + 1}{where} is not valid UTF-8 (byte 0x{bad.hex()}); "
        "the file must be UTF-8. Save it as UTF-8 (e.g. Excel's 'CSV UTF-8') or convert it, e.g. "
        "`iconv -f latin1 -t utf-8 in.csv > out.csv`."
    )


def csv_header(path: str | os.PathLike, errors: str = "strict") -> list[str]:
    """The column names in a CSV file's first line, as written (repeats kept)."""
    with _open_bytes(Path(path)) as fh:
        first = fh.readline()
    text = first.decode("utf-8", errors=errors).lstrip("\ufeff").rstrip("\r\n")
    return next(csv.reader([text]), [])


def _warn_duplicate_header(header: list[str], path: Path) -> None:
    seen: dict[str, int] = {}
    for name in header:
        seen[name] = seen.get(name, 0) + 1
    dup = {k: v for k, v in seen.items() if v > 1}
    if dup:
        listed = ", ".join(f"{k!r} ({v} times)" for k, v in dup.items())
        renamed = ", ".join(repr(f"{k}.1") for k in dup)
        warn(
            f"{path}: the header repeats column name(s) {listed}; the first of each is used and the "
            f"repeats are read as {renamed} ... Rename or drop the duplicated columns."
        )


def _check_binary(frame: pd.DataFrame, path: Path) -> None:
    """A Parquet column of raw bytes would print as ``b'...'``: refuse it, naming the column."""
    for col in frame.columns:
        s = frame[col]
        if s.dtype == object and len(s) and s.map(type).eq(bytes).any():
            raise DataError(f"{path}: column {col!r} holds raw bytes, not text; write it as a UTF-8 string column.")


def table_columns(path: str | os.PathLike) -> list[str]:
    """The column names of a CSV or Parquet file, read from its header only."""
    path, fmt = _existing(path)
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return list(pq.read_schema(path).names)
        try:
            return csv_header(path)
        except UnicodeDecodeError:
            check_utf8(path)  # raises, naming the line and byte
            raise
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{path}: could not read the table ({type(exc).__name__}: {exc}).") from exc


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


STALE_SECONDS = 60.0
# what atomic_path / save_model leave when killed: tempfile's 8 random characters, with the writer's
# pid in front since this release (and a model directory's `.<name>.old` while it is swapped)
_TEMP_NAME = r"(?:(?P<pid>\d+)\.)?[a-z0-9_]{8}(?:\.tmp)?|old"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temporaries(path: str | os.PathLike, *, now: float | None = None) -> list[Path]:
    """Remove what an earlier, killed write to ``path`` left beside it: ``.<name>.<pid>.<random>.tmp``
    files (:func:`atomic_path`) and ``.<name>.<pid>.<random>`` directories (a model directory's build).
    A leftover is stale when the process that made it (its pid is in the name) is gone or, for names
    without a pid (earlier releases), when it is older than :data:`STALE_SECONDS`; a concurrent
    writer's live temporary is kept, and no other file is touched."""
    import glob

    path = Path(path)
    now = time.time() if now is None else now
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(?:{_TEMP_NAME})$")
    removed = []
    try:
        candidates = list(path.parent.glob(f".{glob.escape(path.name)}.*"))
    except OSError:
        return removed
    for p in candidates:
        m = pattern.match(p.name)
        if m is None or (p.name.endswith(".old") and not p.is_dir()):
            continue
        try:
            if m.group("pid"):
                stale = not _pid_alive(int(m.group("pid")))
            else:
                stale = now - p.lstat().st_mtime > STALE_SECONDS
            if not stale:
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed.append(p)
        except OSError:
            continue
    return removed


FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def replace_directory(tmp: Path, target: Path) -> None:
    """Move the finished directory ``tmp`` to ``target``, replacing what is there: an existing
    directory is set aside as ``.<name>.old`` for the two renames and then removed (a file is
    removed first), so ``target`` is never a half-written directory."""
    if target.is_dir():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old, ignore_errors=True)
        return
    if target.exists():
        target.unlink()
    tmp.rename(target)


def formula_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells that a spreadsheet would run as a formula (starting with
    ``=``, ``+``, ``-``, ``@``, a tab or a carriage return) begin with ``'``. Numbers are not text:
    numeric columns (negative numbers included) are left alone. Vectorised per column."""
    out = None
    for j, dtype in enumerate(frame.dtypes):
        col = frame.iloc[:, j]
        if isinstance(dtype, pd.CategoricalDtype):
            cats = col.cat.categories
            if pd.api.types.infer_dtype(cats, skipna=True) != "string":
                continue
            text = pd.Series(cats, dtype="string")
            risky = text.str.startswith(FORMULA_PREFIXES).to_numpy(dtype=bool)
            if risky.any():
                out = frame.copy() if out is None else out
                out.isetitem(j, col.cat.rename_categories(("'" + text).where(risky, text).tolist()))
            continue
        if pd.api.types.is_object_dtype(dtype):
            kind = pd.api.types.infer_dtype(col, skipna=True)
            if kind != "string" and not kind.startswith("mixed"):
                continue
            is_text = col.notna().to_numpy() if kind == "string" else col.map(type).eq(str).to_numpy()
        elif pd.api.types.is_string_dtype(dtype):
            is_text = col.notna().to_numpy()
        else:
            continue
        text = col.where(is_text).astype("string")
        risky = text.str.startswith(FORMULA_PREFIXES).fillna(False).to_numpy(dtype=bool)
        if risky.any():
            out = frame.copy() if out is None else out
            fixed = col.astype(object)
            fixed = fixed.where(~risky, "'" + text.astype(object).where(risky, ""))
            out.isetitem(j, fixed if pd.api.types.is_object_dtype(dtype) else fixed.astype(dtype))
    return frame if out is None else out


def write_table(frame: pd.DataFrame, path: str | os.PathLike, *, raw_csv: bool = False) -> Path:
    """Write ``frame`` as CSV or Parquet (by suffix), atomically: no half-written file on failure.

    CSV text cells that a spreadsheet would run as a formula get a leading ``'`` (:func:`formula_safe`)
    unless ``raw_csv``; Parquet is written as is."""
    path = Path(path)
    fmt = _format(path)
    if fmt == "csv" and not raw_csv:
        frame = formula_safe(frame)
    with atomic_path(path) as tmp:
        if fmt == "parquet":
            frame.to_parquet(tmp, index=False)
        elif path.name.lower().endswith(".gz"):
            frame.to_csv(tmp, index=False, compression="gzip")
        else:
            _to_csv(frame, tmp)
    return path


def _to_csv(frame: pd.DataFrame, path: Path) -> None:
    """``frame.to_csv(path, index=False)``, byte for byte, in about half the time for float columns.

    For CSV, pandas turns float64 columns into text with numpy's ``astype(str)``, which is most of
    the time of writing a score table. Given the same values as Python floats (object columns), the
    csv writer formats each with ``float.__repr__``: the same shortest round-trip text ('0.1',
    '100.0', '1e-05', 'inf'; NaN still becomes an empty field) at about half the cost. The floats are
    made one block of rows at a time, so they never exist for the whole table at once.
    """
    floats = [j for j, dtype in enumerate(frame.dtypes) if dtype == np.float64]
    if not floats:
        frame.to_csv(path, index=False)
        return
    for start in range(0, max(len(frame), 1), _CSV_CHUNK_ROWS):
        part = frame.iloc[start : start + _CSV_CHUNK_ROWS]
        for j in floats:
            part.isetitem(j, part.iloc[:, j].astype(object))
        part.to_csv(path, index=False, header=start == 0, mode="w" if start == 0 else "a")


def write_text(text: str, path: str | os.PathLike) -> Path:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def latest_snapshots(frame: pd.DataFrame, card: Card) -> pd.DataFrame:
    """Each customer's latest snapshot (all rows when the card has no date column)."""
    if not card.date_column:
        return frame
    d = pd.to_datetime(frame[card.date_column], errors="coerce")
    return frame.loc[d.eq(d.groupby(frame[card.id_column]).transform("max"))].reset_index(drop=True)


# ---- what CSV and JSON show ------------------------------------------------------------------------
POINTS_DECIMALS = 2  # health scores, points, coverage, value (money) and value at risk
PROBABILITY_DECIMALS = 4
_POINT_COLUMNS = ("health_score", "manual_score", "base_score", "coverage", "value", "value_at_risk")
_PROBABILITY_COLUMNS = ("churn_probability", "manual_churn_probability")


def output_decimals(column: str) -> int | None:
    """Decimals a column is rounded to in CSV and JSON (None: left as it is)."""
    if column in _PROBABILITY_COLUMNS:
        return PROBABILITY_DECIMALS
    if column in _POINT_COLUMNS or column.startswith(("points__", "subscore__")):
        return POINTS_DECIMALS
    return None


def rounded_for_output(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy with health and points to 2 decimals and probabilities to 4 (CSV and JSON only: Parquet
    and the Python API keep full precision, and so does ``--full-precision``)."""
    out = frame.copy()
    for col in out.columns:
        d = output_decimals(str(col))
        if d is not None and pd.api.types.is_float_dtype(out[col]):
            out[col] = out[col].round(d)
    return out


def write_output_table(
    frame: pd.DataFrame, path: str | os.PathLike, *, full_precision: bool = False, raw_csv: bool = False
) -> Path:
    """``write_table`` for the tables people read: rounded (``rounded_for_output``) when written as
    CSV, unless ``full_precision``; Parquet always keeps every digit."""
    if _format(Path(path)) == "csv" and not full_precision:
        frame = rounded_for_output(frame)
    return write_table(frame, path, raw_csv=raw_csv)


def _latest_and_current(frame: pd.DataFrame, card: Card) -> tuple[np.ndarray, np.ndarray]:
    """(is the customer's latest snapshot, ... and on the latest snapshot date) per row. A date that
    does not parse is neither."""
    d = pd.to_datetime(frame[card.date_column], errors="coerce")
    latest = d.eq(d.groupby(frame[card.id_column]).transform("max")).to_numpy()
    return latest, latest & d.eq(d.max()).to_numpy()


def active_snapshots(frame: pd.DataFrame, card: Card) -> tuple[pd.DataFrame, int]:
    """The current book: each customer's latest snapshot, kept only when it is on the latest snapshot
    date (customers whose last snapshot is older have left, or stopped being measured). Returns the
    rows and how many customers were left out. Without a date column every row is current."""
    if not card.date_column:
        return frame, 0
    latest, current = _latest_and_current(frame, card)
    return frame.loc[current].reset_index(drop=True), int((latest & ~current).sum())


def active_mask(frame: pd.DataFrame, card: Card) -> np.ndarray:
    """Rows of ``frame`` that are a customer's latest snapshot on the latest snapshot date (all rows
    without a date column)."""
    if not card.date_column or frame.empty or card.date_column not in frame.columns:
        return np.ones(len(frame), dtype=bool)
    return _latest_and_current(frame, card)[1]


def rounded_explanation(result: dict) -> dict:
    """``explain --json`` as people read it: scores and points to 2 decimals, probabilities to 4
    (log-odds, the model's own units, keep every digit)."""

    def walk(obj, key=None):
        if isinstance(obj, dict):
            return {k: walk(v, k) for k, v in obj.items()}
        if isinstance(obj, list):
            return [walk(v, key) for v in obj]
        if isinstance(obj, float) and key is not None:
            if key in ("points", "score", "health_score", "base_score", "value_at_risk"):
                return round(obj, POINTS_DECIMALS)
            if key.endswith("probability"):
                return round(obj, PROBABILITY_DECIMALS)
        return obj

    return walk(result)
