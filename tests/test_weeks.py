"""One week label: partition keys are the Mondays playlists are for, spanning the data."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest

from orchestration.partitions import (
    WEEKS,
    latest_week,
    parse_week,
    register_weeks,
    week_of,
    weeks_between,
)


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def test_weeks_span_the_plays() -> None:
    # first play on a Wednesday, last one on the Sunday before a Monday
    keys = weeks_between(ts("2026-10-28 13:00"), ts("2026-11-15 23:59:59"))
    assert keys == ["2026-11-02", "2026-11-09", "2026-11-16"]
    # a play at Monday 00:00 belongs to that week's history only from the next Monday on
    assert weeks_between(ts("2026-11-02"), ts("2026-11-02")) == ["2026-11-09"]
    assert all(pd.Timestamp(k).weekday() == 0 for k in keys)


def test_week_of_and_parse() -> None:
    assert week_of(ts("2026-11-27 19:00")) == "2026-11-23"
    assert week_of(ts("2026-11-23 00:00")) == "2026-11-23"
    assert parse_week("2026-11-23") == ts("2026-11-23")
    with pytest.raises(ValueError, match="not a Monday; its week is 2026-11-23"):
        parse_week("2026-11-25")
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        parse_week("banana")


def test_register_is_idempotent() -> None:
    instance = dg.DagsterInstance.ephemeral()
    assert latest_week(instance) is None
    assert register_weeks(instance, ["2026-11-02", "2026-11-09"]) == ["2026-11-02", "2026-11-09"]
    assert register_weeks(instance, ["2026-11-09", "2026-11-16"]) == ["2026-11-16"]
    assert latest_week(instance) == "2026-11-16"
    assert instance.get_dynamic_partitions(WEEKS.name) == ["2026-11-02", "2026-11-09", "2026-11-16"]
