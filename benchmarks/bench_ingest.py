"""Benchmark: the platform's generic ingest path against DuckDB reading the same CSV.

Generates a listens CSV (user_id,item_id,plays; unique user-item pairs) and an artists CSV in a
temporary directory, then times

(a) ``GenericSource(dir).read()`` + ``validate_users`` / ``validate_artists`` + ``validate_listens``
    (text read, typing, every row-level rule, golden + quarantine frames), once with ``str``
    object columns (the default) and once with ``arrow_strings=True``, and
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
import os
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
    pa_csv.write_csv(
        artists, directory / "artists.csv", pa_csv.WriteOptions(quoting_style="needed")
    )
    return path, int(plays.sum())


def time_generic(directory: Path, arrow_strings: bool) -> dict[str, float | int | bool]:
    """Time the platform path: read as text, then validate listens (with users and artists)."""
    start, cpu_start = time.perf_counter(), time.process_time()
    bundle = GenericSource(directory, arrow_strings=arrow_strings).read()
    read_s, read_cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    start, cpu_start = time.perf_counter(), time.process_time()
    users = validate_users(bundle.table("users"))
    artists = validate_artists(bundle.table("artists"))
    items = build_items(artists.golden, None, "artist")
    listens = validate_listens(bundle.table("listens"), users.golden, items, bundle.listens_kind)
    validate_s, validate_cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    return {
        "read_s": round(read_s, 3),
        "validate_s": round(validate_s, 3),
        "total_s": round(read_s + validate_s, 3),
        "read_cpu_s": round(read_cpu_s, 3),
        "validate_cpu_s": round(validate_cpu_s, 3),
        "total_cpu_s": round(read_cpu_s + validate_cpu_s, 3),
        "golden_rows": len(listens.golden),
        "quarantined_rows": len(listens.quarantine),
        "plays_sum": int(listens.golden["plays"].sum()),
        "reconciles": listens.reconciles,
        "arrow_strings": arrow_strings,
    }


def time_duckdb(path: Path, threads: int) -> dict[str, float | int]:
    """Time DuckDB: an aggregate straight from the CSV, and an all-text materialisation."""
    connection = duckdb.connect()
    connection.execute(f"SET threads = {int(threads)}")
    start, cpu_start = time.perf_counter(), time.process_time()
    count, plays_sum = connection.execute(
        "SELECT count(*), sum(plays) FROM read_csv(?)", [str(path)]
    ).fetchone()
    aggregate_s, aggregate_cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    start, cpu_start = time.perf_counter(), time.process_time()
    connection.execute(
        "CREATE TABLE raw_listens AS SELECT * FROM read_csv(?, all_varchar = true)", [str(path)]
    )
    materialise_s, materialise_cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    connection.close()
    return {
        "aggregate_s": round(aggregate_s, 3),
        "materialise_all_varchar_s": round(materialise_s, 3),
        "aggregate_cpu_s": round(aggregate_cpu_s, 3),
        "materialise_all_varchar_cpu_s": round(materialise_cpu_s, 3),
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
        generic_objects = time_generic(directory, arrow_strings=False)
        generic = time_generic(directory, arrow_strings=True)
    peak_rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    assert duck["rows"] == args.rows and duck["plays_sum"] == plays_sum
    for run in (generic, generic_objects):
        assert run["golden_rows"] == args.rows and run["plays_sum"] == plays_sum

    result = {
        "rows": args.rows,
        "csv_mb": round(size_mb, 1),
        "generate_s": round(generate_s, 2),
        "generic_path": generic,
        "generic_path_object_strings": generic_objects,
        "duckdb": duck,
        "ratio_generic_total_to_duckdb_materialise": round(
            generic["total_s"] / duck["materialise_all_varchar_s"], 1
        ),
        "ratio_generic_total_cpu_to_duckdb_materialise_cpu": round(
            generic["total_cpu_s"] / duck["materialise_all_varchar_cpu_s"], 1
        ),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
        "ratio_generic_read_to_duckdb_materialise": round(
            generic["read_s"] / duck["materialise_all_varchar_s"], 1
        ),
        "ratio_generic_objects_total_to_duckdb_materialise": round(
            generic_objects["total_s"] / duck["materialise_all_varchar_s"], 1
        ),
        "generic_rows_per_s": round(args.rows / generic["total_s"]),
        "peak_rss_gb": round(peak_rss_gb, 2),
        "machine": f"{platform.processor() or platform.machine()}, python {platform.python_version()}",
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ingest.json").write_text(json.dumps(result, indent=2) + "\n")
    g, o, d = generic, generic_objects, duck
    markdown = f"""# Ingest benchmark ({args.rows:,} listens rows, {size_mb:.0f} MB CSV)

| path | step | wall s | CPU s |
|---|---|---|---|
| generic, Arrow strings | `GenericSource(arrow_strings=True).read` | {g["read_s"]} | {g["read_cpu_s"]} |
| generic, Arrow strings | `validate_users/artists/listens` (all rules) | {g["validate_s"]} | {g["validate_cpu_s"]} |
| generic, Arrow strings | total | {g["total_s"]} | {g["total_cpu_s"]} |
| generic, `str` objects (default) | `GenericSource.read` | {o["read_s"]} | {o["read_cpu_s"]} |
| generic, `str` objects (default) | `validate_users/artists/listens` | {o["validate_s"]} | {o["validate_cpu_s"]} |
| generic, `str` objects (default) | total | {o["total_s"]} | {o["total_cpu_s"]} |
| DuckDB ({d["threads"]} threads) | `count(*), sum(plays)` from `read_csv` | {d["aggregate_s"]} | {d["aggregate_cpu_s"]} |
| DuckDB ({d["threads"]} threads) | `CREATE TABLE ... read_csv(all_varchar)` | {d["materialise_all_varchar_s"]} | {d["materialise_all_varchar_cpu_s"]} |

Generic total (Arrow strings) / DuckDB materialise:
**{result["ratio_generic_total_to_duckdb_materialise"]}x**; with `str` objects
{result["ratio_generic_objects_total_to_duckdb_materialise"]}x; generic read alone (Arrow) / DuckDB
materialise: {result["ratio_generic_read_to_duckdb_materialise"]}x.
CPU-time ratio (Arrow generic total / DuckDB materialise, all DuckDB threads summed):
{result["ratio_generic_total_cpu_to_duckdb_materialise_cpu"]}x. Machine: {result["cpu_count"]} cores
shared with other jobs (1-min load {result["load_average_1min_at_end"]} at the end), so wall times
are inflated; CPU seconds are the steadier figure.
Both generic runs read with pyarrow's CSV reader (pandas is the fallback for non-strict files).
Generic throughput (Arrow) {result["generic_rows_per_s"]:,} rows/s; peak RSS of the process
{result["peak_rss_gb"]} GB.
Both paths agree on rows and the plays sum; the generic path reconciles
(golden {generic["golden_rows"]:,} + quarantined {generic["quarantined_rows"]}).

Command: `python -m benchmarks.bench_ingest --rows {args.rows}`
"""
    (args.out / "ingest.md").write_text(markdown)
    print(markdown)
    return result


if __name__ == "__main__":
    main()
