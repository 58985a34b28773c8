"""Discover Weekly: candidates -> blend -> playlist rules, similar artists, CLI text.

:func:`build_discover_weekly` serves already fitted models (:mod:`recommend.models`, the
``cf_model`` asset) and a tuned blend (:func:`tune_week_blend`, the ``blend_config`` asset): it
ranks CF, text, audio, new-track, popularity and exploration candidates, fuses them
(:mod:`recommend.blend`), applies the playlist rules (:mod:`recommend.rerank`) and writes one
reason per item; it fits nothing. :func:`evaluation.served.evaluate_blend` replays these
functions on a holdout and scores each single source and each stage. :func:`playlist_text`
prints a stored playlist for the CLI.

Example usage::

    models = fit_sources(listens, DiscoverWeeklyConfig().cf_models)
    blend, _ = tune_week_blend(listens, items, artist_terms=terms)
    playlist = build_discover_weekly(listens, items, week_start="2026-11-16", models=models,
                                     blend=blend, artist_terms=terms)
    neighbours = similar_artists(listens, items, artist_terms=terms)
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from embeddings.cf import CF_PRESETS, CFConfig, fit_cf
from embeddings.cooccurrence import CooccurrenceTrainer
from embeddings.text import normalise_rows
from embeddings.vectors import top_k_indices
from evaluation.metrics import validation_split
from recommend.blend import (
    BlendConfig,
    fuse,
    tune_blend,
)
from recommend.candidates import (
    SocialCandidates,
    VectorTable,
    cold_start_candidates,
    empty_candidates,
    explain,
    generate_candidates,
    item_vectors_from_artists,
    played_items,
    tag_vectors,
    term_vectors,
)
from recommend.history import PlayHistory, WeekStatistics, sample_of
from recommend.journeys import TransitionModel, next_step_candidates
from recommend.models import (
    AudioProjector,
    SourceModels,
    fit_sources,
    project_new_items,
)
from recommend.ranker import RankingFeatureReader, WeekRanker, vector_spaces
from recommend.rerank import PlaylistConfig, VectorLookup, rerank
from recommend.social import SocialGraph, replay_sources

logger = logging.getLogger(__name__)

PLAYLIST_OUTPUT_COLUMNS = [
    "week_start",
    "user_id",
    "position",
    "item_id",
    "artist_id",
    "name",
    "score",
    "source",
    "reason",
]
SIMILAR_COLUMNS = ["artist_id", "rank", "similar_artist_id", "score", "reason"]
PLAYLIST_TABLE = "recommend.discover_weekly"


# the CF sources fitted by default: each is weighed into the blend on a validation split
DEFAULT_SOURCES = ("ease", "item_knn", "als", "rp3beta", "user_knn")


def _default_models() -> dict[str, CFConfig]:
    return {label: CF_PRESETS[label] for label in DEFAULT_SOURCES}


@dataclass(frozen=True)
class DiscoverWeeklyConfig:
    """Everything that shapes the weekly playlists.

    Parameters
    ----------
    cf_models
        ``{source label: CFConfig}`` of the CF sources; the ``exploration_model`` one must be a
        factor model (ALS/BPR): it drives exploration, new tracks and MMR vectors.
    candidates_per_source
        Candidates per user and source before blending.
    exploration_candidates
        Exploration pool per user.
    head_share
        Share of the most listened-to items exploration leaves out.
    blend
        Fusion weights and normalisation.
    playlist
        The playlist rules.
    text_dim
        Size of term vectors built from ``artist_terms`` when no text vectors are given.
    mmr_space
        ``"cf"`` (factor-model item vectors) or ``"text"`` for MMR similarity.
    exploration_model
        Key of ``cf_models`` used for exploration.
    num_threads
        Threads for implicit and BLAS.
    seed
        Seed of every random choice (term SVD, cold-start picks).
    """

    cf_models: Mapping[str, CFConfig] = field(default_factory=_default_models)
    candidates_per_source: int = 100
    exploration_candidates: int = 30
    head_share: float = 0.1
    blend: BlendConfig = field(default_factory=BlendConfig)
    playlist: PlaylistConfig = field(default_factory=PlaylistConfig)
    text_dim: int = 128
    mmr_space: str = "cf"
    exploration_model: str = "als"
    num_threads: int = 2
    seed: int = 42

    def __post_init__(self) -> None:
        if self.mmr_space not in ("cf", "text"):
            raise ValueError(f"mmr_space must be 'cf' or 'text', got {self.mmr_space!r}")
        if not self.cf_models:
            raise ValueError("cf_models is empty; give at least one CF source")


# ---------------------------------------------------------------------------------- inputs
def _checked(
    frame: pd.DataFrame, required: tuple[str, ...], ids: tuple[str, ...], what: str
) -> pd.DataFrame:
    """A copy of ``frame`` with string ids, or a ValueError naming the missing columns."""
    missing = set(required) - set(frame.columns)
    if missing:
        raise ValueError(
            f"{what} frame lacks columns {sorted(missing)}; it needs {', '.join(required)} "
            f"(golden {what})"
        )
    out = frame.copy()
    for column in ids:
        out[column] = out[column].astype(str)
    return out


def check_items(items: pd.DataFrame) -> pd.DataFrame:
    out = _checked(items, ("item_id", "artist_id", "name"), ("item_id", "artist_id"), "items")
    return out.drop_duplicates("item_id")


def check_listens(listens: pd.DataFrame) -> pd.DataFrame:
    return _checked(listens, ("user_id", "item_id", "plays"), ("user_id", "item_id"), "listens")


def text_space(
    items: pd.DataFrame | None,
    artist_terms: pd.DataFrame | None,
    text_vectors: VectorTable | None,
    dim: int,
    seed: int,
) -> VectorTable | None:
    """Item-level text vectors: given artist vectors (or term vectors) mapped to items."""
    artist_vectors = text_vectors
    if artist_vectors is None and artist_terms is not None and not artist_terms.empty:
        artist_vectors = term_vectors(artist_terms, dim, seed=seed)
    if artist_vectors is None:
        return None
    if items is None:
        return artist_vectors
    return item_vectors_from_artists(items, artist_vectors)


def tag_space(
    items: pd.DataFrame | Mapping[str, str], artist_terms: pd.DataFrame | None
) -> VectorTable | None:
    """Item-level tag vectors (each item its artist's sparse TF-IDF tag vector,
    :func:`recommend.candidates.tag_vectors`): the ranker's tag overlap. ``items``: the
    ``item_id, artist_id`` frame or the ``{item_id: artist_id}`` map."""
    if artist_terms is None or artist_terms.empty:
        return None
    if not isinstance(items, pd.DataFrame):
        items = pd.DataFrame({"item_id": list(items), "artist_id": list(items.values())})
    return item_vectors_from_artists(items, tag_vectors(artist_terms))


# ---------------------------------------------------------------------------------- build
STAGES = ("blend", "mmr", "discover_weekly")
# what fills the exploration slots, in this order: brand-new tracks, one step outward from the
# user's recent artists (the transition model), the less popular tail close to their taste
EXPLORATION_PRIORITY = {"new": 1.0, "journey": 0.5, "exploration": 0.0}
EXPLORATION_SOURCES = tuple(EXPLORATION_PRIORITY)
# users with fewer items stay out of a holdout or validation split (evaluation.metrics)
MIN_SPLIT_ITEMS = 5
# the blend first beats the best single source's validation NDCG@10 by this share, then spends
# what is left on discovery. The goal is a lead of 0.01 NDCG@10 on unseen users at about 0.25,
# i.e. 4%; 5% leaves a margin for the step from validation to the served week (at 2% the
# tuning spent most of the lead on discovery: 2.65x EASE's distinct artists for a 2x goal)
ACCURACY_FLOOR = 0.05
# ... and aims at this many times that source's distinct items in playlist-length lists
# (the goal: twice EASE's, with a margin)
DISCOVERY_FACTOR = 2.2
STAGE_DESCRIPTIONS = {
    "blend": "raw blend (fused scores, no playlist rules)",
    "mmr": "after MMR and the artist cap (no exploration slots)",
    "discover_weekly": "after exploration slots: the served playlist",
}


@dataclass
class RankedWeek:
    """Candidates and their fusion for the users with history: the input of every stage."""

    candidates: pd.DataFrame
    blended: pd.DataFrame
    pool: pd.DataFrame
    vectors: VectorTable | VectorLookup | None
    users: list[str]


def _cached(cache: dict, key: tuple, build):
    if key not in cache:
        cache[key] = build()
    return cache[key]


def mmr_vectors(
    config: DiscoverWeeklyConfig, models: SourceModels, text: VectorTable | None
) -> VectorTable | None:
    if config.mmr_space == "text":
        return text
    explorer = models.explorer
    if explorer is None or explorer.model.item_factors is None:
        return text
    return explorer.item_ids, explorer.model.item_factors


def rank_week(
    listens: pd.DataFrame,
    models: SourceModels,
    *,
    blend: BlendConfig,
    config: DiscoverWeeklyConfig,
    users: list[str],
    catalog: set[str],
    item_artist: Mapping[str, str],
    week: pd.Timestamp,
    text: VectorTable | None = None,
    audio_vectors: VectorTable | None = None,
    new_items: VectorTable | None = None,
    artist_terms: pd.DataFrame | None = None,
    statistics: WeekStatistics | None = None,
    prepared: dict | None = None,
    cooccurrence: VectorTable | None = None,
    transitions: TransitionModel | None = None,
    ranker: WeekRanker | None = None,
    ranker_features: RankingFeatureReader | None = None,
    social: SocialCandidates | None = None,
) -> RankedWeek:
    """Candidates of every source from the served models, fused with the served blend (or
    ranked by the week's learned ranker when it won on validation: ``ranker.serves``, reading
    its user and item features from ``ranker_features``, the Feast online store, when given).

    ``listens`` may hold only ``users``' history when ``statistics`` come from the whole one:
    everything here is per user (a user's rows do not depend on who else is in the batch).
    """
    statistics = statistics or WeekStatistics.of(listens, week)
    prepared = {} if prepared is None else prepared
    candidates = generate_candidates(
        listens,
        models.fitted,
        text_vectors=text,
        audio_vectors=audio_vectors,
        cooccurrence_vectors=cooccurrence,
        new_item_vectors=new_items,
        artist_terms=artist_terms,
        item_artist=item_artist,
        users=users,
        catalog=catalog,
        n=config.candidates_per_source,
        exploration_n=config.exploration_candidates,
        head_share=config.head_share,
        week_start=week,
        exploration_model=models.exploration_model,
        listeners=statistics.listeners,
        prepared=prepared,
        social=social,
    )
    if transitions is not None:
        journeys = next_step_candidates(
            transitions,
            listens,
            item_artist,
            users,
            n=config.exploration_candidates,
            catalog=catalog,
            item_popularity=statistics.listeners,
        )
        candidates = pd.concat([candidates, journeys], ignore_index=True)
    # journey steps only fill exploration slots: they are not a source of the blend
    sources = candidates[candidates["source"] != "journey"]
    blended = fuse(sources, blend, novelty=statistics.novelty)
    if ranker is not None and ranker.serves:
        tags = _cached(prepared, "tags", lambda: tag_space(item_artist, artist_terms))
        blended = ranker.blend(
            sources,
            listens,
            statistics=statistics,
            item_artist=item_artist,
            spaces=vector_spaces(text, audio_vectors, tags),
            fused=blended,
            store=ranker_features,
        )
    return ranked_week(candidates, blended, config, models, text, users, prepared)


def ranked_week(
    candidates: pd.DataFrame,
    blended: pd.DataFrame,
    config: DiscoverWeeklyConfig,
    models: SourceModels,
    text: VectorTable | None,
    users: list[str],
    prepared: dict | None = None,
) -> RankedWeek:
    """The input of the playlist stages from candidates and any ranking of them (``fuse``'s
    columns): the exploration pool and the diversity vectors."""
    prepared = {} if prepared is None else prepared
    pool = candidates[candidates["source"].isin(EXPLORATION_SOURCES)]
    # brand-new items first, then one step outward (journeys), then the less popular tail
    pool = pool.assign(
        score=pool.groupby("user_id")["score"].rank(pct=True)
        + pool["source"].map(EXPLORATION_PRIORITY).astype(float)
    )
    vectors = mmr_vectors(config, models, text)
    if vectors is not None:
        vectors = _cached(prepared, ("mmr", id(vectors[1])), lambda: VectorLookup(vectors))
    return RankedWeek(candidates, blended, pool, vectors, users)


def playlist_rankings(playlists: pd.DataFrame) -> dict[str, list[str]]:
    """``{user_id: item ids in playlist order}`` of a playlist frame."""
    ordered = playlists.sort_values(["user_id", "position"], kind="mergesort")
    return {user: list(group) for user, group in ordered.groupby("user_id")["item_id"]}


def stage_playlists(
    ranked: RankedWeek,
    stage: str,
    played: Mapping[str, set[str]],
    item_artist: Mapping[str, str],
    rules: PlaylistConfig,
) -> pd.DataFrame:
    """The playlists after one stage of :data:`STAGES` (the last one is what is served)."""
    if stage not in STAGES:
        raise ValueError(f"stage {stage!r} is not one of {STAGES}")
    pool, vectors = ranked.pool, ranked.vectors
    if stage != "discover_weekly":
        pool = ranked.pool.iloc[0:0]
        rules = replace(rules, exploration_slots=0)
    if stage == "blend":
        rules = replace(rules, mmr_lambda=1.0, max_per_artist=rules.size)
        vectors = None
    return rerank(ranked.blended, pool, played, item_artist, vectors, rules, users=ranked.users)


def _cold_playlists(
    listeners: pd.Series,
    cold: list[str],
    item_artist: Mapping[str, str],
    config: DiscoverWeeklyConfig,
    rng: np.random.Generator,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Popularity and exploration picks for users without history: (playlists, candidates)."""
    if listeners.empty:
        raise ValueError(
            f"{len(cold)} users have no history and listens is empty: "
            "there is no popularity to start them with"
        )
    candidates = cold_start_candidates(
        listeners,
        cold,
        n=config.playlist.pool_size,
        exploration=config.playlist.exploration_slots,
        head_share=config.head_share,
        rng=rng,
    )
    pool = candidates[candidates["source"] == "exploration"]
    ranked = candidates[candidates["source"] != "exploration"]
    playlists = rerank(ranked, pool, {}, item_artist, None, config.playlist, users=cold)
    return playlists, candidates


def _concat(frames: Sequence[pd.DataFrame], empty: pd.DataFrame) -> pd.DataFrame:
    found = [f for f in frames if not f.empty]
    return pd.concat(found, ignore_index=True) if found else empty


def _explained(playlist: pd.DataFrame, week: pd.Timestamp, names: Mapping[str, str]):
    """The served columns: names, one reason per row, sorted by user and position."""
    playlist = playlist.copy()
    playlist["week_start"] = week.date()
    playlist["name"] = playlist["item_id"].map(names)
    playlist["reason"] = [
        explain(code, detail, names)
        for code, detail in zip(
            playlist.get("reason_code", []), playlist.get("reason_detail", []), strict=True
        )
    ]
    playlist = playlist[PLAYLIST_OUTPUT_COLUMNS].sort_values(["user_id", "position"])
    return playlist.reset_index(drop=True)


def _unknown_items(listens: pd.DataFrame, catalog: set[str]) -> None:
    unknown = set(listens["item_id"]) - catalog
    if unknown:
        raise ValueError(
            f"{len(unknown)} listened items are not in the items catalog, e.g. "
            f"{sorted(unknown)[:5]}; build items and listens from the same golden tables"
        )


def _catalog(listens: pd.DataFrame, items: pd.DataFrame, users: Sequence[str] | None) -> set:
    """The recommendable item ids, or a ValueError when the inputs cannot make playlists."""
    if listens.empty and not users:
        raise ValueError("listens is empty and no users were given: nobody to build for")
    catalog = set(items["item_id"])
    _unknown_items(listens, catalog)
    return catalog


def _require_models(models: SourceModels | None) -> None:
    if models is None:
        raise ValueError(
            "build_discover_weekly serves fitted models and fits none: pass "
            "models=recommend.models.fit_sources(listens, config.cf_models) (the cf_model asset)"
        )


class ServingWeek:
    """One week's serving inputs, prepared once; :func:`serve_users` serves a batch of users.

    Everything held here grows with items (catalog, names, vectors, per-item statistics, the
    models), not with users. The cold-start picks draw from one seeded generator user after
    user: serve the batches once, in user-id order, to get the playlists of one call on all.

    Parameters
    ----------
    items
        Golden items ``item_id, artist_id, name[, genre, level]``: the catalog.
    week_start
        The week the playlists are for.
    statistics
        Per-item statistics of the whole history (:class:`WeekStatistics`).
    models, blend, config, artist_terms, text_vectors, audio_vectors, audio_projector
        As in :func:`build_discover_weekly`.
    cooccurrence_vectors
        ``(artist_ids, matrix)`` co-occurrence vectors (the ``cooccurrence_vectors`` asset):
        the ``cooccurrence`` source (optional).
    transitions
        The week's transition model (the ``transition_model`` asset): exploration slots one
        step outward from the user's recent artists (optional).
    ranker
        The week's learned ranker (the ``playlist_ranker`` asset): it ranks the candidates
        instead of the fusion when it beat the fusion on validation (optional).
    ranker_features
        Where the ranker reads its user and item features (the Feast online store,
        ``featurestore.ranker_features.OnlineRankingFeatures``); default: computed from the
        batch's history and the statistics by the same definitions.
    social
        The ``friends`` and ``own_tags`` sources (:class:`recommend.social.SocialSources`,
        optional).
    """

    def __init__(
        self,
        items: pd.DataFrame,
        *,
        week_start: str | pd.Timestamp,
        statistics: WeekStatistics,
        models: SourceModels | None = None,
        blend: BlendConfig | None = None,
        config: DiscoverWeeklyConfig | None = None,
        artist_terms: pd.DataFrame | None = None,
        text_vectors: VectorTable | None = None,
        audio_vectors: VectorTable | None = None,
        audio_projector: AudioProjector | None = None,
        cooccurrence_vectors: VectorTable | None = None,
        transitions: TransitionModel | None = None,
        ranker: WeekRanker | None = None,
        ranker_features: RankingFeatureReader | None = None,
        social: SocialCandidates | None = None,
    ) -> None:
        self.config = config or DiscoverWeeklyConfig()
        self.ranker = ranker
        self.ranker_features = ranker_features
        self.social = social
        self.blend = blend or self.config.blend
        self.items = check_items(items)
        self.week = pd.Timestamp(week_start)
        self.statistics = statistics
        self.models = models
        self.artist_terms = artist_terms
        self.text_vectors = text_vectors
        self.audio_vectors = audio_vectors
        self.audio_projector = audio_projector
        self.cooccurrence_vectors = cooccurrence_vectors
        self._cooccurrence: VectorTable | None = None
        self.catalog = set(self.items["item_id"])
        self.item_artist = dict(zip(self.items["item_id"], self.items["artist_id"], strict=True))
        self.names = dict(zip(self.items["item_id"], self.items["name"].astype(str), strict=True))
        self.transitions = transitions
        if transitions is not None:  # journey reasons name the artist a step starts from
            artists = self.items["artist_id"].astype(str).unique()
            known = [a for a in artists if a in transitions]
            self.names = {a: transitions.name(a) for a in known} | self.names
        self.cold_rng = np.random.default_rng(self.config.seed)
        self.prepared: dict = {}
        self._content: tuple[VectorTable | None, VectorTable | None] | None = None

    def content(self) -> tuple[VectorTable | None, VectorTable | None]:
        """Item-level text vectors and brand-new tracks' projected factors (built once)."""
        if self._content is None:
            _require_models(self.models)
            config = self.config
            text = text_space(
                self.items, self.artist_terms, self.text_vectors, config.text_dim, config.seed
            )
            new_items = project_new_items(
                self.audio_projector, self.models.explorer, self.audio_vectors, self.catalog
            )
            self._content = (text, new_items)
        return self._content

    def cooccurrence(self) -> VectorTable | None:
        """Item-level co-occurrence vectors (each item gets its artist's; built once)."""
        if self._cooccurrence is None and self.cooccurrence_vectors is not None:
            self._cooccurrence = _artist_table_to_items(self.items, self.cooccurrence_vectors)
        return self._cooccurrence


def serve_users(
    serving: ServingWeek,
    listens: pd.DataFrame,
    users: Sequence[str],
    *,
    stages: bool = False,
    return_candidates: bool = False,
):
    """Playlists (and candidates) of one batch of users; ``listens`` holds their history.

    The result for a user depends on the user's own history, the models and the whole-history
    :class:`WeekStatistics` only, so serving users in batches gives the rows of one call on all
    (see :func:`build_discover_weekly` for the arguments and the output).
    """
    config = serving.config
    listens = check_listens(listens)
    _unknown_items(listens, serving.catalog)
    served = [str(u) for u in users]
    with_history = sorted(set(served) & set(listens["user_id"]))
    cold = sorted(set(served) - set(with_history))
    if with_history:
        _require_models(serving.models)
    played = played_items(listens)
    results: dict[str, list[pd.DataFrame]] = {stage: [] for stage in STAGES}
    candidate_frames: list[pd.DataFrame] = []
    with threadpool_limits(config.num_threads):
        if with_history:
            text, new_items = serving.content()
            ranked = rank_week(
                listens,
                serving.models,
                blend=serving.blend,
                config=config,
                users=with_history,
                catalog=serving.catalog,
                item_artist=serving.item_artist,
                week=serving.week,
                text=text,
                audio_vectors=serving.audio_vectors,
                new_items=new_items,
                artist_terms=serving.artist_terms,
                statistics=serving.statistics,
                prepared=serving.prepared,
                cooccurrence=serving.cooccurrence(),
                transitions=serving.transitions,
                ranker=serving.ranker,
                ranker_features=serving.ranker_features,
                social=serving.social,
            )
            candidate_frames.append(ranked.candidates)
            for stage in STAGES if stages else ("discover_weekly",):
                results[stage].append(
                    stage_playlists(ranked, stage, played, serving.item_artist, config.playlist)
                )
        if cold:
            playlists, candidates = _cold_playlists(
                serving.statistics.listeners, cold, serving.item_artist, config, serving.cold_rng
            )
            candidate_frames.append(candidates)
            for stage in STAGES:
                results[stage].append(playlists)
    empty = pd.DataFrame(columns=PLAYLIST_OUTPUT_COLUMNS)
    if stages:
        out = {stage: _concat(results[stage], empty) for stage in STAGES}
    else:
        out = _explained(_concat(results["discover_weekly"], empty), serving.week, serving.names)
    if return_candidates:
        return out, _concat(candidate_frames, empty_candidates())
    return out


@dataclass
class ServedTotals:
    """Running totals over served user batches (the ``discover_weekly`` metadata): counts per
    source and the distinct items shown (grows with items); nothing per user is kept."""

    rows: int = 0
    users: int = 0
    users_without_history: int = 0
    candidate_rows: int = 0
    items: set[str] = field(default_factory=set)
    sources: Counter = field(default_factory=Counter)
    candidate_sources: Counter = field(default_factory=Counter)

    def add(
        self,
        users: Sequence[str],
        history: pd.DataFrame,
        playlists: pd.DataFrame,
        candidates: pd.DataFrame,
    ) -> None:
        self.rows += len(playlists)
        self.users += int(playlists["user_id"].nunique())
        self.users_without_history += len(set(map(str, users)) - set(history["user_id"]))
        self.candidate_rows += len(candidates)
        self.items.update(playlists["item_id"])
        self.sources.update(playlists["source"].value_counts().to_dict())
        self.candidate_sources.update(candidates["source"].value_counts().to_dict())


def user_batches(users: Iterable[str], batch_size: int) -> Iterator[list[str]]:
    """Consecutive batches of the sorted distinct ``users`` (the order :class:`ServingWeek`
    serves them in)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    ordered = sorted({str(u) for u in users})
    for start in range(0, len(ordered), batch_size):
        yield ordered[start : start + batch_size]


def build_discover_weekly(
    listens: pd.DataFrame,
    items: pd.DataFrame,
    *,
    week_start: str | pd.Timestamp,
    models: SourceModels | None = None,
    blend: BlendConfig | None = None,
    config: DiscoverWeeklyConfig | None = None,
    users: Sequence[str] | None = None,
    artist_terms: pd.DataFrame | None = None,
    text_vectors: VectorTable | None = None,
    audio_vectors: VectorTable | None = None,
    audio_projector: AudioProjector | None = None,
    stages: bool = False,
    return_candidates: bool = False,
    statistics: WeekStatistics | None = None,
    batch_size: int | None = None,
    cooccurrence_vectors: VectorTable | None = None,
):
    """Weekly playlists from already fitted models: ``config.playlist.size`` never-played items
    per user, each with a reason. Nothing is fitted here.

    Parameters
    ----------
    listens
        Golden listens ``user_id, item_id, plays[, first_ts, last_ts]``: the history before
        ``week_start`` that ``models`` were fitted on.
    items
        Golden items ``item_id, artist_id, name[, genre, level]``: the catalog.
    week_start
        The week the playlists are for (a date).
    models
        The fitted CF sources (:func:`recommend.models.fit_sources`; the ``cf_model`` asset).
        Required when any served user has history.
    blend
        Fusion weights and normalisation (the ``blend_config`` asset); default ``config.blend``.
    config
        Candidate counts and playlist rules (default :class:`DiscoverWeeklyConfig`).
    users
        Users to serve (default: everyone in ``listens``); users without history get
        popularity and exploration picks.
    artist_terms
        ``artist_id, term, weight``: ``described_as`` reasons, and term vectors when no
        ``text_vectors`` are given.
    text_vectors
        ``(artist_ids, matrix)`` sentence vectors (the ``text_vectors`` asset; optional).
    audio_vectors
        ``(item_ids, matrix)`` audio embeddings of tracks (optional).
    audio_projector
        The audio -> CF model (``audio_to_cf_model``): tracks with audio but no plays are
        placed in the factor space as ``new this week``.
    cooccurrence_vectors
        ``(artist_ids, matrix)`` co-occurrence vectors (the ``cooccurrence_vectors`` asset;
        optional): candidates "often played alongside" what the user played.
    stages
        Return ``{stage: playlists}`` for every stage of :data:`STAGES` (unexplained, for
        evaluation) instead of the served playlists.
    return_candidates
        Also return the per-source candidates the playlists were blended from.
    statistics
        Per-item statistics of the whole history (default: computed from ``listens``); give
        them when ``listens`` holds only the served users' history.
    batch_size
        Serve the users in batches of this many (sorted by id) through :func:`serve_users`:
        the same rows as one batch (the default), in batch order. The ``discover_weekly`` asset
        serves batches read from the warehouse the same way.

    Returns
    -------
    pandas.DataFrame or dict
        :data:`PLAYLIST_OUTPUT_COLUMNS` sorted by user and position (or the stages); with
        ``return_candidates``, a ``(playlists, candidates)`` pair.
    """
    config = config or DiscoverWeeklyConfig()
    started = time.perf_counter()
    listens, items = check_listens(listens), check_items(items)
    week = pd.Timestamp(week_start)
    _catalog(listens, items, users)
    served = sorted(set(listens["user_id"])) if users is None else [str(u) for u in users]
    if set(served) & set(listens["user_id"]):
        _require_models(models)
    serving = ServingWeek(
        items,
        week_start=week,
        statistics=statistics or WeekStatistics.of(listens, week),
        models=models,
        blend=blend,
        config=config,
        artist_terms=artist_terms,
        text_vectors=text_vectors,
        audio_vectors=audio_vectors,
        audio_projector=audio_projector,
        cooccurrence_vectors=cooccurrence_vectors,
    )
    if batch_size is None:
        out = serve_users(serving, listens, served, stages=stages, return_candidates=True)
    else:
        parts = [
            serve_users(
                serving,
                listens[listens["user_id"].isin(batch)],
                batch,
                stages=stages,
                return_candidates=True,
            )
            for batch in user_batches(served, batch_size)
        ]
        out = _combine(parts, stages)
    n_cold = len(set(served) - set(listens["user_id"]))
    logger.info(
        "discover weekly %s: %d users (%d cold) in %.1fs",
        week.date(),
        len(set(served)),
        n_cold,
        time.perf_counter() - started,
    )
    return out if return_candidates else out[0]


def _combine(parts: list[tuple], stages: bool) -> tuple:
    """The outputs of :func:`serve_users` on consecutive batches, as one output."""
    empty = pd.DataFrame(columns=PLAYLIST_OUTPUT_COLUMNS)
    candidates = _concat([p[1] for p in parts], empty_candidates())
    if stages:
        return {s: _concat([p[0][s] for p in parts], empty) for s in STAGES}, candidates
    return _concat([p[0] for p in parts], empty), candidates


def _artist_table_to_items(
    items: pd.DataFrame, artist_vectors: VectorTable | None
) -> VectorTable | None:
    return None if artist_vectors is None else item_vectors_from_artists(items, artist_vectors)


def tune_week_blend(
    history: pd.DataFrame | PlayHistory,
    items: pd.DataFrame,
    *,
    config: DiscoverWeeklyConfig | None = None,
    artist_terms: pd.DataFrame | None = None,
    text_vectors: VectorTable | None = None,
    audio_vectors: VectorTable | None = None,
    validation_fraction: float = 0.2,
    validation_seed: int = 7,
    methods: Sequence[str] = ("zscore", "rrf"),
    reference: str | None = "best",
    coverage_factor: float = DISCOVERY_FACTOR,
    max_users: int | None = None,
    cooccurrence: CooccurrenceTrainer | None = None,
) -> tuple[BlendConfig, pd.DataFrame]:
    """The blend for a week, tuned on a validation split carved from its history.

    The sources are fitted on the fitting part with :func:`recommend.models.fit_sources` (as
    the served ones are on the whole history), their candidates ranked for the validation users,
    and :func:`recommend.blend.tune_blend` picks weights and normalisation for NDCG@10 under a
    discovery goal: first at least the NDCG@10 of ``reference`` (``"best"``: the most accurate
    single source) plus :data:`ACCURACY_FLOOR`, then as close as possible to ``coverage_factor``
    times its distinct items in playlist-length lists and to its novelty (None: NDCG alone). The
    served list never trades its accuracy lead for discovery; where it has a lead, it spends it
    on discovery.

    Parameters
    ----------
    history
        The plays: a frame of everyone's, or a :class:`recommend.history.PlayHistory` (a
        seeded sample's rows and everyone's plays as a compact matrix,
        :func:`recommend.history.load_history`).
    max_users
        At most this many users are split for validation (a seeded sample by
        :func:`recommend.history.sample_key` of the users with enough items, when the history
        holds more): the candidates held at once follow it, not the number of users. The
        fitting part is everyone's plays but the validation rows. None: every user.
    cooccurrence
        The trainer of the ``cooccurrence_vectors`` asset: its vectors are refitted without the
        validation rows (and whatever the trainer already leaves out), so the co-occurrence
        source is tuned like the CF sources.

    Returns
    -------
    (BlendConfig, pandas.DataFrame)
        The tuned config and the search history.
    """
    week = validation_week(
        history,
        items,
        config=config,
        artist_terms=artist_terms,
        text_vectors=text_vectors,
        audio_vectors=audio_vectors,
        validation_fraction=validation_fraction,
        validation_seed=validation_seed,
        max_users=max_users,
        cooccurrence=cooccurrence,
    )
    return tune_validation_blend(week, methods, reference, coverage_factor)


def tune_validation_blend(
    week: ValidationWeek,
    methods: Sequence[str] = ("zscore", "rrf"),
    reference: str | None = "best",
    coverage_factor: float = DISCOVERY_FACTOR,
) -> tuple[BlendConfig, pd.DataFrame]:
    """:func:`recommend.blend.tune_blend` on a :class:`ValidationWeek` (see
    :func:`tune_week_blend`)."""
    config = week.config
    with threadpool_limits(config.num_threads):
        return tune_blend(
            week.candidates,
            week.split.test,
            methods=methods,
            rrf_k=config.blend.rrf_k,
            novelty=week.statistics.novelty,
            reference=reference,
            coverage_factor=coverage_factor,
            list_k=config.playlist.size,
            accuracy_floor=ACCURACY_FLOOR,
        )


@dataclass
class ValidationWeek:
    """A week's history split for validation: the sources fitted on the fitting part and the
    validation users' candidates (what the blend and the ranker are chosen on).

    Attributes
    ----------
    split
        ``train`` (the validation users' fitting rows among the sampled ones) and ``test``
        (their held-out rows).
    fit
        Everyone's plays but the held-out rows (:class:`recommend.history.PlayHistory`).
    models, statistics
        The sources and per-item statistics of the fitting part.
    users, candidates
        The validation users and their candidates of every source (no reasons).
    text, cooccurrence
        Item-level text and co-occurrence vectors the candidates were built with.
    audio, tags
        Item-level audio embeddings and tag vectors (:func:`tag_space`): with ``text``, the
        learned ranker's vector spaces (:func:`recommend.ranker.vector_spaces`).
    """

    config: DiscoverWeeklyConfig
    items: pd.DataFrame
    split: object
    fit: PlayHistory
    models: SourceModels
    statistics: WeekStatistics
    users: list[str]
    candidates: pd.DataFrame
    text: VectorTable | None
    cooccurrence: VectorTable | None
    audio: VectorTable | None = None
    tags: VectorTable | None = None


def validation_week(
    history: pd.DataFrame | PlayHistory,
    items: pd.DataFrame,
    *,
    config: DiscoverWeeklyConfig | None = None,
    artist_terms: pd.DataFrame | None = None,
    text_vectors: VectorTable | None = None,
    audio_vectors: VectorTable | None = None,
    validation_fraction: float = 0.2,
    validation_seed: int = 7,
    max_users: int | None = None,
    cooccurrence: CooccurrenceTrainer | None = None,
    social: SocialGraph | None = None,
) -> ValidationWeek:
    """Carve a validation split from a week's history, fit the sources on the rest and build
    the validation users' candidates (the arguments are :func:`tune_week_blend`'s)."""
    config = config or DiscoverWeeklyConfig()
    items = check_items(items)
    plays = (
        history
        if isinstance(history, PlayHistory)
        else PlayHistory.from_frame(check_listens(history))
    )
    rows = plays.rows
    if max_users is not None and rows["user_id"].nunique() > max_users:
        sizes = rows.groupby("user_id").size()
        chosen = sample_of(sizes.index[sizes >= MIN_SPLIT_ITEMS], max_users, validation_seed)
        rows = rows[rows["user_id"].isin(set(chosen))]
    split = validation_split(rows, validation_fraction, seed=validation_seed)
    fit = plays.after_split(split.train, split.test)
    models = fit_sources(
        fit.interactions,
        config.cf_models,
        exploration_model=config.exploration_model,
        num_threads=config.num_threads,
    )
    statistics = fit.statistics()
    validation_users = sorted(set(split.test["user_id"].astype(str)))
    cooccurrence_items = (
        None
        if cooccurrence is None
        else _artist_table_to_items(items, cooccurrence.fit_for(split.test).candidate_table())
    )
    text = text_space(items, artist_terms, text_vectors, config.text_dim, config.seed)
    item_artist = dict(zip(items["item_id"], items["artist_id"], strict=True))
    with threadpool_limits(config.num_threads):
        candidates = generate_candidates(
            check_listens(fit.rows_of(validation_users)),
            models.fitted,
            text_vectors=text,
            audio_vectors=audio_vectors,
            cooccurrence_vectors=cooccurrence_items,
            item_artist=item_artist,
            social=replay_sources(social, split.test, fit, item_artist, statistics.listeners),
            users=validation_users,
            catalog=set(items["item_id"]),
            n=config.candidates_per_source,
            exploration_n=config.exploration_candidates,
            head_share=config.head_share,
            explain=False,
            exploration_model=config.exploration_model,
            listeners=statistics.listeners,
        )
    return ValidationWeek(
        config,
        items,
        split,
        fit,
        models,
        statistics,
        validation_users,
        candidates,
        text,
        cooccurrence_items,
        audio_vectors,
        tag_space(items, artist_terms),
    )


# ---------------------------------------------------------------------------------- similar
def similar_artists(
    listens: pd.DataFrame,
    items: pd.DataFrame,
    *,
    artist_terms: pd.DataFrame | None = None,
    text_vectors: VectorTable | None = None,
    k: int = 20,
    cf_weight: float = 0.7,
    cf_config: CFConfig | None = None,
    text_dim: int = 128,
    seed: int = 42,
    num_threads: int = 2,
    batch_size: int = 1024,
) -> pd.DataFrame:
    """Top-``k`` similar artists per artist, blended from CF item-item and text similarity.

    ``score = cf_weight * cf_cosine + (1 - cf_weight) * text_cosine`` over the union of each
    side's neighbours (a missing side counts 0). The reason names the stronger side: shared
    listeners, or the terms both artists are described with.

    Parameters
    ----------
    listens, items
        Golden listens and items; listens are summed to artist level.
    artist_terms
        ``artist_id, term, weight``: text vectors (when ``text_vectors`` is None) and reasons.
    text_vectors
        ``(artist_ids, matrix)`` sentence vectors (optional).
    k
        Neighbours per artist.
    cf_weight
        Weight of the CF side in [0, 1].
    cf_config
        Item-item model (default item-kNN cosine, ``CF_PRESETS["item_knn"]``).

    Returns
    -------
    pandas.DataFrame
        :data:`SIMILAR_COLUMNS`, rank 1 = most similar.
    """
    if not 0.0 <= cf_weight <= 1.0:
        raise ValueError(f"cf_weight must be in [0, 1], got {cf_weight}")
    listens = check_listens(listens)
    items = check_items(items)
    artist_listens = (
        listens.merge(items[["item_id", "artist_id"]], on="item_id", how="inner")
        .groupby(["user_id", "artist_id"], as_index=False)["plays"]
        .sum()
        .rename(columns={"artist_id": "item_id"})
    )
    pairs: dict[tuple[str, str], list[float]] = {}
    with threadpool_limits(num_threads):
        if cf_weight > 0 and not artist_listens.empty:
            cf = fit_cf(
                artist_listens,
                cf_config or CF_PRESETS["item_knn"],
                num_threads=num_threads,
                compute_loss=False,
            )
            for row, artist in enumerate(cf.item_ids):
                neighbours, scores = cf.model.similar_items(row, n=k)
                for neighbour, score in zip(neighbours, scores, strict=True):
                    if np.isfinite(score) and score > 0:
                        pairs.setdefault((artist, cf.item_ids[neighbour]), [0.0, 0.0])[0] = float(
                            score
                        )
        text = text_vectors
        if text is None and artist_terms is not None and not artist_terms.empty:
            text = term_vectors(artist_terms, text_dim, seed=seed)
        if cf_weight < 1 and text is not None:
            ids = np.asarray([str(i) for i in text[0]], dtype=object)
            unit = normalise_rows(np.asarray(text[1], dtype=np.float32))
            top_n = min(k, len(ids) - 1)
            for start in range(0, len(ids), batch_size):
                block = unit[start : start + batch_size] @ unit.T
                block[np.arange(block.shape[0]), np.arange(start, start + block.shape[0])] = -np.inf
                if top_n <= 0:
                    break
                top = top_k_indices(block, top_n)
                for offset, row in enumerate(top):
                    artist = ids[start + offset]
                    for column in row:
                        score = float(block[offset, column])
                        if score > 0:
                            pairs.setdefault((artist, ids[column]), [0.0, 0.0])[1] = score
    if not pairs:
        return pd.DataFrame(columns=SIMILAR_COLUMNS)
    keys = np.array(list(pairs.keys()), dtype=object)
    values = np.array(list(pairs.values()))
    frame = pd.DataFrame(
        {
            "artist_id": keys[:, 0],
            "similar_artist_id": keys[:, 1],
            "cf": values[:, 0],
            "text": values[:, 1],
        }
    )
    frame["score"] = cf_weight * frame["cf"] + (1 - cf_weight) * frame["text"]
    frame = frame.sort_values(
        ["artist_id", "score", "similar_artist_id"], ascending=[True, False, True], kind="mergesort"
    )
    frame = frame.groupby("artist_id", sort=False).head(k).copy()
    frame["rank"] = frame.groupby("artist_id", sort=False).cumcount() + 1
    frame["reason"] = _similar_reasons(frame, artist_terms, cf_weight)
    return frame[SIMILAR_COLUMNS].reset_index(drop=True)


def _similar_reasons(
    frame: pd.DataFrame, artist_terms: pd.DataFrame | None, cf_weight: float
) -> list[str]:
    top_terms: dict[str, dict[str, float]] = {}
    if artist_terms is not None and not artist_terms.empty:
        for artist, group in artist_terms.groupby(artist_terms["artist_id"].astype(str)):
            top_terms[artist] = dict(zip(group["term"].astype(str), group["weight"], strict=True))
    reasons = []
    for artist, other, cf, text in zip(
        frame["artist_id"], frame["similar_artist_id"], frame["cf"], frame["text"], strict=True
    ):
        shared = set(top_terms.get(artist, {})) & set(top_terms.get(other, {}))
        terms = sorted(shared, key=lambda t: (-min(top_terms[artist][t], top_terms[other][t]), t))[
            :2
        ]
        if cf * cf_weight >= text * (1 - cf_weight) and cf > 0:
            reason = "played by the same listeners"
            if terms:
                reason += f"; both described as '{', '.join(terms)}'"
        elif terms:
            reason = f"both described as '{', '.join(terms)}'"
        else:
            reason = "similar descriptions"
        reasons.append(reason)
    return reasons


# ---------------------------------------------------------------------------------- CLI text
def _table_exists(connection, schema: str, table: str) -> bool:
    found = connection.execute(
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
        [schema, table],
    ).fetchone()
    return bool(found and found[0])


class PlaylistUnavailable(LookupError):
    """No playlist to show; the message says why and what to do."""


def _week_label(week: str) -> str:
    """The Monday of the week a ``YYYY-MM-DD`` date falls in (the week's one label)."""
    try:
        day = pd.to_datetime(week, format="%Y-%m-%d")
    except (ValueError, TypeError) as error:
        raise PlaylistUnavailable(f"--week {week!r} is not a date; use YYYY-MM-DD") from error
    return str((day - pd.Timedelta(days=day.weekday())).date())


def _connect_read_only(path: Path):
    import duckdb

    if not path.exists():
        raise PlaylistUnavailable(f"No warehouse at {path}: materialize the pipeline first.")
    try:
        return duckdb.connect(str(path), read_only=True)
    except duckdb.IOException as error:
        raise PlaylistUnavailable(
            f"The warehouse {path} is locked by a running pipeline step; retry when it ends."
        ) from error


def _user_weeks(connection, path: Path, user_id: str) -> list[str]:
    schema, table = PLAYLIST_TABLE.split(".")
    if not _table_exists(connection, schema, table):
        raise PlaylistUnavailable(
            f"No {PLAYLIST_TABLE} table in {path}: materialize the discover_weekly asset first."
        )
    weeks = [
        str(r[0])
        for r in connection.execute(
            f"select distinct cast(week_start as varchar) from {PLAYLIST_TABLE} "
            "where user_id = ? order by 1",
            [user_id],
        ).fetchall()
    ]
    if not weeks:
        examples = connection.execute(
            f"select distinct user_id from {PLAYLIST_TABLE} order by 1 limit 5"
        ).fetchall()
        raise PlaylistUnavailable(
            f"Unknown user {user_id!r}: no Discover Weekly playlist for them. "
            f"Users with playlists include {', '.join(str(r[0]) for r in examples)}."
        )
    return weeks


def _chosen_week(weeks: list[str], week: str | None, user_id: str) -> str:
    """The asked week (any day of it): its Monday, the playlist's week_start and partition."""
    if week is None:
        return weeks[-1]
    label = _week_label(week)
    if label in weeks:
        return label
    raise PlaylistUnavailable(
        f"No Discover Weekly for user {user_id!r} in the week of {label}; "
        f"weeks available: {', '.join(weeks)}."
    )


def playlist_text(warehouse_path: str | Path, user_id: str, week: str | None = None) -> str:
    """A user's Discover Weekly as a numbered list with reasons, from the warehouse.

    Parameters
    ----------
    warehouse_path
        The DuckDB file (opened read-only).
    user_id
        The user.
    week
        ``YYYY-MM-DD``: a day of the week the playlist is for (its ``week_start``, the
        Monday, is also its weekly partition key); default the user's latest week.

    Returns
    -------
    str
        The playlist.

    Raises
    ------
    PlaylistUnavailable
        With the reason: no warehouse or table yet, a locked warehouse, an unknown user, a bad
        or unknown week.
    """
    path = Path(warehouse_path)
    user_id = str(user_id)
    with _connect_read_only(path) as connection:
        chosen = _chosen_week(_user_weeks(connection, path, user_id), week, user_id)
        rows = connection.execute(
            f"select position, name, item_id, reason from {PLAYLIST_TABLE} where user_id = ? "
            "and cast(week_start as varchar) = ? order by position",
            [user_id, chosen],
        ).fetchall()
    lines = [f"Discover Weekly for user {user_id}, week of {chosen}"]
    for position, name, item_id, reason in rows:
        title = name if name not in (None, "") else item_id
        lines.append(f"{int(position):>2}. {title}  ({reason})")
    return "\n".join(lines)


def first_user_playlist_text(warehouse_path: str | Path) -> str:
    """The latest playlist of the first user (by id) in the warehouse; '' when there is none."""
    path = Path(warehouse_path)
    try:
        with _connect_read_only(path) as connection:
            schema, table = PLAYLIST_TABLE.split(".")
            if not _table_exists(connection, schema, table):
                return ""
            row = connection.execute(
                f"select user_id from {PLAYLIST_TABLE} order by user_id limit 1"
            ).fetchone()
        return "" if row is None else playlist_text(path, row[0])
    except PlaylistUnavailable:
        return ""
