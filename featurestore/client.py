"""One client for cratedigger's Feast feature store, in either profile.

Pure code (no dagster, no environment reads): the caller passes the repository path, the data
directory and the profile. The client builds Feast's ``RepoConfig`` itself
(:func:`featurestore.config.build_config`), so one set of definitions
(:func:`featurestore.definitions.build_definitions`) serves both profiles, with the DuckDB or
the Spark offline store (``offline_store=``) over the same Parquet files.

Example usage::

    from featurestore.client import FeatureStoreClient
    from featurestore.server import free_port

    client = FeatureStoreClient("feature_repo", "data/feast")
    client.apply()                      # register entities, views, services
    client.materialize()                # Parquet -> online store, up to now
    client.online_user_features(["2", "no-such-user"])   # nulls + status NOT_FOUND
    spark = FeatureStoreClient("feature_repo", "data/feast", offline_store="spark",
                               spark_master="local[2]")   # Spark reads the same Parquet
    with client.serve(port=free_port()) as server:       # `feast serve` subprocess
        requests.post(server.url + "/get-online-features", json=...)
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import yaml

from featurestore.config import (
    DEFAULT_PROJECT,
    DEFAULT_REDIS,
    DEFAULT_SPARK_DRIVER_MEMORY,
    DEFAULT_SPARK_MASTER,
    SPARK_SQL_CONF,
    OfflineStore,
    Profile,
    build_config,
)
from featurestore.errors import FeatureStoreError, NotAppliedError, NotMaterializedError
from featurestore.online import response_frame
from featurestore.schemas import EVENT_TIMESTAMP, PARQUET_FILES, TIMESTAMP_DTYPE
from featurestore.server import FeatureServer, free_port, serve_command, start_server

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def _quiet():
    """Feast prints its materialisation banner and progress bars; our log line says it all."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


# Feast's Spark offline store sets this on whatever session it uses, for good: a quoted name
# in a SELECT list becomes a regular expression (plain names still match themselves, but
# `n(x)` then selects no column and `a|b` two).
SPARK_REGEX_NAMES = "spark.sql.parser.quotedRegexColumnNames"
SPARK_TIME_ZONE = "spark.sql.session.timeZone"


@contextlib.contextmanager
def _spark_session_restored():
    """Run Feast's Spark offline store in UTC and leave the session's settings as found.

    Feast reuses the process's active SparkSession (the Spark warehouse engine's, say) and then
    ignores its ``spark_conf``, so the time zone could be anything. But Spark hands timestamps
    to pandas as naive session-time values, which Feast then takes as UTC: in another zone the
    event timestamps and timestamp features of ``historical`` and of what ``materialize``
    writes online would shift by the zone's offset (and ``pull_latest`` windows are UTC
    literals read in session time). So the session runs in UTC while Feast uses it, and
    afterwards :data:`SPARK_REGEX_NAMES` and the time zone get back their values from before
    (a session Feast started keeps its UTC and loses the regex setting), so the project's
    other Spark SQL on the same session is parsed as usual. Not safe against another thread
    running Spark SQL on the same session meanwhile.
    """
    from pyspark.sql import SparkSession

    before = SparkSession.getActiveSession()
    saved: dict[str, str | None] = {SPARK_REGEX_NAMES: None}
    if before is not None:
        saved = {key: before.conf.get(key, None) for key in (SPARK_REGEX_NAMES, SPARK_TIME_ZONE)}
        before.conf.set(SPARK_TIME_ZONE, SPARK_SQL_CONF[SPARK_TIME_ZONE])
    try:
        yield
    finally:
        session = SparkSession.getActiveSession()
        if session is not None:
            for key, value in saved.items():
                if value is None:
                    session.conf.unset(key)
                else:
                    session.conf.set(key, value)


DEFAULT_USER_FEATURES = "weekly_playlist_ranking_v1"
SOURCE_KINDS = {"duckdb": "FileSource", "spark": "SparkSource"}
"""The Feast source class each offline store reads (``featurestore.definitions`` builds it)."""
MATERIALIZE_FROM = datetime(1970, 1, 1, tzinfo=UTC)

