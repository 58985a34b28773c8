"""Issue 12 item 4: the documented minimal generic input (listens + artists) runs end to end."""

from __future__ import annotations

import os
import subprocess
import sys

import duckdb
import numpy as np
import pandas as pd
import pytest


def run_generic(source, tmp_path) -> subprocess.CompletedProcess:
    """`cratedigger run` on the generic files in ``source``, data under ``tmp_path``."""
    env = {
        **os.environ,
        "CRATEDIGGER_SOURCE": "generic",
        "CRATEDIGGER_SOURCE_PATH": str(source),
        "CRATEDIGGER_DATA_DIR": str(tmp_path / "data"),
        "DAGSTER_HOME": str(tmp_path / "home"),
        "CRATEDIGGER_AUDIO_COMPARE": "none",
    }
    return subprocess.run(
        [sys.executable, "-m", "orchestration.cli", "run", "--no-playlist"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.slow
def test_listens_and_artists_alone_give_playlists(tmp_path):
    rng = np.random.default_rng(0)
    source = tmp_path / "source"
    source.mkdir()
    artists = pd.DataFrame({"artist_id": [f"a{i}" for i in range(40)]})
    artists["name"] = [f"Band {i}" for i in range(40)]
    artists.to_csv(source / "artists.csv", index=False)
    rows = [
        (f"u{u}", f"a{a}", int(rng.integers(1, 50)))
        for u in range(60)
        for a in rng.choice(40, size=12, replace=False)
    ]
    pd.DataFrame(rows, columns=["user_id", "item_id", "plays"]).to_csv(
        source / "listens.csv", index=False
    )
    done = run_generic(source, tmp_path)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert " 0 failed" in done.stdout
    with duckdb.connect(str(tmp_path / "data" / "warehouse.duckdb"), read_only=True) as con:
        users = con.execute("SELECT count(DISTINCT user_id) FROM recommend.discover_weekly")
        assert users.fetchone()[0] == 60


@pytest.mark.slow
def test_tiny_input_reports_too_small_and_still_gives_playlists(tmp_path):
    """Issue 12 item 17: evaluation on too little data says so instead of failing the run."""
    rng = np.random.default_rng(1)
    source = tmp_path / "source"
    source.mkdir()
    pd.DataFrame({"artist_id": [f"a{i}" for i in range(6)], "name": list("ABCDEF")}).to_csv(
        source / "artists.csv", index=False
    )
    start = pd.Timestamp("2026-11-02", tz="UTC").timestamp()
    rows = [
        (f"u{u}", f"a{a}", 1, int(start + rng.integers(0, 13 * 86400)))
        for u in range(5)
        for a in rng.choice(6, size=3, replace=False)
    ]
    pd.DataFrame(rows, columns=["user_id", "item_id", "plays", "ts"]).to_csv(
        source / "listens.csv", index=False
    )
    done = run_generic(source, tmp_path)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "too small" in done.stdout + done.stderr
    with duckdb.connect(str(tmp_path / "data" / "warehouse.duckdb"), read_only=True) as con:
        weeks = con.execute("SELECT DISTINCT week_start::VARCHAR FROM recommend.discover_weekly")
        assert [r[0] for r in weeks.fetchall()] == ["2026-11-16"]
        users = con.execute("SELECT count(DISTINCT user_id) FROM recommend.discover_weekly")
        assert users.fetchone()[0] == 5
