"""Vector maths shared by the embedding kinds, and writing CF vectors to the vector store.

Example usage::

    top, scores = exact_top_k(item_vectors[:5], item_vectors, k=10, metric="COSINE")
    best = top_k_indices(scores_per_item, k=20, exclude=already_played)
    with VectorStore("data/vectors.db") as store:
        write_cf_vectors(store, fitted, item_names={"51": "Duran Duran"})
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from numpy.typing import DTypeLike
from scipy import sparse

from embeddings.vector_store import ProgressCallback, VectorStore, WriteReport

if TYPE_CHECKING:  # embeddings.cf uses the helpers below, so no import at run time
    from embeddings.cf import FittedCF

logger = logging.getLogger(__name__)

# The Milvus collection of each embedding kind: named here only.
CF_ITEMS_COLLECTION = "cf_items"
CF_USERS_COLLECTION = "cf_users"
TEXT_COLLECTION = "text_items"


def audio_collection(backend: str) -> str:
    """The Milvus collection of one audio backend's vectors."""
    return f"audio_{backend}"


@dataclass
class VectorSet:
    """Vectors of one embedding kind as the graph passes them downstream (an artifact).

    Attributes
    ----------
    ids, matrix
        Row ``i`` of ``matrix`` is the vector of ``ids[i]``.
    collection
        The Milvus collection that holds the same vectors for similarity search.
    signature
        The encoder that made them (model id and pooling), part of the version.
    """

    ids: list[str]
    matrix: np.ndarray
    collection: str
    signature: str = ""

    def __post_init__(self) -> None:
        self.ids = [str(i) for i in self.ids]
        self.matrix = np.asarray(self.matrix, dtype=np.float32)
        if len(self.ids) != len(self.matrix):
            raise ValueError(f"{len(self.ids)} ids but {len(self.matrix)} vectors")

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1]) if self.matrix.ndim == 2 else 0

    @property
    def version(self) -> str:
        """Hash of the ids, the vectors and the encoder signature."""
        digest = hashlib.sha256(f"{self.collection}|{self.signature}|".encode())
        digest.update("\n".join(self.ids).encode())
        digest.update(np.ascontiguousarray(self.matrix).tobytes())
        return digest.hexdigest()[:16]

    def as_table(self) -> tuple[list[str], np.ndarray] | None:
        """``(ids, matrix)`` for the recommenders, or None when the set is empty."""
        return (self.ids, self.matrix) if self.ids else None


@dataclass
class AudioEmbeddings:
    """Every embedded audio backend's vectors, the one the recommender uses, its attributes."""

    backend: str
    vectors: dict[str, VectorSet]
    attributes: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def primary(self) -> VectorSet:
        return self.vectors[self.backend]

    @property
    def version(self) -> str:
        parts = [self.backend, *(f"{b}:{v.version}" for b, v in sorted(self.vectors.items()))]
        attributes = self.attributes.to_json(orient="split", default_handler=str).encode()
        digest = hashlib.sha256("|".join(parts).encode() + attributes)
        return digest.hexdigest()[:16]


def normalize_rows(
    matrix: np.ndarray | sparse.spmatrix, dtype: DTypeLike | None = np.float32
) -> np.ndarray | sparse.csr_matrix:
    """Rows scaled to unit L2 norm; zero rows stay zero.

    Parameters
    ----------
    matrix : ndarray or scipy sparse matrix
        ``(n, d)``.
    dtype : numpy dtype or None, default float32
        Dtype of the result; None keeps a floating ``matrix``'s dtype (others become float64).

    Returns
    -------
    ndarray or scipy.sparse.csr_matrix
        ``(n, d)`` like ``matrix`` (a sparse ``matrix`` gives CSR).
    """
    if not sparse.issparse(matrix):
        matrix = np.asarray(matrix)
    if dtype is None:
        dtype = matrix.dtype if np.issubdtype(matrix.dtype, np.floating) else np.float64
    if sparse.issparse(matrix):
        matrix = sparse.csr_matrix(matrix, dtype=dtype)
        norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
        return sparse.diags((1.0 / np.where(norms == 0, 1.0, norms)).astype(dtype)) @ matrix
    matrix = np.asarray(matrix, dtype=dtype)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1.0, norms)


