"""Collaborative filtering assets: the week's fitted sources, their vectors in Milvus, and the
offline comparison of CF models."""

import json

import dagster as dg
import numpy as np

from assets.metadata import floats, png_markdown, too_small
from embeddings.cf import CF_PRESETS, CFConfig
from embeddings.vectors import CF_ITEMS_COLLECTION, CF_USERS_COLLECTION, write_cf_vectors
from evaluation.metrics import (
    confidence_intervals,
    evaluate_models,
    holdout_split,
    interval_columns,
    metrics_bar_chart,
)
from orchestration.partitions import WEEKS, week_cutoff
from orchestration.resources import (
    ARTIFACTS,
    ArtifactStoreResource,
    VectorStoreResource,
    Warehouse,
    WarehouseEngine,
)
from recommend.errors import TooSmall
from recommend.history import interactions_before, load_history
from recommend.models import SourceModels, fit_sources, sources_version
from recommend.playlist import DEFAULT_SOURCES

OWNER = "team:recsys"
CF_MODEL = dg.AssetKey("cf_model")
CF_ITEMS = dg.AssetKey("cf_item_vectors")
CF_USERS = dg.AssetKey("cf_user_vectors")


CF_SOURCES = ("ease", "item_knn", "als", "bpr", "rp3beta", "user_knn")


ALS_ENGINES = ("implicit", "mllib")


class CFModelConfig(dg.Config):
    """The CF sources the playlists serve (defaults: presets tuned on a HetRec validation split).

    ``sources`` lists the fitted sources (any of :data:`CF_SOURCES`); ``als`` is the factor
    model behind exploration, brand-new tracks, MMR and the Milvus vectors. Each source is
    weighed into the playlists by ``blend_config`` on a validation split (weight 0 = unused).
    """

    sources: list[str] = list(DEFAULT_SOURCES)
    als_factors: int = CF_PRESETS["als"].factors
    als_regularization: float = CF_PRESETS["als"].regularization
    als_iterations: int = CF_PRESETS["als"].iterations
    als_alpha: float = CF_PRESETS["als"].alpha
    item_knn_neighbours: int = CF_PRESETS["item_knn"].neighbours
    ease_lambda: float = CF_PRESETS["ease"].ease_lambda
    # EASE models the N most listened items only (dense N x N fit: 12 bytes x N^2, 1.2 GB at
    # 10,000); the other items come from item-kNN, ALS and the content sources
    ease_max_items: int = CF_PRESETS["ease"].ease_max_items
    # who fits the ALS source: "implicit" (one machine) or "mllib" (Spark MLlib's implicit ALS
    # on SPARK_MASTER, the same model contract); empty: the profile's CRATEDIGGER_CF_ALS
    als_engine: str = ""
    seed: int = 42

    def to_configs(self, default_als_engine: str = "implicit") -> dict[str, CFConfig]:
        """``{source label: CFConfig}`` for :func:`recommend.models.fit_sources`."""
        unknown = sorted(set(self.sources) - set(CF_SOURCES))
        if unknown or not self.sources:
            raise ValueError(
                f"cf_model config 'sources' = {self.sources}: use a non-empty list of "
                f"{', '.join(CF_SOURCES)}"
            )
        tuned = {
            "als": self._als(self.als_engine or default_als_engine),
            "item_knn": CF_PRESETS["item_knn"].with_(neighbours=self.item_knn_neighbours),
            "ease": CF_PRESETS["ease"].with_(
                ease_lambda=self.ease_lambda, ease_max_items=self.ease_max_items
            ),
            "bpr": CF_PRESETS["bpr"],
            "rp3beta": CF_PRESETS["rp3beta"],
            "user_knn": CF_PRESETS["user_knn"],
        }
        return {name: tuned[name].with_(seed=self.seed) for name in self.sources}

    def _als(self, engine: str) -> CFConfig:
        if engine not in ALS_ENGINES:
            raise ValueError(
                f"cf_model config 'als_engine' = {engine!r}: use one of {', '.join(ALS_ENGINES)}"
            )
        if engine == "mllib":  # MLlib scales its L2 penalty by plays: its own preset's value
            return CF_PRESETS["mllib_als"].with_(
                factors=self.als_factors, iterations=self.als_iterations
            )
        return CF_PRESETS["als"].with_(
            factors=self.als_factors,
            regularization=self.als_regularization,
            iterations=self.als_iterations,
            alpha=self.als_alpha,
        )


