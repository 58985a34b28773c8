"""Great Expectations 1.x suites, one per golden table, and a runner for pandas frames.

``dagster-ge`` only supports GX < 1.0, so the Dagster asset checks call :func:`validate_table`
directly: a file-backed GX context under the data directory, a pandas data source with one
dataframe asset per table, one suite and one validation definition per table. Results are kept
in the context's stores, so :func:`build_data_docs` renders every table's latest run as HTML.

Example usage::

    result = validate_table(gx_root, "listens", listens_df, references={"users": user_ids})
    result.success, result.failed_expectations

Tables that grow with events never come into memory whole: :func:`validate_golden` counts in the
engine (SQL) what must hold for every row (row-count bounds, null and duplicate keys, foreign
keys without a parent) and runs the GX suite, the validation of record with its Data Docs, on a
seeded sample of at most ``SAMPLE_ROWS`` rows (the whole table when it is smaller).

The same verdicts on the Spark engine (:mod:`warehouse.spark_engine`, tables registered in the
session as ``golden.<table>``): :func:`validate_golden_spark` runs the same engine SQL through
:func:`spark_reader` and the same suite on a Spark DataFrame (GX's Spark data source
``warehouse_spark``, stored in the same context, so the Data Docs show both engines)::

    result, rows, sampled = validate_golden_spark(spark, gx_root, "listens", max_rows=92834)
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from orchestration.settings import apply_runtime_environment

if TYPE_CHECKING:
    from pyspark.sql import DataFrame as SparkDataFrame
    from pyspark.sql import SparkSession

    from quality.data_docs import QuarantineReport

logger = logging.getLogger(__name__)

# Golden tables that may legitimately be empty for some sources (HetRec has no tracks or audio).
OPTIONAL_TABLES = {
    "tags",
    "tracks",
    "listen_events",
    "audio_clips",
    "artist_text",
    "friends",
    "tag_assignments",
    "artist_terms",
    "artist_docs",
    "audio_attributes",
}
MAX_ROWS = 500_000_000  # the row-count ceiling when the raw row count is not known
SAMPLE_ROWS = 200_000  # GX validates at most this many rows of a table (seeded sample)
# key columns of each golden table (unique and not null); tables without a key are absent
KEYS: dict[str, tuple[str, ...]] = {
    "users": ("user_id",),
    "artists": ("artist_id",),
    "tags": ("tag_id",),
    "tracks": ("track_id",),
    "items": ("item_id",),
    "listens": ("user_id", "item_id"),
    "artist_terms": ("artist_id", "term"),
    "artist_docs": ("artist_id",),
    "friends": ("user_id", "friend_id"),
    "audio_clips": ("track_id",),
    "audio_attributes": ("track_id",),
}
Reader = Callable[..., pd.DataFrame]  # read(sql, params=None) -> frame, e.g. Warehouse.read
SPARK_SOURCE = "warehouse_spark"  # the GX data source of Spark DataFrames (pandas: "warehouse")
FK_EXAMPLES = 20  # keys shown in a foreign-key expectation's description


@dataclass
class ExpectationOutcome:
    """One expectation's verdict, with a few offending values when it failed."""

    expectation: str
    column: str | None
    success: bool
    unexpected_count: int | None = None
    examples: list[Any] = field(default_factory=list)


@dataclass
class SuiteResult:
    """The verdict of one table's suite."""

    table: str
    success: bool
    outcomes: list[ExpectationOutcome]

    @property
    def passed(self) -> int:
        return sum(o.success for o in self.outcomes)

    @property
    def failed(self) -> int:
        return sum(not o.success for o in self.outcomes)

    @property
    def failed_expectations(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success]

    def as_markdown(self) -> str:
        rows = ["| expectation | column | ok | unexpected | examples |", "|---|---|---|---|---|"]
        for o in self.outcomes:
            examples = ", ".join(map(str, o.examples[:5]))
            rows.append(
                f"| {o.expectation} | {o.column or ''} | {'yes' if o.success else 'NO'} "
                f"| {o.unexpected_count if o.unexpected_count is not None else ''} | {examples} |"
            )
        return "\n".join(rows)


