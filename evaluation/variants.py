"""The experiment's variants compared offline: each replayed on one holdout, with intervals.

:func:`replay_variants` does on a holdout what the weekly assets do on a week's history, once:
tune the blend (``blend_config``), fit the sources and the audio -> CF model (``cf_model``,
``audio_to_cf_model``); then it serves every test user's playlist with each variant
(:func:`recommend.variants.variant_serving` over one :class:`recommend.playlist.ServingWeek`,
through :func:`recommend.playlist.serve_users`, the function behind ``discover_weekly``). Every
variant is scored on every test user (paired, so differences are sharper than between the
disjoint groups a live split makes): NDCG@10 per user, novelty@30 (self-information of the
recommended items) and catalog coverage@30, each with a 95% percentile bootstrap interval over
users (:func:`recommend.variants.bootstrap_intervals`), and each variant's difference to the
control with its interval.

Example usage::

    split = holdout_split(listens, 0.2, seed=42)
    replay = replay_variants(split.train, split.test, parse_experiment(None), items=items)
    replay.wide().loc["wide_exploration", ["ndcg@10", "ndcg@10_ci_low", "ndcg@10_ci_high"]]
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from evaluation.metrics import item_popularity
from evaluation.served import DEFAULT_BATCH, playlist_rankings, replay_week
from recommend.blend import BlendConfig
from recommend.candidates import VectorTable
from recommend.errors import TooSmall
from recommend.history import PlayHistory
from recommend.playlist import (
    DiscoverWeeklyConfig,
    ServingWeek,
    serve_users,
    user_batches,
)
from recommend.social import SocialGraph
from recommend.variants import (
    DEFAULT_RESAMPLES,
    Experiment,
    UserMetrics,
    bootstrap_intervals,
    variant_serving,
)

if TYPE_CHECKING:
    from embeddings.cooccurrence import CooccurrenceTrainer
    from recommend.journeys import TransitionTrainer

logger = logging.getLogger(__name__)

NDCG = "ndcg@10"
COVERAGE = "coverage@30"
NOVELTY = "novelty@30"
REPLAY_METRICS = (NDCG, COVERAGE, NOVELTY)
METRIC_TITLES = {
    NDCG: "NDCG@10 (relevance)",
    COVERAGE: "catalog coverage@30",
    NOVELTY: "novelty@30 (bits)",
}


@dataclass
class VariantReplay:
    """The variants on one holdout.

    Attributes
    ----------
    table
        One row per (variant, metric): ``value``, ``ci_low``, ``ci_high`` and the difference to
        the control with its interval (``diff``, ``diff_ci_low``, ``diff_ci_high``).
    experiment
        What was compared.
    assigned
        How many test users the experiment's split routes to each variant.
    blend
        The blend the ``"tuned"`` variants served (tuned on the training split).
    users
        Test users every variant was scored on.
    seconds
        Wall time per step.
    """

    table: pd.DataFrame
    experiment: Experiment
    assigned: dict[str, int]
    blend: BlendConfig
    users: int
    seconds: dict[str, float] = field(default_factory=dict)

    def wide(self) -> pd.DataFrame:
        """Index variant; per metric the value and ``<metric>_ci_low``/``_ci_high`` columns."""
        columns: dict[str, pd.Series] = {}
        for metric in REPLAY_METRICS:
            rows = self.table[self.table["metric"] == metric].set_index("variant")
            columns[metric] = rows["value"]
            columns[f"{metric}_ci_low"] = rows["ci_low"]
            columns[f"{metric}_ci_high"] = rows["ci_high"]
        wide = pd.DataFrame(columns).reindex(self.experiment.names)
        wide.index.name = "variant"
        wide.insert(0, "share", [v.share for v in self.experiment.variants])
        return wide

    def intervals(self) -> dict[str, dict[str, dict[str, float]]]:
        """``{variant: {metric: {value, ci95: [low, high], diff?, diff_ci95?}}}`` (rounded)."""
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for row in self.table.itertuples(index=False):
            entry: dict[str, Any] = {
                "value": round(row.value, 4),
                "ci95": [round(row.ci_low, 4), round(row.ci_high, 4)],
            }
            if row.variant != self.experiment.control.name and "diff" in self.table:
                entry["diff_vs_control"] = round(row.diff, 4)
                entry["diff_ci95"] = [round(row.diff_ci_low, 4), round(row.diff_ci_high, 4)]
            out.setdefault(row.variant, {})[row.metric] = entry
        return out

    def markdown(self) -> str:
        """A table: one row per variant, ``value [low, high]`` per metric, and the differences
        to the control."""
        lines = []
        for variant in self.experiment.variants:
            rows = self.table[self.table["variant"] == variant.name].set_index("metric")
            cells = {"variant": variant.name, "share": f"{variant.share:g}"}
            for metric in REPLAY_METRICS:
                row = rows.loc[metric]
                cells[metric] = f"{row.value:.4f} [{row.ci_low:.4f}, {row.ci_high:.4f}]"
                if variant is not self.experiment.control and "diff" in rows:
                    cells[f"{metric} vs control"] = (
                        f"{row['diff']:+.4f} [{row.diff_ci_low:+.4f}, {row.diff_ci_high:+.4f}]"
                    )
            lines.append(cells)
        return pd.DataFrame(lines).fillna("").to_markdown(index=False)


def replay_variants(
    train: pd.DataFrame | PlayHistory,
    test: pd.DataFrame,
    experiment: Experiment,
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
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    cooccurrence: CooccurrenceTrainer | None = None,
    transitions: TransitionTrainer | None = None,
    social: SocialGraph | None = None,
) -> VariantReplay:
    """Every variant's served playlists for the test users, scored with bootstrap intervals.

    Parameters
    ----------
    train, test
        A holdout split of golden listens, as :func:`evaluation.served.evaluate_blend` takes.
    experiment
        The variants (:func:`recommend.variants.parse_experiment`); the first is the control.
    items, artist_terms, text_vectors, audio_vectors, config, week_start, tuning, blend
    cooccurrence, transitions, social
        As :func:`evaluation.served.evaluate_blend`: the blend is tuned once on ``train``
        (unless ``blend`` is fixed) and the sources fitted once, for every variant.
    batch_size
        Test users served at once (each variant serves the same batch).
    n_resamples, seed
        The bootstrap over users.

    Raises
    ------
    TooSmall
        Fewer than two test users.
    """
    config = config or DiscoverWeeklyConfig()
    test = test.astype({"user_id": str, "item_id": str})
    users = sorted(set(test["user_id"]))
    if len(users) < 2:
        raise TooSmall(f"{len(users)} test user(s): the variants need at least 2 to compare")
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
    plays, base, seconds = replay.plays, replay.serving, replay.seconds
    clock = time.perf_counter()
    rankings = _serve_variants(base, experiment, plays, users, batch_size)
    seconds["playlists"] = time.perf_counter() - clock
    clock = time.perf_counter()
    popularity = item_popularity(plays)
    metrics = {
        name: user_metrics(ranking, test, popularity, plays.catalog_size)
        for name, ranking in rankings.items()
    }
    table = bootstrap_intervals(
        metrics, reference=experiment.control.name, n_resamples=n_resamples, seed=seed
    )
    seconds["metrics"] = time.perf_counter() - clock
    assigned = experiment.assign(users).value_counts()
    return VariantReplay(
        table=table,
        experiment=experiment,
        assigned={name: int(assigned.get(name, 0)) for name in experiment.names},
        blend=replay.blend,
        users=len(users),
        seconds={name: round(value, 1) for name, value in seconds.items()},
    )


def _serve_variants(
    base: ServingWeek,
    experiment: Experiment,
    plays: PlayHistory,
    users: list[str],
    batch_size: int,
) -> dict[str, dict[str, list[str]]]:
    """``{variant: {user: served items in order}}``: every variant serves every test user."""
    servings = {v.name: variant_serving(base, v) for v in experiment.variants}
    rankings: dict[str, dict[str, list[str]]] = {name: {} for name in servings}
    for batch in user_batches(users, batch_size):
        history = plays.rows_of(batch)
        for name, serving in servings.items():
            rankings[name].update(playlist_rankings(serve_users(serving, history, batch)))
    return rankings


def user_metrics(
    ranking: Mapping[str, list[str]],
    test: pd.DataFrame,
    popularity: pd.Series,
    catalog_size: int,
) -> UserMetrics:
    """Per test user (sorted): NDCG@10, the self-information summed over the top 30 and its
    item count (novelty@30 = the ratio of their totals, as
    :func:`evaluation.metrics.novelty`), and the top-30 items (catalog coverage@30).

    A test user without a playlist counts as an empty list (NDCG 0), as in
    :func:`evaluation.metrics.ranking_metrics`. Items nobody played in train (brand-new
    tracks) count as novel as the rarest played item.
    """
    truth = {u: set(g) for u, g in test.groupby("user_id")["item_id"]}
    users = sorted(truth)
    shares = popularity.to_dict()
    floor = float(popularity.min()) if len(popularity) else 1.0
    discounts = 1.0 / np.log2(np.arange(2, 12))
    ndcg, info, counts, lists = [], [], [], []
    for user in users:
        top = list(ranking.get(user, []))[:30]
        relevant = truth[user]
        hits = np.array([item in relevant for item in top[:10]], dtype=bool)
        ideal = discounts[: min(10, len(relevant))].sum()
        ndcg.append(float(discounts[: len(hits)][hits].sum() / ideal))
        info.append(float(sum(-np.log2(shares.get(item) or floor) for item in top)))
        counts.append(len(top))
        lists.append(top)
    return UserMetrics(
        users=users,
        means={NDCG: np.asarray(ndcg)},
        ratios={NOVELTY: (np.asarray(info), np.asarray(counts, dtype=np.float64))},
        sets={COVERAGE: (lists, catalog_size)},
    )


def replay_chart_png(replay: VariantReplay) -> bytes:
    """One panel per metric: a bar per variant with its 95% interval as an error bar (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wide = replay.wide()
    names = list(wide.index)
    figure, axes = plt.subplots(1, len(REPLAY_METRICS), figsize=(3.2 * len(REPLAY_METRICS), 3.4))
    for axis, metric in zip(np.atleast_1d(axes), REPLAY_METRICS, strict=True):
        values = wide[metric].to_numpy()
        errors = np.vstack(
            [values - wide[f"{metric}_ci_low"].to_numpy(), wide[f"{metric}_ci_high"] - values]
        )
        axis.bar(names, values, yerr=np.clip(errors, 0, None), capsize=6, color="#4c72b0")
        axis.set_title(METRIC_TITLES[metric], fontsize=10)
        axis.tick_params(axis="x", labelrotation=20, labelsize=8)
        axis.grid(axis="y", alpha=0.3)
    figure.suptitle(f"{replay.experiment.name}: variants on the holdout (95% bootstrap)")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()
