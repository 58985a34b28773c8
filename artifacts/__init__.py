"""Versioned artifacts (models, vector sets, configurations) behind one store."""

from artifacts.store import ArtifactMissing, ArtifactRef, ArtifactStore

__all__ = ["ArtifactMissing", "ArtifactRef", "ArtifactStore"]
