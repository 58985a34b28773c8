"""The learned ranker's features in Feast: one definition for the views and the ranker, the
training snapshot read point-in-time, the serving snapshot online, and a served playlist equal
to its recomputation from the online features (a real embedded store: SQLite + DuckDB)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from featurestore import schemas
from featurestore.client import FeatureStoreClient
from featurestore.definitions import build_definitions
from featurestore.ranker_features import (
    ITEM_VIEW,
    USER_VIEW,
    OnlineRankingFeatures,
    PointInTimeRankingFeatures,
    publish_snapshot,
    reader_for,
    serving_features,
    training_as_of,
    write_snapshot,
)
from recommend.ranker import ITEM_FEATURES, USER_FEATURES, feature_names

pytest.importorskip("lightgbm")

REPO = Path(__file__).resolve().parent.parent / "feature_repo"
CUTOFF = pd.Timestamp("2026-11-16", tz="UTC")


def _users(values: dict[str, float]) -> pd.DataFrame:
    frame = pd.DataFrame(
        {name: list(values.values()) for name in USER_FEATURES},
        index=pd.Index(list(values), name="user_id"),
    )
    return frame.astype(float)


def _items(values: dict[str, float]) -> pd.DataFrame:
    frame = pd.DataFrame(
        {name: list(values.values()) for name in ITEM_FEATURES},
        index=pd.Index(list(values), name="item_id"),
    )
    return frame.astype(float)


@pytest.fixture
def client(tmp_path: Path) -> FeatureStoreClient:
    store = FeatureStoreClient(REPO, tmp_path / "feast")
    store.apply()
    return store


def test_the_views_are_the_ranker_features_and_one_service_serves_both(tmp_path) -> None:
    assert schemas.TABLES[USER_VIEW].feature_names == USER_FEATURES
    assert schemas.TABLES[ITEM_VIEW].feature_names == ITEM_FEATURES
    names = feature_names(["ease"], ["text"], fusion=True)
    assert set(USER_FEATURES) <= set(names) and set(ITEM_FEATURES) <= set(names)
    definitions = build_definitions(tmp_path)
    service = definitions.playlist_ranker_features_v1
    assert {p.name for p in service.feature_view_projections} == {USER_VIEW, ITEM_VIEW}
    assert definitions.item_ranking_features_fv.entities == ["item"]


def test_training_reads_its_snapshot_point_in_time_and_serving_reads_online(client) -> None:
    """The validation snapshot (just before the cutoff) and the week's (at it) differ; each
    reader sees its own, a rewrite replaces one snapshot and keeps the other."""
    as_of = training_as_of(CUTOFF)
    write_snapshot(client, [_users({"u1": 1.0, "u2": 2.0})], _items({"a": 0.5}), as_of)
    write_snapshot(client, [_users({"u1": 10.0}), _users({"u2": 20.0})], _items({"a": 5.0}), CUTOFF)
    assert publish_snapshot(client, CUTOFF) == {USER_VIEW: 2, ITEM_VIEW: 1}
    training = PointInTimeRankingFeatures(client, as_of)
    online = OnlineRankingFeatures(client)
    assert training.users(["u2", "u1"]).loc[["u1", "u2"], "user_log_items"].tolist() == [1.0, 2.0]
    assert online.users(["u1", "u2"])["user_log_items"].tolist() == [10.0, 20.0]
    assert training.items(["a"]).loc["a", "item_novelty"] == 0.5
    assert online.items(["a"]).loc["a", "item_novelty"] == 5.0
    unknown = online.users(["nobody"])
    assert list(unknown.columns) == list(USER_FEATURES) and unknown.isna().all(axis=None)
    # the training snapshot is rewritten (a retuned week); the week's snapshot stays
    write_snapshot(client, [_users({"u1": 3.0, "u2": 4.0})], _items({"a": 0.25}), as_of)
    assert training.users(["u1"]).loc["u1", "user_log_items"] == 3.0
    rows = pd.read_parquet(client.parquet_path(USER_VIEW))
    assert sorted(rows["user_log_items"]) == [3.0, 4.0, 10.0, 20.0]


def test_a_backfilled_week_reads_its_own_snapshot_not_the_newest_online(client) -> None:
    """The online store keeps one value per key (Redis refuses an older write): a week whose
    snapshot is not the one online is served from the offline store at its cutoff."""
    from featurestore.errors import FeatureStoreError

    later = CUTOFF + pd.Timedelta(days=7)
    write_snapshot(client, [_users({"u1": 1.0})], _items({"a": 1.0}), CUTOFF)
    write_snapshot(client, [_users({"u1": 2.0})], _items({"a": 2.0}), later)
    publish_snapshot(client, later)
    assert isinstance(reader_for(client, later), OnlineRankingFeatures)
    backfill = reader_for(client, CUTOFF)  # what Redis leaves online after publishing CUTOFF
    assert isinstance(backfill, PointInTimeRankingFeatures)
    assert backfill.users(["u1"]).loc["u1", "user_log_items"] == 1.0
    assert serving_features(client, CUTOFF).users(["u1"]).loc["u1", "user_log_items"] == 1.0
    with pytest.raises(FeatureStoreError, match="materialise features/ranking_features"):
        serving_features(client, CUTOFF - pd.Timedelta(days=7))


def test_a_served_playlist_equals_its_recomputation_from_the_online_features(client) -> None:
    """The ranker trained on features read point-in-time from Feast serves the playlists with
    features read online; one user's playlist, recomputed by hand from the online features
    Feast returns for them, is the same."""
    from recommend.blend import fuse
    from recommend.candidates import played_items
    from recommend.history import WeekStatistics
    from recommend.models import fit_sources
    from recommend.playlist import (
        ServingWeek,
        check_listens,
        ranked_week,
        serve_users,
        stage_playlists,
        tag_space,
    )
    from recommend.ranker import item_features, ranking_features, user_features, vector_spaces
    from recommend.week_ranker import tune_week, validation_features
    from tests.test_playlist import make_catalog, small_config

    items, listens, terms = make_catalog(n_users=120, plays_per_user=20, seed=3)
    config = small_config()
    item_artist = dict(zip(items["item_id"], items["artist_id"], strict=True))

    def training_features(week):
        users, catalog = validation_features(week)
        write_snapshot(client, [users], catalog, training_as_of(CUTOFF))
        return PointInTimeRankingFeatures(client, training_as_of(CUTOFF))

    blend, _, ranker = tune_week(
        listens,
        items,
        config=config,
        artist_terms=terms,
        methods=("zscore",),
        seed=5,
        ranker="always",
        training_features=training_features,
    )
    assert ranker.serves and ranker.figures["reason"].startswith("forced by configuration")
    assert {"text_similarity", "tags_similarity"} <= set(ranker.ranker.feature_names)
    statistics = WeekStatistics.of(listens, CUTOFF.tz_localize(None))
    served = check_listens(listens)
    write_snapshot(
        client,
        [user_features(served, statistics.novelty, item_artist)],
        item_features(statistics.listeners, statistics.novelty, catalog=items["item_id"]),
        CUTOFF,
    )
    publish_snapshot(client, CUTOFF)
    online = OnlineRankingFeatures(client)
    serving = ServingWeek(
        items,
        week_start=CUTOFF.tz_localize(None),
        statistics=statistics,
        models=fit_sources(listens, config.cf_models, num_threads=1),
        blend=blend,
        config=config,
        artist_terms=terms,
        ranker=ranker,
        ranker_features=online,
    )
    user = "u03"
    rows = served[served["user_id"] == user]
    staged, candidates = serve_users(serving, rows, [user], stages=True, return_candidates=True)
    # by hand: Feast's online answer for this user and their candidates, then the ranker
    sources = candidates[candidates["source"] != "journey"]
    asked = client.online_features("user_id", [user], USER_VIEW)
    assert asked.loc[0, "status"] == "PRESENT"
    np.testing.assert_allclose(
        asked.loc[0, list(USER_FEATURES)].to_numpy(dtype=float),
        user_features(rows, statistics.novelty, item_artist).loc[user].to_numpy(),
    )
    features = ranking_features(
        sources,
        rows,
        listeners=statistics.listeners,
        novelty=statistics.novelty,
        sources=ranker.ranker.sources,
        item_artist=item_artist,
        spaces=vector_spaces(serving.content()[0], None, tag_space(items, terms)),
        store=online,
        fused=fuse(sources, blend, novelty=statistics.novelty),
    )
    ranked = ranked_week(
        candidates,
        ranker.ranker.rank(features, sources, novelty_weight=ranker.novelty_weight),
        config,
        serving.models,
        serving.content()[0],
        [user],
    )
    recomputed = stage_playlists(
        ranked, "discover_weekly", played_items(rows), serving.item_artist, config.playlist
    )
    columns = ["user_id", "position", "item_id"]
    pd.testing.assert_frame_equal(
        staged["discover_weekly"][columns].reset_index(drop=True),
        recomputed[columns].reset_index(drop=True),
    )
    # the ranker trained on the validation snapshot: its users without their held-out plays
    everyone = sorted(served["user_id"].unique())
    trained = PointInTimeRankingFeatures(client, training_as_of(CUTOFF)).users(everyone)
    trained = trained.dropna()
    now = online.users(list(trained.index))
    assert len(trained) > 10
    assert (trained["user_log_items"] < now["user_log_items"]).all()