# golden table -> referenced key sets: reference name -> (golden table, key column)
SUITE_REFERENCES: dict[str, dict[str, tuple[str, str]]] = {
    "users": {},
    "artists": {},
    "tags": {},
    "tracks": {"artists": ("artists", "artist_id")},
    "items": {},
    "listens": {"users": ("users", "user_id"), "items": ("items", "item_id")},
    "listen_events": {"users": ("users", "user_id"), "items": ("items", "item_id")},
    "tag_assignments": {"artists": ("artists", "artist_id")},
    "artist_text": {"artists": ("artists", "artist_id")},
    "friends": {"users": ("users", "user_id")},
    "artist_terms": {"artists": ("artists", "artist_id")},
    "artist_docs": {"artists": ("artists", "artist_id")},
    "audio_clips": {},
    "audio_attributes": {"audio_clips": ("audio_clips", "track_id")},
}

# golden table -> the raw tables its rows come from: golden rows <= the sum of their rows (each
# raw row is golden at most once, or quarantined). Tables built otherwise have no such bound.
RAW_SOURCES: dict[str, tuple[str, ...]] = {
    "users": ("users",),
    "artists": ("artists",),
    "tags": ("tags",),
    "tracks": ("tracks",),
    "items": ("artists", "tracks"),
    "listens": ("listens",),
    "listen_events": ("listens",),
    "tag_assignments": ("tag_assignments",),
    "artist_text": ("artist_text",),
    "friends": ("friends",),
}


def raw_row_bound(table: str, raw_counts: Mapping[str, int]) -> int | None:
    """The most rows golden ``table`` can have: the rows of its raw tables, if all are known.

    ``raw_counts`` maps raw table names to row counts, e.g. ``{"listens": 92834}``; ``None`` when
    the table has no raw source or one of its raw tables is not counted.
    """
    sources = RAW_SOURCES.get(table)
    if not sources or any(s not in raw_counts for s in sources):
        return None
    return int(sum(int(raw_counts[s]) for s in sources))


def _foreign_key_description(column: str, ref_table: str, ref_column: str, keys: list[Any]) -> str:
    """One line instead of the whole key set: the count and the first FK_EXAMPLES keys."""

    def short(value: Any) -> str:
        text = str(value)
        return text if len(text) <= 40 else text[:40] + "…"

    shown = ", ".join(short(k) for k in keys[:FK_EXAMPLES])
    more = f", … ({len(keys) - FK_EXAMPLES:,} more)" if len(keys) > FK_EXAMPLES else ""
    text = (
        f"{column} values must be keys of golden.{ref_table}.{ref_column}: "
        f"{len(keys):,} keys ({shown}{more})"
    )
    # GX puts the description into the page as HTML: keep key text literal.
    return html.escape(text, quote=False)


