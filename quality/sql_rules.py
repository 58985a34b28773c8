"""The row rules of :mod:`quality.rules` as SQL, run where the raw tables are (DuckDB, or Spark).

What grows with events never leaves the engine: each golden table is built by a few SQL
statements over its raw table, and its rejected rows go to the quarantine table with the same
reason codes, the same first-failing-rule order and the same cleaning as the pandas reference
(:mod:`quality.rules`, whose docstring holds the table of codes). ``tests/test_sql_rules.py``
checks that both give identical golden rows and identical (record_key, reason) quarantines.

How one table runs (``validate_table``), inside one transaction:

1. **stage**: one pass over the raw table joins each column to the facts of its distinct values
   (cleaned value, byte length, U+FFFD, parsed number or timestamp, known to the golden parent:
   computed once per distinct value, :func:`value_facts_sql`) and gives each row the first
   rule it breaks (a ``CASE`` in rule order) or none. The stage holds the typed golden columns
   plus the row position, source line and reason, in raw order.
2. **duplicates** (always the last rule): keys repeated among the rows that passed are found by
   an aggregate on the golden key columns; only the rows of repeated keys are re-read from raw
   and ordered (a window by row position) to keep the first and point the others at its line.
3. **publish**: the quarantine slice of the table is replaced by the rejected rows (record key,
   reason, the raw row as JSON, lineage), the rejected rows are deleted from the stage (the
   golden table itself, replaced in the transaction) and the helper columns are dropped.
   Raw rows = golden rows + quarantined rows is checked before the commit.

Written once for two engines: the statements are DuckDB SQL built from the constants of
:mod:`quality.rules` and kept to functions that sqlglot transpiles to Spark SQL
(``transpile_to_spark``; ``regexp_matches`` becomes ``RLIKE``). Three things differ on Spark and
are parameters or named here: the row position (DuckDB ``rowid`` of the raw table; on Spark a
``monotonically_increasing_id()`` column written at landing), ``nfc_normalize`` (a UDF on Spark),
and the replace-by-rename publish step (on Spark an ``INSERT OVERWRITE``). Reasons quote values
the way Python's ``repr`` does for text without control characters other than tab, CR and LF.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from quality.rules import (
    EPOCH_PATTERN,
    GOLDEN_COLUMNS,
    ISO_TS_PATTERN,
    MAX_DURATION_S,
    MAX_ID_BYTES,
    MAX_TEXT_BYTES,
    NUMBER_PATTERN,
    REPLACEMENT_CHAR,
    TS_MAX,
    TS_MIN,
    WHITESPACE,
    ZERO_WIDTH_PATTERN,
    reconcile,
)
from sources.base import LINEAGE_COLUMNS, RAW_COLUMNS

logger = logging.getLogger(__name__)

QUARANTINE_SQL_COLUMNS = {
    "table_name": "VARCHAR",
    "record_key": "VARCHAR",
    "reason": "VARCHAR",
    "raw_row": "VARCHAR",
    "source_file": "VARCHAR",
    "source_line": "BIGINT",
}
GOLDEN_TYPES: dict[str, dict[str, str]] = {
    table: {
        column: (
            "BIGINT"
            if column == "plays"
            else "DOUBLE"
            if column == "duration_s"
            else "TIMESTAMPTZ"
            if column in ("ts", "first_ts", "last_ts")
            else "VARCHAR"
        )
        for column in columns
    }
    for table, columns in GOLDEN_COLUMNS.items()
}
# Row tables in dependency order, with the raw table each one reads.
ROW_TABLES: dict[str, str] = {
    "users": "users",
    "artists": "artists",
    "tracks": "tracks",
    "tags": "tags",
    "listens": "listens",
    "listen_events": "listens",
    "tag_assignments": "tag_assignments",
    "artist_text": "artist_text",
    "friends": "friends",
}


# --------------------------------------------------------------------------- SQL snippets


def lit(text: str) -> str:
    """A SQL string literal (quotes doubled; no backslash escapes in DuckDB or standard SQL)."""
    return "'" + text.replace("'", "''") + "'"


def ident(name: str) -> str:
    """A quoted identifier."""
    return '"' + name.replace('"', '""') + '"'


def trim_sql(column: str) -> str:
    """Strip Unicode white space (``WHITESPACE``). TRIM with a character set is slow per row, so it
    runs only where the first or last character is white space."""
    ws = lit(WHITESPACE)
    return (
        f"CASE WHEN CONTAINS({ws}, LEFT({column}, 1)) OR CONTAINS({ws}, RIGHT({column}, 1)) "
        f"THEN TRIM({column}, {ws}) ELSE {column} END"
    )


def clean_text_sql(column: str) -> str:
    """Strip Unicode white space; empty becomes null (``quality.rules.clean_text``)."""
    return f"NULLIF({trim_sql(column)}, '')"


def clean_id_sql(column: str) -> str:
    """Drop zero-width characters, strip, NFC-normalise; empty becomes null
    (``quality.rules.clean_id``). ASCII text skips the first and last step."""
    ascii_ = f"{byte_length_sql(column)} = LENGTH({column})"
    no_zero_width = (
        f"CASE WHEN {ascii_} THEN {column} "
        f"ELSE REGEXP_REPLACE({column}, {lit(ZERO_WIDTH_PATTERN)}, '', 'g') END"
    )
    trimmed = trim_sql(f"({no_zero_width})")
    return f"NULLIF(CASE WHEN {ascii_} THEN {trimmed} ELSE NFC_NORMALIZE({trimmed}) END, '')"


def py_repr_sql(value: str) -> str:
    """Python's ``repr`` of a text value (``<NA>`` for null, as pandas prints a missing value)."""
    escaped = (
        f"REPLACE(REPLACE(REPLACE(REPLACE({value}, '\\', '\\\\'), CHR(10), '\\n'), "
        f"CHR(13), '\\r'), CHR(9), '\\t')"
    )
    return (
        f"CASE WHEN {value} IS NULL THEN '<NA>' "
        f"WHEN CONTAINS({value}, '''') AND NOT CONTAINS({value}, '\"') "
        f"THEN '\"' || {escaped} || '\"' "
        f"ELSE '''' || REPLACE({escaped}, '''', '\\''') || '''' END"
    )


