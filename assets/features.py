"""Feature store assets: feature tables exported to Parquet, ``feast apply``, materialisation."""

import dagster as dg
import pandas as pd

from assets.metadata import floats, frame_metadata
from featurestore import tables as features
from featurestore.ranker_features import ITEM_VIEW, USER_VIEW, publish_snapshot, write_snapshot
from orchestration.partitions import WEEKS, week_cutoff
from orchestration.resources import FeatureStoreResource, Warehouse
from recommend.history import display_items, history_batches, week_statistics
from recommend.models import SourceModels
from recommend.playlist import check_listens
from recommend.ranker import item_features, user_features

OWNER = "team:features"


def _export(
    feature_store: FeatureStoreResource, view: str, frame: pd.DataFrame
) -> dg.MaterializeResult:
    client = feature_store.client()
    path = features.export_parquet(frame, client.parquet_path(view))
    return dg.MaterializeResult(
        metadata={
            **frame_metadata(frame),
            "parquet": dg.MetadataValue.path(str(path)),
            "feature_view": view,
        }
    )


def _as_of() -> pd.Timestamp:
    """Stamp for sources without timestamps: the run time (so Feast TTLs keep the rows)."""
    return pd.Timestamp.now(tz="UTC").floor("s")


@dg.asset(
    key=["features", "user_listening_stats"],
    deps=[["golden", "listens"], ["golden", "listen_events"], ["golden", "items"]],
    group_name="features",
    kinds={"parquet", "duckdb"},
    owners=[OWNER],
    description="Per user: total plays, distinct items and artists, share of the top artist, "
    "listening entropy, last listen, plays in the last 4 weeks. One row per user per week for "
    "event sources (point-in-time snapshots), one row per user otherwise. Parquet for Feast.",
    pool="duckdb",
)
def user_listening_stats(
    warehouse: Warehouse, feature_store: FeatureStoreResource
) -> dg.MaterializeResult:
    path = feature_store.client().parquet_path("user_listening_stats")
    with warehouse.connect(read_only=True) as con:  # users x weeks: streamed, never whole
        written = features.export_user_listening_stats(con, path, as_of=_as_of())
    return dg.MaterializeResult(
        metadata={
            **frame_metadata(written.head),
            "dagster/row_count": dg.MetadataValue.int(written.rows),
            "parquet": dg.MetadataValue.path(str(written.path)),
            "feature_view": "user_listening_stats",
        }
    )


@dg.asset(
    key=["features", "artist_stats"],
    deps=[
        ["golden", "listens"],
        ["golden", "items"],
        ["golden", "artists"],
        ["golden", "artist_terms"],
    ],
    group_name="features",
    kinds={"parquet", "duckdb"},
    owners=[OWNER],
    description="Per artist: listeners, plays, popularity rank, top 5 terms. Parquet for Feast.",
    pool="duckdb",
)
def artist_stats(warehouse: Warehouse, feature_store: FeatureStoreResource) -> dg.MaterializeResult:
    with warehouse.connect(read_only=True) as con:
        frame = features.artist_stats(con, as_of=_as_of())
    return _export(feature_store, "artist_stats", frame)


@dg.asset(
    key=["features", "user_cf_vector"],
    ins={"cf_model": dg.AssetIn("cf_model")},
    deps=["feast_apply"],
    partitions_def=WEEKS,
    group_name="features",
    kinds={"parquet", "feast"},
    owners=[OWNER],
    description="The week's CF user vectors (Array(Float32), the factor model of cf_model) with "
    "the model version, as a Feast feature table pushed to the online store; similarity search "
    "stays in Milvus (cf_users).",
    pool="feast",
)
def user_cf_vector(
    context: dg.AssetExecutionContext,
    feature_store: FeatureStoreResource,
    cf_model: SourceModels,
) -> dg.MaterializeResult:
    fitted = cf_model.explorer
    if fitted is None or fitted.model.user_factors is None:
        raise ValueError(
            "cf_model has no factor model with user vectors; keep 'als' in cf_model's sources "
            "to publish user_cf_vector"
        )
    vectors = pd.DataFrame(
        {
            "user_id": fitted.user_ids,
            "vector": [row.astype("float32").tolist() for row in fitted.model.user_factors],
            "version": fitted.version,
        }
    )
    frame = features.user_cf_vectors(vectors, as_of=week_cutoff(context))
    result = _export(feature_store, "user_cf_vector", frame)
    pushed = feature_store.client().materialize(views=["user_cf_vector"])
    for view, reason in pushed.skipped.items():
        context.log.warning(f"feature view {view} not materialised: {reason}")
    return dg.MaterializeResult(
        metadata={**result.metadata, "online_rows": pushed.entities.get("user_cf_vector", 0)}
    )


