"""Blend candidate sources: per-user score normalisation, weighted fusion, weight tuning.

Scores of different sources live on different scales (EASE weights, cosines, listener counts),
so each source's scores are first normalised per user:

``rrf``     ``1 / (rrf_k + rank)`` (reciprocal-rank fusion; absent candidates give 0)
``zscore``  ``(score - mean) / std`` over the user's candidates of that source, shifted so the
            worst candidate is 0 (absent candidates give 0)
``rank``    ``1 - (rank - 1) / n`` over the user's ``n`` candidates of that source

and the blend is ``sum_s weight_s * normalised_s``. The weights (and the method) are tuned on a
validation split carved from train (:func:`tune_blend`; never on the test split), by coordinate
ascent over a small grid, maximising NDCG@k. The reason of a blended item is the reason of the
source that contributes most to its score.

Example usage::

    config, history = tune_blend(validation_candidates, validation_listens)
    blended = fuse(candidates, config)
    ranking = top_k_ranking(blended, k=30)
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from recommend.candidates import CANDIDATE_COLUMNS
from recommend.errors import TooSmall

logger = logging.getLogger(__name__)

METHODS = ("rrf", "zscore", "rank")
DEFAULT_GRID = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
NOVELTY_SOURCE = "novelty"
BLEND_COLUMNS = ["user_id", "item_id", "score", "source", "reason_code", "reason_detail"]

# A fallback for code that builds playlists without a tuned blend (tests, notebooks). The
# pipeline never serves it: the weekly ``blend_config`` asset tunes the weights on a validation
# split of each week's history (recommend.playlist.tune_week_blend). Sources absent from the
# candidates are ignored.
DEFAULT_WEIGHTS: dict[str, float] = {
    "item_knn": 1.0,
    "als": 0.5,
    "text": 0.5,
    "cooccurrence": 0.5,
    "ease": 0.1,
    "rp3beta": 0.5,
    "user_knn": 0.25,
    "audio": 0.5,
    "new": 0.25,
    "popularity": 0.0,
    "exploration": 0.0,
    "novelty": 0.0,
}


@dataclass(frozen=True)
class BlendConfig:
    """How to fuse sources.

    Parameters
    ----------
    weights
        ``{source: weight >= 0}``; sources missing here weigh 0.
    method
        Normalisation: ``rrf``, ``zscore`` or ``rank``.
    rrf_k
        The constant of reciprocal-rank fusion.
    """

    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    method: str = "zscore"
    rrf_k: float = 60.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"BlendConfig.method {self.method!r} is not one of {METHODS}")
        negative = {s: w for s, w in self.weights.items() if w < 0}
        if negative:
            raise ValueError(f"blend weights must be >= 0, got {negative}")
        if self.rrf_k <= 0:
            raise ValueError(f"BlendConfig.rrf_k must be > 0, got {self.rrf_k}")


@dataclass(frozen=True)
class BlendChoice:
    """The blend a week's playlists serve and how it was chosen (the ``blend_config`` artifact).

    Attributes
    ----------
    blend
        The fusion weights and normalisation.
    tuned
        True when tuned on a validation split; False when fixed by configuration.
    tuning
        The keyword arguments of :func:`recommend.playlist.tune_week_blend` that chose it
        (the offline evaluation replays the same choice on its training split).
    """

    blend: BlendConfig
    tuned: bool
    tuning: Mapping[str, Any] = field(default_factory=dict)
    inputs: str = ""

    @property
    def version(self) -> str:
        """The hash of what it was tuned from (``inputs``), else of the blend itself."""
        if self.inputs:
            return self.inputs
        payload = json.dumps(
            {
                "weights": dict(sorted(self.blend.weights.items())),
                "method": self.blend.method,
                "rrf_k": self.blend.rrf_k,
                "tuned": self.tuned,
                "tuning": dict(self.tuning),
            },
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass
class FusionTable:
    """Candidates pivoted to one row per (user, item), one normalised column per source.

    Attributes
    ----------
    pairs
        ``user_id, item_id`` sorted by user.
    sources
        Source labels, the column order of ``matrix``.
    matrix
        ``(len(pairs), len(sources))`` normalised scores, 0 where a source lacks the pair.
    reason_codes, reason_details
        ``(len(pairs), len(sources))`` object arrays (``None`` where absent).
    user_codes, item_codes
        Integer codes of each pair's user and item (sorted order), for fast ranking.
    """

    pairs: pd.DataFrame
    sources: list[str]
    matrix: np.ndarray
    reason_codes: np.ndarray
    reason_details: np.ndarray
    user_codes: np.ndarray
    item_codes: np.ndarray


def normalise_scores(
    candidates: pd.DataFrame, method: str = "rrf", *, rrf_k: float = 60.0
) -> pd.Series:
    """Per-user, per-source normalised scores of a candidate frame (aligned with its index).

    Parameters
    ----------
    candidates
        :data:`recommend.candidates.CANDIDATE_COLUMNS`.
    method
        ``rrf``, ``zscore`` or ``rank`` (see the module docstring).
    rrf_k
        Reciprocal-rank constant.
    """
    if method not in METHODS:
        raise ValueError(f"normalisation method {method!r} is not one of {METHODS}")
    missing = {"user_id", "source", "score"} - set(candidates.columns)
    if missing:
        raise ValueError(f"candidates lack columns {sorted(missing)}")
    groups = candidates.groupby(["user_id", "source"], sort=False)["score"]
    if method == "rrf":
        rank = groups.rank(method="first", ascending=False)
        return 1.0 / (rrf_k + rank)
    if method == "rank":
        rank = groups.rank(method="first", ascending=False)
        size = groups.transform("size")
        return 1.0 - (rank - 1.0) / size
    mean = groups.transform("mean")
    std = groups.transform("std").fillna(0.0).replace(0.0, 1.0)
    z = (candidates["score"] - mean) / std
    return z - z.groupby([candidates["user_id"], candidates["source"]]).transform("min")


def fusion_table(
    candidates: pd.DataFrame,
    method: str = "rrf",
    *,
    rrf_k: float = 60.0,
    novelty: Mapping[str, float] | pd.Series | None = None,
) -> FusionTable:
    """Pivot candidates into a :class:`FusionTable` (normalise once, fuse many times).

    Parameters
    ----------
    candidates
        :data:`recommend.candidates.CANDIDATE_COLUMNS`.
    method, rrf_k
        Normalisation.
    novelty
        ``{item_id: self-information}`` (e.g. :func:`item_novelty`): adds a pseudo-source
        ``novelty`` scoring every candidate pair by how rarely its item is played, normalised
        like the real sources; it carries no reason. Its weight trades accuracy for discovery.
    """
    missing = set(CANDIDATE_COLUMNS) - set(candidates.columns)
    if missing:
        raise ValueError(
            f"candidates lack columns {sorted(missing)}; build them with recommend.candidates"
        )
    if candidates.empty:
        raise ValueError("no candidates to blend")
    frame = candidates[CANDIDATE_COLUMNS].copy()
    frame["user_id"] = frame["user_id"].astype(str)
    frame["item_id"] = frame["item_id"].astype(str)
    # one row per (user, item, source): keep the best if a source repeats a pair
    frame = frame.sort_values("score", ascending=False, kind="mergesort")
    frame = frame.drop_duplicates(["user_id", "item_id", "source"])
    if novelty is not None:
        shares = (
            pd.Series(novelty, dtype=float)
            if not isinstance(novelty, pd.Series)
            else (novelty.astype(float))
        )
        extra = frame.drop_duplicates(["user_id", "item_id"])[["user_id", "item_id"]].copy()
        extra["score"] = (
            extra["item_id"]
            .map(shares)
            .fillna(float(shares.max()) if len(shares) else 0.0)
            .to_numpy()
        )
        extra["source"] = NOVELTY_SOURCE
        extra["reason_code"] = None
        extra["reason_detail"] = None
        frame = pd.concat([frame, extra[frame.columns]], ignore_index=True)
    frame["normalised"] = normalise_scores(frame, method, rrf_k=rrf_k)
    sources = sorted(frame["source"].unique())
    user_code, user_values = pd.factorize(frame["user_id"], sort=True)
    item_code, item_values = pd.factorize(frame["item_id"], sort=True)
    keys, codes = np.unique(
        user_code.astype(np.int64) * len(item_values) + item_code, return_inverse=True
    )
    source_col = pd.Categorical(frame["source"], categories=sources).codes
    matrix = np.zeros((len(keys), len(sources)))
    matrix[codes, source_col] = frame["normalised"].to_numpy()
    reason_codes = np.full((len(keys), len(sources)), None, dtype=object)
    reason_details = np.full((len(keys), len(sources)), None, dtype=object)
    reason_codes[codes, source_col] = frame["reason_code"].to_numpy()
    reason_details[codes, source_col] = frame["reason_detail"].to_numpy()
    user_codes = keys // len(item_values)
    item_codes = keys % len(item_values)
    pairs = pd.DataFrame(
        {
            "user_id": np.asarray(user_values, dtype=object)[user_codes],
            "item_id": np.asarray(item_values, dtype=object)[item_codes],
        }
    )
    return FusionTable(pairs, sources, matrix, reason_codes, reason_details, user_codes, item_codes)


def item_novelty(listens: pd.DataFrame) -> pd.Series:
    """Self-information ``-log2(share of users who played the item)`` per item (index item_id)."""
    missing = {"user_id", "item_id"} - set(listens.columns)
    if missing:
        raise ValueError(f"listens frame lacks columns {sorted(missing)}")
    users = listens["user_id"].nunique()
    listeners = listens.groupby(listens["item_id"].astype(str))["user_id"].nunique()
    return -np.log2(listeners / max(users, 1))


def _weight_vector(table: FusionTable, weights: Mapping[str, float]) -> np.ndarray:
    return np.array([float(weights.get(s, 0.0)) for s in table.sources])


def _ranked_positions(table: FusionTable, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pair order (user, then score desc, ties by item) and each pair's 0-based rank in user."""
    # one exact key (user major, score descending) as a complex number, which numpy sorts by
    # real then imaginary part: a user's order never depends on the other users in the table
    # (a float key user * range - score loses the last digits of the scores when there are
    # many users); the stable sort keeps pairs, stored by (user, item), in item order on ties
    key = np.empty(len(scores), dtype=np.complex128)
    key.real = table.user_codes
    key.imag = -np.asarray(scores, dtype=np.float64)
    order = np.argsort(key, kind="stable")
    users = table.user_codes[order]
    starts = np.r_[0, np.flatnonzero(np.diff(users)) + 1]
    group_start = np.repeat(starts, np.diff(np.r_[starts, len(users)]))
    return order, np.arange(len(order)) - group_start


