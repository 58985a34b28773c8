"""Similar artists judged by held-out co-listening: do an embedding's nearest artists agree
with what listeners the model never saw play together?

A seeded share of users is held out (chosen in the warehouse by a hash of the user id). Their
artist-level plays define the truth: for each *query* artist with at least ``min_listeners``
held-out listeners, the artists most often co-listened with it by those users (at least two of
them). Every space is fitted without the held-out users (co-occurrence vectors, CF) or does not
use plays at all (text), and its ``k`` nearest artists are compared to the truth.

Example usage::

    truth = colistening_truth(con, cutoff, holdout_share=0.2, seed=42)
    table = similar_artist_agreement({"cooccurrence": (ids, m), "text": (ids2, m2)}, truth)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from embeddings.vectors import normalize_rows, top_k_indices
from recommend.candidates import VectorTable


@dataclass
class ColisteningTruth:
    """Held-out users and, per query artist, its co-listened artists (most co-listeners first)."""

    held_out_users: pd.DataFrame
    related: dict[str, list[str]]

    @property
    def queries(self) -> list[str]:
        return sorted(self.related)


def _held_out_sql(holdout_share: float, seed: int, max_users: int) -> str:
    bucket = int(round(holdout_share * 1000))
    return (
        "SELECT DISTINCT user_id FROM golden.listens "
        f"WHERE hash(user_id || '#{int(seed)}') % 1000 < {bucket} "
        f"ORDER BY hash(user_id || '#{int(seed)}') LIMIT {int(max_users)}"
    )


def colistening_truth(
    con,
    cutoff: pd.Timestamp | None = None,
    *,
    holdout_share: float = 0.2,
    seed: int = 42,
    max_users: int = 2000,
    per_user: int = 50,
    min_listeners: int = 5,
    min_colisteners: int = 2,
    related_k: int = 20,
) -> ColisteningTruth:
    """Co-listening among held-out users, computed in the warehouse.

    Parameters
    ----------
    con
        DuckDB connection (golden schema).
    cutoff
        Plays first made before it count (None: all).
    holdout_share, seed, max_users
        Which users are held out (a hash of the id; at most ``max_users``).
    per_user
        Each held-out user's most played artists that count (bounds the pairs per user).
    min_listeners
        Query artists have at least this many held-out listeners.
    min_colisteners, related_k
        A related artist is co-listened by at least this many held-out users; the
        ``related_k`` most co-listened ones are kept.
    """
    users = con.execute(_held_out_sql(holdout_share, seed, max_users)).df()
    con.register("_held_out", users)
    try:
        pairs = con.execute(
            f"""
            WITH artists AS (
                SELECT l.user_id, i.artist_id, sum(l.plays) AS plays
                FROM golden.listens l JOIN _held_out USING (user_id)
                JOIN golden.items i USING (item_id)
                WHERE l.first_ts IS NULL OR l.first_ts < ? GROUP BY l.user_id, i.artist_id
                QUALIFY row_number() OVER (PARTITION BY l.user_id ORDER BY sum(l.plays) DESC,
                                           i.artist_id) <= {int(per_user)}
            ), listeners AS (
                SELECT artist_id, count(*) AS n FROM artists GROUP BY 1
                HAVING count(*) >= {int(min_listeners)}
            ), pairs AS (
                SELECT a.artist_id AS query, b.artist_id AS related, count(*) AS together
                FROM artists a JOIN listeners q ON q.artist_id = a.artist_id
                JOIN artists b ON a.user_id = b.user_id AND a.artist_id <> b.artist_id
                GROUP BY 1, 2 HAVING count(*) >= {int(min_colisteners)}
            )
            SELECT query, related FROM pairs
            QUALIFY row_number() OVER (PARTITION BY query ORDER BY together DESC, related)
                    <= {int(related_k)}
            ORDER BY query, together DESC, related
            """,
            [
                (
                    pd.Timestamp(cutoff) if cutoff is not None else pd.Timestamp("2200-01-01")
                ).to_pydatetime()
            ],
        ).df()
    finally:
        con.unregister("_held_out")
    related = {
        str(q): [str(r) for r in group["related"]] for q, group in pairs.groupby("query", sort=True)
    }
    return ColisteningTruth(users.astype(str), related)


def nearest_artists(space: VectorTable, queries: list[str], k: int) -> dict[str, list[str]]:
    """Each query artist's ``k`` nearest artists by cosine (queries without a vector skipped)."""
    ids = np.asarray([str(i) for i in space[0]], dtype=object)
    matrix = normalize_rows(np.asarray(space[1], dtype=np.float32))
    position = {artist: row for row, artist in enumerate(ids)}
    out = {}
    for query in queries:
        row = position.get(query)
        if row is None:
            continue
        scores = matrix @ matrix[row]
        out[query] = ids[top_k_indices(scores, k, exclude=[row], tie_break=ids)].tolist()
    return out


def similar_artist_agreement(
    spaces: Mapping[str, VectorTable | Mapping[str, list[str]]],
    truth: ColisteningTruth,
    k: int = 10,
) -> pd.DataFrame:
    """Per space: agreement@k with held-out co-listening and the share of queries it covers.

    ``spaces`` maps a name to artist vectors ``(ids, matrix)`` or to ready neighbour lists
    ``{artist: [similar artists]}`` (e.g. an item-kNN model's own similarity).

    Returns
    -------
    pandas.DataFrame
        Index ``space``; ``precision@k`` (over all queries, a query without a vector counts 0),
        ``precision@k_covered`` (over the queries it has a vector for), ``recall@k`` (share of
        the related artists found), ``coverage`` and ``queries``.
    """
    queries = truth.queries
    rows = []
    for name, space in spaces.items():
        neighbours = nearest_artists(space, queries, k) if isinstance(space, tuple) else dict(space)
        hits = [
            len(set(neighbours[q][:k]) & set(truth.related[q])) if q in neighbours else 0
            for q in queries
        ]
        found = [h for q, h in zip(queries, hits, strict=True) if q in neighbours]
        sizes = [len(truth.related[q]) for q in queries]
        rows.append(
            {
                "space": name,
                f"precision@{k}": float(np.mean(hits) / k) if queries else float("nan"),
                f"precision@{k}_covered": float(np.mean(found) / k) if found else float("nan"),
                f"recall@{k}": float(np.mean([h / s for h, s in zip(hits, sizes, strict=True)]))
                if queries
                else float("nan"),
                "coverage": len(found) / len(queries) if queries else float("nan"),
                "queries": len(queries),
            }
        )
    return pd.DataFrame(rows).set_index("space")
