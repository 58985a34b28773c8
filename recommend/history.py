"""Point-in-time reads of the warehouse: what the models and playlists of a week may see.

The functions take any object with ``read(sql, params) -> DataFrame`` (the ``Warehouse``
resource, or a thin wrapper around a DuckDB connection). What grows with events stays in the
engine: per-item statistics of the whole history are computed in SQL
(:func:`week_statistics`), users are read in batches (:func:`history_batches`), a seeded
sample of users is drawn in SQL (:func:`sample_users`) and only their rows are loaded
(``history_before(..., users=...)``), and the CF matrix is built from integer codes the
warehouse computes (:func:`interactions_before`), never from a frame of string ids.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from embeddings.cf import Interactions
from recommend.blend import item_novelty
from recommend.candidates import item_listeners
from recommend.errors import TooSmall

RECENT_WEEKS = 4
USERS_IN = "user_id IN (SELECT unnest(?::VARCHAR[]))"


class Reader(Protocol):
    def read(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame: ...


def _has_events(warehouse: Reader) -> bool:
    return bool(warehouse.read("SELECT count(*) AS n FROM golden.listen_events")["n"].iloc[0])


def _history_sql(
    warehouse: Reader, cutoff: pd.Timestamp, users: Sequence[str] | None = None
) -> tuple[str, list[Any]]:
    """The history query (one row per user and item, unordered) and its parameters."""
    if _has_events(warehouse):
        where, params = "ts < ?", [cutoff.to_pydatetime()]
        if users is not None:
            where, params = f"{where} AND {USERS_IN}", [*params, [str(u) for u in users]]
        return (
            "SELECT user_id, item_id, sum(plays) AS plays, min(ts) AS first_ts, "
            f"max(ts) AS last_ts FROM golden.listen_events WHERE {where} GROUP BY ALL",
            params,
        )
    where, params = "", []
    if users is not None:
        where, params = f" WHERE {USERS_IN}", [[str(u) for u in users]]
    return f"SELECT user_id, item_id, plays, first_ts, last_ts FROM golden.listens{where}", params


def history_before(
    warehouse: Reader, cutoff: pd.Timestamp, users: Sequence[str] | None = None
) -> pd.DataFrame:
    """Plays per user and item before ``cutoff`` (all plays when the source has no times).

    ``users`` restricts the rows to those users (a user batch, an evaluation sample): the
    filter runs in the warehouse, the frame holds only their rows.
    """
    sql, params = _history_sql(warehouse, cutoff, users)
    return warehouse.read(f"{sql} ORDER BY user_id, item_id", params)


def display_items(warehouse: Reader) -> pd.DataFrame:
    """Golden items with display names: 'Title - Artist' for tracks, the artist's name else."""
    return warehouse.read(
        "SELECT i.item_id, i.artist_id, CASE WHEN i.level = 'track' AND a.name IS NOT NULL "
        "THEN i.name || ' - ' || a.name ELSE i.name END AS name, i.genre, i.level "
        "FROM golden.items i LEFT JOIN golden.artists a USING (artist_id) ORDER BY i.item_id"
    )


