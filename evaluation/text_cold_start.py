"""Cold-start evaluation of the text model: can text find artists nobody has played yet?

Protocol (all seeded):

1. A random ``cold_fraction`` of the artists that have plays become "cold": every play of them
   is hidden from training.
2. Each user's taste profile is built from the user's remaining (warm) plays only
   (``embeddings.text.taste_profiles``: log1p(plays)-weighted mean text vector).
3. Candidates are the cold artists that have a text vector. Cold artists without a vector (no
   terms, no text) cannot be scored by text; they are excluded from the candidate set for every
   method and counted (``cold_without_vector`` and the held-out plays they carry).
4. A user is evaluated if the user played at least one candidate and has a profile; users with
   held-out plays but no warm profile are counted. Evaluated users are split (seeded) into a
   validation part, used only to tune ``beta``, and an evaluation part, which gives every figure.
5. recall@k = (candidates the user played among the k best-scored) / (candidates the user
   played), averaged over users, for:

   - random: expected value ``k / #candidates``;
   - tag popularity: distinct users who tagged the artist (metadata that exists without plays);
   - text (raw cosine): cosine(taste profile, artist text vector);
   - text: the same after centring the vectors (``embeddings.text.center_vectors``: subtract
     the mean of all artist vectors, renormalise) -- used unless ``center=False``;
   - text + tag popularity: ``cosine + beta * log1p(taggers) / max log1p(taggers)``, beta tuned
     on the validation users.

Caveat: in HetRec the taggers are the same users who listen, so the text and tag popularity of
a cold artist may include the evaluated user's own tags; ``details`` reports the share of hits
where the user had tagged the artist.

Example usage::

    result = evaluate_text_cold_start(listens, ids, vectors, tag_assignments, seed=0)
    result.table          # one row per method
    result.figure_png     # PNG bytes for asset metadata
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from embeddings.text import center_vectors, taste_profiles
from embeddings.vectors import normalize_rows
from recommend.errors import TooSmall

logger = logging.getLogger(__name__)

DEFAULT_BETAS = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0)
CURVE_KS = (10, 20, 50, 100, 200)

METHOD_RANDOM = "random (expected)"
METHOD_TAG_POPULARITY = "tag popularity"
METHOD_TEXT_RAW = "text (raw cosine)"
METHOD_TEXT = "text"
METHOD_COMBINED = "text + beta * tag popularity"


@dataclass
class ColdStartResult:
    """Figures of one cold-start evaluation.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per method: ``method``, ``recall_at_k``, ``x_random``, ``x_tag_popularity``,
        ``users``.
    figure_png : bytes
        recall@k curves and the validation curve of beta, as a PNG.
    details : dict
        Counts (artists, cold, candidates, excluded, users), the chosen beta, the validation
        curve, recall@k curves and the acceptance ratios.
    """

    table: pd.DataFrame
    figure_png: bytes
    details: dict = field(default_factory=dict)


def tag_popularity(tag_assignments: pd.DataFrame) -> pd.Series:
    """Distinct users who tagged each artist (rows without a user count once each).

    Parameters
    ----------
    tag_assignments : pandas.DataFrame
        Golden ``tag_assignments`` with ``artist_id`` and ``user_id`` (nullable).

    Returns
    -------
    pandas.Series
        int, indexed by ``artist_id`` (str), named ``taggers``.
    """
    if "artist_id" not in tag_assignments.columns:
        raise ValueError("tag_assignments lacks column 'artist_id'; pass golden tag_assignments.")
    artists = tag_assignments["artist_id"].astype(str)
    if "user_id" in tag_assignments.columns:
        users = tag_assignments["user_id"].astype("string").fillna("")
    else:
        users = pd.Series("", index=tag_assignments.index, dtype="string")
    anonymous = users == ""
    users = users.where(
        ~anonymous,
        "<anonymous row>:" + pd.Series(np.arange(len(users)), index=users.index).astype(str),
    )
    return (
        pd.DataFrame({"artist_id": artists, "user": users})
        .groupby("artist_id")["user"]
        .nunique()
        .rename("taggers")
        .astype(int)
    )


def _ranked(scores: np.ndarray) -> np.ndarray:
    """Candidate columns per row, best first; ties go to the lower column (stable)."""
    return np.argsort(-scores, axis=1, kind="stable")


def _recall_at(ranked: np.ndarray, relevant: np.ndarray, ks: Sequence[int]) -> dict[int, float]:
    """Mean recall@k per k for a ranking (users x candidates) and a relevance mask."""
    hits_in_order = np.take_along_axis(relevant, ranked, axis=1)
    cumulative = np.cumsum(hits_in_order, axis=1)
    n_relevant = relevant.sum(axis=1)
    out = {}
    for k in ks:
        column = min(k, ranked.shape[1]) - 1
        out[int(k)] = float(np.mean(cumulative[:, column] / n_relevant))
    return out


def _png(
    curves: dict[str, dict[int, float]], beta_curve: dict[float, float], k: int, chosen_beta: float
) -> bytes:
    """Plot recall@k curves (left) and the validation curve of beta (right) as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name, curve in curves.items():
        left.plot(list(curve), list(curve.values()), marker="o", label=name)
    left.axvline(k, color="grey", linestyle=":", linewidth=1)
    left.set_xscale("log")
    left.set_xlabel("k (cold candidates recommended)")
    left.set_ylabel("recall@k (evaluation users)")
    left.set_title("Cold-start recall")
    left.legend(fontsize=8)
    right.plot(list(beta_curve), list(beta_curve.values()), marker="o")
    right.axvline(chosen_beta, color="grey", linestyle=":", linewidth=1)
    right.set_xlabel("beta (weight of normalised log tag popularity)")
    right.set_ylabel(f"recall@{k} (validation users)")
    right.set_title("Tuning beta on validation users")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return buffer.getvalue()


