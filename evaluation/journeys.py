"""Does the transition model predict the next new artist of held-out explorers?

Protocol (:func:`evaluate_journeys`): the explorers (:func:`recommend.journeys.explorer_rule`
on every user) are split by a seeded hash of their ids (:func:`recommend.history.sample_key`)
into training and held-out explorers. Everything is fitted on the training users only (every
user but the held-out explorers): the transition model on the training explorers' discovery
orders, popularity on the training users' discoveries, the nearest neighbours on their
co-listening. Then, for every discovery step of a held-out explorer after the first, each
ranker sees what came before and ranks the artists the explorer does not know yet; a *hit@k* is
one of the step's artists (one artist; on HetRec often several tagged the same day) in the top
``k``. Rankers:

``transition_model``
    ``sum_a w_a P(. | a)`` over the last ``history_steps`` steps' artists
    (:func:`recommend.journeys.history_weights`).
``transition_model (clusters only)``
    The same model without its artist -> artist counts (the cluster backoff alone): what the
    artist-level transitions add.
``popularity``
    The artists most training users discovered.
``nearest_neighbours``
    Item-item cosine on the training users' co-listening (binary user x artist), summed over
    the same history with the same weights.

Example usage::

    inputs = read_journey_inputs(warehouse, cutoff)
    result = evaluate_journeys(inputs, colistening=artist_listens)
    print(result.table.round(3).to_markdown())
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy import sparse

from recommend.errors import TooSmall
from recommend.history import sample_key
from recommend.journeys import (
    ExplorerRule,
    JourneyConfig,
    JourneyInputs,
    TransitionModel,
    explorer_rule,
    fit_transition_model,
    history_weights,
    user_exploration,
)

logger = logging.getLogger(__name__)

MODEL = "transition_model"
CLUSTERS_ONLY = "transition_model (clusters only)"
POPULARITY = "popularity"
NEIGHBOURS = "nearest_neighbours"
Ranker = Callable[[dict[int, float]], np.ndarray]


@dataclass(frozen=True)
class JourneyEvaluation:
    """The hit-rate table (one row per ranker) and how it was obtained."""

    table: pd.DataFrame
    rule: ExplorerRule
    train_explorers: int
    test_explorers: int
    k: int

    def markdown(self) -> str:
        """The table as markdown (rates rounded), for asset metadata and reports."""
        shown = self.table.copy()
        for column in shown.columns:
            if shown[column].dtype.kind == "f":
                shown[column] = shown[column].round(4)
        return shown.reset_index().to_markdown(index=False)


def split_explorers(
    explorers: Sequence[str], test_fraction: float, seed: int
) -> tuple[list[str], list[str]]:
    """``(train, test)`` explorers: the first ``test_fraction`` by seeded hash are held out."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    ordered = sorted(map(str, explorers), key=lambda u: (sample_key(u, seed), u))
    n_test = min(len(ordered) - 1, max(1, math.ceil(test_fraction * len(ordered))))
    return sorted(ordered[n_test:]), sorted(ordered[:n_test])


def _train_inputs(
    inputs: JourneyInputs, held_out: set[str], colistening: pd.DataFrame | None
) -> JourneyInputs:
    """The inputs without the held-out users; listeners counted on the training users only."""
    discoveries = inputs.discoveries[~inputs.discoveries["user_id"].isin(held_out)]
    listened = colistening if colistening is not None else discoveries
    listened = listened[~listened["user_id"].isin(held_out)]
    listeners = listened.groupby("artist_id")["user_id"].nunique()
    artists = inputs.artists.assign(
        listeners=inputs.artists["artist_id"].map(listeners).fillna(0).astype("int64")
    )
    active = inputs.active_weeks[~inputs.active_weeks.index.isin(held_out)]
    return JourneyInputs(
        discoveries.reset_index(drop=True), active, artists, inputs.basis, inputs.cluster_basis
    )


def _clusters_only(model: TransitionModel) -> TransitionModel:
    n = len(model.artist_ids)
    return replace(
        model,
        counts=sparse.csr_matrix((n, n)),
        totals=np.zeros(n),
        backed_off=np.zeros(n),
        explorer_counts=sparse.csr_matrix((n, n), dtype=np.int64),
        _index=dict(model.index),
        _id_rank=model.id_rank,
    )


def _neighbour_ranker(pairs: pd.DataFrame, index: dict[str, int], tie_break: np.ndarray) -> Ranker:
    """Cosine item-item scores of a binary user x artist matrix, summed over a history (ties,
    e.g. artists nobody co-listened, broken by ``tie_break``: popularity)."""
    rows = pairs["artist_id"].map(index)
    pairs = pairs[rows.notna()].drop_duplicates(["user_id", "artist_id"])
    users = pairs["user_id"].astype("category").cat.codes.to_numpy()
    artists = pairs["artist_id"].map(index).to_numpy(dtype=np.int64)
    matrix = sparse.csr_matrix(
        (np.ones(len(pairs)), (users, artists)), shape=(int(users.max(initial=-1)) + 1, len(index))
    )
    norms = np.sqrt(np.asarray(matrix.sum(axis=0)).ravel())
    inverse = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    columns = matrix.tocsc()

    def rank(weighted: dict[int, float]) -> np.ndarray:
        vector = np.zeros(len(index))
        for row, weight in weighted.items():
            vector[row] = weight * inverse[row]
        return np.asarray(columns.T @ (columns @ vector)).ravel() * inverse + tie_break

    return rank