def fuse(
    candidates: pd.DataFrame | FusionTable,
    config: BlendConfig | None = None,
    *,
    novelty: Mapping[str, float] | pd.Series | None = None,
) -> pd.DataFrame:
    """Blend candidates into one ranked list per user.

    Parameters
    ----------
    candidates
        A candidate frame, or a :class:`FusionTable` built with ``config.method``.
    config
        Weights and normalisation (default :class:`BlendConfig`).
    novelty
        ``{item_id: self-information}`` for the ``novelty`` weight (:func:`item_novelty`);
        needed when ``config.weights`` gives ``novelty`` a weight.

    Returns
    -------
    pandas.DataFrame
        :data:`BLEND_COLUMNS` plus ``rank`` (1 = best) sorted by user then rank; ``source`` and
        the reason are those of the source contributing most. Pairs whose blended score is 0
        (only zero-weight sources) rank last.
    """
    config = config or BlendConfig()
    if (
        config.weights.get(NOVELTY_SOURCE, 0.0) > 0
        and novelty is None
        and not isinstance(candidates, FusionTable)
    ):
        raise ValueError(
            "the blend weighs 'novelty' but no item novelty was given; pass "
            "novelty=item_novelty(listens)"
        )
    table = (
        candidates
        if isinstance(candidates, FusionTable)
        else fusion_table(candidates, config.method, rrf_k=config.rrf_k, novelty=novelty)
    )
    weights = _weight_vector(table, config.weights)
    if not (weights > 0).any():
        raise ValueError(
            f"every blend weight is 0 for the sources {table.sources}; give at "
            "least one source a positive weight"
        )
    contributions = table.matrix * weights
    scores = contributions.sum(axis=1)
    # the reason comes from the strongest contributing source; ties: the higher weight
    present = table.reason_codes != None  # noqa: E711 (element-wise on an object array)
    strength = np.where(present, contributions + 1e-12 * weights, -np.inf)
    best = np.argmax(strength, axis=1)
    order, rank = _ranked_positions(table, scores)
    rows = np.arange(len(scores))
    out = (
        pd.DataFrame(
            {
                "user_id": table.pairs["user_id"].to_numpy(),
                "item_id": table.pairs["item_id"].to_numpy(),
                "score": scores,
                "source": np.asarray(table.sources, dtype=object)[best],
                "reason_code": table.reason_codes[rows, best],
                "reason_detail": table.reason_details[rows, best],
            }
        )
        .iloc[order]
        .reset_index(drop=True)
    )
    out["rank"] = rank + 1
    return out


