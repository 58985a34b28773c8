"""The data-quality report: GX Data Docs HTML plus a per-table summary in metadata."""

import dagster as dg
import pandas as pd

from orchestration.resources import Paths, Warehouse
from quality.suites import SUITE_REFERENCES, build_data_docs, validate_table

GOLDEN_TABLES = list(SUITE_REFERENCES)


@dg.asset(
    deps=[dg.AssetKey(["golden", t]) for t in GOLDEN_TABLES],
    group_name="reports",
    kinds={"greatexpectations", "html"},
    owners=["team:data-platform"],
    pool="duckdb",
    description="Data-quality report: GX Data Docs (HTML) for every golden table, and a summary "
    "of passed/failed expectations and quarantined rows by reason.",
)
def data_quality_report(
    context: dg.AssetExecutionContext, warehouse: Warehouse, paths: Paths
) -> dg.MaterializeResult:
    rows = []
    for table in GOLDEN_TABLES:
        if not warehouse.has_table("golden", table):
            context.log.warning(f"golden.{table} is not materialised yet: left out of the report")
            rows.append(
                {
                    "table": table,
                    "rows": 0,
                    "expectations_passed": 0,
                    "expectations_failed": 0,
                    "note": "not materialised",
                }
            )
            continue
        frame = warehouse.table("golden", table)
        keys = {
            name: warehouse.read(f"SELECT DISTINCT {col} FROM golden.{ref}")[col].tolist()
            for name, (ref, col) in SUITE_REFERENCES[table].items()
        }
        result = validate_table(paths.gx_root, table, frame, keys)
        rows.append(
            {
                "table": table,
                "rows": len(frame),
                "expectations_passed": result.passed,
                "expectations_failed": result.failed,
                "note": "",
            }
        )
    summary = pd.DataFrame(rows)
    quarantine = warehouse.read(
        "SELECT table_name, split_part(reason, ':', 1) AS reason, count(*) AS rows "
        "FROM golden.quarantine GROUP BY ALL ORDER BY table_name, rows DESC"
    )
    index = build_data_docs(paths.gx_root)
    report_dir = paths.sub("reports")
    markdown = (
        "# Data quality\n\n## Expectations per golden table\n\n"
        + summary.to_markdown(index=False)
        + "\n\n## Quarantined rows by reason\n\n"
        + (quarantine.to_markdown(index=False) if len(quarantine) else "_none_")
        + f"\n\nData Docs: {index}\n"
    )
    (report_dir / "data_quality.md").write_text(markdown)
    context.log.info(f"Data Docs written to {index}")
    return dg.MaterializeResult(
        metadata={
            "data_docs": dg.MetadataValue.path(str(index)),
            "data_docs_url": dg.MetadataValue.url(index.as_uri()),
            "expectations": dg.MetadataValue.md(summary.to_markdown(index=False)),
            "quarantine_by_reason": dg.MetadataValue.md(
                quarantine.to_markdown(index=False) if len(quarantine) else "_none_"
            ),
            "tables_failing": int((summary["expectations_failed"] > 0).sum()),
            "quarantined_rows": int(quarantine["rows"].sum()) if len(quarantine) else 0,
        }
    )
