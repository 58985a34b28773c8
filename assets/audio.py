"""Audio assets: probed clips, embeddings + attributes in Milvus per backend, their evaluation,
audio -> CF cold start, and the sensor on the audio folder."""

import hashlib
from datetime import timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from assets.metadata import floats, png_markdown
from assets.publishing import CONTRACTS, OWNER, publish, read_raw
from embeddings.audio import (
    BackendUnavailable,
    available_backends,
    make_audio_encoder,
    probe_clips,
)
from embeddings.audio_cache import embed_with_cache
from embeddings.audio_to_cf import evaluate_cold_start
from embeddings.vectors import AudioEmbeddings, VectorSet, audio_collection
from evaluation.audio import (
    choose_segment_seconds,
    evaluate_encoder,
)
from evaluation.metrics import metrics_bar_chart
from orchestration.partitions import WEEKS
from orchestration.resources import (
    ARTIFACTS,
    ArtifactStoreResource,
    Paths,
    VectorStoreResource,
    Warehouse,
)
from recommend.errors import TooSmall
from recommend.models import SourceModels, fit_audio_to_cf, projector_version

AUDIO_EXTENSIONS = {".ogg", ".wav", ".flac", ".mp3", ".oga"}
AUDIO_CLIPS = dg.AssetKey(["golden", "audio_clips"])
AUDIO_ATTRIBUTES = dg.AssetKey(["golden", "audio_attributes"])
AUDIO_TO_CF = dg.AssetKey("audio_to_cf_model")


def folder_files(folder: Path) -> pd.DataFrame:
    """Audio files in the watched folder as raw ``audio_files`` rows (track id = file stem)."""
    files = (
        sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
        if folder.is_dir()
        else []
    )
    return pd.DataFrame(
        {
            "track_id": [p.stem for p in files],
            "path": [str(p) for p in files],
            "_source_file": [str(folder)] * len(files),
            "_source_line": pd.array([None] * len(files), dtype="Int64"),
        }
    )


@dg.asset(
    key=AUDIO_CLIPS,
    deps=[["raw", "audio_files"]],
    group_name="golden",
    kinds={"duckdb"},
    owners=[OWNER],
    description=f"Golden audio_clips. {CONTRACTS['audio_clips']} Rows come from the source's "
    "audio list plus any audio file dropped into the watched folder.",
    freshness_policy=dg.FreshnessPolicy.time_window(fail_window=timedelta(days=8)),
    check_specs=[
        dg.AssetCheckSpec(
            "reconciles", asset=AUDIO_CLIPS, description="files = clips + quarantined files"
        )
    ],
    pool="duckdb",
)
def audio_clips(
    context: dg.AssetExecutionContext, warehouse: Warehouse, paths: Paths
) -> dg.MaterializeResult:
    listed = read_raw(warehouse, "audio_files")
    extra = folder_files(Path(paths.audio_dir))
    known = {str(Path(p).resolve()) for p in listed["path"].dropna()}
    extra = extra[~extra["path"].map(lambda p: str(Path(p).resolve()) in known)]
    frame = pd.concat([listed, extra], ignore_index=True)
    clips, quarantine = probe_clips(frame, allowed_roots=[paths.audio_dir])
    context.log.info(
        f"audio: {len(listed)} listed + {len(extra)} found in {paths.audio_dir}: "
        f"{len(clips)} clips, {len(quarantine)} quarantined"
    )
    return publish(
        context,
        warehouse,
        "audio_clips",
        clips,
        quarantine,
        asset_key=AUDIO_CLIPS,
        raw_rows=len(frame),
        extra={"watched_folder": str(paths.audio_dir), "folder_files": len(extra)},
    )


