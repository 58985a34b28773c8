"""Recommendation assets: weekly candidates and Discover Weekly, similar artists, the blend's
evaluation; delivered as DuckDB tables, Parquet exports and a Feast feature view."""

import dagster as dg
import numpy as np
import pandas as pd

from assets.audio import audio_space
from assets.metadata import floats, frame_metadata, png_markdown
from assets.text import text_space
from orchestration.resources import FeatureStoreResource, Paths, Warehouse
from recommend import features
from recommend.evaluation import holdout_split
from recommend.playlist import build_discover_weekly, evaluate_blend, similar_artists

OWNER = "team:recsys"
WEEKS = dg.WeeklyPartitionsDefinition(start_date="2026-01-05", day_offset=1, timezone="UTC")
CANDIDATES = dg.AssetKey("candidates")
DISCOVER_WEEKLY = dg.AssetKey("discover_weekly")
PLAYLIST_RULES_CHECK = "playlist_rules"
PLAYLIST_SIZE = 30


def history_before(warehouse: Warehouse, cutoff: pd.Timestamp) -> pd.DataFrame:
    """Plays per user and item before ``cutoff`` (all plays when the source has no times)."""
    events = warehouse.read("SELECT count(*) AS n FROM golden.listen_events")["n"].iloc[0]
    if events:
        return warehouse.read(
            "SELECT user_id, item_id, sum(plays) AS plays, min(ts) AS first_ts, "
            "max(ts) AS last_ts FROM golden.listen_events WHERE ts < ? GROUP BY ALL",
            [cutoff.to_pydatetime()],
        )
    return warehouse.read("SELECT user_id, item_id, plays, first_ts, last_ts FROM golden.listens")


def display_items(warehouse: Warehouse) -> pd.DataFrame:
    """Golden items with display names: 'Title - Artist' for tracks, the artist's name else."""
    return warehouse.read(
        "SELECT i.item_id, i.artist_id, CASE WHEN i.level = 'track' AND a.name IS NOT NULL "
        "THEN i.name || ' - ' || a.name ELSE i.name END AS name, i.genre, i.level "
        "FROM golden.items i LEFT JOIN golden.artists a USING (artist_id) ORDER BY i.item_id"
    )


def _vectors_or_none(load, paths: Paths, what: str, context) -> tuple | None:
    try:
        ids, matrix = load(paths)
    except FileNotFoundError as missing:
        context.log.warning(f"{what} vectors unavailable ({missing}); playlists without them")
        return None
    if len(ids) == 0:
        return None
    return [str(i) for i in ids], matrix


