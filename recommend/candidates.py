"""Candidate generation per source, each candidate with a reason built from evidence.

Every source returns rows ``(user_id, item_id, score, source, reason_code, reason_detail)``
(:data:`CANDIDATE_COLUMNS`), at most ``n`` per user, best first, and never an item the user
played. Scores are comparable within one source and one user only; :mod:`recommend.blend`
normalises them.

=====================  ===================================  ==========================================
source                 how                                  reason (code: detail)
=====================  ===================================  ==========================================
``ease``/``item_knn``  item-item model on the CF matrix     ``because_you_played``: the played item
                                                            contributing most to the score
``als`` (``bpr``)      user x item factors                  ``listeners_like_you``: how many of the
                                                            user's nearest listeners play it
``text``               taste profile -> nearest text        ``described_as``: the candidate's terms
                       vectors                              that best match the user's terms
``audio``              audio taste profile -> nearest       ``sounds_like``: the played track whose
                       tracks                               audio is closest
``cooccurrence``       taste profile -> nearest skip-gram   ``played_alongside``: the played item
                       (co-occurrence) vectors              closest in that space
``new``                brand-new tracks placed by their     ``new_this_week``
                       audio -> CF factor projection
``popularity``         listeners (recent weeks when         ``popular_now``: listener count
                       timestamps exist)
``exploration``        less popular items ranked by CF      ``exploration``: the played item closest
                       closeness                            in factor space
``journey``            artists one step outward from the    ``next_step``: the artist the step starts
                       user's recent ones (transition       from (exploration slots only; made by
                       model)                               ``recommend.journeys``)
=====================  ===================================  ==========================================

:func:`explain` turns a ``(reason_code, reason_detail)`` pair into the sentence people read.

Example usage::

    fitted = {"ease": fit_cf(train, CF_PRESETS["ease"]), "als": fit_cf(train, CF_PRESETS["als"])}
    candidates = generate_candidates(train, fitted, text_vectors=(ids, vectors), n=100)
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

import numpy as np
import pandas as pd
from scipy import sparse

from embeddings.cf import FittedCF, rows_matmul
from embeddings.text import taste_profiles
from embeddings.vectors import normalize_rows, top_k_indices

logger = logging.getLogger(__name__)

CANDIDATE_COLUMNS = ["user_id", "item_id", "score", "source", "reason_code", "reason_detail"]
ITEM_ITEM_KINDS = ("item_knn", "item_knn_bm25", "rp3beta", "ease")
FACTOR_KINDS = ("als", "bpr", "mllib_als")
REASON_CODES = (
    "because_you_played",
    "listeners_like_you",
    "described_as",
    "sounds_like",
    "new_this_week",
    "popular_now",
    "exploration",
    "taste_profile",
    "cold_start",
    "played_alongside",
    "next_step",
    "friends_play",
    "your_tags",
)
# the evidence code of a content space: the played item closest to the candidate
EVIDENCE_CODES = {"audio": "sounds_like", "cooccurrence": "played_alongside"}


class SocialCandidates(Protocol):
    """A source of candidates beyond the models and vectors (:mod:`recommend.social`)."""

    def candidates(self, listens: pd.DataFrame, users: Sequence[str], n: int) -> pd.DataFrame:
        """:data:`CANDIDATE_COLUMNS` of ``users`` (``listens`` holds their history)."""
        ...


VectorTable = tuple[Sequence[str], np.ndarray]
"""``(ids, matrix)``: one vector (row) per id."""

# users x items scores held at once when scoring (float64: 128 MB)
SCORE_CELLS = 2**24


# ---------------------------------------------------------------------------------- helpers
def empty_candidates() -> pd.DataFrame:
    """An empty candidate frame with the right columns and dtypes."""
    return pd.DataFrame(
        {
            "user_id": pd.Series(dtype=object),
            "item_id": pd.Series(dtype=object),
            "score": pd.Series(dtype=float),
            "source": pd.Series(dtype=object),
            "reason_code": pd.Series(dtype=object),
            "reason_detail": pd.Series(dtype=object),
        }
    )


def _frame(
    users: list[str],
    items: list[str],
    scores: list[float],
    source: str,
    codes: list[str] | str,
    details: list[str] | str,
) -> pd.DataFrame:
    if not users:
        return empty_candidates()
    size = len(users)
    return pd.DataFrame(
        {
            "user_id": users,
            "item_id": items,
            "score": np.asarray(scores, dtype=float),
            "source": [source] * size,
            "reason_code": codes if isinstance(codes, list) else [codes] * size,
            "reason_detail": details if isinstance(details, list) else [details] * size,
        }
    )


def _require(frame: pd.DataFrame, columns: Iterable[str], name: str) -> None:
    missing = sorted(set(columns) - set(frame.columns))
    if missing:
        raise ValueError(f"{name} frame lacks columns {missing}; it has {list(frame.columns)}")


def _check_n(n: int) -> None:
    if n < 1:
        raise ValueError(f"n (candidates per user) must be >= 1, got {n}")


def _top_rows(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row: indices of the ``n`` best scores (best first, ties by index), finite mask."""
    top = top_k_indices(scores, n)
    return top, np.isfinite(np.take_along_axis(scores, top, axis=1))


def played_items(listens: pd.DataFrame) -> dict[str, set[str]]:
    """``{user_id: set of item_id}`` of a listens frame."""
    _require(listens, ("user_id", "item_id"), "listens")
    return {str(u): set(map(str, g)) for u, g in listens.groupby("user_id")["item_id"]}


def _cached(cache: dict, key: tuple, build):
    """``cache[key]``, built by ``build()`` the first time (a cache that lives as long as the
    models, vectors and catalog it was built from: one week's user batches)."""
    if key not in cache:
        cache[key] = build()
    return cache[key]


