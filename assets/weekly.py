"""What the weekly recommendation and evaluation assets share (helpers, not assets): the golden
tables a week reads, the playlist config of the week's CF sources, the recommender's audio
table, the co-occurrence trainer and the holdout every replay of the week is scored on."""

import dagster as dg
import pandas as pd

from embeddings.cooccurrence import CooccurrenceTrainer, CooccurrenceVectors
from embeddings.vectors import AudioEmbeddings
from orchestration.partitions import week_cutoff
from orchestration.resources import Warehouse
from recommend.journeys import TransitionModel, TransitionTrainer, read_journey_inputs
from recommend.models import SourceModels
from recommend.playlist import DiscoverWeeklyConfig
from recommend.social import SocialGraph

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


def social_graph(warehouse: Warehouse) -> SocialGraph | None:
    """The friendships and tag assignments behind the ``friends`` and ``own_tags`` sources
    (None when the source has neither)."""
    friends = _table_or_none(warehouse, "friends", ["user_id", "friend_id"])
    tagged = _table_or_none(warehouse, "tag_assignments", ["user_id", "artist_id", "tag"])
    graph = SocialGraph(friends, tagged)
    return None if graph.empty else graph


def _table_or_none(warehouse: Warehouse, table: str, columns: list[str]) -> pd.DataFrame:
    if not warehouse.has_table("golden", table):
        return pd.DataFrame(columns=columns)
    return warehouse.read(f"SELECT {', '.join(columns)} FROM golden.{table}")


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