def playlist_rule_violations(
    playlists: pd.DataFrame, history: pd.DataFrame, catalog_size: int
) -> dict[str, int]:
    """Counts of broken playlist rules (all zero when the playlists are publishable)."""
    played = set(zip(history["user_id"], history["item_id"], strict=True))
    per_user = playlists.groupby("user_id")["item_id"]
    expected = min(PLAYLIST_SIZE, catalog_size)
    sizes = per_user.size()
    played_counts = history.groupby("user_id")["item_id"].nunique()
    short = sizes[
        sizes
        < np.minimum(expected, catalog_size - played_counts.reindex(sizes.index, fill_value=0))
    ]
    return {
        "duplicate_items": int((per_user.nunique() != sizes).sum()),
        "played_items": int(
            sum(
                (u, i) in played
                for u, i in zip(playlists["user_id"], playlists["item_id"], strict=True)
            )
        ),
        "missing_reasons": int(playlists["reason"].fillna("").str.strip().eq("").sum()),
        "too_long": int((sizes > PLAYLIST_SIZE).sum()),
        "short_without_cause": int(len(short)),
    }


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            CANDIDATES,
            deps=["cf_model", "text_vectors", ["golden", "listen_events"], ["golden", "listens"]],
            group_name="recommend",
            kinds={"duckdb"},
            owners=[OWNER],
            description="Per week, candidates per source (ALS, item-kNN, EASE, text, audio, new "
            "tracks through audio->CF, popularity, exploration), each with a score and a reason. "
            "Table recommend.candidates.",
            skippable=False,
        ),
        dg.AssetSpec(
            DISCOVER_WEEKLY,
            deps=[CANDIDATES, "feast_apply", ["golden", "items"], ["golden", "artist_terms"]],
            group_name="recommend",
            kinds={"duckdb", "parquet", "feast"},
            owners=[OWNER],
            description="Discover Weekly: 30 never-played items per user and week, blended "
            "(weights tuned on a validation split), diversified (MMR), with exploration slots "
            "and a reason on every row. Delivered as recommend.discover_weekly, Parquet under "
            "exports/discover_weekly/ and the Feast view discover_weekly_playlist.",
            skippable=False,
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            PLAYLIST_RULES_CHECK,
            asset=DISCOVER_WEEKLY,
            blocking=True,
            description="30 distinct items per user (fewer only when the catalog is smaller), "
            "none played before the week, every row with a reason.",
        )
    ],
    partitions_def=WEEKS,
    pool="duckdb",
)
def discover_weekly(
    context: dg.AssetExecutionContext,
    warehouse: Warehouse,
    paths: Paths,
    feature_store: FeatureStoreResource,
):
    """Build one week's playlists from the history before the week's end."""
    window = context.partition_time_window
    cutoff = pd.Timestamp(window.end)
    week = cutoff.normalize()
    history = history_before(warehouse, cutoff)
    items = display_items(warehouse)
    users = warehouse.read("SELECT user_id FROM golden.users ORDER BY 1")["user_id"].tolist()
    level = str(items["level"].iloc[0]) if len(items) else "artist"
    text = _vectors_or_none(text_space, paths, "text", context)
    audio = _vectors_or_none(audio_space, paths, "audio", context) if level == "track" else None
    context.log.info(
        f"week {week.date()}: {len(history)} user-item rows before {cutoff}, {len(users)} users"
    )
    playlists, candidates = build_discover_weekly(
        history,
        items,
        week_start=week,
        users=users,
        artist_terms=warehouse.table("golden", "artist_terms"),
        text_vectors=text,
        audio_vectors=audio,
        return_candidates=True,
    )
    day = week.date()
    candidates = candidates.assign(week_start=day)
    with warehouse.connect() as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS recommend")
        for table, frame in (("candidates", candidates), ("discover_weekly", playlists)):
            con.register("_frame", frame)
            con.execute(
                f"CREATE TABLE IF NOT EXISTS recommend.{table} AS SELECT * FROM _frame LIMIT 0"
            )
            con.execute("BEGIN TRANSACTION")
            con.execute(f"DELETE FROM recommend.{table} WHERE week_start = ?", [day])
            con.execute(f"INSERT INTO recommend.{table} BY NAME SELECT * FROM _frame")
            con.execute("COMMIT")
            con.unregister("_frame")
    export = paths.sub("exports", "discover_weekly", f"week_start={day}") / "playlists.parquet"
    playlists.to_parquet(export, index=False)
    feast_rows = _publish_to_feast(context, feature_store, playlists, week)
    yield dg.MaterializeResult(
        asset_key=CANDIDATES,
        metadata={
            **frame_metadata(candidates),
            "per_source": dg.MetadataValue.json(
                {k: int(v) for k, v in candidates["source"].value_counts().items()}
            ),
        },
    )
    violations = playlist_rule_violations(playlists, history, len(items))
    cold_users = len(set(users) - set(history["user_id"]))
    yield dg.MaterializeResult(
        asset_key=DISCOVER_WEEKLY,
        metadata={
            **frame_metadata(playlists.head(PLAYLIST_SIZE)),
            "dagster/row_count": len(playlists),
            "week_start": str(day),
            "users": int(playlists["user_id"].nunique()),
            "users_without_history": cold_users,
            "distinct_items": int(playlists["item_id"].nunique()),
            "source_mix": dg.MetadataValue.json(
                {k: int(v) for k, v in playlists["source"].value_counts().items()}
            ),
            "parquet": dg.MetadataValue.path(str(export)),
            "feast_rows": feast_rows,
            **floats({"catalog_coverage": playlists["item_id"].nunique() / max(1, len(items))}),
        },
    )
    yield dg.AssetCheckResult(
        check_name=PLAYLIST_RULES_CHECK,
        asset_key=DISCOVER_WEEKLY,
        passed=not any(violations.values()),
        metadata=violations,
    )


def _publish_to_feast(context, feature_store: FeatureStoreResource, playlists, week) -> int:
    """Merge this week's playlists into the Feast view's Parquet and push them online."""
    from recommend.feature_store import FeatureStoreError

    client = feature_store.client()
    recs = playlists.rename(columns={"position": "rank"})[["user_id", "item_id", "rank", "reason"]]
    frame = features.discover_weekly_playlist(recs, week.to_pydatetime())
    path = client.parquet_path("discover_weekly_playlist")
    if path.exists():
        previous = pd.read_parquet(path)
        frame = pd.concat(
            [previous[previous["week"] != frame["week"].iloc[0]], frame], ignore_index=True
        )
    features.export_parquet(frame, path, features.DISCOVER_WEEKLY_PLAYLIST_SCHEMA)
    try:
        client.materialize(views=["discover_weekly_playlist"])
    except FeatureStoreError as error:
        context.log.warning(f"playlists not pushed to the Feast online store: {error}")
        return 0
    return len(frame)


