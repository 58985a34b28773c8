"""Feature tables for Feast, computed from the golden DuckDB tables.

Pure code: a DuckDB connection (or frames) in, pandas DataFrames out. Nothing here imports
dagster or reads the environment. Every feature table carries two timestamps that Feast needs:

``event_timestamp``  when the feature value became true (``datetime64[us, UTC]``),
``created``          when this pipeline computed the row (``datetime64[us, UTC]``).

Microsecond precision matters: Parquet written with pandas' default nanosecond timestamps makes
``feast materialize`` fail on DuckDB 2.0 ("Unimplemented type for cast (TIMESTAMPTZ_NS ->
TIMESTAMP)"). :func:`export_parquet` always writes microseconds.

Feature tables
--------------
One function per Feast feature view; the columns and their types are those of
:mod:`featurestore.schemas` (the same definitions give the Feast fields):

- :func:`user_listening_stats` -> ``user_listening_stats`` (weekly snapshots, or as-of)
- :func:`artist_stats` -> ``artist_stats``
- :func:`user_cf_vectors` -> ``user_cf_vector``
- :func:`discover_weekly_playlist` -> ``discover_weekly_playlist``
- :func:`ranking_snapshot` -> ``user_ranking_features`` / ``item_ranking_features`` (the learned
  ranker's features, computed by ``recommend.ranker``), written with :class:`SnapshotWriter`

Example usage::

    import duckdb
    from featurestore import tables
    from featurestore.schemas import PARQUET_FILES

    con = duckdb.connect("data/warehouse.duckdb", read_only=True)
    stats = tables.user_listening_stats(con, as_of=datetime(2011, 5, 1, tzinfo=UTC))
    tables.export_parquet(stats, data_dir / PARQUET_FILES["user_listening_stats"])
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from featurestore.schemas import (
    ARROW_SCHEMAS,
    ARTIST_STATS_SCHEMA,
    DISCOVER_WEEKLY_PLAYLIST_SCHEMA,
    EVENT_TIMESTAMP,
    TABLES,
    TIMESTAMP_DTYPE,
    USER_CF_VECTOR_SCHEMA,
    USER_LISTENING_STATS_SCHEMA,
)

logger = logging.getLogger(__name__)

TOP_TERMS_PER_ARTIST = 5
RECENT_WINDOW_DAYS = 28


class FeatureInputError(ValueError):
    """Input to a feature computation is missing or malformed; the message names the fix."""


def _utc(moment: datetime | pd.Timestamp | str, name: str) -> pd.Timestamp:
    """``moment`` as a tz-aware UTC timestamp at microsecond precision."""
    stamp = pd.Timestamp(moment)
    if stamp.tzinfo is None:
        raise FeatureInputError(
            f"{name}={moment!r} has no time zone; pass a UTC-aware datetime, "
            f"e.g. datetime(2011, 5, 1, tzinfo=datetime.UTC)"
        )
    return stamp.tz_convert("UTC").as_unit("us")


def _now() -> pd.Timestamp:
    return pd.Timestamp(datetime.now(UTC)).as_unit("us")


def _table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    found = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        [schema, table],
    ).fetchone()
    return bool(found and found[0])


def _require_tables(con: duckdb.DuckDBPyConnection, *tables: str) -> None:
    missing = [t for t in tables if not _table_exists(con, "golden", t)]
    if missing:
        raise FeatureInputError(
            f"golden table(s) {', '.join('golden.' + t for t in missing)} not found in the DuckDB "
            f"file; materialise the golden assets first (e.g. `dagster asset materialize "
            f"--select 'group:golden'`)"
        )


def has_listen_events(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether ``golden.listen_events`` exists and holds at least one timestamped event.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        Connection to the warehouse holding schema ``golden``.

    Returns
    -------
    bool
        True for event sources (weekly snapshots are possible), False for aggregated ones.
    """
    if not _table_exists(con, "golden", "listen_events"):
        return False
    found = con.execute(
        "SELECT count(*) FROM (SELECT 1 FROM golden.listen_events WHERE ts IS NOT NULL LIMIT 1)"
    ).fetchone()
    return bool(found and found[0])