def artist_level(warehouse: Reader) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Listens and catalog at artist level (tracks folded into their artists)."""
    listens = warehouse.read(
        "SELECT l.user_id, i.artist_id AS item_id, sum(l.plays) AS plays "
        "FROM golden.listens l JOIN golden.items i USING (item_id) GROUP BY ALL ORDER BY 1, 2"
    )
    artists = warehouse.read(
        "SELECT artist_id AS item_id, artist_id, name, genre, 'artist' AS level "
        "FROM golden.artists ORDER BY 1"
    )
    return listens, artists


@dataclass(frozen=True)
class WeekStatistics:
    """What per-user serving needs from the *whole* history, per item (grows with items only).

    Attributes
    ----------
    listeners
        Distinct listeners per item over the four weeks before the week when plays carry times
        (:func:`recommend.candidates.item_listeners`), best first: popularity candidates, the
        exploration tail and cold starts.
    novelty
        ``-log2(share of users who played the item)`` (:func:`recommend.blend.item_novelty`):
        the blend's novelty pseudo-source.

    Computed from an in-memory history with :meth:`of`, or in the warehouse with
    :func:`week_statistics` (the same figures, without loading the plays).
    """

    listeners: pd.Series
    novelty: pd.Series

    @classmethod
    def of(cls, listens: pd.DataFrame, week_start: pd.Timestamp | str | None) -> WeekStatistics:
        listeners = (
            item_listeners(listens, week_start=week_start)
            if not listens.empty
            else pd.Series(dtype=float)
        )
        return cls(listeners, item_novelty(listens))


def _item_counts(
    warehouse: Reader, cutoff: pd.Timestamp, week_start: pd.Timestamp | None
) -> tuple[pd.DataFrame, int, pd.Timestamp | None]:
    """Per item (sorted ids): distinct ``listeners`` and ``recent`` listeners (last play in the
    :data:`RECENT_WEEKS` before ``week_start``); the number of users; the last play."""
    sql, params = _history_sql(warehouse, cutoff)
    end = _utc(week_start if week_start is not None else cutoff)
    window = [(end - pd.Timedelta(weeks=RECENT_WEEKS)).to_pydatetime(), end.to_pydatetime()]
    counts = warehouse.read(
        f"WITH h AS ({sql}) SELECT CAST(item_id AS VARCHAR) AS item_id, "
        "count(DISTINCT user_id) AS listeners, count(DISTINCT user_id) FILTER "
        "(WHERE last_ts >= ? AND last_ts < ?) AS recent FROM h GROUP BY 1 ORDER BY 1",
        [*params, *window],
    )
    totals = warehouse.read(
        f"WITH h AS ({sql}) SELECT count(DISTINCT user_id) AS n, max(last_ts) AS last FROM h",
        params,
    )
    last = totals["last"].iloc[0]
    counts["item_id"] = counts["item_id"].astype(str)
    counts = counts.astype({"listeners": np.int64, "recent": np.int64})
    return counts, int(totals["n"].iloc[0]), None if pd.isna(last) else pd.Timestamp(last)


def _utc(moment: pd.Timestamp | str) -> pd.Timestamp:
    moment = pd.Timestamp(moment)
    return moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")


def _statistics(counts: pd.DataFrame, users: int, recent: bool) -> WeekStatistics:
    """:class:`WeekStatistics` from per-item counts, exactly as :meth:`WeekStatistics.of`
    computes them from the plays (recent listeners when asked and there are any)."""
    present = counts[counts["listeners"] > 0]
    if present.empty:
        return WeekStatistics(pd.Series(dtype=float), pd.Series(dtype=float))
    ids = present["item_id"].to_numpy(dtype=object)
    novelty = pd.Series(
        -np.log2(present["listeners"].to_numpy(dtype=np.int64) / max(users, 1)),
        index=pd.Index(ids, name="item_id"),
        name="user_id",
    )
    column = "recent" if recent and counts["recent"].sum() > 0 else "listeners"
    chosen = counts.loc[counts[column] > 0, ["item_id", column]]
    chosen = chosen.rename(columns={column: "listeners"}).astype({"listeners": np.int64})
    chosen = chosen.sort_values(["listeners", "item_id"], ascending=[False, True])
    return WeekStatistics(chosen.set_index("item_id")["listeners"], novelty)


def week_statistics(
    warehouse: Reader, cutoff: pd.Timestamp, week_start: pd.Timestamp | None = None
) -> WeekStatistics:
    """:class:`WeekStatistics` of the history before ``cutoff``, computed in the warehouse:
    exactly ``WeekStatistics.of(history_before(warehouse, cutoff), week_start)``."""
    counts, users, _ = _item_counts(warehouse, cutoff, week_start)
    return _statistics(counts, users, week_start is not None)


def user_batches(warehouse: Reader, batch_size: int) -> Iterator[list[str]]:
    """The golden users in consecutive batches of ``batch_size``, in id order (keyset paging:
    one batch of ids in memory at a time)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    last: str | None = None
    while True:
        if last is None:
            frame = warehouse.read(
                "SELECT DISTINCT user_id FROM golden.users ORDER BY 1 LIMIT ?", [batch_size]
            )
        else:
            frame = warehouse.read(
                "SELECT DISTINCT user_id FROM golden.users WHERE user_id > ? ORDER BY 1 LIMIT ?",
                [last, batch_size],
            )
        if frame.empty:
            return
        users = frame["user_id"].astype(str).tolist()
        yield users
        last = users[-1]


