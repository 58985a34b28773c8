"""Vector maths shared by the embedding kinds, and writing CF vectors to the vector store.

Example usage::

    top, scores = exact_top_k(item_vectors[:5], item_vectors, k=10, metric="COSINE")
    with VectorStore("data/vectors.db") as store:
        write_cf_vectors(store, fitted, item_names={"51": "Duran Duran"})
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from embeddings.cf import FittedCF
from embeddings.vector_store import ProgressCallback, VectorStore, WriteReport

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


def normalize_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), as float32."""
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1.0, norms)


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

    Scores follow :func:`pairwise_scores` (higher is closer). ``k`` is capped at the row count.
    """
    scores = pairwise_scores(queries, matrix, metric)
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(part_scores, order, axis=1)


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
