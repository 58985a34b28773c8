"""Playlist rules: turn a blended ranking into a weekly playlist per user.

Rules (:class:`PlaylistConfig`):

- ``size`` items per user (30), all distinct, none the user played;
- at most ``max_per_artist`` items per artist (matters at track level);
- diversity by maximal marginal relevance (MMR) on item vectors: each next item maximises
  ``lambda * relevance - (1 - lambda) * max cosine to the items already chosen``;
- ``exploration_slots`` slots (3) at ``exploration_positions`` filled from the exploration pool
  (less popular or brand-new items close to the user's taste);
- a catalog with fewer unplayed items than ``size`` gives a shorter playlist, not an error.

Example usage::

    playlist = rerank(blended, exploration, played, item_artist, item_vectors, PlaylistConfig())
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from embeddings.vectors import normalize_rows

logger = logging.getLogger(__name__)

PLAYLIST_COLUMNS = [
    "user_id",
    "position",
    "item_id",
    "artist_id",
    "score",
    "source",
    "reason_code",
    "reason_detail",
]
_ROW_COLUMNS = ["item_id", "score", "source", "reason_code", "reason_detail"]


@dataclass(frozen=True)
class PlaylistConfig:
    """Playlist rules.

    Parameters
    ----------
    size
        Items per playlist.
    max_per_artist
        Cap per artist (items of one artist).
    mmr_lambda
        MMR trade-off in [0, 1]: 1 = pure relevance order, lower = more diverse.
    pool_size
        Blended candidates per user that MMR chooses from.
    exploration_slots
        Slots reserved for the exploration pool.
    exploration_positions
        1-based positions of those slots (clipped to the playlist length); when there are more
        slots than positions, the rest go last.
    """

    size: int = 30
    max_per_artist: int = 2
    mmr_lambda: float = 0.9
    pool_size: int = 100
    exploration_slots: int = 3
    exploration_positions: tuple[int, ...] = (12, 21, 30)

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"PlaylistConfig.size must be >= 1, got {self.size}")
        if self.max_per_artist < 1:
            raise ValueError(
                f"PlaylistConfig.max_per_artist must be >= 1, got {self.max_per_artist}"
            )
        if not 0.0 <= self.mmr_lambda <= 1.0:
            raise ValueError(f"PlaylistConfig.mmr_lambda must be in [0, 1], got {self.mmr_lambda}")
        if not 0 <= self.exploration_slots <= self.size:
            raise ValueError(
                f"PlaylistConfig.exploration_slots must be in [0, size], got "
                f"{self.exploration_slots}"
            )
        if any(p < 1 for p in self.exploration_positions):
            raise ValueError("PlaylistConfig.exploration_positions are 1-based positions >= 1")
        if self.pool_size < self.size:
            raise ValueError(
                f"PlaylistConfig.pool_size ({self.pool_size}) must be >= size ({self.size})"
            )


def mmr_order(
    relevance: np.ndarray,
    vectors: np.ndarray | None,
    n: int,
    mmr_lambda: float,
    *,
    allowed: Callable[[int, list[int]], bool] | None = None,
) -> list[int]:
    """Greedy maximal-marginal-relevance selection.

    Parameters
    ----------
    relevance
        Relevance of each candidate (any scale; min-max scaled to [0, 1] here).
    vectors
        ``(len(relevance), d)`` item vectors (rows normalised here); zero rows never count as
        similar. ``None``: plain relevance order.
    n
        How many to select.
    mmr_lambda
        1 = relevance only; 0 = diversity only.
    allowed
        Optional ``allowed(index, chosen) -> bool`` (e.g. the artist cap), checked per step.

    Returns
    -------
    list of int
        Selected candidate indices in order.
    """
    relevance = np.asarray(relevance, dtype=np.float64)
    count = len(relevance)
    if count == 0 or n <= 0:
        return []
    spread = relevance.max() - relevance.min()
    scaled = (relevance - relevance.min()) / spread if spread > 0 else np.ones(count)
    unit = normalize_rows(vectors).astype(np.float64) if vectors is not None else None
    max_similarity = np.zeros(count)
    available = np.ones(count, dtype=bool)
    chosen: list[int] = []
    while len(chosen) < n and available.any():
        value = mmr_lambda * scaled - (1.0 - mmr_lambda) * max_similarity
        value[~available] = -np.inf
        # ties: the earlier (better ranked) candidate
        pick = int(np.argmax(value))
        available[pick] = False
        if allowed is not None and not allowed(pick, chosen):
            continue
        chosen.append(pick)
        if unit is not None:
            max_similarity = np.maximum(max_similarity, unit @ unit[pick])
    return chosen


class VectorLookup:
    """Item vectors by id for MMR, built once and shared by every user (and user batch)."""

    def __init__(self, item_vectors: tuple[Sequence[str], np.ndarray] | None) -> None:
        if item_vectors is None:
            self.matrix = None
            return
        ids, matrix = item_vectors
        self.matrix = np.asarray(matrix, dtype=np.float32)
        self.row = {str(i): r for r, i in enumerate(ids)}

    def rows(self, items: Sequence[str]) -> np.ndarray | None:
        if self.matrix is None:
            return None
        out = np.zeros((len(items), self.matrix.shape[1]), dtype=np.float32)
        for position, item in enumerate(items):
            row = self.row.get(item)
            if row is not None:
                out[position] = self.matrix[row]
        return out


Record = tuple  # (item_id, score, source, reason_code, reason_detail): _ROW_COLUMNS


def records(frame: pd.DataFrame) -> list[Record]:
    """The rows of a candidate frame as :data:`_ROW_COLUMNS` tuples (absent columns NaN)."""
    frame = frame.reindex(columns=_ROW_COLUMNS)
    return list(zip(*(frame[c].tolist() for c in _ROW_COLUMNS), strict=True))


def _distinct(rows: Sequence[Record], played: set[str] | frozenset = frozenset()) -> list[Record]:
    """The first row of each item, items in ``played`` left out (``drop_duplicates`` order)."""
    seen: set[str] = set()
    out = []
    for row in rows:
        if row[0] not in played and row[0] not in seen:
            seen.add(row[0])
            out.append(row)
    return out


def rerank_user(
    ranked: pd.DataFrame,
    exploration: pd.DataFrame,
    played: set[str],
    item_artist: Mapping[str, str],
    config: PlaylistConfig,
    vectors: VectorLookup | tuple[Sequence[str], np.ndarray] | None = None,
) -> pd.DataFrame:
    """One user's playlist from their ranked candidates and exploration pool.

    Parameters
    ----------
    ranked
        Blended candidates, best first: ``item_id, score, source, reason_code, reason_detail``.
    exploration
        Exploration pool, best first (same columns); may be empty.
    played
        Items the user played (never returned).
    item_artist
        ``{item_id: artist_id}``; items missing map to themselves.
    config
        The rules.
    vectors
        Item vectors for MMR (``(ids, matrix)``), or None for relevance order.

    Returns
    -------
    pandas.DataFrame
        ``position`` (1-based) plus the input columns and ``artist_id``; at most
        ``config.size`` rows, fewer when the candidates run out.
    """
    lookup = vectors if isinstance(vectors, VectorLookup) else VectorLookup(vectors)
    rows = playlist_records(
        records(ranked), records(exploration), played, item_artist, config, lookup
    )
    frame = pd.DataFrame(rows, columns=_ROW_COLUMNS)
    frame.insert(0, "position", np.arange(1, len(frame) + 1))
    frame["artist_id"] = [item_artist.get(item, item) for item in frame["item_id"]]
    return frame


def playlist_records(
    ranked: Sequence[Record],
    exploration: Sequence[Record],
    played: set[str],
    item_artist: Mapping[str, str],
    config: PlaylistConfig,
    lookup: VectorLookup,
) -> list[Record]:
    """:func:`rerank_user` on :func:`records` (the playlist's rows in order): per-user work in
    plain Python and numpy, as it runs once per user."""
    pool = _distinct(ranked, played)[: config.pool_size]
    explore = _distinct(exploration, played)
    per_artist: dict[str, int] = {}
    taken: set[str] = set()

    def take(item: str) -> None:
        taken.add(item)
        artist = item_artist.get(item, item)
        per_artist[artist] = per_artist.get(artist, 0) + 1

    def fits(item: str) -> bool:
        return item not in taken and per_artist.get(item_artist.get(item, item), 0) < (
            config.max_per_artist
        )

    # MMR picks the main list first, so exploration never pushes a relevant item down or
    # takes its artist's slot; exploration then fills its reserved slots among what fits
    main_needed = config.size - config.exploration_slots

    def allowed(index: int, chosen: list[int]) -> bool:
        item = pool[index][0]
        if not fits(item):
            return False
        take(item)
        return True

    order = mmr_order(
        np.array([row[1] for row in pool], dtype=np.float64),
        lookup.rows([row[0] for row in pool]),
        main_needed,
        config.mmr_lambda,
        allowed=allowed,
    )
    main_rows = [pool[i] for i in order]
    explore_rows: list[Record] = []
    for row in explore:
        if len(explore_rows) >= config.exploration_slots:
            break
        if fits(row[0]):
            take(row[0])
            explore_rows.append(row)
    # short of candidates: the rest of the pool, then of the ranking, then of exploration
    for rest in (pool, ranked[config.pool_size :], explore):
        if len(main_rows) + len(explore_rows) >= config.size:
            break
        for row in _distinct(rest):
            if len(main_rows) + len(explore_rows) >= config.size:
                break
            if row[0] not in played and fits(row[0]):
                take(row[0])
                main_rows.append(row)
    return _interleave(main_rows, explore_rows, config)


def _interleave(main: list[Record], explore: list[Record], config: PlaylistConfig) -> list[Record]:
    total = len(main) + len(explore)
    positions: list[int] = []
    for wanted in sorted(config.exploration_positions)[: len(explore)]:
        position = min(wanted, total)
        while position in positions and position > 1:  # clipped onto a taken slot: step back
            position -= 1
        positions.append(position)
    spare = (p for p in range(total, 0, -1) if p not in positions)
    while len(positions) < len(explore):  # more slots than positions: the rest go last
        positions.append(next(spare))
    slots = set(positions)
    out: list[Record] = []
    main_iter, explore_iter = iter(main), iter(explore)
    for position in range(1, total + 1):
        source = explore_iter if position in slots else main_iter
        out.append(next(source))
    return out


def _records_by_user(frame: pd.DataFrame) -> dict[str, list[Record]]:
    """:func:`records` of each user of ``frame``, in the frame's order."""
    out: dict[str, list[Record]] = {}
    for user, row in zip(frame["user_id"].tolist(), records(frame), strict=True):
        out.setdefault(user, []).append(row)
    return out


def rerank(
    blended: pd.DataFrame,
    exploration: pd.DataFrame,
    played: Mapping[str, set[str]],
    item_artist: Mapping[str, str],
    item_vectors: VectorLookup | tuple[Sequence[str], np.ndarray] | None = None,
    config: PlaylistConfig | None = None,
    *,
    users: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Playlists for every user of ``blended`` (or ``users``).

    Parameters
    ----------
    blended
        Ranked candidates (``user_id, item_id, score, source, reason_code, reason_detail``),
        best first within each user (e.g. :func:`recommend.blend.fuse`).
    exploration
        Exploration pool, same columns (sorted best first per user here).
    played
        ``{user_id: items played}``.
    item_artist
        ``{item_id: artist_id}``.
    item_vectors
        ``(item_ids, matrix)`` for MMR, or a prepared :class:`VectorLookup`.
    config
        The rules (default :class:`PlaylistConfig`).
    users
        Users to serve (default: those of ``blended`` and ``exploration``).

    Returns
    -------
    pandas.DataFrame
        :data:`PLAYLIST_COLUMNS`, sorted by user and position.
    """
    config = config or PlaylistConfig()
    lookup = item_vectors if isinstance(item_vectors, VectorLookup) else VectorLookup(item_vectors)
    by_user = _records_by_user(blended)
    explore_sorted = exploration.sort_values(
        ["user_id", "score", "item_id"], ascending=[True, False, True], kind="mergesort"
    )
    explore_by_user = _records_by_user(explore_sorted)
    wanted = users if users is not None else sorted(set(by_user) | set(explore_by_user))
    users_out: list[str] = []
    positions: list[int] = []
    rows: list[Record] = []
    for user in wanted:
        playlist = playlist_records(
            by_user.get(user, []),
            explore_by_user.get(user, []),
            played.get(user, set()),
            item_artist,
            config,
            lookup,
        )
        users_out.extend([user] * len(playlist))
        positions.extend(range(1, len(playlist) + 1))
        rows.extend(playlist)
    if not rows:
        return pd.DataFrame(columns=PLAYLIST_COLUMNS)
    out = pd.DataFrame(rows, columns=_ROW_COLUMNS)
    out.insert(0, "position", np.array(positions, dtype=np.int64))
    out.insert(0, "user_id", users_out)
    out["artist_id"] = [item_artist.get(item, item) for item in out["item_id"]]
    out = out[PLAYLIST_COLUMNS]
    short = out.groupby("user_id").size()
    short = short[short < config.size]
    if len(short):
        logger.warning(
            "%d playlists are shorter than %d items (too few unplayed candidates)",
            len(short),
            config.size,
        )
    return out
