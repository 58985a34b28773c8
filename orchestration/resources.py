"""Dagster resources: the only code that turns settings into connections.

Every resource is a small interface with an embedded and a production flavour chosen by
:func:`build_resources` from :mod:`orchestration.settings`; assets take them as typed parameters
and never look at the environment.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
import duckdb
import pandas as pd

from artifacts import ArtifactStore
from orchestration.settings import Settings, load_settings

if TYPE_CHECKING:
    from recommend.variants import Experiment

LOCK_WAIT_SECONDS = 120.0
ARTIFACTS = "artifacts"  # resource key of the artifact store (an IO manager)


class WarehouseLockedError(RuntimeError):
    """Another process holds the DuckDB file for writing."""


class Warehouse(dg.ConfigurableResource):
    """The DuckDB warehouse file (schemas ``raw`` and ``golden`` plus downstream tables).

    DuckDB allows one writing process per file. Assets that write run in the ``duckdb``
    concurrency pool; as a second line of defence :meth:`connect` waits (bounded) for a lock held
    by another process and then fails with a message that says who to stop.
    """

    path: str

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                con = duckdb.connect(self.path, read_only=read_only and Path(self.path).exists())
                break
            except duckdb.IOException as error:
                if "lock" not in str(error).lower() or time.monotonic() > deadline:
                    raise WarehouseLockedError(
                        f"DuckDB file {self.path} is locked by another process ({error}). "
                        "Stop the other writer (a running Dagster step, a notebook or a `duckdb` "
                        "shell holding the file), or run with the `duckdb` pool limit at 1."
                    ) from error
                time.sleep(0.5)
        try:
            yield con
        finally:
            con.close()

    def write_table(
        self,
        schema: str,
        table: str,
        frame: pd.DataFrame,
        types: dict[str, str] | None = None,
    ) -> int:
        """Replace ``schema.table`` with ``frame`` atomically; return the row count.

        ``types`` casts the named columns (e.g. ``{"plays": "VARCHAR"}``); others keep theirs.
        """
        columns = ", ".join(
            f'CAST("{c}" AS {types[c]}) AS "{c}"' if types and c in types else f'"{c}"'
            for c in frame.columns
        )
        with self.connect() as con:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            con.register("_frame", frame)
            con.execute("BEGIN TRANSACTION")
            con.execute(f"CREATE OR REPLACE TABLE {schema}.{table} AS SELECT {columns} FROM _frame")
            con.execute("COMMIT")
            con.unregister("_frame")
        return len(frame)

    def replace_partition(
        self, schema: str, table: str, frame: pd.DataFrame, column: str, value: Any
    ) -> int:
        """Replace the rows of ``schema.table`` where ``column = value`` with ``frame``, in one
        transaction (the table is created from ``frame``'s columns the first time)."""
        with self.connect() as con:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            con.register("_frame", frame)
            con.execute(
                f"CREATE TABLE IF NOT EXISTS {schema}.{table} AS SELECT * FROM _frame LIMIT 0"
            )
            _add_new_columns(con, schema, table)
            con.execute("BEGIN TRANSACTION")
            con.execute(f"DELETE FROM {schema}.{table} WHERE {column} = ?", [value])
            con.execute(f"INSERT INTO {schema}.{table} BY NAME SELECT * FROM _frame")
            con.execute("COMMIT")
            con.unregister("_frame")
        return len(frame)

    def append_table(self, schema: str, table: str, frame: pd.DataFrame) -> int:
        """Append ``frame`` to ``schema.table`` by column name (the table is created from
        ``frame``'s columns the first time): one batch of a table written incrementally, e.g.
        after :meth:`replace_partition` replaced a partition with the first batch."""
        with self.connect() as con:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            con.register("_frame", frame)
            con.execute(
                f"CREATE TABLE IF NOT EXISTS {schema}.{table} AS SELECT * FROM _frame LIMIT 0"
            )
            _add_new_columns(con, schema, table)
            con.execute(f"INSERT INTO {schema}.{table} BY NAME SELECT * FROM _frame")
            con.unregister("_frame")
        return len(frame)

    def publish_golden(
        self, table: str, golden: pd.DataFrame, quarantine: pd.DataFrame, quarantine_ddl: str
    ) -> None:
        """Replace ``golden.<table>`` and its slice of ``golden.quarantine`` in one transaction."""
        with self.connect() as con:
            con.execute("CREATE SCHEMA IF NOT EXISTS golden")
            con.execute(quarantine_ddl)
            con.register("_golden", golden)
            con.register("_quarantine", quarantine)
            con.execute("BEGIN TRANSACTION")
            con.execute(f"CREATE OR REPLACE TABLE golden.{table} AS SELECT * FROM _golden")
            con.execute("DELETE FROM golden.quarantine WHERE table_name = ?", [table])
            con.execute(
                "INSERT INTO golden.quarantine SELECT table_name, record_key, reason, raw_row, "
                "source_file, CAST(source_line AS BIGINT), run_id, quarantined_at FROM _quarantine"
            )
            con.execute("COMMIT")

    def read(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
        with self.connect(read_only=True) as con:
            return con.execute(sql, params or []).df()

    def table(self, schema: str, table: str) -> pd.DataFrame:
        return self.read(f"SELECT * FROM {schema}.{table}")

    def has_table(self, schema: str, table: str) -> bool:
        if not Path(self.path).exists():
            return False
        found = self.read(
            "SELECT count(*) AS n FROM information_schema.tables "
            "WHERE table_schema = ? AND table_name = ?",
            [schema, table],
        )
        return bool(found["n"].iloc[0])


def _add_new_columns(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> None:
    """Add the registered ``_frame``'s columns that ``schema.table`` lacks (null in the rows
    already there): a table written by an older version takes a new column."""
    have = {
        row[0]
        for row in con.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ?",
            [schema, table],
        ).fetchall()
    }
    for name, kind, *_ in con.execute("DESCRIBE SELECT * FROM _frame").fetchall():
        if name not in have:
            con.execute(f'ALTER TABLE {schema}.{table} ADD COLUMN "{name}" {kind}')


class WarehouseEngine(dg.ConfigurableResource):
    """The engine of the raw landing, row rules, quarantine and golden tables.

    ``duckdb`` (default): they are tables of the warehouse file. ``spark``: Spark builds them as
    Parquet under ``spark_dir`` (:mod:`warehouse.spark_engine`, the same rule definitions) and
    the warehouse reads them as views (:mod:`warehouse.lakehouse`), so every asset downstream
    runs unchanged.
    """

    kind: str = "duckdb"
    spark_master: str = "local[2]"
    spark_dir: str = ""
    cf_als: str = "implicit"  # who fits ALS by default: implicit or mllib (Spark MLlib)

    @property
    def is_spark(self) -> bool:
        return self.kind == "spark"

    def session(self) -> Any:
        """The process's Spark session (started on first use), with every table built so far
        registered in its catalog (a step may run in a new process)."""
        from warehouse.spark_engine import register_warehouse, spark_session

        spark = spark_session(self.spark_master)
        register_warehouse(spark, self.spark_dir)
        return spark


class Paths(dg.ConfigurableResource):
    """Where files go: models, reports, Feast exports, GX project, sample data."""

    data_dir: str
    feature_repo: str
    audio_dir: str
    audio_backend: str = "musicnn"
    audio_compare: str = "installed"

    @property
    def audio_backends(self) -> list[str]:
        """The backend the recommender uses first, then those embedded beside it to compare.

        ``installed`` compares every other installed backend; a backend named explicitly but
        not installed stays in the list (the asset reports it as unavailable).
        """
        from embeddings.audio import available_backends

        if self.audio_compare == "none":
            others: list[str] = []
        elif self.audio_compare == "installed":
            others = available_backends()
        else:
            others = [name for name in self.audio_compare.split(",") if name]
        return list(dict.fromkeys([self.audio_backend, *others]))

    @property
    def root(self) -> Path:
        return Path(self.data_dir)

    def sub(self, *parts: str) -> Path:
        path = Path(self.data_dir, *parts)
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def gx_root(self) -> Path:
        return self.sub("gx")


class VectorStoreResource(dg.ConfigurableResource):
    """Milvus: a Milvus Lite ``.db`` file (embedded) or a server URI (production).

    Milvus Lite allows one process per file, so every asset using it runs in the ``milvus`` pool;
    as a second line of defence :meth:`open` waits (bounded, as the warehouse does) for a file
    held by another process and then fails with a message that says who to stop.
    """

    uri: str
    lock_wait_seconds: float = LOCK_WAIT_SECONDS

    @contextmanager
    def open(self) -> Iterator[Any]:
        from embeddings.vector_store import VectorStore, VectorStoreLocked

        if not self.uri.startswith("http"):
            Path(self.uri).parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_wait_seconds
        while True:
            try:
                store = VectorStore(self.uri)
                break
            except VectorStoreLocked:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)
        try:
            yield store
        finally:
            store.close()


class FeatureStoreResource(dg.ConfigurableResource):
    """Feast: file registry + DuckDB offline + SQLite online (embedded), or SQL registry on
    Postgres + Redis online (production)."""

    repo_path: str
    data_dir: str
    profile: str
    postgres_url: str
    redis_url: str
    offline_store: str = "duckdb"  # "spark" on the Spark engine: Feast's Spark offline store
    spark_master: str = "local[2]"
    project: str = "cratedigger"

    def client(self) -> Any:
        from featurestore.client import FeatureStoreClient

        return FeatureStoreClient(
            repo_path=self.repo_path,
            data_dir=self.data_dir,
            profile=self.profile,
            postgres_url=self.postgres_url,
            redis_url=self.redis_url,
            offline_store=self.offline_store,
            spark_master=self.spark_master,
            project=self.project,
        )


class ExperimentResource(dg.ConfigurableResource):
    """The A/B experiment: the playlist variants ``discover_weekly`` serves (each user by a
    stable hash of the user id) and ``variant_replay`` compares offline. ``spec`` is the
    experiment as JSON (:func:`recommend.variants.parse_experiment`; settings key
    ``CRATEDIGGER_EXPERIMENT``); empty: the default experiment."""

    spec: str = ""

    def experiment(self) -> Experiment:
        """The parsed :class:`recommend.variants.Experiment`."""
        from recommend.variants import parse_experiment

        return parse_experiment(self.spec or None)


class ArtifactStoreResource(dg.ConfigurableResource):
    """The one artifact store (:class:`artifacts.ArtifactStore`): a folder in the embedded
    profile, an fsspec URI such as ``s3://bucket/prefix`` in production. Assets take it to ask
    whether a version is already stored (and skip recomputing it)."""

    uri: str

    def store(self) -> ArtifactStore:
        return ArtifactStore(self.uri)


class ArtifactIOManager(dg.ConfigurableIOManager):
    """Every model, vector set and configuration passed downstream goes through the store.

    An asset with ``io_manager_key="artifacts"`` returns the object; it is stored, versioned,
    under its asset key and partition, and downstream assets receive it as an input.
    """

    store: ArtifactStoreResource

    @staticmethod
    def _partition(context: dg.OutputContext | dg.InputContext) -> str | None:
        return context.asset_partition_key if context.has_asset_partitions else None

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        ref = self.store.store().save(context.asset_key.path, self._partition(context), obj)
        context.add_output_metadata(
            {
                "artifact_version": ref.version,
                "artifact_uri": dg.MetadataValue.path(ref.uri),
                "artifact_bytes": ref.size,
                "artifact_written": ref.written,
            }
        )

    def load_input(self, context: dg.InputContext) -> Any:
        return self.store.store().load(context.asset_key.path, self._partition(context))


def build_resources(settings: Settings | None = None) -> dict[str, Any]:
    """Resources for the profile in ``settings`` (read from the environment by default)."""
    settings = settings or load_settings()
    artifact_store = ArtifactStoreResource(uri=settings.artifact_uri)
    return {
        "warehouse": Warehouse(path=str(settings.warehouse_path)),
        "paths": Paths(
            data_dir=str(settings.data_dir),
            feature_repo=str(settings.feature_repo),
            audio_dir=str(settings.audio_dir),
            audio_backend=settings.audio_backend,
            audio_compare=settings.audio_compare,
        ),
        "engine": WarehouseEngine(
            kind=settings.engine,
            spark_master=settings.spark_master,
            spark_dir=str(settings.spark_dir),
            cf_als=settings.cf_als,
        ),
        "vector_store": VectorStoreResource(uri=settings.milvus_uri),
        "artifact_store": artifact_store,
        ARTIFACTS: ArtifactIOManager(store=artifact_store),
        "feature_store": FeatureStoreResource(
            repo_path=str(settings.feature_repo),
            data_dir=str(settings.feature_dir),
            profile=settings.profile,
            postgres_url=settings.postgres_url,
            redis_url=settings.redis_url,
            offline_store="spark" if settings.engine == "spark" else "duckdb",
            spark_master=settings.spark_master,
            project=settings.feast_project,
        ),
        "experiment": ExperimentResource(spec=settings.experiment),
    }
