"""A/B variants: a stable split by user id, checked configuration, bootstrap intervals, and on
the sample every delivered playlist carrying its variant (DuckDB, Parquet, Feast) and the
offline replay of the variants with 95% intervals."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from orchestration.settings import SettingsError, load_settings
from recommend.playlist import DiscoverWeeklyConfig
from recommend.variants import (
    DEFAULT_EXPERIMENT,
    SINGLE_VARIANT,
    UserMetrics,
    VariantError,
    bootstrap_intervals,
    parse_experiment,
    variant_blend,
    variant_config,
)
from tests.pipeline import run_assets, settings_for

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LAST_WEEK = "2026-11-16"
IDS = [f"u{i:06d}" for i in range(2_000)]
THREE = {
    "name": "three-way",
    "variants": [
        {"name": "control", "share": 0.5},
        {"name": "explore", "share": 0.3, "exploration_slots": 6},
        {"name": "fixed", "share": 0.2, "blend": {"item_knn": 1.0, "als": 0.5}},
    ],
}


# ---------------------------------------------------------------------------------- assignment
def test_a_users_variant_does_not_depend_on_order_batches_or_process() -> None:
    experiment = parse_experiment(THREE)
    once = experiment.assign(IDS)
    shuffled = IDS[:]
    random.Random(3).shuffle(shuffled)
    batched = pd.concat([experiment.assign(shuffled[i : i + 97]) for i in range(0, 2_000, 97)])
    assert batched.reindex(once.index).equals(once)
    code = (
        "import json, sys; from recommend.variants import parse_experiment; "
        "e = parse_experiment(json.loads(sys.argv[1])); "
        "print(json.dumps(e.assign(sys.argv[2].split(',')).to_dict()))"
    )
    for seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code, json.dumps(THREE), ",".join(reversed(IDS[:300]))],
            capture_output=True,
            text=True,
            check=True,
            env=env,
            cwd=PROJECT_ROOT,
        )
        assert json.loads(out.stdout) == once.iloc[:300].to_dict()


def test_the_split_follows_the_shares_and_the_salt_reshuffles() -> None:
    experiment = parse_experiment(THREE)
    ids = [f"user-{i}" for i in range(60_000)]
    shares = experiment.assign(ids).value_counts(normalize=True)
    for variant in experiment.variants:  # binomial sd <= 0.002 at 60k users
        assert abs(shares[variant.name] - variant.share) < 0.01
    renamed = parse_experiment({**THREE, "name": "three-way-2"}).assign(ids)
    assert (renamed != experiment.assign(ids)).mean() > 0.3
    salted = parse_experiment({**THREE, "name": "renamed", "salt": "three-way"}).assign(ids)
    assert salted.equals(experiment.assign(ids))


def test_a_single_variant_experiment_serves_everyone_with_it() -> None:
    experiment = parse_experiment(SINGLE_VARIANT)
    assert set(experiment.assign(IDS)) == {"control"}


# ---------------------------------------------------------------------------------- config
def _variants(*variants: dict) -> dict:
    return {"name": "x", "variants": list(variants)}


@pytest.mark.parametrize(
    ("spec", "names"),
    [
        (_variants({"name": "a", "share": 0.5}, {"name": "b", "share": 0.4}), "share sum to 0.9"),
        (_variants({"name": "a", "share": 0.5}, {"name": "a", "share": 0.5}), "[1].name='a'"),
        (_variants({"name": "a", "share": 1, "blend": {"itemknn": 1}}), "[0].blend: unknown"),
        (_variants({"name": "a", "share": 1, "blend": {"als": -1}}), "[0].blend: weights"),
        (_variants({"name": "a", "share": 1, "explore": 0.2}), "unknown key(s) ['explore']"),
        (_variants({"name": "a", "share": 1.5}), "variants[0].share=1.5"),
        (_variants({"name": "a", "share": 1, "mmr_lambda": 2}), "[0].mmr_lambda=2"),
        (_variants({"name": "a", "share": 1, "max_per_artist": 0}), "[0].max_per_artist=0"),
        (
            _variants({"name": "a", "share": 1, "exploration_share": 0.2, "exploration_slots": 6}),
            "exploration_share or exploration_slots",
        ),
        (_variants({"name": "a b", "share": 1}), "variants[0].name='a b'"),
        ({"name": "x", "variants": []}, "experiment.variants must be"),
        ({"variants": [{"name": "a", "share": 1}]}, "experiment.name=None"),
        ("{not json", "not valid JSON"),
    ],
)
def test_a_bad_experiment_names_the_key_and_the_fix(spec, names: str) -> None:
    with pytest.raises(VariantError) as error:
        parse_experiment(spec)
    assert names in str(error.value)


def test_the_environment_sets_the_experiment_and_a_bad_one_names_the_variable(tmp_path) -> None:
    base = {"CRATEDIGGER_DATA_DIR": str(tmp_path)}
    assert load_settings(base).experiment == ""
    none = load_settings({**base, "CRATEDIGGER_EXPERIMENT": "none"}).experiment
    assert parse_experiment(none).names == ["control"]
    path = tmp_path / "experiment.json"
    path.write_text(json.dumps(THREE))
    from_file = load_settings({**base, "CRATEDIGGER_EXPERIMENT": str(path)}).experiment
    assert parse_experiment(from_file) == parse_experiment(THREE)
    with pytest.raises(SettingsError, match=r"CRATEDIGGER_EXPERIMENT: experiment.variants\[0\]"):
        load_settings({**base, "CRATEDIGGER_EXPERIMENT": '{"name": "x", "variants": [1]}'})
    with pytest.raises(SettingsError, match="CRATEDIGGER_EXPERIMENT='nowhere.json'"):
        load_settings({**base, "CRATEDIGGER_EXPERIMENT": "nowhere.json"})


def test_a_variant_changes_only_what_it_names() -> None:
    served = DiscoverWeeklyConfig()
    experiment = parse_experiment(THREE)
    control, explore, fixed = experiment.variants
    assert variant_config(served, control) == served
    wide = variant_config(served, explore).playlist
    assert wide.exploration_slots == 6 and wide.exploration_positions == (5, 10, 15, 20, 25, 30)
    assert wide.mmr_lambda == served.playlist.mmr_lambda
    share = parse_experiment(DEFAULT_EXPERIMENT).variants[1]
    assert variant_config(served, share).playlist.exploration_slots == 6
    assert variant_blend(control, served.blend) is served.blend
    assert dict(variant_blend(fixed, served.blend).weights) == {"als": 0.5, "item_knn": 1.0}


# ---------------------------------------------------------------------------------- intervals
def _metrics(values: np.ndarray, lists: list[list[str]]) -> UserMetrics:
    users = [f"u{i}" for i in range(len(values))]
    info = np.asarray([len(items) * 2.0 for items in lists])
    counts = np.asarray([float(len(items)) for items in lists])
    return UserMetrics(
        users=users,
        means={"ndcg@10": values},
        ratios={"novelty@30": (info, counts)},
        sets={"coverage@30": (lists, 50)},
    )


def test_bootstrap_intervals_surround_the_value_are_seeded_and_paired() -> None:
    rng = np.random.default_rng(0)
    values = rng.uniform(0, 1, 400)
    lists = [[f"i{j}" for j in rng.choice(50, 5, replace=False)] for _ in range(400)]
    metrics = {"a": _metrics(values, lists), "b": _metrics(values * 0.5, lists)}
    table = bootstrap_intervals(metrics, reference="a", n_resamples=300, seed=1)
    again = bootstrap_intervals(metrics, reference="a", n_resamples=300, seed=1)
    pd.testing.assert_frame_equal(table, again)
    rows = table.set_index(["variant", "metric"])
    assert (rows["ci_low"] <= rows["value"]).all() and (rows["value"] <= rows["ci_high"]).all()
    ndcg = rows.loc[("a", "ndcg@10")]
    assert ndcg.value == pytest.approx(values.mean())
    half = 1.96 * values.std(ddof=1) / np.sqrt(len(values))  # the normal interval, near
    assert ndcg.ci_high - ndcg.ci_low == pytest.approx(2 * half, rel=0.2)
    assert rows.loc[("a", "novelty@30"), "value"] == pytest.approx(2.0)
    assert rows.loc[("a", "coverage@30"), "value"] == pytest.approx(1.0)
    same = rows.loc[("a", "coverage@30")]  # identical lists: a zero difference, exactly
    assert same["diff"] == same.diff_ci_low == same.diff_ci_high == 0
    worse = rows.loc[("b", "ndcg@10")]
    assert worse.diff_ci_high < 0 and worse.diff_ci_low < worse["diff"] < worse.diff_ci_high


def test_a_coverage_interval_surrounds_the_value_although_resamples_cover_less() -> None:
    values = np.linspace(0, 1, 300)
    lists = [[f"own{u}", "shared"] for u in range(300)]  # each user adds one item
    metrics = {"a": _metrics(values, lists), "b": _metrics(values, lists[:150] * 2)}
    for metric in metrics.values():
        metric.sets["coverage@30"] = (metric.sets["coverage@30"][0], 400)
    rows = bootstrap_intervals(metrics, reference="a", n_resamples=200).set_index(
        ["variant", "metric"]
    )
    own = rows.loc[("a", "coverage@30")]
    assert own.value == pytest.approx(301 / 400)
    assert own.ci_low < own.value < own.ci_high and own.ci_high - own.ci_low < 0.1
    fewer = rows.loc[("b", "coverage@30")]
    assert fewer["diff"] == pytest.approx(-150 / 400)
    assert fewer.diff_ci_low < fewer["diff"] < fewer.diff_ci_high < 0


def test_per_user_metrics_agree_with_evaluate_ranking() -> None:
    from evaluation.metrics import evaluate_ranking, item_popularity
    from evaluation.variants import COVERAGE, NDCG, NOVELTY, user_metrics

    rng = np.random.default_rng(5)
    train = pd.DataFrame(
        [(f"u{u}", f"i{i}", 1) for u in range(30) for i in rng.choice(60, 12, replace=False)],
        columns=["user_id", "item_id", "plays"],
    )
    test = pd.DataFrame(
        [(f"u{u}", f"i{i}") for u in range(30) for i in rng.choice(range(60, 70), 2)],
        columns=["user_id", "item_id"],
    ).drop_duplicates()
    played = train.groupby("user_id")["item_id"].agg(set)
    pool = [f"i{i}" for i in range(70)]
    ranking = {u: [i for i in pool if i not in played[u]][::-1][:30] for u in played.index}
    popularity = item_popularity(train)
    metrics = user_metrics(ranking, test, popularity, catalog_size=train["item_id"].nunique())
    point = metrics.point()
    expected = evaluate_ranking(ranking, test, train, ks=(10, 30), popularity=popularity)
    assert point[NDCG] == pytest.approx(expected["ndcg@10"])
    assert point[COVERAGE] == pytest.approx(expected["coverage@30"])
    assert point[NOVELTY] == pytest.approx(expected["novelty@30"])


def test_a_table_written_before_a_new_column_takes_it(tmp_path) -> None:
    from orchestration.resources import Warehouse

    warehouse = Warehouse(path=str(tmp_path / "w.duckdb"))
    old = pd.DataFrame({"week_start": ["2026-11-09"], "user_id": ["u1"]})
    warehouse.replace_partition("recommend", "discover_weekly", old, "week_start", "2026-11-09")
    new = pd.DataFrame({"week_start": ["2026-11-16"], "user_id": ["u1"], "variant": ["control"]})
    warehouse.replace_partition("recommend", "discover_weekly", new, "week_start", "2026-11-16")
    warehouse.append_table("recommend", "discover_weekly", new.assign(user_id="u2"))
    rows = warehouse.read("SELECT * FROM recommend.discover_weekly ORDER BY user_id, week_start")
    assert rows["variant"].tolist() == [None, "control", "control"]


# ---------------------------------------------------------------------------------- sample
@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One week of the sample served twice through the real assets, the variants replayed."""
    from orchestration.definitions import PARTITIONED

    data_dir = tmp_path_factory.mktemp("variants")
    settings = settings_for(data_dir, scale=0.1).with_overrides(
        audio_backend="dsp", audio_compare="none"
    )
    targets = dg.AssetSelection.assets("discover_weekly", "variant_replay")
    selection = targets.upstream().required_multi_asset_neighbors()
    assert run_assets(settings, selection - PARTITIONED).success
    week = run_assets(settings, selection & PARTITIONED, partition_key=LAST_WEEK)
    assert week.success
    first = _playlists(settings)
    again = run_assets(settings, "key:discover_weekly or key:candidates", partition_key=LAST_WEEK)
    assert again.success
    return settings, week, first


