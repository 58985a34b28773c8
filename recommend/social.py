"""Candidate sources from the social and tagging side tables: friends' listening and the user's
own tag vocabulary (HetRec's ``user_friends`` and ``user_taggedartists``; golden ``friends`` and
``tag_assignments``).

They are measured on validation splits carved from train before they may join the served blend
(``benchmarks/bench_social_sources.py``, ``bench_results/social_sources.md``); on HetRec they
do not earn their place there, so the weekly assets do not build them.

Both return :data:`recommend.candidates.CANDIDATE_COLUMNS`, at most ``n`` per user, never an item
the user played:

- :func:`friends_candidates`: ``score(u, i)`` = the sum over ``u``'s friends of ``i``'s share of
  the friend's listening (``log1p(plays)`` over the friend's sum of it);
- :func:`own_tag_candidates`: the user's vocabulary (their tag assignments on artists they
  played, as shares) against each artist's tag profile (TF-IDF of ``log1p`` tag counts over
  every assignment except held-out ``(user, artist)`` pairs, unit rows), damped towards
  artists nobody listens to (``x log1p(listeners)``).

Example usage::

    friends = friends_candidates(history, golden_friends, users, n=100)
    tags = own_tag_candidates(history, tag_assignments, users, n=100, held_out=validation)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from recommend.candidates import CANDIDATE_COLUMNS, played_items


def _top(scores: pd.DataFrame, history: pd.DataFrame, n: int, source: str, reason: str):
    """The ``n`` best unplayed items per user of ``user_id, item_id, score``."""
    played = played_items(history)
    pairs = zip(scores["user_id"], scores["item_id"], strict=True)
    unplayed = [i not in played.get(u, ()) for u, i in pairs]
    scores = scores[np.asarray(unplayed, dtype=bool)]
    scores = scores.sort_values(["user_id", "score", "item_id"], ascending=[True, False, True])
    top = scores.groupby("user_id", sort=False).head(n)
    return top.assign(source=source, reason_code=reason, reason_detail="")[CANDIDATE_COLUMNS]


def _ids(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    return frame.astype({c: str for c in columns})


def friends_candidates(
    history: pd.DataFrame, friends: pd.DataFrame, users: Sequence[str], n: int = 100
) -> pd.DataFrame:
    """What ``users``' friends listen to (``history``: everyone's ``user_id, item_id, plays``;
    ``friends``: ``user_id, friend_id``)."""
    plays = _ids(history, ["user_id", "item_id"])
    weight = np.log1p(plays["plays"].to_numpy(dtype=float))
    share = plays.assign(
        share=weight / plays.assign(w=weight).groupby("user_id")["w"].transform("sum")
    )
    edges = _ids(friends, ["user_id", "friend_id"])
    edges = edges[edges["user_id"].isin({str(u) for u in users})]
    joined = edges.merge(
        share[["user_id", "item_id", "share"]].rename(columns={"user_id": "friend_id"}),
        on="friend_id",
    )
    scores = joined.groupby(["user_id", "item_id"], as_index=False)["share"].sum()
    scores = scores.rename(columns={"share": "score"})
    return _top(
        scores, plays[plays["user_id"].isin(set(edges["user_id"]))], n, "friends", "friends_play"
    )


def own_tag_candidates(
    history: pd.DataFrame,
    tag_assignments: pd.DataFrame,
    users: Sequence[str],
    n: int = 100,
    held_out: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Artists described the way each user describes the music they play (``history``:
    ``user_id, item_id, plays`` with items = artists; ``tag_assignments``: ``user_id,
    artist_id, tag_id``; ``held_out``: ``user_id, item_id`` pairs whose assignments are left
    out of the artists' profiles, e.g. a validation or test split)."""
    plays = _ids(history, ["user_id", "item_id"])
    tagged = _ids(tag_assignments, ["user_id", "artist_id", "tag_id"])
    tagged = tagged.rename(columns={"artist_id": "item_id"})
    if held_out is not None and not held_out.empty:
        hidden = pd.MultiIndex.from_frame(
            _ids(held_out, ["user_id", "item_id"])[["user_id", "item_id"]]
        )
        tagged = tagged[~pd.MultiIndex.from_frame(tagged[["user_id", "item_id"]]).isin(hidden)]
    wanted = {str(u) for u in users}
    own = tagged[tagged["user_id"].isin(wanted)].merge(
        plays[["user_id", "item_id"]], on=["user_id", "item_id"]
    )
    vocabulary = own.groupby(["user_id", "tag_id"]).size().rename("weight").reset_index()
    vocabulary["weight"] /= vocabulary.groupby("user_id")["weight"].transform("sum")
    profile = tagged.groupby(["item_id", "tag_id"]).size().rename("count").reset_index()
    artists = profile["item_id"].nunique()
    idf = np.log(artists / profile.groupby("tag_id")["item_id"].transform("nunique"))
    profile["value"] = np.log1p(profile["count"]) * idf
    norm = np.sqrt((profile["value"] ** 2).groupby(profile["item_id"]).transform("sum"))
    profile["value"] = profile["value"] / norm.replace(0.0, 1.0)
    joined = vocabulary.merge(profile[["item_id", "tag_id", "value"]], on="tag_id")
    joined["score"] = joined["weight"] * joined["value"]
    scores = joined.groupby(["user_id", "item_id"], as_index=False)["score"].sum()
    listeners = plays.groupby("item_id")["user_id"].nunique()
    scores["score"] *= np.log1p(scores["item_id"].map(listeners).fillna(0.0).to_numpy())
    scores = scores[scores["score"] > 0]
    return _top(scores, plays[plays["user_id"].isin(wanted)], n, "own_tags", "your_tags")
