"""Co-occurrence vector assets: the week's skip-gram artist vectors (artifact + Milvus) and how
well each space's similar artists agree with held-out co-listening."""

import dagster as dg
import numpy as np
import pandas as pd

from assets.metadata import floats, png_markdown, too_small
from embeddings.cf import CF_PRESETS, Interactions, fit_cf
from embeddings.cooccurrence import (
    CONTEXTS,
    COOCCURRENCE_COLLECTION,
    CooccurrenceConfig,
    CooccurrenceTrainer,
    CooccurrenceVectors,
)
from embeddings.vectors import VectorSet
from evaluation.metrics import metrics_bar_chart
from evaluation.similar_artists import colistening_truth, similar_artist_agreement
from orchestration.partitions import WEEKS, week_cutoff
from orchestration.resources import (
    ARTIFACTS,
    ArtifactStoreResource,
    Paths,
    VectorStoreResource,
    Warehouse,
)
from recommend.errors import TooSmall
from recommend.models import SourceModels

OWNER = "team:recsys"
COOCCURRENCE = dg.AssetKey("cooccurrence_vectors")


class CooccurrenceVectorsConfig(dg.Config):
    """Contexts (any of sessions, co_mentions, histories) and skip-gram settings; an artist
    needs ``min_count`` co-occurrences for a vector and ``candidate_min_count`` to be
    recommended by the co-occurrence source."""

    contexts: list[str] = list(CONTEXTS)
    dim: int = CooccurrenceConfig.dim
    window: int = CooccurrenceConfig.window
    min_count: int = CooccurrenceConfig.min_count
    candidate_min_count: int = CooccurrenceConfig.candidate_min_count
    epochs: int = CooccurrenceConfig.epochs
    negative: int = CooccurrenceConfig.negative
    ns_exponent: float = CooccurrenceConfig.ns_exponent
    session_gap_minutes: float = CooccurrenceConfig.session_gap_minutes
    seed: int = CooccurrenceConfig.seed

    def to_config(self) -> CooccurrenceConfig:
        try:
            return CooccurrenceConfig(
                contexts=tuple(self.contexts),
                dim=self.dim,
                window=self.window,
                min_count=self.min_count,
                candidate_min_count=self.candidate_min_count,
                epochs=self.epochs,
                negative=self.negative,
                ns_exponent=self.ns_exponent,
                session_gap_minutes=self.session_gap_minutes,
                seed=self.seed,
            )
        except ValueError as error:
            raise dg.Failure(f"cooccurrence_vectors config: {error}") from None


