"""What is served against its ingredients on HetRec Last.fm 2K, over several split seeds.

For each seed: a 20% per-user holdout (``holdout_split``); on train only, the blend is tuned on
a validation split carved from train, the sources are fitted and the playlists are built by the
very functions the weekly assets call (``evaluation.served.evaluate_blend``). Reported per seed:
NDCG@10, R@30 and distinct artists in the top-30 lists of every single source, of each
re-ranking stage and of the served playlists, with time and peak memory.

    .venv/bin/python -m benchmarks.bench_served [--seeds 42 7 123] [--artifacts data/hetrec/artifacts]

With ``--artifacts`` (the artifact store of a ``make hetrec`` run) the text source uses the served
MiniLM ``text_vectors``; without it, term vectors built from the HetRec tags.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import pandas as pd

from artifacts import ArtifactStore
from evaluation.metrics import holdout_split
from evaluation.served import evaluate_blend
from recommend.playlist import STAGES
from sources.hetrec import read_hetrec_listens_and_terms

RESULTS = Path(__file__).resolve().parent.parent / "bench_results"
HETREC = Path(__file__).resolve().parent.parent.parent / "shared/data/hetrec2011-lastfm-2k"
COLUMNS = ["ndcg@10", "recall@30", "distinct@30", "coverage@30", "novelty@30"]


def run(seeds: list[int], directory: Path, artifacts: Path | None = None) -> dict:
    listens, terms = read_hetrec_listens_and_terms(directory)
    text = ArtifactStore(str(artifacts)).load(["text_vectors"]).as_table() if artifacts else None
    per_seed = {}
    for seed in seeds:
        started = time.perf_counter()
        split = holdout_split(listens, 0.2, seed=seed)
        table = evaluate_blend(split.train, split.test, artist_terms=terms, text_vectors=text)
        singles = table.drop(index=list(STAGES))
        best = str(singles["ndcg@10"].idxmax())
        served = table.loc["discover_weekly"]
        per_seed[seed] = {
            "table": table[COLUMNS].round(4).to_dict("index"),
            "best_single_source": best,
            "served_minus_best_ndcg@10": round(
                float(served["ndcg@10"] - singles["ndcg@10"].max()), 4
            ),
            "served_distinct@30_over_ease": round(
                float(served["distinct@30"] / table.loc["ease", "distinct@30"]), 2
            ),
            "blend_config": str(table.attrs["blend_config"]),
            "seconds": round(time.perf_counter() - started, 1),
        }
        print(f"seed {seed}:\n{table[COLUMNS].round(4).to_string()}\n{per_seed[seed]}")
    return {
        "text_vectors": "served MiniLM (text_vectors artifact)"
        if artifacts
        else "HetRec tag terms",
        "seeds": per_seed,
        "served_ndcg@10_mean": round(
            sum(s["table"]["discover_weekly"]["ndcg@10"] for s in per_seed.values()) / len(seeds),
            4,
        ),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def markdown(result: dict) -> str:
    lines = ["# Served playlists vs single sources (HetRec Last.fm 2K, 20% per-user holdout)", ""]
    lines.append(f"Command: `{result['command']}`; text source: {result['text_vectors']}")
    lines.append("")
    for seed, figures in result["seeds"].items():
        frame = pd.DataFrame(figures["table"]).T
        lines += [f"## seed {seed} ({figures['seconds']} s)", "", frame.to_markdown(), ""]
        lines.append(
            f"best single source: {figures['best_single_source']}; served - best NDCG@10: "
            f"{figures['served_minus_best_ndcg@10']}; served distinct@30 / EASE's: "
            f"{figures['served_distinct@30_over_ease']}; blend: {figures['blend_config']}"
        )
        lines.append("")
    lines.append(
        f"served NDCG@10 mean: {result['served_ndcg@10_mean']}; peak RSS {result['peak_rss_mb']} MB"
    )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 7, 123])
    parser.add_argument("--hetrec", type=Path, default=HETREC)
    parser.add_argument("--artifacts", type=Path, default=None)
    args = parser.parse_args()
    result = run(args.seeds, args.hetrec, args.artifacts)
    result["command"] = "python -m benchmarks.bench_served " + " ".join(sys.argv[1:])
    RESULTS.mkdir(exist_ok=True)
    name = "served_minilm" if args.artifacts else "served"
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2))
    (RESULTS / f"{name}.md").write_text(markdown(result))


if __name__ == "__main__":
    main()