def _finish(frame: pd.DataFrame, schema: pa.Schema, created: pd.Timestamp) -> pd.DataFrame:
    """Add ``created``, order columns as in ``schema`` and fix dtypes (us UTC timestamps)."""
    frame = frame.copy()
    frame["created"] = created
    for column in schema.names:
        if column not in frame.columns:
            raise FeatureInputError(f"internal: feature column {column!r} was not computed")
    frame = frame[schema.names]
    for field in schema:
        if pa.types.is_timestamp(field.type):
            frame[field.name] = pd.to_datetime(frame[field.name], utc=True).astype(TIMESTAMP_DTYPE)
        elif pa.types.is_integer(field.type):
            frame[field.name] = frame[field.name].astype("Int64")
        elif pa.types.is_floating(field.type):
            frame[field.name] = frame[field.name].astype("float64")
        elif pa.types.is_string(field.type):
            frame[field.name] = frame[field.name].astype("object")
    return frame.reset_index(drop=True)


# Weekly snapshots from events without re-reading a user's whole past for every week end:
# what changes in a week (plays, first plays of items and artists, the artists' running play
# counts) is summed once per (user, week), and each snapshot is a running total over the
# user's weeks. The entropy of plays over artists is kept as S = sum(a * log2 a) over the
# artists' counts a (H = log2 T - S / T for T plays), which changes by a' log2 a' - a log2 a
# when an artist's count goes from a to a'; counts only grow, so the top artist's count at a
# week end is the running maximum of the counts reached. Time and memory grow with the events
# and the user-weeks, not with their product.
_WEEKLY_USER_STATS_SQL = """
WITH ev AS (
    SELECT e.user_id, e.item_id, coalesce(i.artist_id, e.item_id) AS artist_id, e.plays, e.ts,
           (date_trunc('week', e.ts AT TIME ZONE 'UTC') + INTERVAL 7 DAY) AT TIME ZONE 'UTC'
               AS week_end
    FROM golden.listen_events e LEFT JOIN golden.items i ON i.item_id = e.item_id
    WHERE e.ts IS NOT NULL AND e.plays > 0
),
weekly AS (
    SELECT user_id, week_end, sum(plays) AS plays, max(ts) AS last_ts FROM ev GROUP BY ALL
),
new_items AS (
    SELECT user_id, week_end, count(*) AS n
    FROM (SELECT user_id, min(week_end) AS week_end FROM ev GROUP BY user_id, item_id)
    GROUP BY ALL
),
artist_counts AS (
    SELECT user_id, artist_id, week_end, plays,
           sum(plays) OVER (PARTITION BY user_id, artist_id ORDER BY week_end
                            ROWS UNBOUNDED PRECEDING) AS reached
    FROM (SELECT user_id, artist_id, week_end, sum(plays) AS plays FROM ev GROUP BY ALL)
),
artist_changes AS (
    SELECT user_id, week_end,
           count(*) FILTER (WHERE reached = plays) AS new_artists,
           max(reached) AS top_reached,
           sum(reached * log2(reached)
               - CASE WHEN reached > plays THEN (reached - plays) * log2(reached - plays)
                      ELSE 0 END) AS xlogx_change
    FROM artist_counts GROUP BY ALL
),
week_ends AS (
    SELECT unnest(generate_series(min(week_end), max(week_end), INTERVAL 7 DAY)) AS snapshot_ts
    FROM weekly
),
user_weeks AS (
    SELECT f.user_id, w.snapshot_ts
    FROM (SELECT user_id, min(week_end) AS first_week_end FROM weekly GROUP BY 1) f
    JOIN week_ends w ON w.snapshot_ts >= f.first_week_end
    WHERE $cut::TIMESTAMPTZ IS NULL OR w.snapshot_ts <= $cut::TIMESTAMPTZ
),
running AS (
    SELECT uw.user_id, uw.snapshot_ts,
           sum(coalesce(k.plays, 0)) OVER w AS total_plays,
           sum(coalesce(n.n, 0)) OVER w AS distinct_items,
           sum(coalesce(a.new_artists, 0)) OVER w AS distinct_artists,
           max(a.top_reached) OVER w AS top_artist_plays,
           sum(coalesce(a.xlogx_change, 0.0)) OVER w AS xlogx,
           max(k.last_ts) OVER w AS last_listen_ts,
           sum(coalesce(k.plays, 0)) OVER (
               PARTITION BY uw.user_id ORDER BY uw.snapshot_ts
               RANGE BETWEEN INTERVAL 27 DAY PRECEDING AND CURRENT ROW
           ) AS plays_last_4_weeks
    FROM user_weeks uw
    LEFT JOIN weekly k ON k.user_id = uw.user_id AND k.week_end = uw.snapshot_ts
    LEFT JOIN new_items n ON n.user_id = uw.user_id AND n.week_end = uw.snapshot_ts
    LEFT JOIN artist_changes a ON a.user_id = uw.user_id AND a.week_end = uw.snapshot_ts
    WINDOW w AS (PARTITION BY uw.user_id ORDER BY uw.snapshot_ts ROWS UNBOUNDED PRECEDING)
)
SELECT user_id,
       total_plays::BIGINT AS total_plays,
       distinct_items::BIGINT AS distinct_items,
       distinct_artists::BIGINT AS distinct_artists,
       (top_artist_plays / total_plays)::DOUBLE AS top_artist_share,
       (greatest(log2(total_plays) - xlogx / total_plays, 0.0) + 0.0)::DOUBLE AS artist_entropy,
       last_listen_ts,
       plays_last_4_weeks::BIGINT AS plays_last_4_weeks,
       snapshot_ts AS event_timestamp
FROM running
ORDER BY user_id, snapshot_ts
"""

