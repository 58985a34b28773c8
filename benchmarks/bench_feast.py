"""Online feature retrieval latency: Feast SDK and HTTP server against a direct SQLite read.

Run from the project root::

    python -m benchmarks.bench_feast [--data ../shared/data] [--requests 1000]

Builds the embedded store (file registry, DuckDB offline, SQLite online) in a temporary
directory from HetRec Last.fm 2K (1,892 users; falls back to a synthetic set when the data is
absent), with random 64-d CF vectors standing in for a trained model, applies and materialises
it, then times single-user reads of the ``weekly_playlist_ranking_v1`` service (9 features from
2 feature views) for users drawn at random (seeded):

``direct_sqlite``   two ``SELECT ... WHERE entity_key = ?`` on the online store's SQLite file
                    (one per view) plus protobuf decoding: the floor under any Feast path;
``feast_sdk``       ``FeatureStore.get_online_features(...).to_dict()`` in process;
``client``          ``FeatureStoreClient.online_user_features`` (SDK + DataFrame + statuses);
``http``            POST ``/get-online-features`` to ``feast serve`` (one gunicorn worker,
                    keep-alive, worker recycling after N requests disabled).

Writes ``bench_results/feast.json`` and ``bench_results/feast.md``. Anchor: Feast's published
Python feature server p99 of 8.4 ms at 50 features (their hardware, their feature count).
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import platform
import random
import sqlite3
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from featurestore import tables as features
from featurestore.client import FeatureStoreClient
from featurestore.server import free_port

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "bench_results"
AS_OF = datetime(2011, 5, 1, tzinfo=UTC)
ANCHOR_P99_MS = 8.4
ANCHOR_FEATURES = 50
CF_DIM = 64
SERVICE = "weekly_playlist_ranking_v1"


def build_golden(data: Path) -> tuple[duckdb.DuckDBPyConnection, str]:
    """An in-memory golden schema from HetRec (or synthetic when HetRec is absent)."""
    con = duckdb.connect()
    con.execute("CREATE SCHEMA golden")
    hetrec = data / "hetrec2011-lastfm-2k"
    if (hetrec / "user_artists.dat").exists():
        plays = pd.read_csv(hetrec / "user_artists.dat", sep="\t", dtype=str)
        plays.columns = ["user_id", "item_id", "plays"]
        plays["plays"] = plays["plays"].astype("int64")
        tagged = pd.read_csv(hetrec / "user_taggedartists.dat", sep="\t", dtype=str)
        tags = pd.read_csv(hetrec / "tags.dat", sep="\t", dtype=str, encoding="latin-1")
        terms = (
            tagged.merge(tags, on="tagID")
            .groupby(["artistID", "tagValue"])
            .userID.nunique()
            .rename("taggers")
            .reset_index()
        )
        terms["weight"] = terms.taggers / terms.groupby("artistID").taggers.transform("max")
        terms = terms.rename(columns={"artistID": "artist_id", "tagValue": "term"})
        source = "HetRec Last.fm 2K"
    else:
        rng = np.random.default_rng(7)
        plays = pd.DataFrame(
            {
                "user_id": rng.integers(0, 2000, 90_000).astype(str),
                "item_id": rng.zipf(1.3, 90_000).clip(max=17_000).astype(str),
                "plays": rng.integers(1, 500, 90_000),
            }
        ).drop_duplicates(["user_id", "item_id"])
        terms = pd.DataFrame(
            {"artist_id": ["1"], "term": ["rock"], "taggers": [1], "weight": [1.0]}
        )
        source = f"synthetic (HetRec not found at {hetrec})"
    con.register("plays_frame", plays)
    con.register("terms_frame", terms)
    con.execute(
        "CREATE TABLE golden.listens AS SELECT user_id, item_id, plays, "
        "NULL::TIMESTAMPTZ AS first_ts, NULL::TIMESTAMPTZ AS last_ts FROM plays_frame"
    )
    con.execute(
        "CREATE TABLE golden.items AS SELECT DISTINCT item_id, item_id AS artist_id, "
        "NULL AS name, NULL AS genre, 'artist' AS level FROM plays_frame"
    )
    con.execute(
        "CREATE TABLE golden.artists AS SELECT artist_id, name, NULL AS genre, NULL AS url "
        "FROM golden.items"
    )
    con.execute(
        "CREATE TABLE golden.artist_terms AS SELECT artist_id, term, weight, taggers "
        "FROM terms_frame"
    )
    return con, source


def percentiles(samples_s: list[float]) -> dict[str, float]:
    """p50 / p99 / mean in milliseconds."""
    ms = np.asarray(samples_s) * 1000.0
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "mean_ms": round(float(ms.mean()), 3),
        "n": len(ms),
    }


def time_calls(call, users: list[str], warmup: int) -> list[float]:
    """Wall time of ``call(user)`` per user, after ``warmup`` untimed calls."""
    for user in users[:warmup]:
        call(user)
    samples = []
    for user in users:
        started = time.perf_counter()
        call(user)
        samples.append(time.perf_counter() - started)
    return samples


def direct_reader(client: FeatureStoreClient, refs: list[str]):
    """A function reading the same features straight from the SQLite online store."""
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    online_path = client.config["online_store"]["path"]
    con = sqlite3.connect(online_path, check_same_thread=False)
    by_view: dict[str, list[str]] = {}
    for ref in refs:
        view, name = ref.split(":")
        by_view.setdefault(view, []).append(name)
    queries = []
    for view, names in by_view.items():
        marks = ", ".join("?" * len(names))
        sql = (
            f'SELECT feature_name, value, event_ts FROM "{client.project}_{view}" '
            f"WHERE entity_key = ? AND feature_name IN ({marks})"
        )
        queries.append((sql, names))

    def read(user: str) -> dict[str, object]:
        key = serialize_entity_key(
            EntityKey(join_keys=["user_id"], entity_values=[Value(string_val=user)]),
            entity_key_serialization_version=3,
        )
        out: dict[str, object] = {}
        for sql, names in queries:
            for name, blob, _ in con.execute(sql, [key, *names]):
                value = Value()
                value.ParseFromString(blob)
                out[name] = getattr(value, value.WhichOneof("val")) if value.ByteSize() else None
        return out

    return read


def http_reader(url: str, refs: list[str]):
    """A function POSTing one user to the feature server over one keep-alive connection."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    headers = {"Content-Type": "application/json"}

    def read(user: str) -> dict:
        body = json.dumps({"features": refs, "entities": {"user_id": [user]}})
        connection.request("POST", "/get-online-features", body=body, headers=headers)
        response = connection.getresponse()
        payload = response.read()
        if response.status != 200:
            raise RuntimeError(f"feature server answered {response.status}: {payload[:300]!r}")
        return json.loads(payload)

    return read, connection


