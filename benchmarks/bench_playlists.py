"""Benchmark: serving Discover Weekly per user (candidates, blend, re-ranking, reasons).

Fits the default CF sources once on a synthetic catalogue (``--users`` users, 2,000 artists x 10
tracks, 100 plays per user, three taste clusters: ``tests.test_playlist.make_catalog``), then
times ``build_discover_weekly`` over every user in batches of 5,000 (what the
``discover_weekly`` asset and every evaluation replay run), after a warm-up on 20 users. Reports
wall seconds, milliseconds per user and the process's peak RSS; writes
``bench_results/playlists.json`` and ``bench_results/playlists.md``.

Run from the repository root::

    python -m benchmarks.bench_playlists --users 2000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

RESULTS_DIR = Path("bench_results")


def measure(users: int, threads: int) -> dict[str, float | int]:
    """Fit the default sources, then time the playlists of every user."""
    from recommend.models import fit_sources
    from recommend.playlist import DiscoverWeeklyConfig, build_discover_weekly
    from tests.test_playlist import make_catalog

    items, listens, terms = make_catalog(
        n_users=users, n_artists=2000, tracks_per_artist=10, plays_per_user=100
    )
    config = DiscoverWeeklyConfig(num_threads=threads)
    started = time.perf_counter()
    models = fit_sources(listens, config.cf_models, num_threads=threads)
    fit_s = time.perf_counter() - started
    serve = dict(week_start="2026-11-16", models=models, config=config, artist_terms=terms)
    warm = listens[listens["user_id"].isin(sorted(listens["user_id"].unique())[:20])]
    build_discover_weekly(warm, items, **serve)
    started = time.perf_counter()
    playlists = build_discover_weekly(listens, items, batch_size=5000, **serve)
    serve_s = time.perf_counter() - started
    return {
        "users": users,
        "items": len(items),
        "listens": len(listens),
        "sources": len(config.cf_models),
        "fit_s": round(fit_s, 1),
        "playlists_s": round(serve_s, 1),
        "ms_per_user": round(1000 * serve_s / users, 2),
        "playlist_rows": len(playlists),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
    }


def main(argv: list[str] | None = None) -> dict[str, float | int]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    result = measure(args.users, args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "playlists.json").write_text(json.dumps(result, indent=2) + "\n")
    markdown = f"""# Discover Weekly serving ({result["users"]:,} users, {result["items"]:,} tracks)

| users | tracks | listens | CF sources | fit s | playlists s | ms per user | peak RSS GB |
|---|---|---|---|---|---|---|---|
| {result["users"]:,} | {result["items"]:,} | {result["listens"]:,} | {result["sources"]} | {result["fit_s"]} | {result["playlists_s"]} | **{result["ms_per_user"]}** | {result["peak_rss_gb"]} |

`build_discover_weekly` over every user in batches of 5,000 (candidates of every source with
reasons, blend, MMR re-ranking, exploration), models fitted once before; 2 cores shared with other
jobs (1-min load {result["load_average_1min_at_end"]} at the end).

Command: `python -m benchmarks.bench_playlists --users {result["users"]}`
"""
    (args.out / "playlists.md").write_text(markdown)
    print(markdown)
    return result


if __name__ == "__main__":
    main()