_AGGREGATED_ROWS_SQL = """
    joined AS (
        SELECT l.user_id, l.item_id, coalesce(i.artist_id, l.item_id) AS artist_id,
               l.plays, l.last_ts, $cut::TIMESTAMPTZ AS snapshot_ts
        FROM golden.listens l LEFT JOIN golden.items i ON i.item_id = l.item_id
        WHERE l.plays > 0
    )"""

_USER_STATS_SQL = """
WITH {rows_sql},
per_artist AS (
    SELECT user_id, snapshot_ts, artist_id, sum(plays) AS plays
    FROM joined GROUP BY ALL
),
artist_shape AS (
    SELECT user_id, snapshot_ts,
           count(*) AS distinct_artists,
           max(plays) AS top_artist_plays,
           sum(plays) AS artist_plays,
           -- Shannon entropy (bits) of the user's play distribution over artists
           -sum((plays / total) * log2(plays / total)) AS artist_entropy
    FROM (
        SELECT *, sum(plays) OVER (PARTITION BY user_id, snapshot_ts) AS total
        FROM per_artist
    )
    GROUP BY ALL
),
per_user AS (
    SELECT user_id, snapshot_ts,
           sum(plays) AS total_plays,
           count(DISTINCT item_id) AS distinct_items,
           max(last_ts) AS last_listen_ts,
           {recent_sql} AS plays_last_4_weeks
    FROM joined GROUP BY ALL
)
SELECT u.user_id,
       u.total_plays::BIGINT AS total_plays,
       u.distinct_items::BIGINT AS distinct_items,
       a.distinct_artists::BIGINT AS distinct_artists,
       (a.top_artist_plays / a.artist_plays)::DOUBLE AS top_artist_share,
       (greatest(a.artist_entropy, 0.0) + 0.0)::DOUBLE AS artist_entropy,
       u.last_listen_ts,
       u.plays_last_4_weeks::BIGINT AS plays_last_4_weeks,
       u.snapshot_ts AS event_timestamp
FROM per_user u JOIN artist_shape a USING (user_id, snapshot_ts)
ORDER BY u.user_id, u.snapshot_ts
"""


