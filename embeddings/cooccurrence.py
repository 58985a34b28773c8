"""Co-occurrence vectors: skip-gram (word2vec) artist embeddings learned from context.

"If you like Radiohead, you should try Portishead": artists that appear in the same contexts
get close vectors. A context is a *sentence* of artist ids; three kinds are read from the
warehouse, each where the source has it:

``sessions``     a user's time-ordered plays split at gaps longer than ``session_gap_minutes``
                 (consecutive plays of one artist collapse into one word);
``co_mentions``  the artists one user tagged with the same tag (HetRec: "the artists I call
                 'shoegaze'"), ordered by tagging date;
``histories``    each user's artists in the order they were first played (by plays when the
                 source has no times): item2vec over listening histories, for sources whose
                 plays carry no times (HetRec) or are too sparse to form sessions.

Sentences are streamed out of DuckDB in record batches into a token file (artist codes), so
memory follows the number of artists, not events; gensim trains on the file. An artist gets a
vector when it occurs at least ``min_count`` times in sentences with at least one other artist
(its co-occurrences). The same :func:`fit_cooccurrence` serves the weekly asset and the offline
evaluations, which pass the held-out (user, item) pairs to leave out of every context.

Example usage::

    trainer = CooccurrenceTrainer(lambda: warehouse.connect(read_only=True), cutoff)
    vectors = trainer.fit()                       # the week's vectors (asset cooccurrence_vectors)
    held_out = trainer.without(test[["user_id", "item_id"]]).fit()   # for an offline holdout
    vectors.space().similar_artists_by_text("289", k=10)             # the text space's operations
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

COOCCURRENCE_COLLECTION = "cooccurrence_artists"
CONTEXTS = ("sessions", "co_mentions", "histories")
_EXCLUDE = "_cooc_exclude"
_EXCLUDE_USERS = "_cooc_exclude_users"

Connect = Callable[[], AbstractContextManager[Any]]


@dataclass(frozen=True)
class CooccurrenceConfig:
    """Contexts and skip-gram settings.

    ``min_count`` is the number of co-occurrences an artist needs for a vector;
    ``candidate_min_count`` the number it needs to be recommended by the ``cooccurrence`` source
    (a rare artist's vector has seen few updates and lands near many profiles); ``window`` the
    skip-gram window (50: a history's artists all share one context, as in item2vec);
    ``ns_exponent`` shapes negative sampling (0.75: word2vec's). Window, epochs and
    ``candidate_min_count`` were chosen on HetRec validation splits
    (``benchmarks/tune_cooccurrence.py``). One worker keeps training deterministic for a seed.
    """

    contexts: tuple[str, ...] = CONTEXTS
    dim: int = 64
    window: int = 50
    min_count: int = 2
    candidate_min_count: int = 40
    epochs: int = 20
    negative: int = 5
    ns_exponent: float = 0.75
    sample: float = 1e-3
    session_gap_minutes: float = 30.0
    max_sentence: int = 1000
    seed: int = 42
    workers: int = 1

    def __post_init__(self) -> None:
        unknown = sorted(set(self.contexts) - set(CONTEXTS))
        if unknown or not self.contexts:
            raise ValueError(
                f"cooccurrence contexts {list(self.contexts)}: use a non-empty list of {CONTEXTS}"
            )
        if self.min_count < 1 or self.dim < 2 or self.window < 1 or self.epochs < 1:
            raise ValueError(
                "cooccurrence config: min_count >= 1, dim >= 2, window >= 1 and epochs >= 1 "
                f"(got {self.min_count}, {self.dim}, {self.window}, {self.epochs})"
            )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "contexts": list(self.contexts)}


@dataclass
class CooccurrenceVectors:
    """Artist vectors learned from co-occurrence (an artifact: versioned by corpus and config).

    Attributes
    ----------
    ids, matrix
        Row ``i`` is the vector of artist ``ids[i]``.
    occurrences
        Per artist, its occurrences in sentences with another artist (its co-occurrences).
    version
        Hash of the corpus file and the config: the same inputs give the same version.
    stats
        Sentences and words per context, vocabulary, seconds.
    """

    ids: list[str]
    matrix: np.ndarray
    occurrences: np.ndarray
    version: str
    config: CooccurrenceConfig
    stats: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def as_table(self) -> tuple[list[str], np.ndarray] | None:
        """``(artist_ids, matrix)`` of every artist with a vector, None when there is none."""
        return (self.ids, self.matrix) if self.ids else None

    def candidate_table(self) -> tuple[list[str], np.ndarray] | None:
        """``(artist_ids, matrix)`` of the artists the ``cooccurrence`` source may recommend
        (at least ``config.candidate_min_count`` co-occurrences), None when there is none."""
        keep = np.flatnonzero(self.occurrences >= self.config.candidate_min_count)
        if len(keep) < 2:
            return None
        return [self.ids[i] for i in keep], self.matrix[keep]

    def space(self):
        """The text space's operations on these vectors: similar artists, taste profiles,
        "X minus the mainstream" (mainstream = the artists with most co-occurrences)."""
        from embeddings.text import TextSpace

        return TextSpace(self.ids, self.matrix, popularity=self.occurrences)


# ---------------------------------------------------------------------------------- corpus
def _artist_codes() -> str:
    return (
        "SELECT artist_id, CAST(row_number() OVER (ORDER BY artist_id) - 1 AS BIGINT) AS code "
        "FROM (SELECT DISTINCT CAST(artist_id AS VARCHAR) AS artist_id FROM golden.items "
        "WHERE artist_id IS NOT NULL)"
    )


def _has_table(con, name: str) -> bool:
    found = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'golden' "
        "AND table_name = ?",
        [name],
    ).fetchall()
    return bool(found and found[0][0])


def _anti(alias: str, exclude: tuple[bool, bool], artist_level: bool = False) -> str:
    """Anti joins leaving out the excluded users and (user, item) pairs (or their artists)."""
    pairs, users = exclude
    out = f" ANTI JOIN {_EXCLUDE_USERS} xu ON xu.user_id = {alias}.user_id" if users else ""
    if not pairs:
        return out
    if artist_level:
        return out + (
            f" ANTI JOIN (SELECT DISTINCT x.user_id, i.artist_id FROM {_EXCLUDE} x "
            f"JOIN golden.items i USING (item_id)) xa "
            f"ON xa.user_id = {alias}.user_id AND xa.artist_id = {alias}.artist_id"
        )
    return out + (
        f" ANTI JOIN {_EXCLUDE} x ON x.user_id = {alias}.user_id AND x.item_id = {alias}.item_id"
    )


def _sessions_sql(exclude: tuple[bool, bool], gap_seconds: float) -> str:
    return f"""
    WITH events AS (
        SELECT e.user_id, c.code, e.ts
        FROM golden.listen_events e{_anti("e", exclude)}
        JOIN golden.items i USING (item_id) JOIN codes c USING (artist_id)
        WHERE e.ts IS NOT NULL AND e.ts < ?
    ), marked AS (
        SELECT user_id, code, ts,
            CASE WHEN lag(ts) OVER w IS NULL
                 OR epoch(ts) - epoch(lag(ts) OVER w) > {float(gap_seconds)}
                 THEN 1 ELSE 0 END AS starts,
            lag(code) OVER w AS previous
        FROM events WINDOW w AS (PARTITION BY user_id ORDER BY ts, code)
    ), numbered AS (
        SELECT user_id, code, ts, starts, previous,
            sum(starts) OVER (PARTITION BY user_id ORDER BY ts, code
                              ROWS UNBOUNDED PRECEDING) AS session
        FROM marked
    )
    SELECT list(code ORDER BY ts, code) AS sentence
    FROM numbered WHERE starts = 1 OR code <> previous
    GROUP BY user_id, session HAVING count(DISTINCT code) >= 2 ORDER BY user_id, session
    """


def _co_mentions_sql(exclude: tuple[bool, bool]) -> str:
    return f"""
    WITH tagged AS (
        SELECT t.user_id, t.tag, c.code, min(t.ts) AS ts
        FROM golden.tag_assignments t{_anti("t", exclude, artist_level=True)}
        JOIN codes c ON c.artist_id = CAST(t.artist_id AS VARCHAR)
        WHERE t.ts IS NULL OR t.ts < ?
        GROUP BY ALL
    )
    SELECT list(code ORDER BY ts NULLS LAST, code) AS sentence
    FROM tagged GROUP BY user_id, tag HAVING count(*) >= 2 ORDER BY user_id, tag
    """


def _histories_sql(exclude: tuple[bool, bool], events: bool) -> str:
    if events:
        plays = f"""
        SELECT e.user_id, e.item_id, sum(e.plays) AS plays, min(e.ts) AS first_ts
        FROM golden.listen_events e{_anti("e", exclude)} WHERE e.ts < ? GROUP BY ALL"""
    else:
        plays = f"""
        SELECT l.user_id, l.item_id, l.plays, l.first_ts
        FROM golden.listens l{_anti("l", exclude)} WHERE ? IS NOT NULL"""
    return f"""
    WITH plays AS ({plays}), artists AS (
        SELECT p.user_id, c.code, min(p.first_ts) AS first_ts, sum(p.plays) AS plays
        FROM plays p JOIN golden.items i USING (item_id) JOIN codes c USING (artist_id)
        GROUP BY ALL
    )
    SELECT list(code ORDER BY first_ts NULLS LAST, plays DESC, code) AS sentence
    FROM artists GROUP BY user_id HAVING count(*) >= 2 ORDER BY user_id
    """


def _context_queries(con, config: CooccurrenceConfig, exclude: tuple[bool, bool]) -> dict[str, str]:
    """The SQL of each configured context the warehouse can feed."""
    events = bool(
        con.execute("SELECT count(*) FROM golden.listen_events WHERE ts IS NOT NULL").fetchall()[0][
            0
        ]
    )
    queries = {}
    if "sessions" in config.contexts and events:
        queries["sessions"] = _sessions_sql(exclude, config.session_gap_minutes * 60)
    if "co_mentions" in config.contexts and _has_table(con, "tag_assignments"):
        queries["co_mentions"] = _co_mentions_sql(exclude)
    if "histories" in config.contexts:
        queries["histories"] = _histories_sql(exclude, events)
    return queries


def _sentences(con, sql: str, cutoff, max_sentence: int) -> Iterator[np.ndarray]:
    """Sentences of one context, streamed in record batches, long ones cut into pieces."""
    reader = con.sql(sql, params=[cutoff]).to_arrow_reader(10_000)
    for batch in reader:
        lists = batch.column(0)
        offsets = lists.offsets.to_numpy()
        values = lists.values.to_numpy()
        for start, end in zip(offsets[:-1], offsets[1:], strict=True):
            for piece in range(start, end, max_sentence):
                words = values[piece : min(end, piece + max_sentence)]
                if len(np.unique(words)) >= 2:
                    yield words


class _Occurrences:
    """Occurrences per artist code, counted in chunks of about a million words."""

    def __init__(self, size: int, chunk: int = 1_000_000) -> None:
        self.counts = np.zeros(size, dtype=np.int64)
        self.pending: list[np.ndarray] = []
        self.pending_words = 0
        self.chunk = chunk
        self.sentences = 0
        self.words = 0

    def add(self, sentence: np.ndarray) -> None:
        self.pending.append(sentence)
        self.pending_words += len(sentence)
        self.sentences += 1
        self.words += len(sentence)
        if self.pending_words >= self.chunk:
            self._flush()

    def _flush(self) -> None:
        if self.pending:
            words = np.concatenate(self.pending)
            self.counts += np.bincount(words, minlength=len(self.counts))
        self.pending, self.pending_words = [], 0

    def total(self) -> np.ndarray:
        self._flush()
        return self.counts


@dataclass
class Corpus:
    """A token file of artist codes (one sentence per line) and what it holds."""

    path: Path
    artist_ids: np.ndarray
    occurrences: np.ndarray
    contexts: dict[str, dict[str, int]]
    digest: str


def write_corpus(
    con,
    cutoff: pd.Timestamp | None,
    path: Path,
    config: CooccurrenceConfig,
    exclude: pd.DataFrame | None = None,
    exclude_users: pd.DataFrame | None = None,
) -> Corpus:
    """Write every context's sentences before ``cutoff`` to ``path``, minus ``exclude``'s pairs.

    Parameters
    ----------
    con
        A DuckDB connection to the warehouse (golden schema).
    cutoff
        Plays and taggings before it (None: all).
    exclude
        ``user_id, item_id`` pairs left out of every context (a holdout's test rows; tag
        co-mentions leave out the pair's artist).
    exclude_users
        ``user_id`` of users left out entirely (held-out users).
    """
    codes = con.execute(_artist_codes()).df()
    con.execute(f"CREATE OR REPLACE TEMP TABLE codes AS {_artist_codes()}")
    has_exclude = (
        exclude is not None and not exclude.empty,
        exclude_users is not None and not exclude_users.empty,
    )
    if has_exclude[0]:
        con.register(_EXCLUDE, exclude[["user_id", "item_id"]].astype(str).drop_duplicates())
    if has_exclude[1]:
        con.register(_EXCLUDE_USERS, exclude_users[["user_id"]].astype(str).drop_duplicates())
    stamp = (
        pd.Timestamp(cutoff) if cutoff is not None else pd.Timestamp("2200-01-01")
    ).to_pydatetime()
    occurrences = np.zeros(len(codes), dtype=np.int64)
    contexts: dict[str, dict[str, int]] = {}
    digest = hashlib.sha256()
    try:
        with open(path, "w", encoding="ascii") as out:
            for name, sql in _context_queries(con, config, has_exclude).items():
                counter = _Occurrences(len(codes))
                for sentence in _sentences(con, sql, stamp, config.max_sentence):
                    line = " ".join(map(str, sentence.tolist())) + "\n"
                    out.write(line)
                    digest.update(line.encode())
                    counter.add(sentence)
                occurrences += counter.total()
                contexts[name] = {"sentences": counter.sentences, "words": counter.words}
    finally:
        for name, present in zip((_EXCLUDE, _EXCLUDE_USERS), has_exclude, strict=True):
            if present:
                con.unregister(name)
        con.execute("DROP TABLE IF EXISTS codes")
    artist_ids = codes.sort_values("code")["artist_id"].astype(str).to_numpy()
    return Corpus(Path(path), artist_ids, occurrences, contexts, digest.hexdigest())


# ---------------------------------------------------------------------------------- training
def _stable_hash(word: str) -> int:
    """gensim seeds each word's initial vector with this (Python's hash varies per process)."""
    return int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "little")


def cooccurrence_version(corpus_digest: str, config: CooccurrenceConfig) -> str:
    payload = json.dumps(config.to_dict(), sort_keys=True)
    return hashlib.sha256(f"{corpus_digest}|{payload}".encode()).hexdigest()[:16]


def fit_on_corpus(corpus: Corpus, config: CooccurrenceConfig) -> CooccurrenceVectors:
    """Skip-gram vectors of every artist with at least ``min_count`` co-occurrences."""
    from gensim.models import Word2Vec
    from gensim.models.word2vec import LineSentence

    version = cooccurrence_version(corpus.digest, config)
    started = time.perf_counter()
    keep = np.flatnonzero(corpus.occurrences >= config.min_count)
    stats = {"contexts": corpus.contexts, "artists": int(len(corpus.artist_ids))}
    if len(keep) < 2:
        logger.info("co-occurrence: %d artists co-occur %d+ times: no vectors", len(keep), 2)
        empty = np.zeros((0, config.dim), dtype=np.float32)
        return CooccurrenceVectors([], empty, np.zeros(0, np.int64), version, config, stats)
    model = Word2Vec(
        LineSentence(str(corpus.path), max_sentence_length=config.max_sentence),
        vector_size=config.dim,
        window=config.window,
        min_count=config.min_count,
        sg=1,
        negative=config.negative,
        ns_exponent=config.ns_exponent,
        sample=config.sample,
        epochs=config.epochs,
        seed=config.seed,
        workers=config.workers,
        hashfxn=_stable_hash,
    )
    codes = np.array([int(word) for word in model.wv.index_to_key], dtype=np.int64)
    order = np.argsort(corpus.artist_ids[codes], kind="stable")
    codes = codes[order]
    matrix = np.asarray(model.wv.vectors[order], dtype=np.float32)
    stats["seconds"] = round(time.perf_counter() - started, 2)
    stats["vocabulary"] = len(codes)
    return CooccurrenceVectors(
        corpus.artist_ids[codes].tolist(),
        matrix,
        corpus.occurrences[codes],
        version,
        config,
        stats,
    )


@dataclass(frozen=True)
class CooccurrenceTrainer:
    """Fits co-occurrence vectors on the warehouse's contexts before a cutoff.

    ``exclude`` holds (user, item) pairs left out of every context: the offline evaluations
    fit on the same contexts as the served vectors, minus their held-out rows.

    Parameters
    ----------
    connect
        Opens a DuckDB connection to the warehouse (a context manager), e.g.
        ``lambda: warehouse.connect(read_only=True)``.
    cutoff
        Plays and taggings before it count.
    """

    connect: Connect
    cutoff: pd.Timestamp | None
    config: CooccurrenceConfig = CooccurrenceConfig()
    exclude: pd.DataFrame | None = None
    exclude_users: pd.DataFrame | None = None

    @classmethod
    def behind(
        cls, vectors: CooccurrenceVectors, connect: Connect, cutoff: pd.Timestamp | None
    ) -> CooccurrenceTrainer | None:
        """The trainer of a week's vectors (None when they are empty: no source to refit)."""
        return cls(connect, cutoff, vectors.config) if len(vectors) else None

    def without(self, pairs: pd.DataFrame | None) -> CooccurrenceTrainer:
        """The same trainer leaving out ``pairs`` (``user_id, item_id``) as well."""
        if pairs is None or pairs.empty:
            return self
        pairs = pairs[["user_id", "item_id"]].astype(str)
        both = pairs if self.exclude is None else pd.concat([self.exclude, pairs])
        return replace(self, exclude=both.drop_duplicates().reset_index(drop=True))

    def without_users(self, users: pd.DataFrame) -> CooccurrenceTrainer:
        """The same trainer leaving out every context of ``users`` (``user_id``) as well."""
        users = users[["user_id"]].astype(str)
        both = users if self.exclude_users is None else pd.concat([self.exclude_users, users])
        return replace(self, exclude_users=both.drop_duplicates().reset_index(drop=True))

    def fit(
        self, stored: Callable[[str], CooccurrenceVectors | None] | None = None
    ) -> CooccurrenceVectors:
        """Write the corpus to a temporary file and train on it.

        ``stored`` maps a version (corpus and config) to vectors already fitted for it, or None:
        the same corpus is then not trained again.
        """
        with tempfile.TemporaryDirectory(prefix="cooccurrence-") as folder:
            with self.connect() as con:
                corpus = write_corpus(
                    con,
                    self.cutoff,
                    Path(folder) / "corpus.txt",
                    self.config,
                    self.exclude,
                    self.exclude_users,
                )
            found = stored(cooccurrence_version(corpus.digest, self.config)) if stored else None
            if found is not None:
                return found
            vectors = fit_on_corpus(corpus, self.config)
        logger.info(
            "co-occurrence vectors: %d artists from %s", len(vectors), vectors.stats["contexts"]
        )
        return vectors

    def fit_for(self, pairs: pd.DataFrame | None) -> CooccurrenceVectors:
        """Vectors fitted without ``pairs`` (a holdout's test or validation rows)."""
        return self.without(pairs).fit()
