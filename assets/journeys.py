"""Journey assets: the week's transition model (how exploratory listeners move from artist to
artist; the radio's model and the exploration slots' "one step outward") and its offline
evaluation against popularity and nearest neighbours."""

import dagster as dg
import pandas as pd

from assets.metadata import floats, png_markdown, too_small
from evaluation.journeys import MODEL, NEIGHBOURS, POPULARITY, evaluate_journeys
from evaluation.metrics import metrics_bar_chart
from orchestration.partitions import WEEKS, week_cutoff
from orchestration.resources import ARTIFACTS, ArtifactStoreResource, Warehouse
from recommend.errors import TooSmall
from recommend.journeys import (
    JourneyConfig,
    TransitionModel,
    fit_transition_model,
    model_version,
    radio,
    read_journey_inputs,
)

OWNER = "team:recsys"
TRANSITION_MODEL = dg.AssetKey("transition_model")
JOURNEY_EVALUATION = dg.AssetKey("journey_evaluation")
EXAMPLE_RADIO_STEPS = 10
# what the model reads: the discovery order (plays or tag dates), the catalogue and clusters
JOURNEY_TABLES = [
    ["listening_weeks"],
    ["golden", "listens"],
    ["golden", "listen_events"],
    ["golden", "items"],
    ["golden", "artists"],
    ["golden", "tag_assignments"],
]
_DEFAULTS = JourneyConfig()


class TransitionModelConfig(dg.Config):
    """The explorer rule and the smoothing of the transition model (defaults: chosen on a
    validation split of HetRec and of the sample; see recommend.journeys.JourneyConfig)."""

    min_discoveries: int = _DEFAULTS.min_discoveries
    rate_quantile: float = _DEFAULTS.rate_quantile
    breadth_quantile: float = _DEFAULTS.breadth_quantile
    same_step_weight: float = _DEFAULTS.same_step_weight
    min_explorers: int = _DEFAULTS.min_explorers
    min_explorer_share: float = _DEFAULTS.min_explorer_share
    discount: float = _DEFAULTS.discount
    backoff: float = _DEFAULTS.backoff
    cluster_smoothing: float = _DEFAULTS.cluster_smoothing
    max_clusters: int = _DEFAULTS.max_clusters
    history_steps: int = _DEFAULTS.history_steps
    history_decay: float = _DEFAULTS.history_decay
    radio_candidates: int = _DEFAULTS.radio_candidates

    def to_config(self) -> JourneyConfig:
        return JourneyConfig(**self.model_dump())


def example_radio(model: TransitionModel, steps: int = EXAMPLE_RADIO_STEPS) -> str:
    """A short station from the most discovered artist, as a markdown table."""
    if len(model.artist_ids) < 2:
        return f"too small for a radio: {len(model.artist_ids)} artist(s)"
    seed = model.examples(1).split(" ", 1)[0]
    rows = [
        {"step": s.position, "artist": f"{s.name} ({s.artist_id})", "why": s.reason}
        for s in radio(model, seed, steps=steps)
    ]
    header = f"Radio from **{model.name(seed)}** ({seed}):\n\n"
    return header + pd.DataFrame(rows).to_markdown(index=False)


def _model_metadata(model: TransitionModel, refit: bool) -> dict:
    summary = model.summary()
    notes = []
    if not model.rule.explorers:
        notes.append(f"too small: {model.rule.describe()}")
    if model.basis == "none":
        notes.append("too small: no play times nor tag dates, so no discovery order")
    if model.rule.explorers and not model.has_transitions:
        notes.append("too small: no artist -> artist move has enough explorers (cluster backoff)")
    return {
        "version": model.version,
        "refit": refit,
        "rule": dg.MetadataValue.text(model.rule.describe()),
        "rule_thresholds": dg.MetadataValue.json(model.rule.to_dict()),
        "discovery_order": model.basis,
        "clusters_from": model.cluster_basis,
        "explorers": len(model.rule.explorers),
        "artists": summary["artists"],
        "clusters": summary["clusters"],
        "artist_transitions": summary["artist_transitions"],
        "artists_with_transitions": summary["artists_with_transitions"],
        "min_support": summary.get("min_support", 0),
        **floats({"coverage": summary["coverage"]}),
        "config": dg.MetadataValue.json(model.config.to_dict()),
        "example_radio": dg.MetadataValue.md(example_radio(model)),
        "notes": dg.MetadataValue.text("; ".join(notes) or "ok"),
    }


