"""The GX validation of golden tables on Spark (quality.suites.validate_golden_spark) against the
DuckDB path (validate_golden): same verdicts and exact counts on the same small sample bundle, a
planted bad row caught by name, and the Spark runs in the Data Docs."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import pytest

from quality import sql_rules
from quality.sql_rules import GOLDEN_TYPES
from quality.suites import (
    SPARK_SOURCE,
    SUITE_REFERENCES,
    SuiteResult,
    build_data_docs,
    raw_row_bound,
    validate_golden,
    validate_golden_spark,
)
from sources import make_source
from sources.base import RAW_COLUMNS, RawBundle
from sources.generic import land_frame

# build_warehouse runs one Spark job per rule step and table: 4-6 min on a busy 2-core machine
# (validating the ten tables on Spark takes ~40 s of it)
pytestmark = pytest.mark.slow

LOADED_AT = pd.Timestamp("2026-11-27T00:00:00Z")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> RawBundle:
    folder = tmp_path_factory.mktemp("sample")
    return make_source("sample", str(folder), n_users=40, n_artists=24, audio_tracks=0).read()


@pytest.fixture(scope="module")
def duck(bundle: RawBundle) -> duckdb.DuckDBPyConnection:
    """DuckDB's golden tables, built as the raw and golden assets do (tests/test_spark_engine)."""
    con = duckdb.connect()
    con.execute("CREATE SCHEMA raw")
    for table in RAW_COLUMNS:
        land_frame(con, bundle.table(table), f"raw.{table}", table, LOADED_AT)
    sql_rules.validate_bundle(
        con, bundle.item_level, bundle.listens_kind, tables=list(bundle.tables)
    )
    yield con
    con.close()


@pytest.fixture(scope="module")
def built(spark, bundle: RawBundle, tmp_path_factory):
    from warehouse.spark_engine import build_warehouse

    return build_warehouse(spark, bundle, tmp_path_factory.mktemp("warehouse"), LOADED_AT)


@pytest.fixture(scope="module")
def gx_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("gx")


def _read(con: duckdb.DuckDBPyConnection):
    def read(sql: str, params: list | None = None) -> pd.DataFrame:
        return con.execute(sql, params or []).df()

    return read


def _engine(result: SuiteResult) -> list[tuple]:
    """The exact (engine) outcomes, examples as a set: LIMIT 20 picks any 20 of them."""
    return [
        (o.expectation, o.column, o.success, o.unexpected_count, sorted(map(str, o.examples)))
        for o in result.outcomes
        if o.expectation.startswith("engine:")
    ]


def _gx(result: SuiteResult) -> list[tuple]:
    return [
        (o.expectation, o.column, o.success, o.unexpected_count)
        for o in result.outcomes
        if not o.expectation.startswith("engine:")
    ]


@pytest.fixture(scope="module")
def both(spark, duck, built, gx_root: Path) -> dict[str, tuple[SuiteResult, SuiteResult]]:
    """Every golden table of the Spark warehouse, validated by both engines (whole tables)."""
    results = {}
    for table in [t for t in SUITE_REFERENCES if t in GOLDEN_TYPES]:
        bound = raw_row_bound(table, built.landed)
        d, d_rows, d_sampled = validate_golden(_read(duck), gx_root, table, bound)
        s, s_rows, s_sampled = validate_golden_spark(spark, gx_root, table, bound)
        assert (s_rows, s_sampled) == (d_rows, d_sampled) == (d_rows, False), table
        results[table] = (d, s)
    return results


def test_spark_verdicts_equal_duckdb(both) -> None:
    assert set(both) == {
        "users",
        "artists",
        "tags",
        "tracks",
        "items",
        "listens",
        "listen_events",
        "tag_assignments",
        "artist_text",
        "friends",
    }
    for table, (d, s) in both.items():
        assert d.success, (table, d.as_markdown())  # the bundle's bad rows are quarantined
        assert s.success, (table, s.as_markdown())
        assert _engine(s) == _engine(d), table
        assert _gx(s) == _gx(d), table  # whole tables: GX counts agree as well


def test_sample_is_seeded_and_catches_a_planted_bad_row(spark, duck, built, tmp_path) -> None:
    from pyspark.sql import functions as F

    from warehouse.spark_engine import register_table

    bound = raw_row_bound("listens", built.landed)
    sample, rows, sampled = validate_golden_spark(spark, tmp_path / "gx", "listens", bound, 300)
    assert sampled and rows > 300 and sample.success, sample.as_markdown()
    again, _, _ = validate_golden_spark(spark, tmp_path / "gx", "listens", bound, 300)
    assert [o.unexpected_count for o in again.outcomes] == [
        o.unexpected_count for o in sample.outcomes
    ]
    # A copy of golden.listens + a duplicate key + a row of an unknown user with -5 plays.
    base = spark.table("golden.listens")
    first = base.orderBy("user_id", "item_id").limit(1)
    ghost = first.withColumn("user_id", F.lit("ghost")).withColumn("plays", F.lit(-5).cast("long"))
    bad_path = tmp_path / "bad_listens"
    base.unionByName(first).unionByName(ghost).write.parquet(str(bad_path))
    register_table(spark, "golden.listens", bad_path)
    duck.execute("BEGIN")
    try:
        duck.execute(
            "INSERT INTO golden.listens SELECT * FROM golden.listens "
            "ORDER BY user_id, item_id LIMIT 1"
        )
        duck.execute(
            "INSERT INTO golden.listens SELECT 'ghost', item_id, -5, first_ts, last_ts "
            "FROM golden.listens ORDER BY user_id, item_id LIMIT 1"
        )
        result, rows, _ = validate_golden_spark(spark, tmp_path / "gx", "listens", bound)
        expected, duck_rows, _ = validate_golden(_read(duck), tmp_path / "gx", "listens", bound)
    finally:
        duck.execute("ROLLBACK")
        register_table(spark, "golden.listens", built.path("listens"), GOLDEN_TYPES["listens"])
    assert rows == duck_rows and not result.success
    failed = {(o.expectation, o.column): o for o in result.failed_expectations}
    assert failed["engine: unique", "user_id, item_id"].unexpected_count == 1
    assert failed["engine: in golden.users.user_id", "user_id"].examples == ["ghost"]
    assert failed["expect_column_values_to_be_between", "plays"].examples == [-5]
    assert failed["expect_column_values_to_be_in_set", "user_id"].examples == ["ghost"]
    assert failed["expect_compound_columns_to_be_unique", "user_id,item_id"].unexpected_count == 2
    assert _engine(result) == _engine(expected)
    assert _gx(result) == _gx(expected)


def test_spark_runs_are_in_the_data_docs(both, gx_root: Path) -> None:
    index = build_data_docs(gx_root)
    page = index.read_text()
    for table in both:
        # one page per run, named by batch: <data source>-<asset>; DuckDB's runs beside them
        assert f"{SPARK_SOURCE}-{table}" in page, table
        assert f"warehouse-{table}" in page, table
        runs = list(
            index.parent.glob(f"validations/golden_{table}/*/*/{SPARK_SOURCE}-{table}.html")
        )
        assert runs, table
