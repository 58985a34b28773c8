"""Versioned vector collections in Milvus (Milvus Lite file or Milvus server), one per embedding kind.

Each logical collection (``"cf_items"``, ``"text_artists"``, ``"audio_tracks"`` ...) is a Milvus
*alias*. A write never touches what readers see: it builds a new physical collection
``{name}__{version}`` aside, upserts in batches, flushes, loads, verifies the row count, marks the
collection complete, then switches the alias in one call (``create_alias`` / ``alter_alias``) and
drops physical versions older than the last ``keep_versions``. A crash at any point leaves the alias
on the previous complete collection; the next write drops the partial one and starts it again.

Milvus Lite (a local ``.db`` path) allows one process per file. A second process gets
:class:`VectorStoreLocked` at once (never a hang). Concurrent readers need a Milvus server
(``http://host:19530``); writers to one file must be serialised (a Dagster concurrency pool).

Read-only snapshots (Milvus Lite): when a version is published (the alias switched, or a
re-write finds the current version without a snapshot), the same rows are also written to
``<file stem>.snapshots/<name>/<version>/`` beside the ``.db`` file (``vectors.npy``,
``rows.parquet`` with ``id`` and the scalar fields, ``meta.json``) and then the pointer
``<name>/CURRENT`` is replaced atomically. Readers in other processes (``cratedigger serve``)
load the version ``CURRENT`` names, never opening the locked ``.db`` file. :func:`read_snapshot`
reads one back; :meth:`VectorStore.publish_snapshot` writes one for an existing collection.

Example usage::

    with VectorStore("data/vectors.db") as store:
        store.write_collection(
            "cf_items", ids, vectors, {"name": names, "popularity": pops},
            dim=64, metric="IP", index="FLAT", version="a1b2c3d4",
        )
        hits = store.search("cf_items", vectors[:1], k=10, output_fields=["name"])
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

METRICS = ("COSINE", "IP", "L2")
INDEXES = ("FLAT", "HNSW", "IVF_FLAT")
ID_FIELD = "id"
VECTOR_FIELD = "vector"
VERSION_SEPARATOR = "__"
MAX_ID_LENGTH = 512
MAX_VARCHAR_LENGTH = 65_535
DEFAULT_BATCH_SIZE = 1_000
DEFAULT_KEEP_VERSIONS = 2
DEFAULT_HNSW_BUILD = {"M": 16, "efConstruction": 200}
DEFAULT_HNSW_EF = 128

_PROP_PREFIX = "cratedigger."
PROP_VERSION = _PROP_PREFIX + "version"
PROP_COMPLETE = _PROP_PREFIX + "complete"
PROP_ROWS = _PROP_PREFIX + "rows"
PROP_CREATED_AT = _PROP_PREFIX + "created_at"
PROP_INDEX_PARAMS = _PROP_PREFIX + "index_params"

_NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_]*$")
_LOADED_STATE = "Loaded"

# Milvus Lite runs one in-process server per .db path, shared by every client of this process.
# Count our clients per path so close() releases the file when the last one closes.
_LITE_USERS: dict[str, int] = {}
_LITE_USERS_LOCK = threading.Lock()

ProgressCallback = Callable[[int, int], None]


SNAPSHOT_SUFFIX = ".snapshots"
SNAPSHOT_POINTER = "CURRENT"
SNAPSHOT_VECTORS = "vectors.npy"
SNAPSHOT_ROWS = "rows.parquet"
SNAPSHOT_META = "meta.json"
DEFAULT_KEEP_SNAPSHOTS = 2


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def id_filter(ids: Sequence[str]) -> str:
    """A Milvus filter ``id in [...]`` with every id as an escaped string literal, so that no
    id (quotes, brackets, backslashes) can change the expression."""
    literals = []
    for value in ids:
        bad = [c for c in value if ord(c) < 0x20 and c not in "\n\r\t"]
        if bad:
            raise ValueError(f"id {value[:40]!r} contains control characters; it cannot be queried")
        literals.append('"' + "".join(_ESCAPES.get(c, c) for c in value) + '"')
    return f"{ID_FIELD} in [{', '.join(literals)}]"


class VectorStoreError(RuntimeError):
    """A vector store operation failed; the message names the collection and the fix."""


class VectorStoreLocked(VectorStoreError):
    """Another process holds the Milvus Lite ``.db`` file."""


class CollectionNotFound(KeyError):
    """The logical collection (alias) does not exist."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable.
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class WriteReport:
    """What :meth:`VectorStore.write_collection` did.

    Attributes
    ----------
    name, version, physical_name
        Logical name (alias), version, and the physical collection ``{name}__{version}``.
    rows
        Rows in the collection the alias points at after the call.
    written
        False when the call was a no-op (same version already complete under the alias).
    seconds
        Wall time of the call.
    rows_per_second
        Upsert throughput (0.0 for a no-op).
    previous_physical_name
        Where the alias pointed before the call (None for a first write).
    dropped
        Physical collections dropped: partial leftovers and versions beyond ``keep_versions``.
    """

    name: str
    version: str
    physical_name: str
    rows: int
    written: bool
    seconds: float
    rows_per_second: float
    previous_physical_name: str | None
    dropped: list[str] = field(default_factory=list)
    snapshot: str | None = None


