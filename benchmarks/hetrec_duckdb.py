"""A DuckDB file with HetRec's golden tables as the co-occurrence trainer reads them (listens,
items, tag assignments with their dates), for benchmarks that run without the pipeline.

    from benchmarks.hetrec_duckdb import hetrec_trainer
    trainer = hetrec_trainer(HETREC, Path("/tmp/hetrec.duckdb"))
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import duckdb
import pandas as pd

from embeddings.cooccurrence import CooccurrenceConfig, CooccurrenceTrainer


def build_hetrec_duckdb(directory: Path, path: Path) -> Path:
    """Write golden.listens / listen_events (no times) / items / tag_assignments to ``path``."""
    plays = pd.read_csv(directory / "user_artists.dat", sep="\t", dtype=str)
    listens = pd.DataFrame(
        {
            "user_id": plays["userID"],
            "item_id": plays["artistID"],
            "plays": plays["weight"].astype(float),
            "first_ts": pd.NaT,
            "last_ts": pd.NaT,
        }
    )
    tagged = pd.read_csv(directory / "user_taggedartists.dat", sep="\t", dtype=str)
    tags = pd.read_csv(directory / "tags.dat", sep="\t", dtype=str, encoding="iso-8859-1")
    assignments = tagged.merge(tags, on="tagID")
    assignments = pd.DataFrame(
        {
            "user_id": assignments["userID"],
            "artist_id": assignments["artistID"],
            "tag": assignments["tagValue"],
            "ts": pd.to_datetime(
                assignments["year"] + "-" + assignments["month"] + "-" + assignments["day"],
                errors="coerce",
            ),
        }
    )
    artists = sorted(set(listens["item_id"]) | set(assignments["artist_id"]))
    items = pd.DataFrame({"item_id": artists, "artist_id": artists})
    path.unlink(missing_ok=True)
    con = duckdb.connect(str(path))
    try:
        con.execute("CREATE SCHEMA golden")
        for name, frame in (("listens", listens), ("items", items), ("tags", assignments)):
            con.register(f"_{name}", frame)
        con.execute("CREATE TABLE golden.listens AS SELECT * FROM _listens")
        con.execute(
            "CREATE TABLE golden.listen_events AS SELECT user_id, item_id, plays, "
            "first_ts AS ts FROM _listens"
        )
        con.execute("CREATE TABLE golden.items AS SELECT * FROM _items")
        con.execute("CREATE TABLE golden.tag_assignments AS SELECT * FROM _tags")
    finally:
        con.close()
    return path


def hetrec_trainer(
    directory: Path, path: Path, config: CooccurrenceConfig | None = None
) -> CooccurrenceTrainer:
    """A co-occurrence trainer over HetRec in a DuckDB file built at ``path``."""
    build_hetrec_duckdb(directory, path)

    @contextmanager
    def connect():
        con = duckdb.connect(str(path), read_only=True)
        try:
            yield con
        finally:
            con.close()

    return CooccurrenceTrainer(connect, None, config or CooccurrenceConfig())
