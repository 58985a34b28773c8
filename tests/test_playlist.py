"""Discover Weekly rules on small synthetic data: candidates, re-ranking, playlists, CLI text."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from embeddings.cf import CFConfig, fit_cf
from recommend.candidates import (
    CANDIDATE_COLUMNS,
    cf_candidates,
    content_candidates,
    explain,
    played_items,
)
from recommend.models import fit_sources
from recommend.playlist import (
    PLAYLIST_OUTPUT_COLUMNS,
    DiscoverWeeklyConfig,
    PlaylistUnavailable,
    build_discover_weekly,
    first_user_playlist_text,
    playlist_text,
    similar_artists,
)
from recommend.rerank import PlaylistConfig, mmr_order, rerank_user

GENRE_TERMS = {0: ["shoegaze", "dreamy"], 1: ["techno", "dark"], 2: ["folk", "acoustic"]}
WEEK = "2026-11-16"


def small_models() -> dict[str, CFConfig]:
    return {
        "ease": CFConfig(model="ease", weighting="log", ease_lambda=10.0),
        "item_knn": CFConfig(model="item_knn", neighbours=20, weighting="log"),
        "als": CFConfig(
            model="als", factors=8, iterations=5, regularization=0.1, weighting="log", seed=1
        ),
    }


def small_config(**playlist: object) -> DiscoverWeeklyConfig:
    return DiscoverWeeklyConfig(
        cf_models=small_models(), text_dim=8, num_threads=1, playlist=PlaylistConfig(**playlist)
    )


def serve(listens: pd.DataFrame, items: pd.DataFrame, *, config: DiscoverWeeklyConfig, **kw):
    """The served path: models fitted once (as the cf_model asset does), then the playlists."""
    models = fit_sources(listens, config.cf_models, num_threads=1)
    return build_discover_weekly(listens, items, models=models, config=config, **kw)


def make_catalog(
    n_users: int = 40,
    n_artists: int = 30,
    tracks_per_artist: int = 4,
    plays_per_user: int = 15,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Track-level items, listens with three taste clusters, and artist terms."""
    rng = np.random.default_rng(seed)
    rows = [
        {
            "item_id": f"t{a}_{k}",
            "artist_id": f"a{a}",
            "name": f"Song {k} by Artist {a}",
            "genre": f"g{a % 3}",
            "level": "track",
        }
        for a in range(n_artists)
        for k in range(tracks_per_artist)
    ]
    items = pd.DataFrame(rows)
    genre = items["genre"].str[1:].astype(int).to_numpy()
    popularity = 1.0 / np.arange(1, len(items) + 1) ** 0.7
    listens = []
    for user in range(n_users):
        weights = popularity * np.where(genre == user % 3, 8.0, 1.0)
        chosen = rng.choice(
            len(items), size=plays_per_user, replace=False, p=weights / weights.sum()
        )
        for index in chosen:
            listens.append(
                {
                    "user_id": f"u{user:02d}",
                    "item_id": items["item_id"][index],
                    "plays": float(rng.integers(1, 40)),
                }
            )
    listens = pd.DataFrame(listens)
    listens["first_ts"] = pd.Timestamp("2026-10-01", tz="UTC")
    listens["last_ts"] = pd.Timestamp("2026-11-10", tz="UTC")
    terms = pd.DataFrame(
        [
            {"artist_id": f"a{a}", "term": term, "weight": 1.0 - 0.3 * j, "taggers": 3}
            for a in range(n_artists)
            for j, term in enumerate(GENRE_TERMS[a % 3] + ["indie"])
        ]
    )
    return items, listens, terms


@pytest.fixture(scope="module")
def catalog() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    return make_catalog()


@pytest.fixture(scope="module")
def playlist(catalog) -> pd.DataFrame:
    items, listens, terms = catalog
    return serve(
        listens,
        items,
        week_start=WEEK,
        artist_terms=terms,
        config=small_config(),
        users=sorted(set(listens["user_id"])) + ["newcomer"],
    )


