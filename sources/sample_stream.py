"""The sample generator at any size, streamed to Parquet in the generic source's format.

``SampleSource`` builds a small service in memory; this module writes the same planted taste
structure for millions to billions of listen events with bounded memory, as files that
``CRATEDIGGER_SOURCE=generic CRATEDIGGER_SOURCE_PATH=<out>`` (``sources.generic``) ingests.

Command line::

    python -m sources.sample_stream --events 10M --out data/stream10m --seed 42

What is planted (as in ``sources.sample``)
------------------------------------------
- 8 genres (``sources.sample.GENRES``) with their tag vocabularies.
- Artists with one genre each (balanced) and Zipf popularity within the genre (weight
  1 / (rank + 1)); ``TRACKS_PER_ARTIST`` tracks per artist, Zipf within the artist, with a
  genre-typical duration.
- Users in taste clusters: an event of a user of cluster ``c`` is of genre ``c`` with
  probability 0.7, of the user's personal second genre with 0.2 and of a random genre with 0.1;
  activity is log-normal (sigma 0.8, mean ``EVENTS_PER_USER``, at least one event) and scaled so
  that the listens hold exactly ``events`` rows.
- Timestamps uniform over ``weeks`` weeks (default 26) ending at 2026-11-16T00:00Z (a Monday,
  so the weeks are whole weekly partitions); a user's events fall on distinct seconds, so no
  event repeats another (the rules would quarantine it as ``duplicate_event``).
- Tag assignments (``TAGGINGS_PER_ARTIST`` per artist, 80 % terms of the artist's genre, 20 %
  generic terms, by users whose taste draws that artist), one text per artist, 3 friends per
  user (70 % within the cluster).

Size curve (``StreamSize.for_events``)
--------------------------------------
users = events / 100, artists = 2 * sqrt(events), tracks = 10 per artist = 20 * sqrt(events):

==============  ==========  ========  =========
events          users       artists   tracks
==============  ==========  ========  =========
50,000          500         447       4,470
1,000,000       10,000      2,000     20,000
10,000,000      100,000     6,325     63,250
100,000,000     1,000,000   20,000    200,000
==============  ==========  ========  =========

Users grow with events (about 100 events each); the catalogue grows with the square root, so
larger services have denser item histories, as real ones do.

Files written (generic format, one ``<table>.parquet`` per table)
-----------------------------------------------------------------
Ids are ``u0000042`` (users), ``a000042`` (artists), ``t0000042`` (tracks; track ``t`` is by
artist ``t // 10``).

=============================  ===============================================================
file                           columns (Parquet types)
=============================  ===============================================================
``listens.parquet``            user_id, item_id (strings), plays (int32, always 1), ts (int64 epoch
                               seconds, UTC); row groups of ``chunk_rows`` rows; sorted by user,
                               then time
``users.parquet``              user_id
``artists.parquet``            artist_id, name, genre, url
``tracks.parquet``             track_id, artist_id, title, duration_s (text, ``"230.4"``), genre
``tag_assignments.parquet``    user_id, artist_id, tag, ts (int64 epoch seconds)
``artist_text.parquet``        artist_id, text
``friends.parquet``            user_id, friend_id
``sample_stream.json``         the parameters and sizes (not read by the generic source)
=============================  ===============================================================

No audio files and no bad rows: every row passes ``quality.rules``. Each file is written under
a temporary name and renamed when complete.

Determinism and memory
----------------------
The catalogue (users' tastes and activity, artists, tracks) is drawn from
``np.random.default_rng([seed, 0])``, tag assignments and texts from ``[seed, 3]``; events and
friends are drawn per block of ``users_per_block`` users from ``[seed, 1, block]`` and
``[seed, 2, block]``. Same seed and block size, same files; ``chunk_rows`` (the Parquet
row-group size) changes the row groups, never the rows. Memory holds one block (about
``users_per_block * 100`` events), one row group per file and the catalogue. Tracks are drawn
with Walker's alias method and a user's times from exponential spacings, so an event costs
O(1): no search and no sort.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sources.sample import END_TS, GENERIC_TERMS, GENRES, _names, _track_titles

logger = logging.getLogger(__name__)

EVENTS_PER_USER = 100
ARTISTS_PER_SQRT_EVENT = 2.0
TRACKS_PER_ARTIST = 10
TAGGINGS_PER_ARTIST = 20
FRIENDS_PER_USER = 3
ACTIVITY_SIGMA = 0.8
DEFAULT_WEEKS = 26
DEFAULT_SEED = 42
DEFAULT_USERS_PER_BLOCK = 10_000
DEFAULT_CHUNK_ROWS = 2_000_000
MIN_EVENTS = 100
END_EPOCH_S = int(END_TS.astype("datetime64[s]").astype(np.int64))
MANIFEST = "sample_stream.json"
TABLES = (
    "users",
    "artists",
    "tracks",
    "listens",
    "tag_assignments",
    "artist_text",
    "friends",
)
SCHEMAS: dict[str, pa.Schema] = {
    "users": pa.schema([("user_id", pa.string())]),
    "artists": pa.schema(
        [
            ("artist_id", pa.string()),
            ("name", pa.string()),
            ("genre", pa.string()),
            ("url", pa.string()),
        ]
    ),
    "tracks": pa.schema(
        [
            ("track_id", pa.string()),
            ("artist_id", pa.string()),
            ("title", pa.string()),
            ("duration_s", pa.string()),
            ("genre", pa.string()),
        ]
    ),
    "listens": pa.schema(
        [
            ("user_id", pa.string()),
            ("item_id", pa.string()),
            ("plays", pa.int32()),
            ("ts", pa.int64()),
        ]
    ),
    "tag_assignments": pa.schema(
        [
            ("user_id", pa.string()),
            ("artist_id", pa.string()),
            ("tag", pa.string()),
            ("ts", pa.int64()),
        ]
    ),
    "artist_text": pa.schema([("artist_id", pa.string()), ("text", pa.string())]),
    "friends": pa.schema([("user_id", pa.string()), ("friend_id", pa.string())]),
}


@dataclass(frozen=True)
class StreamSize:
    """How many events, users, artists and tracks (see the size curve in the module docstring)."""

    events: int
    users: int
    artists: int
    tracks_per_artist: int = TRACKS_PER_ARTIST

    @property
    def tracks(self) -> int:
        return self.artists * self.tracks_per_artist

    @classmethod
    def for_events(cls, events: int, n_genres: int = len(GENRES)) -> StreamSize:
        """The size curve: ``events / 100`` users, ``2 sqrt(events)`` artists, 10 tracks each."""
        if events < MIN_EVENTS:
            raise ValueError(f"events must be at least {MIN_EVENTS}, got {events}")
        users = max(2, events // EVENTS_PER_USER)
        artists = max(n_genres, round(ARTISTS_PER_SQRT_EVENT * math.sqrt(events)))
        return cls(events=events, users=users, artists=artists)


def user_id(index: int) -> str:
    return f"u{index:07d}"


def artist_id(index: int) -> str:
    return f"a{index:06d}"


def track_id(index: int) -> str:
    return f"t{index:07d}"


def _id_array(fmt: str, indices: Sequence[int] | np.ndarray) -> pa.Array:
    """Format integer indices as id strings into an Arrow array: ``fmt`` is ``"u{:07d}"``-like
    (one prefix character, zero-padded digits); vectorised while every index fits the width."""
    values = np.asarray(indices, dtype=np.int64)
    prefix, width = fmt[0], int(fmt[fmt.index(":0") + 2 : fmt.index("d}")])
    too_long = len(values) * (width + 1) >= 2**31  # int32 offsets
    if too_long or (len(values) and (values.min() < 0 or values.max() >= 10**width)):
        return pa.array([fmt.format(i) for i in values.tolist()], type=pa.string())
    chars = np.empty((len(values), width + 1), dtype=np.uint8)
    chars[:, 0] = ord(prefix)
    rest = values.copy()
    for column in range(width, 0, -1):
        chars[:, column] = 48 + rest % 10
        rest //= 10
    offsets = np.arange(len(values) + 1, dtype=np.int32) * (width + 1)
    return pa.StringArray.from_buffers(
        len(values), pa.py_buffer(offsets), pa.py_buffer(chars.tobytes())
    )


@dataclass(frozen=True, eq=False)
class _Catalogue:
    """Everything that does not grow with events beyond users: tastes, activity, items."""

    user_cluster: np.ndarray  # int8 genre index
    user_second: np.ndarray  # int8 genre index
    user_events: np.ndarray  # int64 events per user, sums to ``events``
    artist_genre: np.ndarray
    artist_rank: np.ndarray
    sampler: _AliasSampler  # draws a track of a genre by popularity
    track_durations: np.ndarray


class SampleStream:
    """The planted music service at ``events`` listen events, written block by block.

    Parameters
    ----------
    events
        Exact number of listen rows (at least 100); users, artists and tracks follow
        ``StreamSize.for_events``.
    seed
        Seeds every draw; same seed (and ``users_per_block``), same files.
    weeks
        Length of the time window, ending at 2026-11-16T00:00Z.
    users_per_block
        Users whose events are drawn together (about 100 events each): bounds memory. Part of
        the output's identity, like the seed.

    Example usage::

        stream = SampleStream(10_000_000, seed=42)
        stream.write("data/stream10m")          # generic-format Parquet files
        truth = stream.truth()                  # user clusters, artist and track genres
    """

    def __init__(
        self,
        events: int,
        seed: int = DEFAULT_SEED,
        weeks: int = DEFAULT_WEEKS,
        users_per_block: int = DEFAULT_USERS_PER_BLOCK,
    ) -> None:
        if weeks < 1:
            raise ValueError(f"weeks must be at least 1, got {weeks}")
        if users_per_block < 1:
            raise ValueError(f"users_per_block must be at least 1, got {users_per_block}")
        if seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}")
        self.size = StreamSize.for_events(int(events))
        self.seed = int(seed)
        self.weeks = int(weeks)
        self.users_per_block = int(users_per_block)
        self.window_s = self.weeks * 7 * 86_400
        self.start_epoch_s = END_EPOCH_S - self.window_s
        self._catalogue: _Catalogue | None = None
        self._members: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    @property
    def n_genres(self) -> int:
        return len(GENRES)

    @property
    def n_blocks(self) -> int:
        return -(-self.size.users // self.users_per_block)

    # ------------------------------------------------------------------ the catalogue
    @property
    def catalogue(self) -> _Catalogue:
        """Users' tastes and activity, artists and tracks (drawn once from ``[seed, 0]``)."""
        if self._catalogue is None:
            self._catalogue = self._draw_catalogue()
        return self._catalogue

    def _draw_catalogue(self) -> _Catalogue:
        # The draw order is part of the output: same seed, same files. Keep it.
        rng = np.random.default_rng([self.seed, 0])
        size, n_genres = self.size, self.n_genres
        cluster = rng.integers(0, n_genres, size.users).astype(np.int8)
        second = ((cluster + rng.integers(1, n_genres, size.users)) % n_genres).astype(np.int8)
        activity = rng.lognormal(
            np.log(EVENTS_PER_USER) - ACTIVITY_SIGMA**2 / 2, ACTIVITY_SIGMA, size.users
        )
        user_events = _apportion(activity, size.events - size.users) + 1
        if user_events.max() >= self.window_s - 1:
            raise ValueError(
                f"a user has {user_events.max()} events, more than the seconds in {self.weeks} "
                f"weeks: use more weeks"
            )
        artist_genre = rng.permutation(np.arange(size.artists) % n_genres)
        rank = np.empty(size.artists, dtype=np.int64)
        members_by_genre = []
        for g in range(n_genres):
            members = rng.permutation(np.flatnonzero(artist_genre == g))
            rank[members] = np.arange(len(members))
            members_by_genre.append(members)
        track_genre = np.repeat(artist_genre, size.tracks_per_artist)
        mean_duration = np.array([g.duration_mean_s for g in GENRES])[track_genre]
        durations = np.round(mean_duration * rng.lognormal(0.0, 0.25, size.tracks), 1)
        return _Catalogue(
            user_cluster=cluster,
            user_second=second,
            user_events=user_events,
            artist_genre=artist_genre,
            artist_rank=rank,
            sampler=_AliasSampler.for_tracks(members_by_genre, size.tracks_per_artist),
            track_durations=durations,
        )

    def truth(self) -> dict[str, np.ndarray]:
        """The planted structure, as index arrays (ids are ``user_id(i)``, ``artist_id(i)``...).

        Returns
        -------
        dict
            ``genres`` (names), ``user_cluster`` and ``user_second_genre`` (genre index per user
            index), ``user_events`` (events per user), ``artist_genre``,
            ``artist_popularity_rank`` (0 = most popular in its genre) and ``track_genre``
            (track ``t`` belongs to artist ``t // tracks_per_artist``).
        """
        cat = self.catalogue
        return {
            "genres": np.array([g.name for g in GENRES], dtype=object),
            "user_cluster": cat.user_cluster,
            "user_second_genre": cat.user_second,
            "user_events": cat.user_events,
            "artist_genre": cat.artist_genre,
            "artist_popularity_rank": cat.artist_rank,
            "track_genre": np.repeat(cat.artist_genre, self.size.tracks_per_artist),
        }

    # ------------------------------------------------------------------ draws
    def _event_genres(self, rng: np.random.Generator, users: np.ndarray) -> np.ndarray:
        """Genre of each event of ``users``: 70 % cluster, 20 % second genre, 10 % at random."""
        cat = self.catalogue
        n = len(users)
        choice = rng.random(n)
        random_genre = rng.integers(0, self.n_genres, n, dtype=np.int8)
        return np.where(
            choice < 0.7,
            cat.user_cluster[users],
            np.where(choice < 0.9, cat.user_second[users], random_genre),
        )

    def _tracks_of(self, rng: np.random.Generator, genres: np.ndarray) -> np.ndarray:
        """A track of each genre: artist Zipf within the genre times track Zipf within the
        artist."""
        return self.catalogue.sampler.draw(rng, genres)

    def block_events(self, block: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Draw the events of one block of users.

        Returns
        -------
        user, track, ts
            Aligned int64 arrays: user index, track index, epoch seconds; sorted by user, then
            time. A user's events fall on distinct seconds (so no event repeats another).
        """
        cat = self.catalogue
        first = block * self.users_per_block
        last = min(first + self.users_per_block, self.size.users)
        rng = np.random.default_rng([self.seed, 1, block])
        counts = cat.user_events[first:last]
        local = np.repeat(np.arange(last - first, dtype=np.int64), counts)
        track = self._tracks_of(rng, self._event_genres(rng, local + first))
        # Each user's times: sorted uniform order statistics from exponential spacings (no
        # sort), then spread to distinct seconds: y_i + i with y_i in [0, window - k).
        n = len(local)
        ends = np.cumsum(counts)
        starts = ends - counts
        elapsed = np.cumsum(rng.exponential(size=n))
        before = np.concatenate([[0.0], elapsed])[starts]  # spacing sum before each user
        total = elapsed[ends - 1] - before + rng.exponential(size=len(counts))
        fraction = (elapsed - before[local]) / total[local]
        free = self.window_s - 1 - counts[local]
        rank = np.arange(n, dtype=np.int64) - starts[local]
        second = np.minimum((fraction * (free + 1)).astype(np.int64), free) + rank + 1
        return local + first, track, second + self.start_epoch_s

    def block_friends(self, block: int) -> tuple[np.ndarray, np.ndarray]:
        """3 friends per user of the block, 70 % within the user's cluster (no self, no repeat)."""
        cat = self.catalogue
        first = block * self.users_per_block
        last = min(first + self.users_per_block, self.size.users)
        rng = np.random.default_rng([self.seed, 2, block])
        members, starts, counts = self._cluster_members()
        users = np.repeat(np.arange(first, last, dtype=np.int64), FRIENDS_PER_USER)
        n = len(users)
        cluster = cat.user_cluster[users]
        within = members[starts[cluster] + (rng.random(n) * counts[cluster]).astype(np.int64)]
        anyone = rng.integers(0, self.size.users, n)
        friend = np.where(rng.random(n) < 0.7, within, anyone)
        keep = friend != users
        users, friend = users[keep], friend[keep]
        _, first_index = np.unique(users * self.size.users + friend, return_index=True)
        first_index.sort()
        return users[first_index], friend[first_index]

    def _cluster_members(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._members is None:
            cluster = self.catalogue.user_cluster
            members = np.argsort(cluster, kind="stable")
            counts = np.bincount(cluster, minlength=self.n_genres)
            starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
            self._members = (members, starts, counts)
        return self._members

    # ------------------------------------------------------------------ tables
    def listens_blocks(self) -> Iterator[pa.Table]:
        """The listens, one Arrow table per block of users (the generic ``listens`` columns)."""
        track_ids = _id_array("t{:07d}", range(self.size.tracks))
        for block in range(self.n_blocks):
            users, tracks, ts = self.block_events(block)
            first = block * self.users_per_block
            last = min(first + self.users_per_block, self.size.users)
            block_ids = _id_array("u{:07d}", range(first, last))
            yield pa.table(
                {
                    "user_id": block_ids.take(pa.array(users - first)),
                    "item_id": track_ids.take(pa.array(tracks)),
                    "plays": pa.array(np.ones(len(users), dtype=np.int32)),
                    "ts": pa.array(ts),
                },
                schema=SCHEMAS["listens"],
            )

    def artists_table(self) -> pa.Table:
        cat = self.catalogue
        ids = [artist_id(i) for i in range(self.size.artists)]
        return pa.table(
            {
                "artist_id": ids,
                "name": _names(self.size.artists),
                "genre": [GENRES[g].name for g in cat.artist_genre],
                "url": [f"https://example.org/artist/{a}" for a in ids],
            },
            schema=SCHEMAS["artists"],
        )

    def tracks_table(self) -> pa.Table:
        cat = self.catalogue
        tpa = self.size.tracks_per_artist
        track_artist = np.arange(self.size.tracks) // tpa
        return pa.table(
            {
                "track_id": _id_array("t{:07d}", range(self.size.tracks)),
                "artist_id": _id_array("a{:06d}", track_artist),
                "title": _track_titles(self.size.tracks, tpa),
                "duration_s": [f"{d:.1f}" for d in cat.track_durations.tolist()],
                "genre": [GENRES[g].name for g in cat.artist_genre[track_artist].tolist()],
            },
            schema=SCHEMAS["tracks"],
        )

    def tag_tables(self) -> tuple[pa.Table, pa.Table]:
        """Tag assignments and artist texts (drawn from ``[seed, 3]``, sized by artists)."""
        cat = self.catalogue
        rng = np.random.default_rng([self.seed, 3])
        n = TAGGINGS_PER_ARTIST * self.size.artists
        users = rng.integers(0, self.size.users, n)
        artists = self._tracks_of(rng, self._event_genres(rng, users)) // (
            self.size.tracks_per_artist
        )
        terms_per_genre = len(GENRES[0].terms)
        vocabulary = [t for g in GENRES for t in g.terms] + GENERIC_TERMS
        genre_term = cat.artist_genre[artists] * terms_per_genre + rng.integers(
            0, terms_per_genre, n
        )
        generic_term = len(vocabulary) - len(GENERIC_TERMS) + rng.integers(0, len(GENERIC_TERMS), n)
        term = np.where(rng.random(n) < 0.2, generic_term, genre_term)
        ts = self.start_epoch_s + rng.integers(1, self.window_s, n)
        key = (users * self.size.artists + artists) * len(vocabulary) + term
        _, first_index = np.unique(key, return_index=True)
        first_index.sort()
        users, artists, term, ts = (a[first_index] for a in (users, artists, term, ts))
        assignments = pa.table(
            {
                "user_id": _id_array("u{:07d}", users),
                "artist_id": _id_array("a{:06d}", artists),
                "tag": pa.array(vocabulary).take(pa.array(term)),
                "ts": pa.array(ts.astype(np.int64)),
            },
            schema=SCHEMAS["tag_assignments"],
        )
        # one sentence per artist from three distinct words of its genre
        words = np.argsort(rng.random((self.size.artists, terms_per_genre)), axis=1)[:, :3]
        names = _names(self.size.artists)
        texts = []
        for i, (genre_index, picked) in enumerate(
            zip(cat.artist_genre.tolist(), words.tolist(), strict=True)
        ):
            genre = GENRES[genre_index]
            w = [genre.terms[j] for j in picked]
            texts.append(f"{names[i]} is a {genre.name} act known for {w[0]}, {w[1]} and {w[2]}.")
        artist_text = pa.table(
            {"artist_id": [artist_id(i) for i in range(self.size.artists)], "text": texts},
            schema=SCHEMAS["artist_text"],
        )
        return assignments, artist_text

    # ------------------------------------------------------------------ writing
    def write(
        self, out_dir: str | Path, chunk_rows: int = DEFAULT_CHUNK_ROWS, compression: str = "zstd"
    ) -> dict[str, Path]:
        """Write every table as ``<table>.parquet`` under ``out_dir`` (the generic format).

        Parameters
        ----------
        out_dir
            Created if missing. Files of the same names are replaced; a ``<table>.csv`` of one
            of these tables is an error (the generic source refuses both).
        chunk_rows
            Rows per Parquet row group (of ``listens``, ``users`` and ``friends``: the others
            are smaller).
        compression
            Parquet codec.

        Returns
        -------
        dict
            Table name -> Parquet path (plus ``"manifest"`` -> ``sample_stream.json``).
        """
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        clashes = [out / f"{t}.csv" for t in TABLES if (out / f"{t}.csv").exists()]
        if clashes:
            raise ValueError(
                f"{clashes[0]} exists; the generic source refuses both .csv and .parquet of a "
                f"table: remove it or write to another directory"
            )
        started = time.perf_counter()
        manifest = out / MANIFEST
        manifest.unlink(missing_ok=True)  # written last: present = the files are complete
        writers: dict[str, _ChunkedWriter] = {}
        try:
            for table in TABLES:
                writers[table] = _ChunkedWriter(
                    out / f"{table}.parquet", SCHEMAS[table], chunk_rows, compression
                )
            assignments, texts = self.tag_tables()
            writers["artists"].write(self.artists_table())
            writers["tracks"].write(self.tracks_table())
            writers["tag_assignments"].write(assignments)
            writers["artist_text"].write(texts)
            for block, listens in enumerate(self.listens_blocks()):
                writers["listens"].write(listens)
                first = block * self.users_per_block
                last = min(first + self.users_per_block, self.size.users)
                writers["users"].write(
                    pa.table({"user_id": _id_array("u{:07d}", range(first, last))})
                )
                users, friends = self.block_friends(block)
                writers["friends"].write(
                    pa.table(
                        {
                            "user_id": _id_array("u{:07d}", users),
                            "friend_id": _id_array("u{:07d}", friends),
                        }
                    )
                )
                if block % 10 == 9:
                    logger.info(
                        "sample stream: %d of %d blocks, %.1f s",
                        block + 1,
                        self.n_blocks,
                        time.perf_counter() - started,
                    )
            paths = {t: writers[t].close() for t in TABLES}
        except BaseException:
            for writer in writers.values():
                writer.abort()
            raise
        manifest.write_text(
            json.dumps(
                {
                    "generator": "sources.sample_stream",
                    "seed": self.seed,
                    "weeks": self.weeks,
                    "users_per_block": self.users_per_block,
                    "end": str(END_TS) + "Z",
                    **asdict(self.size),
                    "tracks": self.size.tracks,
                    "rows": {t: pq.ParquetFile(p).metadata.num_rows for t, p in paths.items()},
                },
                indent=2,
            )
            + "\n"
        )
        paths["manifest"] = manifest
        logger.info(
            "sample stream: %d events written to %s in %.1f s",
            self.size.events,
            out,
            time.perf_counter() - started,
        )
        return {t: paths[t] for t in (*TABLES, "manifest")}


class _AliasSampler:
    """Draws an item of a given group with fixed weights in O(1) per draw (Walker's alias
    method), vectorised over events: one table per group, concatenated."""

    def __init__(self, groups: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """``groups``: per group, (item indices, positive weights)."""
        sizes = np.array([len(items) for items, _ in groups], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.sizes = sizes
        self.items = np.concatenate([items for items, _ in groups]).astype(np.int64)
        probability, alias = [], []
        for offset, (_, weights) in zip(self.offsets.tolist(), groups, strict=True):
            p, a = _alias_table(np.asarray(weights, dtype=np.float64))
            probability.append(p)
            alias.append(a + offset)
        self.probability = np.concatenate(probability)
        self.alias = np.concatenate(alias)

    @classmethod
    def for_tracks(
        cls, members_by_genre: list[np.ndarray], tracks_per_artist: int
    ) -> _AliasSampler:
        """Tracks per genre, weight 1 / (artist rank + 1) * 1 / (track rank + 1)."""
        track_weight = 1.0 / np.arange(1, tracks_per_artist + 1)
        groups = []
        for members in members_by_genre:
            artist_weight = 1.0 / np.arange(1, len(members) + 1)
            tracks = (members[:, None] * tracks_per_artist + np.arange(tracks_per_artist)).ravel()
            groups.append((tracks, np.outer(artist_weight, track_weight).ravel()))
        return cls(groups)

    def draw(self, rng: np.random.Generator, group: np.ndarray) -> np.ndarray:
        """One item per entry of ``group`` (group indices)."""
        n = len(group)
        column = (rng.random(n) * self.sizes[group]).astype(np.int64)
        position = self.offsets[group] + np.minimum(column, self.sizes[group] - 1)
        keep = rng.random(n) < self.probability[position]
        return self.items[np.where(keep, position, self.alias[position])]


def _alias_table(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vose's alias table: (probability of keeping each column, the column's alias)."""
    n = len(weights)
    scaled = weights / weights.sum() * n
    probability = np.ones(n)
    alias = np.arange(n, dtype=np.int64)
    small = [i for i in range(n) if scaled[i] < 1.0]
    large = [i for i in range(n) if scaled[i] >= 1.0]
    scaled = scaled.tolist()
    while small and large:
        s, g = small.pop(), large[-1]
        probability[s] = scaled[s]
        alias[s] = g
        scaled[g] -= 1.0 - scaled[s]
        if scaled[g] < 1.0:
            small.append(large.pop())
    return probability, alias


class _ChunkedWriter:
    """A Parquet file written in row groups of exactly ``chunk_rows`` (the last one shorter),
    under a temporary name until closed."""

    def __init__(self, path: Path, schema: pa.Schema, chunk_rows: int, compression: str) -> None:
        self.path = path
        self.tmp = path.with_name(f".{path.name}.tmp")
        self.chunk_rows = chunk_rows
        # dictionary-encode text and small ints only: nearly unique timestamps would fill a
        # dictionary just to fall back to plain encoding
        dictionary = [f.name for f in schema if f.type != pa.int64()]
        self.writer = pq.ParquetWriter(
            self.tmp, schema, compression=compression, use_dictionary=dictionary
        )
        self.pending: list[pa.Table] = []
        self.pending_rows = 0

    def write(self, table: pa.Table) -> None:
        self.pending.append(table)
        self.pending_rows += table.num_rows
        if self.pending_rows >= self.chunk_rows:
            joined = pa.concat_tables(self.pending)
            full = (joined.num_rows // self.chunk_rows) * self.chunk_rows
            for start in range(0, full, self.chunk_rows):
                self.writer.write_table(
                    joined.slice(start, self.chunk_rows), row_group_size=self.chunk_rows
                )
            rest = joined.slice(full)
            self.pending = [rest] if rest.num_rows else []
            self.pending_rows = rest.num_rows

    def close(self) -> Path:
        if self.pending_rows:
            self.writer.write_table(pa.concat_tables(self.pending), row_group_size=self.chunk_rows)
        self.pending = []
        self.writer.close()
        self.tmp.replace(self.path)
        return self.path

    def abort(self) -> None:
        """Drop the temporary file (a no-op once closed)."""
        if self.tmp.exists():
            self.writer.close()
            self.tmp.unlink()


def _apportion(weights: np.ndarray, total: int) -> np.ndarray:
    """Integers proportional to ``weights`` summing exactly to ``total`` (largest remainder)."""
    share = weights / weights.sum() * total
    counts = np.floor(share).astype(np.int64)
    missing = int(total - counts.sum())
    if missing > 0:
        counts[np.argsort(counts - share, kind="stable")[:missing]] += 1
    return counts


# ---------------------------------------------------------------------- command line
_SUFFIXES = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9}


def parse_count(text: str) -> int:
    """``"10M"``, ``"2.5m"``, ``"100k"``, ``"1e6"``, ``"1_000_000"`` -> an integer."""
    match = re.fullmatch(r"\s*([0-9][0-9_]*(?:\.[0-9]+)?(?:e[0-9]+)?)\s*([kmbg]?)\s*", text, re.I)
    if not match:
        raise ValueError(f"{text!r} is not a count (examples: 10M, 2.5M, 100k, 1e6)")
    value = float(match.group(1).replace("_", "")) * _SUFFIXES[match.group(2).lower()]
    if value != int(value):
        raise ValueError(f"{text!r} is not a whole number of events")
    return int(value)


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _OneLineParser(
        prog="python -m sources.sample_stream",
        description="Write the planted sample service at any size as generic-format Parquet.",
    )
    parser.add_argument("--events", required=True, help="listen events, e.g. 1M, 10M, 100M")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--weeks", type=int, default=DEFAULT_WEEKS)
    parser.add_argument(
        "--chunk-rows",
        default=str(DEFAULT_CHUNK_ROWS),
        help="rows per Parquet row group (default 2M)",
    )
    parser.add_argument("--users-per-block", type=int, default=DEFAULT_USERS_PER_BLOCK)
    args = parser.parse_args(argv)
    try:
        events = parse_count(args.events)
        chunk_rows = parse_count(args.chunk_rows)
        stream = SampleStream(events, args.seed, args.weeks, args.users_per_block)
        started = time.perf_counter()
        stream.write(args.out, chunk_rows=chunk_rows)
        seconds = time.perf_counter() - started
    except (ValueError, OSError) as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 1
    size = stream.size
    print(
        f"{size.events:,} listens of {size.users:,} users over {size.tracks:,} tracks "
        f"({size.artists:,} artists) written to {args.out} in {seconds:.1f} s "
        f"({size.events / seconds / 1e6:.2f}M events/s)"
    )
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    sys.exit(main())
