"""The Spark engine's Parquet tables, read by DuckDB in place.

With ``CRATEDIGGER_ENGINE=spark`` the raw landing, row rules, quarantine and golden tables are
built by Spark (:mod:`warehouse.spark_engine`) as Parquet under ``<data dir>/spark``. What runs
downstream of them (features, models, playlists, reports) reads ``raw.<table>`` and
``golden.<table>`` from the DuckDB warehouse: here those names become DuckDB **views** over the
Parquet files, with the golden contract's DuckDB types, so nothing is copied and the downstream
SQL is the same on both engines. A view reads the files when it is queried, so a table Spark
rebuilds is seen at once. The quarantine (bad rows only) is mirrored into the warehouse's
``golden.quarantine`` table, which golden tables built in DuckDB downstream share.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from quality.sql_rules import GOLDEN_TYPES, QUARANTINE_SQL_COLUMNS, ident
from sources.base import RAW_COLUMNS

RAW_LINEAGE_TYPES = {
    "_source_file": "VARCHAR",
    "_source_line": "BIGINT",
    "_loaded_at": "TIMESTAMPTZ",
}


def parquet_files(path: Path) -> list[Path]:
    """The Parquet data files of a Spark table directory (partition folders included)."""
    return sorted(p for p in path.rglob("*.parquet") if not p.name.startswith((".", "_")))


def _literal(value: str | Path) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def view_sql(name: str, path: Path, types: dict[str, str]) -> str:
    """``CREATE OR REPLACE VIEW name`` over the Parquet files of ``path``, each column of
    ``types`` cast to its DuckDB type. A table without files (Spark writes none for no rows)
    is an empty view of those columns."""
    if parquet_files(path):
        columns = ", ".join(f"CAST({ident(c)} AS {t}) AS {ident(c)}" for c, t in types.items())
        source = f"read_parquet({_literal(path / '*.parquet')})"
        return f"CREATE OR REPLACE VIEW {name} AS SELECT {columns} FROM {source}"
    columns = ", ".join(f"CAST(NULL AS {t}) AS {ident(c)}" for c, t in types.items())
    return f"CREATE OR REPLACE VIEW {name} AS SELECT {columns} LIMIT 0"


def _replace(con: Any, schema: str, table: str, sql: str) -> None:
    """Run ``sql`` (a view of ``schema.table``) after dropping a table of that name (a
    warehouse first built by the DuckDB engine)."""
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    kind = con.execute(
        "SELECT table_type FROM information_schema.tables WHERE table_schema = ? "
        "AND table_name = ?",
        [schema, table],
    ).fetchone()
    if kind is not None and kind[0] == "BASE TABLE":
        con.execute(f"DROP TABLE {schema}.{table}")
    con.execute(sql)


def expose_raw(con: Any, directory: str | Path, table: str, schema: str = "raw") -> None:
    """``raw.<table>`` as a view of Spark's landed Parquet table (text columns, lineage)."""
    path = Path(directory).resolve() / schema / table
    types = {c: "VARCHAR" for c in RAW_COLUMNS[table]} | RAW_LINEAGE_TYPES
    _replace(con, schema, table, view_sql(f"{schema}.{table}", path, types))


def expose_golden(con: Any, directory: str | Path, table: str, schema: str = "golden") -> None:
    """``golden.<table>`` as a view of Spark's golden Parquet table, in the contract's types."""
    path = Path(directory).resolve() / schema / table
    _replace(con, schema, table, view_sql(f"{schema}.{table}", path, GOLDEN_TYPES[table]))


def mirror_quarantine(
    con: Any,
    directory: str | Path,
    table: str,
    run_id: str,
    quarantined_at: Any,
    schema: str = "golden",
) -> int:
    """Replace ``table``'s rows of the warehouse's ``golden.quarantine`` by Spark's quarantine
    partition of it (one transaction; the table exists, see ``assets.publishing.QUARANTINE_DDL``).

    The quarantine stays one DuckDB table whatever the engine: golden tables built downstream
    in DuckDB (terms, audio clips) quarantine into it too, and it holds bad rows only, so it
    does not grow with the data. Returns the rows copied."""
    path = Path(directory).resolve() / schema / "quarantine" / f"table_name={table}"
    files = parquet_files(path)
    con.execute("BEGIN TRANSACTION")
    con.execute(f"DELETE FROM {schema}.quarantine WHERE table_name = ?", [table])
    if files:
        columns = ", ".join(
            f"CAST({ident(c)} AS {t})"
            for c, t in QUARANTINE_SQL_COLUMNS.items()
            if c != "table_name"
        )
        con.execute(
            f"INSERT INTO {schema}.quarantine SELECT ?, {columns}, ?, ? "
            f"FROM read_parquet({_literal(path / '*.parquet')})",
            [table, run_id, quarantined_at],
        )
    con.execute("COMMIT")
    return con.execute(
        f"SELECT count(*) FROM {schema}.quarantine WHERE table_name = ?", [table]
    ).fetchone()[0]