APPLY_HINT = (
    "run `FeatureStoreClient.apply()`, or materialise the Dagster `features` asset group, or "
    "`CRATEDIGGER_FEAST_DATA_DIR={data_dir} feast -c {repo} apply`"
)
MATERIALIZE_HINT = (
    "run `FeatureStoreClient.materialize()`, or materialise the Dagster `features` asset group, "
    "or `CRATEDIGGER_FEAST_DATA_DIR={data_dir} feast -c {repo} materialize-incremental "
    "$(date -u +%Y-%m-%dT%H:%M:%S)`"
)


@dataclass(frozen=True)
class MaterializeResult:
    """What one ``materialize`` call wrote.

    Attributes
    ----------
    start, end : datetime
        The event-time window materialised.
    entities : dict[str, int]
        Per feature view, the number of entity keys with a row in the window (each gets its
        latest row written to the online store).
    skipped : dict[str, str]
        Feature views not materialised, with the reason (e.g. their Parquet does not exist yet).
    """

    start: datetime
    end: datetime
    entities: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


class FeatureStoreClient:
    """cratedigger's Feast store: apply, materialise, read online / historical, serve.

    Parameters
    ----------
    repo_path : str or Path
        The Feast repository (``feature_repo``): Feast's ``repo_path``, and the ``-c`` of
        ``feast serve``.
    data_dir : str or Path
        Directory of the feature Parquet files; embedded, also of registry and SQLite store.
    profile : {"embedded", "production"}
        Which stores to use (see :func:`featurestore.config.build_config`).
    project : str
        Feast project name (use a unique one per test run on shared servers).
    registry_url : str, optional
        SQL registry URL (SQLAlchemy; ``postgresql://`` becomes ``postgresql+psycopg://``),
        required for ``production``; ignored for ``embedded``.
    redis_url : str
        Redis ``host:port`` for ``production``.
    registry_cache_ttl_seconds : int
        Registry cache lifetime in this process.
    postgres_url : str, optional
        Alias of ``registry_url`` (the name the settings module uses).
    offline_store : {"duckdb", "spark"}
        What reads the Parquet for ``historical`` and ``materialize``: DuckDB, or Spark
        (``SparkSource`` definitions; for the Spark warehouse engine).
    spark_master : str
        Master of the session Feast starts when none runs in this process; ``spark`` only.
    spark_driver_memory : str
        Driver heap of that session; ``spark`` only.
    """

    def __init__(
        self,
        repo_path: str | Path,
        data_dir: str | Path,
        profile: Profile = "embedded",
        *,
        project: str = DEFAULT_PROJECT,
        registry_url: str | None = None,
        redis_url: str = DEFAULT_REDIS,
        registry_cache_ttl_seconds: int = 60,
        postgres_url: str | None = None,
        offline_store: OfflineStore = "duckdb",
        spark_master: str = DEFAULT_SPARK_MASTER,
        spark_driver_memory: str = DEFAULT_SPARK_DRIVER_MEMORY,
    ) -> None:
        registry_url = None if profile == "embedded" else (registry_url or postgres_url)
        self.repo_path = Path(repo_path).expanduser().resolve()
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.profile = profile
        self.config = build_config(
            self.data_dir,
            profile,
            project=project,
            registry_url=registry_url,
            redis_url=redis_url,
            registry_cache_ttl_seconds=registry_cache_ttl_seconds,
            offline_store=offline_store,
            spark_master=spark_master,
            spark_driver_memory=spark_driver_memory,
        )
        self.offline_store = offline_store
        self.project = project
        self._store: Any = None
        self._materialized: set[str] = set()
        self._resolved: dict[Any, tuple[list[str], dict[str, str], float]] = {}
        self._resolve_ttl_s = registry_cache_ttl_seconds

    # ------------------------------------------------------------------ plumbing
    @property
    def store(self) -> Any:
        """The underlying ``feast.FeatureStore`` (created on first use)."""
        if self._store is None:
            from feast import FeatureStore, RepoConfig

            repo_config = RepoConfig(repo_path=self.repo_path, **self.config)
            self._store = FeatureStore(repo_path=str(self.repo_path), config=repo_config)
        return self._store

    def definitions(self) -> Any:
        """The Feast objects for this data directory (a ``FeatureDefinitions``)."""
        from featurestore.definitions import build_definitions

        return build_definitions(self.data_dir, self.offline_store)

    def _offline(self) -> contextlib.AbstractContextManager[None]:
        """Around every call of Feast's offline store: see :func:`_spark_session_restored`."""
        if self.offline_store == "spark":
            return _spark_session_restored()
        return contextlib.nullcontext()

    def parquet_path(self, view: str) -> Path:
        """Where the Parquet source of feature view ``view`` lives (write it there)."""
        if view not in PARQUET_FILES:
            raise KeyError(f"unknown feature view {view!r}; known: {sorted(PARQUET_FILES)}")
        return self.data_dir / PARQUET_FILES[view]

    def hints(self) -> dict[str, str]:
        """The commands that fix "not applied" / "not materialised", for this client."""
        values = {"data_dir": self.data_dir, "repo": self.repo_path}
        return {
            "apply": APPLY_HINT.format(**values),
            "materialize": MATERIALIZE_HINT.format(**values),
        }

    def write_yaml(self, path: str | Path | None = None) -> Path:
        """Write this client's effective ``feature_store.yaml`` (used by ``feast serve``).

        Parameters
        ----------
        path : str or Path, optional
            Target; defaults to ``<data_dir>/feature_store.<profile>.<project>.yaml``.

        Returns
        -------
        Path
            The file; pass it to the CLI as ``feast -c <repo> -f <file> ...``.
        """
        target = (
            Path(path)
            if path is not None
            else self.data_dir / f"feature_store.{self.profile}.{self.project}.yaml"
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(yaml.safe_dump(self.config, sort_keys=False))
        return target

    # ------------------------------------------------------------------ lifecycle
    def apply(self) -> list[str]:
        """Register every entity, source, feature view and service; drop stale ones.

        Works before the Parquet files exist (Feast only warns); those views are skipped by
        :meth:`materialize` until their file appears.

        Returns
        -------
        list of str
            Names of the registered objects, as ``kind:name`` (e.g. ``feature_view:artist_stats``).
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        objects = self.definitions().objects()
        stale = self._stale_objects(objects)
        self._drop_sources_of_another_kind(objects)
        self.store.apply(objects, objects_to_delete=stale, partial=not stale)
        self._materialized.clear()
        self._resolved.clear()
        names = [f"{_kind(obj)}:{obj.name}" for obj in objects]
        logger.info("applied %d objects to project %s (%s)", len(names), self.project, self.profile)
        if stale:
            logger.info("removed stale objects: %s", [o.name for o in stale])
        return names

    def _drop_sources_of_another_kind(self, objects: Sequence[Any]) -> list[str]:
        """Unregister the sources registered under a wanted name with another type (a
        ``FileSource`` when the offline store became Spark, or back): Feast's SQL registry
        reads the stored source as the new type and fails. The views are re-applied with the
        new sources at once. Returns the names dropped."""
        wanted = {o.name: type(o) for o in objects if _kind(o) == "data_source"}
        try:
            registered = self.store.list_data_sources()
        except Exception:  # noqa: BLE001 - a fresh registry may not exist yet
            return []
        changed = [s.name for s in registered if s.name in wanted and type(s) is not wanted[s.name]]
        for name in changed:
            self.store.registry.delete_data_source(name, self.project, commit=True)
        if changed:
            logger.info("re-registering sources of another kind: %s", changed)
        return changed

    def _stale_objects(self, objects: Sequence[Any]) -> list[Any]:
        """Registered objects of this project that the definitions no longer contain."""
        wanted = {(_kind(o), o.name) for o in objects}
        registered: list[Any] = []
        try:
            registered += self.store.list_feature_services()
            registered += self.store.list_feature_views()
            registered += self.store.list_entities()
            registered += self.store.list_data_sources()
        except Exception:  # noqa: BLE001 - a fresh registry may not exist yet
            return []
        return [o for o in registered if (_kind(o), o.name) not in wanted]

    def materialize(
        self,
        end: datetime | None = None,
        start: datetime | None = None,
        views: Iterable[str] | None = None,
    ) -> MaterializeResult:
        """Copy the latest row per entity in ``[start, end]`` from Parquet to the online store.

        Parameters
        ----------
        end : datetime, optional
            UTC-aware end of the event-time window; defaults to now.
        start : datetime, optional
            UTC-aware start; defaults to 1970 (all history: Feast keeps the latest row per key).
        views : iterable of str, optional
            Feature views to materialise; defaults to all. Views whose Parquet file does not
            exist yet are skipped and reported in ``skipped`` (no error).

        Returns
        -------
        MaterializeResult
            Window, entity keys written per view, skipped views with reasons.
        """
        end = _aware(end, "end") if end is not None else datetime.now(UTC)
        start = _aware(start, "start") if start is not None else MATERIALIZE_FROM
        registered = self._registered_views()
        wanted = list(views) if views is not None else sorted(registered)
        self._check_registered(wanted, registered)
        self._check_source_kinds(wanted, registered)
        ready, skipped = _split_by_source(wanted, registered)
        for name, reason in skipped.items():
            logger.warning("not materialising %s: %s", name, reason)
        entities = {name: _entities_in_window(registered[name], start, end) for name in ready}
        if ready:
            with self._offline(), _quiet():
                self.store.materialize(start_date=start, end_date=end, feature_views=ready)
            self._materialized.update(ready)
        logger.info("materialised %s into the %s online store", entities, self.profile)
        return MaterializeResult(start=start, end=end, entities=entities, skipped=skipped)

    def _check_registered(self, wanted: Sequence[str], registered: dict[str, Any]) -> None:
        unknown = [v for v in wanted if v not in registered]
        if unknown:
            raise NotAppliedError(
                f"feature view(s) {unknown} are not in the registry of project "
                f"{self.project!r}: {self.hints()['apply']}"
            )

    def materialize_incremental(self, end: datetime | None = None) -> MaterializeResult:
        """Materialise each view from where the last run ended (Feast's incremental mode).

        Parameters
        ----------
        end : datetime, optional
            UTC-aware end; defaults to now. Views without Parquet are skipped.

        Returns
        -------
        MaterializeResult
            ``entities`` is empty here (Feast picks each view's start itself).
        """
        end = _aware(end, "end") if end is not None else datetime.now(UTC)
        registered = self._registered_views()
        self._check_source_kinds(list(registered), registered)
        ready, skipped = _split_by_source(list(registered), registered)
        if ready:
            with self._offline(), _quiet():
                self.store.materialize_incremental(end_date=end, feature_views=ready)
            self._materialized.update(ready)
        return MaterializeResult(start=MATERIALIZE_FROM, end=end, skipped=skipped)

    def teardown(self) -> None:
        """Remove this project's online tables/keys and its registry entries, nothing else.

        Unlike ``FeatureStore.teardown`` (which deletes every project of a shared SQL
        registry), this only touches ``self.project``.
        """
        store = self.store
        try:
            views = store.list_feature_views()
            entities = store.list_entities()
        except Exception:  # noqa: BLE001 - nothing applied, nothing to remove
            return
        store._get_provider().teardown_infra(self.project, views, entities)
        store.registry.delete_project(self.project, commit=True)
        _delete_sql_version_history(store.registry, self.project)
        self._materialized.clear()
        logger.info("tore down Feast project %s", self.project)

    # ------------------------------------------------------------------ reads
    def _registered_views(self) -> dict[str, Any]:
        """Registered feature views by name; :class:`NotAppliedError` if there are none."""
        self._check_registry_file()
        try:
            views = {v.name: v for v in self.store.list_feature_views(allow_cache=True)}
        except Exception as error:  # registry file/tables missing
            raise NotAppliedError(
                f"Feast registry for project {self.project!r} is not readable "
                f"({type(error).__name__}: {error}): {self.hints()['apply']}"
            ) from error
        if not views:
            raise NotAppliedError(
                f"Feast project {self.project!r} has no feature views registered "
                f"({self.config['registry']['path']}): {self.hints()['apply']}"
            )
        return views

    def _check_registry_file(self) -> None:
        registry = self.config["registry"]
        if registry["registry_type"] == "file" and not Path(registry["path"]).exists():
            raise NotAppliedError(
                f"Feast registry {registry['path']} does not exist (project {self.project!r} "
                f"was never applied there): {self.hints()['apply']}"
            )

    def _resolve_features(self, features: str | Sequence[str] | None) -> list[str]:
        """Feature references ``view:feature`` from a service name, view names or refs."""
        registered = self._registered_views()
        if features is None:
            features = DEFAULT_USER_FEATURES
        if isinstance(features, str):
            features = [features]
        refs = [ref for item in features for ref in self._refs_of(item, registered)]
        unknown_views = sorted({r.split(":")[0] for r in refs} - set(registered))
        if unknown_views:
            raise KeyError(f"feature view(s) {unknown_views} not registered; {sorted(registered)}")
        return refs

    def _refs_of(self, item: str, registered: dict[str, Any]) -> list[str]:
        """The ``view:feature`` references of one ref, view name or feature service name."""
        if ":" in item:
            return [item]
        if item in registered:
            return [f"{item}:{f.name}" for f in registered[item].features]
        try:
            service = self.store.get_feature_service(item, allow_cache=True)
        except Exception as error:
            raise KeyError(
                f"{item!r} is neither a feature view ({sorted(registered)}), a "
                f"'view:feature' reference nor a registered feature service"
            ) from error
        return [
            f"{projection.name_to_use()}:{f.name}"
            for projection in service.feature_view_projections
            for f in projection.features
        ]

    def feature_refs(self, features: str | Sequence[str] | None = None) -> list[str]:
        """Resolve a service name, view names or refs to ``view:feature`` references.

        Parameters
        ----------
        features : str or sequence of str, optional
            As for :meth:`online_features`; default ``weekly_playlist_ranking_v1``.

        Returns
        -------
        list of str
            ``view:feature`` references, e.g. ``["user_cf_vector:cf_vector"]``.
        """
        return list(self._resolve_cached(features)[0])

    def _check_materialized(self, refs: Sequence[str]) -> None:
        views = {r.split(":")[0] for r in refs} - self._materialized
        if not views:
            return
        registered = self._registered_views()
        never = sorted(v for v in views if not registered[v].materialization_intervals)
        if never:
            absent = [
                f"{v} (its Parquet source {registered[v].batch_source.path} does not exist yet)"
                for v in never
                if not Path(registered[v].batch_source.path).exists()
            ]
            raise NotMaterializedError(
                f"feature view(s) {never} of project {self.project!r} were never materialised "
                f"to the online store"
                + (f"; {', '.join(absent)}" if absent else "")
                + f": {self.hints()['materialize']}"
            )
        self._materialized.update(views)

    def _resolve_cached(
        self, features: str | Sequence[str] | None
    ) -> tuple[list[str], dict[str, str]]:
        """``_resolve_features`` + dtypes, cached like Feast caches its registry.

        Resolving a feature service deserialises it from the registry each call (about as
        slow as the online read itself), so the answer is kept for the registry cache TTL
        (forever when that TTL is 0, as in Feast) and dropped by :meth:`apply`.
        """
        cache_key = features if features is None or isinstance(features, str) else tuple(features)
        now = time.monotonic()
        hit = self._resolved.get(cache_key)
        if hit is not None and (self._resolve_ttl_s <= 0 or now < hit[2]):
            return hit[0], hit[1]
        refs = self._resolve_features(features)
        dtypes = self._feature_dtypes(refs)
        self._resolved[cache_key] = (refs, dtypes, now + self._resolve_ttl_s)
        return refs, dtypes

    def _feature_dtypes(self, refs: Sequence[str]) -> dict[str, str]:
        """Feast dtype name (``Int64``, ``Float64``, ...) per feature name of ``refs``."""
        registered = self._registered_views()
        dtypes: dict[str, str] = {}
        for ref in refs:
            view, name = ref.split(":")
            for feature in registered[view].features:
                if feature.name == name:
                    dtypes[name] = str(feature.dtype)
        return dtypes

    def online_features(
        self,
        entity_key: str,
        keys: Sequence[str],
        features: str | Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Online feature values for entity keys, with a status per row (never raises on keys).

        Parameters
        ----------
        entity_key : str
            Join key, e.g. ``"user_id"`` or ``"artist_id"``.
        keys : sequence of str
            Entity key values; unknown ones give null features and status ``NOT_FOUND``.
        features : str or sequence of str, optional
            A feature service name, feature view names (all their features) and/or
            ``view:feature`` references. Defaults to ``weekly_playlist_ranking_v1``.

        Returns
        -------
        pandas.DataFrame
            One row per key in input order: the key column, one column per feature (named by
            the feature), ``status`` (``PRESENT``: every feature has a value; ``NOT_FOUND``: the
            key is in no requested view; ``PARTIAL``: anything between) and ``feature_status``
            (dict of the features that are not ``PRESENT`` -> Feast field status:
            ``NOT_FOUND``, ``NULL_VALUE`` or ``OUTSIDE_MAX_AGE``).

        Raises
        ------
        NotAppliedError, NotMaterializedError
            Before ``apply`` / ``materialize``; the message names the command to run.
        """
        refs, dtypes = self._resolve_cached(features)
        self._check_materialized(refs)
        keys = [str(k) for k in keys]
        response = self.store.get_online_features(
            features=refs, entity_rows=[{entity_key: k} for k in keys]
        )
        return response_frame(response, entity_key, keys, refs, dtypes)

    def online_user_features(
        self, user_ids: Sequence[str], features: str | Sequence[str] | None = None
    ) -> pd.DataFrame:
        """Online features by ``user_id``; see :meth:`online_features`.

        Parameters
        ----------
        user_ids : sequence of str
            User ids (unknown ones give nulls and ``status == "NOT_FOUND"``).
        features : str or sequence of str, optional
            Service, views or ``view:feature`` refs; default ``weekly_playlist_ranking_v1``.

        Returns
        -------
        pandas.DataFrame
            ``user_id``, the features, ``status``, ``feature_status``.
        """
        return self.online_features("user_id", user_ids, features)

    def online_artist_features(
        self, artist_ids: Sequence[str], features: str | Sequence[str] | None = "artist_stats"
    ) -> pd.DataFrame:
        """Online features by ``artist_id`` (default: all of ``artist_stats``)."""
        return self.online_features("artist_id", artist_ids, features)

    def historical(
        self,
        entity_df: pd.DataFrame,
        features: str | Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Point-in-time correct training frame from the offline store (DuckDB or Spark).

        For each entity row the value of each feature is the latest one with
        ``event_timestamp <= row's event_timestamp`` and within the view's TTL; never a later
        one.

        Parameters
        ----------
        entity_df : pandas.DataFrame
            Join key column(s) (e.g. ``user_id``) and ``event_timestamp`` (UTC-aware).
        features : str or sequence of str, optional
            Service, views or ``view:feature`` refs; default ``weekly_playlist_ranking_v1``.

        Returns
        -------
        pandas.DataFrame
            ``entity_df`` plus one column per feature (rows may come back reordered; sort by
            your keys). Timestamps are UTC-aware from either offline store.
        """
        if EVENT_TIMESTAMP not in entity_df.columns:
            raise ValueError(
                f"entity_df needs an event_timestamp column (UTC) besides the join keys; "
                f"got {list(entity_df.columns)}"
            )
        refs = self._resolve_features(features)
        self._check_sources_exist({r.split(":")[0] for r in refs})
        frame = entity_df.copy()
        frame[EVENT_TIMESTAMP] = pd.to_datetime(frame[EVENT_TIMESTAMP], utc=True).astype(
            "datetime64[us, UTC]"
        )
        with self._offline():
            job = self.store.get_historical_features(entity_df=frame, features=refs)
            result = job.to_df()
        return _utc_timestamps(result) if self.offline_store == "spark" else result

    def _check_source_kinds(self, views: Iterable[str], registered: dict[str, Any]) -> None:
        """Each view's registered source is the kind this offline store reads."""
        wanted = SOURCE_KINDS[self.offline_store]
        wrong = sorted(v for v in views if type(registered[v].batch_source).__name__ != wanted)
        if wrong:
            found = type(registered[wrong[0]].batch_source).__name__
            raise FeatureStoreError(
                f"feature view(s) {wrong} of project {self.project!r} are registered with a "
                f"{found}, but the {self.offline_store} offline store reads {wanted} only (the "
                f"registry was applied for the other offline store): {self.hints()['apply']}"
            )

    def _check_sources_exist(self, views: Iterable[str]) -> None:
        registered = self._registered_views()
        self._check_source_kinds(views, registered)
        absent = sorted(v for v in views if not Path(registered[v].batch_source.path).exists())
        if absent:
            raise FeatureStoreError(
                f"Parquet source of feature view(s) {absent} does not exist yet in "
                f"{self.data_dir}: write it with featurestore.tables.export_parquet (or "
                f"materialise the Dagster `features` asset group) first"
            )

    def serve(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        *,
        timeout_s: float = 60.0,
        workers: int = 1,
        max_requests: int | None = None,
        feast_executable: str | None = None,
    ) -> FeatureServer:
        """Start ``feast serve`` (HTTP) for this store as a subprocess and wait until ready.

        Parameters
        ----------
        host : str
            Interface to bind; keep ``127.0.0.1`` outside containers.
        port : int, optional
            Port; defaults to a free one.
        timeout_s : float
            How long to wait for ``/health``.
        workers : int
            Gunicorn worker processes.
        max_requests : int, optional
            Requests after which gunicorn restarts a worker; Feast's default is 1000 (+-50),
            and with one worker the server is down while the new worker starts. ``0``
            disables restarts (benchmarks); ``None`` keeps Feast's default.
        feast_executable : str, optional
            Path of the ``feast`` CLI; defaults to the one beside this Python.

        Returns
        -------
        FeatureServer
            Use ``with client.serve() as server:`` so the process is always terminated.
        """
        self._registered_views()
        if not self.repo_path.is_dir():
            raise FeatureStoreError(
                f"{self.repo_path} is not a directory: repo_path must be the Feast repository "
                f"(the one holding feature_store.yaml), which `feast serve -c` needs"
            )
        port = port if port is not None else free_port(host)
        command = serve_command(
            self.repo_path,
            self.write_yaml(),
            host,
            port,
            workers=workers,
            max_requests=max_requests,
            executable=feast_executable,
        )
        log_path = self.data_dir / f"feast_serve_{port}.log"
        return start_server(command, f"http://{host}:{port}", log_path, self.data_dir, timeout_s)


def _split_by_source(
    wanted: Sequence[str], registered: dict[str, Any]
) -> tuple[list[str], dict[str, str]]:
    """The views whose Parquet source exists, and the others with the reason they wait."""
    ready: list[str] = []
    skipped: dict[str, str] = {}
    for name in wanted:
        path = Path(registered[name].batch_source.path)
        if path.exists():
            ready.append(name)
        else:
            skipped[name] = f"Parquet source {path} does not exist yet"
    return ready, skipped


def _delete_sql_version_history(registry: Any, project: str) -> None:
    """Drop a project's rows from the SQL registry's version-history table.

    ``SqlRegistry.delete_project`` in Feast 0.67 leaves ``feature_view_version_history`` rows.
    """
    engine = getattr(registry, "write_engine", None)
    if engine is None:
        return
    from feast.infra.registry import sql as sql_registry
    from sqlalchemy import delete

    table = getattr(sql_registry, "feature_view_version_history", None)
    if table is None or "project_id" not in table.c:
        return
    with engine.begin() as connection:
        connection.execute(delete(table).where(table.c.project_id == project))


def _kind(obj: Any) -> str:
    from feast import Entity, FeatureService, FeatureView
    from feast.data_source import DataSource

    if isinstance(obj, FeatureService):
        return "feature_service"
    if isinstance(obj, FeatureView):
        return "feature_view"
    if isinstance(obj, Entity):
        return "entity"
    if isinstance(obj, DataSource):
        return "data_source"
    return type(obj).__name__


def _utc_timestamps(frame: pd.DataFrame) -> pd.DataFrame:
    """Timestamp columns of a Spark answer as DuckDB's: ``datetime64[us, UTC]`` (Spark's
    ``toPandas`` gives nanoseconds, naive ones in the session time zone, UTC here)."""
    for column in frame.columns:
        if pd.api.types.is_datetime64_any_dtype(frame[column]):
            values = frame[column]
            if values.dt.tz is None:
                values = values.dt.tz_localize("UTC")
            frame[column] = values.dt.tz_convert("UTC").astype(TIMESTAMP_DTYPE)
    return frame


def _aware(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"{name}={moment!r} has no time zone; pass a UTC-aware datetime")
    return moment.astimezone(UTC)


def _entities_in_window(view: Any, start: datetime, end: datetime) -> int:
    """Distinct join keys of a registered view with an event in ``[start, end]`` in its Parquet."""
    if not view.join_keys:
        return 0
    with duckdb.connect() as con:
        found = con.execute(
            f'SELECT count(DISTINCT "{view.join_keys[0]}") FROM read_parquet(?) '
            f"WHERE {EVENT_TIMESTAMP} BETWEEN ? AND ?",
            [str(view.batch_source.path), start, end],
        ).fetchone()
    return int(found[0]) if found else 0
