"""Source readers: raw text tables with lineage, and errors that name the file, column and fix."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile

from sources import GenericSource, HetrecSource, SampleSource, SourceError, make_source
from sources.base import LINEAGE_COLUMNS, RAW_COLUMNS

FIXTURES = Path(__file__).parent / "fixtures"
HETREC_REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "hetrec2011-lastfm-2k"
SMALL_SAMPLE = dict(
    n_users=80, n_artists=32, tracks_per_artist=2, audio_tracks=8, audio_seconds=1.0,
    events_per_user=30,
)  # fmt: skip


def _copy(name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    shutil.copytree(FIXTURES / name, target)
    return target


# ---------------------------------------------------------------- contract and lineage


def test_hetrec_fixture_has_contract_columns_lineage_and_latin1_fallback() -> None:
    bundle = HetrecSource(FIXTURES / "hetrec_small").read()
    for name, frame in bundle.tables.items():
        assert list(frame.columns) == RAW_COLUMNS[name] + LINEAGE_COLUMNS, name
    artists = bundle.table("artists")
    assert artists["_source_line"].tolist() == [2, 3, 4, 5, 6, 7]
    assert artists["_source_file"].iloc[0].endswith("artists.dat")
    # line 3 holds a latin-1 byte: decoded by the fallback, never crashing, and counted
    assert artists.loc[1, "name"] == "Beyoncé"
    assert "1 line(s) not valid UTF-8" in bundle.notes["artists.dat decoding"]
    assert "lines 3" in bundle.notes["artists.dat decoding"]
    assert bundle.table("tags")["tag"].tolist() == ["rock", "café", ""]
    # quotes are data in .dat files
    assert artists.loc[5, "name"] == '"Quoted" Band'
    assert (bundle.item_level, bundle.listens_kind) == ("artist", "aggregated")


def test_hetrec_users_are_derived_and_tag_dates_built() -> None:
    bundle = HetrecSource(FIXTURES / "hetrec_small").read()
    assert bundle.table("users")["user_id"].tolist() == ["2", "3", "4", "5", "6"]
    assert "derived" in bundle.notes["users"]
    ts = bundle.table("tag_assignments")["ts"].tolist()
    assert ts[0] == "2009-04-01" and ts[4] == "2009-02-31"  # the bad date stays for validation


def test_hetrec_optional_file_absent_is_noted(tmp_path: Path) -> None:
    path = _copy("hetrec_small", tmp_path)
    (path / "user_friends.dat").unlink()
    bundle = HetrecSource(path).read()
    assert "friends" not in bundle.tables
    assert bundle.table("friends").empty
    assert "absent" in bundle.notes["user_friends.dat"]


def test_generic_fixture_reads_text_and_derives_tags() -> None:
    bundle = GenericSource(FIXTURES / "generic_small").read()
    assert bundle.listens_kind == "aggregated" and bundle.item_level == "artist"
    assert bundle.table("listens")["plays"].tolist()[:3] == ["3", "abc", "0"]
    assert bundle.table("tags")["tag_id"].tolist() == ["rock", "jazz"]
    # quoted comma stays one value
    assert "Comma, The" in bundle.table("artists")["name"].tolist()
    # undecodable bytes become U+FFFD and are noted
    assert "\ufffd" in bundle.table("artists").loc[1, "name"]
    assert "not valid UTF-8" in bundle.notes["artists.csv"]


def test_generic_events_and_track_level() -> None:
    bundle = GenericSource(FIXTURES / "generic_events").read()
    assert bundle.listens_kind == "events"
    assert bundle.item_level == "track"
    assert "derived" in bundle.notes["users"]


def test_generic_reads_parquet(tmp_path: Path) -> None:
    pd.DataFrame({"user_id": ["u1", "u2"], "item_id": ["a1", "a1"], "plays": [3, 4]}).to_parquet(
        tmp_path / "listens.parquet"
    )
    pd.DataFrame({"artist_id": ["a1"], "name": ["Alpha"], "genre": [None]}).to_parquet(
        tmp_path / "artists.parquet"
    )
    bundle = GenericSource(tmp_path).read()
    assert bundle.table("listens")["plays"].tolist() == ["3", "4"]
    assert bundle.table("artists")["genre"].tolist() == [None]
    assert bundle.table("listens")["_source_line"].tolist() == [1, 2]


def test_make_source_kinds() -> None:
    assert isinstance(make_source("hetrec", FIXTURES / "hetrec_small"), HetrecSource)
    assert isinstance(make_source("generic", FIXTURES / "generic_small"), GenericSource)
    assert isinstance(make_source("sample", "/tmp/x", n_users=10), SampleSource)
    with pytest.raises(SourceError, match="valid kinds are generic, hetrec, sample"):
        make_source("spotify", "/tmp/x")


# ---------------------------------------------------------------- errors


def test_missing_directory_names_the_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    for source in (HetrecSource(missing), GenericSource(missing)):
        with pytest.raises(SourceError, match="directory not found") as info:
            source.read()
        assert str(missing) in str(info.value)


def test_missing_required_file(tmp_path: Path) -> None:
    path = _copy("hetrec_small", tmp_path)
    (path / "user_artists.dat").unlink()
    with pytest.raises(SourceError, match="user_artists.dat: required file not found"):
        HetrecSource(path).read()
    generic = _copy("generic_small", tmp_path)
    (generic / "artists.csv").unlink()
    with pytest.raises(SourceError, match=r"artists.csv: required file not found.*artist_id"):
        GenericSource(generic).read()


@pytest.mark.parametrize("content", [b"", b"\r\n  \n"])
def test_empty_file_names_file_columns_and_fix(tmp_path: Path, content: bytes) -> None:
    path = _copy("hetrec_small", tmp_path)
    (path / "user_artists.dat").write_bytes(content)
    with pytest.raises(SourceError) as info:
        HetrecSource(path).read()
    message = str(info.value)
    assert "user_artists.dat: file is empty" in message
    assert "userID, artistID, weight" in message  # the columns expected
    assert "Re-export" in message  # the fix


def test_missing_column_names_file_column_and_fix(tmp_path: Path) -> None:
    path = _copy("generic_small", tmp_path)
    (path / "listens.csv").write_text("user_id,item_id,count\nu1,a1,3\n")
    with pytest.raises(SourceError) as info:
        GenericSource(path).read()
    message = str(info.value)
    assert "listens.csv" in message
    assert "missing required column(s) 'plays'" in message
    assert "Add or rename" in message


def test_wrong_delimiter_says_found_and_expected(tmp_path: Path) -> None:
    path = _copy("hetrec_small", tmp_path)
    (path / "user_artists.dat").write_text("userID,artistID,weight\n2,1,100\n")
    with pytest.raises(SourceError) as info:
        HetrecSource(path).read()
    message = str(info.value)
    assert "user_artists.dat: wrong delimiter" in message
    assert "joined by comma" in message and "expects tab-separated" in message
    assert "Re-save the file tab-separated" in message

    generic = _copy("generic_small", tmp_path)
    (generic / "listens.csv").write_text("user_id;item_id;plays\nu1;a1;3\n")
    with pytest.raises(SourceError, match="joined by semicolon.*expects comma-separated"):
        GenericSource(generic).read()


def test_row_with_extra_fields_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = _copy("generic_small", tmp_path)
    (path / "listens.csv").write_text("user_id,item_id,plays\nu1,a1,3\nu2,a1,4,extra\n")
    with pytest.raises(SourceError, match="listens.csv: a row has more fields than the header"):
        GenericSource(path).read()


# ---------------------------------------------------------------- sample generator


def _read_sample(tmp_path: Path, name: str, **params: object) -> tuple[SampleSource, dict]:
    source = SampleSource(tmp_path / name, **{**SMALL_SAMPLE, **params})
    return source, source.read().tables


def test_sample_is_deterministic(tmp_path: Path) -> None:
    _, first = _read_sample(tmp_path, "a")
    _, second = _read_sample(tmp_path, "b")
    _, other_seed = _read_sample(tmp_path, "c", seed=8)
    for name in first:
        left = first[name].drop(columns="_source_file")
        right = second[name].drop(columns="_source_file")
        if name == "audio_files":
            left, right = left.drop(columns="path"), right.drop(columns="path")
        pd.testing.assert_frame_equal(left, right)
    assert not first["listens"].equals(other_seed["listens"])
    wav_a = soundfile.read(
        tmp_path / "a" / "audio" / (first["audio_files"]["track_id"][0] + ".wav")
    )
    wav_b = soundfile.read(
        tmp_path / "b" / "audio" / (first["audio_files"]["track_id"][0] + ".wav")
    )
    np.testing.assert_array_equal(wav_a[0], wav_b[0])


def test_sample_has_planted_taste_structure(tmp_path: Path) -> None:
    source, tables = _read_sample(tmp_path, "s", n_users=200, n_artists=64)
    truth = source.truth()
    cluster = dict(zip(truth["user_ids"], truth["user_cluster"], strict=True))
    track_genre = dict(zip(truth["track_ids"], truth["track_genre"], strict=True))
    listens = tables["listens"]
    listens = listens[listens["user_id"].isin(cluster)]
    in_cluster = listens["user_id"].map(cluster) == listens["item_id"].map(track_genre)
    assert in_cluster.mean() > 0.6  # chance level is 1/8
    # popularity is Zipf-like: the top artist of a genre gets far more plays than the median
    artist_of_track = tables["tracks"].set_index("track_id")["artist_id"]
    plays = listens["item_id"].map(artist_of_track).value_counts()
    assert plays.iloc[0] > 3 * plays.median()
    # tags of an artist come mostly from its genre's vocabulary
    vocab = tables["tags"].set_index("tag_id")["tag"]
    genre_of = tables["artists"].set_index("artist_id")["genre"]
    assignments = tables["tag_assignments"]
    from sources.sample import GENRES

    terms = {g.name: set(g.terms) for g in GENRES}
    matches = [
        vocab[t] in terms[genre_of[a]]
        for a, t in zip(assignments["artist_id"], assignments["tag_id"], strict=True)
    ]
    assert np.mean(matches) > 0.7


def test_sample_audio_and_bad_rows(tmp_path: Path) -> None:
    source, tables = _read_sample(tmp_path, "s")
    audio = tables["audio_files"]
    assert len(audio) == 8
    assert set(source.truth()["audio_genre"]) == set(range(8))  # every genre has a clip
    data, rate = soundfile.read(audio["path"].iloc[0])
    assert rate == 16_000 and data.ndim == 1 and len(data) == 16_000
    listens = tables["listens"]
    assert (listens["user_id"] == "u_unknown").sum() == 3
    assert (listens["plays"] == "0").sum() == 2
    assert listens.drop(columns="_source_line").duplicated().sum() == 1
    clean = SampleSource(tmp_path / "clean", inject_bad_rows=False, **SMALL_SAMPLE).read()
    assert len(clean.table("listens")) == len(listens) - 6


def test_sample_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="n_genres must be between 2 and 8"):
        SampleSource("/tmp/x", n_genres=20)


@pytest.mark.slow
def test_hetrec_real_counts() -> None:
    if not HETREC_REAL.is_dir():
        pytest.skip(f"HetRec Last.fm 2K not found at {HETREC_REAL}")
    bundle = HetrecSource(HETREC_REAL).read()
    assert len(bundle.table("users")) == 1892
    assert len(bundle.table("artists")) == 17632
    assert len(bundle.table("listens")) == 92834
    assert "8 line(s) not valid UTF-8" in bundle.notes["tags.dat decoding"]


@pytest.mark.parametrize("name", ["generic_small", "generic_events"])
def test_arrow_strings_read_the_same_values(name: str) -> None:
    plain = GenericSource(FIXTURES / name).read()
    arrow = GenericSource(FIXTURES / name, arrow_strings=True).read()
    assert plain.tables.keys() == arrow.tables.keys()
    for table, frame in plain.tables.items():
        other = arrow.tables[table]
        assert isinstance(other[RAW_COLUMNS[table][0]].dtype, pd.ArrowDtype), table
        left = frame.astype(object).where(frame.notna(), None)
        right = other.astype(object).where(other.notna(), None)
        assert left.values.tolist() == right.values.tolist(), table


def test_blank_line_is_kept_as_an_empty_row_with_exact_line_numbers(tmp_path: Path) -> None:
    path = _copy("generic_small", tmp_path)
    (path / "listens.csv").write_text("user_id,item_id,plays\nu1,a1,3\n\nu2,a1,4\n")
    listens = GenericSource(path).read().table("listens")
    assert listens["user_id"].tolist() == ["u1", "", "u2"]
    assert listens["_source_line"].tolist() == [2, 3, 4]


def test_a_stray_quote_rejects_the_file_instead_of_losing_rows(tmp_path):
    """Issue 12 item 2: one opening quote closed 100 lines later swallowed 100 rows silently."""
    from sources.base import SourceError
    from sources.generic import read_delimited

    lines = ["user_id,item_id,plays"] + [f"u{i:03d},a{i % 7},3" for i in range(600)]
    lines[11] = 'u010,"a3,3'  # opened on line 12 ...
    lines[111] = 'u110,a5",3'  # ... closed on line 112
    path = tmp_path / "listens.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SourceError, match="line 12 runs to line 112"):
        read_delimited(path, ["user_id", "item_id", "plays"], ",")


def test_source_lines_count_multi_line_quoted_text(tmp_path):
    """Issue 12 item 17: _source_line was off after a field spanning lines."""
    from sources.generic import read_delimited

    path = tmp_path / "artist_text.csv"
    path.write_text('artist_id,text\na1,"two\nlines, with a comma"\na2,plain\n')
    frame, _, _ = read_delimited(path, ["artist_id", "text"], ",")
    assert frame["_source_line"].tolist() == [2, 4]