def top_k_indices(
    scores: np.ndarray,
    k: int,
    exclude: Sequence[int] | np.ndarray | None = None,
    *,
    tie_break: np.ndarray | None = None,
) -> np.ndarray:
    """Indices of the ``k`` highest scores, best first; equal scores go to the lower index.

    The answer is ``np.argsort(-scores, kind="stable")[..., :k]`` (with ``tie_break``:
    ``np.lexsort((tie_break, -scores))[..., :k]``), found in O(n) plus O(k log k) per row.

    Parameters
    ----------
    scores : ndarray
        ``(n,)`` or ``(n_rows, n)``; higher is better. ``-inf`` marks an item to leave out.
    k : int
        How many to keep, capped at ``n``; ``k <= 0`` keeps none.
    exclude : sequence of int, optional
        Positions along the last axis never returned (scored ``-inf`` on a copy).
    tie_break : ndarray, optional
        ``(n,)`` key that orders equal scores, smaller first (e.g. item ids); default the index.

    Returns
    -------
    ndarray of int64
        For 1-D ``scores``: the indices of the best finite scores only, so fewer than ``k``
        when fewer are finite. For 2-D: ``(n_rows, min(k, n))``; non-finite scores sort last,
        mask them with ``np.isfinite(np.take_along_axis(scores, top, axis=1))``.
    """
    scores = np.asarray(scores)
    if not np.issubdtype(scores.dtype, np.floating):
        scores = scores.astype(np.float64)
    if exclude is not None and len(exclude):
        scores = scores.copy()
        scores[..., np.asarray(exclude, dtype=np.int64)] = -np.inf
    key = None if tie_break is None else np.asarray(tie_break)
    if scores.ndim == 2:
        k = min(k, scores.shape[1])
        if k <= 0:
            return np.zeros((scores.shape[0], 0), dtype=np.int64)
        return _top_k_rows(-scores, k, key)
    if scores.ndim != 1:
        raise ValueError(f"scores must be 1-D or 2-D, got shape {scores.shape}")
    finite = np.isfinite(scores)
    kept = None if finite.all() else np.flatnonzero(finite)
    if kept is not None:
        scores = scores[kept]
        key = None if key is None else key[kept]
    k = min(k, len(scores))
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    top = _top_k_rows(-scores[None, :], k, key)[0]
    return top if kept is None else kept[top]


def _top_k_rows(neg: np.ndarray, k: int, key: np.ndarray | None) -> np.ndarray:
    """Per row of ``neg`` (minus the scores), the ``k`` (1..n) smallest in (value, key) order."""
    n_rows, n = neg.shape
    if k >= n:
        return _sort_columns(neg, np.broadcast_to(np.arange(n), (n_rows, n)), key)
    top = _sort_columns(neg, np.argpartition(neg, k - 1, axis=1)[:, :k], key)
    # argpartition picks arbitrarily among values equal to the k-th: redo rows that left some out
    kth = np.take_along_axis(neg, top[:, -1:], axis=1)
    chosen_ties = np.count_nonzero(np.take_along_axis(neg, top, axis=1) == kth, axis=1)
    for row in np.flatnonzero(np.count_nonzero(neg == kth, axis=1) > chosen_ties):
        values, boundary = neg[row], kth[row, 0]
        tied = np.flatnonzero(values == boundary)
        if key is not None:
            tied = tied[np.argsort(key[tied], kind="stable")]
        better = np.flatnonzero(values < boundary)
        columns = np.concatenate([better, tied[: k - len(better)]])
        top[row] = _sort_columns(values[None, :], columns[None, :], key)[0]
    return top


def _sort_columns(neg: np.ndarray, columns: np.ndarray, key: np.ndarray | None) -> np.ndarray:
    """``columns`` ``(n_rows, m)`` reordered per row by ``neg``, then ``key``, then index."""
    values = np.take_along_axis(neg, columns, axis=1)
    sort_keys = (columns, values) if key is None else (columns, key[columns], values)
    order = np.lexsort(sort_keys, axis=1)
    return np.take_along_axis(columns, order, axis=1).astype(np.int64, copy=False)


def pairwise_scores(queries: np.ndarray, matrix: np.ndarray, metric: str) -> np.ndarray:
    """Scores ``(n_queries, n_rows)`` under a Milvus metric: higher is closer for all three.

    COSINE: cosine similarity; IP: inner product; L2: minus the squared Euclidean distance.
    """
    queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    matrix = np.asarray(matrix, dtype=np.float32)
    metric = metric.upper()
    if metric == "COSINE":
        return normalize_rows(queries) @ normalize_rows(matrix).T
    if metric == "IP":
        return queries @ matrix.T
    if metric == "L2":
        squared = (queries**2).sum(1)[:, None] - 2 * queries @ matrix.T + (matrix**2).sum(1)[None]
        return -squared
    raise ValueError(f"metric {metric!r} is not one of COSINE, IP, L2")


