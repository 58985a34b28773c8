"""Latency of `cratedigger serve` per endpoint at 100k items and 10k users, 8 concurrent clients.

Run from the project root::

    python -m benchmarks.bench_api [--items 100000] [--users 10000] [--clients 8]
                                   [--requests 2000] [--seconds 40]

Builds a synthetic published state in ``--data-dir`` (default a folder under the system temp
dir, reused when the sizes match): a DuckDB warehouse with golden items (tracks, 10 per artist),
artists, users and listens (20-60 distinct items per user); the CF vector snapshots
``cf_items`` (100k x 64) and ``cf_users`` (10k x 64) written by the same function the pipeline's
vector store calls when it publishes a version (:func:`embeddings.vector_store.write_snapshot`),
with ALS-like clustered vectors (500 taste clusters plus noise); one week of Discover Weekly
(30 items per user) and the similar-artists table as the pipeline exports them. The HNSW index
(voyager) of ``cf_items`` is built once from the snapshot into the server's cache (its build
time and recall@10 against exact search are reported), then ``cratedigger serve`` starts in
a subprocess on a free loopback port.

Per endpoint, ``--clients`` processes each keep one HTTP/1.1 connection and send requests back
to back (no think time) with ids drawn at random (seeded), until ``--requests`` in all or
``--seconds``; latencies are client-side (request written to body read). Writes
``bench_results/api.json`` and ``bench_results/api.md``.

Bars (issue 17): similar items p99 <= 20 ms; a user's playlist p99 <= 10 ms.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import platform
import random
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlsplit

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench_results"
WEEK = "2026-11-16"
DIM = 64
CLUSTERS = 500
TRACKS_PER_ARTIST = 10
BARS_MS = {"similar_items_cf": 20.0, "discover_weekly": 10.0}
WORDS = [
    "silver",
    "velvet",
    "electric",
    "golden",
    "hollow",
    "quiet",
    "broken",
    "lunar",
    "secret",
    "wild",
    "northern",
    "glass",
    "iron",
    "paper",
    "blue",
    "midnight",
    "stone",
    "summer",
    "ocean",
    "dream",
    "fire",
    "heart",
    "shadow",
    "window",
    "night",
    "rain",
    "light",
    "road",
    "letter",
    "song",
    "dance",
    "morning",
    "owls",
    "wolves",
    "rivers",
    "engines",
    "echoes",
    "comets",
    "pines",
    "tides",
    "foxes",
    "lanterns",
    "harbour",
    "signals",
]


# ------------------------------------------------------------------------------ the data
def _name(rng, words: int) -> str:
    return " ".join(w.capitalize() for w in rng.choice(WORDS, size=words, replace=False))


def build_state(data_dir: Path, n_items: int, n_users: int, seed: int = 0) -> dict:
    """Write the synthetic published state; returns the ids the clients draw from."""
    import duckdb
    import numpy as np
    import pandas as pd

    from embeddings.vector_store import snapshot_root, write_snapshot

    rng = np.random.default_rng(seed)
    data_dir.mkdir(parents=True, exist_ok=True)
    n_artists = max(1, n_items // TRACKS_PER_ARTIST)
    artist_ids = [f"a{i:06d}" for i in range(n_artists)]
    artist_names = [f"{_name(rng, 2)} {i}" for i in range(n_artists)]
    item_ids = [f"t{i:07d}" for i in range(n_items)]
    item_artist = [artist_ids[i // TRACKS_PER_ARTIST % n_artists] for i in range(n_items)]
    titles = [f"{_name(rng, 2)} {i % TRACKS_PER_ARTIST + 1}" for i in range(n_items)]
    artist_of = dict(zip(artist_ids, artist_names, strict=True))
    display = [f"{t} - {artist_of[a]}" for t, a in zip(titles, item_artist, strict=True)]
    user_ids = [f"u{i:07d}" for i in range(n_users)]

    # ALS-like vectors: items around taste clusters, users around what they play
    centroids = rng.standard_normal((CLUSTERS, DIM)).astype(np.float32)
    cluster = rng.integers(0, CLUSTERS, n_items)
    items = centroids[cluster] + 0.6 * rng.standard_normal((n_items, DIM)).astype(np.float32)
    by_cluster = [np.flatnonzero(cluster == c) for c in range(CLUSTERS)]
    listens_user, listens_item, users = [], [], np.zeros((n_users, DIM), dtype=np.float32)
    for u in range(n_users):
        tastes = rng.integers(0, CLUSTERS, 3)
        pool = np.concatenate([by_cluster[t] for t in tastes])
        played = rng.choice(pool, size=min(len(pool), int(rng.integers(20, 61))), replace=False)
        listens_user += [user_ids[u]] * len(played)
        listens_item += [item_ids[i] for i in played]
        users[u] = items[played].mean(0) + 0.1 * rng.standard_normal(DIM)
    popularity = np.bincount([int(i[1:]) for i in listens_item], minlength=n_items).tolist()

    root = snapshot_root(data_dir / "milvus.db")
    version = f"bench{n_items}x{n_users}"
    write_snapshot(
        root,
        "cf_items",
        version,
        item_ids,
        items,
        {"name": display, "popularity": popularity},
        metric="COSINE",
    )
    write_snapshot(root, "cf_users", version, user_ids, users, {}, metric="COSINE")

    frames = {
        "artists": pd.DataFrame({"artist_id": artist_ids, "name": artist_names}),
        "items": pd.DataFrame(
            {"item_id": item_ids, "artist_id": item_artist, "name": titles, "level": "track"}
        ),
        "users": pd.DataFrame({"user_id": user_ids}),
        "listens": pd.DataFrame({"user_id": listens_user, "item_id": listens_item, "plays": 1}),
    }
    warehouse = data_dir / "warehouse.duckdb"
    warehouse.unlink(missing_ok=True)
    with duckdb.connect(str(warehouse)) as con:
        con.execute("CREATE SCHEMA golden")
        for name, frame in frames.items():
            con.register("frame", frame)
            con.execute(f"CREATE TABLE golden.{name} AS SELECT * FROM frame")
            con.unregister("frame")

    picks = rng.integers(0, n_items, (n_users, 30))
    week = data_dir / "exports" / "discover_weekly" / f"week_start={WEEK}"
    week.mkdir(parents=True, exist_ok=True)
    flat = picks.ravel()
    pd.DataFrame(
        {
            "user_id": np.repeat(user_ids, 30),
            "position": np.tile(np.arange(1, 31), n_users),
            "item_id": [item_ids[i] for i in flat],
            "artist_id": [item_artist[i] for i in flat],
            "name": [display[i] for i in flat],
            "score": rng.random(len(flat)),
            "source": "ease",
            "reason": [f"because you played {display[(i + 1) % n_items]}" for i in flat],
        }
    ).to_parquet(week / "playlists.parquet", index=False)
    similar = rng.integers(0, n_artists, (n_artists, 20))
    pd.DataFrame(
        {
            "artist_id": np.repeat(artist_ids, 20),
            "rank": np.tile(np.arange(1, 21), n_artists),
            "similar_artist_id": [artist_ids[i] for i in similar.ravel()],
            "score": np.sort(rng.random((n_artists, 20)), axis=1)[:, ::-1].ravel(),
            "reason": "played by the same listeners",
        }
    ).to_parquet(data_dir / "exports" / "similar_artists.parquet", index=False)
    ids = {
        "items": item_ids[:: max(1, n_items // 20_000)],
        "users": user_ids,
        "artists": artist_ids,
        "artist_names": artist_names[:2000],
    }
    (data_dir / "bench_ids.json").write_text(json.dumps(ids))
    return ids


def build_index(data_dir: Path, threads: int) -> dict:
    """Build (or find) the cf_items HNSW index in the server's cache; report time and recall."""
    import numpy as np

    from embeddings.vector_store import read_snapshot, snapshot_root
    from embeddings.vectors import recall_vs_exact
    from serving.vectors import SnapshotCollection

    snapshot = read_snapshot(snapshot_root(data_dir / "milvus.db"), "cf_items")
    collection = SnapshotCollection(snapshot)
    cache = data_dir / "serving" / "index"
    started = time.perf_counter()
    indexed = collection.cached_index(cache)
    cached = indexed is not None
    if indexed is None:
        indexed = collection.with_index(cache, threads=threads)
    seconds = time.perf_counter() - started
    rng = np.random.default_rng(1)
    queries = rng.choice(len(collection.ids), 200, replace=False)
    found = [[key for key, _ in indexed.neighbours(collection.ids[q], 10)] for q in queries]
    recall = recall_vs_exact(
        found, queries, collection.ids, snapshot.vectors, k=10, metric="COSINE"
    )
    return {
        "rows": len(collection.ids),
        "dim": collection.dim,
        "build_seconds": round(seconds, 1),
        "loaded_from_cache": cached,
        "threads": threads,
        "recall_at_10": round(recall, 4),
    }


