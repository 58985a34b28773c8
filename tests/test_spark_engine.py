"""The Spark engine (warehouse.spark_engine) against DuckDB (quality.sql_rules): the same raw
tables, golden tables and quarantine, row for row, from one rule set."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from orchestration.settings import SettingsError, load_settings
from quality import sql_rules
from quality.rules import GOLDEN_COLUMNS
from sources import HetrecSource
from sources.base import LINEAGE_COLUMNS, RAW_COLUMNS, RawBundle
from sources.generic import land_frame

LOADED_AT = pd.Timestamp("2026-11-27T00:00:00Z")
QUARANTINE_KEYS = ["table_name", "record_key", "reason", "raw_row", "source_line"]


# ---------------------------------------------------------------------------- helpers


def _rows(frame: pd.DataFrame, sort: bool = True) -> list[list[object]]:
    """Rows as plain Python values (null as None), sorted unless the order is the point."""
    frame = frame.reset_index(drop=True).astype(object)
    rows = frame.where(frame.notna(), None).values.tolist()
    return sorted(rows, key=lambda row: [(v is not None, str(v)) for v in row]) if sort else rows


def _duckdb_build(
    bundle: RawBundle,
) -> tuple[duckdb.DuckDBPyConnection, sql_rules.SqlBundleValidation]:
    """The DuckDB path: land every raw table as the raw asset does, then the SQL rules."""
    con = duckdb.connect()
    con.execute("CREATE SCHEMA raw")
    for table in RAW_COLUMNS:
        land_frame(con, bundle.table(table), f"raw.{table}", table, LOADED_AT)
    result = sql_rules.validate_bundle(
        con, bundle.item_level, bundle.listens_kind, tables=list(bundle.tables)
    )
    return con, result


def _spark_build(spark, bundle: RawBundle, directory: Path):
    from warehouse.spark_engine import build_warehouse

    return build_warehouse(spark, bundle, directory, LOADED_AT)


def _assert_same_golden(con: duckdb.DuckDBPyConnection, built) -> None:
    """Every golden table and the quarantine equal, row for row (both sorted)."""
    tables = [*built.validation.tables, "items", "listens", "listen_events"]
    for name in dict.fromkeys(tables):
        duck = con.execute(f"SELECT * FROM golden.{name}").df()
        spark = pd.read_parquet(built.path(name))
        assert list(spark.columns) == GOLDEN_COLUMNS[name], name
        assert len(spark) == len(duck), name
        assert _rows(spark) == _rows(duck), name
    duck_q = con.execute(f"SELECT {', '.join(QUARANTINE_KEYS)} FROM golden.quarantine").df()
    spark_q = pd.read_parquet(built.path("quarantine"))
    spark_q["table_name"] = spark_q["table_name"].astype(str)
    assert len(spark_q) == len(duck_q)
    assert _rows(spark_q[QUARANTINE_KEYS]) == _rows(duck_q)


def _assert_same_results(duck: sql_rules.SqlBundleValidation, built) -> None:
    """Same counts, reasons and notes per table; raw = golden + quarantined on Spark."""
    assert built.validation.reconciles
    assert built.validation.tables == duck.tables


# ---------------------------------------------------------------------------- tests


@pytest.mark.slow  # several minutes on 2 cores: one Spark job per rule step and table
def test_hetrec_on_spark_equals_duckdb_row_for_row(spark, hetrec_dir: Path, tmp_path: Path):
    bundle = HetrecSource(hetrec_dir).read()
    con, duck = _duckdb_build(bundle)
    built = _spark_build(spark, bundle, tmp_path / "warehouse")
    _assert_same_results(duck, built)
    assert built.landed == {t: len(bundle.table(t)) for t in RAW_COLUMNS}
    # the raw tables: same columns and rows, in landing order by the row position column
    for table in RAW_COLUMNS:
        if not built.landed[table]:  # landed as a schema only (no files)
            assert spark.table(f"raw.{table}").count() == 0, table
            continue
        raw = pd.read_parquet(tmp_path / "warehouse" / "raw" / table)
        columns = RAW_COLUMNS[table] + LINEAGE_COLUMNS + ["_loaded_at"]
        assert list(raw.columns) == columns + ["_row_pos"], table
        landed = raw.sort_values("_row_pos")[columns]
        assert _rows(landed, sort=False) == _rows(
            con.execute(f"SELECT * FROM raw.{table}").df(), sort=False
        ), table
    _assert_same_golden(con, built)
    assert spark.table("golden.quarantine").count() == sum(
        r.quarantined_rows for r in duck.tables.values()
    )


def _raw(rows: list[dict[str, object]], file: str) -> pd.DataFrame:
    frame = pd.DataFrame(rows, dtype=object)
    frame["_source_file"] = file
    frame["_source_line"] = np.arange(2, len(frame) + 2)
    return frame


# A track-level event source with a few malformed rows in every table (HetRec covers the
# artist level with aggregated plays).
BAD_TABLES = {
    "users": [
        {"user_id": "u1"},
        {"user_id": "u2"},
        {"user_id": "u1"},
        {"user_id": "  "},
        {"user_id": "u\u0065\u0301"},  # NFD of ...
        {"user_id": "u\u00e9"},  # ... this one: a duplicate after NFC
        {"user_id": "\ufeffu3\u200b"},
        {"user_id": "it's"},
    ],
    "artists": [
        {"artist_id": "a1", "name": "Caf\ufffd", "genre": " rock ", "url": None},
        {"artist_id": "a2", "name": " ", "genre": "", "url": "http://a2"},
        {"artist_id": "x" * 600, "name": "Long id", "genre": None, "url": None},
        {"artist_id": "a\ufffd", "name": "Bad id", "genre": None, "url": None},
    ],
    "tracks": [
        {"track_id": "t1", "artist_id": "a1", "title": "One", "duration_s": "200.5", "genre": ""},
        {"track_id": "t2", "artist_id": "a1", "title": "Two", "duration_s": "-3", "genre": None},
        {"track_id": "t3", "artist_id": "a9", "title": "Three", "duration_s": "100", "genre": None},
        {"track_id": "t4", "artist_id": "a2", "title": "", "duration_s": "", "genre": "jazz"},
        {"track_id": "t1", "artist_id": "a1", "title": "Again", "duration_s": "1", "genre": None},
    ],
    "listens": [
        {"user_id": "u1", "item_id": "t1", "plays": "1", "ts": "2026-11-01T10:00:00Z"},
        {"user_id": "u1", "item_id": "t1", "plays": "1", "ts": "2026-11-03T10:00:00Z"},
        {"user_id": "u1", "item_id": "t1", "plays": "1", "ts": "2026-11-01T10:00:00Z"},
        {"user_id": "u1", "item_id": "t1", "plays": "1", "ts": "not a date"},
        {"user_id": "u1", "item_id": "t1", "plays": "1", "ts": ""},
        {"user_id": "u2", "item_id": "t4", "plays": "2", "ts": "1793527200000"},
        {"user_id": "u2", "item_id": "t4", "plays": "2", "ts": "1793527200000000"},
        {"user_id": "u\u00e9", "item_id": "t4", "plays": "1", "ts": "2026-11-01 10:00:00+02:00"},
        {"user_id": "u2", "item_id": "t1", "plays": "1", "ts": "2026-11-01T24:00:00"},
        {"user_id": "u2", "item_id": "t1", "plays": "1", "ts": "2009-02-31"},
        {"user_id": "u2", "item_id": "t2", "plays": "1", "ts": "1795000000"},
        {"user_id": "ghost", "item_id": "t1", "plays": "1", "ts": "1795000000"},
        {"user_id": "u1", "item_id": "t1", "plays": "abc", "ts": "1795000000"},
        {"user_id": "u1", "item_id": "t1", "plays": "2.5", "ts": "1795000001"},
        {"user_id": "u1", "item_id": "t1", "plays": "1e300", "ts": "1795000002"},
        {"user_id": "it's", "item_id": "t1", "plays": "0", "ts": "1795000003"},
        {"user_id": "u1", "item_id": "t1", "plays": "1", "ts": "1850-01-01"},
    ],
    "tags": [
        {"tag_id": "g1", "tag": "rock"},
        {"tag_id": "g2", "tag": ""},
        {"tag_id": "g1", "tag": "again"},
        {"tag_id": "", "tag": "no id"},
    ],
    "tag_assignments": [
        {"user_id": "u1", "artist_id": "a1", "tag_id": "g1", "ts": "2009-04-01"},
        {"user_id": None, "artist_id": "a1", "tag_id": "g1", "ts": None},
        {"user_id": None, "artist_id": "a1", "tag_id": "g1", "ts": None},
        {"user_id": "u1", "artist_id": "a1", "tag_id": "g1", "ts": "2009-04-02"},
        {"user_id": "u9", "artist_id": "a1", "tag_id": "g1", "ts": None},
        {"user_id": "u1", "artist_id": "a9", "tag_id": "g1", "ts": None},
        {"user_id": "u1", "artist_id": "a1", "tag_id": "g9", "ts": None},
        {"user_id": "u2", "artist_id": "a1", "tag_id": "g1", "ts": "2009-13-01"},
    ],
    "artist_text": [
        {"artist_id": "a1", "text": "loud\tand\nclear"},
        {"artist_id": "a1", "text": "again"},
        {"artist_id": "a2", "text": " "},
        {"artist_id": "a7", "text": 'who? "nobody"'},
    ],
    "friends": [
        {"user_id": "u1", "friend_id": "u2"},
        {"user_id": "u1", "friend_id": "u1"},
        {"user_id": "u1", "friend_id": "stranger"},
        {"user_id": "u1", "friend_id": "u2"},
    ],
}


@pytest.mark.slow  # about 80 Spark jobs of ~2 s each on a busy 2-core machine
def test_malformed_rows_get_the_same_reasons_on_both_engines(spark, tmp_path: Path):
    tables = {name: _raw(rows, f"/data/{name}.csv") for name, rows in BAD_TABLES.items()}
    bundle = RawBundle("bad", tables, item_level="track", listens_kind="events")
    con, duck = _duckdb_build(bundle)
    built = _spark_build(spark, bundle, tmp_path / "warehouse")
    _assert_same_results(duck, built)
    codes = {code for r in duck.tables.values() for code in r.reason_counts}
    assert {"duplicate_key", "duplicate_event", "plays_not_integer", "ts_unparseable"} <= codes
    _assert_same_golden(con, built)


def test_engine_setting_names_the_key_and_the_choices() -> None:
    assert load_settings({}).engine == "duckdb"
    assert load_settings({"CRATEDIGGER_ENGINE": "Spark"}).engine == "spark"
    assert load_settings({}).spark_master == "local[2]"
    with pytest.raises(SettingsError, match=r"CRATEDIGGER_ENGINE='polars'.*duckdb, spark"):
        load_settings({"CRATEDIGGER_ENGINE": "polars"})
    with pytest.raises(SettingsError, match="SPARK_MASTER"):
        load_settings({"SPARK_MASTER": "localhost:7077"})