def test_every_playlist_has_30_distinct_unplayed_items_with_reasons(catalog, playlist):
    _, listens, _ = catalog
    assert list(playlist.columns) == PLAYLIST_OUTPUT_COLUMNS
    played = played_items(listens)
    assert playlist["user_id"].nunique() == listens["user_id"].nunique() + 1
    for user, group in playlist.groupby("user_id"):
        assert len(group) == 30, user
        assert group["item_id"].is_unique, user
        assert list(group["position"]) == list(range(1, 31))
        assert not set(group["item_id"]) & played.get(user, set()), user
    assert playlist["reason"].str.len().gt(0).all()
    assert playlist["name"].notna().all()
    assert (playlist["week_start"] == pd.Timestamp(WEEK).date()).all()


def test_artist_cap_holds_at_track_level(playlist):
    per_artist = playlist.groupby(["user_id", "artist_id"]).size()
    assert per_artist.max() <= 2


def test_artist_cap_is_configurable(catalog):
    items, listens, terms = catalog
    one = serve(
        listens,
        items,
        week_start=WEEK,
        artist_terms=terms,
        config=small_config(max_per_artist=1, size=20),
    )
    assert one.groupby(["user_id", "artist_id"]).size().max() == 1
    assert one.groupby("user_id").size().eq(20).all()


def test_exploration_slots_hold_exploration_items(playlist):
    warm = playlist[playlist["user_id"] != "newcomer"]
    explored = warm[warm["source"] == "exploration"]
    per_user = explored.groupby("user_id").size()
    assert (per_user == 3).all() and len(per_user) == warm["user_id"].nunique()
    assert set(explored["position"]) == {12, 21, 30}
    assert explored["reason"].str.startswith("off the beaten track").all()


def test_cold_user_gets_popularity_and_exploration(playlist):
    cold = playlist[playlist["user_id"] == "newcomer"]
    assert len(cold) == 30 and cold["item_id"].is_unique
    assert set(cold["source"]) == {"popularity", "exploration"}
    assert (cold["source"] == "exploration").sum() == 3
    assert set(cold.loc[cold["source"] == "popularity", "reason"]) == {"popular right now"}


def test_reasons_name_played_items_and_terms(catalog, playlist):
    items, listens, _ = catalog
    names = dict(zip(items["item_id"], items["name"], strict=True))
    played = played_items(listens)
    because = playlist[playlist["reason"].str.startswith("because you played ")]
    assert len(because) > 0
    for row in because.itertuples():
        played_names = {names[i] for i in played[row.user_id]}
        assert row.reason.removeprefix("because you played ") in played_names


def test_tiny_catalog_gives_a_shorter_playlist():
    items = pd.DataFrame(
        {
            "item_id": [f"i{i}" for i in range(8)],
            "artist_id": [f"a{i}" for i in range(8)],
            "name": [f"Artist {i}" for i in range(8)],
        }
    )
    listens = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u2", "u2", "u3", "u3", "u3"],
            "item_id": ["i0", "i1", "i1", "i2", "i0", "i2", "i3"],
            "plays": [3.0, 1.0, 2.0, 5.0, 1.0, 1.0, 2.0],
        }
    )
    result = serve(listens, items, week_start=WEEK, config=small_config())
    played = played_items(listens)
    for user, group in result.groupby("user_id"):
        assert 0 < len(group) <= 8 - len(played[user])
        assert group["item_id"].is_unique
        assert not set(group["item_id"]) & played[user]


def test_unknown_listened_item_is_a_clear_error(catalog):
    items, listens, _ = catalog
    bad = pd.concat(
        [listens, pd.DataFrame({"user_id": ["u00"], "item_id": ["nope"], "plays": [1.0]})]
    )
    with pytest.raises(ValueError, match="not in the items catalog"):
        serve(bad, items, week_start=WEEK, config=small_config())


def test_mmr_changes_order_and_demotes_near_duplicates():
    relevance = np.linspace(1.0, 0.0, 6)
    vectors = np.eye(6)
    vectors[1] = vectors[0]  # item 1 duplicates the best item
    assert mmr_order(relevance, vectors, 6, 1.0) == [0, 1, 2, 3, 4, 5]
    diverse = mmr_order(relevance, vectors, 6, 0.6)
    assert diverse[0] == 0 and diverse.index(1) > 1
    assert sorted(diverse) == list(range(6))


