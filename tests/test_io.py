"""Reading and writing tables: CSV and Parquet round trips, clear errors, atomic writes."""

from __future__ import annotations

import pandas as pd
import pytest

from ml.data.io import atomic_path, read_table, write_table, write_text
from ml.errors import DataError


@pytest.fixture
def frame(generated) -> pd.DataFrame:
    return generated.frame.head(200).copy()


def test_parquet_round_trip_keeps_values_and_types(tmp_path, frame):
    path = write_table(frame, tmp_path / "snapshots.parquet")
    assert path == tmp_path / "snapshots.parquet"
    pd.testing.assert_frame_equal(read_table(path), frame)


def test_csv_round_trip(tmp_path, frame):
    path = write_table(frame, tmp_path / "snapshots.csv")
    back = read_table(path)
    # CSV carries no types: dates come back as text and are parsed by whoever needs them
    assert back["snapshot_date"].astype(str).tolist() == frame["snapshot_date"].dt.strftime("%Y-%m-%d").tolist()
    back["snapshot_date"] = pd.to_datetime(back["snapshot_date"]).astype(frame["snapshot_date"].dtype)
    pd.testing.assert_frame_equal(back, frame)
    assert back["csat"].isna().sum() == frame["csat"].isna().sum() > 0  # gaps survive as NaN


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_read_selected_columns_ignores_absent_ones(tmp_path, frame, suffix):
    path = write_table(frame, tmp_path / f"snapshots{suffix}")
    back = read_table(path, columns=["customer_id", "csat", "not_there"])
    assert list(back.columns) == ["customer_id", "csat"]
    assert len(back) == len(frame)


@pytest.mark.parametrize(
    ("name", "content", "error", "match"),
    [
        pytest.param(
            "data.xlsx",
            b"x",
            DataError,
            r"data\.xlsx: unknown table format '\.xlsx'; use a \.csv or "
            r"\.parquet file",
            id="unknown-suffix",
        ),
        pytest.param("data", b"x", DataError, r"unknown table format ''", id="no-suffix"),
        pytest.param("missing.csv", None, DataError, r"missing\.csv: file not found", id="missing-csv"),
        pytest.param("missing.parquet", None, DataError, r"missing\.parquet: file not found", id="missing-parquet"),
        pytest.param(
            "broken.parquet",
            b"not a parquet file",
            DataError,
            r"broken\.parquet: could not read the table",
            id="corrupt-parquet",
        ),
    ],
)
def test_read_errors(tmp_path, name, content, error, match):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(error, match=match):
        read_table(path)


def test_write_unknown_suffix_writes_nothing(tmp_path, frame):
    with pytest.raises(DataError, match=r"unknown table format '\.json'"):
        write_table(frame, tmp_path / "out.json")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("suffix", "method"), [(".csv", "to_csv"), (".parquet", "to_parquet")])
def test_failed_write_leaves_no_file(tmp_path, frame, monkeypatch, suffix, method):
    def fail(self, path, *args, **kwargs):
        with open(path, "w") as fh:  # a half-written file, then the failure
            fh.write("customer_id,")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, method, fail)
    target = tmp_path / "sub" / f"scores{suffix}"
    with pytest.raises(OSError, match="disk full"):
        write_table(frame, target)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []  # no temp file left behind either


def test_failed_write_keeps_the_previous_file(tmp_path, frame, monkeypatch):
    target = tmp_path / "scores.csv"
    target.write_text("old\n", encoding="utf-8")

    def fail(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", fail)
    with pytest.raises(OSError):
        write_table(frame, target)
    assert target.read_text(encoding="utf-8") == "old\n"
    assert list(tmp_path.iterdir()) == [target]


def test_write_text_is_atomic(tmp_path):
    path = write_text("hello\n", tmp_path / "a" / "note.txt")
    assert path.read_text(encoding="utf-8") == "hello\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["note.txt"]


def test_atomic_path_renames_only_on_success(tmp_path):
    target = tmp_path / "x.txt"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("partial", encoding="utf-8")
        assert tmp.parent == tmp_path and tmp != target
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_text("done", encoding="utf-8")
    assert target.read_text(encoding="utf-8") == "done"
    assert list(tmp_path.iterdir()) == [target]