discover_weekly_job = dg.define_asset_job(
    "discover_weekly_job",
    selection=dg.AssetSelection.assets(CANDIDATES, DISCOVER_WEEKLY),
    partitions_def=WEEKS,
    description="This week's candidates and playlists (backfill it for past weeks).",
)
discover_weekly_schedule = dg.build_schedule_from_partitioned_job(
    discover_weekly_job, hour_of_day=0, minute_of_hour=0, name="discover_weekly_every_monday"
)


def artist_level(warehouse: Warehouse) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Listens and catalog at artist level (tracks folded into their artists)."""
    listens = warehouse.read(
        "SELECT l.user_id, i.artist_id AS item_id, sum(l.plays) AS plays "
        "FROM golden.listens l JOIN golden.items i USING (item_id) GROUP BY ALL"
    )
    artists = warehouse.read(
        "SELECT artist_id AS item_id, artist_id, name, genre, 'artist' AS level FROM golden.artists"
    )
    return listens, artists


@dg.asset(
    deps=[["golden", "listens"], ["golden", "artist_terms"], "text_vectors"],
    group_name="recommend",
    kinds={"duckdb"},
    owners=[OWNER],
    description="Top 20 similar artists per artist, blended from CF item-item similarity and "
    "text similarity, each with a reason (shared listeners or shared terms). Table "
    "recommend.similar_artists.",
    pool="duckdb",
)
def similar_artists_table(
    context: dg.AssetExecutionContext, warehouse: Warehouse, paths: Paths
) -> dg.MaterializeResult:
    listens, artists = artist_level(warehouse)
    frame = similar_artists(
        listens,
        artists,
        artist_terms=warehouse.table("golden", "artist_terms"),
        text_vectors=_vectors_or_none(text_space, paths, "text", context),
        k=20,
    )
    warehouse.write_table("recommend", "similar_artists", frame)
    frame.to_parquet(paths.sub("exports") / "similar_artists.parquet", index=False)
    return dg.MaterializeResult(
        metadata={**frame_metadata(frame), "artists": int(frame["artist_id"].nunique())}
    )


class BlendEvaluationConfig(dg.Config):
    """The holdout shared by every source and the blend."""

    test_fraction: float = 0.2
    seed: int = 42


@dg.asset(
    deps=[["golden", "listens"], ["golden", "items"], ["golden", "artist_terms"]],
    group_name="recommend",
    kinds={"pandas"},
    owners=[OWNER],
    description="The blend against each single source on the same per-user holdout (weights "
    "tuned on a validation split carved from train): NDCG@10/30, R@30, coverage, novelty, "
    "diversity, as a table and a chart.",
    pool="duckdb",
)
def blend_evaluation(
    context: dg.AssetExecutionContext,
    config: BlendEvaluationConfig,
    warehouse: Warehouse,
    paths: Paths,
) -> dg.MaterializeResult:
    listens = warehouse.read("SELECT user_id, item_id, plays FROM golden.listens")
    split = holdout_split(listens, config.test_fraction, seed=config.seed)
    table = evaluate_blend(
        split.train,
        split.test,
        artist_terms=warehouse.table("golden", "artist_terms"),
        items=warehouse.table("golden", "items"),
    )
    chart = table.attrs.get("chart_png")
    out = paths.sub("reports")
    table.to_csv(out / "blend_evaluation.csv")
    shown = table.reset_index() if table.index.name else table
    metadata = {
        "table": dg.MetadataValue.md(shown.round(4).to_markdown(index=False)),
        "blend_config": dg.MetadataValue.json(
            {k: str(v) for k, v in dict(table.attrs.get("blend_config") or {}).items()}
            if isinstance(table.attrs.get("blend_config"), dict)
            else str(table.attrs.get("blend_config"))
        ),
    }
    if chart:
        (out / "blend_evaluation.png").write_bytes(chart)
        metadata["chart"] = png_markdown(chart, "blend vs single sources")
    if "ndcg@10" in table.columns:
        metadata.update(floats({f"ndcg@10/{m}": v for m, v in table["ndcg@10"].items()}))
    return dg.MaterializeResult(metadata=metadata)
