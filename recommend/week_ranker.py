"""The week's learned ranker, trained and judged where the blend is tuned.

:func:`tune_week` carves one validation split from a week's history
(:func:`recommend.playlist.validation_week`), tunes the fusion on it
(:func:`recommend.playlist.tune_validation_blend`, the ``blend_config`` asset) and trains a
LambdaRank ranker over the same candidates (:func:`fit_week_ranker`, the ``playlist_ranker``
asset): on 75% of the validation users; on the other 25% ("choice users", never trained on)
the served lists (MMR, artist caps, exploration slots) of the ranker, for each value of the
discovery knob, are compared with the fusion's. The ranker serves only when a knob value keeps
at least the fusion's distinct items and novelty and leads its NDCG@10 by :data:`RANKER_MARGIN`
(a smaller lead on a few hundred users is noise); otherwise the fusion serves and the artifact
says why.

Example usage::

    blend, search, ranker = tune_week(history, items, config=config, artist_terms=terms)
    ranker.serves, ranker.choice.reason
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import pandas as pd

from evaluation.metrics import evaluate_ranking, item_popularity
from recommend.blend import BlendConfig, fuse
from recommend.candidates import played_items
from recommend.history import PlayHistory
from recommend.playlist import (
    DISCOVERY_FACTOR,
    DiscoverWeeklyConfig,
    ValidationWeek,
    check_listens,
    playlist_rankings,
    ranked_week,
    stage_playlists,
    tune_validation_blend,
    validation_week,
)
from recommend.ranker import (
    RankerChoice,
    RankingFeatureReader,
    WeekRanker,
    choose,
    fusion_serves,
    group_split,
    item_features,
    labels_of,
    ranking_features,
    train_ranker,
    user_features,
    vector_spaces,
)

logger = logging.getLogger(__name__)

# share of the validation users the ranker never trains on: its choice is made on them
CHOICE_FRACTION = 0.25
# the lead in NDCG@10 the ranker's served lists need over the fusion's on the choice users
# (on HetRec's ~470 choice users, a lead of 0.0007 reversed on test: noise)
RANKER_MARGIN = 0.005
NOVELTY_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5)
RANKER_POLICIES = ("auto", "always", "off")
# fewer validation users with a hit than this: no ranker (its early stopping and choice would
# rest on a handful of users)
MIN_LEARN_USERS = 30
METRICS = ("ndcg@10", "recall@30", "distinct@30", "novelty@30")


def validation_features(week: ValidationWeek) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The user and item features a validation week's ranker trains on (its training snapshot
    in Feast): the validation users over their training rows, the catalog over the split's
    statistics (the held-out plays count for neither)."""
    rows = check_listens(week.fit.rows_of(week.users))
    item_artist = dict(zip(week.items["item_id"], week.items["artist_id"], strict=True))
    statistics = week.statistics
    users = user_features(rows, statistics.novelty, item_artist)
    items = item_features(statistics.listeners, statistics.novelty, catalog=week.items["item_id"])
    return users, items


def _served_lists(week: ValidationWeek, candidates, blended, users, played) -> dict:
    ranked = ranked_week(candidates, blended, week.config, week.models, week.text, users)
    item_artist = dict(zip(week.items["item_id"], week.items["artist_id"], strict=True))
    frame = stage_playlists(ranked, "discover_weekly", played, item_artist, week.config.playlist)
    return playlist_rankings(frame)


def _measure(lists: dict, truth: pd.DataFrame, fit: PlayHistory, popularity) -> dict:
    row = evaluate_ranking(lists, truth, fit, ks=(10, 30), popularity=popularity)
    return {name: round(float(row[name]), 4) for name in METRICS}


def fit_week_ranker(
    week: ValidationWeek,
    blend: BlendConfig,
    *,
    seed: int = 42,
    margin: float = RANKER_MARGIN,
    inputs: str = "",
    store: RankingFeatureReader | None = None,
) -> WeekRanker:
    """Train the ranker on a :class:`ValidationWeek`'s candidates and choose ranker or fusion;
    ``store``: where the user and item features are read (the Feast offline store, point-in-time
    at the validation split; default: computed from the split's training rows)."""
    truth = week.split.test.astype({"user_id": str, "item_id": str})
    rows = check_listens(week.fit.rows_of(week.users))
    candidates = week.candidates
    statistics = week.statistics
    fused = fuse(candidates, blend, novelty=statistics.novelty)
    spaces = vector_spaces(week.text, week.audio, week.tags)
    sources = sorted(set(candidates["source"]) - {"new"})
    item_artist = dict(zip(week.items["item_id"], week.items["artist_id"], strict=True))
    features = ranking_features(
        candidates,
        rows,
        listeners=statistics.listeners,
        novelty=statistics.novelty,
        sources=sources,
        item_artist=item_artist,
        spaces=spaces,
        store=store,
        fused=fused,
    )
    labels = labels_of(features, truth)
    choice_users = group_split(week.users, CHOICE_FRACTION, seed)
    learn = ~features["user_id"].isin(choice_users).to_numpy()
    learners = features.loc[learn & (labels > 0), "user_id"].nunique()
    if learners < MIN_LEARN_USERS:
        return fusion_serves(
            f"{learners} validation users with a hit among their candidates to learn from "
            f"(a ranker needs {MIN_LEARN_USERS}): the fusion serves",
            inputs,
        )
    try:
        ranker = train_ranker(
            features[learn],
            labels[learn],
            sources=sources,
            spaces=list(spaces),
            fusion=True,
            seed=seed,
        )
    except ValueError as error:  # no validation hit to learn from
        return fusion_serves(str(error), inputs)
    users = sorted(choice_users)
    chosen = candidates[candidates["user_id"].isin(choice_users)]
    played = played_items(rows[rows["user_id"].isin(choice_users)])
    choice_truth = truth[truth["user_id"].isin(choice_users)]
    popularity = item_popularity(week.fit)
    fusion = _measure(
        _served_lists(week, chosen, fused[fused["user_id"].isin(choice_users)], users, played),
        choice_truth,
        week.fit,
        popularity,
    )
    choice_features = features[~learn]
    search = []
    for weight in NOVELTY_WEIGHTS:
        blended = ranker.rank(choice_features, chosen, novelty_weight=weight)
        lists = _served_lists(week, chosen, blended, users, played)
        search.append(
            {"novelty_weight": weight, **_measure(lists, choice_truth, week.fit, popularity)}
        )
    return _decide(ranker, search, fusion, margin, inputs, choice_features, len(users))


