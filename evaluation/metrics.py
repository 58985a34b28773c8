"""Offline evaluation: holdout splits, ranking metrics, beyond-accuracy metrics, model tables.

Splits work on golden ``listens`` frames (``user_id, item_id, plays[, first_ts, last_ts]``):

* :func:`holdout_split`: seeded per-user holdout (20% of each user's items to test; users with
  fewer than ``min_items`` items stay in train only);
* :func:`validation_split`: the same split applied to *train*, for tuning (test stays unseen);
* :func:`time_split`: listens whose ``first_ts`` falls in the last ``weeks`` weeks go to test.

Metrics take a ranking ``{user_id: [item_id, ...]}`` (best first) and the test frame, so any
recommender can be scored: a CF model, a blend, or a function ``user_id -> [item_id, ...]`` (see
:func:`rank_all`). Definitions (binary relevance, users with at least one test item, averaged):

* precision@k = hits in top k / k
* recall@k = hits in top k / |test items|
* NDCG@k = DCG / IDCG with DCG = sum 1/log2(rank + 1) over hits (rank from 1) and IDCG the DCG of
  min(k, |test items|) hits at the top (the standard definition, as implicit's ``ndcg_at_k``)
* MAP@k = sum over hits of precision@rank / min(k, |test items|) (implicit's ``mean_average_
  precision_at_k``)

implicit's ``precision_at_k`` is micro-averaged hits / sum of min(k, |test items|), and its
``ranking_metrics_at_k`` needs an implicit model; these functions score any ranking instead, and
:func:`ranking_metrics` reports ``implicit_precision`` too so figures stay comparable.
Beyond accuracy: catalog coverage, novelty (mean self-information ``-log2(share of users who
played the item)`` in train) and intra-list diversity (mean pairwise cosine distance).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from embeddings.cf import CFConfig, FittedCF, Interactions, fit_cf
from embeddings.vectors import normalize_rows
from recommend.errors import TooSmall

logger = logging.getLogger(__name__)

Ranking = Mapping[str, Sequence[str]]
# training plays: a frame, or a recommend.history.PlayHistory (popularity(), played(users),
# catalog_size, interactions) when everyone's plays are held as a compact matrix only
TrainPlays = Any
DEFAULT_KS = (10, 30)


# ---------------------------------------------------------------------------------- splits
@dataclass(frozen=True)
class Split:
    """Train and test listens; ``test`` only holds users and items that appear in ``train``."""

    train: pd.DataFrame
    test: pd.DataFrame


def _check_listens(listens: pd.DataFrame, name: str = "listens") -> None:
    missing = {"user_id", "item_id"} - set(listens.columns)
    if missing:
        raise ValueError(f"{name} frame lacks columns {sorted(missing)}")
    if listens.empty:
        raise TooSmall(f"{name} frame is empty: nothing to split or evaluate")


def holdout_split(
    listens: pd.DataFrame,
    test_fraction: float = 0.2,
    *,
    min_items: int = 5,
    seed: int = 42,
) -> Split:
    """Seeded per-user holdout.

    Parameters
    ----------
    listens
        One row per (user, item).
    test_fraction
        Share of each eligible user's items moved to test (rounded, at least 1).
    min_items
        Users with fewer items stay entirely in train.
    seed
        Random seed; the same seed and data give the same split.

    Returns
    -------
    Split
        Test rows whose item never appears in train are moved back to train (a CF model cannot
        score them); the count is logged.
    """
    _check_listens(listens)
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    frame = listens.sort_values(["user_id", "item_id"], kind="mergesort").reset_index(drop=True)
    rng = np.random.default_rng(seed)
    keys = rng.random(len(frame))
    frame_rank = (
        pd.DataFrame({"user_id": frame["user_id"].to_numpy(), "key": keys})
        .groupby("user_id")["key"]
        .rank(method="first")
        .to_numpy()
    )
    sizes = frame.groupby("user_id")["item_id"].transform("size").to_numpy()
    n_test = np.maximum(1, np.rint(sizes * test_fraction)).astype(int)
    is_test = (sizes >= min_items) & (frame_rank <= n_test)
    return _finish_split(frame, is_test, "holdout")


def validation_split(
    train: pd.DataFrame, validation_fraction: float = 0.2, *, min_items: int = 5, seed: int = 7
) -> Split:
    """Carve a validation split out of ``train`` for tuning (the test split stays unseen).

    Returns a :class:`Split` whose ``train`` is the fitting part and ``test`` the validation part.
    """
    return holdout_split(train, validation_fraction, min_items=min_items, seed=seed)


def time_split(
    listens: pd.DataFrame, weeks: int = 4, *, timestamp_column: str = "first_ts"
) -> Split:
    """Listens whose ``timestamp_column`` lies in the last ``weeks`` weeks go to test.

    Raises
    ------
    ValueError
        The frame has no such column or it holds no timestamps (e.g. HetRec: use
        :func:`holdout_split`).
    """
    _check_listens(listens)
    if timestamp_column not in listens.columns:
        raise ValueError(
            f"listens has no {timestamp_column!r} column; a time split needs "
            "timestamps, use holdout_split instead"
        )
    stamps = pd.to_datetime(listens[timestamp_column], utc=True, errors="coerce")
    if stamps.isna().all():
        raise ValueError(f"listens.{timestamp_column} holds no timestamps; use holdout_split")
    if stamps.isna().any():
        raise ValueError(
            f"{int(stamps.isna().sum())} listens rows lack {timestamp_column}; "
            "a time split cannot place them"
        )
    cutoff = stamps.max() - pd.Timedelta(weeks=weeks)
    frame = listens.reset_index(drop=True)
    return _finish_split(frame, (stamps > cutoff).to_numpy(), f"time (after {cutoff})")


def _finish_split(frame: pd.DataFrame, is_test: np.ndarray, kind: str) -> Split:
    train = frame.loc[~is_test]
    test = frame.loc[is_test]
    cold = ~test["item_id"].isin(set(train["item_id"])) | ~test["user_id"].isin(
        set(train["user_id"])
    )
    if cold.any():
        logger.info(
            "%s split: %d test rows with an item or user unseen in train moved to train",
            kind,
            int(cold.sum()),
        )
        train = pd.concat([train, test.loc[cold]])
        test = test.loc[~cold]
    logger.info(
        "%s split: %d train rows, %d test rows, %d test users",
        kind,
        len(train),
        len(test),
        test["user_id"].nunique(),
    )
    return Split(train.reset_index(drop=True), test.reset_index(drop=True))


# ---------------------------------------------------------------------------------- rankings
def rank_all(
    recommender: Callable[[str, int], Sequence[str]] | Ranking,
    users: Iterable[str],
    k: int,
) -> dict[str, list[str]]:
    """Turn a recommender function ``(user_id, k) -> [item_id]`` or a ranking into a ranking."""
    if isinstance(recommender, Mapping):
        return {u: list(recommender.get(u, []))[:k] for u in users}
    return {u: list(recommender(u, k))[:k] for u in users}


def rank_fitted(fitted: FittedCF, users: Iterable[str], k: int) -> dict[str, list[str]]:
    """Top-``k`` items per user from a fitted CF model, training items excluded."""
    user_list = list(users)
    index = fitted.interactions.user_index
    unknown = [u for u in user_list if u not in index]
    if unknown:
        raise KeyError(f"{len(unknown)} users unknown to the CF model, e.g. {unknown[:5]}")
    rows = np.array([index[u] for u in user_list], dtype=np.int64)
    top = fitted.model.recommend_batch(rows, fitted.user_items[rows], n=k)
    item_ids = np.asarray(fitted.item_ids, dtype=object)
    return {u: list(item_ids[t]) for u, t in zip(user_list, top, strict=True)}


def _test_sets(test: pd.DataFrame) -> dict[str, set[str]]:
    return {u: set(g) for u, g in test.groupby("user_id")["item_id"]}


Z_95 = 1.959963984540054


def mean_interval(values: Sequence[float], z: float = Z_95) -> tuple[float, float]:
    """Normal-approximation confidence interval of a mean over users: ``mean +- z * sd /
    sqrt(n)`` (95% by default); deterministic, no resampling. ``(nan, nan)`` for fewer than
    two values."""
    array = np.asarray(values, dtype=np.float64)
    if len(array) < 2:
        return float("nan"), float("nan")
    mean = float(array.mean())
    half = z * float(array.std(ddof=1)) / np.sqrt(len(array))
    return mean - half, mean + half


def _played_by(train: TrainPlays, users: Iterable[str]) -> dict[str, set[str]]:
    """``{user: training items}`` for ``users`` only (never a set per user of all of train)."""
    wanted = set(users)
    if hasattr(train, "played"):
        return train.played(sorted(wanted))
    rows = train[train["user_id"].isin(wanted)]
    return {u: set(g) for u, g in rows.groupby("user_id")["item_id"]}


def ranking_metrics(
    ranking: Ranking,
    test: pd.DataFrame,
    k: int,
    train: TrainPlays | None = None,
    *,
    played: Mapping[str, set[str]] | None = None,
) -> dict[str, float]:
    """precision, recall, NDCG, MAP at ``k`` over the users of ``test``.

    Parameters
    ----------
    ranking
        ``{user_id: [item_id, ...]}`` best first; users of ``test`` that are missing count as
        empty lists (zero), never skipped.
    test
        Held-out listens (``user_id, item_id``).
    k
        Cut-off.
    train
        When given (a frame or a :class:`recommend.history.PlayHistory`), a ranking that
        contains a training item of its user raises ValueError (recommendations must exclude
        what the user already played).
    played
        ``{user: training items}`` of the test users, instead of ``train``.

    Returns
    -------
    dict
        ``precision, recall, ndcg, map, implicit_precision, users``, and the bounds of the 95%
        confidence interval of the mean over users of NDCG and recall (:func:`mean_interval`):
        ``ndcg_ci_low, ndcg_ci_high, recall_ci_low, recall_ci_high``.
    """
    _check_listens(test, "test")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    truth = _test_sets(test)
    if played is None and train is not None:
        played = _played_by(train, truth)
    if played is not None:
        _assert_no_train_items(ranking, played, truth)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    totals = dict.fromkeys(("precision", "recall", "ndcg", "map"), 0.0)
    per_user: dict[str, list[float]] = {"ndcg": [], "recall": []}
    hits_total = ideal_total = 0
    for user, relevant in truth.items():
        top = list(ranking.get(user, []))[:k]
        hits = np.array([item in relevant for item in top], dtype=bool)
        n_hits = int(hits.sum())
        ideal = min(k, len(relevant))
        totals["precision"] += n_hits / k
        hits_total += n_hits
        ideal_total += ideal
        totals["recall"] += n_hits / len(relevant)
        user_ndcg = float(discounts[: len(top)][hits].sum() / discounts[:ideal].sum())
        totals["ndcg"] += user_ndcg
        per_user["ndcg"].append(user_ndcg)
        per_user["recall"].append(n_hits / len(relevant))
        if n_hits:
            cumulative = np.cumsum(hits)
            ranks = np.flatnonzero(hits) + 1
            totals["map"] += float((cumulative[hits] / ranks).sum() / ideal)
    n_users = len(truth)
    result = {name: value / n_users for name, value in totals.items()}
    result["implicit_precision"] = hits_total / ideal_total
    result["users"] = float(n_users)
    for name, values in per_user.items():
        result[f"{name}_ci_low"], result[f"{name}_ci_high"] = mean_interval(values)
    return result


def _assert_no_train_items(
    ranking: Ranking, played: Mapping[str, set[str]], users: Iterable[str]
) -> None:
    for user in users:
        leaked = played.get(user, set()).intersection(ranking.get(user, []))
        if leaked:
            raise ValueError(
                f"ranking for user {user!r} contains {len(leaked)} training item(s), e.g. "
                f"{sorted(leaked)[:3]}; recommendations must exclude what the user played"
            )


def catalog_coverage(ranking: Ranking, catalog_size: int, k: int | None = None) -> float:
    """Share of the catalog that appears in at least one user's top-``k``."""
    if catalog_size < 1:
        raise ValueError(f"catalog_size must be >= 1, got {catalog_size}")
    shown = {item for items in ranking.values() for item in list(items)[:k]}
    return len(shown) / catalog_size


