"""Feature tables for Feast (featurestore.tables): values, timestamps, Parquet contract."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore import schemas
from featurestore import tables as features

AS_OF = datetime(2024, 2, 1, tzinfo=UTC)

GOLDEN_DDL = """
CREATE SCHEMA IF NOT EXISTS golden;
CREATE TABLE golden.users(user_id VARCHAR);
CREATE TABLE golden.artists(artist_id VARCHAR, name VARCHAR, genre VARCHAR, url VARCHAR);
CREATE TABLE golden.tracks(track_id VARCHAR, artist_id VARCHAR, title VARCHAR,
                           duration_s DOUBLE, genre VARCHAR);
CREATE TABLE golden.items(item_id VARCHAR, artist_id VARCHAR, name VARCHAR, genre VARCHAR,
                          level VARCHAR);
CREATE TABLE golden.listens(user_id VARCHAR, item_id VARCHAR, plays BIGINT,
                            first_ts TIMESTAMPTZ, last_ts TIMESTAMPTZ);
CREATE TABLE golden.listen_events(user_id VARCHAR, item_id VARCHAR, plays BIGINT,
                                  ts TIMESTAMPTZ);
CREATE TABLE golden.artist_terms(artist_id VARCHAR, term VARCHAR, weight DOUBLE,
                                 taggers BIGINT);
