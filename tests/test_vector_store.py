"""VectorStore on a temporary Milvus Lite file: versions, aliases, idempotence, crash safety."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from embeddings.vector_store import (
    CollectionNotFound,
    VectorStore,
    VectorStoreLocked,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
DIM = 8


def _vectors(n: int, seed: int = 0, dim: int = DIM) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    return [f"item{i}" for i in range(n)], rng.normal(size=(n, dim)).astype(np.float32)


@pytest.fixture()
def store(tmp_path: Path):
    with VectorStore(str(tmp_path / "vectors.db")) as opened:
        yield opened


def test_write_then_search_get_count_describe(store: VectorStore) -> None:
    ids, vectors = _vectors(200)
    names = [f"name {i}" for i in range(200)]
    report = store.write_collection(
        "items",
        ids,
        vectors,
        {"name": names, "popularity": np.arange(200) / 200.0},
        dim=DIM,
        metric="COSINE",
        version="v1",
    )
    assert report.written and report.rows == 200 and report.physical_name == "items__v1"
    assert store.count("items") == 200
    assert store.version("items") == "v1"
    assert store.list_collections() == ["items"]
    info = store.describe("items")
    assert (info["dim"], info["metric"], info["index"]) == (DIM, "COSINE", "FLAT")
    assert info["fields"] == {"name": "VARCHAR", "popularity": "DOUBLE"}

    hits = store.search("items", vectors[7], k=3, output_fields=["name"])[0]
    assert hits[0]["id"] == "item7" and hits[0]["name"] == "name 7"
    assert hits[0]["score"] == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(store.get("items", ["item3", "item1"]), vectors[[3, 1]], rtol=1e-6)
    with pytest.raises(KeyError, match="nope"):
        store.get("items", ["item1", "nope"])


def test_search_matches_exact_inner_product_and_filter(store: VectorStore) -> None:
    ids, vectors = _vectors(300, seed=1)
    genre = ["rock" if i % 3 == 0 else "jazz" for i in range(300)]
    store.write_collection(
        "items", ids, vectors, {"genre": genre}, dim=DIM, metric="IP", version="v1"
    )
    query = vectors[:5]
    exact = np.argsort(-(query @ vectors.T), axis=1)[:, :10]
    found = store.search("items", query, k=10)
    for row, hits in zip(exact, found, strict=True):
        assert [h["id"] for h in hits] == [ids[i] for i in row]
    rock = store.search("items", query[0], k=20, filter='genre == "rock"', output_fields=["genre"])
    assert rock[0] and all(h["genre"] == "rock" for h in rock[0])


def test_rewrite_same_version_is_a_noop(store: VectorStore) -> None:
    ids, vectors = _vectors(50)
    first = store.write_collection("items", ids, vectors, dim=DIM, metric="L2", version="v1")
    again = store.write_collection("items", ids, vectors, dim=DIM, metric="L2", version="v1")
    assert first.written and not again.written
    assert again.physical_name == "items__v1" and store.count("items") == 50


def test_new_version_replaces_old_and_keeps_last_two(store: VectorStore) -> None:
    ids, vectors = _vectors(60)
    store.write_collection("items", ids, vectors, dim=DIM, version="v1")
    second = store.write_collection("items", ids[:40], vectors[:40], dim=DIM, version="v2")
    assert second.previous_physical_name == "items__v1" and second.dropped == []
    assert store.count("items") == 40 and store.version("items") == "v2"
    third = store.write_collection("items", ids[:30], vectors[:30], dim=DIM, version="v3")
    assert third.dropped == ["items__v1"]
    assert store.describe("items")["versions"] == ["items__v2", "items__v3"]
    assert store.count("items") == 30
    with pytest.raises(KeyError):
        store.get("items", ["item45"])


def test_hnsw_and_ivf_indexes_are_built(store: VectorStore) -> None:
    ids, vectors = _vectors(500, seed=2)
    for index in ("HNSW", "IVF_FLAT"):
        store.write_collection(
            index.lower(), ids, vectors, dim=DIM, metric="COSINE", index=index, version="v1"
        )
        assert store.describe(index.lower())["index"] == index
        assert store.search(index.lower(), vectors[11], k=1)[0][0]["id"] == "item11"


def test_bad_input_is_rejected_with_clear_errors(store: VectorStore) -> None:
    ids, vectors = _vectors(10)
    with pytest.raises(ValueError, match="duplicate ids"):
        store.write_collection("items", ids[:9] + ["item0"], vectors, dim=DIM, version="v1")
    with pytest.raises(ValueError, match="shape"):
        store.write_collection("items", ids, vectors, dim=DIM + 1, version="v1")
    bad = vectors.copy()
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        store.write_collection("items", ids, bad, dim=DIM, version="v1")
    with pytest.raises(ValueError, match="has 3 values"):
        store.write_collection(
            "items", ids, vectors, {"name": ["a", "b", "c"]}, dim=DIM, version="v1"
        )
    with pytest.raises(ValueError, match="not valid"):
        store.write_collection("items__x", ids, vectors, dim=DIM, version="v1")
    with pytest.raises(ValueError, match="empty"):
        store.write_collection("items", [], vectors[:0], dim=DIM, version="v1")
    with pytest.raises(CollectionNotFound, match="write it first"):
        store.count("items")
    assert store.list_collections() == []


def _run_python(code: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=REPO_ROOT,
    )


def test_second_process_gets_a_clear_lock_error_and_close_releases(tmp_path: Path) -> None:
    db = tmp_path / "locked.db"
    holder = _run_python(f"""
        import time
        from embeddings.vector_store import VectorStore
        store = VectorStore({str(db)!r})
        print("HELD", flush=True)
        time.sleep(60)
    """)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "HELD"
        started = time.monotonic()
        with pytest.raises(VectorStoreLocked, match="another process"):
            VectorStore(str(db))
        assert time.monotonic() - started < 10
    finally:
        holder.kill()
        holder.wait()
    with VectorStore(str(db)) as reopened:  # released when the holder died
        assert reopened.list_collections() == []
    with VectorStore(str(db)) as again:  # and close() released it in this process too
        assert again.list_collections() == []


def test_kill_during_write_keeps_readers_on_old_version(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    ids, vectors = _vectors(300, seed=3, dim=16)
    with VectorStore(str(db)) as store:
        store.write_collection("items", ids, vectors, dim=16, version="v1")

    rows = 60_000
    writer = _run_python(f"""
        import numpy as np
        from embeddings.vector_store import VectorStore
        vectors = np.random.default_rng(4).normal(size=({rows}, 16)).astype(np.float32)
        ids = [f"item{{i}}" for i in range({rows})]
        with VectorStore({str(db)!r}) as store:
            store.write_collection(
                "items", ids, vectors, dim=16, version="v2", batch_size=200,
                progress=lambda done, total: print("BATCH", done, flush=True),
            )
        print("DONE", flush=True)
    """)
    assert writer.stdout is not None
    seen = 0
    for line in writer.stdout:
        if line.startswith("BATCH"):
            seen += 1
            if seen == 20:
                os.kill(writer.pid, signal.SIGKILL)
                break
    writer.wait()
    rest = writer.stdout.read()
    assert writer.returncode == -signal.SIGKILL and "DONE" not in rest

    with VectorStore(str(db)) as store:
        assert store.version("items") == "v1"  # readers never saw the partial collection
        assert store.count("items") == 300
        assert store.search("items", vectors[5], k=1)[0][0]["id"] == "item5"
        # the re-run drops the partial collection and finishes
        new_ids, new_vectors = _vectors(2_000, seed=5, dim=16)
        report = store.write_collection("items", new_ids, new_vectors, dim=16, version="v2")
        assert "items__v2" in report.dropped and report.written
        assert store.version("items") == "v2" and store.count("items") == 2_000
        assert store.search("items", new_vectors[9], k=1)[0][0]["id"] == "item9"
        assert store.describe("items")["versions"] == ["items__v1", "items__v2"]


@pytest.mark.slow
def test_hetrec_similar_items_recall_vs_exact(tmp_path: Path, hetrec_listens) -> None:
    """Top-10 similar items from Milvus vs exact numpy on the same ALS vectors (COSINE)."""

    from embeddings.cf import CF_PRESETS, fit_cf
    from embeddings.vectors import recall_vs_exact

    listens = hetrec_listens
    fitted = fit_cf(listens, CF_PRESETS["als"], num_threads=1)
    ids, vectors = fitted.item_ids, fitted.model.item_factors
    queries = np.random.default_rng(0).choice(len(ids), size=200, replace=False)
    with VectorStore(str(tmp_path / "recall.db")) as store:
        for index, goal in (("FLAT", 0.99), ("HNSW", 0.95), ("IVF_FLAT", 0.95)):
            name = f"items_{index.lower()}"
            store.write_collection(
                name,
                ids,
                vectors,
                dim=vectors.shape[1],
                metric="COSINE",
                index=index,
                version=fitted.version,
            )
            found = store.search(name, vectors[queries], k=11)
            recall = recall_vs_exact(
                [[h["id"] for h in hits] for hits in found], queries, ids, vectors, 10, "COSINE"
            )
            assert recall >= goal, (index, recall)


def test_an_id_with_quotes_never_widens_a_read(tmp_path):
    """Issue 12 item 6: ids are escaped literals in the Milvus filter, not expression text."""
    from embeddings.vector_store import VectorStore

    ids = ["u001", "u002", "o'brien", 'q"x', "back\\slash", "uni\u00e9", "tab\tx"]
    vectors = np.random.default_rng(0).random((len(ids), 4)).astype("float32") + 0.1
    with VectorStore(str(tmp_path / "m.db")) as store:
        store.write_collection("t", ids, vectors, {}, dim=4, metric="COSINE", version="v1")
        for injected in [
            "u001'] or id in ['u002",
            'u001"] or id in ["u002',
            'u001\\"] or id in ["u002',
        ]:
            assert store.get_rows("t", [injected]) == []
        rows = store.get_rows("t", ids[2:], output_fields=["id"])
        assert sorted(r["id"] for r in rows) == sorted(ids[2:])
        assert np.allclose(store.get("t", ["o'brien"]), vectors[2:3], atol=1e-6)


def test_the_resource_waits_a_bounded_time_for_a_held_lite_file(tmp_path):
    """Issue 12 item 7: a reader holding the Milvus Lite file makes a step wait, then fail
    with one clear error; it neither fails at once nor hangs."""
    from embeddings.vector_store import VectorStoreLocked
    from orchestration.resources import VectorStoreResource

    path = tmp_path / "held.db"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from embeddings.vector_store import VectorStore; "
            f"s = VectorStore({str(path)!r}); print('held', flush=True); "
            "time.sleep(float(sys.argv[1])); s.close()",
            "4",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        waiting = VectorStoreResource(uri=str(path), lock_wait_seconds=1.0)
        with pytest.raises(VectorStoreLocked, match="held by another process"), waiting.open():
            pass
        assert time.monotonic() - started < 4
        with VectorStoreResource(uri=str(path), lock_wait_seconds=60).open() as store:
            assert store.list_collections() == []
        assert time.monotonic() - started >= 2
    finally:
        holder.kill()
