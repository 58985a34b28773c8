"""Blocking Great Expectations checks, one per golden table (the publish gate downstream)."""

import dagster as dg

from assets.publishing import raw_counts
from orchestration.resources import Paths, Warehouse, WarehouseEngine
from quality.sql_rules import GOLDEN_TYPES
from quality.suites import (
    RAW_SOURCES,
    SUITE_REFERENCES,
    SuiteResult,
    raw_row_bound,
    validate_golden,
    validate_golden_spark,
)

EXPECTATIONS_CHECK = "expectations"


def _suite_check(table: str) -> dg.AssetChecksDefinition:

    @dg.asset_check(
        asset=dg.AssetKey(["golden", table]),
        name=EXPECTATIONS_CHECK,
        blocking=True,
        description=f"Great Expectations suite golden_{table}: keys, foreign keys, value ranges, "
        "row-count bounds (exact counts over every row in the engine, DuckDB or Spark; the GX "
        "suite on a seeded sample of large tables, a Spark DataFrame on Spark). Blocks "
        "everything downstream when it fails.",
        pool="duckdb",
    )
    def _check(warehouse: Warehouse, paths: Paths, engine: WarehouseEngine) -> dg.AssetCheckResult:
        bound = raw_row_bound(table, raw_counts(warehouse, RAW_SOURCES.get(table, ())))
        result, rows, sampled = _validate(warehouse, paths, engine, table, bound)
        failed = {
            f"{o.expectation}({o.column or ''})": o.examples[:10]
            for o in result.failed_expectations
        }
        return dg.AssetCheckResult(
            passed=result.success,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "rows": rows,
                "gx_on_sample": sampled,
                "engine": engine.kind,
                "expectations_passed": result.passed,
                "expectations_failed": result.failed,
                "results": dg.MetadataValue.md(result.as_markdown()),
                "offending_values": dg.MetadataValue.json(failed),
            },
        )

    _check.__name__ = f"{table}_expectations"
    return _check


suite_checks = [_suite_check(table) for table in SUITE_REFERENCES]


def _validate(
    warehouse: Warehouse, paths: Paths, engine: WarehouseEngine, table: str, bound: int | None
) -> tuple[SuiteResult, int, bool]:
    """The suite of golden ``table`` where the table lives: Spark DataFrames for the tables the
    Spark engine builds, DuckDB for the others (and for every table on the DuckDB engine)."""
    if engine.is_spark and table in GOLDEN_TYPES:
        return validate_golden_spark(engine.session(), paths.gx_root, table, bound)
    return validate_golden(warehouse.read, paths.gx_root, table, bound)