def user_listening_stats(
    con: duckdb.DuckDBPyConnection,
    as_of: datetime | None = None,
    created: datetime | None = None,
) -> pd.DataFrame:
    """Listening statistics per user, as Feast rows with ``event_timestamp``.

    For event sources (``golden.listen_events`` has timestamps) there is one row per user and
    week: a snapshot as of each week end (Monday 00:00 UTC), computed from the events strictly
    before it, from the user's first week up to the week end after the last event. That makes
    point-in-time retrieval meaningful. For aggregated sources (``golden.listens`` only, e.g.
    HetRec) there is one row per user stamped ``as_of``.

    Items are mapped to artists through ``golden.items``; an item missing there counts as its
    own artist (so shares stay defined).

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        Connection to the warehouse holding schema ``golden`` (read-only is enough).
    as_of : datetime, optional
        UTC-aware stamp for the rows of an aggregated source (required there). For event
        sources it cuts the snapshots: only week ends at or before ``as_of`` are kept.
    created : datetime, optional
        UTC-aware computation time written to ``created``; defaults to now.

    Returns
    -------
    pandas.DataFrame
        Columns of :data:`USER_LISTENING_STATS_SCHEMA`. ``top_artist_share`` is the share of
        the user's plays that went to their most played artist; ``artist_entropy`` the Shannon
        entropy in bits of plays over artists (0 = one artist). ``plays_last_4_weeks`` (plays
        in the 28 days before the snapshot) is null for aggregated sources; ``last_listen_ts``
        is null where the source has no timestamps.

    Raises
    ------
    FeatureInputError
        If golden tables are missing, or ``as_of`` is missing for an aggregated source.
    """
    created_ts = _utc(created, "created") if created is not None else _now()
    sql, params = _user_stats_query(con, as_of)
    frame = con.execute(sql, params).df()
    logger.info("user_listening_stats: %d rows", len(frame))
    if frame.empty:
        frame = pd.DataFrame(columns=USER_LISTENING_STATS_SCHEMA.names)
    return _finish(frame, USER_LISTENING_STATS_SCHEMA, created_ts)


def _user_stats_query(
    con: duckdb.DuckDBPyConnection, as_of: datetime | None
) -> tuple[str, dict[str, Any]]:
    """The query of :func:`user_listening_stats` and its parameters."""
    _require_tables(con, "listens", "items")
    cut = _utc(as_of, "as_of").to_pydatetime() if as_of is not None else None
    if has_listen_events(con):
        return _WEEKLY_USER_STATS_SQL, {"cut": cut}
    if cut is None:
        raise FeatureInputError(
            "golden.listens has no timestamped events (golden.listen_events is absent or "
            "empty): pass as_of=<UTC datetime> to stamp the one row per user"
        )
    sql = _USER_STATS_SQL.format(rows_sql=_AGGREGATED_ROWS_SQL, recent_sql="NULL::BIGINT")
    return sql, {"cut": cut}


EXPORT_BATCH_ROWS = 500_000  # rows per batch when a feature table is streamed to Parquet


@dataclass
class StreamedExport:
    """What :func:`export_user_listening_stats` wrote: the file, its rows, its first rows."""

    path: Path
    rows: int
    head: pd.DataFrame


def export_user_listening_stats(
    con: duckdb.DuckDBPyConnection,
    path: str | Path,
    as_of: datetime | None = None,
    created: datetime | None = None,
    batch_rows: int = EXPORT_BATCH_ROWS,
) -> StreamedExport:
    """:func:`user_listening_stats` written to Parquet in batches of ``batch_rows`` (the table
    grows with users x weeks: it never is in memory whole); the same rows, columns and types
    as :func:`export_parquet` of the frame. Written atomically (temp file + rename)."""
    created_ts = _utc(created, "created") if created is not None else _now()
    sql, params = _user_stats_query(con, as_of)
    schema = USER_LISTENING_STATS_SCHEMA
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(target.name + ".tmp")
    rows, head = 0, None
    reader = con.execute(sql, params).to_arrow_reader(batch_rows)
    with pq.ParquetWriter(temporary, schema) as writer:
        for batch in reader:
            frame = _finish(batch.to_pandas(), schema, created_ts)
            writer.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False))
            rows += len(frame)
            head = frame.head(20) if head is None else head
    temporary.replace(target)
    logger.info("user_listening_stats: wrote %d rows to %s", rows, target)
    empty = pd.DataFrame(columns=schema.names)
    return StreamedExport(target, rows, head if head is not None else empty)


_TOP_TERMS_SQL = """
    SELECT artist_id,
           string_agg(term, ', ' ORDER BY weight DESC, taggers DESC NULLS LAST, term)
               AS top_terms
    FROM (
        SELECT artist_id, term, weight, taggers,
               row_number() OVER (PARTITION BY artist_id
                                  ORDER BY weight DESC, taggers DESC NULLS LAST, term) AS n
        FROM golden.artist_terms
    ) WHERE n <= $top GROUP BY artist_id
"""

