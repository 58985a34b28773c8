"""Choose the co-occurrence defaults on HetRec validation data (never the test split).

For each split seed: a 20% per-user holdout; a validation split is carved from train; the
co-occurrence vectors are fitted without the test and validation rows, and the source alone
(taste profile -> nearest artists) is scored on the validation rows for each configuration.

    .venv/bin/python -m benchmarks.tune_cooccurrence [--seeds 42 7]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

from benchmarks.bench_served import HETREC, RESULTS
from benchmarks.hetrec_duckdb import hetrec_trainer
from embeddings.cooccurrence import CooccurrenceConfig
from evaluation.metrics import evaluate_ranking, holdout_split, validation_split
from recommend.blend import source_rankings
from recommend.candidates import content_candidates
from sources.hetrec import read_hetrec_listens_and_terms

# each fit is scored at every candidate_min_count (no refit needed for those)
FITS = [
    {"contexts": ("histories",), "window": 5, "epochs": 15, "negative": 10},
    {"contexts": ("histories",), "window": 10, "epochs": 20, "negative": 10},
    {"contexts": ("histories",), "window": 50, "epochs": 5, "negative": 10},
    {"contexts": ("histories",), "window": 50, "epochs": 20, "negative": 10},
    {"contexts": ("histories",), "window": 50, "epochs": 20, "negative": 10, "ns_exponent": -0.5},
    {"contexts": ("co_mentions", "histories"), "window": 50, "epochs": 20, "negative": 10},
    {"contexts": ("co_mentions", "histories"), "window": 50, "epochs": 10, "negative": 5},
    {"contexts": ("co_mentions", "histories"), "window": 50, "epochs": 20, "negative": 5},
]
CANDIDATE_MIN_COUNTS = (2, 10, 20, 40)


def score(vectors, fit: pd.DataFrame, validation: pd.DataFrame) -> dict:
    """The source alone at each candidate_min_count, on the validation rows."""
    users = sorted(set(validation["user_id"]))
    history = fit[fit["user_id"].isin(users)]
    out = {}
    for minimum in CANDIDATE_MIN_COUNTS:
        table = replace(
            vectors, config=replace(vectors.config, candidate_min_count=minimum)
        ).candidate_table()
        candidates = content_candidates(history, table, 30, source="cooccurrence", explain=False)
        ranking = source_rankings(candidates, 30).get("cooccurrence", {})
        metrics = evaluate_ranking(ranking, validation, fit, ks=(10, 30))
        out[f"ndcg@10 (min {minimum})"] = round(metrics["ndcg@10"], 4)
        out[f"recall@30 (min {minimum})"] = round(metrics["recall@30"], 4)
    return out


def run(seeds: list[int]) -> dict:
    listens, _ = read_hetrec_listens_and_terms(HETREC)
    out = {}
    with tempfile.TemporaryDirectory() as folder:
        trainer = hetrec_trainer(HETREC, Path(folder) / "hetrec.duckdb")
        for seed in seeds:
            split = holdout_split(listens, 0.2, seed=seed)
            inner = validation_split(split.train, 0.2, seed=7)
            base = trainer.without(split.test).without(inner.test)
            rows = []
            for fit in FITS:
                started = time.perf_counter()
                vectors = replace(base, config=CooccurrenceConfig(**fit)).fit()
                figures = score(vectors, inner.train, inner.test)
                config = vectors.config
                described = {
                    "contexts": ", ".join(config.contexts),
                    **{k: getattr(config, k) for k in ("window", "epochs", "negative")},
                    "ns_exponent": config.ns_exponent,
                }
                rows.append(
                    {
                        **described,
                        "artists": len(vectors),
                        **figures,
                        "seconds": round(time.perf_counter() - started, 1),
                    }
                )
                print(seed, rows[-1], flush=True)
            out[seed] = rows
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 7])
    args = parser.parse_args()
    result = run(args.seeds)
    command = "python -m benchmarks.tune_cooccurrence " + " ".join(sys.argv[1:])
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cooccurrence_tuning.json").write_text(json.dumps(result, indent=2))
    lines = ["# Co-occurrence vectors: defaults chosen on HetRec validation splits", ""]
    lines += [f"Command: `{command}`. The source alone, scored on the validation rows.", ""]
    for seed, rows in result.items():
        frame = pd.DataFrame(rows)
        lines += [f"## split seed {seed}", "", frame.to_markdown(index=False), ""]
    (RESULTS / "cooccurrence_tuning.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