def test_rerank_user_never_returns_played_and_respects_cap():
    ranked = pd.DataFrame(
        {
            "item_id": ["x1", "x2", "x3", "y1", "y2"],
            "score": [5, 4, 3, 2, 1],
            "source": "ease",
            "reason_code": "because_you_played",
            "reason_detail": "p",
        }
    )
    artists = {"x1": "X", "x2": "X", "x3": "X", "y1": "Y", "y2": "Y"}
    config = PlaylistConfig(size=4, max_per_artist=2, pool_size=10, exploration_slots=0)
    result = rerank_user(ranked, ranked.iloc[:0], {"y1"}, artists, config)
    assert list(result["item_id"]) == ["x1", "x2", "y2"]


def test_cf_candidates_exclude_played_and_explain(catalog):
    _, listens, _ = catalog
    fitted = fit_cf(listens, small_models()["item_knn"], num_threads=1)
    candidates = cf_candidates(fitted, n=10)
    assert list(candidates.columns) == CANDIDATE_COLUMNS
    played = played_items(listens)
    pairs = set(zip(candidates["user_id"], candidates["item_id"], strict=True))
    assert not any(item in played[user] for user, item in pairs)
    because = candidates[candidates["reason_code"] == "because_you_played"]
    assert len(because) > 0
    assert all(
        d in played[u] for u, d in zip(because["user_id"], because["reason_detail"], strict=True)
    )


def test_text_candidates_describe_with_matching_terms(catalog):
    items, listens, terms = catalog
    vectors = np.zeros((len(items), 3))
    vectors[np.arange(len(items)), items["genre"].str[1:].astype(int)] = 1.0
    candidates = content_candidates(
        listens,
        (items["item_id"].tolist(), vectors),
        5,
        source="text",
        artist_terms=terms,
        item_artist=dict(zip(items["item_id"], items["artist_id"], strict=True)),
    )
    assert set(candidates["reason_code"]) == {"described_as"}
    user = candidates["user_id"].iloc[0]
    played = played_items(listens)[user]
    assert not set(candidates.loc[candidates["user_id"] == user, "item_id"]) & played
    text = explain("described_as", candidates["reason_detail"].iloc[0])
    assert text.startswith("described as '")


def test_similar_artists_top_k_without_self(catalog):
    items, listens, terms = catalog
    similar = similar_artists(listens, items, artist_terms=terms, k=5, text_dim=8, num_threads=1)
    assert list(similar.columns) == ["artist_id", "rank", "similar_artist_id", "score", "reason"]
    assert (similar["artist_id"] != similar["similar_artist_id"]).all()
    assert similar.groupby("artist_id").size().max() <= 5
    assert similar["reason"].str.len().gt(0).all()
    first = similar[similar["rank"] == 1].set_index("artist_id")["score"]
    second = similar[similar["rank"] == 2].set_index("artist_id")["score"]
    assert (first.reindex(second.index) >= second).all()


def test_playlist_text_reads_the_warehouse(tmp_path, playlist):
    path = tmp_path / "warehouse.duckdb"
    assert first_user_playlist_text(path) == ""
    with duckdb.connect(str(path)) as connection:
        connection.execute("create schema recommend")
    assert first_user_playlist_text(path) == ""
    with duckdb.connect(str(path)) as connection:
        connection.register("playlist_frame", playlist)
        connection.execute("create table recommend.discover_weekly as select * from playlist_frame")
    text = playlist_text(path, "u00")
    lines = text.splitlines()
    assert lines[0].startswith("Discover Weekly for user u00") and len(lines) == 31
    assert lines[1].startswith(" 1. ")
    with pytest.raises(PlaylistUnavailable, match="Unknown user 'nobody'"):
        playlist_text(path, "nobody")
    with pytest.raises(PlaylistUnavailable, match="No Discover Weekly"):
        playlist_text(path, "u00", week="2020-01-06")
    with pytest.raises(PlaylistUnavailable, match="is not a date"):
        playlist_text(path, "u00", week="banana")
    # any day of the week names it: one label, the Monday (week_start = partition key)
    assert playlist_text(path, "u00", week="2026-11-18") == text
    with pytest.raises(PlaylistUnavailable, match="No Discover Weekly"):
        playlist_text(path, "u00", week="2026-11-09")
    assert first_user_playlist_text(path).startswith("Discover Weekly for user newcomer")
    with pytest.raises(PlaylistUnavailable, match="No warehouse"):
        playlist_text(tmp_path / "missing.duckdb", "u00")