def byte_length_sql(value: str) -> str:
    """UTF-8 bytes of a text value (what the downstream stores limit)."""
    return f"OCTET_LENGTH(ENCODE({value}))"


def matches_sql(value: str, pattern: str) -> str:
    """Regular-expression match, null counted as no match (``RLIKE`` on Spark)."""
    return f"COALESCE(REGEXP_MATCHES({value}, {lit(pattern)}), FALSE)"


def ts_literal(value: Any) -> str:
    return f"CAST({lit(value.strftime('%Y-%m-%d %H:%M:%S+00'))} AS TIMESTAMPTZ)"


def parse_ts_sql(value: str) -> str:
    """Timestamp text to TIMESTAMPTZ (null when empty, bad or out of range); see
    ``quality.rules.parse_timestamps``. Needs the session time zone to be UTC."""
    return in_range_sql(any_ts_sql(value))


def in_range_sql(parsed: str) -> str:
    """A parsed timestamp, null outside ``[TS_MIN, TS_MAX)``."""
    return (
        f"CASE WHEN {parsed} >= {ts_literal(TS_MIN)} AND {parsed} < {ts_literal(TS_MAX)} "
        f"THEN {parsed} END"
    )


def any_ts_sql(value: str) -> str:
    """Timestamp text to TIMESTAMPTZ, epoch or ISO-8601, not yet checked for range."""
    number = f"CAST({value} AS BIGINT)"
    micros = (
        f"CASE WHEN ABS({number}) < 100000000000 THEN {number} * 1000000 "
        f"WHEN ABS({number}) < 100000000000000 THEN {number} * 1000 ELSE {number} END"
    )
    return (
        f"CASE WHEN {matches_sql(value, EPOCH_PATTERN)} "
        f"THEN CAST(MAKE_TIMESTAMP({micros}) AS TIMESTAMPTZ) "
        f"WHEN {matches_sql(value, ISO_TS_PATTERN)} THEN TRY_CAST({value} AS TIMESTAMPTZ) END"
    )


# --------------------------------------------------------------------------- plans


@dataclass
class Lookup:
    """A left join to a golden parent: ``alias`` has column ``hit`` where ``column`` is known."""

    alias: str
    parent: str  # golden table
    parent_column: str
    column: str  # cleaned column of the raw table
    extra: tuple[str, ...] = ()  # further parent columns to carry (e.g. tags.tag)


@dataclass
class Dedup:
    """The last rule: among pending rows (and ``among``), a repeated key is quarantined."""

    columns: tuple[str, ...]  # cleaned raw columns, exactly as the pandas rules compare them
    image: tuple[str, ...]  # golden columns that are a function of them (candidate search)
    code: str = "duplicate_key"
    require: str | None = None  # only rows where this column is not null take part


@dataclass
class Plan:
    """How one golden table is built from its raw table."""

    table: str
    raw: str
    key_columns: tuple[str, ...]
    required: tuple[str, ...]
    cleaned: dict[str, str]  # name -> SQL over the raw row ``r``
    # column -> steps of name -> SQL over the cleaned value (and the steps before it)
    derived: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    lookups: list[Lookup] = field(default_factory=list)
    checks: list[tuple[str, str]] = field(default_factory=list)  # (condition, reason SQL)
    dedup: Dedup | None = None
    golden: dict[str, str] = field(default_factory=dict)  # column -> SQL over ``v``
    notes: dict[str, str] = field(default_factory=dict)  # name -> aggregate over golden