def _playlists(settings) -> pd.DataFrame:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return con.execute(
            "SELECT user_id, position, item_id, variant FROM recommend.discover_weekly "
            "WHERE week_start = ? ORDER BY user_id, position",
            [LAST_WEEK],
        ).df()


def _metadata(result, key: str) -> dict:
    events = [
        e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(key)
    ]
    return {k: v.value for k, v in events[-1].materialization.metadata.items()}


def test_every_delivered_playlist_row_carries_the_users_variant(served) -> None:
    settings, week, first = served
    experiment = parse_experiment(DEFAULT_EXPERIMENT)
    expected = experiment.assign(first["user_id"]).to_numpy()
    assert first["variant"].notna().all() and (first["variant"].to_numpy() == expected).all()
    assert set(first["variant"]) == set(experiment.names)  # both variants serve someone
    failed = [c.check_name for c in week.get_asset_check_evaluations() if not c.passed]
    assert not failed  # the playlist rules hold for every variant (6 exploration slots too)
    counts = _metadata(week, "discover_weekly")["variant_users"]
    assert counts == first.drop_duplicates("user_id")["variant"].value_counts().to_dict()
    export = pd.read_parquet(
        settings.data_dir / "exports" / "discover_weekly" / f"week_start={LAST_WEEK}"
    )
    by_user = export.drop_duplicates("user_id").set_index("user_id")["variant"]
    assert by_user.to_dict() == experiment.assign(by_user.index).to_dict()


