"""Golden tables: typed, validated, documented. Bad rows go to ``golden.quarantine``.

Each asset runs the row rules of :mod:`quality.sql_rules` inside DuckDB, over its raw table:
no raw table is read into Python. One transaction replaces the golden table and its slice of
the quarantine (so re-running is idempotent), and an inline check proves raw rows = golden rows
+ quarantined rows. The Great Expectations suites run as blocking checks (:mod:`assets.checks`).
"""

from collections.abc import Callable
from typing import Any

import dagster as dg
import duckdb
import pandas as pd

from assets.metadata import PREVIEW_ROWS, frame_metadata
from assets.publishing import CONTRACTS, FRESHNESS, OWNER, QUARANTINE_DDL, RECONCILES_CHECK
from orchestration.resources import Warehouse, WarehouseEngine
from quality import sql_rules
from warehouse import lakehouse


def _source_info(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    item_level, listens_kind = con.execute(
        "SELECT item_level, listens_kind FROM meta.source"
    ).fetchone()
    return {"item_level": str(item_level), "listens_kind": str(listens_kind)}


def _prepare(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE SCHEMA IF NOT EXISTS golden")
    con.execute(QUARANTINE_DDL)


def _quarantine_extra(context: dg.AssetExecutionContext) -> dict[str, Any]:
    return {"run_id": context.run.run_id, "quarantined_at": pd.Timestamp.now(tz="UTC")}


def _metadata(
    con: duckdb.DuckDBPyConnection,
    table: str,
    quarantined: int = 0,
    reasons: dict[str, int] | None = None,
    extra: dict | None = None,
) -> dict[str, Any]:
    """Row count, schema and preview of ``golden.<table>`` (read in the engine), quarantine
    counts and the contract."""
    preview = con.execute(f"SELECT * FROM golden.{table} LIMIT {PREVIEW_ROWS}").df()
    rows = con.execute(f"SELECT count(*) FROM golden.{table}").fetchone()[0]
    return {
        **frame_metadata(preview),
        "dagster/row_count": dg.MetadataValue.int(int(rows)),
        "quarantined_rows": int(quarantined),
        "quarantine_reasons": dg.MetadataValue.json(reasons or {}),
        "contract": CONTRACTS.get(table, ""),
        **(extra or {}),
    }


def _reconciles(key: dg.AssetKey, result: sql_rules.SqlTableResult) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=RECONCILES_CHECK,
        passed=result.reconciles,
        asset_key=key,
        metadata={
            "raw_rows": result.raw_rows,
            "golden_rows": result.golden_rows,
            "quarantined_rows": result.quarantined_rows,
        },
    )


def _run_rules(
    context: dg.AssetExecutionContext,
    con: duckdb.DuckDBPyConnection,
    engine: WarehouseEngine,
    table: str,
    item_level: str,
) -> sql_rules.SqlTableResult:
    """The row rules of ``table`` in the engine: in DuckDB, or on Spark (the same statements,
    :mod:`warehouse.spark_engine`) with the result exposed to the warehouse as a view and the
    quarantined rows mirrored into ``golden.quarantine``."""
    extra = _quarantine_extra(context)
    if not engine.is_spark:
        return sql_rules.validate_table(con, table, item_level=item_level, quarantine_extra=extra)
    from warehouse.spark_engine import validate_table

    result = validate_table(engine.session(), table, engine.spark_dir, item_level=item_level)
    lakehouse.expose_golden(con, engine.spark_dir, table)
    lakehouse.mirror_quarantine(
        con, engine.spark_dir, table, extra["run_id"], extra["quarantined_at"]
    )
    return result


def _derive(
    con: duckdb.DuckDBPyConnection,
    engine: WarehouseEngine,
    table: str,
    build: Callable[[duckdb.DuckDBPyConnection], Any],
    spark_sql: str,
) -> None:
    """A golden table derived from other golden tables (items, listens from events, an empty
    listen_events): ``build`` in DuckDB, or the DuckDB query ``spark_sql`` run on Spark and
    exposed as a view; in both, the table has no quarantined rows."""
    if engine.is_spark:
        from warehouse.spark_engine import publish, spark_query

        publish(engine.session(), engine.spark_dir, "golden", table, spark_query(spark_sql))
        lakehouse.expose_golden(con, engine.spark_dir, table)
        con.execute("BEGIN TRANSACTION")
    else:
        con.execute("BEGIN TRANSACTION")
        build(con)
    con.execute("DELETE FROM golden.quarantine WHERE table_name = ?", [table])
    con.execute("COMMIT")


def _validated(
    context: dg.AssetExecutionContext,
    con: duckdb.DuckDBPyConnection,
    engine: WarehouseEngine,
    table: str,
    key: dg.AssetKey,
    item_level: str = "artist",
    extra: dict | None = None,
) -> dg.MaterializeResult:
    """Run the rules of ``table`` in the engine and describe the result."""
    result = _run_rules(context, con, engine, table, item_level)
    if result.quarantined_rows:
        context.log.warning(
            f"golden.{table}: {result.quarantined_rows} rows quarantined: {result.reason_counts}"
        )
    notes = {f"note/{k}": int(v) for k, v in result.notes.items()}
    metadata = _metadata(
        con, table, result.quarantined_rows, result.reason_counts, {**notes, **(extra or {})}
    )
    return dg.MaterializeResult(
        asset_key=key, metadata=metadata, check_results=[_reconciles(key, result)]
    )


def _golden_asset(
    table: str,
    raw: str | None,
    deps: list[str],
    build: Callable[
        [dg.AssetExecutionContext, duckdb.DuckDBPyConnection, WarehouseEngine, dg.AssetKey], Any
    ]
    | None = None,
) -> dg.AssetsDefinition:
    key = dg.AssetKey(["golden", table])
    upstream = ([dg.AssetKey(["raw", raw])] if raw else []) + [
        dg.AssetKey(["golden", d]) for d in deps
    ]
    checks = (
        [
            dg.AssetCheckSpec(
                RECONCILES_CHECK,
                asset=key,
                description="raw rows = golden rows + quarantined rows",
            )
        ]
        if raw
        else []
    )

    @dg.asset(
        key=key,
        deps=upstream,
        group_name="golden",
        kinds={"duckdb"},
        owners=[OWNER],
        description=f"Golden {table}. {CONTRACTS[table]}",
        freshness_policy=FRESHNESS,
        check_specs=checks,
        pool="duckdb",
        tags={"layer": "golden"},
    )
    def _asset(
        context: dg.AssetExecutionContext, warehouse: Warehouse, engine: WarehouseEngine
    ) -> dg.MaterializeResult:
        with warehouse.connect() as con:
            _prepare(con)
            if build is not None:
                return build(context, con, engine, key)
            return _validated(context, con, engine, table, key)

    _asset.__name__ = f"golden_{table}"
    return _asset


def _items(
    context: dg.AssetExecutionContext,
    con: duckdb.DuckDBPyConnection,
    engine: WarehouseEngine,
    key: dg.AssetKey,
) -> dg.MaterializeResult:
    level = _source_info(con)["item_level"]
    _derive(
        con,
        engine,
        "items",
        lambda c: sql_rules.build_items(c, level),  # type: ignore[arg-type]
        sql_rules.items_sql(level, "golden", None),  # type: ignore[arg-type]
    )
    return dg.MaterializeResult(asset_key=key, metadata=_metadata(con, "items"))


golden_users = _golden_asset("users", "users", [])
golden_artists = _golden_asset("artists", "artists", [])
golden_tags = _golden_asset("tags", "tags", [])
golden_tracks = _golden_asset("tracks", "tracks", ["artists"])
golden_items = _golden_asset("items", None, ["artists", "tracks"], _items)
golden_tag_assignments = _golden_asset(
    "tag_assignments", "tag_assignments", ["users", "artists", "tags"]
)
golden_artist_text = _golden_asset("artist_text", "artist_text", ["artists"])
golden_friends = _golden_asset("friends", "friends", ["users"])

LISTEN_EVENTS = dg.AssetKey(["golden", "listen_events"])
LISTENS = dg.AssetKey(["golden", "listens"])


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            LISTEN_EVENTS,
            deps=[["raw", "listens"], ["golden", "users"], ["golden", "items"]],
            description=f"Golden listen_events. {CONTRACTS['listen_events']} Empty for sources "
            "that only have aggregated play counts (HetRec).",
            group_name="golden",
            kinds={"duckdb"},
            owners=[OWNER],
            freshness_policy=FRESHNESS,
            skippable=False,
        ),
        dg.AssetSpec(
            LISTENS,
            deps=[["raw", "listens"], ["golden", "users"], ["golden", "items"]],
            description=f"Golden listens. {CONTRACTS['listens']} Aggregated from listen_events "
            "for event sources.",
            group_name="golden",
            kinds={"duckdb"},
            owners=[OWNER],
            freshness_policy=FRESHNESS,
            skippable=False,
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            RECONCILES_CHECK,
            asset=LISTENS,
            description="raw listen rows = golden rows (events or aggregated) + quarantined rows",
        ),
        dg.AssetCheckSpec(
            RECONCILES_CHECK,
            asset=LISTEN_EVENTS,
            description="raw listen rows = golden events + quarantined rows (event sources)",
        ),
    ],
    pool="duckdb",
)
def golden_listens(
    context: dg.AssetExecutionContext, warehouse: Warehouse, engine: WarehouseEngine
):
    """Validate raw listens once, in the engine; publish events (if any) and the aggregated
    listens."""
    with warehouse.connect() as con:
        _prepare(con)
        info = _source_info(con)
        level = info["item_level"]
        if info["listens_kind"] == "events":
            yield _validated(context, con, engine, "listen_events", LISTEN_EVENTS, level)
            _derive(
                con,
                engine,
                "listens",
                sql_rules.aggregate_listen_events,
                sql_rules.listens_from_events_sql("golden", None),
            )
            event_plays, events = con.execute(
                "SELECT COALESCE(sum(plays), 0), count(*) FROM golden.listen_events"
            ).fetchone()
            plays = con.execute("SELECT COALESCE(sum(plays), 0) FROM golden.listens").fetchone()[0]
            yield dg.MaterializeResult(
                asset_key=LISTENS,
                metadata=_metadata(con, "listens", extra={"aggregated_from_events": int(events)}),
            )
            yield dg.AssetCheckResult(
                check_name=RECONCILES_CHECK,
                asset_key=LISTENS,
                passed=int(plays) == int(event_plays),
                metadata={"note": "plays of golden listens = plays of golden listen_events"},
            )
        else:
            _derive(
                con,
                engine,
                "listen_events",
                sql_rules.empty_listen_events,
                sql_rules.empty_table_sql("listen_events"),
            )
            yield dg.MaterializeResult(
                asset_key=LISTEN_EVENTS, metadata=_metadata(con, "listen_events")
            )
            yield dg.AssetCheckResult(
                check_name=RECONCILES_CHECK,
                asset_key=LISTEN_EVENTS,
                passed=True,
                metadata={"note": "aggregated source: no events"},
            )
            yield _validated(context, con, engine, "listens", LISTENS, level)
