"""Feast's Spark offline store (the Spark warehouse engine's) over the Parquet the pipeline writes:
the same views on ``SparkSource``, point-in-time answers equal to the DuckDB offline store's on
the same files, materialisation to the online store, and the shared SparkSession left as found.

The config and definition tests start no Spark; the others share one local[2] session for the
module (its start and first query take most of a minute on a busy 2-core machine: ``slow``).
"""

from __future__ import annotations

import importlib.util
import uuid
from pathlib import Path

import pandas as pd
import pytest

from featurestore import schemas
from featurestore.client import SPARK_REGEX_NAMES, SPARK_TIME_ZONE, FeatureStoreClient
from featurestore.config import build_config
from featurestore.definitions import build_definitions
from featurestore.errors import FeatureStoreError
from featurestore.ranker_features import (
    ITEM_VIEW,
    USER_VIEW,
    OnlineRankingFeatures,
    PointInTimeRankingFeatures,
    publish_snapshot,
    training_as_of,
    write_snapshot,
)
from tests.services import spark_missing
from tests.test_feature_store import CF_VECTORS, REPO, write_feature_parquet

CUTOFF = pd.Timestamp("2026-11-16", tz="UTC")
# user_listening_stats: weekly snapshots of u1 (4 plays at 2024-01-15, 9 at 2024-01-22) and u2;
# user_cf_vector stamped 2024-02-01 (tests.test_features.AS_OF)
ENTITY_ROWS = [
    ("u1", "2024-01-07 00:00:00"),  # before u1's first snapshot: nulls
    ("u1", "2024-01-21 23:59:59"),  # one second before the change: the old value
    ("u1", "2024-01-22 00:00:00"),  # at the change
    ("u1", "2024-02-02 00:00:00"),  # after the CF vector
    ("u2", "2024-01-20 00:00:00"),
    ("u9", "2024-03-01 00:00:00"),  # a CF vector, no listening stats
    ("nobody", "2024-03-01 00:00:00"),
]
HISTORICAL_FEATURES = ["user_listening_stats", "user_cf_vector:cf_vector"]


def _need_pyspark() -> None:
    if importlib.util.find_spec("pyspark") is None:
        pytest.skip("pyspark is not installed (pip install -e '.[spark]')")


def _need_spark() -> None:
    reason = spark_missing()
    if reason:
        pytest.skip(reason)


def _entity_df(rows=ENTITY_ROWS) -> pd.DataFrame:
    users, stamps = zip(*rows, strict=True)
    return pd.DataFrame(
        {
            "user_id": list(users),
            "event_timestamp": pd.to_datetime(list(stamps), utc=True, format="ISO8601"),
        }
    )


def _comparable(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Sorted by the keys, list-valued features as lists (Arrow gives arrays or lists)."""
    frame = frame.sort_values(keys).reset_index(drop=True)
    for column in frame.columns:
        if frame[column].dtype == object:
            frame[column] = frame[column].map(
                lambda v: list(v) if v is not None and not isinstance(v, str) else v
            )
    return frame[sorted(frame.columns)]


def _user_features(values: dict[str, float]) -> pd.DataFrame:
    names = schemas.TABLES[USER_VIEW].feature_names
    index = pd.Index(list(values), name="user_id")
    return pd.DataFrame({n: list(values.values()) for n in names}, index=index).astype(float)


def _item_features(values: dict[str, float]) -> pd.DataFrame:
    names = schemas.TABLES[ITEM_VIEW].feature_names
    index = pd.Index(list(values), name="item_id")
    return pd.DataFrame({n: list(values.values()) for n in names}, index=index).astype(float)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """One data directory, two Feast projects on it: ``spark`` (Spark offline store, SparkSource)
    and ``duck`` (DuckDB offline store, FileSource), both applied; the Parquet written by the
    pipeline's writers (feature tables with ``export_parquet``, ranker snapshots with
    ``SnapshotWriter``). The module's Spark session is stopped at the end."""
    _need_spark()
    data_dir = tmp_path_factory.mktemp("feast_spark")
    spark = FeatureStoreClient(REPO, data_dir, offline_store="spark", spark_master="local[2]")
    duck = FeatureStoreClient(REPO, data_dir, project="cratedigger_duckdb")
    spark.apply()
    duck.apply()
    write_feature_parquet(spark)
    write_snapshot(
        spark,
        [_user_features({"u1": 1.0, "u2": 2.0})],
        _item_features({"a": 0.5}),
        training_as_of(CUTOFF),
    )
    write_snapshot(
        spark,
        [_user_features({"u1": 10.0}), _user_features({"u2": 20.0})],
        _item_features({"a": 5.0, "b": 6.0}),
        CUTOFF,
    )
    try:
        yield spark, duck
    finally:
        from pyspark.sql import SparkSession

        session = SparkSession.getActiveSession()
        if session is not None:
            session.stop()


