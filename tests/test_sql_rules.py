"""The row rules as SQL in DuckDB (quality.sql_rules) against the pandas reference (quality.rules),
and the DuckDB landing of generic files (sources.generic.GenericSource.land)."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
import sqlglot

from quality import rules, sql_rules
from sources import GenericSource, HetrecSource, SampleSource, SourceError
from sources.base import LINEAGE_COLUMNS, RAW_COLUMNS, RawBundle
from sources.generic import land_frame

FIXTURES = Path(__file__).parent / "fixtures"
LOADED_AT = pd.Timestamp("2026-11-27T00:00:00Z")


def _values(frame: pd.DataFrame) -> list[list[object]]:
    """Rows as plain Python values, null as None (NaN, NaT and pd.NA alike)."""
    frame = frame.reset_index(drop=True).astype(object)
    return frame.where(frame.notna(), None).values.tolist()


def _land_bundle(con: duckdb.DuckDBPyConnection, bundle: RawBundle) -> None:
    con.execute("CREATE SCHEMA IF NOT EXISTS raw")
    for name in RAW_COLUMNS:
        land_frame(con, bundle.table(name), f"raw.{name}", name, LOADED_AT)


def _quarantine(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple]:
    return con.execute(
        "SELECT record_key, reason, source_line FROM golden.quarantine WHERE table_name = ?",
        [table],
    ).fetchall()


def _assert_same(con: duckdb.DuckDBPyConnection, reference: rules.BundleValidation) -> None:
    """Identical golden rows (in order) and (record_key, reason, line) quarantines per table."""
    for name, result in reference.tables.items():
        golden = con.execute(f"SELECT * FROM golden.{name}").df()
        assert list(golden.columns) == rules.GOLDEN_COLUMNS[name], name
        assert _values(golden) == _values(result.golden), name
        expected = [
            (key, reason, int(line))
            for key, reason, line in zip(
                result.quarantine["record_key"],
                result.quarantine["reason"],
                result.quarantine["source_line"],
                strict=True,
            )
        ]
        assert _quarantine(con, name) == expected, name
    for name in ("items", "listens"):
        golden = con.execute(f"SELECT * FROM golden.{name}").df()
        assert _values(golden) == _values(reference.golden(name)), name


def _sql_bundle(con: duckdb.DuckDBPyConnection, bundle: RawBundle) -> sql_rules.SqlBundleValidation:
    return sql_rules.validate_bundle(
        con, bundle.item_level, bundle.listens_kind, tables=list(bundle.tables)
    )


@pytest.mark.parametrize(
    "make",
    [
        lambda tmp: GenericSource(FIXTURES / "generic_small").read(),
        lambda tmp: GenericSource(FIXTURES / "generic_events").read(),
        lambda tmp: HetrecSource(FIXTURES / "hetrec_small").read(),
        lambda tmp: SampleSource(
            tmp,
            n_users=60,
            n_artists=24,
            tracks_per_artist=2,
            audio_tracks=0,
            events_per_user=20,
        ).read(),  # fmt: skip
    ],
    ids=["generic_small", "generic_events", "hetrec_small", "sample"],
)
def test_sql_rules_match_the_pandas_rules_on_every_fixture(make, tmp_path: Path) -> None:
    bundle = make(tmp_path)
    reference = rules.validate_bundle(bundle)
    with duckdb.connect() as con:
        _land_bundle(con, bundle)
        result = _sql_bundle(con, bundle)
        assert result.reconciles
        for name, table in result.tables.items():
            raw = con.execute(f"SELECT count(*) FROM raw.{sql_rules.ROW_TABLES[name]}").fetchone()
            assert raw[0] == table.golden_rows + table.quarantined_rows, name
            assert table.reason_counts == reference.tables[name].reason_counts(), name
            assert table.notes == reference.tables[name].notes, name
        _assert_same(con, reference)


def _raw(rows: list[dict[str, object]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, dtype=object)
    frame["_source_file"] = "test.csv"
    frame["_source_line"] = np.arange(2, len(frame) + 2)
    return frame


# the malformed inputs of tests/test_rules.py, and a few more, one table each
MALFORMED = {
    "listens": [
        {"user_id": "u1", "item_id": "a1", "plays": "3", "ts": None},
        {"user_id": "u1", "item_id": "a2", "plays": "abc", "ts": None},
        {"user_id": "u2", "item_id": "a1", "plays": "0", "ts": None},
        {"user_id": "u2", "item_id": "a2", "plays": "-4", "ts": None},
        {"user_id": "u3", "item_id": "a1", "plays": "2.5", "ts": None},
        {"user_id": "u3", "item_id": "a2", "plays": "", "ts": None},
        {"user_id": None, "item_id": "a1", "plays": "1", "ts": None},
        {"user_id": "  ", "item_id": "a1", "plays": "1", "ts": None},
        {"user_id": "u1", "item_id": "", "plays": "1", "ts": None},
        {"user_id": "u\ufffd", "item_id": "a1", "plays": "1", "ts": None},
        {"user_id": "ghost", "item_id": "a1", "plays": "1", "ts": None},
        {"user_id": "u1", "item_id": "a404", "plays": "1", "ts": None},
        {"user_id": "u1", "item_id": "a1", "plays": "5", "ts": "2026-11-01"},
        {"user_id": " u2 ", "item_id": "a2", "plays": "1e3", "ts": "1795000000"},
        {"user_id": "u2", "item_id": "a2", "plays": "7", "ts": None},
        {"user_id": "u3", "item_id": "a2", "plays": "99999999999999999", "ts": None},
        {"user_id": "u3", "item_id": "a2", "plays": "+2", "ts": "yesterday"},
        {"user_id": "it's", "item_id": "a1", "plays": "1", "ts": None},
        {"user_id": 'say "hi"', "item_id": "a1", "plays": "1", "ts": None},
        {"user_id": "tab\there", "item_id": "a1", "plays": "1", "ts": None},
        {"user_id": "x" * 600, "item_id": "a1", "plays": "1", "ts": None},
        {"user_id": "u1", "item_id": "a2", "plays": "2", "ts": "1850-01-01"},
        {"user_id": "u2", "item_id": "a1", "plays": "1e300", "ts": None},
    ],
    "listen_events": [
        {"user_id": "u1", "item_id": "a1", "plays": "1", "ts": "2026-11-01T10:00:00Z"},
        {"user_id": "u1", "item_id": "a1", "plays": "1", "ts": "2026-11-03T10:00:00Z"},
        {"user_id": "u1", "item_id": "a1", "plays": "1", "ts": "2026-11-01T10:00:00Z"},
        {"user_id": "u1", "item_id": "a1", "plays": "1", "ts": "not a date"},
        {"user_id": "u1", "item_id": "a1", "plays": "1", "ts": ""},
        {"user_id": "u1", "item_id": "a2", "plays": "2", "ts": "1793527200000"},
        {"user_id": "u1", "item_id": "a2", "plays": "2", "ts": "1793527200000000"},
        {"user_id": "u1", "item_id": "a2", "plays": "1", "ts": "2026-11-01 10:00:00+02:00"},
        {"user_id": "u1", "item_id": "a2", "plays": "1", "ts": "2026-11-01T24:00:00"},
        {"user_id": "u2", "item_id": "a1", "plays": "1", "ts": "2009-02-31"},
    ],
    "tracks": [
        {"track_id": "t1", "artist_id": "a1", "title": "One", "duration_s": "200.5"},
        {"track_id": "t2", "artist_id": "a1", "title": "Two", "duration_s": "-3"},
        {"track_id": "t3", "artist_id": "a1", "title": "Three", "duration_s": "999999"},
        {"track_id": "t4", "artist_id": "a9", "title": "Four", "duration_s": "100"},
        {"track_id": "t5", "artist_id": "a1", "title": "", "duration_s": ""},
        {"track_id": "t1", "artist_id": "a1", "title": "Again", "duration_s": "1"},
        {"track_id": "t6", "artist_id": "a1", "title": "n" * 70_000, "duration_s": "1"},
    ],
    "friends": [
        {"user_id": "u1", "friend_id": "u2"},
        {"user_id": "u1", "friend_id": "u1"},
        {"user_id": "u1", "friend_id": "stranger"},
        {"user_id": "u1", "friend_id": "u2"},
    ],
    "artists": [
        {"artist_id": "a1", "name": "Caf\ufffd", "genre": "", "url": None},
        {"artist_id": "x" * 100_000, "name": "Long id", "genre": "", "url": None},
        {"artist_id": "a3", "name": "n" * 1_000_000, "genre": "", "url": None},
        {"artist_id": "a4", "name": " ", "genre": " rock ", "url": None},
    ],
    "tag_assignments": [
        {"user_id": "u1", "artist_id": "a1", "tag_id": "t1", "ts": "2009-04-01"},
        {"user_id": None, "artist_id": "a1", "tag_id": "t1", "ts": None},
        {"user_id": None, "artist_id": "a1", "tag_id": "t1", "ts": None},
        {"user_id": "u1", "artist_id": "a1", "tag_id": "t1", "ts": "2009-04-02"},
        {"user_id": "u9", "artist_id": "a1", "tag_id": "t1", "ts": None},
        {"user_id": "u1", "artist_id": "a9", "tag_id": "t1", "ts": None},
        {"user_id": "u1", "artist_id": "a1", "tag_id": "t9", "ts": None},
        {"user_id": "u1", "artist_id": "a1", "tag_id": "", "ts": None},
        {"user_id": "u2", "artist_id": "a1", "tag_id": "t2", "ts": "2009-13-01"},
    ],
    "artist_text": [
        {"artist_id": "a1", "text": "loud"},
        {"artist_id": "a1", "text": "again"},
        {"artist_id": "a2", "text": " "},
        {"artist_id": "a7", "text": "who?"},
    ],
    "tags": [
        {"tag_id": "t1", "tag": "rock"},
        {"tag_id": "t2", "tag": ""},
        {"tag_id": "t1", "tag": "again"},
        {"tag_id": "", "tag": "no id"},
    ],
    "users": [{"user_id": "u1"}, {"user_id": "u2"}, {"user_id": "u1"}, {"user_id": "  "}],
}
PARENTS = {
    "users": pd.DataFrame({"user_id": ["u1", "u2", "u3", "it's", 'say "hi"', "tab\there"]}),
    "artists": pd.DataFrame(
        {"artist_id": ["a1", "a2"], "name": ["A", "B"], "genre": ["rock", None], "url": None}
    ),
    "tags": pd.DataFrame({"tag_id": ["t1", "t2"], "tag": ["rock", "jazz"]}),
}


def _reference(table: str, raw: pd.DataFrame) -> rules.TableResult:
    users, artists, tags = PARENTS["users"], PARENTS["artists"], PARENTS["tags"]
    items = rules.build_items(artists, None, "artist")
    return {
        "users": lambda: rules.validate_users(raw),
        "artists": lambda: rules.validate_artists(raw),
        "tracks": lambda: rules.validate_tracks(raw, artists),
        "tags": lambda: rules.validate_tags(raw),
        "listens": lambda: rules.validate_listens(raw, users, items, "aggregated"),
        "listen_events": lambda: rules.validate_listens(raw, users, items, "events"),
        "tag_assignments": lambda: rules.validate_tag_assignments(raw, users, artists, tags),
        "artist_text": lambda: rules.validate_artist_text(raw, artists),
        "friends": lambda: rules.validate_friends(raw, users),
    }[table]()


@pytest.mark.parametrize("table", list(MALFORMED))
def test_sql_rules_match_the_pandas_rules_on_malformed_rows(table: str) -> None:
    raw_table = sql_rules.ROW_TABLES[table]
    raw = _raw(MALFORMED[table])
    reference = _reference(table, raw)
    with duckdb.connect() as con:
        con.execute("CREATE SCHEMA raw; CREATE SCHEMA golden")
        land_frame(con, raw, f"raw.{raw_table}", raw_table, LOADED_AT)
        for name, frame in PARENTS.items():
            con.register("_p", frame)
            con.execute(f"CREATE TABLE golden.{name} AS SELECT * FROM _p")
            con.unregister("_p")
        sql_rules.build_items(con, "artist")
        result = sql_rules.validate_table(con, table)
        assert result.reconciles and result.raw_rows == len(raw)
        golden = con.execute(f"SELECT * FROM golden.{table}").df()
        assert _values(golden) == _values(reference.golden)
        expected = list(
            zip(reference.quarantine["record_key"], reference.quarantine["reason"], strict=True)
        )
        assert [q[:2] for q in _quarantine(con, table)] == expected
        assert result.notes == reference.notes
        row = con.execute("SELECT raw_row FROM golden.quarantine LIMIT 1").fetchone()
        assert set(json.loads(row[0])) == set(RAW_COLUMNS[raw_table] + LINEAGE_COLUMNS)


def test_ids_differing_by_unicode_form_or_zero_width_are_one_user() -> None:
    """Issue 12 item 9: NFC and zero-width characters no longer make two users of one."""
    raw = _raw(
        [{"user_id": "u\u0065\u0301"}, {"user_id": "u\u00e9"}, {"user_id": "u\u200b1"}]
        + [{"user_id": "u1"}, {"user_id": "\ufeffu1\u2060"}, {"user_id": "\u200b"}]
    )
    reference = rules.validate_users(raw)
    assert reference.golden["user_id"].tolist() == ["u\u00e9", "u1"]
    assert reference.reason_counts() == {"duplicate_key": 3, "id_missing": 1}
    with duckdb.connect() as con:
        land_frame(con.execute("CREATE SCHEMA raw") or con, raw, "raw.users", "users", LOADED_AT)
        result = sql_rules.validate_table(con, "users")
        golden = con.execute("SELECT user_id FROM golden.users").fetchall()
        assert [g[0] for g in golden] == ["u\u00e9", "u1"]
        assert result.reason_counts == reference.reason_counts()
        assert [q[:2] for q in _quarantine(con, "users")] == list(
            zip(reference.quarantine["record_key"], reference.quarantine["reason"], strict=True)
        )


def test_every_statement_transpiles_to_spark() -> None:
    for level in ("artist", "track"):
        for table, statements in sql_rules.all_statements(level).items():
            for statement in statements:
                spark = sql_rules.transpile_to_spark(statement)
                assert sqlglot.parse_one(spark, read="spark") is not None, table
                assert "REGEXP_MATCHES" not in spark.upper(), table  # RLIKE on Spark


def test_rerunning_a_table_replaces_its_golden_rows_and_quarantine_slice() -> None:
    raw = _raw(MALFORMED["users"])
    with duckdb.connect() as con:
        land_frame(con.execute("CREATE SCHEMA raw") or con, raw, "raw.users", "users", LOADED_AT)
        first = sql_rules.validate_table(con, "users")
        second = sql_rules.validate_table(con, "users")
        assert (first.golden_rows, first.quarantined_rows) == (2, 2)
        assert (second.golden_rows, second.quarantined_rows) == (2, 2)
        assert con.execute("SELECT count(*) FROM golden.quarantine").fetchone()[0] == 2
        tables = con.execute("SELECT table_name FROM duckdb_tables()").fetchall()
        assert sorted(t[0] for t in tables) == ["quarantine", "users", "users"]  # no helper


# ---------------------------------------------------------------- landing by DuckDB


def _raw_tables(con: duckdb.DuckDBPyConnection) -> dict[str, list[list[object]]]:
    out = {}
    for table in RAW_COLUMNS:
        frame = con.execute(f"SELECT * EXCLUDE (_loaded_at) FROM raw.{table}").df()
        out[table] = _values(frame)
    return out


@pytest.mark.parametrize("name", ["generic_small", "generic_events"])
def test_duckdb_landing_gives_the_raw_tables_of_the_python_reader(name: str) -> None:
    bundle = GenericSource(FIXTURES / name).read()
    with duckdb.connect() as con:
        landing = GenericSource(FIXTURES / name).land(con)
        assert (landing.item_level, landing.listens_kind) == (
            bundle.item_level,
            bundle.listens_kind,
        )
        assert landing.notes == bundle.notes
        assert landing.landed_by["listens"] == "duckdb"
        for table, rows in _raw_tables(con).items():
            cols = RAW_COLUMNS[table] + LINEAGE_COLUMNS
            assert rows == _values(bundle.table(table)[cols]), table
        assert landing.rows == {t: len(f) for t, f in bundle.tables.items()}
        # and the rules over what DuckDB landed give what the pandas rules give
        result = _sql_bundle(con, bundle)
        assert result.reconciles
        _assert_same(con, rules.validate_bundle(bundle))


def _generic_dir(tmp_path: Path, listens: str, artists: str = "artist_id,name\na1,A\n") -> Path:
    (tmp_path / "listens.csv").write_text(listens)
    (tmp_path / "artists.csv").write_text(artists)
    return tmp_path


def test_landing_keeps_blank_lines_as_rows_with_exact_line_numbers(tmp_path: Path) -> None:
    path = _generic_dir(tmp_path, "user_id,item_id,plays\nu1,a1,3\n\nu2,a1,4\n")
    with duckdb.connect() as con:
        landing = GenericSource(path).land(con)
        assert landing.landed_by["listens"] == "python"  # DuckDB skips blank lines
        rows = con.execute("SELECT user_id, _source_line FROM raw.listens").fetchall()
        assert rows == [("u1", 2), ("", 3), ("u2", 4)]


def test_landing_rejects_a_stray_quote_with_its_lines(tmp_path: Path) -> None:
    lines = ["user_id,item_id,plays"] + [f"u{i:03d},a{i % 7},3" for i in range(600)]
    lines[11] = 'u010,"a3,3'  # opened on line 12 ...
    lines[111] = 'u110,a5",3'  # ... closed on line 112
    path = _generic_dir(tmp_path, "\n".join(lines) + "\n")
    with duckdb.connect() as con, pytest.raises(SourceError, match="line 12 runs to line 112"):
        GenericSource(path).land(con)


def test_landing_counts_lines_of_quoted_multi_line_text(tmp_path: Path) -> None:
    path = _generic_dir(tmp_path, "user_id,item_id,plays\nu1,a1,3\n")
    (path / "artist_text.csv").write_text(
        'artist_id,text\na1,"two\nlines, with a comma"\na2,plain\na3,"three\nmore\nlines"\na4,x\n'
    )
    with duckdb.connect() as con:
        landing = GenericSource(path).land(con)
        assert landing.landed_by["artist_text"] == "duckdb"
        rows = con.execute("SELECT artist_id, _source_line FROM raw.artist_text").fetchall()
        assert rows == [("a1", 2), ("a2", 4), ("a3", 5), ("a4", 8)]


def test_landing_reports_extra_fields_like_the_python_reader(tmp_path: Path) -> None:
    path = _generic_dir(tmp_path, "user_id,item_id,plays\nu1,a1,3\nu2,a1,4,extra\n")
    with duckdb.connect() as con, pytest.raises(SourceError, match="more fields than the header"):
        GenericSource(path).land(con)


def test_landing_reads_parquet_as_text_with_row_numbers(tmp_path: Path) -> None:
    pd.DataFrame({"User_ID": ["u1", "u2"], "item_id": ["a1", "a1"], "plays": [3, 4]}).to_parquet(
        tmp_path / "listens.parquet"
    )
    pd.DataFrame({"artist_id": ["a1"], "name": ["Alpha"], "genre": [None]}).to_parquet(
        tmp_path / "artists.parquet"
    )
    with duckdb.connect() as con:
        GenericSource(tmp_path).land(con)
        rows = con.execute("SELECT user_id, plays, _source_line FROM raw.listens").fetchall()
        assert rows == [("u1", "3", 1), ("u2", "4", 2)]
        assert con.execute("SELECT genre FROM raw.artists").fetchall() == [(None,)]


def test_landing_handles_crlf_bom_and_a_missing_last_line_break(tmp_path: Path) -> None:
    (tmp_path / "listens.csv").write_bytes(
        b"\xef\xbb\xbfUser_ID,item_id,plays\r\nu1,a1,3\r\nu2,a1,4"
    )
    (tmp_path / "artists.csv").write_bytes(b"artist_id,name\r\na1,A\r\n")
    bundle = GenericSource(tmp_path).read()
    with duckdb.connect() as con:
        landing = GenericSource(tmp_path).land(con)
        assert landing.landed_by["listens"] == "duckdb"
        assert _raw_tables(con)["listens"] == _values(
            bundle.table("listens")[RAW_COLUMNS["listens"] + LINEAGE_COLUMNS]
        )