def top_k_ranking(blended: pd.DataFrame, k: int) -> dict[str, list[str]]:
    """``{user_id: [item_id, ...]}`` of the first ``k`` rows per user of a ranked frame."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    head = blended.groupby("user_id", sort=False).head(k)
    return {str(u): list(g) for u, g in head.groupby("user_id", sort=False)["item_id"]}


def source_rankings(candidates: pd.DataFrame, k: int) -> dict[str, dict[str, list[str]]]:
    """Each single source's own top-``k`` per user: ``{source: {user: [items]}}``."""
    ordered = candidates.sort_values(
        ["source", "user_id", "score", "item_id"],
        ascending=[True, True, False, True],
        kind="mergesort",
    )
    return {source: top_k_ranking(group, k) for source, group in ordered.groupby("source")}


def _metrics(
    table: FusionTable,
    scores: np.ndarray,
    relevant: np.ndarray,
    ideal: np.ndarray,
    k: int,
    n_users: int,
    self_information: np.ndarray | None,
    list_k: int | None = None,
) -> dict[str, float]:
    """NDCG@k (mean over validation users), coverage@list_k (distinct items / candidate items)
    and novelty@list_k (mean self-information of the top pairs) of one blended scoring."""
    order, rank = _ranked_positions(table, scores)
    in_top = rank < k
    hits = relevant[order] & in_top
    gains = np.zeros(len(order))
    gains[hits] = 1.0 / np.log2(rank[hits] + 2.0)
    dcg = np.bincount(table.user_codes[order], weights=gains, minlength=len(ideal))
    per_user = np.where(ideal > 0, dcg / np.where(ideal > 0, ideal, 1.0), 0.0)
    top_pairs = order[rank < (list_k or k)]
    result = {
        "ndcg": float(per_user.sum()) / max(n_users, 1),
        "coverage": len(np.unique(table.item_codes[top_pairs]))
        / max(int(table.item_codes.max()) + 1, 1),
    }
    if self_information is not None:
        result["novelty"] = float(self_information[top_pairs].mean())
    return result


