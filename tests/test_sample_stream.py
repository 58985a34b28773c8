"""The streamed sample generator: sizes, determinism, chunking, generic format, planted taste."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from quality.rules import validate_bundle
from sources.generic import GenericSource
from sources.sample import GENRES
from sources.sample_stream import (
    END_EPOCH_S,
    TABLES,
    SampleStream,
    StreamSize,
    _id_array,
    main,
    parse_count,
)

EVENTS = 50_000
BLOCK = 100  # 500 users -> 5 blocks of users


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[SampleStream, Path]:
    out = tmp_path_factory.mktemp("stream") / "a"
    stream = SampleStream(EVENTS, seed=5, users_per_block=BLOCK)
    stream.write(out, chunk_rows=7_000)
    return stream, out


def _tables(directory: Path) -> dict[str, pd.DataFrame]:
    return {t: pq.read_table(directory / f"{t}.parquet").to_pandas() for t in TABLES}


def test_size_curve() -> None:
    assert StreamSize.for_events(1_000_000) == StreamSize(1_000_000, 10_000, 2_000)
    size = StreamSize.for_events(100_000_000)
    assert (size.users, size.artists, size.tracks) == (1_000_000, 20_000, 200_000)
    assert StreamSize.for_events(10_000_000).tracks == 63_250
    with pytest.raises(ValueError, match="at least 100"):
        StreamSize.for_events(99)


def test_row_counts_and_row_groups(written: tuple[SampleStream, Path]) -> None:
    stream, out = written
    tables = _tables(out)
    assert len(tables["listens"]) == EVENTS
    assert (len(tables["users"]), len(tables["artists"]), len(tables["tracks"])) == (
        500,
        447,
        4_470,
    )
    assert set(tables["listens"]["user_id"]) == set(tables["users"]["user_id"])
    assert set(tables["listens"]["plays"]) == {1}
    listens = pq.ParquetFile(out / "listens.parquet")
    sizes = [listens.metadata.row_group(i).num_rows for i in range(listens.num_row_groups)]
    assert sizes == [7_000] * 7 + [1_000]
    assert not list(out.glob(".*.tmp"))


def test_same_seed_same_files_and_chunking_changes_nothing(
    written: tuple[SampleStream, Path], tmp_path: Path
) -> None:
    stream, out = written
    SampleStream(EVENTS, seed=5, users_per_block=BLOCK).write(tmp_path / "same", chunk_rows=7_000)
    for table in TABLES:
        name = f"{table}.parquet"
        assert (out / name).read_bytes() == (tmp_path / "same" / name).read_bytes(), table
    SampleStream(EVENTS, seed=5, users_per_block=BLOCK).write(tmp_path / "one", chunk_rows=10**6)
    first, one_chunk = _tables(out), _tables(tmp_path / "one")
    for table in TABLES:
        pd.testing.assert_frame_equal(first[table], one_chunk[table])
    SampleStream(EVENTS, seed=6, users_per_block=BLOCK).write(tmp_path / "other")
    assert not first["listens"].equals(_tables(tmp_path / "other")["listens"])


def test_generic_source_reads_it_and_rules_quarantine_nothing(
    written: tuple[SampleStream, Path],
) -> None:
    stream, out = written
    bundle = GenericSource(out).read()
    assert (bundle.listens_kind, bundle.item_level) == ("events", "track")
    validation = validate_bundle(bundle)
    assert validation.quarantine().empty
    assert validation.reconciliation()["reconciles"].all()
    events = validation.golden("listen_events")
    assert len(events) == EVENTS
    end = pd.Timestamp(END_EPOCH_S, unit="s", tz="UTC")
    assert events["ts"].max() < end
    assert events["ts"].min() >= end - pd.Timedelta(weeks=26)
    weeks = (end - events["ts"]) // pd.Timedelta(weeks=1)
    assert weeks.nunique() == 26
    assert weeks.value_counts().min() > 0.5 * EVENTS / 26  # spread over every week


def test_planted_taste_structure(written: tuple[SampleStream, Path]) -> None:
    stream, out = written
    truth = stream.truth()
    tables = _tables(out)
    listens = tables["listens"]
    user = listens["user_id"].str[1:].astype(int).to_numpy()
    track = listens["item_id"].str[1:].astype(int).to_numpy()
    genre = truth["track_genre"][track]
    in_cluster = (genre == truth["user_cluster"][user]).mean()
    in_second = (genre == truth["user_second_genre"][user]).mean()
    assert in_cluster > 0.65 and in_second > 0.15  # chance is 1/8 each
    # the tracks table says the same genre as the truth
    genre_names = tables["tracks"]["genre"].to_numpy()
    assert (genre_names == truth["genres"][truth["track_genre"]]).all()
    # popularity is Zipf-like: the top artist gets far more plays than the median one
    plays = pd.Series(track // stream.size.tracks_per_artist).value_counts()
    assert plays.iloc[0] > 10 * plays.median()
    artist_genre = pd.Series(truth["artist_genre"][plays.index], index=plays.index)
    top_of_genre = plays.groupby(artist_genre).idxmax().to_numpy()
    assert (truth["artist_popularity_rank"][top_of_genre] == 0).all()
    # tags of an artist come mostly from its genre's vocabulary
    terms = {g.name: set(g.terms) for g in GENRES}
    genre_of = tables["artists"].set_index("artist_id")["genre"]
    assignments = tables["tag_assignments"]
    matches = [
        tag in terms[genre_of[a]]
        for a, tag in zip(assignments["artist_id"], assignments["tag"], strict=True)
    ]
    assert np.mean(matches) > 0.7


def test_events_of_a_user_are_ordered_and_on_distinct_seconds() -> None:
    stream = SampleStream(20_000, seed=1, users_per_block=50)
    users, tracks, ts = stream.block_events(1)
    assert users.min() == 50 and users.max() == 99
    same_user = users[1:] == users[:-1]
    assert (np.diff(users) >= 0).all() and (np.diff(ts)[same_user] > 0).all()
    assert ts.min() > END_EPOCH_S - 26 * 7 * 86_400 and ts.max() < END_EPOCH_S
    assert len(users) == stream.truth()["user_events"][50:100].sum()


def test_id_array_matches_python_formatting() -> None:
    for indices in ([0, 7, 1_234_567, 9_999_999], [12_345_678, 3], []):
        assert _id_array("u{:07d}", indices).to_pylist() == [f"u{i:07d}" for i in indices]


def test_parse_count() -> None:
    assert parse_count("10M") == 10_000_000
    assert parse_count("2.5m") == 2_500_000
    assert parse_count("100k") == 100_000
    assert parse_count("1e6") == 1_000_000
    assert parse_count("1_000") == 1_000
    for bad in ("lots", "1.5", "-3", "10Q"):
        with pytest.raises(ValueError):
            parse_count(bad)


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--events", "2k", "--out", str(tmp_path / "cli"), "--seed", "3"]) == 0
    assert "2,000 listens" in capsys.readouterr().out
    assert pq.ParquetFile(tmp_path / "cli" / "listens.parquet").metadata.num_rows == 2_000
    assert main(["--events", "lots", "--out", str(tmp_path / "x")]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "'lots' is not a count" in error
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "listens.csv").write_text("user_id,item_id,plays\n")
    assert main(["--events", "1k", "--out", str(tmp_path / "csv")]) == 1
    assert "listens.csv exists" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path / "y")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1