@dg.asset(
    key=CF_MODEL,
    deps=[["listening_weeks"], ["golden", "listen_events"], ["golden", "listens"]],
    partitions_def=WEEKS,
    io_manager_key=ARTIFACTS,
    group_name="embeddings",
    kinds={"implicit", "numpy"},
    owners=[OWNER],
    description="Per week, the CF sources of the playlists (EASE, item-kNN, ALS by default) "
    "fitted on the plays before the week, stored as one versioned artifact (version = hash of "
    "that history and the config). An already stored version is not refitted.",
    pool="duckdb",
)
def cf_model(
    context: dg.AssetExecutionContext,
    config: CFModelConfig,
    warehouse: Warehouse,
    artifact_store: ArtifactStoreResource,
    engine: WarehouseEngine,
) -> dg.Output:
    configs = config.to_configs(engine.cf_als)
    # everyone's plays as a compact matrix built from codes the warehouse computes (the same
    # matrix and version as from the history frame, without a frame of string ids)
    interactions = interactions_before(warehouse, week_cutoff(context))
    version = sources_version(interactions, configs)
    store = artifact_store.store()
    refit = not store.has(CF_MODEL.path, context.partition_key, version)
    if refit:
        context.log.info(f"fitting {sorted(configs)} on {interactions.shape} (version {version})")
        models = fit_sources(interactions, configs)
    else:
        context.log.info(f"CF sources version {version} already stored; not refitting")
        models = store.load(CF_MODEL.path, context.partition_key, version)
    n_users, n_items = interactions.shape
    nnz = interactions.plays.nnz
    return dg.Output(
        models,
        data_version=dg.DataVersion(version),
        metadata={
            "version": version,
            "refit": refit,
            "sources": dg.MetadataValue.json(models.summary()),
            "config": dg.MetadataValue.json({k: c.to_dict() for k, c in configs.items()}),
            "matrix_users": n_users,
            "matrix_items": n_items,
            "matrix_nonzeros": nnz,
            **floats({"density": nnz / max(1, n_users * n_items)}),
        },
    )


@dg.multi_asset(
    ins={"cf_model": dg.AssetIn(CF_MODEL)},
    specs=[
        dg.AssetSpec(
            CF_USERS,
            deps=[CF_MODEL],
            group_name="embeddings",
            kinds={"milvus"},
            owners=[OWNER],
            description=f"The week's ALS user vectors in Milvus collection `{CF_USERS_COLLECTION}` "
            "(COSINE, FLAT), id = user_id, with the number of items played. Versioned: written "
            "aside, then the alias is switched.",
            skippable=False,
        ),
        dg.AssetSpec(
            CF_ITEMS,
            deps=[CF_MODEL, ["golden", "items"]],
            group_name="embeddings",
            kinds={"milvus"},
            owners=[OWNER],
            description=f"The week's ALS item vectors in Milvus collection `{CF_ITEMS_COLLECTION}` "
            "(COSINE, FLAT), id = item_id, with name and popularity (listeners).",
            skippable=False,
        ),
    ],
    partitions_def=WEEKS,
    pool="milvus",
)
def cf_vectors(
    context: dg.AssetExecutionContext,
    warehouse: Warehouse,
    vector_store: VectorStoreResource,
    cf_model: SourceModels,
):
    """Write the week's factor model's user and item vectors to Milvus (no-op when unchanged)."""
    fitted = cf_model.explorer
    if fitted is None:
        raise ValueError(
            f"cf_model has no {cf_model.exploration_model!r} source; add 'als' to its sources "
            "to publish CF vectors"
        )
    names = warehouse.read("SELECT item_id, name FROM golden.items")
    item_names = dict(zip(names["item_id"], names["name"].fillna(""), strict=True))
    with vector_store.open() as store:
        reports = write_cf_vectors(store, fitted, item_names=item_names)
        described = {name: store.describe(name) for name in reports}
    for key, collection in ((CF_USERS, CF_USERS_COLLECTION), (CF_ITEMS, CF_ITEMS_COLLECTION)):
        report = reports[collection]
        yield dg.MaterializeResult(
            asset_key=key,
            metadata={
                "collection": collection,
                "physical_collection": report.physical_name,
                "version": report.version,
                "week": context.partition_key,
                "rows": report.rows,
                "written": report.written,
                "dim": int(fitted.model.item_factors.shape[1]),
                "uri": vector_store.uri,
                "describe": dg.MetadataValue.json(
                    json.loads(json.dumps(described[collection], default=str))
                ),
                **floats({"seconds": report.seconds, "rows_per_second": report.rows_per_second}),
            },
        )