_NO_TERMS_SQL = "SELECT NULL::VARCHAR AS artist_id, NULL::VARCHAR AS top_terms WHERE FALSE"

_ARTIST_STATS_SQL = """
WITH played AS (
    SELECT coalesce(i.artist_id, l.item_id) AS artist_id,
           count(DISTINCT l.user_id) AS listeners, sum(l.plays) AS plays
    FROM golden.listens l LEFT JOIN golden.items i ON i.item_id = l.item_id
    WHERE l.plays > 0
    GROUP BY 1
),
terms AS ({terms_sql})
SELECT a.artist_id,
       coalesce(p.listeners, 0)::BIGINT AS listeners,
       coalesce(p.plays, 0)::BIGINT AS plays,
       row_number() OVER (ORDER BY coalesce(p.listeners, 0) DESC,
                          coalesce(p.plays, 0) DESC, a.artist_id)::BIGINT
           AS popularity_rank,
       coalesce(t.top_terms, '') AS top_terms,
       $stamp::TIMESTAMPTZ AS event_timestamp
FROM golden.artists a
LEFT JOIN played p USING (artist_id)
LEFT JOIN terms t USING (artist_id)
ORDER BY popularity_rank
"""


def artist_stats(
    con: duckdb.DuckDBPyConnection,
    as_of: datetime,
    created: datetime | None = None,
    top_terms: int = TOP_TERMS_PER_ARTIST,
) -> pd.DataFrame:
    """Listeners, plays, popularity rank and top terms per artist, stamped ``as_of``.

    Every artist in ``golden.artists`` gets a row (artists nobody played have 0 listeners and
    rank after all played ones). Plays of track-level items count for the track's artist.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        Connection to the warehouse holding schema ``golden``.
    as_of : datetime
        UTC-aware ``event_timestamp`` of every row.
    created : datetime, optional
        UTC-aware computation time; defaults to now.
    top_terms : int, default 5
        How many terms (highest weight first, then most taggers, then name) go into
        ``top_terms``, joined by ``", "``; empty string when the artist has no terms.

    Returns
    -------
    pandas.DataFrame
        Columns of :data:`ARTIST_STATS_SCHEMA`. ``popularity_rank`` is 1 for the artist with
        the most listeners (ties broken by plays, then artist_id).
    """
    stamp = _utc(as_of, "as_of")
    created_ts = _utc(created, "created") if created is not None else _now()
    if top_terms < 1:
        raise FeatureInputError(f"top_terms={top_terms} must be at least 1")
    _require_tables(con, "artists", "listens", "items")
    params = {"stamp": stamp.to_pydatetime()}
    terms_sql = _NO_TERMS_SQL
    if _table_exists(con, "golden", "artist_terms"):
        terms_sql, params["top"] = _TOP_TERMS_SQL, top_terms
    frame = con.execute(_ARTIST_STATS_SQL.format(terms_sql=terms_sql), params).df()
    logger.info("artist_stats: %d artists stamped %s", len(frame), stamp)
    return _finish(frame, ARTIST_STATS_SCHEMA, created_ts)


def user_cf_vectors(
    vectors: pd.DataFrame,
    as_of: datetime,
    created: datetime | None = None,
) -> pd.DataFrame:
    """CF user vectors as a Feast feature table.

    Parameters
    ----------
    vectors : pandas.DataFrame
        Columns ``user_id``, ``vector`` (sequence of floats, one length for all rows) and
        ``version`` (model version string), as produced by the CF model code.
    as_of : datetime
        UTC-aware ``event_timestamp`` (when the model was trained).
    created : datetime, optional
        UTC-aware computation time; defaults to now.

    Returns
    -------
    pandas.DataFrame
        Columns of :data:`USER_CF_VECTOR_SCHEMA`; ``cf_vector`` holds float32 numpy arrays.
    """
    missing = {"user_id", "vector", "version"} - set(vectors.columns)
    if missing:
        raise FeatureInputError(
            f"CF vector frame lacks column(s) {sorted(missing)}; expected user_id, vector, "
            f"version (got {list(vectors.columns)})"
        )
    stamp = _utc(as_of, "as_of")
    created_ts = _utc(created, "created") if created is not None else _now()
    cf = [np.asarray(v, dtype=np.float32) for v in vectors["vector"]]
    lengths = {len(v) for v in cf}
    if len(lengths) > 1:
        raise FeatureInputError(f"CF vectors have mixed lengths {sorted(lengths)}; expected one")
    frame = pd.DataFrame(
        {
            "user_id": vectors["user_id"].astype(str).to_numpy(),
            "cf_vector": cf,
            "model_version": vectors["version"].astype(str).to_numpy(),
            "event_timestamp": stamp,
        }
    )
    return _finish(frame, USER_CF_VECTOR_SCHEMA, created_ts)


