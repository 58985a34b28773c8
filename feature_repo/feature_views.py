"""Feast definitions of cratedigger, built for one data directory.

``build_definitions(data_dir)`` returns every entity, source, feature view and feature service.
``feature_definitions.py`` calls it with the data directory from ``CRATEDIGGER_FEAST_DATA_DIR``
so that ``feast apply`` registers the objects; ``recommend.feature_store.FeatureStoreClient``
loads this file and calls it with the data directory it was given. This module defines no Feast
object at import time, so ``feast apply`` registers nothing from it directly.

Each feature view reads one Parquet file in the data directory (Feast's DuckDB offline store
reads ``FileSource`` Parquet only); ``recommend.features`` writes them with microsecond UTC
timestamps. The file names are in ``PARQUET_FILES`` (kept equal to
``recommend.features.PARQUET_FILES`` by a test).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Array, Float32, Float64, Int64, String, UnixTimestamp

PARQUET_FILES: dict[str, str] = {
    "user_listening_stats": "user_listening_stats.parquet",
    "artist_stats": "artist_stats.parquet",
    "user_cf_vector": "user_cf_vector.parquet",
    "discover_weekly_playlist": "discover_weekly_playlist.parquet",
}

OWNER_TAGS = {"owner": "cratedigger-features", "contact": "#cratedigger-platform"}

USER_STATS_TTL = timedelta(days=365)
ARTIST_STATS_TTL = timedelta(days=365)
USER_CF_VECTOR_TTL = timedelta(days=180)
DISCOVER_WEEKLY_TTL = timedelta(days=7)


@dataclass(frozen=True)
class FeatureDefinitions:
    """Every Feast object of the repository, for one data directory."""

    user: Entity
    artist: Entity
    track: Entity
    user_listening_stats_source: FileSource
    artist_stats_source: FileSource
    user_cf_vector_source: FileSource
    discover_weekly_playlist_source: FileSource
    user_listening_stats_fv: FeatureView
    artist_stats_fv: FeatureView
    user_cf_vector_fv: FeatureView
    discover_weekly_playlist_fv: FeatureView
    weekly_playlist_ranking_v1: FeatureService

    def objects(self) -> list:
        """All objects, in an order ``FeatureStore.apply`` accepts."""
        return [getattr(self, f.name) for f in fields(self)]

    def feature_views(self) -> list[FeatureView]:
        """The feature views only."""
        return [o for o in self.objects() if isinstance(o, FeatureView)]


def _source(data_dir: Path, view: str, description: str) -> FileSource:
    return FileSource(
        name=f"{view}_source",
        path=str(data_dir / PARQUET_FILES[view]),
        timestamp_field="event_timestamp",
        created_timestamp_column="created",
        description=description,
        owner=OWNER_TAGS["owner"],
    )


def build_definitions(data_dir: str | Path) -> FeatureDefinitions:
    """Build every Feast object with Parquet sources under ``data_dir``.

    Parameters
    ----------
    data_dir : str or Path
        Directory holding the feature Parquet files (made absolute here, because the path is
        stored in the registry and read later from other working directories).

    Returns
    -------
    FeatureDefinitions
        Entities ``user``, ``artist``, ``track``; views ``user_listening_stats``,
        ``artist_stats``, ``user_cf_vector``, ``discover_weekly_playlist``; service
        ``weekly_playlist_ranking_v1``.
    """
    data_dir = Path(data_dir).expanduser().resolve()

    user = Entity(
        name="user",
        join_keys=["user_id"],
        value_type=ValueType.STRING,
        description="A listener; golden.users.user_id.",
        tags=OWNER_TAGS,
    )
    artist = Entity(
        name="artist",
        join_keys=["artist_id"],
        value_type=ValueType.STRING,
        description="An artist; golden.artists.artist_id.",
        tags=OWNER_TAGS,
    )
    track = Entity(
        name="track",
        join_keys=["track_id"],
        value_type=ValueType.STRING,
        description="A track; golden.tracks.track_id (no feature view yet).",
        tags=OWNER_TAGS,
    )

    user_listening_stats_source = _source(
        data_dir,
        "user_listening_stats",
        "recommend.features.user_listening_stats: weekly snapshots (event sources) or one "
        "row per user stamped as-of (aggregated sources).",
    )
    artist_stats_source = _source(
        data_dir, "artist_stats", "recommend.features.artist_stats, stamped as-of."
    )
    user_cf_vector_source = _source(
        data_dir, "user_cf_vector", "recommend.features.user_cf_vectors, stamped at training."
    )
    discover_weekly_playlist_source = _source(
        data_dir,
        "discover_weekly_playlist",
        "Written by the recommendations stage (recommend.features.discover_weekly_playlist).",
    )

    user_listening_stats_fv = FeatureView(
        name="user_listening_stats",
        entities=[user],
        ttl=USER_STATS_TTL,
        schema=[
            Field(name="user_id", dtype=String),
            Field(name="total_plays", dtype=Int64, description="All plays up to the snapshot."),
            Field(name="distinct_items", dtype=Int64, description="Distinct items played."),
            Field(name="distinct_artists", dtype=Int64, description="Distinct artists played."),
            Field(
                name="top_artist_share",
                dtype=Float64,
                description="Share of plays that went to the most played artist (0-1].",
            ),
            Field(
                name="artist_entropy",
                dtype=Float64,
                description="Shannon entropy (bits) of plays over artists; 0 = one artist.",
            ),
            Field(
                name="last_listen_ts",
                dtype=UnixTimestamp,
                description="Last play before the snapshot; null without timestamps.",
            ),
            Field(
                name="plays_last_4_weeks",
                dtype=Int64,
                description="Plays in the 28 days before the snapshot; null without events.",
            ),
        ],
        online=True,
        source=user_listening_stats_source,
        description="Listening statistics per user as of each week end.",
        tags=OWNER_TAGS,
        owner=OWNER_TAGS["owner"],
    )
    artist_stats_fv = FeatureView(
        name="artist_stats",
        entities=[artist],
        ttl=ARTIST_STATS_TTL,
        schema=[
            Field(name="artist_id", dtype=String),
            Field(name="listeners", dtype=Int64, description="Distinct users who played it."),
            Field(name="plays", dtype=Int64, description="All plays of the artist."),
            Field(name="popularity_rank", dtype=Int64, description="1 = most listeners."),
            Field(
                name="top_terms",
                dtype=String,
                description="Top 5 terms by weight, comma separated; empty if none.",
            ),
        ],
        online=True,
        source=artist_stats_source,
        description="Popularity and description of each artist.",
        tags=OWNER_TAGS,
        owner=OWNER_TAGS["owner"],
    )
    user_cf_vector_fv = FeatureView(
        name="user_cf_vector",
        entities=[user],
        ttl=USER_CF_VECTOR_TTL,
        schema=[
            Field(name="user_id", dtype=String),
            Field(
                name="cf_vector",
                dtype=Array(Float32),
                description="Collaborative-filtering user factors (implicit ALS).",
            ),
            Field(name="model_version", dtype=String, description="CF model that made it."),
        ],
        online=True,
        source=user_cf_vector_source,
        description="CF user vector; similarity search lives in Milvus, not here.",
        tags=OWNER_TAGS,
        owner=OWNER_TAGS["owner"],
    )
    discover_weekly_playlist_fv = FeatureView(
        name="discover_weekly_playlist",
        entities=[user],
        ttl=DISCOVER_WEEKLY_TTL,
        schema=[
            Field(name="user_id", dtype=String),
            Field(
                name="playlist_items",
                dtype=Array(String),
                description="Recommended item ids in rank order.",
            ),
            Field(
                name="playlist_reasons",
                dtype=Array(String),
                description="One explanation per item, same order.",
            ),
            Field(name="week", dtype=String, description="ISO week, e.g. 2026-W47."),
        ],
        online=True,
        source=discover_weekly_playlist_source,
        description="This week's Discover Weekly playlist per user (event_timestamp = week start).",
        tags=OWNER_TAGS,
        owner=OWNER_TAGS["owner"],
    )
    weekly_playlist_ranking_v1 = FeatureService(
        name="weekly_playlist_ranking_v1",
        features=[user_listening_stats_fv, user_cf_vector_fv[["cf_vector", "model_version"]]],
        description="User context for ranking the weekly playlist: listening stats + CF vector.",
        tags=OWNER_TAGS,
        owner=OWNER_TAGS["owner"],
    )
    return FeatureDefinitions(
        user=user,
        artist=artist,
        track=track,
        user_listening_stats_source=user_listening_stats_source,
        artist_stats_source=artist_stats_source,
        user_cf_vector_source=user_cf_vector_source,
        discover_weekly_playlist_source=discover_weekly_playlist_source,
        user_listening_stats_fv=user_listening_stats_fv,
        artist_stats_fv=artist_stats_fv,
        user_cf_vector_fv=user_cf_vector_fv,
        discover_weekly_playlist_fv=discover_weekly_playlist_fv,
        weekly_playlist_ranking_v1=weekly_playlist_ranking_v1,
    )
