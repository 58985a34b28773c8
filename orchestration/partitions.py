"""The weekly partitions shared by every point-in-time asset (models, blend, playlists)."""

import dagster as dg
import pandas as pd

# week_start of a partition's playlists = the end of its window (the Monday after the week)
WEEKS = dg.WeeklyPartitionsDefinition(start_date="2026-01-05", day_offset=1, timezone="UTC")


def week_cutoff(context: dg.AssetExecutionContext) -> pd.Timestamp:
    """The end of the partition's week: models and playlists see only plays before it."""
    return pd.Timestamp(context.partition_time_window.end)