"""

# u1 plays a1 x3 and a2 x1 in the week of 2024-01-01, nothing the next week, a2 x5 in the week
# of 2024-01-15. u2 plays a3 x2 in the week of 2024-01-08. Week ends are Mondays 00:00 UTC.
EVENTS = [
    ("u1", "t1", 3, "2024-01-02 10:00:00+00"),
    ("u1", "t2", 1, "2024-01-03 10:00:00+00"),
    ("u1", "t3", 5, "2024-01-16 10:00:00+00"),
    ("u2", "t4", 2, "2024-01-10 10:00:00+00"),
]


def make_golden_db(con: duckdb.DuckDBPyConnection, events: bool = True) -> None:
    """A tiny golden schema: 3 users (u3 never plays), 3 artists, 4 tracks (t2, t3 by a2).

    With ``events`` the plays are timestamped events (and ``listens`` their aggregate);
    without, ``listens`` holds the same aggregates with NULL timestamps (HetRec-like).
    """
    con.execute(GOLDEN_DDL)
    con.execute("INSERT INTO golden.users VALUES ('u1'), ('u2'), ('u3')")
    con.execute(
        "INSERT INTO golden.artists VALUES ('a1', 'Alpha', 'rock', NULL), "
        "('a2', 'Beta', 'pop', NULL), ('a3', 'Gamma', 'jazz', NULL)"
    )
    con.execute(
        "INSERT INTO golden.tracks VALUES ('t1', 'a1', 'One', 200, 'rock'), "
        "('t2', 'a2', 'Two', 180, 'pop'), ('t3', 'a2', 'Three', 240, 'pop'), "
        "('t4', 'a3', 'Four', 300, 'jazz')"
    )
    con.execute(
        "INSERT INTO golden.items SELECT track_id, artist_id, title, genre, 'track' "
        "FROM golden.tracks"
    )
    con.executemany("INSERT INTO golden.listen_events VALUES (?, ?, ?, ?::TIMESTAMPTZ)", EVENTS)
    if events:
        con.execute(
            "INSERT INTO golden.listens SELECT user_id, item_id, sum(plays), min(ts), max(ts) "
            "FROM golden.listen_events GROUP BY ALL"
        )
    else:
        con.execute(
            "INSERT INTO golden.listens SELECT user_id, item_id, sum(plays), NULL, NULL "
            "FROM golden.listen_events GROUP BY ALL"
        )
        con.execute("DELETE FROM golden.listen_events")
    terms = [("a1", f"term{i}", 1.0 - i / 10, 10 - i) for i in range(7)]
    terms += [("a2", "pop", 0.8, 2), ("a2", "dance", 0.8, 5)]
    con.executemany("INSERT INTO golden.artist_terms VALUES (?, ?, ?, ?)", terms)


@pytest.fixture()
def events_con() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    make_golden_db(con, events=True)
    yield con
    con.close()


@pytest.fixture()
def aggregated_con() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    make_golden_db(con, events=False)
    yield con
    con.close()


def _row(frame: pd.DataFrame, user_id: str, stamp: str) -> pd.Series:
    hits = frame[(frame.user_id == user_id) & (frame.event_timestamp == pd.Timestamp(stamp))]
    assert len(hits) == 1, f"expected one row for {user_id} at {stamp}, got {len(hits)}"
    return hits.iloc[0]


def test_weekly_snapshots_count_only_events_before_each_week_end(events_con) -> None:
    stats = features.user_listening_stats(events_con)
    assert sorted(stats.user_id.unique()) == ["u1", "u2"]
    # u1: first week ends 2024-01-08, last week end after the last event is 2024-01-22
    u1 = stats[stats.user_id == "u1"]
    assert [str(t.date()) for t in u1.event_timestamp] == ["2024-01-08", "2024-01-15", "2024-01-22"]
    first = _row(stats, "u1", "2024-01-08 00:00:00+00:00")
    assert first.total_plays == 4 and first.distinct_items == 2 and first.distinct_artists == 2
    assert first.top_artist_share == pytest.approx(0.75)
    assert first.artist_entropy == pytest.approx(-(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25)))
    assert first.last_listen_ts == pd.Timestamp("2024-01-03 10:00:00+00:00")
    quiet = _row(stats, "u1", "2024-01-15 00:00:00+00:00")
    assert quiet.total_plays == 4 and quiet.plays_last_4_weeks == 4
    last = _row(stats, "u1", "2024-01-22 00:00:00+00:00")
    assert last.total_plays == 9 and last.distinct_items == 3 and last.distinct_artists == 2
    assert last.top_artist_share == pytest.approx(6 / 9)
    u2 = _row(stats, "u2", "2024-01-15 00:00:00+00:00")
    assert u2.artist_entropy == 0.0 and u2.top_artist_share == 1.0


def test_plays_last_four_weeks_forgets_old_weeks(events_con) -> None:
    events_con.execute(
        "INSERT INTO golden.listen_events VALUES ('u2', 't4', 1, '2024-03-05 10:00:00+00')"
    )
    stats = features.user_listening_stats(events_con)
    # 2024-03-04: the 2024-01-10 plays are 8 weeks old, so not recent; total keeps them
    row = _row(stats, "u2", "2024-03-04 00:00:00+00:00")
    assert row.total_plays == 2 and row.plays_last_4_weeks == 0
    row = _row(stats, "u2", "2024-03-11 00:00:00+00:00")
    assert row.total_plays == 3 and row.plays_last_4_weeks == 1


def test_as_of_cuts_event_snapshots(events_con) -> None:
    stats = features.user_listening_stats(events_con, as_of=datetime(2024, 1, 15, tzinfo=UTC))
    assert stats.event_timestamp.max() == pd.Timestamp("2024-01-15 00:00:00+00:00")


def _reference_snapshots(events: pd.DataFrame, artist_of: dict[str, str]) -> pd.DataFrame:
    """Each user's statistics at each week end recomputed from every event before it."""
    ts = pd.to_datetime(events["ts"], utc=True)
    week_end = ts.dt.tz_localize(None).dt.to_period("W-SUN").dt.start_time + pd.Timedelta(days=7)
    events = events.assign(week_end=week_end.dt.tz_localize("UTC"))
    ends = pd.date_range(events["week_end"].min(), events["week_end"].max(), freq="7D")
    rows = []
    for user, own in events.groupby("user_id"):
        for end in ends[ends >= own["week_end"].min()]:
            past = own[own["week_end"] <= end]
            per_artist = past.groupby(past["item_id"].map(artist_of))["plays"].sum()
            shares = per_artist / per_artist.sum()
            recent = past[past["week_end"] > end - pd.Timedelta(days=28)]
            rows.append(
                (
                    user,
                    end,
                    int(past["plays"].sum()),
                    past["item_id"].nunique(),
                    len(per_artist),
                    float(shares.max()),
                    float(-(shares * np.log2(shares)).sum()),
                    int(recent["plays"].sum()),
                )
            )
    columns = ["user_id", "event_timestamp", "total_plays", "distinct_items"]
    columns += ["distinct_artists", "top_artist_share", "artist_entropy", "plays_last_4_weeks"]
    return pd.DataFrame(rows, columns=columns)


