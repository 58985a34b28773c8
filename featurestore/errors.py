"""Errors of the feature store; each message says which command fixes it."""

from __future__ import annotations


class FeatureStoreError(RuntimeError):
    """The feature store cannot answer; the message says which command to run."""


class NotAppliedError(FeatureStoreError):
    """The registry has no definitions for this project yet (``apply`` was never run)."""


class NotMaterializedError(FeatureStoreError):
    """A feature view was applied but never materialised to the online store."""
