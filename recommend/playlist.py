"""Discover Weekly: candidates -> blend -> playlist rules, similar artists, evaluation, CLI text.

:func:`build_discover_weekly` fits the CF sources on the listens, adds text, audio, new-track,
popularity and exploration candidates, blends them (:mod:`recommend.blend`), applies the playlist
rules (:mod:`recommend.rerank`) and writes one reason per item. :func:`evaluate_blend` measures
the blend against each single source on a holdout with weights tuned on a validation split
carved from train. :func:`playlist_text` prints a stored playlist for the CLI.

Example usage::

    playlist = build_discover_weekly(listens, items, artist_terms=terms,
                                     week_start="2026-11-16")
    neighbours = similar_artists(listens, items, artist_terms=terms)
    table = evaluate_blend(split.train, split.test, artist_terms=terms)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from embeddings.cf import CF_PRESETS, CFConfig, FittedCF, fit_cf
from embeddings.text import normalise_rows
from recommend.blend import (
    BlendConfig,
    fuse,
    item_novelty,
    source_rankings,
    top_k_ranking,
    tune_blend,
)
from recommend.candidates import (
    FACTOR_KINDS,
    VectorTable,
    cold_start_candidates,
    empty_candidates,
    explain,
    generate_candidates,
    item_listeners,
    item_vectors_from_artists,
    played_items,
    term_vectors,
)
from recommend.evaluation import evaluate_ranking, metrics_bar_chart, validation_split
from recommend.rerank import PlaylistConfig, rerank

logger = logging.getLogger(__name__)

PLAYLIST_OUTPUT_COLUMNS = [
    "week_start",
    "user_id",
    "position",
    "item_id",
    "artist_id",
    "name",
    "score",
    "source",
    "reason",
]
SIMILAR_COLUMNS = ["artist_id", "rank", "similar_artist_id", "score", "reason"]
PLAYLIST_TABLE = "recommend.discover_weekly"
EVALUATION_METRICS = (
    "ndcg@10",
    "ndcg@30",
    "recall@30",
    "coverage@30",
    "novelty@30",
    "diversity@30",
)


def _default_models() -> dict[str, CFConfig]:
    return {
        "ease": CF_PRESETS["ease"],
        "item_knn": CF_PRESETS["item_knn"],
        "als": CF_PRESETS["als"],
    }


@dataclass(frozen=True)
class DiscoverWeeklyConfig:
    """Everything that shapes the weekly playlists.

    Parameters
    ----------
    cf_models
        ``{source label: CFConfig}`` of the CF sources; the ``exploration_model`` one must be a
        factor model (ALS/BPR): it drives exploration, new tracks and MMR vectors.
    candidates_per_source
        Candidates per user and source before blending.
    exploration_candidates
        Exploration pool per user.
    head_share
        Share of the most listened-to items exploration leaves out.
    blend
        Fusion weights and normalisation.
    playlist
        The playlist rules.
    text_dim
        Size of term vectors built from ``artist_terms`` when no text vectors are given.
    mmr_space
        ``"cf"`` (factor-model item vectors) or ``"text"`` for MMR similarity.
    exploration_model
        Key of ``cf_models`` used for exploration.
    num_threads
        Threads for implicit and BLAS.
    seed
        Seed of every random choice (term SVD, cold-start picks).
    """

    cf_models: Mapping[str, CFConfig] = field(default_factory=_default_models)
    candidates_per_source: int = 100
    exploration_candidates: int = 30
    head_share: float = 0.1
    blend: BlendConfig = field(default_factory=BlendConfig)
    playlist: PlaylistConfig = field(default_factory=PlaylistConfig)
    text_dim: int = 128
    mmr_space: str = "cf"
    exploration_model: str = "als"
    num_threads: int = 2
    seed: int = 42

    def __post_init__(self) -> None:
        if self.mmr_space not in ("cf", "text"):
            raise ValueError(f"mmr_space must be 'cf' or 'text', got {self.mmr_space!r}")
        if not self.cf_models:
            raise ValueError("cf_models is empty; give at least one CF source")


# ---------------------------------------------------------------------------------- inputs
def _checked(
    frame: pd.DataFrame, required: tuple[str, ...], ids: tuple[str, ...], what: str
) -> pd.DataFrame:
    """A copy of ``frame`` with string ids, or a ValueError naming the missing columns."""
    missing = set(required) - set(frame.columns)
    if missing:
        raise ValueError(
            f"{what} frame lacks columns {sorted(missing)}; it needs {', '.join(required)} "
            f"(golden {what})"
        )
    out = frame.copy()
    for column in ids:
        out[column] = out[column].astype(str)
    return out


def _check_items(items: pd.DataFrame) -> pd.DataFrame:
    out = _checked(items, ("item_id", "artist_id", "name"), ("item_id", "artist_id"), "items")
    return out.drop_duplicates("item_id")


def _check_listens(listens: pd.DataFrame) -> pd.DataFrame:
    return _checked(listens, ("user_id", "item_id", "plays"), ("user_id", "item_id"), "listens")


def _text_space(
    items: pd.DataFrame | None,
    artist_terms: pd.DataFrame | None,
    text_vectors: VectorTable | None,
    dim: int,
    seed: int,
) -> VectorTable | None:
    """Item-level text vectors: given artist vectors (or term vectors) mapped to items."""
    artist_vectors = text_vectors
    if artist_vectors is None and artist_terms is not None and not artist_terms.empty:
        artist_vectors = term_vectors(artist_terms, dim, seed=seed)
    if artist_vectors is None:
        return None
    if items is None:
        return artist_vectors
    return item_vectors_from_artists(items, artist_vectors)


def _fit_all(
    listens: pd.DataFrame,
    models: Mapping[str, CFConfig],
    num_threads: int,
) -> dict[str, FittedCF]:
    fitted = {}
    for label, cf_config in models.items():
        fitted[label] = fit_cf(listens, cf_config, num_threads=num_threads, compute_loss=False)
    return fitted


def project_new_items(
    fitted: FittedCF, audio_vectors: VectorTable, catalog: Iterable[str], *, min_pairs: int = 10
) -> VectorTable | None:
    """CF factors for catalog items with audio but no plays, through the audio -> CF regressor.

    Parameters
    ----------
    fitted
        A factor model (ALS/BPR) fitted on the listens.
    audio_vectors
        ``(item_ids, matrix)`` audio embeddings.
    catalog
        Item ids that may be recommended.
    min_pairs
        Items with both audio and CF factors needed to fit the regressor; fewer gives None.

    Returns
    -------
    (item_ids, factors) or None
    """
    from embeddings.audio_to_cf import AudioToCF

    if fitted.config.model not in FACTOR_KINDS:
        raise ValueError(
            f"new items are placed in a factor model's space, got {fitted.config.model!r}"
        )
    ids = [str(i) for i in audio_vectors[0]]
    matrix = np.asarray(audio_vectors[1], dtype=np.float64)
    index = fitted.interactions.item_index
    known = [r for r, i in enumerate(ids) if i in index]
    allowed = set(map(str, catalog))
    new = [r for r, i in enumerate(ids) if i not in index and i in allowed]
    if not new or len(known) < min_pairs:
        return None
    regressor = AudioToCF().fit(
        matrix[known], fitted.model.item_factors[[index[ids[r]] for r in known]]
    )
    return [ids[r] for r in new], regressor.predict(matrix[new])


# ---------------------------------------------------------------------------------- build
def build_discover_weekly(
    listens: pd.DataFrame,
    items: pd.DataFrame,
    *,
    week_start: str | pd.Timestamp,
    config: DiscoverWeeklyConfig | None = None,
    users: Sequence[str] | None = None,
    artist_terms: pd.DataFrame | None = None,
    text_vectors: VectorTable | None = None,
    audio_vectors: VectorTable | None = None,
    fitted: Mapping[str, FittedCF] | None = None,
    return_candidates: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Weekly playlists: ``config.playlist.size`` never-played items per user, each with a reason.

    Parameters
    ----------
    listens
        Golden listens ``user_id, item_id, plays[, first_ts, last_ts]`` (history until
        ``week_start``).
    items
        Golden items ``item_id, artist_id, name[, genre, level]``: the catalog.
    week_start
        The week the playlists are for (a date).
    config
        Models, blend and rules (default :class:`DiscoverWeeklyConfig`).
    users
        Users to serve (default: everyone in ``listens``); users without history get
        popularity and exploration picks.
    artist_terms
        ``artist_id, term, weight``: ``described_as`` reasons, and term vectors when no
        ``text_vectors`` are given.
    text_vectors
        ``(artist_ids, matrix)`` sentence vectors from :mod:`embeddings.text` (optional).
    audio_vectors
        ``(item_ids, matrix)`` audio embeddings of tracks (optional); tracks without plays are
        placed by :func:`project_new_items` as ``new this week``.
    fitted
        Already fitted CF models (keys as ``config.cf_models``); fitted here when None.
    return_candidates
        Also return the per-source candidates (``user_id, item_id, score, source,
        reason_code, reason_detail``) the playlists were blended from.

    Returns
    -------
    pandas.DataFrame
        :data:`PLAYLIST_OUTPUT_COLUMNS` (``week_start`` a date), sorted by user and position;
        with ``return_candidates``, a ``(playlists, candidates)`` pair.
    """
    config = config or DiscoverWeeklyConfig()
    started = time.perf_counter()
    listens = _check_listens(listens)
    items = _check_items(items)
    week = pd.Timestamp(week_start)
    if listens.empty and not users:
        raise ValueError("listens is empty and no users were given: nobody to build for")
    catalog = set(items["item_id"])
    unknown = set(listens["item_id"]) - catalog
    if unknown:
        raise ValueError(
            f"{len(unknown)} listened items are not in the items catalog, e.g. "
            f"{sorted(unknown)[:5]}; build items and listens from the same golden "
            "tables"
        )
    item_artist = dict(zip(items["item_id"], items["artist_id"], strict=True))
    names = dict(zip(items["item_id"], items["name"].astype(str), strict=True))
    served = sorted(set(listens["user_id"])) if users is None else [str(u) for u in users]
    with_history = sorted(set(served) & set(listens["user_id"]))
    cold = sorted(set(served) - set(with_history))
    played = played_items(listens)
    listeners = (
        item_listeners(listens, week_start=week) if not listens.empty else pd.Series(dtype=float)
    )
    frames = []
    candidate_frames: list[pd.DataFrame] = []
    with threadpool_limits(config.num_threads):
        if with_history:
            fitted = (
                dict(fitted)
                if fitted is not None
                else _fit_all(listens, config.cf_models, config.num_threads)
            )
            text = _text_space(items, artist_terms, text_vectors, config.text_dim, config.seed)
            explorer = fitted.get(config.exploration_model)
            new_items = None
            if audio_vectors is not None and explorer is not None:
                new_items = project_new_items(explorer, audio_vectors, catalog)
            candidates = generate_candidates(
                listens,
                fitted,
                text_vectors=text,
                audio_vectors=audio_vectors,
                new_item_vectors=new_items,
                artist_terms=artist_terms,
                item_artist=item_artist,
                users=with_history,
                catalog=catalog,
                n=config.candidates_per_source,
                exploration_n=config.exploration_candidates,
                head_share=config.head_share,
                week_start=week,
                exploration_model=config.exploration_model,
            )
            candidate_frames.append(candidates)
            blended = fuse(candidates, config.blend, novelty=item_novelty(listens))
            pool = candidates[candidates["source"].isin(["new", "exploration"])]
            # brand-new items before the less popular ones in the exploration pool
            pool = pool.assign(
                score=pool["score"].rank(pct=True) + (pool["source"] == "new").astype(float)
            )
            vectors = _mmr_vectors(config, fitted, text)
            frames.append(
                rerank(
                    blended, pool, played, item_artist, vectors, config.playlist, users=with_history
                )
            )
        if cold:
            if listeners.empty:
                raise ValueError(
                    f"{len(cold)} users have no history and listens is empty: "
                    "there is no popularity to start them with"
                )
            cold_candidates = cold_start_candidates(
                listeners,
                cold,
                n=config.playlist.pool_size,
                exploration=config.playlist.exploration_slots,
                head_share=config.head_share,
                seed=config.seed,
            )
            candidate_frames.append(cold_candidates)
            pool = cold_candidates[cold_candidates["source"] == "exploration"]
            ranked = cold_candidates[cold_candidates["source"] != "exploration"]
            frames.append(rerank(ranked, pool, {}, item_artist, None, config.playlist, users=cold))
    playlist = (
        pd.concat([f for f in frames if not f.empty], ignore_index=True)
        if any(not f.empty for f in frames)
        else pd.DataFrame(columns=PLAYLIST_OUTPUT_COLUMNS)
    )
    playlist["week_start"] = week.date()
    playlist["name"] = playlist["item_id"].map(names)
    playlist["reason"] = [
        explain(c, d, names)
        for c, d in zip(
            playlist.get("reason_code", []), playlist.get("reason_detail", []), strict=True
        )
    ]
    playlist = playlist[PLAYLIST_OUTPUT_COLUMNS].sort_values(["user_id", "position"])
    logger.info(
        "discover weekly %s: %d users (%d cold), %d rows in %.1fs",
        week.date(),
        len(served),
        len(cold),
        len(playlist),
        time.perf_counter() - started,
    )
    playlist = playlist.reset_index(drop=True)
    if return_candidates:
        found = [f for f in candidate_frames if not f.empty]
        candidates = pd.concat(found, ignore_index=True) if found else empty_candidates()
        return playlist, candidates
    return playlist