def _truth_arrays(
    table: FusionTable,
    validation: pd.DataFrame,
    k: int,
) -> tuple[np.ndarray, np.ndarray, int]:
    truth = validation[["user_id", "item_id"]].astype(str).drop_duplicates()
    keys = pd.MultiIndex.from_frame(truth)
    pair_keys = pd.MultiIndex.from_frame(table.pairs)
    relevant = pair_keys.isin(keys)
    users = pd.Index(pd.unique(table.pairs["user_id"]))  # sorted by construction
    sizes = truth.groupby("user_id").size().reindex(users).fillna(0).to_numpy(dtype=int)
    discounts = np.r_[0.0, np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))]
    ideal = discounts[np.minimum(sizes, k)]
    return np.asarray(relevant), ideal, int(truth["user_id"].nunique())


class _Search:
    """One normalisation's fusion table, validation truth and constraint target."""

    def __init__(
        self,
        table: FusionTable,
        validation: pd.DataFrame,
        k: int,
        novelty: Mapping[str, float] | pd.Series | None,
        reference: str | None,
        penalty: float,
        method: str,
        history: list[dict],
        margin: float,
        list_k: int | None = None,
    ) -> None:
        self.table, self.k, self.penalty = table, k, penalty
        self.list_k = list_k or k
        self.method, self.history = method, history
        self.relevant, self.ideal, self.n_users = _truth_arrays(table, validation, k)
        self.self_information = None
        if novelty is not None:
            shares = pd.Series(novelty, dtype=float)
            self.self_information = (
                table.pairs["item_id"].map(shares).fillna(float(shares.max())).to_numpy()
            )
        self.margin = margin
        self.floor: float | None = None
        self.target: dict[str, float] = {}
        self.reference = reference

    def set_target(
        self, sources: Sequence[str], coverage_factor: float, accuracy_floor: float | None = None
    ) -> str | None:
        """Coverage and novelty the blend must reach: the reference source's (the single best
        source by NDCG when the reference is ``"best"``), coverage times ``coverage_factor``;
        with ``accuracy_floor``, first an NDCG of the reference's times ``1 + accuracy_floor``."""
        reference = self.reference
        if reference == "best":
            real = [s for s in sources if s != NOVELTY_SOURCE]
            reference = max(real, key=lambda s: (self.measure({s: 1.0})["ndcg"], s))
        if reference is None:
            return None
        if reference not in self.table.sources:
            raise ValueError(
                f"blend reference {reference!r} is not among the candidate sources "
                f"{self.table.sources}: use one of them, 'best', or none"
            )
        measured = self.measure({reference: 1.0})
        self.target = {
            name: value * (1.0 + self.margin) for name, value in measured.items() if name != "ndcg"
        }
        if "coverage" in self.target:
            self.target["coverage"] = (
                measured["coverage"] * max(coverage_factor, 1.0) * (1.0 + self.margin)
            )
        if accuracy_floor is not None:
            self.floor = measured["ndcg"] * (1.0 + accuracy_floor)
        return reference

    def measure(self, weights: Mapping[str, float]) -> dict[str, float]:
        scores = self.table.matrix @ _weight_vector(self.table, weights)
        return _metrics(
            self.table,
            scores,
            self.relevant,
            self.ideal,
            self.k,
            self.n_users,
            self.self_information,
            self.list_k,
        )

    def evaluate(
        self, weights: Mapping[str, float], round_number: int, source: str, value: float
    ) -> float:
        measured = self.measure(weights)
        shortfall = sum(
            max(0.0, (self.target[name] - measured[name]) / self.target[name])
            for name in self.target
            if self.target[name] > 0
        )
        if self.floor is None:
            objective = measured["ndcg"] - self.penalty * shortfall
        elif measured["ndcg"] >= self.floor:  # accurate enough: now as exploratory as possible
            objective = 3.0 - shortfall + 1e-3 * measured["ndcg"]
        else:  # below the floor: only accuracy counts (always below any blend above it)
            objective = measured["ndcg"] - self.floor
        self.history.append(
            {
                "method": self.method,
                "round": round_number,
                "source": source,
                "weight": value,
                **measured,
                "objective": objective,
            }
        )
        return objective


