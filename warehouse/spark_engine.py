"""The raw landing, row rules, quarantine and golden tables on Spark, from the DuckDB definitions.

The rules are those of :mod:`quality.sql_rules`, transpiled by sqlglot
(:func:`quality.sql_rules.transpile_to_spark`): there is no second rule set. Each statement's
query runs as Spark SQL; what differs between the engines is named in :data:`SPARK_DIFFERENCES`
and handled in this module only:

=====================  ==========================================  ============================
step                   DuckDB (``quality.sql_rules``)              Spark (here)
=====================  ==========================================  ============================
row position           ``rowid`` of the raw table                  ``_row_pos``, written at
                                                                   landing by
                                                                   ``monotonically_increasing_id``
``NFC_NORMALIZE``      built-in function                           Python UDF of the same name
``CREATE [TEMP]        a table in the transaction                  the query, persisted as a
TABLE x AS q``                                                     temporary view ``x``
publish                stage becomes the golden table (DELETE,     ``INSERT OVERWRITE`` of the
                       DROP COLUMN), quarantine slice replaced,    golden table and of the
                       then COMMIT                                 quarantine's partition, after
                                                                   the counts reconcile
row order              golden rows keep the raw order              Parquet files keep no order
=====================  ==========================================  ============================

Layout under ``directory``: ``raw/<table>`` and ``golden/<table>`` are Parquet tables (registered
in the session catalog as ``raw.<table>`` and ``golden.<table>``), and the quarantine is
``golden/quarantine/table_name=<table>`` (one partition per golden table, replaced when that
table is rebuilt). Raw rows = golden rows + quarantined rows is checked per table before
anything is published.

How it is called (the Dagster assets run DuckDB; ``CRATEDIGGER_ENGINE=spark`` in
``orchestration.settings`` names this engine, ``SPARK_MASTER`` the master)::

    from orchestration.settings import load_settings
    from sources import HetrecSource
    from warehouse.spark_engine import build_warehouse, spark_session

    settings = load_settings()
    spark = spark_session(settings.spark_master)
    built = build_warehouse(spark, HetrecSource(path).read(), settings.data_dir / "spark")
    built.validation.tables["listens"].quarantined_rows
    spark.table("golden.listens")                   # or pd.read_parquet(built.path("listens"))

The generic source is read by its Python reader here (``Source.read``); DuckDB lands its large
files with its own CSV reader, which this module does not replace.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import shutil
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd
import pyarrow as pa
import sqlglot
from sqlglot import exp

from quality import sql_rules
from quality.rules import GOLDEN_COLUMNS, MAX_DURATION_S, reconcile
from quality.sql_rules import GOLDEN_TYPES, QUARANTINE_SQL_COLUMNS, ident
from sources.base import LINEAGE_COLUMNS, RAW_COLUMNS, RawBundle
from warehouse.spark import spark_session as session

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

logger = logging.getLogger(__name__)

POSITION_COLUMN = "_row_pos"
# Read by the rules on every run (set on the session, also on one started elsewhere).
SESSION_CONF = {
    "spark.sql.session.timeZone": "UTC",  # the timestamp rules read text as UTC
    "spark.sql.jsonGenerator.ignoreNullFields": "false",  # raw_row keeps nulls, as DuckDB's
    "spark.sql.execution.arrow.pyspark.enabled": "true",  # pandas nulls stay null
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",  # UTC instants, not INT96
}
SPARK_DIFFERENCES = {
    "position": f"rowid -> {POSITION_COLUMN} (monotonically_increasing_id at landing)",
    "NFC_NORMALIZE": "built-in -> Python UDF",
    "CREATE [TEMP] TABLE x AS q": "q persisted as temporary view x",
    "publish": "DELETE/DROP COLUMN/COMMIT -> INSERT OVERWRITE after the counts reconcile",
    "row order": "top-level ORDER BY dropped (Parquet keeps no order)",
    "session": ", ".join(f"{k}={v}" for k, v in SESSION_CONF.items()),
}


# --------------------------------------------------------------------------- session


def spark_session(master: str | None = None, app_name: str = "cratedigger") -> SparkSession:
    """Start (or get) a quiet SparkSession ready for the rules.

    Parameters
    ----------
    master
        The Spark master; default ``SPARK_MASTER`` (``local[2]``), see
        :func:`orchestration.settings.spark_master`.
    app_name
        The application name shown by the cluster.

    Returns
    -------
    SparkSession
        Log level ERROR, no UI or progress bars, :data:`SESSION_CONF` set and the
        ``NFC_NORMALIZE`` UDF registered.
    """
    spark = session(master, app_name)
    prepare_session(spark)
    return spark


def prepare_session(spark: SparkSession) -> None:
    """Set :data:`SESSION_CONF` and register ``NFC_NORMALIZE`` on ``spark``."""
    for key, value in SESSION_CONF.items():
        spark.conf.set(key, value)
    normalize = unicodedata.normalize

    def nfc_normalize(value: str | None) -> str | None:
        # a closure, so that cloudpickle ships it by value: Python workers then import
        # unicodedata only, not this module and its dependencies
        return None if value is None else normalize("NFC", value)

    spark.udf.register("NFC_NORMALIZE", nfc_normalize, "string")


# --------------------------------------------------------------------------- SQL


@functools.lru_cache(maxsize=256)
def spark_query(sql: str) -> str:
    """A DuckDB statement of :mod:`quality.sql_rules` as a Spark SQL query.

    sqlglot transpiles it from DuckDB to Spark as :func:`quality.sql_rules.transpile_to_spark`
    does; of a ``CREATE ... AS query`` only the query is kept (Spark materialises it here), and
    its top-level ``ORDER BY`` is dropped (Parquet tables keep no row order: a sort would cost
    a job and buy nothing). Cached: statements repeat from run to run and parsing takes a while.
    """
    tree = sqlglot.parse_one(sql, read="duckdb")
    if isinstance(tree, exp.Create):
        tree = tree.expression
    tree.set("order", None)
    return tree.sql(dialect="spark")


def spark_type(duckdb_type: str) -> str:
    """The Spark SQL type of a DuckDB type name (``TIMESTAMPTZ`` -> ``TIMESTAMP``, ...)."""
    return exp.DataType.build(duckdb_type, dialect="duckdb").sql(dialect="spark")


def _text(value: str | Path) -> str:
    """A Spark SQL string literal (backslash escapes, unlike DuckDB)."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _materialise(spark: SparkSession, sql: str, view: str) -> DataFrame:
    """Run the query of ``sql`` once: persisted and registered as temporary view ``view``."""
    frame = spark.sql(spark_query(sql)).persist()
    frame.createOrReplaceTempView(view)
    return frame


