"""Benchmark: Spark MLlib ALS vs implicit ALS fit time at a given number of listen events.

For each size, the streamed sample generator (:mod:`sources.sample_stream`, the planted sample
of ``CRATEDIGGER_SAMPLE_SCALE`` written at any size: scale 1 is about 48k events) writes its
``listens.parquet`` (seeded, cached in ``--work``), DuckDB aggregates the events to one row per
(user, track) with integer codes, and both models fit the same weighted matrix with the
``CF_PRESETS["als"]`` configuration (64 factors, 15 iterations, log weighting; MLlib with
``MLLIB_PRESET_CHANGES``):

* implicit on ``--threads`` threads (default: the cores of the Spark master, for parity);
* MLlib on ``SPARK_MASTER`` (default ``local[2]``), timed as session start, the fit (with the
  CSR -> Arrow -> DataFrame transfer) and the collection of the factors to numpy.

With ``--ndcg`` both models are also scored on a seeded per-user holdout (20 % of the items of
users with 2+ items; NDCG@10 over a sample of ``--ndcg-users`` test users).

Writes ``bench_results/mllib_als.json`` and ``bench_results/mllib_als.md``.

Run from the repository root::

    python -m benchmarks.bench_mllib_als --sizes 1M
    SPARK_MASTER=local[4] python -m benchmarks.bench_mllib_als --sizes 1M,10M --ndcg
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from embeddings.cf import CF_PRESETS, Interactions, fit_cf
from embeddings.mllib_als import MLLIB_PRESET_CHANGES, MLlibALSModel, spark_session

RESULTS_DIR = Path("bench_results")
NDCG_K = 10


def generate(events: int, folder: Path, seed: int) -> float:
    """Write the sample's generic files for ``events`` unless they are there; returns seconds."""
    from sources.sample_stream import SampleStream

    if (folder / "sample_stream.json").exists():
        return 0.0
    started = time.perf_counter()
    SampleStream(events, seed).write(folder)
    return time.perf_counter() - started


def load_interactions(listens: Path) -> Interactions:
    """One entry per (user, item) with summed plays, built from integer codes (no frame of
    string ids): DuckDB sorts the ids, as :meth:`Interactions.from_listens` does."""
    import duckdb

    with duckdb.connect() as con:
        con.execute(
            "CREATE TEMP TABLE pairs AS SELECT user_id, item_id, SUM(plays)::FLOAT AS plays "
            f"FROM read_parquet('{listens}') GROUP BY ALL"
        )
        users = [
            r[0] for r in con.execute("SELECT DISTINCT user_id FROM pairs ORDER BY 1").fetchall()
        ]
        items = [
            r[0] for r in con.execute("SELECT DISTINCT item_id FROM pairs ORDER BY 1").fetchall()
        ]
        codes = con.execute(
            "SELECT dense_rank() OVER (ORDER BY user_id) - 1 AS u, "
            "dense_rank() OVER (ORDER BY item_id) - 1 AS i, plays FROM pairs"
        ).fetchnumpy()
    return Interactions.from_codes(users, items, codes["u"], codes["i"], codes["plays"])


def holdout(
    interactions: Interactions, seed: int, users: int
) -> tuple[Interactions, dict[int, set[int]]]:
    """A seeded per-user holdout on the matrix (20 % of the items of users with 2+ items, at
    least one) for ``users`` sampled users; returns the training matrix and the test items."""
    rng = np.random.default_rng(seed)
    plays = interactions.plays.tocsr()
    counts = np.diff(plays.indptr)
    eligible = np.flatnonzero(counts >= 2)
    chosen = np.sort(rng.choice(eligible, size=min(users, len(eligible)), replace=False))
    keep = np.ones(plays.nnz, dtype=bool)
    test: dict[int, set[int]] = {}
    for user in chosen:
        start, stop = plays.indptr[user], plays.indptr[user + 1]
        n_test = max(1, round(0.2 * (stop - start)))
        picked = start + rng.choice(stop - start, size=n_test, replace=False)
        keep[picked] = False
        test[int(user)] = set(plays.indices[picked].tolist())
    rows = np.repeat(np.arange(plays.shape[0]), counts)[keep]
    train = Interactions.from_codes(
        interactions.user_ids,
        interactions.item_ids,
        rows,
        plays.indices[keep],
        plays.data[keep],
        interactions.user_index,
        interactions.item_index,
    )
    return train, test


def ndcg_at_k(model: Any, user_items: Any, test: dict[int, set[int]], k: int = NDCG_K) -> float:
    """Mean NDCG@k over the test users (binary relevance, training items excluded)."""
    users = np.array(sorted(test))
    tops = model.recommend_batch(users, user_items[users], n=k)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    values = []
    for user, top in zip(users, tops, strict=True):
        relevant = test[int(user)]
        dcg = sum(discounts[rank] for rank, item in enumerate(top) if int(item) in relevant)
        values.append(dcg / discounts[: min(k, len(relevant))].sum())
    return float(np.mean(values))


def master_cores(master: str) -> int:
    """Cores of a ``local[N]`` / ``local[*]`` master (os.cpu_count() otherwise)."""
    match = re.fullmatch(r"local\[(\d+|\*)(?:,\d+)?\]", master)
    if match and match.group(1) != "*":
        return int(match.group(1))
    return 1 if master == "local" else os.cpu_count() or 1


