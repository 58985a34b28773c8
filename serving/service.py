"""The questions the API answers, in plain Python, over atomically switched snapshots.

:class:`RecommendationService` holds the current version of each thing it serves (vector
collections, the catalogue, the playlist weeks, co-occurrence neighbours), each an immutable
object behind one attribute. A request reads each attribute once, so it sees one version; the
refresher thread builds the next version aside and swaps the reference. Nothing here holds the
warehouse or the Milvus Lite file: the pipeline never waits for the server, and a pipeline
step that holds them never makes a request wait or fail.

Example usage::

    service = RecommendationService(ServiceConfig.from_settings(load_settings()))
    service.load()
    service.discover_weekly("u000001")
    service.similar("item", "t0000001", kind="cf", k=10)
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import gc
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embeddings.vector_store import (
    CollectionNotFound,
    VectorStore,
    VectorStoreError,
    read_snapshot,
    snapshot_names,
    snapshot_root,
    snapshot_version,
)
from embeddings.vectors import (
    CF_ITEMS_COLLECTION,
    CF_USERS_COLLECTION,
    TEXT_COLLECTION,
    audio_collection,
)
from serving.catalog import (
    Catalog,
    CoOccurrence,
    PlaylistShelf,
    WarehouseBusy,
    WeekPlaylists,
    file_signature,
    load_tables,
    monday,
    playlist_weeks,
    read_warehouse_tables,
    save_tables,
    similar_artists_path,
)
from serving.vectors import MilvusCollection, SnapshotCollection

logger = logging.getLogger(__name__)

KINDS = ("cf", "text", "audio", "cooccurrence")
LEVELS = ("item", "artist")
SEARCH_TYPES = ("all", "artist", "track")
BOOTSTRAP_RETRY_SECONDS = 30.0
OLD_WEEKS_KEPT = 3


class NotFound(LookupError):
    """An unknown id, or nothing published for it (HTTP 404); the message says which."""


class NotReady(RuntimeError):
    """Nothing to answer from yet (HTTP 503): the pipeline has not published it."""


class NoRadioModel(NotImplementedError):
    """Kept for callers that still import it; the radio answers 503 (:class:`NotReady`) until
    a transition model is published."""


RADIO_WINDOW = 20  # no artist twice within this many steps of a station


@dataclass(frozen=True)
class RadioModel:
    """The transition model served: the newest week's ``transition_model`` artifact."""

    week: str
    version: str
    model: Any


@dataclass(frozen=True)
class ServiceConfig:
    """Where the server reads from. Build it from settings with :meth:`from_settings`."""

    data_dir: Path
    milvus_uri: str
    artifact_uri: str
    audio_backend: str = "musicnn"
    refresh_seconds: float = 2.0
    quiet_seconds: float = 5.0  # the warehouse must be unchanged this long before a copy
    index_threads: int = 1
    vectors_from: str = ""  # "snapshots" or "milvus"; default: snapshots for a Milvus Lite file

    @classmethod
    def from_settings(cls, settings: Any) -> ServiceConfig:
        return cls(
            data_dir=Path(settings.data_dir),
            milvus_uri=str(settings.milvus_uri),
            artifact_uri=str(settings.artifact_uri),
            audio_backend=str(settings.audio_backend),
            refresh_seconds=float(getattr(settings, "api_refresh_seconds", 2.0)),
        )

    @property
    def warehouse_path(self) -> Path:
        return self.data_dir / "warehouse.duckdb"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "serving"

    @property
    def is_lite(self) -> bool:
        """True when vectors come from the read-only snapshots of a Milvus Lite file."""
        if self.vectors_from:
            return self.vectors_from == "snapshots"
        return self.milvus_uri.endswith(".db")

    @property
    def kind_collections(self) -> dict[str, str]:
        return {
            "cf": CF_ITEMS_COLLECTION,
            "text": TEXT_COLLECTION,
            "audio": audio_collection(self.audio_backend),
        }