def run(data: Path, requests: int, warmup: int, seed: int) -> dict:
    """Build the store, time every path, return the figures."""
    started = time.perf_counter()
    con, source = build_golden(data)
    with tempfile.TemporaryDirectory(prefix="bench_feast_") as tmp:
        client = FeatureStoreClient(ROOT / "feature_repo", Path(tmp) / "feast")
        client.apply()
        stats = features.user_listening_stats(con, as_of=AS_OF)
        features.export_parquet(stats, client.parquet_path("user_listening_stats"))
        features.export_parquet(
            features.artist_stats(con, as_of=AS_OF), client.parquet_path("artist_stats")
        )
        rng = np.random.default_rng(seed)
        user_ids = stats.user_id.tolist()
        vectors = pd.DataFrame(
            {
                "user_id": user_ids,
                "vector": list(rng.standard_normal((len(user_ids), CF_DIM)).astype(np.float32)),
                "version": "random-64",
            }
        )
        features.export_parquet(
            features.user_cf_vectors(vectors, as_of=AS_OF), client.parquet_path("user_cf_vector")
        )
        t0 = time.perf_counter()
        materialized = client.materialize()
        materialize_s = time.perf_counter() - t0
        setup_s = time.perf_counter() - started

        refs = client.feature_refs(SERVICE)
        picker = random.Random(seed)
        users = [picker.choice(user_ids) for _ in range(requests)]
        direct = direct_reader(client, refs)
        sample_user = users[0]
        sdk_row = client.store.get_online_features(
            features=refs, entity_rows=[{"user_id": sample_user}]
        ).to_dict()
        direct_row = direct(sample_user)
        assert sdk_row["total_plays"][0] == direct_row["total_plays"], "direct read disagrees"

        results: dict[str, dict] = {}
        results["direct_sqlite"] = percentiles(time_calls(direct, users, warmup))
        results["feast_sdk"] = percentiles(
            time_calls(
                lambda u: client.store.get_online_features(
                    features=refs, entity_rows=[{"user_id": u}]
                ).to_dict(),
                users,
                warmup,
            )
        )
        results["client"] = percentiles(
            time_calls(lambda u: client.online_user_features([u], SERVICE), users, warmup)
        )
        t0 = time.perf_counter()
        # Feast's default gunicorn max-requests (1000 +- 50) restarts the single worker mid-run
        # (the server is down while it boots); disable it so the figures measure serving.
        with client.serve(port=free_port(), max_requests=0) as server:
            server_start_s = time.perf_counter() - t0
            read, connection = http_reader(server.url, refs)
            http_row = read(sample_user)
            names = http_row["metadata"]["feature_names"]
            http_total = http_row["results"][names.index("total_plays")]["values"][0]
            assert http_total == sdk_row["total_plays"][0], "HTTP disagrees with the SDK"
            results["http"] = percentiles(time_calls(read, users, warmup))
            connection.close()
    floor = results["direct_sqlite"]
    for figures in results.values():
        figures["p50_vs_direct"] = round(figures["p50_ms"] / floor["p50_ms"], 1)
        figures["p99_vs_direct"] = round(figures["p99_ms"] / floor["p99_ms"], 1)
    results["http"]["p99_vs_feast_anchor"] = round(results["http"]["p99_ms"] / ANCHOR_P99_MS, 2)
    return {
        "benchmark": "feast online retrieval, one user per request",
        "data": source,
        "users": len(user_ids),
        "features_per_request": len(refs),
        "feature_refs": refs,
        "requests_per_path": requests,
        "warmup_per_path": warmup,
        "seed": seed,
        "materialize_s": round(materialize_s, 2),
        "materialized_entities": materialized.entities,
        "setup_s": round(setup_s, 2),
        "feast_serve_start_s": round(server_start_s, 2),
        "paths": results,
        "anchor": {
            "source": "Feast docs/blog: Python feature server p99",
            "p99_ms": ANCHOR_P99_MS,
            "features": ANCHOR_FEATURES,
        },
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "note": "2 cores shared with other jobs; figures are noisy",
        },
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_markdown(report: dict, path: Path) -> None:
    """The figures as a Markdown table."""
    lines = [
        "# Feast online retrieval (one user per request)",
        "",
        f"Data: {report['data']}, {report['users']} users; {report['features_per_request']} "
        f"features per request (`{SERVICE}`: user_listening_stats + user_cf_vector, 64-d); "
        f"{report['requests_per_path']} timed requests per path after "
        f"{report['warmup_per_path']} warm-up, users drawn at random (seed {report['seed']}).",
        "",
        "| path | p50 ms | p99 ms | mean ms | p50 / direct | p99 / direct |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    labels = {
        "direct_sqlite": "direct SQLite read (+ protobuf decode)",
        "feast_sdk": "Feast SDK `get_online_features().to_dict()`",
        "client": "`FeatureStoreClient.online_user_features` (DataFrame + status)",
        "http": "HTTP `feast serve` POST /get-online-features",
    }
    for name, figures in report["paths"].items():
        lines.append(
            f"| {labels[name]} | {figures['p50_ms']} | {figures['p99_ms']} | "
            f"{figures['mean_ms']} | {figures['p50_vs_direct']}x | {figures['p99_vs_direct']}x |"
        )
    http_p99 = report["paths"]["http"]["p99_ms"]
    lines += [
        "",
        f"Anchor: Feast's published Python feature server p99 is {ANCHOR_P99_MS} ms at "
        f"{ANCHOR_FEATURES} features; here HTTP p99 is {http_p99} ms at "
        f"{report['features_per_request']} features "
        f"({report['paths']['http']['p99_vs_feast_anchor']}x the anchor; different hardware and "
        f"feature count, so an order-of-magnitude check only).",
        "",
        f"Materialise (Parquet -> SQLite, 3 views): {report['materialize_s']} s; "
        f"`feast serve` start-up: {report['feast_serve_start_s']} s; "
        f"whole setup: {report['setup_s']} s.",
        "",
        f"Machine: {report['machine']['note']}. Measured {report['measured_at']}.",
        "",
        "Command: `python -m benchmarks.bench_feast`",
    ]
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and write bench_results/feast.{json,md}."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    report = run(args.data, args.requests, args.warmup, args.seed)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "feast.json").write_text(json.dumps(report, indent=2) + "\n")
    write_markdown(report, RESULTS / "feast.md")
    print((RESULTS / "feast.md").read_text())


if __name__ == "__main__":
    main()