# ------------------------------------------------------------------------------ the load
def endpoint_paths(name: str, ids: dict, rng: random.Random, n: int) -> list[str]:
    def one() -> str:
        if name == "similar_items_cf":
            return f"/items/{rng.choice(ids['items'])}/similar?kind=cf&k=10"
        if name == "discover_weekly":
            return f"/users/{rng.choice(ids['users'])}/discover-weekly"
        if name == "recommendations":
            return f"/users/{rng.choice(ids['users'])}/recommendations?k=10"
        if name == "similar_artists_cooccurrence":
            return f"/artists/{rng.choice(ids['artists'])}/similar?kind=cooccurrence&k=10"
        if name == "search":
            words = rng.choice(ids["artist_names"]).split()
            word = words[0]
            typo = word[:1] + word[2:] if len(word) > 3 else word  # one letter dropped
            return "/search?q=" + quote(" ".join([typo, *words[1:2]])) + "&limit=10"
        if name == "health":
            return "/health"
        raise ValueError(name)

    return [one() for _ in range(n)]


def _client(args: tuple) -> list[tuple[float, int]]:
    host, port, paths, start_at, deadline = args
    connection = http.client.HTTPConnection(host, port, timeout=30)
    for path in paths[:20]:  # warm-up: connection, first touches
        connection.request("GET", path)
        connection.getresponse().read()
    while time.time() < start_at:
        time.sleep(0.001)
    timings = []
    for path in paths[20:]:
        if time.time() > deadline:
            break
        began = time.perf_counter()
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException):
            connection.close()
            connection = http.client.HTTPConnection(host, port, timeout=30)
            status = -1
        timings.append((time.perf_counter() - began, status))
    connection.close()
    return timings


