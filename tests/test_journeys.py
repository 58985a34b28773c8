"""Issue 16 part 2, journeys and radio: explorers found by a rule with data-driven thresholds, a
transition model of the order in which they discover artists, a radio that drifts along it and
explains every step, the exploration slots' "one step outward", and the offline check against
popularity and nearest neighbours, on the sample (planted journeys) and on HetRec."""

from __future__ import annotations

import re
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from evaluation.journeys import (
    CLUSTERS_ONLY,
    MODEL,
    NEIGHBOURS,
    POPULARITY,
    evaluate_journeys,
    split_explorers,
)
from quality import sql_rules
from recommend.candidates import CANDIDATE_COLUMNS
from recommend.errors import TooSmall
from recommend.journeys import (
    JourneyConfig,
    JourneyInputs,
    UnknownArtist,
    explain_next_step,
    explorer_rule,
    fit_transition_model,
    next_step_candidates,
    radio,
    radio_text,
    read_discoveries,
    read_journey_inputs,
    user_exploration,
)
from sources import HetrecSource, SampleSource
from sources.base import RAW_COLUMNS, RawBundle
from sources.generic import land_frame

LAST_WEEK = "2026-11-16"
LOADED_AT = pd.Timestamp("2026-11-27T00:00:00Z")


class Reader:
    """``read(sql, params)`` over a DuckDB connection (what the warehouse resource offers)."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    def read(self, sql: str, params: list | None = None) -> pd.DataFrame:
        return self.con.execute(sql, params or []).df()


def golden_warehouse(bundle: RawBundle, path: Path) -> Reader:
    """The real golden tables of a bundle (the SQL row rules), in a DuckDB file."""
    con = duckdb.connect(str(path))
    con.execute("CREATE SCHEMA IF NOT EXISTS raw")
    for name in RAW_COLUMNS:
        land_frame(con, bundle.table(name), f"raw.{name}", name, LOADED_AT)
    sql_rules.validate_bundle(
        con, bundle.item_level, bundle.listens_kind, tables=list(bundle.tables)
    )
    return Reader(con)


STEP_LINE = re.compile(r"^\s*(\d+)\. (.+?) \(([^()]+)\) - (.+)$")


def no_repeat_within(artists: list[str], window: int) -> bool:
    return all(artists[i] not in artists[max(0, i - window) : i] for i in range(len(artists)))


def printed_steps(out: str) -> list[tuple[int, str, str, str]]:
    """``(position, name, artist id, reason)`` of each step line the CLI printed."""
    found = [STEP_LINE.match(line) for line in out.splitlines()]
    return [(int(m[1]), m[2], m[3], m[4]) for m in found if m]


# ---------------------------------------------------------------------------------- the sample
@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """The default-size sample (600 users, 30 planted explorers), golden tables in DuckDB."""
    folder = tmp_path_factory.mktemp("journeys")
    source = SampleSource(folder / "sample", audio_tracks=0)
    reader = golden_warehouse(source.read(), folder / "warehouse.duckdb")
    inputs = read_journey_inputs(reader)
    colistening = reader.read(
        "SELECT DISTINCT l.user_id, i.artist_id FROM golden.listens l "
        "JOIN golden.items i USING (item_id)"
    )
    return source.truth(), reader, inputs, colistening


@pytest.fixture(scope="module")
def model(sample):
    return fit_transition_model(sample[2])


def test_planted_journeys_leave_every_other_row_of_the_sample_as_it_was(tmp_path) -> None:
    size = dict(n_users=120, n_artists=48, tracks_per_artist=2, audio_tracks=0)
    without = SampleSource(tmp_path / "a", explorers=0, **size).read()
    planted = SampleSource(tmp_path / "b", **size)
    bundle = planted.read()
    for name, frame in without.tables.items():
        columns = RAW_COLUMNS[name]
        head = bundle.tables[name][columns].iloc[: len(frame)].reset_index(drop=True)
        pd.testing.assert_frame_equal(head, frame[columns].reset_index(drop=True), obj=name)
    truth = planted.truth()
    explorers = set(truth["explorer_ids"])
    assert len(explorers) == 6 and not explorers & set(truth["user_ids"])
    added = bundle.tables["listens"].iloc[len(without.tables["listens"]) :]
    assert set(added["user_id"]) == explorers
    assert set(bundle.tables["users"]["user_id"]) == set(truth["user_ids"]) | explorers
    graph = truth["journey_next"]
    assert graph.shape == (48, 3) and (graph >= 0).all()
    genre = truth["artist_genre"]
    assert (genre[graph[:, 0]] == genre).all() and (genre[graph[:, 2]] == (genre + 1) % 8).all()


def test_discoveries_are_first_plays_and_same_timestamp_discoveries_share_a_step() -> None:
    con = duckdb.connect()
    con.execute("CREATE SCHEMA golden")
    con.execute(
        "CREATE TABLE golden.items AS SELECT * FROM (VALUES ('t1', 'a1'), ('t2', 'a1'), "
        "('t3', 'a2'), ('t4', 'a3')) v(item_id, artist_id)"
    )
    con.execute(
        "CREATE TABLE golden.listens AS SELECT user_id, item_id, 1 AS plays, "
        "CAST(first_ts AS TIMESTAMPTZ) AS first_ts, CAST(first_ts AS TIMESTAMPTZ) AS last_ts "
        "FROM (VALUES ('u', 't2', '2026-01-05 10:00:00+00'), ('u', 't1', '2026-01-01 00:00:00+00'),"
        " ('u', 't3', '2026-01-09 00:00:00+00'), ('u', 't4', '2026-01-09 00:00:00+00'), "
        "('v', 't4', '2026-02-01 00:00:00+00')) v(user_id, item_id, first_ts)"
    )
    con.execute(
        "CREATE TABLE golden.listen_events AS SELECT user_id, item_id, plays, first_ts AS ts "
        "FROM golden.listens"
    )
    frame, weeks, basis = read_discoveries(Reader(con))
    assert basis == "plays"
    mine = frame[frame["user_id"] == "u"]
    # a1 first played through t1 on Jan 1; a2 and a3 on the same second: one step, by id
    assert mine[["artist_id", "step"]].values.tolist() == [["a1", 1], ["a2", 2], ["a3", 2]]
    assert weeks["u"] == 2 and weeks["v"] == 1
    before, _, _ = read_discoveries(Reader(con), pd.Timestamp("2026-01-06", tz="UTC"))
    assert before["artist_id"].tolist() == ["a1"]


def test_the_exploratory_rule_finds_the_planted_explorers(sample) -> None:
    truth, _, inputs, _ = sample
    stats = user_exploration(inputs)
    rule = explorer_rule(stats, JourneyConfig())
    planted = set(truth["explorer_ids"])
    found = set(rule.explorers)
    assert planted <= found
    # far above chance: 30 of 630 users are planted, most of those flagged are
    assert len(planted & found) / len(found) > 0.4
    assert rule.rate_threshold > stats["rate"].median() and rule.breadth_threshold > 0
    text = rule.describe()
    assert "new artists per active week" in text and "entropy" in text and "75%" in text


def test_the_model_learns_the_planted_journeys(sample, model) -> None:
    truth = sample[0]
    assert model.basis == "plays" and model.cluster_basis == "genre"
    graph, ids = truth["journey_next"], truth["artist_ids"]
    planted = {ids[a]: {ids[b] for b in graph[a]} for a in range(len(ids))}
    learnt = [a for a in ids if model.counts[model.index_of(a)].nnz]
    assert len(learnt) > 40
    top = [model.next_artists(a, k=1)[0] for a in learnt]
    followed = [c.artist_id in planted[c.from_artist] for c in top if c.kind == "transition"]
    assert len(followed) > 40 and np.mean(followed) > 0.9


def test_the_model_beats_popularity_and_neighbours_on_held_out_planted_explorers(sample) -> None:
    truth, _, inputs, colistening = sample
    planted = evaluate_journeys(
        inputs, colistening=colistening, explorers=list(truth["explorer_ids"])
    ).table
    hit = planted["hit_rate@10"]
    assert hit[MODEL] > hit[NEIGHBOURS] + 0.15 and hit[MODEL] > hit[POPULARITY] + 0.3
    assert hit[MODEL] > hit[CLUSTERS_ONLY]  # the artist-level moves carry the journeys
    assert planted["predictions"].iloc[0] > 300 and planted["test_users"].iloc[0] == 9
    # the rule's explorers (planted and heavy regular users alike): still ahead
    result = evaluate_journeys(inputs, colistening=colistening)
    ruled = result.table["hit_rate@10"]
    assert ruled[MODEL] > ruled[NEIGHBOURS] and ruled[MODEL] > ruled[POPULARITY]
    assert "| transition_model " in result.markdown()


def test_the_split_is_seeded_and_holds_out_a_share() -> None:
    users = [f"u{i}" for i in range(20)]
    train, test = split_explorers(users, 0.3, seed=42)
    assert len(test) == 6 and not set(train) & set(test) and set(train) | set(test) == set(users)
    assert split_explorers(list(reversed(users)), 0.3, seed=42) == (train, test)
    assert split_explorers(users, 0.3, seed=1)[1] != test


def test_a_radio_of_50_steps_never_repeats_within_20_and_explains_every_step(model) -> None:
    seed_artist = "a00012"
    steps = list(radio(model, seed_artist, steps=50))
    assert [s.position for s in steps] == list(range(1, 51))
    assert no_repeat_within([seed_artist] + [s.artist_id for s in steps], 20)
    assert all(s.reason and s.name == model.name(s.artist_id) for s in steps)
    assert [s.from_artist for s in steps] == [seed_artist] + [s.artist_id for s in steps[:-1]]
    assert {s.kind for s in steps} <= {"transition", "cluster", "popular"}
    assert any(s.kind == "transition" and "explorers who found" in s.reason for s in steps)
    assert [s.artist_id for s in radio(model, seed_artist, steps=50)] == [
        s.artist_id for s in steps
    ]
    other = [s.artist_id for s in radio(model, seed_artist, steps=50, seed=3)]
    assert other != [s.artist_id for s in steps]
    endless = radio(model, seed_artist)  # no steps: it goes on
    assert len([next(endless) for _ in range(300)]) == 300
    text = radio_text(model, seed_artist, steps=50)
    assert len(text.splitlines()) == 51 and text.splitlines()[1].startswith("   1. ")


def test_unknown_artists_are_named_with_known_examples(model) -> None:
    with pytest.raises(UnknownArtist, match=r"unknown artist 'nobody' \(try e\.g\. a\d+ \("):
        radio(model, "nobody", steps=5)
    with pytest.raises(UnknownArtist):
        model.next_artists("nobody")


def _tiny_inputs(with_order: bool) -> JourneyInputs:
    artists = pd.DataFrame(
        {
            "artist_id": [f"a{i}" for i in range(5)],
            "name": list("ABCDE"),
            "cluster": ["x", "x", "y", "y", "y"],
            "listeners": [5, 1, 3, 2, 1],
        }
    )
    rows = [(u, f"a{(u + s) % 5}", s + 1) for u in range(6) for s in range(5)] if with_order else []
    discoveries = pd.DataFrame(rows, columns=["user_id", "artist_id", "step"])
    discoveries["user_id"] = discoveries["user_id"].map(lambda u: f"u{u}")
    discoveries["ts"] = pd.Timestamp("2026-01-01", tz="UTC")
    weeks = pd.Series(1, index=sorted(set(discoveries["user_id"])), dtype="int64")
    return JourneyInputs(
        discoveries[["user_id", "artist_id", "ts", "step"]],
        weeks,
        artists,
        "plays" if with_order else "none",
        "genre",
    )


def test_the_radio_never_gets_stuck_in_a_catalogue_smaller_than_the_window() -> None:
    model = fit_transition_model(_tiny_inputs(True), JourneyConfig(breadth_quantile=0.0))
    steps = [s.artist_id for s in radio(model, "a0", steps=50, window=20)]
    assert len(steps) == 50 and no_repeat_within(["a0", *steps], 4)


def test_without_a_discovery_order_the_radio_falls_back_and_evaluation_says_too_small() -> None:
    inputs = _tiny_inputs(False)
    model = fit_transition_model(inputs)
    assert not model.has_transitions and not model.rule.explorers
    steps = list(radio(model, "a0", steps=10))
    assert len(steps) == 10 and all(s.kind == "popular" and s.reason for s in steps)
    with pytest.raises(TooSmall, match="explorers"):
        evaluate_journeys(inputs)


def test_next_step_candidates_lead_one_step_outward_from_what_a_user_played(sample, model) -> None:
    _, reader, _, _ = sample
    items = reader.read("SELECT item_id, artist_id FROM golden.items")
    item_artist = dict(zip(items["item_id"], items["artist_id"], strict=True))
    users = ["u000001", "u000002", "u000610"]
    listens = reader.read(
        "SELECT user_id, item_id, plays, last_ts FROM golden.listens "
        "WHERE user_id IN (SELECT unnest(?::VARCHAR[]))",
        [users],
    )
    catalog = set(items["item_id"]) - {"t0000000"}
    rows = next_step_candidates(model, listens, item_artist, users, n=15, catalog=catalog)
    assert list(rows.columns) == CANDIDATE_COLUMNS and set(rows["user_id"]) == set(users)
    assert (rows.groupby("user_id").size() == 15).all()
    assert set(rows["source"]) == {"journey"} and set(rows["reason_code"]) == {"next_step"}
    assert "t0000000" not in set(rows["item_id"])
    for user, own in rows.groupby("user_id"):
        mine = listens[listens["user_id"] == user]
        known = {item_artist[i] for i in mine["item_id"]}
        assert not {item_artist[i] for i in own["item_id"]} & known  # new artists only
        assert set(own["reason_detail"]) <= known  # the step starts from the user's artists
        assert own["score"].is_monotonic_decreasing
    first = rows.iloc[0]
    sentence = explain_next_step(model, first["reason_detail"], item_artist[first["item_id"]])
    assert model.name(item_artist[first["item_id"]]) in sentence or "corner" in sentence
    nobody = next_step_candidates(model, listens.iloc[:0], item_artist, ["x"], n=5)
    assert nobody.empty and list(nobody.columns) == CANDIDATE_COLUMNS


# ---------------------------------------------------------------------------------- the graph
@pytest.fixture(scope="module")
def materialised(tmp_path_factory):
    """The golden tables, then transition_model and journey_evaluation for the last week, on a
    small sample through the real assets."""
    from orchestration.definitions import PARTITIONED
    from tests.pipeline import run_assets, settings_for

    data_dir = tmp_path_factory.mktemp("journeys_graph")
    settings = settings_for(data_dir, scale=0.3)
    targets = ["transition_model", "journey_evaluation"]
    selection = dg.AssetSelection.assets(*targets).upstream().required_multi_asset_neighbors()
    assert run_assets(settings, selection - PARTITIONED).success
    week = run_assets(settings, selection & PARTITIONED, partition_key=LAST_WEEK)
    assert week.success
    return settings, week


def _metadata(result, key: str) -> dict:
    events = [
        e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(key)
    ]
    assert events, key
    return {k: v.value for k, v in events[-1].materialization.metadata.items()}


def test_the_transition_model_asset_reports_its_rule_moves_and_an_example_radio(
    materialised,
) -> None:
    from tests.pipeline import run_assets

    settings, week = materialised
    meta = _metadata(week, "transition_model")
    assert meta["refit"] is True and meta["version"] == meta["artifact_version"]
    assert "new artists per active week" in meta["rule"] and meta["explorers"] > 0
    assert meta["discovery_order"] == "plays" and meta["clusters_from"] == "genre"
    assert meta["artist_transitions"] > 0 and 0 < meta["coverage"] <= 1
    assert meta["example_radio"].count("\n|") >= 11  # header rule + 10 steps
    evaluation = _metadata(week, "journey_evaluation")
    assert evaluation["evaluated"] is True
    for name in (MODEL, POPULARITY, NEIGHBOURS):
        assert f"| {name} " in evaluation["table"]
        assert 0 <= evaluation[f"hit_rate@10/{name}"] <= 1
    assert evaluation["chart"].startswith("![")
    again = run_assets(settings, "key:transition_model", partition_key=LAST_WEEK)
    repeat = _metadata(again, "transition_model")
    assert repeat["refit"] is False and repeat["version"] == meta["version"]


def test_cli_radio_prints_50_explained_steps_and_names_unknown_artists(
    materialised, monkeypatch, capsys, tmp_path
) -> None:
    from orchestration.cli import main

    settings, _ = materialised
    monkeypatch.setenv("CRATEDIGGER_DATA_DIR", str(settings.data_dir))
    assert main(["radio", "a00003", "--steps", "50"]) == 0
    out = capsys.readouterr().out
    steps = printed_steps(out)
    assert out.startswith(f"week {LAST_WEEK}: explorers") and len(steps) == 50
    assert [s[0] for s in steps] == list(range(1, 51)) and all(s[1] and s[3] for s in steps)
    assert no_repeat_within(["a00003"] + [s[2] for s in steps], 20)
    assert main(["radio", "a00003", "--week", "2026-11-18", "--steps", "3"]) == 0
    capsys.readouterr()
    assert main(["radio", "nobody"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("cratedigger radio: unknown artist 'nobody' (try e.g. ")
    assert "Traceback" not in error
    assert main(["radio", "a00003", "--week", "2020-01-06"]) == 1
    assert "weeks stored: 2026-11-16" in capsys.readouterr().err
    monkeypatch.setenv("CRATEDIGGER_DATA_DIR", str(tmp_path))
    assert main(["radio", "a00003"]) == 1
    assert "materialise the transition_model asset" in capsys.readouterr().err


# ---------------------------------------------------------------------------------- HetRec
@pytest.fixture(scope="module")
def hetrec(hetrec_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("journeys_hetrec")
    reader = golden_warehouse(HetrecSource(hetrec_dir).read(), folder / "warehouse.duckdb")
    inputs = read_journey_inputs(reader)
    colistening = reader.read("SELECT DISTINCT user_id, item_id AS artist_id FROM golden.listens")
    return folder, inputs, colistening


@pytest.mark.slow
def test_hetrec_tag_dates_give_the_order_and_the_model_is_evaluated(hetrec) -> None:
    _, inputs, colistening = hetrec
    assert inputs.basis == "tags" and inputs.cluster_basis == "top tag"
    # tag dates are days (nearly all the 1st of a month): many discoveries share a step
    steps = inputs.discoveries.groupby(["user_id", "step"]).size()
    assert steps.max() > 10
    result = evaluate_journeys(inputs, colistening=colistening)
    table = result.table
    print("\nHetRec, next new artist of held-out explorers:\n" + result.markdown())
    assert set(table.index) == {MODEL, CLUSTERS_ONLY, POPULARITY, NEIGHBOURS}
    assert table["predictions"].iloc[0] > 200 and result.test_explorers > 10
    assert table["hit_rate@10"].between(0, 1).all()
    assert table.loc[MODEL, "hit_rate@10"] > table.loc[POPULARITY, "hit_rate@10"]


@pytest.mark.slow
def test_hetrec_cli_radio_prints_50_steps_with_reasons(hetrec, monkeypatch, capsys) -> None:
    from artifacts import ArtifactStore
    from orchestration.cli import main

    folder, inputs, _ = hetrec
    model = fit_transition_model(inputs)
    ArtifactStore(str(folder / "artifacts")).save(["transition_model"], LAST_WEEK, model)
    monkeypatch.setenv("CRATEDIGGER_DATA_DIR", str(folder))
    assert main(["radio", "289", "--steps", "50"]) == 0  # Britney Spears
    out = capsys.readouterr().out
    print(out)
    steps = printed_steps(out)
    assert [s[0] for s in steps] == list(range(1, 51)) and all(s[1] and s[3] for s in steps)
    assert no_repeat_within(["289"] + [s[2] for s in steps], 20)
    assert main(["radio", "no-such-artist"]) == 1
    assert "unknown artist 'no-such-artist' (try e.g." in capsys.readouterr().err
