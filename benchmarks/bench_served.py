"""What is served against its ingredients on HetRec Last.fm 2K, over several split seeds.

For each seed: a 20% per-user holdout (``holdout_split``, users with 2+ artists: those with
2-4 lose one, so that users left with at most 3 artists can be scored apart); on train only,
the blend is tuned on a validation split carved from train, the sources are fitted and the
playlists are built by the very functions the weekly assets call
(``evaluation.served.evaluate_blend``). Reported per seed, on the test users with 5+ artists:
NDCG@10, R@30, distinct artists in the top-30 lists and novelty of every single source, of each
re-ranking stage and of the served playlists; the users with at most 3 training artists apart
(served beside popularity); time and peak memory; and the learned-ranker issue's acceptance
(served NDCG@10 >= best single source + 0.01 per seed and >= 0.27 on average, R@30 >= 0.36,
distinct@30 >= 2x EASE's, novelty@30 >= ALS's).

    .venv/bin/python -m benchmarks.bench_served [--seeds 42 7 123] [--cooccurrence]
        [--artifacts data/hetrec/artifacts] [--out served]

With ``--cooccurrence`` the co-occurrence source is fitted as the ``cooccurrence_vectors`` asset
fits it (HetRec's co-mentions and histories, without the held-out rows) and blended like every
source: what the weekly job serves. With ``--artifacts`` (the artifact store of a ``make hetrec``
run) the text source uses the served MiniLM ``text_vectors``; without it, term vectors built
from the HetRec tags.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from artifacts import ArtifactStore
from benchmarks.bench_social_sources import hetrec_social_graph
from benchmarks.hetrec_duckdb import hetrec_trainer
from evaluation.metrics import holdout_split
from evaluation.served import HOLDOUT_MIN_ITEMS, evaluate_blend, user_segments
from recommend.playlist import STAGES
from sources.hetrec import read_hetrec_listens_and_terms

RESULTS = Path(__file__).resolve().parent.parent / "bench_results"
HETREC = Path(__file__).resolve().parent.parent.parent / "shared/data/hetrec2011-lastfm-2k"
COLUMNS = ["ndcg@10", "recall@30", "distinct@30", "coverage@30", "novelty@30", "users"]
# the learned-ranker issue's acceptance (served playlists on the test users)
TARGET_MEAN_NDCG, TARGET_LEAD, TARGET_RECALL, TARGET_DISTINCT = 0.27, 0.01, 0.36, 2.0


def _checks(table: pd.DataFrame) -> dict:
    singles = table.drop(index=list(STAGES))
    served = table.loc["discover_weekly"]
    return {
        "best_single_source": str(singles["ndcg@10"].idxmax()),
        "served_minus_best_ndcg@10": round(float(served["ndcg@10"] - singles["ndcg@10"].max()), 4),
        "served_distinct@30_over_ease": round(
            float(served["distinct@30"] / table.loc["ease", "distinct@30"]), 2
        ),
        "served_novelty@30_minus_als": round(
            float(served["novelty@30"] - table.loc["als", "novelty@30"]), 4
        ),
    }


def run_seed(seed, listens, terms, text, cooccurrence, social=None) -> dict:
    started = time.perf_counter()
    split = holdout_split(listens, 0.2, min_items=HOLDOUT_MIN_ITEMS, seed=seed)
    segments = user_segments(listens, split.train)
    table = evaluate_blend(
        split.train,
        split.test,
        artist_terms=terms,
        text_vectors=text,
        cooccurrence=cooccurrence,
        segments=segments,
        social=social,
    )
    main = table.attrs["segments"]["main"]
    light = table.attrs["segments"].get("light")
    figures = {
        "table": main[COLUMNS].round(4).to_dict("index"),
        **_checks(main),
        "light_users": None
        if light is None
        else light.loc[["discover_weekly", "popularity"], COLUMNS].round(4).to_dict("index"),
        "blend_config": str(table.attrs["blend_config"]),
        "ranker": table.attrs["ranker"],
        "serving_ms_per_user": round(
            1000 * table.attrs["seconds"]["playlists"] / split.test["user_id"].nunique(), 1
        ),
        "stage_seconds": table.attrs["seconds"],
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(f"seed {seed}:\n{main[COLUMNS].round(4).to_string()}\n{figures}", flush=True)
    return figures


def acceptance(per_seed: dict) -> dict:
    served = [s["table"]["discover_weekly"] for s in per_seed.values()]
    mean = sum(row["ndcg@10"] for row in served) / len(served)
    return {
        "served_ndcg@10_mean": round(mean, 4),
        "mean_ndcg@10_at_least_0.27": mean >= TARGET_MEAN_NDCG,
        "lead_over_best_at_least_0.01_every_seed": all(
            s["served_minus_best_ndcg@10"] >= TARGET_LEAD for s in per_seed.values()
        ),
        "recall@30_at_least_0.36_every_seed": all(
            row["recall@30"] >= TARGET_RECALL for row in served
        ),
        "distinct@30_at_least_2x_ease_every_seed": all(
            s["served_distinct@30_over_ease"] >= TARGET_DISTINCT for s in per_seed.values()
        ),
        "novelty@30_at_least_als_every_seed": all(
            s["served_novelty@30_minus_als"] >= 0 for s in per_seed.values()
        ),
    }


def run(
    seeds: list[int],
    directory: Path,
    artifacts: Path | None = None,
    cooccurrence: bool = False,
    social: bool = True,
) -> dict:
    listens, terms = read_hetrec_listens_and_terms(directory)
    graph = hetrec_social_graph(directory) if social else None
    text = ArtifactStore(str(artifacts)).load(["text_vectors"]).as_table() if artifacts else None
    with tempfile.TemporaryDirectory() as folder:
        trainer = (
            hetrec_trainer(directory, Path(folder) / "hetrec.duckdb") if cooccurrence else None
        )
        per_seed = {seed: run_seed(seed, listens, terms, text, trainer, graph) for seed in seeds}
    return {
        "text_vectors": "served MiniLM (text_vectors artifact)"
        if artifacts
        else "HetRec tag terms",
        "cooccurrence": cooccurrence,
        "social": social,
        "seeds": per_seed,
        "acceptance": acceptance(per_seed),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def markdown(result: dict) -> str:
    lines = ["# Served playlists vs single sources (HetRec Last.fm 2K, 20% per-user holdout)", ""]
    lines.append(f"Command: `{result['command']}`; text source: {result['text_vectors']}")
    lines.append("")
    lines.append(f"Co-occurrence source: {'yes' if result.get('cooccurrence') else 'no'}")
    lines.append("")
    lines.append(f"Friends and own_tags sources: {'yes' if result.get('social') else 'no'}")
    lines.append("")
    for seed, figures in result["seeds"].items():
        frame = pd.DataFrame(figures["table"]).T
        lines += [f"## seed {seed} ({figures['seconds']} s)", "", frame.to_markdown(), ""]
        lines.append(
            f"best single source: {figures['best_single_source']}; served - best NDCG@10: "
            f"{figures['served_minus_best_ndcg@10']}; served distinct@30 / EASE's: "
            f"{figures['served_distinct@30_over_ease']}; served novelty@30 - ALS's: "
            f"{figures['served_novelty@30_minus_als']}; blend: {figures['blend_config']}"
        )
        if figures["light_users"]:
            light = pd.DataFrame(figures["light_users"]).T[["ndcg@10", "recall@30", "users"]]
            lines += ["", "Users with at most 3 training artists:", "", light.to_markdown()]
        ranker = figures.get("ranker") or {}
        if ranker:
            lines += [
                "",
                f"learned ranker: serves **{ranker['serves']}** ({ranker['reason']}); "
                f"{ranker['trees']} trees trained in {ranker['train_seconds']} s; knob "
                f"{ranker['novelty_weight']}; choice users {ranker.get('choice_users')}; "
                f"per-source contribution {ranker.get('source_contribution')}",
            ]
        lines += [
            "",
            f"serving (candidates, ranking, playlists): {figures['serving_ms_per_user']} ms per "
            f"user; stage seconds: {figures['stage_seconds']}",
            "",
        ]
    lines.append("Acceptance (learned-ranker issue):")
    lines.append("")
    lines += [f"- {name}: {value}" for name, value in result["acceptance"].items()]
    lines += ["", f"peak RSS {result['peak_rss_mb']} MB"]
    return "\n".join(lines) + "\n"


def merge(results: list[dict]) -> dict:
    """One report of runs of single seeds (run side by side to save time)."""
    per_seed = {seed: figures for r in results for seed, figures in r["seeds"].items()}
    return {
        "text_vectors": results[0]["text_vectors"],
        "cooccurrence": results[0].get("cooccurrence", False),
        "social": results[0].get("social", False),
        "seeds": per_seed,
        "acceptance": acceptance(per_seed),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
        "command": "; ".join(r["command"] for r in results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 7, 123])
    parser.add_argument("--hetrec", type=Path, default=HETREC)
    parser.add_argument("--artifacts", type=Path, default=None)
    parser.add_argument("--cooccurrence", action="store_true")
    parser.add_argument(
        "--no-social", action="store_true", help="without the friends and own_tags sources"
    )
    parser.add_argument("--out", default=None, help="file name in bench_results/ (no suffix)")
    parser.add_argument(
        "--merge", nargs="+", default=None, help="combine these bench_results/ runs (no suffix)"
    )
    args = parser.parse_args()
    if args.merge:
        result = merge([json.loads((RESULTS / f"{n}.json").read_text()) for n in args.merge])
    else:
        result = run(args.seeds, args.hetrec, args.artifacts, args.cooccurrence, not args.no_social)
        result["command"] = "python -m benchmarks.bench_served " + " ".join(sys.argv[1:])
    RESULTS.mkdir(exist_ok=True)
    name = args.out or ("served_minilm" if args.artifacts else "served")
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2))
    (RESULTS / f"{name}.md").write_text(markdown(result))


if __name__ == "__main__":
    main()
