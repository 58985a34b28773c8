"""The weekly partitions shared by every point-in-time asset (models, blend, playlists).

One week label everywhere: a partition key is the Monday (``YYYY-MM-DD``, UTC) a Discover Weekly
playlist is for, and it is the playlist's ``week_start``. That week's models, blend and
playlists see only the plays before that Monday 00:00 UTC.

The weeks are dynamic partitions registered from the data (the ``listening_weeks`` asset): the
first is the Monday after the first play, the last the Monday after the last play, so the UI
shows the weeks the data covers and no others. A source without play times (HetRec's
aggregated counts) has one week: the Monday of the week it was loaded in.
"""

from __future__ import annotations

import dagster as dg
import pandas as pd

WEEKS = dg.DynamicPartitionsDefinition(name="weeks")
WEEK_FORMAT = "%Y-%m-%d"


def monday_on_or_after(moment: pd.Timestamp) -> pd.Timestamp:
    """The first Monday 00:00 UTC strictly after ``moment`` unless ``moment`` is one itself."""
    moment = pd.Timestamp(moment)
    moment = moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")
    day = moment.normalize()
    if day == moment and day.weekday() == 0:
        return day
    return day + pd.Timedelta(days=7 - day.weekday())


def weeks_between(first_play: pd.Timestamp, last_play: pd.Timestamp) -> list[str]:
    """Week keys from the Monday after the first play to the Monday after the last one."""
    start = monday_on_or_after(first_play + pd.Timedelta(microseconds=1))
    end = monday_on_or_after(last_play + pd.Timedelta(microseconds=1))
    return [d.strftime(WEEK_FORMAT) for d in pd.date_range(start, end, freq="7D")]


def week_of(moment: pd.Timestamp) -> str:
    """The key of the week ``moment`` falls in (its Monday)."""
    moment = pd.Timestamp(moment)
    moment = moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")
    day = moment.normalize()
    return (day - pd.Timedelta(days=day.weekday())).strftime(WEEK_FORMAT)


def parse_week(key: str) -> pd.Timestamp:
    """A week key as its Monday 00:00 UTC; ``ValueError`` naming the format otherwise."""
    try:
        day = pd.Timestamp(pd.to_datetime(key, format=WEEK_FORMAT), tz="UTC")
    except (ValueError, TypeError) as error:
        raise ValueError(f"week {key!r} is not a date in YYYY-MM-DD form") from error
    if day.weekday() != 0:
        monday = week_of(day)
        raise ValueError(f"week {key!r} is not a Monday; its week is {monday}")
    return day


def week_cutoff(context: dg.AssetExecutionContext) -> pd.Timestamp:
    """The start of the partition's week: models and playlists see only plays before it."""
    return parse_week(context.partition_key)


def latest_week(instance: dg.DagsterInstance) -> str | None:
    """The newest registered week, or None before any data registered one."""
    keys = sorted(instance.get_dynamic_partitions(WEEKS.name))
    return keys[-1] if keys else None


def register_weeks(instance: dg.DagsterInstance, keys: list[str]) -> list[str]:
    """Add the weeks that are not registered yet; returns the new ones."""
    known = set(instance.get_dynamic_partitions(WEEKS.name))
    new = [k for k in keys if k not in known]
    if new:
        instance.add_dynamic_partitions(WEEKS.name, new)
    return new
