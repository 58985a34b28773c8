"""Recommendation assets: the week's blend, candidates and Discover Weekly, similar artists, and
the evaluation of what is served; delivered as DuckDB tables, Parquet exports and a Feast view.

Every model the playlists use arrives as an input from the artifact store (``cf_model``,
``blend_config``, ``audio_to_cf_model``, ``text_vectors``, ``audio_vectors``): nothing is
fitted here except the blend's tuning, which fits throw-away models on a validation split.
"""

import hashlib
import json
from collections import Counter

import dagster as dg
import numpy as np
import pandas as pd

from assets.metadata import floats, frame_metadata, png_markdown, too_small
from assets.weekly import (
    OWNER,
    REPLAY_TABLES,
    HoldoutConfig,
    audio_table,
    cooccurrence_trainer,
    social_graph,
    social_sources,
    transition_trainer,
    week_config,
)
from embeddings.cooccurrence import CooccurrenceVectors
from embeddings.vectors import AudioEmbeddings, VectorSet
from evaluation.metrics import confidence_intervals, holdout_split, interval_columns
from evaluation.served import HOLDOUT_MIN_ITEMS, evaluate_blend, ranker_summary, user_segments
from featurestore import tables as features
from featurestore.errors import FeatureStoreError
from featurestore.ranker_features import (
    PointInTimeRankingFeatures,
    serving_features,
    training_as_of,
    write_snapshot,
)
from orchestration.partitions import WEEKS, register_weeks, week_cutoff, week_of
from orchestration.resources import (
    ARTIFACTS,
    ArtifactStoreResource,
    ExperimentResource,
    FeatureStoreResource,
    Paths,
    Warehouse,
)
from recommend.blend import BlendChoice, BlendConfig
from recommend.errors import TooSmall
from recommend.history import (
    artist_level,
    display_items,
    history_batches,
    history_before,
    load_history,
    week_statistics,
)
from recommend.journeys import TransitionModel
from recommend.models import AudioProjector, SourceModels
from recommend.playlist import (
    DISCOVERY_FACTOR,
    STAGE_DESCRIPTIONS,
    ServedTotals,
    ServingWeek,
    ValidationWeek,
    serve_users,
    similar_artists,
)
from recommend.ranker import WeekRanker, fusion_serves
from recommend.social import SocialGraph
from recommend.variants import Experiment, variant_serving
from recommend.week_ranker import tune_week, validation_features

CANDIDATES = dg.AssetKey("candidates")
DISCOVER_WEEKLY = dg.AssetKey("discover_weekly")
BLEND_CONFIG = dg.AssetKey("blend_config")
PLAYLIST_RANKER = dg.AssetKey("playlist_ranker")
RANKING_FEATURES = dg.AssetKey(["features", "ranking_features"])
PLAYLIST_RULES_CHECK = "playlist_rules"
PLAYLIST_SIZE = 30


class BlendTuningConfig(dg.Config):
    """How the week's blend is chosen: tuned on a validation split carved from the history
    before the week (default), or fixed by ``weights`` (then ``method`` applies)."""

    validation_fraction: float = 0.2
    validation_seed: int = 7
    # the validation split holds at most this many users (a seeded sample when there are more:
    # the candidates tuned on at once follow it, not the number of users)
    max_users: int = 10_000
    methods: list[str] = ["zscore", "rrf"]
    # the blend must reach coverage_factor x the distinct items of this source's playlist-length
    # lists and its novelty: "best" = the most accurate single source, "" = NDCG alone
    reference: str = "best"
    coverage_factor: float = DISCOVERY_FACTOR
    weights: dict[str, float] = {}
    method: str = "zscore"
    # the learned ranker: "auto" (serves when it beats the fusion on validation), "always"
    # (serves whatever the verdict, e.g. to A/B it), "off" (the fusion serves, no ranker)
    ranker: str = "auto"

    def tuning(self) -> dict:
        return {
            "validation_fraction": self.validation_fraction,
            "validation_seed": self.validation_seed,
            "methods": tuple(self.methods),
            "reference": self.reference or None,
            "coverage_factor": self.coverage_factor,
            "max_users": self.max_users,
            "ranker": self.ranker,
        }


