"""The data-quality report: GX Data Docs HTML plus a per-table summary in metadata."""

import dagster as dg
import pandas as pd

from assets.publishing import raw_counts
from orchestration.resources import Paths, Warehouse
from quality.data_docs import QuarantineReport
from quality.suites import (
    RAW_SOURCES,
    SUITE_REFERENCES,
    build_data_docs,
    raw_row_bound,
    validate_golden,
)

GOLDEN_TABLES = list(SUITE_REFERENCES)
QUARANTINE_SAMPLES = 5  # sample rows per table and reason in the report


def quarantine_report(warehouse: Warehouse, samples: int = QUARANTINE_SAMPLES) -> QuarantineReport:
    """``golden.quarantine`` by table and reason code, with ``samples`` rows of each."""
    counts = warehouse.read(
        "SELECT table_name, split_part(reason, ':', 1) AS reason_code, count(*) AS rows "
        "FROM golden.quarantine GROUP BY ALL ORDER BY table_name, rows DESC"
    )
    sample_rows = warehouse.read(
        "SELECT table_name, split_part(reason, ':', 1) AS reason_code, record_key, reason, "
        "raw_row, source_file, source_line FROM golden.quarantine "
        "QUALIFY row_number() OVER (PARTITION BY table_name, split_part(reason, ':', 1) "
        "ORDER BY source_file, source_line, record_key) <= ? "
        "ORDER BY table_name, reason_code, source_file, source_line",
        [samples],
    )
    return QuarantineReport(counts=counts, samples=sample_rows)


@dg.asset(
    deps=[dg.AssetKey(["golden", t]) for t in GOLDEN_TABLES]
    # the raw row counts bound the golden row counts
    + [dg.AssetKey(["raw", t]) for t in sorted({s for v in RAW_SOURCES.values() for s in v})],
    group_name="reports",
    kinds={"greatexpectations", "html"},
    owners=["team:data-platform"],
    pool="duckdb",
    description="Data-quality report: GX Data Docs (HTML, readable offline) for every golden "
    "table with the quarantined rows by table and reason (sample rows in quarantine.html), and a "
    "summary of passed/failed expectations and quarantined rows by reason.",
)
def data_quality_report(
    context: dg.AssetExecutionContext, warehouse: Warehouse, paths: Paths
) -> dg.MaterializeResult:
    quarantine = quarantine_report(warehouse)
    quarantined = quarantine.by_table()
    raw = raw_counts(warehouse)
    rows = []
    for table in GOLDEN_TABLES:
        if not warehouse.has_table("golden", table):
            context.log.warning(f"golden.{table} is not materialised yet: left out of the report")
            rows.append(
                {
                    "table": table,
                    "rows": 0,
                    "rows_quarantined": quarantined.get(table, 0),
                    "expectations_passed": 0,
                    "expectations_failed": 0,
                    "note": "not materialised",
                }
            )
            continue
        result, count, sampled = validate_golden(
            warehouse.read, paths.gx_root, table, raw_row_bound(table, raw)
        )
        rows.append(
            {
                "table": table,
                "rows": count,
                "rows_quarantined": quarantined.get(table, 0),
                "expectations_passed": result.passed,
                "expectations_failed": result.failed,
                "note": "GX on a seeded sample; exact counts in DuckDB" if sampled else "",
            }
        )
    summary = pd.DataFrame(rows)
    by_reason = quarantine.counts.rename(columns={"reason_code": "reason"})
    index = build_data_docs(paths.gx_root, quarantine)
    report_dir = paths.sub("reports")
    markdown = (
        "# Data quality\n\n## Expectations per golden table\n\n"
        + summary.to_markdown(index=False)
        + "\n\n## Quarantined rows by reason\n\n"
        + (by_reason.to_markdown(index=False) if len(by_reason) else "_none_")
        + f"\n\nData Docs: {index} (sample quarantined rows: {index.parent / 'quarantine.html'})\n"
    )
    (report_dir / "data_quality.md").write_text(markdown)
    context.log.info(f"Data Docs written to {index}")
    return dg.MaterializeResult(
        metadata={
            "data_docs": dg.MetadataValue.path(str(index)),
            "data_docs_url": dg.MetadataValue.url(index.as_uri()),
            "expectations": dg.MetadataValue.md(summary.to_markdown(index=False)),
            "quarantine_by_reason": dg.MetadataValue.md(
                by_reason.to_markdown(index=False) if len(by_reason) else "_none_"
            ),
            "tables_failing": int((summary["expectations_failed"] > 0).sum()),
            "quarantined_rows": quarantine.total,
        }
    )
