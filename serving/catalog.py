"""What the server reads besides vectors: names, users and histories, playlists, co-occurrence.

* :class:`Catalog`: items (display names, artists), artists, users and what each user played,
  copied from the golden tables through a short read-only DuckDB connection (never held: the
  pipeline owns the file) and cached as Parquet under the server's cache folder, so a server
  that starts while a pipeline step holds the warehouse answers from the last copy.
  Typo-tolerant name search runs on it (``rapidfuzz``).
* :class:`WeekPlaylists` / :class:`PlaylistShelf`: Discover Weekly from the Parquet exports
  ``exports/discover_weekly/week_start=YYYY-MM-DD/playlists.parquet`` the pipeline writes.
* :class:`CoOccurrence`: ``exports/similar_artists.parquet`` (shared listeners, with reasons).

Every object here is immutable once built; the service swaps whole objects.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

CATALOG_TABLES = {
    "items": "SELECT i.item_id, i.artist_id, i.name AS title, i.level, "
    "CASE WHEN i.level = 'track' AND a.name IS NOT NULL THEN i.name || ' - ' || a.name "
    "ELSE i.name END AS name FROM golden.items i LEFT JOIN golden.artists a USING (artist_id) "
    "ORDER BY i.item_id",
    "artists": "SELECT artist_id, name FROM golden.artists ORDER BY artist_id",
    "users": "SELECT user_id FROM golden.users ORDER BY user_id",
    "listens": "SELECT user_id, item_id FROM golden.listens ORDER BY user_id, item_id",
}
PLAYLIST_FOLDER = ("exports", "discover_weekly")
PLAYLIST_FILE = "playlists.parquet"
SIMILAR_ARTISTS_FILE = ("exports", "similar_artists.parquet")
SEARCH_CUTOFF = 55.0


class WarehouseBusy(RuntimeError):
    """A pipeline step holds the warehouse; the copy is retried later."""


class CatalogMissing(LookupError):
    """The warehouse (or a golden table) does not exist yet."""


def file_signature(*paths: Path) -> tuple:
    """(mtime_ns, size) of each existing path: changes whenever a writer touches them."""
    signature = []
    for path in paths:
        try:
            stat = path.stat()
        except OSError:
            signature.append(None)
        else:
            signature.append((stat.st_mtime_ns, stat.st_size))
    return tuple(signature)


def _clean(value: Any) -> Any:
    """None for NaN/NA (JSON has no NaN), plain Python scalars otherwise."""
    if value is None:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is pd.NA or value is pd.NaT:
        return None
    return value


# ---------------------------------------------------------------------------------- catalog
def read_warehouse_tables(path: Path) -> dict[str, pd.DataFrame]:
    """The golden tables the server needs, through one short read-only connection.

    Raises
    ------
    WarehouseBusy
        A pipeline step holds the file (DuckDB allows one writing process).
    CatalogMissing
        No warehouse, or no golden tables in it yet.
    """
    import duckdb

    if not path.exists():
        raise CatalogMissing(f"no warehouse at {path}: run `cratedigger run` (or make demo) first")
    try:
        connection = duckdb.connect(str(path), read_only=True)
    except duckdb.IOException as error:
        if "lock" in str(error).lower():
            raise WarehouseBusy(f"the warehouse {path} is held by a pipeline step") from error
        raise
    try:
        return {name: connection.execute(sql).df() for name, sql in CATALOG_TABLES.items()}
    except duckdb.CatalogException as error:
        raise CatalogMissing(
            f"the warehouse {path} has no golden tables yet ({error}); run the pipeline first"
        ) from error
    finally:
        connection.close()


def save_tables(folder: Path, tables: dict[str, pd.DataFrame]) -> None:
    """Replace the cached copy (written aside, then renamed)."""
    temporary = folder.with_name(f".{folder.name}.{threading.get_ident()}.tmp")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    for name, frame in tables.items():
        frame.to_parquet(temporary / f"{name}.parquet", index=False)
    old = folder.with_name(f".{folder.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    temporary.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def load_tables(folder: Path) -> dict[str, pd.DataFrame] | None:
    try:
        return {name: pd.read_parquet(folder / f"{name}.parquet") for name in CATALOG_TABLES}
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class Item:
    item_id: str
    name: str
    artist_id: str | None
    level: str


def trigrams(text: str) -> set[str]:
    padded = f"  {text} "
    return {padded[i : i + 3] for i in range(len(padded) - 2)}


class NameIndex:
    """Typo-tolerant name lookup: trigram overlap picks candidates (a sparse product, a few ms
    over 100k names), then each is scored by the mean of rapidfuzz's ``WRatio`` (reordered
    words) and ``partial_ratio`` (a misspelt part of a longer name), in [0, 1]; an exact name
    scores 1."""

    CANDIDATES = 200

    def __init__(self, keys: list[str], names: list[str]) -> None:
        from rapidfuzz import utils
        from scipy import sparse

        self.keys = keys
        self.names = [utils.default_process(name) for name in names]
        vocabulary: dict[str, int] = {}
        rows, columns = [], []
        for row, name in enumerate(self.names):
            for gram in trigrams(name):
                rows.append(row)
                columns.append(vocabulary.setdefault(gram, len(vocabulary)))
        self.vocabulary = vocabulary
        self.postings = sparse.csr_matrix(
            (np.ones(len(rows), dtype=np.float32), (columns, rows)),
            shape=(len(vocabulary), len(self.names)),
        )

    def find(self, processed: str) -> list[tuple[str, float]]:
        from rapidfuzz import fuzz

        grams = [self.vocabulary[g] for g in trigrams(processed) if g in self.vocabulary]
        if not grams or not self.names:
            return []
        shared = np.asarray(self.postings[grams].sum(axis=0)).ravel()
        count = min(self.CANDIDATES, int(np.count_nonzero(shared)))
        if count == 0:
            return []
        candidates = np.argpartition(-shared, count - 1)[:count]
        found = []
        for index in candidates.tolist():
            name = self.names[index]
            if name == processed:
                score = 1.0
            else:
                both = fuzz.WRatio(processed, name) + fuzz.partial_ratio(processed, name)
                score = min(0.99, both / 200.0)
            if score * 100 >= SEARCH_CUTOFF:
                found.append((self.keys[index], score))
        return found


class Catalog:
    """Names, users and histories (one copy of the golden tables), with name search."""

    def __init__(self, tables: dict[str, pd.DataFrame], source: str) -> None:

        items, artists = tables["items"], tables["artists"]
        self.source = source
        self.loaded_at = time.time()
        self.artists: dict[str, str] = {
            str(a): "" if _clean(n) is None else str(n)
            for a, n in zip(artists["artist_id"], artists["name"], strict=True)
        }
        self.items: dict[str, Item] = {}
        for item_id, artist_id, name, level in zip(
            items["item_id"], items["artist_id"], items["name"], items["level"], strict=True
        ):
            artist = _clean(artist_id)
            self.items[str(item_id)] = Item(
                str(item_id),
                "" if _clean(name) is None else str(name),
                None if artist is None else str(artist),
                str(_clean(level) or "item"),
            )
        listens = tables["listens"]
        self.played: dict[str, frozenset[str]] = {
            str(user): frozenset(map(str, group))
            for user, group in listens.groupby("user_id", sort=False)["item_id"]
        }
        self.users = frozenset(map(str, tables["users"]["user_id"])) | frozenset(self.played)
        self.listens = int(len(listens))
        # search: artists by name; items that are tracks by "title - artist" (artist-level
        # items are the artists themselves)
        tracks = [key for key, item in self.items.items() if item.level == "track"]
        self._search = {
            "artist": NameIndex(list(self.artists), list(self.artists.values())),
            "track": NameIndex(tracks, [self.items[key].name for key in tracks]),
        }

    def artist_name(self, artist_id: str | None) -> str | None:
        return None if artist_id is None else self.artists.get(artist_id)

    def item_name(self, item_id: str) -> str:
        item = self.items.get(item_id)
        if item is not None:
            return item.name
        return self.artists.get(item_id, "")

    def search(self, query: str, kind: str, limit: int) -> list[dict[str, Any]]:
        """Artists and/or tracks whose names match ``query``, typos allowed, best first
        (:class:`NameIndex`)."""
        from rapidfuzz import utils

        processed = utils.default_process(query)
        if not processed:
            return []
        scored: list[tuple[float, str, str]] = []
        for level in ("artist", "track") if kind == "all" else (kind,):
            scored += [(score, level, key) for key, score in self._search[level].find(processed)]
        hits = []
        for score, level, key in sorted(
            scored, key=lambda hit: (-hit[0], self._display(hit[1], hit[2]), hit[2])
        )[:limit]:
            if level == "artist":
                name = self.artists[key]
                hit = {"id": key, "type": "artist", "name": name, "artist_id": key}
                hit["artist_name"] = name
            else:
                item = self.items[key]
                hit = {"id": key, "type": "track", "name": item.name, "artist_id": item.artist_id}
                hit["artist_name"] = self.artist_name(item.artist_id)
            hit["score"] = round(score, 4)
            hits.append(hit)
        return hits

    def _display(self, level: str, key: str) -> str:
        return self.artists[key] if level == "artist" else self.items[key].name

    def describe(self) -> dict[str, Any]:
        return {
            "items": len(self.items),
            "artists": len(self.artists),
            "users": len(self.users),
            "listens": self.listens,
            "source": self.source,
            "loaded_at": self.loaded_at,
        }


# -------------------------------------------------------------------------------- playlists
def monday(day: dt.date) -> dt.date:
    return day - dt.timedelta(days=day.weekday())


def playlist_weeks(data_dir: Path) -> dict[dt.date, Path]:
    """The weeks with an exported playlist file, by week_start."""
    folder = data_dir.joinpath(*PLAYLIST_FOLDER)
    weeks: dict[dt.date, Path] = {}
    if not folder.is_dir():
        return weeks
    for child in folder.iterdir():
        if not child.name.startswith("week_start="):
            continue
        try:
            week = dt.date.fromisoformat(child.name.split("=", 1)[1])
        except ValueError:
            continue
        if (child / PLAYLIST_FILE).exists():
            weeks[week] = child / PLAYLIST_FILE
    return dict(sorted(weeks.items()))


class WeekPlaylists:
    """Every user's playlist of one week, columnar, with a row range per user."""

    COLUMNS = ("position", "item_id", "artist_id", "name", "score", "source", "reason")

    def __init__(
        self, week: dt.date, path: Path, models: dict[str, str | None] | None = None
    ) -> None:
        self.week = week
        self.path = path
        self.signature = file_signature(path)
        frame = pd.read_parquet(path)
        missing = {"user_id", *self.COLUMNS} - set(frame.columns)
        if missing:
            raise ValueError(f"{path} lacks the columns {sorted(missing)}")
        frame = frame.sort_values(["user_id", "position"], kind="stable").reset_index(drop=True)
        users = frame["user_id"].astype(str).to_numpy()
        starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]]) if len(users) else []
        stops = [*starts[1:], len(users)]
        self.rows = {users[s]: (int(s), int(e)) for s, e in zip(starts, stops, strict=True)}
        self.columns = {c: [_clean(v) for v in frame[c].tolist()] for c in self.COLUMNS}
        # the A/B variant each user was served (playlists exported before variants have none)
        self.variants = (
            dict(zip(users, frame["variant"].astype(str), strict=True))
            if "variant" in frame
            else {}
        )
        self.models = dict(models or {})
        self.loaded_at = time.time()

    @property
    def variant(self) -> str:
        """The blend configuration every user of the week was ranked with."""
        blend = self.models.get("blend_config")
        return f"blend_config:{blend}" if blend else "blend_config:unknown"

    def variant_of(self, user_id: str) -> str:
        """The user's A/B variant (``discover_weekly``'s ``variant`` column), else the blend."""
        return self.variants.get(user_id) or self.variant

    def entries(self, user_id: str) -> list[dict[str, Any]] | None:
        span = self.rows.get(user_id)
        if span is None:
            return None
        columns = self.columns
        return [{c: columns[c][row] for c in self.COLUMNS} for row in range(span[0], span[1])]