def exact_top_k(
    queries: np.ndarray, matrix: np.ndarray, k: int, metric: str = "COSINE"
) -> tuple[np.ndarray, np.ndarray]:
    """Exact nearest rows of ``matrix`` for each query: ``(indices, scores)``, best first.

    Scores follow :func:`pairwise_scores` (higher is closer); ties go to the lower row
    (:func:`top_k_indices`). ``k`` is capped at the row count.
    """
    scores = pairwise_scores(queries, matrix, metric)
    top = top_k_indices(scores, k)
    return top, np.take_along_axis(scores, top, axis=1)


def recall_vs_exact(
    found_ids: list[list[str]],
    queries: np.ndarray,
    ids: list[str],
    matrix: np.ndarray,
    k: int,
    metric: str = "COSINE",
    tolerance: float = 1e-5,
) -> float:
    """Recall@k of approximate neighbours against exact search, counting ties as correct.

    Parameters
    ----------
    found_ids
        Per query, the ids returned (the query's own id is skipped).
    queries
        Row indices of ``matrix`` used as queries.
    ids, matrix
        The searched vectors.
    k, metric
        Cut-off and metric. A returned id counts as a hit when its exact score is at least the
        exact k-th best score minus ``tolerance`` (collinear vectors tie, and any of them is right).
    """
    position = {item: i for i, item in enumerate(ids)}
    scores = pairwise_scores(matrix[queries], matrix, metric)
    hits = 0
    for row, query, found in zip(scores, queries, found_ids, strict=True):
        row = row.copy()
        row[query] = -np.inf
        kth = np.partition(-row, k - 1)[k - 1] * -1
        got = [position[item] for item in found if item != ids[query]][:k]
        hits += int(sum(row[i] >= kth - tolerance for i in got))
    return hits / (k * len(queries))


def write_cf_vectors(
    store: VectorStore,
    fitted: FittedCF,
    *,
    item_names: Mapping[str, str] | None = None,
    items_collection: str = CF_ITEMS_COLLECTION,
    users_collection: str | None = CF_USERS_COLLECTION,
    metric: str = "COSINE",
    index: str = "FLAT",
    batch_size: int = 1_000,
    progress: ProgressCallback | None = None,
) -> dict[str, WriteReport]:
    """Write a factor model's item (and user) vectors, versioned by the model version.

    Items carry ``popularity`` (listeners in the training matrix) and, when ``item_names`` is
    given, ``name`` (items without a name get ``""``, counted in the log). Users carry
    ``listens`` (items played).

    Raises
    ------
    ValueError
        The model has no factors (item-kNN, EASE, popularity): use ALS or BPR.
    """
    items = fitted.model.item_factors
    users = fitted.model.user_factors
    if items is None or users is None:
        raise ValueError(
            f"CF model {fitted.config.model!r} has no user/item vectors to store; "
            "use an 'als' or 'bpr' config for Milvus similarity"
        )
    listeners = np.diff(fitted.interactions.plays.tocsc().indptr)
    item_fields: dict[str, list] = {"popularity": [int(n) for n in listeners]}
    if item_names is not None:
        unnamed = [i for i in fitted.item_ids if i not in item_names]
        if unnamed:
            logger.warning("%d CF items have no name; stored with name ''", len(unnamed))
        item_fields["name"] = [str(item_names.get(i, "")) for i in fitted.item_ids]
    reports = {
        items_collection: store.write_collection(
            items_collection,
            fitted.item_ids,
            items,
            item_fields,
            dim=items.shape[1],
            metric=metric,
            index=index,
            version=fitted.version,
            batch_size=batch_size,
            progress=progress,
        )
    }
    if users_collection is not None:
        played = np.diff(fitted.interactions.plays.indptr)
        reports[users_collection] = store.write_collection(
            users_collection,
            fitted.user_ids,
            users,
            {"listens": [int(n) for n in played]},
            dim=users.shape[1],
            metric=metric,
            index=index,
            version=fitted.version,
            batch_size=batch_size,
            progress=progress,
        )
    return reports
