"""What is served, scored: the weekly pipeline replayed on a holdout.

:func:`evaluate_blend` tunes the blend (:func:`recommend.week_ranker.tune_week`), fits the
sources (:func:`recommend.models.fit_sources`) and the audio -> CF model on the training split,
exactly as the weekly assets do on a week's history, then builds the test users' playlists with
:func:`recommend.playlist.serve_users` (what ``discover_weekly`` serves, in user batches) and
scores every single source, every stage of :data:`recommend.playlist.STAGES` and the served
playlists.

Example usage::

    split = holdout_split(listens, 0.2, seed=42)
    table = evaluate_blend(split.train, split.test, artist_terms=terms)
    table.loc["discover_weekly", "ndcg@10"]
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from embeddings.cf import Interactions
from embeddings.cooccurrence import CooccurrenceTrainer
from evaluation.metrics import evaluate_ranking, item_popularity, metrics_bar_chart
from recommend.blend import BlendConfig, source_rankings
from recommend.candidates import VectorTable
from recommend.history import PlayHistory
from recommend.journeys import TransitionTrainer
from recommend.models import SourceModels, fit_audio_to_cf, fit_sources
from recommend.playlist import (
    STAGES,
    DiscoverWeeklyConfig,
    ServingWeek,
    check_items,
    check_listens,
    mmr_vectors,
    playlist_rankings,
    serve_users,
    text_space,
    user_batches,
)
from recommend.ranker import WeekRanker
from recommend.social import SocialGraph, replay_sources
from recommend.week_ranker import tune_week

logger = logging.getLogger(__name__)

# test users whose candidates and playlists are built at once
DEFAULT_BATCH = 2_000
EVALUATION_METRICS = (
    "ndcg@10",
    "ndcg@30",
    "recall@30",
    "coverage@30",
    "novelty@30",
    "diversity@30",
)


def _evaluation_items(train: PlayHistory, items: pd.DataFrame | None) -> pd.DataFrame:
    if items is not None:
        return check_items(items.assign(name=items.get("name", items["item_id"])))
    ids = train.item_ids
    return pd.DataFrame({"item_id": ids, "artist_id": ids, "name": ids})


def _default_week(listens: pd.DataFrame | PlayHistory) -> pd.Timestamp:
    """The Monday after the last play (a fixed date when plays carry no times)."""
    if isinstance(listens, PlayHistory):
        last = listens.last_play
    elif "last_ts" in listens and listens["last_ts"].notna().any():
        last = pd.Timestamp(listens["last_ts"].max())
    else:
        last = None
    if last is None:
        return pd.Timestamp("2026-01-05")
    last = pd.Timestamp(last).tz_localize(None)
    return (last + pd.Timedelta(days=7 - last.weekday())).normalize()


@dataclass
class ReplayedWeek:
    """A week's models and serving inputs rebuilt on a holdout's training split, as the weekly
    assets build them on the week's history (:func:`replay_week`)."""

    plays: PlayHistory
    items: pd.DataFrame
    week: pd.Timestamp
    blend: BlendConfig
    search: pd.DataFrame
    models: SourceModels
    serving: ServingWeek
    seconds: dict[str, float] = field(default_factory=dict)
    ranker: WeekRanker | None = None


MAIN_MIN_ITEMS = 5
LIGHT_MAX_ITEMS = 3
HOLDOUT_MIN_ITEMS = 2


def user_segments(listens: pd.DataFrame, train: pd.DataFrame) -> dict[str, set[str]]:
    """The users scored apart: ``main``, those with :data:`MAIN_MIN_ITEMS`+ items (the usual
    population of a per-user holdout), and ``light``, those left with at most
    :data:`LIGHT_MAX_ITEMS` training items (a holdout over users with
    :data:`HOLDOUT_MIN_ITEMS`+ items holds one of theirs out), whom popularity is the bar for."""
    sizes = listens.groupby("user_id").size()
    train_sizes = train.groupby("user_id").size()
    return {
        "main": set(sizes.index[sizes >= MAIN_MIN_ITEMS].astype(str)),
        "light": set(train_sizes.index[train_sizes <= LIGHT_MAX_ITEMS].astype(str)),
    }