def evaluate_text_cold_start(
    listens: pd.DataFrame,
    item_ids: Sequence[str],
    item_vectors: np.ndarray,
    tag_assignments: pd.DataFrame,
    *,
    cold_fraction: float = 0.1,
    k: int = 50,
    validation_fraction: float = 0.3,
    betas: Sequence[float] = DEFAULT_BETAS,
    seed: int = 0,
    center: bool = True,
    make_figure: bool = True,
) -> ColdStartResult:
    """Hide a seeded share of artists and measure how well text recommends them.

    Parameters
    ----------
    listens : pandas.DataFrame
        Golden ``listens`` (``user_id``, ``item_id``, ``plays``), item level = artist.
    item_ids : sequence of str
        Artist id of each row of ``item_vectors``.
    item_vectors : numpy.ndarray
        Artist text vectors, shape ``(len(item_ids), dim)``.
    tag_assignments : pandas.DataFrame
        Golden ``tag_assignments`` (``user_id``, ``artist_id``); gives tag popularity.
    cold_fraction : float, default 0.1
        Share of the played artists made cold.
    k : int, default 50
        Cut-off of recall.
    validation_fraction : float, default 0.3
        Share of the evaluable users used only to tune beta.
    betas : sequence of float
        Grid for beta.
    seed : int, default 0
    center : bool, default True
        Score "text" and the combination with centred vectors (the raw cosine is always
        reported as its own row).
    make_figure : bool, default True
        Draw the PNG (about a second); ``figure_png`` is ``b""`` when False.

    Returns
    -------
    ColdStartResult
        The table (one row per method), the figure as PNG bytes and the details.

    Raises
    ------
    ValueError
        On missing columns, fractions outside (0, 1) or when no user can be evaluated.
    """
    _check_arguments(listens, cold_fraction, validation_fraction)
    rng = np.random.default_rng(seed)  # drawn from in order: cold artists, then the user split
    listens = listens.assign(
        user_id=listens["user_id"].astype(str), item_id=listens["item_id"].astype(str)
    )
    item_ids = np.asarray(item_ids).astype(str)
    item_vectors = normalize_rows(item_vectors)
    vector_row = pd.Series(np.arange(len(item_ids)), index=item_ids)
    split = _split_cold_artists(listens, vector_row, cold_fraction, rng)
    profiles = _warm_profiles(split.warm, item_vectors, item_ids, center)
    users = _evaluated_users(split, profiles.users, validation_fraction, rng)
    scores = _scores(profiles, users, split.candidates, vector_row, tag_assignments)
    beta_curve, best_beta = _tune_beta(scores, users, betas, k)
    curves = _recall_curves(scores, users, best_beta, k, len(split.candidates))
    table = _method_table(curves, k, len(users.evaluation), best_beta)
    own_tag_share = _own_tag_share(tag_assignments, users, split.candidates)
    details = _details(split, users, curves, beta_curve, best_beta, own_tag_share, seed, k, center)
    _log_summary(details, len(users.evaluation), len(split.without_vector))
    figure_png = b"" if not make_figure else _figure(curves, beta_curve, k, best_beta)
    return ColdStartResult(table=table, figure_png=figure_png, details=details)


