"""Issue 12 item 1: a `cratedigger run` killed mid-step must not make the next run hang."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import dagster as dg
import duckdb
import pytest


def _env(tmp_path) -> dict[str, str]:
    return {
        **os.environ,
        "CRATEDIGGER_DATA_DIR": str(tmp_path / "data"),
        "DAGSTER_HOME": str(tmp_path / "home"),
        "CRATEDIGGER_SAMPLE_SCALE": "0.3",
        "CRATEDIGGER_AUDIO_BACKEND": "dsp",
        "CRATEDIGGER_AUDIO_COMPARE": "none",
    }


def _run(env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "orchestration.cli", "run", "--no-playlist", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _slots_held(env: dict[str, str]) -> int:
    os.environ["DAGSTER_HOME"] = env["DAGSTER_HOME"]
    with dg.DagsterInstance.get() as instance:
        storage = instance.event_log_storage
        return sum(
            storage.get_concurrency_info(pool).active_slot_count
            for pool in storage.get_concurrency_keys()
        )


@pytest.mark.slow
def test_a_run_killed_mid_step_is_recovered_by_the_next_run(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    env = _env(tmp_path)
    victim = _run(env, "--log-level", "DEBUG")
    deadline = time.monotonic() + 300
    for line in victim.stdout:  # kill while golden steps hold the duckdb pool
        if ("golden__" in line and "STEP_START" in line) or time.monotonic() > deadline:
            break
    time.sleep(1.0)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    assert _slots_held(env) >= 1, "the killed run should hold a pool slot (the fault)"
    again = _run(env)
    output, _ = again.communicate(timeout=900)
    assert again.returncode == 0, output[-3000:]
    assert "marked failed and its pool slots freed" in output
    assert "checks: " in output and " 0 failed" in output
    assert _slots_held(env) == 0
    warehouse = tmp_path / "data" / "warehouse.duckdb"
    with duckdb.connect(str(warehouse), read_only=True) as con:
        playlists = con.execute("SELECT count(*) FROM recommend.discover_weekly").fetchone()[0]
    assert playlists > 0
