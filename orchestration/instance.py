"""The Dagster instance directory (``DAGSTER_HOME``) for each profile."""

from __future__ import annotations

import json
from pathlib import Path

from orchestration.settings import Settings

# Only one step at a time may write the DuckDB file or the Milvus Lite file (both allow one
# writing process); every other pool is limited the same way on a 2-core machine.
# python_log_level: the level of the loggers Dagster builds without a run's logger config
# (e.g. the multiprocess executor's "Executing step ... in subprocess" lines, DEBUG otherwise)
POOLS_YAML = """concurrency:
  pools:
    default_limit: 1
telemetry:
  enabled: false
python_logs:
  python_log_level: INFO
"""


def dagster_yaml(settings: Settings) -> str:
    """The ``dagster.yaml`` text for the profile."""
    if settings.profile == "production":
        # dagster-postgres speaks psycopg2 (its NOTIFY statements fail under psycopg 3)
        url = settings.postgres_url.replace("postgresql+psycopg://", "postgresql+psycopg2://")
        return (
            POOLS_YAML
            + f"""storage:
  postgres:
    postgres_url: {json.dumps(url)}
"""
        )
    return POOLS_YAML


def ensure_dagster_home(settings: Settings, home: Path | None = None) -> Path:
    """Create ``home`` (default ``<data dir>/dagster_home``) with the profile's dagster.yaml."""
    home = Path(home or settings.data_dir / "dagster_home")
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(dagster_yaml(settings))
    return home
