"""Vector collections as the server reads them: one immutable object per published version.

:class:`SnapshotCollection` holds one version of a collection read from the read-only snapshot
the pipeline published (:func:`embeddings.vector_store.read_snapshot`). Small collections are
searched exactly (numpy); large ones through an in-process HNSW index (Spotify's ``voyager``),
built in the background and cached under the server's cache folder, so a restart loads it in a
second. Until the index of a new version is built the version is searched exactly, so a new
version is served as soon as it is read. :class:`MilvusCollection` answers the same questions
from a Milvus server (production), where the alias switch is the server's.

Scores are similarities, higher is closer: cosine for ``COSINE`` collections, the inner product
for ``IP``, minus the squared distance for ``L2``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np

from embeddings.vector_store import Snapshot, VectorStore
from embeddings.vectors import normalize_rows, pairwise_scores, top_k_indices

logger = logging.getLogger(__name__)

EXACT_MAX_CELLS = 2_000_000  # rows x dim searched exactly (about 1-5 ms a query here)
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 100
HNSW_MIN_EF = 100

Scored = list[tuple[str, float]]


def _space(metric: str):
    from voyager import Space

    return {"COSINE": Space.Cosine, "IP": Space.InnerProduct, "L2": Space.Euclidean}[metric]


def _scores_from_distances(metric: str, distances: np.ndarray) -> np.ndarray:
    if metric == "L2":
        return -distances
    return 1.0 - distances  # voyager: cosine and inner-product distances are 1 - similarity


class SnapshotCollection:
    """One published version of a collection, in memory, searched exactly or by HNSW.

    Parameters
    ----------
    snapshot
        The published rows (ids, vectors, scalar fields, metric).
    ann
        A built ``voyager.Index`` over the rows in order (label = row), or None: exact search.
    """

    def __init__(self, snapshot: Snapshot, ann: Any | None = None) -> None:
        self.name = snapshot.name
        self.version = snapshot.version
        self.metric = snapshot.metric.upper()
        self.ids = list(snapshot.ids)
        self.position = {key: row for row, key in enumerate(self.ids)}
        self.fields = snapshot.fields
        self.published_at = snapshot.published_at
        self.loaded_at = time.time()
        self.folder = snapshot.folder
        vectors = np.asarray(snapshot.vectors, dtype=np.float32)
        self.dim = int(vectors.shape[1]) if vectors.ndim == 2 else 0
        self._raw = vectors
        self._unit = normalize_rows(vectors) if self.metric == "COSINE" else vectors
        self._ann = ann
        self._snapshot = snapshot

    # ------------------------------------------------------------------ building
    @property
    def searched_by(self) -> str:
        return "hnsw" if self._ann is not None else "exact"

    @property
    def needs_index(self) -> bool:
        """True when the collection is large enough for an HNSW index and has none yet."""
        return self._ann is None and len(self.ids) * self.dim > EXACT_MAX_CELLS

    def index_path(self, cache_dir: Path) -> Path:
        return cache_dir / self.name / f"{self.version}.voy"

    def cached_index(self, cache_dir: Path | None) -> SnapshotCollection | None:
        """The same version with its HNSW index loaded from the cache, or None."""
        if cache_dir is None or not self.needs_index:
            return None
        path = self.index_path(cache_dir)
        if not path.exists():
            return None
        from voyager import Index

        try:
            ann = Index.load(str(path))
        except Exception as error:  # a torn or foreign file: rebuild it
            logger.warning("ignoring the cached index %s (%s)", path, error)
            return None
        if len(ann) != len(self.ids):
            return None
        return SnapshotCollection(self._snapshot, ann)

    def with_index(self, cache_dir: Path | None, threads: int = 1) -> SnapshotCollection:
        """The same version with an HNSW index (built here: slow, run it in the background)."""
        from voyager import Index

        started = time.perf_counter()
        ann = Index(
            _space(self.metric),
            num_dimensions=self.dim,
            M=HNSW_M,
            ef_construction=HNSW_EF_CONSTRUCTION,
            random_seed=1,
            max_elements=len(self.ids),
        )
        ann.add_items(self._raw, np.arange(len(self.ids)), num_threads=threads)
        logger.info(
            "built the HNSW index of %s version %s (%d x %d) in %.1f s",
            self.name,
            self.version,
            len(self.ids),
            self.dim,
            time.perf_counter() - started,
        )
        if cache_dir is not None:
            path = self.index_path(cache_dir)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                temporary = path.with_suffix(f".{threading.get_ident()}.tmp")
                ann.save(str(temporary))
                temporary.replace(path)
                for old in path.parent.glob("*.voy"):
                    if old != path:
                        old.unlink(missing_ok=True)
            except OSError as error:
                logger.warning("could not cache the index of %s in %s: %s", self.name, path, error)
        return SnapshotCollection(self._snapshot, ann)

    # ------------------------------------------------------------------ questions
    def has(self, key: str) -> bool:
        return key in self.position

    def vector(self, key: str) -> np.ndarray | None:
        row = self.position.get(key)
        return None if row is None else self._raw[row]

    def field(self, key: str, name: str) -> Any:
        row = self.position.get(key)
        values = self.fields.get(name)
        return None if row is None or values is None else values[row]

    def search(self, query: np.ndarray, k: int, exclude: Collection[str] = ()) -> Scored:
        """The ``k`` nearest rows to ``query``, best first, none of ``exclude``."""
        n = len(self.ids)
        skip = [self.position[key] for key in exclude if key in self.position]
        want = min(n - len(skip), k)
        if want <= 0:
            return []
        query = np.asarray(query, dtype=np.float32)
        if self._ann is not None:
            found = self._search_ann(query, want, set(skip))
            if found is not None:
                return found
        scores = pairwise_scores(
            query[None, :], self._unit, "IP" if self.metric == "COSINE" else self.metric
        )[0]
        if self.metric == "COSINE":
            norm = float(np.linalg.norm(query))
            scores = scores / (norm if norm > 0 else 1.0)
        top = top_k_indices(scores, want, exclude=skip)
        return [(self.ids[i], float(scores[i])) for i in top]

    def _search_ann(self, query: np.ndarray, want: int, skip: set[int]) -> Scored | None:
        n = len(self.ids)
        limit = min(n, want + len(skip))
        try:
            labels, distances = self._ann.query(
                query, k=limit, query_ef=max(HNSW_MIN_EF, 2 * limit)
            )
        except Exception as error:  # voyager's RecallError (fewer than k found): exact search
            logger.debug("HNSW query on %s fell back to exact search: %s", self.name, error)
            return None
        scores = _scores_from_distances(self.metric, np.asarray(distances, dtype=np.float64))
        found = [
            (self.ids[int(label)], float(score))
            for label, score in zip(labels, scores, strict=True)
            if int(label) not in skip
        ][:want]
        return found if len(found) == want else None  # too many excluded: search exactly

    def neighbours(self, key: str, k: int, exclude: Collection[str] = ()) -> Scored:
        """The ``k`` rows nearest to row ``key``, itself excluded (KeyError when unknown)."""
        row = self.position[key]
        return self.search(self._raw[row], k, {key, *exclude})

    def describe(self) -> dict[str, Any]:
        return {
            "collection": self.name,
            "version": self.version,
            "rows": len(self.ids),
            "dim": self.dim,
            "metric": self.metric,
            "search": self.searched_by,
            "source": "snapshot",
            "published_at": self.published_at,
            "loaded_at": self.loaded_at,
        }


class MilvusCollection:
    """A collection on a Milvus server: the server's alias decides the version searched.

    ``version`` is refreshed by :meth:`refresh` (the server switches the alias atomically)."""

    def __init__(self, store: VectorStore, name: str) -> None:
        self.store = store
        self.name = name
        self.version = ""
        self.info: dict[str, Any] = {}
        self.loaded_at = time.time()
        self.refresh()

    def refresh(self) -> bool:
        """Re-read the version the alias points at; True when it changed."""
        info = self.store.describe(self.name)
        changed = info["version"] != self.version
        self.version, self.info = str(info["version"]), info
        if changed:
            self.loaded_at = time.time()
        return changed

    def has(self, key: str) -> bool:
        return bool(self.store.get_rows(self.name, [key], output_fields=[]))

    def vector(self, key: str) -> np.ndarray | None:
        try:
            return self.store.get(self.name, [key])[0]
        except KeyError:
            return None

    def field(self, key: str, name: str) -> Any:
        rows = self.store.get_rows(self.name, [key], output_fields=[name])
        return rows[0].get(name) if rows else None

    def search(self, query: np.ndarray, k: int, exclude: Collection[str] = ()) -> Scored:
        limit = min(k + len(exclude), 16_384)
        hits = self.store.search(self.name, np.asarray(query, dtype=np.float32), k=limit)[0]
        sign = -1.0 if str(self.info.get("metric")) == "L2" else 1.0
        return [(h["id"], sign * h["score"]) for h in hits if h["id"] not in exclude][:k]

    def neighbours(self, key: str, k: int, exclude: Collection[str] = ()) -> Scored:
        vector = self.vector(key)
        if vector is None:
            raise KeyError(key)
        return self.search(vector, k, {key, *exclude})

    def describe(self) -> dict[str, Any]:
        return {
            "collection": self.name,
            "version": self.version,
            "rows": int(self.info.get("rows", 0)),
            "dim": int(self.info.get("dim") or 0),
            "metric": str(self.info.get("metric")),
            "search": "milvus",
            "source": "milvus",
            "published_at": float(self.info.get("created_at") or 0.0),
            "loaded_at": self.loaded_at,
        }