def test_weekly_snapshots_equal_a_recount_of_every_past_event() -> None:
    """The running totals (entropy kept as sum a*log2 a, top artist as a running maximum,
    four weeks as a range window) equal the statistics recounted at each week end."""
    rng = np.random.default_rng(3)
    n = 600
    events = pd.DataFrame(
        {
            "user_id": [f"u{u}" for u in rng.integers(0, 12, n)],
            "item_id": [f"t{i}" for i in rng.integers(0, 40, n)],
            "plays": rng.integers(1, 6, n),
            "ts": pd.Timestamp("2024-01-01", tz="UTC")
            + pd.to_timedelta(rng.integers(0, 70 * 86400, n), unit="s"),
        }
    )
    artist_of = {f"t{i}": f"a{i % 9}" for i in range(40)}
    con = duckdb.connect()
    con.execute(GOLDEN_DDL)
    con.execute("INSERT INTO golden.listen_events SELECT * FROM events")
    con.execute(
        "INSERT INTO golden.items SELECT item_id, artist_id, item_id, NULL, 'track' "
        "FROM (SELECT unnest(?) AS item_id, unnest(?) AS artist_id)",
        [list(artist_of), list(artist_of.values())],
    )
    con.execute(
        "INSERT INTO golden.listens SELECT user_id, item_id, sum(plays), min(ts), "
        "max(ts) FROM events GROUP BY ALL"
    )
    stats = features.user_listening_stats(con).sort_values(["user_id", "event_timestamp"])
    expected = _reference_snapshots(events, artist_of).sort_values(["user_id", "event_timestamp"])
    assert len(stats) == len(expected)
    for column in expected.columns[2:]:
        np.testing.assert_allclose(
            stats[column].to_numpy(dtype=float),
            expected[column].to_numpy(dtype=float),
            rtol=1e-9,
            atol=1e-12,
            err_msg=column,
        )
    assert (stats["user_id"].to_numpy() == expected["user_id"].to_numpy()).all()
    stamps = pd.to_datetime(stats["event_timestamp"], utc=True).astype("datetime64[ns, UTC]")
    assert (stamps.to_numpy() == expected["event_timestamp"].to_numpy()).all()


def test_aggregated_source_gives_one_row_per_user_at_as_of(aggregated_con) -> None:
    stats = features.user_listening_stats(aggregated_con, as_of=AS_OF)
    assert list(stats.user_id) == ["u1", "u2"]
    assert (stats.event_timestamp == pd.Timestamp(AS_OF)).all()
    assert stats.plays_last_4_weeks.isna().all() and stats.last_listen_ts.isna().all()
    assert list(stats.total_plays) == [9, 2]


def test_aggregated_source_without_as_of_says_what_to_pass(aggregated_con) -> None:
    with pytest.raises(features.FeatureInputError, match="pass as_of"):
        features.user_listening_stats(aggregated_con)


def test_naive_timestamps_are_rejected(aggregated_con) -> None:
    with pytest.raises(features.FeatureInputError, match="no time zone"):
        features.user_listening_stats(aggregated_con, as_of=datetime(2024, 1, 1))


def test_missing_golden_table_names_it() -> None:
    con = duckdb.connect()
    con.execute("CREATE SCHEMA golden")
    with pytest.raises(features.FeatureInputError, match="golden.listens"):
        features.user_listening_stats(con, as_of=AS_OF)


def test_feature_tables_use_microsecond_utc_timestamps(events_con) -> None:
    stats = features.user_listening_stats(events_con)
    for column in ("event_timestamp", "created", "last_listen_ts"):
        assert str(stats[column].dtype) == "datetime64[us, UTC]", column


