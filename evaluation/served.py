"""What is served, scored: the weekly pipeline replayed on a holdout.

:func:`evaluate_blend` tunes the blend (:func:`recommend.playlist.tune_week_blend`), fits the
sources (:func:`recommend.models.fit_sources`) and the audio -> CF model on the training split,
exactly as the weekly assets do on a week's history, then builds the test users' playlists with
:func:`recommend.playlist.build_discover_weekly` and scores every single source, every stage of
:data:`recommend.playlist.STAGES` and the served playlists.

Example usage::

    split = holdout_split(listens, 0.2, seed=42)
    table = evaluate_blend(split.train, split.test, artist_terms=terms)
    table.loc["discover_weekly", "ndcg@10"]
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from evaluation.metrics import evaluate_ranking, metrics_bar_chart
from recommend.blend import BlendConfig, source_rankings
from recommend.candidates import VectorTable
from recommend.models import fit_audio_to_cf, fit_sources
from recommend.playlist import (
    DiscoverWeeklyConfig,
    build_discover_weekly,
    check_items,
    check_listens,
    mmr_vectors,
    text_space,
    tune_week_blend,
)

logger = logging.getLogger(__name__)

EVALUATION_METRICS = (
    "ndcg@10",
    "ndcg@30",
    "recall@30",
    "coverage@30",
    "novelty@30",
    "diversity@30",
)


def _evaluation_items(train: pd.DataFrame, items: pd.DataFrame | None) -> pd.DataFrame:
    if items is not None:
        return check_items(items.assign(name=items.get("name", items["item_id"])))
    ids = sorted(set(train["item_id"]))
    return pd.DataFrame({"item_id": ids, "artist_id": ids, "name": ids})


def _default_week(listens: pd.DataFrame) -> pd.Timestamp:
    """The Monday after the last play (a fixed date when plays carry no times)."""
    if "last_ts" in listens and listens["last_ts"].notna().any():
        last = pd.Timestamp(listens["last_ts"].max()).tz_localize(None)
        return (last + pd.Timedelta(days=7 - last.weekday())).normalize()
    return pd.Timestamp("2026-01-05")


def evaluate_blend(
    train: pd.DataFrame,
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
) -> pd.DataFrame:
    """The served pipeline replayed on a holdout: each single source, each stage, the playlists.

    On ``train`` only, exactly as the weekly assets do on a week's history: tune the blend on a
    validation split carved from it (:func:`tune_week_blend`, the ``blend_config`` asset), fit
    the sources (:func:`recommend.models.fit_sources`, ``cf_model``), fit the audio -> CF model
    (``audio_to_cf_model``), then build the test users' playlists with
    :func:`build_discover_weekly` (``discover_weekly``). Every single source's candidates and
    every stage of :data:`STAGES` are scored against ``test`` with
    :func:`evaluation.metrics.evaluate_ranking`; the ``discover_weekly`` row is the served
    playlist.

    Parameters
    ----------
    train, test
        A holdout split (``evaluation.metrics.holdout_split``) of golden listens.
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
        Keyword arguments of :func:`recommend.playlist.tune_week_blend` (how the
        ``blend_config`` asset tuned the served blend: ``BlendChoice.tuning``); default its own.
    blend
        A fixed blend (as ``blend_config`` serves when weights are configured): no tuning.

    Returns
    -------
    pandas.DataFrame
        Index ``ranking``; columns :data:`EVALUATION_METRICS` and the rest of
        ``evaluate_ranking``'s. ``attrs``: ``blend_config``, ``tuning``, ``models_version``,
        ``week_start``, ``seconds`` and ``chart_png``.
    """
    config = config or DiscoverWeeklyConfig()
    train = check_listens(train)
    test = test.astype({"user_id": str, "item_id": str})
    item_table = _evaluation_items(train, items)
    week = pd.Timestamp(week_start) if week_start is not None else _default_week(train)
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    search = pd.DataFrame()
    if blend is None:
        blend, search = tune_week_blend(
            train,
            item_table,
            config=config,
            artist_terms=artist_terms,
            text_vectors=text_vectors,
            audio_vectors=audio_vectors,
            **dict(tuning or {}),
        )
    seconds["tuning"] = time.perf_counter() - clock
    clock = time.perf_counter()
    models, projector = _fit_as_the_graph_does(train, config, audio_vectors)
    seconds["fit"] = time.perf_counter() - clock
    clock = time.perf_counter()
    staged, candidates = build_discover_weekly(
        train,
        item_table,
        week_start=week,
        models=models,
        blend=blend,
        config=config,
        users=sorted(set(test["user_id"])),
        artist_terms=artist_terms,
        text_vectors=text_vectors,
        audio_vectors=audio_vectors,
        audio_projector=projector,
        stages=True,
        return_candidates=True,
    )
    seconds["playlists"] = time.perf_counter() - clock
    clock = time.perf_counter()
    rankings = source_rankings(candidates, max(30, config.playlist.size))
    for stage, frame in staged.items():
        rankings[stage] = playlist_rankings(frame)
    diversity = mmr_vectors(
        config,
        models,
        text_space(item_table, artist_terms, text_vectors, config.text_dim, config.seed),
    )
    table = _score(rankings, test, train, diversity)
    seconds["metrics"] = time.perf_counter() - clock
    table.attrs.update(
        blend_config=blend,
        tuning=search,
        models_version=models.version,
        week_start=str(week.date()),
        seconds={name: round(value, 1) for name, value in seconds.items()},
        chart_png=blend_chart_png(table),
    )
    logger.info("blend evaluation: %s", table[["ndcg@10", "recall@30"]].round(4).to_dict("index"))
    return table


def _fit_as_the_graph_does(
    train: pd.DataFrame, config: DiscoverWeeklyConfig, audio_vectors: VectorTable | None
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


def _score(rankings: dict, test: pd.DataFrame, train: pd.DataFrame, diversity) -> pd.DataFrame:
    """One row of metrics per ranking, the main metrics first, best NDCG@10 first."""
    rows = [
        {"ranking": label, **evaluate_ranking(r, test, train, ks=(10, 30), item_vectors=diversity)}
        for label, r in rankings.items()
    ]
    table = pd.DataFrame(rows).set_index("ranking")
    first = [m for m in EVALUATION_METRICS if m in table.columns]
    table = table[first + [c for c in table.columns if c not in first]]
    return table.sort_values("ndcg@10", ascending=False)


def playlist_rankings(playlists: pd.DataFrame) -> dict[str, list[str]]:
    """``{user_id: item ids in playlist order}`` of a playlist frame."""
    ordered = playlists.sort_values(["user_id", "position"], kind="mergesort")
    return {user: list(group) for user, group in ordered.groupby("user_id")["item_id"]}


def blend_chart_png(
    table: pd.DataFrame, metrics: Sequence[str] = ("ndcg@10", "ndcg@30", "recall@30", "coverage@30")
) -> bytes:
    """A grouped bar chart (PNG bytes) of the blend vs single sources."""
    present = [m for m in metrics if m in table.columns]
    return metrics_bar_chart(table, present, title="Discover Weekly: blend vs single sources")