def _mmr_vectors(
    config: DiscoverWeeklyConfig, fitted: Mapping[str, FittedCF], text: VectorTable | None
) -> VectorTable | None:
    if config.mmr_space == "text":
        return text
    model = fitted.get(config.exploration_model)
    if model is None or model.model.item_factors is None:
        return text
    return model.item_ids, model.model.item_factors


# ---------------------------------------------------------------------------------- similar
def similar_artists(
    listens: pd.DataFrame,
    items: pd.DataFrame,
    *,
    artist_terms: pd.DataFrame | None = None,
    text_vectors: VectorTable | None = None,
    k: int = 20,
    cf_weight: float = 0.7,
    cf_config: CFConfig | None = None,
    text_dim: int = 128,
    seed: int = 42,
    num_threads: int = 2,
    batch_size: int = 1024,
) -> pd.DataFrame:
    """Top-``k`` similar artists per artist, blended from CF item-item and text similarity.

    ``score = cf_weight * cf_cosine + (1 - cf_weight) * text_cosine`` over the union of each
    side's neighbours (a missing side counts 0). The reason names the stronger side: shared
    listeners, or the terms both artists are described with.

    Parameters
    ----------
    listens, items
        Golden listens and items; listens are summed to artist level.
    artist_terms
        ``artist_id, term, weight``: text vectors (when ``text_vectors`` is None) and reasons.
    text_vectors
        ``(artist_ids, matrix)`` sentence vectors (optional).
    k
        Neighbours per artist.
    cf_weight
        Weight of the CF side in [0, 1].
    cf_config
        Item-item model (default item-kNN cosine, ``CF_PRESETS["item_knn"]``).

    Returns
    -------
    pandas.DataFrame
        :data:`SIMILAR_COLUMNS`, rank 1 = most similar.
    """
    if not 0.0 <= cf_weight <= 1.0:
        raise ValueError(f"cf_weight must be in [0, 1], got {cf_weight}")
    listens = _check_listens(listens)
    items = _check_items(items)
    artist_listens = (
        listens.merge(items[["item_id", "artist_id"]], on="item_id", how="inner")
        .groupby(["user_id", "artist_id"], as_index=False)["plays"]
        .sum()
        .rename(columns={"artist_id": "item_id"})
    )
    pairs: dict[tuple[str, str], list[float]] = {}
    with threadpool_limits(num_threads):
        if cf_weight > 0 and not artist_listens.empty:
            cf = fit_cf(
                artist_listens,
                cf_config or CF_PRESETS["item_knn"],
                num_threads=num_threads,
                compute_loss=False,
            )
            for row, artist in enumerate(cf.item_ids):
                neighbours, scores = cf.model.similar_items(row, n=k)
                for neighbour, score in zip(neighbours, scores, strict=True):
                    if np.isfinite(score) and score > 0:
                        pairs.setdefault((artist, cf.item_ids[neighbour]), [0.0, 0.0])[0] = float(
                            score
                        )
        text = text_vectors
        if text is None and artist_terms is not None and not artist_terms.empty:
            text = term_vectors(artist_terms, text_dim, seed=seed)
        if cf_weight < 1 and text is not None:
            ids = np.asarray([str(i) for i in text[0]], dtype=object)
            unit = normalise_rows(np.asarray(text[1], dtype=np.float32))
            top_n = min(k, len(ids) - 1)
            for start in range(0, len(ids), batch_size):
                block = unit[start : start + batch_size] @ unit.T
                block[np.arange(block.shape[0]), np.arange(start, start + block.shape[0])] = -np.inf
                if top_n <= 0:
                    break
                top = np.argpartition(-block, top_n - 1, axis=1)[:, :top_n]
                for offset, row in enumerate(top):
                    artist = ids[start + offset]
                    for column in row:
                        score = float(block[offset, column])
                        if score > 0:
                            pairs.setdefault((artist, ids[column]), [0.0, 0.0])[1] = score
    if not pairs:
        return pd.DataFrame(columns=SIMILAR_COLUMNS)
    keys = np.array(list(pairs.keys()), dtype=object)
    values = np.array(list(pairs.values()))
    frame = pd.DataFrame(
        {
            "artist_id": keys[:, 0],
            "similar_artist_id": keys[:, 1],
            "cf": values[:, 0],
            "text": values[:, 1],
        }
    )
    frame["score"] = cf_weight * frame["cf"] + (1 - cf_weight) * frame["text"]
    frame = frame.sort_values(
        ["artist_id", "score", "similar_artist_id"], ascending=[True, False, True], kind="mergesort"
    )
    frame = frame.groupby("artist_id", sort=False).head(k).copy()
    frame["rank"] = frame.groupby("artist_id", sort=False).cumcount() + 1
    frame["reason"] = _similar_reasons(frame, artist_terms, cf_weight)
    return frame[SIMILAR_COLUMNS].reset_index(drop=True)


