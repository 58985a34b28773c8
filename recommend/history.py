"""Point-in-time reads of the warehouse: what the models and playlists of a week may see.

The functions take any object with ``read(sql, params) -> DataFrame`` (the ``Warehouse``
resource, or a thin wrapper around a DuckDB connection).
"""

from __future__ import annotations

from typing import Any, Protocol

import pandas as pd


class Reader(Protocol):
    def read(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame: ...


def history_before(warehouse: Reader, cutoff: pd.Timestamp) -> pd.DataFrame:
    """Plays per user and item before ``cutoff`` (all plays when the source has no times)."""
    events = warehouse.read("SELECT count(*) AS n FROM golden.listen_events")["n"].iloc[0]
    if events:
        return warehouse.read(
            "SELECT user_id, item_id, sum(plays) AS plays, min(ts) AS first_ts, "
            "max(ts) AS last_ts FROM golden.listen_events WHERE ts < ? GROUP BY ALL "
            "ORDER BY user_id, item_id",
            [cutoff.to_pydatetime()],
        )
    return warehouse.read(
        "SELECT user_id, item_id, plays, first_ts, last_ts FROM golden.listens "
        "ORDER BY user_id, item_id"
    )


def display_items(warehouse: Reader) -> pd.DataFrame:
    """Golden items with display names: 'Title - Artist' for tracks, the artist's name else."""
    return warehouse.read(
        "SELECT i.item_id, i.artist_id, CASE WHEN i.level = 'track' AND a.name IS NOT NULL "
        "THEN i.name || ' - ' || a.name ELSE i.name END AS name, i.genre, i.level "
        "FROM golden.items i LEFT JOIN golden.artists a USING (artist_id) ORDER BY i.item_id"
    )


def artist_level(warehouse: Reader) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Listens and catalog at artist level (tracks folded into their artists)."""
    listens = warehouse.read(
        "SELECT l.user_id, i.artist_id AS item_id, sum(l.plays) AS plays "
        "FROM golden.listens l JOIN golden.items i USING (item_id) GROUP BY ALL ORDER BY 1, 2"
    )
    artists = warehouse.read(
        "SELECT artist_id AS item_id, artist_id, name, genre, 'artist' AS level "
        "FROM golden.artists ORDER BY 1"
    )
    return listens, artists
