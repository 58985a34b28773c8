"""The weeks the data covers, registered as the weekly partitions of models and playlists."""

import dagster as dg
import pandas as pd

from orchestration.partitions import WEEKS, register_weeks, week_of, weeks_between
from orchestration.resources import Warehouse

LISTENING_WEEKS = dg.AssetKey("listening_weeks")


@dg.asset(
    key=LISTENING_WEEKS,
    deps=[["golden", "listen_events"]],
    group_name="recommend",
    kinds={"duckdb"},
    owners=["team:recsys"],
    pool="duckdb",
    description="The weeks of plays in golden.listen_events, registered as the `weeks` "
    "partitions: from the Monday after the first play to the Monday after the last. A "
    "partition key is the Monday a playlist is for (its week_start). A source without play "
    "times has one week, the one it was loaded in.",
)
def listening_weeks(
    context: dg.AssetExecutionContext, warehouse: Warehouse
) -> dg.MaterializeResult:
    span = warehouse.read(
        "SELECT min(ts) AS first, max(ts) AS last, count(*) AS n FROM golden.listen_events"
    ).iloc[0]
    if int(span["n"]):
        keys = weeks_between(pd.Timestamp(span["first"]), pd.Timestamp(span["last"]))
    else:
        keys = [week_of(pd.Timestamp.now(tz="UTC"))]
    new = register_weeks(context.instance, keys)
    context.log.info(
        f"{len(keys)} weeks from {keys[0]} to {keys[-1]} ({len(new)} newly registered)"
    )
    return dg.MaterializeResult(
        metadata={
            "first_week": keys[0],
            "last_week": keys[-1],
            "weeks": len(keys),
            "new_weeks": len(new),
            "partitions": WEEKS.name,
        }
    )
