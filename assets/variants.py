"""The A/B variants compared offline before they ship: ``variant_replay``.

Every variant of the ``experiment`` resource (the one ``discover_weekly`` serves) is replayed on
the same per-user holdout ``blend_evaluation`` scores (:func:`evaluation.variants.replay_variants`)
and reported with 95% bootstrap intervals over users.
"""

import dagster as dg

from assets.metadata import floats, png_markdown, too_small
from assets.weekly import (
    OWNER,
    REPLAY_TABLES,
    HoldoutConfig,
    audio_table,
    cooccurrence_trainer,
    social_graph,
    transition_trainer,
    week_config,
)
from embeddings.cooccurrence import CooccurrenceVectors
from embeddings.vectors import AudioEmbeddings, VectorSet
from evaluation.metrics import holdout_split
from evaluation.variants import REPLAY_METRICS, VariantReplay, replay_chart_png, replay_variants
from orchestration.partitions import WEEKS, week_cutoff
from orchestration.resources import ExperimentResource, Paths, Warehouse
from recommend.blend import BlendChoice
from recommend.errors import TooSmall
from recommend.history import display_items, load_history
from recommend.journeys import TransitionModel
from recommend.models import SourceModels


class VariantReplayConfig(HoldoutConfig):
    """The holdout of ``blend_evaluation`` (same fraction, seed and user sample) and the
    bootstrap: ``resamples`` resamples of the test users, seeded by ``bootstrap_seed``."""

    resamples: int = 1000
    bootstrap_seed: int = 0


@dg.asset(
    ins={
        "cf_model": dg.AssetIn("cf_model"),
        "blend_config": dg.AssetIn("blend_config"),
        "text_vectors": dg.AssetIn("text_vectors"),
        "audio_vectors": dg.AssetIn("audio_vectors"),
        "cooccurrence_vectors": dg.AssetIn("cooccurrence_vectors"),
        "transition_model": dg.AssetIn("transition_model"),
    },
    deps=REPLAY_TABLES,
    partitions_def=WEEKS,
    group_name="evaluation",
    kinds={"pandas"},
    owners=[OWNER],
    description="The experiment's playlist variants compared offline before they ship: each "
    "variant's served playlists (the function behind discover_weekly, blend and sources as "
    "blend_config and cf_model choose them) replayed for every test user of blend_evaluation's "
    "holdout; NDCG@10, catalog coverage@30 and novelty@30 per variant with 95% bootstrap "
    "intervals over users and the difference to the control; table and chart.",
    pool="duckdb",
)
def variant_replay(
    context: dg.AssetExecutionContext,
    config: VariantReplayConfig,
    warehouse: Warehouse,
    paths: Paths,
    experiment: ExperimentResource,
    cf_model: SourceModels,
    blend_config: BlendChoice,
    text_vectors: VectorSet,
    audio_vectors: AudioEmbeddings,
    cooccurrence_vectors: CooccurrenceVectors,
    transition_model: TransitionModel,
) -> dg.MaterializeResult:
    cutoff = week_cutoff(context)
    items = display_items(warehouse)
    plan = experiment.experiment()
    try:
        history = load_history(
            warehouse,
            cutoff,
            week_start=cutoff.normalize(),
            max_users=config.max_users,
            seed=config.seed,
        )
        split = holdout_split(history.rows, config.test_fraction, seed=config.seed)
        replay = replay_variants(
            history.after_split(split.train, split.test),
            split.test,
            plan,
            items=items,
            artist_terms=warehouse.table("golden", "artist_terms"),
            text_vectors=text_vectors.as_table(),
            audio_vectors=audio_table(audio_vectors, items),
            config=week_config(cf_model),
            week_start=cutoff.normalize(),
            blend=None if blend_config.tuned else blend_config.blend,
            tuning=blend_config.tuning,
            batch_size=config.user_batch_size,
            n_resamples=config.resamples,
            seed=config.bootstrap_seed,
            cooccurrence=cooccurrence_trainer(warehouse, context, cooccurrence_vectors),
            transitions=transition_trainer(warehouse, context, transition_model),
            social=social_graph(warehouse, cutoff),
        )
    except TooSmall as error:
        return too_small(context, error)
    chart = replay_chart_png(replay)
    out = paths.sub("reports")
    replay.table.to_csv(out / f"variant_replay_{context.partition_key}.csv", index=False)
    (out / f"variant_replay_{context.partition_key}.png").write_bytes(chart)
    return dg.MaterializeResult(metadata=_metadata(replay, chart, history.complete))


def _metadata(replay: VariantReplay, chart: bytes, complete: bool) -> dict:
    """The table, the chart, every interval as JSON and each variant's metrics as floats."""
    wide = replay.wide()
    values = {
        f"{variant}/{metric}": wide.loc[variant, metric]
        for variant in wide.index
        for metric in REPLAY_METRICS
    }
    return {
        "experiment": dg.MetadataValue.json(replay.experiment.to_dict()),
        "table": dg.MetadataValue.md(replay.markdown()),
        "chart": png_markdown(chart, "variants on the holdout with 95% intervals"),
        "ci95": dg.MetadataValue.json(replay.intervals()),
        "test_users": replay.users,
        "assigned_test_users": dg.MetadataValue.json(replay.assigned),
        "sampled": not complete,
        "blend_config": dg.MetadataValue.json(
            {"weights": dict(replay.blend.weights), "method": replay.blend.method}
        ),
        "seconds": dg.MetadataValue.json(replay.seconds),
        **floats(values),
    }