# --------------------------------------------------------------------------- tables


def table_path(directory: str | Path, schema: str, table: str) -> Path:
    """Where ``<schema>.<table>`` is stored under ``directory``."""
    return Path(directory).resolve() / schema / table


def register_table(
    spark: SparkSession,
    name: str,
    path: Path,
    types: dict[str, str] | None = None,
    partition: str | None = None,
) -> None:
    """(Re)register ``name`` in the session catalog as the Parquet table at ``path``.

    ``types`` (DuckDB type names) give its schema; without them Spark reads it from the files.
    A ``partition`` column makes it partitioned, its existing partitions recovered.
    """
    schema = name.split(".", 1)[0]
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {schema}")
    spark.sql(f"DROP TABLE IF EXISTS {name}")
    body = ", ".join(f"`{c}` {spark_type(t)}" for c, t in (types or {}).items())
    columns = f"({body}) " if body else ""
    partitioned = f"PARTITIONED BY ({partition}) " if partition else ""
    spark.sql(f"CREATE TABLE {name} {columns}USING parquet {partitioned}LOCATION {_text(path)}")
    if partition and path.is_dir():
        spark.sql(f"ALTER TABLE {name} RECOVER PARTITIONS")


def register_warehouse(
    spark: SparkSession,
    directory: str | Path,
    raw_schema: str = "raw",
    golden_schema: str = "golden",
) -> list[str]:
    """Register every raw and golden Parquet table found under ``directory`` (a new session
    reading what an earlier one built). Returns the registered names."""
    names = []
    for schema, tables in ((raw_schema, RAW_COLUMNS), (golden_schema, GOLDEN_TYPES)):
        for table in tables:
            if table_path(directory, schema, table).is_dir():
                register_table(spark, f"{schema}.{table}", table_path(directory, schema, table))
                names.append(f"{schema}.{table}")
    if table_path(directory, golden_schema, "quarantine").is_dir():
        _register_quarantine(spark, directory, golden_schema)
        names.append(f"{golden_schema}.quarantine")
    return names