def measure(url: str, name: str, ids: dict, clients: int, requests: int, seconds: float) -> dict:
    import numpy as np

    parts = urlsplit(url)
    per_client = max(1, requests // clients)
    rng = random.Random(f"{name}-42")
    jobs = []
    start_at = time.time() + 3.0
    for _ in range(clients):
        paths = endpoint_paths(name, ids, rng, per_client + 20)
        jobs.append((parts.hostname, parts.port, paths, start_at, start_at + seconds))
    began = time.time()
    with multiprocessing.get_context("spawn").Pool(clients) as pool:
        results = pool.map(_client, jobs)
    wall = time.time() - max(began, start_at)
    timings = [t for result in results for t in result]
    latencies = np.array([t for t, _ in timings]) * 1000.0
    statuses = [s for _, s in timings]
    ok = sum(1 for s in statuses if s == 200)
    return {
        "endpoint": name,
        "requests": len(timings),
        "ok": ok,
        "errors": len(timings) - ok,
        "p50_ms": round(float(np.percentile(latencies, 50)), 2),
        "p90_ms": round(float(np.percentile(latencies, 90)), 2),
        "p99_ms": round(float(np.percentile(latencies, 99)), 2),
        "max_ms": round(float(latencies.max()), 2),
        "throughput_rps": round(len(timings) / max(wall, 1e-9), 1),
        "bar_p99_ms": BARS_MS.get(name),
    }


# ------------------------------------------------------------------------------ the report
def write_markdown(report: dict, path: Path) -> None:
    setup = report["setup"]
    index = report["index"]
    lines = [
        "# Recommendation API latency (`python -m benchmarks.bench_api`)",
        "",
        f"Data (synthetic, published as the pipeline publishes it): {setup['items']:,} items "
        f"(tracks), {setup['artists']:,} artists, {setup['users']:,} users, "
        f"{setup['listens']:,} listens; CF vectors {index['dim']}-d. One `cratedigger serve` "
        f"process (uvicorn, one worker) on loopback; {setup['clients']} concurrent client "
        "processes, one keep-alive connection each, requests back to back; ids drawn at "
        "random (seeded).",
        "",
        "| endpoint | requests | errors | p50 ms | p90 ms | p99 ms | max ms | req/s | bar p99 ms | met |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in report["endpoints"]:
        bar = row["bar_p99_ms"]
        met = "" if bar is None else ("yes" if row["p99_ms"] <= bar else "**no**")
        lines.append(
            f"| {row['endpoint']} | {row['requests']} | {row['errors']} | {row['p50_ms']} | "
            f"{row['p90_ms']} | {row['p99_ms']} | {row['max_ms']} | {row['throughput_rps']} | "
            f"{'' if bar is None else bar} | {met} |"
        )
    lines += [
        "",
        "One client (no concurrency), the same requests: the cost of a request without queueing.",
        "",
        "| endpoint | requests | p50 ms | p90 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in report["single_client"]:
        lines.append(
            f"| {row['endpoint']} | {row['requests']} | {row['p50_ms']} | {row['p90_ms']} | "
            f"{row['p99_ms']} | {row['max_ms']} |"
        )
    lines += [
        "",
        f"`cf_items` HNSW index (voyager, M=16, ef_construction=100): {index['rows']:,} x "
        f"{index['dim']} built in {index['build_seconds']} s on {index['threads']} thread(s)"
        + (" (loaded from the server cache)" if index["loaded_from_cache"] else "")
        + f"; recall@10 against exact search {index['recall_at_10']} (200 queries). "
        f"Server start-up to first answer: {setup['server_start_seconds']} s.",
        "",
        f"Machine: {report['machine']['cpus']} cores shared with other jobs (1-min load "
        f"average {report['machine']['load_before']} before, {report['machine']['load_after']} "
        "after); client processes run on the same cores as the server, so the figures include "
        f"their CPU. Measured {report['measured_at']}.",
        "",
        f"Command: `{report['command']}`",
        "",
    ]
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=2000, help="per endpoint, all clients")
    parser.add_argument("--seconds", type=float, default=40.0, help="cap per endpoint")
    parser.add_argument("--index-threads", type=int, default=2)
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "cratedigger_bench_api",
        help="where the synthetic state is written (reused when the sizes match)",
    )
    parser.add_argument(
        "--endpoints",
        default="similar_items_cf,discover_weekly,recommendations,"
        "similar_artists_cooccurrence,search,health",
    )
    args = parser.parse_args(argv)

    from orchestration.settings import apply_runtime_environment

    apply_runtime_environment()
    from serving.client import local_server

    data_dir = args.data_dir / f"{args.items}x{args.users}"
    ids_file = data_dir / "bench_ids.json"
    if ids_file.exists():
        ids = json.loads(ids_file.read_text())
        print(f"reusing the synthetic state in {data_dir}", flush=True)
    else:
        print(f"writing the synthetic state to {data_dir} ...", flush=True)
        ids = build_state(data_dir, args.items, args.users)
    print("building (or loading) the HNSW index of cf_items ...", flush=True)
    index = build_index(data_dir, args.index_threads)
    print(f"index: {index}", flush=True)

    load_before = round(os.getloadavg()[0], 2)
    started = time.perf_counter()
    endpoints = []
    with local_server(data_dir, timeout=600) as url:
        server_start = round(time.perf_counter() - started, 1)
        import httpx

        health = httpx.get(f"{url}/health", timeout=30).json()
        from serving.vectors import EXACT_MAX_CELLS

        served = health["collections"]["cf_items"]
        expected = "hnsw" if served["rows"] * served["dim"] > EXACT_MAX_CELLS else "exact"
        assert served["search"] == expected, served
        index["served_by"] = served["search"]
        for name in args.endpoints.split(","):
            row = measure(url, name, ids, args.clients, args.requests, args.seconds)
            print(json.dumps(row), flush=True)
            endpoints.append(row)
        floor = []  # one client, no queueing: what a request costs the server plus the client
        for name in BARS_MS:
            row = measure(url, name, ids, 1, args.requests // 4, args.seconds)
            print(json.dumps(row), flush=True)
            floor.append(row)
    catalog = health["catalog"]
    report = {
        "setup": {
            "items": catalog["items"],
            "artists": catalog["artists"],
            "users": catalog["users"],
            "listens": catalog["listens"],
            "clients": args.clients,
            "requests_per_endpoint": args.requests,
            "seconds_cap": args.seconds,
            "server_start_seconds": server_start,
        },
        "index": index,
        "endpoints": endpoints,
        "single_client": floor,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_before": load_before,
            "load_after": round(os.getloadavg()[0], 2),
        },
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(
            ["python -m benchmarks.bench_api", *(sys.argv[1:] if argv is None else argv)]
        ),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "api.json").write_text(json.dumps(report, indent=2) + "\n")
    write_markdown(report, RESULTS / "api.md")
    print((RESULTS / "api.md").read_text())
    return report


if __name__ == "__main__":
    main()