def _expectations(
    table: str,
    references: Mapping[str, Iterable[str]],
    min_rows: int,
    max_rows: int | None = None,
) -> list[Any]:
    import great_expectations.expectations as gxe

    def key(*columns: str) -> list[Any]:
        found = [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in columns]
        if len(columns) == 1:
            found.append(gxe.ExpectColumnValuesToBeUnique(column=columns[0]))
        else:
            found.append(gxe.ExpectCompoundColumnsToBeUnique(column_list=list(columns)))
        return found

    def foreign(column: str, ref: str) -> list[Any]:
        if ref not in references:
            return []
        values = sorted(set(references[ref]))
        ref_table, ref_column = SUITE_REFERENCES[table][ref]
        return [
            gxe.ExpectColumnValuesToBeInSet(
                column=column,
                value_set=values,
                # Data Docs render the description instead of the whole key set.
                description=_foreign_key_description(column, ref_table, ref_column, values),
            )
        ]

    upper = MAX_ROWS if max_rows is None else max(int(max_rows), min_rows)
    rows = [gxe.ExpectTableRowCountToBeBetween(min_value=min_rows, max_value=upper)]
    suites: dict[str, list[Any]] = {
        "users": key("user_id"),
        "artists": key("artist_id") + [gxe.ExpectColumnValuesToNotBeNull(column="name")],
        "tags": key("tag_id") + [gxe.ExpectColumnValuesToNotBeNull(column="tag")],
        "tracks": key("track_id")
        + foreign("artist_id", "artists")
        + [gxe.ExpectColumnValuesToBeBetween(column="duration_s", min_value=1, max_value=7200)],
        "items": key("item_id")
        + [gxe.ExpectColumnValuesToBeInSet(column="level", value_set=["artist", "track"])],
        "listens": key("user_id", "item_id")
        + foreign("user_id", "users")
        + foreign("item_id", "items")
        + [gxe.ExpectColumnValuesToBeBetween(column="plays", min_value=1)],
        "listen_events": foreign("user_id", "users")
        + foreign("item_id", "items")
        + [
            gxe.ExpectColumnValuesToBeBetween(column="plays", min_value=1),
            gxe.ExpectColumnValuesToNotBeNull(column="ts"),
        ],
        "tag_assignments": foreign("artist_id", "artists")
        + [gxe.ExpectColumnValuesToNotBeNull(column="tag")],
        "artist_terms": key("artist_id", "term")
        + foreign("artist_id", "artists")
        + [
            gxe.ExpectColumnValuesToBeBetween(
                column="weight", min_value=0, max_value=1, strict_min=True
            )
        ],
        "artist_docs": key("artist_id")
        + foreign("artist_id", "artists")
        + [gxe.ExpectColumnValueLengthsToBeBetween(column="text", min_value=1, max_value=20_000)],
        "artist_text": foreign("artist_id", "artists"),
        "friends": key("user_id", "friend_id") + foreign("user_id", "users"),
        "audio_clips": key("track_id")
        + [
            gxe.ExpectColumnValuesToMatchRegex(column="sha256", regex=r"^[0-9a-f]{64}$"),
            gxe.ExpectColumnValuesToBeBetween(
                column="sample_rate", min_value=4_000, max_value=192_000
            ),
            gxe.ExpectColumnValuesToBeBetween(column="channels", min_value=1, max_value=32),
            gxe.ExpectColumnValuesToBeBetween(column="duration_s", min_value=0.1, max_value=7_200),
        ],
        "audio_attributes": key("track_id")
        + [gxe.ExpectColumnValuesToBeBetween(column="tempo_bpm", min_value=0, max_value=400)],
    }
    if table not in suites:
        raise KeyError(f"no expectation suite for golden table {table!r}; known: {sorted(suites)}")
    return rows + suites[table]


def _context(gx_root: Path) -> Any:
    apply_runtime_environment()
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    gx_root.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="file", project_root_dir=str(gx_root))
    bars = context.variables.progress_bars
    enabled = bars is None or (
        bars.get("globally", True) if isinstance(bars, dict) else bars.globally
    )
    if enabled:
        # Metric progress bars flood Dagster's logs; the check metadata says what was run.
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        context.variables.save()
    return context


def _is_spark(frame: Any) -> bool:
    """True for a pyspark DataFrame (classic or Spark Connect), without importing pyspark."""
    return type(frame).__module__.startswith("pyspark.")