def _register_quarantine(spark: SparkSession, directory: str | Path, golden_schema: str) -> str:
    name = f"{golden_schema}.quarantine"
    path = table_path(directory, golden_schema, "quarantine")
    register_table(spark, name, path, QUARANTINE_SQL_COLUMNS, partition="table_name")
    return name


def publish(
    spark: SparkSession, directory: str | Path, golden_schema: str, table: str, query: str
) -> None:
    """``INSERT OVERWRITE`` golden ``table`` with the Spark SQL ``query`` (its columns in the
    order of ``GOLDEN_COLUMNS``)."""
    name = f"{golden_schema}.{table}"
    register_table(spark, name, table_path(directory, golden_schema, table), GOLDEN_TYPES[table])
    spark.sql(f"INSERT OVERWRITE TABLE {name} {query}")


# --------------------------------------------------------------------------- landing


def raw_arrow_schema(table: str) -> pa.Schema:
    """The raw contract of ``table`` as Arrow: text columns, then the lineage columns."""
    return pa.schema(
        [(c, pa.string()) for c in RAW_COLUMNS[table]]
        + [("_source_file", pa.string()), ("_source_line", pa.int64())]
    )


def land_frame(
    spark: SparkSession,
    frame: pd.DataFrame,
    table: str,
    directory: str | Path,
    loaded_at: Any,
    raw_schema: str = "raw",
) -> int:
    """Land a frame read by Python as ``<raw_schema>.<table>`` (Parquet under ``directory``).

    The columns are those of the DuckDB landing (``sources.generic.land_frame``): the raw
    contract as text, ``_source_file``, ``_source_line``, ``_loaded_at``; plus
    :data:`POSITION_COLUMN`, the row's position, increasing in the frame's order.
    """
    from pyspark.sql import functions as F

    columns = RAW_COLUMNS[table] + LINEAGE_COLUMNS
    path = table_path(directory, raw_schema, table)
    if frame.empty:  # the schema alone: no Spark job for a table the source does not have
        _empty_raw_table(spark, f"{raw_schema}.{table}", path, table)
        return 0
    frame = frame.reindex(columns=columns).astype("object")
    arrow = pa.Table.from_pandas(frame, schema=raw_arrow_schema(table), preserve_index=False)
    landed = (
        spark.createDataFrame(arrow)
        .withColumn("_loaded_at", F.lit(pd.Timestamp(loaded_at).to_pydatetime()))
        .withColumn(POSITION_COLUMN, F.monotonically_increasing_id())
    )
    landed.write.mode("overwrite").parquet(str(path))
    register_table(spark, f"{raw_schema}.{table}", path)
    return len(frame)


def _empty_raw_table(spark: SparkSession, name: str, path: Path, table: str) -> None:
    """An empty raw table with the landed columns (old files at ``path`` removed)."""
    if path.is_dir():
        shutil.rmtree(path)
    types = {c: "VARCHAR" for c in RAW_COLUMNS[table]}
    types |= {"_source_file": "VARCHAR", "_source_line": "BIGINT", "_loaded_at": "TIMESTAMPTZ"}
    register_table(spark, name, path, {**types, POSITION_COLUMN: "BIGINT"})


def land_bundle(
    spark: SparkSession,
    bundle: RawBundle,
    directory: str | Path,
    loaded_at: Any = None,
    raw_schema: str = "raw",
) -> dict[str, int]:
    """Land every raw table of ``bundle`` (empty ones too, as the DuckDB landing does).
    Returns the rows landed per table."""
    loaded_at = pd.Timestamp.now(tz="UTC").floor("s") if loaded_at is None else loaded_at
    return {
        table: land_frame(spark, bundle.table(table), table, directory, loaded_at, raw_schema)
        for table in RAW_COLUMNS
    }


# --------------------------------------------------------------------------- rules


def _all_null(spark: SparkSession, raw: str, columns: list[str]) -> list[str]:
    """The ``columns`` null in every raw row (read as absent, as on DuckDB)."""
    from pyspark.sql import functions as F

    if not columns:
        return []
    counts = spark.table(raw).agg(*[F.count(F.col(f"`{c}`")) for c in columns]).first()
    return [c for c, n in zip(columns, counts, strict=True) if n == 0]


