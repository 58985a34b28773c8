"""Row-level rules: every raw row ends golden or quarantined with a reason; counts reconcile."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from quality.rules import (
    QUARANTINE_COLUMNS,
    TableResult,
    aggregate_listen_events,
    build_items,
    parse_timestamps,
    reconcile,
    validate_artists,
    validate_bundle,
    validate_friends,
    validate_listens,
    validate_tracks,
    validate_users,
)
from sources import GenericSource, HetrecSource, SampleSource

FIXTURES = Path(__file__).parent / "fixtures"
HETREC_REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "hetrec2011-lastfm-2k"


def _raw(rows: list[dict[str, object]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, dtype=object)
    frame["_source_file"] = "test.csv"
    frame["_source_line"] = np.arange(2, len(frame) + 2)
    return frame


def _reasons(result: TableResult) -> dict[str, str]:
    return dict(zip(result.quarantine["record_key"], result.quarantine["reason"], strict=True))


def _users(*ids: str) -> pd.DataFrame:
    return pd.DataFrame({"user_id": list(ids)}, dtype=object)


def _items(*ids: str) -> pd.DataFrame:
    artists = pd.DataFrame({"artist_id": list(ids), "name": list(ids), "genre": None, "url": None})
    return build_items(artists, None, "artist")


def test_reconcile_helper() -> None:
    assert reconcile(10, 7, 3)
    assert not reconcile(10, 7, 2)


def test_plays_non_numeric_zero_negative_fraction() -> None:
    raw = _raw(
        [
            {"user_id": "u1", "item_id": "a1", "plays": "3", "ts": None},
            {"user_id": "u1", "item_id": "a2", "plays": "abc", "ts": None},
            {"user_id": "u2", "item_id": "a1", "plays": "0", "ts": None},
            {"user_id": "u2", "item_id": "a2", "plays": "-4", "ts": None},
            {"user_id": "u3", "item_id": "a1", "plays": "2.5", "ts": None},
            {"user_id": "u3", "item_id": "a2", "plays": "", "ts": None},
        ]
    )
    result = validate_listens(raw, _users("u1", "u2", "u3"), _items("a1", "a2"), "aggregated")
    assert result.reconciles and len(result.golden) == 1
    reasons = _reasons(result)
    assert reasons["u1|a2"] == "plays_not_numeric: plays='abc'"
    assert reasons["u2|a1"] == "plays_not_positive: plays=0"
    assert reasons["u2|a2"] == "plays_not_positive: plays=-4"
    assert reasons["u3|a1"].startswith("plays_not_integer")
    assert reasons["u3|a2"].startswith("plays_not_numeric")
    assert result.golden["plays"].dtype == np.int64
    assert str(result.golden["first_ts"].dtype) == "datetime64[us, UTC]"
    assert result.golden["first_ts"].isna().all()


def test_null_and_empty_ids_and_undecodable_ids() -> None:
    raw = _raw(
        [
            {"user_id": None, "item_id": "a1", "plays": "1", "ts": None},
            {"user_id": "  ", "item_id": "a1", "plays": "1", "ts": None},
            {"user_id": "u1", "item_id": "", "plays": "1", "ts": None},
            {"user_id": "u\ufffd", "item_id": "a1", "plays": "1", "ts": None},
        ]
    )
    result = validate_listens(raw, _users("u1"), _items("a1"), "aggregated")
    assert result.golden.empty and result.reconciles
    reasons = result.quarantine["reason"].tolist()
    assert reasons[:3] == [
        "id_missing: user_id is empty",
        "id_missing: user_id is empty",
        "id_missing: item_id is empty",
    ]
    assert reasons[3].startswith("id_undecodable: user_id=")


def test_duplicates_keep_first_and_point_at_it() -> None:
    users = validate_users(_raw([{"user_id": "u1"}, {"user_id": "u2"}, {"user_id": "u1"}]))
    assert users.golden["user_id"].tolist() == ["u1", "u2"]
    assert users.quarantine["reason"].tolist() == ["duplicate_key: user_id='u1' repeats line 2"]
    assert users.quarantine["source_line"].tolist() == [4]
    raw = _raw(
        [
            {"user_id": "u1", "item_id": "a1", "plays": "abc", "ts": None},  # bad first row
            {"user_id": "u1", "item_id": "a1", "plays": "5", "ts": None},
            {"user_id": "u1", "item_id": "a1", "plays": "7", "ts": None},
        ]
    )
    result = validate_listens(raw, _users("u1"), _items("a1"), "aggregated")
    # the quarantined first row does not take the key: the first valid row is kept
    assert result.golden["plays"].tolist() == [5]
    assert result.quarantine["reason"].tolist()[1] == (
        "duplicate_key: user_id='u1', item_id='a1' repeats line 3"
    )


def test_unknown_users_and_items() -> None:
    raw = _raw(
        [
            {"user_id": "u1", "item_id": "a1", "plays": "1", "ts": None},
            {"user_id": "ghost", "item_id": "a1", "plays": "1", "ts": None},
            {"user_id": "u1", "item_id": "a404", "plays": "1", "ts": None},
        ]
    )
    result = validate_listens(raw, _users("u1"), _items("a1"), "aggregated")
    reasons = _reasons(result)
    assert reasons["ghost|a1"] == "unknown_user: user_id='ghost' is not in users"
    assert reasons["u1|a404"] == "unknown_item: item_id='a404' is not in artist items"


def test_quarantine_rows_carry_raw_row_and_lineage() -> None:
    raw = _raw([{"user_id": "u1", "item_id": "a1", "plays": "x", "ts": None}])
    quarantine = validate_listens(raw, _users("u1"), _items("a1")).quarantine
    assert list(quarantine.columns) == QUARANTINE_COLUMNS
    row = quarantine.iloc[0]
    assert (row["table_name"], row["source_file"], row["source_line"]) == ("listens", "test.csv", 2)
    assert json.loads(row["raw_row"]) == {
        "user_id": "u1", "item_id": "a1", "plays": "x", "ts": None,
        "_source_file": "test.csv", "_source_line": 2,
    }  # fmt: skip


def test_events_duplicates_timestamps_and_aggregation() -> None:
    raw = _raw(
        [
            {"user_id": "u1", "item_id": "t1", "plays": "1", "ts": "2026-11-01T10:00:00Z"},
            {"user_id": "u1", "item_id": "t1", "plays": "1", "ts": "2026-11-03T10:00:00Z"},
            {"user_id": "u1", "item_id": "t1", "plays": "1", "ts": "2026-11-01T10:00:00Z"},
            {"user_id": "u1", "item_id": "t1", "plays": "1", "ts": "not a date"},
            {"user_id": "u1", "item_id": "t1", "plays": "1", "ts": ""},
            {"user_id": "u1", "item_id": "t2", "plays": "2", "ts": "1793527200000"},
        ]
    )
    result = validate_listens(raw, _users("u1"), _items("t1", "t2"), "events")
    assert result.table_name == "listen_events" and result.reconciles
    assert result.quarantine["reason"].tolist() == [
        "duplicate_event: user_id='u1', item_id='t1', plays='1', ts='2026-11-01T10:00:00Z' "
        "repeats line 2",
        "ts_unparseable: ts='not a date'",
        "ts_unparseable: ts is empty",
    ]
    listens = aggregate_listen_events(result.golden)
    first = listens.set_index("item_id").loc["t1"]
    assert first["plays"] == 2
    assert first["first_ts"] == pd.Timestamp("2026-11-01T10:00:00Z")
    assert first["last_ts"] == pd.Timestamp("2026-11-03T10:00:00Z")
    assert listens.set_index("item_id").loc["t2", "first_ts"] == pd.Timestamp(
        1793527200000, unit="ms", tz="UTC"
    )


def test_parse_timestamps_rejects_out_of_range() -> None:
    parsed, bad = parse_timestamps(pd.Series(["1850-01-01", "2026-11-16", None], dtype=object))
    assert bad.tolist() == [True, False, False]
    assert parsed.isna().tolist() == [True, False, True]


def test_tracks_durations_and_unknown_artist() -> None:
    artists = pd.DataFrame({"artist_id": ["a1"], "name": ["A"], "genre": ["rock"], "url": None})
    raw = _raw(
        [
            {"track_id": "t1", "artist_id": "a1", "title": "One", "duration_s": "200.5"},
            {"track_id": "t2", "artist_id": "a1", "title": "Two", "duration_s": "-3"},
            {"track_id": "t3", "artist_id": "a1", "title": "Three", "duration_s": "999999"},
            {"track_id": "t4", "artist_id": "a9", "title": "Four", "duration_s": "100"},
            {"track_id": "t5", "artist_id": "a1", "title": "Five", "duration_s": ""},
        ]
    )
    result = validate_tracks(raw, artists)
    reasons = _reasons(result)
    assert reasons["t2"].startswith("duration_invalid: duration_s='-3'")
    assert reasons["t3"].startswith("duration_invalid")
    assert reasons["t4"] == "unknown_artist: artist_id='a9' is not in artists"
    assert result.golden["track_id"].tolist() == ["t1", "t5"]
    assert result.golden["duration_s"].dtype == np.float64
    items = build_items(artists, result.golden.assign(genre=None), "track")
    assert items["genre"].tolist() == ["rock", "rock"]  # falls back to the artist's genre


def test_friends_unknown_and_self() -> None:
    raw = _raw(
        [
            {"user_id": "u1", "friend_id": "u2"},
            {"user_id": "u1", "friend_id": "u1"},
            {"user_id": "u1", "friend_id": "stranger"},
        ]
    )
    result = validate_friends(raw, _users("u1", "u2"))
    assert result.golden.values.tolist() == [["u1", "u2"]]
    assert result.reason_counts() == {"friend_is_self": 1, "unknown_user": 1}


def test_artist_names_with_replacement_char_are_kept_and_counted() -> None:
    raw = _raw([{"artist_id": "a1", "name": "Caf\ufffd", "genre": "", "url": None}])
    result = validate_artists(raw)
    assert result.golden["name"].tolist() == ["Caf\ufffd"]
    assert result.golden["genre"].tolist() == [None]
    assert result.notes["names_with_replacement_char"] == 1


def test_hetrec_fixture_end_to_end() -> None:
    result = validate_bundle(HetrecSource(FIXTURES / "hetrec_small").read())
    assert result.reconciles
    assert result.tables["listens"].reason_counts() == {
        "plays_not_positive": 2, "plays_not_numeric": 1, "plays_not_integer": 1,
        "duplicate_key": 1, "unknown_item": 1, "id_missing": 1,
    }  # fmt: skip
    assert result.tables["tag_assignments"].reason_counts() == {
        "unknown_artist": 2, "unknown_tag": 1, "ts_unparseable": 1, "duplicate_key": 1,
    }  # fmt: skip
    assert result.golden("tag_assignments")["tag"].tolist() == ["rock", "café"]
    assert result.golden("artists")["name"].tolist()[1] == "Beyoncé"
    assert result.tables["friends"].reason_counts() == {"friend_is_self": 1, "duplicate_key": 1}
    reconciliation = result.reconciliation()
    assert (
        reconciliation["raw_rows"]
        == reconciliation["golden_rows"] + reconciliation["quarantined_rows"]
    ).all()


def test_generic_fixture_end_to_end() -> None:
    result = validate_bundle(GenericSource(FIXTURES / "generic_small").read())
    assert result.reconciles
    artists = result.tables["artists"]
    assert artists.reason_counts() == {"id_undecodable": 1}
    assert artists.notes["names_with_replacement_char"] == 1
    assert result.tables["users"].reason_counts() == {"duplicate_key": 1, "id_missing": 1}
    assert result.tables["tag_assignments"].reason_counts() == {
        "unknown_artist": 1, "id_missing": 1, "duplicate_key": 1,
    }  # fmt: skip
    assert result.tables["artist_text"].reason_counts() == {
        "text_missing": 1, "unknown_artist": 1,
    }  # fmt: skip
    assert len(result.quarantine()) == sum(len(r.quarantine) for r in result.tables.values())


def test_sample_bundle_quarantines_exactly_the_injected_rows(tmp_path: Path) -> None:
    source = SampleSource(
        tmp_path, n_users=60, n_artists=24, tracks_per_artist=2, audio_tracks=0,
        events_per_user=20,
    )  # fmt: skip
    result = validate_bundle(source.read())
    assert result.reconciles
    assert result.tables["listen_events"].reason_counts() == {
        "unknown_user": 3, "plays_not_positive": 2, "duplicate_event": 1,
    }  # fmt: skip
    for name, table in result.tables.items():
        if name != "listen_events":
            assert table.quarantine.empty, name
    listens = result.golden("listens")
    assert listens["plays"].sum() == len(result.golden("listen_events"))
    assert result.golden("items")["level"].eq("track").all()


@pytest.mark.slow
def test_hetrec_real_validation() -> None:
    if not HETREC_REAL.is_dir():
        pytest.skip(f"HetRec Last.fm 2K not found at {HETREC_REAL}")
    result = validate_bundle(HetrecSource(HETREC_REAL).read())
    assert result.reconciles
    assert len(result.golden("users")) == 1892
    assert len(result.golden("artists")) == 17632
    assert len(result.golden("listens")) == 92834
    tagged = result.tables["tag_assignments"]
    unknown = tagged.quarantine[tagged.quarantine["reason"].str.startswith("unknown_artist")]
    artist_ids = unknown["raw_row"].map(lambda row: json.loads(row)["artist_id"])
    assert artist_ids.nunique() == 390
    assert len(unknown) == len(tagged.quarantine)


def test_rules_accept_arrow_backed_raw_frames() -> None:
    plain = validate_bundle(GenericSource(FIXTURES / "generic_small").read())
    arrow = validate_bundle(GenericSource(FIXTURES / "generic_small", arrow_strings=True).read())
    for name, result in plain.tables.items():
        other = arrow.tables[name]
        pd.testing.assert_frame_equal(result.golden, other.golden)
        assert result.quarantine["reason"].tolist() == other.quarantine["reason"].tolist()
        assert result.quarantine["source_line"].tolist() == other.quarantine["source_line"].tolist()


def test_epoch_seconds_milliseconds_and_microseconds_land_on_the_same_day():
    """Issue 12 item 3: epoch seconds were read as milliseconds (every play in 1970)."""
    from quality.rules import parse_timestamps

    text = pd.Series(["1795000000", "1795000000000", "1795000000000000", "2026-11-18T08:26:40Z"])
    parsed, bad = parse_timestamps(text)
    assert not bad.any()
    assert parsed.dt.date.astype(str).tolist() == ["2026-11-18"] * 4


def test_over_long_ids_and_names_are_quarantined_with_a_short_reason() -> None:
    """Issue 12 item 5: limits of the stores downstream belong in the row rules."""
    raw = _raw(
        [
            {"artist_id": "a1", "name": "Fine", "genre": "", "url": None},
            {"artist_id": "x" * 100_000, "name": "Long id", "genre": "", "url": None},
            {"artist_id": "a3", "name": "n" * 1_000_000, "genre": "", "url": None},
        ]
    )
    result = validate_artists(raw)
    assert result.golden["artist_id"].tolist() == ["a1"]
    assert result.reason_counts() == {"id_too_long": 1, "text_too_long": 1}
    reasons = result.quarantine["reason"].tolist()
    assert all(len(reason) < 200 for reason in reasons), reasons