def tune_blend(
    candidates: pd.DataFrame,
    validation: pd.DataFrame,
    *,
    sources: Sequence[str] | None = None,
    methods: Iterable[str] = ("zscore", "rrf"),
    grid: Sequence[float] = DEFAULT_GRID,
    k: int = 10,
    rounds: int = 2,
    rrf_k: float = 60.0,
    novelty: Mapping[str, float] | pd.Series | None = None,
    reference: str | None = "als",
    penalty: float = 1.0,
    margin: float = 0.05,
    coverage_factor: float = 1.0,
    list_k: int | None = None,
    accuracy_floor: float | None = None,
) -> tuple[BlendConfig, pd.DataFrame]:
    """Tune blend weights (and the normalisation) on a validation split by coordinate ascent.

    The objective is NDCG@k. With ``novelty`` and a ``reference`` source, a blend whose
    coverage@k or novelty@k falls below the reference source's own (measured the same way on
    the same validation candidates) is penalised by ``penalty`` times the relative shortfall,
    so the search prefers accurate blends that are at least as exploratory as the reference.

    Parameters
    ----------
    candidates
        Candidates built from the *fitting part* of train (models never saw ``validation``).
    validation
        Held-out listens carved from train (``user_id, item_id``); never the test split.
    sources
        Sources whose weight is tuned (default: all present, plus ``novelty`` when given);
        others stay at 0.
    methods
        Normalisations tried; each is tuned separately and the best kept.
    grid
        Weight values tried per source.
    k
        Cut-off of NDCG, coverage and novelty.
    rounds
        Passes over the sources.
    novelty
        ``{item_id: self-information}`` (:func:`item_novelty` of the fitting part): enables the
        ``novelty`` pseudo-source and the novelty constraint.
    reference
        Source whose coverage and novelty the blend must reach; ``"best"``: the single source
        with the best validation NDCG@k; None: no constraint.
    penalty
        Weight of the relative shortfall in the objective.
    margin
        Safety margin: the targets are the reference's figures times ``1 + margin`` (a blend
        tuned on validation loses a little when refitted on all of train).
    accuracy_floor
        With a ``reference``: instead of trading accuracy for the targets (``penalty``), first
        reach the reference's NDCG@k times ``1 + accuracy_floor``, and among the blends that do,
        come as close to the coverage and novelty targets as possible (then the most accurate).
        When no blend reaches the floor, the most accurate one wins.
    list_k
        Cut-off of coverage and novelty (default ``k``), e.g. the playlist length: the top of
        the list is tuned for accuracy, the whole list for discovery.
    coverage_factor
        The coverage target is the reference's coverage@k times this (at least ``1 + margin``):
        e.g. 2 asks for twice as many distinct items in the top-k lists.

    Returns
    -------
    (BlendConfig, pandas.DataFrame)
        The best config and the search history (``method, round, source, weight, ndcg,
        coverage, novelty, objective``); ``history.attrs["reference"]`` holds the reference
        source's validation metrics.
    """
    if validation.empty:
        raise TooSmall(
            "validation split is empty: carve one from train (evaluation.metrics.validation_split)"
        )
    history: list[dict] = []
    references: dict[str, dict[str, float]] = {}
    best_overall: tuple[float, BlendConfig] | None = None
    for method in methods:
        table = fusion_table(candidates, method, rrf_k=rrf_k, novelty=novelty)
        search = _Search(
            table, validation, k, novelty, reference, penalty, method, history, margin, list_k
        )
        tuned = [s for s in (sources or table.sources) if s in table.sources]
        if not tuned:
            raise ValueError(
                f"none of the sources {sources} is among the candidates' {table.sources}"
            )
        chosen = search.set_target(tuned, coverage_factor, accuracy_floor)
        references[method] = {"source": chosen, **search.target}
        # start from the single best real source
        start = {s: search.evaluate({s: 1.0}, 0, s, 1.0) for s in tuned if s != NOVELTY_SOURCE}
        first = max(start, key=lambda s: (start[s], s))
        weights = {s: (1.0 if s == first else 0.0) for s in tuned}
        best = start[first]
        for round_number in range(1, rounds + 1):
            for source in tuned:
                for value in grid:
                    trial = {**weights, source: value}
                    if value == weights[source] or not any(
                        w > 0 for s, w in trial.items() if s != NOVELTY_SOURCE
                    ):
                        continue
                    score = search.evaluate(trial, round_number, source, value)
                    if score > best + 1e-9:
                        best, weights = score, trial
        logger.info("blend tuning (%s): objective %.4f with %s", method, best, weights)
        config = BlendConfig(weights=weights, method=method, rrf_k=rrf_k)
        if best_overall is None or best > best_overall[0]:
            best_overall = (best, config)
    assert best_overall is not None
    frame = pd.DataFrame(history)
    frame.attrs["reference"] = references
    return best_overall[1], frame