def _missing_ids(ids: Iterable[str], nullable: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    ids = list(ids)
    checks = [(f"{n} IS NULL", lit(f"id_missing: {n} is empty")) for n in ids if n not in nullable]
    checks += _too_long(ids, MAX_ID_BYTES, "id_too_long")
    checks += [
        (
            ident(f"_undecodable_{n}"),
            f"'id_undecodable: {n}=' || {py_repr_sql(n)} || ' holds undecodable bytes'",
        )
        for n in ids
    ]
    return checks


def _too_long(columns: Iterable[str], limit: int, code: str) -> list[tuple[str, str]]:
    """Longer than ``limit`` UTF-8 bytes (the ``_bytes_<column>`` fact of the value)."""
    return [
        (
            f"{ident(f'_bytes_{n}')} > {limit}",
            f"'{code}: {n} is ' || CAST({ident(f'_bytes_{n}')} AS VARCHAR) || "
            f"' bytes (limit {limit}): ' || {py_repr_sql(f'SUBSTRING({n}, 1, 40)')} || '...'",
        )
        for n in columns
    ]


def _unknown(column: str, alias: str, code: str, what: str) -> tuple[str, str]:
    return (
        f"{column} IS NOT NULL AND {alias}_hit IS NULL",
        f"'{code}: {column}=' || {py_repr_sql(column)} || ' is not in {what}'",
    )


MAX_EXACT_PLAYS = 2**53  # play counts at or above it are not exact in a double: quarantined
PLAYS_DERIVED = [
    {"plays_is_number": matches_sql("plays", NUMBER_PATTERN)},
    {"plays_number": "CASE WHEN plays_is_number THEN TRY_CAST(plays AS DOUBLE) END"},
]
TS_DERIVED = [{"ts_any": any_ts_sql("ts")}, {"ts_parsed": in_range_sql("ts_any")}]


def _plays_checks() -> list[tuple[str, str]]:
    number, is_number = "plays_number", "plays_is_number"
    return [
        (
            f"NOT COALESCE({is_number}, FALSE)",
            f"'plays_not_numeric: plays=' || {py_repr_sql('plays')}",
        ),
        (
            f"{is_number} AND {number} % 1 <> 0",
            f"'plays_not_integer: plays=' || {py_repr_sql('plays')}",
        ),
        (f"{is_number} AND {number} <= 0", "'plays_not_positive: plays=' || plays"),
        (
            f"{is_number} AND ABS({number}) >= {MAX_EXACT_PLAYS}",
            "'plays_not_integer: plays=' || plays || ' is too large'",
        ),
    ]


def _ts_check() -> tuple[str, str]:
    return ("ts IS NOT NULL AND ts_parsed IS NULL", f"'ts_unparseable: ts=' || {py_repr_sql('ts')}")


def _cleaned(ids: Iterable[str], texts: Iterable[str]) -> dict[str, str]:
    cleaned = {n: clean_id_sql(f"r.{ident(n)}") for n in ids}
    cleaned.update({n: clean_text_sql(f"r.{ident(n)}") for n in texts})
    return cleaned


def plan_for(
    table: str,
    item_level: str = "artist",
    max_duration_s: float = MAX_DURATION_S,
    golden_schema: str = "golden",
) -> Plan:
    """The plan of golden ``table`` (``listens`` for aggregated, ``listen_events`` for events)."""
    g = golden_schema
    if table == "users":
        return Plan(
            table,
            "users",
            ("user_id",),
            ("user_id",),
            _cleaned(["user_id"], []),
            checks=_missing_ids(["user_id"]),
            dedup=Dedup(("user_id",), ("user_id",)),
            golden={"user_id": "user_id"},
        )
    if table == "artists":
        return Plan(
            table,
            "artists",
            ("artist_id",),
            ("artist_id", "name"),
            _cleaned(["artist_id"], ["name", "genre", "url"]),
            checks=_missing_ids(["artist_id"])
            + _too_long(["name"], MAX_TEXT_BYTES, "text_too_long"),
            dedup=Dedup(("artist_id",), ("artist_id",)),
            golden={c: c for c in GOLDEN_COLUMNS["artists"]},
            notes={
                "names_with_replacement_char": f"count(*) FILTER (WHERE CONTAINS(name, {lit(REPLACEMENT_CHAR)}))",
                "names_missing": "count(*) FILTER (WHERE name IS NULL)",
            },
        )
    if table == "tracks":
        is_number = matches_sql("duration_s", NUMBER_PATTERN)
        duration = "TRY_CAST(duration_s AS DOUBLE)"
        return Plan(
            table,
            "tracks",
            ("track_id",),
            ("track_id", "artist_id"),
            _cleaned(["track_id", "artist_id"], ["title", "duration_s", "genre"]),
            derived={
                "duration_s": [
                    {"duration_is_number": is_number},
                    {"duration_num": f"CASE WHEN duration_is_number THEN {duration} END"},
                ]
            },
            lookups=[Lookup("a", f"{g}.artists", "artist_id", "artist_id")],
            checks=_missing_ids(["track_id", "artist_id"])
            + _too_long(["title"], MAX_TEXT_BYTES, "text_too_long")
            + [
                (
                    f"duration_s IS NOT NULL AND (NOT COALESCE(duration_is_number, FALSE) "
                    f"OR duration_num <= 0 "
                    f"OR duration_num > {float(max_duration_s)!r})",
                    f"'duration_invalid: duration_s=' || {py_repr_sql('duration_s')} || "
                    f"' (must be a number in (0, {max_duration_s:g}])'",
                ),
                _unknown("artist_id", "a", "unknown_artist", "artists"),
            ],
            dedup=Dedup(("track_id",), ("track_id",)),
            golden={
                "track_id": "track_id",
                "artist_id": "artist_id",
                "title": "title",
                "duration_s": "CAST(duration_num AS DOUBLE)",
                "genre": "genre",
            },
            notes={"titles_missing": "count(*) FILTER (WHERE title IS NULL)"},
        )
    if table == "tags":
        return Plan(
            table,
            "tags",
            ("tag_id",),
            ("tag_id", "tag"),
            _cleaned(["tag_id"], ["tag"]),
            checks=_missing_ids(["tag_id"]) + [("tag IS NULL", lit("text_missing: tag is empty"))],
            dedup=Dedup(("tag_id",), ("tag_id",)),
            golden={"tag_id": "tag_id", "tag": "tag"},
            notes={
                "tags_with_replacement_char": f"count(*) FILTER (WHERE CONTAINS(tag, {lit(REPLACEMENT_CHAR)}))"
            },
        )
    if table in ("listens", "listen_events"):
        events = table == "listen_events"
        checks = _missing_ids(["user_id", "item_id"]) + _plays_checks() + [_ts_check()]
        if events:
            checks.append(("ts_parsed IS NULL", lit("ts_unparseable: ts is empty")))
        checks += [
            _unknown("user_id", "u", "unknown_user", "users"),
            _unknown("item_id", "i", "unknown_item", f"{item_level} items"),
        ]
        # rejected rows are typed too: a play count beyond 2**53 (quarantined) must not fail the cast
        plays = (
            f"CASE WHEN ABS(plays_number) < {MAX_EXACT_PLAYS} THEN CAST(plays_number AS BIGINT) END"
        )
        golden = {"user_id": "user_id", "item_id": "item_id", "plays": plays}
        if events:
            golden["ts"] = "ts_parsed"
            dedup = Dedup(
                ("user_id", "item_id", "plays", "ts"),
                ("user_id", "item_id", "plays", "ts"),
                "duplicate_event",
            )
        else:
            golden["first_ts"] = "ts_parsed"
            golden["last_ts"] = "ts_parsed"
            dedup = Dedup(("user_id", "item_id"), ("user_id", "item_id"))
        return Plan(
            table,
            "listens",
            ("user_id", "item_id"),
            ("user_id", "item_id", "plays"),
            _cleaned(["user_id", "item_id"], ["plays", "ts"]),
            derived={"plays": PLAYS_DERIVED, "ts": TS_DERIVED},
            lookups=[
                Lookup("u", f"{g}.users", "user_id", "user_id"),
                Lookup("i", f"{g}.items", "item_id", "item_id"),
            ],
            checks=checks,
            dedup=dedup,
            golden=golden,
        )
    if table == "tag_assignments":
        return Plan(
            table,
            "tag_assignments",
            ("user_id", "artist_id", "tag_id"),
            ("artist_id", "tag_id"),
            _cleaned(["user_id", "artist_id", "tag_id"], ["ts"]),
            derived={"ts": TS_DERIVED},
            lookups=[
                Lookup("a", f"{g}.artists", "artist_id", "artist_id"),
                Lookup("t", f"{g}.tags", "tag_id", "tag_id", ("tag",)),
                Lookup("u", f"{g}.users", "user_id", "user_id"),
            ],
            checks=_missing_ids(["user_id", "artist_id", "tag_id"], nullable=("user_id",))
            + [
                _ts_check(),
                _unknown("artist_id", "a", "unknown_artist", "artists"),
                _unknown("tag_id", "t", "unknown_tag", "tags"),
                _unknown("user_id", "u", "unknown_user", "users"),
            ],
            dedup=Dedup(
                ("user_id", "artist_id", "tag_id"),
                ("user_id", "artist_id", "tag"),
                require="user_id",
            ),
            golden={
                "user_id": "user_id",
                "artist_id": "artist_id",
                "tag": "t_tag",
                "ts": "ts_parsed",
            },
        )
    if table == "artist_text":
        return Plan(
            table,
            "artist_text",
            ("artist_id",),
            ("artist_id", "text"),
            _cleaned(["artist_id"], ["text"]),
            lookups=[Lookup("a", f"{g}.artists", "artist_id", "artist_id")],
            checks=_missing_ids(["artist_id"])
            + [
                ("text IS NULL", lit("text_missing: text is empty")),
                _unknown("artist_id", "a", "unknown_artist", "artists"),
            ],
            dedup=Dedup(("artist_id",), ("artist_id",)),
            golden={"artist_id": "artist_id", "text": "text"},
        )
    if table == "friends":
        return Plan(
            table,
            "friends",
            ("user_id", "friend_id"),
            ("user_id", "friend_id"),
            _cleaned(["user_id", "friend_id"], []),
            lookups=[
                Lookup("u", f"{g}.users", "user_id", "user_id"),
                Lookup("f", f"{g}.users", "user_id", "friend_id"),
            ],
            checks=_missing_ids(["user_id", "friend_id"])
            + [
                (
                    "user_id = friend_id",
                    f"'friend_is_self: user_id=' || {py_repr_sql('user_id')} || ' lists themself'",
                ),
                _unknown("user_id", "u", "unknown_user", "users"),
                _unknown("friend_id", "f", "unknown_user", "users"),
            ],
            dedup=Dedup(("user_id", "friend_id"), ("user_id", "friend_id")),
            golden={"user_id": "user_id", "friend_id": "friend_id"},
        )
    raise ValueError(f"no rules for table {table!r}; known: {', '.join(ROW_TABLES)}")


# --------------------------------------------------------------------------- statements


def _source_sql(raw: str, position: str, absent: Iterable[str] = ()) -> str:
    """The raw rows with their position; ``absent`` contract columns are null text."""
    nulls = "".join(f", CAST(NULL AS VARCHAR) AS {ident(c)}" for c in absent)
    return f"SELECT {position} AS _pos, *{nulls} FROM {raw}"


NULL_KEY = "\x00null"  # stands for a null raw value in the per-value join


def value_facts_sql(plan: Plan, column: str, raw: str = "src", absent: Iterable[str] = ()) -> str:
    """One row per distinct raw value of ``column``: its cleaned value and every fact the rules
    need about that value alone (bytes, U+FFFD, parsed numbers and timestamps, whether the
    golden parents know it). Rules that look at one value run once per distinct value, not
    once per row: ids, play counts and tags repeat across millions of rows."""
    name = ident(column)
    clean = plan.cleaned[column].replace(f"r.{name}", name)
    # straight from the raw table (a CTE read twice would be materialised, and lose its order)
    values = (
        f"SELECT CAST(NULL AS VARCHAR) AS {name}"
        if column in absent
        else f"SELECT DISTINCT {name} FROM {raw}"
    )
    body = (
        f"SELECT COALESCE({name}, {lit(NULL_KEY)}) AS _raw, {clean} AS {name} FROM ({values}) AS r"
    )
    steps: list[dict[str, str]] = [
        {
            f"_bytes_{column}": byte_length_sql(name),
            f"_undecodable_{column}": f"CONTAINS({name}, {lit(REPLACEMENT_CHAR)})",
        }
    ]
    steps += plan.derived.get(column, [])
    for step in steps:
        columns = "".join(f", {sql} AS {ident(n)}" for n, sql in step.items())
        body = f"SELECT _f.*{columns} FROM ({body}) AS _f"
    for lookup in [lk for lk in plan.lookups if lk.column == column]:
        a = lookup.alias
        extra = "".join(f", {ident(c)} AS {ident(f'{a}_{c}')}" for c in lookup.extra)
        carried = "".join(f", {a}.{ident(f'{a}_{c}')}" for c in lookup.extra)
        body = (
            f"SELECT _f.*, {a}.hit AS {a}_hit{carried} FROM ({body}) AS _f "
            f"LEFT JOIN (SELECT DISTINCT {ident(lookup.parent_column)} AS k, TRUE AS hit{extra} "
            f"FROM {lookup.parent}) AS {a} ON {a}.k = _f.{name}"
        )
    return body


def _value_columns(plan: Plan, column: str) -> list[str]:
    names = [column, f"_bytes_{column}", f"_undecodable_{column}"]
    names += [n for step in plan.derived.get(column, []) for n in step]
    for lookup in [lk for lk in plan.lookups if lk.column == column]:
        names += [f"{lookup.alias}_hit"] + [f"{lookup.alias}_{c}" for c in lookup.extra]
    return names


def stage_sql(
    plan: Plan,
    raw: str,
    stage: str,
    position: str = "rowid",
    absent: Iterable[str] = (),
    constant: Iterable[str] = (),
) -> str:
    """CREATE the stage: typed golden columns, ``_pos``, ``_line`` and the first failing rule.

    One pass over the raw rows: each column is joined to its distinct values' facts
    (:func:`value_facts_sql`), then a ``CASE`` in rule order gives the first rule broken.
    ``absent`` columns (missing from the raw table) and ``constant`` ones (null in every row)
    are one null value. Joins do not keep the raw order, so the stage is sorted by position:
    golden rows keep the order of the raw rows."""
    constant = [*absent, *constant]
    ctes = [f"src AS ({_source_sql(raw, position, absent)})"]
    joins, selected = [], ["src._pos", "src._source_line AS _line"]
    for i, column in enumerate(plan.cleaned):
        alias = f"v{i}"
        ctes.append(f"{alias} AS ({value_facts_sql(plan, column, raw, constant)})")
        if column in constant:  # one null value: its facts hold for every row
            joins.append(f"CROSS JOIN {alias}")
        else:
            joins.append(
                f"LEFT JOIN {alias} ON {alias}._raw = COALESCE(src.{ident(column)}, "
                f"{lit(NULL_KEY)})"
            )
        selected += [f"{alias}.{ident(n)}" for n in _value_columns(plan, column)]
    ctes.append(f"v AS (SELECT {', '.join(selected)} FROM src\n  " + "\n  ".join(joins) + ")")
    reason = "CASE " + " ".join(f"WHEN {w} THEN {r}" for w, r in plan.checks) + " END"
    golden = ", ".join(
        f"CAST({sql} AS {GOLDEN_TYPES[plan.table][n]}) AS {ident(n)}"
        for n, sql in plan.golden.items()
    )
    return (
        f"CREATE OR REPLACE TABLE {stage} AS\nWITH "
        + ",\n".join(ctes)
        + f"\nSELECT _pos, _line, {golden}, {reason} AS _reason FROM v ORDER BY _pos"
    )


def candidates_sql(plan: Plan, stage: str, candidates: str) -> str:
    """Rows that passed and whose golden key image repeats: a superset of the duplicates.

    Grouped on one hash of the key image rather than on its text columns (several times
    cheaper over many rows); a hash collision only adds a candidate, which
    :func:`duplicates_sql` then compares exactly."""
    assert plan.dedup is not None
    image = ", ".join(ident(c) for c in plan.dedup.image)
    image_s = ", ".join(f"s.{ident(c)}" for c in plan.dedup.image)
    require = plan.dedup.require
    among = f" AND {ident(require)} IS NOT NULL" if require else ""
    among_s = f" AND s.{ident(require)} IS NOT NULL" if require else ""
    return (
        f"CREATE OR REPLACE TEMP TABLE {candidates} AS\n"
        f"WITH k AS (SELECT HASH({image}) AS _h FROM {stage} WHERE _reason IS NULL{among} "
        f"GROUP BY _h HAVING count(*) > 1)\n"
        f"SELECT s._pos, s._line FROM {stage} AS s JOIN k ON HASH({image_s}) = k._h "
        f"WHERE s._reason IS NULL{among_s}"
    )


def duplicates_sql(
    plan: Plan,
    raw: str,
    candidates: str,
    duplicates: str,
    position: str = "rowid",
    absent: Iterable[str] = (),
) -> str:
    """Among the candidates, the exact repeats of an earlier row, pointing at its line."""
    assert plan.dedup is not None
    columns = plan.dedup.columns
    cleaned = ", ".join(f"{plan.cleaned[n]} AS {ident(n)}" for n in columns)
    keys = ", ".join(ident(n) for n in columns)
    detail = " || ', ' || ".join(f"'{n}=' || {py_repr_sql(ident(n))}" for n in columns)
    return (
        f"CREATE OR REPLACE TEMP TABLE {duplicates} AS\n"
        f"WITH src AS ({_source_sql(raw, position, absent)}),\n"
        f"k AS (SELECT r._pos, cand._line, {cleaned} FROM src AS r "
        f"JOIN {candidates} AS cand ON cand._pos = r._pos),\n"
        f"w AS (SELECT *, ROW_NUMBER() OVER (PARTITION BY {keys} ORDER BY _pos) AS _rn, "
        f"FIRST_VALUE(_line) OVER (PARTITION BY {keys} ORDER BY _pos) AS _first_line FROM k)\n"
        f"SELECT _pos, '{plan.dedup.code}: ' || {detail} || ' repeats line ' || "
        f"CAST(_first_line AS VARCHAR) AS _reason FROM w WHERE _rn > 1"
    )


def quarantine_rows_sql(
    plan: Plan,
    raw: str,
    raw_columns: list[str],
    bad: str,
    position: str = "rowid",
    absent: Iterable[str] = (),
) -> str:
    """The quarantine rows (``QUARANTINE_COLUMNS``) of the rejected positions, in raw order."""
    key = " || '|' || ".join(f"COALESCE(r.{ident(c)}, '')" for c in plan.key_columns)
    row = ", ".join(f"{lit(c)}: r.{ident(c)}" for c in raw_columns)
    return (
        f"WITH src AS ({_source_sql(raw, position, absent)})\n"
        f"SELECT {lit(plan.table)} AS table_name, {key} AS record_key, b._reason AS reason, "
        f"CAST(TO_JSON({{{row}}}) AS VARCHAR) AS raw_row, "
        f"CAST(r._source_file AS VARCHAR) AS source_file, "
        f"CAST(r._source_line AS BIGINT) AS source_line\n"
        f"FROM src AS r JOIN {bad} AS b ON b._pos = r._pos ORDER BY r._pos"
    )


def rejected_sql(stage: str, duplicates: str | None = None) -> str:
    """The rejected rows (``_pos``, ``_reason``): rows of the stage that broke a rule, and the
    repeats of an earlier row (``duplicates``, when there are any)."""
    dup_part = f" UNION ALL SELECT _pos, _reason FROM {duplicates}" if duplicates else ""
    return f"SELECT _pos, _reason FROM {stage} WHERE _reason IS NOT NULL{dup_part}"


def reason_counts_sql(bad: str) -> str:
    """Rejected rows per reason code (the text before the first colon), most frequent first."""
    return (
        f"SELECT split_part(_reason, ':', 1) AS code, count(*) AS n FROM {bad} "
        f"GROUP BY 1 ORDER BY 2 DESC, 1"
    )


def notes_sql(plan: Plan, golden: str) -> str | None:
    """The notes of a golden table (counts over its rows), or None when it has none."""
    if not plan.notes:
        return None
    return f"SELECT {', '.join(plan.notes.values())} FROM {golden}"


def raw_layout(plan: Plan, present: list[str]) -> tuple[list[str], list[str]]:
    """The raw row as the pandas rules see it (contract columns, absent ones null, + lineage)
    and the absent columns; a raw table without a required column is a clear error."""
    missing = [c for c in plan.required if c not in present]
    if missing:
        raise ValueError(
            f"raw {plan.raw} lacks column(s) {missing}; land it with the contract columns "
            f"(sources.base.RAW_COLUMNS)"
        )
    raw_columns = RAW_COLUMNS[plan.raw] + LINEAGE_COLUMNS
    return raw_columns, [c for c in raw_columns if c not in present]


def transpile_to_spark(sql: str) -> str:
    """DuckDB SQL of this module as Spark SQL (sqlglot), for the Spark engine and the tests."""
    import sqlglot

    return ";\n".join(sqlglot.transpile(sql, read="duckdb", write="spark"))


# --------------------------------------------------------------------------- running


@dataclass
class SqlTableResult:
    """The outcome of one golden table built in the engine (counts only: data stays there)."""

    table_name: str
    raw_rows: int
    golden_rows: int
    quarantined_rows: int
    reason_counts: dict[str, int] = field(default_factory=dict)
    notes: dict[str, int] = field(default_factory=dict)

    @property
    def reconciles(self) -> bool:
        """raw rows == golden rows + quarantined rows."""
        return reconcile(self.raw_rows, self.golden_rows, self.quarantined_rows)


def _columns(con: Any, relation: str) -> list[str]:
    return [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()]


def ensure_quarantine(con: Any, quarantine: str, extra: dict[str, str] | None = None) -> None:
    """Create the quarantine table when absent (``QUARANTINE_SQL_COLUMNS`` + ``extra``)."""
    columns = {**QUARANTINE_SQL_COLUMNS, **(extra or {})}
    schema = quarantine.rsplit(".", 1)[0] if "." in quarantine else None
    if schema:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    body = ", ".join(f"{ident(n)} {t}" for n, t in columns.items())
    con.execute(f"CREATE TABLE IF NOT EXISTS {quarantine} ({body})")


def validate_table(
    con: Any,
    table: str,
    *,
    raw_schema: str = "raw",
    golden_schema: str = "golden",
    quarantine: str | None = None,
    item_level: str = "artist",
    max_duration_s: float = MAX_DURATION_S,
    quarantine_extra: dict[str, Any] | None = None,
    position: str = "rowid",
) -> SqlTableResult:
    """Build ``<golden_schema>.<table>`` from its raw table and replace its quarantine slice.

    Parameters
    ----------
    con
        A DuckDB connection holding the raw table and the golden parents (users before
        listens, ...: see ``ROW_TABLES`` for the order).
    table
        A row table of ``ROW_TABLES`` (``listens`` for aggregated sources, ``listen_events``
        for event sources; both read ``raw.listens``).
    quarantine
        The quarantine table (default ``<golden_schema>.quarantine``); created when absent.
    item_level
        ``"artist"`` or ``"track"``: names the items in ``unknown_item`` reasons.
    quarantine_extra
        Constant columns added to each quarantine row, e.g. ``{"run_id": ..., "quarantined_at":
        ...}`` (they must exist in the quarantine table).

    Returns
    -------
    SqlTableResult
        Counts, reasons and notes. Raises ``AssertionError`` (and rolls back) when the counts
        do not reconcile, as the pandas rules do.
    """
    plan = plan_for(table, item_level, max_duration_s, golden_schema)
    quarantine = quarantine or f"{golden_schema}.quarantine"
    raw = f"{raw_schema}.{plan.raw}"
    present = _columns(con, raw)
    raw_columns, absent = raw_layout(plan, present)
    given = [c for c in plan.cleaned if c in present]
    if given:  # a column null in every row is read as absent (its one value: null)
        counts = con.execute(
            f"SELECT {', '.join(f'count({ident(c)})' for c in given)} FROM {raw}"
        ).fetchone()
        all_null = [c for c, n in zip(given, counts, strict=True) if n == 0]
    else:
        all_null = []
    tag = f"_sqlrules_{table}"
    # the golden table itself is the stage: replaced inside the transaction (a failure rolls
    # back to the previous one), its rejected rows and helper columns removed before the commit
    stage = f"{golden_schema}.{plan.table}"
    candidates, duplicates, bad = f"{tag}_cand", f"{tag}_dup", f"{tag}_bad"
    extra = quarantine_extra or {}
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {golden_schema}")
    ensure_quarantine(con, quarantine)
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(stage_sql(plan, raw, stage, position, absent, all_null))
        dup_count = 0
        if plan.dedup is not None:
            con.execute(candidates_sql(plan, stage, candidates))
            if con.execute(f"SELECT count(*) FROM {candidates}").fetchone()[0]:
                con.execute(duplicates_sql(plan, raw, candidates, duplicates, position, absent))
                dup_count = con.execute(f"SELECT count(*) FROM {duplicates}").fetchone()[0]
        rejected = rejected_sql(stage, duplicates if dup_count else None)
        con.execute(f"CREATE OR REPLACE TEMP TABLE {bad} AS {rejected}")
        quarantined = con.execute(f"SELECT count(*) FROM {bad}").fetchone()[0]
        con.execute(f"DELETE FROM {quarantine} WHERE table_name = ?", [plan.table])
        if quarantined:
            rows = quarantine_rows_sql(plan, raw, raw_columns, bad, position, absent)
            names = list(QUARANTINE_SQL_COLUMNS) + list(extra)
            values = ", ".join(["q.*"] + ["?" for _ in extra])
            con.execute(
                f"INSERT INTO {quarantine} ({', '.join(ident(n) for n in names)}) "
                f"SELECT {values} FROM ({rows}) AS q",
                list(extra.values()),
            )
            con.execute(f"DELETE FROM {stage} WHERE _pos IN (SELECT _pos FROM {bad})")
        for helper in ("_pos", "_line", "_reason"):
            con.execute(f"ALTER TABLE {stage} DROP COLUMN {helper}")
        golden = f"{golden_schema}.{plan.table}"
        raw_rows = con.execute(f"SELECT count(*) FROM {raw}").fetchone()[0]
        golden_rows = con.execute(f"SELECT count(*) FROM {golden}").fetchone()[0]
        if not reconcile(raw_rows, golden_rows, quarantined):  # never lose rows silently
            raise AssertionError(
                f"{plan.table}: raw {raw_rows} != golden {golden_rows} + quarantined {quarantined}"
            )
        reasons = con.execute(reason_counts_sql(bad)).fetchall()
        notes: dict[str, int] = {}
        if (query := notes_sql(plan, golden)) is not None:
            values = con.execute(query).fetchone()
            notes = {name: int(v) for name, v in zip(plan.notes, values, strict=True)}
        for temp in (candidates, duplicates, bad):
            con.execute(f"DROP TABLE IF EXISTS {temp}")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return table_result(plan, raw_rows, golden_rows, quarantined, reasons, notes)


def table_result(
    plan: Plan, raw_rows: int, golden_rows: int, quarantined: int, reasons, notes: dict
) -> SqlTableResult:
    """The :class:`SqlTableResult` of one validated table (either engine), logged when rows
    were quarantined; ``reasons`` are ``(code, count)`` rows of :func:`reason_counts_sql`."""
    result = SqlTableResult(
        plan.table,
        int(raw_rows),
        int(golden_rows),
        int(quarantined),
        {str(code): int(n) for code, n in reasons},
        notes,
    )
    if quarantined:
        logger.info("%s: %d quarantined %s", plan.table, quarantined, result.reason_counts)
    return result


def items_sql(
    level: Literal["artist", "track"], golden_schema: str = "golden", position: str | None = "rowid"
) -> str:
    """The query of ``<golden>.items``: golden artists (artist level) or tracks (track level,
    with the artist's genre where the track has none), in the order of their golden rows
    (``position``; None where the engine keeps no row order); see ``quality.rules.build_items``."""
    g = golden_schema
    if level == "artist":
        order = f" ORDER BY {position}" if position else ""
        select = (
            f"SELECT artist_id AS item_id, artist_id, name, genre, 'artist' AS level "
            f"FROM {g}.artists{order}"
        )
    elif level == "track":
        order = f" ORDER BY t.{position}" if position else ""
        select = (
            f"SELECT t.track_id AS item_id, t.artist_id, t.title AS name, "
            f"COALESCE(t.genre, a.genre) AS genre, 'track' AS level FROM {g}.tracks AS t "
            f"LEFT JOIN {g}.artists AS a ON a.artist_id = t.artist_id{order}"
        )
    else:
        raise ValueError(f"level must be 'artist' or 'track', got {level!r}")
    types = ", ".join(f"CAST({ident(c)} AS VARCHAR) AS {ident(c)}" for c in GOLDEN_COLUMNS["items"])
    return f"SELECT {types} FROM ({select})"


def build_items(con: Any, level: Literal["artist", "track"], golden_schema: str = "golden") -> int:
    """``<golden>.items`` from golden artists or tracks (:func:`items_sql`)."""
    g = golden_schema
    con.execute(f"CREATE OR REPLACE TABLE {g}.items AS {items_sql(level, g)}")
    return con.execute(f"SELECT count(*) FROM {g}.items").fetchone()[0]


def listens_from_events_sql(golden_schema: str = "golden", position: str | None = "rowid") -> str:
    """The query of ``<golden>.listens`` from ``<golden>.listen_events``: plays summed, first
    and last ts, in order of each pair's first event (``position``; None where the engine keeps
    no row order); see ``quality.rules.aggregate_listen_events``."""
    g = golden_schema
    pos = f"{position} AS _pos, " if position else ""
    order = " ORDER BY min(_pos)" if position else ""
    return (
        f"SELECT user_id, item_id, CAST(sum(plays) AS BIGINT) AS plays, min(ts) AS first_ts, "
        f"max(ts) AS last_ts FROM (SELECT {pos}* FROM {g}.listen_events) "
        f"GROUP BY user_id, item_id{order}"
    )


def aggregate_listen_events(con: Any, golden_schema: str = "golden") -> int:
    """``<golden>.listens`` from ``<golden>.listen_events`` (:func:`listens_from_events_sql`)."""
    g = golden_schema
    con.execute(f"CREATE OR REPLACE TABLE {g}.listens AS {listens_from_events_sql(g)}")
    return con.execute(f"SELECT count(*) FROM {g}.listens").fetchone()[0]


def empty_table_sql(table: str) -> str:
    """A query of no rows with the columns and types of golden ``table``."""
    columns = ", ".join(f"CAST(NULL AS {t}) AS {ident(c)}" for c, t in GOLDEN_TYPES[table].items())
    return f"SELECT {columns} LIMIT 0"


def empty_listen_events(con: Any, golden_schema: str = "golden") -> None:
    """An empty ``<golden>.listen_events`` (aggregated sources have no events)."""
    body = ", ".join(f"{ident(c)} {t}" for c, t in GOLDEN_TYPES["listen_events"].items())
    con.execute(f"CREATE OR REPLACE TABLE {golden_schema}.listen_events ({body})")


@dataclass
class SqlBundleValidation:
    """Every golden table of one raw bundle, built in the engine."""

    tables: dict[str, SqlTableResult]
    item_level: str
    listens_kind: str

    @property
    def reconciles(self) -> bool:
        return all(r.reconciles for r in self.tables.values())


def validate_bundle(
    con: Any,
    item_level: Literal["artist", "track"],
    listens_kind: Literal["aggregated", "events"],
    *,
    raw_schema: str = "raw",
    golden_schema: str = "golden",
    quarantine: str | None = None,
    max_duration_s: float = MAX_DURATION_S,
    tables: Iterable[str] | None = None,
) -> SqlBundleValidation:
    """Build every golden table from the raw tables in ``con``, parents first.

    ``tables`` limits the optional row tables (default: every raw table that exists); users,
    artists, listens and the derived items (and listens from events) are always built.
    """
    existing = {
        row[0]
        for row in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = ?", [raw_schema]
        ).fetchall()
    }
    wanted = set(tables) if tables is not None else existing
    results: dict[str, SqlTableResult] = {}
    kw = dict(
        raw_schema=raw_schema,
        golden_schema=golden_schema,
        quarantine=quarantine,
        item_level=item_level,
        max_duration_s=max_duration_s,
    )
    for name in ("users", "artists"):
        results[name] = validate_table(con, name, **kw)
    has_tracks = "tracks" in existing and "tracks" in wanted
    if has_tracks:
        results["tracks"] = validate_table(con, "tracks", **kw)
    build_items(con, item_level, golden_schema)
    listens = "listen_events" if listens_kind == "events" else "listens"
    results[listens] = validate_table(con, listens, **kw)
    if listens_kind == "events":
        aggregate_listen_events(con, golden_schema)
    else:
        empty_listen_events(con, golden_schema)
    for name in ("tags", "tag_assignments", "artist_text", "friends"):
        if name in existing and name in wanted:
            results[name] = validate_table(con, name, **kw)
    return SqlBundleValidation(results, item_level, listens_kind)


def all_statements(item_level: str = "artist", position: str = "rowid") -> dict[str, list[str]]:
    """Every statement the rules run, per table (the stage, candidates, duplicates and
    quarantine queries), for transpiling to Spark and for reading."""
    out: dict[str, list[str]] = {}
    for table, raw in ROW_TABLES.items():
        plan = plan_for(table, item_level)
        statements = [stage_sql(plan, f"raw.{raw}", f"golden.{table}", position)]
        if plan.dedup is not None:
            statements.append(candidates_sql(plan, f"golden.{table}", "_cand"))
            statements.append(duplicates_sql(plan, f"raw.{raw}", "_cand", "_dup", position))
        columns = RAW_COLUMNS[raw] + LINEAGE_COLUMNS
        statements.append(quarantine_rows_sql(plan, f"raw.{raw}", columns, "_bad", position))
        out[table] = statements
    return out