def history_batches(
    warehouse: Reader, cutoff: pd.Timestamp, batch_size: int
) -> Iterator[tuple[list[str], pd.DataFrame]]:
    """``(users, their history before cutoff)`` per batch of golden users, in id order."""
    for users in user_batches(warehouse, batch_size):
        yield users, history_before(warehouse, cutoff, users=users)


def sample_key(user_id: str, seed: int) -> str:
    """The order a seeded user sample follows: ``md5('<seed>:<user_id>')`` (the same in SQL)."""
    return hashlib.md5(f"{seed}:{user_id}".encode()).hexdigest()


def sample_of(users: Sequence[str], max_users: int, seed: int) -> list[str]:
    """The first ``max_users`` of ``users`` by :func:`sample_key`, sorted (what
    :func:`sample_users` draws in the warehouse, drawn from a list)."""
    chosen = sorted({str(u) for u in users}, key=lambda u: (sample_key(u, seed), u))[:max_users]
    return sorted(chosen)


def sample_users(
    warehouse: Reader,
    cutoff: pd.Timestamp,
    max_users: int,
    *,
    seed: int = 42,
    min_items: int = 1,
) -> tuple[list[str] | None, int, int]:
    """A seeded sample of users with history before ``cutoff``, drawn in the warehouse.

    Returns
    -------
    (list of user ids or None, int, int)
        None when there are at most ``max_users`` users with history (every user is looked
        at); else the first ``max_users`` users with ``min_items`` items or more by
        :func:`sample_key` (sorted). Then the number of users with history and of those with
        ``min_items`` items or more.
    """
    if max_users < 1:
        raise ValueError(f"max_users must be >= 1, got {max_users}")
    sql, params = _history_sql(warehouse, cutoff)
    per_user = f"WITH h AS ({sql}) SELECT user_id, count(*) AS n FROM h GROUP BY 1"
    counts = warehouse.read(
        f"SELECT count(*) AS users, count(*) FILTER (WHERE n >= ?) AS eligible FROM ({per_user})",
        [min_items, *params],
    )
    users, eligible = int(counts["users"].iloc[0]), int(counts["eligible"].iloc[0])
    if users <= max_users:
        return None, users, eligible
    chosen = warehouse.read(
        f"SELECT user_id FROM ({per_user}) WHERE n >= ? "
        "ORDER BY md5(? || ':' || user_id), user_id LIMIT ?",
        [*params, min_items, str(seed), max_users],
    )
    return sorted(chosen["user_id"].astype(str)), users, eligible


