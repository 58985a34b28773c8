"""Issue 13: golden tables are validated without loading them whole (exact counts in DuckDB,
the GX suite on a seeded sample)."""

from __future__ import annotations

import duckdb
import pandas as pd

from quality.suites import validate_golden


def reader(con: duckdb.DuckDBPyConnection):
    def read(sql: str, params: list | None = None) -> pd.DataFrame:
        return con.execute(sql, params or []).df()

    return read


def warehouse(tmp_path, listens: pd.DataFrame) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("CREATE SCHEMA golden")
    con.execute("CREATE TABLE golden.users AS SELECT 'u' || i AS user_id FROM range(50) t(i)")
    con.execute("CREATE TABLE golden.items AS SELECT 'i' || i AS item_id FROM range(40) t(i)")
    con.register("frame", listens)
    con.execute("CREATE TABLE golden.listens AS SELECT * FROM frame")
    return con


def listens(n_users: int = 50, n_items: int = 40) -> pd.DataFrame:
    pairs = [(f"u{u}", f"i{i}") for u in range(n_users) for i in range(n_items) if (u + i) % 3]
    frame = pd.DataFrame(pairs, columns=["user_id", "item_id"])
    frame["plays"] = 1
    frame["first_ts"] = pd.Timestamp("2026-11-01", tz="UTC")
    frame["last_ts"] = pd.Timestamp("2026-11-02", tz="UTC")
    return frame


def test_clean_table_passes_on_a_sample(tmp_path) -> None:
    con = warehouse(tmp_path, listens())
    result, rows, sampled = validate_golden(
        reader(con), tmp_path / "gx", "listens", max_rows=5000, sample_rows=300
    )
    assert rows == len(listens()) and sampled
    assert result.success, result.as_markdown()
    engine = [o for o in result.outcomes if o.expectation.startswith("engine:")]
    assert {o.expectation for o in engine} >= {
        "engine: row count between",
        "engine: unique",
        "engine: in golden.users.user_id",
    }
    # the same seed samples the same rows: the verdict and the counts repeat
    again, _, _ = validate_golden(
        reader(con), tmp_path / "gx", "listens", max_rows=5000, sample_rows=300
    )
    assert [o.unexpected_count for o in again.outcomes] == [
        o.unexpected_count for o in result.outcomes
    ]


def test_engine_counts_catch_what_a_sample_misses(tmp_path) -> None:
    bad = listens()
    orphan = pd.DataFrame({"user_id": ["ghost"], "item_id": ["i1"], "plays": [1]}).assign(
        first_ts=bad["first_ts"].iloc[0], last_ts=bad["last_ts"].iloc[0]
    )
    bad = pd.concat([bad, orphan, bad.iloc[[0]]], ignore_index=True)  # + orphan + duplicate
    con = warehouse(tmp_path, bad)
    result, rows, sampled = validate_golden(
        reader(con), tmp_path / "gx", "listens", max_rows=5000, sample_rows=50
    )
    assert sampled and not result.success
    failed = {o.expectation: o for o in result.failed_expectations}
    assert failed["engine: in golden.users.user_id"].unexpected_count == 1
    assert failed["engine: in golden.users.user_id"].examples == ["ghost"]
    assert failed["engine: unique"].unexpected_count == 1
    # the row-count ceiling is the raw row count
    small, _, _ = validate_golden(reader(con), tmp_path / "gx", "listens", max_rows=10)
    assert "engine: row count between" in {o.expectation for o in small.failed_expectations}