def test_artist_stats_rank_and_top_terms(events_con) -> None:
    stats = features.artist_stats(events_con, as_of=AS_OF).set_index("artist_id")
    assert stats.loc["a2", "plays"] == 6 and stats.loc["a2", "listeners"] == 1
    # listeners tie at 1: more plays ranks first
    assert list(stats.sort_values("popularity_rank").index) == ["a2", "a1", "a3"]
    assert stats.loc["a1", "top_terms"] == "term0, term1, term2, term3, term4"
    assert stats.loc["a2", "top_terms"] == "dance, pop"  # equal weight: more taggers first
    assert stats.loc["a3", "top_terms"] == ""
    assert (stats.event_timestamp == pd.Timestamp(AS_OF)).all()


def test_artist_without_plays_ranks_last(events_con) -> None:
    events_con.execute("INSERT INTO golden.artists VALUES ('a9', 'Silent', NULL, NULL)")
    stats = features.artist_stats(events_con, as_of=AS_OF).set_index("artist_id")
    assert stats.loc["a9", "listeners"] == 0 and stats.loc["a9", "popularity_rank"] == 4


def test_cf_vectors_are_float32_lists_with_version() -> None:
    frame = pd.DataFrame(
        {"user_id": [1, 2], "vector": [[0.5, 1.5], np.ones(2)], "version": ["als-1", "als-1"]}
    )
    cf = features.user_cf_vectors(frame, as_of=AS_OF)
    assert list(cf.user_id) == ["1", "2"]
    assert cf.cf_vector[0].dtype == np.float32 and list(cf.cf_vector[0]) == [0.5, 1.5]
    assert list(cf.model_version) == ["als-1", "als-1"]


def test_cf_vectors_reject_mixed_lengths_and_missing_columns() -> None:
    with pytest.raises(features.FeatureInputError, match="mixed lengths"):
        features.user_cf_vectors(
            pd.DataFrame({"user_id": ["1", "2"], "vector": [[1.0], [1.0, 2.0]], "version": "v"}),
            as_of=AS_OF,
        )
    with pytest.raises(features.FeatureInputError, match="version"):
        features.user_cf_vectors(pd.DataFrame({"user_id": ["1"], "vector": [[1.0]]}), AS_OF)


def test_discover_weekly_playlist_orders_items_by_rank() -> None:
    recs = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u2"],
            "item_id": ["t9", "t8", "t7"],
            "rank": [2, 1, 1],
            "reason": ["because b", "because a", "because c"],
        }
    )
    playlist = features.discover_weekly_playlist(recs, week_start=datetime(2024, 2, 5, tzinfo=UTC))
    row = playlist.set_index("user_id").loc["u1"]
    assert row.playlist_items == ["t8", "t9"] and row.playlist_reasons == ["because a", "because b"]
    assert row.week == "2024-W06"


def test_export_parquet_writes_microsecond_timestamps_and_float32_lists(
    events_con, tmp_path: Path
) -> None:
    stats = features.user_listening_stats(events_con)
    stats["event_timestamp"] = stats["event_timestamp"].astype("datetime64[ns, UTC]")
    path = features.export_parquet(stats, tmp_path / "stats.parquet")
    schema = pq.read_schema(path)
    assert schema.field("event_timestamp").type == pa.timestamp("us", tz="UTC")
    assert schema.field("created").type == pa.timestamp("us", tz="UTC")
    cf = features.user_cf_vectors(
        pd.DataFrame({"user_id": ["1"], "vector": [[0.25, 0.5]], "version": ["v"]}), AS_OF
    )
    schema = pq.read_schema(features.export_parquet(cf, tmp_path / "cf.parquet"))
    assert schema.field("cf_vector").type == pa.list_(pa.float32())


def test_export_parquet_requires_event_timestamp(tmp_path: Path) -> None:
    with pytest.raises(features.FeatureInputError, match="event_timestamp"):
        features.export_parquet(pd.DataFrame({"user_id": ["1"]}), tmp_path / "x.parquet")


