"""Issue 14: the whole graph in the production profile on Spark, with Postgres, Redis, a real
Milvus server and the multiprocess executor; two runs started at once.

Two ``cratedigger run`` processes start together on one data directory and one Dagster instance
(Postgres). Each must end with every check passing, or fail with a message that names the
other run (``orchestration.runlock``: the second fails at once); afterwards the tables and
collections are whole: golden rows reconcile with raw rows and quarantine, every vector
collection holds the rows its version was written with.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import duckdb
import pytest

from tests.services import reachable, spark_missing

pytestmark = [pytest.mark.services, pytest.mark.slow]

RUN_TIMEOUT_S = 3600
# what a run that lost a race for a single-writer store may say (and nothing else)
CLEAR_FAILURES = (
    "another `cratedigger run` is already running",  # the data directory's run lock
    "locked by another process",  # a single-writer store, should a step still meet one
    "is held by another process",
)


def _skip_reason() -> str | None:
    if not reachable(5432):
        return "PostgreSQL is not reachable on 127.0.0.1:5432 (production profile)"
    if not reachable(6379):
        return "Redis is not reachable on 127.0.0.1:6379 (production profile)"
    return spark_missing()


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, milvus_server_uri):
    """Two ``cratedigger run`` processes started at once: (data dir, [(exit code, output)])."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("cluster")
    env = {
        **os.environ,
        "CRATEDIGGER_PROFILE": "production",
        "CRATEDIGGER_ENGINE": "spark",
        "SPARK_MASTER": "local[1]",
        "CRATEDIGGER_EXECUTOR": "multiprocess",
        "CRATEDIGGER_CF_ALS": "mllib",
        # its own Feast project: the registry and online store are shared with other tests
        "CRATEDIGGER_FEAST_PROJECT": f"cd_cluster_{uuid.uuid4().hex[:10]}",
        "CRATEDIGGER_MAX_CONCURRENT": "2",
        "MILVUS_URI": milvus_server_uri,
        "CRATEDIGGER_DATA_DIR": str(base / "data"),
        "DAGSTER_HOME": str(base / "dagster_home"),
        "CRATEDIGGER_SAMPLE_SCALE": "0.2",
        "CRATEDIGGER_AUDIO_BACKEND": "dsp",
        "CRATEDIGGER_AUDIO_COMPARE": "none",
    }
    command = [sys.executable, "-m", "orchestration.cli", "run", "--no-playlist"]
    logs = [base / f"run{i}.log" for i in (1, 2)]
    handles = [log.open("w") for log in logs]
    processes = [
        subprocess.Popen(command, env=env, stdout=h, stderr=subprocess.STDOUT) for h in handles
    ]
    deadline = time.monotonic() + RUN_TIMEOUT_S
    for process in processes:
        try:
            process.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for p in processes:
                p.kill()
            pytest.fail(f"the two runs did not end in {RUN_TIMEOUT_S} s; logs in {base}")
    for handle in handles:
        handle.close()
    return base / "data", [
        (p.returncode, log.read_text()) for p, log in zip(processes, logs, strict=True)
    ]


def _checks(output: str) -> tuple[int, int]:
    found = re.search(r"checks: (\d+) passed, (\d+) failed", output)
    assert found, output[-3000:]
    return int(found.group(1)), int(found.group(2))


def test_concurrent_runs_wait_for_each_other_or_fail_clearly(two_runs) -> None:
    _, runs = two_runs
    succeeded = [output for code, output in runs if code == 0]
    assert succeeded, "neither run finished:\n" + "\n----\n".join(o[-3000:] for _, o in runs)
    for code, output in runs:
        if code != 0:  # lost a race: said so, no traceback
            assert "Traceback" not in output.splitlines()[-1]
            assert any(reason in output for reason in CLEAR_FAILURES), output[-3000:]


def test_the_whole_graph_passes_every_check_on_spark_with_the_server_stores(two_runs) -> None:
    data_dir, runs = two_runs
    output = next(output for code, output in runs if code == 0)
    passed, failed = _checks(output)
    assert passed > 20 and failed == 0, output[-3000:]
    # the golden tables are Spark's Parquet, read by the warehouse as views
    spark_dir = data_dir / "spark" / "golden"
    assert (spark_dir / "listens").is_dir() and (spark_dir / "quarantine").is_dir()
    con = duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True)
    try:
        kinds = dict(
            con.execute(
                "SELECT table_name, table_type FROM information_schema.tables "
                "WHERE table_schema = 'golden'"
            ).fetchall()
        )
        assert kinds["listens"] == "VIEW" and kinds["users"] == "VIEW", kinds
        _assert_reconciles(con)
        assert con.execute("SELECT count(*) FROM recommend.discover_weekly").fetchone()[0] > 0
    finally:
        con.close()


def _assert_reconciles(con: duckdb.DuckDBPyConnection) -> None:
    """Raw rows = golden rows + quarantined rows for every row table (aggregated listens)."""
    for raw, golden in (("users", "users"), ("artists", "artists"), ("friends", "friends")):
        raw_rows = con.execute(f"SELECT count(*) FROM raw.{raw}").fetchone()[0]
        golden_rows = con.execute(f"SELECT count(*) FROM golden.{golden}").fetchone()[0]
        quarantined = con.execute(
            "SELECT count(*) FROM golden.quarantine WHERE table_name = ?", [golden]
        ).fetchone()[0]
        assert raw_rows == golden_rows + quarantined, (raw, raw_rows, golden_rows, quarantined)


def test_vector_collections_on_the_server_are_whole(two_runs, milvus_server_uri) -> None:
    from embeddings.vector_store import PROP_COMPLETE, PROP_ROWS, VectorStore

    with VectorStore(milvus_server_uri) as store:
        names = store.list_collections()
        assert "cf_items" in names and "text_items" in names, names
        for name in names:
            physical = store.describe(name)["physical_name"]
            written = store._properties(physical)  # what the writer recorded when it finished
            assert written.get(PROP_COMPLETE) == "true", (name, written)
            assert store.count(name) == int(written[PROP_ROWS]) > 0, (name, written)


def test_the_als_source_is_spark_mllib_and_its_factors_are_served(two_runs) -> None:
    import dagster as dg

    data_dir, _ = two_runs
    instance = dg.DagsterInstance.from_config(str(data_dir.parent / "dagster_home"))
    try:
        event = instance.get_latest_materialization_event(dg.AssetKey("cf_model"))
        assert event is not None
        config = event.asset_materialization.metadata["config"].value
        assert config["als"]["model"] == "mllib_als", config
        vectors = instance.get_latest_materialization_event(dg.AssetKey("cf_item_vectors"))
        assert vectors is not None
    finally:
        instance.dispose()


def test_the_data_dir_holds_no_milvus_lite_file(two_runs) -> None:
    data_dir, _ = two_runs
    assert not list(Path(data_dir).glob("*.db")), "the server profile must not write Milvus Lite"
