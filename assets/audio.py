"""Audio assets: probed clips, embeddings + attributes in Milvus, audio -> CF cold start, sensor."""

import hashlib
from datetime import timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from assets.cf import current_cf
from assets.golden import CONTRACTS, OWNER, publish, read_raw
from assets.metadata import floats
from embeddings.audio import make_audio_encoder, probe_clips
from embeddings.audio_cache import embed_with_cache
from embeddings.audio_to_cf import AudioToCF, evaluate_cold_start
from orchestration.resources import Paths, VectorStoreResource, Warehouse

AUDIO_EXTENSIONS = {".ogg", ".wav", ".flac", ".mp3", ".oga"}
AUDIO_CLIPS = dg.AssetKey(["golden", "audio_clips"])
AUDIO_ATTRIBUTES = dg.AssetKey(["golden", "audio_attributes"])
CONTRACTS["audio_clips"] = (
    "One row per playable audio file. track_id (PK), path, sha256, sample_rate, channels, "
    "duration_s, container, note. Undecodable, empty, silent or absurdly long files are "
    "quarantined with a reason."
)
CONTRACTS["audio_attributes"] = (
    "What the audio model hears per track: backend, tempo_bpm, top_tags and tag probabilities."
)


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
    clips, quarantine = probe_clips(frame)
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


def audio_collection(backend: str) -> str:
    return f"audio_{backend}"


@dg.asset(
    deps=[AUDIO_CLIPS],
    group_name="embeddings",
    kinds={"tensorflow", "milvus"},
    owners=["team:recsys"],
    description="Audio embeddings per clip (musicnn by default: its MTT_vgg tagger's five conv "
    "blocks globally pooled over the clip, 640-d; openl3 when installed; librosa DSP baseline) "
    "in Milvus collection "
    "`audio_<backend>` (COSINE) with tempo and top tags as scalar fields. Cached by "
    "sha256: only new or changed files are embedded.",
    pool="milvus",
)
def audio_vectors(
    context: dg.AssetExecutionContext,
    warehouse: Warehouse,
    paths: Paths,
    vector_store: VectorStoreResource,
) -> dg.MaterializeResult:
    clips = warehouse.table("golden", "audio_clips")
    backend = paths.audio_backend
    encoder = make_audio_encoder(backend)
    step = max(1, len(clips) // 10)

    def progress(done: int, total: int, clip_id: str) -> None:
        if done == total or done % step == 0:
            context.log.info(f"audio_vectors ({backend}): embedded {done}/{total} new clips")

    ids, vectors, attributes, failures, stats = embed_with_cache(
        encoder, clips, paths.sub("models", "audio") / f"{backend}_cache.npz", progress
    )
    for row in failures.itertuples():
        context.log.warning(f"audio clip {row.track_id} ({row.path}) did not embed: {row.error}")
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
    report = None
    if ids:
        version = hashlib.sha256(
            ("\n".join(ids)).encode() + np.ascontiguousarray(vectors).tobytes()
        ).hexdigest()[:12]
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
                version=version,
            )
    # saved even when empty, so downstream assets know there is nothing (HetRec has no audio)
    np.savez(
        paths.sub("models", "audio") / f"{backend}_vectors.npz",
        ids=np.array(ids, dtype=str),
        vectors=vectors,
    )
    attributes.to_parquet(paths.sub("models", "audio") / f"{backend}_attributes.parquet")
    return dg.MaterializeResult(
        metadata={
            "backend": backend,
            "collection": collection,
            "rows": report.rows if report else 0,
            "written": bool(report and report.written),
            "dim": int(encoder.dim),
            "encoder": encoder.signature,
            "clips": int(stats["clips"]),
            "embedded": int(stats["embedded"]),
            "cached": int(stats["cached"]),
            "failed": int(stats["failed"]),
            "failures": dg.MetadataValue.json(failures.head(20).astype(str).to_dict("records")),
            **floats({"seconds": stats["seconds"]}),
        },
    )


@dg.asset(
    key=AUDIO_ATTRIBUTES,
    deps=["audio_vectors"],
    group_name="golden",
    kinds={"duckdb"},
    owners=[OWNER],
    description=f"Golden audio_attributes. {CONTRACTS['audio_attributes']}",
    freshness_policy=dg.FreshnessPolicy.time_window(fail_window=timedelta(days=8)),
    pool="duckdb",
)
def audio_attributes(
    context: dg.AssetExecutionContext, warehouse: Warehouse, paths: Paths
) -> dg.MaterializeResult:
    saved = paths.root / "models" / "audio" / f"{paths.audio_backend}_attributes.parquet"
    if not saved.exists():
        raise FileNotFoundError(f"{saved} is missing; materialise audio_vectors first")
    frame = pd.read_parquet(saved)
    return publish(context, warehouse, "audio_attributes", frame, None, asset_key=AUDIO_ATTRIBUTES)


def audio_space(paths: Paths) -> tuple[np.ndarray, np.ndarray]:
    saved = paths.root / "models" / "audio" / f"{paths.audio_backend}_vectors.npz"
    if not saved.exists():
        raise FileNotFoundError(f"{saved} is missing; materialise audio_vectors first")
    with np.load(saved) as data:
        return data["ids"].astype(str), data["vectors"]


@dg.asset(
    deps=["audio_vectors", "cf_model"],
    group_name="embeddings",
    kinds={"scikitlearn"},
    owners=["team:recsys"],
    description="Audio -> CF factors regressor (ridge) trained on tracks that have both, so a "
    "brand-new track is placed in the CF space. Metadata: held-out CF-neighbour recovery vs "
    "random.",
)
def audio_to_cf_model(context: dg.AssetExecutionContext, paths: Paths) -> dg.MaterializeResult:
    audio_ids, audio_vecs = audio_space(paths)
    fitted = current_cf(paths)
    factors = fitted.model.item_factors
    index = {item: i for i, item in enumerate(fitted.item_ids)}
    both = [i for i, track in enumerate(audio_ids) if track in index]
    folder = paths.sub("models", "audio_to_cf")
    if factors is None or len(both) < 15:
        context.log.warning(
            f"only {len(both)} tracks have both audio and CF vectors (need 15; the CF model must "
            "have item factors): no audio->CF model this run"
        )
        (folder / "model.npz").unlink(missing_ok=True)
        return dg.MaterializeResult(metadata={"tracks_with_both": len(both), "fitted": False})
    x = audio_vecs[both]
    y = factors[[index[audio_ids[i]] for i in both]]
    figures = evaluate_cold_start(x, y, test_fraction=0.2, k=10, seed=0)
    model = AudioToCF().fit(x, y)
    model.save(folder / "model.npz")
    (folder / "BACKEND").write_text(paths.audio_backend)
    return dg.MaterializeResult(
        metadata={
            "tracks_with_both": len(both),
            "fitted": True,
            "backend": paths.audio_backend,
            "cf_version": fitted.version,
            "evaluation": dg.MetadataValue.json({k: float(v) for k, v in figures.items()}),
            **floats({k: v for k, v in figures.items() if isinstance(v, (int, float))}),
        }
    )


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
    context.update_cursor(digest)
    return dg.RunRequest(run_key=digest)
