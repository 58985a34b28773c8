"""One ``cratedigger run`` per data directory: a second fails at once naming the first; a killed
holder never blocks the next run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from orchestration.runlock import LOCK_NAME, RunInProgressError, run_lock

HOLD = (
    "import sys, time; from orchestration.runlock import run_lock\n"
    "with run_lock(sys.argv[1]):\n"
    "    print('held', flush=True); time.sleep(600)\n"
)


def _holder(data_dir: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(data_dir)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_second_run_fails_at_once_naming_the_first(tmp_path: Path) -> None:
    holder = _holder(tmp_path)
    try:
        # non-blocking: it raises rather than waits
        with pytest.raises(RunInProgressError, match=f"pid {holder.pid} on"), run_lock(tmp_path):
            pass
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_holder_never_blocks_the_next_run(tmp_path: Path) -> None:
    holder = _holder(tmp_path)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with run_lock(tmp_path) as path:
        assert path.name == LOCK_NAME
        assert f"pid {os.getpid()}" in path.read_text()


def test_the_cli_says_so_and_exits_non_zero(tmp_path: Path) -> None:
    holder = _holder(tmp_path)
    try:
        env = {**os.environ, "CRATEDIGGER_DATA_DIR": str(tmp_path)}
        env.pop("CRATEDIGGER_PROFILE", None)
        done = subprocess.run(
            [sys.executable, "-m", "orchestration.cli", "run"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 1
    assert "another `cratedigger run` is already running" in done.stderr
    assert "Traceback" not in done.stderr
