"""Blending: normalisation, fusion, reasons, weight tuning; the HetRec figures (slow)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from recommend.blend import (
    BlendConfig,
    fuse,
    fusion_table,
    item_novelty,
    normalise_scores,
    top_k_ranking,
    tune_blend,
)


def candidates_frame(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(
        rows, columns=["user_id", "item_id", "score", "source", "reason_code", "reason_detail"]
    )


@pytest.fixture
def two_sources() -> pd.DataFrame:
    return candidates_frame(
        [
            ("u", "a", 10.0, "ease", "because_you_played", "x"),
            ("u", "b", 5.0, "ease", "because_you_played", "y"),
            ("u", "c", 1.0, "ease", "because_you_played", "z"),
            ("u", "c", 0.9, "text", "described_as", "dreamy, shoegaze"),
            ("u", "d", 0.5, "text", "described_as", "noise"),
            ("v", "a", 3.0, "ease", "because_you_played", "q"),
        ]
    )


@pytest.mark.parametrize("method", ["rrf", "zscore", "rank"])
def test_normalisation_keeps_order_within_user_and_source(two_sources, method):
    normalised = normalise_scores(two_sources, method)
    ease_u = normalised[(two_sources["user_id"] == "u") & (two_sources["source"] == "ease")]
    assert list(ease_u) == sorted(ease_u, reverse=True) and ease_u.iloc[0] > ease_u.iloc[-1]
    assert (normalised >= 0).all()


def test_zscore_is_scale_free(two_sources):
    scaled = two_sources.assign(score=two_sources["score"] * 1000.0)
    assert np.allclose(normalise_scores(two_sources, "zscore"), normalise_scores(scaled, "zscore"))


def test_weights_choose_the_order_and_the_reason(two_sources):
    ease_only = fuse(two_sources, BlendConfig(weights={"ease": 1.0}, method="rank"))
    assert top_k_ranking(ease_only, 3)["u"] == ["a", "b", "c"]
    text_heavy = fuse(two_sources, BlendConfig(weights={"ease": 0.1, "text": 1.0}, method="rank"))
    ranking = top_k_ranking(text_heavy, 4)["u"]
    assert ranking[0] == "c"  # in both sources, strongest in text
    row = text_heavy[(text_heavy["user_id"] == "u") & (text_heavy["item_id"] == "c")].iloc[0]
    assert (row["source"], row["reason_code"], row["reason_detail"]) == (
        "text",
        "described_as",
        "dreamy, shoegaze",
    )
    assert list(text_heavy["rank"][text_heavy["user_id"] == "u"]) == [1, 2, 3, 4]


def test_bad_blend_configs_are_clear_errors(two_sources):
    with pytest.raises(ValueError, match="every blend weight is 0"):
        fuse(two_sources, BlendConfig(weights={"als": 1.0}))
    with pytest.raises(ValueError, match="must be >= 0"):
        BlendConfig(weights={"ease": -1.0})
    with pytest.raises(ValueError, match="not one of"):
        BlendConfig(method="borda")
    with pytest.raises(ValueError, match="no item novelty"):
        fuse(two_sources, BlendConfig(weights={"ease": 1.0, "novelty": 1.0}))


def test_novelty_weight_promotes_rare_items(two_sources):
    novelty = pd.Series({"a": 0.1, "b": 0.2, "c": 5.0, "d": 6.0})
    plain = top_k_ranking(fuse(two_sources, BlendConfig(weights={"ease": 1.0, "text": 1.0})), 4)
    boosted = top_k_ranking(
        fuse(
            two_sources,
            BlendConfig(weights={"ease": 1.0, "text": 1.0, "novelty": 5.0}),
            novelty=novelty,
        ),
        4,
    )
    assert plain["u"][0] == "a" and boosted["u"][0] in {"c", "d"}
    assert set(fusion_table(two_sources, novelty=novelty).sources) == {"ease", "text", "novelty"}


def synthetic_sources(
    seed: int = 3, users: int = 60, items: int = 80
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A 'good' source that ranks each user's validation items high, a noisy one, and truth."""
    rng = np.random.default_rng(seed)
    rows, truth = [], []
    for u in range(users):
        relevant = rng.choice(items, size=4, replace=False)
        truth += [(f"u{u}", f"i{i}") for i in relevant]
        good = rng.normal(size=items)
        good[relevant] += 2.5
        noise = rng.normal(size=items)
        for i in range(items):
            rows.append((f"u{u}", f"i{i}", good[i], "good", "because_you_played", "x"))
            rows.append((f"u{u}", f"i{i}", noise[i], "noise", "popular_now", ""))
    return candidates_frame(rows), pd.DataFrame(truth, columns=["user_id", "item_id"])