class CFEvaluationConfig(dg.Config):
    """The holdout: a seeded share of each user's items (users with >= 5 items), of at most
    ``max_users`` users (a seeded sample when there are more; the models are still trained on
    everyone's plays but the sample's test rows)."""

    test_fraction: float = 0.2
    seed: int = 42
    max_users: int = 20_000


@dg.asset(
    ins={"cf_model": dg.AssetIn(CF_MODEL)},
    deps=[["golden", "listen_events"], ["golden", "listens"]],
    partitions_def=WEEKS,
    group_name="evaluation",
    kinds={"implicit", "pandas"},
    owners=[OWNER],
    description="The week's CF sources, as configured in cf_model, beside popularity and BPR on "
    "a per-user holdout of the plays before the week (a seeded sample of at most max_users "
    "users, trained on everyone else's plays too): P/R/NDCG/MAP@10,30, coverage, novelty, 95% "
    "confidence intervals of NDCG@10 and recall@30. Table and bar chart in the metadata.",
    pool="duckdb",
)
def cf_evaluation(
    context: dg.AssetExecutionContext,
    config: CFEvaluationConfig,
    warehouse: Warehouse,
    cf_model: SourceModels,
) -> dg.MaterializeResult:
    models = {"popularity": CF_PRESETS["popularity"], "bpr": CF_PRESETS["bpr"], **cf_model.configs}
    try:
        history = load_history(
            warehouse, week_cutoff(context), max_users=config.max_users, seed=config.seed
        )
        split = holdout_split(history.rows, config.test_fraction, seed=config.seed)
        train = history.after_split(split.train, split.test)
        table = evaluate_models(train, split.test, models)
    except TooSmall as error:
        return too_small(context, error)
    best = str(table["ndcg@10"].idxmax())
    chart = metrics_bar_chart(table, ("ndcg@10", "recall@30", "coverage@10"), "CF models")
    shown = table.drop(columns=interval_columns(table)).reset_index()
    intervals = confidence_intervals(table, ("ndcg@10", "recall@30"))
    return dg.MaterializeResult(
        metadata={
            "best_model": best,
            "served_sources": dg.MetadataValue.json(sorted(cf_model.configs)),
            "table": dg.MetadataValue.md(shown.round(4).to_markdown(index=False)),
            "chart": png_markdown(chart, "CF models"),
            "test_users": int(split.test["user_id"].nunique()),
            "test_rows": len(split.test),
            "sampled": not history.complete,
            "users_with_history": history.users,
            "ci95": dg.MetadataValue.json(intervals),
            "best_ndcg@10_ci95": dg.MetadataValue.json(intervals[best]["ndcg@10"]),
            **floats({f"ndcg@10/{m}": v for m, v in table["ndcg@10"].items()}),
            "best_ndcg@10": float(np.max(table["ndcg@10"])),
        }
    )
