"""The ``feature_store.yaml`` content of a profile, built in code.

One set of definitions serves both profiles:

``embedded``    file registry ``<data_dir>/registry.db``, DuckDB offline store over the Parquet
                files in ``data_dir``, SQLite online store ``<data_dir>/online_store.db``.
``production``  SQL registry (a Postgres URL such as ``postgresql://postgres@127.0.0.1:5432/db``),
                Redis online store (``127.0.0.1:6379``), DuckDB offline store over the Parquet
                files in ``data_dir``.

Either profile can read the same Parquet files with Spark instead of DuckDB
(``offline_store="spark"``, for the Spark warehouse engine): Feast's Spark offline store, with
the session settings of :func:`spark_offline_store`, and ``SparkSource`` sources
(:func:`featurestore.definitions.build_definitions` with the same ``offline_store``).
Materialisation keeps Feast's ``local`` batch engine: it pulls the rows through the offline
store's Spark query, then writes the online store from this process (no Python workers).

Example usage::

    from featurestore.config import build_config

    build_config("data/feast")["online_store"]   # {'type': 'sqlite', 'path': '.../online_store.db'}
    build_config("data/feast", offline_store="spark", spark_master="local[2]")["offline_store"]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

Profile = Literal["embedded", "production"]
PROFILES: tuple[str, ...] = ("embedded", "production")
OfflineStore = Literal["duckdb", "spark"]
OFFLINE_STORES: tuple[str, ...] = ("duckdb", "spark")
DEFAULT_PROJECT = "cratedigger"
DEFAULT_REDIS = "127.0.0.1:6379"
DEFAULT_SPARK_MASTER = "local[2]"
DEFAULT_SPARK_DRIVER_MEMORY = "1g"
"""Heap of a session Feast starts itself (one it finds running keeps its own)."""
# Spark hands timestamps to pandas as naive session-time values that Feast takes as UTC, and
# pandas nulls stay null only through Arrow; both are set on a session Feast starts (the client
# also runs a session it finds in UTC while Feast uses it).
SPARK_SQL_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
}


def build_config(
    data_dir: str | Path,
    profile: Profile = "embedded",
    *,
    project: str = DEFAULT_PROJECT,
    registry_url: str | None = None,
    redis_url: str = DEFAULT_REDIS,
    registry_cache_ttl_seconds: int = 60,
    offline_store: OfflineStore = "duckdb",
    spark_master: str = DEFAULT_SPARK_MASTER,
    spark_driver_memory: str = DEFAULT_SPARK_DRIVER_MEMORY,
) -> dict[str, Any]:
    """The ``feature_store.yaml`` content for a profile, as a dict.

    Parameters
    ----------
    data_dir : str or Path
        Directory of the Parquet sources (and, embedded, of the registry and SQLite file).
    profile : {"embedded", "production"}
        Which stores to use (see the module docstring).
    project : str
        Feast project name: letters, digits and ``_``, not starting with ``_``.
    registry_url : str, optional
        SQLAlchemy URL of the SQL registry; required for ``production``.
    redis_url : str
        Redis ``host:port[,option=value...]`` for ``production``.
    registry_cache_ttl_seconds : int
        How long a process trusts its cached registry before re-reading it.
    offline_store : {"duckdb", "spark"}
        What reads the Parquet sources for retrieval and materialisation: DuckDB in this
        process, or Spark (the sources must then be ``SparkSource``; build them with
        ``build_definitions(data_dir, offline_store="spark")``).
    spark_master : str
        Spark master of the session Feast starts (``local[2]``, ``spark://host:7077``, ...);
        ``spark`` only.
    spark_driver_memory : str
        Driver heap of that session; ``spark`` only.

    Returns
    -------
    dict
        Keys ``project``, ``provider``, ``registry``, ``offline_store``, ``online_store``,
        ``entity_key_serialization_version``; with Spark also ``batch_engine``.
    """
    _check(profile, project)
    if offline_store not in OFFLINE_STORES:
        raise ValueError(f"offline_store={offline_store!r} is unknown; use one of {OFFLINE_STORES}")
    data_dir = Path(data_dir).expanduser().resolve()
    config: dict[str, Any] = {
        "project": project,
        "provider": "local",
        "offline_store": (
            spark_offline_store(spark_master, spark_driver_memory)
            if offline_store == "spark"
            else {"type": "duckdb"}
        ),
        "entity_key_serialization_version": 3,
    }
    if offline_store == "spark":
        config["batch_engine"] = "local"
    if profile == "embedded":
        config |= _embedded_stores(data_dir, registry_cache_ttl_seconds)
    else:
        config |= _production_stores(registry_url, redis_url, registry_cache_ttl_seconds)
    return config


def spark_offline_store(
    master: str = DEFAULT_SPARK_MASTER, driver_memory: str = DEFAULT_SPARK_DRIVER_MEMORY
) -> dict[str, Any]:
    """Feast's Spark offline store, with the session settings of the project's own Spark code.

    ``spark_conf`` is the launch configuration of :func:`warehouse.spark.spark_session` (quiet
    logs, no UI, Python workers run this interpreter, driver on 127.0.0.1 for a local master)
    plus :data:`SPARK_SQL_CONF`, ``spark.master`` and ``spark.driver.memory``. Feast applies it
    only when it starts the session: in a process that already runs one (the Spark warehouse
    engine's) Feast uses that session as it is.
    """
    from warehouse.spark import LAUNCH_CONF, LOCAL_CONF

    if not master:
        raise ValueError("spark_master is empty; use e.g. 'local[2]' or 'spark://host:7077'")
    conf = {
        "spark.master": master,
        "spark.app.name": "cratedigger-feast",
        **LAUNCH_CONF,
        **SPARK_SQL_CONF,
        "spark.driver.memory": driver_memory,
    }
    if master.startswith("local"):
        conf |= LOCAL_CONF
    return {"type": "spark", "spark_conf": conf}


def _check(profile: str, project: str) -> None:
    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r} is unknown; use one of {PROFILES}")
    if not project or project.startswith("_") or not project.replace("_", "").isalnum():
        raise ValueError(
            f"project={project!r} is not a valid Feast project name: use letters, digits and "
            f"'_', not starting with '_'"
        )


def _embedded_stores(data_dir: Path, cache_ttl_seconds: int) -> dict[str, Any]:
    """File registry and SQLite online store inside ``data_dir``."""
    return {
        "registry": {
            "registry_type": "file",
            "path": str(data_dir / "registry.db"),
            "cache_ttl_seconds": cache_ttl_seconds,
        },
        "online_store": {"type": "sqlite", "path": str(data_dir / "online_store.db")},
    }


def _production_stores(
    registry_url: str | None, redis_url: str, cache_ttl_seconds: int
) -> dict[str, Any]:
    """SQL registry at ``registry_url`` and Redis online store at ``redis_url``."""
    if not registry_url:
        raise ValueError(
            "profile='production' needs registry_url, e.g. "
            "'postgresql://postgres@127.0.0.1:5432/test'"
        )
    return {
        "registry": {
            "registry_type": "sql",
            "path": registry_url,
            "cache_ttl_seconds": cache_ttl_seconds,
            "sqlalchemy_config_kwargs": {"echo": False, "pool_pre_ping": True},
        },
        "online_store": {"type": "redis", "connection_string": redis_url},
    }