def test_tuning_finds_the_informative_source():
    candidates, validation = synthetic_sources()
    config, history = tune_blend(candidates, validation, reference=None, rounds=1)
    assert config.weights["good"] > config.weights.get("noise", 0.0)
    assert history["ndcg"].max() > history.loc[history["source"] == "noise", "ndcg"].min()
    best = history.sort_values("objective").iloc[-1]
    noise_only = history[(history["round"] == 0) & (history["source"] == "noise")].iloc[0]
    assert best["ndcg"] > noise_only["ndcg"] + 0.1


def test_tuning_with_a_reference_keeps_its_coverage():
    candidates, validation = synthetic_sources()
    novelty = pd.Series({f"i{i}": float(i % 7) for i in range(80)})
    config, history = tune_blend(
        candidates, validation, novelty=novelty, reference="noise", margin=0.0, rounds=1
    )
    target = history.attrs["reference"][config.method]
    assert set(target) == {"source", "coverage", "novelty"} and target["source"] == "noise"
    start = history[(history["round"] == 0) & (history["method"] == config.method)]
    start = start.set_index("source")
    # the reference meets its own targets: no penalty; the other source is penalised
    assert start.loc["noise", "objective"] == pytest.approx(start.loc["noise", "ndcg"])
    good = start.loc["good"]
    short = good["coverage"] < target["coverage"] or good["novelty"] < target["novelty"]
    assert (good["objective"] < good["ndcg"]) == short
    assert history["objective"].max() >= start.loc["noise", "ndcg"] - 1e-12


def test_best_reference_asks_for_a_multiple_of_the_best_sources_coverage():
    candidates, validation = synthetic_sources()
    novelty = pd.Series({f"i{i}": float(i % 7) for i in range(80)})
    config, history = tune_blend(
        candidates, validation, novelty=novelty, reference="best", coverage_factor=2.0, rounds=1
    )
    target = history.attrs["reference"][config.method]
    start = history[(history["round"] == 0) & (history["method"] == config.method)]
    start = start.set_index("source")
    best = start["ndcg"].idxmax()
    assert target["source"] == best
    # the factor, with the safety margin (default 5%) on top
    assert target["coverage"] == pytest.approx(2.0 * 1.05 * start.loc[best, "coverage"])


def test_a_zero_weight_source_never_labels_a_blended_row():
    rows = [("u", f"i{i}", float(3 - i), "ease", "cf", "x") for i in range(3)]
    rows += [("u", "i2", 5.0, "item_knn", "cf", "y"), ("u", "i9", 1.0, "item_knn", "cf", "y")]
    candidates = pd.DataFrame(
        rows, columns=["user_id", "item_id", "score", "source", "reason_code", "reason_detail"]
    )
    blended = fuse(candidates, BlendConfig(weights={"ease": 1.0}, method="zscore"))
    labels = dict(zip(blended["item_id"], blended["source"], strict=True))
    # i2 scores below the mean for ease (a negative contribution) and is found by item_knn too
    assert labels["i2"] == "ease" and labels["i9"] == "item_knn"


def test_an_accuracy_floor_keeps_the_best_sources_ndcg_and_then_explores():
    candidates, validation = synthetic_sources()
    novelty = pd.Series({f"i{i}": float(i % 7) for i in range(80)})
    config, history = tune_blend(
        candidates,
        validation,
        novelty=novelty,
        reference="best",
        coverage_factor=2.0,
        accuracy_floor=0.0,
        rounds=1,
        methods=("zscore",),
    )
    start = history[history["round"] == 0].set_index("source")
    best_single = start["ndcg"].max()
    chosen = history.sort_values("objective").iloc[-1]
    assert chosen["ndcg"] >= best_single - 1e-12  # never less accurate than the best source
    # among the blends that keep that accuracy, the chosen one explores the most
    feasible = history[history["ndcg"] >= best_single - 1e-12]
    assert chosen["coverage"] >= feasible["coverage"].max() - 1e-12 or chosen["coverage"] >= (
        2.0 * start.loc[start["ndcg"].idxmax(), "coverage"]
    )


