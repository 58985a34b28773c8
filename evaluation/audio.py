"""Checkable properties of audio embeddings: segment self-retrieval and genre kNN.

- **Segment self-retrieval**: cut each clip into non-overlapping segments (10 s); for every
  segment of a clip that has at least two, is its nearest other segment (cosine) from the same
  clip? A good encoder recognises a recording from any part of it.
- **Genre kNN**: leave-one-out k-nearest-neighbour accuracy on coarse genre labels, beside the
  majority-class rate (what always answering the most common genre scores).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

from embeddings.audio.encoders import AudioEncoder
from embeddings.audio.loading import AudioSource, load_waveform
from embeddings.vectors import normalize_rows, top_k_indices
from recommend.errors import TooSmall

logger = logging.getLogger(__name__)


def standardise_columns(matrix: np.ndarray) -> np.ndarray:
    """Z-score each column over the rows (constant columns become 0).

    Parameters
    ----------
    matrix : ndarray
        ``(n, d)``.

    Returns
    -------
    ndarray
        float32 ``(n, d)``.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    std = matrix.std(axis=0)
    std[std == 0] = 1.0
    return ((matrix - matrix.mean(axis=0)) / std).astype(np.float32)


def cosine_similarities(matrix: np.ndarray) -> np.ndarray:
    """Pairwise cosine similarity ``(n, n)``; zero rows get similarity 0 to everything."""
    unit = normalize_rows(matrix, dtype=np.float64)
    return unit @ unit.T


def nearest_in_same_group(matrix: np.ndarray, groups: Sequence[str]) -> np.ndarray:
    """Per row: is its nearest other row (cosine) in the same group? Boolean ``(n,)``."""
    labels = np.asarray([str(group) for group in groups])
    similarity = cosine_similarities(matrix)
    np.fill_diagonal(similarity, -np.inf)
    return labels[similarity.argmax(axis=1)] == labels


def self_retrieval_accuracy(matrix: np.ndarray, groups: Sequence[str]) -> dict[str, float]:
    """Share of segments whose nearest other segment (cosine) comes from the same clip.

    Parameters
    ----------
    matrix : ndarray
        ``(n_segments, d)`` segment vectors.
    groups : sequence of str
        The clip of each segment.

    Returns
    -------
    dict
        ``accuracy`` (over segments whose clip has 2+ segments), ``n_queries``, ``n_segments``,
        ``n_clips`` (clips with 2+ segments), ``chance`` (mean share of same-clip candidates).

    Raises
    ------
    ValueError
        When lengths differ or no clip has two segments.
    """
    groups = np.asarray([str(group) for group in groups])
    if len(groups) != len(matrix):
        raise ValueError(f"{len(matrix)} segment vectors but {len(groups)} group labels")
    counts = Counter(groups.tolist())
    queries = np.array([counts[group] >= 2 for group in groups])
    if not queries.any():
        raise TooSmall("no clip has two segments; use longer clips or shorter segments")
    hits = nearest_in_same_group(matrix, groups)
    chance = np.mean([(counts[group] - 1) / (len(groups) - 1) for group in groups[queries]])
    return {
        "accuracy": float(hits[queries].mean()),
        "n_queries": int(queries.sum()),
        "n_segments": len(groups),
        "n_clips": sum(1 for count in counts.values() if count >= 2),
        "chance": float(chance),
    }


def knn_accuracy(matrix: np.ndarray, labels: Sequence[str | None], k: int = 1) -> dict[str, float]:
    """Leave-one-out kNN accuracy (cosine) on labels; rows with a missing label are left out.

    A vote tie goes to the tied label whose nearest member is closest.

    Parameters
    ----------
    matrix : ndarray
        ``(n, d)``.
    labels : sequence of str or None
        One label per row; None or "" (or NaN) means unlabelled.
    k : int
        Neighbours that vote.

    Returns
    -------
    dict
        ``accuracy``, ``majority_rate`` (share of the most common label), ``n``, ``k``.
    """
    keep = np.array(
        [label is not None and label == label and str(label).strip() != "" for label in labels]
    )
    labels_kept = np.asarray([str(label) for label, ok in zip(labels, keep, strict=True) if ok])
    matrix = np.asarray(matrix)[keep]
    if len(labels_kept) <= k:
        raise ValueError(
            f"knn_accuracy needs more than k={k} labelled rows, got {len(labels_kept)}"
        )
    similarity = cosine_similarities(matrix)
    np.fill_diagonal(similarity, -np.inf)
    order = top_k_indices(similarity, k)
    correct = 0
    for row, neighbours in enumerate(order):
        votes = Counter(labels_kept[neighbours].tolist())
        best = max(votes.values())
        tied = {label for label, count in votes.items() if count == best}
        predicted = next(labels_kept[n] for n in neighbours if labels_kept[n] in tied)
        correct += predicted == labels_kept[row]
    majority = Counter(labels_kept.tolist()).most_common(1)[0][1] / len(labels_kept)
    return {
        "accuracy": correct / len(labels_kept),
        "majority_rate": float(majority),
        "n": len(labels_kept),
        "k": k,
    }


