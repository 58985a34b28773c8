"""CF: interactions, weighting, every model against the CFModel contract, persistence, API."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from embeddings.cf import (
    CF_PRESETS,
    CFConfig,
    CFModel,
    Interactions,
    cf_version,
    fit_cf,
    has_fitted,
    load_fitted,
    weight_plays,
)
from recommend.similarity import CFRecommender

FAST_CONFIGS = {
    "als": CFConfig(model="als", factors=8, iterations=10, regularization=0.01, weighting="log"),
    "bpr": CFConfig(model="bpr", factors=8, iterations=60, learning_rate=0.05, weighting="raw"),
    "item_knn": CFConfig(model="item_knn", neighbours=20, weighting="log"),
    "item_knn_bm25": CFConfig(model="item_knn_bm25", neighbours=20, weighting="raw"),
    "ease": CFConfig(model="ease", ease_lambda=10.0, weighting="log"),
    "rp3beta": CFConfig(model="rp3beta", neighbours=20, weighting="binary", rp3_beta=0.5),
    "user_knn": CFConfig(model="user_knn", neighbours=10, weighting="log"),
    "popularity": CFConfig(model="popularity", weighting="raw"),
}


def checkerboard_listens(n_users: int = 40, n_items: int = 40, seed: int = 0) -> pd.DataFrame:
    """Two taste groups: even users play even items, odd users odd items (some left out)."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        for i in range(n_items):
            if u % 2 == i % 2 and rng.random() < 0.6:
                rows.append((f"u{u:02d}", f"i{i:02d}", int(rng.integers(1, 50))))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "plays"]).astype({"plays": "int64"})


@pytest.fixture(scope="module")
def listens() -> pd.DataFrame:
    return checkerboard_listens()


