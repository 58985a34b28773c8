"""A seeded generator of a small music service with planted taste structure (the demo source).

What is planted, so that models can be checked against it (``SampleSource.truth()``):

- ``n_genres`` genres, each with its own tag vocabulary and its own sound (tempo, pitch
  register, timbre, percussion).
- Artists with one genre each (balanced) and Zipf-like popularity within the genre; tracks per
  artist with a genre-typical duration.
- Users in taste clusters: cluster ``c`` listens mostly to genre ``c`` (70 %), to one personal
  second genre (20 %) and explores at random (10 %).
- Listen events (one row per play, ``plays = "1"``) spread over ``weeks`` weeks ending at
  2026-11-16T00:00Z; users tag artists they played with terms of the artist's genre plus a few
  generic terms ("seen live", "favourite"); a short text per artist from its genre's words;
  friends mostly within a cluster.
- ``audio_tracks`` synthesised 16 kHz mono WAV clips whose character follows the genre.
- With ``inject_bad_rows`` the listens end with 6 bad rows: 3 events of an unknown user,
  2 with plays "0" and 1 exact duplicate, so the quarantine is visibly exercised.
- Journeys (after everything above, from a separate random stream seeded ``seed + 1000``, so
  every row above is the same with or without them): a journey graph gives each artist up to
  three planted "next" artists (two of its own genre, one of the neighbouring genre), and
  ``explorers`` x ``n_users`` explorer users (ids after the others') walk it, each from a
  popular artist (so the routes out of the well-known artists are walked often), in a burst of
  digging (half the window), discovering many new artists per week across genres and playing
  each a few times. Their users and listen events are appended after the rows above (the
  listens after the bad rows).

All tables are written as CSV under ``out_dir`` and read back, so lineage points at real files.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

from sources.base import RAW_COLUMNS, RawBundle, Source
from sources.generic import read_delimited, with_contract_columns

logger = logging.getLogger(__name__)

END_TS = np.datetime64("2026-11-16T00:00:00", "s")
SAMPLE_RATE = 16_000
UNKNOWN_USER_ID = "u_unknown"
GENERIC_TERMS = ["seen live", "favourite", "love", "awesome", "my collection", "check out"]
JOURNEY_SEED_OFFSET = 1000  # the journeys' random stream: seed + this (never the main one)
JOURNEY_NEXT_WEIGHTS = (0.5, 0.3, 0.2)  # an explorer's pick among the planted next artists


@dataclass(frozen=True)
class Genre:
    """A planted genre: its words and how it sounds."""

    name: str
    terms: tuple[str, ...]
    tempo_bpm: float
    base_midi: int  # pitch register of the melody
    harmonics: int  # number of partials: more = brighter / harsher timbre
    harmonic_decay: float  # amplitude ratio between successive partials
    note_beats: float  # note length in beats
    pluck: float  # note envelope decay time in seconds
    drum_level: float  # kick drum loudness
    hat_level: float  # noise clicks (hi-hat, ride) loudness
    noise_level: float  # continuous noise (distortion, hiss)
    duration_mean_s: float  # typical track length


GENRES: tuple[Genre, ...] = (
    Genre(
        "rock",
        ("rock", "guitar", "classic rock", "alternative", "indie rock", "riffs", "band", "grunge"),
        120,
        48,
        8,
        0.8,
        1.0,
        0.4,
        0.8,
        0.3,
        0.08,
        230,
    ),
    Genre(
        "electronic",
        ("electronic", "techno", "house", "synth", "dance", "edm", "trance", "club"),
        128,
        60,
        5,
        0.5,
        0.5,
        0.12,
        1.0,
        0.4,
        0.01,
        330,
    ),
    Genre(
        "hip-hop",
        ("hip-hop", "rap", "beats", "boom bap", "flow", "underground hip-hop", "mc", "turntablism"),
        90,
        40,
        3,
        0.4,
        2.0,
        0.3,
        1.2,
        0.2,
        0.02,
        210,
    ),
    Genre(
        "jazz",
        (
            "jazz",
            "swing",
            "bebop",
            "saxophone",
            "improvisation",
            "smooth jazz",
            "big band",
            "blue note",
        ),
        150,
        58,
        4,
        0.45,
        1.0,
        0.25,
        0.15,
        0.5,
        0.0,
        300,
    ),
    Genre(
        "classical",
        ("classical", "orchestra", "symphony", "piano", "baroque", "strings", "composer", "opera"),
        66,
        70,
        2,
        0.3,
        2.0,
        1.2,
        0.0,
        0.0,
        0.0,
        420,
    ),
    Genre(
        "metal",
        (
            "metal",
            "heavy metal",
            "thrash",
            "death metal",
            "doom",
            "shred",
            "double bass",
            "headbanging",
        ),
        176,
        38,
        10,
        0.9,
        0.5,
        0.2,
        1.0,
        0.6,
        0.3,
        280,
    ),
    Genre(
        "folk",
        (
            "folk",
            "acoustic",
            "singer-songwriter",
            "ballad",
            "fingerpicking",
            "banjo",
            "americana",
            "storytelling",
        ),
        100,
        62,
        6,
        0.6,
        1.0,
        0.6,
        0.1,
        0.05,
        0.0,
        200,
    ),
    Genre(
        "reggae",
        ("reggae", "dub", "ska", "roots", "offbeat", "jamaica", "riddim", "dancehall"),
        76,
        52,
        3,
        0.5,
        0.5,
        0.15,
        0.9,
        0.35,
        0.01,
        250,
    ),
)
NAME_ADJECTIVES = (
    "Silver",
    "Velvet",
    "Electric",
    "Hollow",
    "Crimson",
    "Quiet",
    "Golden",
    "Broken",
    "Lunar",
    "Wild",
    "Paper",
    "Iron",
    "Neon",
    "Northern",
    "Blue",
    "Secret",
    "Burning",
    "Glass",
    "Midnight",
    "Gentle",
)
NAME_NOUNS = (
    "Owls",
    "Rivers",
    "Engines",
    "Foxes",
    "Lanterns",
    "Harbour",
    "Echoes",
    "Tides",
    "Pines",
    "Comets",
    "Wolves",
    "Signals",
    "Gardens",
    "Machines",
    "Sparrows",
    "Orchids",
    "Bridges",
    "Static",
    "Canyons",
    "Mirrors",
)
TITLE_WORDS = (
    "Morning",
    "Shadow",
    "Heart",
    "Road",
    "Summer",
    "Dream",
    "Fire",
    "Rain",
    "Window",
    "Ocean",
    "Letter",
    "Dance",
    "Night",
    "Stone",
    "Light",
    "Song",
)


def _names(count: int, prefix: str = "") -> list[str]:
    """Deterministic unique band-like names."""
    names = []
    pairs = len(NAME_ADJECTIVES) * len(NAME_NOUNS)
    for i in range(count):
        adjective = NAME_ADJECTIVES[i % len(NAME_ADJECTIVES)]
        noun = NAME_NOUNS[(i // len(NAME_ADJECTIVES)) % len(NAME_NOUNS)]
        suffix = f" {i // pairs + 1}" if i >= pairs else ""
        names.append(f"{prefix}{adjective} {noun}{suffix}")
    return names


def synthesize_clip(
    genre: Genre, seconds: float, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """Synthesise a mono clip whose tempo, register and timbre follow ``genre``.

    Per clip, tempo varies by +-5 %, the register by +-2 semitones and the melody is random
    within a pentatonic scale.

    Returns
    -------
    numpy.ndarray
        float32 samples in [-1, 1], ``int(seconds * sample_rate)`` long.
    """
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    tempo = genre.tempo_bpm * rng.uniform(0.95, 1.05)
    beat = 60.0 / tempo
    note_len = beat * genre.note_beats
    base = genre.base_midi + int(rng.integers(-2, 3))
    n_notes = int(np.ceil(seconds / note_len)) + 1
    scale = np.array([0, 2, 4, 7, 9, 12, 14])
    midi = base + rng.choice(scale, size=n_notes)
    note_index = (t // note_len).astype(int)
    freq = 440.0 * 2.0 ** ((midi[note_index] - 69) / 12.0)
    phase = 2 * np.pi * np.cumsum(freq) / sample_rate
    tone = np.zeros(n)
    for h in range(1, genre.harmonics + 1):
        tone += genre.harmonic_decay ** (h - 1) * np.sin(h * phase)
    tone /= np.abs(tone).max() + 1e-9
    in_note = t - note_index * note_len
    tone *= np.exp(-in_note / genre.pluck)
    in_beat = t % beat
    kick = np.sin(2 * np.pi * (50 + 100 * np.exp(-in_beat / 0.03)) * in_beat) * np.exp(
        -in_beat / 0.08
    )
    in_half = t % (beat / 2)
    hat = rng.standard_normal(n) * np.exp(-in_half / 0.012)
    noise = rng.standard_normal(n)
    mix = 0.6 * tone + genre.drum_level * kick + genre.hat_level * hat + genre.noise_level * noise
    mix = mix / (np.abs(mix).max() + 1e-9) * 0.9
    return mix.astype(np.float32)


@dataclass(frozen=True, eq=False)
class _Users:
    """Planted users: ids, taste cluster and personal second genre (genre indices)."""

    ids: np.ndarray
    cluster: np.ndarray
    second: np.ndarray


@dataclass(frozen=True, eq=False)
class _Artists:
    """Planted artists and what drawing an artist of a genre by popularity needs."""

    ids: np.ndarray
    genre: np.ndarray
    names: np.ndarray
    rank: np.ndarray  # popularity rank within the genre, 0 = most popular
    genre_members: np.ndarray  # artist indices grouped by genre, most popular first
    popularity_cdf: np.ndarray  # genre index + cumulative Zipf share, aligned with the members


@dataclass(frozen=True, eq=False)
class _Tracks:
    """Planted tracks: ids, artist and genre indices, durations (s) and titles."""

    ids: np.ndarray
    artist: np.ndarray
    genre: np.ndarray
    durations: np.ndarray
    titles: list[str]


@dataclass(frozen=True, eq=False)
class _Events:
    """Listen events as aligned index arrays and offsets (seconds before ``END_TS``)."""

    user: np.ndarray
    artist: np.ndarray
    track: np.ndarray
    offsets: np.ndarray

    def without_duplicates(self) -> _Events:
        """Drop repeated (user, track, second) events, keeping the first of each."""
        # two plays of one track by one user in the same second would be an exact duplicate
        # event: keep the planted bad rows the only ones
        unique = ~pd.DataFrame({"u": self.user, "t": self.track, "s": self.offsets}).duplicated()
        unique = unique.to_numpy()
        return _Events(
            self.user[unique], self.artist[unique], self.track[unique], self.offsets[unique]
        )


@dataclass(frozen=True, eq=False)
class _Journeys:
    """The planted journey graph, the explorers, their walks (artist indices in discovery
    order) and their listen events."""

    graph: np.ndarray  # (n_artists, 3) planted next artists, -1 = none
    explorer_ids: np.ndarray
    paths: list[np.ndarray]
    listens: pd.DataFrame

    def truth(self, artists: _Artists) -> dict[str, np.ndarray]:
        paths = np.empty(len(self.paths), dtype=object)
        paths[:] = [artists.ids[p] for p in self.paths]
        return {
            "journey_next": self.graph,
            "explorer_ids": self.explorer_ids,
            "explorer_paths": paths,
        }


def _walk(rng: np.random.Generator, graph: np.ndarray, start: int, length: int) -> np.ndarray:
    """A walk of ``length`` distinct artists on the journey graph from ``start``.

    Each step takes a planted next artist of the current one not yet discovered
    (:data:`JOURNEY_NEXT_WEIGHTS`); when none is left, the walk goes back along its own path to
    the last artist with an undiscovered next artist, else jumps to a random undiscovered one.
    """
    n_artists = len(graph)
    path = [int(start)]
    seen = {path[0]}
    weights = np.asarray(JOURNEY_NEXT_WEIGHTS)
    while len(path) < min(length, n_artists):
        step = None
        for current in reversed(path):
            options = [
                (b, w)
                for b, w in zip(graph[current], weights, strict=True)
                if b >= 0 and b not in seen
            ]
            if options:
                chances = np.array([w for _, w in options])
                step = options[int(rng.choice(len(options), p=chances / chances.sum()))][0]
                break
        if step is None:
            step = int(rng.choice([a for a in range(n_artists) if a not in seen]))
        path.append(int(step))
        seen.add(int(step))
    return np.array(path, dtype=np.int64)


def _popularity_cdf(members_by_genre: list[np.ndarray]) -> np.ndarray:
    """Per genre ``g``: ``g +`` the cumulative Zipf share (1 / (rank + 1)) of its members."""
    cdf_parts = []
    for g, members in enumerate(members_by_genre):
        weights = 1.0 / (np.arange(len(members)) + 1.0)
        cdf = np.cumsum(weights) / weights.sum()
        cdf[-1] = 1.0
        cdf_parts.append(g + cdf)
    return np.concatenate(cdf_parts)


def _track_titles(n_tracks: int, tracks_per_artist: int) -> list[str]:
    """Deterministic two-word track titles numbered within the artist."""
    return [
        f"{TITLE_WORDS[i % len(TITLE_WORDS)]} {TITLE_WORDS[(i * 7 + 3) % len(TITLE_WORDS)]}"
        f" {i % tracks_per_artist + 1}"
        for i in range(n_tracks)
    ]


def _draw_event_artists(
    rng: np.random.Generator, artists: _Artists, event_genre: np.ndarray
) -> np.ndarray:
    """Draw an artist of each event's genre, Zipf-weighted by popularity rank."""
    draw = event_genre + rng.random(len(event_genre))
    position = np.searchsorted(artists.popularity_cdf, draw, side="left")
    position = np.minimum(position, len(artists.genre_members) - 1)
    return artists.genre_members[position]


