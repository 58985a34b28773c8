"""Co-occurrence vectors: contexts read from a real DuckDB warehouse, skip-gram training,
coverage, exclusion of held-out rows, determinism, and the planted structure recovered."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from embeddings.cooccurrence import CooccurrenceConfig, CooccurrenceTrainer, write_corpus
from evaluation.similar_artists import similar_artist_agreement
from recommend.candidates import content_candidates, explain

CUTOFF = pd.Timestamp("2026-11-16")
GROUPS = {"a": [f"a{i}" for i in range(6)], "b": [f"b{i}" for i in range(6)]}


def _warehouse(path: Path, seed: int = 0) -> Path:
    """Users listen in sessions within one planted group; a tag names each group."""
    rng = np.random.default_rng(seed)
    events, tags = [], []
    start = pd.Timestamp("2026-10-01")
    for user in range(40):
        group = GROUPS["a" if user % 2 == 0 else "b"]
        clock = start + pd.Timedelta(hours=user)
        for _ in range(4):  # four sessions, 3 hours apart
            for artist in rng.choice(group, 4, replace=False):
                events.append((f"u{user}", f"t_{artist}", 1, clock))
                events.append((f"u{user}", f"t_{artist}", 1, clock + pd.Timedelta(minutes=3)))
                clock += pd.Timedelta(minutes=6)
            clock += pd.Timedelta(hours=3)
        for artist in rng.choice(group, 3, replace=False):
            tags.append((f"u{user}", artist, "dreamy" if group is GROUPS["a"] else "loud", start))
    events.append(("late", "t_a0", 1, CUTOFF + pd.Timedelta(days=1)))  # after the cutoff
    events.append(("late", "t_b0", 1, CUTOFF + pd.Timedelta(days=1, minutes=1)))
    file = path / "warehouse.duckdb"
    con = duckdb.connect(str(file))
    con.execute("CREATE SCHEMA golden")
    frame = pd.DataFrame(events, columns=["user_id", "item_id", "plays", "ts"])
    con.register("frame", frame)
    con.execute("CREATE TABLE golden.listen_events AS SELECT * FROM frame")
    con.execute(
        "CREATE TABLE golden.listens AS SELECT user_id, item_id, sum(plays) AS plays, "
        "min(ts) AS first_ts, max(ts) AS last_ts FROM frame GROUP BY ALL"
    )
    artists = [a for group in GROUPS.values() for a in group] + ["lonely"]
    items = pd.DataFrame({"item_id": [f"t_{a}" for a in artists], "artist_id": artists})
    con.register("items", items)
    con.execute("CREATE TABLE golden.items AS SELECT * FROM items")
    tagged = pd.DataFrame(tags, columns=["user_id", "artist_id", "tag", "ts"])
    con.register("tagged", tagged)
    con.execute("CREATE TABLE golden.tag_assignments AS SELECT * FROM tagged")
    con.close()
    return file


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    return _warehouse(tmp_path_factory.mktemp("cooc"))


def _connect(file: Path):
    @contextmanager
    def connect():
        con = duckdb.connect(str(file), read_only=True)
        try:
            yield con
        finally:
            con.close()

    return connect


def _lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()]


def test_sessions_split_at_gaps_collapse_repeats_and_stop_at_the_cutoff(warehouse, tmp_path):
    config = CooccurrenceConfig(contexts=("sessions",))
    with _connect(warehouse)() as con:
        corpus = write_corpus(con, CUTOFF, tmp_path / "c.txt", config)
    sentences = _lines(corpus.path)
    assert corpus.contexts["sessions"]["sentences"] == 40 * 4 == len(sentences)
    # each play is doubled 3 minutes apart: collapsed into one word per artist visit
    assert all(len(s) == 4 and len(set(s)) == 4 for s in sentences)
    names = corpus.artist_ids
    assert not any({names[int(w)] for w in s} >= {"a0", "b0"} for s in sentences)


def test_co_mentions_and_exclusion(warehouse, tmp_path):
    config = CooccurrenceConfig(contexts=("co_mentions", "histories"))
    exclude = pd.DataFrame({"user_id": ["u0"], "item_id": ["t_a0"]})
    with _connect(warehouse)() as con:
        full = write_corpus(con, CUTOFF, tmp_path / "full.txt", config)
        held = write_corpus(con, CUTOFF, tmp_path / "held.txt", config, exclude=exclude)
    assert full.contexts["co_mentions"]["sentences"] == 40
    assert full.contexts["histories"]["sentences"] == 40
    a0 = int(np.flatnonzero(full.artist_ids == "a0")[0])
    # u0's history loses a0; u0's tag co-mention of a0 (if any) goes too
    assert held.occurrences[a0] < full.occurrences[a0]
    assert full.digest != held.digest


def test_vectors_cover_every_artist_with_two_cooccurrences_and_recover_groups(warehouse):
    trainer = CooccurrenceTrainer(
        _connect(warehouse), CUTOFF, CooccurrenceConfig(dim=16, sample=0.0, epochs=30)
    )
    vectors = trainer.fit()
    eligible = set(
        np.asarray(vectors.ids)[vectors.occurrences >= vectors.config.min_count].tolist()
    )
    assert set(vectors.ids) == eligible == set(GROUPS["a"] + GROUPS["b"])
    assert "lonely" not in vectors.ids
    space = vectors.space()
    for group, members in GROUPS.items():
        similar = space.similar_artists_by_text(members[0], k=5)["artist_id"].tolist()
        assert set(similar) <= set(members), (group, similar)
    again = trainer.fit()
    assert again.version == vectors.version
    np.testing.assert_allclose(again.matrix, vectors.matrix)


def test_held_out_users_leave_every_context(warehouse):
    trainer = CooccurrenceTrainer(_connect(warehouse), CUTOFF, CooccurrenceConfig(dim=8))
    users = pd.DataFrame({"user_id": [f"u{i}" for i in range(0, 40, 2)]})  # every 'a' listener
    vectors = trainer.without_users(users).fit()
    assert not set(vectors.ids) & set(GROUPS["a"])


def test_cooccurrence_source_explains_with_played_alongside(warehouse):
    vectors = CooccurrenceTrainer(
        _connect(warehouse), CUTOFF, CooccurrenceConfig(dim=16, sample=0.0, epochs=30)
    ).fit()
    listens = pd.DataFrame({"user_id": ["x", "x"], "item_id": ["a0", "a1"], "plays": [3, 1]})
    assert vectors.candidate_table()[0] == vectors.ids  # every artist co-occurs 20+ times
    rare_only = replace(vectors, config=replace(vectors.config, candidate_min_count=10**6))
    assert rare_only.candidate_table() is None
    candidates = content_candidates(listens, vectors.as_table(), 3, source="cooccurrence")
    assert set(candidates["reason_code"]) == {"played_alongside"}
    assert set(candidates["reason_detail"]) <= {"a0", "a1"}
    assert set(candidates["item_id"]) <= set(GROUPS["a"]) - {"a0", "a1"}
    sentence = explain("played_alongside", "a0", {"a0": "Portishead"})
    assert sentence == "often played alongside Portishead"


def test_agreement_counts_queries_without_vectors_as_misses():
    from evaluation.similar_artists import ColisteningTruth

    truth = ColisteningTruth(pd.DataFrame({"user_id": ["u"]}), {"a": ["b"], "c": ["a"]})
    ids = ["a", "b", "z"]
    matrix = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    table = similar_artist_agreement({"space": (ids, matrix)}, truth, k=1)
    assert table.loc["space", "coverage"] == 0.5
    assert table.loc["space", "precision@1"] == 0.5
    assert table.loc["space", "precision@1_covered"] == 1.0


def test_colistening_truth_from_held_out_users(warehouse):
    from evaluation.similar_artists import colistening_truth

    with _connect(warehouse)() as con:
        truth = colistening_truth(con, CUTOFF, holdout_share=0.5, seed=1, min_listeners=2)
    held = set(truth.held_out_users["user_id"])
    assert held and held < {f"u{i}" for i in range(40)} | {"late"}
    assert truth.queries
    for query, related in truth.related.items():
        group = "a" if query.startswith("a") else "b"
        assert query not in related and set(related) <= set(GROUPS[group])