@dg.multi_asset(
    name="blend_config",
    ins={
        "cf_model": dg.AssetIn("cf_model"),
        "text_vectors": dg.AssetIn("text_vectors"),
        "audio_vectors": dg.AssetIn("audio_vectors"),
        "cooccurrence_vectors": dg.AssetIn("cooccurrence_vectors"),
    },
    outs={
        "blend_config": dg.AssetOut(
            key=BLEND_CONFIG,
            io_manager_key=ARTIFACTS,
            group_name="recommend",
            kinds={"pandas"},
            owners=[OWNER],
            description="Per week, the blend of the playlists: source weights and score "
            "normalisation tuned for NDCG@10 on a validation split carved from the plays before "
            "the week (the sources refitted on the rest with cf_model's config), or fixed by "
            "configuration. Read by discover_weekly and replayed by blend_evaluation.",
        ),
        "playlist_ranker": dg.AssetOut(
            key=PLAYLIST_RANKER,
            io_manager_key=ARTIFACTS,
            group_name="recommend",
            kinds={"lightgbm"},
            owners=[OWNER],
            description="Per week, a LambdaRank ranker over the union of the candidates, "
            "trained on the same validation split as blend_config (75% of its users) and "
            "compared with the fusion on the rest, served lists against served lists: it ranks "
            "the playlists only when it leads the fusion's NDCG@10 by the margin without losing "
            "discovery; otherwise the fusion serves and the metadata says why. Feature "
            "importance and per-source contribution in the metadata.",
        ),
    },
    # the co-occurrence source is refitted without held-out rows from its contexts; the
    # ranker's training snapshot goes into the views ranking_features writes
    deps=[*REPLAY_TABLES, RANKING_FEATURES],
    partitions_def=WEEKS,
    pool="duckdb",
)
def blend_config(
    context: dg.AssetExecutionContext,
    config: BlendTuningConfig,
    warehouse: Warehouse,
    artifact_store: ArtifactStoreResource,
    feature_store: FeatureStoreResource,
    cf_model: SourceModels,
    text_vectors: VectorSet,
    audio_vectors: AudioEmbeddings,
    cooccurrence_vectors: CooccurrenceVectors,
):
    if config.weights:
        choice = BlendChoice(BlendConfig(weights=config.weights, method=config.method), False)
        yield dg.Output(
            choice, "blend_config", metadata={"tuned": False, "weights": dict(config.weights)}
        )
        ranker = fusion_serves("the blend is fixed by configuration: no ranker is trained")
        yield dg.Output(ranker, "playlist_ranker", metadata=ranker_metadata(ranker))
        return
    terms = warehouse.table("golden", "artist_terms")
    social = social_graph(warehouse, week_cutoff(context))  # read once: hashed, then tuned on
    inputs = _blend_inputs(
        cf_model,
        config,
        [text_vectors, audio_vectors, cooccurrence_vectors],
        [terms, *_social_frames(social)],
    )
    store = artifact_store.store()
    if store.has(BLEND_CONFIG.path, context.partition_key, inputs) and store.versions(
        PLAYLIST_RANKER.path, context.partition_key
    ):
        context.log.info(f"blend {inputs} already tuned on the same inputs; not retuning")
        choice = store.load(BLEND_CONFIG.path, context.partition_key, inputs)
        ranker = store.load(PLAYLIST_RANKER.path, context.partition_key)
        if getattr(ranker, "inputs", None) == inputs:
            yield dg.Output(
                choice, "blend_config", metadata={**_blend_metadata(choice.blend), "retuned": False}
            )
            yield dg.Output(ranker, "playlist_ranker", metadata=ranker_metadata(ranker))
            return
    items = display_items(warehouse)
    try:
        blend, history, ranker = tune_week(
            load_history(
                warehouse,
                week_cutoff(context),
                max_users=config.max_users,
                seed=config.validation_seed,
            ),
            items,
            config=week_config(cf_model),
            artist_terms=terms,
            text_vectors=text_vectors.as_table(),
            audio_vectors=audio_table(audio_vectors, items),
            cooccurrence=cooccurrence_trainer(warehouse, context, cooccurrence_vectors),
            inputs=inputs,
            training_features=_training_features(feature_store, week_cutoff(context)),
            social=social,
            **config.tuning(),
        )
    except TooSmall as error:
        context.log.warning(f"too small to tune the blend ({error}): default weights")
        choice = BlendChoice(BlendConfig(method=config.method), False, config.tuning(), inputs)
        yield dg.Output(
            choice,
            "blend_config",
            metadata={**_blend_metadata(choice.blend), "tuned": False, "reason": str(error)},
        )
        ranker = fusion_serves(f"too small to tune: {error}", inputs)
        yield dg.Output(ranker, "playlist_ranker", metadata=ranker_metadata(ranker))
        return
    best = history.sort_values("objective").iloc[-1]
    validation = {f"validation_{m}@10": best[m] for m in ("ndcg", "coverage", "novelty")}
    yield dg.Output(
        BlendChoice(blend, True, config.tuning(), inputs),
        "blend_config",
        metadata={
            **_blend_metadata(blend),
            "retuned": True,
            "trials": len(history),
            "constraint": dg.MetadataValue.json(
                {
                    m: {k: str(v) for k, v in t.items()}
                    for m, t in history.attrs["reference"].items()
                }
            ),
            **floats({k: v for k, v in validation.items() if pd.notna(v)}),
        },
    )
    context.log.info(f"playlist ranker: {ranker.choice.reason}")
    yield dg.Output(ranker, "playlist_ranker", metadata=ranker_metadata(ranker))


