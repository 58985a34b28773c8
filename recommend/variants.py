"""A/B variants of the weekly playlists: named configurations, a stable split, bootstrap intervals.

An :class:`Experiment` names a few :class:`Variant` s, each with a share of the users and the
settings it changes against the week's served configuration:

=====================  ==========================================================================
``blend``              ``"tuned"`` (the week's ``blend_config``: tuned or fixed there) or fixed
                       weights ``{source: weight >= 0}`` (sources left out weigh 0)
``blend_method``       normalisation of fixed weights: ``zscore`` (default), ``rrf`` or ``rank``
``exploration_share``  share of each playlist's slots given to exploration (0.2: 6 of 30)
``exploration_slots``  the same as a count (give one of the two)
``mmr_lambda``         MMR trade-off in [0, 1] (1 = relevance order, lower = more diverse)
``max_per_artist``     items per artist in one playlist
=====================  ==========================================================================

Unset settings keep the served ones. A learned ranker (another issue) becomes one more key: add
a field to :class:`Variant`, its check to :func:`_variant` and its effect to
:func:`variant_serving`; the assignment and the replay need no change.

Users are assigned by :func:`assign_variants`: ``sha256(salt + user id)`` read as a number in
[0, 1) and cut by the cumulative shares, so a user's variant depends on the experiment's salt
(its name by default), the shares and the user id only, never on the batch, the process or
Python's hash seed. Renaming the experiment reshuffles everyone (a new experiment).

:func:`bootstrap_intervals` gives 95% percentile intervals over users of per-user means (NDCG),
ratio means (novelty: self-information summed over a user's items / items) and set metrics
(catalog coverage: users resampled, the union recomputed; the spread centred on the value, as a
resample's union is biased low).

Example usage::

    experiment = parse_experiment(
        {"name": "dw-explore", "variants": [{"name": "control", "share": 0.8},
                                            {"name": "explore", "share": 0.2,
                                             "exploration_share": 0.2}]}
    )
    variants = experiment.assign(["u1", "u2"])  # a Series: user id -> variant name
    serving = variant_serving(base_serving_week, experiment.variants[1])
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from recommend.blend import BlendConfig
    from recommend.playlist import DiscoverWeeklyConfig, ServingWeek

TUNED = "tuned"
BLEND_METHODS = ("zscore", "rrf", "rank")
VARIANT_KEYS = (
    "name",
    "share",
    "description",
    "blend",
    "blend_method",
    "exploration_share",
    "exploration_slots",
    "mmr_lambda",
    "max_per_artist",
)
EXPERIMENT_KEYS = ("name", "salt", "variants")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SHARE_TOLERANCE = 1e-6
DEFAULT_RESAMPLES = 1000


class VariantError(ValueError):
    """An experiment is misconfigured; the message names the key and the fix."""


@dataclass(frozen=True)
class Variant:
    """One named playlist configuration and its share of the users.

    Attributes
    ----------
    name
        Short id (letters, digits, ``_ . -``): the ``variant`` column of the playlists.
    share
        Share of the users in (0, 1]; the shares of an experiment sum to 1.
    blend
        ``"tuned"`` (the week's ``blend_config``) or fixed weights ``{source: weight}``.
    blend_method
        Normalisation of fixed weights (``zscore``, ``rrf`` or ``rank``).
    exploration_share, exploration_slots
        Exploration slots per playlist, as a share of its size or as a count (None: served).
    mmr_lambda, max_per_artist
        Playlist rules (None: served).
    description
        What the variant tests, for people reading the metadata.
    """

    name: str
    share: float
    blend: str | Mapping[str, float] = TUNED
    blend_method: str = "zscore"
    exploration_share: float | None = None
    exploration_slots: int | None = None
    mmr_lambda: float | None = None
    max_per_artist: int | None = None
    description: str = ""

    @property
    def tuned_blend(self) -> bool:
        return isinstance(self.blend, str)

    def overrides(self) -> dict[str, Any]:
        """The settings this variant changes (everything set but name, share, description)."""
        spec = asdict(self)
        out = {k: v for k, v in spec.items() if k not in ("name", "share", "description")}
        out = {k: v for k, v in out.items() if v is not None}
        if self.tuned_blend:
            out.pop("blend_method")
        else:
            out["blend"] = dict(self.blend)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The spec as :func:`parse_experiment` reads it (JSON-ready)."""
        out = {"name": self.name, "share": self.share, **self.overrides()}
        return {**out, "description": self.description} if self.description else out


@dataclass(frozen=True)
class Experiment:
    """Named variants with shares summing to 1, split by a salted hash of the user id."""

    name: str
    variants: tuple[Variant, ...]
    salt: str = ""

    @property
    def key(self) -> str:
        """The hash salt: ``salt`` when set, else the experiment's name."""
        return self.salt or self.name

    @property
    def names(self) -> list[str]:
        return [v.name for v in self.variants]

    @property
    def control(self) -> Variant:
        """The first variant, which the others are compared with."""
        return self.variants[0]

    def variant(self, name: str) -> Variant:
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise KeyError(f"experiment {self.name!r} has no variant {name!r}; it has {self.names}")

    def assign(self, user_ids: Iterable[Any]) -> pd.Series:
        """:func:`assign_variants` with this experiment's variants and salt."""
        return assign_variants(user_ids, self.variants, self.key)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.salt:
            out["salt"] = self.salt
        out["variants"] = [v.to_dict() for v in self.variants]
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


DEFAULT_EXPERIMENT = {
    "name": "dw-exploration-1",
    "variants": [
        {
            "name": "control",
            "share": 0.8,
            "description": "the week's tuned blend and served playlist rules (3 of 30 slots "
            "explore)",
        },
        {
            "name": "wide_exploration",
            "share": 0.2,
            "exploration_share": 0.2,
            "description": "twice the exploration: 6 of 30 slots for less-played or brand-new "
            "items near the user's taste",
        },
    ],
}
"""Two variants: the served configuration (80% of users) and twice the exploration (20%)."""

SINGLE_VARIANT = {"name": "no-experiment", "variants": [{"name": "control", "share": 1.0}]}
"""Everyone gets the served configuration."""


# ---------------------------------------------------------------------------------- parsing
def parse_experiment(
    spec: Mapping[str, Any] | str | None = None, sources: Iterable[str] | None = None
) -> Experiment:
    """An :class:`Experiment` from its spec (a mapping or JSON text; None: the default).

    Parameters
    ----------
    spec
        ``{"name": ..., "salt"?: ..., "variants": [{"name": ..., "share": ..., ...}]}`` with the
        variant keys of the module docstring.
    sources
        Source names fixed blend weights may use (default :func:`known_sources`).

    Raises
    ------
    VariantError
        Naming the key (``experiment.variants[1].share``) and the fix.
    """
    if spec is None:
        spec = DEFAULT_EXPERIMENT
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError as error:
            raise VariantError(
                f"experiment: not valid JSON ({error}); give an object such as "
                f"{json.dumps(SINGLE_VARIANT)}"
            ) from error
    if not isinstance(spec, Mapping):
        raise VariantError(f"experiment must be an object with {EXPERIMENT_KEYS}, got {spec!r}")
    _unknown_keys(spec, EXPERIMENT_KEYS, "experiment")
    name = _name(spec.get("name"), "experiment.name")
    salt = spec.get("salt") or ""
    if not isinstance(salt, str):
        raise VariantError(f"experiment.salt must be a string, got {salt!r}")
    raw = spec.get("variants")
    if not isinstance(raw, Sequence) or isinstance(raw, str) or not raw:
        raise VariantError(
            "experiment.variants must be a non-empty list of variants, e.g. "
            '[{"name": "control", "share": 1.0}]'
        )
    known = set(known_sources() if sources is None else sources)
    variants = tuple(_variant(v, f"experiment.variants[{i}]", known) for i, v in enumerate(raw))
    _check_names(variants)
    _check_shares(variants)
    return Experiment(name=name, variants=variants, salt=salt)


def known_sources() -> list[str]:
    """Every source a blend can weigh: the candidate sources, every CF preset and novelty."""
    from embeddings.cf import CF_PRESETS
    from recommend.blend import DEFAULT_WEIGHTS, NOVELTY_SOURCE

    return sorted({*DEFAULT_WEIGHTS, *CF_PRESETS, NOVELTY_SOURCE})


def check_sources(experiment: Experiment, sources: Iterable[str]) -> None:
    """Fail when a variant's fixed blend weighs a source outside ``sources``."""
    known = set(sources)
    for i, variant in enumerate(experiment.variants):
        if not variant.tuned_blend:
            _check_weights(variant.blend, f"experiment.variants[{i}].blend", known)


def _unknown_keys(spec: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    unknown = sorted(set(spec) - set(allowed))
    if unknown:
        raise VariantError(f"{where}: unknown key(s) {unknown}; the keys are {', '.join(allowed)}")


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not NAME_PATTERN.match(value):
        raise VariantError(
            f"{where}={value!r} is not a name; use 1-64 letters, digits, '_', '.' or '-' "
            "starting with a letter or digit (e.g. 'control')"
        )
    return value


def _number(spec: Mapping, key: str, where: str, low: float, high: float) -> float | None:
    value = spec.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise VariantError(f"{where}.{key}={value!r} must be a number in [{low}, {high}]")
    return float(value)


def _count(spec: Mapping, key: str, where: str, low: int) -> int | None:
    value = spec.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise VariantError(f"{where}.{key}={value!r} must be a whole number >= {low}")
    return value


def _variant(spec: Any, where: str, sources: set[str]) -> Variant:
    if not isinstance(spec, Mapping):
        raise VariantError(f"{where} must be an object with a name and a share, got {spec!r}")
    _unknown_keys(spec, VARIANT_KEYS, where)
    share = spec.get("share")
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
        raise VariantError(f"{where}.share={share!r} must be a number in (0, 1], e.g. 0.2")
    if spec.get("exploration_share") is not None and spec.get("exploration_slots") is not None:
        raise VariantError(f"{where}: give exploration_share or exploration_slots, not both")
    method = spec.get("blend_method", "zscore")
    if method not in BLEND_METHODS:
        raise VariantError(f"{where}.blend_method={method!r} must be one of {BLEND_METHODS}")
    description = spec.get("description", "")
    if not isinstance(description, str):
        raise VariantError(f"{where}.description must be text, got {description!r}")
    return Variant(
        name=_name(spec.get("name"), f"{where}.name"),
        share=float(share),
        blend=_blend(spec.get("blend", TUNED), f"{where}.blend", sources),
        blend_method=method,
        exploration_share=_number(spec, "exploration_share", where, 0.0, 1.0),
        exploration_slots=_count(spec, "exploration_slots", where, 0),
        mmr_lambda=_number(spec, "mmr_lambda", where, 0.0, 1.0),
        max_per_artist=_count(spec, "max_per_artist", where, 1),
        description=description,
    )


def _blend(value: Any, where: str, sources: set[str]) -> str | dict[str, float]:
    if value == TUNED:
        return TUNED
    if not isinstance(value, Mapping) or not value:
        raise VariantError(
            f"{where}={value!r} must be {TUNED!r} (the week's blend_config) or fixed weights "
            'per source, e.g. {"item_knn": 1.0, "als": 0.5}'
        )
    _check_weights(value, where, sources)
    return {str(k): float(v) for k, v in sorted(value.items())}


def _check_weights(weights: Mapping[str, Any], where: str, sources: set[str]) -> None:
    unknown = sorted(set(weights) - sources)
    if unknown:
        raise VariantError(
            f"{where}: unknown source(s) {unknown}; weigh any of {', '.join(sorted(sources))}"
        )
    bad = {k: v for k, v in weights.items() if isinstance(v, bool) or not _non_negative(v)}
    if bad:
        raise VariantError(f"{where}: weights must be numbers >= 0, got {bad}")


def _non_negative(value: Any) -> bool:
    return isinstance(value, (int, float)) and np.isfinite(value) and value >= 0


def _check_names(variants: Sequence[Variant]) -> None:
    seen: set[str] = set()
    for i, variant in enumerate(variants):
        if variant.name in seen:
            raise VariantError(
                f"experiment.variants[{i}].name={variant.name!r} is used twice; names must "
                "be unique"
            )
        seen.add(variant.name)


def _check_shares(variants: Sequence[Variant]) -> None:
    total = sum(v.share for v in variants)
    if abs(total - 1.0) > SHARE_TOLERANCE:
        shares = ", ".join(f"{v.name}={v.share:g}" for v in variants)
        raise VariantError(
            f"experiment.variants[*].share sum to {total:g} ({shares}); they must sum to 1 "
            "(e.g. 0.8 and 0.2)"
        )


# ---------------------------------------------------------------------------------- assignment
def hash_points(user_ids: Iterable[Any], salt: str) -> np.ndarray:
    """Each user id's point in [0, 1): the first 8 bytes of ``sha256(salt + '/' + id)``."""
    prefix = f"{salt}/".encode()
    return np.fromiter(
        (
            int.from_bytes(hashlib.sha256(prefix + str(u).encode()).digest()[:8], "big") / 2.0**64
            for u in user_ids
        ),
        dtype=np.float64,
    )


def assign_variants(user_ids: Iterable[Any], variants: Sequence[Variant], salt: str) -> pd.Series:
    """Each user's variant: its hash point (:func:`hash_points`) cut by the cumulative shares.

    Returns
    -------
    pandas.Series
        Index the user ids (as strings, in the given order), values the variant names.
    """
    if not variants:
        raise VariantError("experiment.variants is empty; give at least one variant")
    ids = [str(u) for u in user_ids]
    bounds = np.cumsum([v.share for v in variants])
    bounds[-1] = 1.0  # rounding never leaves a point unassigned
    chosen = np.searchsorted(bounds, hash_points(ids, salt), side="right")
    names = np.asarray([v.name for v in variants], dtype=object)
    return pd.Series(
        names[np.minimum(chosen, len(variants) - 1)],
        index=pd.Index(ids, name="user_id"),
        name="variant",
        dtype=object,
    )


# ---------------------------------------------------------------------------------- applying
def exploration_slots(variant: Variant, size: int, current: int) -> int:
    """The variant's exploration slots for playlists of ``size`` (``current`` when unset)."""
    if variant.exploration_slots is not None:
        return min(variant.exploration_slots, size)
    if variant.exploration_share is not None:
        return min(int(round(variant.exploration_share * size)), size)
    return current


def variant_config(config: DiscoverWeeklyConfig, variant: Variant) -> DiscoverWeeklyConfig:
    """``config`` with the variant's playlist rules (exploration, MMR, artist cap).

    More exploration slots than ``exploration_positions`` spreads the slots evenly over the
    playlist (6 of 30: positions 5, 10, ..., 30).
    """
    rules = config.playlist
    slots = exploration_slots(variant, rules.size, rules.exploration_slots)
    changes: dict[str, Any] = {"exploration_slots": slots}
    if slots > len(rules.exploration_positions):
        changes["exploration_positions"] = tuple(
            int(round(rules.size * (i + 1) / slots)) for i in range(slots)
        )
    pool = max(config.exploration_candidates, slots)  # enough exploration candidates to fill
    if variant.mmr_lambda is not None:
        changes["mmr_lambda"] = variant.mmr_lambda
    if variant.max_per_artist is not None:
        changes["max_per_artist"] = variant.max_per_artist
    return replace(config, playlist=replace(rules, **changes), exploration_candidates=pool)


def variant_blend(variant: Variant, served: BlendConfig) -> BlendConfig:
    """The week's blend (``"tuned"``) or the variant's fixed weights."""
    if variant.tuned_blend:
        return served
    return replace(served, weights=dict(variant.blend), method=variant.blend_method)


def variant_serving(base: ServingWeek, variant: Variant) -> ServingWeek:
    """The week's serving inputs with the variant's blend and playlist rules.

    A shallow copy of ``base``: the catalog, models, vectors, statistics and the prepared
    caches are shared (memory does not grow with the variants); the config, the blend and the
    cold-start generator are the variant's own. The variants change no candidate source, so
    the shared caches stay valid.
    """
    if base.models is not None:
        base.content()  # built once, shared by every variant
    serving = copy.copy(base)
    serving.config = variant_config(base.config, variant)
    serving.blend = variant_blend(variant, base.blend)
    serving.cold_rng = np.random.default_rng(serving.config.seed)
    return serving


# ---------------------------------------------------------------------------------- intervals
@dataclass
class UserMetrics:
    """Per-user values of one ranking: means (NDCG), ratio parts (novelty) and item lists
    (coverage). Users are rows, in one fixed order shared by every variant (paired)."""

    users: list[str]
    means: dict[str, np.ndarray] = field(default_factory=dict)
    ratios: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    sets: dict[str, tuple[list[list[str]], int]] = field(default_factory=dict)

    def point(self) -> dict[str, float]:
        """Each metric on every user (the estimate the intervals surround)."""
        weights = np.ones((1, len(self.users)))
        return {name: float(v[0]) for name, v in _statistics(self, weights).items()}


def _incidence(lists: list[list[str]]):
    """A users x items 0/1 sparse matrix of the items in each user's list."""
    from scipy import sparse

    codes: dict[str, int] = {}
    rows, cols = [], []
    for row, items in enumerate(lists):
        for item in set(items):
            rows.append(row)
            cols.append(codes.setdefault(item, len(codes)))
    data = np.ones(len(rows), dtype=np.float64)
    return sparse.csr_matrix((data, (rows, cols)), shape=(len(lists), max(1, len(codes))))


def _statistics(metrics: UserMetrics, weights: np.ndarray, prepared: dict | None = None) -> dict:
    """Each metric under resampling ``weights`` (resamples x users, counts of each user)."""
    prepared = {} if prepared is None else prepared
    total = weights.sum(axis=1)
    out: dict[str, np.ndarray] = {}
    for name, values in metrics.means.items():
        out[name] = weights @ values / np.maximum(total, 1)
    for name, (sums, counts) in metrics.ratios.items():
        out[name] = weights @ sums / np.maximum(weights @ counts, 1)
    for name, (lists, catalog) in metrics.sets.items():
        matrix = prepared.setdefault(name, _incidence(lists))
        covered = np.asarray((matrix.T @ weights.T) > 0).sum(axis=0)
        out[name] = covered / max(1, catalog)
    return out


def resample_weights(n_users: int, n_resamples: int, seed: int) -> Iterable[np.ndarray]:
    """Bootstrap resamples of ``n_users`` users as count matrices, in chunks of 100."""
    rng = np.random.default_rng(seed)
    for start in range(0, n_resamples, 100):
        chunk = min(100, n_resamples - start)
        draws = rng.integers(0, n_users, size=(chunk, n_users))
        offsets = np.arange(chunk)[:, None] * n_users
        counts = np.bincount((draws + offsets).ravel(), minlength=chunk * n_users)
        yield counts.reshape(chunk, n_users).astype(np.float64)


def _interval(sample: np.ndarray, value: float, recenter: bool, tail: float) -> list[float]:
    """The percentile interval of a bootstrap ``sample``; ``recenter``: shifted so the sample's
    median lies on ``value`` (set metrics: a resample repeats users, so it holds about 63%
    distinct ones and its union is smaller; its spread, not its level, is what it tells)."""
    if recenter:
        sample = sample - np.median(sample) + value
    low, high = np.percentile(sample, [tail, 100 - tail])
    return [float(low), float(high)]


def bootstrap_intervals(
    metrics: Mapping[str, UserMetrics],
    *,
    reference: str | None = None,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """Percentile bootstrap intervals over users of every metric of every variant.

    Every variant must hold the same users in the same order: one resample of users is
    applied to all of them (paired), so ``reference`` (a variant name) also gets the
    intervals of each other variant's difference to it. Means and ratios take the plain
    percentile interval; set metrics (coverage) the bootstrap's spread centred on the value
    (:func:`_interval`: a resample's union is biased low).

    Returns
    -------
    pandas.DataFrame
        One row per (variant, metric): ``value`` (on all users), ``ci_low``, ``ci_high``, and
        with a reference ``diff``, ``diff_ci_low``, ``diff_ci_high`` (variant - reference).
    """
    if not metrics:
        return pd.DataFrame()
    users = next(iter(metrics.values())).users
    if any(m.users != users for m in metrics.values()):
        raise ValueError("bootstrap_intervals needs the same users, in one order, per variant")
    if len(users) < 2:
        raise ValueError(f"bootstrap intervals need at least 2 users, got {len(users)}")
    draws: dict[str, dict[str, list[np.ndarray]]] = {name: {} for name in metrics}
    prepared: dict[str, dict] = {name: {} for name in metrics}
    for weights in resample_weights(len(users), n_resamples, seed):
        for name, values in metrics.items():
            for metric, stat in _statistics(values, weights, prepared[name]).items():
                draws[name].setdefault(metric, []).append(stat)
    tail = (1 - level) / 2 * 100
    points = {name: values.point() for name, values in metrics.items()}
    rows = []
    for name, values in metrics.items():
        for metric, parts in draws[name].items():
            sample = np.concatenate(parts)
            value = points[name][metric]
            interval = _interval(sample, value, metric in values.sets, tail)
            row = {"variant": name, "metric": metric, "value": value}
            row.update(ci_low=interval[0], ci_high=interval[1])
            if reference is not None and reference in metrics:
                diff = value - points[reference][metric]
                sample = sample - np.concatenate(draws[reference][metric])
                low, high = _interval(sample, diff, metric in values.sets, tail)
                row.update(diff=diff, diff_ci_low=low, diff_ci_high=high)
            rows.append(row)
    return pd.DataFrame(rows)
