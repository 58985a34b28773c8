"""The columns of every feature view, defined once.

Each :class:`FeatureTable` names a Feast feature view, its join key and its feature columns with
their Arrow types and descriptions. Everything else is derived from it:

- the Parquet contract of the table (:attr:`FeatureTable.arrow_schema`: join key, features,
  ``event_timestamp``, ``created``), which :mod:`featurestore.tables` writes;
- the Feast ``Field`` list of the view (join key and features, Arrow types translated to Feast
  types), which :mod:`featurestore.definitions` builds;
- the Parquet file name of the view's source (:data:`PARQUET_FILES`).

Pure code: imports pyarrow only (not Feast, which is slow to import).

Example usage::

    from featurestore.schemas import ARROW_SCHEMAS, PARQUET_FILES, TABLES

    TABLES["artist_stats"].feature_names    # ('listeners', 'plays', ...)
    ARROW_SCHEMAS["artist_stats"].names     # [..., 'event_timestamp', 'created']
    data_dir / PARQUET_FILES["artist_stats"]
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

TIMESTAMP = pa.timestamp("us", tz="UTC")
"""Arrow type of every timestamp column (microseconds: nanoseconds break DuckDB 2.0 reads)."""

TIMESTAMP_DTYPE = "datetime64[us, UTC]"
"""The pandas dtype of every timestamp column of a feature table."""

EVENT_TIMESTAMP = "event_timestamp"
"""When the feature value became true (Feast's ``timestamp_field``)."""

CREATED = "created"
"""When this pipeline computed the row (Feast's ``created_timestamp_column``)."""


@dataclass(frozen=True)
class Column:
    """One column of a feature table: name, Arrow type, what it means."""

    name: str
    type: pa.DataType
    description: str = ""


@dataclass(frozen=True)
class FeatureTable:
    """The columns of one feature view.

    Attributes
    ----------
    name : str
        Feature view name, e.g. ``user_listening_stats``.
    key : str
        Join key column (a string id), e.g. ``user_id``.
    features : tuple of Column
        The feature columns, in order.
    """

    name: str
    key: str
    features: tuple[Column, ...]

    @property
    def key_column(self) -> Column:
        """The join key as a column (string, no description)."""
        return Column(self.key, pa.string())

    @property
    def feast_columns(self) -> tuple[Column, ...]:
        """The columns Feast declares in the view's schema: join key, then features."""
        return (self.key_column, *self.features)

    @property
    def columns(self) -> tuple[Column, ...]:
        """Every Parquet column: join key, features, ``event_timestamp``, ``created``."""
        return (*self.feast_columns, Column(EVENT_TIMESTAMP, TIMESTAMP), Column(CREATED, TIMESTAMP))

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Names of the feature columns."""
        return tuple(c.name for c in self.features)

    @property
    def arrow_schema(self) -> pa.Schema:
        """The Parquet schema of the table."""
        return pa.schema([(c.name, c.type) for c in self.columns])

    @property
    def parquet_file(self) -> str:
        """File name of the table's Parquet inside the Feast data directory."""
        return f"{self.name}.parquet"


USER_LISTENING_STATS = FeatureTable(
    name="user_listening_stats",
    key="user_id",
    features=(
        Column("total_plays", pa.int64(), "All plays up to the snapshot."),
        Column("distinct_items", pa.int64(), "Distinct items played."),
        Column("distinct_artists", pa.int64(), "Distinct artists played."),
        Column(
            "top_artist_share",
            pa.float64(),
            "Share of plays that went to the most played artist (0-1].",
        ),
        Column(
            "artist_entropy",
            pa.float64(),
            "Shannon entropy (bits) of plays over artists; 0 = one artist.",
        ),
        Column(
            "last_listen_ts", TIMESTAMP, "Last play before the snapshot; null without timestamps."
        ),
        Column(
            "plays_last_4_weeks",
            pa.int64(),
            "Plays in the 28 days before the snapshot; null without events.",
        ),
    ),
)
ARTIST_STATS = FeatureTable(
    name="artist_stats",
    key="artist_id",
    features=(
        Column("listeners", pa.int64(), "Distinct users who played it."),
        Column("plays", pa.int64(), "All plays of the artist."),
        Column("popularity_rank", pa.int64(), "1 = most listeners."),
        Column("top_terms", pa.string(), "Top 5 terms by weight, comma separated; empty if none."),
    ),
)
USER_CF_VECTOR = FeatureTable(
    name="user_cf_vector",
    key="user_id",
    features=(
        Column(
            "cf_vector",
            pa.list_(pa.float32()),
            "Collaborative-filtering user factors (implicit ALS).",
        ),
        Column("model_version", pa.string(), "CF model that made it."),
    ),
)
USER_RANKING_FEATURES = FeatureTable(
    name="user_ranking_features",
    key="user_id",
    features=(
        Column("user_log_items", pa.float64(), "log(1 + distinct items played)."),
        Column("user_log_plays", pa.float64(), "log(1 + all plays)."),
        Column("user_artists", pa.float64(), "Distinct artists played."),
        Column("user_artist_entropy", pa.float64(), "Entropy (bits) of plays over artists."),
        Column(
            "user_mean_novelty",
            pa.float64(),
            "Mean novelty (-log2 of the listener share) of the items played.",
        ),
    ),
)
"""The user half of the learned ranker's features (``recommend.ranker.user_features`` computes
them; its ``USER_FEATURES`` are these names). One snapshot per week at the week's cutoff (what
serving reads online) and one per validation split, stamped just before it (what training reads
point-in-time)."""
ITEM_RANKING_FEATURES = FeatureTable(
    name="item_ranking_features",
    key="item_id",
    features=(
        Column("item_log_listeners", pa.float64(), "log(1 + distinct listeners)."),
        Column("item_novelty", pa.float64(), "-log2 of the share of users who played it."),
    ),
)
"""The item half of the learned ranker's features (``recommend.ranker.item_features``)."""

DISCOVER_WEEKLY_PLAYLIST = FeatureTable(
    name="discover_weekly_playlist",
    key="user_id",
    features=(
        Column("playlist_items", pa.list_(pa.string()), "Recommended item ids in rank order."),
        Column("playlist_reasons", pa.list_(pa.string()), "One explanation per item, same order."),
        Column("week", pa.string(), "ISO week, e.g. 2026-W47."),
        Column(
            "variant",
            pa.string(),
            "The A/B variant that built the playlist (recommend.variants), e.g. control.",
        ),
    ),
)
"""One row per user and week: ``playlist_items[i]`` is the i-th recommended item id (rank order)
and ``playlist_reasons[i]`` its explanation; ``week`` is the ISO week (``2026-W47``),
``variant`` the experiment variant the user was served (null for rows written before variants)
and ``event_timestamp`` the start of the week the playlist is valid for."""

TABLES: dict[str, FeatureTable] = {
    table.name: table
    for table in (
        USER_LISTENING_STATS,
        ARTIST_STATS,
        USER_CF_VECTOR,
        DISCOVER_WEEKLY_PLAYLIST,
        USER_RANKING_FEATURES,
        ITEM_RANKING_FEATURES,
    )
}
"""Every feature table by feature view name."""

USER_LISTENING_STATS_SCHEMA = USER_LISTENING_STATS.arrow_schema
ARTIST_STATS_SCHEMA = ARTIST_STATS.arrow_schema
USER_CF_VECTOR_SCHEMA = USER_CF_VECTOR.arrow_schema
DISCOVER_WEEKLY_PLAYLIST_SCHEMA = DISCOVER_WEEKLY_PLAYLIST.arrow_schema

ARROW_SCHEMAS: dict[str, pa.Schema] = {name: t.arrow_schema for name, t in TABLES.items()}
"""Parquet schema of each feature view's source."""

PARQUET_FILES: dict[str, str] = {name: t.parquet_file for name, t in TABLES.items()}
"""File name, inside the Feast data directory, of each feature view's Parquet source."""
