"""Run slices of the real asset graph on a temporary data directory (real DuckDB, GX, Milvus)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from assets import ingest
from orchestration.partitions import register_weeks
from orchestration.resources import build_resources
from orchestration.settings import load_settings


def settings_for(
    data_dir: Path, source: str = "sample", source_path: str | None = None, scale: float = 0.3
):
    env = {
        "CRATEDIGGER_DATA_DIR": str(data_dir),
        "CRATEDIGGER_SOURCE": source,
        "CRATEDIGGER_SAMPLE_SCALE": str(scale),
    }
    if source_path:
        env["CRATEDIGGER_SOURCE_PATH"] = source_path
    return load_settings(env)


def run_assets(
    settings,
    selection: str | list[str] | None = None,
    raise_on_error: bool = True,
    partition_key: str | None = None,
    run_config: dict | None = None,
    warehouse=None,
):
    """Materialise ``selection`` (Dagster selection syntax) of the whole graph, in process."""
    from orchestration.definitions import all_assets, all_checks

    resources = build_resources(settings)
    if warehouse is not None:
        resources["warehouse"] = warehouse
    resources["source_choice"] = ingest.SourceChoice(
        kind=settings.source, path=settings.source_path or "", sample_scale=settings.sample_scale
    )
    instance = dg.DagsterInstance.ephemeral()
    if partition_key is not None:
        # in a run the listening_weeks asset registers the weeks; here the instance is new
        register_weeks(instance, [partition_key])
    return dg.materialize(
        [*all_assets, *all_checks],
        resources=resources,
        instance=instance,
        selection=selection,
        raise_on_error=raise_on_error,
        partition_key=partition_key,
        run_config=run_config,
    )
