"""Do friends' listening and the user's own tag vocabulary earn a place in the blend? HetRec
Last.fm 2K, validation only.

Per seed: the 20% per-user holdout of ``bench_served`` (its test rows are never read here); on
its train, the validation split the weekly ``blend_config`` carves (seed 7), the sources fitted
on the rest and the validation users' candidates of every other source
(``recommend.playlist.validation_week``). Then :mod:`recommend.social`'s two sources for the
same users (friends from ``user_friends.dat``; tag assignments from ``user_taggedartists.dat``
without those on validation or test pairs): what decided to serve them. Reported: each source alone (NDCG@10, R@30 on the
validation users) and the blend tuned as ``blend_config`` tunes it
(``recommend.playlist.tune_validation_blend``: accuracy floor, then discovery) without and with
the two sources: their weights and the blend's validation NDCG@10, coverage and novelty.

    .venv/bin/python -m benchmarks.bench_social_sources [--seeds 42 7 123]
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

from evaluation.metrics import evaluate_ranking, holdout_split, item_popularity
from evaluation.served import HOLDOUT_MIN_ITEMS, _evaluation_items
from recommend.history import PlayHistory
from recommend.playlist import check_listens, tune_validation_blend, validation_week
from recommend.social import SocialGraph, replay_sources
from sources.hetrec import read_hetrec_listens_and_terms

RESULTS = Path(__file__).resolve().parent.parent / "bench_results"
HETREC = Path(__file__).resolve().parent.parent.parent / "shared/data/hetrec2011-lastfm-2k"
WEEK = pd.Timestamp("2026-01-05")


def _table(path: Path, columns: list[str]) -> pd.DataFrame:
    frame = pd.read_csv(path, sep="\t", dtype=str, encoding="latin-1")
    return frame.iloc[:, : len(columns)].set_axis(columns, axis=1)


def hetrec_social_graph(folder: Path) -> SocialGraph:
    """HetRec's friendships and tag assignments (tag ids stand for the tags)."""
    friends = _table(folder / "user_friends.dat", ["user_id", "friend_id"])
    tagged = _table(folder / "user_taggedartists.dat", ["user_id", "artist_id", "tag"])
    return SocialGraph(friends, tagged)


def _alone(candidates: pd.DataFrame, week) -> dict:
    truth = week.split.test.astype({"user_id": str, "item_id": str})
    ordered = candidates.sort_values(["user_id", "score"], ascending=[True, False])
    lists = ordered.groupby("user_id")["item_id"].agg(list).to_dict()
    lists = {u: lists.get(u, []) for u in week.users}
    row = evaluate_ranking(
        lists, truth, week.fit, ks=(10, 30), popularity=item_popularity(week.fit)
    )
    return {
        "ndcg@10": round(float(row["ndcg@10"]), 4),
        "recall@30": round(float(row["recall@30"]), 4),
    }


def _blend(week) -> dict:
    blend, search = tune_validation_blend(week)
    best = search.sort_values("objective").iloc[-1]
    return {
        "weights": dict(blend.weights),
        "method": blend.method,
        **{f"validation_{m}": round(float(best[m]), 4) for m in ("ndcg", "coverage", "novelty")},
    }


def run_seed(seed: int, listens, terms, graph: SocialGraph) -> dict:
    started = time.perf_counter()
    split = holdout_split(listens, 0.2, min_items=HOLDOUT_MIN_ITEMS, seed=seed)
    plays = PlayHistory.from_frame(check_listens(split.train), WEEK)
    items = _evaluation_items(plays, None)
    week = validation_week(plays, items, artist_terms=terms)
    item_artist = dict(zip(items["item_id"], items["artist_id"], strict=True))
    held_out = pd.concat([split.test, week.split.test])[["user_id", "item_id"]]
    sources = replay_sources(graph, held_out, week.fit, item_artist, week.statistics.listeners)
    found = sources.candidates(
        week.fit.rows_of(week.users), week.users, week.config.candidates_per_source
    )
    social = dict(tuple(found.groupby("source")))
    alone = {s: _alone(c, week) for s, c in week.candidates.groupby("source")}
    alone |= {s: _alone(c, week) for s, c in social.items()}
    without = _blend(week)
    added = pd.concat([week.candidates, *social.values()], ignore_index=True)
    with_social = _blend(replace(week, candidates=added))
    figures = {
        "validation_users": len(week.users),
        "users_with_candidates": {s: int(c["user_id"].nunique()) for s, c in social.items()},
        "alone": alone,
        "blend_without": without,
        "blend_with": with_social,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(f"seed {seed}: {json.dumps(figures)}", flush=True)
    return figures


def markdown(result: dict) -> str:
    lines = [
        "# Friends' listening and own tag vocabulary as sources (HetRec, validation only)",
        "",
        f"Command: `{result['command']}`; peak RSS {result['peak_rss_mb']} MB",
        "",
        "Validation users of the split `blend_config` carves from each seed's train (the test "
        "rows never read). `alone`: the source's own lists; `blend`: tuned as blend_config "
        "tunes it, without and with the two sources.",
    ]
    for seed, figures in result["seeds"].items():
        alone = pd.DataFrame(figures["alone"]).T.sort_values("ndcg@10", ascending=False)
        lines += [
            "",
            f"## seed {seed} ({figures['seconds']} s, {figures['validation_users']} validation "
            f"users; with candidates: {figures['users_with_candidates']})",
            "",
            alone.to_markdown(),
            "",
            f"- blend without: {figures['blend_without']}",
            f"- blend with friends + own_tags: {figures['blend_with']}",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 7, 123])
    parser.add_argument("--hetrec", type=Path, default=HETREC)
    args = parser.parse_args()
    listens, terms = read_hetrec_listens_and_terms(args.hetrec)
    graph = hetrec_social_graph(args.hetrec)
    seeds = {str(s): run_seed(s, listens, terms, graph) for s in args.seeds}
    result = {
        "command": "python -m benchmarks.bench_social_sources --seeds "
        + " ".join(map(str, args.seeds)),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "seeds": seeds,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "social_sources.json").write_text(json.dumps(result, indent=2, default=str))
    (RESULTS / "social_sources.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
