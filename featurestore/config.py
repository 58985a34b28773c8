"""The ``feature_store.yaml`` content of a profile, built in code.

One set of definitions serves both profiles:

``embedded``    file registry ``<data_dir>/registry.db``, DuckDB offline store over the Parquet
                files in ``data_dir``, SQLite online store ``<data_dir>/online_store.db``.
``production``  SQL registry (a Postgres URL such as ``postgresql://postgres@127.0.0.1:5432/db``),
                Redis online store (``127.0.0.1:6379``), DuckDB offline store over the Parquet
                files in ``data_dir``.

Example usage::

    from featurestore.config import build_config

    build_config("data/feast")["online_store"]   # {'type': 'sqlite', 'path': '.../online_store.db'}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

Profile = Literal["embedded", "production"]
PROFILES: tuple[str, ...] = ("embedded", "production")
DEFAULT_PROJECT = "cratedigger"
DEFAULT_REDIS = "127.0.0.1:6379"


def build_config(
    data_dir: str | Path,
    profile: Profile = "embedded",
    *,
    project: str = DEFAULT_PROJECT,
    registry_url: str | None = None,
    redis_url: str = DEFAULT_REDIS,
    registry_cache_ttl_seconds: int = 60,
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

    Returns
    -------
    dict
        Keys ``project``, ``provider``, ``registry``, ``offline_store``, ``online_store``,
        ``entity_key_serialization_version``.
    """
    _check(profile, project)
    data_dir = Path(data_dir).expanduser().resolve()
    config: dict[str, Any] = {
        "project": project,
        "provider": "local",
        "offline_store": {"type": "duckdb"},
        "entity_key_serialization_version": 3,
    }
    if profile == "embedded":
        config |= _embedded_stores(data_dir, registry_cache_ttl_seconds)
    else:
        config |= _production_stores(registry_url, redis_url, registry_cache_ttl_seconds)
    return config


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