def replay_week(
    train: pd.DataFrame | PlayHistory,
    test: pd.DataFrame,
    *,
    items: pd.DataFrame | None = None,
    artist_terms: pd.DataFrame | None = None,
    text_vectors: VectorTable | None = None,
    audio_vectors: VectorTable | None = None,
    config: DiscoverWeeklyConfig | None = None,
    week_start: str | pd.Timestamp | None = None,
    tuning: Mapping[str, Any] | None = None,
    blend: BlendConfig | None = None,
    cooccurrence: CooccurrenceTrainer | None = None,
    transitions: TransitionTrainer | None = None,
    social: SocialGraph | None = None,
) -> ReplayedWeek:
    """On ``train`` only, what the weekly assets do: tune the blend and train the ranker
    (``blend_config`` and ``playlist_ranker``, unless ``blend`` is fixed), fit the sources (``cf_model``), the audio -> CF model
    (``audio_to_cf_model``), the co-occurrence vectors and the transition model without the
    ``test`` rows (``cooccurrence_vectors``, ``transition_model``), and prepare the
    :class:`ServingWeek` that serves them.
    The arguments are :func:`evaluate_blend`'s."""
    config = config or DiscoverWeeklyConfig()
    week = pd.Timestamp(week_start) if week_start is not None else _default_week(train)
    plays = (
        train
        if isinstance(train, PlayHistory)
        else PlayHistory.from_frame(check_listens(train), week)
    )
    item_table = _evaluation_items(plays, items)
    content = dict(
        artist_terms=artist_terms, text_vectors=text_vectors, audio_vectors=audio_vectors
    )
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    search = pd.DataFrame()
    ranker = None
    trainer = cooccurrence.without(test) if cooccurrence is not None else None
    item_artist = dict(zip(item_table["item_id"], item_table["artist_id"], strict=True))
    graph = social.without(test, item_artist) if social is not None else None
    if blend is None:
        blend, search, ranker = tune_week(
            plays,
            item_table,
            config=config,
            cooccurrence=trainer,
            social=graph,
            **content,
            **dict(tuning or {}),
        )
    seconds["tuning"] = time.perf_counter() - clock
    clock = time.perf_counter()
    models, projector = _fit_as_the_graph_does(plays.interactions, config, audio_vectors)
    cooccurrence_vectors = trainer.fit().candidate_table() if trainer is not None else None
    journeys = transitions.without(test, item_artist).fit() if transitions is not None else None
    seconds["fit"] = time.perf_counter() - clock
    statistics = plays.statistics(week)
    serving = ServingWeek(
        item_table,
        week_start=week,
        statistics=statistics,
        models=models,
        blend=blend,
        config=config,
        audio_projector=projector,
        cooccurrence_vectors=cooccurrence_vectors,
        transitions=journeys,
        ranker=ranker,
        social=replay_sources(graph, None, plays, item_artist, statistics.listeners),
        **content,
    )
    return ReplayedWeek(plays, item_table, week, blend, search, models, serving, seconds, ranker)