def _similar_reasons(
    frame: pd.DataFrame, artist_terms: pd.DataFrame | None, cf_weight: float
) -> list[str]:
    top_terms: dict[str, dict[str, float]] = {}
    if artist_terms is not None and not artist_terms.empty:
        for artist, group in artist_terms.groupby(artist_terms["artist_id"].astype(str)):
            top_terms[artist] = dict(zip(group["term"].astype(str), group["weight"], strict=True))
    reasons = []
    for artist, other, cf, text in zip(
        frame["artist_id"], frame["similar_artist_id"], frame["cf"], frame["text"], strict=True
    ):
        shared = set(top_terms.get(artist, {})) & set(top_terms.get(other, {}))
        terms = sorted(shared, key=lambda t: (-min(top_terms[artist][t], top_terms[other][t]), t))[
            :2
        ]
        if cf * cf_weight >= text * (1 - cf_weight) and cf > 0:
            reason = "played by the same listeners"
            if terms:
                reason += f"; both described as '{', '.join(terms)}'"
        elif terms:
            reason = f"both described as '{', '.join(terms)}'"
        else:
            reason = "similar descriptions"
        reasons.append(reason)
    return reasons


# ---------------------------------------------------------------------------------- evaluation
def evaluate_blend(
    train: pd.DataFrame,
    test: pd.DataFrame,
    *,
    artist_terms: pd.DataFrame | None = None,
    text_vectors: VectorTable | None = None,
    items: pd.DataFrame | None = None,
    config: DiscoverWeeklyConfig | None = None,
    validation_fraction: float = 0.2,
    validation_seed: int = 7,
    tune_methods: Sequence[str] = ("zscore", "rrf"),
    reference: str | None = "als",
) -> pd.DataFrame:
    """The blend vs each single source on the same holdout; weights tuned on validation.

    Steps: carve a validation split from ``train`` (never ``test``); fit every source on the
    fitting part and tune the blend (:func:`recommend.blend.tune_blend`, NDCG@10); refit on all
    of ``train``; rank the test users with each single source, the tuned blend (``blend``) and
    the full playlist rules (``discover_weekly``: MMR, exploration slots); score them all with
    :func:`recommend.evaluation.evaluate_ranking`. Only items of ``train`` can be recommended.

    Parameters
    ----------
    train, test
        A holdout split (``recommend.evaluation.holdout_split``) of golden listens.
    artist_terms, text_vectors
        Text source inputs (term vectors are built from ``artist_terms`` when no vectors).
    items
        ``item_id, artist_id`` for track catalogs (default: items are artists).
    config
        Models and rules; ``config.blend`` is replaced by the tuned one.
    validation_fraction, validation_seed
        The validation split carved from ``train``.
    tune_methods
        Normalisations tried by the tuning.
    reference
        The source whose validation coverage@10 and novelty@10 the tuned blend must reach
        (:func:`recommend.blend.tune_blend`); None: tune for NDCG@10 alone.

    Returns
    -------
    pandas.DataFrame
        Index ``ranking``; columns :data:`EVALUATION_METRICS` and the rest of
        ``evaluate_ranking``'s. ``attrs``: ``blend_config`` (the tuned :class:`BlendConfig`),
        ``tuning`` (search history), ``seconds`` (phase timings) and ``chart_png`` (bytes of a
        bar chart, :func:`blend_chart_png`).
    """
    config = config or DiscoverWeeklyConfig()
    train = _check_listens(train)
    test = (
        _check_listens(test)
        if "plays" in test.columns
        else test.astype({"user_id": str, "item_id": str})
    )
    if items is None:
        item_table = pd.DataFrame({"item_id": sorted(set(train["item_id"]))})
        item_table["artist_id"] = item_table["item_id"]
    else:
        item_table = _check_items(items.assign(name=items.get("name", "")))
    item_artist = dict(zip(item_table["item_id"], item_table["artist_id"], strict=True))
    seconds: dict[str, float] = {}
    with threadpool_limits(config.num_threads):
        clock = time.perf_counter()
        text = _text_space(
            item_table if items is not None else None,
            artist_terms,
            text_vectors,
            config.text_dim,
            config.seed,
        )
        seconds["text_vectors"] = time.perf_counter() - clock

        def evaluation_candidates(history, fitted, users=None):
            """Unexplained candidates from every source, on ``history``'s catalog."""
            return generate_candidates(
                history,
                fitted,
                text_vectors=text,
                catalog=set(history["item_id"]),
                users=users,
                n=config.candidates_per_source,
                exploration_n=config.exploration_candidates,
                head_share=config.head_share,
                explain=False,
                exploration_model=config.exploration_model,
                item_artist=item_artist,
            )

        clock = time.perf_counter()
        split = validation_split(train, validation_fraction, seed=validation_seed)
        fit_part = _check_listens(split.train)
        fitted = _fit_all(fit_part, config.cf_models, config.num_threads)
        candidates = evaluation_candidates(fit_part, fitted)
        seconds["validation_candidates"] = time.perf_counter() - clock
        clock = time.perf_counter()
        blend_config, history = tune_blend(
            candidates,
            split.test,
            methods=tune_methods,
            rrf_k=config.blend.rrf_k,
            novelty=item_novelty(fit_part),
            reference=reference,
        )
        seconds["tuning"] = time.perf_counter() - clock

        clock = time.perf_counter()
        fitted = _fit_all(train, config.cf_models, config.num_threads)
        test_users = sorted(set(test["user_id"]))
        candidates = evaluation_candidates(train, fitted, test_users)
        seconds["test_candidates"] = time.perf_counter() - clock

        clock = time.perf_counter()
        k = max(30, config.playlist.size)
        rankings = source_rankings(candidates, k)
        blended = fuse(candidates, blend_config, novelty=item_novelty(train))
        rankings["blend"] = top_k_ranking(blended, k)
        pool = candidates[candidates["source"] == "exploration"]
        vectors = _mmr_vectors(config, fitted, text)
        playlist = rerank(
            blended,
            pool,
            played_items(train),
            item_artist,
            vectors,
            config.playlist,
            users=test_users,
        )
        rankings["discover_weekly"] = {
            u: list(g) for u, g in playlist.groupby("user_id")["item_id"]
        }
        seconds["blend_and_rerank"] = time.perf_counter() - clock

        clock = time.perf_counter()
        diversity_vectors = vectors if vectors is not None else text
        rows = []
        for label, ranking in rankings.items():
            row = evaluate_ranking(
                ranking, test, train, ks=(10, 30), item_vectors=diversity_vectors
            )
            rows.append({"ranking": label, **row})
        seconds["metrics"] = time.perf_counter() - clock
    table = pd.DataFrame(rows).set_index("ranking")
    first = [m for m in EVALUATION_METRICS if m in table.columns]
    table = table[first + [c for c in table.columns if c not in first]]
    table = table.sort_values("ndcg@10", ascending=False)
    table.attrs["blend_config"] = blend_config
    table.attrs["tuning"] = history
    table.attrs["seconds"] = {name: round(value, 1) for name, value in seconds.items()}
    table.attrs["chart_png"] = blend_chart_png(table)
    logger.info("blend evaluation: %s", table[first].round(4).to_dict("index"))
    return table