class SampleSource(Source):
    """A seeded synthetic music service with planted structure (see the module docstring).

    Parameters
    ----------
    out_dir
        Where the CSV tables and the ``audio/`` clips are written.
    n_users, n_artists, tracks_per_artist, n_genres, weeks
        Size of the catalogue and the time window.
    seed
        Seeds every random draw; same seed, same files.
    audio_tracks, audio_seconds
        How many clips to synthesise and how long each is.
    events_per_user
        Mean listen events per user (log-normal activity); scale it with ``n_users`` for
        benchmarks (vectorised, millions of events take seconds).
    inject_bad_rows
        Append 6 bad listen rows (see the module docstring).
    explorers, explorer_discoveries
        Explorer users as a share of ``n_users`` (0 for none; at least 2 otherwise) and how
        many artists each discovers along the planted journey graph (at most a third of the
        artists).

    Example usage::

        bundle = SampleSource("data/sample").read()
        truth = SampleSource("data/sample").truth()   # user clusters, artist genres
        truth["journey_next"], truth["explorer_ids"]  # the planted journeys
    """

    name = "sample"

    def __init__(
        self,
        out_dir: str | Path,
        n_users: int = 600,
        n_artists: int = 240,
        tracks_per_artist: int = 4,
        n_genres: int = 8,
        weeks: int = 8,
        seed: int = 7,
        audio_tracks: int = 96,
        audio_seconds: float = 6.0,
        events_per_user: float = 80.0,
        inject_bad_rows: bool = True,
        explorers: float = 0.05,
        explorer_discoveries: int = 48,
    ) -> None:
        if not 2 <= n_genres <= len(GENRES):
            raise ValueError(f"n_genres must be between 2 and {len(GENRES)}, got {n_genres}")
        if n_artists < n_genres:
            raise ValueError(f"n_artists ({n_artists}) must be at least n_genres ({n_genres})")
        if not 0 <= explorers <= 1 or explorer_discoveries < 2:
            raise ValueError(
                f"explorers must be a share in [0, 1] (got {explorers}) and "
                f"explorer_discoveries >= 2 (got {explorer_discoveries})"
            )
        if n_users < 2 or tracks_per_artist < 1 or weeks < 1 or events_per_user < 1:
            raise ValueError(
                "n_users >= 2, tracks_per_artist >= 1, weeks >= 1 and events_per_user >= 1 "
                "are required"
            )
        self.out_dir = Path(out_dir)
        self.n_users = n_users
        self.n_artists = n_artists
        self.tracks_per_artist = tracks_per_artist
        self.n_genres = n_genres
        self.weeks = weeks
        self.seed = seed
        self.audio_tracks = audio_tracks
        self.audio_seconds = audio_seconds
        self.events_per_user = events_per_user
        self.inject_bad_rows = inject_bad_rows
        self.explorers = explorers
        self.explorer_discoveries = explorer_discoveries
        self._generated: tuple[dict[str, pd.DataFrame], dict[str, np.ndarray]] | None = None

    # ------------------------------------------------------------------ generation
    def _generate(self) -> tuple[dict[str, pd.DataFrame], dict[str, np.ndarray]]:
        """Draw every table and the planted truth from ``seed`` (once; cached afterwards)."""
        if self._generated is not None:
            return self._generated
        # The draw order below is part of the output: same seed, same tables. Keep it.
        rng = np.random.default_rng(self.seed)
        users = self._draw_users(rng)
        artists = self._draw_artists(rng)
        tracks = self._draw_tracks(rng, artists.genre)
        events = self._draw_events(rng, users, artists)
        listens = self._listens_table(users, tracks, events)
        tags, tag_assignments = self._draw_tag_assignments(rng, users, artists, events)
        texts = self._draw_artist_texts(rng, artists)
        friends = self._draw_friends(rng, users)
        # audio: round-robin over genres so every genre is represented
        audio_tracks = self._audio_selection(rng, tracks.genre)
        tables = {
            "users": pd.DataFrame({"user_id": users.ids}),
            "artists": self._artists_table(artists),
            "tracks": self._tracks_table(artists, tracks),
            "listens": listens,
            "tags": tags,
            "tag_assignments": tag_assignments,
            "artist_text": pd.DataFrame({"artist_id": artists.ids, "text": texts}),
            "friends": friends,
            "audio_files": pd.DataFrame(
                {
                    "track_id": tracks.ids[audio_tracks],
                    "path": [f"audio/{tracks.ids[i]}.wav" for i in audio_tracks],
                }
            ),
        }
        truth = self._truth(users, artists, tracks, audio_tracks)
        # journeys last, from their own random stream: every row above stays the same
        journeys = self._draw_journeys(
            np.random.default_rng(self.seed + JOURNEY_SEED_OFFSET), artists, tracks
        )
        tables["users"] = pd.concat(
            [tables["users"], pd.DataFrame({"user_id": journeys.explorer_ids})], ignore_index=True
        )
        tables["listens"] = pd.concat([listens, journeys.listens], ignore_index=True)
        truth.update(journeys.truth(artists))
        self._generated = (tables, truth)
        return self._generated

    @property
    def _genres(self) -> tuple[Genre, ...]:
        """The genres in play: the first ``n_genres`` of ``GENRES``."""
        return GENRES[: self.n_genres]

    @property
    def _window_seconds(self) -> int:
        """Length of the listening window in seconds."""
        return self.weeks * 7 * 86_400

    def _draw_users(self, rng: np.random.Generator) -> _Users:
        """Draw each user's taste cluster and a personal second genre different from it."""
        n_genres = self.n_genres
        user_ids = np.array([f"u{i:06d}" for i in range(self.n_users)], dtype=object)
        user_cluster = rng.integers(0, n_genres, self.n_users)
        offset = rng.integers(1, n_genres, self.n_users)
        user_second = (user_cluster + offset) % n_genres
        return _Users(ids=user_ids, cluster=user_cluster, second=user_second)

    def _draw_artists(self, rng: np.random.Generator) -> _Artists:
        """Draw each artist's genre (balanced) and popularity rank within the genre."""
        artist_ids = np.array([f"a{i:05d}" for i in range(self.n_artists)], dtype=object)
        artist_genre = rng.permutation(np.arange(self.n_artists) % self.n_genres)
        # popularity rank within the genre: Zipf weights 1 / (rank + 1)
        rank = np.empty(self.n_artists, dtype=np.int64)
        members_by_genre = []
        for g in range(self.n_genres):
            members = rng.permutation(np.flatnonzero(artist_genre == g))
            rank[members] = np.arange(len(members))
            members_by_genre.append(members)
        return _Artists(
            ids=artist_ids,
            genre=artist_genre,
            names=np.array(_names(self.n_artists), dtype=object),
            rank=rank,
            genre_members=np.concatenate(members_by_genre),
            popularity_cdf=_popularity_cdf(members_by_genre),
        )

    def _draw_tracks(self, rng: np.random.Generator, artist_genre: np.ndarray) -> _Tracks:
        """Draw ``tracks_per_artist`` tracks per artist with genre-typical durations."""
        tpa = self.tracks_per_artist
        n_tracks = self.n_artists * tpa
        track_artist = np.repeat(np.arange(self.n_artists), tpa)
        track_genre = artist_genre[track_artist]
        mean_duration = np.array([g.duration_mean_s for g in self._genres])[track_genre]
        durations = np.round(mean_duration * rng.lognormal(0.0, 0.25, n_tracks), 1)
        return _Tracks(
            ids=np.array([f"t{i:07d}" for i in range(n_tracks)], dtype=object),
            artist=track_artist,
            genre=track_genre,
            durations=durations,
            titles=_track_titles(n_tracks, tpa),
        )

    def _draw_events(self, rng: np.random.Generator, users: _Users, artists: _Artists) -> _Events:
        """Draw listen events: who, which artist and track, when (oldest first, no duplicates)."""
        event_user = self._draw_event_users(rng)
        event_genre = self._draw_event_genres(rng, users, event_user)
        event_artist = _draw_event_artists(rng, artists, event_genre)
        n_events = len(event_user)
        tpa = self.tracks_per_artist
        track_rank = np.minimum(rng.geometric(0.5, n_events) - 1, tpa - 1)
        event_track = event_artist * tpa + track_rank
        offsets = rng.integers(1, self._window_seconds, n_events)
        order = np.argsort(-offsets, kind="stable")  # oldest first
        events = _Events(event_user[order], event_artist[order], event_track[order], offsets[order])
        return events.without_duplicates()

    def _draw_event_users(self, rng: np.random.Generator) -> np.ndarray:
        """Draw each user's activity (log-normal, at least 5) and repeat the user that often."""
        sigma = 0.8
        activity = rng.lognormal(np.log(self.events_per_user) - sigma**2 / 2, sigma, self.n_users)
        counts = np.maximum(np.round(activity).astype(np.int64), 5)
        return np.repeat(np.arange(self.n_users), counts)

    def _draw_event_genres(
        self, rng: np.random.Generator, users: _Users, event_user: np.ndarray
    ) -> np.ndarray:
        """Draw the genre of each event: 70 % cluster, 20 % second genre, 10 % at random."""
        n_events = len(event_user)
        choice = rng.random(n_events)
        return np.where(
            choice < 0.7,
            users.cluster[event_user],
            np.where(
                choice < 0.9, users.second[event_user], rng.integers(0, self.n_genres, n_events)
            ),
        )

    def _draw_journeys(
        self, rng: np.random.Generator, artists: _Artists, tracks: _Tracks
    ) -> _Journeys:
        """Draw the journey graph and the explorers' walks on it, with their listen events."""
        graph = self._journey_graph(rng, artists)
        n_explorers = 0 if self.explorers == 0 else max(2, round(self.explorers * self.n_users))
        length = max(2, min(self.explorer_discoveries, self.n_artists // 3))
        ids = np.array([f"u{self.n_users + i:06d}" for i in range(n_explorers)], dtype=object)
        # walks start at popular artists (a random genre's Zipf draw), so the routes out of
        # the well-known artists are walked by several explorers
        starts = _draw_event_artists(rng, artists, rng.integers(0, self.n_genres, n_explorers))
        paths = [_walk(rng, graph, start, length) for start in starts]
        frames = [
            self._explorer_events(rng, user, path, tracks)
            for user, path in zip(ids, paths, strict=True)
        ]
        listens = (
            pd.concat(frames, ignore_index=True)
            if frames
            else pd.DataFrame(columns=["user_id", "item_id", "plays", "ts"], dtype=object)
        )
        return _Journeys(graph, ids, paths, listens)

    def _journey_graph(self, rng: np.random.Generator, artists: _Artists) -> np.ndarray:
        """Per artist: two planted next artists of its genre and one of the next genre
        (``-1`` where a genre has too few artists)."""
        members = [np.flatnonzero(artists.genre == g) for g in range(self.n_genres)]
        graph = np.full((self.n_artists, len(JOURNEY_NEXT_WEIGHTS)), -1, dtype=np.int64)
        for a in range(self.n_artists):
            genre = int(artists.genre[a])
            same = members[genre][members[genre] != a]
            picked = rng.choice(same, size=min(2, len(same)), replace=False)
            graph[a, : len(picked)] = picked
            neighbour = members[(genre + 1) % self.n_genres]
            graph[a, 2] = int(rng.choice(neighbour[neighbour != a]))
        return graph

    def _explorer_events(
        self, rng: np.random.Generator, user: str, path: np.ndarray, tracks: _Tracks
    ) -> pd.DataFrame:
        """An explorer's plays: a burst of digging (half the window, at a random time) with the
        first play of each artist in path order (distinct seconds), then a few replays of it
        later in the burst."""
        span = max(1, self._window_seconds // 2)
        end = int(rng.integers(1, self._window_seconds - span + 2))  # seconds before END_TS
        first = end + np.sort(rng.choice(span, size=len(path), replace=False))[::-1]
        replays = rng.poisson(1.0, len(path))
        artist = np.repeat(path, 1 + replays)
        offsets = np.concatenate(
            [[o, *rng.integers(end, o + 1, r)] for o, r in zip(first, replays, strict=True)]
        ).astype(np.int64)
        tpa = self.tracks_per_artist
        track = artist * tpa + np.minimum(rng.geometric(0.5, len(artist)) - 1, tpa - 1)
        order = np.argsort(-offsets, kind="stable")
        frame = pd.DataFrame(
            {
                "user_id": user,
                "item_id": tracks.ids[track[order]],
                "plays": "1",
                "ts": np.datetime_as_string(
                    END_TS - offsets[order].astype("timedelta64[s]"), unit="s", timezone="UTC"
                ),
            }
        )
        return frame.drop_duplicates(["item_id", "ts"], ignore_index=True)

    def _listens_table(self, users: _Users, tracks: _Tracks, events: _Events) -> pd.DataFrame:
        """Build the listens table (one row per play), plus the bad rows if asked for."""
        event_ts = END_TS - events.offsets.astype("timedelta64[s]")
        listens = pd.DataFrame(
            {
                "user_id": users.ids[events.user],
                "item_id": tracks.ids[events.track],
                "plays": "1",
                "ts": np.datetime_as_string(event_ts, unit="s", timezone="UTC"),
            }
        )
        if self.inject_bad_rows:
            listens = pd.concat([listens, self._bad_rows(listens)], ignore_index=True)
        return listens

    def _draw_tag_assignments(
        self, rng: np.random.Generator, users: _Users, artists: _Artists, events: _Events
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Draw taggings of played artists (genre terms, 20 % generic); return tags, assignments."""
        vocabulary = [term for g in self._genres for term in g.terms] + GENERIC_TERMS
        tag_ids = np.array([str(i + 1) for i in range(len(vocabulary))], dtype=object)
        terms_per_genre = len(self._genres[0].terms)
        n_events = len(events.user)
        n_taggings = max(n_events // 10, 1)
        picked = rng.integers(0, n_events, n_taggings)
        tag_user = events.user[picked]
        tag_artist = events.artist[picked]
        generic = rng.random(n_taggings) < 0.2
        genre_term = artists.genre[tag_artist] * terms_per_genre + rng.integers(
            0, terms_per_genre, n_taggings
        )
        generic_term = (
            len(vocabulary) - len(GENERIC_TERMS) + rng.integers(0, len(GENERIC_TERMS), n_taggings)
        )
        tag_index = np.where(generic, generic_term, genre_term)
        tag_offsets = rng.integers(1, self._window_seconds, n_taggings)
        tag_assignments = pd.DataFrame(
            {
                "user_id": users.ids[tag_user],
                "artist_id": artists.ids[tag_artist],
                "tag_id": tag_ids[tag_index],
                "ts": np.datetime_as_string(
                    END_TS - tag_offsets.astype("timedelta64[s]"), unit="s", timezone="UTC"
                ),
            }
        ).drop_duplicates(["user_id", "artist_id", "tag_id"])
        tags = pd.DataFrame({"tag_id": tag_ids, "tag": vocabulary})
        return tags, tag_assignments

    def _draw_artist_texts(self, rng: np.random.Generator, artists: _Artists) -> list[str]:
        """Draw a one-sentence text per artist from three words of its genre."""
        texts = []
        for i in range(self.n_artists):
            genre = self._genres[artists.genre[i]]
            words = rng.choice(genre.terms, size=3, replace=False)
            texts.append(
                f"{artists.names[i]} is a {genre.name} act known for {words[0]}, {words[1]} "
                f"and {words[2]}."
            )
        return texts

    def _draw_friends(self, rng: np.random.Generator, users: _Users) -> pd.DataFrame:
        """Draw 3 friends per user, 70 % within the user's cluster (self-links dropped)."""
        friend_rows = []
        members_by_cluster = [np.flatnonzero(users.cluster == c) for c in range(self.n_genres)]
        for user in range(self.n_users):
            same = members_by_cluster[users.cluster[user]]
            for _ in range(3):
                if rng.random() < 0.7 and len(same) > 1:
                    friend = int(rng.choice(same))
                else:
                    friend = int(rng.integers(0, self.n_users))
                if friend != user:
                    friend_rows.append((users.ids[user], users.ids[friend]))
        return pd.DataFrame(friend_rows, columns=["user_id", "friend_id"]).drop_duplicates()

    def _artists_table(self, artists: _Artists) -> pd.DataFrame:
        """Build the artists table (id, name, genre name, url)."""
        return pd.DataFrame(
            {
                "artist_id": artists.ids,
                "name": artists.names,
                "genre": [self._genres[g].name for g in artists.genre],
                "url": [f"https://example.org/artist/{a}" for a in artists.ids],
            }
        )

    def _tracks_table(self, artists: _Artists, tracks: _Tracks) -> pd.DataFrame:
        """Build the tracks table (id, artist, title, duration as text, genre name)."""
        return pd.DataFrame(
            {
                "track_id": tracks.ids,
                "artist_id": artists.ids[tracks.artist],
                "title": tracks.titles,
                "duration_s": [f"{d:.1f}" for d in tracks.durations],
                "genre": [self._genres[g].name for g in tracks.genre],
            }
        )

    def _truth(
        self, users: _Users, artists: _Artists, tracks: _Tracks, audio_tracks: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Collect the planted structure returned by ``truth()``."""
        return {
            "genres": np.array([g.name for g in self._genres], dtype=object),
            "user_ids": users.ids,
            "user_cluster": users.cluster,
            "user_second_genre": users.second,
            "artist_ids": artists.ids,
            "artist_genre": artists.genre,
            "artist_popularity_rank": artists.rank,
            "track_ids": tracks.ids,
            "track_genre": tracks.genre,
            "audio_track_ids": tracks.ids[audio_tracks],
            "audio_genre": tracks.genre[audio_tracks],
        }

    def _bad_rows(self, listens: pd.DataFrame) -> pd.DataFrame:
        """The 6 planted bad listen rows: 3 unknown user, 2 plays "0", 1 exact duplicate."""
        first = listens.iloc[0]
        rows = [
            {
                "user_id": UNKNOWN_USER_ID,
                "item_id": first["item_id"],
                "plays": "1",
                "ts": listens["ts"].iloc[i],
            }
            for i in range(3)
        ]
        rows += [
            {
                "user_id": listens["user_id"].iloc[i],
                "item_id": listens["item_id"].iloc[i],
                "plays": "0",
                "ts": listens["ts"].iloc[i],
            }
            for i in (1, 2)
        ]
        rows.append(first.to_dict())
        return pd.DataFrame(rows)

    def _audio_selection(self, rng: np.random.Generator, track_genre: np.ndarray) -> np.ndarray:
        """Pick ``audio_tracks`` track indices round-robin over genres (sorted)."""
        count = min(self.audio_tracks, len(track_genre))
        by_genre = [rng.permutation(np.flatnonzero(track_genre == g)) for g in range(self.n_genres)]
        chosen: list[int] = []
        depth = 0
        while len(chosen) < count:
            for tracks in by_genre:
                if depth < len(tracks) and len(chosen) < count:
                    chosen.append(int(tracks[depth]))
            depth += 1
        return np.array(sorted(chosen), dtype=np.int64)

    def truth(self) -> dict[str, np.ndarray]:
        """The planted structure: genre names, user clusters, artist and track genres.

        Returns
        -------
        dict
            ``genres`` (names), ``user_ids`` and ``user_cluster`` (genre index of each user's
            cluster), ``user_second_genre``, ``artist_ids`` and ``artist_genre``,
            ``artist_popularity_rank`` (0 = most popular in its genre), ``track_ids`` and
            ``track_genre``, ``audio_track_ids`` and ``audio_genre``. Index arrays align with
            the id arrays. The journeys: ``journey_next`` (artist index -> indices of its
            planted next artists, ``-1`` = none), ``explorer_ids`` and ``explorer_paths`` (each
            explorer's artist ids in discovery order). ``user_ids`` holds the taste-cluster
            users only (explorers have no cluster).
        """
        return self._generated[1] if self._generated else self._generate()[1]

    # ------------------------------------------------------------------ writing and reading
    def write(self) -> dict[str, Path]:
        """Write every table as CSV and the audio clips as WAV under ``out_dir``.

        Returns
        -------
        dict
            Table name -> CSV path.
        """
        import soundfile

        tables, truth = self._generate()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        paths = {}
        for table, frame in tables.items():
            path = self.out_dir / f"{table}.csv"
            arrow = pa.Table.from_pandas(frame[RAW_COLUMNS[table]], preserve_index=False)
            pa_csv.write_csv(arrow, path, pa_csv.WriteOptions(quoting_style="needed"))
            paths[table] = path
        audio_dir = self.out_dir / "audio"
        audio_dir.mkdir(exist_ok=True)
        genres = GENRES[: self.n_genres]
        for track_id, genre_index in zip(
            truth["audio_track_ids"], truth["audio_genre"], strict=True
        ):
            index = int(str(track_id)[1:])
            clip_rng = np.random.default_rng([self.seed, index])
            clip = synthesize_clip(genres[int(genre_index)], self.audio_seconds, clip_rng)
            soundfile.write(audio_dir / f"{track_id}.wav", clip, SAMPLE_RATE, subtype="PCM_16")
        logger.info(
            "sample source written to %s: %s", self.out_dir, {t: len(f) for t, f in tables.items()}
        )
        return paths

    def read(self) -> RawBundle:
        """Generate, write and read back all tables (lineage points at the CSV files)."""
        paths = self.write()
        truth = self.truth()
        tables = {}
        for table, path in paths.items():
            frame, _, _ = read_delimited(path, RAW_COLUMNS[table], ",")
            if table == "audio_files":
                frame["path"] = [str(self.out_dir / p) for p in frame["path"]]
            tables[table] = with_contract_columns(frame, table)
        notes = {
            "generator": (
                f"seed={self.seed}, n_users={self.n_users}, n_artists={self.n_artists}, "
                f"tracks_per_artist={self.tracks_per_artist}, n_genres={self.n_genres}, "
                f"weeks={self.weeks} ending 2026-11-16"
            ),
            "explorers": (
                f"{len(truth['explorer_ids'])} explorer users walking the planted journey graph "
                f"(ids from u{self.n_users:06d}; see SampleSource.truth())"
            ),
            "bad_rows": (
                "6 injected bad listen rows (3 unknown user, 2 plays=0, 1 duplicate event)"
                if self.inject_bad_rows
                else "none injected"
            ),
        }
        return RawBundle(
            source_name=self.name,
            tables=tables,
            item_level="track",
            listens_kind="events",
            notes=notes,
        )
