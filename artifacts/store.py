"""One store for every model, vector set and configuration the graph passes downstream.

Artifacts are addressed by an asset key and an optional partition, and versioned: each version
lives in its own folder and a ``CURRENT`` pointer names the one served. The root is a local folder
(embedded profile) or any fsspec URI such as ``s3://bucket/cratedigger`` (production). Objects
are pickled; an object with a string attribute ``version`` (a hash of its inputs, e.g. a model
fitted on a given history with a given config) is stored under that version, anything else under
a hash of its bytes, so re-storing an unchanged artifact writes nothing.

Example usage::

    store = ArtifactStore("data/artifacts")
    ref = store.save(["cf_model"], "2026-11-16", bundle)
    same = store.load(["cf_model"], "2026-11-16")
    store.has(["cf_model"], "2026-11-16", ref.version)  # True
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import fsspec

UNPARTITIONED = "_"
_ARTIFACT = "artifact.pkl"
_CURRENT = "CURRENT"


class ArtifactMissing(FileNotFoundError):
    """No stored artifact for a key and partition; the message says what to materialise."""


@dataclass(frozen=True)
class ArtifactRef:
    """Where a stored artifact lives."""

    key: tuple[str, ...]
    partition: str | None
    version: str
    uri: str
    size: int
    written: bool


def artifact_version(obj: Any, payload: bytes) -> str:
    """The object's own ``version`` string when it has one, else a hash of its bytes."""
    own = getattr(obj, "version", None)
    if isinstance(own, str) and own:
        return own
    return hashlib.sha256(payload).hexdigest()[:16]


class ArtifactStore:
    """Versioned, pickled artifacts under a folder or an fsspec URI.

    Parameters
    ----------
    uri
        A local folder or an fsspec URI (``file://``, ``s3://``, ``memory://`` ...).
    """

    def __init__(self, uri: str) -> None:
        self.uri = str(uri)
        self.fs, self.root = fsspec.core.url_to_fs(self.uri)

    def _folder(self, key: Sequence[str], partition: str | None) -> str:
        parts = [self.root.rstrip("/"), *key, partition or UNPARTITIONED]
        return "/".join(parts)

    def _artifact_path(self, key: Sequence[str], partition: str | None, version: str) -> str:
        return f"{self._folder(key, partition)}/{version}/{_ARTIFACT}"

    def current_version(self, key: Sequence[str], partition: str | None = None) -> str | None:
        """The version ``load`` returns, or None when nothing is stored."""
        pointer = f"{self._folder(key, partition)}/{_CURRENT}"
        if not self.fs.exists(pointer):
            return None
        return self.fs.cat_file(pointer).decode().strip() or None

    def partitions(self, key: Sequence[str]) -> list[str]:
        """The partitions with a stored artifact, sorted (weeks sort by date)."""
        folder = "/".join([self.root.rstrip("/"), *key])
        if not self.fs.exists(folder):
            return []
        found = self.fs.ls(folder, detail=False)
        names = [p.rstrip("/").rsplit("/", 1)[-1] for p in found]
        return sorted(n for n in names if n != UNPARTITIONED)

    def has(self, key: Sequence[str], partition: str | None, version: str) -> bool:
        """True when ``version`` of the artifact is stored (the producer need not recompute)."""
        return self.fs.exists(self._artifact_path(key, partition, version))

    def versions(self, key: Sequence[str], partition: str | None = None) -> list[str]:
        """Every stored version of the artifact."""
        folder = self._folder(key, partition)
        if not self.fs.exists(folder):
            return []
        found = self.fs.ls(folder, detail=False)
        return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in found if self.fs.isdir(p))

    def save(self, key: Sequence[str], partition: str | None, obj: Any) -> ArtifactRef:
        """Store ``obj`` (pickled) as a new version unless that version exists; make it current."""
        buffer = io.BytesIO()
        pickle.dump(obj, buffer, protocol=pickle.HIGHEST_PROTOCOL)
        payload = buffer.getvalue()
        version = artifact_version(obj, payload)
        path = self._artifact_path(key, partition, version)
        written = not self.fs.exists(path)
        if written:
            self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            temporary = f"{path}.{os.getpid()}.tmp"
            self.fs.pipe_file(temporary, payload)
            self.fs.mv(temporary, path)
        self.fs.pipe_file(f"{self._folder(key, partition)}/{_CURRENT}", version.encode())
        return ArtifactRef(tuple(key), partition, version, path, len(payload), written)

    def load(
        self, key: Sequence[str], partition: str | None = None, version: str | None = None
    ) -> Any:
        """The current (or the given) version of the artifact."""
        version = version or self.current_version(key, partition)
        where = "/".join(key) + (f" partition {partition}" if partition else "")
        if version is None or not self.has(key, partition, version):
            raise ArtifactMissing(
                f"no stored artifact for {where} in {self.uri}; materialise that asset"
                + (f" for partition {partition}" if partition else "")
                + " first"
            )
        with self.fs.open(self._artifact_path(key, partition, version), "rb") as handle:
            return pickle.load(handle)
