"""Collaborative filtering on implicit feedback (play counts): interactions, models, fit, persist.

The user x item matrix is built from a golden ``listens`` frame (``user_id, item_id, plays``) with
stable id <-> index maps (ids sorted), weighted into confidences, and factorised or modelled by:

==================  =================================================================
``als``             implicit's AlternatingLeastSquares (default)
``bpr``             implicit's BayesianPersonalizedRanking
``item_knn``        implicit's CosineRecommender (item-item cosine, K neighbours)
``item_knn_bm25``   implicit's BM25Recommender
``ease``            EASE (Steck 2019), closed form on the ``ease_max_items`` most listened
                    items with >= 2 listeners (the others come from the other sources)
``popularity``      listener counts (the baseline)
==================  =================================================================

Every model follows the :class:`CFModel` contract. :func:`fit_cf` returns a :class:`FittedCF`
(model, id maps, training matrix, config, version, fit seconds, loss) that saves to a folder of
``.npz`` and ``.json`` files; :func:`cf_version` gives the version *before* fitting so a caller can
skip the fit when :func:`has_fitted` says a saved model of that version exists.

Example usage::

    fitted = fit_cf(listens, CF_PRESETS["als"])
    fitted.save("models/cf")
    items, scores = fitted.model.recommend(0, fitted.user_items[0], n=10)
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import warnings
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from scipy import sparse
from threadpoolctl import threadpool_limits

from embeddings.vectors import normalize_rows, top_k_indices

logger = logging.getLogger(__name__)

WEIGHTINGS = ("log", "bm25", "raw", "binary")
MODEL_KINDS = (
    "als",
    "bpr",
    "item_knn",
    "item_knn_bm25",
    "ease",
    "rp3beta",
    "user_knn",
    "popularity",
    "mllib_als",
)
_META_FILE = "meta.json"
_MODEL_FILE = "model.npz"
_INTERACTIONS_FILE = "interactions.npz"
FORMAT_VERSION = 1
BM25_FLOOR = 1e-3


# ---------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class CFConfig:
    """Hyper-parameters of one CF model; part of the model version hash.

    Parameters
    ----------
    model
        One of ``als``, ``bpr``, ``item_knn``, ``item_knn_bm25``, ``ease``, ``rp3beta``,
        ``user_knn``, ``popularity``, ``mllib_als`` (Spark MLlib's implicit ALS, same factors
        contract as ``als``; :mod:`embeddings.mllib_als`).
    factors, regularization, iterations
        Matrix factorisation size, L2 penalty and epochs (ALS, BPR).
    weighting
        Confidence from plays: ``"log"`` (1 + alpha * log1p(plays)), ``"bm25"`` (implicit's
        ``bm25_weight`` with ``bm25_k1``, ``bm25_b``), ``"raw"`` (plays) or ``"binary"`` (1).
    alpha
        Scale of the ``log`` weighting.
    bm25_k1, bm25_b
        BM25 parameters of the ``bm25`` weighting and of the ``item_knn_bm25`` model.
    learning_rate
        BPR step size.
    neighbours
        K of the item-kNN models and RP3beta (items kept per item); user-kNN: users asked.
    rp3_alpha, rp3_beta
        RP3beta (Paudel et al. 2017): exponent of the random walk's transition probabilities
        and the popularity penalty ``W[:, j] /= listeners_j ** beta``.
    ease_lambda, ease_min_listeners
        EASE L2 penalty and the listener count an item needs to be modelled.
    ease_max_items
        EASE models at most this many items: the most listened ones (ties: the lower item id).
        Its fit holds a dense float64 ``N x N`` Gram matrix inverted in place plus the float32
        weights, 12 bytes x N^2: 1.2 GB at the default 10,000 (the weights, 400 MB, are what
        the stored model and every reader of it hold). Items outside the top N get no EASE
        score; item-kNN, ALS, text, audio and popularity still propose them.
    seed
        Random seed (ALS, BPR initialisation and sampling).
    """

    model: str = "als"
    factors: int = 64
    regularization: float = 0.05
    iterations: int = 15
    weighting: str = "bm25"
    alpha: float = 1.0
    bm25_k1: float = 100.0
    bm25_b: float = 0.8
    learning_rate: float = 0.01
    neighbours: int = 100
    ease_lambda: float = 500.0
    ease_min_listeners: int = 2
    ease_max_items: int = 10_000
    rp3_alpha: float = 1.0
    rp3_beta: float = 0.25
    seed: int = 42

    def __post_init__(self) -> None:
        if self.model not in MODEL_KINDS:
            raise ValueError(f"CFConfig.model {self.model!r} is not one of {MODEL_KINDS}")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"CFConfig.weighting {self.weighting!r} is not one of {WEIGHTINGS}")
        for name in ("factors", "iterations", "neighbours", "ease_min_listeners", "ease_max_items"):
            if getattr(self, name) < 1:
                raise ValueError(f"CFConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in (
            "regularization",
            "alpha",
            "learning_rate",
            "ease_lambda",
            "bm25_k1",
            "rp3_alpha",
            "rp3_beta",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"CFConfig.{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.bm25_b <= 1:
            raise ValueError(f"CFConfig.bm25_b must be in [0, 1], got {self.bm25_b}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-ready)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CFConfig:
        """Build from a dict; unknown keys are an error naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown CFConfig keys {unknown}; known: {sorted(known)}")
        return cls(**values)

    def with_(self, **changes: Any) -> CFConfig:
        """A copy with some fields changed."""
        return replace(self, **changes)


