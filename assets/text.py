"""Text model assets: weighted top terms, one document per artist, sentence vectors in Milvus."""

from datetime import timedelta

import dagster as dg

from assets.golden import CONTRACTS, OWNER, publish
from embeddings.terms import build_artist_docs, build_artist_terms
from orchestration.resources import Warehouse

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