@dg.asset(
    key=TRANSITION_MODEL,
    deps=JOURNEY_TABLES,
    partitions_def=WEEKS,
    io_manager_key=ARTIFACTS,
    group_name="recommend",
    kinds={"scipy", "duckdb"},
    owners=[OWNER],
    description="Per week, artist -> artist transition probabilities learnt from the order in "
    "which exploratory users (many new artists per active week, a broad spread of genres or "
    "tags) discovered artists before the week (first plays; first tag dates on HetRec), backed "
    "off to cluster -> cluster moves where data is thin. Feeds `cratedigger radio`, the API's "
    "radio and the exploration slots. Versioned artifact (hash of inputs and config).",
    pool="duckdb",
)
def transition_model(
    context: dg.AssetExecutionContext,
    config: TransitionModelConfig,
    warehouse: Warehouse,
    artifact_store: ArtifactStoreResource,
) -> dg.Output:
    journey_config = config.to_config()
    inputs = read_journey_inputs(warehouse, week_cutoff(context), journey_config.max_clusters)
    version = model_version(inputs, journey_config)
    store = artifact_store.store()
    refit = not store.has(TRANSITION_MODEL.path, context.partition_key, version)
    if refit:
        model = fit_transition_model(inputs, journey_config)
    else:
        context.log.info(f"transition model version {version} already stored; not refitting")
        model = store.load(TRANSITION_MODEL.path, context.partition_key, version)
    context.log.info(model.rule.describe())
    return dg.Output(
        model,
        data_version=dg.DataVersion(model.version),
        metadata=_model_metadata(model, refit),
    )


class JourneyEvaluationConfig(dg.Config):
    """The held-out explorers: a seeded share of the explorers (by a hash of their ids)."""

    test_fraction: float = 0.3
    seed: int = 42
    k: int = 10


@dg.asset(
    key=JOURNEY_EVALUATION,
    ins={"transition_model": dg.AssetIn(TRANSITION_MODEL)},
    deps=JOURNEY_TABLES,
    partitions_def=WEEKS,
    group_name="evaluation",
    kinds={"scipy", "pandas"},
    owners=[OWNER],
    description="Does the week's transition model (its config, fitted on the training users "
    "only) predict the next new artist of held-out exploratory users? Hit rate, recall and "
    "MRR@10 beside popularity and item-item nearest neighbours (co-listening), table and chart.",
    pool="duckdb",
)
def journey_evaluation(
    context: dg.AssetExecutionContext,
    config: JourneyEvaluationConfig,
    warehouse: Warehouse,
    transition_model: TransitionModel,
) -> dg.MaterializeResult:
    cutoff = week_cutoff(context)
    journey_config = transition_model.config
    try:
        inputs = read_journey_inputs(warehouse, cutoff, journey_config.max_clusters)
        colistening = _colistening(warehouse, cutoff)
        result = evaluate_journeys(
            inputs,
            journey_config,
            colistening=colistening,
            test_fraction=config.test_fraction,
            seed=config.seed,
            k=config.k,
        )
    except TooSmall as error:
        return too_small(context, error)
    table = result.table
    hit = f"hit_rate@{config.k}"
    chart = metrics_bar_chart(table, (hit, f"mrr@{config.k}"), "next new artist of explorers")
    return dg.MaterializeResult(
        metadata={
            "evaluated": True,
            "table": dg.MetadataValue.md(result.markdown()),
            "chart": png_markdown(chart, "next new artist of held-out explorers"),
            "rule": dg.MetadataValue.text(result.rule.describe()),
            "train_explorers": result.train_explorers,
            "test_explorers": result.test_explorers,
            "predictions": int(table["predictions"].iloc[0]),
            "model_version": transition_model.version,
            **floats({f"{hit}/{m}": v for m, v in table[hit].items()}),
            **floats(
                {
                    "model_minus_best_baseline": table.loc[MODEL, hit]
                    - max(table.loc[POPULARITY, hit], table.loc[NEIGHBOURS, hit])
                }
            ),
        }
    )


def _colistening(warehouse: Warehouse, cutoff: pd.Timestamp) -> pd.DataFrame:
    """Distinct ``user_id, artist_id`` played before ``cutoff`` (all plays without times)."""
    return warehouse.read(
        "SELECT DISTINCT l.user_id, i.artist_id FROM golden.listens l "
        "JOIN golden.items i USING (item_id) WHERE l.first_ts IS NULL OR l.first_ts < ? "
        "ORDER BY 1, 2",
        [cutoff.to_pydatetime()],
    )
