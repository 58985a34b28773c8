"""Benchmark: the platform's generic ingest path against DuckDB reading the same CSV.

Generates a listens CSV (user_id,item_id,plays; unique user-item pairs) and an artists CSV in a
temporary directory, then times

(a) ``GenericSource(dir).read()`` + ``validate_users`` / ``validate_artists`` + ``validate_listens``
    (text read, typing, every row-level rule, golden + quarantine frames), and
(b) DuckDB reading the file directly: ``SELECT count(*), sum(plays) FROM read_csv(...)`` and
    materialising it as an all-text table (what the raw landing does).

Writes ``bench_results/ingest.json`` and ``bench_results/ingest.md``.

Run from the repository root::

    python -m benchmarks.bench_ingest --rows 10000000
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import resource
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

from quality.rules import build_items, validate_artists, validate_listens, validate_users
from sources.generic import GenericSource

logger = logging.getLogger(__name__)
RESULTS_DIR = Path("bench_results")


def write_listens(directory: Path, rows: int, seed: int = 0) -> tuple[Path, int]:
    """Write ``listens.csv`` (``rows`` unique user-item pairs) and ``artists.csv``.

    Returns
    -------
    path, plays_sum
        The listens file and the sum of its plays (to check both readers).
    """
    rng = np.random.default_rng(seed)
    per_user = 100
    n_items = 20_000
    index = np.arange(rows, dtype=np.int64)
    user = index // per_user
    item = (user * 37 + (index % per_user) * 131) % n_items  # unique within a user
    plays = rng.geometric(0.05, rows).astype(np.int64)
    table = pa.table(
        {
            "user_id": pa.array(np.char.add("u", user.astype(str))),
            "item_id": pa.array(np.char.add("a", item.astype(str))),
            "plays": pa.array(plays),
        }
    )
    path = directory / "listens.csv"
    pa_csv.write_csv(table, path, pa_csv.WriteOptions(quoting_style="needed"))
    ids = np.char.add("a", np.arange(n_items).astype(str))
    artists = pa.table({"artist_id": pa.array(ids), "name": pa.array(np.char.add("Artist ", ids))})
    pa_csv.write_csv(artists, directory / "artists.csv", pa_csv.WriteOptions(quoting_style="needed"))
    return path, int(plays.sum())


def time_generic(directory: Path) -> dict[str, float | int | bool]:
    """Time the platform path: read as text, then validate listens (with users and artists)."""
    start = time.perf_counter()
    bundle = GenericSource(directory).read()
    read_s = time.perf_counter() - start
    start = time.perf_counter()
    users = validate_users(bundle.table("users"))
    artists = validate_artists(bundle.table("artists"))
    items = build_items(artists.golden, None, "artist")
    listens = validate_listens(bundle.table("listens"), users.golden, items, bundle.listens_kind)
    validate_s = time.perf_counter() - start
    return {
        "read_s": round(read_s, 3),
        "validate_s": round(validate_s, 3),
        "total_s": round(read_s + validate_s, 3),
        "golden_rows": len(listens.golden),
        "quarantined_rows": len(listens.quarantine),
        "plays_sum": int(listens.golden["plays"].sum()),
        "reconciles": listens.reconciles,
    }


def time_duckdb(path: Path, threads: int) -> dict[str, float | int]:
    """Time DuckDB: an aggregate straight from the CSV, and an all-text materialisation."""
    connection = duckdb.connect()
    connection.execute(f"SET threads = {int(threads)}")
    start = time.perf_counter()
    count, plays_sum = connection.execute(
        "SELECT count(*), sum(plays) FROM read_csv(?)", [str(path)]
    ).fetchone()
    aggregate_s = time.perf_counter() - start
    start = time.perf_counter()
    connection.execute(
        "CREATE TABLE raw_listens AS SELECT * FROM read_csv(?, all_varchar = true)", [str(path)]
    )
    materialise_s = time.perf_counter() - start
    connection.close()
    return {
        "aggregate_s": round(aggregate_s, 3),
        "materialise_all_varchar_s": round(materialise_s, 3),
        "rows": int(count),
        "plays_sum": int(plays_sum),
        "threads": threads,
    }


def main(argv: list[str] | None = None) -> dict[str, object]:
    """Run the benchmark and write its JSON and Markdown reports."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="listens rows to generate")
    parser.add_argument("--duckdb-threads", type=int, default=2, help="DuckDB worker threads")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="bench_ingest_") as temp:
        directory = Path(temp)
        start = time.perf_counter()
        path, plays_sum = write_listens(directory, args.rows)
        generate_s = time.perf_counter() - start
        size_mb = path.stat().st_size / 1e6
        duck = time_duckdb(path, args.duckdb_threads)
        generic = time_generic(directory)
    peak_rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    assert duck["rows"] == args.rows and duck["plays_sum"] == plays_sum
    assert generic["golden_rows"] == args.rows and generic["plays_sum"] == plays_sum

    result = {
        "rows": args.rows,
        "csv_mb": round(size_mb, 1),
        "generate_s": round(generate_s, 2),
        "generic_path": generic,
        "duckdb": duck,
        "ratio_generic_total_to_duckdb_materialise": round(
            generic["total_s"] / duck["materialise_all_varchar_s"], 1
        ),
        "ratio_generic_read_to_duckdb_materialise": round(
            generic["read_s"] / duck["materialise_all_varchar_s"], 1
        ),
        "generic_rows_per_s": round(args.rows / generic["total_s"]),
        "peak_rss_gb": round(peak_rss_gb, 2),
        "machine": f"{platform.processor() or platform.machine()}, python {platform.python_version()}",
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ingest.json").write_text(json.dumps(result, indent=2) + "\n")
    markdown = f"""# Ingest benchmark ({args.rows:,} listens rows, {size_mb:.0f} MB CSV)

| path | step | seconds |
|---|---|---|
| generic (pandas) | `GenericSource.read` (text + lineage) | {generic["read_s"]} |
| generic (pandas) | `validate_users/artists/listens` (all rules) | {generic["validate_s"]} |
| generic (pandas) | total | {generic["total_s"]} |
| DuckDB ({duck["threads"]} threads) | `count(*), sum(plays)` from `read_csv` | {duck["aggregate_s"]} |
| DuckDB ({duck["threads"]} threads) | `CREATE TABLE ... read_csv(all_varchar)` | {duck["materialise_all_varchar_s"]} |

Generic total / DuckDB materialise: **{result["ratio_generic_total_to_duckdb_materialise"]}x**;
generic read alone / DuckDB materialise: {result["ratio_generic_read_to_duckdb_materialise"]}x.
Generic throughput {result["generic_rows_per_s"]:,} rows/s; peak RSS {result["peak_rss_gb"]} GB.
Both paths agree on rows and the plays sum; the generic path reconciles
(golden {generic["golden_rows"]:,} + quarantined {generic["quarantined_rows"]}).

Command: `python -m benchmarks.bench_ingest --rows {args.rows}`
"""
    (args.out / "ingest.md").write_text(markdown)
    print(markdown)
    return result


if __name__ == "__main__":
    main()
