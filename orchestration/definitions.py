"""The one assembly point: assets, checks, jobs, schedules, sensors and resources."""

from __future__ import annotations

import warnings

import dagster as dg

from assets import (
    audio,
    cf,
    checks,
    cooccurrence,
    features,
    golden,
    ingest,
    journeys,
    recommend,
    reports,
    text,
    variants,
    weeks,
)
from orchestration.partitions import latest_week
from orchestration.resources import build_resources
from orchestration.settings import apply_runtime_environment, load_settings

apply_runtime_environment()
# Not actionable by a user, repeated by every step process of the multiprocess executor: the
# beta `data_version` of outputs, and Feast's Spark source marked alpha.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", message="The spark data source API is an experimental")

settings = load_settings()

ASSET_MODULES = [
    ingest,
    golden,
    weeks,
    text,
    cf,
    cooccurrence,
    audio,
    features,
    journeys,
    recommend,
    reports,
    variants,
]

all_assets = dg.load_assets_from_modules(ASSET_MODULES)
all_checks = dg.load_asset_checks_from_modules([checks, *ASSET_MODULES])

resources = build_resources(settings)
resources["source_choice"] = ingest.SourceChoice(
    kind=settings.source, path=settings.source_path or "", sample_scale=settings.sample_scale
)

EVERYTHING_JOB = "materialize_everything"
PARTITIONED = dg.AssetSelection.assets(
    *[a for a in all_assets if getattr(a, "partitions_def", None) is not None]
)
everything_job = dg.define_asset_job(
    EVERYTHING_JOB,
    selection=dg.AssetSelection.all() - PARTITIONED,
    description="Every unpartitioned asset and check, in dependency order (what `make demo` runs).",
)


def partitioned_runs(instance: dg.DagsterInstance) -> list[tuple[str, str]]:
    """(job, partition key) pairs the CLI runs after the main job: the latest week's models,
    playlists and evaluation (none before ``listening_weeks`` registered a week)."""
    week = latest_week(instance)
    return [] if week is None else [(recommend.discover_weekly_job.name, week)]


# CRATEDIGGER_EXECUTOR=multiprocess: independent steps in parallel processes (at most
# CRATEDIGGER_MAX_CONCURRENT at once); the instance's pools (orchestration.instance) keep the
# single-writer stores (DuckDB file, Milvus Lite file) to one step at a time, across runs too.
executor = (
    dg.multiprocess_executor.configured({"max_concurrent": settings.max_concurrent})
    if settings.executor == "multiprocess"
    else None  # Dagster's default: in process for `cratedigger run`, processes in the UI
)

defs = dg.Definitions(
    assets=all_assets,
    asset_checks=all_checks,
    jobs=[everything_job, audio.audio_job, recommend.discover_weekly_job],
    schedules=[recommend.discover_weekly_schedule],
    sensors=[audio.audio_folder_sensor],
    resources=resources,
    executor=executor,
)


def _main_job() -> dg.JobDefinition:
    from orchestration.runner import with_progress_logger

    return with_progress_logger(defs.resolve_job_def(EVERYTHING_JOB))


def _weekly_job() -> dg.JobDefinition:
    from orchestration.runner import with_progress_logger

    return with_progress_logger(defs.resolve_job_def(recommend.discover_weekly_job.name))


# What a step process rebuilds the job from under the multiprocess executor (module level,
# so that it can be imported there)
JOB_FACTORIES = {EVERYTHING_JOB: _main_job, recommend.discover_weekly_job.name: _weekly_job}
