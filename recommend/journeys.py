"""Journeys: how exploratory listeners move from artist to artist, learnt as transition
probabilities, and a radio station that follows them (Discover Weekly's exploration slots use the
same model through :func:`next_step_candidates`).

Discovery order
    A user *discovers* an artist when they first play any of its items (sources with play
    times: ``golden.listens.first_ts``) or, when the source has no play times (HetRec), when
    they first tag it (``golden.tag_assignments.ts``; HetRec dates are days, nearly always the
    1st of a month). Discoveries that share a timestamp are **unordered**: they form one
    discovery step (``step`` = dense rank of the timestamp within the user; inside a step the
    artists are sorted by id for display only). A transition goes from every artist of a step
    to every artist of the next step, weighted ``1 / size of the next step`` (each discovery
    passes on one unit), and, with ``same_step_weight``, between the artists of one step
    (co-discoveries, both directions). All of it is read with SQL in the warehouse (one row per
    user and artist: ``GROUP BY user, artist``, ``min(ts)``; active weeks counted there too):
    no event table is ever loaded into memory.

Exploratory users (the rule; thresholds are learnt from the data and returned)
    Among users with at least ``min_discoveries`` discoveries: *rate* = discoveries per active
    week (weeks with a play, or with a tag where tags give the order) and *breadth* = entropy
    (bits) of the clusters of the discovered artists. A user is an explorer when the rate is at
    least its ``rate_quantile`` quantile and the breadth at least its ``breadth_quantile``
    quantile over those users (:class:`ExplorerRule`).

Clusters (the backoff where artist data is thin)
    The artist's genre when the source has genres (the sample); else its most used tag among
    the ``max_clusters`` tags that tag the most artists (HetRec), before the cutoff; artists
    with neither are in cluster ``"other"``.

Probabilities
    ``P(b | a) = (c(a, b) + backoff * prior(b | cluster(a))) / (c(a) + backoff)`` with ``c``
    the weighted transition counts of the explorers, keeping only the moves at least
    ``min_explorers`` distinct explorers (and ``min_explorer_share`` of them) made (an
    optional absolute ``discount`` moves more mass to the prior), and ``prior(b | C) =
    T(C, cluster(b)) * within(b)``: the explorers' cluster -> cluster transitions (all their
    moves, smoothed towards the overall share of each cluster with ``cluster_smoothing``) times
    ``b``'s share of its cluster's listeners (add-one). Every artist gets a probability, so a
    radio never gets stuck. The defaults were chosen on four validation splits (seeds 1, 2, 3,
    7) of HetRec and of the sample; ``evaluation.journeys`` reports the figures (seed 42).

Example usage::

    inputs = read_journey_inputs(warehouse, cutoff=pd.Timestamp("2026-11-16", tz="UTC"))
    model = fit_transition_model(inputs)
    print(model.rule.describe())
    for candidate in model.next_artists("a00012", k=5):
        print(candidate.name, round(candidate.probability, 3), candidate.reason)
    for step in radio(model, "a00012", steps=50):
        print(step.position, step.name, "-", step.reason)
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import pandas as pd
from scipy import sparse

from recommend.errors import TooSmall

logger = logging.getLogger(__name__)

DISCOVERY_COLUMNS = ["user_id", "artist_id", "ts", "step"]
OTHER_CLUSTER = "other"
JOURNEY_SOURCE = "journey"
NEXT_STEP_CODE = "next_step"
TRANSITION_MODEL_KEY = ("transition_model",)


class Reader(Protocol):
    def read(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame: ...


class UnknownArtist(LookupError):
    """An artist id the model does not know; the message suggests known ones."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown artist"


class NoTransitionModel(LookupError):
    """No ``transition_model`` artifact is stored (for the week asked); says what to run."""