def item_popularity(train: TrainPlays) -> pd.Series:
    """Share of training users who played each item (index item_id)."""
    if hasattr(train, "popularity"):
        return train.popularity()
    _check_listens(train, "train")
    users = train["user_id"].nunique()
    return train.groupby("item_id")["user_id"].nunique() / users


def novelty(
    ranking: Ranking, popularity: Mapping[str, float] | pd.Series, k: int | None = None
) -> float:
    """Mean self-information ``-log2(popularity share)`` of recommended items (higher = rarer).

    Items missing from ``popularity`` (never played in train) raise KeyError.
    """
    shares = popularity if isinstance(popularity, Mapping) else popularity.to_dict()
    values = []
    for items in ranking.values():
        for item in list(items)[:k]:
            share = shares.get(item)
            if share is None or share <= 0:
                raise KeyError(
                    f"item {item!r} has no training popularity; novelty needs a share "
                    "> 0 for every recommended item"
                )
            values.append(-np.log2(share))
    return float(np.mean(values)) if values else 0.0


def intra_list_diversity(
    ranking: Ranking,
    item_vectors: Mapping[str, np.ndarray] | tuple[Sequence[str], np.ndarray],
    k: int | None = None,
    *,
    skip_missing: bool = False,
) -> float:
    """Mean over users of the mean pairwise cosine distance between their top-``k`` items.

    Parameters
    ----------
    item_vectors
        ``{item_id: vector}`` or ``(item_ids, matrix)``. Items without a vector raise KeyError,
        or with ``skip_missing`` are left out of their list (e.g. never-played tracks the
        content sources recommend, in a space of CF factors).
    """
    if isinstance(item_vectors, tuple):
        ids, matrix = item_vectors
        lookup = {item: i for i, item in enumerate(ids)}
        matrix = np.asarray(matrix, dtype=np.float64)
    else:
        ids = list(item_vectors)
        lookup = {item: i for i, item in enumerate(ids)}
        matrix = np.asarray([item_vectors[i] for i in ids], dtype=np.float64)
    normalised = normalize_rows(matrix, dtype=np.float64)
    per_user = []
    for user, items in ranking.items():
        top = list(items)[:k]
        missing = [i for i in top if i not in lookup]
        if missing and not skip_missing:
            raise KeyError(f"no vector for items {missing[:5]} recommended to {user!r}")
        top = [i for i in top if i in lookup]
        if len(top) < 2:
            continue
        vectors = normalised[[lookup[i] for i in top]]
        similarity = vectors @ vectors.T
        n = len(top)
        mean_similarity = (similarity.sum() - np.trace(similarity)) / (n * (n - 1))
        per_user.append(1.0 - mean_similarity)
    return float(np.mean(per_user)) if per_user else 0.0