def _examples(vectors: CooccurrenceVectors, names: dict[str, str], k: int = 5) -> dict:
    """Similar artists and "minus the mainstream" for the artist with most co-occurrences."""
    if len(vectors) < k + 2:
        return {}
    space = vectors.space()
    top = vectors.ids[int(np.argmax(vectors.occurrences))]
    similar = space.similar_artists_by_text(top, k=k)["artist_id"]
    niche = space.artist_minus_mainstream(top, k=k, mainstream_top=min(20, len(vectors) // 4))
    return {
        "artist": names.get(top, top),
        "often_played_alongside": [names.get(a, a) for a in similar],
        "minus_the_mainstream": [names.get(a, a) for a in niche["artist_id"]],
    }


@dg.asset(
    key=COOCCURRENCE,
    deps=[
        ["listening_weeks"],
        ["golden", "listen_events"],
        ["golden", "listens"],
        ["golden", "items"],
        ["golden", "artists"],
        ["golden", "tag_assignments"],
    ],
    partitions_def=WEEKS,
    io_manager_key=ARTIFACTS,
    group_name="embeddings",
    kinds={"gensim", "milvus"},
    owners=[OWNER],
    description="Per week, skip-gram (word2vec) artist vectors learned from context before the "
    "week: listening sessions (time-ordered plays split at long gaps), co-mentions (the artists "
    "one user tagged with the same tag) and listening histories. Every artist with at least "
    f"min_count co-occurrences has a vector; stored as a versioned artifact and in Milvus "
    f"collection `{COOCCURRENCE_COLLECTION}` (COSINE). The `cooccurrence` candidate source "
    "('often played alongside X').",
    pool="duckdb",
)
def cooccurrence_vectors(
    context: dg.AssetExecutionContext,
    config: CooccurrenceVectorsConfig,
    warehouse: Warehouse,
    vector_store: VectorStoreResource,
    artifact_store: ArtifactStoreResource,
) -> dg.Output:
    trainer = CooccurrenceTrainer(
        lambda: warehouse.connect(read_only=True), week_cutoff(context), config.to_config()
    )
    store = artifact_store.store()
    reused: list[str] = []

    def stored(version: str) -> CooccurrenceVectors | None:
        if not store.has(COOCCURRENCE.path, context.partition_key, version):
            return None
        context.log.info(f"co-occurrence vectors {version} already stored; not retraining")
        reused.append(version)
        return store.load(COOCCURRENCE.path, context.partition_key, version)

    vectors = trainer.fit(stored)
    refit = not reused
    names = warehouse.read("SELECT artist_id, name FROM golden.artists")
    name_of = dict(zip(names["artist_id"].astype(str), names["name"].fillna(""), strict=True))
    eligible = int((vectors.occurrences >= vectors.config.min_count).sum())
    written, seconds = False, 0.0
    if len(vectors):
        with vector_store.open() as store:
            report = store.write_collection(
                COOCCURRENCE_COLLECTION,
                vectors.ids,
                vectors.matrix,
                {
                    "name": [name_of.get(i, "") for i in vectors.ids],
                    "cooccurrences": [int(c) for c in vectors.occurrences],
                },
                dim=vectors.config.dim,
                metric="COSINE",
                index="FLAT",
                version=vectors.version,
            )
        written, seconds = report.written, report.seconds
    else:
        context.log.warning("no artist co-occurs often enough: no co-occurrence source")
    return dg.Output(
        vectors,
        data_version=dg.DataVersion(vectors.version),
        metadata={
            "version": vectors.version,
            "refit": refit,
            "collection": COOCCURRENCE_COLLECTION,
            "artists": len(vectors),
            "artists_in_corpus": int(vectors.stats.get("artists", 0)),
            "artists_with_min_cooccurrences": eligible,
            "contexts": dg.MetadataValue.json(vectors.stats.get("contexts", {})),
            "config": dg.MetadataValue.json(vectors.config.to_dict()),
            "written": written,
            "examples": dg.MetadataValue.json(_examples(vectors, name_of)),
            **floats(
                {"train_seconds": vectors.stats.get("seconds", 0.0), "milvus_seconds": seconds}
            ),
        },
    )


class SimilarArtistsEvaluationConfig(dg.Config):
    """Held-out users (a hash of the id), truth thresholds and the k of agreement@k."""

    holdout_share: float = 0.2
    max_users: int = 2000
    min_listeners: int = 5
    k: int = 10
    seed: int = 42


def _cf_spaces(
    warehouse: Warehouse, held_out: pd.DataFrame, cutoff: pd.Timestamp, cf_model: SourceModels
) -> dict:
    """ALS vectors and item-kNN neighbours of artists, fitted without the held-out users."""
    listens = warehouse.read(
        "SELECT l.user_id, i.artist_id AS item_id, sum(l.plays) AS plays "
        "FROM golden.listens l JOIN golden.items i USING (item_id) "
        "WHERE (l.first_ts IS NULL OR l.first_ts < ?) "
        "AND l.user_id NOT IN (SELECT unnest(?::VARCHAR[])) GROUP BY ALL ORDER BY 1, 2",
        [cutoff.to_pydatetime(), held_out["user_id"].astype(str).tolist()],
    )
    interactions = Interactions.from_listens(listens)
    configs = cf_model.configs
    als = fit_cf(interactions, configs.get("als", CF_PRESETS["als"]), num_threads=2)
    return {"cf (als)": (als.item_ids, als.model.item_factors)}


@dg.asset(
    ins={
        "cooccurrence_vectors": dg.AssetIn(COOCCURRENCE),
        "text_vectors": dg.AssetIn("text_vectors"),
        "cf_model": dg.AssetIn("cf_model"),
    },
    deps=[
        ["golden", "listens"],
        ["golden", "items"],
        ["golden", "listen_events"],
        ["golden", "tag_assignments"],
    ],
    partitions_def=WEEKS,
    group_name="evaluation",
    kinds={"gensim", "pandas"},
    owners=[OWNER],
    description="Similar artists judged by held-out co-listening: for artists with enough "
    "held-out listeners, the share of each space's 10 nearest artists that those listeners "
    "co-listen with it. Co-occurrence vectors and CF (ALS, cf_model's config) are refitted "
    "without the held-out users; text vectors use no plays. Table and chart.",
    pool="duckdb",
)
def similar_artists_evaluation(
    context: dg.AssetExecutionContext,
    config: SimilarArtistsEvaluationConfig,
    warehouse: Warehouse,
    paths: Paths,
    cooccurrence_vectors: CooccurrenceVectors,
    text_vectors: VectorSet,
    cf_model: SourceModels,
) -> dg.MaterializeResult:
    cutoff = week_cutoff(context)
    with warehouse.connect(read_only=True) as con:
        truth = colistening_truth(
            con,
            cutoff,
            holdout_share=config.holdout_share,
            seed=config.seed,
            max_users=config.max_users,
            min_listeners=config.min_listeners,
        )
    try:
        if len(truth.queries) < 5:
            raise TooSmall(
                f"{len(truth.queries)} artists have {config.min_listeners}+ held-out listeners "
                "(need 5)"
            )
        spaces = _spaces(warehouse, truth, cutoff, cooccurrence_vectors, text_vectors, cf_model)
    except TooSmall as error:
        return too_small(context, error)
    table = similar_artist_agreement(spaces, truth, k=config.k)
    metric = f"precision@{config.k}"
    chart = metrics_bar_chart(table, (metric, f"recall@{config.k}", "coverage"), "similar artists")
    out = paths.sub("reports")
    table.to_csv(out / f"similar_artists_evaluation_{context.partition_key}.csv")
    return dg.MaterializeResult(
        metadata={
            "table": dg.MetadataValue.md(table.round(4).reset_index().to_markdown(index=False)),
            "chart": png_markdown(chart, "similar artists vs held-out co-listening"),
            "query_artists": len(truth.queries),
            "held_out_users": len(truth.held_out_users),
            "best_space": str(table[metric].idxmax()),
            **floats({f"{metric}/{name}": v for name, v in table[metric].items()}),
        }
    )


def _spaces(warehouse, truth, cutoff, cooccurrence_vectors, text_vectors, cf_model) -> dict:
    """Every space to compare, fitted without the held-out users where it learns from plays."""
    spaces: dict = {}
    trainer = CooccurrenceTrainer.behind(
        cooccurrence_vectors, lambda: warehouse.connect(read_only=True), cutoff
    )
    if trainer is not None:
        table = trainer.without_users(truth.held_out_users).fit().as_table()
        if table is not None:
            spaces["cooccurrence"] = table
    spaces.update(_cf_spaces(warehouse, truth.held_out_users, cutoff, cf_model))
    if text_vectors.as_table() is not None:
        spaces["text"] = text_vectors.as_table()
    return spaces