def _decide(ranker, search, fusion, margin, inputs, choice_features, users) -> WeekRanker:
    """The knob value with the best NDCG@10 among those that keep the fusion's discovery,
    then :func:`recommend.ranker.choose`."""
    fine = [
        row
        for row in search
        if row["distinct@30"] >= fusion["distinct@30"] and row["novelty@30"] >= fusion["novelty@30"]
    ]
    picked = max(fine or search, key=lambda row: (row["ndcg@10"], -row["novelty_weight"]))
    choice = choose(picked["ndcg@10"], fusion["ndcg@10"], margin=margin)
    figures = {}
    if not fine:
        choice = RankerChoice("fusion", choice.ranker_ndcg, choice.fusion_ndcg, margin)
        figures["reason"] = (
            "at no knob value do the ranker's lists keep the fusion's distinct items and "
            f"novelty on validation ({choice.reason.split(': ', 1)[1]}): the fusion serves"
        )
    figures |= {
        "choice_users": users,
        "fusion": fusion,
        "ranker": {k: v for k, v in picked.items() if k != "novelty_weight"},
        "knob_search": search,
        "keeps_fusion_discovery": bool(fine),
        "source_contribution": ranker.source_contribution(choice_features).round(4).to_dict(),
        "importance_gain": ranker.importance().round(1).head(15).to_dict(),
    }
    week_ranker = WeekRanker(ranker, picked["novelty_weight"], choice, figures, inputs)
    logger.info("playlist ranker: %s", week_ranker.choice.reason)
    return week_ranker


def tune_week(
    history: pd.DataFrame | PlayHistory,
    items: pd.DataFrame,
    *,
    config: DiscoverWeeklyConfig | None = None,
    methods: Sequence[str] = ("zscore", "rrf"),
    reference: str | None = "best",
    coverage_factor: float = DISCOVERY_FACTOR,
    ranker: str = "auto",
    seed: int = 42,
    inputs: str = "",
    training_features: Callable[[ValidationWeek], RankingFeatureReader] | None = None,
    **validation,
) -> tuple[BlendConfig, pd.DataFrame, WeekRanker]:
    """The week's blend and ranker from one validation split (``validation``: the keyword
    arguments of :func:`recommend.playlist.validation_week`).

    ``ranker``: ``"auto"`` (the ranker serves when it wins on the choice users), ``"always"``
    (a trained ranker serves whatever the verdict, e.g. for an A/B test; the metadata still
    shows the verdict) or ``"off"``. ``training_features``: given the validation week, where
    the ranker reads its user and item features (the Feast offline store, point-in-time)."""
    if ranker not in RANKER_POLICIES:
        raise ValueError(f"ranker must be one of {RANKER_POLICIES}, got {ranker!r}")
    week = validation_week(history, items, config=config, **validation)
    blend, search = tune_validation_blend(week, methods, reference, coverage_factor)
    if ranker == "off":
        return blend, search, fusion_serves("the learned ranker is switched off", inputs)
    store = training_features(week) if training_features is not None else None
    trained = fit_week_ranker(week, blend, seed=seed, inputs=inputs, store=store)
    if ranker == "always" and trained.ranker is not None and not trained.serves:
        trained = forced(trained)
    return blend, search, trained


def forced(trained: WeekRanker) -> WeekRanker:
    """The trained ranker serving although the fusion won on validation (``ranker="always"``)."""
    verdict = trained.figures.get("reason") or trained.choice.reason
    choice = RankerChoice(
        "ranker", trained.choice.ranker_ndcg, trained.choice.fusion_ndcg, trained.choice.margin
    )
    figures = {**trained.figures, "reason": f"forced by configuration (ranker=always); {verdict}"}
    return WeekRanker(trained.ranker, trained.novelty_weight, choice, figures, trained.inputs)