def evaluate_ranking(
    ranking: Ranking,
    test: pd.DataFrame,
    train: TrainPlays,
    *,
    ks: Sequence[int] = DEFAULT_KS,
    catalog_size: int | None = None,
    item_vectors: Mapping[str, np.ndarray] | tuple[Sequence[str], np.ndarray] | None = None,
    popularity: pd.Series | None = None,
) -> dict[str, float]:
    """All metrics for one ranking: ``{metric@k: value}``, plus coverage/novelty/diversity@k
    and the bounds of the 95% confidence intervals of NDCG and recall over users
    (``ndcg@k_ci_low``, ``ndcg@k_ci_high``, ``recall@k_ci_low``, ``recall@k_ci_high``).

    ``train`` is a frame or a :class:`recommend.history.PlayHistory` (a sampled evaluation:
    only the test users' training items are looked up). ``catalog_size`` defaults to the
    number of distinct training items; ``popularity`` (:func:`item_popularity`) is computed
    from ``train`` unless given (score many rankings against one train).
    """
    catalog = catalog_size or _catalog_size(train)
    popularity = item_popularity(train) if popularity is None else popularity
    popularity = _with_unplayed(popularity, ranking)
    played = _played_by(train, set(test["user_id"]))
    row: dict[str, float] = {}
    for k in ks:
        metrics = ranking_metrics(ranking, test, k, played=played)
        for name in ("precision", "recall", "ndcg", "map"):
            row[f"{name}@{k}"] = metrics[name]
        for name in ("ndcg", "recall"):
            for bound in ("low", "high"):
                row[f"{name}@{k}_ci_{bound}"] = metrics[f"{name}_ci_{bound}"]
        row[f"coverage@{k}"] = catalog_coverage(ranking, catalog, k)
        row[f"distinct@{k}"] = float(
            len({i for items in ranking.values() for i in list(items)[:k]})
        )
        row[f"novelty@{k}"] = novelty(ranking, popularity, k)
        if item_vectors is not None:
            row[f"diversity@{k}"] = intra_list_diversity(
                ranking, item_vectors, k, skip_missing=True
            )
    row["users"] = metrics["users"]
    return row