def evaluate_blend(
    train: pd.DataFrame | PlayHistory,
    test: pd.DataFrame,
    *,
    items: pd.DataFrame | None = None,
    artist_terms: pd.DataFrame | None = None,
    text_vectors: VectorTable | None = None,
    audio_vectors: VectorTable | None = None,
    config: DiscoverWeeklyConfig | None = None,
    week_start: str | pd.Timestamp | None = None,
    tuning: Mapping[str, Any] | None = None,
    blend: BlendConfig | None = None,
    batch_size: int = DEFAULT_BATCH,
    cooccurrence: CooccurrenceTrainer | None = None,
    transitions: TransitionTrainer | None = None,
    segments: Mapping[str, Collection[str]] | None = None,
    social: SocialGraph | None = None,
) -> pd.DataFrame:
    """The served pipeline replayed on a holdout: each single source, each stage, the playlists.

    On ``train`` only, exactly as the weekly assets do on a week's history: tune the blend on a
    validation split carved from it (:func:`tune_week_blend`, the ``blend_config`` asset), fit
    the sources (:func:`recommend.models.fit_sources`, ``cf_model``), fit the audio -> CF model
    (``audio_to_cf_model``), then build the test users' playlists with
    :func:`recommend.playlist.serve_users` in batches (``discover_weekly``). Every single
    source's candidates and every stage of :data:`STAGES` are scored against ``test`` with
    :func:`evaluation.metrics.evaluate_ranking`; the ``discover_weekly`` row is the served
    playlist.

    Parameters
    ----------
    train, test
        A holdout split (``evaluation.metrics.holdout_split``) of golden listens; ``train`` may
        be a :class:`recommend.history.PlayHistory` (a sampled evaluation: everyone's plays but
        the test rows as a compact matrix, the sampled users' rows as a frame).
    items
        The catalog (``item_id, artist_id[, name]``); default: items are the artists of train.
    artist_terms, text_vectors, audio_vectors
        Content inputs as served (term vectors are built from ``artist_terms`` when no text
        vectors are given).
    config
        Sources, candidate counts and rules (what the served assets use).
    week_start
        The week the replayed playlists are for (default: the Monday after train's last play).
    tuning
        Keyword arguments of :func:`recommend.week_ranker.tune_week` (how the
        ``blend_config`` asset tuned the served blend: ``BlendChoice.tuning``); default its own.
    blend
        A fixed blend (as ``blend_config`` serves when weights are configured): no tuning.
    cooccurrence
        The trainer of the ``cooccurrence_vectors`` asset (optional source): the vectors are
        refitted on the same contexts without the test rows (and without the validation rows
        for tuning), as the asset fits them on the whole history.
    transitions
        The trainer of the ``transition_model`` asset (optional): refitted without the test
        rows, it fills the exploration slots one step outward, as served.
    batch_size
        Test users served at once: candidates and playlists are held for one batch, only the
        top-30 rankings of every user are kept.
    segments
        ``{name: user ids}``: the same table for these test users only (e.g. users with at most
        3 artists), in ``attrs["segments"][name]``.
    social
        Friendships and tag assignments (optional sources ``friends`` and ``own_tags``): the
        tag assignments on test pairs (and validation pairs for tuning) are left out.

    Returns
    -------
    pandas.DataFrame
        Index ``ranking``; columns :data:`EVALUATION_METRICS` and the rest of
        ``evaluate_ranking``'s (95% confidence bounds included). ``attrs``: ``blend_config``,
        ``tuning``, ``models_version``, ``week_start``, ``seconds``, ``chart_png`` and
        ``segments``.
    """
    config = config or DiscoverWeeklyConfig()
    test = test.astype({"user_id": str, "item_id": str})
    replay = replay_week(
        train,
        test,
        items=items,
        artist_terms=artist_terms,
        text_vectors=text_vectors,
        audio_vectors=audio_vectors,
        config=config,
        week_start=week_start,
        tuning=tuning,
        blend=blend,
        cooccurrence=cooccurrence,
        transitions=transitions,
        social=social,
    )
    plays, serving, seconds = replay.plays, replay.serving, replay.seconds
    models, blend, search, week = replay.models, replay.blend, replay.search, replay.week
    item_table = replay.items
    clock = time.perf_counter()
    k = max(30, config.playlist.size)
    by_source: dict[str, dict[str, list[str]]] = {}
    by_stage: dict[str, dict[str, list[str]]] = {stage: {} for stage in STAGES}
    for batch in user_batches(test["user_id"], batch_size):
        staged, candidates = serve_users(
            serving, plays.rows_of(batch), batch, stages=True, return_candidates=True
        )
        for source, ranking in source_rankings(candidates, k).items():
            by_source.setdefault(source, {}).update(ranking)
        for stage, frame in staged.items():
            by_stage[stage].update(playlist_rankings(frame))
    rankings = {source: by_source[source] for source in sorted(by_source)} | by_stage
    seconds["playlists"] = time.perf_counter() - clock
    clock = time.perf_counter()
    diversity = _with_new_items(
        mmr_vectors(
            config,
            models,
            text_space(item_table, artist_terms, text_vectors, config.text_dim, config.seed),
        ),
        serving,
    )
    table = _score(rankings, test, plays, diversity)
    segment_tables = {}
    for name, users in (segments or {}).items():
        members = set(map(str, users))
        rows = test[test["user_id"].isin(members)]
        if not rows.empty:  # every metric over the segment's lists only (coverage too)
            lists = {k: {u: r[u] for u in members if u in r} for k, r in rankings.items()}
            segment_tables[name] = _score(lists, rows, plays, diversity)
    seconds["metrics"] = time.perf_counter() - clock
    table.attrs.update(
        segments=segment_tables,
        ranker=ranker_summary(replay.ranker),
        blend_config=blend,
        tuning=search,
        models_version=models.version,
        week_start=str(week.date()),
        seconds={name: round(value, 1) for name, value in seconds.items()},
        chart_png=blend_chart_png(table),
    )
    logger.info("blend evaluation: %s", table[["ndcg@10", "recall@30"]].round(4).to_dict("index"))
    return table


