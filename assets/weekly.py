"""What the weekly recommendation and evaluation assets share (helpers, not assets): the golden
tables a week reads, the playlist config of the week's CF sources, the recommender's audio
table, the co-occurrence trainer and the holdout every replay of the week is scored on."""

import dagster as dg
import pandas as pd

from embeddings.cooccurrence import CooccurrenceTrainer, CooccurrenceVectors
from embeddings.vectors import AudioEmbeddings
from orchestration.partitions import week_cutoff
from orchestration.resources import Warehouse
from recommend.history import USERS_IN, history_before
from recommend.journeys import TransitionModel, TransitionTrainer, read_journey_inputs
from recommend.models import SourceModels
from recommend.playlist import DiscoverWeeklyConfig
from recommend.social import SocialGraph, SocialSources

OWNER = "team:recsys"
# the golden tables a week's tuning and evaluation read: its history, catalogue and terms
WEEK_TABLES = [
    ["listening_weeks"],
    ["golden", "listen_events"],
    ["golden", "listens"],
    ["golden", "items"],
    ["golden", "artists"],
    ["golden", "artist_terms"],
]
# ... and what the replays of the week read besides: the co-occurrence contexts and the
# discoveries the transition model is refitted from (tag co-mentions and tag dates), and the
# friendships and tag assignments of the friends and own_tags sources
REPLAY_TABLES = [*WEEK_TABLES, ["golden", "tag_assignments"], ["golden", "friends"]]


def week_config(cf_model: SourceModels) -> DiscoverWeeklyConfig:
    """The playlist config with the served CF sources (for tuning and evaluation replays)."""
    return DiscoverWeeklyConfig(
        cf_models=cf_model.configs, exploration_model=cf_model.exploration_model
    )


def audio_table(audio_vectors: AudioEmbeddings, items: pd.DataFrame):
    """The recommender's audio vectors for track catalogs (None at artist level or empty)."""
    level = str(items["level"].iloc[0]) if len(items) else "artist"
    return audio_vectors.primary.as_table() if level == "track" else None


def cooccurrence_trainer(
    warehouse: Warehouse, context: dg.AssetExecutionContext, vectors: CooccurrenceVectors
) -> CooccurrenceTrainer | None:
    """The trainer behind the week's co-occurrence vectors, for refits without held-out rows."""
    return CooccurrenceTrainer.behind(
        vectors, lambda: warehouse.connect(read_only=True), week_cutoff(context)
    )


def social_graph(warehouse: Warehouse, cutoff: pd.Timestamp) -> SocialGraph | None:
    """The friendships and the tag assignments before ``cutoff`` behind the ``friends`` and
    ``own_tags`` sources, for a replay (None when the source has neither)."""
    if not warehouse.has_table("golden", "friends") and not _has_tags(warehouse):
        return None
    graph = SocialGraph(friendships(warehouse, None), tag_assignments(warehouse, cutoff, None))
    return None if graph.empty else graph


def social_sources(
    warehouse: Warehouse, items: pd.DataFrame, cutoff: pd.Timestamp, listeners: pd.Series
) -> SocialSources | None:
    """The week's ``friends`` and ``own_tags`` sources for serving: per user batch, its
    friendships, tag assignments and friends' plays are read from the warehouse; the artists'
    tag counts once (None when the source has neither table)."""
    if not warehouse.has_table("golden", "friends") and not _has_tags(warehouse):
        return None
    counts = pd.DataFrame(columns=["artist_id", "tag", "count"])
    if _has_tags(warehouse):
        counts = warehouse.read(
            f"SELECT artist_id, tag, count(*) AS count FROM golden.tag_assignments "
            f"WHERE {_BEFORE} GROUP BY ALL",
            [cutoff.to_pydatetime()],
        )
    return SocialSources(
        friends_of=lambda users: friendships(warehouse, users),
        tags_of=lambda users: tag_assignments(warehouse, cutoff, users),
        history_of=lambda users: history_before(warehouse, cutoff, users=users),
        tag_counts=counts,
        item_artist=dict(zip(items["item_id"], items["artist_id"], strict=True)),
        listeners=listeners,
    )


_BEFORE = "(ts IS NULL OR ts < ?)"


def _has_tags(warehouse: Warehouse) -> bool:
    return warehouse.has_table("golden", "tag_assignments")


def friendships(warehouse: Warehouse, users: list[str] | None) -> pd.DataFrame:
    """``user_id, friend_id`` (of ``users`` only when given)."""
    if not warehouse.has_table("golden", "friends"):
        return pd.DataFrame(columns=["user_id", "friend_id"])
    sql = "SELECT user_id, friend_id FROM golden.friends"
    if users is None:
        return warehouse.read(sql)
    return warehouse.read(f"{sql} WHERE {USERS_IN}", [[str(u) for u in users]])


def tag_assignments(
    warehouse: Warehouse, cutoff: pd.Timestamp, users: list[str] | None
) -> pd.DataFrame:
    """``user_id, artist_id, tag`` made before ``cutoff`` (of ``users`` only when given)."""
    if not _has_tags(warehouse):
        return pd.DataFrame(columns=["user_id", "artist_id", "tag"])
    sql = f"SELECT user_id, artist_id, tag FROM golden.tag_assignments WHERE {_BEFORE}"
    if users is None:
        return warehouse.read(sql, [cutoff.to_pydatetime()])
    return warehouse.read(
        f"{sql} AND {USERS_IN}", [cutoff.to_pydatetime(), [str(u) for u in users]]
    )


def transition_trainer(
    warehouse: Warehouse, context: dg.AssetExecutionContext, model: TransitionModel
) -> TransitionTrainer:
    """The trainer behind the week's transition model, for refits without held-out rows."""
    inputs = read_journey_inputs(warehouse, week_cutoff(context), model.config.max_clusters)
    return TransitionTrainer(inputs, model.config)


class HoldoutConfig(dg.Config):
    """The holdout carved from the week's history: a seeded share of each user's items, of at
    most ``max_users`` users (a seeded sample when there are more), served in batches of
    ``user_batch_size`` test users."""

    test_fraction: float = 0.2
    seed: int = 42
    max_users: int = 20_000
    user_batch_size: int = 2_000