def _with_unplayed(popularity: pd.Series, ranking: Ranking) -> pd.Series:
    """``popularity`` plus the recommended items nobody played in train (brand-new tracks the
    served playlists place by their audio), at the smallest share of a played item: as novel
    as the rarest played item, not infinitely so."""
    shown = {item for items in ranking.values() for item in items}
    unplayed = sorted(shown - set(popularity.index))
    if not unplayed or popularity.empty:
        return popularity
    floor = pd.Series(float(popularity.min()), index=pd.Index(unplayed, name=popularity.index.name))
    return pd.concat([popularity, floor])


def _catalog_size(train: TrainPlays) -> int:
    if hasattr(train, "catalog_size"):
        return int(train.catalog_size)
    return int(train["item_id"].nunique())


CI_SUFFIXES = ("_ci_low", "_ci_high")


def interval_columns(table: pd.DataFrame) -> list[str]:
    """The confidence-interval bound columns of an evaluation table."""
    return [c for c in table.columns if c.endswith(CI_SUFFIXES)]


def confidence_intervals(
    table: pd.DataFrame, metrics: Sequence[str] | None = None
) -> dict[str, dict[str, list[float]]]:
    """``{row: {metric: [low, high]}}`` from the ``*_ci_low``/``*_ci_high`` columns of an
    evaluation table (95% intervals of the mean over users), rounded, for asset metadata."""
    names = [c.removesuffix("_ci_low") for c in table.columns if c.endswith("_ci_low")]
    names = [n for n in names if metrics is None or n in metrics]
    return {
        str(label): {
            name: [
                round(float(table.loc[label, f"{name}_ci_low"]), 4),
                round(float(table.loc[label, f"{name}_ci_high"]), 4),
            ]
            for name in names
        }
        for label in table.index
    }