def fit_both(interactions: Interactions, threads: int, spark: Any) -> dict[str, Any]:
    """Fit implicit and MLlib ALS on the same weighted matrix; seconds and the models."""
    implicit_config = CF_PRESETS["als"]
    implicit = fit_cf(interactions, implicit_config, num_threads=threads, compute_loss=False)
    mllib = MLlibALSModel(implicit_config.with_(**MLLIB_PRESET_CHANGES), spark=spark)
    started = time.perf_counter()
    mllib.fit(implicit.user_items)
    return {
        "implicit": implicit.model,
        "mllib": mllib,
        "user_items": implicit.user_items,
        "implicit_fit_s": round(implicit.fit_seconds, 2),
        "mllib_total_s": round(time.perf_counter() - started, 2),
        "mllib_fit_s": round(mllib.spark_seconds["fit"], 2),
        "mllib_collect_factors_s": round(mllib.spark_seconds["collect_factors"], 2),
    }


def measure(events: int, args: argparse.Namespace, spark: Any, threads: int) -> dict[str, Any]:
    folder = Path(args.work) / f"stream_{events}"
    result: dict[str, Any] = {
        "events": events,
        "generation_s": round(generate(events, folder, args.seed), 1),
    }
    started = time.perf_counter()
    interactions = load_interactions(folder / "listens.parquet")
    result["load_s"] = round(time.perf_counter() - started, 1)
    users, items = interactions.shape
    result |= {"users": users, "items": items, "pairs": int(interactions.plays.nnz)}
    test: dict[int, set[int]] = {}
    if args.ndcg:
        interactions, test = holdout(interactions, args.seed, args.ndcg_users)
    fitted = fit_both(interactions, threads, spark)
    if test:
        result["implicit_ndcg@10"] = round(
            ndcg_at_k(fitted["implicit"], fitted["user_items"], test), 4
        )
        result["mllib_ndcg@10"] = round(ndcg_at_k(fitted["mllib"], fitted["user_items"], test), 4)
        result["ndcg_users"] = len(test)
    result |= {k: v for k, v in fitted.items() if k.endswith("_s")}
    return result


def markdown(meta: dict[str, Any], results: list[dict[str, Any]]) -> str:
    lines = [
        "# MLlib ALS vs implicit ALS (`python -m benchmarks.bench_mllib_als`)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, shared and noisy. Spark master "
        f"`{meta['master']}` (session start {meta['session_start_s']} s, not in the fit times); "
        f"implicit on {meta['implicit_threads']} threads. Config `CF_PRESETS['als']` (64 factors, "
        f"15 iterations, log weighting), MLlib with `{meta['mllib_changes']}`. Pairs = distinct "
        "(user, track) of the sample stream.",
        "",
        "| events | users | items | pairs | implicit fit s | MLlib fit s | MLlib factors s "
        "| MLlib / implicit | implicit NDCG@10 | MLlib NDCG@10 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ratio = (r["mllib_fit_s"] + r["mllib_collect_factors_s"]) / max(r["implicit_fit_s"], 1e-9)
        lines.append(
            f"| {r['events']:,} | {r['users']:,} | {r['items']:,} | {r['pairs']:,} "
            f"| {r['implicit_fit_s']} | {r['mllib_fit_s']} | {r['mllib_collect_factors_s']} "
            f"| {ratio:.1f}x | {r.get('implicit_ndcg@10', '')} | {r.get('mllib_ndcg@10', '')} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from orchestration.settings import spark_master
    from sources.sample_stream import parse_count

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1M", help="comma-separated event counts (1M,10M)")
    parser.add_argument("--work", default="/tmp/cratedigger_mllib_als", help="scratch folder")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--threads", type=int, default=0, help="implicit threads (0: master's cores)"
    )
    parser.add_argument("--ndcg", action="store_true", help="also score both on a holdout")
    parser.add_argument("--ndcg-users", type=int, default=5_000, help="test users sampled")
    args = parser.parse_args(argv)
    try:
        sizes = [parse_count(s) for s in args.sizes.split(",")]
    except ValueError as error:
        print(f"bench_mllib_als: --sizes: {error}", file=sys.stderr)
        return 2
    master = spark_master()
    threads = args.threads or master_cores(master)
    started = time.perf_counter()
    spark = spark_session(master)
    meta = {
        "master": spark.sparkContext.master,
        "session_start_s": round(time.perf_counter() - started, 1),
        "implicit_threads": threads,
        "mllib_changes": MLLIB_PRESET_CHANGES,
        "machine": platform.machine(),
        "cores": os.cpu_count(),
    }
    results = []
    for events in sizes:
        print(f"== {events:,} events", flush=True)
        results.append(measure(events, args, spark, threads))
        print(results[-1], flush=True)
        RESULTS_DIR.mkdir(exist_ok=True)
        (RESULTS_DIR / "mllib_als.json").write_text(
            json.dumps({**meta, "results": results}, indent=1)
        )
        (RESULTS_DIR / "mllib_als.md").write_text(markdown(meta, results))
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
