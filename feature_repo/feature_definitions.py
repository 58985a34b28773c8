"""What ``feast apply`` registers: the definitions of ``feature_views.py`` for one data directory.

The data directory comes from ``CRATEDIGGER_FEAST_DATA_DIR`` (the same variable that
``feature_store.yaml`` substitutes), e.g.::

    export CRATEDIGGER_FEAST_DATA_DIR=$PWD/data/feast
    feast -c feature_repo apply
"""

from __future__ import annotations

import os

from feature_views import build_definitions

DATA_DIR_ENV = "CRATEDIGGER_FEAST_DATA_DIR"

if not os.environ.get(DATA_DIR_ENV):
    raise RuntimeError(
        f"{DATA_DIR_ENV} is not set: export it to the directory holding the feature Parquet "
        f"files and the registry (e.g. `export {DATA_DIR_ENV}=$PWD/data/feast`), then rerun "
        f"`feast -c feature_repo apply`"
    )

_definitions = build_definitions(os.environ[DATA_DIR_ENV])

user = _definitions.user
artist = _definitions.artist
track = _definitions.track
user_listening_stats_source = _definitions.user_listening_stats_source
artist_stats_source = _definitions.artist_stats_source
user_cf_vector_source = _definitions.user_cf_vector_source
discover_weekly_playlist_source = _definitions.discover_weekly_playlist_source
user_listening_stats_fv = _definitions.user_listening_stats_fv
artist_stats_fv = _definitions.artist_stats_fv
user_cf_vector_fv = _definitions.user_cf_vector_fv
discover_weekly_playlist_fv = _definitions.discover_weekly_playlist_fv
weekly_playlist_ranking_v1 = _definitions.weekly_playlist_ranking_v1