def embed_backend(
    context: dg.AssetExecutionContext,
    backend: str,
    clips: pd.DataFrame,
    paths: Paths,
    vector_store: VectorStoreResource,
) -> tuple[dict, VectorSet | None, pd.DataFrame]:
    """Embed the clips with one backend (cached by sha256) and write its Milvus collection.

    Returns the backend's figures, its vectors and attributes; ``available`` is False (with
    the install hint in ``error``) and the vectors None when the backend is not installed.
    """
    try:
        encoder = make_audio_encoder(backend)
    except BackendUnavailable as error:
        context.log.warning(str(error))
        return {"backend": backend, "available": False, "error": str(error)}, None, pd.DataFrame()
    step = max(1, len(clips) // 10)

    def progress(done: int, total: int, clip_id: str) -> None:
        if done == total or done % step == 0:
            context.log.info(f"audio_vectors ({backend}): embedded {done}/{total} new clips")

    folder = paths.sub("models", "audio")
    ids, vectors, attributes, failures, stats = embed_with_cache(
        encoder, clips, folder / f"{backend}_cache.npz", progress
    )
    for row in failures.itertuples():
        context.log.warning(
            f"audio clip {row.track_id} ({row.path}) did not embed with {backend}: {row.error}"
        )
    if attributes.empty:
        attributes = pd.DataFrame(
            {
                "track_id": pd.Series(dtype=object),
                "tempo_bpm": pd.Series(dtype="float64"),
                "top_tags": pd.Series(dtype=object),
            }
        )
    attributes = attributes.assign(backend=backend)
    if "top_tags" in attributes:
        attributes["top_tags"] = attributes["top_tags"].map(
            lambda v: ", ".join(v) if isinstance(v, (list, tuple, np.ndarray)) else str(v or "")
        )
    collection = audio_collection(backend)
    # kept even when empty, so downstream assets know there is nothing (HetRec has no audio)
    embedded = VectorSet(
        ids,
        np.asarray(vectors, dtype=np.float32).reshape(len(ids), int(encoder.dim)),
        collection,
        signature=str(encoder.signature),
    )
    report = None
    if ids:
        fields = {
            "tempo_bpm": [float(v) for v in attributes.get("tempo_bpm", [0.0] * len(ids))],
            "top_tags": [str(v) for v in attributes.get("top_tags", [""] * len(ids))],
        }
        with vector_store.open() as store:
            report = store.write_collection(
                collection,
                ids,
                vectors,
                fields,
                dim=vectors.shape[1],
                metric="COSINE",
                version=embedded.version,
            )
    if hasattr(encoder, "close"):
        encoder.close()
    figures = {
        "backend": backend,
        "available": True,
        "encoder": encoder.signature,
        "collection": collection,
        "dim": int(encoder.dim),
        "rows": report.rows if report else 0,
        "written": bool(report and report.written),
        "clips": int(stats["clips"]),
        "embedded": int(stats["embedded"]),
        "cached": int(stats["cached"]),
        "failed": int(stats["failed"]),
        "seconds": round(float(stats["seconds"]), 2),
        "load_seconds": round(float(encoder.load_seconds or 0.0), 2),
        "failures": failures.head(20).astype(str).to_dict("records"),
    }
    return figures, embedded, attributes


@dg.asset(
    deps=[AUDIO_CLIPS],
    io_manager_key=ARTIFACTS,
    group_name="embeddings",
    kinds={"tensorflow", "milvus"},
    owners=["team:recsys"],
    description="Audio embeddings per clip, one Milvus collection `audio_<backend>` (COSINE, "
    "tempo and top tags as scalar fields) per backend: the configured one (musicnn by default: "
    "its MTT_vgg tagger's five conv blocks globally pooled over the clip, 640-d; openl3 when "
    "installed) and, to compare, every other installed one (librosa DSP baseline). Cached by "
    "sha256: only new or changed files are embedded. Metadata: counts and time per backend.",
    pool="milvus",
)
def audio_vectors(
    context: dg.AssetExecutionContext,
    warehouse: Warehouse,
    paths: Paths,
    vector_store: VectorStoreResource,
) -> dg.Output:
    clips = warehouse.table("golden", "audio_clips")
    primary_name, *others = paths.audio_backends
    primary, vectors, attributes = embed_backend(context, primary_name, clips, paths, vector_store)
    if not primary["available"]:
        raise BackendUnavailable(
            f"{primary['error']}. Or set CRATEDIGGER_AUDIO_BACKEND to one of "
            f"{available_backends()}."
        )
    results, embedded = [primary], {primary_name: vectors}
    for backend in others:
        figures, other, _ = embed_backend(context, backend, clips, paths, vector_store)
        results.append(figures)
        if other is not None:
            embedded[backend] = other
    table = pd.DataFrame(
        [{k: v for k, v in result.items() if k != "failures"} for result in results]
    )
    return dg.Output(
        AudioEmbeddings(primary_name, embedded, attributes),
        metadata={
            **{k: v for k, v in primary.items() if k not in ("failures", "available")},
            "failures": dg.MetadataValue.json(primary["failures"]),
            "backends": dg.MetadataValue.md(table.fillna("").to_markdown(index=False)),
            "per_backend": dg.MetadataValue.json(
                {r["backend"]: {k: v for k, v in r.items() if k != "backend"} for r in results}
            ),
        },
    )


@dg.asset(
    key=AUDIO_ATTRIBUTES,
    ins={"audio_vectors": dg.AssetIn("audio_vectors")},
    group_name="golden",
    kinds={"duckdb"},
    owners=[OWNER],
    description=f"Golden audio_attributes. {CONTRACTS['audio_attributes']}",
    freshness_policy=dg.FreshnessPolicy.time_window(fail_window=timedelta(days=8)),
    pool="duckdb",
)
def audio_attributes(
    context: dg.AssetExecutionContext, warehouse: Warehouse, audio_vectors: AudioEmbeddings
) -> dg.MaterializeResult:
    return publish(
        context,
        warehouse,
        "audio_attributes",
        audio_vectors.attributes,
        None,
        asset_key=AUDIO_ATTRIBUTES,
    )


@dg.asset(
    key=AUDIO_TO_CF,
    ins={"cf_model": dg.AssetIn("cf_model"), "audio_vectors": dg.AssetIn("audio_vectors")},
    partitions_def=WEEKS,
    io_manager_key=ARTIFACTS,
    group_name="embeddings",
    kinds={"scikitlearn"},
    owners=["team:recsys"],
    description="Per week, the audio -> CF factors regressor (ridge) trained on tracks that have "
    "both an audio vector and a factor of that week's cf_model, so discover_weekly places "
    "brand-new tracks in the CF space. Metadata: held-out CF-neighbour recovery vs random.",
)
def audio_to_cf_model(
    context: dg.AssetExecutionContext,
    artifact_store: ArtifactStoreResource,
    cf_model: SourceModels,
    audio_vectors: AudioEmbeddings,
) -> dg.Output:
    explorer = cf_model.explorer
    audio = audio_vectors.primary
    if len(audio) == 0:
        context.log.info("no audio vectors (the source has no audio): no audio->CF model")
        return dg.Output(None, metadata={"fitted": False})
    if explorer is None or explorer.model.item_factors is None:
        context.log.warning("the CF sources have no factor model: no audio->CF model this week")
        return dg.Output(None, metadata={"fitted": False})
    version = projector_version(explorer.version, audio.version)
    store = artifact_store.store()
    if store.has(AUDIO_TO_CF.path, context.partition_key, version):
        context.log.info(f"audio->CF model {version} already fitted; not refitting")
        stored = store.load(AUDIO_TO_CF.path, context.partition_key, version)
        return dg.Output(stored, metadata={"fitted": True, "refit": False, "version": version})
    projector = fit_audio_to_cf(explorer, (audio.ids, audio.matrix), audio_version=audio.version)
    if projector is None:
        context.log.warning("too few tracks have both audio and CF vectors: no audio->CF model")
        return dg.Output(None, metadata={"fitted": False})
    index = explorer.interactions.item_index
    both = [row for row, track in enumerate(audio.ids) if track in index]
    x = audio.matrix[both].astype(np.float64)
    y = explorer.model.item_factors[[index[audio.ids[row]] for row in both]]
    figures = evaluate_cold_start(x, y, test_fraction=0.2, k=10, seed=0)
    return dg.Output(
        projector,
        metadata={
            "tracks_with_both": projector.pairs,
            "fitted": True,
            "refit": True,
            "version": version,
            "backend": audio_vectors.backend,
            "cf_version": explorer.version,
            "evaluation": dg.MetadataValue.json({k: float(v) for k, v in figures.items()}),
            **floats({k: v for k, v in figures.items() if isinstance(v, (int, float))}),
        },
    )


class AudioEvaluationConfig(dg.Config):
    """How ``audio_evaluation`` measures the audio backends."""

    segment_seconds: float = 10.0  # shortened automatically when the clips are too short
    max_clips: int = 60  # a seeded subset keeps big folders cheap
    seed: int = 0


def _track_genres(warehouse: Warehouse, track_ids: list[str]) -> list[str | None]:
    """Genre of each track from golden.tracks (None when the table or the track has none)."""
    if not warehouse.has_table("golden", "tracks"):
        return [None] * len(track_ids)
    tracks = warehouse.table("golden", "tracks")
    if "genre" not in tracks:
        return [None] * len(track_ids)
    genre = tracks.set_index("track_id")["genre"].to_dict()
    return [genre.get(track) for track in track_ids]


@dg.asset(
    ins={"audio_vectors": dg.AssetIn("audio_vectors")},
    deps=[AUDIO_CLIPS, ["golden", "tracks"]],
    group_name="evaluation",
    kinds={"tensorflow", "pandas"},
    owners=["team:recsys"],
    description="Checkable properties of each audio backend on the golden clips: segment "
    "self-retrieval (cut each clip into non-overlapping segments, 10 s where clips are long "
    "enough; is a segment's nearest other segment from the same clip?) and leave-one-out genre "
    "1-NN on the clip vectors beside the majority rate. Table and bar chart in the metadata.",
)
def audio_evaluation(
    context: dg.AssetExecutionContext,
    config: AudioEvaluationConfig,
    warehouse: Warehouse,
    paths: Paths,
    audio_vectors: AudioEmbeddings,
) -> dg.MaterializeResult:
    clips = warehouse.table("golden", "audio_clips")
    if len(clips) > config.max_clips:
        clips = clips.sample(n=config.max_clips, random_state=config.seed)
    clips = clips.sort_values("track_id").reset_index(drop=True)
    segment_seconds = choose_segment_seconds(clips["duration_s"], config.segment_seconds)
    if segment_seconds != config.segment_seconds:
        context.log.info(
            f"clips are short (median {clips['duration_s'].median():.1f} s): "
            f"{segment_seconds:g} s segments instead of {config.segment_seconds:g} s"
        )
    ids = clips["track_id"].astype(str).tolist()
    genres = _track_genres(warehouse, ids)
    rows = []
    for backend in paths.audio_backends:
        if backend not in audio_vectors.vectors:
            context.log.warning(f"{backend}: no vectors (not installed?): not evaluated")
            continue
        embedded = audio_vectors.vectors[backend]
        position = {track: i for i, track in enumerate(embedded.ids)}
        vectors = embedded.matrix
        have = [i for i, track in enumerate(ids) if track in position]
        if not have:
            context.log.info(f"{backend}: no embedded clips to evaluate")
            continue
        clip_vectors = vectors[[position[ids[i]] for i in have]]
        encoder = make_audio_encoder(backend)
        encoder.load()
        try:
            figures = evaluate_encoder(
                encoder,
                [clips["path"].iloc[i] for i in have],
                [ids[i] for i in have],
                segment_seconds=segment_seconds,
                clip_vectors=clip_vectors,
                labels=[genres[i] for i in have],
            )
        except TooSmall as error:
            context.log.warning(f"{backend}: too small to evaluate: {error}")
            continue
        if hasattr(encoder, "close"):
            encoder.close()
        context.log.info(f"audio_evaluation {backend}: {figures}")
        rows.append({"backend": backend, "clips": len(have), **figures})
    table = pd.DataFrame(rows).set_index("backend") if rows else pd.DataFrame()
    metadata: dict = {
        "segment_seconds": segment_seconds,
        "clips_evaluated": len(clips),
        "table": dg.MetadataValue.md(
            table.reset_index().to_markdown(index=False) if rows else "_no backend had vectors_"
        ),
    }
    plotted = [
        m for m in ("self_retrieval", "self_retrieval_standardised", "genre_knn1") if m in table
    ]
    if plotted:
        chart = metrics_bar_chart(table.fillna(0.0), plotted, "Audio backends")
        (paths.sub("reports") / "audio_evaluation.png").write_bytes(chart)
        metadata["chart"] = png_markdown(chart, "Audio backends")
        table.to_csv(paths.sub("reports") / "audio_evaluation.csv")
    for backend, row in table.iterrows():
        metadata.update(
            floats(
                {
                    f"{metric}/{backend}": row[metric]
                    for metric in ("self_retrieval", "genre_knn1")
                    if metric in row and pd.notna(row[metric])
                }
            )
        )
    return dg.MaterializeResult(metadata=metadata)


audio_job = dg.define_asset_job(
    "audio_refresh",
    selection=dg.AssetSelection.assets(AUDIO_CLIPS, "audio_vectors", AUDIO_ATTRIBUTES),
    description="Re-probe the audio folder and embed new or changed files (the sensor's job).",
)


@dg.sensor(
    job=audio_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING
)
def audio_folder_sensor(context: dg.SensorEvaluationContext, paths: Paths):
    """Watch the audio folder; a new, changed or removed file triggers ``audio_refresh``."""
    files = folder_files(Path(paths.audio_dir))
    signature = hashlib.sha256()
    for path in files["path"]:
        stat = Path(path).stat()
        signature.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    digest = signature.hexdigest()
    if digest == context.cursor:
        return dg.SkipReason(f"no change in {paths.audio_dir} ({len(files)} audio files)")
    first_tick = context.cursor is None
    context.update_cursor(digest)
    if first_tick:  # the run that built the warehouse embedded these files already
        return dg.SkipReason(
            f"watching {paths.audio_dir} ({len(files)} audio files); a change triggers "
            "audio_refresh"
        )
    return dg.RunRequest(run_key=digest)