def evaluate_models(
    train: TrainPlays,
    test: pd.DataFrame,
    models: Mapping[str, CFConfig | str],
    k: Sequence[int] = DEFAULT_KS,
    *,
    num_threads: int = 0,
    item_vectors: Mapping[str, np.ndarray] | tuple[Sequence[str], np.ndarray] | None = None,
) -> pd.DataFrame:
    """Fit each model on ``train`` and score it on ``test``; one row per model.

    Parameters
    ----------
    train
        The training plays: a frame, or a :class:`recommend.history.PlayHistory` (everyone's
        plays as a compact matrix, e.g. a sampled evaluation's whole history without its
        test rows).
    models
        ``{label: CFConfig}``; the string ``"popularity"`` means the popularity baseline.
    k
        Cut-offs.
    item_vectors
        Vectors for intra-list diversity (optional).

    Returns
    -------
    pandas.DataFrame
        Index ``model``; columns ``precision@k, recall@k, ndcg@k, map@k, coverage@k,
        novelty@k[, diversity@k]`` for each k, ``users``, ``fit_seconds``.
    """
    if not models:
        raise ValueError("no models to evaluate")
    interactions = (
        train.interactions if hasattr(train, "interactions") else Interactions.from_listens(train)
    )
    users = sorted(set(test["user_id"]))
    popularity = item_popularity(train)
    rows = []
    for label, config in models.items():
        if isinstance(config, str):
            if config != "popularity":
                raise ValueError(
                    f"model {label!r}: {config!r} is neither a CFConfig nor 'popularity'"
                )
            config = CFConfig(model="popularity", weighting="raw")
        fitted = fit_cf(interactions, config, num_threads=num_threads, compute_loss=False)
        ranking = rank_fitted(fitted, users, max(k))
        row = evaluate_ranking(
            ranking, test, train, ks=k, item_vectors=item_vectors, popularity=popularity
        )
        row["fit_seconds"] = fitted.fit_seconds
        rows.append({"model": label, **row})
        logger.info(
            "evaluated %s: %s",
            label,
            {key: round(v, 4) for key, v in row.items() if key.startswith("ndcg")},
        )
    return pd.DataFrame(rows).set_index("model")


def metrics_bar_chart(
    table: pd.DataFrame,
    metrics: Sequence[str] = ("ndcg@10", "recall@10", "coverage@10"),
    title: str = "Offline evaluation",
) -> bytes:
    """A grouped bar chart (PNG bytes) of ``metrics`` per model from :func:`evaluate_models`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    missing = [m for m in metrics if m not in table.columns]
    if missing:
        raise KeyError(f"metrics {missing} not in the table; columns: {list(table.columns)}")
    figure, axis = plt.subplots(figsize=(1.6 + 1.2 * len(table), 3.6), dpi=100)
    width = 0.8 / len(metrics)
    positions = np.arange(len(table))
    for i, metric in enumerate(metrics):
        axis.bar(positions + i * width, table[metric].to_numpy(), width, label=metric)
    axis.set_xticks(positions + width * (len(metrics) - 1) / 2, list(table.index))
    axis.set_title(title)
    axis.legend(fontsize=8)
    axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()