# Tuned on a HetRec validation split carved from train (evaluation.metrics.validation_split;
# the test split is never used for tuning). Validation NDCG@10: item_knn K=100/200/400/800 ->
# 0.140/0.154/0.163/0.165; ALS bm25 0.120-0.125, ALS log alpha=5 reg=5 0.160; BPR lr 0.01 x 300
# epochs 0.106 (lr 0.05-0.1 worse); EASE lambda 300/1000/3000 -> 0.155/0.170/0.179.
CF_PRESETS: dict[str, CFConfig] = {
    "popularity": CFConfig(model="popularity", weighting="raw"),
    "als": CFConfig(
        model="als", factors=64, regularization=5.0, iterations=15, weighting="log", alpha=5.0
    ),
    # the reference configuration of DESIGN.md (implicit used directly: ALS 64 factors, BM25)
    "als_bm25": CFConfig(
        model="als",
        factors=64,
        regularization=0.05,
        iterations=15,
        weighting="bm25",
        bm25_k1=100.0,
        bm25_b=0.8,
    ),
    "bpr": CFConfig(
        model="bpr",
        factors=64,
        learning_rate=0.01,
        regularization=0.01,
        iterations=300,
        weighting="raw",
    ),
    "item_knn": CFConfig(model="item_knn", neighbours=400, weighting="log", alpha=1.0),
    "ease": CFConfig(model="ease", weighting="log", alpha=1.0, ease_lambda=3000.0),
    # chosen on a HetRec validation split carved from train (seed 42): RP3beta beta 0.25 sits
    # between 0.2 (NDCG@10 0.168, 5.7k distinct@30) and 0.3 (0.167, 9.7k); EASE 0.179, 2.0k
    "rp3beta": CFConfig(
        model="rp3beta", weighting="binary", neighbours=200, rp3_alpha=1.0, rp3_beta=0.25
    ),
    "user_knn": CFConfig(model="user_knn", weighting="log", alpha=1.0, neighbours=50),
    # Spark MLlib's ALS with the ALS preset's factors and weighting; MLlib scales the L2 penalty
    # by each row's plays, so 5.0 / ~40 artists per HetRec user ~ 0.1 (NDCG@10 within 0.005 of
    # implicit's on a HetRec holdout: tests/test_mllib_als.py)
    "mllib_als": CFConfig(
        model="mllib_als", factors=64, regularization=0.1, iterations=15, weighting="log", alpha=5.0
    ),
}
DEFAULT_CONFIG = CF_PRESETS["als"]


