"""The models a week's playlists serve, fitted once by the graph and read through the store.

:func:`fit_sources` fits every CF source of :class:`recommend.playlist.DiscoverWeeklyConfig`
(EASE, item-kNN, ALS by default) on one history; the ``cf_model`` asset calls it per week and
stores the :class:`SourceModels` as an artifact, ``discover_weekly`` only reads it, and the
offline evaluation calls the very same function on its training split. :func:`fit_audio_to_cf`
places brand-new tracks into the factor model's space (asset ``audio_to_cf_model``).

Example usage::

    models = fit_sources(listens, {"ease": CF_PRESETS["ease"], "als": CF_PRESETS["als"]})
    models.version            # hash of the history and the configs: same inputs, same version
    projector = fit_audio_to_cf(models.fitted["als"], (audio_ids, audio_matrix))
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from embeddings.audio_to_cf import AudioToCF
from embeddings.cf import CFConfig, FittedCF, Interactions, fit_cf
from recommend.candidates import FACTOR_KINDS, VectorTable

logger = logging.getLogger(__name__)

MIN_AUDIO_CF_PAIRS = 15


def sources_version(interactions: Interactions, configs: Mapping[str, CFConfig]) -> str:
    """Hash of the training history and every source's config (the bundle's version)."""
    payload = json.dumps(
        {label: config.to_dict() for label, config in sorted(configs.items())}, sort_keys=True
    )
    digest = hashlib.sha256((interactions.fingerprint() + payload).encode())
    return digest.hexdigest()[:16]


@dataclass
class SourceModels:
    """Fitted CF sources of one history.

    Attributes
    ----------
    fitted
        ``{source label: FittedCF}``, e.g. ``{"ease": ..., "item_knn": ..., "als": ...}``.
    version
        :func:`sources_version` of the history and configs (the artifact version).
    exploration_model
        The factor model behind exploration, brand-new tracks and MMR vectors.
    """

    fitted: dict[str, FittedCF]
    version: str
    exploration_model: str = "als"
    fit_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def configs(self) -> dict[str, CFConfig]:
        return {label: model.config for label, model in self.fitted.items()}

    @property
    def explorer(self) -> FittedCF | None:
        """The factor model (None when no source of that name is fitted)."""
        return self.fitted.get(self.exploration_model)

    def summary(self) -> dict[str, dict]:
        """Per source: model kind, matrix shape, fit seconds (for asset metadata)."""
        return {
            label: {
                "model": model.config.model,
                "users": len(model.user_ids),
                "items": len(model.item_ids),
                "fit_seconds": round(model.fit_seconds, 2),
                "version": model.version,
            }
            for label, model in self.fitted.items()
        }


def fit_sources(
    listens: pd.DataFrame | Interactions,
    configs: Mapping[str, CFConfig],
    *,
    exploration_model: str = "als",
    num_threads: int = 2,
) -> SourceModels:
    """Fit every configured CF source on ``listens``.

    Parameters
    ----------
    listens
        ``user_id, item_id, plays`` (the history before the week) or prebuilt interactions.
    configs
        ``{source label: CFConfig}``.
    exploration_model
        Label of the factor model (ALS/BPR) used for exploration and new tracks.
    num_threads
        Threads for implicit and BLAS.

    Returns
    -------
    SourceModels
    """
    if not configs:
        raise ValueError("no CF sources configured; give at least one (e.g. {'als': ...})")
    chosen = configs.get(exploration_model)
    if chosen is not None and chosen.model not in FACTOR_KINDS:
        raise ValueError(
            f"exploration model {exploration_model!r} must be a factor model {FACTOR_KINDS}, "
            f"got {chosen.model!r}"
        )
    interactions = (
        listens if isinstance(listens, Interactions) else Interactions.from_listens(listens)
    )
    fitted = {}
    with threadpool_limits(num_threads):
        for label, config in configs.items():
            fitted[label] = fit_cf(
                interactions, config, num_threads=num_threads, compute_loss=False
            )
    return SourceModels(
        fitted=fitted,
        version=sources_version(interactions, configs),
        exploration_model=exploration_model,
        fit_seconds={label: model.fit_seconds for label, model in fitted.items()},
    )


@dataclass
class AudioProjector:
    """An audio -> CF regressor bound to the factor model whose space it predicts."""

    regressor: AudioToCF
    cf_version: str
    pairs: int
    audio_version: str = ""

    @property
    def version(self) -> str:
        """:func:`projector_version` of its inputs."""
        return projector_version(self.cf_version, self.audio_version or str(self.pairs))


def projector_version(cf_version: str, audio_version: str) -> str:
    """The version of an audio -> CF model: the factor model's and the audio vectors'."""
    return f"{cf_version}-{audio_version}"


def fit_audio_to_cf(
    explorer: FittedCF,
    audio_vectors: VectorTable,
    *,
    min_pairs: int = MIN_AUDIO_CF_PAIRS,
    audio_version: str = "",
) -> AudioProjector | None:
    """Ridge from audio to the factor model's item vectors, on tracks with both (None if few)."""
    if explorer.config.model not in FACTOR_KINDS:
        raise ValueError(
            f"new tracks are placed in a factor model's space, got {explorer.config.model!r}"
        )
    ids = [str(i) for i in audio_vectors[0]]
    index = explorer.interactions.item_index
    known = [row for row, item in enumerate(ids) if item in index]
    if len(known) < min_pairs:
        logger.info("audio->CF: %d tracks with both vectors (need %d)", len(known), min_pairs)
        return None
    matrix = np.asarray(audio_vectors[1], dtype=np.float64)
    factors = explorer.model.item_factors[[index[ids[row]] for row in known]]
    regressor = AudioToCF().fit(matrix[known], factors)
    return AudioProjector(regressor, explorer.version, len(known), audio_version)


def project_new_items(
    projector: AudioProjector | None,
    explorer: FittedCF | None,
    audio_vectors: VectorTable | None,
    catalog: Iterable[str],
) -> VectorTable | None:
    """CF factors of catalog tracks that have audio but no plays (None when there are none)."""
    if projector is None or explorer is None or audio_vectors is None:
        return None
    if projector.cf_version != explorer.version:
        raise ValueError(
            f"the audio->CF model was fitted for CF model {projector.cf_version}, the playlists "
            f"serve {explorer.version}; materialise audio_to_cf_model for the same week"
        )
    ids = [str(i) for i in audio_vectors[0]]
    index = explorer.interactions.item_index
    allowed = set(map(str, catalog))
    new = [row for row, item in enumerate(ids) if item not in index and item in allowed]
    if not new:
        return None
    matrix = np.asarray(audio_vectors[1], dtype=np.float64)
    return [ids[row] for row in new], projector.regressor.predict(matrix[new])
