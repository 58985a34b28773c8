"""Shared fixtures: the real data beside the checkout, and offline model settings."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestration.settings import apply_runtime_environment

apply_runtime_environment()

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(
    os.environ.get("CRATEDIGGER_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data")
)
HETREC_DIR = SHARED_DATA / "hetrec2011-lastfm-2k"
AUDIO_DIR = SHARED_DATA / "audio"


@pytest.fixture(scope="session")
def hetrec_dir() -> Path:
    if not (HETREC_DIR / "user_artists.dat").exists():
        pytest.skip(
            f"HetRec Last.fm 2K not found at {HETREC_DIR} (put ../shared/data beside the checkout)"
        )
    return HETREC_DIR


@pytest.fixture(scope="session")
def audio_dir() -> Path:
    if not (AUDIO_DIR / "manifest.csv").exists():
        pytest.skip(
            f"audio clips not found at {AUDIO_DIR} (put ../shared/data beside the checkout)"
        )
    return AUDIO_DIR


@pytest.fixture(scope="session")
def hetrec_listens(hetrec_dir: Path):
    """HetRec user_artists.dat as golden-style listens (string ids, int plays)."""
    import pandas as pd

    raw = pd.read_csv(hetrec_dir / "user_artists.dat", sep="\t", dtype=str)
    return pd.DataFrame(
        {"user_id": raw.userID, "item_id": raw.artistID, "plays": raw.weight.astype("int64")}
    )


@pytest.fixture(scope="session")
def milvus_server_uri(tmp_path_factory) -> Iterator[str]:
    """URI of a local Milvus standalone server (the ``milvus`` package) for this session.

    Skips with the reason when the package is missing or its binary cannot start here.
    """
    from embeddings.milvus_server import LocalMilvusServer, MilvusServerError, unavailable_reason

    reason = unavailable_reason()
    if reason:
        pytest.skip(f"no local Milvus server: {reason}")
    server = LocalMilvusServer(tmp_path_factory.mktemp("milvus_server"))
    try:
        server.start()
    except MilvusServerError as error:
        pytest.skip(f"the local Milvus server cannot start here: {error}")
    try:
        yield server.uri
    finally:
        server.stop()


@pytest.fixture(scope="module")
def spark():
    """One local[2] Spark session per test module (skips with the reason when pyspark or Java
    is missing, or the JVM cannot start)."""
    from tests.services import spark_missing

    reason = spark_missing()
    if reason:
        pytest.skip(reason)
    from warehouse.spark_engine import spark_session

    try:
        session = spark_session("local[2]", app_name="cratedigger-tests")
    except Exception as error:  # the JVM failed to start: say why, do not fail the suite
        pytest.skip(f"a local SparkSession cannot start here: {error}")
    yield session
    session.stop()