def test_the_same_user_keeps_the_variant_across_runs(served) -> None:
    settings, _, first = served
    second = _playlists(settings)
    variants = first.drop_duplicates("user_id").set_index("user_id")["variant"]
    assert second.drop_duplicates("user_id").set_index("user_id")["variant"].equals(variants)


def test_feast_serves_a_users_variant(served) -> None:
    from featurestore.client import FeatureStoreClient

    settings, _, first = served
    explored = first.loc[first["variant"] == "wide_exploration", "user_id"].iloc[0]
    client = FeatureStoreClient(settings.feature_repo, settings.feature_dir)
    frame = client.online_user_features(
        [explored], ["discover_weekly_playlist:variant", "discover_weekly_playlist:week"]
    )
    assert frame.loc[0, "variant"] == "wide_exploration"


def test_the_replay_reports_each_variants_metrics_with_intervals(served) -> None:
    _, week, _ = served
    metadata = _metadata(week, "variant_replay")
    intervals = metadata["ci95"]
    assert set(intervals) == {"control", "wide_exploration"}
    for variant, metrics in intervals.items():
        assert set(metrics) == {"ndcg@10", "coverage@30", "novelty@30"}
        for metric, entry in metrics.items():
            low, high = entry["ci95"]
            assert low <= entry["value"] <= high
            assert metadata[f"{variant}/{metric}"] == pytest.approx(entry["value"], abs=1e-4)
    assert "diff_ci95" in intervals["wide_exploration"]["novelty@30"]
    assert "wide_exploration" in metadata["table"] and "base64" in metadata["chart"]
