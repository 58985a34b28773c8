"""The learned ranker and the neighbourhood sources: one feature definition, a planted signal,
the fusion fallback, RP3beta and user-kNN candidates (small synthetic data, seconds)."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from embeddings.cf import Interactions
from recommend.blend import BLEND_COLUMNS
from recommend.candidates import CANDIDATE_COLUMNS
from recommend.graph_sources import GraphSourceConfig, fit_graph_source, graph_candidates
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


@pytest.mark.parametrize("kind", ["rp3beta", "user_knn"])
def test_graph_sources_propose_unplayed_items_with_reasons(kind):
    history, _, _, _, _ = _world(users=80, items=40)
    source = fit_graph_source(
        Interactions.from_listens(history), GraphSourceConfig(kind, neighbours=20)
    )
    users = ["u001", "u002"]
    rows = history[history["user_id"].isin(users)]
    frame = graph_candidates({kind: source}, rows, users, n=10)
    assert list(frame.columns) == CANDIDATE_COLUMNS
    assert set(frame["user_id"]) == set(users) and (frame.groupby("user_id").size() <= 10).all()
    played = set(zip(rows["user_id"], rows["item_id"], strict=True))
    assert not any(pair in played for pair in zip(frame["user_id"], frame["item_id"], strict=True))
    code = "because_you_played" if kind == "rp3beta" else "listeners_like_you"
    assert (frame["reason_code"] == code).mean() > 0.5
    # per-user: a batch of one user gives that user's rows of the call on both
    alone = graph_candidates({kind: source}, rows[rows["user_id"] == "u002"], ["u002"], n=10)
    pd.testing.assert_frame_equal(alone, frame[frame["user_id"] == "u002"].reset_index(drop=True))