# ---------------------------------------------------------------------- no Spark needed


@pytest.mark.parametrize("profile", ["embedded", "production"])
def test_spark_config_swaps_the_offline_store_only(tmp_path: Path, profile: str) -> None:
    url = "postgresql://u@h:5432/db"
    duck = build_config(tmp_path, profile, registry_url=url)
    spark = build_config(
        tmp_path, profile, registry_url=url, offline_store="spark", spark_master="local[1]"
    )
    same = set(duck) - {"offline_store"}
    assert {k: spark[k] for k in same} == {k: duck[k] for k in same}
    assert set(spark) == set(duck) | {"batch_engine"}
    assert spark["offline_store"]["type"] == "spark"
    conf = spark["offline_store"]["spark_conf"]
    assert conf["spark.master"] == "local[1]"
    assert conf["spark.sql.session.timeZone"] == "UTC"
    assert conf["spark.sql.execution.arrow.pyspark.enabled"] == "true"
    assert conf["spark.driver.memory"] == "1g"
    assert spark["batch_engine"] == "local"
    with pytest.raises(ValueError, match="offline_store"):
        build_config(tmp_path, profile, registry_url=url, offline_store="trino")  # type: ignore[arg-type]


def test_spark_config_is_a_valid_feast_repo_config(tmp_path: Path) -> None:
    _need_pyspark()  # Feast's Spark offline store config imports pyspark
    from feast import RepoConfig

    config = RepoConfig(repo_path=REPO, **build_config(tmp_path, offline_store="spark"))
    assert type(config.offline_store).__name__ == "SparkOfflineStoreConfig"
    assert type(config.batch_engine).__name__ == "LocalComputeEngineConfig"


def test_spark_definitions_are_the_same_views_on_spark_sources(tmp_path: Path) -> None:
    duck = build_definitions(tmp_path)
    spark = build_definitions(tmp_path, offline_store="spark")
    assert [
        (type(o).__name__, o.name) for o in spark.objects() if "Source" not in type(o).__name__
    ] == [(type(o).__name__, o.name) for o in duck.objects() if "Source" not in type(o).__name__]
    for duck_view, spark_view in zip(duck.feature_views(), spark.feature_views(), strict=True):
        assert spark_view.features == duck_view.features
        assert spark_view.ttl == duck_view.ttl
        duck_source, spark_source = duck_view.batch_source, spark_view.batch_source
        assert type(spark_source).__name__ == "SparkSource"
        assert spark_source.name == duck_source.name
        assert spark_source.path == duck_source.path
        assert spark_source.file_format == "parquet"
        assert (spark_source.timestamp_field, spark_source.created_timestamp_column) == (
            duck_source.timestamp_field,
            duck_source.created_timestamp_column,
        )


def test_a_registry_applied_for_the_other_offline_store_says_apply(tmp_path: Path) -> None:
    _need_pyspark()
    FeatureStoreClient(REPO, tmp_path).apply()  # FileSource
    spark = FeatureStoreClient(REPO, tmp_path, offline_store="spark")
    with pytest.raises(FeatureStoreError, match="registered with a FileSource.*apply"):
        spark.historical(_entity_df(), "user_listening_stats")
    with pytest.raises(FeatureStoreError, match="SparkSource only"):
        spark.materialize()


# ---------------------------------------------------------------------- on Spark


