"""What ``feast apply`` registers: ``featurestore.definitions`` for one data directory.

The data directory comes from ``CRATEDIGGER_FEAST_DATA_DIR`` (the same variable that
``feature_store.yaml`` substitutes), e.g.::

    export CRATEDIGGER_FEAST_DATA_DIR=$PWD/data/feast
    feast -c feature_repo apply

The sources follow the warehouse engine, as in the pipeline: ``FileSource`` for DuckDB (the
default), ``SparkSource`` on the same Parquet files when ``CRATEDIGGER_ENGINE=spark``, which
goes with the Spark offline store of ``feature_store.spark.yaml`` (``--skip-source-validation``:
else Feast starts Spark and fails on any Parquet file not written yet)::

    export CRATEDIGGER_ENGINE=spark
    feast -c feature_repo -f feature_repo/feature_store.spark.yaml apply --skip-source-validation
"""

from __future__ import annotations

from featurestore.definitions import build_definitions
from orchestration.settings import feast_data_dir, warehouse_engine

_definitions = build_definitions(feast_data_dir(), offline_store=warehouse_engine())

user = _definitions.user
artist = _definitions.artist
track = _definitions.track
item = _definitions.item
user_listening_stats_source = _definitions.user_listening_stats_source
artist_stats_source = _definitions.artist_stats_source
user_cf_vector_source = _definitions.user_cf_vector_source
discover_weekly_playlist_source = _definitions.discover_weekly_playlist_source
user_ranking_features_source = _definitions.user_ranking_features_source
item_ranking_features_source = _definitions.item_ranking_features_source
user_listening_stats_fv = _definitions.user_listening_stats_fv
artist_stats_fv = _definitions.artist_stats_fv
user_cf_vector_fv = _definitions.user_cf_vector_fv
discover_weekly_playlist_fv = _definitions.discover_weekly_playlist_fv
user_ranking_features_fv = _definitions.user_ranking_features_fv
item_ranking_features_fv = _definitions.item_ranking_features_fv
weekly_playlist_ranking_v1 = _definitions.weekly_playlist_ranking_v1
playlist_ranker_features_v1 = _definitions.playlist_ranker_features_v1