# ---------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class JourneyConfig:
    """How explorers are found and how their transitions become probabilities.

    Parameters
    ----------
    min_discoveries
        Users with fewer discoveries are not judged (neither explorers nor in the quantiles).
    rate_quantile, breadth_quantile
        The explorer thresholds: quantiles of new artists per active week and of the entropy
        of the discovered artists' clusters.
    same_step_weight
        Weight of co-discoveries (same timestamp) relative to a step-to-step transition.
    min_explorers, min_explorer_share
        Artist -> artist moves made by fewer distinct explorers than ``min_explorers`` or
        than ``min_explorer_share`` of all explorers (rounded up) stay out of the artist-level
        counts (one explorer's idiosyncrasy is not a journey; the more explorers, the more
        chance coincidences); they still count between clusters.
    discount
        Absolute discount taken off every artist -> artist count and handed to the cluster
        backoff (a move seen once, or inside a large step of unordered discoveries, weighs
        little; a move many explorers made keeps nearly all of its count).
    backoff
        Pseudo-count of the cluster prior: an artist with ``backoff`` transitions gets half of
        its probability from its own transitions and half from its cluster's.
    cluster_smoothing
        Pseudo-count pulling each cluster's transitions towards the overall cluster shares.
    max_clusters
        Tags that may be clusters when the source has no genres.
    history_steps, history_decay
        What a prediction looks back at: the last ``history_steps`` discovery steps (or
        recently played artists), each older one weighted ``history_decay`` times the next.
    radio_candidates
        The radio draws each step among this many most probable next artists.
    """

    min_discoveries: int = 5
    rate_quantile: float = 0.75
    breadth_quantile: float = 0.9
    same_step_weight: float = 1.0
    min_explorers: int = 2
    min_explorer_share: float = 0.04
    discount: float = 0.0
    backoff: float = 5.0
    cluster_smoothing: float = 1.0
    max_clusters: int = 50
    history_steps: int = 3
    history_decay: float = 0.5
    radio_candidates: int = 8

    def __post_init__(self) -> None:
        for name in ("rate_quantile", "breadth_quantile", "history_decay", "min_explorer_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if (
            self.min_discoveries < 2
            or self.history_steps < 1
            or self.radio_candidates < 1
            or self.min_explorers < 1
        ):
            raise ValueError(
                "min_discoveries >= 2, history_steps >= 1, radio_candidates >= 1 and "
                "min_explorers >= 1 are required"
            )
        if self.backoff <= 0 or self.cluster_smoothing <= 0:
            raise ValueError("backoff and cluster_smoothing must be > 0")
        if self.same_step_weight < 0 or self.discount < 0:
            raise ValueError("same_step_weight and discount must be >= 0")
        if self.max_clusters < 1:
            raise ValueError(f"max_clusters must be >= 1, got {self.max_clusters}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class JourneyInputs:
    """What the model is learnt from, read point-in-time from the warehouse.

    ``discoveries``: ``user_id, artist_id, ts, step`` sorted by user, step, artist;
    ``active_weeks``: user -> weeks with activity; ``artists``: ``artist_id, name, cluster,
    listeners`` of every golden artist (listeners before the cutoff); ``basis``: ``plays``,
    ``tags`` or ``none`` (no timestamps: no order); ``cluster_basis``: ``genre``, ``top tag``
    or ``none``.
    """

    discoveries: pd.DataFrame
    active_weeks: pd.Series
    artists: pd.DataFrame
    basis: str
    cluster_basis: str

    def fingerprint(self) -> str:
        """A hash of everything the model is fitted on."""
        digest = hashlib.sha256()
        for frame in (self.discoveries, self.artists, self.active_weeks.reset_index()):
            digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
        digest.update(f"{self.basis}|{self.cluster_basis}".encode())
        return digest.hexdigest()


def _table_exists(reader: Reader, table: str) -> bool:
    found = reader.read(
        "SELECT count(*) AS n FROM information_schema.tables "
        "WHERE table_schema = 'golden' AND table_name = ?",
        [table],
    )
    return bool(found["n"].iloc[0])


def _before(column: str, cutoff: pd.Timestamp | None) -> tuple[str, list[Any]]:
    if cutoff is None:
        return f"{column} IS NOT NULL", []
    return f"{column} IS NOT NULL AND {column} < ?", [pd.Timestamp(cutoff).to_pydatetime()]


def discovery_basis(reader: Reader) -> str:
    """``plays`` when listens have times, else ``tags`` when tag assignments have dates, else
    ``none``."""
    plays = int(reader.read("SELECT count(first_ts) AS n FROM golden.listens")["n"].iloc[0])
    tags = 0
    if _table_exists(reader, "tag_assignments"):  # counted even when plays decide: the asset
        # declares both tables and reads both (lineage is checked)
        tags = int(reader.read("SELECT count(ts) AS n FROM golden.tag_assignments")["n"].iloc[0])
    if plays:
        return "plays"
    return "tags" if tags else "none"


def read_discoveries(
    reader: Reader, cutoff: pd.Timestamp | None = None, basis: str | None = None
) -> tuple[pd.DataFrame, pd.Series, str]:
    """Each user's discoveries before ``cutoff`` in order, and their active weeks (SQL).

    Returns
    -------
    (DataFrame, Series, str)
        ``user_id, artist_id, ts, step`` (one row per user and artist; ties share a step),
        ``user_id -> active weeks`` and the basis (``plays``, ``tags`` or ``none``).
    """
    basis = basis or discovery_basis(reader)
    if basis == "none":
        empty = pd.DataFrame({c: pd.Series(dtype=object) for c in DISCOVERY_COLUMNS})
        return empty.astype({"step": "int64"}), pd.Series(dtype="int64", name="weeks"), basis
    if basis == "plays":
        where, params = _before("l.first_ts", cutoff)
        firsts = (
            "SELECT l.user_id, i.artist_id, min(l.first_ts) AS ts FROM golden.listens l "
            f"JOIN golden.items i USING (item_id) WHERE {where} GROUP BY 1, 2"
        )
        week_where, week_params = _before("ts", cutoff)
        weeks_sql = (
            "SELECT user_id, count(DISTINCT date_trunc('week', ts)) AS weeks "
            f"FROM golden.listen_events WHERE {week_where} GROUP BY 1"
        )
    else:
        where, params = _before("t.ts", cutoff)
        firsts = (
            "SELECT t.user_id, t.artist_id, min(t.ts) AS ts FROM golden.tag_assignments t "
            f"JOIN golden.artists a USING (artist_id) WHERE {where} AND t.user_id IS NOT NULL "
            "GROUP BY 1, 2"
        )
        week_where, week_params = _before("ts", cutoff)
        weeks_sql = (
            "SELECT user_id, count(DISTINCT date_trunc('week', ts)) AS weeks "
            f"FROM golden.tag_assignments WHERE {week_where} AND user_id IS NOT NULL GROUP BY 1"
        )
    discoveries = reader.read(
        "SELECT user_id, artist_id, ts, "
        "CAST(dense_rank() OVER (PARTITION BY user_id ORDER BY ts) AS BIGINT) AS step "
        f"FROM ({firsts}) ORDER BY user_id, step, artist_id",
        params,
    )
    weeks = reader.read(f"{weeks_sql} ORDER BY 1", week_params)
    active = weeks.set_index("user_id")["weeks"].astype("int64")
    return discoveries[DISCOVERY_COLUMNS], active, basis


def read_artists(
    reader: Reader, cutoff: pd.Timestamp | None = None, max_clusters: int = 50
) -> tuple[pd.DataFrame, str]:
    """Every golden artist with its name, cluster and listeners before ``cutoff`` (SQL).

    Returns
    -------
    (DataFrame, str)
        ``artist_id, name, cluster, listeners`` sorted by id, and the cluster basis.
    """
    where, params = _before("l.first_ts", cutoff)
    listened = f"({where} OR l.first_ts IS NULL)" if cutoff is not None else "TRUE"
    artists = reader.read(
        "SELECT a.artist_id, coalesce(a.name, a.artist_id) AS name, a.genre, "
        "coalesce(n.listeners, 0) AS listeners FROM golden.artists a LEFT JOIN ("
        "SELECT i.artist_id, count(DISTINCT l.user_id) AS listeners FROM golden.listens l "
        f"JOIN golden.items i USING (item_id) WHERE {listened} GROUP BY 1"
        ") n USING (artist_id) ORDER BY a.artist_id",
        params,
    )
    genres = artists["genre"].notna() & (artists["genre"].astype(str).str.len() > 0)
    if len(artists) and genres.mean() >= 0.5:
        artists["cluster"] = artists["genre"].where(genres, OTHER_CLUSTER).astype(str)
        basis = "genre"
    else:
        top = _top_tags(reader, cutoff, max_clusters)
        artists["cluster"] = artists["artist_id"].map(top).fillna(OTHER_CLUSTER).astype(str)
        basis = "top tag" if len(top) else "none"
    artists["listeners"] = artists["listeners"].astype("int64")
    return artists[["artist_id", "name", "cluster", "listeners"]], basis


def _top_tags(reader: Reader, cutoff: pd.Timestamp | None, max_clusters: int) -> pd.Series:
    """``artist_id -> its most used tag`` among the ``max_clusters`` tags on most artists."""
    if not _table_exists(reader, "tag_assignments"):
        return pd.Series(dtype=object)
    where, params = _before("ts", cutoff) if cutoff is not None else ("TRUE", [])
    top = reader.read(
        "WITH counts AS (SELECT artist_id, lower(trim(tag)) AS tag, count(*) AS n "
        f"FROM golden.tag_assignments WHERE {where} AND tag IS NOT NULL "
        "AND trim(tag) <> '' GROUP BY 1, 2), "
        "top_tags AS (SELECT tag FROM counts GROUP BY tag ORDER BY count(*) DESC, tag LIMIT ?), "
        "ranked AS (SELECT artist_id, tag, row_number() OVER (PARTITION BY artist_id "
        "ORDER BY n DESC, tag) AS r FROM counts JOIN top_tags USING (tag)) "
        "SELECT artist_id, tag FROM ranked WHERE r = 1 ORDER BY artist_id",
        [*params, int(max_clusters)],
    )
    return top.set_index("artist_id")["tag"]


def read_journey_inputs(
    reader: Reader, cutoff: pd.Timestamp | None = None, max_clusters: int = 50
) -> JourneyInputs:
    """Discoveries, active weeks and artists (with clusters) before ``cutoff``, read in SQL.

    Example usage::

        inputs = read_journey_inputs(warehouse, pd.Timestamp("2026-11-16", tz="UTC"))
    """
    discoveries, active, basis = read_discoveries(reader, cutoff)
    artists, cluster_basis = read_artists(reader, cutoff, max_clusters)
    return JourneyInputs(discoveries, active, artists, basis, cluster_basis)


# ---------------------------------------------------------------------------------- explorers
@dataclass(frozen=True)
class ExplorerRule:
    """Who counts as an explorer, with the thresholds the data gave (see the module
    docstring)."""

    min_discoveries: int
    rate_quantile: float
    breadth_quantile: float
    rate_threshold: float
    breadth_threshold: float
    judged_users: int
    explorers: tuple[str, ...]

    def describe(self) -> str:
        """The rule in words, e.g. for asset metadata."""
        if not self.judged_users:
            return f"no user has {self.min_discoveries}+ ordered discoveries: no explorers"
        return (
            f"explorers: users with >= {self.min_discoveries} discoveries, >= "
            f"{self.rate_threshold:.2f} new artists per active week (the "
            f"{self.rate_quantile:.0%} quantile) and a cluster entropy >= "
            f"{self.breadth_threshold:.2f} bits (the {self.breadth_quantile:.0%} quantile): "
            f"{len(self.explorers)} of {self.judged_users} users"
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["explorers"] = len(self.explorers)
        return out


def user_exploration(inputs: JourneyInputs) -> pd.DataFrame:
    """Per user: ``discoveries``, ``active_weeks``, ``rate`` (new artists per active week),
    ``breadth`` (entropy in bits of the discovered artists' clusters) and ``clusters``."""
    frame = inputs.discoveries
    if frame.empty:
        return pd.DataFrame(
            columns=["discoveries", "active_weeks", "rate", "breadth", "clusters"],
            index=pd.Index([], name="user_id"),
        )
    cluster = frame["artist_id"].map(inputs.artists.set_index("artist_id")["cluster"])
    per_cluster = (
        frame.assign(cluster=cluster.fillna(OTHER_CLUSTER)).groupby(["user_id", "cluster"]).size()
    )
    share = per_cluster / per_cluster.groupby(level=0).transform("sum")
    breadth = (-(share * np.log2(share))).groupby(level=0).sum()
    stats = pd.DataFrame(
        {
            "discoveries": frame.groupby("user_id").size(),
            "breadth": breadth,
            "clusters": per_cluster.groupby(level=0).size(),
        }
    )
    weeks = inputs.active_weeks.reindex(stats.index).fillna(1).clip(lower=1)
    stats["active_weeks"] = weeks.astype("int64")
    stats["rate"] = stats["discoveries"] / stats["active_weeks"]
    stats.index.name = "user_id"
    return stats[["discoveries", "active_weeks", "rate", "breadth", "clusters"]]


def explorer_rule(stats: pd.DataFrame, config: JourneyConfig) -> ExplorerRule:
    """The explorers among ``stats`` (:func:`user_exploration`) and the thresholds used."""
    judged = stats[stats["discoveries"] >= config.min_discoveries]
    if judged.empty:
        return ExplorerRule(
            config.min_discoveries, config.rate_quantile, config.breadth_quantile, 0.0, 0.0, 0, ()
        )
    rate = float(judged["rate"].quantile(config.rate_quantile))
    breadth = float(judged["breadth"].quantile(config.breadth_quantile))
    chosen = judged[(judged["rate"] >= rate) & (judged["breadth"] >= breadth)]
    return ExplorerRule(
        config.min_discoveries,
        config.rate_quantile,
        config.breadth_quantile,
        rate,
        breadth,
        len(judged),
        tuple(sorted(map(str, chosen.index))),
    )


# ---------------------------------------------------------------------------------- the model
@dataclass(frozen=True)
class NextArtist:
    """One candidate next artist with its probability and why."""

    artist_id: str
    name: str
    probability: float
    kind: str  # "transition" (explorers made this move), "cluster" or "popular" (backoff)
    reason: str
    explorers: int  # explorers who made the move (artist -> artist, or cluster -> cluster)
    from_artist: str


@dataclass
class TransitionModel:
    """Artist -> artist transition probabilities learnt from explorers' discovery order,
    backed off to cluster -> cluster transitions (see the module docstring).

    Build it with :func:`fit_transition_model`; ``version`` hashes the inputs and the config
    (the artifact store keeps one copy per version).
    """

    version: str
    config: JourneyConfig
    artist_ids: np.ndarray
    names: np.ndarray
    cluster_names: list[str]
    cluster_of: np.ndarray
    listeners: np.ndarray
    discovered: np.ndarray
    counts: sparse.csr_matrix
    totals: np.ndarray
    backed_off: np.ndarray
    explorer_counts: sparse.csr_matrix
    cluster_transitions: np.ndarray
    cluster_explorers: np.ndarray
    within: np.ndarray
    rule: ExplorerRule
    basis: str
    cluster_basis: str
    stats: dict[str, Any] = field(default_factory=dict)
    _index: dict[str, int] = field(default_factory=dict, repr=False)
    _id_rank: np.ndarray | None = field(default=None, repr=False)

    # ------------------------------------------------------------------ lookups
    @property
    def index(self) -> dict[str, int]:
        """``{artist_id: row}`` (built once)."""
        if not self._index:
            self._index = {str(a): i for i, a in enumerate(self.artist_ids)}
        return self._index

    @property
    def id_rank(self) -> np.ndarray:
        """Each artist's rank in id order: the tie-break of every ranking (built once)."""
        if self._id_rank is None:
            order = np.argsort(self.artist_ids.astype(str), kind="stable")
            self._id_rank = np.empty(len(order), dtype=np.int64)
            self._id_rank[order] = np.arange(len(order))
        return self._id_rank

    def ranked(self, scores: np.ndarray) -> np.ndarray:
        """Artist rows by descending score, ties by id."""
        return np.lexsort((self.id_rank, -scores))

    def index_of(self, artist_id: str) -> int:
        """The row of ``artist_id``; :class:`UnknownArtist` naming a few known ids otherwise."""
        found = self.index.get(str(artist_id))
        if found is None:
            raise UnknownArtist(f"unknown artist {artist_id!r} (try e.g. {self.examples()})")
        return found

    def __contains__(self, artist_id: object) -> bool:
        try:
            self.index_of(str(artist_id))
        except UnknownArtist:
            return False
        return True

    def examples(self, n: int = 3) -> str:
        """A few known artists, most discovered first: ``a00012 (Silver Owls), ...``."""
        order = np.lexsort((self.id_rank, -self.discovered, -self.listeners))
        return ", ".join(f"{self.artist_ids[i]} ({self.names[i]})" for i in order[:n])

    def name(self, artist_id: str) -> str:
        return str(self.names[self.index_of(artist_id)])

    @property
    def has_transitions(self) -> bool:
        return bool(self.counts.nnz)

    # ------------------------------------------------------------------ probabilities
    def prior(self, cluster: int) -> np.ndarray:
        """``prior(b | cluster)`` for every artist ``b`` (sums to 1)."""
        return self.cluster_transitions[cluster, self.cluster_of] * self.within

    def parts(self, weighted: Mapping[int, float]) -> tuple[np.ndarray, np.ndarray]:
        """``sum_a w_a P(. | a)`` over artist rows ``a`` with weights ``w_a``, split into the
        artist-transition part and the cluster-backoff part (two sparse products: no loop
        over the catalogue per artist)."""
        rows = np.fromiter(weighted.keys(), dtype=np.int64, count=len(weighted))
        weights = np.fromiter(weighted.values(), dtype=np.float64, count=len(weighted))
        scale = weights / (self.totals[rows] + self.config.backoff)
        own = np.asarray(self.counts[rows].T @ scale).ravel()
        per_cluster = np.bincount(
            self.cluster_of[rows],
            weights=scale * (self.config.backoff + self.backed_off[rows]),
            minlength=len(self.cluster_names),
        )
        backed = (per_cluster @ self.cluster_transitions)[self.cluster_of] * self.within
        return own, backed

    def probabilities(self, artist_id: str) -> np.ndarray:
        """``P(b | artist_id)`` for every artist ``b`` (aligned with ``artist_ids``)."""
        own, backed = self.parts({self.index_of(artist_id): 1.0})
        return own + backed

    def scores(self, weighted: Mapping[int, float]) -> np.ndarray:
        """``sum_a w_a P(. | a)`` over artist rows ``a`` with weights ``w_a``."""
        if not weighted:
            return np.zeros(len(self.artist_ids))
        own, backed = self.parts(weighted)
        return own + backed

    def next_artists(
        self, artist_id: str, k: int = 10, exclude: Collection[str] = ()
    ) -> list[NextArtist]:
        """The ``k`` most probable next artists after ``artist_id`` (never itself nor
        ``exclude``), each with its reason.

        Example usage::

            for c in model.next_artists("a00012", k=3, exclude={"a00001"}):
                print(c.name, c.reason)  # "explorers who found X went on to Y (4 of them)"
        """
        row = self.index_of(artist_id)
        own, backed = self.parts({row: 1.0})
        probability = own + backed
        probability[row] = -np.inf
        for other in exclude:
            position = self.index.get(str(other))
            if position is not None:
                probability[position] = -np.inf
        order = self.ranked(probability)
        chosen = [int(b) for b in order[:k] if np.isfinite(probability[b])]
        return [self._candidate(row, b, probability[b], own[b], backed[b]) for b in chosen]

    def _candidate(
        self, row: int, target: int, probability: float, own: float, backed: float
    ) -> NextArtist:
        kind, reason, explorers = self.explain(row, target, own >= backed and own > 0)
        return NextArtist(
            artist_id=str(self.artist_ids[target]),
            name=str(self.names[target]),
            probability=float(probability),
            kind=kind,
            reason=reason,
            explorers=explorers,
            from_artist=str(self.artist_ids[row]),
        )

    def explain(self, row: int, target: int, by_transition: bool) -> tuple[str, str, int]:
        """``(kind, reason, explorers)`` for the step ``row -> target``."""
        source, found = self.names[row], self.names[target]
        if by_transition:
            n = int(self.explorer_counts[row, target])
            of_them = "1 of them" if n == 1 else f"{n} of them"
            return "transition", f"explorers who found {source} went on to {found} ({of_them})", n
        a, b = int(self.cluster_of[row]), int(self.cluster_of[target])
        here, there = _corner(self.cluster_names[a]), _corner(self.cluster_names[b])
        n = int(self.cluster_explorers[a, b])
        if n == 0:
            return "popular", f"{found} is much listened to in the {there} corner", 0
        who = "1 explorer" if n == 1 else f"{n} explorers"
        if a == b:
            reason = f"explorers digging in the {here} corner ({who}) often find {found}"
        else:
            reason = f"listeners moving on from the {here} corner went to {there} ({who})"
        return "cluster", reason, n

    def summary(self) -> dict[str, Any]:
        """Counts for metadata: artists, clusters, explorers, transitions, coverage."""
        sources = int((np.diff(self.counts.indptr) > 0).sum())
        return {
            "version": self.version,
            "basis": self.basis,
            "cluster_basis": self.cluster_basis,
            "artists": len(self.artist_ids),
            "clusters": len(self.cluster_names),
            "explorers": len(self.rule.explorers),
            "artist_transitions": int(self.counts.nnz),
            "artists_with_transitions": sources,
            "coverage": sources / max(1, len(self.artist_ids)),
            **self.stats,
        }


def _corner(cluster: str) -> str:
    """A cluster as people read it: the artists outside every named cluster are the long
    tail."""
    return "long-tail" if cluster == OTHER_CLUSTER else cluster


def _step_groups(artist_rows: np.ndarray, steps: np.ndarray) -> list[np.ndarray]:
    """A user's discoveries (sorted by step) split into steps of unordered artists."""
    bounds = np.flatnonzero(np.diff(steps)) + 1
    return np.split(artist_rows, bounds)


def _user_transitions(
    groups: list[np.ndarray], same_step_weight: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(from, to, weight)`` of one user's consecutive steps (and co-discoveries)."""
    sources, targets, weights = [], [], []
    for before, after in zip(groups[:-1], groups[1:], strict=True):
        sources.append(np.repeat(before, len(after)))
        targets.append(np.tile(after, len(before)))
        weights.append(np.full(len(before) * len(after), 1.0 / len(after)))
    if same_step_weight > 0:
        for group in groups:
            if len(group) > 1:
                a, b = np.meshgrid(group, group, indexing="ij")
                off = a != b
                sources.append(a[off])
                targets.append(b[off])
                weights.append(np.full(int(off.sum()), same_step_weight / (len(group) - 1)))
    if not sources:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    return np.concatenate(sources), np.concatenate(targets), np.concatenate(weights)


def transition_counts(
    discoveries: pd.DataFrame,
    index: Mapping[str, int],
    users: Collection[str],
    config: JourneyConfig,
) -> tuple[sparse.csr_matrix, sparse.csr_matrix, pd.DataFrame]:
    """Weighted artist -> artist counts of ``users``' discovery orders, how many distinct
    users made each move (both ``n_artists x n_artists``) and the distinct moves
    (``user, source, target`` rows: user code, artist rows)."""
    n = len(index)
    wanted = discoveries[discoveries["user_id"].isin(set(map(str, users)))]
    rows = wanted["artist_id"].map(index)
    wanted = wanted[rows.notna()].assign(row=rows[rows.notna()].astype(np.int64))
    sources, targets, weights, who = [], [], [], []
    for code, (_, own) in enumerate(wanted.groupby("user_id", sort=True)):
        groups = _step_groups(own["row"].to_numpy(), own["step"].to_numpy())
        s, t, w = _user_transitions(groups, config.same_step_weight)
        sources.append(s)
        targets.append(t)
        weights.append(w)
        who.append(np.full(len(s), code, dtype=np.int64))
    if not sources or not sum(len(s) for s in sources):
        moves = pd.DataFrame({c: pd.Series(dtype=np.int64) for c in ("user", "source", "target")})
        return sparse.csr_matrix((n, n)), sparse.csr_matrix((n, n), dtype=np.int64), moves
    s, t, w, u = (np.concatenate(x) for x in (sources, targets, weights, who))
    counts = sparse.csr_matrix((w, (s, t)), shape=(n, n))
    moves = pd.DataFrame({"user": u, "source": s, "target": t}).drop_duplicates()
    explorers = sparse.csr_matrix(
        (np.ones(len(moves), dtype=np.int64), (moves["source"], moves["target"])), shape=(n, n)
    )
    counts.sum_duplicates()
    explorers.sum_duplicates()
    return counts, explorers, moves.reset_index(drop=True)


def _cluster_tables(
    counts: sparse.csr_matrix,
    moves: pd.DataFrame,
    cluster_of: np.ndarray,
    share: np.ndarray,
    smoothing: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Smoothed cluster -> cluster transition probabilities, and how many distinct explorers
    made each cluster move (both ``n_clusters x n_clusters``)."""
    n_clusters = len(share)
    member = sparse.csr_matrix(
        (np.ones(len(cluster_of)), (np.arange(len(cluster_of)), cluster_of)),
        shape=(len(cluster_of), n_clusters),
    )
    weighted = np.asarray((member.T @ counts @ member).todense())
    transitions = (weighted + smoothing * share[None, :]) / (
        weighted.sum(axis=1, keepdims=True) + smoothing
    )
    moved = np.zeros((n_clusters, n_clusters), dtype=np.int64)
    if len(moves):
        pairs = pd.DataFrame(
            {
                "user": moves["user"].to_numpy(),
                "a": cluster_of[moves["source"].to_numpy()],
                "b": cluster_of[moves["target"].to_numpy()],
            }
        ).drop_duplicates()
        np.add.at(moved, (pairs["a"].to_numpy(), pairs["b"].to_numpy()), 1)
    return transitions, moved


def min_support(config: JourneyConfig, explorers: int) -> int:
    """Distinct explorers an artist -> artist move needs to count at the artist level."""
    return max(config.min_explorers, math.ceil(config.min_explorer_share * explorers))


def _artist_counts(
    counts: sparse.csr_matrix, explorers: sparse.csr_matrix, support: int, discount: float
) -> tuple[sparse.csr_matrix, np.ndarray, np.ndarray, sparse.csr_matrix]:
    """The artist-level counts of the moves ``min_explorers`` or more explorers made (the
    others are left out, not handed to the backoff: the kept moves share the row), less the
    absolute ``discount``; each row's total before the discount; the mass the discount hands
    to the backoff; the explorer counts of the moves kept."""
    kept = sparse.csr_matrix(counts.multiply(explorers >= support))
    kept.eliminate_zeros()
    totals = np.asarray(kept.sum(axis=1)).ravel()
    taken = kept.copy()
    taken.data = np.minimum(taken.data, discount)
    handed = np.asarray(taken.sum(axis=1)).ravel()
    kept.data = np.maximum(kept.data - discount, 0.0)
    kept.eliminate_zeros()
    moved = sparse.csr_matrix(explorers.multiply(kept > 0), dtype=np.int64)
    moved.eliminate_zeros()
    return kept, totals, handed, moved


def _learners(
    inputs: JourneyInputs, config: JourneyConfig, explorers: Collection[str] | None
) -> tuple[ExplorerRule, tuple[str, ...]]:
    """The rule on ``inputs`` and the users the model learns from (default its explorers)."""
    rule = explorer_rule(user_exploration(inputs), config)
    chosen = rule.explorers if explorers is None else tuple(sorted(map(str, explorers)))
    return rule, chosen


def model_version(
    inputs: JourneyInputs, config: JourneyConfig, explorers: Collection[str] | None = None
) -> str:
    """Hash of the inputs, the config and the explorers the model learns from (default: the
    rule's): what :func:`fit_transition_model` would call its ``version``, without fitting."""
    _, chosen = _learners(inputs, config, explorers)
    digest = hashlib.sha256(inputs.fingerprint().encode())
    digest.update(json.dumps(config.to_dict(), sort_keys=True).encode())
    digest.update("\n".join(chosen).encode())
    return digest.hexdigest()[:16]


def fit_transition_model(
    inputs: JourneyInputs,
    config: JourneyConfig | None = None,
    explorers: Collection[str] | None = None,
) -> TransitionModel:
    """Learn the transition model from the explorers' discovery orders.

    Parameters
    ----------
    inputs
        From :func:`read_journey_inputs` (or built by hand: see the tests).
    config
        Rule, smoothing and prediction settings.
    explorers
        Learn from these users (e.g. the training explorers of an evaluation); default: the
        explorers :func:`explorer_rule` finds in ``inputs``.

    A model without explorers (no play times nor tag dates, or too few users) has no
    transitions: its probabilities are the clusters' listener shares (a popularity radio).
    """
    config = config or JourneyConfig()
    artists = inputs.artists.reset_index(drop=True)
    rule, chosen = _learners(inputs, config, explorers)
    index = {str(a): i for i, a in enumerate(artists["artist_id"])}
    all_counts, explorer_counts, moves = transition_counts(
        inputs.discoveries, index, chosen, config
    )
    support = min_support(config, len(chosen))
    counts, totals, backed_off, explorer_counts = _artist_counts(
        all_counts, explorer_counts, support, config.discount
    )
    cluster_names = sorted(artists["cluster"].unique())
    cluster_of = artists["cluster"].map({c: i for i, c in enumerate(cluster_names)}).to_numpy()
    discovered = (
        inputs.discoveries["artist_id"].value_counts().reindex(artists["artist_id"]).fillna(0)
    ).to_numpy(dtype=np.float64)
    listeners = artists["listeners"].to_numpy(dtype=np.float64)
    weight = np.maximum(listeners, discovered) + 1.0
    cluster_total = np.bincount(cluster_of, weights=weight, minlength=len(cluster_names))
    within = weight / cluster_total[cluster_of]
    transitions, cluster_explorers = _cluster_tables(
        all_counts, moves, cluster_of, cluster_total / cluster_total.sum(), config.cluster_smoothing
    )
    stats = {
        "min_support": support,
        "users_with_discoveries": int(inputs.discoveries["user_id"].nunique()),
        "discoveries": len(inputs.discoveries),
        "learnt_from_users": len(chosen),
    }
    return TransitionModel(
        version=model_version(inputs, config, chosen),
        config=config,
        artist_ids=artists["artist_id"].astype(str).to_numpy(dtype=object),
        names=artists["name"].astype(str).to_numpy(dtype=object),
        cluster_names=[str(c) for c in cluster_names],
        cluster_of=cluster_of.astype(np.int64),
        listeners=listeners,
        discovered=discovered,
        counts=counts,
        totals=totals,
        backed_off=backed_off,
        explorer_counts=explorer_counts,
        cluster_transitions=transitions,
        cluster_explorers=cluster_explorers,
        within=within,
        rule=rule,
        basis=inputs.basis,
        cluster_basis=inputs.cluster_basis,
        stats=stats,
    )


# ---------------------------------------------------------------------------------- radio
@dataclass(frozen=True)
class RadioStep:
    """One step of a radio station: the artist played and why it follows the previous one."""

    position: int
    artist_id: str
    name: str
    reason: str
    kind: str
    probability: float
    from_artist: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def radio(
    model: TransitionModel,
    seed_artist: str,
    steps: int | None = None,
    window: int = 20,
    seed: int = 0,
) -> Iterator[RadioStep]:
    """An endless station from ``seed_artist`` that drifts one transition at a time.

    Each step draws the next artist among the model's ``radio_candidates`` most probable next
    artists of the current one (in proportion to their probability, seeded), never one of the
    last ``window`` artists played (the seed included), and says why. The backoff gives every
    artist a probability, so it never gets stuck; in a catalogue of at most ``window`` artists
    the window shrinks to the catalogue size minus one.

    Parameters
    ----------
    model
        A fitted :class:`TransitionModel`.
    seed_artist
        Where the station starts (:class:`UnknownArtist` when the model does not know it).
    steps
        How many steps to yield (None: endless).
    window
        No artist repeats within this many steps.
    seed
        Seeds the draws: same model, seed artist and seed, same station.

    Example usage::

        for step in radio(model, "a00012", steps=50):
            print(f"{step.position:>3}. {step.name} - {step.reason}")
    """
    current = str(seed_artist)
    model.index_of(current)
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if len(model.artist_ids) < 2:
        raise TooSmall(f"{len(model.artist_ids)} artist(s): a radio needs at least two")
    window = min(window, len(model.artist_ids) - 1)
    return _drift(model, current, steps, window, np.random.default_rng(seed))


def _drift(
    model: TransitionModel,
    current: str,
    steps: int | None,
    window: int,
    rng: np.random.Generator,
) -> Iterator[RadioStep]:
    """The radio's steps (arguments checked by :func:`radio`)."""
    recent = [current]
    position = 0
    while steps is None or position < steps:
        exclude = set(recent[-window:])
        candidates = model.next_artists(current, model.config.radio_candidates, exclude)
        chances = np.array([c.probability for c in candidates], dtype=np.float64)
        chosen = candidates[int(rng.choice(len(candidates), p=chances / chances.sum()))]
        position += 1
        yield RadioStep(
            position=position,
            artist_id=chosen.artist_id,
            name=chosen.name,
            reason=chosen.reason,
            kind=chosen.kind,
            probability=chosen.probability,
            from_artist=current,
        )
        current = chosen.artist_id
        recent.append(current)
        del recent[: -window - 1]


def radio_text(model: TransitionModel, seed_artist: str, steps: int = 50, seed: int = 0) -> str:
    """The station as text: a header, then one line per step with its reason."""
    lines = [
        f"Radio from {model.name(seed_artist)} ({seed_artist}): transition model "
        f"{model.version}, {len(model.rule.explorers)} explorers, {model.basis} order"
    ]
    for step in radio(model, seed_artist, steps=steps, seed=seed):
        lines.append(f"{step.position:>4}. {step.name} ({step.artist_id}) - {step.reason}")
    return "\n".join(lines)


@dataclass(frozen=True)
class TransitionTrainer:
    """Refits a week's transition model without held-out rows (the offline replays).

    ``inputs`` are the week's (:func:`read_journey_inputs`), ``config`` the served model's;
    :meth:`without` drops the discoveries of held-out (user, item) pairs, so a replay learns
    from the training split only, as the ``transition_model`` asset does from the week.

    Example usage::

        trainer = TransitionTrainer(read_journey_inputs(warehouse, cutoff), model.config)
        model = trainer.without(test, item_artist).fit()
    """

    inputs: JourneyInputs
    config: JourneyConfig

    def without(
        self, pairs: pd.DataFrame | None, item_artist: Mapping[str, str]
    ) -> TransitionTrainer:
        """The same trainer without the discoveries of ``pairs`` (``user_id, item_id``)."""
        if pairs is None or pairs.empty:
            return self
        held = pd.DataFrame(
            {
                "user_id": pairs["user_id"].astype(str),
                "artist_id": pairs["item_id"].astype(str).map(item_artist),
            }
        ).dropna()
        keys = pd.MultiIndex.from_frame(held.drop_duplicates())
        found = self.inputs.discoveries
        drop = pd.MultiIndex.from_frame(found[["user_id", "artist_id"]].astype(str)).isin(keys)
        inputs = replace(self.inputs, discoveries=found[~drop].reset_index(drop=True))
        return replace(self, inputs=inputs)

    def fit(self) -> TransitionModel:
        return fit_transition_model(self.inputs, self.config)


# ---------------------------------------------------------------------------------- the store
def load_transition_model(
    artifact_uri: str, week: str | None = None
) -> tuple[str, TransitionModel]:
    """The stored model of ``week`` (a Monday ``YYYY-MM-DD``; default the latest stored).

    Raises
    ------
    NoTransitionModel
        When nothing (or nothing for that week) is stored; the message says what to run.
    """
    from artifacts import ArtifactStore

    store = ArtifactStore(artifact_uri)
    weeks = store.partitions(list(TRANSITION_MODEL_KEY))
    if not weeks:
        raise NoTransitionModel(
            f"no transition model in {artifact_uri}: materialise the transition_model asset "
            "(`cratedigger run`, or the discover_weekly_job for a week in the UI)"
        )
    chosen = weeks[-1] if week is None else week
    if chosen not in weeks:
        raise NoTransitionModel(
            f"no transition model for the week of {chosen}; weeks stored: {', '.join(weeks)}"
        )
    return chosen, store.load(list(TRANSITION_MODEL_KEY), chosen)


# ---------------------------------------------------------------------------------- playlists
def _anchor_weights(own: pd.DataFrame, anchors: int) -> dict[int, float]:
    """A user's ``anchors`` most recently played artists (rows of ``own``, sorted most recent
    first) with weights: log plays, normalised."""
    rows, first = np.unique(own["row"].to_numpy(dtype=np.int64), return_index=True)
    keep = np.sort(first)[:anchors]
    top_rows = own["row"].to_numpy(dtype=np.int64)[keep]
    plays = np.log1p(own["plays"].to_numpy(dtype=np.float64)[keep])
    weights = plays / plays.sum() if plays.sum() > 0 else np.full(len(keep), 1.0 / len(keep))
    return {int(r): float(w) for r, w in zip(top_rows, weights, strict=True)}


def next_step_candidates(
    model: TransitionModel,
    listens: pd.DataFrame,
    item_artist: Mapping[str, str],
    users: Sequence[str] | None,
    n: int,
    catalog: Collection[str] | None = None,
    *,
    anchors: int = 5,
    item_popularity: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Discover Weekly's exploration slots: per user, items of artists one step outward from
    the artists they played most recently, in :data:`recommend.candidates.CANDIDATE_COLUMNS`.

    The score of a new artist ``b`` is ``sum_a w_a P(b | a)`` over the user's ``anchors`` most
    recently played artists ``a`` (weights: log plays, normalised); artists the user played are
    never proposed; each artist gives one item (the user has not played, in ``catalog``; the
    most popular by ``item_popularity``, else the first id). Rows: ``source = "journey"``,
    ``reason_code = "next_step"``, ``reason_detail`` = the artist id the step starts from (the
    anchor contributing most).

    Parameters
    ----------
    model
        The week's :class:`TransitionModel`.
    listens
        ``user_id, item_id, plays, last_ts`` of the users (a batch is fine).
    item_artist
        ``{item_id: artist_id}`` of the catalogue (item = artist at artist level).
    users
        Users to serve (default: every user in ``listens``).
    n
        Candidates per user.
    catalog
        Items that may be recommended (default: every item of ``item_artist``).

    Example usage::

        rows = next_step_candidates(model, history, item_artist, users=["u000001"], n=20)
    """
    from recommend.candidates import CANDIDATE_COLUMNS, empty_candidates

    if n < 1:
        raise ValueError(f"n (candidates per user) must be >= 1, got {n}")
    items_of = _items_by_artist(item_artist, catalog, item_popularity)
    frame = listens if "last_ts" in listens.columns else listens.assign(last_ts=pd.NaT)
    if users is not None:
        frame = frame[frame["user_id"].astype(str).isin(set(map(str, users)))]
    artist = frame["item_id"].astype(str).map(pd.Series(item_artist, dtype=object))
    row = artist.map(pd.Series(model.index, dtype=np.float64))
    frame = frame.assign(artist_id=artist, row=row).dropna(subset=["row"])
    # most recent first, then most played: each user's first rows are the anchors
    frame = frame.sort_values(
        ["user_id", "last_ts", "plays", "artist_id"], ascending=[True, False, False, True]
    )
    rows: list[tuple] = []
    for user, own in frame.groupby("user_id", sort=True):
        rows.extend(_user_next_steps(model, str(user), own, items_of, n, anchors))
    if not rows:
        return empty_candidates()
    out = pd.DataFrame(rows, columns=CANDIDATE_COLUMNS)
    return out.astype({"score": float})


def _items_by_artist(
    item_artist: Mapping[str, str],
    catalog: Collection[str] | None,
    popularity: Mapping[str, float] | None,
) -> dict[str, list[str]]:
    """``{artist_id: its recommendable items, best first}``."""
    allowed = None if catalog is None else set(map(str, catalog))
    by_artist: dict[str, list[str]] = {}
    for item, artist in item_artist.items():
        if allowed is None or str(item) in allowed:
            by_artist.setdefault(str(artist), []).append(str(item))
    popularity = {} if popularity is None else dict(popularity)
    for items in by_artist.values():
        items.sort(key=lambda i: (-float(popularity.get(i, 0.0)), i))
    return by_artist


def _user_next_steps(
    model: TransitionModel,
    user: str,
    own: pd.DataFrame,
    items_of: Mapping[str, list[str]],
    n: int,
    anchors: int,
) -> list[tuple]:
    """One user's next-step candidate rows (``own``: their plays with artist rows, most
    recent first)."""
    weights = _anchor_weights(own, anchors)
    played_rows = own["row"].to_numpy(dtype=np.int64)
    contributions = {row: model.scores({row: weight}) for row, weight in weights.items()}
    stacked = np.vstack(list(contributions.values()))
    scores = stacked.sum(axis=0)
    scores[played_rows] = -np.inf
    played_items = set(map(str, own["item_id"]))
    anchor_rows = np.array(list(contributions))
    rows: list[tuple] = []
    for target in model.ranked(scores):
        if len(rows) >= n or not np.isfinite(scores[target]) or scores[target] <= 0:
            break
        items = [
            i for i in items_of.get(str(model.artist_ids[target]), ()) if i not in played_items
        ]
        if not items:
            continue
        anchor = anchor_rows[int(np.argmax(stacked[:, target]))]
        rows.append(
            (
                user,
                items[0],
                float(scores[target]),
                JOURNEY_SOURCE,
                NEXT_STEP_CODE,
                str(model.artist_ids[anchor]),
            )
        )
    return rows


def explain_next_step(model: TransitionModel, from_artist: str, to_artist: str) -> str:
    """The sentence for a ``next_step`` candidate: why ``to_artist`` follows ``from_artist``.

    Example usage::

        explain_next_step(model, "a00003", "a00017")
        # 'explorers who found Hollow Foxes went on to Quiet Owls (3 of them)'
    """
    row, target = model.index_of(from_artist), model.index_of(to_artist)
    own, backed = model.parts({row: 1.0})
    return model.explain(row, target, own[target] >= backed[target] and own[target] > 0)[1]


def history_weights(steps: Sequence[Sequence[int]], config: JourneyConfig) -> dict[int, float]:
    """Weights of the artist rows of the last ``history_steps`` discovery steps (the last
    weighs 1, each older one ``history_decay`` times the next; shared within a step)."""
    weights: dict[int, float] = {}
    for age, step in enumerate(reversed(steps[-config.history_steps :])):
        if not len(step):
            continue
        share = config.history_decay**age / len(step)
        for row in step:
            weights[int(row)] = weights.get(int(row), 0.0) + share
    return weights