def blend_chart_png(
    table: pd.DataFrame, metrics: Sequence[str] = ("ndcg@10", "ndcg@30", "recall@30", "coverage@30")
) -> bytes:
    """A grouped bar chart (PNG bytes) of the blend vs single sources."""
    present = [m for m in metrics if m in table.columns]
    return metrics_bar_chart(table, present, title="Discover Weekly: blend vs single sources")


# ---------------------------------------------------------------------------------- CLI text
def _table_exists(connection, schema: str, table: str) -> bool:
    found = connection.execute(
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
        [schema, table],
    ).fetchone()
    return bool(found and found[0])


def playlist_text(warehouse_path: str | Path, user_id: str, week: str | None = None) -> str:
    """A user's Discover Weekly as a numbered list with reasons, from the warehouse.

    Parameters
    ----------
    warehouse_path
        The DuckDB file (opened read-only).
    user_id
        The user.
    week
        ``YYYY-MM-DD`` week start; default the user's latest week.

    Returns
    -------
    str
        The playlist, or a message saying why there is none (unknown user, no such week, no
        table yet).
    """
    import duckdb

    path = Path(warehouse_path)
    if not path.exists():
        return f"No warehouse at {path}: materialize the pipeline first."
    schema, table = PLAYLIST_TABLE.split(".")
    with duckdb.connect(str(path), read_only=True) as connection:
        if not _table_exists(connection, schema, table):
            return (
                f"No {PLAYLIST_TABLE} table in {path}: materialize the discover_weekly asset first."
            )
        user_id = str(user_id)
        weeks = [
            str(r[0])
            for r in connection.execute(
                f"select distinct cast(week_start as varchar) from {PLAYLIST_TABLE} "
                "where user_id = ? order by 1",
                [user_id],
            ).fetchall()
        ]
        if not weeks:
            examples = [
                r[0]
                for r in connection.execute(
                    f"select distinct user_id from {PLAYLIST_TABLE} order by 1 limit 5"
                ).fetchall()
            ]
            return (
                f"Unknown user {user_id!r}: no Discover Weekly playlist for them. "
                f"Users with playlists include {', '.join(map(str, examples))}."
            )
        chosen = weeks[-1] if week is None else str(pd.Timestamp(week).date())
        if chosen not in weeks:
            return (
                f"No Discover Weekly for user {user_id!r} in the week of {chosen}; "
                f"weeks available: {', '.join(weeks)}."
            )
        rows = connection.execute(
            f"select position, name, item_id, reason from {PLAYLIST_TABLE} where user_id = ? "
            "and cast(week_start as varchar) = ? order by position",
            [user_id, chosen],
        ).fetchall()
    lines = [f"Discover Weekly for user {user_id}, week of {chosen}"]
    for position, name, item_id, reason in rows:
        title = name if name not in (None, "") else item_id
        lines.append(f"{int(position):>2}. {title}  ({reason})")
    return "\n".join(lines)


def first_user_playlist_text(warehouse_path: str | Path) -> str:
    """The latest playlist of the first user (by id) in the warehouse; '' without the table."""
    import duckdb

    path = Path(warehouse_path)
    if not path.exists():
        return ""
    schema, table = PLAYLIST_TABLE.split(".")
    with duckdb.connect(str(path), read_only=True) as connection:
        if not _table_exists(connection, schema, table):
            return ""
        row = connection.execute(
            f"select user_id from {PLAYLIST_TABLE} order by user_id limit 1"
        ).fetchone()
    return "" if row is None else playlist_text(path, row[0])
