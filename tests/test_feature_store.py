"""The Feast store end to end: apply, materialise, online (SDK + HTTP), point-in-time, profiles."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pytest

from featurestore import schemas
from featurestore import tables as features
from featurestore.client import FeatureStoreClient
from featurestore.config import build_config
from featurestore.definitions import build_definitions
from featurestore.errors import NotAppliedError, NotMaterializedError
from featurestore.schemas import PARQUET_FILES
from tests.test_features import AS_OF, make_golden_db

REPO = Path(__file__).resolve().parent.parent / "feature_repo"
CF_VECTORS = {"u1": [0.25, -1.5, 3.0], "u2": [1.0, 0.0, -0.5], "u9": [0.0, 0.0, 1.0]}


def write_feature_parquet(client: FeatureStoreClient) -> None:
    """Golden tables (events) -> feature tables -> Parquet where the Feast sources point."""
    con = duckdb.connect()
    make_golden_db(con, events=True)
    features.export_parquet(
        features.user_listening_stats(con), client.parquet_path("user_listening_stats")
    )
    features.export_parquet(
        features.artist_stats(con, as_of=AS_OF), client.parquet_path("artist_stats")
    )
    cf = pd.DataFrame(
        {"user_id": list(CF_VECTORS), "vector": list(CF_VECTORS.values()), "version": "als-t"}
    )
    features.export_parquet(
        features.user_cf_vectors(cf, as_of=AS_OF), client.parquet_path("user_cf_vector")
    )
    con.close()


@pytest.fixture(scope="module")
def embedded(tmp_path_factory) -> FeatureStoreClient:
    """Applied and materialised embedded store (SQLite online, DuckDB offline)."""
    client = FeatureStoreClient(REPO, tmp_path_factory.mktemp("feast_embedded"))
    client.apply()
    write_feature_parquet(client)
    result = client.materialize()
    assert result.entities == {"artist_stats": 3, "user_cf_vector": 3, "user_listening_stats": 2}
    # their Parquet comes later (the weekly playlists and the ranker's features)
    assert set(result.skipped) == {
        "discover_weekly_playlist",
        "user_ranking_features",
        "item_ranking_features",
    }
    return client


def test_apply_registers_entities_views_and_service(tmp_path: Path) -> None:
    names = FeatureStoreClient(REPO, tmp_path).apply()
    for expected in (
        "entity:user",
        "entity:artist",
        "entity:track",
        "feature_view:user_listening_stats",
        "feature_view:artist_stats",
        "feature_view:user_cf_vector",
        "feature_view:discover_weekly_playlist",
        "feature_service:weekly_playlist_ranking_v1",
    ):
        assert expected in names


# Arrow type in featurestore.schemas -> the Feast type its view must declare
FEAST_TYPE_OF = {
    pa.string(): "String",
    pa.int64(): "Int64",
    pa.float64(): "Float64",
    pa.timestamp("us", tz="UTC"): "UnixTimestamp",
    pa.list_(pa.float32()): "Array(Float32)",
    pa.list_(pa.string()): "Array(String)",
}


def _declared(view) -> list[tuple[str, str, str]]:
    return [(f.name, str(f.dtype), f.description) for f in view.entity_columns + view.features]


def test_feast_fields_are_generated_from_featurestore_schemas(tmp_path: Path) -> None:
    built = build_definitions(tmp_path)
    views = {v.name: v for v in built.feature_views()}
    assert set(views) == set(schemas.TABLES)
    for name, table in schemas.TABLES.items():
        expected = [(table.key, "String", "")] + [
            (c.name, FEAST_TYPE_OF[c.type], c.description) for c in table.features
        ]
        assert _declared(views[name]) == expected, name
        assert views[name].join_keys == [table.key]
        source = views[name].batch_source
        assert source.path == str(tmp_path.resolve() / schemas.PARQUET_FILES[name])
        assert (source.timestamp_field, source.created_timestamp_column) == (
            "event_timestamp",
            "created",
        )


def test_a_column_added_to_the_schemas_reaches_feast_and_parquet(monkeypatch, tmp_path) -> None:
    table = schemas.TABLES["artist_stats"]
    extra = schemas.Column("mean_plays", pa.float64(), "Plays per listener.")
    grown = replace(table, features=(*table.features, extra))
    monkeypatch.setitem(schemas.TABLES, "artist_stats", grown)
    view = build_definitions(tmp_path).artist_stats_fv
    assert _declared(view)[-1] == ("mean_plays", "Float64", "Plays per listener.")
    assert grown.arrow_schema.names[-3:] == ["mean_plays", "event_timestamp", "created"]


def test_online_read_returns_the_latest_snapshot_for_a_known_user(embedded) -> None:
    frame = embedded.online_user_features(["u1"])
    row = frame.iloc[0]
    assert row.status == "PRESENT" and row.feature_status == {}
    # latest weekly snapshot of u1 (2024-01-22): 9 plays over 3 tracks of 2 artists
    assert row.total_plays == 9 and row.distinct_items == 3 and row.distinct_artists == 2
    assert row.top_artist_share == pytest.approx(6 / 9)
    assert row.last_listen_ts == pd.Timestamp("2024-01-16 10:00:00+00:00")
    assert list(row.cf_vector) == pytest.approx(CF_VECTORS["u1"])
    assert row.model_version == "als-t"


def test_online_artist_features(embedded) -> None:
    frame = embedded.online_artist_features(["a2"])
    assert frame.iloc[0].plays == 6 and frame.iloc[0].popularity_rank == 1


def test_unknown_keys_give_nulls_and_a_status_not_an_exception(embedded) -> None:
    frame = embedded.online_user_features(["u1", "nobody", "u2"], ["user_listening_stats"])
    assert list(frame.user_id) == ["u1", "nobody", "u2"]
    assert list(frame.status) == ["PRESENT", "NOT_FOUND", "PRESENT"]
    unknown = frame.iloc[1]
    assert pd.isna(unknown.total_plays) and pd.isna(unknown.artist_entropy)
    assert unknown.feature_status["total_plays"] == "NOT_FOUND"


def test_key_found_in_some_views_only_is_partial(embedded) -> None:
    # u9 has a CF vector but no listening stats
    row = embedded.online_user_features(["u9"]).iloc[0]
    assert row.status == "PARTIAL"
    assert list(row.cf_vector) == pytest.approx(CF_VECTORS["u9"])
    assert pd.isna(row.total_plays) and row.feature_status["total_plays"] == "NOT_FOUND"
    assert "cf_vector" not in row.feature_status


def test_point_in_time_takes_the_value_before_the_event_never_after(embedded) -> None:
    # u1's total_plays is 4 in the snapshot of 2024-01-15 and becomes 9 at 2024-01-22
    entity_df = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u1", "u2"],
            "event_timestamp": pd.to_datetime(
                [
                    "2024-01-21 23:59:59",
                    "2024-01-22 00:00:00",
                    "2024-01-07 00:00:00",
                    "2024-01-20 00:00:00",
                ],
                utc=True,
            ),
        }
    )
    frame = embedded.historical(
        entity_df, ["user_listening_stats:total_plays", "user_cf_vector:cf_vector"]
    )
    frame = frame.sort_values(["user_id", "event_timestamp"]).reset_index(drop=True)
    assert pd.isna(frame.total_plays[0])  # 2024-01-07: before u1's first snapshot
    assert frame.total_plays[1] == 4  # one second before the change: the old value
    assert frame.total_plays[2] == 9  # at the change
    assert frame.total_plays[3] == 2
    # the CF vector is stamped 2024-02-01: after every entity timestamp here, so never used
    assert frame.cf_vector.isna().all()


def test_reading_before_apply_names_the_apply_command(tmp_path: Path) -> None:
    client = FeatureStoreClient(REPO, tmp_path)
    with pytest.raises(NotAppliedError, match=r"feast -c .*feature_repo apply"):
        client.online_user_features(["u1"])
    with pytest.raises(NotAppliedError, match="apply"):
        client.materialize()


def test_reading_before_materialise_names_the_materialise_command(tmp_path: Path) -> None:
    client = FeatureStoreClient(REPO, tmp_path)
    client.apply()
    with pytest.raises(NotMaterializedError, match="materialize"):
        client.online_user_features(["u1"])


def test_playlist_view_materialises_once_its_parquet_exists(embedded) -> None:
    with pytest.raises(NotMaterializedError, match="does not exist yet"):
        embedded.online_user_features(["u1"], ["discover_weekly_playlist"])
    week_start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    week_start -= timedelta(days=week_start.weekday())
    recs = pd.DataFrame(
        {"user_id": "u1", "item_id": ["t4", "t9"], "rank": [1, 2], "reason": ["jazz fans", "new"]}
    )
    features.export_parquet(
        features.discover_weekly_playlist(recs, week_start),
        embedded.parquet_path("discover_weekly_playlist"),
    )
    result = embedded.materialize(views=["discover_weekly_playlist"])
    assert result.entities == {"discover_weekly_playlist": 1}
    row = embedded.online_user_features(["u1"], ["discover_weekly_playlist"]).iloc[0]
    assert row.playlist_items == ["t4", "t9"] and row.playlist_reasons == ["jazz fans", "new"]


@pytest.mark.slow
def test_http_feature_server_returns_the_sdk_values(embedded) -> None:
    refs = [
        "user_listening_stats:total_plays",
        "user_listening_stats:artist_entropy",
        "user_listening_stats:plays_last_4_weeks",
        "user_cf_vector:cf_vector",
        "user_cf_vector:model_version",
    ]
    sdk = embedded.online_user_features(["u1", "nobody"], refs).set_index("user_id")
    with embedded.serve(host="127.0.0.1") as server:
        assert server.url.startswith("http://127.0.0.1:")
        body = json.dumps({"features": refs, "entities": {"user_id": ["u1", "nobody"]}})
        request = urllib.request.Request(
            server.url + "/get-online-features",
            data=body.encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            payload = json.loads(response.read())
    assert server.process.poll() is not None  # terminated on leaving the block
    names = payload["metadata"]["feature_names"]
    results = dict(zip(names, payload["results"], strict=True))
    for ref in refs:
        name = ref.split(":")[1]
        assert results[name]["statuses"] == ["PRESENT", "NOT_FOUND"], name
        assert results[name]["values"][1] is None
        http_value, sdk_value = results[name]["values"][0], sdk.loc["u1", name]
        if name == "cf_vector":
            assert http_value == pytest.approx(list(sdk_value))
        elif isinstance(http_value, float):
            assert http_value == pytest.approx(sdk_value)
        else:
            assert http_value == sdk_value, name


@pytest.mark.slow
def test_feast_cli_applies_the_checked_in_repo(tmp_path: Path) -> None:
    env = {**os.environ, "CRATEDIGGER_FEAST_DATA_DIR": str(tmp_path)}
    feast = str(Path(sys.executable).with_name("feast"))
    done = subprocess.run(
        [feast, "-c", str(REPO), "apply"], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    client = FeatureStoreClient(REPO, tmp_path)
    views = {v.name: v for v in client.store.list_feature_views()}
    assert set(views) == set(PARQUET_FILES)
    assert views["user_listening_stats"].batch_source.path == str(
        tmp_path.resolve() / "user_listening_stats.parquet"
    )


def test_featurestore_never_imports_dagster_or_assets() -> None:
    modules = ["client", "config", "definitions", "errors", "online", "schemas", "server", "tables"]
    code = (
        "import sys\n"
        + "".join(f"import featurestore.{m}\n" for m in modules)
        + "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('dagster', 'assets'))\n"
        + "assert not bad, bad"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_production_config_needs_a_registry_url(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="registry_url"):
        build_config(tmp_path, "production")
    config = build_config(tmp_path, "production", registry_url="postgresql://u@h:5432/db")
    assert config["registry"]["registry_type"] == "sql"
    assert config["online_store"] == {"type": "redis", "connection_string": "127.0.0.1:6379"}


def _postgres_url() -> str | None:
    try:
        import psycopg
    except ImportError:
        return None
    for user in ("postgres", "root"):
        url = f"postgresql://{user}@127.0.0.1:5432/test"
        try:
            with psycopg.connect(url, connect_timeout=2):
                return url
        except Exception:  # noqa: BLE001 - try the next user
            continue
    return None


def _redis_up() -> bool:
    try:
        import redis

        return bool(redis.Redis(host="127.0.0.1", port=6379, socket_timeout=2).ping())
    except Exception:  # noqa: BLE001 - any failure means unreachable
        return False


def postgres_or_skip() -> str:
    """The URL of the test database, or skip saying it is not reachable."""
    url = _postgres_url()
    if url is None:
        pytest.skip(
            "PostgreSQL not reachable at 127.0.0.1:5432 (database test, user postgres/root)"
        )
    return url


def production_services() -> str:
    """The Postgres URL when Postgres and Redis are both up, or skip naming the missing one."""
    url = postgres_or_skip()
    if not _redis_up():
        pytest.skip("Redis not reachable at 127.0.0.1:6379")
    return url


@pytest.mark.services
def test_production_profile_on_postgres_and_redis(tmp_path: Path) -> None:
    url = production_services()
    project = f"cd_test_{uuid.uuid4().hex[:10]}"
    client = FeatureStoreClient(
        REPO, tmp_path, "production", project=project, registry_url=url, redis_url="127.0.0.1:6379"
    )
    try:
        client.apply()
        write_feature_parquet(client)
        result = client.materialize()
        assert result.entities["user_listening_stats"] == 2
        frame = client.online_user_features(["u1", "nobody"])
        assert list(frame.status) == ["PRESENT", "NOT_FOUND"]
        assert frame.iloc[0].total_plays == 9
        assert list(frame.iloc[0].cf_vector) == pytest.approx(CF_VECTORS["u1"])
    finally:
        client.teardown()
    assert _registry_rows(url, project) == {}, "teardown left registry rows behind"


def _registry_rows(url: str, project: str) -> dict[str, int]:
    """Rows per registry table that still belong to ``project`` (read with plain SQL)."""
    import psycopg

    with psycopg.connect(url) as connection:
        tables = [
            row[0]
            for row in connection.execute(
                "SELECT table_name FROM information_schema.columns "
                "WHERE column_name = 'project_id' AND table_schema = current_schema()"
            )
        ]
        counts = {
            table: connection.execute(
                f'SELECT count(*) FROM "{table}" WHERE project_id = %s', [project]
            ).fetchone()[0]
            for table in tables
        }
    return {table: count for table, count in counts.items() if count}
