"""Collaborative filtering assets: the model, its vectors in Milvus, and the offline evaluation."""

import json

import dagster as dg
import numpy as np
import pandas as pd

from assets.metadata import floats, png_markdown
from embeddings.cf import CF_PRESETS, CFConfig, Interactions, cf_version, fit_cf, load_fitted
from embeddings.vectors import CF_ITEMS_COLLECTION, CF_USERS_COLLECTION, write_cf_vectors
from orchestration.resources import Paths, VectorStoreResource, Warehouse
from recommend.evaluation import evaluate_models, holdout_split, metrics_bar_chart

OWNER = "team:recsys"
CF_ITEMS = dg.AssetKey("cf_item_vectors")
CF_USERS = dg.AssetKey("cf_user_vectors")


class CFModelConfig(dg.Config):
    """Hyper-parameters of the CF model (defaults: the preset tuned on a HetRec validation split)."""

    model: str = CF_PRESETS["als"].model
    factors: int = CF_PRESETS["als"].factors
    regularization: float = CF_PRESETS["als"].regularization
    iterations: int = CF_PRESETS["als"].iterations
    weighting: str = CF_PRESETS["als"].weighting
    alpha: float = CF_PRESETS["als"].alpha
    seed: int = CF_PRESETS["als"].seed

    def to_cf(self) -> CFConfig:
        return CF_PRESETS["als"].with_(**self.model_dump())


def _listens(warehouse: Warehouse) -> pd.DataFrame:
    return warehouse.read("SELECT user_id, item_id, plays FROM golden.listens")


@dg.asset(
    deps=[["golden", "listens"]],
    group_name="embeddings",
    kinds={"implicit", "numpy"},
    owners=[OWNER],
    description="Collaborative filtering on implicit feedback (ALS by default; BPR, item-kNN "
    "and EASE as peers), versioned by a hash of the data and the config. An unchanged version "
    "is not refitted.",
    pool="duckdb",
)
def cf_model(
    context: dg.AssetExecutionContext, config: CFModelConfig, warehouse: Warehouse, paths: Paths
) -> dg.MaterializeResult:
    cf_config = config.to_cf()
    interactions = Interactions.from_listens(_listens(warehouse))
    version = cf_version(interactions, cf_config)
    folder = paths.sub("models", "cf", version)
    refit = not (folder / "meta.json").exists()
    if refit:
        context.log.info(f"fitting {cf_config.model} on {interactions.shape} (version {version})")
        fitted = fit_cf(interactions, cf_config)
        fitted.save(folder)
    else:
        context.log.info(f"CF model version {version} already fitted at {folder}; not refitting")
        fitted = load_fitted(folder)
    (paths.sub("models", "cf") / "CURRENT").write_text(version)
    n_users, n_items = interactions.shape
    nnz = interactions.plays.nnz
    return dg.MaterializeResult(
        metadata={
            "version": version,
            "refit": refit,
            "model": cf_config.model,
            "config": dg.MetadataValue.json(cf_config.to_dict()),
            "path": dg.MetadataValue.path(str(folder)),
            "matrix_users": n_users,
            "matrix_items": n_items,
            "matrix_nonzeros": nnz,
            **floats(
                {
                    "density": nnz / max(1, n_users * n_items),
                    "fit_seconds": fitted.fit_seconds,
                    "training_loss": fitted.loss,
                }
            ),
        }
    )


def current_cf(paths: Paths):
    """The fitted model the last ``cf_model`` materialisation selected."""
    root = paths.sub("models", "cf")
    current = root / "CURRENT"
    if not current.exists():
        raise FileNotFoundError(f"no CF model at {root}; materialise the cf_model asset first")
    return load_fitted(root / current.read_text().strip())


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            CF_USERS,
            deps=["cf_model"],
            group_name="embeddings",
            kinds={"milvus"},
            owners=[OWNER],
            description=f"CF user vectors in Milvus collection `{CF_USERS_COLLECTION}` (COSINE, "
            "FLAT), id = user_id, with the number of items played. Versioned: written aside, "
            "then the alias is switched.",
            skippable=False,
        ),
        dg.AssetSpec(
            CF_ITEMS,
            deps=["cf_model", ["golden", "items"]],
            group_name="embeddings",
            kinds={"milvus"},
            owners=[OWNER],
            description=f"CF item vectors in Milvus collection `{CF_ITEMS_COLLECTION}` (COSINE, "
            "FLAT), id = item_id, with name and popularity (listeners).",
            skippable=False,
        ),
    ],
    pool="milvus",
)
def cf_vectors(
    context: dg.AssetExecutionContext,
    warehouse: Warehouse,
    paths: Paths,
    vector_store: VectorStoreResource,
):
    """Write the current CF model's user and item vectors to Milvus (no-op when unchanged)."""
    fitted = current_cf(paths)
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
    """The holdout: a seeded share of each user's items (users with >= 5 items)."""

    test_fraction: float = 0.2
    seed: int = 42


@dg.asset(
    deps=[["golden", "listens"]],
    group_name="evaluation",
    kinds={"implicit", "pandas"},
    owners=[OWNER],
    description="Popularity vs item-kNN vs ALS vs BPR vs EASE on the same per-user holdout: "
    "P/R/NDCG/MAP@10,30, coverage, novelty. Table and bar chart in the metadata.",
    pool="duckdb",
)
def cf_evaluation(
    context: dg.AssetExecutionContext,
    config: CFEvaluationConfig,
    warehouse: Warehouse,
    paths: Paths,
) -> dg.MaterializeResult:
    split = holdout_split(_listens(warehouse), config.test_fraction, seed=config.seed)
    models = {name: CF_PRESETS[name] for name in ("popularity", "item_knn", "als", "bpr", "ease")}
    table = evaluate_models(split.train, split.test, models)
    best = str(table["ndcg@10"].idxmax())
    chart = metrics_bar_chart(table, ("ndcg@10", "recall@30", "coverage@10"), "CF models")
    out = paths.sub("reports")
    table.to_csv(out / "cf_evaluation.csv")
    (out / "cf_evaluation.png").write_bytes(chart)
    shown = table.reset_index()
    return dg.MaterializeResult(
        metadata={
            "best_model": best,
            "table": dg.MetadataValue.md(shown.round(4).to_markdown(index=False)),
            "chart": png_markdown(chart, "CF models"),
            "test_users": int(split.test["user_id"].nunique()),
            "test_rows": len(split.test),
            **floats({f"ndcg@10/{m}": v for m, v in table["ndcg@10"].items()}),
            "best_ndcg@10": float(np.max(table["ndcg@10"])),
        }
    )