def discover_weekly_playlist(
    recommendations: pd.DataFrame,
    week_start: datetime,
    created: datetime | None = None,
) -> pd.DataFrame:
    """Fold ranked recommendations into the ``discover_weekly_playlist`` feature table.

    Parameters
    ----------
    recommendations : pandas.DataFrame
        One row per recommended item: ``user_id``, ``item_id``, ``rank`` (1 = first) and
        ``reason`` (a short explanation); optionally ``variant``, the user's A/B variant
        (null when absent).
    week_start : datetime
        UTC-aware start of the week the playlist is valid for; becomes ``event_timestamp``.
    created : datetime, optional
        UTC-aware computation time; defaults to now.

    Returns
    -------
    pandas.DataFrame
        Columns of :data:`DISCOVER_WEEKLY_PLAYLIST_SCHEMA`, one row per user.
    """
    missing = {"user_id", "item_id", "rank", "reason"} - set(recommendations.columns)
    if missing:
        raise FeatureInputError(
            f"recommendation frame lacks column(s) {sorted(missing)}; expected user_id, "
            f"item_id, rank, reason"
        )
    stamp = _utc(week_start, "week_start")
    created_ts = _utc(created, "created") if created is not None else _now()
    iso = stamp.isocalendar()
    ordered = recommendations.sort_values(["user_id", "rank"], kind="stable")
    grouped = ordered.groupby("user_id", sort=True)
    frame = pd.DataFrame(
        {
            "playlist_items": grouped["item_id"].agg(lambda s: [str(x) for x in s]),
            "playlist_reasons": grouped["reason"].agg(lambda s: [str(x) for x in s]),
        }
    ).reset_index()
    if "variant" in ordered.columns:
        frame["variant"] = grouped["variant"].first().astype(str).to_numpy()
    else:
        frame["variant"] = None
    frame["user_id"] = frame["user_id"].astype(str)
    frame["week"] = f"{iso.year}-W{iso.week:02d}"
    frame["event_timestamp"] = stamp
    return _finish(frame, DISCOVER_WEEKLY_PLAYLIST_SCHEMA, created_ts)


def export_parquet(frame: pd.DataFrame, path: str | Path, schema: pa.Schema | None = None) -> Path:
    """Write a feature table to Parquet with microsecond UTC timestamps.

    Parameters
    ----------
    frame : pandas.DataFrame
        A feature table; must have an ``event_timestamp`` column.
    path : str or Path
        Target file; parent directories are created. Written atomically (temp file + rename)
        so a reader never sees half a file.
    schema : pyarrow.Schema, optional
        Arrow schema to cast to. Defaults to the matching schema of :data:`ARROW_SCHEMAS` when
        the frame's columns equal one of them, else the inferred schema with every timestamp
        column cast to ``timestamp[us, UTC]``.

    Returns
    -------
    Path
        The written file.
    """
    if "event_timestamp" not in frame.columns:
        raise FeatureInputError(
            f"feature table for {path} has no event_timestamp column (got {list(frame.columns)})"
        )
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if schema is None:
        schema = next((s for s in ARROW_SCHEMAS.values() if s.names == list(frame.columns)), None)
    out = frame.copy()
    for column in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[column]):
            out[column] = pd.to_datetime(out[column], utc=True).astype(TIMESTAMP_DTYPE)
    if schema is not None:
        table = pa.Table.from_pandas(out, schema=schema, preserve_index=False)
    else:
        table = pa.Table.from_pandas(out, preserve_index=False)
        fields = [
            pa.field(f.name, pa.timestamp("us", tz="UTC")) if pa.types.is_timestamp(f.type) else f
            for f in table.schema
        ]
        table = table.cast(pa.schema(fields))
    temporary = target.with_name(target.name + ".tmp")
    pq.write_table(table, temporary)
    temporary.replace(target)
    logger.info("wrote %d rows to %s", table.num_rows, target)
    return target