@dataclass
class _ColdSplit:
    """The played artists, the cold ones that can be scored, and the hidden (cold) plays."""

    artists: np.ndarray
    n_cold: int
    candidates: np.ndarray
    without_vector: list[str]
    held_out: pd.DataFrame
    warm: pd.DataFrame
    heldout_rows_without_vector: int


@dataclass
class _Profiles:
    """Taste profiles from warm plays: raw, and on the (optionally centred) text vectors."""

    users: np.ndarray
    raw: np.ndarray
    text: np.ndarray
    item_vectors: np.ndarray
    text_vectors: np.ndarray


@dataclass
class _EvaluatedUsers:
    """Users who played a candidate and have a profile, their relevance mask and split."""

    users: np.ndarray
    with_heldout: np.ndarray
    without_profile: int
    relevant: np.ndarray  # users x candidates
    validation: np.ndarray
    evaluation: np.ndarray


@dataclass
class _Scores:
    """Scores of every evaluated user for every candidate, per signal."""

    raw: np.ndarray
    text: np.ndarray
    popularity: np.ndarray  # the candidates' normalised log popularity, one row per user


def _check_arguments(
    listens: pd.DataFrame, cold_fraction: float, validation_fraction: float
) -> None:
    """Raise ValueError on fractions outside (0, 1) or listens without the golden columns."""
    if not 0 < cold_fraction < 1 or not 0 < validation_fraction < 1:
        raise ValueError(
            f"cold_fraction and validation_fraction must be in (0, 1), got {cold_fraction} "
            f"and {validation_fraction}."
        )
    missing = [c for c in ("user_id", "item_id", "plays") if c not in listens.columns]
    if missing:
        raise ValueError(f"listens lacks column(s) {missing}; pass golden listens.")


def _split_cold_artists(
    listens: pd.DataFrame, vector_row: pd.Series, cold_fraction: float, rng: np.random.Generator
) -> _ColdSplit:
    """Draw the cold artists and split the listens into held-out (cold) and warm plays."""
    artists = np.sort(listens["item_id"].unique())
    n_cold = max(1, int(round(cold_fraction * len(artists))))
    cold = np.sort(rng.choice(artists, size=n_cold, replace=False))
    cold_set = set(cold.tolist())
    candidates = np.array([a for a in cold if a in vector_row.index])
    without_vector = sorted(cold_set - set(candidates.tolist()))
    is_cold = listens["item_id"].isin(cold_set)
    held_out = listens[is_cold]
    heldout_rows_without_vector = int(held_out["item_id"].isin(set(without_vector)).sum())
    if len(candidates) == 0:
        raise TooSmall("no cold artist has a text vector; encode artist docs first.")
    return _ColdSplit(
        artists=artists,
        n_cold=n_cold,
        candidates=candidates,
        without_vector=without_vector,
        held_out=held_out,
        warm=listens[~is_cold],
        heldout_rows_without_vector=heldout_rows_without_vector,
    )


def _warm_profiles(
    warm: pd.DataFrame, item_vectors: np.ndarray, item_ids: np.ndarray, center: bool
) -> _Profiles:
    """Build taste profiles from warm plays, raw and (if ``center``) on centred vectors."""
    profile_users, raw_profiles = taste_profiles(warm, item_vectors, item_ids)
    text_vectors = center_vectors(item_vectors)[0] if center else item_vectors
    profiles = taste_profiles(warm, text_vectors, item_ids)[1] if center else raw_profiles
    return _Profiles(
        users=profile_users,
        raw=raw_profiles,
        text=profiles,
        item_vectors=item_vectors,
        text_vectors=text_vectors,
    )


