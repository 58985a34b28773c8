"""Offline evaluation: splits, metric definitions (checked by hand and against implicit)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from embeddings.cf import CF_PRESETS, CFConfig, Interactions, fit_cf
from evaluation.metrics import (
    catalog_coverage,
    evaluate_models,
    evaluate_ranking,
    holdout_split,
    intra_list_diversity,
    item_popularity,
    metrics_bar_chart,
    novelty,
    rank_all,
    rank_fitted,
    ranking_metrics,
    time_split,
    validation_split,
)


def synthetic_listens(n_users: int = 60, n_items: int = 50, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        group = u % 3
        for i in range(n_items):
            if (i % 3 == group and rng.random() < 0.5) or rng.random() < 0.05:
                rows.append((f"u{u:02d}", f"i{i:02d}", int(rng.integers(1, 30))))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "plays"])


@pytest.fixture(scope="module")
def listens() -> pd.DataFrame:
    return synthetic_listens()


def test_holdout_split_is_seeded_and_per_user(listens: pd.DataFrame) -> None:
    split = holdout_split(listens, 0.2, seed=3)
    again = holdout_split(listens.sample(frac=1.0, random_state=1), 0.2, seed=3)
    pd.testing.assert_frame_equal(
        split.test.sort_values(["user_id", "item_id"]).reset_index(drop=True),
        again.test.sort_values(["user_id", "item_id"]).reset_index(drop=True),
    )
    assert len(split.train) + len(split.test) == len(listens)
    pairs = set(zip(split.train.user_id, split.train.item_id, strict=True))
    assert not pairs & set(zip(split.test.user_id, split.test.item_id, strict=True))
    sizes = listens.groupby("user_id").size()
    test_sizes = split.test.groupby("user_id").size()
    for user, n in sizes.items():
        expected = 0 if n < 5 else max(1, round(n * 0.2))
        assert test_sizes.get(user, 0) <= expected
    assert abs(len(split.test) / len(listens) - 0.2) < 0.05
    assert set(split.test.item_id) <= set(split.train.item_id)
    assert not holdout_split(listens, 0.2, seed=4).test.equals(split.test)


def test_small_users_stay_in_train() -> None:
    items = [f"x{i}" for i in range(10)]
    frame = pd.DataFrame(
        {
            "user_id": ["a"] * 4 + ["b"] * 10 + ["c"] * 10,
            "item_id": items[:4] + items + items[::-1],
            "plays": 1,
        }
    )
    split = holdout_split(frame, 0.2, seed=0)
    assert "a" not in set(split.test.user_id)
    assert set(split.test.user_id) == {"b", "c"} and len(split.test) <= 4


def test_validation_split_is_carved_from_train_only(listens: pd.DataFrame) -> None:
    split = holdout_split(listens)
    validation = validation_split(split.train)
    assert len(validation.train) + len(validation.test) == len(split.train)
    test_pairs = set(zip(split.test.user_id, split.test.item_id, strict=True))
    assert not test_pairs & set(zip(validation.test.user_id, validation.test.item_id, strict=True))


def test_time_split_uses_last_weeks() -> None:
    start = pd.Timestamp("2026-01-01", tz="UTC")
    frame = pd.DataFrame(
        {
            "user_id": ["a", "a", "b", "b"],
            "item_id": ["x", "y", "x", "z"],
            "plays": 1,
            "first_ts": [
                start,
                start + pd.Timedelta(weeks=10),
                start,
                start + pd.Timedelta(weeks=9),
            ],
        }
    )
    frame = pd.concat(
        [frame, pd.DataFrame({"user_id": ["b"], "item_id": ["y"], "plays": 1, "first_ts": [start]})]
    )
    split = time_split(frame, weeks=2)
    assert set(zip(split.test.user_id, split.test.item_id, strict=True)) == {
        ("a", "y"),
        ("b", "z"),
    } - {("b", "z")}  # z was never in train: moved back to train, not silently lost
    assert len(split.train) + len(split.test) == len(frame)
    with pytest.raises(ValueError, match="holdout_split"):
        time_split(frame.drop(columns="first_ts"))


def test_ranking_metrics_by_hand() -> None:
    test = pd.DataFrame({"user_id": ["a", "a", "b"], "item_id": ["x", "y", "z"]})
    ranking = {"a": ["x", "q", "y"], "b": ["q", "r", "s"]}
    got = ranking_metrics(ranking, test, k=3)
    dcg_a = 1 / math.log2(2) + 1 / math.log2(4)
    idcg_a = 1 / math.log2(2) + 1 / math.log2(3)
    assert got["ndcg"] == pytest.approx((dcg_a / idcg_a + 0) / 2)
    assert got["precision"] == pytest.approx((2 / 3 + 0) / 2)
    assert got["recall"] == pytest.approx((1 + 0) / 2)
    assert got["map"] == pytest.approx(((1 / 1 + 2 / 3) / 2 + 0) / 2)
    assert got["implicit_precision"] == pytest.approx(2 / (2 + 1))
    missing_user = ranking_metrics({"a": ["x"]}, test, k=3)  # b missing counts as zero
    assert missing_user["users"] == 2 and missing_user["recall"] == pytest.approx(0.25)


def test_training_items_in_a_ranking_are_rejected() -> None:
    train = pd.DataFrame({"user_id": ["a"], "item_id": ["w"]})
    test = pd.DataFrame({"user_id": ["a"], "item_id": ["x"]})
    with pytest.raises(ValueError, match="training item"):
        ranking_metrics({"a": ["w", "x"]}, test, k=2, train=train)


def test_metrics_match_implicit_on_a_fitted_model(listens: pd.DataFrame) -> None:
    from implicit.evaluation import ranking_metrics_at_k

    split = holdout_split(listens)
    fitted = fit_cf(
        split.train, CFConfig(model="als", factors=8, iterations=10, weighting="log"), num_threads=1
    )
    users = sorted(set(split.test.user_id))
    ours = ranking_metrics(rank_fitted(fitted, users, 10), split.test, 10, train=split.train)
    test_matrix = Interactions.from_listens(split.test, fitted.user_ids, fitted.item_ids).plays
    theirs = ranking_metrics_at_k(
        fitted.model._implicit,
        fitted.user_items,
        test_matrix,
        K=10,
        show_progress=False,
        num_threads=1,
    )
    assert ours["ndcg"] == pytest.approx(theirs["ndcg"], abs=1e-4)
    assert ours["map"] == pytest.approx(theirs["map"], abs=1e-4)
    assert ours["implicit_precision"] == pytest.approx(theirs["precision"], abs=1e-4)


def test_function_and_ranking_recommenders_score_the_same(listens: pd.DataFrame) -> None:
    split = holdout_split(listens)
    fitted = fit_cf(split.train, CF_PRESETS["item_knn"])
    users = sorted(set(split.test.user_id))
    ranking = rank_fitted(fitted, users, 10)
    from_function = rank_all(lambda user, k: ranking[user][:k], users, 10)
    assert ranking_metrics(from_function, split.test, 10) == ranking_metrics(
        ranking, split.test, 10
    )


def test_beyond_accuracy_metrics_by_hand() -> None:
    ranking = {"a": ["x", "y"], "b": ["x", "z"]}
    assert catalog_coverage(ranking, catalog_size=6) == pytest.approx(0.5)
    assert catalog_coverage(ranking, catalog_size=6, k=1) == pytest.approx(1 / 6)
    train = pd.DataFrame(
        {"user_id": ["a", "b", "c", "d", "a"], "item_id": ["x", "x", "x", "x", "y"]}
    )
    popularity = item_popularity(train)
    assert popularity["x"] == 1.0 and popularity["y"] == 0.25
    assert novelty({"a": ["x", "y"]}, popularity) == pytest.approx((0 + 2) / 2)
    with pytest.raises(KeyError, match="no training popularity"):
        novelty({"a": ["q"]}, popularity)
    vectors = {"x": np.array([1.0, 0.0]), "y": np.array([0.0, 1.0]), "z": np.array([1.0, 0.0])}
    assert intra_list_diversity({"a": ["x", "y"], "b": ["x", "z"]}, vectors) == pytest.approx(0.5)


def test_evaluate_models_table_and_chart(listens: pd.DataFrame) -> None:
    split = holdout_split(listens)
    table = evaluate_models(
        split.train,
        split.test,
        {"popularity": "popularity", "item_knn": CF_PRESETS["item_knn"]},
        k=(10, 30),
        num_threads=1,
    )
    assert list(table.index) == ["popularity", "item_knn"]
    assert {"ndcg@10", "recall@30", "map@10", "coverage@30", "novelty@10"} <= set(table.columns)
    assert table.loc["item_knn", "ndcg@10"] > table.loc["popularity", "ndcg@10"]
    png = metrics_bar_chart(table)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="neither"):
        evaluate_models(split.train, split.test, {"x": "random"})


def test_evaluate_ranking_reports_every_k(listens: pd.DataFrame) -> None:
    split = holdout_split(listens)
    ranking = rank_fitted(
        fit_cf(split.train, CF_PRESETS["popularity"]), sorted(set(split.test.user_id)), 30
    )
    row = evaluate_ranking(ranking, split.test, split.train, ks=(10, 30))
    assert row["recall@30"] >= row["recall@10"] and row["coverage@30"] >= row["coverage@10"]


@pytest.mark.slow
def test_hetrec_best_cf_model_reaches_ndcg_019(hetrec_listens) -> None:
    listens = hetrec_listens
    split = holdout_split(listens)
    table = evaluate_models(
        split.train,
        split.test,
        {"popularity": "popularity", "item_knn": CF_PRESETS["item_knn"]},
        k=(10,),
        num_threads=1,
    )
    assert table.loc["popularity", "ndcg@10"] == pytest.approx(0.08, abs=0.015)
    assert table.loc["item_knn", "ndcg@10"] >= 0.19
