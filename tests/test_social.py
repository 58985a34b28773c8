"""Friends' listening and own tag vocabulary as candidate sources (recommend.social)."""

from __future__ import annotations

import pandas as pd

from recommend.candidates import CANDIDATE_COLUMNS
from recommend.social import friends_candidates, own_tag_candidates

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


def test_friends_candidates_are_what_friends_play_never_what_the_user_played() -> None:
    friends = pd.DataFrame({"user_id": ["u1", "u1", "x"], "friend_id": ["f1", "f2", "u1"]})
    found = friends_candidates(HISTORY, friends, ["u1"], n=3)
    assert list(found.columns) == CANDIDATE_COLUMNS
    assert set(found["user_id"]) == {"u1"} and set(found["source"]) == {"friends"}
    assert found["item_id"].tolist()[0] == "c"  # played by both friends, most by f1
    assert not {"a", "b"} & set(found["item_id"]) and "z" not in set(found["item_id"])
    assert len(found) == 3


def test_own_tags_follow_the_users_vocabulary_without_held_out_pairs() -> None:
    tagged = pd.DataFrame(
        [
            ("u1", "a", "jazz"),
            ("u1", "b", "jazz"),
            ("u1", "c", "punk"),  # c is not in u1's history: not in the vocabulary
            ("f1", "c", "jazz"),
            ("f1", "d", "metal"),
            ("f2", "e", "jazz"),
            ("f2", "e", "swing"),
        ],
        columns=["user_id", "artist_id", "tag_id"],
    )
    found = own_tag_candidates(HISTORY, tagged, ["u1"], n=10)
    assert set(found["source"]) == {"own_tags"} and "d" not in set(found["item_id"])
    assert set(found["item_id"]) == {"c", "e"}
    # the only jazz assignment on e is held out: e loses its jazz profile
    held = pd.DataFrame({"user_id": ["f2"], "item_id": ["e"]})
    hidden = own_tag_candidates(HISTORY, tagged, ["u1"], n=10, held_out=held)
    assert set(hidden["item_id"]) == {"c"}
