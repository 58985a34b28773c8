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

    Example usage::

        bundle = SampleSource("data/sample").read()
        truth = SampleSource("data/sample").truth()   # user clusters, artist genres
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
    ) -> None:
        if not 2 <= n_genres <= len(GENRES):
            raise ValueError(f"n_genres must be between 2 and {len(GENRES)}, got {n_genres}")
        if n_artists < n_genres:
            raise ValueError(f"n_artists ({n_artists}) must be at least n_genres ({n_genres})")
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
        self._generated: tuple[dict[str, pd.DataFrame], dict[str, np.ndarray]] | None = None

    # ------------------------------------------------------------------ generation
    def _generate(self) -> tuple[dict[str, pd.DataFrame], dict[str, np.ndarray]]:
        if self._generated is not None:
            return self._generated
        rng = np.random.default_rng(self.seed)
        genres = GENRES[: self.n_genres]
        n_genres = self.n_genres

        user_ids = np.array([f"u{i:06d}" for i in range(self.n_users)], dtype=object)
        user_cluster = rng.integers(0, n_genres, self.n_users)
        offset = rng.integers(1, n_genres, self.n_users)
        user_second = (user_cluster + offset) % n_genres

        artist_ids = np.array([f"a{i:05d}" for i in range(self.n_artists)], dtype=object)
        artist_genre = rng.permutation(np.arange(self.n_artists) % n_genres)
        artist_names = np.array(_names(self.n_artists), dtype=object)
        # popularity rank within the genre: Zipf weights 1 / (rank + 1)
        rank = np.empty(self.n_artists, dtype=np.int64)
        members_by_genre = []
        for g in range(n_genres):
            members = rng.permutation(np.flatnonzero(artist_genre == g))
            rank[members] = np.arange(len(members))
            members_by_genre.append(members)
        global_members = np.concatenate(members_by_genre)
        cdf_parts = []
        for g, members in enumerate(members_by_genre):
            weights = 1.0 / (np.arange(len(members)) + 1.0)
            cdf = np.cumsum(weights) / weights.sum()
            cdf[-1] = 1.0
            cdf_parts.append(g + cdf)
        global_cdf = np.concatenate(cdf_parts)

        tpa = self.tracks_per_artist
        n_tracks = self.n_artists * tpa
        track_ids = np.array([f"t{i:07d}" for i in range(n_tracks)], dtype=object)
        track_artist = np.repeat(np.arange(self.n_artists), tpa)
        track_genre = artist_genre[track_artist]
        mean_duration = np.array([g.duration_mean_s for g in genres])[track_genre]
        durations = np.round(mean_duration * rng.lognormal(0.0, 0.25, n_tracks), 1)
        titles = [
            f"{TITLE_WORDS[i % len(TITLE_WORDS)]} {TITLE_WORDS[(i * 7 + 3) % len(TITLE_WORDS)]}"
            f" {i % tpa + 1}"
            for i in range(n_tracks)
        ]

        # listen events
        sigma = 0.8
        activity = rng.lognormal(np.log(self.events_per_user) - sigma**2 / 2, sigma, self.n_users)
        counts = np.maximum(np.round(activity).astype(np.int64), 5)
        event_user = np.repeat(np.arange(self.n_users), counts)
        n_events = len(event_user)
        choice = rng.random(n_events)
        event_genre = np.where(
            choice < 0.7,
            user_cluster[event_user],
            np.where(choice < 0.9, user_second[event_user], rng.integers(0, n_genres, n_events)),
        )
        position = np.searchsorted(global_cdf, event_genre + rng.random(n_events), side="left")
        position = np.minimum(position, len(global_members) - 1)
        event_artist = global_members[position]
        track_rank = np.minimum(rng.geometric(0.5, n_events) - 1, tpa - 1)
        event_track = event_artist * tpa + track_rank
        window_s = self.weeks * 7 * 86_400
        offsets = rng.integers(1, window_s, n_events)
        order = np.argsort(-offsets, kind="stable")  # oldest first
        event_user, event_artist = event_user[order], event_artist[order]
        event_track, offsets = event_track[order], offsets[order]
        # two plays of one track by one user in the same second would be an exact duplicate
        # event: keep the planted bad rows the only ones
        unique = ~pd.DataFrame({"u": event_user, "t": event_track, "s": offsets}).duplicated()
        unique = unique.to_numpy()
        event_user, event_artist = event_user[unique], event_artist[unique]
        event_track, offsets = event_track[unique], offsets[unique]
        n_events = len(event_user)
        event_ts = END_TS - offsets.astype("timedelta64[s]")
        listens = pd.DataFrame(
            {
                "user_id": user_ids[event_user],
                "item_id": track_ids[event_track],
                "plays": "1",
                "ts": np.datetime_as_string(event_ts, unit="s", timezone="UTC"),
            }
        )
        if self.inject_bad_rows:
            listens = pd.concat([listens, self._bad_rows(listens)], ignore_index=True)

        # tags: genre vocabulary + generic terms
        vocabulary = [term for g in genres for term in g.terms] + GENERIC_TERMS
        tag_ids = np.array([str(i + 1) for i in range(len(vocabulary))], dtype=object)
        terms_per_genre = len(genres[0].terms)
        n_taggings = max(n_events // 10, 1)
        picked = rng.integers(0, n_events, n_taggings)
        tag_user = event_user[picked]
        tag_artist = event_artist[picked]
        generic = rng.random(n_taggings) < 0.2
        genre_term = artist_genre[tag_artist] * terms_per_genre + rng.integers(
            0, terms_per_genre, n_taggings
        )
        generic_term = (
            len(vocabulary) - len(GENERIC_TERMS) + rng.integers(0, len(GENERIC_TERMS), n_taggings)
        )
        tag_index = np.where(generic, generic_term, genre_term)
        tag_offsets = rng.integers(1, window_s, n_taggings)
        tag_assignments = pd.DataFrame(
            {
                "user_id": user_ids[tag_user],
                "artist_id": artist_ids[tag_artist],
                "tag_id": tag_ids[tag_index],
                "ts": np.datetime_as_string(
                    END_TS - tag_offsets.astype("timedelta64[s]"), unit="s", timezone="UTC"
                ),
            }
        ).drop_duplicates(["user_id", "artist_id", "tag_id"])

        # artist text from genre words
        texts = []
        for i in range(self.n_artists):
            genre = genres[artist_genre[i]]
            words = rng.choice(genre.terms, size=3, replace=False)
            texts.append(
                f"{artist_names[i]} is a {genre.name} act known for {words[0]}, {words[1]} "
                f"and {words[2]}."
            )

        # friends: 3 per user, 70 % within the cluster
        friend_rows = []
        members_by_cluster = [np.flatnonzero(user_cluster == c) for c in range(n_genres)]
        for user in range(self.n_users):
            same = members_by_cluster[user_cluster[user]]
            for _ in range(3):
                if rng.random() < 0.7 and len(same) > 1:
                    friend = int(rng.choice(same))
                else:
                    friend = int(rng.integers(0, self.n_users))
                if friend != user:
                    friend_rows.append((user_ids[user], user_ids[friend]))
        friends = pd.DataFrame(friend_rows, columns=["user_id", "friend_id"]).drop_duplicates()

        # audio: round-robin over genres so every genre is represented
        audio_tracks = self._audio_selection(rng, track_genre)

        tables = {
            "users": pd.DataFrame({"user_id": user_ids}),
            "artists": pd.DataFrame(
                {
                    "artist_id": artist_ids,
                    "name": artist_names,
                    "genre": [genres[g].name for g in artist_genre],
                    "url": [f"https://example.org/artist/{a}" for a in artist_ids],
                }
            ),
            "tracks": pd.DataFrame(
                {
                    "track_id": track_ids,
                    "artist_id": artist_ids[track_artist],
                    "title": titles,
                    "duration_s": [f"{d:.1f}" for d in durations],
                    "genre": [genres[g].name for g in track_genre],
                }
            ),
            "listens": listens,
            "tags": pd.DataFrame({"tag_id": tag_ids, "tag": vocabulary}),
            "tag_assignments": tag_assignments,
            "artist_text": pd.DataFrame({"artist_id": artist_ids, "text": texts}),
            "friends": friends,
            "audio_files": pd.DataFrame(
                {
                    "track_id": track_ids[audio_tracks],
                    "path": [f"audio/{track_ids[i]}.wav" for i in audio_tracks],
                }
            ),
        }
        truth = {
            "genres": np.array([g.name for g in genres], dtype=object),
            "user_ids": user_ids,
            "user_cluster": user_cluster,
            "user_second_genre": user_second,
            "artist_ids": artist_ids,
            "artist_genre": artist_genre,
            "artist_popularity_rank": rank,
            "track_ids": track_ids,
            "track_genre": track_genre,
            "audio_track_ids": track_ids[audio_tracks],
            "audio_genre": track_genre[audio_tracks],
        }
        self._generated = (tables, truth)
        return self._generated

    def _bad_rows(self, listens: pd.DataFrame) -> pd.DataFrame:
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
            the id arrays.
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