def validate_table(
    gx_root: Path,
    table: str,
    frame: pd.DataFrame | SparkDataFrame,
    references: Mapping[str, Iterable[str]] | None = None,
    min_rows: int | None = None,
    max_rows: int | None = None,
) -> SuiteResult:
    """Run the golden ``table``'s suite on ``frame`` and store the result for Data Docs.

    Parameters
    ----------
    gx_root
        Directory of the file-backed GX project (created when missing).
    table
        Golden table name, e.g. ``"listens"``.
    frame
        The table's rows: a pandas DataFrame (GX data source ``warehouse``) or a Spark
        DataFrame (data source ``warehouse_spark``, validated in Spark; GX persists it for the
        run, unpersist it afterwards). Each engine has its own validation definition and
        checkpoint (``golden_<table>[_spark]_validation``); the suite ``golden_<table>`` is
        shared.
    references
        Key sets of referenced tables for foreign-key expectations, e.g. ``{"users": ids}``.
    min_rows
        Lower row-count bound; default 1, or 0 for tables a source may not have.
    max_rows
        Upper row-count bound: the raw row count the table was built from when known (see
        :func:`raw_row_bound`; golden rows never outnumber raw rows), else ``MAX_ROWS``.

    Returns
    -------
    SuiteResult
        Per-expectation outcomes with up to 20 offending values each.
    """
    import great_expectations as gx

    references = references or {}
    if min_rows is None:
        min_rows = 0 if table in OPTIONAL_TABLES else 1
    context = _context(Path(gx_root))
    if _is_spark(frame):
        # The Spark session is the one that runs (GX's getOrCreate finds it); no spark_config,
        # so GX neither changes its settings nor restarts it.
        source = context.data_sources.add_or_update_spark(SPARK_SOURCE)
        name = f"golden_{table}_spark"
    else:
        source = context.data_sources.add_or_update_pandas("warehouse")
        name = f"golden_{table}"
    try:
        asset = source.get_asset(table)
    except LookupError:
        asset = source.add_dataframe_asset(table)
    try:
        batch = asset.get_batch_definition("whole_table")
    except (LookupError, KeyError):
        batch = asset.add_batch_definition_whole_dataframe("whole_table")
    suite = gx.ExpectationSuite(name=f"golden_{table}")
    for expectation in _expectations(table, references, min_rows, max_rows):
        suite.add_expectation(expectation)
    suite = context.suites.add_or_update(suite)
    definition = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(data=batch, suite=suite, name=f"{name}_validation")
    )
    checkpoint = context.checkpoints.add_or_update(
        gx.Checkpoint(
            name=f"{name}_checkpoint",
            validation_definitions=[definition],
            actions=[],
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": 20},
        )
    )
    run = checkpoint.run(batch_parameters={"dataframe": frame})
    outcomes: list[ExpectationOutcome] = []
    for validation in run.run_results.values():
        for r in validation.results:
            config = r.expectation_config
            result = r.result or {}
            outcomes.append(
                ExpectationOutcome(
                    expectation=config.type,
                    column=config.kwargs.get("column")
                    or ",".join(config.kwargs.get("column_list", []) or [])
                    or None,
                    success=bool(r.success),
                    unexpected_count=result.get("unexpected_count"),
                    examples=list(result.get("partial_unexpected_list") or [])[:20],
                )
            )
    return SuiteResult(table=table, success=bool(run.success), outcomes=outcomes)


def build_data_docs(
    gx_root: Path, quarantine: pd.DataFrame | QuarantineReport | None = None
) -> Path:
    """Render Data Docs HTML for every stored validation; return the index page's path.

    The site reads offline (CDN assets are served from vendored copies inside the site, see
    :func:`quality.data_docs.localise_site`). With ``quarantine`` (rows with the
    ``golden.quarantine`` columns, or a :class:`~quality.data_docs.QuarantineReport`) the index
    also shows the quarantined rows by table and reason, with sample rows in
    ``quarantine.html``.
    """
    from quality.data_docs import QuarantineReport, localise_site, show_quarantine

    context = _context(Path(gx_root))
    context.build_data_docs()
    index = Path(gx_root) / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"
    if not index.exists():
        raise FileNotFoundError(f"GX did not write Data Docs at {index}")
    localise_site(index.parent)
    if quarantine is not None:
        if not isinstance(quarantine, QuarantineReport):
            quarantine = QuarantineReport.from_frame(quarantine)
        show_quarantine(index.parent, quarantine)
    return index


def _count(read: Reader, sql: str, params: list | None = None) -> int:
    return int(read(sql, params).iloc[0, 0])