def _settle() -> None:
    """Move what was just loaded (millions of small objects: names, histories, playlists) out
    of the garbage collector's sight: a full collection would otherwise walk all of it and
    stall requests for tens of milliseconds. Replaced versions are still freed (by count)."""
    gc.collect()
    gc.freeze()


def _day(value: dt.date | str | None) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value))


class RecommendationService:
    """Discover Weekly, similar items and artists, recommendations, search, health."""

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.started_at = time.time()
        self.collections: dict[str, Any] = {}
        self.catalog: Catalog | None = None
        self.shelf = PlaylistShelf()
        self.cooccurrence: CoOccurrence | None = None
        self.errors: dict[str, str] = {}
        self._lock = threading.Lock()  # serialises refreshes (never taken by a request)
        self._week_lock = threading.Lock()  # serialises loads of older weeks
        self._shelf_lock = threading.Lock()  # guards the (quick) swaps of the playlist shelf
        self._swap_lock = threading.Lock()  # guards the (quick) swaps of the collections
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._builder = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ann-index")
        self._building: set[tuple[str, str]] = set()
        self._warehouse_seen: tuple | None = None
        self._warehouse_changed_at = 0.0
        self._warehouse_loaded: tuple | None = None
        self._bootstrapped = not config.is_lite
        self._bootstrap_tried_at = 0.0
        self._milvus: VectorStore | None = None
        self._popular_cache: dict[str, list[str]] = {}
        self.transitions: RadioModel | None = None

    # ================================================================== loading and switching
    def load(self) -> RecommendationService:
        """Load everything published so far (once, before serving)."""
        with self._lock:
            self._refresh_catalog(force=True)
            self._refresh_vectors()
            self._refresh_playlists()
            self._refresh_cooccurrence()
            self._refresh_transitions()
            _settle()
        return self

    @property
    def answers_in_memory(self) -> bool:
        """True when vectors are in-process snapshots (False: a Milvus server is asked)."""
        return self.config.is_lite

    def start(self) -> RecommendationService:
        """Look for new versions every ``refresh_seconds`` in a background thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="refresh", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._builder.shutdown(wait=False, cancel_futures=True)
        if self._milvus is not None:
            self._milvus.close()

    def _run(self) -> None:
        while not self._stop.wait(self.config.refresh_seconds):
            try:
                self.refresh()
            except Exception:  # never let the refresher die; the old versions stay served
                logger.exception("refresh failed; serving the previous versions")

    def refresh(self) -> None:
        """One pass: switch to whatever was published since the last pass."""
        with self._lock:
            before = (
                self.collections,
                self.shelf,
                self.cooccurrence,
                self.catalog,
                self.transitions,
            )
            self._refresh_vectors()
            self._refresh_playlists()
            self._refresh_cooccurrence()
            self._refresh_catalog()
            self._refresh_transitions()
            after = (
                self.collections,
                self.shelf,
                self.cooccurrence,
                self.catalog,
                self.transitions,
            )
            if any(a is not b for a, b in zip(before, after, strict=True)):
                _settle()

    def _swap_collections(
        self, changes: dict[str, Any], only_if_version: str | None = None
    ) -> bool:
        """Replace collections in one reference swap (readers see the old dict or the new one).
        With ``only_if_version``: only while each named collection still has that version."""
        with self._swap_lock:
            current = self.collections
            if only_if_version is not None and any(
                getattr(current.get(name), "version", None) != only_if_version for name in changes
            ):
                return False
            updated = dict(current)
            updated.update(changes)
            self.collections = updated
            return True

    # ------------------------------------------------------------------ vectors
    def _refresh_vectors(self) -> None:
        if not self.config.is_lite:
            self._refresh_milvus()
            return
        root = snapshot_root(self.config.milvus_uri)
        if not self._bootstrapped:
            if snapshot_names(root):  # the pipeline publishes snapshots: nothing to export
                self._bootstrapped = True
            else:
                self._bootstrap_snapshots()
        pending: dict[str, str] = {}
        for name in snapshot_names(root):
            version = snapshot_version(root, name)
            current = self.collections.get(name)
            if version is not None and (current is None or current.version != version):
                pending[name] = version
        # CF user and item vectors are one model: switch them together, never one without the
        # other (the pipeline publishes items, then users)
        pair = (CF_ITEMS_COLLECTION, CF_USERS_COLLECTION)
        if any(name in pending for name in pair):
            versions = {snapshot_version(root, name) for name in pair}
            if len(versions) > 1 and None not in versions:
                for name in pair:
                    pending.pop(name, None)
        loaded: dict[str, SnapshotCollection] = {}
        for name, version in sorted(pending.items()):
            try:
                collection = SnapshotCollection(read_snapshot(root, name, version))
            except (OSError, ValueError, CollectionNotFound, VectorStoreError) as error:
                self.errors[name] = f"snapshot {version} unreadable: {error}"
                logger.warning("vector snapshot %s %s not loaded: %s", name, version, error)
                continue
            loaded[name] = collection.cached_index(self.config.cache_dir / "index") or collection
            self.errors.pop(name, None)
        if any(name in pending for name in pair) and not all(name in loaded for name in pair):
            for name in pair:  # one of the pair failed to load: keep both as they were
                if name in pending:
                    loaded.pop(name, None)
        if not loaded:
            return
        self._swap_collections(loaded)
        for name, collection in loaded.items():
            logger.info(
                "serving %s version %s (%d rows, %s)",
                name,
                collection.version,
                len(collection.ids),
                collection.searched_by,
            )
            if collection.needs_index and name != CF_USERS_COLLECTION:
                self._build_index_later(collection)

    def _build_index_later(self, collection: SnapshotCollection) -> None:
        key = (collection.name, collection.version)
        if key in self._building:
            return
        self._building.add(key)

        def build() -> None:
            try:
                indexed = collection.with_index(
                    self.config.cache_dir / "index", self.config.index_threads
                )
                self._swap_collections({collection.name: indexed}, collection.version)
            except Exception:
                logger.exception("HNSW index of %s not built; searching exactly", collection.name)
            finally:
                self._building.discard(key)

        self._builder.submit(build)

    def _bootstrap_snapshots(self) -> None:
        """Collections written before snapshots existed: export them once from Milvus Lite, if
        no pipeline step holds the file (else retry later; never wait for it)."""
        if time.monotonic() - self._bootstrap_tried_at < BOOTSTRAP_RETRY_SECONDS and (
            self._bootstrap_tried_at
        ):
            return
        self._bootstrap_tried_at = time.monotonic()
        if not Path(self.config.milvus_uri).exists():
            return
        root = snapshot_root(self.config.milvus_uri)
        try:
            with VectorStore(self.config.milvus_uri) as store:
                for name in store.list_collections():
                    if snapshot_version(root, name) != store.version(name):
                        store.publish_snapshot(name)
                        logger.info("snapshot of %s exported from %s", name, store.uri)
        except VectorStoreError as error:  # VectorStoreLocked included: a step writes
            logger.info("vector snapshots not exported yet (%s); retrying later", error)
            return
        self._bootstrapped = True

    def _refresh_milvus(self) -> None:
        if self._milvus is None:
            try:
                self._milvus = VectorStore(self.config.milvus_uri, snapshots=False)
            except VectorStoreError as error:
                self.errors["milvus"] = str(error)
                return
        self.errors.pop("milvus", None)
        try:
            names = self._milvus.list_collections()
            for name in names:
                current = self.collections.get(name)
                if current is None:
                    self._swap_collections({name: MilvusCollection(self._milvus, name)})
                else:
                    current.refresh()
        except Exception as error:  # a server hiccup: keep what we had
            self.errors["milvus"] = f"refresh failed: {error}"
            logger.warning("Milvus refresh failed: %s", error)

    # ------------------------------------------------------------------ playlists
    def _models_of(self, week: dt.date) -> dict[str, str | None]:
        from artifacts import ArtifactStore

        try:
            store = ArtifactStore(self.config.artifact_uri)
            return {
                key: store.current_version([key], str(week))
                for key in ("cf_model", "blend_config", "audio_to_cf_model")
            }
        except Exception as error:  # the playlists are served without model versions
            logger.warning("model versions of week %s not read: %s", week, error)
            return {}

    def _load_week(self, week: dt.date, path: Path) -> WeekPlaylists | None:
        try:
            return WeekPlaylists(week, path, self._models_of(week))
        except Exception as error:  # half-written export: keep the old one, retry
            self.errors[f"playlists {week}"] = str(error)
            logger.info("playlists of %s not loaded yet: %s", week, error)
            return None

    def _refresh_playlists(self) -> None:
        weeks = playlist_weeks(self.config.data_dir)
        old = self.shelf
        loaded = {w: p for w, p in old.loaded.items() if w in weeks}
        for week, playlists in list(loaded.items()):
            if file_signature(weeks[week]) != playlists.signature:
                fresh = self._load_week(week, weeks[week])
                if fresh is None:
                    continue
                loaded[week] = fresh
        latest = next(reversed(weeks), None) if weeks else None
        if latest is not None and latest not in loaded:
            fresh = self._load_week(latest, weeks[latest])
            if fresh is None:
                weeks = {w: p for w, p in weeks.items() if w != latest or w in loaded}
            else:
                loaded[latest] = fresh
                self.errors.pop(f"playlists {latest}", None)
        with self._shelf_lock:  # merge with an older week a request loaded meanwhile
            current = self.shelf
            merged = {w: p for w, p in current.loaded.items() if w in weeks}
            merged.update(loaded)
            if weeks != current.weeks or merged != current.loaded:
                self.shelf = PlaylistShelf(weeks=dict(weeks), loaded=merged)

    def _week(self, shelf: PlaylistShelf, week: dt.date) -> WeekPlaylists | None:
        playlists = shelf.loaded.get(week)
        if playlists is not None or week not in shelf.weeks:
            return playlists
        with self._week_lock:  # an older week, asked for the first time: one load at a time
            playlists = self.shelf.loaded.get(week)
            if playlists is None:
                playlists = self._load_week(week, shelf.weeks[week])
            if playlists is None:
                return None
            with self._shelf_lock:
                current = self.shelf
                if week in current.weeks and week not in current.loaded:
                    loaded = dict(current.loaded)
                    loaded[week] = playlists
                    newest = sorted(loaded, reverse=True)[: OLD_WEEKS_KEPT + 1]
                    loaded = {w: p for w, p in loaded.items() if w in newest}
                    self.shelf = PlaylistShelf(weeks=current.weeks, loaded=loaded)
        return playlists

    # ------------------------------------------------------------------ co-occurrence
    def _refresh_cooccurrence(self) -> None:
        path = similar_artists_path(self.config.data_dir)
        current = self.cooccurrence
        if not path.exists() or (current and current.signature == file_signature(path)):
            return
        try:
            self.cooccurrence = CoOccurrence(path)
            self.errors.pop("cooccurrence", None)
        except Exception as error:
            self.errors["cooccurrence"] = str(error)

    # ------------------------------------------------------------------ transition model
    def _refresh_transitions(self) -> None:
        """Switch to the newest week's transition model when a new one is stored."""
        from artifacts import ArtifactStore
        from recommend.journeys import TRANSITION_MODEL_KEY

        key = list(TRANSITION_MODEL_KEY)
        try:
            store = ArtifactStore(self.config.artifact_uri)
            weeks = store.partitions(key)
            if not weeks:
                return
            week = weeks[-1]
            version = store.current_version(key, week)
            current = self.transitions
            if version is None or (current and (current.week, current.version) == (week, version)):
                return
            self.transitions = RadioModel(week, version, store.load(key, week, version))
            self.errors.pop("transition_model", None)
            logger.info("serving transition model %s of week %s", version, week)
        except Exception as error:  # a half-written artifact: keep the old model, retry
            self.errors["transition_model"] = f"not loaded: {error}"
            logger.warning("transition model not loaded: %s", error)

    # ------------------------------------------------------------------ catalogue
    def _refresh_catalog(self, force: bool = False) -> None:
        path = self.config.warehouse_path
        signature = file_signature(path, path.with_name(path.name + ".wal"))
        now = time.monotonic()
        if signature != self._warehouse_seen:
            self._warehouse_seen, self._warehouse_changed_at = signature, now
        if not force and (
            signature == self._warehouse_loaded
            or now - self._warehouse_changed_at < self.config.quiet_seconds
        ):
            return
        cache = self.config.cache_dir / "catalog"
        try:
            tables = read_warehouse_tables(path)
        except WarehouseBusy as error:
            self.errors["catalog"] = f"{error}; retrying"
            if self.catalog is None and (cached := load_tables(cache)) is not None:
                self.catalog = Catalog(cached, source="cache")
            return
        except Exception as error:  # CatalogMissing, a torn file ...
            self.errors["catalog"] = str(error)
            if self.catalog is None and (cached := load_tables(cache)) is not None:
                self.catalog = Catalog(cached, source="cache")
            self._warehouse_loaded = signature
            return
        self.catalog = Catalog(tables, source="warehouse")
        self._warehouse_loaded = signature
        self.errors.pop("catalog", None)
        try:
            save_tables(cache, tables)
        except OSError as error:
            logger.warning("catalogue copy not cached in %s: %s", cache, error)

    # ================================================================== questions
    def _require_catalog(self) -> Catalog:
        catalog = self.catalog
        if catalog is None:
            raise NotReady(
                "no catalogue yet: "
                + self.errors.get("catalog", "the warehouse has not been read")
                + " (run `cratedigger run`, then retry)"
            )
        return catalog

    def _item_entry(self, catalog: Catalog, item_id: str) -> dict[str, Any]:
        item = catalog.items.get(item_id)
        artist_id = item.artist_id if item else None
        return {
            "item_id": item_id,
            "name": catalog.item_name(item_id),
            "artist_id": artist_id,
            "artist_name": catalog.artist_name(artist_id),
        }

    def discover_weekly(self, user_id: str, week: dt.date | str | None = None) -> dict[str, Any]:
        """A user's playlist for the week containing ``week`` (default: the latest week)."""
        shelf = self.shelf
        if not shelf.weeks:
            raise NotFound("no Discover Weekly has been published yet: run `cratedigger run`")
        day = _day(week)
        chosen = shelf.latest if day is None else monday(day)
        available = [str(w) for w in shelf.weeks]
        if chosen not in shelf.weeks:
            raise NotFound(
                f"no Discover Weekly for the week of {chosen}; weeks available: "
                + ", ".join(available)
            )
        playlists = self._week(shelf, chosen)
        if playlists is None:
            raise NotFound(f"the playlists of the week of {chosen} are being rewritten; retry")
        entries = playlists.entries(user_id)
        if entries is None:
            catalog = self.catalog
            known = catalog is not None and user_id in catalog.users
            raise NotFound(
                f"no Discover Weekly for user {user_id!r} in the week of {chosen}"
                if known
                else f"unknown user {user_id!r}: no Discover Weekly for them in the week of "
                f"{chosen}"
            )
        catalog = self.catalog
        for entry in entries:
            artist = entry.get("artist_id")
            entry["artist_name"] = catalog.artist_name(artist) if catalog else None
            if entry.get("name") is None:
                entry["name"] = catalog.item_name(entry["item_id"]) if catalog else ""
        return {
            "user_id": user_id,
            "week_start": chosen,
            "weeks_available": list(shelf.weeks),
            "variant": playlists.variant_of(user_id),
            "models": playlists.models,
            "items": entries,
        }

    def _kind_source(self, kind: str, collections: dict[str, Any] | None = None) -> Any:
        if kind == "cooccurrence":
            source = self.cooccurrence
            if source is None:
                raise NotFound(
                    "no co-occurrence neighbours published (exports/similar_artists.parquet): "
                    "materialise similar_artists_table"
                )
            return source
        collections = self.collections if collections is None else collections
        name = self._kind_name(kind, collections)
        if name is None:
            raise NotFound(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
        collection = collections.get(name)
        if collection is None:
            raise NotFound(
                f"no {kind} vectors are published (collection {name!r}); kinds served: "
                + ", ".join(self.kinds_served())
            )
        return collection

    def _kind_name(self, kind: str, collections: dict[str, Any] | None = None) -> str | None:
        """The collection of a kind; for audio, the configured backend's, else any published
        audio collection (the pipeline may have embedded another backend)."""
        collections = self.collections if collections is None else collections
        name = self.config.kind_collections.get(kind)
        if kind == "audio" and name not in collections:
            published = sorted(n for n in collections if n.startswith("audio_"))
            return published[0] if published else name
        return name

    def kinds_served(self) -> list[str]:
        served = [k for k in self.config.kind_collections if self._kind_name(k) in self.collections]
        return served + (["cooccurrence"] if self.cooccurrence is not None else [])

    def similar(self, level: str, key: str, kind: str = "cf", k: int = 10) -> dict[str, Any]:
        """The ``k`` items (``level='item'``) or artists most similar to ``key`` by ``kind``,
        the key itself excluded."""
        catalog = self._require_catalog()
        known = catalog.items if level == "item" else catalog.artists
        if key not in known:
            raise NotFound(f"unknown {level} {key!r}")
        source = self._kind_source(kind)
        if kind == "cooccurrence":
            if level != "artist" and key not in catalog.artists:
                raise NotFound(
                    f"co-occurrence neighbours are per artist; item {key!r} is a track: ask "
                    f"/artists/{catalog.items[key].artist_id}/similar?kind=cooccurrence"
                )
            found = [
                (other, score, reason)
                for other, score, reason in source.neighbours.get(key, [])
                if other != key
            ][:k]
            version = source.version
            collection = "recommend.similar_artists"
        else:
            if not source.has(key):
                hint = ""
                item = catalog.items.get(key)
                if level == "item" and item and item.artist_id and source.has(item.artist_id):
                    hint = f"; {kind} vectors are per artist: ask /artists/{item.artist_id}/similar"
                raise NotFound(
                    f"{level} {key!r} has no {kind} vector in {source.name} version "
                    f"{source.version}" + hint
                )
            found = [(other, score, None) for other, score in source.neighbours(key, k)]
            version, collection = source.version, source.name
        entries = []
        for other, score, reason in found:
            if level == "item" or other in catalog.items and other not in catalog.artists:
                entry = self._item_entry(catalog, other)
                entry = {"id": other, **{k_: v for k_, v in entry.items() if k_ != "item_id"}}
            else:
                name = catalog.artists.get(other, "")
                entry = {"id": other, "name": name, "artist_id": other, "artist_name": name}
            entry.update(score=round(float(score), 6), reason=reason)
            entries.append(entry)
        name = catalog.item_name(key) if level == "item" else catalog.artists.get(key, "")
        return {
            "id": key,
            "name": name,
            "level": level,
            "kind": kind,
            "collection": collection,
            "version": version,
            "items": entries,
        }

    def _popular(self, items: Any) -> list[str]:
        order = self._popular_cache.get(items.version)
        if order is None:
            ids = list(items.ids) if hasattr(items, "ids") else []
            popularity = (
                (items.fields or {}).get("popularity") if hasattr(items, "fields") else None
            )
            if popularity is not None:
                ranks = np.argsort(-np.asarray(popularity, dtype=np.float64), kind="stable")
                order = [ids[i] for i in ranks]
            else:
                order = ids
            self._popular_cache = {items.version: order}
        return order

    def recommend(self, user_id: str, k: int = 10) -> dict[str, Any]:
        """Top-``k`` items for a user by CF vectors, never anything the user played."""
        catalog = self._require_catalog()
        collections = self.collections  # one version of both (they switch together)
        items = self._kind_source("cf", collections)
        users = collections.get(CF_USERS_COLLECTION)
        vector = users.vector(user_id) if users is not None else None
        if vector is None and user_id not in catalog.users:
            raise NotFound(f"unknown user {user_id!r}")
        played = catalog.played.get(user_id, frozenset())
        if vector is not None and len(vector) != getattr(items, "dim", len(vector)):
            raise NotReady("CF user and item vectors of different models are published; retry")
        if vector is not None and np.any(vector):
            found = items.search(vector, k, exclude=played)
            method = "cf"
        else:  # a user without a CF vector (no plays before the model's week): popular items
            found = [(i, None) for i in self._popular(items) if i not in played][:k]
            method = "popular"
        entries = []
        for item_id, score in found:
            entry = self._item_entry(catalog, item_id)
            entry["score"] = None if score is None else round(float(score), 6)
            entries.append(entry)
        return {
            "user_id": user_id,
            "method": method,
            "excluded_played": len(played),
            "collection": items.name,
            "version": items.version,
            "user_version": users.version if users is not None else None,
            "items": entries,
        }

    def radio(self, artist_id: str, steps: int = 20, seed: int = 0) -> dict[str, Any]:
        """A station from ``artist_id``: ``steps`` artists drifting along the transition model
        of exploratory listeners, never one twice within :data:`RADIO_WINDOW` steps, each with
        why it follows the previous one."""
        from recommend.journeys import radio

        catalog = self._require_catalog()
        if artist_id not in catalog.artists:
            raise NotFound(f"unknown artist {artist_id!r}")
        served = self.transitions
        if served is None:
            raise NotReady(
                "no radio model yet: no transition model is published; materialise the "
                "transition_model asset (`cratedigger run`), then retry; meanwhile "
                f"/artists/{artist_id}/similar gives artists like this one"
            )
        model = served.model
        if artist_id not in model:
            raise NotFound(
                f"artist {artist_id!r} is not in the transition model of the week of "
                f"{served.week} (it joined the catalogue later)"
            )
        station = [
            {
                "position": step.position,
                "artist_id": step.artist_id,
                "name": step.name,
                "reason": step.reason,
                "kind": step.kind,
                "probability": round(step.probability, 6),
            }
            for step in radio(model, artist_id, steps=steps, window=RADIO_WINDOW, seed=seed)
        ]
        return {
            "artist_id": artist_id,
            "name": catalog.artists.get(artist_id, "") or model.name(artist_id),
            "week": served.week,
            "version": served.version,
            "explorers": len(model.rule.explorers),
            "window": RADIO_WINDOW,
            "steps": station,
        }

    def search(self, query: str, kind: str = "all", limit: int = 10) -> dict[str, Any]:
        catalog = self._require_catalog()
        if kind not in SEARCH_TYPES:
            raise ValueError(f"type {kind!r} is not one of {SEARCH_TYPES}")
        return {"query": query, "type": kind, "results": catalog.search(query, kind, limit)}

    def health(self) -> dict[str, Any]:
        collections = {name: c.describe() for name, c in sorted(self.collections.items())}
        if self.cooccurrence is not None:
            collections["cooccurrence"] = self.cooccurrence.describe()
        shelf = self.shelf
        latest = shelf.loaded.get(shelf.latest) if shelf.latest else None
        catalog = self.catalog
        ready = catalog is not None and bool(self.collections) and bool(shelf.weeks)
        return {
            "status": "ok" if ready else "degraded",
            "started_at": self.started_at,
            "kinds": self.kinds_served(),
            "collections": collections,
            "playlists": {
                "weeks": list(shelf.weeks),
                "latest": shelf.latest,
                "users": len(latest.rows) if latest else 0,
                "variant": latest.variant if latest else None,
            },
            "models": {
                **(latest.models if latest else {}),
                **({"transition_model": self.transitions.version} if self.transitions else {}),
            },
            "catalog": catalog.describe() if catalog else None,
            "indexing": sorted(f"{n}:{v}" for n, v in list(self._building)),
            "problems": dict(sorted(dict(self.errors).items())),
        }
