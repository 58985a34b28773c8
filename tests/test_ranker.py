"""The learned ranker: one feature definition, a planted signal, the fusion fallback (small
synthetic data, seconds). RP3beta and user-kNN are CF sources: tests/test_cf.py."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from recommend.blend import BLEND_COLUMNS
from recommend.candidates import CANDIDATE_COLUMNS
from recommend.ranker import (
    MISSING_RANK,
    choose,
    feature_names,
    labels_of,
    ranking_features,
    train_ranker,
)

pytest.importorskip("lightgbm")

SOURCES = ["ease", "signal", "noise"]


def _world(seed: int = 0, users: int = 240, items: int = 60):
    """History, candidates of three sources and the truth: ``signal`` ranks the true items high,
    ``noise`` is random, ``ease`` is weakly informative."""
    rng = np.random.default_rng(seed)
    item_ids = [f"i{j:03d}" for j in range(items)]
    history, candidates, truth = [], [], []
    for u in range(users):
        user = f"u{u:03d}"
        order = rng.permutation(items)
        played, pool = order[:8], order[8:48]
        relevant = set(pool[rng.choice(len(pool), 4, replace=False)])
        history += [(user, item_ids[j], float(rng.integers(1, 50))) for j in played]
        truth += [(user, item_ids[j]) for j in relevant]
        for j in pool:
            hit = j in relevant
            candidates.append(
                (user, item_ids[j], (2.0 if hit else 0.0) + rng.normal(), "signal", "c", "")
            )
            candidates.append((user, item_ids[j], rng.normal(), "noise", "c", ""))
            if rng.random() < 0.7:
                candidates.append(
                    (user, item_ids[j], (0.5 if hit else 0.0) + rng.normal(), "ease", "c", "")
                )
    history = pd.DataFrame(history, columns=["user_id", "item_id", "plays"])
    candidates = pd.DataFrame(candidates, columns=CANDIDATE_COLUMNS)
    truth = pd.DataFrame(truth, columns=["user_id", "item_id"])
    listeners = history.groupby("item_id")["user_id"].nunique().sort_values(ascending=False)
    novelty = -np.log2(listeners / history["user_id"].nunique())
    return history, candidates, truth, listeners, novelty


def _features(candidates, history, listeners, novelty, spaces=None):
    return ranking_features(
        candidates,
        history,
        listeners=listeners,
        novelty=novelty,
        sources=SOURCES,
        spaces=spaces,
    )


def test_one_feature_definition_for_training_and_serving():
    history, candidates, _, listeners, novelty = _world()
    rng = np.random.default_rng(1)
    items = sorted(set(candidates["item_id"]) | set(history["item_id"]))
    spaces = {"text": (items, rng.normal(size=(len(items), 8)))}
    everyone = _features(candidates, history, listeners, novelty, spaces)
    assert list(everyone.columns[2:]) == feature_names(SOURCES, ["text"])
    # serving one batch of users gives exactly their rows of the call on everyone
    batch = ["u003", "u117"]
    served = _features(
        candidates[candidates["user_id"].isin(batch)],
        history[history["user_id"].isin(batch)],
        listeners,
        novelty,
        spaces,
    )
    expected = everyone[everyone["user_id"].isin(batch)].reset_index(drop=True)
    pd.testing.assert_frame_equal(served, expected)
    # missing sources: NaN z-score, the sentinel rank
    absent = everyone["ease_z"].isna()
    assert absent.any() and (everyone.loc[absent, "ease_rank"] == MISSING_RANK).all()
    assert everyone["text_similarity"].between(-1.0001, 1.0001).all()
    # shuffled input rows give the same features
    shuffled = candidates.sample(frac=1.0, random_state=3)
    pd.testing.assert_frame_equal(
        _features(shuffled, history, listeners, novelty, spaces), everyone
    )


def _ndcg_at_10(ranked: pd.DataFrame, truth: pd.DataFrame) -> float:
    relevant = truth.groupby("user_id")["item_id"].agg(set).to_dict()
    scores = []
    for user, group in ranked.groupby("user_id"):
        items = list(group.sort_values("rank")["item_id"])[:10]
        gains = sum(1 / np.log2(i + 2) for i, it in enumerate(items) if it in relevant[user])
        ideal = sum(1 / np.log2(i + 2) for i in range(min(10, len(relevant[user]))))
        scores.append(gains / ideal)
    return float(np.mean(scores))


def test_ranker_learns_a_planted_signal_and_is_versioned():
    history, candidates, truth, listeners, novelty = _world()
    features = _features(candidates, history, listeners, novelty)
    labels = labels_of(features, truth)
    train_users = {f"u{u:03d}" for u in range(180)}
    learn = features["user_id"].isin(train_users).to_numpy()
    params = {"min_data_in_leaf": 20, "num_threads": 1}
    ranker = train_ranker(
        features[learn], labels[learn], sources=SOURCES, params=params, rounds=100, seed=3
    )
    again = train_ranker(
        features[learn], labels[learn], sources=SOURCES, params=params, rounds=100, seed=3
    )
    assert ranker.version == again.version and len(ranker.version) == 16
    held_out = features[~learn].reset_index(drop=True)
    held_candidates = candidates[~candidates["user_id"].isin(train_users)]
    held_truth = truth[~truth["user_id"].isin(train_users)]
    ranked = ranker.rank(held_out, held_candidates)
    assert list(ranked.columns) == [*BLEND_COLUMNS, "rank"]
    assert _ndcg_at_10(ranked, held_truth) > 0.6  # random order: about 0.1
    importance = ranker.importance()
    assert importance.index[0].startswith("signal_")
    contribution = ranker.source_contribution(held_out)
    assert contribution.index[0] == "signal"
    # the artifact round-trips (the booster is rebuilt from its text dump)
    restored = pickle.loads(pickle.dumps(ranker))
    assert np.allclose(restored.score(held_out), ranker.score(held_out))


def test_fusion_serves_unless_the_ranker_beats_it_on_validation():
    assert choose(0.25, 0.26).serve == "fusion"
    assert choose(0.26, 0.26).serve == "fusion"
    assert choose(0.27, 0.26).serve == "ranker"
    assert choose(0.265, 0.26, margin=0.01).serve == "fusion"
    assert "does not beat" in choose(0.2, 0.3).reason


# ---------------------------------------------------------------------------------- the week's
def _week_world():
    from tests.test_playlist import make_catalog, small_config

    items, listens, terms = make_catalog(n_users=120, plays_per_user=20, seed=3)
    return items, listens, terms, small_config()


@pytest.fixture(scope="module")
def week_world():
    from recommend.week_ranker import tune_week

    items, listens, terms, config = _week_world()
    blend, _, ranker = tune_week(
        listens, items, config=config, artist_terms=terms, methods=("zscore",), seed=5
    )
    return items, listens, terms, config, blend, ranker


def test_the_week_ranker_is_judged_on_users_it_never_trained_on(week_world):
    *_, ranker = week_world
    assert ranker.ranker is not None and ranker.choice.serve in ("ranker", "fusion")
    figures = ranker.figures
    assert (
        0
        < figures["choice_users"]
        < ranker.ranker.validation["fit_users"] + figures["choice_users"]
    )
    assert len(figures["knob_search"]) == 5 and "ndcg@10" in figures["fusion"]
    assert set(ranker.ranker.sources) <= set(figures["source_contribution"]) - {"context"}
    # the verdict follows the figures: the ranker serves only with the margin and the discovery
    if ranker.serves:
        assert figures["ranker"]["ndcg@10"] > figures["fusion"]["ndcg@10"] + ranker.choice.margin
        assert figures["keeps_fusion_discovery"]
    assert ranker.version and pickle.loads(pickle.dumps(ranker)).version == ranker.version


def test_a_serving_ranker_ranks_the_playlists_from_the_features_training_reads(week_world):
    """Training and serving share one feature definition: the served ``blend`` stage is the
    ranker's order of the served candidates, recomputed here from ranking_features."""
    from recommend.blend import fuse
    from recommend.candidates import played_items
    from recommend.history import WeekStatistics
    from recommend.models import fit_sources
    from recommend.playlist import (
        ServingWeek,
        ranked_week,
        serve_users,
        stage_playlists,
        tag_space,
    )
    from recommend.ranker import RankerChoice, WeekRanker, vector_spaces

    items, listens, terms, config, blend, trained = week_world
    serving_ranker = WeekRanker(trained.ranker, 0.0, RankerChoice("ranker", 1.0, 0.0, 0.0))
    statistics = WeekStatistics.of(listens, "2026-11-16")
    serving = ServingWeek(
        items,
        week_start="2026-11-16",
        statistics=statistics,
        models=fit_sources(listens, config.cf_models, num_threads=1),
        blend=blend,
        config=config,
        artist_terms=terms,
        ranker=serving_ranker,
    )
    users = ["u03", "u17"]
    rows = listens[listens["user_id"].isin(users)]
    assert rows["user_id"].nunique() == 2  # users with history: ranked, not cold-started
    staged, candidates = serve_users(serving, rows, users, stages=True, return_candidates=True)
    sources = candidates[candidates["source"] != "journey"]
    features = ranking_features(
        sources,
        rows,
        listeners=statistics.listeners,
        novelty=statistics.novelty,
        sources=trained.ranker.sources,
        item_artist=dict(zip(items["item_id"], items["artist_id"], strict=True)),
        spaces=vector_spaces(serving.content()[0], None, tag_space(items, terms)),
        fused=fuse(sources, blend, novelty=statistics.novelty),
    )
    assert list(features.columns[2:]) == trained.ranker.feature_names
    expected = trained.ranker.rank(features, sources)
    ranked = ranked_week(
        candidates, expected, config, serving.models, serving.content()[0], sorted(users)
    )
    recomputed = stage_playlists(
        ranked,
        "discover_weekly",
        played_items(rows),
        serving.item_artist,
        config.playlist,
    )
    columns = ["user_id", "position", "item_id"]
    pd.testing.assert_frame_equal(
        staged["discover_weekly"][columns].sort_values(columns).reset_index(drop=True),
        recomputed[columns].sort_values(columns).reset_index(drop=True),
    )
    fusion_served = ServingWeek(
        items,
        week_start="2026-11-16",
        statistics=statistics,
        models=serving.models,
        blend=blend,
        config=config,
        artist_terms=terms,
    )
    fused = serve_users(fusion_served, rows, users, stages=True)["blend"]
    assert (
        fused.sort_values(["user_id", "position"])["item_id"].tolist()
        != staged["blend"].sort_values(["user_id", "position"])["item_id"].tolist()
    )


def test_tag_overlap_is_the_profile_cosine_in_the_sparse_tag_space() -> None:
    """The tag space is sparse (TF-IDF of the artists' tags); the profile similarity there is
    the same cosine as in a dense space holding the same vectors."""
    from scipy import sparse

    from recommend.ranker import _profile_similarity

    history = pd.DataFrame(
        {"user_id": ["u1", "u1", "u2"], "item_id": ["i1", "i2", "i3"], "plays": [3.0, 1.0, 2.0]}
    )
    ids = ["i1", "i2", "i3"]
    dense = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    pairs = pd.DataFrame({"user_id": ["u1", "u1", "u2", "u9"], "item_id": ["i3", "i9", "i1", "i1"]})
    expected = _profile_similarity(pairs, history, (ids, dense))
    found = _profile_similarity(pairs, history, (ids, sparse.csr_matrix(dense)))
    np.testing.assert_allclose(found, expected, rtol=1e-6)
    assert np.isnan(found[1]) and np.isnan(found[3]) and 0 < found[0] < 1