def test_item_novelty_is_self_information():
    listens = pd.DataFrame({"user_id": ["a", "b", "c", "d"], "item_id": ["x", "x", "x", "y"]})
    novelty = item_novelty(listens)
    assert novelty["y"] == pytest.approx(2.0) and novelty["x"] == pytest.approx(-np.log2(0.75))


# ---------------------------------------------------------------------------------- served
def test_evaluated_served_row_equals_a_recomputation_through_the_served_path():
    from evaluation.metrics import evaluate_ranking, holdout_split
    from evaluation.served import evaluate_blend, playlist_rankings
    from recommend.models import fit_sources
    from recommend.playlist import STAGES, build_discover_weekly
    from tests.test_playlist import WEEK, make_catalog, small_config

    items, listens, terms = make_catalog(n_users=60, plays_per_user=20)
    split = holdout_split(listens, 0.2, seed=3)
    config = small_config()
    # the fusion's path (a serving ranker's: tests/test_ranker.py, tests/test_ranker_features.py)
    table = evaluate_blend(
        split.train,
        split.test,
        items=items,
        artist_terms=terms,
        config=config,
        week_start=WEEK,
        tuning={"ranker": "off"},
    )
    assert table.attrs["ranker"]["serves"] == "fusion"
    assert set(STAGES) <= set(table.index) and {"ease", "item_knn", "als"} <= set(table.index)
    models = fit_sources(split.train, config.cf_models, num_threads=config.num_threads)
    served = build_discover_weekly(
        split.train,
        items,
        week_start=WEEK,
        models=models,
        blend=table.attrs["blend_config"],
        config=config,
        users=sorted(set(split.test["user_id"])),
        artist_terms=terms,
    )
    again = evaluate_ranking(playlist_rankings(served), split.test, split.train, ks=(10, 30))
    for metric in ("ndcg@10", "ndcg@30", "recall@30", "coverage@30", "distinct@30"):
        assert table.loc["discover_weekly", metric] == pytest.approx(again[metric]), metric
    assert table.attrs["models_version"] == models.version
    assert table.attrs["chart_png"].startswith(b"\x89PNG")


# ---------------------------------------------------------------------------------- HetRec
@pytest.mark.slow
def test_hetrec_served_playlists_beat_every_single_source(hetrec_dir):
    """Issue 11's bar on one split seed (the three seeds: benchmarks.bench_served)."""
    from evaluation.metrics import holdout_split
    from evaluation.served import evaluate_blend
    from recommend.playlist import STAGES
    from sources.hetrec import read_hetrec_listens_and_terms

    listens, terms = read_hetrec_listens_and_terms(hetrec_dir)
    split = holdout_split(listens, 0.2, seed=42)
    with threadpool_limits(2):
        table = evaluate_blend(split.train, split.test, artist_terms=terms)
    print(table.round(4).to_string())
    print(table.attrs["blend_config"], table.attrs["seconds"])
    singles = table.drop(index=list(STAGES))
    served = table.loc["discover_weekly"]
    assert served["ndcg@10"] >= singles["ndcg@10"].max()
    assert served["distinct@30"] >= 2 * table.loc["ease", "distinct@30"]
    # the bars of the test this one replaces (0.22 raised to 0.25): the raw blend beats every
    # single source and the served lists explore at least as much as ALS; novelty@10 dropped:
    # the top ten are tuned for accuracy first (served 4.69 vs ALS 4.72 on this seed)
    assert served["ndcg@10"] >= 0.25
    assert table.loc["blend", "ndcg@10"] > singles["ndcg@10"].max()
    for metric in ("coverage@10", "coverage@30", "novelty@30"):
        assert served[metric] >= table.loc["als", metric], metric