@dataclass
class PlaylistShelf:
    """The exported weeks and the loaded ones (the latest always; older ones on demand)."""

    weeks: dict[dt.date, Path] = field(default_factory=dict)
    loaded: dict[dt.date, WeekPlaylists] = field(default_factory=dict)

    @property
    def latest(self) -> dt.date | None:
        return next(reversed(self.weeks), None) if self.weeks else None


# ------------------------------------------------------------------------------ co-occurrence
class CoOccurrence:
    """Top similar artists per artist from ``recommend.similar_artists`` (its Parquet export)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.signature = file_signature(path)
        frame = pd.read_parquet(path).sort_values(["artist_id", "rank"], kind="stable")
        self.version = f"{self.signature[0][0]:x}" if self.signature[0] else ""
        self.neighbours: dict[str, list[tuple[str, float, str | None]]] = {}
        for artist, group in frame.groupby("artist_id", sort=False):
            self.neighbours[str(artist)] = [
                (str(other), float(score), _clean(reason))
                for other, score, reason in zip(
                    group["similar_artist_id"], group["score"], group["reason"], strict=True
                )
            ]
        self.rows = int(sum(len(v) for v in self.neighbours.values()))
        self.loaded_at = time.time()

    def describe(self) -> dict[str, Any]:
        return {
            "collection": "recommend.similar_artists",
            "version": self.version,
            "rows": self.rows,
            "dim": 0,
            "metric": "shared listeners",
            "search": "table",
            "source": "export",
            "published_at": self.signature[0][0] / 1e9 if self.signature[0] else 0.0,
            "loaded_at": self.loaded_at,
        }


def similar_artists_path(data_dir: Path) -> Path:
    return data_dir.joinpath(*SIMILAR_ARTISTS_FILE)
