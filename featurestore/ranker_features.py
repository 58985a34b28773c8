"""The learned ranker's user and item features in Feast: written as snapshots, read back
point-in-time to train and online to serve.

``recommend.ranker.user_features`` / ``item_features`` compute the features (the one definition;
their names are the columns of the views ``user_ranking_features`` / ``item_ranking_features`` in
:mod:`featurestore.schemas`). Each week two snapshots are written:

- the **serving** snapshot, stamped at the week's cutoff: every user's features over the history
  before the cutoff, every catalog item's; materialised to the online store, where
  ``discover_weekly`` reads them (:class:`OnlineRankingFeatures`);
- the **training** snapshot, stamped :data:`TRAINING_OFFSET` before the cutoff: the features
  over the validation split's training rows (its held-out plays are that moment's future);
  ``blend_config`` trains the ranker on them, read with Feast's point-in-time join
  (:class:`PointInTimeRankingFeatures`), so training never sees a later value.

Example usage::

    client = FeatureStoreClient(repo, data_dir)
    write_snapshot(client, [user_features(history, novelty)], items_frame, as_of=cutoff)
    online = OnlineRankingFeatures(client)
    online.users(["2", "7"])          # index user_id, recommend.ranker.USER_FEATURES
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from featurestore.client import FeatureStoreClient
from featurestore.errors import FeatureStoreError
from featurestore.schemas import ARROW_SCHEMAS, EVENT_TIMESTAMP, TABLES
from featurestore.tables import SnapshotWriter, ranking_snapshot

USER_VIEW = "user_ranking_features"
ITEM_VIEW = "item_ranking_features"
TRAINING_OFFSET = pd.Timedelta(seconds=1)
"""How long before the week's cutoff the training snapshot is stamped."""


def training_as_of(cutoff: datetime) -> pd.Timestamp:
    """When the training snapshot of the week with this cutoff is stamped."""
    return pd.Timestamp(cutoff) - TRAINING_OFFSET


def write_snapshot(
    client: FeatureStoreClient,
    users: Iterable[pd.DataFrame],
    items: pd.DataFrame,
    as_of: datetime,
) -> dict[str, int]:
    """Replace the snapshot at ``as_of`` of both views (``users``: frames of
    ``recommend.ranker.user_features``, e.g. one per batch of users; ``items``: one
    ``item_features`` frame). Returns the rows written per view."""
    rows = {}
    with SnapshotWriter(client.parquet_path(USER_VIEW), USER_VIEW, as_of) as writer:
        for frame in users:
            writer.add(ranking_snapshot(frame, USER_VIEW, as_of))
        rows[USER_VIEW] = writer.rows
    with SnapshotWriter(client.parquet_path(ITEM_VIEW), ITEM_VIEW, as_of) as writer:
        writer.add(ranking_snapshot(items, ITEM_VIEW, as_of))
        rows[ITEM_VIEW] = writer.rows
    return rows


def publish_snapshot(client: FeatureStoreClient, as_of: datetime) -> dict[str, int]:
    """Materialise exactly the snapshot at ``as_of`` of both views to the online store."""
    start = pd.Timestamp(as_of).to_pydatetime()
    end = (pd.Timestamp(as_of) + pd.Timedelta(microseconds=1)).to_pydatetime()
    return client.materialize(start=start, end=end, views=[USER_VIEW, ITEM_VIEW]).entities


def serving_features(
    client: FeatureStoreClient, as_of: datetime
) -> OnlineRankingFeatures | PointInTimeRankingFeatures:
    """Where a week's ranker reads its features: the snapshot at ``as_of`` is published, then
    read online when the online store holds it, else (a backfilled week after a newer one: an
    online store keeps the newest value per key, Redis refuses an older write) from the offline
    store at ``as_of``, the same values. Raises when there is no snapshot at ``as_of``."""
    online = publish_snapshot(client, as_of)
    if not all(online.values()):
        raise FeatureStoreError(
            f"no ranking features as of {as_of} (rows published {online}): materialise "
            f"features/ranking_features for this week first"
        )
    return reader_for(client, as_of)


def reader_for(
    client: FeatureStoreClient, as_of: datetime
) -> OnlineRankingFeatures | PointInTimeRankingFeatures:
    """The online reader when the online store holds the snapshot at ``as_of`` (checked on one
    user of it), else the point-in-time reader at ``as_of``."""
    stamp = pd.Timestamp(as_of)
    probe = _one_key(client, USER_VIEW, stamp)
    feature = TABLES[USER_VIEW].feature_names[0]
    response = client.store.get_online_features(
        features=[f"{USER_VIEW}:{feature}"], entity_rows=[{"user_id": probe}]
    ).to_dict(include_event_timestamps=True)
    seconds = response[f"{feature}__ts"][0]
    if seconds == int(stamp.timestamp()):
        return OnlineRankingFeatures(client)
    return PointInTimeRankingFeatures(client, stamp)


def _one_key(client: FeatureStoreClient, view: str, as_of: pd.Timestamp) -> str:
    """A key of the view's snapshot at ``as_of``."""
    stamp = pa.scalar(as_of.to_pydatetime(), type=ARROW_SCHEMAS[view].field(EVENT_TIMESTAMP).type)
    dataset = ds.dataset(client.parquet_path(view), format="parquet")
    found = dataset.head(1, columns=[TABLES[view].key], filter=pc.field(EVENT_TIMESTAMP) == stamp)
    if found.num_rows == 0:
        raise FeatureStoreError(f"{view} holds no snapshot at {as_of}")
    return str(found.column(0)[0])


def _features(frame: pd.DataFrame, view: str) -> pd.DataFrame:
    table = TABLES[view]
    out = frame.drop_duplicates(table.key).set_index(table.key)[list(table.feature_names)]
    return out.astype(float)


class OnlineRankingFeatures:
    """The serving side: features from the Feast online store (the latest published snapshot)."""

    def __init__(self, client: FeatureStoreClient) -> None:
        self.client = client

    def _read(self, view: str, keys: Sequence[str]) -> pd.DataFrame:
        table = TABLES[view]
        frame = self.client.online_features(table.key, [str(k) for k in keys], view)
        return _features(frame, view)

    def users(self, user_ids: Sequence[str]) -> pd.DataFrame:
        return self._read(USER_VIEW, user_ids)

    def items(self, item_ids: Sequence[str]) -> pd.DataFrame:
        return self._read(ITEM_VIEW, item_ids)


class PointInTimeRankingFeatures:
    """The training side: features from the Feast offline store as of ``as_of`` (Feast's
    point-in-time join: the latest value at or before it, never a later one)."""

    def __init__(self, client: FeatureStoreClient, as_of: datetime) -> None:
        self.client = client
        self.as_of = pd.Timestamp(as_of)

    def _read(self, view: str, keys: Sequence[str]) -> pd.DataFrame:
        table = TABLES[view]
        entity_df = pd.DataFrame({table.key: [str(k) for k in keys], EVENT_TIMESTAMP: self.as_of})
        return _features(self.client.historical(entity_df, view), view)

    def users(self, user_ids: Sequence[str]) -> pd.DataFrame:
        return self._read(USER_VIEW, user_ids)

    def items(self, item_ids: Sequence[str]) -> pd.DataFrame:
        return self._read(ITEM_VIEW, item_ids)
