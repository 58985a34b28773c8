"""cratedigger's Feast feature store: feature tables, their schemas, definitions and client.

Pure code (no dagster, no environment reads); one concern per module:

``schemas``      the columns of every feature view, defined once (Parquet and Feast fields)
``tables``       the feature tables computed from the golden DuckDB tables, ``export_parquet``
``definitions``  the Feast entities, sources, feature views and services (``build_definitions``)
``config``       the ``feature_store.yaml`` content per profile and offline store (DuckDB or
                 Spark over the same Parquet: ``build_config``)
``client``       ``FeatureStoreClient``: apply, materialise, online / historical reads, serve
``online``       Feast online responses as DataFrames with a status per row
``server``       the ``feast serve`` process manager (``FeatureServer``, ``free_port``)
``errors``       ``FeatureStoreError``, ``NotAppliedError``, ``NotMaterializedError``
"""