def _rankers(
    model: TransitionModel, train: JourneyInputs, colistening: pd.DataFrame | None
) -> dict[str, Ranker]:
    index = model.index
    popularity = (
        train.discoveries["artist_id"].value_counts().reindex(model.artist_ids).fillna(0)
    ).to_numpy(dtype=np.float64)
    # ties broken towards the lower row (artist id order) so popularity is deterministic
    popularity = popularity - np.arange(len(popularity)) * 1e-9
    pairs = train.discoveries if colistening is None else colistening
    clusters = _clusters_only(model)
    return {
        MODEL: model.scores,
        CLUSTERS_ONLY: clusters.scores,
        POPULARITY: lambda weighted: popularity,
        NEIGHBOURS: _neighbour_ranker(
            pairs[["user_id", "artist_id"]], index, popularity / (popularity.max() + 1) * 1e-9
        ),
    }


def _user_steps(own: pd.DataFrame, index: dict[str, int]) -> list[np.ndarray]:
    rows = own["artist_id"].map(index)
    own = own[rows.notna()]
    rows = rows[rows.notna()].to_numpy(dtype=np.int64)
    bounds = np.flatnonzero(np.diff(own["step"].to_numpy())) + 1
    return np.split(rows, bounds)


def _score_step(scores: np.ndarray, known: np.ndarray, targets: np.ndarray, k: int) -> tuple:
    """``(hit, recall, reciprocal rank)`` of one prediction (known artists excluded)."""
    scores = scores.astype(np.float64, copy=True)
    scores[known] = -np.inf
    top = np.argpartition(-scores, min(k, len(scores) - 1))[:k]
    top = top[np.argsort(-scores[top], kind="stable")]
    found = np.isin(top, targets)
    hit = bool(found.any())
    rank = int(np.argmax(found)) + 1 if hit else 0
    return hit, found.sum() / min(k, len(targets)), (1.0 / rank if hit else 0.0)


def evaluate_journeys(
    inputs: JourneyInputs,
    config: JourneyConfig | None = None,
    *,
    colistening: pd.DataFrame | None = None,
    test_fraction: float = 0.3,
    seed: int = 42,
    k: int = 10,
    max_steps_per_user: int = 200,
    explorers: Collection[str] | None = None,
) -> JourneyEvaluation:
    """Hit rate@k (and recall@k, MRR@k) of the next new artist of held-out explorers.

    Parameters
    ----------
    inputs
        From :func:`recommend.journeys.read_journey_inputs` (every user's discoveries).
    config
        The model's config (the one served).
    colistening
        ``user_id, artist_id`` pairs the neighbours and the listener counts are fitted on (the
        held-out users' rows are dropped here); default: the discoveries.
    test_fraction, seed
        Share of explorers held out, and the seed of the split.
    k
        Cut-off of the ranking.
    max_steps_per_user
        At most this many (the first) predictions per held-out explorer.
    explorers
        Split these users instead of the explorers the rule finds (e.g. the sample's planted
        explorers).

    Raises
    ------
    TooSmall
        Fewer than two explorers, or no held-out step to predict.
    """
    config = config or JourneyConfig()
    rule = explorer_rule(user_exploration(inputs), config)
    chosen = rule.explorers if explorers is None else tuple(sorted(map(str, explorers)))
    if len(chosen) < 2:
        raise TooSmall(f"{rule.describe()}; at least two explorers are needed to hold one out")
    train_users, test_users = split_explorers(chosen, test_fraction, seed)
    held_out = set(test_users)
    train = _train_inputs(inputs, held_out, colistening)
    model = fit_transition_model(train, config, explorers=train_users)
    listens = None if colistening is None else colistening[~colistening["user_id"].isin(held_out)]
    rankers = _rankers(model, train, listens)
    totals = {name: np.zeros(3) for name in rankers}
    predictions, users = 0, 0
    test = inputs.discoveries[inputs.discoveries["user_id"].isin(held_out)]
    for _, own in test.groupby("user_id", sort=True):
        steps = _user_steps(own, model.index)
        made = 0
        for t in range(1, min(len(steps), max_steps_per_user + 1)):
            known = np.concatenate(steps[:t])
            weighted = history_weights(steps[:t], config)
            for name, rank in rankers.items():
                totals[name] += _score_step(rank(weighted), known, steps[t], k)
            made += 1
        predictions += made
        users += made > 0
    if not predictions:
        raise TooSmall("the held-out explorers have no discovery step after their first")
    table = pd.DataFrame(
        {
            f"hit_rate@{k}": {n: v[0] / predictions for n, v in totals.items()},
            f"recall@{k}": {n: v[1] / predictions for n, v in totals.items()},
            f"mrr@{k}": {n: v[2] / predictions for n, v in totals.items()},
        }
    )
    rate = table[f"hit_rate@{k}"]
    table[f"hit_rate@{k}_ci95"] = 1.96 * np.sqrt(rate * (1 - rate) / predictions)
    table["predictions"] = predictions
    table["test_users"] = users
    table.index.name = "model"
    logger.info("journey evaluation: %s", rate.round(4).to_dict())
    return JourneyEvaluation(table, rule, len(train_users), len(test_users), k)