def _training_features(feature_store: FeatureStoreResource, cutoff: pd.Timestamp):
    """Write the validation split's features to Feast (the training snapshot, just before the
    cutoff) and read them back point-in-time: what the ranker trains on."""

    def read(week: ValidationWeek) -> PointInTimeRankingFeatures:
        client = feature_store.client()
        as_of = training_as_of(cutoff)
        users, items = validation_features(week)
        write_snapshot(client, [users], items, as_of)
        return PointInTimeRankingFeatures(client, as_of)

    return read


def ranker_metadata(ranker: WeekRanker) -> dict:
    """What serves and why, the ranker's figures on the choice users, its importance."""
    summary = ranker_summary(ranker)
    meta = {
        "serves": summary["serves"],
        "reason": summary["reason"],
        "novelty_weight": summary["novelty_weight"],
        "trees": summary["trees"],
        "train_seconds": summary["train_seconds"],
    }
    for name in ("fusion", "ranker", "source_contribution", "importance_gain", "knob_search"):
        if name in summary:
            meta[name] = dg.MetadataValue.json(summary[name])
    if "source_contribution" in summary:
        contribution = pd.DataFrame(
            {
                "source": list(summary["source_contribution"]),
                "mean_abs_shap": list(summary["source_contribution"].values()),
            }
        )
        meta["per_source_contribution"] = dg.MetadataValue.md(contribution.to_markdown(index=False))
    return meta


def _blend_inputs(
    cf_model: SourceModels,
    config: BlendTuningConfig,
    vectors: list,
    frames: list[pd.DataFrame],
) -> str:
    """Hash of everything the tuning reads: same inputs, same blend (no retuning)."""
    digest = hashlib.sha256(
        json.dumps(
            [cf_model.version, config.tuning(), *[v.version for v in vectors]],
            sort_keys=True,
            default=str,
        ).encode()
    )
    for frame in frames:
        digest.update(pd.util.hash_pandas_object(frame, index=False).values.tobytes())
    return digest.hexdigest()[:16]


def _social_frames(graph: SocialGraph | None) -> list[pd.DataFrame]:
    return [] if graph is None else [graph.friends, graph.tag_assignments]


def _blend_metadata(blend: BlendConfig) -> dict:
    return {
        "tuned": True,
        "method": blend.method,
        "weights": dg.MetadataValue.json(dict(blend.weights)),
    }


RULES = ("duplicate_items", "played_items", "missing_reasons", "too_long", "short_without_cause")


def playlist_rule_violations(
    playlists: pd.DataFrame, history: pd.DataFrame, catalog_size: int
) -> dict[str, int]:
    """Counts of broken playlist rules (all zero when the playlists are publishable)."""
    played = set(zip(history["user_id"], history["item_id"], strict=True))
    per_user = playlists.groupby("user_id")["item_id"]
    expected = min(PLAYLIST_SIZE, catalog_size)
    sizes = per_user.size()
    played_counts = history.groupby("user_id")["item_id"].nunique()
    short = sizes[
        sizes
        < np.minimum(expected, catalog_size - played_counts.reindex(sizes.index, fill_value=0))
    ]
    return {
        "duplicate_items": int((per_user.nunique() != sizes).sum()),
        "played_items": int(
            sum(
                (u, i) in played
                for u, i in zip(playlists["user_id"], playlists["item_id"], strict=True)
            )
        ),
        "missing_reasons": int(playlists["reason"].fillna("").str.strip().eq("").sum()),
        "too_long": int((sizes > PLAYLIST_SIZE).sum()),
        "short_without_cause": int(len(short)),
    }