def _evaluated_users(
    split: _ColdSplit,
    profile_users: np.ndarray,
    validation_fraction: float,
    rng: np.random.Generator,
) -> _EvaluatedUsers:
    """Find the evaluable users, mark the candidates each played, split them (seeded)."""
    candidate_col = pd.Series(np.arange(len(split.candidates)), index=split.candidates)
    scored = split.held_out[split.held_out["item_id"].isin(candidate_col.index)]
    users_with_heldout = np.sort(scored["user_id"].unique())
    profile_index = pd.Index(profile_users)
    users = np.array([u for u in users_with_heldout if u in profile_index])
    if len(users) < 2:
        raise ValueError(
            f"only {len(users)} user(s) played a cold artist with a text vector and have warm "
            "plays; the data is too small for this evaluation."
        )
    user_pos = pd.Series(np.arange(len(users)), index=users)
    relevant = np.zeros((len(users), len(split.candidates)), dtype=bool)
    scored = scored[scored["user_id"].isin(user_pos.index)]
    relevant[
        user_pos[scored["user_id"]].to_numpy(), candidate_col[scored["item_id"]].to_numpy()
    ] = True
    validation, evaluation = _split_users(len(users), validation_fraction, rng)
    return _EvaluatedUsers(
        users=users,
        with_heldout=users_with_heldout,
        without_profile=len(users_with_heldout) - len(users),
        relevant=relevant,
        validation=validation,
        evaluation=evaluation,
    )


