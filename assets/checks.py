"""Blocking Great Expectations checks, one per golden table (the publish gate downstream)."""

import dagster as dg

from orchestration.resources import Paths, Warehouse
from quality.suites import SUITE_REFERENCES, validate_table

EXPECTATIONS_CHECK = "expectations"


def _suite_check(table: str) -> dg.AssetChecksDefinition:
    references = SUITE_REFERENCES[table]

    @dg.asset_check(
        asset=dg.AssetKey(["golden", table]),
        name=EXPECTATIONS_CHECK,
        blocking=True,
        description=f"Great Expectations suite golden_{table}: keys, foreign keys, value ranges, "
        "row-count bounds. Blocks everything downstream when it fails.",
        pool="duckdb",
    )
    def _check(warehouse: Warehouse, paths: Paths) -> dg.AssetCheckResult:
        frame = warehouse.table("golden", table)
        keys = {
            name: warehouse.read(f"SELECT DISTINCT {column} FROM golden.{ref}")[column].tolist()
            for name, (ref, column) in references.items()
        }
        result = validate_table(paths.gx_root, table, frame, keys)
        failed = {
            f"{o.expectation}({o.column or ''})": o.examples[:10]
            for o in result.failed_expectations
        }
        return dg.AssetCheckResult(
            passed=result.success,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "expectations_passed": result.passed,
                "expectations_failed": result.failed,
                "results": dg.MetadataValue.md(result.as_markdown()),
                "offending_values": dg.MetadataValue.json(failed),
            },
        )

    _check.__name__ = f"{table}_expectations"
    return _check


suite_checks = [_suite_check(table) for table in SUITE_REFERENCES]