@pytest.mark.slow
def test_point_in_time_answer_equals_duckdb_on_the_same_files(stores) -> None:
    spark, duck = stores
    from_spark = spark.historical(_entity_df(), HISTORICAL_FEATURES)
    from_duck = duck.historical(_entity_df(), HISTORICAL_FEATURES)
    assert from_spark.dtypes.to_dict() == from_duck.dtypes.to_dict()
    keys = ["user_id", "event_timestamp"]
    pd.testing.assert_frame_equal(_comparable(from_spark, keys), _comparable(from_duck, keys))
    frame = _comparable(from_spark, keys).set_index(keys)

    def value(user: str, stamp: str, column: str):
        return frame.loc[(user, pd.Timestamp(stamp, tz="UTC")), column]

    assert pd.isna(value("u1", "2024-01-07", "total_plays"))
    assert value("u1", "2024-01-21 23:59:59", "total_plays") == 4
    assert value("u1", "2024-01-22", "total_plays") == 9
    assert value("u1", "2024-01-22", "cf_vector") is None  # stamped later
    assert value("u1", "2024-02-02", "cf_vector") == pytest.approx(CF_VECTORS["u1"])
    assert value("u2", "2024-01-20", "total_plays") == 2
    assert pd.isna(value("u9", "2024-03-01", "total_plays"))
    assert value("u9", "2024-03-01", "cf_vector") == pytest.approx(CF_VECTORS["u9"])


@pytest.mark.slow
def test_ranker_snapshots_read_point_in_time_equal_duckdb(stores) -> None:
    spark, duck = stores
    as_of = training_as_of(CUTOFF)
    for keys, read in ((["u2", "u1", "u3"], "users"), (["a", "b"], "items")):
        for stamp in (as_of, CUTOFF):
            from_spark = getattr(PointInTimeRankingFeatures(spark, stamp), read)(keys)
            from_duck = getattr(PointInTimeRankingFeatures(duck, stamp), read)(keys)
            pd.testing.assert_frame_equal(from_spark.sort_index(), from_duck.sort_index())
    training = PointInTimeRankingFeatures(spark, as_of)
    first = schemas.TABLES[USER_VIEW].feature_names[0]
    assert training.users(["u1", "u2"]).loc[["u1", "u2"], first].tolist() == [1.0, 2.0]
    assert pd.isna(training.items(["b"]).loc["b"]).all()  # b is in the cutoff's snapshot only


@pytest.mark.slow
def test_materialise_from_spark_then_read_online(stores) -> None:
    spark, duck = stores
    result = spark.materialize()
    assert result.entities == {
        "artist_stats": 3,
        "user_cf_vector": 3,
        "user_listening_stats": 2,
        "user_ranking_features": 2,
        "item_ranking_features": 2,
    }
    assert set(result.skipped) == {"discover_weekly_playlist"}
    duck.materialize()
    users = ["u1", "u9", "nobody"]
    from_spark = spark.online_user_features(users)
    from_duck = duck.online_user_features(users)
    pd.testing.assert_frame_equal(from_spark, from_duck)
    assert list(from_spark.status) == ["PRESENT", "PARTIAL", "NOT_FOUND"]
    assert from_spark.iloc[0].total_plays == 9
    assert list(from_spark.iloc[0].cf_vector) == pytest.approx(CF_VECTORS["u1"])
    assert spark.online_artist_features(["a2"]).iloc[0].plays == 6


@pytest.mark.slow
def test_the_ranker_snapshot_published_from_spark_is_served_online(stores) -> None:
    spark, _ = stores
    assert publish_snapshot(spark, CUTOFF) == {USER_VIEW: 2, ITEM_VIEW: 2}
    first = schemas.TABLES[USER_VIEW].feature_names[0]
    assert OnlineRankingFeatures(spark).users(["u1", "u2"])[first].tolist() == [10.0, 20.0]


