"""What every golden asset shares: contracts, the quarantine table and the atomic publish.

Not an asset module: the golden, text and audio asset modules import it (asset modules never
import each other).
"""

from datetime import timedelta

import dagster as dg
import pandas as pd

from assets.metadata import frame_metadata
from orchestration.resources import Warehouse
from quality import rules
from quality.suites import RAW_SOURCES

RECONCILES_CHECK = "reconciles"
OWNER = "team:data-platform"
FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=timedelta(days=8), warn_window=timedelta(days=7)
)
QUARANTINE_DDL = """
CREATE TABLE IF NOT EXISTS golden.quarantine (
    table_name VARCHAR, record_key VARCHAR, reason VARCHAR, raw_row VARCHAR,
    source_file VARCHAR, source_line BIGINT, run_id VARCHAR, quarantined_at TIMESTAMPTZ
)"""

CONTRACTS = {
    "users": "One row per user. user_id (PK).",
    "artists": "One row per artist. artist_id (PK), name, genre, url.",
    "tags": "The tag vocabulary. tag_id (PK), tag.",
    "tracks": "One row per track. track_id (PK), artist_id (FK artists), title, duration_s, genre.",
    "items": "What listens refer to: artists (artist-level sources) or tracks. item_id (PK), "
    "artist_id, name, genre, level.",
    "listen_events": "One row per play (event sources only). user_id, item_id, plays >= 1, ts.",
    "listens": "Plays per user and item. user_id, item_id (FK items), plays > 0, first_ts, last_ts.",
    "tag_assignments": "Who described which artist with which tag. user_id, artist_id, tag, ts.",
    "artist_text": "Free text about an artist. artist_id, text.",
    "friends": "Directed friendship edges. user_id, friend_id.",
    "audio_clips": (
        "One row per playable audio file. track_id (PK), path, sha256, sample_rate, channels, "
        "duration_s, container, note. Undecodable, empty, silent or absurdly long files are "
        "quarantined with a reason."
    ),
    "audio_attributes": (
        "What the audio model hears per track: backend, tempo_bpm, top_tags and tag probabilities."
    ),
}


def read_raw(warehouse: Warehouse, name: str) -> pd.DataFrame:
    """A raw table as text, without the load-time column (lineage stays)."""
    return warehouse.table("raw", name).drop(columns=["_loaded_at"], errors="ignore")


def source_info(warehouse: Warehouse) -> dict[str, str]:
    row = warehouse.read("SELECT * FROM meta.source").iloc[0]
    return {"item_level": str(row["item_level"]), "listens_kind": str(row["listens_kind"])}


def publish(
    context: dg.AssetExecutionContext,
    warehouse: Warehouse,
    table: str,
    golden: pd.DataFrame,
    quarantine: pd.DataFrame | None,
    asset_key: dg.AssetKey | None = None,
    raw_rows: int | None = None,
    extra: dict | None = None,
) -> dg.MaterializeResult:
    """Replace ``golden.<table>`` and its quarantine slice atomically; build the metadata."""
    quarantine = quarantine if quarantine is not None else rules.empty_quarantine()
    quarantine = quarantine.assign(
        table_name=table,
        run_id=context.run.run_id,
        quarantined_at=pd.Timestamp.now(tz="UTC"),
    )
    warehouse.publish_golden(table, golden, quarantine, QUARANTINE_DDL)
    reasons = (
        quarantine["reason"].str.split(":", n=1).str[0].value_counts().to_dict()
        if len(quarantine)
        else {}
    )
    metadata = {
        **frame_metadata(golden),
        "quarantined_rows": len(quarantine),
        "quarantine_reasons": dg.MetadataValue.json({str(k): int(v) for k, v in reasons.items()}),
        "contract": CONTRACTS.get(table, ""),
        **(extra or {}),
    }
    check_results = []
    if raw_rows is not None:
        ok = rules.reconcile(raw_rows, len(golden), len(quarantine))
        check_results.append(
            dg.AssetCheckResult(
                check_name=RECONCILES_CHECK,
                passed=ok,
                asset_key=asset_key,
                metadata={
                    "raw_rows": raw_rows,
                    "golden_rows": len(golden),
                    "quarantined_rows": len(quarantine),
                },
            )
        )
    if len(quarantine):
        context.log.warning(f"golden.{table}: {len(quarantine)} rows quarantined: {reasons}")
    return dg.MaterializeResult(asset_key=asset_key, metadata=metadata, check_results=check_results)


def raw_counts(warehouse: Warehouse, names: tuple[str, ...] | None = None) -> dict[str, int]:
    """Rows of the raw tables ``names`` (default: every raw table a golden table is built from;
    missing tables count 0)."""
    if names is None:
        names = tuple(sorted({name for sources in RAW_SOURCES.values() for name in sources}))
    return {
        name: int(warehouse.read(f"SELECT count(*) AS n FROM raw.{name}")["n"].iloc[0])
        if warehouse.has_table("raw", name)
        else 0
        for name in names
    }
