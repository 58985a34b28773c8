"""The project's VectorStore against a real Milvus standalone server (the ``milvus`` package).

The session fixture ``milvus_server_uri`` (tests/conftest.py) starts one server in a temporary
folder and skips with the reason when the package or its binary cannot run here.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from embeddings.milvus_server import LocalMilvusServer, MilvusServerError, unavailable_reason
from embeddings.vector_store import VectorStore

REPO_ROOT = Path(__file__).resolve().parents[1]
DIM = 16
ROWS = 500
QUERIES = 20
K = 10


def _vectors(n: int = ROWS, seed: int = 0) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    return [f"item{i:04d}" for i in range(n)], rng.normal(size=(n, DIM)).astype(np.float32)


def _hit_ids(hits: list[list[dict]]) -> list[list[str]]:
    return [[hit["id"] for hit in row] for row in hits]


def _write(store: VectorStore, name: str, version: str, metric: str = "COSINE") -> np.ndarray:
    ids, vectors = _vectors()
    store.write_collection(
        name,
        ids,
        vectors,
        {"name": [f"artist {i}" for i in range(ROWS)], "popularity": list(range(ROWS))},
        dim=DIM,
        metric=metric,
        version=version,
    )
    return vectors


def _exact_top(vectors: np.ndarray, queries: np.ndarray, metric: str) -> list[list[str]]:
    if metric == "COSINE":
        vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    top = np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :K]
    return [[f"item{i:04d}" for i in row] for row in top]


def test_server_writes_searches_and_switches_versions(milvus_server_uri: str) -> None:
    with VectorStore(milvus_server_uri, timeout=30) as store:
        assert not store.is_lite and store.snapshot_dir is None
        vectors = _write(store, "server_items", "v1")
        assert store.count("server_items") == ROWS
        info = store.describe("server_items")
        assert (info["dim"], info["metric"], info["index"]) == (DIM, "COSINE", "FLAT")
        assert info["fields"] == {"name": "VARCHAR", "popularity": "INT64"}

        hits = store.search("server_items", vectors[:QUERIES], k=K, output_fields=["name"])
        assert _hit_ids(hits) == _exact_top(vectors, vectors[:QUERIES], "COSINE")
        assert hits[7][0]["name"] == "artist 7"
        assert hits[7][0]["score"] == pytest.approx(1.0, abs=1e-5)
        np.testing.assert_allclose(
            store.get("server_items", ["item0003", "item0001"]), vectors[[3, 1]], rtol=1e-6
        )
        ids, exported, fields = store.export("server_items", ["popularity"], batch_size=128)
        assert ids == _vectors()[0] and fields["popularity"] == list(range(ROWS))
        np.testing.assert_allclose(exported, vectors, rtol=1e-6)

        assert not store.write_collection(
            "server_items", *_vectors(), dim=DIM, metric="COSINE", version="v1"
        ).written
        ids, shifted = _vectors(seed=1)
        report = store.write_collection(
            "server_items", ids, shifted, dim=DIM, metric="COSINE", version="v2"
        )
        assert report.written and report.previous_physical_name == "server_items__v1"
        assert store.version("server_items") == "v2"
        again = store.search("server_items", shifted[:1], k=1)[0][0]
        assert again["id"] == "item0000"


def test_second_client_in_another_process_reads_while_the_first_is_open(
    milvus_server_uri: str,
) -> None:
    """What Milvus Lite cannot do: another process opens the same store while one holds it."""
    with VectorStore(milvus_server_uri, timeout=30) as writer:
        vectors = _write(writer, "shared_items", "v1", metric="IP")
        expected = _hit_ids(writer.search("shared_items", vectors[:QUERIES], k=K))
        script = textwrap.dedent(
            f"""
            import json, sys
            import numpy as np
            from embeddings.vector_store import VectorStore
            queries = np.asarray(json.loads(sys.stdin.read()), dtype=np.float32)
            with VectorStore({milvus_server_uri!r}, timeout=30) as reader:
                hits = reader.search("shared_items", queries, k={K})
                print(json.dumps([[h["id"] for h in row] for row in hits]))
            """
        )
        readers = [
            subprocess.Popen(
                [sys.executable, "-c", script],
                cwd=REPO_ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        payload = json.dumps(vectors[:QUERIES].tolist())
        outputs = [reader.communicate(payload, timeout=120) for reader in readers]
        # the first client still works after (and while) the others read
        assert writer.count("shared_items") == ROWS
    for reader, (out, err) in zip(readers, outputs, strict=True):
        assert reader.returncode == 0, err[-2000:]
        assert json.loads(out.strip().splitlines()[-1]) == expected
    assert expected == _exact_top(vectors, vectors[:QUERIES], "IP")


@pytest.mark.parametrize("metric", ["COSINE", "IP", "L2"])
def test_server_and_milvus_lite_return_the_same_results(
    milvus_server_uri: str, tmp_path: Path, metric: str
) -> None:
    ids, vectors = _vectors(seed=3)
    queries = np.random.default_rng(4).normal(size=(QUERIES, DIM)).astype(np.float32)
    results = []
    for uri in (milvus_server_uri, str(tmp_path / "lite.db")):
        with VectorStore(uri, timeout=30, snapshots=False) as store:
            store.write_collection(
                f"same_{metric.lower()}", ids, vectors, dim=DIM, metric=metric, version="v1"
            )
            results.append(store.search(f"same_{metric.lower()}", queries, k=K))
    server, lite = results
    assert _hit_ids(server) == _hit_ids(lite)
    np.testing.assert_allclose(
        [[h["score"] for h in row] for row in server],
        [[h["score"] for h in row] for row in lite],
        rtol=1e-4,
        atol=1e-4,
    )


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_the_server_stops_when_the_block_raises(tmp_path: Path) -> None:
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"no local Milvus server: {reason}")
    server = LocalMilvusServer(tmp_path / "server")
    try:
        server.start()
    except MilvusServerError as error:
        pytest.skip(f"the local Milvus server cannot start here: {error}")
    pid, port = server.pid, server.port
    with pytest.raises(RuntimeError, match="boom"), server:
        assert server.running and _port_open(port) and _alive(pid)
        raise RuntimeError("boom")
    assert not server.running and not _alive(pid), "the server process outlived its block"
    assert not _port_open(port)
    assert (server.logs_dir / "milvus-stderr.log").exists()