class DiscoverWeeklyRunConfig(dg.Config):
    """How the week's playlists are served: users in batches of ``user_batch_size`` (each
    batch's history read from the warehouse, its candidates and playlists appended to the
    tables): memory follows the batch size, not the number of users."""

    user_batch_size: int = 5_000


@dg.multi_asset(
    ins={
        "cf_model": dg.AssetIn("cf_model"),
        "blend_config": dg.AssetIn("blend_config"),
        "playlist_ranker": dg.AssetIn("playlist_ranker"),
        "audio_to_cf_model": dg.AssetIn("audio_to_cf_model"),
        "text_vectors": dg.AssetIn("text_vectors"),
        "audio_vectors": dg.AssetIn("audio_vectors"),
        "cooccurrence_vectors": dg.AssetIn("cooccurrence_vectors"),
        "transition_model": dg.AssetIn("transition_model"),
    },
    specs=[
        dg.AssetSpec(
            CANDIDATES,
            deps=[
                "cf_model",
                "text_vectors",
                "audio_vectors",
                "audio_to_cf_model",
                "cooccurrence_vectors",
                "transition_model",
                ["golden", "listen_events"],
                ["golden", "listens"],
                ["golden", "artist_terms"],
                ["golden", "friends"],
                ["golden", "tag_assignments"],
            ],
            group_name="recommend",
            kinds={"duckdb"},
            owners=[OWNER],
            description="Per week, candidates per source (EASE, item-kNN, ALS from cf_model; "
            "text, audio, co-occurrence, new tracks through audio_to_cf_model, popularity, "
            "exploration, journey steps from transition_model, friends' listening, the user's "
            "own tag vocabulary), each with a score and a reason. "
            "Table recommend.candidates.",
            skippable=False,
        ),
        dg.AssetSpec(
            DISCOVER_WEEKLY,
            deps=[
                CANDIDATES,
                "blend_config",
                "playlist_ranker",
                "feast_apply",
                RANKING_FEATURES,
                ["golden", "items"],
                ["golden", "artists"],
                ["golden", "users"],
            ],
            group_name="recommend",
            kinds={"duckdb", "parquet", "feast"},
            owners=[OWNER],
            description="Discover Weekly: 30 never-played items per user and week, fused with "
            "the week's blend_config, diversified (MMR, artist cap), with exploration slots and "
            "a reason on every row; each user served by their A/B variant (the experiment "
            "resource, a stable hash of the user id), kept in the variant column. Fits no "
            "model. Delivered as recommend.discover_weekly, Parquet under "
            "exports/discover_weekly/ and the Feast view discover_weekly_playlist.",
            skippable=False,
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            PLAYLIST_RULES_CHECK,
            asset=DISCOVER_WEEKLY,
            blocking=True,
            description="30 distinct items per user (fewer only when the catalog is smaller), "
            "none played before the week, every row with a reason.",
        )
    ],
    partitions_def=WEEKS,
    pool="duckdb",
)
def discover_weekly(
    context: dg.AssetExecutionContext,
    config: DiscoverWeeklyRunConfig,
    warehouse: Warehouse,
    paths: Paths,
    feature_store: FeatureStoreResource,
    experiment: ExperimentResource,
    cf_model: SourceModels,
    blend_config: BlendChoice,
    playlist_ranker: WeekRanker,
    audio_to_cf_model: AudioProjector | None,
    text_vectors: VectorSet,
    audio_vectors: AudioEmbeddings,
    cooccurrence_vectors: CooccurrenceVectors,
    transition_model: TransitionModel,
):
    """Serve one week's playlists from the week's models and blend, in user batches: each
    batch's history is read from the warehouse, served, and appended to the tables, the
    Parquet export and the Feast view (memory follows the batch, not the number of users)."""
    cutoff = week_cutoff(context)
    week = cutoff.normalize()
    day = week.date()
    items = display_items(warehouse)
    serving = _serving_week(
        warehouse,
        items,
        cutoff,
        cf_model=cf_model,
        blend_config=blend_config,
        text_vectors=text_vectors,
        audio_vectors=audio_vectors,
        audio_to_cf_model=audio_to_cf_model,
        cooccurrence_vectors=cooccurrence_vectors,
        transition_model=transition_model,
        playlist_ranker=playlist_ranker,
    )
    if playlist_ranker.serves:
        serving.ranker_features = _ranker_features(feature_store, cutoff)
    plan = experiment.experiment()
    servings = {v.name: variant_serving(serving, v) for v in plan.variants}
    context.log.info(
        f"week {day}: users in batches of {config.user_batch_size}, plays before {cutoff}, "
        f"CF sources {cf_model.version}, blend {blend_config.version}, ranking by "
        f"{'the learned ranker' if playlist_ranker.serves else 'the fusion'}, experiment "
        f"{plan.name} ({', '.join(f'{v.name} {v.share:g}' for v in plan.variants)})"
    )
    variant_users: Counter = Counter()
    export = paths.sub("exports", "discover_weekly", f"week_start={day}") / "playlists.parquet"
    totals = ServedTotals()
    violations: Counter = Counter()
    previews: dict[str, pd.DataFrame] = {}
    feast = _FeastWeek(feature_store, week)
    batches = history_batches(warehouse, cutoff, config.user_batch_size)
    with _ParquetParts(export) as parquet:
        for number, (users, history) in enumerate(_at_least_one(batches, warehouse, cutoff)):
            playlists, candidates = _serve_variants(servings, plan, history, users)
            variant_users.update(playlists.drop_duplicates("user_id")["variant"].tolist())
            candidates = candidates.assign(week_start=day)
            if number == 0:  # the week's partition is replaced once, then appended to
                warehouse.replace_partition(
                    "recommend", "candidates", candidates, "week_start", day
                )
                warehouse.replace_partition(
                    "recommend", "discover_weekly", playlists, "week_start", day
                )
                previews = {"candidates": candidates.head(50), "playlists": playlists.head(30)}
            else:
                warehouse.append_table("recommend", "candidates", candidates)
                warehouse.append_table("recommend", "discover_weekly", playlists)
            # week_start is the folder key (hive partitioning): pd.read_parquet(folder) restores it
            parquet.write(playlists.drop(columns=["week_start"]))
            feast.add(playlists)
            totals.add(users, history, playlists, candidates)
            violations.update(playlist_rule_violations(playlists, history, len(items)))
            context.log.info(
                f"batch {number + 1}: {len(users)} users, {len(playlists)} playlist rows "
                f"({totals.users} users so far)"
            )
    feast_rows = feast.publish(context)
    yield dg.MaterializeResult(
        asset_key=CANDIDATES,
        metadata={
            **frame_metadata(previews["candidates"]),
            "dagster/row_count": totals.candidate_rows,
            "per_source": dg.MetadataValue.json(dict(totals.candidate_sources.most_common())),
        },
    )
    yield dg.MaterializeResult(
        asset_key=DISCOVER_WEEKLY,
        metadata={
            **frame_metadata(previews["playlists"].head(PLAYLIST_SIZE)),
            "dagster/row_count": totals.rows,
            "week_start": str(day),
            "cf_model_version": cf_model.version,
            "blend_config_version": blend_config.version,
            "blend_weights": dg.MetadataValue.json(dict(blend_config.blend.weights)),
            "ranked_by": "ranker" if playlist_ranker.serves else "fusion",
            "playlist_ranker_version": playlist_ranker.version,
            "users": totals.users,
            "users_without_history": totals.users_without_history,
            "distinct_items": len(totals.items),
            "source_mix": dg.MetadataValue.json(dict(totals.sources.most_common())),
            "parquet": dg.MetadataValue.path(str(export)),
            "feast_rows": feast_rows,
            "user_batch_size": config.user_batch_size,
            "experiment": dg.MetadataValue.json(plan.to_dict()),
            "variant_users": dg.MetadataValue.json(
                {name: int(variant_users.get(name, 0)) for name in plan.names}
            ),
            **floats({"catalog_coverage": len(totals.items) / max(1, len(items))}),
        },
    )
    checked = {name: int(violations.get(name, 0)) for name in RULES}
    yield dg.AssetCheckResult(
        check_name=PLAYLIST_RULES_CHECK,
        asset_key=DISCOVER_WEEKLY,
        passed=not any(checked.values()),
        metadata=checked,
    )


