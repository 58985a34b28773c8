"""Candidate sources from the social and tagging tables: friends' listening and the user's own
tag vocabulary (golden ``friends`` and ``tag_assignments``; HetRec's ``user_friends`` and
``user_taggedartists``).

- ``friends``: ``score(u, i)`` = the sum over ``u``'s friends of ``i``'s share of the friend's
  listening (``log1p(plays)`` over the friend's sum of it); reason ``friends_play`` with how many
  friends play it.
- ``own_tags``: the user's vocabulary (their tag assignments on artists they played, as shares)
  against each artist's tag profile (TF-IDF of ``log1p`` tag counts over every assignment, unit
  rows), damped towards artists nobody listens to (``x log1p(listeners)``); each item scores as
  its artist; reason ``your_tags`` with the user's tags the artist shares most.

Both are sources like any other: weighed into the blend on the validation split (weight 0 when
they do not earn their place), never an item the user played, ``n`` per user. A replay leaves
out the tag assignments on held-out pairs (:meth:`SocialGraph.without`). Per batch of users only
their friends' histories are read (``history_of``), so memory follows the batch.

Example usage::

    graph = SocialGraph(friends, tag_assignments)
    sources = SocialSources.of_graph(graph, history_of, item_artist, listeners)
    sources.candidates(batch_history, batch_users, n=100)   # CANDIDATE_COLUMNS
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recommend.candidates import CANDIDATE_COLUMNS, played_items

SOCIAL_SOURCES = ("friends", "own_tags")
TAG_EVIDENCE = 2


def _ids(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    return frame.astype({c: str for c in columns})


@dataclass(frozen=True)
class SocialGraph:
    """The week's friendships (``user_id, friend_id``) and tag assignments (``user_id,
    artist_id, tag``)."""

    friends: pd.DataFrame
    tag_assignments: pd.DataFrame

    def __post_init__(self) -> None:
        object.__setattr__(self, "friends", _ids(self.friends, ["user_id", "friend_id"]))
        object.__setattr__(
            self, "tag_assignments", _ids(self.tag_assignments, ["user_id", "artist_id", "tag"])
        )

    @property
    def empty(self) -> bool:
        return self.friends.empty and self.tag_assignments.empty

    def without(self, held_out: pd.DataFrame, item_artist: Mapping[str, str]) -> SocialGraph:
        """Without the tag assignments on held-out ``user_id, item_id`` pairs (their artists)."""
        pairs = _ids(held_out, ["user_id", "item_id"])
        artists = pairs["item_id"].map(item_artist).fillna(pairs["item_id"])
        hidden = pd.MultiIndex.from_arrays([pairs["user_id"], artists])
        tagged = self.tag_assignments
        keep = ~pd.MultiIndex.from_frame(tagged[["user_id", "artist_id"]]).isin(hidden)
        return SocialGraph(self.friends, tagged[keep])


class SocialSources:
    """The ``friends`` and ``own_tags`` sources of one week, served batch by batch: only the
    batch's friendships, tag assignments and friends' plays are read.

    Parameters
    ----------
    friends_of, tags_of, history_of
        Given user ids: their friendships (``user_id, friend_id``), their tag assignments
        (``user_id, artist_id, tag``) and their plays before the week (``user_id, item_id,
        plays``).
    tag_counts
        ``artist_id, tag, count`` over every assignment (grows with artists and tags, not
        users): the artists' tag profiles.
    item_artist
        ``{item_id: artist_id}`` of the catalog.
    listeners
        Listeners per item of the whole history (``WeekStatistics.listeners``).
    """

    def __init__(
        self,
        *,
        friends_of: Callable[[list[str]], pd.DataFrame],
        tags_of: Callable[[list[str]], pd.DataFrame],
        history_of: Callable[[list[str]], pd.DataFrame],
        tag_counts: pd.DataFrame,
        item_artist: Mapping[str, str],
        listeners: pd.Series,
    ) -> None:
        self.friends_of, self.tags_of, self.history_of = friends_of, tags_of, history_of
        self.item_artist = {str(k): str(v) for k, v in item_artist.items()}
        items = pd.Series(list(self.item_artist), index=list(self.item_artist.values()))
        self.artist_items = items.groupby(level=0).agg(list)
        artist_listeners = pd.Series(listeners.to_numpy(dtype=float), index=listeners.index)
        artist_listeners = artist_listeners.groupby(
            artist_listeners.index.astype(str).map(self.item_artist)
        ).max()
        self.profiles = tag_profiles(tag_counts)
        self.damping = np.log1p(artist_listeners)

    @classmethod
    def of_graph(
        cls,
        graph: SocialGraph,
        history_of: Callable[[list[str]], pd.DataFrame],
        item_artist: Mapping[str, str],
        listeners: pd.Series,
    ) -> SocialSources:
        """The sources over an in-memory graph (replays and validation splits)."""
        friends, tagged = graph.friends, graph.tag_assignments
        return cls(
            friends_of=lambda users: friends[friends["user_id"].isin(set(users))],
            tags_of=lambda users: tagged[tagged["user_id"].isin(set(users))],
            history_of=history_of,
            tag_counts=tagged.groupby(["artist_id", "tag"]).size().rename("count").reset_index(),
            item_artist=item_artist,
            listeners=listeners,
        )

    def candidates(self, listens: pd.DataFrame, users: Sequence[str], n: int) -> pd.DataFrame:
        """Both sources' candidates for ``users`` (``listens``: at least their history)."""
        users = [str(u) for u in users]
        history = _ids(listens, ["user_id", "item_id"])
        history = history[history["user_id"].isin(set(users))]
        frames = [self._friends(history, users, n), self._own_tags(history, users, n)]
        frames = [frame for frame in frames if not frame.empty]
        return pd.concat(frames, ignore_index=True) if frames else _empty()

    def _friends(self, history: pd.DataFrame, users: list[str], n: int) -> pd.DataFrame:
        edges = _ids(self.friends_of(users), ["user_id", "friend_id"])
        if edges.empty:
            return _empty()
        friends = _ids(self.history_of(sorted(set(edges["friend_id"]))), ["user_id", "item_id"])
        weight = np.log1p(friends["plays"].to_numpy(dtype=float))
        total = pd.Series(weight).groupby(friends["user_id"].to_numpy()).transform("sum")
        shares = friends.assign(share=weight / total.to_numpy())
        joined = edges.merge(
            shares[["user_id", "item_id", "share"]].rename(columns={"user_id": "friend_id"}),
            on="friend_id",
        )
        scores = joined.groupby(["user_id", "item_id"], as_index=False).agg(
            score=("share", "sum"), friends=("friend_id", "nunique")
        )
        scores = scores[scores["item_id"].isin(self.item_artist.keys())]
        top = _top(scores, history, n)
        return top.assign(
            source="friends",
            reason_code="friends_play",
            reason_detail=top["friends"].astype(str),
        )[CANDIDATE_COLUMNS]

    def _own_tags(self, history: pd.DataFrame, users: list[str], n: int) -> pd.DataFrame:
        tagged = _ids(self.tags_of(users), ["user_id", "artist_id", "tag"])
        if tagged.empty or self.profiles.empty:
            return _empty()
        played = history.assign(artist_id=history["item_id"].map(self.item_artist))
        own = tagged.merge(
            played[["user_id", "artist_id"]].drop_duplicates(), on=["user_id", "artist_id"]
        )
        vocabulary = own.groupby(["user_id", "tag"]).size().rename("weight").reset_index()
        vocabulary["weight"] /= vocabulary.groupby("user_id")["weight"].transform("sum")
        joined = vocabulary.merge(self.profiles, on="tag")
        joined["score"] = joined["weight"] * joined["value"]
        artists = joined.groupby(["user_id", "artist_id"], as_index=False)["score"].sum()
        artists["score"] *= artists["artist_id"].map(self.damping).fillna(0.0).to_numpy()
        artists = artists[artists["score"] > 0]
        evidence = _shared_tags(joined)
        items = artists.assign(item_id=artists["artist_id"].map(self.artist_items)).explode(
            "item_id"
        )
        items = items.dropna(subset=["item_id"])
        top = _top(items, history, n).merge(
            evidence.rename("reason_detail").reset_index(), on=["user_id", "artist_id"], how="left"
        )
        return top.assign(source="own_tags", reason_code="your_tags")[CANDIDATE_COLUMNS]


