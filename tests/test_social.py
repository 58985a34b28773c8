"""Friends' listening and own tag vocabulary as candidate sources (recommend.social)."""

from __future__ import annotations

import pandas as pd

from recommend.candidates import CANDIDATE_COLUMNS, explain
from recommend.social import SocialGraph, SocialSources

HISTORY = pd.DataFrame(
    [
        ("u1", "a", 10),
        ("u1", "b", 2),
        ("f1", "a", 5),
        ("f1", "c", 50),
        ("f1", "d", 1),
        ("f2", "c", 3),
        ("f2", "e", 30),
        ("x", "z", 99),
    ],
    columns=["user_id", "item_id", "plays"],
)
ITEMS = {i: i for i in "abcdez"}
LISTENERS = HISTORY.groupby("item_id")["user_id"].nunique()
FRIENDS = pd.DataFrame({"user_id": ["u1", "u1", "x"], "friend_id": ["f1", "f2", "u1"]})
TAGGED = pd.DataFrame(
    [
        ("u1", "a", "jazz"),
        ("u1", "b", "jazz"),
        ("u1", "c", "punk"),  # c is not in u1's history: not in the vocabulary
        ("f1", "c", "jazz"),
        ("f1", "d", "metal"),
        ("f2", "e", "jazz"),
        ("f2", "e", "swing"),
    ],
    columns=["user_id", "artist_id", "tag"],
)


def _sources(graph: SocialGraph) -> SocialSources:
    def history_of(users):
        return HISTORY[HISTORY["user_id"].isin(set(users))]

    return SocialSources.of_graph(graph, history_of, ITEMS, LISTENERS)


def test_friends_candidates_are_what_friends_play_never_what_the_user_played() -> None:
    graph = SocialGraph(FRIENDS, TAGGED.iloc[:0])
    found = _sources(graph).candidates(HISTORY[HISTORY["user_id"] == "u1"], ["u1"], n=3)
    assert list(found.columns) == CANDIDATE_COLUMNS
    assert set(found["user_id"]) == {"u1"} and set(found["source"]) == {"friends"}
    first = found.iloc[0]
    assert first["item_id"] == "c"  # played by both friends, most by f1
    assert explain(first["reason_code"], first["reason_detail"]) == "2 of your friends play this"
    assert not {"a", "b"} & set(found["item_id"]) and "z" not in set(found["item_id"])
    assert len(found) == 3


def test_own_tags_follow_the_users_vocabulary_without_held_out_pairs() -> None:
    graph = SocialGraph(FRIENDS.iloc[:0], TAGGED)
    found = _sources(graph).candidates(HISTORY, ["u1"], n=10)
    assert set(found["source"]) == {"own_tags"} and set(found["item_id"]) == {"c", "e"}
    assert explain("your_tags", found["reason_detail"].iloc[0]) == "you tag music like this: 'jazz'"
    # both assignments on e are a held-out pair's: e has no tag profile left
    held = pd.DataFrame({"user_id": ["f2"], "item_id": ["e"]})
    hidden = _sources(graph.without(held, ITEMS)).candidates(HISTORY, ["u1"], n=10)
    assert set(hidden["item_id"]) == {"c"}