def engine_outcomes(
    read: Reader, table: str, min_rows: int, max_rows: int | None
) -> tuple[int, list[ExpectationOutcome]]:
    """Exact verdicts over the whole golden ``table``, computed in the engine: row-count bounds,
    null and duplicate keys, and foreign-key values without a parent (with up to 20 of them).

    Engine-neutral: ``read`` is DuckDB's (``Warehouse.read``) or Spark's (:func:`spark_reader`).
    Its SQL is what DuckDB and Spark SQL both run unchanged (``GROUP BY ALL``, ``ANTI JOIN``,
    ``count(*) OVER ()``, no parameters): keep it so, ``tests/test_gx_spark.py`` checks it."""
    rows = _count(read, f"SELECT count(*) FROM golden.{table}")
    upper = MAX_ROWS if max_rows is None else max(int(max_rows), min_rows)
    outcomes = [
        ExpectationOutcome(
            "engine: row count between", None, min_rows <= rows <= upper, None, [rows]
        )
    ]
    keys = KEYS.get(table, ())
    for column in keys:
        nulls = _count(read, f"SELECT count(*) FROM golden.{table} WHERE {column} IS NULL")
        outcomes.append(ExpectationOutcome("engine: not null", column, nulls == 0, nulls))
    if keys:
        columns = ", ".join(keys)
        repeated = _count(
            read,
            f"SELECT count(*) FROM (SELECT {columns} FROM golden.{table} GROUP BY ALL "
            "HAVING count(*) > 1)",
        )
        outcomes.append(ExpectationOutcome("engine: unique", columns, repeated == 0, repeated))
    for ref_table, ref_column in SUITE_REFERENCES[table].values():
        column = ref_column  # a foreign key has its parent key's name
        orphans = read(
            f"SELECT t.{column} AS value, count(*) OVER () AS n FROM golden.{table} t "
            f"ANTI JOIN golden.{ref_table} r ON t.{column} = r.{ref_column} "
            f"WHERE t.{column} IS NOT NULL LIMIT 20"
        )
        count = int(orphans["n"].iloc[0]) if len(orphans) else 0
        outcomes.append(
            ExpectationOutcome(
                f"engine: in golden.{ref_table}.{ref_column}",
                column,
                count == 0,
                count,
                orphans["value"].tolist(),
            )
        )
    return rows, outcomes


def sample_frame(read: Reader, table: str, rows: int, limit: int, seed: int) -> pd.DataFrame:
    """The whole table when it has at most ``limit`` rows, else a seeded sample of ``limit``
    rows (the rows with the smallest hash of their values and ``seed``: the same every run)."""
    if rows <= limit:
        return read(f"SELECT * FROM golden.{table}")
    columns = read(f"SELECT * FROM golden.{table} LIMIT 0").columns
    hashed = ", ".join(f'"{c}"' for c in columns)
    return read(
        f"SELECT * FROM golden.{table} ORDER BY hash({hashed}, ?::BIGINT) LIMIT ?", [seed, limit]
    )


def _merged(table: str, exact: list[ExpectationOutcome], result: SuiteResult) -> SuiteResult:
    """The engine verdicts, then the GX suite's: one result, failed when any failed."""
    return SuiteResult(
        table=table,
        success=result.success and all(o.success for o in exact),
        outcomes=exact + result.outcomes,
    )


def validate_golden(
    read: Reader,
    gx_root: Path,
    table: str,
    max_rows: int | None = None,
    sample_rows: int = SAMPLE_ROWS,
    seed: int = 0,
) -> tuple[SuiteResult, int, bool]:
    """Validate golden ``table`` without loading it whole: exact engine counts over every row
    plus the GX suite on at most ``sample_rows`` rows (foreign keys checked against the parent
    keys of the sampled values). Returns the merged result, the table's rows and whether GX saw
    a sample rather than the whole table."""
    min_rows = 0 if table in OPTIONAL_TABLES else 1
    rows, exact = engine_outcomes(read, table, min_rows, max_rows)
    frame = sample_frame(read, table, rows, sample_rows, seed)
    sampled = len(frame) < rows
    references = {}
    for name, (ref_table, ref_column) in SUITE_REFERENCES[table].items():
        values = sorted({str(v) for v in frame[ref_column].dropna().unique()})
        found = read(
            f"SELECT DISTINCT {ref_column} AS k FROM golden.{ref_table} "
            f"WHERE {ref_column} IN (SELECT unnest(?::VARCHAR[]))",
            [values],
        )
        references[name] = found["k"].tolist()
    result = validate_table(
        gx_root, table, frame, references, min_rows, None if sampled else max_rows
    )
    return _merged(table, exact, result), rows, sampled


# --------------------------------------------------------------------------- Spark