def _golden_rows_sql(table: str, stage: str, bad: str) -> str:
    """The stage's rows that were not rejected, golden columns only (DuckDB SQL)."""
    columns = ", ".join(f"s.{ident(c)}" for c in GOLDEN_COLUMNS[table])
    return (
        f"SELECT {columns} FROM {stage} AS s "
        f"WHERE NOT EXISTS (SELECT 1 FROM {bad} AS b WHERE b._pos = s._pos)"
    )


def _quarantine_sql(quarantine: str, table: str, rows: str) -> str:
    """Replace the quarantine partition of ``table`` by the Spark SQL query ``rows``."""
    columns = ", ".join(f"`{c}`" for c in QUARANTINE_SQL_COLUMNS if c != "table_name")
    return (
        f"INSERT OVERWRITE TABLE {quarantine} PARTITION (table_name = {_text(table)}) "
        f"SELECT {columns} FROM ({rows}) AS q"
    )


@dataclass
class _Views:
    """The temporary views of one table's run, dropped at its end."""

    spark: SparkSession
    frames: dict[str, DataFrame]

    def add(self, sql: str, view: str) -> DataFrame:
        self.frames[view] = _materialise(self.spark, sql, view)
        return self.frames[view]

    def drop(self) -> None:
        for view, frame in self.frames.items():
            frame.unpersist()
            self.spark.catalog.dropTempView(view)


@contextlib.contextmanager
def _temp_views(spark: SparkSession) -> Iterator[_Views]:
    views = _Views(spark, {})
    try:
        yield views
    finally:
        views.drop()


def validate_table(
    spark: SparkSession,
    table: str,
    directory: str | Path,
    *,
    raw_schema: str = "raw",
    golden_schema: str = "golden",
    item_level: str = "artist",
    max_duration_s: float = MAX_DURATION_S,
) -> sql_rules.SqlTableResult:
    """Build golden ``table`` from its raw table and replace its quarantine partition.

    The Spark twin of :func:`quality.sql_rules.validate_table`: the same statements, run as
    Spark SQL (see the module docstring for what differs).

    Parameters
    ----------
    spark
        A session from :func:`spark_session` (or one passed to :func:`prepare_session`) whose
        catalog holds the raw table and the golden parents (:data:`sql_rules.ROW_TABLES` order).
    table
        A row table of ``ROW_TABLES``.
    directory
        The warehouse directory (``golden/<table>``, ``golden/quarantine`` are written there).

    Returns
    -------
    SqlTableResult
        Counts, reasons and notes. Raises ``AssertionError`` before publishing anything when
        raw rows != golden rows + quarantined rows.
    """
    plan = sql_rules.plan_for(table, item_level, max_duration_s, golden_schema)
    raw = f"{raw_schema}.{plan.raw}"
    present = spark.table(raw).columns
    raw_columns, absent = sql_rules.raw_layout(plan, present)
    all_null = _all_null(spark, raw, [c for c in plan.cleaned if c in present])
    tag = f"_sqlrules_{table}"
    stage, candidates, duplicates, bad = (f"{tag}_{s}" for s in ("stage", "cand", "dup", "bad"))
    with _temp_views(spark) as views:
        stage_sql = sql_rules.stage_sql(plan, raw, stage, POSITION_COLUMN, absent, all_null)
        staged_rows = views.add(stage_sql, stage).count()
        has_dup = False
        if (
            plan.dedup is not None
            and views.add(sql_rules.candidates_sql(plan, stage, candidates), candidates).count()
        ):
            dup_sql = sql_rules.duplicates_sql(
                plan, raw, candidates, duplicates, POSITION_COLUMN, absent
            )
            has_dup = views.add(dup_sql, duplicates).count() > 0
        rejected = sql_rules.rejected_sql(stage, duplicates if has_dup else None)
        quarantined = views.add(rejected, bad).count()
        golden = views.add(_golden_rows_sql(plan.table, stage, bad), f"{tag}_golden")
        raw_rows, golden_rows = spark.table(raw).count(), golden.count()
        if not reconcile(raw_rows, golden_rows, quarantined) or staged_rows != raw_rows:
            raise AssertionError(  # never lose rows silently
                f"{plan.table}: raw {raw_rows} != golden {golden_rows} + quarantined {quarantined}"
                f" (staged {staged_rows})"
            )
        columns = ", ".join(f"`{c}`" for c in GOLDEN_COLUMNS[plan.table])
        publish(spark, directory, golden_schema, plan.table, f"SELECT {columns} FROM {tag}_golden")
        quarantine = _register_quarantine(spark, directory, golden_schema)
        rows = sql_rules.quarantine_rows_sql(plan, raw, raw_columns, bad, POSITION_COLUMN, absent)
        spark.sql(_quarantine_sql(quarantine, plan.table, spark_query(rows)))
        reasons = spark.sql(spark_query(sql_rules.reason_counts_sql(bad))).collect()
        notes = _notes(spark, plan, f"{golden_schema}.{plan.table}")
    return sql_rules.table_result(plan, raw_rows, golden_rows, quarantined, reasons, notes)


