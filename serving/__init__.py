"""The recommendation API for other teams: ``cratedigger serve`` (FastAPI on uvicorn).

Reads never block the pipeline and the pipeline never blocks reads: the server answers from
in-memory snapshots of what the pipeline *published* and switches to a new version atomically
(one reference swap) once it is loaded.

* vectors (:mod:`serving.vectors`): in the embedded profile, the read-only snapshot that
  :class:`embeddings.vector_store.VectorStore` writes beside the Milvus Lite file whenever a
  collection version is published, indexed in process (Spotify's ``voyager`` HNSW for large
  collections, exact search for small ones); with ``MILVUS_URI=http://...`` the Milvus server.
* playlists and co-occurrence neighbours (:mod:`serving.catalog`): the Parquet exports under
  ``<data dir>/exports/``; names, users and play histories: a copy of the golden tables taken
  read-only from DuckDB when the warehouse is quiet (and kept under ``<data dir>/serving/``).
* :mod:`serving.service`: the questions in plain Python (usable in process, no HTTP);
  :mod:`serving.api`: the HTTP endpoints and their schema; :mod:`serving.server`: uvicorn;
  :mod:`serving.client`: a small Python client.

No module here imports dagster.
"""
