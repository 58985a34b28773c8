"""Similarity and recommendation API over CF results, in memory or from Milvus.

Both classes answer the same questions with item and user ids (strings):

* ``similar_items(item_id, k)`` -> ``[(item_id, score), ...]`` best first, the item itself excluded;
* ``similar_users(user_id, k)`` -> ``[(user_id, score), ...]``;
* ``recommend_for_user(user_id, k, user_history=None)`` -> ``[(item_id, score), ...]`` never
  containing what the user played.

:class:`CFRecommender` works on a :class:`~embeddings.cf.FittedCF` in memory (any model kind).
:class:`MilvusSimilarity` reads vectors written by :func:`embeddings.vectors.write_cf_vectors`
(or any item/user collection pair of one embedding kind) through a
:class:`~embeddings.vector_store.VectorStore`.

Example usage::

    recommender = CFRecommender(fit_cf(listens))
    recommender.similar_items("51", k=10)
    with VectorStore("data/vectors.db") as store:
        MilvusSimilarity(store).similar_items("51", k=10)
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
from scipy import sparse

from embeddings.cf import FittedCF, _cosine_neighbours, _top_n
from embeddings.vector_store import VectorStore
from embeddings.vectors import CF_ITEMS_COLLECTION, CF_USERS_COLLECTION, normalize_rows

logger = logging.getLogger(__name__)

Scored = list[tuple[str, float]]


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")


class CFRecommender:
    """In-memory similarity and recommendations from a fitted CF model.

    Parameters
    ----------
    fitted
        Output of :func:`embeddings.cf.fit_cf` or :func:`embeddings.cf.load_fitted`.
    """

    def __init__(self, fitted: FittedCF) -> None:
        self.fitted = fitted
        self._item_ids = np.asarray(fitted.item_ids, dtype=object)
        self._user_ids = np.asarray(fitted.user_ids, dtype=object)
        self._popularity = np.diff(fitted.interactions.plays.tocsc().indptr).astype(np.float64)
        user_vectors = fitted.model.user_factors
        if user_vectors is None:  # row-based models: users are compared by what they played
            user_vectors = fitted.user_items
        self._user_vectors = user_vectors

    def _item_index(self, item_id: str) -> int:
        index = self.fitted.interactions.item_index.get(str(item_id))
        if index is None:
            raise KeyError(
                f"item {item_id!r} is unknown to CF model {self.fitted.version} "
                f"({len(self._item_ids)} items); it has no listens in training"
            )
        return index

    def _user_index(self, user_id: str) -> int:
        index = self.fitted.interactions.user_index.get(str(user_id))
        if index is None:
            raise KeyError(
                f"user {user_id!r} is unknown to CF model {self.fitted.version} "
                f"({len(self._user_ids)} users); new users need listens and a refit, "
                "or text/audio taste profiles"
            )
        return index

    def similar_items(self, item_id: str, k: int = 10) -> Scored:
        """The ``k`` items most similar to ``item_id`` (model's own similarity), best first."""
        _check_k(k)
        indices, scores = self.fitted.model.similar_items(self._item_index(item_id), n=k)
        return [(self._item_ids[i], float(s)) for i, s in zip(indices, scores, strict=True)]

    def similar_users(self, user_id: str, k: int = 10) -> Scored:
        """The ``k`` users most similar to ``user_id`` by cosine of user vectors (or rows)."""
        _check_k(k)
        indices, top = _cosine_neighbours(self._user_vectors, self._user_index(user_id), k)
        return [(self._user_ids[i], float(s)) for i, s in zip(indices, top, strict=True)]

    def recommend_for_user(
        self, user_id: str, k: int = 10, user_history: Iterable[str] | None = None
    ) -> Scored:
        """Top-``k`` unplayed items for a known user.

        Parameters
        ----------
        user_id
            A user of the training matrix (unknown ids raise KeyError).
        k
            Items wanted; more than the remaining catalog returns all remaining items.
        user_history
            Item ids the user has played, when fresher than the training matrix: they are
            excluded too (unknown item ids are ignored for scoring but cannot be recommended
            anyway). Row-based models (item-kNN, EASE) also score from it.

        Returns
        -------
        list of (item_id, score)
            Falls back to popularity (score = training listeners) when the user has no history.
        """
        _check_k(k)
        index = self._user_index(user_id)
        row = self.fitted.user_items[index]
        if user_history is not None:
            item_index = self.fitted.interactions.item_index
            extra = sorted(
                {item_index[i] for i in map(str, user_history) if i in item_index}
                - set(row.indices.tolist())
            )
            if extra:
                fill = float(np.median(row.data)) if row.nnz else 1.0
                extra_row = sparse.csr_matrix(
                    (
                        np.full(len(extra), fill, dtype=np.float32),
                        (np.zeros(len(extra), dtype=np.int64), extra),
                    ),
                    shape=row.shape,
                )
                row = sparse.csr_matrix(row + extra_row)
        if row.nnz == 0:
            logger.info("user %s has no history; recommending popular items", user_id)
            indices, scores = _top_n(self._popularity, k)
        else:
            indices, scores = self.fitted.model.recommend(index, row, n=k)
        return [(self._item_ids[i], float(s)) for i, s in zip(indices, scores, strict=True)]


class MilvusSimilarity:
    """The same questions answered from vectors in Milvus (any embedding kind).

    Parameters
    ----------
    store
        An open :class:`VectorStore`.
    items_collection, users_collection
        Logical collection names. ``users_collection`` may be None (no user questions).
    """

    def __init__(
        self,
        store: VectorStore,
        items_collection: str = CF_ITEMS_COLLECTION,
        users_collection: str | None = CF_USERS_COLLECTION,
    ) -> None:
        self.store = store
        self.items_collection = items_collection
        self.users_collection = users_collection

    def _vector(self, collection: str | None, key: str, what: str) -> np.ndarray:
        if collection is None:
            raise ValueError(f"no {what} collection configured for MilvusSimilarity")
        try:
            return self.store.get(collection, [str(key)])[0]
        except KeyError:
            raise KeyError(
                f"{what} {key!r} is not in vector collection {collection!r} "
                f"(version {self.store.version(collection)})"
            ) from None

    def _search(self, collection: str, vector: np.ndarray, k: int, skip: set[str]) -> Scored:
        limit = min(k + len(skip), 16_384)
        hits = self.store.search(collection, vector, k=limit)[0]
        return [(h["id"], h["score"]) for h in hits if h["id"] not in skip][:k]

    def similar_items(self, item_id: str, k: int = 10) -> Scored:
        """Nearest items to ``item_id`` under the collection's metric, itself excluded."""
        _check_k(k)
        vector = self._vector(self.items_collection, item_id, "item")
        return self._search(self.items_collection, vector, k, {str(item_id)})

    def similar_users(self, user_id: str, k: int = 10) -> Scored:
        """Nearest users to ``user_id``, itself excluded."""
        _check_k(k)
        vector = self._vector(self.users_collection, user_id, "user")
        assert self.users_collection is not None
        return self._search(self.users_collection, vector, k, {str(user_id)})

    def recommend_for_user(
        self, user_id: str, k: int = 10, user_history: Iterable[str] | None = None
    ) -> Scored:
        """Items nearest to the user's vector, minus ``user_history``.

        With a COSINE item collection this ranks by cosine(user, item), which ignores item norms
        and so differs from the dot-product ranking of :class:`CFRecommender`.
        """
        _check_k(k)
        vector = self._vector(self.users_collection, user_id, "user")
        skip = {str(i) for i in (user_history or [])}
        return self._search(self.items_collection, normalize_rows(vector[None])[0], k, skip)