def _notes(spark: SparkSession, plan: sql_rules.Plan, golden: str) -> dict[str, int]:
    query = sql_rules.notes_sql(plan, golden)
    if query is None:
        return {}
    values = spark.sql(spark_query(query)).first()
    return {name: int(v) for name, v in zip(plan.notes, values, strict=True)}


def validate_bundle(
    spark: SparkSession,
    directory: str | Path,
    item_level: Literal["artist", "track"],
    listens_kind: Literal["aggregated", "events"],
    *,
    raw_schema: str = "raw",
    golden_schema: str = "golden",
    max_duration_s: float = MAX_DURATION_S,
    tables: Iterable[str] | None = None,
) -> sql_rules.SqlBundleValidation:
    """Build every golden table from the landed raw tables, parents first (the Spark twin of
    :func:`quality.sql_rules.validate_bundle`; ``tables`` limits the optional row tables)."""
    existing = {t for t in RAW_COLUMNS if spark.catalog.tableExists(f"{raw_schema}.{t}")}
    wanted = set(tables) if tables is not None else existing
    kw: dict[str, Any] = dict(
        raw_schema=raw_schema,
        golden_schema=golden_schema,
        item_level=item_level,
        max_duration_s=max_duration_s,
    )
    results: dict[str, sql_rules.SqlTableResult] = {}
    for name in ("users", "artists"):
        results[name] = validate_table(spark, name, directory, **kw)
    if "tracks" in existing and "tracks" in wanted:
        results["tracks"] = validate_table(spark, "tracks", directory, **kw)
    g = golden_schema
    publish(spark, directory, g, "items", spark_query(sql_rules.items_sql(item_level, g, None)))
    listens = "listen_events" if listens_kind == "events" else "listens"
    results[listens] = validate_table(spark, listens, directory, **kw)
    if listens_kind == "events":
        query = sql_rules.listens_from_events_sql(g, None)
        publish(spark, directory, g, "listens", spark_query(query))
    else:
        query = sql_rules.empty_table_sql("listen_events")
        publish(spark, directory, g, "listen_events", spark_query(query))
    for name in ("tags", "tag_assignments", "artist_text", "friends"):
        if name in existing and name in wanted:
            results[name] = validate_table(spark, name, directory, **kw)
    return sql_rules.SqlBundleValidation(results, item_level, listens_kind)


@dataclass
class SparkWarehouse:
    """What :func:`build_warehouse` landed and built."""

    directory: Path
    landed: dict[str, int]
    validation: sql_rules.SqlBundleValidation
    golden_schema: str = "golden"

    def path(self, table: str) -> Path:
        """The Parquet directory of golden ``table`` (or ``quarantine``)."""
        return table_path(self.directory, self.golden_schema, table)


def build_warehouse(
    spark: SparkSession,
    bundle: RawBundle,
    directory: str | Path,
    loaded_at: Any = None,
    *,
    max_duration_s: float = MAX_DURATION_S,
) -> SparkWarehouse:
    """Land ``bundle`` and build its golden tables and quarantine under ``directory``.

    Parameters
    ----------
    spark
        A session from :func:`spark_session`.
    bundle
        What a source read (``Source.read``).
    directory
        Where the Parquet tables go (``raw/``, ``golden/``).
    loaded_at
        The landing time (default now, UTC).
    """
    prepare_session(spark)
    landed = land_bundle(spark, bundle, directory, loaded_at)
    validation = validate_bundle(
        spark,
        directory,
        bundle.item_level,
        bundle.listens_kind,
        max_duration_s=max_duration_s,
        tables=list(bundle.tables),
    )
    return SparkWarehouse(Path(directory).resolve(), landed, validation)
