"""Issue 13: models, playlists and evaluation that scale.

EASE on the N most listened items only; playlists served in user batches give the playlists of
one batch; evaluation on a seeded sample of users with confidence intervals.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from embeddings.cf import (
    CF_PRESETS,
    CFConfig,
    EASEModel,
    Interactions,
    ease_gram,
    ease_items,
    fit_cf,
)
from evaluation.metrics import (
    confidence_intervals,
    evaluate_models,
    holdout_split,
    mean_interval,
    ranking_metrics,
)
from evaluation.served import evaluate_blend
from recommend.history import (
    PlayHistory,
    history_batches,
    history_before,
    interactions_before,
    load_history,
    sample_users,
    week_statistics,
)
from recommend.models import fit_sources
from recommend.playlist import WeekStatistics, build_discover_weekly
from tests.test_playlist import make_catalog, small_config

WEEK = "2026-11-16"


# ---------------------------------------------------------------------------------- EASE top N
def _reference_ease(user_items: sparse.csr_matrix, config: CFConfig) -> tuple[np.ndarray, ...]:
    """EASE as it was fitted before issue 13: every item with enough listeners, np.linalg.inv."""
    listeners = np.diff(sparse.csc_matrix(user_items).indptr)
    modelled = np.flatnonzero(listeners >= config.ease_min_listeners)
    x = sparse.csr_matrix(user_items[:, modelled], dtype=np.float64)
    gram = np.asarray((x.T @ x).todense())
    gram[np.diag_indices_from(gram)] += config.ease_lambda
    precision = np.linalg.inv(gram)
    weights = precision / (-np.diag(precision))
    weights[np.diag_indices_from(weights)] = 0.0
    return modelled, weights.astype(np.float32)


@pytest.fixture(scope="module")
def catalog():
    return make_catalog(n_users=50)


def test_ease_with_n_above_the_items_is_the_full_model(catalog):
    _, listens, _ = catalog
    config = CFConfig(model="ease", weighting="log", ease_lambda=10.0)
    fitted = fit_cf(listens, config, num_threads=1)
    modelled, weights = _reference_ease(fitted.user_items, config)
    np.testing.assert_array_equal(fitted.model.modelled_items, modelled)
    np.testing.assert_allclose(fitted.model.weights, weights, rtol=1e-5, atol=1e-7)
    capped = fit_cf(listens, config.with_(ease_max_items=len(modelled)), num_threads=1)
    np.testing.assert_array_equal(capped.model.modelled_items, modelled)
    np.testing.assert_array_equal(capped.model.weights, fitted.model.weights)


def test_ease_models_only_the_n_most_listened_items(catalog):
    _, listens, _ = catalog
    n = 25
    fitted = fit_cf(
        listens, CFConfig(model="ease", weighting="log", ease_lambda=10.0, ease_max_items=n)
    )
    model = fitted.model
    listeners = np.diff(sparse.csc_matrix(fitted.user_items).indptr)
    assert len(model.modelled_items) == n and model.weights.shape == (n, n)
    kept = listeners[model.modelled_items]
    others = np.setdiff1d(np.flatnonzero(listeners >= 2), model.modelled_items)
    assert kept.min() >= listeners[others].max()  # the head, nothing below it
    rows = np.arange(len(fitted.user_ids))
    scores = model.score_users(rows, fitted.user_items)
    outside = np.setdiff1d(np.arange(len(fitted.item_ids)), model.modelled_items)
    assert np.isneginf(scores[:, outside]).all()  # no EASE score outside the top N
    assert np.isfinite(scores[:, model.modelled_items]).all()
    # the top N is exactly EASE fitted on those columns alone
    reference = _reference_ease(fitted.user_items[:, model.modelled_items], fitted.config)[1]
    np.testing.assert_allclose(model.weights, reference, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="ease_max_items"):
        CFConfig(model="ease", ease_max_items=0)


def test_ease_item_ties_go_to_the_lower_id_and_the_gram_is_summed_in_blocks():
    matrix = sparse.csr_matrix(
        np.array([[1, 1, 1, 0], [1, 1, 0, 1], [0, 1, 1, 1]], dtype=np.float64)
    )
    assert list(ease_items(matrix, 2, 3)) == [0, 1, 2]  # item 1 (3 listeners), then 0 and 2
    x = sparse.random(300, 40, density=0.2, random_state=1, format="csr") * 5
    one = ease_gram(x)
    blocks = ease_gram(x, block_pairs=50)
    np.testing.assert_allclose(blocks, one, rtol=1e-12)
    np.testing.assert_allclose(one, (x.T @ x).toarray())


def test_ease_model_round_trips_its_top_n(catalog, tmp_path):
    _, listens, _ = catalog
    fitted = fit_cf(listens, CFConfig(model="ease", ease_lambda=10.0, ease_max_items=10))
    fitted.model.save(tmp_path / "ease.npz")
    loaded = EASEModel.load(tmp_path / "ease.npz")
    np.testing.assert_array_equal(loaded.modelled_items, fitted.model.modelled_items)


# ---------------------------------------------------------------------------------- batches
def _serve(catalog, **kwargs):
    items, listens, terms = catalog
    config = small_config()
    models = fit_sources(listens, config.cf_models, num_threads=1)
    users = sorted(set(listens["user_id"])) + ["a_new", "m_new", "u10_new", "z_new"]
    return build_discover_weekly(
        listens,
        items,
        week_start=WEEK,
        models=models,
        config=config,
        users=users,
        artist_terms=terms,
        return_candidates=True,
        **kwargs,
    )


def _sorted(frame: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    return frame.sort_values(key, kind="mergesort").reset_index(drop=True)


@pytest.fixture(scope="module")
def one_batch(catalog):
    return _serve(catalog)


@pytest.mark.parametrize("size", [7, 1])
def test_batches_of_seven_users_give_the_playlists_of_one_batch(catalog, one_batch, size):
    """Batches of 7, and of 1 (a lone user is scored by another BLAS kernel: same scores)."""
    whole, whole_candidates = one_batch
    batched, batched_candidates = _serve(catalog, batch_size=size)
    pd.testing.assert_frame_equal(batched, whole)  # every column, scores and reasons included
    key = ["user_id", "source", "item_id"]
    pd.testing.assert_frame_equal(_sorted(batched_candidates, key), _sorted(whole_candidates, key))
    # cold users sit in several batches: their seeded picks still match
    cold = whole[whole["user_id"].str.endswith("_new")]
    assert cold["user_id"].nunique() == 4 and (cold["source"] == "exploration").any()


def test_batches_only_need_their_users_history_and_the_whole_histories_statistics(catalog):
    items, listens, terms = catalog
    config = small_config()
    models = fit_sources(listens, config.cf_models, num_threads=1)
    whole = build_discover_weekly(
        listens, items, week_start=WEEK, models=models, config=config, artist_terms=terms
    )
    statistics = WeekStatistics.of(listens, pd.Timestamp(WEEK))
    users = sorted(set(listens["user_id"]))
    parts = []
    for start in range(0, len(users), 9):
        batch = users[start : start + 9]
        parts.append(
            build_discover_weekly(
                listens[listens["user_id"].isin(batch)],
                items,
                week_start=WEEK,
                models=models,
                config=config,
                users=batch,
                artist_terms=terms,
                statistics=statistics,
            )
        )
    # one ServingWeek per call here: no cold users, so the cold-start generator plays no role
    pd.testing.assert_frame_equal(pd.concat(parts, ignore_index=True), whole)


# ---------------------------------------------------------------------------------- warehouse
class _Reader:
    """The ``read(sql, params)`` interface of the Warehouse resource over one connection."""

    def __init__(self, connection: duckdb.DuckDBPyConnection) -> None:
        self.connection = connection

    def read(self, sql: str, params: list | None = None) -> pd.DataFrame:
        return self.connection.execute(sql, params or []).df()


@pytest.fixture(scope="module")
def warehouse(catalog):
    """golden.listen_events (one to three plays per user and item, over eight weeks) and
    golden.users (with users who never played)."""
    _, listens, _ = catalog
    rng = np.random.default_rng(3)
    start = pd.Timestamp("2026-09-21", tz="UTC")
    rows = []
    for row in listens.itertuples():
        for _ in range(int(rng.integers(1, 4))):
            stamp = start + pd.Timedelta(seconds=int(rng.integers(0, 8 * 7 * 86400)))
            rows.append((row.user_id, row.item_id, int(rng.integers(1, 5)), stamp))
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "plays", "ts"])
    users = pd.DataFrame({"user_id": sorted(set(listens["user_id"])) + ["a_new", "zz_new"]})
    connection = duckdb.connect()
    connection.execute("CREATE SCHEMA golden")
    connection.register("_events", events)
    connection.register("_users", users)
    connection.execute("CREATE TABLE golden.listen_events AS SELECT * FROM _events")
    connection.execute("CREATE TABLE golden.users AS SELECT * FROM _users")
    yield _Reader(connection)
    connection.close()


CUTOFFS = [pd.Timestamp("2026-11-16", tz="UTC"), pd.Timestamp("2026-10-12", tz="UTC")]


@pytest.mark.parametrize("cutoff", CUTOFFS)
def test_warehouse_statistics_and_matrix_are_those_of_the_history_frame(warehouse, cutoff):
    history = history_before(warehouse, cutoff)
    expected = WeekStatistics.of(history, cutoff)
    got = week_statistics(warehouse, cutoff, cutoff)
    pd.testing.assert_series_equal(got.listeners, expected.listeners)
    pd.testing.assert_series_equal(got.novelty, expected.novelty)
    everyone = WeekStatistics.of(history, None)
    pd.testing.assert_series_equal(week_statistics(warehouse, cutoff).listeners, everyone.listeners)
    matrix = interactions_before(warehouse, cutoff)
    assert matrix.fingerprint() == Interactions.from_listens(history).fingerprint()


def test_history_batches_cover_every_user_once_in_id_order(warehouse):
    cutoff = CUTOFFS[0]
    history = history_before(warehouse, cutoff)
    batches = list(history_batches(warehouse, cutoff, 7))
    users = [u for batch, _ in batches for u in batch]
    assert users == sorted(users) and len(users) == len(set(users)) == 52
    assert {len(batch) for batch, _ in batches[:-1]} == {7}
    rows = pd.concat([frame for _, frame in batches], ignore_index=True)
    pd.testing.assert_frame_equal(rows, history.reset_index(drop=True))


def test_user_sample_is_seeded_and_drawn_in_the_warehouse(warehouse):
    cutoff = CUTOFFS[0]
    sample, users, eligible = sample_users(warehouse, cutoff, 20, seed=5, min_items=5)
    assert len(sample) == 20 and users == 50 and eligible == 50
    assert sample == sample_users(warehouse, cutoff, 20, seed=5, min_items=5)[0]
    assert sample != sample_users(warehouse, cutoff, 20, seed=6, min_items=5)[0]
    assert sample_users(warehouse, cutoff, 50)[0] is None  # everyone fits: no sampling


def test_a_sampled_history_keeps_everyones_plays_as_a_matrix(warehouse):
    cutoff = CUTOFFS[0]
    whole = PlayHistory.from_frame(history_before(warehouse, cutoff), cutoff)
    sampled = load_history(warehouse, cutoff, week_start=cutoff, max_users=20, seed=5)
    assert not sampled.complete and whole.complete
    assert sampled.rows["user_id"].nunique() == 20
    assert sampled.interactions.fingerprint() == whole.interactions.fingerprint()
    pd.testing.assert_frame_equal(sampled.counts, whole.counts, check_dtype=False)
    assert sampled.users == whole.users
    # a split of the sample: everyone's plays but the sample's test rows, counts to match
    split = holdout_split(sampled.rows, 0.2, seed=1)
    train = sampled.after_split(split.train, split.test)
    everyone = history_before(warehouse, cutoff)
    kept = everyone.merge(split.test[["user_id", "item_id"]], how="left", indicator=True)
    kept = kept[kept["_merge"] == "left_only"].drop(columns="_merge")
    reference = PlayHistory.from_frame(kept, cutoff)
    np.testing.assert_array_equal(
        train.interactions.plays.toarray(), reference.interactions.plays.toarray()
    )
    for week in (None, cutoff):
        got, expected = train.statistics(week), reference.statistics(week)
        pd.testing.assert_series_equal(got.listeners, expected.listeners)
        pd.testing.assert_series_equal(got.novelty, expected.novelty)
    pd.testing.assert_series_equal(train.popularity(), reference.popularity())


# ---------------------------------------------------------------------------------- evaluation
def test_metrics_carry_a_confidence_interval_of_the_mean_over_users():
    low, high = mean_interval([0.0, 1.0, 0.5, 0.5])
    assert low == pytest.approx(0.5 - 1.959964 * np.std([0, 1, 0.5, 0.5], ddof=1) / 2)
    assert high == pytest.approx(1.0 - low)
    test = pd.DataFrame({"user_id": ["a", "a", "b", "c"], "item_id": ["x", "y", "z", "w"]})
    got = ranking_metrics({"a": ["x", "q"], "b": ["z"], "c": ["q"]}, test, k=2)
    assert got["ndcg_ci_low"] < got["ndcg"] < got["ndcg_ci_high"]
    assert np.isnan(mean_interval([1.0])[0])


def test_sampled_cf_evaluation_is_deterministic_with_intervals(warehouse):
    cutoff = CUTOFFS[0]
    models = {"popularity": CF_PRESETS["popularity"], "ease": CF_PRESETS["ease"]}

    def evaluate(seed: int) -> pd.DataFrame:
        history = load_history(warehouse, cutoff, max_users=20, seed=seed)
        split = holdout_split(history.rows, 0.2, seed=seed)
        assert split.test["user_id"].nunique() <= 20
        return evaluate_models(history.after_split(split.train, split.test), split.test, models)

    table = evaluate(5)
    pd.testing.assert_frame_equal(
        table.drop(columns="fit_seconds"), evaluate(5).drop(columns="fit_seconds")
    )
    intervals = confidence_intervals(table, ("ndcg@10", "recall@30"))
    for model in models:
        low, high = intervals[model]["ndcg@10"]
        assert low <= table.loc[model, "ndcg@10"] <= high
    assert table["users"].max() <= 20


def test_sampled_blend_evaluation_serves_the_sample_in_batches(catalog, warehouse):
    items, _, terms = catalog
    cutoff = CUTOFFS[0]
    history = load_history(warehouse, cutoff, week_start=cutoff, max_users=20, seed=5)
    split = holdout_split(history.rows, 0.2, seed=5)
    train = history.after_split(split.train, split.test)
    kwargs = dict(
        items=items,
        artist_terms=terms,
        config=small_config(),
        week_start=cutoff,
        tuning={"max_users": 15, "validation_seed": 7},
    )
    table = evaluate_blend(train, split.test, batch_size=6, **kwargs)
    again = evaluate_blend(train, split.test, batch_size=1000, **kwargs)
    pd.testing.assert_frame_equal(table, again)  # batches change nothing, seeds fix the rest
    assert table.loc["discover_weekly", "users"] == split.test["user_id"].nunique() <= 20
    low, high = confidence_intervals(table)["discover_weekly"]["ndcg@10"]
    assert low <= table.loc["discover_weekly", "ndcg@10"] <= high


# ---------------------------------------------------------------------------------- the asset
@pytest.mark.slow
def test_the_weekly_asset_in_batches_of_seven_writes_what_one_batch_writes(tmp_path):
    """discover_weekly served in user batches (appended to the tables, the Parquet export and
    the Feast view batch by batch) writes exactly what one batch writes."""
    import dagster as dg

    from featurestore.schemas import PARQUET_FILES
    from orchestration.definitions import PARTITIONED
    from tests.pipeline import run_assets, settings_for

    settings = settings_for(tmp_path, scale=0.1).with_overrides(
        audio_backend="dsp", audio_compare="none"
    )
    upstream = dg.AssetSelection.assets("discover_weekly").upstream()
    upstream = upstream.required_multi_asset_neighbors() - PARTITIONED
    assert run_assets(settings, upstream).success
    weekly = (
        "key:cf_model or key:audio_to_cf_model or key:cooccurrence_vectors "
        "or key:transition_model or key:blend_config or key:playlist_ranker or key:candidates "
        "or key:features/ranking_features "
    )
    assert run_assets(settings, weekly + "or key:discover_weekly", partition_key=WEEK).success

    def written() -> dict[str, pd.DataFrame]:
        with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
            tables = {
                name: con.execute(f"SELECT * FROM recommend.{name} ORDER BY ALL").df()
                for name in ("discover_weekly", "candidates")
            }
        folder = settings.data_dir / "exports" / "discover_weekly" / f"week_start={WEEK}"
        tables["parquet"] = pd.read_parquet(folder / "playlists.parquet")
        feast = settings.feature_dir / PARQUET_FILES["discover_weekly_playlist"]
        tables["feast"] = pd.read_parquet(feast).drop(columns=["created"])
        return tables

    one = written()
    batched = run_assets(
        settings,
        "key:candidates or key:discover_weekly",
        partition_key=WEEK,
        run_config={"ops": {"discover_weekly": {"config": {"user_batch_size": 7}}}},
    )
    assert batched.success
    checks = batched.get_asset_check_evaluations()
    assert checks and all(c.passed for c in checks)
    seven = written()
    assert one["discover_weekly"]["user_id"].nunique() > 14  # several batches
    for name, frame in one.items():
        pd.testing.assert_frame_equal(seven[name], frame, check_dtype=False, obj=name)
    assert not list(settings.data_dir.rglob(".*.partial"))


def test_brand_new_items_in_a_ranking_count_as_the_rarest_played_item():
    """Served playlists hold tracks nobody played (placed by their audio): the evaluation
    scores them instead of failing (it did at CRATEDIGGER_SAMPLE_SCALE=10)."""
    from evaluation.metrics import evaluate_ranking

    train = pd.DataFrame({"user_id": ["a", "b", "b", "c"], "item_id": ["w", "x", "y", "x"]})
    test = pd.DataFrame({"user_id": ["a"], "item_id": ["y"]})
    vectors = (["w", "x", "y"], np.eye(3))  # a CF space: no vector for the new track
    ranking = {"a": ["brand_new", "y", "x"]}
    row = evaluate_ranking(ranking, test, train, ks=(3,), item_vectors=vectors)
    rare = np.log2(3)  # y (and w): one of three users
    assert row["novelty@3"] == pytest.approx((rare + rare + np.log2(3 / 2)) / 3)
    assert row["diversity@3"] == pytest.approx(1.0)  # y and x, the items with a vector
    assert row["ndcg@3"] > 0