def ranker_summary(ranker: WeekRanker | None) -> dict:
    """What the week's ranker decided and saw (JSON-ready; empty without a ranker)."""
    if ranker is None:
        return {}
    return {
        "serves": "ranker" if ranker.serves else "fusion",
        "reason": ranker.figures.get("reason", ranker.choice.reason),
        "novelty_weight": ranker.novelty_weight,
        "trees": ranker.ranker.best_iteration if ranker.ranker else 0,
        "train_seconds": round(ranker.ranker.train_seconds, 1) if ranker.ranker else 0.0,
        **{k: v for k, v in ranker.figures.items() if k != "reason"},
    }


def _with_new_items(vectors: VectorTable | None, serving: ServingWeek) -> VectorTable | None:
    """The diversity vectors plus the brand-new tracks' projected factors when the vectors are
    the factor model's (new tracks have no plays, hence no factors of their own)."""
    if vectors is None or serving.models is None or serving.models.explorer is None:
        return vectors
    new_items = serving.content()[1]
    explorer = serving.models.explorer
    if new_items is None or vectors[1] is not explorer.model.item_factors:
        return vectors
    ids = [*map(str, vectors[0]), *map(str, new_items[0])]
    matrix = np.vstack([np.asarray(vectors[1], dtype=np.float64), new_items[1]])
    return ids, matrix


def _fit_as_the_graph_does(
    train: pd.DataFrame | Interactions,
    config: DiscoverWeeklyConfig,
    audio_vectors: VectorTable | None,
):
    """The sources (``cf_model``) and the audio -> CF model (``audio_to_cf_model``) on train."""
    models = fit_sources(
        train,
        config.cf_models,
        exploration_model=config.exploration_model,
        num_threads=config.num_threads,
    )
    projector = (
        fit_audio_to_cf(models.explorer, audio_vectors)
        if audio_vectors is not None and models.explorer is not None
        else None
    )
    return models, projector


def _score(rankings: dict, test: pd.DataFrame, train: PlayHistory, diversity) -> pd.DataFrame:
    """One row of metrics per ranking, the main metrics first, best NDCG@10 first."""
    popularity = item_popularity(train)
    rows = [
        {
            "ranking": label,
            **evaluate_ranking(
                r, test, train, ks=(10, 30), item_vectors=diversity, popularity=popularity
            ),
        }
        for label, r in rankings.items()
    ]
    table = pd.DataFrame(rows).set_index("ranking")
    first = [m for m in EVALUATION_METRICS if m in table.columns]
    table = table[first + [c for c in table.columns if c not in first]]
    return table.sort_values("ndcg@10", ascending=False)


def blend_chart_png(
    table: pd.DataFrame, metrics: Sequence[str] = ("ndcg@10", "ndcg@30", "recall@30", "coverage@30")
) -> bytes:
    """A grouped bar chart (PNG bytes) of the blend vs single sources."""
    present = [m for m in metrics if m in table.columns]
    return metrics_bar_chart(table, present, title="Discover Weekly: blend vs single sources")
