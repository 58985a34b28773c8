"""Benchmark the audio encoders on the 47 real clips; writes bench_results/audio.{json,md}.

Run from the project root::

    python -m benchmarks.bench_audio [--data ../shared/data/audio] [--backends musicnn dsp]

A backend may name a model: ``musicnn:MTT_musicnn`` (the default list adds it beside the
default ``musicnn`` = ``MTT_vgg``, for comparison).

Figures per backend: model load seconds (incl. warm-up); seconds of audio embedded per second of
wall time over all clips (first 120 s of analysis per clip, centre excerpt); genre kNN accuracy
(leave-one-out, k=1 and k=3, cosine, on the manifest's coarse genre) beside the majority rate;
segment self-retrieval (non-overlapping 10 s segments of each whole clip), also split by query
half (clips hashed into halves A and B; the default model was chosen on half A) and, for the VGG
model, per conv block. Each figure is given on raw vectors and on column-standardised vectors.
Also: audio->CF cold-start recovery on synthetic data (no real CF factors exist for these clips).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
import zlib
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "2")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from embeddings.audio import (  # noqa: E402
    available_backends,
    make_audio_encoder,
)
from embeddings.audio_to_cf import evaluate_cold_start  # noqa: E402
from evaluation.audio import (  # noqa: E402
    embed_segments,
    knn_accuracy,
    nearest_in_same_group,
    self_retrieval_accuracy,
    standardise_columns,
)

logger = logging.getLogger(__name__)

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "audio"
RESULTS = Path(__file__).resolve().parents[1] / "bench_results"


def query_half(clip_id: str) -> str:
    """``"A"`` or ``"B"``: a stable split of the clips (crc32 of the id)."""
    return "AB"[zlib.crc32(clip_id.encode()) % 2]


def segment_studies(encoder, matrix: np.ndarray, groups: list[str]) -> dict:
    """Self-retrieval by query half and, for block-structured vectors, per conv block."""
    figures: dict = {}
    hits = nearest_in_same_group(matrix, groups)
    halves = np.array([query_half(group) for group in groups])
    for half in "AB":
        figures[f"segment_self_retrieval_half_{half}"] = round(
            float(hits[halves == half].mean()), 4
        )
    if getattr(encoder, "is_vgg", False):
        width = encoder.VGG_CHANNELS
        blocks = {f"conv{i + 1}": [i] for i in range(encoder.VGG_BLOCKS)}
        blocks.update({"conv3-5": [2, 3, 4], "conv1-5 (the vector)": list(range(5))})
        figures["segment_self_retrieval_by_block"] = {
            name: round(
                float(
                    nearest_in_same_group(
                        np.hstack([matrix[:, i * width : (i + 1) * width] for i in chosen]),
                        groups,
                    ).mean()
                ),
                4,
            )
            for name, chosen in blocks.items()
        }
    return figures


def bench_backend(name: str, manifest: pd.DataFrame, segment_seconds: float) -> dict:
    """All figures for one backend (``name`` or ``name:model``)."""
    backend, _, model = name.partition(":")
    encoder = make_audio_encoder(backend, **({"model": model} if model else {}))
    encoder.load()
    started = time.perf_counter()
    batch = encoder.embed_many(list(manifest.path), ids=list(manifest.clip_id))
    embed_seconds = time.perf_counter() - started
    audio_seconds = float(batch.attributes.analysed_s.sum())
    labels = manifest.set_index("clip_id").loc[batch.ids, "genre"].tolist()
    figures: dict = {
        "encoder": getattr(encoder, "signature", backend),
        "dim": encoder.dim,
        "load_seconds": round(encoder.load_seconds or 0.0, 2),
        "clips_embedded": len(batch.ids),
        "clips_failed": len(batch.failures),
        "audio_seconds": round(audio_seconds, 1),
        "embed_wall_seconds": round(embed_seconds, 2),
        "audio_seconds_per_wall_second": round(audio_seconds / embed_seconds, 2),
    }
    for variant, matrix in (
        ("raw", batch.matrix),
        ("standardised", standardise_columns(batch.matrix)),
    ):
        for k in (1, 3):
            result = knn_accuracy(matrix, labels, k=k)
            figures[f"genre_knn{k}_{variant}"] = round(result["accuracy"], 4)
        figures["genre_majority_rate"] = round(result["majority_rate"], 4)
        figures["genre_labelled_clips"] = result["n"]

    started = time.perf_counter()
    encoder.max_seconds = None
    matrix, groups = embed_segments(
        encoder, list(manifest.path), list(manifest.clip_id), segment_seconds=segment_seconds
    )
    figures["segment_wall_seconds"] = round(time.perf_counter() - started, 2)
    for variant, values in (("raw", matrix), ("standardised", standardise_columns(matrix))):
        result = self_retrieval_accuracy(values, groups)
        figures[f"segment_self_retrieval_{variant}"] = round(result["accuracy"], 4)
    figures.update(segment_studies(encoder, matrix, groups))
    figures["segment_queries"] = result["n_queries"]
    figures["segment_clips"] = result["n_clips"]
    figures["segment_chance"] = round(result["chance"], 4)
    if encoder.tag_names:
        attributes = batch.attributes.set_index("id")
        figures["example_top_tags"] = {
            clip: attributes.loc[clip, "top_tags"]
            for clip in batch.ids[:: max(1, len(batch.ids) // 8)]
        }
    figures["tempo_bpm_median"] = float(batch.attributes.tempo_bpm.median())
    if hasattr(encoder, "close"):
        encoder.close()
    return figures


def markdown(results: dict) -> str:
    """The figures as a Markdown report."""
    lines = [
        "# Audio encoders on the 47 real clips",
        "",
        f"Command: `{results['command']}`  ",
        f"Machine: {results['machine']} (shared CPU: wall-clock figures are noisy)  ",
        f"Clips: {results['clips']} ({results['audio_seconds_total']:.0f} s of audio); "
        f"backends: {', '.join(results['backends'])}",
        "",
        "| figure | " + " | ".join(results["backends"]) + " |",
        "|---|" + "---|" * len(results["backends"]),
    ]
    keys = [
        "encoder",
        "dim",
        "load_seconds",
        "clips_embedded",
        "clips_failed",
        "audio_seconds",
        "embed_wall_seconds",
        "audio_seconds_per_wall_second",
        "genre_knn1_raw",
        "genre_knn3_raw",
        "genre_knn1_standardised",
        "genre_knn3_standardised",
        "genre_majority_rate",
        "genre_labelled_clips",
        "segment_self_retrieval_raw",
        "segment_self_retrieval_standardised",
        "segment_self_retrieval_half_A",
        "segment_self_retrieval_half_B",
        "segment_queries",
        "segment_chance",
        "segment_wall_seconds",
        "tempo_bpm_median",
    ]
    for key in keys:
        cells = [str(results["per_backend"][b].get(key, "")) for b in results["backends"]]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    for backend in results["backends"]:
        by_block = results["per_backend"][backend].get("segment_self_retrieval_by_block")
        if by_block:
            lines += ["", f"Segment self-retrieval by conv block ({backend}):", ""]
            lines += ["| blocks | accuracy |", "|---|---|"]
            lines += [f"| {block} | {value} |" for block, value in by_block.items()]
    for backend in results["backends"]:
        tags = results["per_backend"][backend].get("example_top_tags")
        if tags:
            lines += ["", f"Example top tags ({backend}):", ""]
            lines += [f"- {clip}: {value}" for clip, value in tags.items()]
    cold = results["audio_to_cf_synthetic"]
    lines += [
        "",
        "## Audio -> CF cold start (synthetic: CF = audio @ W + noise, 400 tracks, 25% held out)",
        "",
        f"overlap@10 of CF neighbours {cold['overlap_at_k']:.3f} vs random "
        f"{cold['random_overlap_at_k']:.3f}; median rank of the true item {cold['median_rank']:.0f} "
        f"vs random {cold['random_median_rank']:.0f}; hit@10 {cold['hit_at_k']:.2f}.",
        "",
        "Genre labels are weak (game soundtracks: 'soundtrack' / 'electronic' follow the source "
        "package), so genre kNN partly measures 'same game'.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--backends", nargs="*", default=None)
    parser.add_argument("--segment-seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    manifest_path = args.data / "manifest.csv"
    if not manifest_path.is_file():
        raise SystemExit(f"audio clips not found at {args.data} (expected manifest.csv there)")
    manifest = pd.read_csv(manifest_path)
    manifest["path"] = [str(args.data / f) for f in manifest.file]
    backends = args.backends or available_backends()
    if not args.backends and "musicnn" in backends:
        backends.insert(backends.index("musicnn") + 1, "musicnn:MTT_musicnn")
    results: dict = {
        "command": "python -m benchmarks.bench_audio",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "clips": len(manifest),
        "audio_seconds_total": float(manifest.duration_s.sum()),
        "backends": backends,
        "per_backend": {},
    }
    for backend in backends:
        logger.info("benchmarking %s", backend)
        results["per_backend"][backend] = bench_backend(backend, manifest, args.segment_seconds)
    rng = np.random.default_rng(0)
    audio = rng.standard_normal((400, 40))
    cf = audio @ (rng.standard_normal((40, 16)) / np.sqrt(40)) + 0.1 * rng.standard_normal(
        (400, 16)
    )
    results["audio_to_cf_synthetic"] = evaluate_cold_start(audio, cf, test_fraction=0.25, seed=0)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "audio.json").write_text(json.dumps(results, indent=2, default=str))
    (RESULTS / "audio.md").write_text(markdown(results))
    print(markdown(results))
    return results


if __name__ == "__main__":
    main()
