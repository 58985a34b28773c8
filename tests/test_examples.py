"""The runnable examples run as written: every ``examples/get_features.py`` invocation of its
docstring and of the README, against a Feast store materialised from the built-in sample."""

from __future__ import annotations

import ast
import re
import shlex
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from featurestore import tables as features
from featurestore.client import FeatureStoreClient
from tests.pipeline import run_assets, settings_for

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "get_features.py"
COMMAND = "examples/get_features.py"
PRODUCTION = "--profile production"
# ingest + golden tables of the sample, then the Feast store (apply, stats views, materialise)
FEATURE_SELECTION = (
    "(key:raw/* or key:golden/* or key:features/user_listening_stats or "
    "key:features/artist_stats or key:feast_apply or key:feast_materialize) "
    "and not key:golden/audio_attributes"
)
MISSING = {"None", "<NA>", "nan", "NaN", "NaT"}


def docstring_invocations() -> list[list[str]]:
    """The arguments of each ``examples/get_features.py`` command line of its docstring."""
    text = ast.get_docstring(ast.parse(EXAMPLE.read_text())) or ""
    joined = re.sub(r"\\\n\s*", " ", text)
    found = []
    for line in joined.splitlines():
        if COMMAND in line:
            found.append(shlex.split(line[line.index(COMMAND) + len(COMMAND) :]))
    return found


def readme_invocations() -> list[list[str]]:
    readme = (ROOT / "README.md").read_text()
    return [
        shlex.split(a) for a in re.findall(r"python examples/get_features\.py([^`\n]*)`", readme)
    ]


def without_data_dir(args: list[str]) -> tuple[str, ...]:
    """``args`` less ``--data-dir DIR`` (the tests pass their own store's directory)."""
    at = args.index("--data-dir") if "--data-dir" in args else len(args)
    return (*args[:at], *args[at + 2 :])


# each distinct embedded invocation once (the README's equals the docstring's first)
DOCUMENTED = list(
    dict.fromkeys(
        without_data_dir(args)
        for args in docstring_invocations() + readme_invocations()
        if PRODUCTION not in " ".join(args)
    )
)


def run_example(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(EXAMPLE), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def printed_rows(stdout: str) -> list[dict[str, str]]:
    """The ``name  value`` blocks the example prints (one per entity, blank line between)."""
    rows = []
    for block in stdout.strip().split("\n\n"):
        rows.append(dict(line.split(None, 1) for line in block.splitlines() if line.strip()))
    return rows


def assert_present(result: subprocess.CompletedProcess) -> list[dict[str, str]]:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    rows = printed_rows(result.stdout)
    assert rows, result.stdout
    for row in rows:
        assert row.get("status") == "PRESENT", result.stdout
        assert row.get("feature_status") == "{}", result.stdout
        nulls = {name: value for name, value in row.items() if value.strip() in MISSING}
        assert not nulls, f"null features {nulls} in:\n{result.stdout}"
    return rows


@pytest.fixture(scope="module")
def sample_store(tmp_path_factory) -> Path:
    """The sample through the real graph up to the Feast store, plus CF vectors and playlists
    for every sample user (the views whose producers need the weekly models)."""
    settings = settings_for(tmp_path_factory.mktemp("examples"), scale=0.3)
    assert run_assets(settings, FEATURE_SELECTION).success
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    users = [r[0] for r in con.execute("SELECT user_id FROM golden.users ORDER BY 1").fetchall()]
    items = [
        r[0] for r in con.execute("SELECT item_id FROM golden.items ORDER BY 1 LIMIT 12").fetchall()
    ]
    con.close()
    client = FeatureStoreClient(settings.feature_repo, settings.feature_dir)
    now = datetime.now(UTC)
    vectors = np.random.default_rng(0).normal(size=(len(users), 16))
    cf = pd.DataFrame({"user_id": users, "vector": list(vectors), "version": "example-test"})
    features.export_parquet(
        features.user_cf_vectors(cf, as_of=now - timedelta(hours=1)),
        client.parquet_path("user_cf_vector"),
    )
    week_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    week_start -= timedelta(days=week_start.weekday())
    recs = pd.DataFrame(
        [(u, item, rank, "sample", "control") for u in users for rank, item in enumerate(items, 1)],
        columns=["user_id", "item_id", "rank", "reason", "variant"],
    )
    features.export_parquet(
        features.discover_weekly_playlist(recs, week_start),
        client.parquet_path("discover_weekly_playlist"),
    )
    result = client.materialize(views=["user_cf_vector", "discover_weekly_playlist"])
    assert result.entities == {"user_cf_vector": len(users), "discover_weekly_playlist": len(users)}
    return settings.feature_dir


def test_the_docstring_and_the_readme_document_invocations() -> None:
    assert len(docstring_invocations()) >= 4
    assert readme_invocations(), "README.md no longer shows examples/get_features.py"
    assert any(PRODUCTION in " ".join(args) for args in docstring_invocations())


@pytest.mark.parametrize("args", DOCUMENTED, ids=[" ".join(a) for a in DOCUMENTED])
def test_documented_invocation_prints_the_features_of_a_sample_id(sample_store, args) -> None:
    # the documented command, with the data directory of this test's store
    result = run_example(*args, "--data-dir", str(sample_store))
    rows = assert_present(result)
    if "--user-id" in args:
        user = args[args.index("--user-id") + 1]
        assert any(row.get("user_id") == user for row in rows), result.stdout


def test_a_bad_feature_name_is_one_line_and_exit_1(sample_store) -> None:
    result = run_example(
        "--data-dir", str(sample_store), "--user-id", "u000001", "--features", "no_such_view"
    )
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "no_such_view" in lines[0]


def test_an_artist_view_without_an_artist_id_names_the_flag(sample_store) -> None:
    result = run_example(
        "--data-dir", str(sample_store), "--user-id", "u000001", "--features", "artist_stats"
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: feature view(s) ['artist_stats'] are keyed by artist_id: pass --artist-id"
    ]


def _reachable(url: str) -> bool:
    try:
        import psycopg
        import redis

        with psycopg.connect(url.replace("+psycopg", ""), connect_timeout=2):
            pass
        return bool(redis.Redis(host="127.0.0.1", port=6379, socket_timeout=2).ping())
    except Exception:  # noqa: BLE001 - any failure means unreachable
        return False


@pytest.mark.services
def test_the_production_invocation_reads_postgres_and_redis(sample_store) -> None:
    (args,) = [a for a in docstring_invocations() if PRODUCTION in " ".join(a)]
    url = args[args.index("--registry-url") + 1]
    if not _reachable(url):
        pytest.skip(f"the documented registry {url} or Redis at 127.0.0.1:6379 is not reachable")
    project = f"cd_example_{uuid.uuid4().hex[:8]}"
    client = FeatureStoreClient(
        ROOT / "feature_repo", sample_store, "production", project=project, registry_url=url
    )
    try:
        client.apply()
        client.materialize()
        # the documented command, in this test's own Feast project
        assert_present(run_example(*args, "--project", project))
    finally:
        client.teardown()