# ---------------------------------------------------------------------------------- model plane
def test_the_playlist_step_fits_no_model(catalog, monkeypatch):
    items, listens, terms = catalog
    config = small_config()
    models = fit_sources(listens, config.cf_models, num_threads=1)

    def no_fitting(*args, **kwargs):
        raise AssertionError("build_discover_weekly fitted a model")

    monkeypatch.setattr("embeddings.cf.fit_cf", no_fitting)
    monkeypatch.setattr("recommend.models.fit_cf", no_fitting)
    monkeypatch.setattr("embeddings.cf.CFModel.fit", no_fitting)
    playlists = build_discover_weekly(
        listens, items, week_start=WEEK, models=models, config=config, artist_terms=terms
    )
    assert playlists["user_id"].nunique() == listens["user_id"].nunique()


def test_without_models_the_error_says_which_asset_to_materialise(catalog):
    items, listens, _ = catalog
    with pytest.raises(ValueError, match="cf_model asset"):
        build_discover_weekly(listens, items, week_start=WEEK, config=small_config())


def test_cf_and_blend_configuration_change_the_playlists(catalog):
    from recommend.blend import BlendConfig

    items, listens, terms = catalog
    config = small_config()
    base = serve(listens, items, week_start=WEEK, config=config, artist_terms=terms)
    other_cf = DiscoverWeeklyConfig(
        cf_models={**small_models(), "ease": CFConfig(model="ease", ease_lambda=500.0)},
        text_dim=8,
        num_threads=1,
    )
    changed_cf = serve(listens, items, week_start=WEEK, config=other_cf, artist_terms=terms)
    only_text = serve(
        listens,
        items,
        week_start=WEEK,
        config=config,
        artist_terms=terms,
        blend=BlendConfig(weights={"text": 1.0}),
    )
    key = ["user_id", "position", "item_id"]
    assert not base[key].equals(changed_cf[key])
    assert not base[key].equals(only_text[key])
    assert (only_text["source"] == "text").mean() > (base["source"] == "text").mean()


def test_stages_are_the_served_path(catalog):
    items, listens, terms = catalog
    config = small_config()
    models = fit_sources(listens, config.cf_models, num_threads=1)
    kwargs = dict(week_start=WEEK, models=models, config=config, artist_terms=terms)
    served = build_discover_weekly(listens, items, **kwargs)
    staged = build_discover_weekly(listens, items, stages=True, **kwargs)
    assert list(staged) == ["blend", "mmr", "discover_weekly"]
    key = ["user_id", "position", "item_id"]
    pd.testing.assert_frame_equal(
        served[key].reset_index(drop=True),
        staged["discover_weekly"].sort_values(["user_id", "position"])[key].reset_index(drop=True),
        check_dtype=False,
    )
    # no exploration before the MMR stage; the raw blend keeps the fused order
    assert "exploration" not in set(staged["mmr"]["source"])
    assert "exploration" not in set(staged["blend"]["source"])


def test_reasons_spread_over_the_users_history():
    """Issue 12 item 16: one played item used to anchor most of a playlist's reasons."""
    from recommend.candidates import spread_anchors

    # item 0 contributes most to every candidate, items 1 and 2 nearly as much
    contribution = np.array([[1.0] * 6, [0.8] * 6, [0.7] * 6, [0.1] * 6])
    anchors = spread_anchors(contribution)
    assert anchors[0] == 0 and set(anchors) == {0, 1, 2}
    assert np.bincount(anchors).max() == 2
    # a clearly strongest contributor still wins
    assert list(spread_anchors(np.array([[1.0, 1.0], [0.2, 0.2]]))) == [0, 0]
