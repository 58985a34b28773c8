"""The production profile against the real services on 127.0.0.1 (skipped when absent)."""

from __future__ import annotations

import dagster as dg
import pytest

from orchestration.instance import dagster_yaml, ensure_dagster_home
from orchestration.settings import load_settings
from tests.services import reachable

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def production(tmp_path_factory):
    if not reachable(5432):
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432 (production profile)")
    data_dir = tmp_path_factory.mktemp("prod")
    return load_settings(
        {"CRATEDIGGER_PROFILE": "production", "CRATEDIGGER_DATA_DIR": str(data_dir)}
    )


def test_production_dagster_yaml_uses_postgres_storage(production) -> None:
    text = dagster_yaml(production)
    assert "postgres_url" in text and "postgresql+psycopg2://" in text
    assert "default_limit: 1" in text


def test_runs_are_stored_in_postgres(production, tmp_path) -> None:
    pytest.importorskip("dagster_postgres")
    home = ensure_dagster_home(production, tmp_path / "home")
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"

        @dg.asset
        def heartbeat() -> int:
            return 1

        result = dg.materialize([heartbeat], instance=instance)
        assert result.success
        assert instance.get_run_by_id(result.run_id) is not None
        instance.delete_run(result.run_id)
    finally:
        instance.dispose()


def test_services_down_are_named_before_any_compute(tmp_path) -> None:
    """Issue 12 item 8: a production run with Postgres or Redis down fails in seconds."""
    import os
    import subprocess
    import sys
    import time

    env = {
        **os.environ,
        "CRATEDIGGER_PROFILE": "production",
        "CRATEDIGGER_DATA_DIR": str(tmp_path),
        "DAGSTER_HOME": str(tmp_path / "home"),
        "CRATEDIGGER_POSTGRES_URL": "postgresql+psycopg://postgres@127.0.0.1:1/test",
        "CRATEDIGGER_REDIS_URL": "127.0.0.1:2",
    }
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "orchestration.cli", "run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "CRATEDIGGER_POSTGRES_URL" in done.stderr and "CRATEDIGGER_REDIS_URL" in done.stderr
    assert "Traceback" not in done.stderr
    assert time.monotonic() - started < 60
