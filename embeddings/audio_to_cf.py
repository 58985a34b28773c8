"""Cold start: predict a track's CF item factors from its audio embedding.

Spotify-style: train a regressor on tracks that have both an audio vector and a CF item vector,
then place a brand-new track (no plays, no text) into CF space from its audio alone, so the CF
machinery (dot products with user vectors, item neighbours) can recommend it.

The model is ridge regression on standardised audio features, with the penalty chosen by
efficient leave-one-out cross-validation over a grid (closed form through one SVD). It is small,
deterministic and hard to overfit with a few hundred tracks.

Example usage::

    model = AudioToCF().fit(audio_vectors, cf_item_vectors)
    predicted = model.predict(new_audio_vectors)      # (n, n_factors)
    model.save("audio_to_cf.npz"); model = AudioToCF.load("audio_to_cf.npz")
    figures = evaluate_cold_start(audio_vectors, cf_item_vectors, seed=0)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embeddings.vectors import normalize_rows, top_k_indices

logger = logging.getLogger(__name__)

DEFAULT_ALPHAS: tuple[float, ...] = tuple(float(a) for a in np.logspace(-3, 4, 15))


def _check_matrix(name: str, matrix: Any, rows: int | None = None) -> np.ndarray:
    """A finite 2-D float64 array, with a clear error naming ``name`` otherwise."""
    array = np.asarray(matrix, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_tracks, dim), got shape {array.shape}")
    if rows is not None and array.shape[0] != rows:
        raise ValueError(
            f"{name} has {array.shape[0]} rows but the audio vectors have {rows}; "
            "align both on the same track ids"
        )
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinity; drop or re-embed those tracks")
    return array


class AudioToCF:
    """Ridge regression from audio vectors to CF item factors.

    Parameters
    ----------
    alpha : float, optional
        Ridge penalty. When None (default), it is chosen from ``alphas`` by leave-one-out error.
    alphas : sequence of float
        Candidate penalties for the leave-one-out search.
    """

    def __init__(self, alpha: float | None = None, alphas: Sequence[float] = DEFAULT_ALPHAS):
        self.alpha = alpha
        self.alphas = tuple(float(a) for a in alphas)
        self.x_mean: np.ndarray | None = None
        self.x_scale: np.ndarray | None = None
        self.y_mean: np.ndarray | None = None
        self.coef: np.ndarray | None = None
        self.alpha_: float | None = None

    @property
    def is_fitted(self) -> bool:
        """True after :meth:`fit` or :meth:`load`."""
        return self.coef is not None

    def fit(self, audio_vecs: np.ndarray, cf_vecs: np.ndarray) -> AudioToCF:
        """Fit on tracks that have both vectors (row i of each is the same track).

        Parameters
        ----------
        audio_vecs : ndarray
            ``(n, d_audio)``.
        cf_vecs : ndarray
            ``(n, n_factors)``.

        Returns
        -------
        AudioToCF
            self.

        Raises
        ------
        ValueError
            On shape mismatch, non-finite values or fewer than 3 tracks.
        """
        x = _check_matrix("audio_vecs", audio_vecs)
        y = _check_matrix("cf_vecs", cf_vecs, rows=x.shape[0])
        if x.shape[0] < 3:
            raise ValueError(f"AudioToCF.fit needs at least 3 tracks, got {x.shape[0]}")
        self.x_mean = x.mean(axis=0)
        scale = x.std(axis=0)
        self.x_scale = np.where(scale > 0, scale, 1.0)
        self.y_mean = y.mean(axis=0)
        xs = (x - self.x_mean) / self.x_scale
        yc = y - self.y_mean
        u, s, vt = np.linalg.svd(xs, full_matrices=False)
        uty = u.T @ yc
        if self.alpha is not None:
            alpha = float(self.alpha)
        else:
            errors = []
            for candidate in self.alphas:
                shrink = s**2 / (s**2 + candidate)
                fitted = u @ (shrink[:, None] * uty)
                leverage = (u**2) @ shrink
                residual = (yc - fitted) / (1.0 - leverage)[:, None]
                errors.append(float(np.mean(residual**2)))
            alpha = self.alphas[int(np.argmin(errors))]
            logger.info("AudioToCF: alpha %.3g by leave-one-out (MSE %.4g)", alpha, min(errors))
        self.alpha_ = alpha
        self.coef = vt.T @ ((s / (s**2 + alpha))[:, None] * uty)
        return self

    def predict(self, audio_vecs: np.ndarray) -> np.ndarray:
        """CF factors predicted from audio vectors.

        Parameters
        ----------
        audio_vecs : ndarray
            ``(n, d_audio)`` (a single ``(d_audio,)`` vector is accepted).

        Returns
        -------
        ndarray
            ``(n, n_factors)`` float32.
        """
        if not self.is_fitted:
            raise RuntimeError("AudioToCF is not fitted; call fit() or AudioToCF.load(path)")
        x = np.atleast_2d(np.asarray(audio_vecs, dtype=np.float64))
        x = _check_matrix("audio_vecs", x)
        if x.shape[1] != self.coef.shape[0]:
            raise ValueError(
                f"audio_vecs have {x.shape[1]} columns but the model was fitted on "
                f"{self.coef.shape[0]}; use the same audio encoder"
            )
        return (((x - self.x_mean) / self.x_scale) @ self.coef + self.y_mean).astype(np.float32)

    def save(self, path: str | Path) -> Path:
        """Write the model to an ``.npz`` file and return its path."""
        if not self.is_fitted:
            raise RuntimeError("AudioToCF is not fitted; nothing to save")
        path = Path(path)
        np.savez(
            path,
            x_mean=self.x_mean,
            x_scale=self.x_scale,
            y_mean=self.y_mean,
            coef=self.coef,
            alpha=np.array(self.alpha_),
        )
        return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")

    @classmethod
    def load(cls, path: str | Path) -> AudioToCF:
        """Read a model written by :meth:`save`."""
        with np.load(Path(path)) as data:
            model = cls(alpha=float(data["alpha"]))
            model.x_mean, model.x_scale = data["x_mean"], data["x_scale"]
            model.y_mean, model.coef = data["y_mean"], data["coef"]
            model.alpha_ = float(data["alpha"])
        return model


def neighbour_overlap(
    predicted: np.ndarray,
    true: np.ndarray,
    catalogue: np.ndarray,
    exclude: Sequence[int],
    k: int = 10,
) -> dict[str, float]:
    """How well predicted CF vectors find the true vectors' neighbours in a catalogue.

    For each track i: the top-``k`` catalogue items by cosine with ``predicted[i]`` and with
    ``true[i]`` (catalogue row ``exclude[i]``, the track itself, left out of both lists); their
    overlap share; and the rank of the track itself when the catalogue is scored with
    ``predicted[i]`` (1 = best).

    Parameters
    ----------
    predicted, true : ndarray
        ``(n, n_factors)``.
    catalogue : ndarray
        ``(n_items, n_factors)``, all CF item vectors; ``true[i] == catalogue[exclude[i]]``.
    exclude : sequence of int
        Catalogue row of each track.
    k : int
        Neighbour list length.

    Returns
    -------
    dict
        ``overlap_at_k`` (mean), ``random_overlap_at_k`` (= k / (n_items - 1)),
        ``median_rank``, ``random_median_rank`` (= n_items / 2), ``hit_at_k`` (own item in the
        predicted top k), ``random_hit_at_k``, ``n``, ``k``.
    """
    unit_catalogue = normalize_rows(catalogue, dtype=np.float64)
    pred_scores = normalize_rows(predicted, dtype=np.float64) @ unit_catalogue.T
    true_scores = normalize_rows(true, dtype=np.float64) @ unit_catalogue.T
    n_items = unit_catalogue.shape[0]
    overlaps, ranks = [], []
    for row, own in enumerate(exclude):
        ranks.append(1 + int((pred_scores[row] > pred_scores[row, own]).sum()))
        top_pred = top_k_indices(pred_scores[row], k, exclude=[own])
        top_true = top_k_indices(true_scores[row], k, exclude=[own])
        overlaps.append(len(set(top_pred.tolist()) & set(top_true.tolist())) / k)
    ranks_array = np.asarray(ranks)
    return {
        "overlap_at_k": float(np.mean(overlaps)),
        "random_overlap_at_k": k / (n_items - 1),
        "median_rank": float(np.median(ranks_array)),
        "random_median_rank": n_items / 2.0,
        "hit_at_k": float(np.mean(ranks_array <= k)),
        "random_hit_at_k": k / n_items,
        "n": len(ranks),
        "k": k,
    }


def evaluate_cold_start(
    audio_vecs: np.ndarray,
    cf_vecs: np.ndarray,
    test_fraction: float = 0.2,
    k: int = 10,
    seed: int = 0,
    alpha: float | None = None,
) -> dict[str, float]:
    """Hold out tracks, fit on the rest, and measure CF-neighbour recovery on the held-out ones.

    The catalogue searched is every track's true CF vector (train and held out): at serving
    time a cold track is placed among all known items.

    Parameters
    ----------
    audio_vecs, cf_vecs : ndarray
        Aligned ``(n, d_audio)`` and ``(n, n_factors)``.
    test_fraction : float
        Share of tracks held out.
    k : int
        Neighbour list length.
    seed : int
        Seeds the split.
    alpha : float, optional
        Fixed ridge penalty (default: leave-one-out choice).

    Returns
    -------
    dict
        The figures of :func:`neighbour_overlap` plus ``alpha``, ``n_train``, ``n_test``.
    """
    x = _check_matrix("audio_vecs", audio_vecs)
    y = _check_matrix("cf_vecs", cf_vecs, rows=x.shape[0])
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    order = np.random.default_rng(seed).permutation(x.shape[0])
    n_test = max(1, int(round(test_fraction * x.shape[0])))
    test, train = order[:n_test], order[n_test:]
    if len(train) < 3 or x.shape[0] <= k + 1:
        raise ValueError(
            f"evaluate_cold_start needs more tracks: {x.shape[0]} total, {len(train)} to train, "
            f"k={k}"
        )
    model = AudioToCF(alpha=alpha).fit(x[train], y[train])
    figures = neighbour_overlap(model.predict(x[test]), y[test], y, exclude=test.tolist(), k=k)
    figures.update({"alpha": float(model.alpha_), "n_train": len(train), "n_test": len(test)})
    return figures