def ranking_snapshot(
    features: pd.DataFrame, view: str, as_of: datetime, created: datetime | None = None
) -> pd.DataFrame:
    """One snapshot of a ranker feature view from frames indexed by the view's key.

    Parameters
    ----------
    features : pandas.DataFrame
        Index: the join key (``user_id`` or ``item_id``); columns: the view's features
        (``recommend.ranker.user_features`` / ``item_features``).
    view : str
        ``user_ranking_features`` or ``item_ranking_features``.
    as_of : datetime
        UTC-aware ``event_timestamp`` of the snapshot.
    created : datetime, optional
        UTC-aware computation time; defaults to now.
    """
    table = TABLES[view]
    missing = sorted(set(table.feature_names) - set(features.columns))
    if missing:
        raise FeatureInputError(f"{view} snapshot lacks feature column(s) {missing}")
    frame = features[list(table.feature_names)].rename_axis(table.key).reset_index()
    frame[table.key] = frame[table.key].astype(str)
    frame[EVENT_TIMESTAMP] = _utc(as_of, "as_of")
    created_ts = _utc(created, "created") if created is not None else _now()
    return _finish(frame, ARROW_SCHEMAS[view], created_ts)


class SnapshotWriter:
    """Replace one snapshot (rows of one ``event_timestamp``) in a feature view's Parquet,
    keeping every other snapshot, in bounded memory: the kept rows are copied batch by batch (a
    column added to the view since they were written is null), the new ones appended as they
    come (:meth:`add`), the file swapped in atomically on exit (nothing changes on an error).

    Example usage::

        with SnapshotWriter(path, "user_ranking_features", as_of) as writer:
            for frame in batches:
                writer.add(ranking_snapshot(frame, "user_ranking_features", as_of))
    """

    def __init__(self, path: str | Path, view: str, as_of: datetime) -> None:
        self.path = Path(path)
        self.schema = ARROW_SCHEMAS[view]
        self.as_of = _utc(as_of, "as_of")
        self.rows = 0
        self.kept = 0
        self._temporary = self.path.with_name(f".{self.path.name}.partial")
        self._writer: pq.ParquetWriter | None = None

    def __enter__(self) -> SnapshotWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = pq.ParquetWriter(self._temporary, self.schema)
        if self.path.exists():
            self._keep_other_snapshots()
        return self

    def _keep_other_snapshots(self) -> None:
        stamp_type = self.schema.field(EVENT_TIMESTAMP).type
        stamp = pa.scalar(self.as_of.to_pydatetime(), type=stamp_type)
        for batch in pq.ParquetFile(self.path).iter_batches(batch_size=100_000):
            table = pa.Table.from_batches([batch])
            table = table.filter(pc.not_equal(table[EVENT_TIMESTAMP].cast(stamp_type), stamp))
            for field in self.schema:
                if field.name not in table.column_names:
                    table = table.append_column(field.name, pa.nulls(table.num_rows, field.type))
            if table.num_rows:
                self._writer.write_table(table.select(self.schema.names).cast(self.schema))
                self.kept += table.num_rows

    def add(self, frame: pd.DataFrame) -> None:
        """Append rows of the snapshot (a frame of the view's columns, e.g. from
        :func:`ranking_snapshot`)."""
        if frame.empty:
            return
        if self._writer is None:
            raise RuntimeError("SnapshotWriter.add outside its with block")
        out = frame.copy()
        for column in out.columns:
            if pd.api.types.is_datetime64_any_dtype(out[column]):
                out[column] = pd.to_datetime(out[column], utc=True).astype(TIMESTAMP_DTYPE)
        self._writer.write_table(
            pa.Table.from_pandas(out, schema=self.schema, preserve_index=False)
        )
        self.rows += len(frame)

    def __exit__(self, kind, error, trace) -> None:
        if self._writer is not None:
            self._writer.close()
        if kind is None:
            self._temporary.replace(self.path)
            logger.info("wrote %d rows of the %s snapshot to %s", self.rows, self.as_of, self.path)
        else:
            self._temporary.unlink(missing_ok=True)