def spark_reader(spark: SparkSession) -> Reader:
    """``read(sql, params=None) -> pandas`` on a Spark session, for :func:`engine_outcomes`.

    The SQL runs as Spark SQL unchanged (tables as ``golden.<table>``); ``params`` bind to
    ``?`` positionally (``spark.sql(sql, args=[...])``). Results come back through Arrow: use it
    for counts and a few rows, not for whole tables.
    """

    def read(sql: str, params: list | None = None) -> pd.DataFrame:
        return spark.sql(sql, args=list(params) if params else None).toPandas()

    return read


def spark_sample(
    spark: SparkSession, table: str, rows: int, limit: int, seed: int
) -> SparkDataFrame:
    """:func:`sample_frame` on Spark, as a lazy Spark DataFrame: golden ``table`` whole when it
    has at most ``limit`` rows, else the ``limit`` rows with the smallest ``xxhash64`` of their
    values and ``seed`` (the same every run; a top-k, not a sort of the table). The hash is
    Spark's, not DuckDB's: the engines sample different rows."""
    from pyspark.sql import functions as F

    frame = spark.table(f"golden.{table}")
    if rows <= limit:
        return frame
    order = F.xxhash64(*[frame[c] for c in frame.columns], F.lit(int(seed)).cast("bigint"))
    return frame.orderBy(order).limit(int(limit))


def _spark_parent_keys(
    spark: SparkSession, frame: SparkDataFrame, ref_table: str, ref_column: str
) -> list[Any]:
    """The keys of ``golden.<ref_table>.<ref_column>`` among ``frame``'s values of that column
    (a semi join in Spark; only the matched keys, at most one per sampled row, come back)."""
    from pyspark.sql import functions as F

    values = frame.select(F.col(ref_column).alias("k")).where(F.col("k").isNotNull()).distinct()
    parents = spark.table(f"golden.{ref_table}").select(F.col(ref_column).alias("k"))
    return parents.join(values, on="k", how="left_semi").distinct().toPandas()["k"].tolist()


def validate_golden_spark(
    spark: SparkSession,
    gx_root: Path,
    table: str,
    max_rows: int | None = None,
    sample_rows: int = SAMPLE_ROWS,
    seed: int = 0,
) -> tuple[SuiteResult, int, bool]:
    """:func:`validate_golden` for golden ``table`` registered in a Spark session.

    Exact engine counts over every row by Spark SQL (:func:`engine_outcomes` through
    :func:`spark_reader`), then the GX suite on a Spark DataFrame (never collected): the whole
    table or a seeded sample of ``sample_rows`` rows (:func:`spark_sample`), with foreign keys
    checked against the parent keys of the sampled values. The result is stored in the GX
    context under ``gx_root`` beside DuckDB's (data source ``warehouse_spark``), so
    :func:`build_data_docs` renders it.

    Parameters
    ----------
    spark
        A session with ``golden.<table>`` and its parents registered, e.g. by
        :func:`warehouse.spark_engine.build_warehouse` or ``register_warehouse``.
    gx_root, table, max_rows, sample_rows, seed
        As for :func:`validate_golden`.

    Returns
    -------
    tuple[SuiteResult, int, bool]
        The merged result, the table's rows and whether GX saw a sample.

    Example usage::

        spark = spark_session("local[2]")
        register_warehouse(spark, data_dir / "spark")
        result, rows, sampled = validate_golden_spark(spark, gx_root, "listens", max_rows=92834)
        result.success, result.failed_expectations
    """
    min_rows = 0 if table in OPTIONAL_TABLES else 1
    rows, exact = engine_outcomes(spark_reader(spark), table, min_rows, max_rows)
    sampled = rows > sample_rows
    # Computed once, for the parent keys and every GX metric; GX persists its batch as well.
    frame = spark_sample(spark, table, rows, sample_rows, seed).persist()
    try:
        references = {
            name: _spark_parent_keys(spark, frame, ref_table, ref_column)
            for name, (ref_table, ref_column) in SUITE_REFERENCES[table].items()
        }
        result = validate_table(
            gx_root, table, frame, references, min_rows, None if sampled else max_rows
        )
    finally:
        frame.unpersist()
    return _merged(table, exact, result), rows, sampled