def _split_users(
    n_users: int, validation_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle user positions into sorted validation and evaluation parts."""
    shuffled = rng.permutation(n_users)
    n_validation = max(1, int(round(validation_fraction * n_users)))
    return np.sort(shuffled[:n_validation]), np.sort(shuffled[n_validation:])


def _scores(
    profiles: _Profiles,
    users: _EvaluatedUsers,
    candidates: np.ndarray,
    vector_row: pd.Series,
    tag_assignments: pd.DataFrame,
) -> _Scores:
    """Score every candidate for every evaluated user: raw cosine, text, tag popularity."""
    user_rows = pd.Series(np.arange(len(profiles.users)), index=profiles.users)[
        users.users
    ].to_numpy()
    candidate_rows = vector_row[candidates].to_numpy()
    raw_scores = profiles.raw[user_rows] @ profiles.item_vectors[candidate_rows].T
    text_scores = profiles.text[user_rows] @ profiles.text_vectors[candidate_rows].T
    popularity = tag_popularity(tag_assignments).reindex(candidates).fillna(0).to_numpy(float)
    log_popularity = np.log1p(popularity)
    popularity_score = (
        log_popularity / log_popularity.max() if log_popularity.max() > 0 else log_popularity
    )
    popularity_matrix = np.broadcast_to(popularity_score, text_scores.shape)
    return _Scores(raw=raw_scores, text=text_scores, popularity=popularity_matrix)


def _tune_beta(
    scores: _Scores, users: _EvaluatedUsers, betas: Sequence[float], k: int
) -> tuple[dict[float, float], float]:
    """Validation recall@k per beta and the best beta (ties go to the smaller beta)."""
    validation = users.validation
    beta_curve = {}
    for beta in betas:
        combined = scores.text[validation] + beta * scores.popularity[validation]
        beta_curve[float(beta)] = _recall_at(_ranked(combined), users.relevant[validation], [k])[k]
    best_beta = max(beta_curve, key=lambda b: (beta_curve[b], -b))
    return beta_curve, best_beta


def _recall_curves(
    scores: _Scores, users: _EvaluatedUsers, best_beta: float, k: int, n_candidates: int
) -> dict[str, dict[int, float]]:
    """recall@k curves of every method on the evaluation users."""
    ks = sorted(set(CURVE_KS) | {k})
    evaluation = users.evaluation
    relevant_eval = users.relevant[evaluation]
    return {
        METHOD_RANDOM: {kk: min(kk, n_candidates) / n_candidates for kk in ks},
        METHOD_TAG_POPULARITY: _recall_at(
            _ranked(scores.popularity[evaluation]), relevant_eval, ks
        ),
        METHOD_TEXT_RAW: _recall_at(_ranked(scores.raw[evaluation]), relevant_eval, ks),
        METHOD_TEXT: _recall_at(_ranked(scores.text[evaluation]), relevant_eval, ks),
        METHOD_COMBINED: _recall_at(
            _ranked(scores.text[evaluation] + best_beta * scores.popularity[evaluation]),
            relevant_eval,
            ks,
        ),
    }


def _method_table(
    curves: dict[str, dict[int, float]], k: int, n_evaluation: int, best_beta: float
) -> pd.DataFrame:
    """One row per method: recall@k and its ratios to random and to tag popularity."""
    random_recall = curves[METHOD_RANDOM][k]
    popularity_recall = curves[METHOD_TAG_POPULARITY][k]
    table = pd.DataFrame(
        {
            "method": list(curves),
            "recall_at_k": [curves[m][k] for m in curves],
        }
    )
    table["x_random"] = table["recall_at_k"] / random_recall
    table["x_tag_popularity"] = (
        table["recall_at_k"] / popularity_recall if popularity_recall > 0 else np.nan
    )
    table["users"] = n_evaluation
    table["k"] = k
    table.loc[table["method"] == METHOD_COMBINED, "method"] = (
        f"text + {best_beta:g} * tag popularity"
    )
    return table


def _own_tag_share(
    tag_assignments: pd.DataFrame, users: _EvaluatedUsers, candidates: np.ndarray
) -> float | None:
    """Share of evaluation hits where the user tagged the artist (None without user ids)."""
    if "user_id" not in tag_assignments.columns:
        return None
    tagged_pairs = set(
        zip(
            tag_assignments["user_id"].astype(str),
            tag_assignments["artist_id"].astype(str),
            strict=True,
        )
    )
    rows, cols = np.nonzero(users.relevant[users.evaluation])
    eval_users = users.users[users.evaluation]
    pairs = list(zip(eval_users[rows], candidates[cols], strict=True))
    return float(np.mean([p in tagged_pairs for p in pairs])) if pairs else 0.0


def _details(
    split: _ColdSplit,
    users: _EvaluatedUsers,
    curves: dict[str, dict[int, float]],
    beta_curve: dict[float, float],
    best_beta: float,
    own_tag_share: float | None,
    seed: int,
    k: int,
    center: bool,
) -> dict:
    """Collect the counts, curves, chosen beta and acceptance of one evaluation."""
    random_recall = curves[METHOD_RANDOM][k]
    popularity_recall = curves[METHOD_TAG_POPULARITY][k]
    best_text = max(curves[m][k] for m in (METHOD_TEXT_RAW, METHOD_TEXT, METHOD_COMBINED))
    details = {
        "seed": seed,
        "k": k,
        "artists_with_plays": int(len(split.artists)),
        "cold_artists": int(split.n_cold),
        "cold_candidates_with_vector": int(len(split.candidates)),
        "cold_without_vector": len(split.without_vector),
        "heldout_plays_rows": int(len(split.held_out)),
        "heldout_rows_on_cold_without_vector": split.heldout_rows_without_vector,
        "users_with_heldout_candidate": int(len(users.with_heldout)),
        "users_without_warm_profile": int(users.without_profile),
        "users_validation": int(len(users.validation)),
        "users_evaluation": int(len(users.evaluation)),
        "mean_relevant_per_user": float(users.relevant[users.evaluation].sum(axis=1).mean()),
        "beta": float(best_beta),
        "beta_validation_recall": beta_curve,
        "recall_curves": {m: {str(kk): v for kk, v in c.items()} for m, c in curves.items()},
        "random_recall": random_recall,
        "tag_popularity_recall": popularity_recall,
        "text_raw_recall": curves[METHOD_TEXT_RAW][k],
        "text_recall": curves[METHOD_TEXT][k],
        "centred": center,
        "combined_recall": curves[METHOD_COMBINED][k],
        "best_text_x_random": best_text / random_recall,
        "best_text_x_tag_popularity": (
            best_text / popularity_recall if popularity_recall > 0 else float("inf")
        ),
        "hits_where_user_tagged_artist_share": own_tag_share,
    }
    details["accepted"] = bool(
        details["best_text_x_random"] >= 8.0 and details["best_text_x_tag_popularity"] >= 1.15
    )
    return details


def _log_summary(details: dict, n_evaluation: int, n_without_vector: int) -> None:
    """Log the headline recalls of one evaluation."""
    logger.info(
        "text cold start: recall@%d text %.3f, combined %.3f (beta %g), tag popularity %.3f, "
        "random %.3f over %d users and %d cold candidates (%d cold artists without vector)",
        details["k"],
        details["text_recall"],
        details["combined_recall"],
        details["beta"],
        details["tag_popularity_recall"],
        details["random_recall"],
        n_evaluation,
        details["cold_candidates_with_vector"],
        n_without_vector,
    )


def _figure(
    curves: dict[str, dict[int, float]], beta_curve: dict[float, float], k: int, best_beta: float
) -> bytes:
    """Draw the recall curves (combined method labelled with its beta) as PNG bytes."""
    return _png(
        {
            name if name != METHOD_COMBINED else f"text + {best_beta:g} * tag pop.": curve
            for name, curve in curves.items()
        },
        beta_curve,
        k,
        best_beta,
    )
