"""Embed audio clips once per content: a cache keyed by (encoder signature, sha256 of the file).

A watched folder changes one file at a time; re-embedding only what is new or changed keeps the
audio assets cheap to re-materialise. The cache is an ``.npz`` file written atomically.

Example usage::

    ids, vectors, attributes, failures, stats = embed_with_cache(encoder, clips, "audio.npz")
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)


class _EmptyBatch:
    ids: list[str] = []
    matrix = np.zeros((0, 0), dtype=np.float32)
    attributes = pd.DataFrame(columns=["id", "path"])
    failures = pd.DataFrame(columns=["id", "path", "error"])


_NO_BATCH = _EmptyBatch()


def _read(cache_path: Path, dim: int) -> tuple[list[str], np.ndarray, list[dict]]:
    if not cache_path.exists():
        return [], np.zeros((0, dim), dtype=np.float32), []
    with np.load(cache_path, allow_pickle=False) as data:
        keys = [str(k) for k in data["keys"]]
        vectors = data["vectors"].astype(np.float32)
        attributes = [json.loads(str(a)) for a in data["attributes"]]
    if vectors.shape[1:] != (dim,):
        logger.warning(
            "audio cache %s has dim %s, expected %d: ignored", cache_path, vectors.shape[1:], dim
        )
        return [], np.zeros((0, dim), dtype=np.float32), []
    return keys, vectors, attributes


def _write(cache_path: Path, keys: list[str], vectors: np.ndarray, attributes: list[dict]) -> None:
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_path.with_suffix(".tmp.npz")
    np.savez(
        tmp,
        keys=np.array(keys, dtype=str),
        vectors=vectors.astype(np.float32),
        attributes=np.array([json.dumps(a, default=str) for a in attributes], dtype=str),
    )
    os.replace(tmp, cache_path)


def embed_with_cache(
    encoder,
    clips: pd.DataFrame,
    cache_path: str | Path,
    progress: Callable[[int, int, str], None] | None = None,
) -> tuple[list[str], np.ndarray, pd.DataFrame, pd.DataFrame, dict]:
    """Embed ``clips`` (``track_id, path, sha256``), reusing vectors of unchanged files.

    Parameters
    ----------
    encoder
        An :class:`embeddings.audio.AudioEncoder`.
    clips
        Golden ``audio_clips`` rows.
    cache_path
        The ``.npz`` cache for this backend.
    progress
        ``progress(done, total, track_id)`` while embedding the uncached clips.

    Returns
    -------
    ids, vectors, attributes, failures, stats
        ``ids`` are the track ids that have a vector (input order), ``vectors`` is aligned with
        them, ``attributes`` has one row per id (tempo, top tags, tag probabilities),
        ``failures`` lists clips that did not embed (``track_id, path, error``) and ``stats``
        counts ``embedded``, ``cached``, ``failed`` and ``seconds``.
    """
    missing = {"track_id", "path", "sha256"} - set(clips.columns)
    if missing:
        raise ValueError(f"audio clips lack columns {sorted(missing)}; pass golden.audio_clips")
    started = time.perf_counter()
    cache_path = Path(cache_path)
    keys, cached_vectors, cached_attributes = _read(cache_path, encoder.dim)
    position = {k: i for i, k in enumerate(keys)}
    key_of = [f"{encoder.signature}:{sha}" for sha in clips["sha256"]]
    todo = [i for i, k in enumerate(key_of) if k not in position]
    if todo:
        batch = encoder.embed_many(
            [clips["path"].iloc[i] for i in todo],
            ids=[str(clips["track_id"].iloc[i]) for i in todo],
            progress=progress,
        )
    else:  # nothing new: do not even load the model
        batch = _NO_BATCH
    new_rows = {clip_id: row for clip_id, row in zip(batch.ids, batch.matrix, strict=True)}
    new_attributes = {
        str(r["id"]): {k: v for k, v in r.items() if k not in ("id", "path")}
        for r in batch.attributes.to_dict("records")
    }
    added_keys, added_vectors, added_attributes = [], [], []
    for i in todo:
        clip_id = str(clips["track_id"].iloc[i])
        if clip_id in new_rows:
            added_keys.append(key_of[i])
            added_vectors.append(new_rows[clip_id])
            added_attributes.append(new_attributes.get(clip_id, {}))
    if added_keys:
        keys = keys + added_keys
        cached_vectors = np.vstack([cached_vectors, np.stack(added_vectors)])
        cached_attributes = cached_attributes + added_attributes
        position = {k: i for i, k in enumerate(keys)}
        _write(cache_path, keys, cached_vectors, cached_attributes)
    ids, rows, attribute_rows = [], [], []
    for i, key in enumerate(key_of):
        if key in position:
            clip_id = str(clips["track_id"].iloc[i])
            ids.append(clip_id)
            rows.append(cached_vectors[position[key]])
            attribute_rows.append({"track_id": clip_id, **cached_attributes[position[key]]})
    vectors = np.stack(rows) if rows else np.zeros((0, encoder.dim), dtype=np.float32)
    failures = batch.failures.rename(columns={"id": "track_id"})
    stats = {
        "clips": len(clips),
        "embedded": len(added_keys),
        "cached": len(clips) - len(todo),
        "failed": len(failures),
        "seconds": time.perf_counter() - started,
    }
    return ids, vectors, pd.DataFrame(attribute_rows), failures, stats