@dataclass(frozen=True)
class PlayHistory:
    """A history as tuning and evaluation replay it, bounded by the users they look at.

    Attributes
    ----------
    interactions
        Everyone's raw plays (compact CSR, sorted ids): what the models are fitted on.
    rows
        The plays of the users looked at (``user_id, item_id, plays[, first_ts, last_ts]``):
        everyone's when ``complete``, else a seeded sample's (:func:`load_history`).
    counts
        Per item (sorted ids): distinct ``listeners`` and ``recent`` listeners (last play in the
        four weeks before ``week_start``), over everyone.
    users
        Users with plays (everyone).
    week_start
        The week the ``recent`` window ends at (None: no window).
    last_play
        The latest play (None without times).
    complete
        ``rows`` hold everyone's plays.
    """

    interactions: Interactions
    rows: pd.DataFrame
    counts: pd.DataFrame
    users: int
    week_start: pd.Timestamp | None = None
    last_play: pd.Timestamp | None = None
    complete: bool = True

    @classmethod
    def from_frame(
        cls, listens: pd.DataFrame, week_start: pd.Timestamp | str | None = None
    ) -> PlayHistory:
        """Everything from a frame of everyone's plays (``complete``)."""
        if listens.empty:
            raise TooSmall("listens frame is empty: nothing to split or evaluate")
        listens = listens.astype({"user_id": str, "item_id": str})
        items = listens["item_id"]
        listeners = listens.groupby(items)["user_id"].nunique()
        recent = pd.Series(0, index=listeners.index, dtype=np.int64)
        last_play = None
        if "last_ts" in listens.columns:
            stamps = pd.to_datetime(listens["last_ts"], utc=True, errors="coerce")
            last_play = None if stamps.isna().all() else stamps.max()
            if week_start is not None:
                end = _utc(week_start)
                mask = (stamps >= end - pd.Timedelta(weeks=RECENT_WEEKS)) & (stamps < end)
                mask = mask.to_numpy()
                recent = (
                    listens.loc[mask]
                    .groupby(items[mask])["user_id"]
                    .nunique()
                    .reindex(listeners.index, fill_value=0)
                )
        counts = pd.DataFrame(
            {
                "item_id": listeners.index.astype(str),
                "listeners": listeners.to_numpy(dtype=np.int64),
                "recent": recent.to_numpy(dtype=np.int64),
            }
        )
        return cls(
            Interactions.from_listens(listens),
            listens,
            counts,
            int(listens["user_id"].nunique()),
            None if week_start is None else pd.Timestamp(week_start),
            last_play,
            True,
        )

    def statistics(self, week_start: pd.Timestamp | str | None = None) -> WeekStatistics:
        """:class:`WeekStatistics` of everyone's plays: recent listeners for the history's
        ``week_start``, all-time listeners without one."""
        if week_start is not None and (
            self.week_start is None or _utc(week_start) != _utc(self.week_start)
        ):
            raise ValueError(
                f"this history counts recent listeners for the week of {self.week_start}, "
                f"not {week_start}; load it for that week"
            )
        return _statistics(self.counts, self.users, week_start is not None)

    def popularity(self) -> pd.Series:
        """Share of users who played each item (:func:`evaluation.metrics.item_popularity`)."""
        present = self.counts[self.counts["listeners"] > 0]
        return pd.Series(
            present["listeners"].to_numpy(dtype=np.int64) / self.users,
            index=pd.Index(present["item_id"].to_numpy(dtype=object), name="item_id"),
            name="user_id",
        )

    @property
    def catalog_size(self) -> int:
        """Items with at least one play."""
        return int((self.counts["listeners"] > 0).sum())

    @property
    def item_ids(self) -> list[str]:
        """Items with at least one play, sorted."""
        return self.counts.loc[self.counts["listeners"] > 0, "item_id"].tolist()

    def played(self, users: Sequence[str]) -> dict[str, set[str]]:
        """``{user_id: items played}`` for ``users`` (from the matrix: any user)."""
        plays = self.interactions.plays
        item_ids = np.asarray(self.interactions.item_ids, dtype=object)
        index = self.interactions.user_index
        out = {}
        for user in map(str, users):
            row = index.get(user)
            if row is not None:
                out[user] = set(item_ids[plays.indices[plays.indptr[row] : plays.indptr[row + 1]]])
        return out

    def rows_of(self, users: Sequence[str]) -> pd.DataFrame:
        """The rows of ``users`` (who must be among the users looked at)."""
        return self.rows[self.rows["user_id"].isin(set(map(str, users)))]

    def after_split(self, train: pd.DataFrame, removed: pd.DataFrame) -> PlayHistory:
        """This history without the ``removed`` rows (a split's test part) and with ``train``
        (the split's train part, which ``rows`` were split into) as the rows looked at."""
        removed = removed.astype({"user_id": str, "item_id": str})
        interactions = self.interactions.without(removed)
        gone = removed.groupby("item_id")["user_id"].nunique()
        counts = self.counts.copy()
        position = pd.Index(counts["item_id"]).get_indexer(gone.index)
        listeners = counts["listeners"].to_numpy(dtype=np.int64).copy()
        np.subtract.at(listeners, position, gone.to_numpy(dtype=np.int64))
        recent = counts["recent"].to_numpy(dtype=np.int64).copy()
        if self.week_start is not None and "last_ts" in removed.columns:
            end = _utc(self.week_start)
            stamps = pd.to_datetime(removed["last_ts"], utc=True, errors="coerce")
            mask = ((stamps >= end - pd.Timedelta(weeks=RECENT_WEEKS)) & (stamps < end)).to_numpy()
            gone_recent = removed.loc[mask].groupby("item_id")["user_id"].nunique()
            np.subtract.at(
                recent,
                pd.Index(counts["item_id"]).get_indexer(gone_recent.index),
                gone_recent.to_numpy(dtype=np.int64),
            )
        counts["listeners"], counts["recent"] = listeners, recent
        users = int(np.count_nonzero(np.diff(interactions.plays.indptr)))
        last_play = self.last_play
        if self.complete and "last_ts" in train.columns:
            stamps = pd.to_datetime(train["last_ts"], utc=True, errors="coerce")
            last_play = None if stamps.isna().all() else stamps.max()
        return PlayHistory(
            interactions, train, counts, users, self.week_start, last_play, self.complete
        )


