"""Raw landing: every source table lands as read (text) in DuckDB schema ``raw``.

With ``CRATEDIGGER_ENGINE=spark`` Spark lands them as Parquet and ``raw.<table>`` are views of it
(:mod:`warehouse.lakehouse`). For the generic source DuckDB reads the CSV/Parquet files
itself (``GenericSource.land``):
what grows with events never passes through Python. The sample and HetRec sources are read in
Python (their tables do not grow with events) and their frames land the same way.
"""

import dagster as dg
import pandas as pd

from assets.metadata import PREVIEW_ROWS, frame_metadata
from orchestration.resources import Paths, Warehouse, WarehouseEngine
from sources import GenericSource, make_source
from sources.base import RAW_COLUMNS, RawBundle
from sources.generic import land_frame
from warehouse import lakehouse

RAW_TABLES = list(RAW_COLUMNS)
RAW_DESCRIPTIONS = {
    "users": "User ids as the source lists them (HetRec derives them from user_artists.dat).",
    "artists": "Artists as read: id, name, genre, url.",
    "tracks": "Tracks as read (sources at track level only).",
    "listens": "Listening rows as read: aggregated play counts or one row per play event.",
    "tags": "The tag vocabulary as read.",
    "tag_assignments": "Who tagged which artist with which tag, as read.",
    "artist_text": "Free text about artists, as read.",
    "friends": "Friendship edges between users, as read.",
    "audio_files": "Audio files listed by the source (track id, path).",
}


class SourceConfig(dg.Config):
    """Which source to read. Empty values fall back to the profile (CRATEDIGGER_SOURCE...)."""

    kind: str = ""
    path: str = ""
    sample_scale: float = 0.0


class SourceChoice(dg.ConfigurableResource):
    """The source chosen by the profile; the launchpad's ``SourceConfig`` overrides it."""

    kind: str = "sample"
    path: str = ""
    sample_scale: float = 1.0


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            ["raw", name],
            description=RAW_DESCRIPTIONS[name],
            group_name="sources",
            kinds={"duckdb"},
            owners=["team:data-platform"],
            skippable=False,
        )
        for name in RAW_TABLES
    ],
    pool="duckdb",
)
def raw_tables(
    context: dg.AssetExecutionContext,
    config: SourceConfig,
    warehouse: Warehouse,
    paths: Paths,
    source_choice: SourceChoice,
    engine: WarehouseEngine,
):
    """Read the chosen source once and land each of its tables in ``raw``, as text."""
    kind = config.kind or source_choice.kind
    path = config.path or source_choice.path or None
    scale = config.sample_scale or source_choice.sample_scale
    params = (
        {
            "n_users": max(2, round(600 * scale)),
            "n_artists": max(8, round(240 * scale)),
            "audio_tracks": max(24, min(400, round(96 * scale))),
        }
        if kind == "sample"
        else {}
    )
    if kind == "sample":
        path = str(paths.sub("sample"))
    source = make_source(kind, path, **params)
    context.log.info(f"reading source {kind!r} from {path}")
    loaded_at = pd.Timestamp.now(tz="UTC").floor("s")
    if engine.is_spark:
        # Spark lands every table as Parquet; the warehouse reads them in place (views)
        bundle = source.read()
        _land_on_spark(engine, bundle, loaded_at)
    with warehouse.connect() as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS raw")
        if engine.is_spark:
            for table in RAW_TABLES:
                lakehouse.expose_raw(con, engine.spark_dir, table)
            name, level, listens_kind = bundle.source_name, bundle.item_level, bundle.listens_kind
            notes, landed_by = bundle.notes, dict.fromkeys(RAW_TABLES, "spark")
        elif isinstance(source, GenericSource):
            landing = source.land(con, "raw", loaded_at)
            name, level, listens_kind = (
                landing.source_name,
                landing.item_level,
                landing.listens_kind,
            )
            notes, landed_by = landing.notes, landing.landed_by
        else:
            bundle = source.read()
            for table in RAW_TABLES:
                land_frame(con, bundle.table(table), f"raw.{table}", table, loaded_at)
            name, level, listens_kind = bundle.source_name, bundle.item_level, bundle.listens_kind
            notes, landed_by = bundle.notes, {}
        con.execute("CREATE SCHEMA IF NOT EXISTS meta")
        con.execute(
            "CREATE OR REPLACE TABLE meta.source AS SELECT CAST(? AS VARCHAR) AS source_name, "
            "CAST(? AS VARCHAR) AS item_level, CAST(? AS VARCHAR) AS listens_kind, "
            "CAST(? AS TIMESTAMPTZ) AS loaded_at",
            [name, level, listens_kind, loaded_at],
        )
        results = []
        for table in RAW_TABLES:
            # Every raw column stays text: what the file said, nothing fixed or guessed.
            preview = con.execute(f"SELECT * FROM raw.{table} LIMIT {PREVIEW_ROWS}").df()
            rows = con.execute(f"SELECT count(*) FROM raw.{table}").fetchone()[0]
            metadata = {
                **frame_metadata(preview),
                "dagster/row_count": dg.MetadataValue.int(int(rows)),
                "source": name,
                "item_level": level,
                "listens_kind": listens_kind,
                "landed_by": landed_by.get(table, "python") if rows else "none",
                "engine": engine.kind,
                **{f"note/{k}": str(v) for k, v in notes.items()},
            }
            results.append(dg.MaterializeResult(asset_key=["raw", table], metadata=metadata))
    yield from results


def _land_on_spark(engine: WarehouseEngine, bundle: RawBundle, loaded_at: pd.Timestamp) -> None:
    from warehouse.spark_engine import land_bundle

    land_bundle(engine.session(), bundle, engine.spark_dir, loaded_at)