def physical_collection_name(name: str, version: str) -> str:
    """Return the physical collection name ``{name}__{version}``."""
    return f"{name}{VERSION_SEPARATOR}{version}"


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME_PATTERN.match(name) or VERSION_SEPARATOR in name:
        raise ValueError(
            f"collection name {name!r} is not valid: use letters, digits and single underscores, "
            f"starting with a letter, without {VERSION_SEPARATOR!r} (it separates the version)"
        )


def _check_version(version: str) -> None:
    if not isinstance(version, str) or not _VERSION_PATTERN.match(version):
        raise ValueError(
            f"version {version!r} is not valid: use letters, digits and underscores "
            "(e.g. a short hash such as 'a1b2c3d4')"
        )


def _check_write_options(
    name: str, version: str, metric: str, index: str, batch_size: int, keep_versions: int
) -> tuple[str, str]:
    """Validate the name, version and write options; return metric and index upper-cased."""
    _check_name(name)
    _check_version(version)
    metric = metric.upper()
    index = index.upper()
    if metric not in METRICS:
        raise ValueError(f"metric {metric!r} for {name!r} is not one of {METRICS}")
    if index not in INDEXES:
        raise ValueError(f"index {index!r} for {name!r} is not one of {INDEXES}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if keep_versions < 1:
        raise ValueError(f"keep_versions must be >= 1, got {keep_versions}")
    return metric, index


class VectorStore:
    """Versioned vector collections in Milvus Lite (``*.db`` path) or a Milvus server (URL).

    Parameters
    ----------
    uri
        A local path ending in ``.db`` (Milvus Lite; parent folders are created) or
        ``http(s)://host:19530`` for a Milvus server.
    token
        Server token (``"user:password"`` or an API key); ignored for Milvus Lite.
    timeout
        Seconds for each server call (None: pymilvus default).
    snapshots
        Milvus Lite only: mirror every published version as a read-only snapshot for readers in
        other processes. True (default): in :func:`snapshot_root` beside the file; a path: there;
        False: none. Ignored for a server (its readers query the server).

    Raises
    ------
    VectorStoreLocked
        Another process holds the Milvus Lite file.
    VectorStoreError
        The server cannot be reached.
    """

    def __init__(
        self,
        uri: str,
        *,
        token: str = "",
        timeout: float | None = None,
        snapshots: bool | str | Path = True,
    ) -> None:
        from pymilvus import MilvusClient
        from pymilvus.exceptions import MilvusException

        self.uri = str(uri)
        self.is_lite = self.uri.endswith(".db")
        self._timeout = timeout
        self._loaded: set[str] = set()
        self._search_defaults: dict[str, tuple[str, str, dict[str, Any]]] = {}
        self._closed = False
        if self.is_lite:
            path = Path(self.uri).expanduser().resolve()
            path.parent.mkdir(parents=True, exist_ok=True)
            self.uri = str(path)
        elif not self.uri.startswith(("http://", "https://", "tcp://", "unix:")):
            raise ValueError(
                f"vector store uri {uri!r} is neither a Milvus Lite file (ending '.db') nor a "
                "Milvus server URL (http://host:19530)"
            )
        self.snapshot_dir: Path | None = None
        if self.is_lite and snapshots is not False:
            self.snapshot_dir = (
                snapshot_root(self.uri) if snapshots is True else Path(snapshots).expanduser()
            )
        lite_log = logging.getLogger("milvus_lite.server_manager")
        previous_level = lite_log.level
        lite_log.setLevel(logging.CRITICAL)  # its own traceback would only repeat our message
        try:
            self._client = MilvusClient(uri=self.uri, token=token, timeout=timeout)
        except MilvusException as error:
            if self.is_lite and "Open local milvus failed" in str(error):
                raise VectorStoreLocked(
                    f"Milvus Lite file {self.uri} is held by another process (a Dagster step, "
                    "a feature server or a notebook). Milvus Lite allows one process per file: "
                    "close that process, serialise writers with a concurrency pool, or run a "
                    "Milvus server and set MILVUS_URI=http://host:19530 for concurrent readers."
                ) from error
            raise VectorStoreError(
                f"cannot connect to Milvus at {self.uri}: {error}. Check that the server runs "
                "and the URI/token are right."
            ) from error
        finally:
            lite_log.setLevel(previous_level)
        if self.is_lite:
            with _LITE_USERS_LOCK:
                _LITE_USERS[self.uri] = _LITE_USERS.get(self.uri, 0) + 1
        logger.debug("opened vector store %s", self.uri)

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Close the client and, for Milvus Lite, release the ``.db`` file for other processes."""
        if self._closed:
            return
        self._closed = True
        try:
            self._client.close()
        finally:
            if self.is_lite:
                with _LITE_USERS_LOCK:
                    users = _LITE_USERS.get(self.uri, 1) - 1
                    if users <= 0:
                        _LITE_USERS.pop(self.uri, None)
                    else:
                        _LITE_USERS[self.uri] = users
                if users <= 0:
                    from milvus_lite.server_manager import server_manager_instance

                    server_manager_instance.release_server(self.uri)
        logger.debug("closed vector store %s", self.uri)

    def __enter__(self) -> VectorStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _require_open(self) -> None:
        if self._closed:
            raise VectorStoreError(f"vector store {self.uri} is closed; open a new VectorStore")

    # ------------------------------------------------------------------ catalog
    def _physical_collections(self) -> list[str]:
        return list(self._client.list_collections())

    def _versions_of(self, name: str) -> list[str]:
        prefix = name + VERSION_SEPARATOR
        return [c for c in self._physical_collections() if c.startswith(prefix)]

    def _alias_target(self, name: str) -> str | None:
        """Physical collection the alias ``name`` points at, or None."""
        for physical in self._versions_of(name):
            aliases = self._client.list_aliases(collection_name=physical).get("aliases", [])
            if name in aliases:
                return physical
        return None

    def _properties(self, physical: str) -> dict[str, str]:
        return dict(self._client.describe_collection(physical).get("properties", {}) or {})

    def _require_target(self, name: str) -> str:
        self._require_open()
        target = self._alias_target(name)
        if target is None:
            known = ", ".join(self.list_collections()) or "none"
            raise CollectionNotFound(
                f"vector collection {name!r} does not exist in {self.uri} (collections: {known}); "
                "write it first with write_collection()"
            )
        return target

    def list_collections(self) -> list[str]:
        """Logical collection names (aliases) that point at a complete collection, sorted."""
        self._require_open()
        names = set()
        for physical in self._physical_collections():
            for alias in self._client.list_aliases(collection_name=physical).get("aliases", []):
                if physical.startswith(alias + VERSION_SEPARATOR):
                    names.add(alias)
        return sorted(names)

    def version(self, name: str) -> str:
        """Version of the collection the alias ``name`` points at."""
        target = self._require_target(name)
        return target[len(name) + len(VERSION_SEPARATOR) :]

    def count(self, name: str) -> int:
        """Row count of the logical collection ``name``."""
        target = self._require_target(name)
        self._ensure_loaded(target)
        return self._count_physical(target)

    def _count_physical(self, physical: str) -> int:
        result = self._client.query(physical, filter="", output_fields=["count(*)"])
        return int(result[0]["count(*)"])

    def describe(self, name: str) -> dict[str, Any]:
        """Describe the logical collection ``name``.

        Returns
        -------
        dict
            ``name, physical_name, version, rows, dim, metric, index, index_params, fields``
            (scalar field name -> Milvus type name), ``created_at`` (unix seconds) and
            ``versions`` (all physical collections of this name).
        """
        target = self._require_target(name)
        self._ensure_loaded(target)
        info = self._client.describe_collection(target)
        dim = None
        scalar_fields: dict[str, str] = {}
        for spec in info["fields"]:
            if spec["name"] == VECTOR_FIELD:
                dim = int(spec["params"]["dim"])
            elif spec["name"] != ID_FIELD:
                scalar_fields[spec["name"]] = getattr(spec["type"], "name", str(spec["type"]))
        index = self._client.describe_index(target, VECTOR_FIELD)
        properties = dict(info.get("properties", {}) or {})
        build_params = json.loads(properties.get(PROP_INDEX_PARAMS, "{}"))
        return {
            "name": name,
            "physical_name": target,
            "version": target[len(name) + len(VERSION_SEPARATOR) :],
            "rows": self._count_physical(target),
            "dim": dim,
            "metric": index.get("metric_type"),
            "index": index.get("index_type"),
            "index_params": build_params,
            "fields": scalar_fields,
            "created_at": float(properties.get(PROP_CREATED_AT, "nan")),
            "versions": sorted(self._versions_of(name)),
        }

    # ------------------------------------------------------------------ write
    def write_collection(
        self,
        name: str,
        ids: Sequence[str],
        vectors: np.ndarray,
        fields: Mapping[str, Sequence[Any]] | None = None,
        *,
        dim: int,
        metric: str = "COSINE",
        index: str = "FLAT",
        version: str,
        index_params: Mapping[str, Any] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        keep_versions: int = DEFAULT_KEEP_VERSIONS,
        progress: ProgressCallback | None = None,
    ) -> WriteReport:
        """Write a new version of a collection aside, verify it, then switch the alias to it.

        Parameters
        ----------
        name
            Logical collection name (the alias readers use), e.g. ``"cf_items"``.
        ids
            String primary keys, unique.
        vectors
            Array of shape ``(len(ids), dim)``; finite; no zero vectors for COSINE.
        fields
            Scalar fields, name -> list as long as ``ids``. Types are inferred from the values:
            str -> VARCHAR, bool -> BOOL, int -> INT64, float -> DOUBLE. ``None`` values make the
            field nullable.
        dim
            Vector dimension (checked against ``vectors``).
        metric
            ``"COSINE"``, ``"IP"`` or ``"L2"``.
        index
            ``"FLAT"`` (exact), ``"HNSW"`` or ``"IVF_FLAT"`` (approximate; need faiss-cpu in
            Milvus Lite).
        version
            Version tag (e.g. a model hash). Re-writing the version the alias already points at,
            complete and with ``len(ids)`` rows, does nothing.
        index_params
            Build parameters (HNSW: ``M``, ``efConstruction``; IVF_FLAT: ``nlist``). Defaults
            are chosen from the row count.
        batch_size
            Rows per upsert call.
        keep_versions
            Complete physical versions kept after the switch (the current one included).
        progress
            Called as ``progress(rows_written, rows_total)`` after each batch.

        Returns
        -------
        WriteReport

        Raises
        ------
        ValueError
            Bad names, shapes, duplicate ids, non-finite vectors, mismatched field lengths.
        VectorStoreError
            The written collection does not hold the expected row count.
        """
        self._require_open()
        started = time.perf_counter()
        metric, index = _check_write_options(
            name, version, metric, index, batch_size, keep_versions
        )
        id_list, matrix = _check_ids_and_vectors(name, ids, vectors, dim, metric)
        field_specs = _infer_fields(name, fields or {}, len(id_list))
        physical = physical_collection_name(name, version)
        previous = self._alias_target(name)
        if previous == physical:
            report = self._unchanged_report(name, version, len(id_list), keep_versions, started)
            if self.snapshot_dir is None or _snapshot_version(self.snapshot_dir, name) == version:
                return report
            snapshot = self._snapshot(name, version, id_list, matrix, field_specs, metric, index)
            return replace(report, snapshot=snapshot)

        dropped = self._drop_partial(physical)
        self._create_physical(
            physical, dim, metric, index, index_params, field_specs, len(id_list), version
        )
        upsert_seconds = self._upsert_rows(
            physical, id_list, matrix, field_specs, batch_size, progress
        )
        rows = self._load_and_verify(name, physical, len(id_list))
        self._publish(name, physical, previous)
        logger.info(
            "vector collection %s -> %s (%d rows, %s, %s; was %s)",
            name,
            physical,
            rows,
            metric,
            index,
            previous,
        )
        dropped += self._drop_old_versions(name, physical, keep_versions)
        snapshot = self._snapshot(name, version, id_list, matrix, field_specs, metric, index)
        return WriteReport(
            name=name,
            version=version,
            physical_name=physical,
            rows=rows,
            written=True,
            seconds=time.perf_counter() - started,
            rows_per_second=len(id_list) / max(upsert_seconds, 1e-9),
            previous_physical_name=previous,
            dropped=dropped,
            snapshot=snapshot,
        )

    def _snapshot(
        self,
        name: str,
        version: str,
        id_list: list[str],
        matrix: np.ndarray,
        field_specs: dict[str, _FieldSpec],
        metric: str,
        index: str,
    ) -> str | None:
        """Mirror the published version for readers; a failure is logged, never raised (the
        collection is already published in Milvus; readers keep the previous snapshot)."""
        if self.snapshot_dir is None:
            return None
        try:
            folder = write_snapshot(
                self.snapshot_dir,
                name,
                version,
                id_list,
                matrix,
                {f: spec.values for f, spec in field_specs.items()},
                metric=metric,
                index=index,
            )
        except (OSError, ValueError) as error:
            logger.error(
                "vector collection %s version %s is published but its read-only snapshot in %s "
                "failed (%s); readers keep the previous snapshot until the next write",
                name,
                version,
                self.snapshot_dir,
                error,
            )
            return None
        return str(folder)

    def publish_snapshot(self, name: str) -> Path:
        """Write the read-only snapshot of the version the alias ``name`` points at (for a
        collection written before snapshots existed). Returns its folder.

        Raises
        ------
        VectorStoreError
            This store writes no snapshots (a server, or ``snapshots=False``).
        """
        if self.snapshot_dir is None:
            raise VectorStoreError(
                f"vector store {self.uri} keeps no snapshots (a Milvus server, or opened with "
                "snapshots=False); readers query the server"
            )
        info = self.describe(name)
        ids, vectors, fields = self.export(name, output_fields=list(info["fields"]))
        return write_snapshot(
            self.snapshot_dir,
            name,
            info["version"],
            ids,
            vectors,
            fields,
            metric=str(info["metric"]),
            index=str(info["index"]),
        )

    def _unchanged_report(
        self, name: str, version: str, n_rows: int, keep_versions: int, started: float
    ) -> WriteReport:
        """Report a no-op re-write of the current version, or raise if its data differs."""
        physical = physical_collection_name(name, version)
        properties = self._properties(physical)
        self._ensure_loaded(physical)
        if properties.get(PROP_COMPLETE) != "true" or self._count_physical(physical) != n_rows:
            raise VectorStoreError(
                f"vector collection {name!r} points at {physical} but it holds a different row "
                f"count than the {n_rows} rows given for the same version {version!r}: the "
                "same version must mean the same data. Write under a new version."
            )
        dropped = self._drop_old_versions(name, physical, keep_versions)
        logger.info(
            "vector collection %s already at version %s with %d rows; nothing to write",
            name,
            version,
            n_rows,
        )
        return WriteReport(
            name=name,
            version=version,
            physical_name=physical,
            rows=n_rows,
            written=False,
            seconds=time.perf_counter() - started,
            rows_per_second=0.0,
            previous_physical_name=physical,
            dropped=dropped,
        )

    def _drop_partial(self, physical: str) -> list[str]:
        """Drop ``physical`` if an interrupted write left it behind; return what was dropped."""
        if not self._client.has_collection(physical):
            return []
        logger.warning(
            "dropping partial collection %s left by an interrupted write; writing it again",
            physical,
        )
        self._client.drop_collection(physical)
        self._forget(physical)
        return [physical]

    def _upsert_rows(
        self,
        physical: str,
        id_list: list[str],
        matrix: np.ndarray,
        field_specs: dict[str, _FieldSpec],
        batch_size: int,
        progress: ProgressCallback | None,
    ) -> float:
        """Upsert every row in batches of ``batch_size``; return the seconds it took."""
        upsert_started = time.perf_counter()
        field_names = list(field_specs)
        for start in range(0, len(id_list), batch_size):
            stop = min(start + batch_size, len(id_list))
            rows = [
                {
                    ID_FIELD: id_list[i],
                    VECTOR_FIELD: matrix[i].tolist(),
                    **{f: field_specs[f].values[i] for f in field_names},
                }
                for i in range(start, stop)
            ]
            self._client.upsert(physical, rows, timeout=self._timeout)
            logger.debug("upserted %d/%d rows into %s", stop, len(id_list), physical)
            if progress is not None:
                progress(stop, len(id_list))
        return time.perf_counter() - upsert_started

    def _load_and_verify(self, name: str, physical: str, expected: int) -> int:
        """Flush and load ``physical``; return its row count, raise if it is not ``expected``."""
        self._client.flush(physical)
        self._client.load_collection(physical)
        self._loaded.add(physical)
        rows = self._count_physical(physical)
        if rows != expected:
            raise VectorStoreError(
                f"collection {physical} holds {rows} rows after the write, expected "
                f"{expected}; the alias {name!r} was not switched. Re-run the write."
            )
        return rows

    def _publish(self, name: str, physical: str, previous: str | None) -> None:
        """Mark ``physical`` complete and point the alias ``name`` at it."""
        self._client.alter_collection_properties(physical, properties={PROP_COMPLETE: "true"})
        if previous is None:
            self._client.create_alias(physical, name)
        else:
            self._client.alter_alias(physical, name)
        self._search_defaults.pop(name, None)

    def _create_physical(
        self,
        physical: str,
        dim: int,
        metric: str,
        index: str,
        index_params: Mapping[str, Any] | None,
        field_specs: dict[str, _FieldSpec],
        rows: int,
        version: str,
    ) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(ID_FIELD, DataType.VARCHAR, is_primary=True, max_length=MAX_ID_LENGTH)
        schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=dim)
        for field_name, spec in field_specs.items():
            kwargs: dict[str, Any] = {"nullable": True} if spec.nullable else {}
            if spec.dtype == "VARCHAR":
                kwargs["max_length"] = spec.max_length
            schema.add_field(field_name, getattr(DataType, spec.dtype), **kwargs)
        params = dict(_default_build_params(index, rows))
        params.update(index_params or {})
        prepared = self._client.prepare_index_params()
        milvus_index = "FLAT" if index == "FLAT" else index
        prepared.add_index(VECTOR_FIELD, index_type=milvus_index, metric_type=metric, params=params)
        self._client.create_collection(
            physical,
            schema=schema,
            properties={
                PROP_VERSION: version,
                PROP_COMPLETE: "false",
                PROP_ROWS: str(rows),
                PROP_CREATED_AT: repr(time.time()),
                PROP_INDEX_PARAMS: json.dumps(params, sort_keys=True),
            },
        )
        # sync=False: the index is built on flush; waiting would poll an RPC Milvus Lite lacks.
        self._client.create_index(physical, prepared, sync=False)

    def _drop_old_versions(self, name: str, current: str, keep_versions: int) -> list[str]:
        """Drop partial versions and complete versions beyond the newest ``keep_versions``."""
        complete: list[tuple[float, str]] = []
        dropped = []
        for physical in self._versions_of(name):
            if physical == current:
                continue
            properties = self._properties(physical)
            if properties.get(PROP_COMPLETE) == "true":
                complete.append((float(properties.get(PROP_CREATED_AT, "0")), physical))
            else:
                dropped.append(physical)
        complete.sort(reverse=True)
        dropped += [physical for _, physical in complete[keep_versions - 1 :]]
        for physical in dropped:
            self._client.drop_collection(physical)
            self._forget(physical)
            logger.info("dropped old vector collection %s", physical)
        return dropped

    def _forget(self, physical: str) -> None:
        self._loaded.discard(physical)

    # ------------------------------------------------------------------ read
    def _ensure_loaded(self, physical: str) -> None:
        if physical in self._loaded:
            return
        state = self._client.get_load_state(physical).get("state")
        if getattr(state, "name", str(state)) != _LOADED_STATE:
            self._client.load_collection(physical)
        self._loaded.add(physical)

    def _search_setup(self, name: str) -> tuple[str, str, dict[str, Any]]:
        cached = self._search_defaults.get(name)
        if cached is None:
            target = self._require_target(name)
            self._ensure_loaded(target)
            index = dict(self._client.describe_index(target, VECTOR_FIELD))
            index.update(json.loads(self._properties(target).get(PROP_INDEX_PARAMS, "{}")))
            cached = (target, str(index.get("metric_type")), index)
            self._search_defaults[name] = cached
        return cached

    def search(
        self,
        name: str,
        vectors: np.ndarray | Sequence[Sequence[float]],
        k: int = 10,
        filter: str | None = None,
        output_fields: Sequence[str] | None = None,
        *,
        search_params: Mapping[str, Any] | None = None,
    ) -> list[list[dict[str, Any]]]:
        """Nearest neighbours of each query vector.

        Parameters
        ----------
        name
            Logical collection name.
        vectors
            One vector ``(dim,)`` or a batch ``(n, dim)``.
        k
            Neighbours per query (Milvus caps it at 16,384).
        filter
            Milvus boolean expression on scalar fields, e.g. ``'genre == "rock"'``.
        output_fields
            Scalar fields to return with each hit.
        search_params
            Index search parameters (HNSW ``ef``, IVF ``nprobe``); defaults: ``ef = max(128,
            2k)``, ``nprobe = nlist / 4``.

        Returns
        -------
        list of list of dict
            Per query, hits best first: ``{"id": str, "score": float, <output fields>}``. The score
            is Milvus' distance: higher is closer for COSINE and IP, lower for L2.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        queries = np.asarray(vectors, dtype=np.float32)
        if queries.ndim == 1:
            queries = queries[None, :]
        if queries.ndim != 2 or queries.shape[0] == 0:
            raise ValueError(
                f"query vectors for {name!r} must be (dim,) or (n, dim), got shape {queries.shape}"
            )
        _, _, index = self._search_setup(name)
        params = _default_search_params(index, k)
        params.update(search_params or {})
        results = self._client.search(
            name,
            data=queries.tolist(),
            limit=k,
            filter=filter or "",
            output_fields=list(output_fields or [ID_FIELD]),  # [] would return every field
            search_params={"params": params},
            anns_field=VECTOR_FIELD,
            timeout=self._timeout,
        )
        return [
            [
                {**hit.get("entity", {}), "id": hit["id"], "score": float(hit["distance"])}
                for hit in hits
            ]
            for hits in results
        ]

    def get(self, name: str, ids: Sequence[str]) -> np.ndarray:
        """Vectors by id, in the order of ``ids``.

        Raises
        ------
        KeyError
            Some ids are not in the collection (the message lists up to 10 of them).
        """
        id_list = [str(i) for i in ids]
        rows = self.get_rows(name, id_list, output_fields=[VECTOR_FIELD])
        by_id = {row[ID_FIELD]: row[VECTOR_FIELD] for row in rows}
        missing = [i for i in id_list if i not in by_id]
        if missing:
            raise KeyError(
                f"{len(missing)} id(s) not in vector collection {name!r}: {missing[:10]}"
            )
        if not id_list:
            return np.zeros((0, self.describe(name)["dim"]), dtype=np.float32)
        return np.asarray([by_id[i] for i in id_list], dtype=np.float32)

    def get_rows(
        self, name: str, ids: Sequence[str], output_fields: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """Rows (id plus ``output_fields``, default all scalar fields) for the ids that exist."""
        target = self._require_target(name)
        self._ensure_loaded(target)
        id_list = [str(i) for i in ids]
        fields = list(output_fields) if output_fields is not None else ["*"]
        rows: list[dict[str, Any]] = []
        for start in range(0, len(id_list), DEFAULT_BATCH_SIZE):
            chunk = id_list[start : start + DEFAULT_BATCH_SIZE]
            found = self._client.query(name, filter=id_filter(chunk), output_fields=fields)
            wanted = set(chunk)  # defence in depth: never more than was asked for
            rows += [dict(r) for r in found if r[ID_FIELD] in wanted]
        return rows

    def export(
        self, name: str, output_fields: Sequence[str] | None = None, batch_size: int = 5_000
    ) -> tuple[list[str], np.ndarray, dict[str, list[Any]]]:
        """Every row of a collection: ``(ids, vectors, {field: values})``, sorted by id."""
        target = self._require_target(name)
        self._ensure_loaded(target)
        fields = list(output_fields or [])
        iterator = self._client.query_iterator(
            name,
            batch_size=batch_size,
            filter="",
            output_fields=[ID_FIELD, VECTOR_FIELD, *fields],
        )
        rows: list[dict[str, Any]] = []
        try:
            while True:
                batch = iterator.next()
                if not batch:
                    break
                rows += [dict(r) for r in batch]
        finally:
            iterator.close()
        rows.sort(key=lambda r: r[ID_FIELD])
        dim = self.describe(name)["dim"]
        ids = [r[ID_FIELD] for r in rows]
        vectors = (
            np.asarray([r[VECTOR_FIELD] for r in rows], dtype=np.float32)
            if rows
            else np.zeros((0, dim), dtype=np.float32)
        )
        return ids, vectors, {f: [r.get(f) for r in rows] for f in fields}

    def drop(self, name: str) -> list[str]:
        """Drop a logical collection: its alias and every physical version. Returns dropped."""
        self._require_open()
        _check_name(name)
        if self._alias_target(name) is not None:
            self._client.drop_alias(name)
        dropped = self._versions_of(name)
        for physical in dropped:
            self._client.drop_collection(physical)
            self._forget(physical)
        self._search_defaults.pop(name, None)
        if self.snapshot_dir is not None:
            drop_snapshots(self.snapshot_dir, name)
        return dropped


# ---------------------------------------------------------------------- read-only snapshots
def snapshot_root(uri: str | Path) -> Path:
    """Where the snapshots of a Milvus Lite file live: ``data/milvus.db`` ->
    ``data/milvus.snapshots``."""
    path = Path(uri).expanduser().resolve()
    return path.with_name(path.stem + SNAPSHOT_SUFFIX)


def _snapshot_version(root: Path, name: str) -> str | None:
    try:
        return (Path(root) / name / SNAPSHOT_POINTER).read_text().strip() or None
    except OSError:
        return None


def snapshot_version(root: str | Path, name: str) -> str | None:
    """The version the snapshot pointer of ``name`` names, or None when there is none."""
    return _snapshot_version(Path(root), name)


def write_snapshot(
    root: str | Path,
    name: str,
    version: str,
    ids: Sequence[str],
    vectors: np.ndarray,
    fields: Mapping[str, Sequence[Any]] | None = None,
    *,
    metric: str,
    index: str = "FLAT",
    keep: int = DEFAULT_KEEP_SNAPSHOTS,
) -> Path:
    """Write one version's rows aside, then point ``<root>/<name>/CURRENT`` at it atomically.

    The folder ``<root>/<name>/<version>/`` is complete before the pointer changes (written
    under a temporary name and renamed), so a reader sees the old version or the new one.
    Snapshot folders beyond the newest ``keep`` are removed. Returns the version's folder.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    _check_name(name)
    _check_version(version)
    matrix = np.ascontiguousarray(vectors, dtype=np.float32)
    id_list = [str(i) for i in ids]
    if matrix.ndim != 2 or len(matrix) != len(id_list):
        raise ValueError(f"snapshot of {name!r}: {len(id_list)} ids but vectors {matrix.shape}")
    folder = Path(root) / name
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / version
    if not (target / SNAPSHOT_META).exists():
        temporary = folder / f".{version}.{os.getpid()}.{threading.get_ident()}.tmp"
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir()
        np.save(temporary / SNAPSHOT_VECTORS, matrix)
        columns = {"id": id_list, **{k: list(v) for k, v in (fields or {}).items()}}
        pq.write_table(pa.table(columns), temporary / SNAPSHOT_ROWS)
        meta = {
            "name": name,
            "version": version,
            "rows": len(id_list),
            "dim": int(matrix.shape[1]),
            "metric": metric.upper(),
            "index": index.upper(),
            "fields": sorted(fields or {}),
            "published_at": time.time(),
        }
        (temporary / SNAPSHOT_META).write_text(json.dumps(meta, sort_keys=True))
        shutil.rmtree(target, ignore_errors=True)  # an incomplete one (no meta) from a crash
        os.replace(temporary, target)
    pointer = folder / f".{SNAPSHOT_POINTER}.{os.getpid()}.{threading.get_ident()}.tmp"
    pointer.write_text(version)
    os.replace(pointer, folder / SNAPSHOT_POINTER)
    _prune_snapshots(folder, version, keep)
    logger.info("vector collection %s version %s: read-only snapshot in %s", name, version, target)
    return target


def _prune_snapshots(folder: Path, current: str, keep: int) -> None:
    others = []
    for child in folder.iterdir():
        if child.is_dir() and not child.name.startswith(".") and child.name != current:
            others.append((child.stat().st_mtime, child))
    others.sort(reverse=True)
    for _, child in others[max(0, keep - 1) :]:
        shutil.rmtree(child, ignore_errors=True)


def drop_snapshots(root: str | Path, name: str) -> None:
    """Remove every snapshot of ``name`` (the collection was dropped)."""
    shutil.rmtree(Path(root) / name, ignore_errors=True)


@dataclass(frozen=True)
class Snapshot:
    """One published version of a collection, read back from its snapshot folder."""

    name: str
    version: str
    ids: list[str]
    vectors: np.ndarray
    fields: dict[str, list[Any]]
    metric: str
    index: str
    published_at: float
    folder: Path


def read_snapshot(root: str | Path, name: str, version: str | None = None) -> Snapshot:
    """The snapshot ``CURRENT`` names (or ``version``).

    Raises
    ------
    CollectionNotFound
        No snapshot of ``name`` (or of that version).
    """
    import pyarrow.parquet as pq

    version = version or _snapshot_version(Path(root), name)
    folder = Path(root) / name / (version or "")
    if version is None or not (folder / SNAPSHOT_META).exists():
        raise CollectionNotFound(
            f"no read-only snapshot of vector collection {name!r} in {root}"
            + (f" (version {version})" if version else "")
        )
    meta = json.loads((folder / SNAPSHOT_META).read_text())
    table = pq.read_table(folder / SNAPSHOT_ROWS).to_pydict()
    vectors = np.load(folder / SNAPSHOT_VECTORS)
    ids = [str(i) for i in table.pop("id")]
    if len(ids) != len(vectors) or len(ids) != int(meta["rows"]):
        raise VectorStoreError(f"snapshot {folder} is inconsistent: {len(ids)} ids, {meta}")
    return Snapshot(
        name=name,
        version=str(meta["version"]),
        ids=ids,
        vectors=vectors,
        fields=table,
        metric=str(meta["metric"]),
        index=str(meta.get("index", "FLAT")),
        published_at=float(meta.get("published_at", 0.0)),
        folder=folder,
    )


def snapshot_names(root: str | Path) -> list[str]:
    """Collections with a snapshot pointer under ``root``, sorted."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / SNAPSHOT_POINTER).exists())


# ---------------------------------------------------------------------- helpers
@dataclass
class _FieldSpec:
    dtype: str
    values: list[Any]
    nullable: bool
    max_length: int = 0


def _check_ids_and_vectors(
    name: str, ids: Sequence[str], vectors: np.ndarray, dim: int, metric: str
) -> tuple[list[str], np.ndarray]:
    id_list = [str(i) for i in ids]
    if not id_list:
        raise ValueError(f"no rows to write to vector collection {name!r}: ids is empty")
    too_long = [i for i in id_list if len(i.encode()) > MAX_ID_LENGTH]
    if too_long:
        raise ValueError(f"ids longer than {MAX_ID_LENGTH} bytes for {name!r}: {too_long[:5]}")
    if len(set(id_list)) != len(id_list):
        seen: set[str] = set()
        duplicates = sorted({i for i in id_list if i in seen or seen.add(i)})
        raise ValueError(
            f"duplicate ids for vector collection {name!r} (upsert would keep only one): "
            f"{duplicates[:10]}; de-duplicate them first"
        )
    matrix = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    if matrix.ndim != 2 or matrix.shape != (len(id_list), dim):
        raise ValueError(
            f"vectors for {name!r} have shape {matrix.shape}, expected ({len(id_list)}, {dim}) "
            "(one row per id, dim columns)"
        )
    bad = ~np.isfinite(matrix).all(axis=1)
    if bad.any():
        raise ValueError(
            f"{int(bad.sum())} vector(s) for {name!r} hold NaN or inf, e.g. ids "
            f"{[id_list[i] for i in np.flatnonzero(bad)[:5]]}; fix the embedding step"
        )
    if metric == "COSINE":
        zero = np.linalg.norm(matrix, axis=1) == 0
        if zero.any():
            raise ValueError(
                f"{int(zero.sum())} zero vector(s) for {name!r} under COSINE, e.g. ids "
                f"{[id_list[i] for i in np.flatnonzero(zero)[:5]]}; drop them or use IP/L2"
            )
    return id_list, matrix


def _infer_fields(
    name: str, fields: Mapping[str, Sequence[Any]], rows: int
) -> dict[str, _FieldSpec]:
    specs: dict[str, _FieldSpec] = {}
    for field_name, raw_values in fields.items():
        if field_name in (ID_FIELD, VECTOR_FIELD) or not _NAME_PATTERN.match(field_name):
            raise ValueError(
                f"field name {field_name!r} for {name!r} is reserved or invalid (use letters, "
                f"digits, underscores; not {ID_FIELD!r} or {VECTOR_FIELD!r})"
            )
        values = list(raw_values)
        if len(values) != rows:
            raise ValueError(
                f"field {field_name!r} for {name!r} has {len(values)} values, expected {rows} "
                "(one per id)"
            )
        values = [_plain(v) for v in values]
        present = [v for v in values if v is not None]
        nullable = len(present) < len(values)
        kinds = {type(v) for v in present}
        if not present:
            raise ValueError(f"field {field_name!r} for {name!r} is all None; drop it")
        if kinds <= {str}:
            longest = max(len(v.encode()) for v in present)
            if longest > MAX_VARCHAR_LENGTH:
                raise ValueError(
                    f"field {field_name!r} for {name!r} has a value of {longest} bytes; Milvus "
                    f"VARCHAR holds at most {MAX_VARCHAR_LENGTH}; shorten it"
                )
            max_length = min(MAX_VARCHAR_LENGTH, max(256, 2 * longest))
            specs[field_name] = _FieldSpec("VARCHAR", values, nullable, max_length)
        elif kinds <= {bool}:
            specs[field_name] = _FieldSpec("BOOL", values, nullable)
        elif kinds <= {int}:
            specs[field_name] = _FieldSpec("INT64", values, nullable)
        elif kinds <= {int, float}:
            if any(isinstance(v, float) and not math.isfinite(v) for v in present):
                raise ValueError(f"field {field_name!r} for {name!r} holds NaN or inf")
            specs[field_name] = _FieldSpec(
                "DOUBLE", [None if v is None else float(v) for v in values], nullable
            )
        else:
            raise ValueError(
                f"field {field_name!r} for {name!r} mixes or uses unsupported types "
                f"{sorted(k.__name__ for k in kinds)}; use one of str, bool, int, float"
            )
    return specs


def _plain(value: Any) -> Any:
    """numpy scalars -> Python scalars; NaN floats stay (rejected later), pandas NA -> None."""
    if value is None:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    try:
        import pandas as pd

        if value is pd.NA or value is pd.NaT:
            return None
    except ImportError:  # pragma: no cover - pandas is a project dependency
        pass
    return value


def _default_build_params(index: str, rows: int) -> dict[str, Any]:
    if index == "HNSW":
        return dict(DEFAULT_HNSW_BUILD)
    if index == "IVF_FLAT":
        return {"nlist": int(max(1, min(4096, round(4 * math.sqrt(rows)))))}
    return {}


def _default_search_params(index: Mapping[str, Any], k: int) -> dict[str, Any]:
    index_type = str(index.get("index_type", "FLAT"))
    if index_type == "HNSW":
        return {"ef": max(DEFAULT_HNSW_EF, 2 * k)}
    if index_type == "IVF_FLAT":
        return {"nprobe": max(1, int(index.get("nlist", 128)) // 4)}
    return {}
