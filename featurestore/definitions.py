"""Feast definitions of cratedigger, built for one data directory.

:func:`build_definitions` returns every entity, source, feature view and feature service.
``feature_repo/feature_definitions.py`` calls it with the data directory from
``CRATEDIGGER_FEAST_DATA_DIR`` so that ``feast apply`` registers the objects;
:class:`featurestore.client.FeatureStoreClient` calls it with the data directory it was given.
This module defines no Feast object at import time.

The columns of each view come from :mod:`featurestore.schemas`, the same definitions that give
the Parquet schemas :mod:`featurestore.tables` writes: their Arrow types are translated to Feast
types here (:func:`feast_type`). Each feature view reads one Parquet file in the data directory:
through a ``FileSource`` for Feast's DuckDB offline store (which reads nothing else), through a
``SparkSource`` on the same file for its Spark offline store (which reads nothing else either);
``offline_store`` picks one, everything else (names, views, services) is the same.

Example usage::

    from featurestore.definitions import build_definitions

    definitions = build_definitions("data/feast")
    feature_store.apply(definitions.objects())
    build_definitions("data/feast", offline_store="spark")   # the same views on SparkSource
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.data_source import DataSource
from feast.types import (
    Array,
    Bool,
    Float32,
    Float64,
    Int32,
    Int64,
    PrimitiveFeastType,
    String,
    UnixTimestamp,
)

from featurestore import schemas
from featurestore.config import OFFLINE_STORES, OfflineStore

OWNER_TAGS = {"owner": "cratedigger-features", "contact": "#cratedigger-platform"}

USER_STATS_TTL = timedelta(days=365)
ARTIST_STATS_TTL = timedelta(days=365)
USER_CF_VECTOR_TTL = timedelta(days=180)
DISCOVER_WEEKLY_TTL = timedelta(days=7)
# a week's ranking features hold until the next week's (a few days' slack for a late run)
RANKING_FEATURES_TTL = timedelta(days=10)


@dataclass(frozen=True)
class EntitySpec:
    """What a Feast entity is keyed by and what it stands for."""

    join_key: str
    description: str


@dataclass(frozen=True)
class ViewSpec:
    """What Feast needs about a feature view besides its columns (those are in ``schemas``)."""

    entity: str
    ttl: timedelta
    description: str
    source_description: str


ENTITIES: dict[str, EntitySpec] = {
    "user": EntitySpec("user_id", "A listener; golden.users.user_id."),
    "artist": EntitySpec("artist_id", "An artist; golden.artists.artist_id."),
    "track": EntitySpec("track_id", "A track; golden.tracks.track_id (no feature view yet)."),
    "item": EntitySpec(
        "item_id",
        "A recommendable item; golden.items.item_id (an artist on artist-level sources, a track "
        "on track-level ones).",
    ),
}

VIEWS: dict[str, ViewSpec] = {
    "user_listening_stats": ViewSpec(
        entity="user",
        ttl=USER_STATS_TTL,
        description="Listening statistics per user as of each week end.",
        source_description=(
            "featurestore.tables.user_listening_stats: weekly snapshots (event sources) or one "
            "row per user stamped as-of (aggregated sources)."
        ),
    ),
    "artist_stats": ViewSpec(
        entity="artist",
        ttl=ARTIST_STATS_TTL,
        description="Popularity and description of each artist.",
        source_description="featurestore.tables.artist_stats, stamped as-of.",
    ),
    "user_cf_vector": ViewSpec(
        entity="user",
        ttl=USER_CF_VECTOR_TTL,
        description="CF user vector; similarity search lives in Milvus, not here.",
        source_description="featurestore.tables.user_cf_vectors, stamped at training.",
    ),
    "discover_weekly_playlist": ViewSpec(
        entity="user",
        ttl=DISCOVER_WEEKLY_TTL,
        description="This week's Discover Weekly playlist per user (event_timestamp = week start).",
        source_description=(
            "Written by the recommendations stage (featurestore.tables.discover_weekly_playlist)."
        ),
    ),
    "user_ranking_features": ViewSpec(
        entity="user",
        ttl=RANKING_FEATURES_TTL,
        description="The learned ranker's user features (recommend.ranker.user_features): one "
        "snapshot per week at its cutoff (served online), one per validation split just before "
        "it (read point-in-time to train the ranker).",
        source_description="featurestore.tables.ranking_snapshot, upserted per snapshot time.",
    ),
    "item_ranking_features": ViewSpec(
        entity="item",
        ttl=RANKING_FEATURES_TTL,
        description="The learned ranker's item features (recommend.ranker.item_features), "
        "snapshots as user_ranking_features.",
        source_description="featurestore.tables.ranking_snapshot, upserted per snapshot time.",
    ),
}
"""Entity, TTL and descriptions of each feature view, in registration order."""

_FEAST_SCALARS: dict[pa.DataType, PrimitiveFeastType] = {
    pa.string(): String,
    pa.int32(): Int32,
    pa.int64(): Int64,
    pa.float32(): Float32,
    pa.float64(): Float64,
    pa.bool_(): Bool,
}


@dataclass(frozen=True)
class FeatureDefinitions:
    """Every Feast object of the repository, for one data directory."""

    user: Entity
    artist: Entity
    track: Entity
    item: Entity
    user_listening_stats_source: DataSource
    artist_stats_source: DataSource
    user_cf_vector_source: DataSource
    discover_weekly_playlist_source: DataSource
    user_ranking_features_source: DataSource
    item_ranking_features_source: DataSource
    user_listening_stats_fv: FeatureView
    artist_stats_fv: FeatureView
    user_cf_vector_fv: FeatureView
    discover_weekly_playlist_fv: FeatureView
    user_ranking_features_fv: FeatureView
    item_ranking_features_fv: FeatureView
    weekly_playlist_ranking_v1: FeatureService
    playlist_ranker_features_v1: FeatureService

    def objects(self) -> list:
        """All objects, in an order ``FeatureStore.apply`` accepts."""
        return [getattr(self, f.name) for f in fields(self)]

    def feature_views(self) -> list[FeatureView]:
        """The feature views only."""
        return [o for o in self.objects() if isinstance(o, FeatureView)]


def build_definitions(
    data_dir: str | Path, offline_store: OfflineStore = "duckdb"
) -> FeatureDefinitions:
    """Build every Feast object with Parquet sources under ``data_dir``.

    Parameters
    ----------
    data_dir : str or Path
        Directory holding the feature Parquet files (made absolute here, because the path is
        stored in the registry and read later from other working directories).
    offline_store : {"duckdb", "spark"}
        The offline store of the ``feature_store.yaml`` these objects are applied with
        (:func:`featurestore.config.build_config`): ``FileSource`` sources for DuckDB,
        ``SparkSource`` (``file_format="parquet"``) for Spark, on the same files.

    Returns
    -------
    FeatureDefinitions
        Entities ``user``, ``artist``, ``track``, ``item``; views ``user_listening_stats``,
        ``artist_stats``, ``user_cf_vector``, ``discover_weekly_playlist``,
        ``user_ranking_features``, ``item_ranking_features``; services
        ``weekly_playlist_ranking_v1``, ``playlist_ranker_features_v1``.
    """
    data_dir = Path(data_dir).expanduser().resolve()
    entities = build_entities()
    sources = build_sources(data_dir, offline_store)
    views = build_views(entities, sources)
    return FeatureDefinitions(
        **entities,
        **{f"{name}_source": source for name, source in sources.items()},
        **{f"{name}_fv": view for name, view in views.items()},
        **build_services(views),
    )


def build_entities() -> dict[str, Entity]:
    """The entities ``user``, ``artist`` and ``track``, keyed by string ids."""
    return {
        name: Entity(
            name=name,
            join_keys=[spec.join_key],
            value_type=ValueType.STRING,
            description=spec.description,
            tags=OWNER_TAGS,
        )
        for name, spec in ENTITIES.items()
    }


def build_sources(data_dir: Path, offline_store: OfflineStore = "duckdb") -> dict[str, DataSource]:
    """One Parquet source per feature view, named ``<view>_source``: a ``FileSource`` for the
    DuckDB offline store, a ``SparkSource`` for the Spark one."""
    if offline_store not in OFFLINE_STORES:
        raise ValueError(f"offline_store={offline_store!r} is unknown; use one of {OFFLINE_STORES}")
    return {
        name: _source(
            offline_store,
            name=f"{name}_source",
            path=str(data_dir / schemas.PARQUET_FILES[name]),
            timestamp_field=schemas.EVENT_TIMESTAMP,
            created_timestamp_column=schemas.CREATED,
            description=spec.source_description,
            owner=OWNER_TAGS["owner"],
        )
        for name, spec in VIEWS.items()
    }


def _source(offline_store: OfflineStore, **fields: Any) -> DataSource:
    if offline_store == "spark":
        # imports no pyspark: the registry can hold it where Spark is not installed
        from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import (
            SparkSource,
        )

        return SparkSource(file_format="parquet", **fields)
    return FileSource(**fields)


def build_views(
    entities: dict[str, Entity], sources: dict[str, DataSource]
) -> dict[str, FeatureView]:
    """One online feature view per table of :data:`featurestore.schemas.TABLES`."""
    return {name: _view(name, entities[spec.entity], sources[name]) for name, spec in VIEWS.items()}


def _view(name: str, entity: Entity, source: DataSource) -> FeatureView:
    spec, table = VIEWS[name], schemas.TABLES[name]
    if entity.join_key != table.key:
        raise ValueError(
            f"feature view {name!r}: entity {entity.name!r} joins on {entity.join_key!r} but "
            f"featurestore.schemas keys the table by {table.key!r}"
        )
    return FeatureView(
        name=name,
        entities=[entity],
        ttl=spec.ttl,
        schema=feast_fields(table),
        online=True,
        source=source,
        description=spec.description,
        tags=OWNER_TAGS,
        owner=OWNER_TAGS["owner"],
    )


def build_services(views: dict[str, FeatureView]) -> dict[str, FeatureService]:
    """The versioned feature services (``weekly_playlist_ranking_v1``,
    ``playlist_ranker_features_v1``)."""
    ranking = FeatureService(
        name="weekly_playlist_ranking_v1",
        features=[
            views["user_listening_stats"],
            views["user_cf_vector"][["cf_vector", "model_version"]],
        ],
        description="User context for ranking the weekly playlist: listening stats + CF vector.",
        tags=OWNER_TAGS,
        owner=OWNER_TAGS["owner"],
    )
    ranker = FeatureService(
        name="playlist_ranker_features_v1",
        features=[views["user_ranking_features"], views["item_ranking_features"]],
        description="What the learned playlist ranker reads besides the candidates: per user "
        "(user_id) and per item (item_id) features; training reads them point-in-time, serving "
        "online.",
        tags=OWNER_TAGS,
        owner=OWNER_TAGS["owner"],
    )
    return {ranking.name: ranking, ranker.name: ranker}


def feast_fields(table: schemas.FeatureTable) -> list[Field]:
    """The Feast schema of a feature table: join key, then features, with Feast types."""
    return [
        Field(name=column.name, dtype=feast_type(column.type), description=column.description)
        for column in table.feast_columns
    ]


def feast_type(arrow_type: pa.DataType) -> Any:
    """The Feast type of an Arrow type: lists become ``Array``, timestamps ``UnixTimestamp``."""
    if pa.types.is_list(arrow_type):
        return Array(feast_type(arrow_type.value_type))
    if pa.types.is_timestamp(arrow_type):
        return UnixTimestamp
    if arrow_type not in _FEAST_SCALARS:
        raise TypeError(f"no Feast type for Arrow type {arrow_type}; add it to _FEAST_SCALARS")
    return _FEAST_SCALARS[arrow_type]
