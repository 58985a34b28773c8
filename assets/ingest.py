"""Raw landing: every source table lands as read (text) in DuckDB schema ``raw``."""

import dagster as dg
import pandas as pd

from assets.metadata import frame_metadata
from orchestration.resources import Paths, Warehouse
from sources import make_source
from sources.base import LINEAGE_COLUMNS, RAW_COLUMNS

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
    bundle = source.read()
    loaded_at = pd.Timestamp.now(tz="UTC").floor("s")
    warehouse.write_table(
        "meta",
        "source",
        pd.DataFrame(
            {
                "source_name": [bundle.source_name],
                "item_level": [bundle.item_level],
                "listens_kind": [bundle.listens_kind],
                "loaded_at": [loaded_at],
            }
        ),
    )
    for name in RAW_TABLES:
        frame = bundle.table(name)
        columns = RAW_COLUMNS[name] + LINEAGE_COLUMNS
        for column in [c for c in columns if c not in frame.columns]:
            frame[column] = None
        frame = frame[columns].astype("object").assign(_loaded_at=loaded_at)
        # Every raw column stays text: what the file said, nothing fixed or guessed.
        types = {c: "BIGINT" if c == "_source_line" else "VARCHAR" for c in columns}
        warehouse.write_table("raw", name, frame, types=types)
        yield dg.MaterializeResult(
            asset_key=["raw", name],
            metadata={
                **frame_metadata(frame),
                "source": bundle.source_name,
                "item_level": bundle.item_level,
                "listens_kind": bundle.listens_kind,
                **{f"note/{k}": str(v) for k, v in bundle.notes.items()},
            },
        )