def test_interactions_maps_are_stable_and_sorted(listens: pd.DataFrame) -> None:
    shuffled = listens.sample(frac=1.0, random_state=3)
    a, b = Interactions.from_listens(listens), Interactions.from_listens(shuffled)
    assert a.user_ids == sorted(a.user_ids) and a.user_ids == b.user_ids
    assert (a.plays != b.plays).nnz == 0 and a.fingerprint() == b.fingerprint()
    row = listens.iloc[5]
    assert a.plays[a.user_index[row.user_id], a.item_index[row.item_id]] == row.plays


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame(columns=["user_id", "item_id", "plays"]), "empty"),
        (pd.DataFrame({"user_id": ["a"], "item_id": ["x"]}), "lacks columns"),
        (pd.DataFrame({"user_id": ["a"], "item_id": ["x"], "plays": [0]}), "> 0"),
        (
            pd.DataFrame({"user_id": ["a", "a"], "item_id": ["x", "x"], "plays": [1, 2]}),
            "duplicate",
        ),
    ],
)
def test_bad_listens_raise(frame: pd.DataFrame, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Interactions.from_listens(frame)


def test_fixed_universe_rejects_unknown_ids(listens: pd.DataFrame) -> None:
    base = Interactions.from_listens(listens)
    other = pd.DataFrame({"user_id": ["u00"], "item_id": ["new"], "plays": [3]})
    with pytest.raises(ValueError, match="outside the given id list"):
        Interactions.from_listens(other, base.user_ids, base.item_ids)


def test_weightings() -> None:
    plays = Interactions.from_listens(
        pd.DataFrame({"user_id": ["a", "a", "b"], "item_id": ["x", "y", "x"], "plays": [1, 100, 5]})
    ).plays
    log = weight_plays(plays, "log", alpha=2.0)
    np.testing.assert_allclose(log.data, 1 + 2 * np.log1p(plays.data), rtol=1e-6)
    assert (weight_plays(plays, "raw") != plays).nnz == 0
    bm25 = weight_plays(plays, "bm25", bm25_k1=100, bm25_b=0.8)
    # implicit's idf is <= 0 for "x" (played by every user): kept as a small positive confidence
    assert bm25.nnz == plays.nnz and bm25.dtype == np.float32 and (bm25.data > 0).all()
    with pytest.raises(ValueError, match="weighting"):
        weight_plays(plays, "tfidf")
    with pytest.raises(ValueError, match="weighting"):
        CFConfig(weighting="tfidf")


@pytest.mark.parametrize("kind", sorted(FAST_CONFIGS))
def test_model_contract(kind: str, listens: pd.DataFrame, tmp_path: Path) -> None:
    fitted = fit_cf(listens, FAST_CONFIGS[kind], num_threads=1)
    model = fitted.model
    assert isinstance(model, CFModel)
    n_items = len(fitted.item_ids)
    user = fitted.interactions.user_index["u04"]  # an even user
    row = fitted.user_items[user]
    items, scores = model.recommend(user, row, n=5)
    assert len(items) == 5 and not set(items) & set(row.indices)
    assert np.all(np.diff(scores) <= 1e-6)
    if kind != "popularity":  # the planted taste: even users get even items
        assert all(int(fitted.item_ids[i][1:]) % 2 == 0 for i in items)
        similar, _ = model.similar_items(fitted.interactions.item_index["i02"], n=3)
        assert fitted.interactions.item_index["i02"] not in similar
        assert all(int(fitted.item_ids[i][1:]) % 2 == 0 for i in similar)
    everything, _ = model.recommend(user, row, n=10_000)  # k beyond the catalog: no crash
    assert len(everything) <= n_items - row.nnz
    if kind in ("als", "bpr"):
        assert model.user_factors.shape[0] == len(fitted.user_ids)
        assert model.item_factors.shape[0] == n_items

    fitted.save(tmp_path / kind)
    assert has_fitted(tmp_path / kind, fitted.version)
    loaded = load_fitted(tmp_path / kind)
    again, again_scores = loaded.model.recommend(user, loaded.user_items[user], n=5)
    np.testing.assert_array_equal(again, items)
    np.testing.assert_allclose(again_scores, scores, rtol=1e-5)
    assert loaded.version == fitted.version and loaded.config == fitted.config


def test_fit_is_seeded_and_version_tracks_data_and_config(listens: pd.DataFrame) -> None:
    config = FAST_CONFIGS["als"]
    first, second = fit_cf(listens, config, num_threads=1), fit_cf(listens, config, num_threads=1)
    np.testing.assert_allclose(first.model.item_factors, second.model.item_factors, rtol=1e-5)
    assert first.version == second.version and first.loss is not None
    interactions = Interactions.from_listens(listens)
    assert cf_version(interactions, config) == first.version
    assert cf_version(interactions, config.with_(factors=9)) != first.version
    fewer = Interactions.from_listens(listens.iloc[1:])
    assert cf_version(fewer, config) != first.version


def test_has_fitted_is_false_for_other_versions(tmp_path: Path, listens: pd.DataFrame) -> None:
    assert not has_fitted(tmp_path / "nothing", "abc")
    fitted = fit_cf(listens, FAST_CONFIGS["popularity"])
    fitted.save(tmp_path / "m")
    assert not has_fitted(tmp_path / "m", "other")
    with pytest.raises(FileNotFoundError, match="no saved CF model"):
        load_fitted(tmp_path / "nothing")


def test_recommender_api(listens: pd.DataFrame) -> None:
    extra_user = pd.DataFrame({"user_id": ["zz"], "item_id": ["i00"], "plays": [1]})
    fitted = fit_cf(pd.concat([listens, extra_user]), FAST_CONFIGS["item_knn"])
    api = CFRecommender(fitted)
    recs = api.recommend_for_user("u04", k=5)
    played = set(listens.loc[listens.user_id == "u04", "item_id"])
    assert len(recs) == 5 and not {i for i, _ in recs} & played
    with_history = api.recommend_for_user("u04", k=50, user_history=[recs[0][0]])
    assert recs[0][0] not in {i for i, _ in with_history}
    assert len(api.recommend_for_user("u04", k=10_000)) == 40 - len(played)
    with pytest.raises(KeyError, match="unknown to CF model"):
        api.recommend_for_user("nobody")
    with pytest.raises(KeyError, match="unknown to CF model"):
        api.similar_items("nothing")
    assert api.similar_items("i02", k=3)[0][0] != "i02"
    similar_users = api.similar_users("u04", k=3)
    assert all(int(u[1:]) % 2 == 0 for u, _ in similar_users if u != "zz")


def test_known_user_without_history_gets_popular_items(listens: pd.DataFrame) -> None:
    interactions = Interactions.from_listens(
        listens, user_ids=sorted(set(listens.user_id) | {"ghost"})
    )
    fitted = fit_cf(interactions, FAST_CONFIGS["als"], num_threads=1)
    recs = CFRecommender(fitted).recommend_for_user("ghost", k=3)
    counts = listens.groupby("item_id").size().sort_values(ascending=False, kind="stable")
    assert [i for i, _ in recs] == list(counts.index[:3])


@pytest.mark.slow
def test_hetrec_platform_als_matches_raw_implicit(hetrec_listens) -> None:
    """Same matrix, same seed: the platform's ALS equals raw implicit ALS (NDCG within noise)."""
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.evaluation import ndcg_at_k

    from evaluation.metrics import holdout_split, rank_fitted, ranking_metrics

    listens = hetrec_listens
    split = holdout_split(listens)
    config = CF_PRESETS["als"]
    fitted = fit_cf(split.train, config, num_threads=1)
    test = Interactions.from_listens(split.test, fitted.user_ids, fitted.item_ids).plays
    platform = ranking_metrics(
        rank_fitted(fitted, sorted(set(split.test.user_id)), 10), split.test, 10, train=split.train
    )["ndcg"]
    reference = AlternatingLeastSquares(
        factors=config.factors,
        regularization=config.regularization,
        iterations=config.iterations,
        random_state=config.seed,
        num_threads=1,
    )
    reference.fit(fitted.user_items, show_progress=False)
    raw_ndcg = ndcg_at_k(
        reference, fitted.user_items, test, K=10, show_progress=False, num_threads=1
    )
    assert abs(platform - raw_ndcg) < 0.01, (platform, raw_ndcg)
    assert platform > 0.13


def test_rp3beta_penalises_popular_items() -> None:
    """Item "hit" is played by everyone; with beta the walk favours the niche co-listened item."""
    rows = [(f"u{u}", "hit", 1) for u in range(20)]
    rows += [(f"u{u}", "seed", 1) for u in range(6)] + [(f"u{u}", "niche", 1) for u in range(4)]
    listens = pd.DataFrame(rows, columns=["user_id", "item_id", "plays"])
    plain = fit_cf(listens, CFConfig(model="rp3beta", weighting="binary", rp3_beta=0.0))
    penalised = fit_cf(listens, CFConfig(model="rp3beta", weighting="binary", rp3_beta=1.0))
    index = plain.interactions.item_index

    def ratio(fitted) -> float:
        row = fitted.model.similarity[index["seed"]].toarray().ravel()
        return row[index["niche"]] / row[index["hit"]]

    assert ratio(penalised) > ratio(plain)


def test_user_knn_never_votes_for_itself_and_explains_with_its_neighbours(
    listens: pd.DataFrame,
) -> None:
    from recommend.candidates import cf_candidates

    fitted = fit_cf(listens, FAST_CONFIGS["user_knn"], num_threads=1)
    user = fitted.interactions.user_index["u04"]
    nearest, _ = fitted.model.nearest(np.array([user]), fitted.user_items[[user]])
    assert user not in nearest[0] and len(nearest[0]) == 10
    candidates = cf_candidates(fitted, n=5, users=["u04"])
    assert set(candidates["reason_code"]) <= {"listeners_like_you", "taste_profile"}
    votes = [int(d.split("/")[0]) for d in candidates["reason_detail"]]
    assert all(0 < v <= 10 for v in votes) and candidates["reason_detail"].str.endswith("/10").all()