class RankingFeaturesConfig(dg.Config):
    """Users are described in batches of ``user_batch_size`` (memory follows the batch)."""

    user_batch_size: int = 20_000


@dg.asset(
    key=["features", "ranking_features"],
    deps=[
        "feast_apply",
        ["golden", "listens"],
        ["golden", "listen_events"],
        ["golden", "items"],
        ["golden", "artists"],
        ["golden", "users"],
    ],
    partitions_def=WEEKS,
    group_name="features",
    kinds={"parquet", "feast"},
    owners=[OWNER],
    description="The learned ranker's features as of the week's cutoff (recommend.ranker."
    "user_features / item_features over the plays before it): Feast views "
    "user_ranking_features (every user with plays) and item_ranking_features (the catalog), "
    "published to the online store, where discover_weekly's ranker reads them. blend_config "
    "adds the validation split's snapshot just before the cutoff, which the ranker trains on "
    "point-in-time.",
    pool="duckdb",
)
def ranking_features(
    context: dg.AssetExecutionContext,
    config: RankingFeaturesConfig,
    warehouse: Warehouse,
    feature_store: FeatureStoreResource,
) -> dg.MaterializeResult:
    cutoff = week_cutoff(context)
    items = display_items(warehouse)
    item_artist = dict(zip(items["item_id"], items["artist_id"], strict=True))
    statistics = week_statistics(warehouse, cutoff, cutoff.normalize())
    users = (
        user_features(check_listens(history), statistics.novelty, item_artist)
        for _, history in history_batches(warehouse, cutoff, config.user_batch_size)
        if not history.empty
    )
    catalog = item_features(statistics.listeners, statistics.novelty, catalog=items["item_id"])
    client = feature_store.client()
    rows = write_snapshot(client, users, catalog, cutoff)
    online = publish_snapshot(client, cutoff)
    context.log.info(f"ranking features as of {cutoff}: {rows}, online {online}")
    return dg.MaterializeResult(
        metadata={
            "as_of": str(cutoff),
            "users": rows[USER_VIEW],
            "items": rows[ITEM_VIEW],
            "online_rows": dg.MetadataValue.json(online),
            "feature_views": dg.MetadataValue.json([USER_VIEW, ITEM_VIEW]),
        }
    )


@dg.asset(
    group_name="features",
    kinds={"feast"},
    owners=[OWNER],
    description="`feast apply`: the registry in sync with feature_repo/ (entities, feature views, "
    "the weekly_playlist_ranking_v1 service); stale objects removed.",
    pool="feast",
)
def feast_apply(feature_store: FeatureStoreResource) -> dg.MaterializeResult:
    client = feature_store.client()
    names = client.apply()
    return dg.MaterializeResult(
        metadata={
            "objects": dg.MetadataValue.json(names),
            "profile": feature_store.profile,
            "registry": dg.MetadataValue.json(
                {k: str(v) for k, v in client.config.items() if k != "offline_store"}
            ),
        }
    )


@dg.asset(
    deps=["feast_apply", ["features", "user_listening_stats"], ["features", "artist_stats"]],
    group_name="features",
    kinds={"feast"},
    owners=[OWNER],
    description="Feast materialisation: the latest feature row per entity copied to the online "
    "store (SQLite embedded, Redis in production).",
    pool="feast",
)
def feast_materialize(
    context: dg.AssetExecutionContext, feature_store: FeatureStoreResource
) -> dg.MaterializeResult:
    client = feature_store.client()
    result = client.materialize(views=["user_listening_stats", "artist_stats"])
    for view, reason in result.skipped.items():
        context.log.warning(f"feature view {view} not materialised: {reason}")
    return dg.MaterializeResult(
        metadata={
            "entities_per_view": dg.MetadataValue.json(result.entities),
            "skipped": dg.MetadataValue.json(result.skipped),
            "window_start": str(result.start),
            "window_end": str(result.end),
            "online_store": str(client.config.get("online_store")),
            **floats({f"rows/{v}": n for v, n in result.entities.items()}),
        }
    )