@pytest.mark.slow
def test_a_running_session_is_used_in_utc_and_left_as_found(stores) -> None:
    """Feast reuses the process's session (ignoring spark_conf) and sets regex column names on
    it. Spark hands timestamps to pandas as naive session-time values, so in another time zone
    every timestamp read back or materialised would shift; the client runs the session in UTC
    while Feast uses it and restores both settings afterwards."""
    from pyspark.sql import SparkSession

    spark, _ = stores
    session = SparkSession.getActiveSession()
    assert session is not None  # the one Feast started for the earlier tests
    assert session.conf.get(SPARK_REGEX_NAMES) == "false"
    fresh = FeatureStoreClient(REPO, spark.data_dir, project="cd_tz", offline_store="spark")
    fresh.apply()
    last_listen = pd.Timestamp("2024-01-16 10:00", tz="UTC")  # u1's, as of 2024-01-22
    rows = [("u1", "2024-01-21 23:59:59.999999"), ("u1", "2024-01-22 00:00:00")]
    session.conf.set(SPARK_TIME_ZONE, "America/Los_Angeles")
    try:
        frame = fresh.historical(_entity_df(rows), ["user_listening_stats"])
        fresh.materialize(views=["user_listening_stats"])
        assert session.conf.get(SPARK_TIME_ZONE) == "America/Los_Angeles"
        assert session.conf.get(SPARK_REGEX_NAMES) == "false"
        # our own SQL on the shared session: a quoted name is a name again, not a pattern
        session.range(1).selectExpr("id AS `n(x)`").createOrReplaceTempView("cd_regex_probe")
        assert session.sql("SELECT `n(x)` FROM cd_regex_probe").columns == ["n(x)"]
    finally:
        session.conf.set(SPARK_TIME_ZONE, "UTC")
    frame = frame.sort_values("event_timestamp").reset_index(drop=True)
    assert frame.event_timestamp.tolist() == _entity_df(rows).event_timestamp.tolist()
    assert frame.total_plays.tolist() == [4, 9]
    assert frame.last_listen_ts[1] == last_listen
    online = fresh.online_user_features(["u1"], ["user_listening_stats"]).iloc[0]
    assert online.status == "PRESENT" and online.total_plays == 9
    assert online.last_listen_ts == last_listen


@pytest.mark.slow
@pytest.mark.services
def test_production_profile_with_the_spark_offline_store(stores, tmp_path: Path) -> None:
    """SQL registry on Postgres + Redis online store, Spark reading the Parquet."""
    from tests.test_feature_store import production_services

    url = production_services()
    client = FeatureStoreClient(
        REPO,
        tmp_path,
        "production",
        project=f"cd_spark_{uuid.uuid4().hex[:10]}",
        registry_url=url,
        offline_store="spark",
    )
    try:
        client.apply()
        write_feature_parquet(client)
        assert client.materialize(views=["user_listening_stats"]).entities == {
            "user_listening_stats": 2
        }
        frame = client.online_user_features(["u1", "nobody"], ["user_listening_stats"])
        assert list(frame.status) == ["PRESENT", "NOT_FOUND"]
        assert frame.iloc[0].total_plays == 9
        rows = [("u1", "2024-01-21 23:59:59"), ("u1", "2024-01-22 00:00:00")]
        history = client.historical(_entity_df(rows), ["user_listening_stats:total_plays"])
        assert history.sort_values("event_timestamp").total_plays.tolist() == [4, 9]
    finally:
        client.teardown()


@pytest.mark.services
def test_switching_the_offline_store_re_registers_the_sources(tmp_path: Path) -> None:
    """A SQL registry applied with DuckDB's FileSources takes Spark's SparkSources (and back):
    Feast's SQL registry would read the stored source as the new type and fail."""
    from tests.test_feature_store import postgres_or_skip

    _need_pyspark()
    url = postgres_or_skip()
    project = f"cd_switch_{uuid.uuid4().hex[:10]}"

    def client(offline_store: str) -> FeatureStoreClient:
        return FeatureStoreClient(
            REPO,
            tmp_path,
            "production",
            project=project,
            registry_url=url,
            offline_store=offline_store,
        )

    first = client("duckdb")
    try:
        first.apply()
        for offline_store, kind in (("spark", "SparkSource"), ("duckdb", "FileSource")):
            switched = client(offline_store)
            switched.apply()
            assert {type(s).__name__ for s in switched.store.list_data_sources()} == {kind}
    finally:
        first.teardown()