def _ranker_features(feature_store: FeatureStoreResource, cutoff: pd.Timestamp):
    """The ranker's features of this week: its snapshot pushed online again and read there
    (or, for a week backfilled after a newer one, read point-in-time at its cutoff)."""
    try:
        return serving_features(feature_store.client(), cutoff)
    except FeatureStoreError as error:
        raise dg.Failure(f"the learned ranker serves week {cutoff.date()} but {error}") from error


def _serving_week(
    warehouse: Warehouse,
    items: pd.DataFrame,
    cutoff: pd.Timestamp,
    *,
    cf_model: SourceModels,
    blend_config: BlendChoice,
    text_vectors: VectorSet,
    audio_vectors: AudioEmbeddings,
    audio_to_cf_model: AudioProjector | None,
    cooccurrence_vectors: CooccurrenceVectors,
    transition_model: TransitionModel | None = None,
    playlist_ranker: WeekRanker | None = None,
) -> ServingWeek:
    """The week's serving inputs, built once per run (every variant is served from it)."""
    statistics = week_statistics(warehouse, cutoff, cutoff.normalize())
    return ServingWeek(
        items,
        week_start=cutoff.normalize(),
        statistics=statistics,
        models=cf_model,
        blend=blend_config.blend,
        config=week_config(cf_model),
        artist_terms=warehouse.table("golden", "artist_terms"),
        text_vectors=text_vectors.as_table(),
        audio_vectors=audio_table(audio_vectors, items),
        audio_projector=audio_to_cf_model,
        cooccurrence_vectors=cooccurrence_vectors.candidate_table(),
        transitions=transition_model,
        ranker=playlist_ranker,
        social=social_sources(warehouse, items, cutoff, statistics.listeners),
    )