def _catalog_mask(item_ids: Sequence[str], catalog: Iterable[str] | None) -> np.ndarray | None:
    if catalog is None:
        return None
    allowed = set(map(str, catalog))
    return np.fromiter((i in allowed for i in item_ids), dtype=bool, count=len(item_ids))


# ---------------------------------------------------------------------------------- CF sources
def cf_candidates(
    fitted: FittedCF,
    source: str | None = None,
    n: int = 100,
    *,
    users: Iterable[str] | None = None,
    catalog: Iterable[str] | None = None,
    explain: bool = True,
    neighbours: int = 50,
    batch_size: int = 256,
    prepared: dict | None = None,
) -> pd.DataFrame:
    """Top-``n`` unplayed items per user from a fitted CF model, with reasons.

    Parameters
    ----------
    fitted
        A :class:`embeddings.cf.FittedCF` (any kind).
    source
        Source label; default the model kind (``als``, ``ease``, ...).
    n
        Candidates per user.
    users
        Users to score (default: every user of the model). Users unknown to the model are
        skipped (they are cold users: see :func:`cold_start_candidates`).
    catalog
        Item ids that may be recommended (default: every item of the model).
    explain
        Build reasons: item-item models name the played item that contributes most
        (``because_you_played``), factor models count the user's ``neighbours`` nearest
        listeners who play the item (``listeners_like_you``). Off: the code only, detail ``""``.
    neighbours
        Nearest users (cosine of user factors) asked for ``listeners_like_you``.
    batch_size
        Users scored at once (memory: ``batch_size x n_items`` floats, at most
        :data:`SCORE_CELLS`: fewer users at once in a large catalog).
    prepared
        A cache kept across calls on the same model and catalog (user batches of one week):
        the catalog mask and the explainer are built once.

    Returns
    -------
    pandas.DataFrame
        :data:`CANDIDATE_COLUMNS`.
    """
    _check_n(n)
    kind = fitted.config.model
    source = source or kind
    item_ids = np.asarray(fitted.item_ids, dtype=object)
    index = fitted.interactions.user_index
    wanted = fitted.user_ids if users is None else [str(u) for u in users]
    rows = np.array([index[u] for u in wanted if u in index], dtype=np.int64)
    if len(rows) == 0:
        return empty_candidates()
    cache = {} if prepared is None else prepared
    allowed = _cached(
        cache, ("mask", id(fitted), id(catalog)), lambda: _catalog_mask(fitted.item_ids, catalog)
    )
    user_items = fitted.user_items
    plays = fitted.interactions.plays
    explainer = (
        _cached(
            cache, ("explainer", id(fitted), neighbours), lambda: _CFExplainer(fitted, neighbours)
        )
        if explain
        else None
    )
    batch_size = max(1, min(batch_size, SCORE_CELLS // max(1, len(item_ids))))
    out_users: list[str] = []
    out_items: list[str] = []
    out_scores: list[float] = []
    codes: list[str] = []
    details: list[str] = []
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        batch_items = user_items[batch]
        scores = np.asarray(fitted.model.score_users(batch, batch_items), dtype=np.float64)
        if allowed is not None:
            scores[:, ~allowed] = -np.inf
        played_rows = plays[batch]
        scores[
            np.repeat(np.arange(len(batch)), np.diff(played_rows.indptr)), played_rows.indices
        ] = -np.inf
        top, finite = _top_rows(scores, n)
        votes = explainer.neighbour_votes(batch, batch_items) if explainer else {}
        for offset, row in enumerate(batch):
            chosen = top[offset][finite[offset]]
            if len(chosen) == 0:
                continue
            user = fitted.user_ids[row]
            out_users.extend([user] * len(chosen))
            out_items.extend(item_ids[chosen].tolist())
            out_scores.extend(scores[offset, chosen].tolist())
            if explainer is None:
                codes.extend([_default_code(kind)] * len(chosen))
                details.extend([""] * len(chosen))
            else:
                code, detail = explainer.explain(int(row), chosen, votes)
                codes.extend(code)
                details.extend(detail)
    logger.info("%s candidates: %d rows for %d users", source, len(out_users), len(rows))
    return _frame(out_users, out_items, out_scores, source, codes, details)


def _default_code(kind: str) -> str:
    if kind in ITEM_ITEM_KINDS:
        return "because_you_played"
    if kind == "popularity":
        return "popular_now"
    return "listeners_like_you"


ANCHOR_SHARE = 0.5


def spread_anchors(contribution: np.ndarray, share: float = ANCHOR_SHARE) -> np.ndarray:
    """For each candidate (column, best first) the played item (row) it is explained by.

    The strongest contributor wins, unless another played item contributes at least ``share``
    of the strongest and has anchored fewer of the user's candidates so far: reasons then name
    several of the things the user played instead of the same one again and again.
    """
    n_rows, n_columns = contribution.shape
    best = np.zeros(n_columns, dtype=np.int64)
    if n_rows == 0:
        return best
    # the per-column thresholds in one pass; the greedy choice, sequential by nature, then
    # runs in plain Python over each column's few eligible rows (float64 arithmetic as numpy)
    top = np.maximum(contribution.max(axis=0), 0.0)
    strongest = contribution.argmax(axis=0)
    columns, rows = np.nonzero((contribution >= share * top).T)
    values = contribution[rows, columns].tolist()
    bounds = np.searchsorted(columns, np.arange(n_columns + 1)).tolist()
    rows_list = rows.tolist()
    uses: dict[int, int] = {}
    for column in range(n_columns):
        if top[column] <= 0:
            best[column] = strongest[column]
            continue
        pick, pick_score = -1, -np.inf
        for k in range(bounds[column], bounds[column + 1]):  # rows ascending: ties go first
            score = values[k] / (1.0 + uses.get(rows_list[k], 0))
            if score > pick_score:
                pick, pick_score = rows_list[k], score
        best[column] = pick
        uses[pick] = uses.get(pick, 0) + 1
    return best


class _CFExplainer:
    """Evidence for CF candidates of one fitted model."""

    def __init__(self, fitted: FittedCF, neighbours: int) -> None:
        self.fitted = fitted
        self.kind = fitted.config.model
        self.item_ids = np.asarray(fitted.item_ids, dtype=object)
        self.user_items = fitted.user_items
        model = fitted.model
        if self.kind in ("item_knn", "item_knn_bm25", "rp3beta"):
            self.similarity = sparse.csr_matrix(model.similarity)
        elif self.kind == "ease":
            self.position = np.full(len(self.item_ids), -1, dtype=np.int64)
            self.position[model.modelled_items] = np.arange(len(model.modelled_items))
            self.weights = model.weights
        elif self.kind in FACTOR_KINDS:
            self.user_vectors = normalize_rows(model.user_factors)
            self.neighbours = max(1, min(neighbours, len(self.user_vectors) - 1))
            self.binary = sparse.csr_matrix(fitted.interactions.plays > 0, dtype=np.float32)

    def neighbour_votes(
        self, batch: np.ndarray, batch_items: sparse.csr_matrix
    ) -> dict[int, tuple[np.ndarray, int]]:
        """``listeners_like_you`` evidence of a batch of users at once: per user, how many of
        their nearest listeners played each item, and how many were asked. User-kNN asks the
        very neighbours that voted; factor models the nearest users by cosine of their factors
        (one product per batch, not a pass over every user per user). ``{}`` for other kinds."""
        if self.kind == "user_knn":
            nearest = self.fitted.model.nearest(batch, batch_items)[0]
            voters = self.fitted.model.item_rows
        elif self.kind in FACTOR_KINDS:
            similarity = self.user_vectors[batch] @ self.user_vectors.T
            similarity[np.arange(len(batch)), batch] = -np.inf  # never oneself
            nearest = top_k_indices(similarity, self.neighbours)
            voters = self.binary
        else:
            return {}
        size, asked = nearest.shape
        chosen_neighbours = sparse.csr_matrix(
            (np.ones(size * asked, dtype=np.float32), nearest.ravel(), np.arange(size + 1) * asked),
            shape=(size, voters.shape[0]),
        )
        votes = (chosen_neighbours @ voters).toarray()
        return {int(row): (votes[offset], asked) for offset, row in enumerate(batch)}

    def explain(
        self,
        row: int,
        chosen: np.ndarray,
        votes: dict[int, tuple[np.ndarray, int]] | None = None,
    ) -> tuple[list[str], list[str]]:
        """Reason codes and details of one user's chosen candidates (``votes``: the batch's
        :meth:`neighbour_votes`, computed here for this user alone when absent)."""
        if self.kind in ITEM_ITEM_KINDS:
            played = self.user_items[row]
            if played.nnz == 0:
                return ["taste_profile"] * len(chosen), [""] * len(chosen)
            if self.kind == "ease":
                played_pos = self.position[played.indices]
                chosen_pos = self.position[chosen]
                contribution = np.zeros((played.nnz, len(chosen)))
                ok_p, ok_c = played_pos >= 0, chosen_pos >= 0
                contribution[np.ix_(ok_p, ok_c)] = self.weights[
                    np.ix_(played_pos[ok_p], chosen_pos[ok_c])
                ]
            else:
                contribution = self.similarity[played.indices][:, chosen].toarray()
            contribution = contribution * played.data[:, None]
            best = spread_anchors(contribution)
            has = contribution[best, np.arange(len(chosen))] > 0
            sources = self.item_ids[played.indices[best]]
            codes = ["because_you_played" if h else "taste_profile" for h in has]
            return codes, [s if h else "" for s, h in zip(sources, has, strict=True)]
        if self.kind == "user_knn" or self.kind in FACTOR_KINDS:
            if not votes or row not in votes:
                votes = self.neighbour_votes(np.array([row]), self.user_items[[row]])
            counts, asked = votes[row][0][chosen], votes[row][1]
            details = [f"{int(c)}/{asked}" for c in counts]
            codes = ["listeners_like_you" if c > 0 else "taste_profile" for c in counts]
            return codes, details
        return [_default_code(self.kind)] * len(chosen), [""] * len(chosen)


# ---------------------------------------------------------------------------------- content
def term_vectors(artist_terms: pd.DataFrame, dim: int = 128, *, seed: int = 42) -> VectorTable:
    """Dense artist vectors from weighted terms (TF-IDF, truncated SVD, unit rows).

    A cheap text space for when sentence vectors (:mod:`embeddings.text`) are not at hand,
    e.g. in offline evaluation.

    Parameters
    ----------
    artist_terms
        ``artist_id, term, weight``.
    dim
        Vector size (at most the number of terms - 1).
    seed
        SVD random state.

    Returns
    -------
    (ids, matrix)
        Artist ids (sorted) and ``(len(ids), dim)`` float32 unit rows.
    """
    from sklearn.decomposition import TruncatedSVD

    artist_ids, weighted = tag_vectors(artist_terms)
    components = max(1, min(dim, weighted.shape[1] - 1, weighted.shape[0] - 1))
    svd = TruncatedSVD(n_components=components, random_state=seed)
    vectors = normalize_rows(svd.fit_transform(weighted))
    return list(artist_ids), vectors


def tag_vectors(artist_terms: pd.DataFrame) -> tuple[list[str], sparse.csr_matrix]:
    """Sparse artist vectors of their weighted terms (TF-IDF, unit rows): the tag space, in
    which the cosine of two artists is their tag overlap.

    Parameters
    ----------
    artist_terms
        ``artist_id, term, weight``.

    Returns
    -------
    (ids, matrix)
        Artist ids (sorted) and a ``(len(ids), terms)`` float64 CSR matrix of unit rows.
    """
    matrix, artist_ids, _ = _term_matrix(artist_terms)
    if matrix.shape[0] == 0:
        raise ValueError("artist_terms is empty: no text vectors can be built from terms")
    documents = np.diff(sparse.csc_matrix(matrix > 0).indptr)
    idf = np.log((1 + matrix.shape[0]) / (1 + documents)) + 1.0
    return list(artist_ids), normalize_rows(matrix @ sparse.diags(idf), dtype=np.float64)


def _term_matrix(artist_terms: pd.DataFrame) -> tuple[sparse.csr_matrix, np.ndarray, np.ndarray]:
    _require(artist_terms, ("artist_id", "term", "weight"), "artist_terms")
    artists, artist_rows = np.unique(
        artist_terms["artist_id"].astype(str).to_numpy(), return_inverse=True
    )
    terms, term_cols = np.unique(artist_terms["term"].astype(str).to_numpy(), return_inverse=True)
    matrix = sparse.csr_matrix(
        (artist_terms["weight"].to_numpy(dtype=np.float64), (artist_rows, term_cols)),
        shape=(len(artists), len(terms)),
    )
    return matrix, artists, terms


def item_vectors_from_artists(items: pd.DataFrame, artist_vectors: VectorTable) -> VectorTable:
    """Give each item its artist's vector (track-level catalogs); items of unknown artists drop.

    Parameters
    ----------
    items
        ``item_id, artist_id``.
    artist_vectors
        ``(artist_ids, matrix)``; a sparse matrix stays sparse.
    """
    _require(items, ("item_id", "artist_id"), "items")
    ids, matrix = artist_vectors
    position = pd.Series(np.arange(len(ids)), index=pd.Index([str(i) for i in ids]))
    rows = items["artist_id"].astype(str).map(position)
    known = rows.notna().to_numpy()
    item_ids = items["item_id"].astype(str).to_numpy()[known].tolist()
    picked = rows[known].to_numpy(dtype=np.int64)
    if sparse.issparse(matrix):
        return item_ids, sparse.csr_matrix(matrix)[picked]
    return item_ids, np.asarray(matrix)[picked]


def content_candidates(
    listens: pd.DataFrame,
    vectors: VectorTable,
    n: int = 100,
    *,
    source: str = "text",
    users: Iterable[str] | None = None,
    catalog: Iterable[str] | None = None,
    explain: bool = True,
    artist_terms: pd.DataFrame | None = None,
    item_artist: Mapping[str, str] | None = None,
    batch_size: int = 512,
    prepared: dict | None = None,
) -> pd.DataFrame:
    """Nearest items to each user's taste profile in a content space (text or audio).

    The profile is the ``log1p(plays)``-weighted mean of the vectors of what the user played
    (:func:`embeddings.text.taste_profiles`); items score by cosine to it.

    Parameters
    ----------
    listens
        The user's history: ``user_id, item_id, plays``.
    vectors
        ``(item_ids, matrix)``: text vectors (artist level, or per track through
        :func:`item_vectors_from_artists`) or audio vectors (tracks).
    n
        Candidates per user.
    source
        ``"text"`` (reason ``described_as`` from ``artist_terms``), ``"audio"`` (reason
        ``sounds_like``: the played item closest to the candidate) or ``"cooccurrence"``
        (reason ``played_alongside``, the same evidence); any other label uses ``sounds_like``.
    users, catalog
        Users to score (default: all with a profile), items allowed (default: all with vectors).
    explain
        Build reasons (off: detail ``""``).
    artist_terms
        ``artist_id, term, weight`` for ``described_as``; without it text reasons fall back to
        ``taste_profile``.
    item_artist
        ``{item_id: artist_id}`` for track-level catalogs (default: item ids are artist ids).
    prepared
        A cache kept across calls on the same vectors, catalog and terms (user batches of one
        week): unit vectors, catalog mask and item terms are built once.

    Returns
    -------
    pandas.DataFrame
        :data:`CANDIDATE_COLUMNS`.
    """
    _check_n(n)
    _require(listens, ("user_id", "item_id", "plays"), "listens")
    cache = {} if prepared is None else prepared
    space = _cached(cache, ("space", id(vectors)), lambda: _ContentSpace(vectors, source))
    item_ids, matrix, position = space.item_ids, space.matrix, space.position
    batch_size = max(1, min(batch_size, SCORE_CELLS // max(1, len(item_ids))))
    if len(item_ids) == 0 or listens.empty:
        return empty_candidates()
    profile_users, profiles = taste_profiles(listens, matrix, item_ids)
    if users is not None:
        wanted = set(map(str, users))
        keep = np.array([u in wanted for u in profile_users], dtype=bool)
        profile_users, profiles = profile_users[keep], profiles[keep]
    history = listens.assign(row=listens["item_id"].astype(str).map(position))
    history = history[history["row"].notna()]
    played_rows = {str(u): g.to_numpy(dtype=np.int64) for u, g in history.groupby("user_id")["row"]}
    all_played = played_items(listens)
    allowed = _cached(
        cache, ("mask", id(vectors), id(catalog)), lambda: _catalog_mask(item_ids.tolist(), catalog)
    )
    describer = None
    if explain and source == "text" and artist_terms is not None and not artist_terms.empty:
        terms = _cached(
            cache,
            ("terms", id(vectors), id(artist_terms), id(item_artist)),
            lambda: _ItemTerms(artist_terms, item_ids, item_artist),
        )
        describer = _TermDescriber(terms, item_ids, history)
    out_users: list[str] = []
    out_items: list[str] = []
    out_scores: list[float] = []
    codes: list[str] = []
    details: list[str] = []
    for start in range(0, len(profile_users), batch_size):
        batch_users = profile_users[start : start + batch_size]
        scores = rows_matmul(profiles[start : start + batch_size], matrix.T).astype(np.float64)
        if allowed is not None:
            scores[:, ~allowed] = -np.inf
        for offset, user in enumerate(batch_users):
            scores[offset, played_rows.get(str(user), [])] = -np.inf
        top, finite = _top_rows(scores, n + 5)
        for offset, user in enumerate(batch_users):
            user = str(user)
            chosen = top[offset][finite[offset]]
            # items played but without a vector row are already excluded; guard the rest
            chosen = np.array(
                [c for c in chosen if item_ids[c] not in all_played.get(user, ())], dtype=np.int64
            )[:n]
            if len(chosen) == 0:
                continue
            out_users.extend([user] * len(chosen))
            out_items.extend(item_ids[chosen].tolist())
            out_scores.extend(scores[offset, chosen].tolist())
            evidence = EVIDENCE_CODES.get(source, "sounds_like")
            if not explain:
                codes.extend(["described_as" if source == "text" else evidence] * len(chosen))
                details.extend([""] * len(chosen))
            elif describer is not None:
                code, detail = describer.describe(user, chosen)
                codes.extend(code)
                details.extend(detail)
            elif source == "text":
                codes.extend(["taste_profile"] * len(chosen))
                details.extend([""] * len(chosen))
            else:
                rows = played_rows[user]
                closest = rows[np.argmax(matrix[rows] @ matrix[chosen].T, axis=0)]
                codes.extend([evidence] * len(chosen))
                details.extend(item_ids[closest].tolist())
    logger.info("%s candidates: %d rows for %d users", source, len(out_users), len(profile_users))
    return _frame(out_users, out_items, out_scores, source, codes, details)


class _ContentSpace:
    """A content space prepared once: string ids, unit rows and the row of each id."""

    def __init__(self, vectors: VectorTable, source: str) -> None:
        ids, matrix = vectors
        self.item_ids = np.asarray([str(i) for i in ids], dtype=object)
        self.matrix = normalize_rows(matrix)
        if len(self.item_ids) != len(self.matrix):
            raise ValueError(
                f"{source} vectors: {len(self.item_ids)} ids for {len(self.matrix)} rows"
            )
        self.position = pd.Series(np.arange(len(self.item_ids)), index=pd.Index(self.item_ids))


class _ItemTerms:
    """Each item's weighted terms (through its artist), built once per catalog."""

    def __init__(
        self,
        artist_terms: pd.DataFrame,
        item_ids: np.ndarray,
        item_artist: Mapping[str, str] | None,
    ) -> None:
        matrix, artists, self.terms = _term_matrix(artist_terms)
        artist_row = pd.Series(np.arange(len(artists)), index=pd.Index(artists))
        item_artists = pd.Series(item_ids).map(
            (lambda i: item_artist.get(i, i)) if item_artist is not None else (lambda i: i)
        )
        rows = item_artists.map(artist_row)
        known = rows.notna().to_numpy()
        selector = sparse.csr_matrix(
            (np.ones(int(known.sum())), (np.flatnonzero(known), rows[known].to_numpy(dtype=int))),
            shape=(len(item_ids), len(artists)),
        )
        self.item_terms = (selector @ matrix).tocsr()


class _TermDescriber:
    """The candidate's terms that best match the terms of what the user played."""

    def __init__(
        self,
        item_terms: _ItemTerms,
        item_ids: np.ndarray,
        history: pd.DataFrame,
        top_terms: int = 2,
    ) -> None:
        self.terms = item_terms.terms
        self.item_terms = item_terms.item_terms
        users, user_rows = np.unique(history["user_id"].astype(str).to_numpy(), return_inverse=True)
        weights = sparse.csr_matrix(
            (
                np.log1p(history["plays"].to_numpy(dtype=float)),
                (user_rows, history["row"].to_numpy(dtype=np.int64)),
            ),
            shape=(len(users), len(item_ids)),
        )
        self.user_terms = (weights @ self.item_terms).tocsr()
        self.user_row = {u: i for i, u in enumerate(users)}
        self.top_terms = top_terms

    def describe(self, user: str, chosen: np.ndarray) -> tuple[list[str], list[str]]:
        """Per candidate its ``top_terms`` terms by match with the user's terms (the
        candidate's own strongest when none is shared), ties to the lower term index: one sort
        over every candidate's terms at once."""
        profile = self.user_terms[self.user_row[user]].toarray().ravel()
        candidate_terms = self.item_terms[chosen]
        counts = np.diff(candidate_terms.indptr)
        owner = np.repeat(np.arange(len(chosen)), counts)
        columns, data = candidate_terms.indices, candidate_terms.data
        match = data * profile[columns]
        best = np.full(len(chosen), -np.inf)
        np.maximum.at(best, owner, match)
        value = np.where(best[owner] <= 0, data, match)  # nothing shared: own strongest terms
        order = np.lexsort((columns, -value, owner))
        rank = np.arange(len(order)) - np.repeat(candidate_terms.indptr[:-1], counts)
        kept = order[rank < self.top_terms]
        words: list[list[str]] = [[] for _ in range(len(chosen))]
        for candidate, term in zip(owner[kept].tolist(), self.terms[columns[kept]], strict=True):
            words[candidate].append(term)
        codes = ["described_as" if w else "taste_profile" for w in words]
        return codes, [", ".join(w) for w in words]


# ---------------------------------------------------------------------------------- others
def new_item_candidates(
    user_vectors: VectorTable,
    new_item_vectors: VectorTable,
    played: Mapping[str, set[str]],
    n: int = 20,
) -> pd.DataFrame:
    """Brand-new items (no plays) for each user, placed in the CF space by a projection.

    Parameters
    ----------
    user_vectors
        ``(user_ids, factors)`` of a factor model (e.g. ALS user factors).
    new_item_vectors
        ``(item_ids, factors)``: CF factors predicted from audio for the new items
        (:mod:`embeddings.audio_to_cf`), in the same space as ``user_vectors``.
    played
        ``{user_id: items played}``; played items are never returned.
    n
        Candidates per user.

    Returns
    -------
    pandas.DataFrame
        :data:`CANDIDATE_COLUMNS`, source ``new``, reason ``new_this_week``.
    """
    _check_n(n)
    user_ids, user_matrix = user_vectors
    item_ids, item_matrix = new_item_vectors
    item_ids = np.asarray([str(i) for i in item_ids], dtype=object)
    if len(item_ids) == 0 or len(user_ids) == 0:
        return empty_candidates()
    user_matrix = np.asarray(user_matrix, dtype=np.float64)
    item_matrix = np.asarray(item_matrix, dtype=np.float64)
    if user_matrix.shape[1] != item_matrix.shape[1]:
        raise ValueError(
            f"new item factors have {item_matrix.shape[1]} dimensions but user factors have "
            f"{user_matrix.shape[1]}; project the audio into the same CF model's space"
        )
    scores = rows_matmul(user_matrix, item_matrix.T)
    for row, user in enumerate(user_ids):
        seen = played.get(str(user), set())
        if seen:
            scores[row, [i for i, item in enumerate(item_ids) if item in seen]] = -np.inf
    top, finite = _top_rows(scores, n)
    users, items, values = [], [], []
    for row, user in enumerate(user_ids):
        chosen = top[row][finite[row]]
        users.extend([str(user)] * len(chosen))
        items.extend(item_ids[chosen].tolist())
        values.extend(scores[row, chosen].tolist())
    return _frame(users, items, values, "new", "new_this_week", "")


def item_listeners(
    listens: pd.DataFrame,
    *,
    week_start: pd.Timestamp | str | None = None,
    recent_weeks: int = 4,
) -> pd.Series:
    """Distinct listeners per item, over the ``recent_weeks`` before ``week_start`` when
    ``listens.last_ts`` holds timestamps (and some fall in that window), else over all listens.

    Returns
    -------
    pandas.Series
        Index ``item_id``, sorted by listeners (descending) then item id.
    """
    _require(listens, ("user_id", "item_id"), "listens")
    frame = listens
    if week_start is not None and "last_ts" in listens.columns:
        stamps = pd.to_datetime(listens["last_ts"], utc=True, errors="coerce")
        end = pd.Timestamp(week_start)
        end = end.tz_localize("UTC") if end.tzinfo is None else end.tz_convert("UTC")
        recent = (stamps >= end - pd.Timedelta(weeks=recent_weeks)) & (stamps < end)
        if recent.any():
            frame = listens.loc[recent.to_numpy()]
    counts = frame.groupby(frame["item_id"].astype(str))["user_id"].nunique()
    counts = counts.rename("listeners").rename_axis("item_id").reset_index()
    counts = counts.sort_values(["listeners", "item_id"], ascending=[False, True])
    return counts.set_index("item_id")["listeners"]


def popularity_candidates(
    listeners: pd.Series,
    played: Mapping[str, set[str]],
    users: Iterable[str],
    n: int = 100,
    *,
    catalog: Iterable[str] | None = None,
) -> pd.DataFrame:
    """The most listened-to items each user has not played (reason ``popular_now``).

    Parameters
    ----------
    listeners
        Listeners per item, best first (:func:`item_listeners`).
    played
        ``{user_id: items played}``.
    users
        Users to serve (cold users with no history get the plain top).
    n
        Candidates per user.
    catalog
        Items allowed (default: all in ``listeners``).
    """
    _check_n(n)
    ranked = listeners
    if catalog is not None:
        ranked = listeners[listeners.index.isin(set(map(str, catalog)))]
    ranked_ids = ranked.index.astype(str).tolist()
    ranked_values = ranked.to_numpy(dtype=float)
    out_users, out_items, scores, details = [], [], [], []
    for user in map(str, users):
        seen = played.get(user, set())
        taken = 0
        for item, value in zip(ranked_ids, ranked_values, strict=True):
            if item in seen:
                continue
            out_users.append(user)
            out_items.append(item)
            scores.append(value)
            details.append(str(int(value)))
            taken += 1
            if taken >= n:
                break
    return _frame(out_users, out_items, scores, "popularity", "popular_now", details)


def _in_catalog(listeners: pd.Series, catalog: Iterable[str] | None) -> pd.Series:
    if catalog is None:
        return listeners
    return listeners[listeners.index.isin(set(map(str, catalog)))]


def _tail_in_catalog(
    listeners: pd.Series, head_share: float, catalog: Iterable[str] | None
) -> set[str]:
    tail = tail_items(listeners, head_share)
    if catalog is not None:
        tail &= set(map(str, catalog))
    return tail


def tail_items(listeners: pd.Series, head_share: float = 0.1) -> set[str]:
    """Items outside the ``head_share`` most listened-to share of items ("less popular")."""
    if not 0 <= head_share < 1:
        raise ValueError(f"head_share must be in [0, 1), got {head_share}")
    head = int(np.ceil(len(listeners) * head_share))
    return set(listeners.index[head:].astype(str))


def exploration_candidates(
    fitted: FittedCF,
    tail: Iterable[str],
    n: int = 50,
    *,
    users: Iterable[str] | None = None,
    explain: bool = True,
    prepared: dict | None = None,
) -> pd.DataFrame:
    """Less popular items close to the user's taste (factor-model scores on the tail only).

    Parameters
    ----------
    fitted
        A factor model (ALS or BPR).
    tail
        Item ids eligible as exploration (:func:`tail_items`).
    n
        Candidates per user.
    users
        Users to serve (default: all of the model).
    explain
        Name the played item closest (cosine of item factors) to each candidate.
    prepared
        A cache kept across user batches (see :func:`cf_candidates`).

    Returns
    -------
    pandas.DataFrame
        :data:`CANDIDATE_COLUMNS`, source ``exploration``, reason ``exploration``.
    """
    if fitted.config.model not in FACTOR_KINDS:
        raise ValueError(
            f"exploration needs a factor model (als or bpr), got {fitted.config.model!r}"
        )
    cache = {} if prepared is None else prepared
    frame = cf_candidates(
        fitted, "exploration", n, users=users, catalog=tail, explain=False, prepared=cache
    )
    if frame.empty:
        return frame
    frame["reason_code"] = "exploration"
    if explain:
        items = _cached(
            cache, ("unit_items", id(fitted)), lambda: normalize_rows(fitted.model.item_factors)
        )
        item_index = fitted.interactions.item_index
        item_ids = np.asarray(fitted.item_ids, dtype=object)
        plays = fitted.interactions.plays
        details = []
        for user, group in frame.groupby("user_id", sort=False):
            played_rows = plays[fitted.interactions.user_index[user]].indices
            chosen = np.array([item_index[i] for i in group["item_id"]], dtype=np.int64)
            closest = played_rows[np.argmax(items[played_rows] @ items[chosen].T, axis=0)]
            details.append(pd.Series(item_ids[closest], index=group.index))
        frame["reason_detail"] = pd.concat(details).reindex(frame.index)
    return frame


def cold_start_candidates(
    listeners: pd.Series,
    users: Iterable[str],
    n: int = 30,
    *,
    exploration: int = 3,
    head_share: float = 0.1,
    seed: int = 42,
    rng: np.random.Generator | None = None,
) -> pd.DataFrame:
    """Candidates for users with no history: the most popular items plus seeded picks from
    the less popular tail (sampled in proportion to listeners, so they are not noise).

    The picks draw from one generator user after user: pass the same ``rng`` (seeded once)
    to calls on consecutive batches of the sorted users to get the picks of one call on all
    of them; default a new generator seeded with ``seed``.

    Returns
    -------
    pandas.DataFrame
        :data:`CANDIDATE_COLUMNS`; sources ``popularity`` (``popular_now``) and
        ``exploration`` (reason ``cold_start``).
    """
    users = [str(u) for u in users]
    if not users or listeners.empty:
        return empty_candidates()
    popular = popularity_candidates(listeners, {}, users, n=n)
    tail = sorted(tail_items(listeners, head_share))
    frames = [popular]
    if exploration > 0 and tail:
        weights = listeners.reindex(tail).to_numpy(dtype=float)
        weights = weights / weights.sum() if weights.sum() > 0 else None
        rng = np.random.default_rng(seed) if rng is None else rng
        size = min(exploration * 3, len(tail))
        rows = []
        for user in users:
            picks = rng.choice(len(tail), size=size, replace=False, p=weights)
            rows.extend((user, tail[p], float(size - j)) for j, p in enumerate(picks))
        frames.append(
            _frame(
                [r[0] for r in rows],
                [r[1] for r in rows],
                [r[2] for r in rows],
                "exploration",
                "cold_start",
                "",
            )
        )
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------------------------- all
def generate_candidates(
    listens: pd.DataFrame,
    fitted: Mapping[str, FittedCF],
    *,
    text_vectors: VectorTable | None = None,
    audio_vectors: VectorTable | None = None,
    cooccurrence_vectors: VectorTable | None = None,
    new_item_vectors: VectorTable | None = None,
    artist_terms: pd.DataFrame | None = None,
    item_artist: Mapping[str, str] | None = None,
    users: Iterable[str] | None = None,
    catalog: Iterable[str] | None = None,
    n: int = 100,
    exploration_n: int = 50,
    head_share: float = 0.1,
    week_start: pd.Timestamp | str | None = None,
    explain: bool = True,
    exploration_model: str = "als",
    listeners: pd.Series | None = None,
    prepared: dict | None = None,
    social: SocialCandidates | None = None,
) -> pd.DataFrame:
    """Candidates of every available source for the users with history, concatenated.

    Per-user work only: called on a batch of users with ``listens`` holding their history and
    ``listeners`` computed on the whole history, it returns exactly those users' rows of the
    call on everyone.

    Parameters
    ----------
    listens
        The history the models were fitted on (``user_id, item_id, plays[, last_ts]``).
    fitted
        ``{source label: FittedCF}``, e.g. ``{"ease": ..., "item_knn": ..., "als": ...}``.
    text_vectors, audio_vectors, cooccurrence_vectors
        ``(item_ids, matrix)`` content spaces (optional sources; co-occurrence vectors per
        item through :func:`item_vectors_from_artists`).
    new_item_vectors
        ``(item_ids, CF factors)`` of brand-new items projected from audio into the space of
        ``fitted[exploration_model]`` (optional source ``new``).
    artist_terms, item_artist
        Evidence for ``described_as`` reasons; item -> artist map for track catalogs.
    users, catalog
        Users to serve (default: all in ``listens``) and items allowed (default: all).
    n, exploration_n
        Candidates per user and source; exploration candidates per user.
    head_share
        Share of most listened-to items that exploration leaves out.
    week_start
        Popularity counts the four weeks before it when listens carry ``last_ts``.
    explain
        Build reasons (turn off for faster offline evaluation).
    exploration_model
        The factor model (key of ``fitted``) behind exploration and new items.
    listeners
        Listeners per item of the whole history (:func:`item_listeners` with ``week_start``):
        popularity and the exploration tail; default computed from ``listens``.
    prepared
        A cache kept across user batches of one week (:func:`cf_candidates`).
    social
        The ``friends`` and ``own_tags`` sources (:class:`recommend.social.SocialSources`).

    Returns
    -------
    pandas.DataFrame
        :data:`CANDIDATE_COLUMNS`.
    """
    _require(listens, ("user_id", "item_id", "plays"), "listens")
    cache = {} if prepared is None else prepared
    user_list = (
        sorted(set(listens["user_id"].astype(str))) if users is None else [str(u) for u in users]
    )
    played = played_items(listens)
    frames = []
    for label, model in fitted.items():
        frames.append(
            cf_candidates(
                model, label, n, users=user_list, catalog=catalog, explain=explain, prepared=cache
            )
        )
    if text_vectors is not None:
        frames.append(
            content_candidates(
                listens,
                text_vectors,
                n,
                source="text",
                users=user_list,
                catalog=catalog,
                explain=explain,
                artist_terms=artist_terms,
                item_artist=item_artist,
                prepared=cache,
            )
        )
    for source, vectors in (("audio", audio_vectors), ("cooccurrence", cooccurrence_vectors)):
        if vectors is not None:
            frames.append(
                content_candidates(
                    listens,
                    vectors,
                    n,
                    source=source,
                    users=user_list,
                    catalog=catalog,
                    explain=explain,
                    prepared=cache,
                )
            )
    if social is not None:
        frames.append(social.candidates(listens, user_list, n))
    if listeners is None:
        listeners = item_listeners(listens, week_start=week_start)
    ranked = _cached(
        cache, ("ranked", id(listeners), id(catalog)), lambda: _in_catalog(listeners, catalog)
    )
    frames.append(popularity_candidates(ranked, played, user_list, n))
    explorer = fitted.get(exploration_model)
    if explorer is not None and explorer.config.model in FACTOR_KINDS and exploration_n > 0:
        tail = _cached(
            cache,
            ("tail", id(listeners), id(catalog), head_share),
            lambda: _tail_in_catalog(listeners, head_share, catalog),
        )
        frames.append(
            exploration_candidates(
                explorer, tail, exploration_n, users=user_list, explain=explain, prepared=cache
            )
        )
        if new_item_vectors is not None:
            index = explorer.interactions.user_index
            known = [u for u in user_list if u in index]
            factors = explorer.model.user_factors[[index[u] for u in known]]
            frames.append(
                new_item_candidates((known, factors), new_item_vectors, played, n=min(n, 20))
            )
    frames = [f for f in frames if not f.empty]
    if not frames:
        return empty_candidates()
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------------------------- reasons
def explain(reason_code: str, reason_detail: str, names: Mapping[str, str] | None = None) -> str:
    """The sentence people read for a reason code and its evidence.

    Parameters
    ----------
    reason_code
        One of :data:`REASON_CODES`.
    reason_detail
        Evidence: an item id (``because_you_played``, ``sounds_like``, ``exploration``), terms
        (``described_as``), ``"k/K"`` neighbours (``listeners_like_you``), a listener count
        (``popular_now``), or ``""``.
    names
        ``{item_id: display name}`` for item ids in the evidence.

    Examples
    --------
    >>> explain("because_you_played", "289", {"289": "Britney Spears"})
    'because you played Britney Spears'
    >>> explain("described_as", "dreamy, shoegaze")
    "described as 'dreamy, shoegaze'"
    """
    names = names or {}
    detail = "" if reason_detail is None or reason_detail != reason_detail else str(reason_detail)
    name = names.get(detail, detail)
    if reason_code == "because_you_played" and detail:
        return f"because you played {name}"
    if reason_code == "listeners_like_you":
        if "/" in detail and not detail.startswith("0/"):
            count, total = detail.split("/", 1)
            return f"listeners like you play this ({count} of your {total} closest listeners)"
        return "listeners like you play this"
    if reason_code == "described_as" and detail:
        return f"described as '{detail}'"
    if reason_code == "sounds_like" and detail:
        return f"sounds like {name}"
    if reason_code == "played_alongside" and detail:
        return f"often played alongside {name}"
    if reason_code == "next_step" and detail:
        return f"one step outward from {name}, where explorers went next"
    if reason_code == "friends_play":
        if detail.isdigit() and int(detail) > 1:
            return f"{detail} of your friends play this"
        return "your friends play this"
    if reason_code == "your_tags":
        return f"you tag music like this: '{detail}'" if detail else "tagged the way you tag music"
    if reason_code == "new_this_week":
        return "new this week"
    if reason_code == "popular_now":
        return "popular right now"
    if reason_code == "exploration":
        return (
            f"off the beaten track, close to {name}"
            if detail
            else "off the beaten track, close to your taste"
        )
    if reason_code == "cold_start":
        return "a less-known pick to start exploring"
    return "close to your taste"