def _one_frame_per_table(con: duckdb.DuckDBPyConnection) -> dict[str, pd.DataFrame]:
    cf = pd.DataFrame({"user_id": ["1"], "vector": [[0.25, 0.5]], "version": ["v"]})
    recs = pd.DataFrame({"user_id": ["u1"], "item_id": ["t1"], "rank": [1], "reason": ["r"]})
    return {
        "user_listening_stats": features.user_listening_stats(con),
        "artist_stats": features.artist_stats(con, as_of=AS_OF),
        "user_cf_vector": features.user_cf_vectors(cf, as_of=AS_OF),
        "discover_weekly_playlist": features.discover_weekly_playlist(recs, AS_OF),
        **{
            view: features.ranking_snapshot(
                pd.DataFrame(
                    {name: [0.5] for name in schemas.TABLES[view].feature_names},
                    index=pd.Index(["k1"], name=schemas.TABLES[view].key),
                ),
                view,
                AS_OF,
            )
            for view in ("user_ranking_features", "item_ranking_features")
        },
    }


def test_parquet_schemas_are_the_columns_of_featurestore_schemas(
    events_con, tmp_path: Path
) -> None:
    frames = _one_frame_per_table(events_con)
    assert set(frames) == set(schemas.TABLES) == set(schemas.PARQUET_FILES)
    for name, table in schemas.TABLES.items():
        expected = pa.schema(
            [(table.key, pa.string())]
            + [(c.name, c.type) for c in table.features]
            + [("event_timestamp", schemas.TIMESTAMP), ("created", schemas.TIMESTAMP)]
        )
        assert schemas.ARROW_SCHEMAS[name].equals(expected), name
        assert list(frames[name].columns) == expected.names, name
        written = features.export_parquet(frames[name], tmp_path / schemas.PARQUET_FILES[name])
        assert pq.read_schema(written).remove_metadata().equals(expected), name


@pytest.mark.slow
def test_hetrec_user_and_artist_stats(hetrec_dir: Path) -> None:
    plays = pd.read_csv(hetrec_dir / "user_artists.dat", sep="\t", dtype=str)
    plays.columns = ["user_id", "item_id", "plays"]
    plays["plays"] = plays["plays"].astype("int64")
    con = duckdb.connect()
    con.execute(GOLDEN_DDL)
    con.register("plays_frame", plays)
    con.execute(
        "INSERT INTO golden.listens SELECT user_id, item_id, plays, NULL, NULL FROM plays_frame "
        "WHERE plays > 0"
    )
    con.execute(
        "INSERT INTO golden.items SELECT DISTINCT item_id, item_id, NULL, NULL, 'artist' "
        "FROM plays_frame"
    )
    con.execute("INSERT INTO golden.artists SELECT artist_id, name, NULL, NULL FROM golden.items")
    stats = features.user_listening_stats(con, as_of=AS_OF)
    assert len(stats) == plays.user_id.nunique() == 1892
    assert int(stats.total_plays.sum()) == int(plays.plays.sum())
    assert stats.top_artist_share.between(0, 1).all() and (stats.artist_entropy >= 0).all()
    artists = features.artist_stats(con, as_of=AS_OF)
    assert len(artists) == plays.item_id.nunique()
    top = artists.iloc[0]
    assert top.popularity_rank == 1 and top.listeners == plays.groupby("item_id").size().max()


def test_streamed_user_stats_export_equals_the_frame_export(events_con, tmp_path: Path) -> None:
    """Written in batches (here of 2 rows), the Parquet file holds the rows, columns and types
    that exporting the whole frame gives."""
    created = datetime(2024, 3, 1, tzinfo=UTC)
    whole = features.export_parquet(
        features.user_listening_stats(events_con, created=created), tmp_path / "whole.parquet"
    )
    written = features.export_user_listening_stats(
        events_con, tmp_path / "streamed.parquet", created=created, batch_rows=2
    )
    expected = pq.read_table(whole)
    streamed = pq.read_table(written.path)
    assert written.rows == expected.num_rows > 2
    assert streamed.schema == expected.schema
    assert streamed.equals(expected)
    assert list(written.head.columns) == expected.schema.names