def tag_profiles(tag_counts: pd.DataFrame) -> pd.DataFrame:
    """``artist_id, tag, value`` from ``artist_id, tag, count``: TF-IDF of log tag counts,
    unit rows per artist."""
    profile = _ids(tag_counts, ["artist_id", "tag"])
    if profile.empty:
        return profile.assign(value=pd.Series(dtype=float))
    artists = profile["artist_id"].nunique()
    idf = np.log(artists / profile.groupby("tag")["artist_id"].transform("nunique"))
    profile["value"] = np.log1p(profile["count"]) * idf
    norm = np.sqrt((profile["value"] ** 2).groupby(profile["artist_id"]).transform("sum"))
    profile["value"] = profile["value"] / norm.replace(0.0, 1.0)
    return profile[profile["value"] > 0][["artist_id", "tag", "value"]]


def _shared_tags(joined: pd.DataFrame) -> pd.Series:
    """Per (user, artist): the user's tags it shares most, comma separated."""
    ordered = joined.sort_values(["user_id", "artist_id", "score"], ascending=[True, True, False])
    top = ordered.groupby(["user_id", "artist_id"]).head(TAG_EVIDENCE)
    return top.groupby(["user_id", "artist_id"])["tag"].agg(", ".join)


def _top(scores: pd.DataFrame, history: pd.DataFrame, n: int) -> pd.DataFrame:
    """The ``n`` best unplayed items per user (``user_id, item_id, score`` and any evidence)."""
    played = played_items(history)
    pairs = zip(scores["user_id"], scores["item_id"], strict=True)
    unplayed = np.asarray([i not in played.get(u, ()) for u, i in pairs], dtype=bool)
    scores = scores[unplayed].sort_values(
        ["user_id", "score", "item_id"], ascending=[True, False, True]
    )
    return scores.groupby("user_id", sort=False).head(n)


def _empty() -> pd.DataFrame:
    return pd.DataFrame(columns=CANDIDATE_COLUMNS)


def replay_sources(
    graph: SocialGraph | None,
    held_out: pd.DataFrame | None,
    history,
    item_artist: Mapping[str, str],
    listeners: pd.Series,
) -> SocialSources | None:
    """The sources of a replay or validation split: ``history`` (a
    :class:`recommend.history.PlayHistory` without the held-out rows) gives the friends'
    plays, the tag assignments on ``held_out`` pairs are left out. None without a graph."""
    if graph is None or graph.empty:
        return None
    if held_out is not None and not held_out.empty:
        graph = graph.without(held_out, item_artist)
    return SocialSources.of_graph(graph, history.rows_of, item_artist, listeners)
