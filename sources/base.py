"""The contract every source reader fulfils: raw tables, as read, ready to land in DuckDB.

A reader never drops, fixes or guesses a value. Every raw column is text (``str`` or ``None``)
exactly as the file held it, plus three lineage columns:

``_source_file``  the file the row came from (absolute path as given),
``_source_line``  1-based line (CSV/.dat) or row number (Parquet) in that file,
``_loaded_at``    is added by the landing asset, not by the reader.

Validation, typing and quarantine happen downstream (``quality.rules``), so that every raw row is
accounted for: raw rows = golden rows + quarantined rows.

Raw tables (all optional except ``users``, ``artists`` and ``listens``):

=================  ==========================================================================
raw table          columns (besides lineage)
=================  ==========================================================================
users              user_id
artists            artist_id, name, genre, url
tracks             track_id, artist_id, title, duration_s, genre
listens            user_id, item_id, plays, ts   (ts ISO-8601 or epoch ms text, may be None)
tags               tag_id, tag
tag_assignments    user_id, artist_id, tag_id, ts
artist_text        artist_id, text
friends            user_id, friend_id
audio_files        track_id, path
=================  ==========================================================================

``listens`` is either aggregated (one row per user and item, ``plays`` summed, no ``ts``: HetRec)
or events (one row per play with ``ts``; ``plays`` is "1" or a small count): see
``RawBundle.listens_kind``. ``item_id`` refers to ``tracks.track_id`` when the bundle is at
track level and to ``artists.artist_id`` when it is at artist level (``RawBundle.item_level``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

RAW_COLUMNS: dict[str, list[str]] = {
    "users": ["user_id"],
    "artists": ["artist_id", "name", "genre", "url"],
    "tracks": ["track_id", "artist_id", "title", "duration_s", "genre"],
    "listens": ["user_id", "item_id", "plays", "ts"],
    "tags": ["tag_id", "tag"],
    "tag_assignments": ["user_id", "artist_id", "tag_id", "ts"],
    "artist_text": ["artist_id", "text"],
    "friends": ["user_id", "friend_id"],
    "audio_files": ["track_id", "path"],
}
LINEAGE_COLUMNS = ["_source_file", "_source_line"]
REQUIRED_TABLES = ("users", "artists", "listens")


class SourceError(ValueError):
    """A source cannot be read. The message names the file, the column and the fix."""


@dataclass
class RawBundle:
    """Everything a source read, as text, with lineage columns."""

    source_name: str
    tables: dict[str, pd.DataFrame]
    item_level: Literal["artist", "track"] = "artist"
    listens_kind: Literal["aggregated", "events"] = "aggregated"
    notes: dict[str, str] = field(default_factory=dict)

    def table(self, name: str) -> pd.DataFrame:
        """The raw table ``name``, or an empty frame with the contract's columns."""
        if name in self.tables:
            return self.tables[name]
        return pd.DataFrame(columns=RAW_COLUMNS[name] + LINEAGE_COLUMNS, dtype="object")


class Source(ABC):
    """A reader of one input format. ``read`` returns raw text tables; it never validates."""

    name: str = "source"

    @abstractmethod
    def read(self) -> RawBundle:
        """Read every table of the source.

        Raises
        ------
        SourceError
            When a file is missing, empty of a header, lacks a required column or has the wrong
            delimiter; the message names the file, the column and the fix.
        """