# ---------------------------------------------------------------------------------- data
@dataclass(frozen=True)
class Interactions:
    """A user x item matrix of raw play counts with stable id <-> index maps.

    Attributes
    ----------
    user_ids, item_ids
        Ids by index (row / column order).
    plays
        CSR ``(n_users, n_items)`` float32 raw plays; rows and columns follow the id lists.
    """

    user_ids: list[str]
    item_ids: list[str]
    plays: sparse.csr_matrix
    user_index: dict[str, int] = field(repr=False, default_factory=dict)
    item_index: dict[str, int] = field(repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        if not self.user_index:
            object.__setattr__(self, "user_index", {u: i for i, u in enumerate(self.user_ids)})
        if not self.item_index:
            object.__setattr__(self, "item_index", {t: i for i, t in enumerate(self.item_ids)})

    @property
    def shape(self) -> tuple[int, int]:
        return self.plays.shape

    @classmethod
    def from_listens(
        cls,
        listens: pd.DataFrame,
        user_ids: list[str] | None = None,
        item_ids: list[str] | None = None,
    ) -> Interactions:
        """Build the matrix from a golden ``listens`` frame.

        Parameters
        ----------
        listens
            Columns ``user_id``, ``item_id`` (strings) and ``plays`` (> 0), one row per pair.
        user_ids, item_ids
            Fixed id universes (e.g. the train matrix's, to build a test matrix on the same
            indices). Default: the sorted unique ids of ``listens``.

        Raises
        ------
        ValueError
            Missing columns, an empty frame, plays not > 0, duplicate (user, item) rows, or ids
            outside the given universes.
        """
        missing = {"user_id", "item_id", "plays"} - set(listens.columns)
        if missing:
            raise ValueError(
                f"listens frame lacks columns {sorted(missing)}; it needs user_id, item_id, plays"
            )
        if user_ids is None and item_ids is None and listens.empty:
            raise ValueError("listens frame is empty: no interactions to build a CF matrix from")
        users = listens["user_id"].astype(str).to_numpy()
        items = listens["item_id"].astype(str).to_numpy()
        plays = pd.to_numeric(listens["plays"], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(plays) | (plays <= 0)
        if bad.any():
            raise ValueError(
                f"{int(bad.sum())} listens rows have plays that are not a number > 0, e.g. "
                f"{listens.loc[bad].head(3).to_dict('records')}; fix or quarantine them upstream"
            )
        user_codes = pd.factorize(users)[0].astype(np.int64)
        item_codes = pd.factorize(items)[0].astype(np.int64)
        duplicated = pd.Series(user_codes * (int(item_codes.max(initial=0)) + 1) + item_codes)
        duplicated = duplicated.duplicated()
        if duplicated.any():
            raise ValueError(
                f"{int(duplicated.sum())} duplicate (user_id, item_id) rows in listens, e.g. "
                f"{listens.loc[duplicated.to_numpy()].head(3)[['user_id', 'item_id']].to_dict('records')}"
                "; aggregate plays per pair first"
            )
        user_list = sorted(set(users)) if user_ids is None else [str(u) for u in user_ids]
        item_list = sorted(set(items)) if item_ids is None else [str(i) for i in item_ids]
        user_index = {u: i for i, u in enumerate(user_list)}
        item_index = {t: i for i, t in enumerate(item_list)}
        rows = _lookup(users, user_list, "user_id")
        cols = _lookup(items, item_list, "item_id")
        return cls.from_codes(user_list, item_list, rows, cols, plays, user_index, item_index)

    @classmethod
    def from_codes(
        cls,
        user_ids: list[str],
        item_ids: list[str],
        rows: np.ndarray,
        cols: np.ndarray,
        plays: np.ndarray,
        user_index: dict[str, int] | None = None,
        item_index: dict[str, int] | None = None,
    ) -> Interactions:
        """Build the matrix from integer positions into ``user_ids`` and ``item_ids`` (one
        entry per distinct pair, plays > 0), e.g. computed by the warehouse
        (:func:`recommend.history.interactions_before`): no frame of string ids is needed."""
        matrix = sparse.csr_matrix(
            (np.asarray(plays).astype(np.float32), (rows, cols)),
            shape=(len(user_ids), len(item_ids)),
        )
        matrix.sort_indices()
        if matrix.shape[0] == 0 or matrix.shape[1] == 0:
            raise ValueError(f"CF matrix would be empty ({matrix.shape}): no users or no items")
        return cls(user_ids, item_ids, matrix, user_index or {}, item_index or {})

    def without(self, pairs: pd.DataFrame) -> Interactions:
        """The same ids without the plays of ``pairs`` (``user_id, item_id``; e.g. a holdout's
        test rows): the training matrix of a split, built without a frame of everyone's plays.
        Rows and columns that end up empty stay (same ids, same indices)."""
        rows = _lookup(pairs["user_id"].astype(str).to_numpy(), self.user_ids, "user_id")
        cols = _lookup(pairs["item_id"].astype(str).to_numpy(), self.item_ids, "item_id")
        plays = self.plays
        n_items = np.int64(plays.shape[1])
        entry_rows = np.repeat(np.arange(plays.shape[0], dtype=np.int64), np.diff(plays.indptr))
        keep = ~np.isin(entry_rows * n_items + plays.indices, rows * n_items + cols)
        counts = np.bincount(entry_rows[keep], minlength=plays.shape[0])
        index_dtype = plays.indices.dtype
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(index_dtype)
        matrix = sparse.csr_matrix(
            (plays.data[keep], plays.indices[keep].astype(index_dtype), indptr),
            shape=plays.shape,
        )
        return Interactions(self.user_ids, self.item_ids, matrix, self.user_index, self.item_index)

    def weighted(self, config: CFConfig) -> sparse.csr_matrix:
        """Confidence matrix (float32 CSR) from raw plays, per ``config.weighting``."""
        return weight_plays(
            self.plays,
            config.weighting,
            alpha=config.alpha,
            bm25_k1=config.bm25_k1,
            bm25_b=config.bm25_b,
        )

    def fingerprint(self) -> str:
        """Hash of ids and plays: same data -> same fingerprint."""
        digest = hashlib.sha256()
        digest.update("\x1e".join(self.user_ids).encode())
        digest.update(b"\x1d")
        digest.update("\x1e".join(self.item_ids).encode())
        for array in (self.plays.indptr, self.plays.indices, self.plays.data):
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()


def _lookup(values: np.ndarray, ids: list[str], column: str) -> np.ndarray:
    positions = pd.Index(ids).get_indexer(values).astype(np.int64)
    unknown = positions < 0
    if unknown.any():
        examples = sorted(set(values[unknown]))[:5]
        raise ValueError(
            f"{int(unknown.sum())} listens rows have a {column} outside the given id list, e.g. "
            f"{examples}; build both matrices on the same universe or drop those rows explicitly"
        )
    return positions


def weight_plays(
    plays: sparse.csr_matrix,
    weighting: str,
    *,
    alpha: float = 1.0,
    bm25_k1: float = 100.0,
    bm25_b: float = 0.8,
) -> sparse.csr_matrix:
    """Turn raw plays into confidences.

    Parameters
    ----------
    plays
        User x item raw play counts.
    weighting
        ``"log"``: ``1 + alpha * log1p(plays)``; ``"bm25"``: implicit's
        ``nearest_neighbours.bm25_weight(plays, K1, B)`` (rows are users, so document length is
        a user's total plays); ``"raw"``: plays unchanged; ``"binary"``: 1 per played item.

    Returns
    -------
    scipy.sparse.csr_matrix
        float32, same sparsity pattern.
    """
    matrix = sparse.csr_matrix(plays, dtype=np.float32, copy=True)
    if weighting == "raw":
        return matrix
    if weighting == "binary":
        matrix.data = np.ones_like(matrix.data)
        return matrix
    if weighting == "log":
        matrix.data = (1.0 + alpha * np.log1p(matrix.data)).astype(np.float32)
        return matrix
    if weighting == "bm25":
        from implicit.nearest_neighbours import bm25_weight

        weighted = bm25_weight(matrix, K1=bm25_k1, B=bm25_b).tocsr().astype(np.float32)
        weighted.sort_indices()
        # implicit's idf is log(N) - log1p(listeners): <= 0 for an item nearly every user played,
        # which ALS would read as "disliked". Keep such plays as a small positive confidence.
        floor = np.float32(BM25_FLOOR * max(float(weighted.data.max(initial=0.0)), 1e-6))
        low = weighted.data < floor
        if low.any():
            logger.warning(
                "bm25 weighting: %d of %d plays got a confidence <= 0 (items played by "
                "almost every user); raised to %.3g",
                int(low.sum()),
                weighted.nnz,
                floor,
            )
            weighted.data[low] = floor
        return weighted
    raise ValueError(f"weighting {weighting!r} is not one of {WEIGHTINGS}")


# ---------------------------------------------------------------------------------- models
def _top_n(
    scores: np.ndarray, n: int, exclude: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Indices and scores of the ``n`` highest finite scores, best first, minus ``exclude``.

    Ties go to the lower index (:func:`embeddings.vectors.top_k_indices`); scores are float32.
    """
    top = top_k_indices(scores, n, exclude)
    return top, np.asarray(scores)[top].astype(np.float32)


class CFModel(ABC):
    """The contract every CF model follows (after implicit's ``RecommenderBase``).

    Subclasses score items for a user from the user's weighted row of the training matrix
    (and their own state); ``recommend`` never returns items present in that row.
    """

    kind: ClassVar[str] = ""

    def __init__(self, config: CFConfig) -> None:
        self.config = config
        self.loss: float | None = None

    @abstractmethod
    def fit(self, user_items: sparse.csr_matrix) -> None:
        """Fit on a weighted user x item CSR matrix."""

    @property
    def user_factors(self) -> np.ndarray | None:
        """User vectors ``(n_users, d)`` for factor models, else None."""
        return None

    @property
    def item_factors(self) -> np.ndarray | None:
        """Item vectors ``(n_items, d)`` for factor models, else None."""
        return None

    @abstractmethod
    def score_users(self, user_indices: np.ndarray, user_items: sparse.csr_matrix) -> np.ndarray:
        """Dense scores ``(len(user_indices), n_items)``; ``user_items`` holds those users' rows.

        Items the model cannot score are ``-inf``.
        """

    def recommend(
        self, user_index: int, user_items_row: sparse.csr_matrix, n: int = 10
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` items (indices, scores) for one user, excluding items in the user's row.

        ``n`` larger than the remaining catalog returns all remaining items.
        """
        row = sparse.csr_matrix(user_items_row)
        scores = self.score_users(np.array([user_index]), row)[0]
        return _top_n(scores, n, exclude=row.indices)

    def recommend_batch(
        self,
        user_indices: np.ndarray,
        user_items: sparse.csr_matrix,
        n: int = 10,
        batch_size: int = 256,
    ) -> list[np.ndarray]:
        """Top-``n`` item indices for many users; ``user_items`` rows align with ``user_indices``."""
        user_indices = np.asarray(user_indices)
        results: list[np.ndarray] = []
        for start in range(0, len(user_indices), batch_size):
            stop = start + batch_size
            rows = user_items[start:stop]
            scores = self.score_users(user_indices[start:stop], rows)
            for offset in range(scores.shape[0]):
                results.append(_top_n(scores[offset], n, exclude=rows[offset].indices)[0])
        return results

    @abstractmethod
    def similar_items(self, item_index: int, n: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` items most similar to ``item_index`` (itself excluded), best first."""

    def save(self, path: str | Path) -> None:
        """Save the model state to an ``.npz`` file."""
        arrays = self._state()
        np.savez(
            path,
            kind=np.array(self.kind),
            config=np.array(json.dumps(self.config.to_dict())),
            **arrays,
        )

    @classmethod
    def load(cls, path: str | Path) -> CFModel:
        """Load a model saved with :meth:`save` (any kind)."""
        with np.load(path, allow_pickle=False) as data:
            kind = str(data["kind"])
            config = CFConfig.from_dict(json.loads(str(data["config"])))
            model = MODEL_CLASSES[kind](config)
            model._restore({k: data[k] for k in data.files if k not in ("kind", "config")})
        return model

    @abstractmethod
    def _state(self) -> dict[str, np.ndarray]:
        """Arrays that define the fitted model."""

    @abstractmethod
    def _restore(self, state: dict[str, np.ndarray]) -> None:
        """Inverse of :meth:`_state`."""

    def _require_fitted(self, thing: Any) -> Any:
        if thing is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit() first")
        return thing


def _cosine_neighbours(
    vectors: np.ndarray | sparse.spmatrix, index: int, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` rows closest to row ``index`` by cosine (itself excluded): indices, scores.

    ``vectors`` may be dense or sparse; zero rows score 0 against everything.
    """
    unit = normalize_rows(vectors, dtype=None)
    scores = unit @ unit[index].T
    if sparse.issparse(scores):
        scores = scores.toarray()
    return _top_n(np.asarray(scores).ravel(), n, exclude=[index])


def rows_matmul(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """``left @ right`` computed row by row, so that a row's result never depends on the
    other rows of ``left``.

    BLAS picks its kernel (and so the order it sums in, i.e. the last bits of the result) by
    the shape of the product: the scores of a user would depend on how many users are scored
    with them. One row at a time (a stack of 1-row products) keeps them exact whatever the
    user batch, at about five times the cost of one matrix product.
    """
    left = np.asarray(left)
    if left.ndim != 2:
        return left @ right
    return (left[:, None, :] @ right)[:, 0, :]


class _FactorModel(CFModel):
    """Shared scoring for models that end in user and item factors (dot product)."""

    def __init__(self, config: CFConfig) -> None:
        super().__init__(config)
        self._users: np.ndarray | None = None
        self._items: np.ndarray | None = None

    @property
    def user_factors(self) -> np.ndarray | None:
        return self._users

    @property
    def item_factors(self) -> np.ndarray | None:
        return self._items

    def score_users(self, user_indices: np.ndarray, user_items: sparse.csr_matrix) -> np.ndarray:
        users = self._require_fitted(self._users)
        return rows_matmul(users[np.atleast_1d(np.asarray(user_indices))], self._items.T)

    def similar_items(self, item_index: int, n: int = 10) -> tuple[np.ndarray, np.ndarray]:
        return _cosine_neighbours(self._require_fitted(self._items), item_index, n)

    def _state(self) -> dict[str, np.ndarray]:
        return {"user_factors": self._require_fitted(self._users), "item_factors": self._items}

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        self._users, self._items = state["user_factors"], state["item_factors"]


class ALSModel(_FactorModel):
    """implicit's AlternatingLeastSquares (CPU), seeded; loss computed once after the fit."""

    kind = "als"

    def __init__(self, config: CFConfig, num_threads: int = 0) -> None:
        super().__init__(config)
        self.num_threads = num_threads

    def fit(self, user_items: sparse.csr_matrix) -> None:
        from implicit.cpu.als import AlternatingLeastSquares

        model = AlternatingLeastSquares(
            factors=self.config.factors,
            regularization=self.config.regularization,
            alpha=1.0,
            iterations=self.config.iterations,
            random_state=self.config.seed,
            num_threads=self.num_threads,
        )
        model.fit(user_items, show_progress=False)
        self._users = np.asarray(model.user_factors)
        self._items = np.asarray(model.item_factors)
        self._implicit = model

    def training_loss(self, user_items: sparse.csr_matrix) -> float:
        """implicit's ALS loss on ``user_items`` (one extra pass)."""
        from implicit.cpu._als import calculate_loss

        return float(
            calculate_loss(
                user_items,
                self._require_fitted(self._users),
                self._items,
                self.config.regularization,
                num_threads=self.num_threads,
            )
        )


class BPRModel(_FactorModel):
    """implicit's BayesianPersonalizedRanking (CPU); its item factors carry a bias column."""

    kind = "bpr"

    def __init__(self, config: CFConfig, num_threads: int = 0) -> None:
        super().__init__(config)
        self.num_threads = num_threads

    def fit(self, user_items: sparse.csr_matrix) -> None:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        model = BayesianPersonalizedRanking(
            factors=self.config.factors,
            learning_rate=self.config.learning_rate,
            regularization=self.config.regularization,
            iterations=self.config.iterations,
            random_state=self.config.seed,
            num_threads=self.num_threads,
        )
        model.fit(user_items, show_progress=False)
        self._users = np.asarray(model.user_factors)
        self._items = np.asarray(model.item_factors)


class ItemKNNModel(CFModel):
    """implicit's item-item cosine (``item_knn``) or BM25 (``item_knn_bm25``) recommender."""

    kind = "item_knn"

    def __init__(self, config: CFConfig, num_threads: int = 0) -> None:
        super().__init__(config)
        self.num_threads = num_threads
        self.similarity: sparse.csr_matrix | None = None

    def fit(self, user_items: sparse.csr_matrix) -> None:
        from implicit.nearest_neighbours import BM25Recommender, CosineRecommender

        if self.config.model == "item_knn_bm25":
            model = BM25Recommender(
                K=self.config.neighbours,
                K1=self.config.bm25_k1,
                B=self.config.bm25_b,
                num_threads=self.num_threads,
            )
        else:
            model = CosineRecommender(K=self.config.neighbours, num_threads=self.num_threads)
        with warnings.catch_warnings():  # implicit converts its own bm25 COO output and warns
            warnings.filterwarnings("ignore", message="Method expects CSR input")
            model.fit(user_items, show_progress=False)
        self.similarity = sparse.csr_matrix(model.similarity, dtype=np.float32)

    def score_users(self, user_indices: np.ndarray, user_items: sparse.csr_matrix) -> np.ndarray:
        similarity = self._require_fitted(self.similarity)
        return np.asarray((user_items @ similarity).todense(), dtype=np.float64)

    def similar_items(self, item_index: int, n: int = 10) -> tuple[np.ndarray, np.ndarray]:
        similarity = self._require_fitted(self.similarity)
        row = similarity[item_index]
        scores = np.full(similarity.shape[1], -np.inf)
        scores[row.indices] = row.data
        return _top_n(scores, n, exclude=np.array([item_index]))

    def _state(self) -> dict[str, np.ndarray]:
        sim = self._require_fitted(self.similarity)
        return {
            "data": sim.data,
            "indices": sim.indices,
            "indptr": sim.indptr,
            "shape": np.array(sim.shape),
        }

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        self.similarity = sparse.csr_matrix(
            (state["data"], state["indices"], state["indptr"]), shape=tuple(state["shape"])
        )


# co-occurrence pairs multiplied at once while summing the EASE Gram matrix (~16 bytes each)
GRAM_BLOCK_PAIRS = 20_000_000


def ease_items(user_items: sparse.spmatrix, min_listeners: int, max_items: int) -> np.ndarray:
    """Column indices EASE models, ascending: the ``max_items`` items with the most listeners
    among those with at least ``min_listeners`` (ties: the lower index, i.e. the lower item id)."""
    matrix = sparse.csr_matrix(user_items)
    listeners = np.bincount(matrix.indices, minlength=matrix.shape[1])
    eligible = np.flatnonzero(listeners >= min_listeners)
    if len(eligible) > max_items:
        order = np.lexsort((eligible, -listeners[eligible]))
        eligible = np.sort(eligible[order[:max_items]])
    return eligible


def ease_gram(x: sparse.csr_matrix, block_pairs: int = GRAM_BLOCK_PAIRS) -> np.ndarray:
    """Dense ``X'X`` (float64), summed over blocks of users so that no sparse product holds
    more than about ``block_pairs`` co-occurrences (one block: exactly ``(X'X).todense()``)."""
    x = sparse.csr_matrix(x, dtype=np.float64)
    pairs = np.cumsum(np.diff(x.indptr).astype(np.int64) ** 2)
    if len(pairs) == 0 or pairs[-1] <= block_pairs:
        return np.asarray((x.T @ x).todense())
    gram = np.zeros((x.shape[1], x.shape[1]))
    start = 0
    while start < x.shape[0]:
        done = pairs[start - 1] if start else 0
        stop = max(start + 1, int(np.searchsorted(pairs, done + block_pairs, side="right")))
        block = x[start:stop]
        product = (block.T @ block).tocoo()
        gram[product.row, product.col] += product.data
        start = stop
    return gram


def _invert_in_place(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a symmetric positive definite float64 matrix, overwriting it (LAPACK LU)."""
    from scipy import linalg

    getrf, getri, getri_lwork = linalg.get_lapack_funcs(
        ("getrf", "getri", "getri_lwork"), (matrix,)
    )
    # the transpose is a Fortran-ordered view of the same buffer (and the same matrix)
    lu, pivots, info = getrf(matrix.T, overwrite_a=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE Gram matrix is singular (LAPACK getrf info={info})")
    work, info = getri_lwork(matrix.shape[0])
    inverse, info = getri(lu, pivots, lwork=int(work.real), overwrite_lu=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE Gram matrix inversion failed (getri info={info})")
    return inverse.T


class EASEModel(CFModel):
    """EASE (Steck 2019): ``B = I - P / diag(P)``, ``P = (X'X + lambda I)^-1``.

    Only the ``config.ease_max_items`` most listened items with at least
    ``config.ease_min_listeners`` listeners are modelled (:func:`ease_items`); the others score
    ``-inf`` (never recommended by EASE), which is why EASE covers fewer items. The Gram matrix
    is summed over user blocks (:func:`ease_gram`) and inverted in place, so the fit holds
    ``12 x N^2`` bytes, never ``items^2``.
    """

    kind = "ease"

    def __init__(self, config: CFConfig, num_threads: int = 0) -> None:
        super().__init__(config)
        self.weights: np.ndarray | None = None
        self.modelled_items: np.ndarray | None = None
        self.n_items = 0

    def fit(self, user_items: sparse.csr_matrix) -> None:
        modelled = ease_items(
            user_items, self.config.ease_min_listeners, self.config.ease_max_items
        )
        if len(modelled) == 0:
            raise ValueError(
                f"EASE has no item with >= {self.config.ease_min_listeners} listeners to model; "
                "lower ease_min_listeners or use another model"
            )
        x = sparse.csr_matrix(user_items[:, modelled], dtype=np.float64)
        gram = ease_gram(x)
        del x
        gram[np.diag_indices_from(gram)] += self.config.ease_lambda
        precision = _invert_in_place(gram)
        # B = -P / diag(P) column-wise, in place (no second N x N array)
        precision /= -np.diag(precision).copy()
        precision[np.diag_indices_from(precision)] = 0.0
        self.weights = precision.astype(np.float32)
        del gram, precision
        self.modelled_items = modelled
        self.n_items = user_items.shape[1]
        logger.info("EASE modelled %d of %d items", len(modelled), self.n_items)

    def score_users(self, user_indices: np.ndarray, user_items: sparse.csr_matrix) -> np.ndarray:
        weights = self._require_fitted(self.weights)
        scores = np.full((user_items.shape[0], self.n_items), -np.inf)
        rows = sparse.csr_matrix(user_items[:, self.modelled_items], dtype=np.float32)
        scores[:, self.modelled_items] = rows @ weights
        return scores

    def similar_items(self, item_index: int, n: int = 10) -> tuple[np.ndarray, np.ndarray]:
        weights = self._require_fitted(self.weights)
        position = np.searchsorted(self.modelled_items, item_index)
        scores = np.full(self.n_items, -np.inf)
        if position < len(self.modelled_items) and self.modelled_items[position] == item_index:
            scores[self.modelled_items] = weights[position]
        return _top_n(scores, n, exclude=np.array([item_index]))

    def _state(self) -> dict[str, np.ndarray]:
        return {
            "weights": self._require_fitted(self.weights),
            "modelled_items": self.modelled_items,
            "n_items": np.array(self.n_items),
        }

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        self.weights = state["weights"]
        self.modelled_items = state["modelled_items"]
        self.n_items = int(state["n_items"])


class PopularityModel(CFModel):
    """Scores every item by its listener count in the training matrix (the baseline)."""

    kind = "popularity"

    def __init__(self, config: CFConfig, num_threads: int = 0) -> None:
        super().__init__(config)
        self.listeners: np.ndarray | None = None

    def fit(self, user_items: sparse.csr_matrix) -> None:
        self.listeners = np.diff(sparse.csc_matrix(user_items).indptr).astype(np.float64)

    def score_users(self, user_indices: np.ndarray, user_items: sparse.csr_matrix) -> np.ndarray:
        listeners = self._require_fitted(self.listeners)
        return np.tile(listeners, (len(np.atleast_1d(user_indices)), 1))

    def similar_items(self, item_index: int, n: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The most popular other items (popularity has no notion of similarity)."""
        return _top_n(self._require_fitted(self.listeners), n, exclude=np.array([item_index]))

    def _state(self) -> dict[str, np.ndarray]:
        return {"listeners": self._require_fitted(self.listeners)}

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        self.listeners = state["listeners"]


class ItemKNNBM25Model(ItemKNNModel):
    """Item-kNN with implicit's BM25Recommender."""

    kind = "item_knn_bm25"


# items x items cells of RP3beta's walk computed at once while fitting (float64)
RP3_BLOCK_CELLS = 2**24


def _row_normalised(matrix: sparse.csr_matrix, power: float = 1.0) -> sparse.csr_matrix:
    """Rows scaled to sum 1, then every entry raised to ``power``."""
    sums = np.asarray(matrix.sum(axis=1), dtype=np.float64).ravel()
    scale = np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 0)
    out = sparse.csr_matrix(sparse.diags(scale) @ sparse.csr_matrix(matrix, dtype=np.float64))
    if power != 1.0:
        out.data = out.data**power
    return out


def rp3beta_similarity(binary: sparse.csr_matrix, config: CFConfig) -> sparse.csr_matrix:
    """RP3beta's item x item matrix (float32), the ``config.neighbours`` strongest per row.

    ``W = (P_iu^alpha @ P_ui^alpha) / listeners^beta``: the probability that a three-step walk
    item -> user -> item lands on each item, with popular items penalised. Built in blocks of
    item rows (at most :data:`RP3_BLOCK_CELLS` cells at once), never ``items^2`` floats.
    """
    user_item = _row_normalised(binary, config.rp3_alpha)
    item_user = _row_normalised(sparse.csr_matrix(binary.T), config.rp3_alpha)
    listeners = np.diff(sparse.csc_matrix(binary).indptr).astype(np.float64)
    penalty = np.divide(
        1.0, listeners**config.rp3_beta, out=np.zeros_like(listeners), where=listeners > 0
    )
    n_items = binary.shape[1]
    keep = min(config.neighbours, max(n_items - 1, 1))
    block = max(1, RP3_BLOCK_CELLS // max(n_items, 1))
    rows, cols, values = [], [], []
    for start in range(0, n_items, block):
        stop = min(start + block, n_items)
        dense = (item_user[start:stop] @ user_item).toarray() * penalty
        dense[np.arange(stop - start), np.arange(start, stop)] = 0.0
        top = top_k_indices(dense, keep)
        picked = np.take_along_axis(dense, top, axis=1)
        nonzero = picked > 0
        rows.append(np.repeat(np.arange(start, stop), nonzero.sum(axis=1)))
        cols.append(top[nonzero])
        values.append(picked[nonzero])
    return sparse.csr_matrix(
        (np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_items, n_items),
        dtype=np.float32,
    )


class RP3BetaModel(ItemKNNModel):
    """RP3beta (a graph random walk with a popularity penalty), scored like item-kNN."""

    kind = "rp3beta"

    def fit(self, user_items: sparse.csr_matrix) -> None:
        binary = weight_plays(user_items, "binary")
        self.similarity = rp3beta_similarity(binary, self.config)


class UserKNNModel(CFModel):
    """User-kNN: a user's ``neighbours`` most similar training users (cosine of the weighted
    rows) vote for the items they played, each with its similarity."""

    kind = "user_knn"

    def __init__(self, config: CFConfig, num_threads: int = 0) -> None:
        super().__init__(config)
        self.user_rows: sparse.csr_matrix | None = None
        self.item_rows: sparse.csr_matrix | None = None
        self._columns: sparse.csr_matrix | None = None  # user_rows.T as CSR, made once

    def fit(self, user_items: sparse.csr_matrix) -> None:
        self.user_rows = sparse.csr_matrix(normalize_rows(user_items, dtype=np.float32))
        self._columns = None
        self.item_rows = weight_plays(user_items, "binary")

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_columns": None}  # a cache: not stored with the model

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({"_columns": None, **state})  # models stored before the cache

    def nearest(
        self, user_indices: np.ndarray, user_items: sparse.csr_matrix
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per user: the indices of their nearest training users (never themselves) and the
        similarity to every training user (``(len(users), n_users)``)."""
        user_rows = self._require_fitted(self.user_rows)
        if self._columns is None:
            self._columns = sparse.csr_matrix(user_rows.T)  # scipy converts .T on every product
        unit = sparse.csr_matrix(normalize_rows(user_items, dtype=np.float32))
        similarity = np.asarray((unit @ self._columns).todense(), dtype=np.float64)
        own = np.asarray(user_indices, dtype=np.int64)
        inside = (own >= 0) & (own < similarity.shape[1])
        similarity[np.flatnonzero(inside), own[inside]] = 0.0
        keep = min(self.config.neighbours, similarity.shape[1])
        return top_k_indices(similarity, keep), similarity

    def score_users(self, user_indices: np.ndarray, user_items: sparse.csr_matrix) -> np.ndarray:
        item_rows = self._require_fitted(self.item_rows)
        nearest, similarity = self.nearest(user_indices, user_items)
        weights = np.zeros_like(similarity)
        np.put_along_axis(weights, nearest, np.take_along_axis(similarity, nearest, axis=1), 1)
        return np.asarray((sparse.csr_matrix(weights) @ item_rows).todense(), dtype=np.float64)

    def similar_items(self, item_index: int, n: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Items with the most similar listener sets (cosine of the item columns)."""
        item_rows = self._require_fitted(self.item_rows)
        return _cosine_neighbours(sparse.csr_matrix(item_rows.T), item_index, n)

    def _state(self) -> dict[str, np.ndarray]:
        state = {}
        for name in ("user_rows", "item_rows"):
            matrix = self._require_fitted(getattr(self, name))
            state |= {
                f"{name}_data": matrix.data,
                f"{name}_indices": matrix.indices,
                f"{name}_indptr": matrix.indptr,
                f"{name}_shape": np.array(matrix.shape),
            }
        return state

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        for name in ("user_rows", "item_rows"):
            matrix = sparse.csr_matrix(
                (state[f"{name}_data"], state[f"{name}_indices"], state[f"{name}_indptr"]),
                shape=tuple(state[f"{name}_shape"]),
            )
            setattr(self, name, matrix)
        self._columns = None


MODEL_CLASSES: dict[str, type[CFModel]] = {
    "als": ALSModel,
    "bpr": BPRModel,
    "item_knn": ItemKNNModel,
    "item_knn_bm25": ItemKNNBM25Model,
    "ease": EASEModel,
    "rp3beta": RP3BetaModel,
    "user_knn": UserKNNModel,
    "popularity": PopularityModel,
}
# Spark MLlib ALS behind the same contract (CFConfig(model="mllib_als")); pyspark loads at fit
import embeddings.mllib_als  # noqa: E402, F401


def make_model(config: CFConfig, num_threads: int = 0) -> CFModel:
    """An unfitted model of ``config.model``."""
    return MODEL_CLASSES[config.model](config, num_threads=num_threads)


# ---------------------------------------------------------------------------------- fit & persist
@dataclass
class FittedCF:
    """A fitted CF model with everything needed to serve and reproduce it.

    Attributes
    ----------
    model
        The fitted :class:`CFModel`.
    interactions
        Raw plays and id maps the model was fitted on.
    user_items
        The weighted training matrix (rows are used for scoring and to filter history).
    config, version
        The config and the version hash (data fingerprint + config).
    fit_seconds
        Wall time of ``model.fit``.
    loss
        Training loss when the model reports one (ALS), else None.
    """

    model: CFModel
    interactions: Interactions
    user_items: sparse.csr_matrix
    config: CFConfig
    version: str
    fit_seconds: float
    loss: float | None = None

    @property
    def user_ids(self) -> list[str]:
        return self.interactions.user_ids

    @property
    def item_ids(self) -> list[str]:
        return self.interactions.item_ids

    def save(self, directory: str | Path) -> Path:
        """Write ``model.npz``, ``interactions.npz`` and ``meta.json`` into ``directory``."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save(folder / _MODEL_FILE)
        plays = self.interactions.plays
        np.savez(
            folder / _INTERACTIONS_FILE,
            user_ids=np.array(self.user_ids, dtype=str),
            item_ids=np.array(self.item_ids, dtype=str),
            data=plays.data,
            indices=plays.indices,
            indptr=plays.indptr,
            shape=np.array(plays.shape),
        )
        meta = {
            "format_version": FORMAT_VERSION,
            "version": self.version,
            "config": self.config.to_dict(),
            "fit_seconds": self.fit_seconds,
            "loss": self.loss,
            "n_users": len(self.user_ids),
            "n_items": len(self.item_ids),
            "n_interactions": int(plays.nnz),
            "fingerprint": self.interactions.fingerprint(),
            "saved_at": time.time(),
        }
        (folder / _META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
        logger.info("saved CF model %s (%s) to %s", self.version, self.config.model, folder)
        return folder


def cf_version(interactions: Interactions, config: CFConfig) -> str:
    """Short hash of the data fingerprint and the config (the model version)."""
    payload = interactions.fingerprint() + json.dumps(config.to_dict(), sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def fit_cf(
    listens: pd.DataFrame | Interactions,
    config: CFConfig = DEFAULT_CONFIG,
    *,
    num_threads: int = 0,
    compute_loss: bool = True,
) -> FittedCF:
    """Build the matrix, weight it and fit the configured model.

    Parameters
    ----------
    listens
        A golden listens frame (``user_id, item_id, plays``) or prebuilt :class:`Interactions`.
    config
        Model and hyper-parameters.
    num_threads
        implicit's threads (0 = all cores). BLAS is limited to one thread during the fit, as
        implicit advises.
    compute_loss
        For ALS, compute the training loss once after the fit (one extra pass).

    Returns
    -------
    FittedCF
    """
    interactions = (
        listens if isinstance(listens, Interactions) else Interactions.from_listens(listens)
    )
    if interactions.plays.nnz == 0:
        raise ValueError("CF matrix has no interactions: nothing to fit")
    user_items = interactions.weighted(config)
    model = make_model(config, num_threads=num_threads)
    with threadpool_limits(1, "blas"):
        started = time.perf_counter()
        model.fit(user_items)
        fit_seconds = time.perf_counter() - started
        loss = None
        if compute_loss and isinstance(model, ALSModel):
            loss = model.training_loss(user_items)
    version = cf_version(interactions, config)
    logger.info(
        "fitted CF %s on %d users x %d items (%d listens) in %.2fs, version %s",
        config.model,
        *interactions.shape,
        interactions.plays.nnz,
        fit_seconds,
        version,
    )
    model.loss = loss
    return FittedCF(model, interactions, user_items, config, version, fit_seconds, loss)


def load_fitted(directory: str | Path) -> FittedCF:
    """Load a :class:`FittedCF` saved with :meth:`FittedCF.save`."""
    folder = Path(directory)
    meta_path = folder / _META_FILE
    if not meta_path.exists():
        raise FileNotFoundError(
            f"no saved CF model in {folder} ({_META_FILE} missing); "
            "fit and save one with fit_cf(...).save(folder)"
        )
    meta = json.loads(meta_path.read_text())
    config = CFConfig.from_dict(meta["config"])
    model = CFModel.load(folder / _MODEL_FILE)
    with np.load(folder / _INTERACTIONS_FILE, allow_pickle=False) as data:
        plays = sparse.csr_matrix(
            (data["data"], data["indices"], data["indptr"]), shape=tuple(data["shape"])
        )
        interactions = Interactions(
            [str(u) for u in data["user_ids"]], [str(i) for i in data["item_ids"]], plays
        )
    model.loss = meta.get("loss")
    return FittedCF(
        model,
        interactions,
        interactions.weighted(config),
        config,
        meta["version"],
        float(meta["fit_seconds"]),
        meta.get("loss"),
    )


def saved_version(directory: str | Path) -> str | None:
    """Version of the model saved in ``directory``, or None when there is none."""
    meta_path = Path(directory) / _META_FILE
    if not meta_path.exists() or not (Path(directory) / _MODEL_FILE).exists():
        return None
    return json.loads(meta_path.read_text()).get("version")


def has_fitted(directory: str | Path, version: str) -> bool:
    """True when ``directory`` holds a complete saved model of ``version`` (skip the refit)."""
    return saved_version(directory) == version