def _serve_variants(
    servings: dict[str, ServingWeek],
    experiment: Experiment,
    history: pd.DataFrame,
    users: list[str],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One batch's playlists (with a ``variant`` column) and candidates: each user served by
    the variant the experiment assigns them (a stable hash of the user id)."""
    assigned = experiment.assign(users)
    playlists, candidates = [], []
    for name, serving in servings.items():
        chosen = assigned.index[assigned == name].tolist()
        if not chosen and playlists:
            continue
        mine = history[history["user_id"].astype(str).isin(set(chosen))]
        served, ranked = serve_users(serving, mine, chosen, return_candidates=True)
        playlists.append(served.assign(variant=name))
        candidates.append(ranked)
    playlists = [p for p in playlists if len(p)] or playlists[:1]
    candidates = [c for c in candidates if len(c)] or candidates[:1]
    merged = pd.concat(playlists, ignore_index=True).sort_values(
        ["user_id", "position"], kind="mergesort"
    )
    return merged.reset_index(drop=True), pd.concat(candidates, ignore_index=True)


def _at_least_one(batches, warehouse: Warehouse, cutoff: pd.Timestamp):
    """The batches, or one empty batch when there are no users (the week is still replaced)."""
    empty = True
    for batch in batches:
        empty = False
        yield batch
    if empty:
        yield [], history_before(warehouse, cutoff, users=[])


class _ParquetParts:
    """One Parquet file written batch by batch (row groups), renamed into place at the end."""

    def __init__(self, path) -> None:
        self.path = path
        # a leading dot: readers of the folder (pyarrow datasets) skip a half-written file
        self.partial = path.with_name(f".{path.name}.partial")
        self.writer = None

    def write(self, frame: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = self.writer.schema if self.writer is not None else None
        table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.partial, table.schema)
        self.writer.write_table(table)

    def __enter__(self) -> "_ParquetParts":
        return self

    def __exit__(self, kind, error, trace) -> None:
        if self.writer is not None:
            self.writer.close()
            if error is None:
                self.partial.replace(self.path)
            else:
                self.partial.unlink(missing_ok=True)


class _FeastWeek:
    """The Feast view's Parquet rewritten with this week's playlists, batch by batch
    (:class:`featurestore.tables.SnapshotWriter`: the other weeks' rows are kept), renamed into
    place and pushed online by :meth:`publish`."""

    def __init__(self, feature_store: FeatureStoreResource, week: pd.Timestamp) -> None:
        self.client = feature_store.client()
        self.week = week
        self.created = pd.Timestamp.now(tz="UTC").to_pydatetime()
        self.writer = features.SnapshotWriter(
            self.client.parquet_path("discover_weekly_playlist"),
            "discover_weekly_playlist",
            week.to_pydatetime(),
        ).__enter__()

    def add(self, playlists: pd.DataFrame) -> None:
        if playlists.empty:
            return
        recs = playlists.rename(columns={"position": "rank"})[
            ["user_id", "item_id", "rank", "reason", "variant"]
        ]
        self.writer.add(
            features.discover_weekly_playlist(recs, self.week.to_pydatetime(), created=self.created)
        )

    def publish(self, context) -> int:
        """Close the file, put it in place and push it to the online store (0 rows on a
        Feast error, which is logged: the playlists are in the warehouse regardless)."""
        self.writer.__exit__(None, None, None)
        try:
            self.client.materialize(views=["discover_weekly_playlist"])
        except FeatureStoreError as error:
            context.log.warning(f"playlists not pushed to the Feast online store: {error}")
            return 0
        return self.writer.kept + self.writer.rows


@dg.asset(
    ins={"text_vectors": dg.AssetIn("text_vectors")},
    deps=[
        ["golden", "listens"],
        ["golden", "items"],
        ["golden", "artists"],
        ["golden", "artist_terms"],
    ],
    group_name="recommend",
    kinds={"duckdb"},
    owners=[OWNER],
    description="Top 20 similar artists per artist, blended from artist-level item-kNN "
    "similarity and text similarity, each with a reason (shared listeners or shared terms). "
    "Table recommend.similar_artists.",
    pool="duckdb",
)
def similar_artists_table(
    warehouse: Warehouse, paths: Paths, text_vectors: VectorSet
) -> dg.MaterializeResult:
    listens, artists = artist_level(warehouse)
    frame = similar_artists(
        listens,
        artists,
        artist_terms=warehouse.table("golden", "artist_terms"),
        text_vectors=text_vectors.as_table(),
        k=20,
    )
    warehouse.write_table("recommend", "similar_artists", frame)
    frame.to_parquet(paths.sub("exports") / "similar_artists.parquet", index=False)
    return dg.MaterializeResult(
        metadata={**frame_metadata(frame), "artists": int(frame["artist_id"].nunique())}
    )


class BlendEvaluationConfig(HoldoutConfig):
    """The holdout carved from the week's history (:class:`assets.weekly.HoldoutConfig`, the
    one variant_replay scores too)."""


def _evaluation_markdown(table: pd.DataFrame) -> str:
    shown = table.drop(columns=interval_columns(table)).reset_index()
    shown.insert(1, "stage", shown["ranking"].map(STAGE_DESCRIPTIONS).fillna("single source"))
    columns = [c for c in shown.columns if c not in ("users",)]
    return shown[columns].round(4).to_markdown(index=False)


@dg.asset(
    ins={
        "cf_model": dg.AssetIn("cf_model"),
        "blend_config": dg.AssetIn("blend_config"),
        "text_vectors": dg.AssetIn("text_vectors"),
        "audio_vectors": dg.AssetIn("audio_vectors"),
        "cooccurrence_vectors": dg.AssetIn("cooccurrence_vectors"),
        "transition_model": dg.AssetIn("transition_model"),
    },
    # the co-occurrence source is refitted without held-out rows from its contexts
    deps=REPLAY_TABLES,
    partitions_def=WEEKS,
    group_name="evaluation",
    kinds={"pandas"},
    owners=[OWNER],
    description="What is served, scored: the week's pipeline (blend chosen as blend_config "
    "chooses it, sources as cf_model fits them, playlists by the function behind "
    "discover_weekly) replayed on a per-user holdout of the plays before the week (a seeded "
    "sample of at most max_users users, served in batches). One row per single source and per "
    "stage (raw blend, after MMR, served): NDCG@10/30, R@30, coverage, distinct items, "
    "novelty, diversity, 95% confidence intervals of NDCG and recall; table and chart.",
    pool="duckdb",
)
def blend_evaluation(
    context: dg.AssetExecutionContext,
    config: BlendEvaluationConfig,
    warehouse: Warehouse,
    paths: Paths,
    cf_model: SourceModels,
    blend_config: BlendChoice,
    text_vectors: VectorSet,
    audio_vectors: AudioEmbeddings,
    cooccurrence_vectors: CooccurrenceVectors,
    transition_model: TransitionModel,
) -> dg.MaterializeResult:
    cutoff = week_cutoff(context)
    items = display_items(warehouse)
    try:
        history = load_history(
            warehouse,
            cutoff,
            week_start=cutoff.normalize(),
            max_users=config.max_users,
            seed=config.seed,
        )
        split = holdout_split(
            history.rows, config.test_fraction, min_items=HOLDOUT_MIN_ITEMS, seed=config.seed
        )
        table = evaluate_blend(
            history.after_split(split.train, split.test),
            split.test,
            items=items,
            artist_terms=warehouse.table("golden", "artist_terms"),
            text_vectors=text_vectors.as_table(),
            audio_vectors=audio_table(audio_vectors, items),
            config=week_config(cf_model),
            week_start=cutoff.normalize(),
            blend=None if blend_config.tuned else blend_config.blend,
            tuning=blend_config.tuning,
            batch_size=config.user_batch_size,
            cooccurrence=cooccurrence_trainer(warehouse, context, cooccurrence_vectors),
            transitions=transition_trainer(warehouse, context, transition_model),
            segments=user_segments(history.rows, split.train),
            social=social_graph(warehouse, week_cutoff(context)),
        )
    except TooSmall as error:
        return too_small(context, error)
    chart = table.attrs["chart_png"]
    out = paths.sub("reports")
    table.to_csv(out / f"blend_evaluation_{context.partition_key}.csv")
    (out / f"blend_evaluation_{context.partition_key}.png").write_bytes(chart)
    singles = table.drop(index=[r for r in STAGE_DESCRIPTIONS if r in table.index])
    served = table.loc["discover_weekly"]
    intervals = confidence_intervals(table, ("ndcg@10", "ndcg@30", "recall@30"))
    return dg.MaterializeResult(
        metadata={
            "sampled": not history.complete,
            "users_with_history": history.users,
            "ci95": dg.MetadataValue.json(intervals),
            "served_ndcg@10_ci95": dg.MetadataValue.json(intervals["discover_weekly"]["ndcg@10"]),
            "table": dg.MetadataValue.md(_evaluation_markdown(table)),
            "chart": png_markdown(chart, "served playlists vs single sources"),
            "blend_config": dg.MetadataValue.json(
                {
                    "weights": dict(table.attrs["blend_config"].weights),
                    "method": table.attrs["blend_config"].method,
                }
            ),
            "best_single_source": str(singles["ndcg@10"].idxmax()),
            "ranked_by": table.attrs["ranker"].get("serves", "fusion"),
            "ranker_choice": table.attrs["ranker"].get("reason", "no ranker (fixed blend)"),
            "test_users": int(split.test["user_id"].nunique()),
            "light_users": dg.MetadataValue.json(_light_users(table)),
            "seconds": dg.MetadataValue.json(table.attrs["seconds"]),
            **floats({f"ndcg@10/{m}": v for m, v in table["ndcg@10"].items()}),
            **floats(
                {
                    "served_ndcg@10": served["ndcg@10"],
                    "served_minus_best_single_ndcg@10": served["ndcg@10"]
                    - singles["ndcg@10"].max(),
                }
            ),
        }
    )


def _light_users(table: pd.DataFrame) -> dict:
    """The users left with at most 3 training items: served playlists beside popularity."""
    light = table.attrs["segments"].get("light")
    if light is None:
        return {"users": 0}
    rows = [r for r in ("discover_weekly", "popularity") if r in light.index]
    return {
        "users": int(light["users"].max()),
        **{f"{r}_ndcg@10": round(float(light.loc[r, "ndcg@10"]), 4) for r in rows},
        **{f"{r}_recall@30": round(float(light.loc[r, "recall@30"]), 4) for r in rows},
    }


WEEKLY_ASSETS = [
    "cf_model",
    "transition_model",
    "journey_evaluation",
    "cf_user_vectors",
    "cf_item_vectors",
    "audio_to_cf_model",
    "features/ranking_features",
    "blend_config",
    "playlist_ranker",
    "candidates",
    "discover_weekly",
    "cf_evaluation",
    "blend_evaluation",
    "cooccurrence_vectors",
    "similar_artists_evaluation",
    "variant_replay",
    "features/user_cf_vector",
]
discover_weekly_job = dg.define_asset_job(
    "discover_weekly_job",
    selection=dg.AssetSelection.assets(*[dg.AssetKey.from_user_string(k) for k in WEEKLY_ASSETS]),
    partitions_def=WEEKS,
    description="One week's models (cf_model, audio_to_cf_model, blend_config), CF vectors, "
    "candidates and playlists, and the evaluation of what is served and of the A/B variants "
    "(backfill it for past weeks).",
)


@dg.schedule(
    job=discover_weekly_job,
    cron_schedule="0 0 * * 1",
    execution_timezone="UTC",
    name="discover_weekly_every_monday",
    description="Every Monday 00:00 UTC: registers the new week and builds its playlists from "
    "the plays before it.",
)
def discover_weekly_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    week = week_of(context.scheduled_execution_time)
    register_weeks(context.instance, [week])
    return dg.RunRequest(run_key=week, partition_key=week)
