"""Golden tables: typed, validated, documented. Bad rows go to ``golden.quarantine``.

Each asset reads its raw table(s) from DuckDB, calls the pure rules in :mod:`quality.rules`,
replaces its golden table and its slice of the quarantine in one transaction (so re-running is
idempotent), and proves with an inline check that raw rows = golden rows + quarantined rows.
The Great Expectations suites run as blocking checks (:mod:`assets.checks`).
"""

from collections.abc import Callable

import dagster as dg
import pandas as pd

from assets.publishing import (
    CONTRACTS,
    FRESHNESS,
    OWNER,
    RECONCILES_CHECK,
    publish,
    read_raw,
    source_info,
)
from orchestration.resources import Warehouse
from quality import rules


def _golden_asset(
    table: str,
    raw: str | None,
    deps: list[str],
    build: Callable[[pd.DataFrame, dict[str, pd.DataFrame], dict[str, str]], rules.TableResult],
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
    def _asset(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
        raw_frame = read_raw(warehouse, raw) if raw else pd.DataFrame()
        parents = {d: warehouse.table("golden", d) for d in deps}
        result = build(raw_frame, parents, source_info(warehouse))
        notes = {f"note/{k}": int(v) for k, v in result.notes.items()}
        return publish(
            context,
            warehouse,
            table,
            result.golden,
            result.quarantine,
            asset_key=key,
            raw_rows=result.raw_rows if raw else None,
            extra=notes,
        )

    _asset.__name__ = f"golden_{table}"
    return _asset


def _items(
    raw: pd.DataFrame, p: dict[str, pd.DataFrame], info: dict[str, str]
) -> rules.TableResult:
    level = info["item_level"]
    items = rules.build_items(p["artists"], p["tracks"] if len(p["tracks"]) else None, level)
    return rules.TableResult("items", items, rules.empty_quarantine(), len(items))


golden_users = _golden_asset("users", "users", [], lambda r, p, i: rules.validate_users(r))
golden_artists = _golden_asset("artists", "artists", [], lambda r, p, i: rules.validate_artists(r))
golden_tags = _golden_asset("tags", "tags", [], lambda r, p, i: rules.validate_tags(r))
golden_tracks = _golden_asset(
    "tracks", "tracks", ["artists"], lambda r, p, i: rules.validate_tracks(r, p["artists"])
)
golden_items = _golden_asset("items", None, ["artists", "tracks"], _items)
golden_tag_assignments = _golden_asset(
    "tag_assignments",
    "tag_assignments",
    ["users", "artists", "tags"],
    lambda r, p, i: rules.validate_tag_assignments(r, p["users"], p["artists"], p["tags"]),
)
golden_artist_text = _golden_asset(
    "artist_text",
    "artist_text",
    ["artists"],
    lambda r, p, i: rules.validate_artist_text(r, p["artists"]),
)
golden_friends = _golden_asset(
    "friends", "friends", ["users"], lambda r, p, i: rules.validate_friends(r, p["users"])
)

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
def golden_listens(context: dg.AssetExecutionContext, warehouse: Warehouse):
    """Validate raw listens once; publish events (if any) and the aggregated listens."""
    info = source_info(warehouse)
    raw = read_raw(warehouse, "listens")
    users, items = warehouse.table("golden", "users"), warehouse.table("golden", "items")
    kind = info["listens_kind"]
    result = rules.validate_listens(raw, users, items, kind)  # type: ignore[arg-type]
    if kind == "events":
        yield publish(
            context,
            warehouse,
            "listen_events",
            result.golden,
            result.quarantine,
            asset_key=LISTEN_EVENTS,
            raw_rows=result.raw_rows,
        )
        listens = rules.aggregate_listen_events(result.golden)
        yield publish(
            context,
            warehouse,
            "listens",
            listens,
            None,
            asset_key=LISTENS,
            extra={"aggregated_from_events": len(result.golden)},
        )
        yield dg.AssetCheckResult(
            check_name=RECONCILES_CHECK,
            asset_key=LISTENS,
            passed=int(listens["plays"].sum()) == int(result.golden["plays"].sum()),
            metadata={"note": "plays of golden listens = plays of golden listen_events"},
        )
    else:
        events = pd.DataFrame(
            {
                "user_id": pd.Series(dtype=object),
                "item_id": pd.Series(dtype=object),
                "plays": pd.Series(dtype="int64"),
                "ts": pd.Series(dtype=rules.TS_DTYPE),
            }
        )
        yield publish(context, warehouse, "listen_events", events, None, asset_key=LISTEN_EVENTS)
        yield dg.AssetCheckResult(
            check_name=RECONCILES_CHECK,
            asset_key=LISTEN_EVENTS,
            passed=True,
            metadata={"note": "aggregated source: no events"},
        )
        yield publish(
            context,
            warehouse,
            "listens",
            result.golden,
            result.quarantine,
            asset_key=LISTENS,
            raw_rows=result.raw_rows,
        )