def load_history(
    warehouse: Reader,
    cutoff: pd.Timestamp,
    *,
    week_start: pd.Timestamp | None = None,
    max_users: int,
    seed: int = 42,
    min_items: int = 5,
) -> PlayHistory:
    """The history before ``cutoff`` as tuning and evaluation use it: everyone's rows when
    there are at most ``max_users`` users (exactly ``PlayHistory.from_frame(history_before(...))``),
    else the rows of a seeded sample of ``max_users`` users with ``min_items`` items or more
    (:func:`sample_users`), with everyone's plays as a compact matrix and per-item counts."""
    sample, _, _ = sample_users(warehouse, cutoff, max_users, seed=seed, min_items=min_items)
    if sample is None:
        return PlayHistory.from_frame(history_before(warehouse, cutoff), week_start)
    counts, users, last_play = _item_counts(warehouse, cutoff, week_start)
    return PlayHistory(
        interactions_before(warehouse, cutoff),
        history_before(warehouse, cutoff, users=sample),
        counts,
        users,
        None if week_start is None else pd.Timestamp(week_start),
        last_play,
        complete=False,
    )


def interactions_before(warehouse: Reader, cutoff: pd.Timestamp) -> Interactions:
    """The CF matrix of the history before ``cutoff`` (raw plays), built from integer codes
    the warehouse computes: the same :class:`embeddings.cf.Interactions` (and fingerprint) as
    ``Interactions.from_listens(history_before(warehouse, cutoff))`` without a frame of string
    ids (O(events) in memory, but 12 bytes per user-item pair)."""
    sql, params = _history_sql(warehouse, cutoff)
    users = warehouse.read(f"WITH h AS ({sql}) SELECT DISTINCT user_id FROM h ORDER BY 1", params)
    items = warehouse.read(f"WITH h AS ({sql}) SELECT DISTINCT item_id FROM h ORDER BY 1", params)
    codes = warehouse.read(
        f"WITH h AS ({sql}), "
        "u AS (SELECT user_id, CAST(row_number() OVER (ORDER BY user_id) - 1 AS INTEGER) AS r "
        "FROM (SELECT DISTINCT user_id FROM h)), "
        "i AS (SELECT item_id, CAST(row_number() OVER (ORDER BY item_id) - 1 AS INTEGER) AS c "
        "FROM (SELECT DISTINCT item_id FROM h)) "
        "SELECT u.r, i.c, CAST(h.plays AS DOUBLE) AS plays "
        "FROM h JOIN u USING (user_id) JOIN i USING (item_id)",
        params,
    )
    if codes.empty:
        raise ValueError("listens frame is empty: no interactions to build a CF matrix from")
    plays = codes["plays"].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(plays) | (plays <= 0)
    if bad.any():
        raise ValueError(
            f"{int(bad.sum())} history rows have plays that are not a number > 0; fix or "
            "quarantine them upstream"
        )
    return Interactions.from_codes(
        users["user_id"].astype(str).tolist(),
        items["item_id"].astype(str).tolist(),
        codes["r"].to_numpy(dtype=np.int64),
        codes["c"].to_numpy(dtype=np.int64),
        plays,
    )
