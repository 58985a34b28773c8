"""A learned playlist ranker: LightGBM LambdaRank over the union of every source's candidates.

One definition of the features (:func:`ranking_features`, names in :func:`feature_names`)
serves training and serving: per (user, candidate) pair

=====================  ==========================================================================
group                  features
=====================  ==========================================================================
sources                per source ``s``: ``s_z`` (the user's z-score of the source's score, as the
                       fusion normalises it; NaN when ``s`` did not propose the pair) and
                       ``s_rank`` (1-based rank within the user's candidates of ``s``,
                       :data:`MISSING_RANK` when absent); ``n_sources``
item                   ``item_log_listeners``, ``item_novelty`` (:class:`WeekStatistics`)
user                   ``user_log_items``, ``user_log_plays``, ``user_artists``,
                       ``user_artist_entropy``, ``user_mean_novelty`` (:func:`user_features`)
pair                   ``novelty_gap`` (item novelty - the user's mean), ``artist_played`` (the
                       user's played items by the candidate's artist), per vector space ``v``
                       (:func:`vector_spaces`: text, audio, tags) ``v_similarity``: cosine of
                       the item to the user's profile (log-plays weighted mean of the played
                       items' unit vectors); ``tags_similarity`` is the tag overlap
=====================  ==========================================================================

:func:`train_ranker` fits LambdaRank on a validation split carved from train (labels: the pair
is a validation hit), with early stopping on a group (user) split of those users; the
:class:`Ranker` is versioned by a hash of its training inputs and parameters. :func:`choose`
serves the ranker only when it beats the fusion on validation users it never trained on.

Example usage::

    features = ranking_features(candidates, history, statistics, sources=SOURCES)
    ranker = train_ranker(features, labels_of(features, validation), seed=42)
    ranked = ranker.rank(features, candidates)       # fuse()'s columns: the playlist stages' input
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol

import numpy as np
import pandas as pd
from scipy import sparse

from embeddings.vectors import normalize_rows
from featurestore.schemas import ITEM_RANKING_FEATURES, USER_RANKING_FEATURES
from recommend.blend import BLEND_COLUMNS
from recommend.candidates import VectorTable

logger = logging.getLogger(__name__)

FEATURE_VERSION = "1"
MISSING_RANK = 1000
# the user and item features are the columns of the Feast views the ranker reads (training
# point-in-time from the offline store, serving online): one definition, featurestore.schemas
USER_FEATURES = USER_RANKING_FEATURES.feature_names
ITEM_FEATURES = ITEM_RANKING_FEATURES.feature_names
PAIR_FEATURES = ("n_sources", "novelty_gap", "artist_played")
FUSION_FEATURES = ("fusion_score", "fusion_rank")
DEFAULT_PARAMS = {
    "objective": "lambdarank",
    "metric": "ndcg",
    "eval_at": [10],
    "learning_rate": 0.03,
    "num_leaves": 15,
    "min_data_in_leaf": 100,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambdarank_truncation_level": 20,
    "num_threads": 2,
    "deterministic": True,
    "force_row_wise": True,
    "verbosity": -1,
}


# ---------------------------------------------------------------------------------- features
def feature_names(
    sources: Sequence[str], spaces: Sequence[str] = (), fusion: bool = False
) -> list[str]:
    """The feature columns, in order, for these candidate sources and vector spaces (and the
    served fusion's score and rank when ``fusion``)."""
    names: list[str] = []
    for source in sources:
        names += [f"{source}_z", f"{source}_rank"]
    if fusion:
        names += list(FUSION_FEATURES)
    names += [*PAIR_FEATURES, *ITEM_FEATURES, *USER_FEATURES]
    names += [f"{space}_similarity" for space in spaces]
    return names


def user_features(
    history: pd.DataFrame,
    novelty: pd.Series,
    item_artist: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Per user (index ``user_id``): :data:`USER_FEATURES` of their history
    (``user_id, item_id, plays``); the user half of a Feast user feature view."""
    frame = history[["user_id", "item_id", "plays"]].astype({"user_id": str, "item_id": str})
    artist = (
        frame["item_id"].map(item_artist).fillna(frame["item_id"])
        if item_artist
        else frame["item_id"]
    )
    frame = frame.assign(artist_id=artist, novelty=frame["item_id"].map(novelty))
    by_user = frame.groupby("user_id")
    per_artist = frame.groupby(["user_id", "artist_id"])["plays"].sum()
    share = per_artist / per_artist.groupby(level="user_id").transform("sum")
    entropy = (-(share * np.log2(share))).groupby(level="user_id").sum()
    out = pd.DataFrame(
        {
            "user_log_items": np.log1p(by_user.size()),
            "user_log_plays": np.log1p(by_user["plays"].sum()),
            "user_artists": per_artist.groupby(level="user_id").size().astype(float),
            "user_artist_entropy": entropy,
            "user_mean_novelty": by_user["novelty"].mean(),
        }
    )
    return out[list(USER_FEATURES)].astype(float)


def item_features(
    listeners: pd.Series, novelty: pd.Series, catalog: Sequence[str] | None = None
) -> pd.DataFrame:
    """Per item (index ``item_id``): :data:`ITEM_FEATURES` (the item half of the Feast views).

    ``catalog``: the items to describe (default: those with statistics); an item nobody played
    has ``item_log_listeners`` 0 and no novelty (:func:`ranking_features` gives it the highest).
    """
    known = novelty.index.astype(str).union(listeners.index.astype(str))
    index = known if catalog is None else pd.Index(sorted({str(i) for i in catalog}))
    out = pd.DataFrame(index=pd.Index(index, name="item_id"))
    out["item_log_listeners"] = (
        np.log1p(pd.Series(listeners.to_numpy(dtype=float), index=listeners.index.astype(str)))
        .reindex(index)
        .fillna(0.0)
    )
    out["item_novelty"] = pd.Series(
        novelty.to_numpy(dtype=float), index=novelty.index.astype(str)
    ).reindex(index)
    return out


class RankingFeatureReader(Protocol):
    """Where :func:`ranking_features` reads the user and item features from instead of
    computing them: the Feast views ``user_ranking_features`` / ``item_ranking_features``
    (``featurestore.ranker_features``: point-in-time for training, online for serving)."""

    def users(self, user_ids: Sequence[str]) -> pd.DataFrame:
        """:data:`USER_FEATURES` per user (index ``user_id``; unknown users: NaN)."""
        ...

    def items(self, item_ids: Sequence[str]) -> pd.DataFrame:
        """:data:`ITEM_FEATURES` per item (index ``item_id``; unknown items: NaN)."""
        ...


def _profile_similarity(
    pairs: pd.DataFrame, history: pd.DataFrame, vectors: VectorTable
) -> np.ndarray:
    """Cosine of each pair's item to its user's profile in one vector space (NaN: no vector);
    the profile is the log-plays weighted sum of the played items' unit vectors. A sparse
    space (the tag space) stays sparse."""
    ids = [str(i) for i in vectors[0]]
    index = {item: row for row, item in enumerate(ids)}
    is_sparse = sparse.issparse(vectors[1])
    if is_sparse:
        unit = normalize_rows(sparse.csr_matrix(vectors[1]), dtype=np.float64)
    else:
        unit = normalize_rows(np.asarray(vectors[1], dtype=np.float64))
    rows = history["item_id"].astype(str).map(index)
    known = history[rows.notna().to_numpy()]
    weights = np.log1p(known["plays"].to_numpy(dtype=float))
    user_codes, users = pd.factorize(known["user_id"].astype(str))
    played = rows[rows.notna()].to_numpy(dtype=np.int64)
    if is_sparse:
        plays = sparse.csr_matrix(
            (weights, (user_codes, played)), shape=(len(users), unit.shape[0])
        )
        profiles = normalize_rows(plays @ unit, dtype=np.float64)
    else:
        profiles = np.zeros((len(users), unit.shape[1]))
        np.add.at(profiles, user_codes, unit[played] * weights[:, None])
        profiles = normalize_rows(profiles)
    user_row = pd.Index(users).get_indexer(pairs["user_id"].astype(str))
    item_row = pairs["item_id"].astype(str).map(index)
    ok = (user_row >= 0) & item_row.notna().to_numpy()
    out = np.full(len(pairs), np.nan)
    item_rows = item_row[ok].to_numpy(dtype=np.int64)
    user_rows = user_row[ok]
    values = np.empty(len(item_rows))
    for start in range(0, len(item_rows), 200_000):
        stop = start + 200_000
        left, right = profiles[user_rows[start:stop]], unit[item_rows[start:stop]]
        if is_sparse:
            values[start:stop] = np.asarray(left.multiply(right).sum(axis=1)).ravel()
        else:
            values[start:stop] = np.einsum("ij,ij->i", left, right)
    out[ok] = values
    return out


def vector_spaces(
    text: VectorTable | None = None,
    audio: VectorTable | None = None,
    tags: VectorTable | None = None,
) -> dict[str, VectorTable]:
    """The ranker's vector spaces that are at hand: ``text`` (text vectors), ``audio`` (audio
    embeddings) and ``tags`` (sparse TF-IDF of the artists' tags: tag overlap)."""
    spaces = {"text": text, "audio": audio, "tags": tags}
    return {name: vectors for name, vectors in spaces.items() if vectors is not None}


def ranking_features(
    candidates: pd.DataFrame,
    history: pd.DataFrame,
    *,
    listeners: pd.Series,
    novelty: pd.Series,
    sources: Sequence[str],
    item_artist: Mapping[str, str] | None = None,
    spaces: Mapping[str, VectorTable] | None = None,
    store: RankingFeatureReader | None = None,
    fused: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The features of every (user, candidate) pair: THE definition training and serving share.

    Parameters
    ----------
    candidates
        :data:`recommend.candidates.CANDIDATE_COLUMNS` of every source for some users.
    history
        Those users' plays (``user_id, item_id, plays``) the candidates were built from.
    listeners, novelty
        Per-item statistics of the whole history (:class:`recommend.history.WeekStatistics`).
    sources
        The candidate sources the ranker knows (others are ignored; missing ones stay NaN).
    item_artist
        ``{item_id: artist_id}`` (default: items are artists).
    spaces
        ``{name: (item_ids, matrix)}`` vector spaces for ``<name>_similarity`` (text,
        co-occurrence, audio, ...).
    store
        Where the user and item features are read (the Feast views: point-in-time when
        training, online when serving); default: :func:`user_features` /
        :func:`item_features` computed here from ``history`` and the statistics, the same
        definitions the views are written with.
    fused
        The served fusion of the same candidates (:func:`recommend.blend.fuse`: ``user_id,
        item_id, score, rank``): adds ``fusion_score`` and ``fusion_rank``, so the ranker
        starts from what fusion knows.

    Returns
    -------
    pandas.DataFrame
        ``user_id, item_id`` (sorted by user, then item) and :func:`feature_names` columns.
    """
    spaces = dict(spaces or {})
    names = feature_names(sources, list(spaces), fusion=fused is not None)
    frame = candidates[["user_id", "item_id", "score", "source"]].astype(
        {"user_id": str, "item_id": str}
    )
    frame = frame[frame["source"].isin(set(sources))]
    frame = frame.sort_values("score", ascending=False, kind="mergesort").drop_duplicates(
        ["user_id", "item_id", "source"]
    )
    groups = frame.groupby(["user_id", "source"], sort=False)["score"]
    std = groups.transform("std").fillna(0.0).replace(0.0, 1.0)
    frame["z"] = (frame["score"] - groups.transform("mean")) / std
    frame["rank"] = groups.rank(method="first", ascending=False)
    wide = frame.set_index(["user_id", "item_id", "source"])[["z", "rank"]].unstack("source")
    out = pd.DataFrame(index=wide.index)
    for source in sources:
        z = wide["z"][source] if source in wide["z"].columns else np.nan
        rank = wide["rank"][source] if source in wide["rank"].columns else np.nan
        out[f"{source}_z"] = z
        out[f"{source}_rank"] = pd.Series(rank, index=out.index).fillna(MISSING_RANK)
    out = out.reset_index()
    out["n_sources"] = (out[[f"{s}_rank" for s in sources]] < MISSING_RANK).sum(axis=1)
    if store is None:
        users = user_features(history, novelty, item_artist)
        items = item_features(listeners, novelty)
    else:
        users = store.users(sorted(out["user_id"].unique()))[list(USER_FEATURES)]
        items = store.items(sorted(out["item_id"].unique()))[list(ITEM_FEATURES)]
    out = out.join(items, on="item_id").join(users, on="user_id")
    out["item_log_listeners"] = out["item_log_listeners"].fillna(0.0)
    out["item_novelty"] = out["item_novelty"].fillna(float(novelty.max()) if len(novelty) else 0.0)
    out["novelty_gap"] = out["item_novelty"] - out["user_mean_novelty"]
    played = history[["user_id", "item_id"]].astype(str)
    if item_artist:
        played_artist = played["item_id"].map(item_artist).fillna(played["item_id"])
        candidate_artist = out["item_id"].map(item_artist).fillna(out["item_id"])
    else:
        played_artist, candidate_artist = played["item_id"], out["item_id"]
    counts = played.assign(artist_id=played_artist).groupby(["user_id", "artist_id"]).size()
    keys = pd.DataFrame({"user_id": out["user_id"], "artist_id": candidate_artist.to_numpy()})
    found = keys.merge(counts.rename("n").reset_index(), on=["user_id", "artist_id"], how="left")
    out["artist_played"] = found["n"].fillna(0).to_numpy(dtype=float)
    for name, vectors in spaces.items():
        out[f"{name}_similarity"] = _profile_similarity(out, history, vectors)
    if fused is not None:
        fusion = fused[["user_id", "item_id", "score", "rank"]].astype(
            {"user_id": str, "item_id": str}
        )
        fusion = fusion.rename(columns={"score": "fusion_score", "rank": "fusion_rank"})
        out = out.merge(fusion, on=["user_id", "item_id"], how="left")
        out["fusion_rank"] = out["fusion_rank"].fillna(MISSING_RANK).astype(float)
    out = out.sort_values(["user_id", "item_id"], kind="mergesort").reset_index(drop=True)
    return out[["user_id", "item_id", *names]]


def labels_of(features: pd.DataFrame, truth: pd.DataFrame) -> np.ndarray:
    """1 where the (user, item) pair is in ``truth`` (the validation listens), else 0."""
    keys = pd.MultiIndex.from_frame(truth[["user_id", "item_id"]].astype(str))
    return pd.MultiIndex.from_frame(features[["user_id", "item_id"]]).isin(keys).astype(int)


# ---------------------------------------------------------------------------------- model
@dataclass
class Ranker:
    """A trained LambdaRank model over :func:`ranking_features` (the ``playlist_ranker``
    artifact).

    Attributes
    ----------
    model
        LightGBM's text dump of the booster (portable; loaded lazily by :attr:`booster`).
    feature_names, sources, spaces
        The features it reads, from the candidate sources and vector spaces it was trained on.
    params, best_iteration
        LightGBM parameters and the early-stopped number of trees.
    version
        Hash of the training data, the feature definition and the parameters.
    validation
        NDCG@10 on the early-stopping users and how many users/pairs it saw.
    train_seconds
        Wall time of the fit.
    """

    model: str
    feature_names: list[str]
    sources: list[str]
    spaces: list[str]
    params: dict
    best_iteration: int
    version: str
    validation: dict = field(default_factory=dict)
    train_seconds: float = 0.0

    @property
    def uses_fusion(self) -> bool:
        """True when it reads the served fusion's score and rank (``fused=`` features)."""
        return FUSION_FEATURES[0] in self.feature_names

    @cached_property
    def booster(self):
        import lightgbm as lgb

        return lgb.Booster(model_str=self.model)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("booster", None)
        return state

    def _matrix(self, features: pd.DataFrame) -> np.ndarray:
        missing = [name for name in self.feature_names if name not in features.columns]
        if missing:
            raise ValueError(
                f"features lack {missing}; build them with ranking_features(sources="
                f"{self.sources}, spaces={self.spaces})"
            )
        return features[self.feature_names].to_numpy(dtype=np.float64)

    def score(self, features: pd.DataFrame) -> np.ndarray:
        """Ranking scores (higher first) of the pairs of a :func:`ranking_features` frame."""
        return self.booster.predict(self._matrix(features), num_iteration=self.best_iteration)

    def importance(self, kind: str = "gain") -> pd.Series:
        """Feature importance (``gain`` or ``split``), largest first."""
        values = self.booster.feature_importance(importance_type=kind)
        return pd.Series(values, index=self.feature_names, dtype=float).sort_values(ascending=False)

    def source_contribution(self, features: pd.DataFrame) -> pd.Series:
        """Per candidate source: mean |SHAP contribution| of its features (``s_z``, ``s_rank``)
        over the given pairs, largest first; the other features are grouped as ``context``."""
        contributions = self.booster.predict(
            self._matrix(features), num_iteration=self.best_iteration, pred_contrib=True
        )[:, :-1]
        magnitude = pd.Series(np.abs(contributions).mean(axis=0), index=self.feature_names)
        grouped = {
            source: float(magnitude[[f"{source}_z", f"{source}_rank"]].sum())
            for source in self.sources
        }
        grouped["context"] = float(magnitude.sum() - sum(grouped.values()))
        return pd.Series(grouped).sort_values(ascending=False)

    def rank(
        self,
        features: pd.DataFrame,
        candidates: pd.DataFrame,
        *,
        novelty_weight: float = 0.0,
    ) -> pd.DataFrame:
        """The pairs ranked per user in :func:`recommend.blend.fuse`'s columns (``rank`` 1 =
        best): the input of the playlist stages. ``novelty_weight`` adds that many per-user
        standard deviations of the ranker's scores times the item's standardised novelty (the
        discovery knob tuned with the ranker). The reason is the one of the source that ranks
        the item highest."""
        scores = self.score(features)
        frame = features[["user_id", "item_id"]].copy()
        if novelty_weight:
            novelty = features["item_novelty"].to_numpy(dtype=float)
            by_user = pd.Series(scores).groupby(frame["user_id"].to_numpy())
            spread = by_user.transform("std").fillna(1.0).replace(0.0, 1.0).to_numpy()
            z = (novelty - novelty.mean()) / (novelty.std() or 1.0)
            scores = scores + novelty_weight * spread * z
        frame["score"] = scores
        best = (
            candidates[candidates["source"].isin(set(self.sources))]
            .astype({"user_id": str, "item_id": str})
            .assign(_r=lambda c: c.groupby(["user_id", "source"])["score"].rank(ascending=False))
            .sort_values(["_r", "source"], kind="mergesort")
            .drop_duplicates(["user_id", "item_id"])
        )
        frame = frame.merge(
            best[["user_id", "item_id", "source", "reason_code", "reason_detail"]],
            on=["user_id", "item_id"],
            how="left",
        )
        frame = frame.sort_values(
            ["user_id", "score", "item_id"], ascending=[True, False, True], kind="mergesort"
        ).reset_index(drop=True)
        frame["rank"] = frame.groupby("user_id").cumcount() + 1
        return frame[[*BLEND_COLUMNS, "rank"]]


def _version(features: pd.DataFrame, labels: np.ndarray, params: dict, names: list[str]) -> str:
    digest = hashlib.sha256()
    digest.update(FEATURE_VERSION.encode())
    digest.update(json.dumps({"params": params, "features": names}, sort_keys=True).encode())
    digest.update(pd.util.hash_pandas_object(features, index=False).to_numpy().tobytes())
    digest.update(np.asarray(labels, dtype=np.int8).tobytes())
    return digest.hexdigest()[:16]


def group_split(users: Sequence[str], fraction: float, seed: int) -> set[str]:
    """A seeded ``fraction`` of the distinct users (a group split: a user is on one side)."""
    distinct = np.array(sorted(set(map(str, users))), dtype=object)
    rng = np.random.default_rng(seed)
    size = max(1, int(round(len(distinct) * fraction)))
    return set(rng.choice(distinct, size=min(size, len(distinct)), replace=False))


def _groups(user_ids: pd.Series) -> np.ndarray:
    """Group sizes of consecutive users (features are sorted by user)."""
    codes = pd.factorize(user_ids)[0]
    return np.bincount(codes)


def train_ranker(
    features: pd.DataFrame,
    labels: np.ndarray,
    *,
    sources: Sequence[str],
    spaces: Sequence[str] = (),
    fusion: bool = False,
    params: Mapping | None = None,
    rounds: int = 1000,
    early_stopping: int = 100,
    stop_fraction: float = 0.2,
    seed: int = 42,
) -> Ranker:
    """LambdaRank on a validation split's candidates (labels: validation hits).

    Users without a hit are left out of training (they carry no ranking signal); a seeded
    ``stop_fraction`` of the users is held out for early stopping on NDCG@10.

    Parameters
    ----------
    features
        :func:`ranking_features` of the validation users' candidates (sorted by user).
    labels
        :func:`labels_of` those features and the validation listens.
    sources, spaces, fusion
        What the features were built from (recorded in the :class:`Ranker`).
    params
        LightGBM parameters over :data:`DEFAULT_PARAMS`.
    """
    import lightgbm as lgb

    started = time.perf_counter()
    names = feature_names(sources, spaces, fusion)
    params = {**DEFAULT_PARAMS, **dict(params or {}), "seed": seed}
    labels = np.asarray(labels, dtype=int)
    hits = pd.Series(labels).groupby(features["user_id"].to_numpy()).transform("sum").to_numpy()
    useful = features[hits > 0]
    useful_labels = labels[hits > 0]
    if useful.empty:
        raise ValueError("no validation user has a hit among their candidates: nothing to learn")
    stop_users = group_split(useful["user_id"], stop_fraction, seed)
    in_stop = useful["user_id"].isin(stop_users).to_numpy()
    fit, stop = useful[~in_stop], useful[in_stop]
    train_set = lgb.Dataset(
        fit[names].to_numpy(dtype=np.float64),
        useful_labels[~in_stop],
        group=_groups(fit["user_id"]),
        feature_name=names,
        free_raw_data=False,
    )
    stop_set = lgb.Dataset(
        stop[names].to_numpy(dtype=np.float64),
        useful_labels[in_stop],
        group=_groups(stop["user_id"]),
        reference=train_set,
    )
    booster = lgb.train(
        params,
        train_set,
        num_boost_round=rounds,
        valid_sets=[stop_set],
        valid_names=["stop"],
        callbacks=[lgb.early_stopping(early_stopping, verbose=False)],
    )
    best = int(booster.best_iteration or booster.current_iteration())
    seconds = time.perf_counter() - started
    validation = {
        "stop_ndcg@10": float(booster.best_score["stop"]["ndcg@10"]),
        "fit_users": int(fit["user_id"].nunique()),
        "stop_users": int(stop["user_id"].nunique()),
        "pairs": len(features),
        "positives": int(labels.sum()),
    }
    ranker = Ranker(
        model=booster.model_to_string(num_iteration=best),
        feature_names=names,
        sources=list(sources),
        spaces=list(spaces),
        params=params,
        best_iteration=best,
        version=_version(features[["user_id", "item_id", *names]], labels, params, names),
        validation=validation,
        train_seconds=seconds,
    )
    logger.info(
        "ranker %s: %d trees in %.1fs, stop NDCG@10 %.4f",
        ranker.version,
        best,
        seconds,
        validation["stop_ndcg@10"],
    )
    return ranker


@dataclass(frozen=True)
class RankerChoice:
    """What serves: ``"ranker"`` or ``"fusion"``, with the validation figures behind it."""

    serve: str
    ranker_ndcg: float
    fusion_ndcg: float
    margin: float

    @property
    def reason(self) -> str:
        verb = "beats" if self.serve == "ranker" else "does not beat"
        return (
            f"ranker {verb} fusion on validation: NDCG@10 {self.ranker_ndcg:.4f} vs "
            f"{self.fusion_ndcg:.4f} (margin {self.margin})"
        )


def choose(ranker_val_ndcg: float, fusion_val_ndcg: float, margin: float = 0.0) -> RankerChoice:
    """Serve the ranker only when its validation NDCG@10 beats the fusion's by more than
    ``margin`` (both measured on validation users the ranker did not train on)."""
    serve = "ranker" if ranker_val_ndcg > fusion_val_ndcg + margin else "fusion"
    return RankerChoice(serve, float(ranker_val_ndcg), float(fusion_val_ndcg), margin)


# ---------------------------------------------------------------------------------- the week's
@dataclass
class WeekRanker:
    """The ``playlist_ranker`` artifact: a week's trained ranker and whether it serves.

    Attributes
    ----------
    ranker
        The trained :class:`Ranker` (None when none could be trained, e.g. a fixed blend or no
        validation hit).
    novelty_weight
        The discovery knob chosen with it (:meth:`Ranker.rank`).
    choice
        :func:`choose`'s verdict on the choice users: ``serve`` is ``"ranker"`` or ``"fusion"``.
    figures
        What the choice saw: per knob value the served lists' NDCG@10, distinct items and
        novelty on the choice users, the fusion's, the per-source contribution.
    inputs
        Hash of what it was trained from (its version with the ranker's).
    """

    ranker: Ranker | None
    novelty_weight: float
    choice: RankerChoice
    figures: dict = field(default_factory=dict)
    inputs: str = ""

    @property
    def serves(self) -> bool:
        return self.ranker is not None and self.choice.serve == "ranker"

    @property
    def version(self) -> str:
        parts = [self.inputs, self.ranker.version if self.ranker else "none", self.choice.serve]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]

    def blend(
        self,
        candidates: pd.DataFrame,
        history: pd.DataFrame,
        *,
        statistics,
        item_artist: Mapping[str, str] | None,
        spaces: Mapping[str, VectorTable] | None,
        fused: pd.DataFrame,
        store: RankingFeatureReader | None = None,
    ) -> pd.DataFrame:
        """The candidates ranked by the ranker (``fuse``'s columns): what replaces the fusion
        when it serves. ``statistics``: the week's :class:`recommend.history.WeekStatistics`;
        ``store``: where the user and item features are read (the Feast online store)."""
        if self.ranker is None:
            raise ValueError("no ranker was trained this week: the fusion serves")
        features = ranking_features(
            candidates,
            history,
            listeners=statistics.listeners,
            novelty=statistics.novelty,
            sources=self.ranker.sources,
            item_artist=item_artist,
            spaces={name: spaces[name] for name in self.ranker.spaces if spaces and name in spaces},
            store=store,
            fused=fused if self.ranker.uses_fusion else None,
        )
        return self.ranker.rank(features, candidates, novelty_weight=self.novelty_weight)


def fusion_serves(reason: str, inputs: str = "") -> WeekRanker:
    """A :class:`WeekRanker` without a ranker (the fusion serves), saying why."""
    return WeekRanker(
        None,
        0.0,
        RankerChoice("fusion", float("nan"), float("nan"), 0.0),
        {"reason": reason},
        inputs,
    )
