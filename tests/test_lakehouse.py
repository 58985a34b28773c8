"""warehouse.lakehouse: the Spark engine's Parquet tables as DuckDB views, the quarantine mirror.

Parquet files are written here as Spark lays them out (``golden/<table>/part-*.parquet``,
``golden/quarantine/table_name=<t>/part-*.parquet``), so no JVM is needed."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from assets.publishing import QUARANTINE_DDL
from quality.sql_rules import GOLDEN_TYPES
from warehouse import lakehouse


def _write(path: Path, frame: pd.DataFrame) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "_SUCCESS").write_text("")
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path / "part-00000.parquet")


@pytest.fixture
def con():
    connection = duckdb.connect()
    connection.execute("CREATE SCHEMA golden")
    connection.execute(QUARANTINE_DDL)
    yield connection
    connection.close()


def test_a_golden_table_is_a_view_in_the_contract_types(tmp_path, con) -> None:
    listens = pd.DataFrame(
        {
            "user_id": ["u1", "u2"],
            "item_id": ["a1", "a2"],
            "plays": [3, 5],
            "first_ts": pd.to_datetime(["2026-01-01", "2026-01-02"]),
            "last_ts": pd.to_datetime(["2026-01-03", "2026-01-04"]),
        }
    )
    _write(tmp_path / "golden" / "listens", listens)
    con.execute("CREATE TABLE golden.listens AS SELECT 1 AS stale")  # a DuckDB-engine table
    lakehouse.expose_golden(con, tmp_path, "listens")
    kind = con.execute(
        "SELECT table_type FROM information_schema.tables WHERE table_name = 'listens'"
    ).fetchone()[0]
    assert kind == "VIEW"
    types = {row[0]: row[1] for row in con.execute("DESCRIBE golden.listens").fetchall()}
    assert list(types) == list(GOLDEN_TYPES["listens"])
    assert types["plays"] == "BIGINT" and types["first_ts"] == "TIMESTAMP WITH TIME ZONE"
    assert con.execute("SELECT sum(plays) FROM golden.listens").fetchone()[0] == 8
    # Spark rewrites the files: the view reads the new ones
    _write(tmp_path / "golden" / "listens", listens.assign(plays=[1, 1]))
    assert con.execute("SELECT sum(plays) FROM golden.listens").fetchone()[0] == 2


def test_a_table_spark_wrote_no_file_for_is_an_empty_typed_view(tmp_path, con) -> None:
    (tmp_path / "golden" / "listen_events").mkdir(parents=True)
    lakehouse.expose_golden(con, tmp_path, "listen_events")
    assert con.execute("SELECT count(*) FROM golden.listen_events").fetchone()[0] == 0
    columns = [row[0] for row in con.execute("DESCRIBE golden.listen_events").fetchall()]
    assert columns == list(GOLDEN_TYPES["listen_events"])


def test_the_quarantine_partition_is_mirrored_and_replaced(tmp_path, con) -> None:
    rows = pd.DataFrame(
        {
            "record_key": ["u9", "u10"],
            "reason": ["missing_key: user_id", "duplicate_key: user_id"],
            "raw_row": ["{}", "{}"],
            "source_file": ["users.csv", "users.csv"],
            "source_line": [4, 9],
        }
    )
    partition = tmp_path / "golden" / "quarantine" / "table_name=users"
    _write(partition, rows)
    con.execute(
        "INSERT INTO golden.quarantine VALUES ('artists', 'x', 'bad', '{}', 'a.csv', 1, 'r0', "
        "now())"
    )
    at = pd.Timestamp("2026-11-28T00:00:00Z")
    assert lakehouse.mirror_quarantine(con, tmp_path, "users", "run-1", at) == 2
    assert lakehouse.mirror_quarantine(con, tmp_path, "users", "run-2", at) == 2  # replaced
    mirrored = con.execute(
        "SELECT record_key, run_id, source_line FROM golden.quarantine "
        "WHERE table_name = 'users' ORDER BY source_line"
    ).fetchall()
    assert mirrored == [("u9", "run-2", 4), ("u10", "run-2", 9)]
    assert con.execute("SELECT count(*) FROM golden.quarantine").fetchone()[0] == 3
    # a table with nothing quarantined on Spark has no partition: its rows go
    assert lakehouse.mirror_quarantine(con, tmp_path, "artists", "run-2", at) == 0