def embed_segments(
    encoder: AudioEncoder,
    sources: Sequence[AudioSource],
    ids: Sequence[str],
    segment_seconds: float = 10.0,
    progress: Callable[[int, int, str], None] | None = None,
    max_seconds: float | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Cut each clip into non-overlapping segments and embed each segment.

    A remainder shorter than ``segment_seconds`` is dropped; a clip shorter than one segment
    gives none. Clips that fail to load are logged and skipped.

    Parameters
    ----------
    encoder : AudioEncoder
        Loaded or not.
    sources : sequence
        Files or waveforms.
    ids : sequence of str
        Clip ids (the segment groups).
    segment_seconds : float
        Segment length.
    progress : callable, optional
        ``progress(done, total, id)`` after each clip.
    max_seconds : float, optional
        Cut at most this much of each clip (its centre); None cuts all of it.

    Returns
    -------
    matrix : ndarray
        ``(n_segments, encoder.dim)``.
    groups : list of str
        The clip id of each segment.
    """
    vectors: list[np.ndarray] = []
    groups: list[str] = []
    for index, (clip_id, source) in enumerate(zip(ids, sources, strict=True)):
        try:
            waveform = load_waveform(source, encoder.sample_rate, max_seconds=max_seconds)
        except (ValueError, RuntimeError) as error:
            logger.warning("segments: %s skipped: %s", clip_id, error)
            continue
        length = int(segment_seconds * waveform.sample_rate)
        for start in range(0, len(waveform.samples) - length + 1, length):
            segment = waveform.samples[start : start + length]
            vectors.append(encoder.embed((segment, waveform.sample_rate)).vector)
            groups.append(str(clip_id))
        if progress is not None:
            progress(index + 1, len(sources), str(clip_id))
    matrix = np.vstack(vectors) if vectors else np.zeros((0, encoder.dim), dtype=np.float32)
    return matrix, groups


def choose_segment_seconds(durations: Sequence[float], preferred: float = 10.0) -> float:
    """Segment length for self-retrieval on clips of these durations.

    ``preferred`` when at least two clips hold two such segments; otherwise the largest whole
    number of seconds (at least 1) that gives the median clip two segments, so short clips (the
    sample's 6 s ones) are still measurable.
    """
    durations = np.asarray([float(d) for d in durations if d and d > 0])
    if (durations >= 2 * preferred).sum() >= 2:
        return float(preferred)
    if len(durations) == 0:
        return float(preferred)
    return float(max(1.0, np.floor(np.median(durations) / 2)))


def evaluate_encoder(
    encoder: AudioEncoder,
    sources: Sequence[AudioSource],
    ids: Sequence[str],
    *,
    segment_seconds: float = 10.0,
    clip_vectors: np.ndarray | None = None,
    labels: Sequence[str | None] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, float | int | str]:
    """The checkable properties of one encoder on a set of clips.

    Parameters
    ----------
    encoder : AudioEncoder
        The backend to evaluate.
    sources, ids : sequences
        The clips (files or waveforms) and their ids.
    segment_seconds : float
        Non-overlapping segment length for self-retrieval.
    clip_vectors : ndarray, optional
        ``(len(ids), dim)`` whole-clip vectors for genre kNN (skipped when None).
    labels : sequence of str or None, optional
        A genre per clip (None/"" = unlabelled); genre kNN needs two genres and 5 labelled clips.
    progress : callable, optional
        ``progress(done, total, id)`` while embedding segments.

    Each clip is cut within the encoder's ``max_seconds`` (120 s by default), so a very long
    file cannot dominate.

    Returns
    -------
    dict
        ``self_retrieval`` and ``self_retrieval_standardised`` (columns z-scored over the
        segments, what the DSP baseline needs), ``queries``, ``clips_with_2_segments``,
        ``chance``, ``segment_seconds``, ``seconds``; ``genre_knn1``, ``genre_majority_rate`` and
        ``genre_labelled`` when labels allow, else ``genre_skipped`` with the reason; or
        ``self_retrieval_skipped`` when no clip has two segments.
    """
    started = time.perf_counter()
    figures: dict[str, float | int | str] = {"segment_seconds": float(segment_seconds)}
    matrix, groups = embed_segments(
        encoder,
        sources,
        ids,
        segment_seconds=segment_seconds,
        progress=progress,
        max_seconds=encoder.max_seconds,
    )
    try:
        raw = self_retrieval_accuracy(matrix, groups)
    except ValueError as error:
        figures["self_retrieval_skipped"] = str(error)
    else:
        standardised = self_retrieval_accuracy(standardise_columns(matrix), groups)
        figures.update(
            {
                "self_retrieval": round(raw["accuracy"], 4),
                "self_retrieval_standardised": round(standardised["accuracy"], 4),
                "queries": raw["n_queries"],
                "clips_with_2_segments": raw["n_clips"],
                "chance": round(raw["chance"], 4),
            }
        )
    if clip_vectors is not None and labels is not None:
        named = [label for label in labels if label is not None and str(label).strip()]
        if len(set(named)) < 2 or len(named) < 5:
            figures["genre_skipped"] = (
                f"{len(named)} labelled clips in {len(set(named))} genres (need 5 in 2+)"
            )
        else:
            result = knn_accuracy(clip_vectors, labels, k=1)
            figures.update(
                {
                    "genre_knn1": round(result["accuracy"], 4),
                    "genre_majority_rate": round(result["majority_rate"], 4),
                    "genre_labelled": result["n"],
                }
            )
    figures["seconds"] = round(time.perf_counter() - started, 2)
    return figures
