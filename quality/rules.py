"""Row-level rules: raw text tables in, typed golden tables and a quarantine of rejected rows out.

Pure pandas (text checks run on Arrow strings through pyarrow.compute), vectorised, no dagster.
Raw columns may be ``str``/``None`` objects or Arrow strings. Golden text columns are ``str``
objects with ``None`` for null; ids are strings everywhere. Every raw row of a row table ends in exactly one of the
golden frame or the quarantine, so ``raw rows = golden rows + quarantined rows``
(``TableResult.reconciles``). Each function takes its dependencies explicitly, e.g. listens need
the golden users and items: validate parents first (``validate_bundle`` does it in order).

A quarantined row carries one reason, the first rule it breaks, as ``"<code>: <detail>"``. Codes:

=======================  ==============================================================
code                     meaning
=======================  ==============================================================
``id_missing``           an id column is null or empty
``id_undecodable``       an id holds U+FFFD (bytes that were not valid text)
``id_too_long``          an id longer than 512 UTF-8 bytes (Milvus' id limit)
``text_too_long``        a name longer than 65,535 UTF-8 bytes (Milvus' VARCHAR limit)
``plays_not_numeric``    plays is not a number
``plays_not_integer``    plays is a number with a fraction
``plays_not_positive``   plays <= 0
``duration_invalid``     duration_s is not a number, <= 0 or longer than the maximum
``ts_unparseable``       ts is neither ISO-8601 nor epoch s/ms/us, or out of range
``text_missing``         a required text (tag, artist text) is empty
``friend_is_self``       a user listed as their own friend
``unknown_user``         user_id (or friend_id) not among the golden users
``unknown_item``         item_id not among the golden items (artists or tracks)
``unknown_artist``       artist_id not among the golden artists
``unknown_tag``          tag_id not among the golden tags
``duplicate_key``        the key repeats an earlier row (the first is kept)
``duplicate_event``      a play event identical to an earlier one (the first is kept)
=======================  ==============================================================

Cleaning that is not rejection:

- text values are stripped of surrounding white space (Unicode white space, ``WHITESPACE``);
  empty optional values become null; names holding U+FFFD are kept and counted in
  ``TableResult.notes``;
- ids (user_id, item_id, artist_id, track_id, tag_id, friend_id) also lose zero-width characters
  (U+200B..U+200D, U+2060, U+FEFF, ``ZERO_WIDTH``) and are NFC-normalised, so ``"ue\\u0301"`` and
  ``"u\\u00e9"``, or ``"u\\u200b1"`` and ``"u1"``, are one id (the first row keeps it, a later
  one is a ``duplicate_key``); the quarantine keeps the raw text;
- timestamps are ISO-8601 in the extended form ``YYYY-MM-DD[(T| )hh:mm[:ss[.f]]][Z|+hh[:mm]]``
  (``ISO_TS_PATTERN``) or epoch numbers (``EPOCH_PATTERN``); without a zone they are UTC.

The same rules run as SQL inside DuckDB (or Spark) in :mod:`quality.sql_rules`, on the raw
tables where they land; this module is the reference the SQL is tested against, and the engine
for small frames.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sources.base import RawBundle

logger = logging.getLogger(__name__)

QUARANTINE_COLUMNS = [
    "table_name",
    "record_key",
    "reason",
    "raw_row",
    "source_file",
    "source_line",
]
REPLACEMENT_CHAR = "\ufffd"
MAX_DURATION_S = 6 * 3600.0
# Milvus keeps ids as VARCHAR(512) and scalar text as VARCHAR(65535): longer values are
# quarantined here rather than failing a vector write hours later.
MAX_ID_BYTES = 512
MAX_TEXT_BYTES = 65_535
TS_MIN = pd.Timestamp("1900-01-01", tz="UTC")
TS_MAX = pd.Timestamp("2100-01-01", tz="UTC")
TS_DTYPE = "datetime64[us, UTC]"
# Shared with quality.sql_rules, so both engines apply one definition.
WHITESPACE = "".join(
    chr(c)
    for c in (0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x1F, 0x20, 0x85, 0xA0, 0x1680)
    + tuple(range(0x2000, 0x200B))
    + (0x2028, 0x2029, 0x202F, 0x205F, 0x3000)
)  # what pyarrow's utf8_trim_whitespace (and str.isspace) count as white space
ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff"
ZERO_WIDTH_PATTERN = "[\u200b-\u200d\u2060\ufeff]"
NUMBER_PATTERN = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d{1,3})?$"
EPOCH_PATTERN = r"^-?\d{9,16}$"
ISO_TS_PATTERN = (
    r"^\d{4}-\d{2}-\d{2}([T ]([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d{1,9})?)?"
    r"(Z|[+-]([01]\d|2[0-3])(:?[0-5]\d)?)?)?$"
)
ID_COLUMNS = ("user_id", "item_id", "artist_id", "track_id", "tag_id", "friend_id")

GOLDEN_COLUMNS: dict[str, list[str]] = {
    "users": ["user_id"],
    "artists": ["artist_id", "name", "genre", "url"],
    "tracks": ["track_id", "artist_id", "title", "duration_s", "genre"],
    "items": ["item_id", "artist_id", "name", "genre", "level"],
    "tags": ["tag_id", "tag"],
    "listen_events": ["user_id", "item_id", "plays", "ts"],
    "listens": ["user_id", "item_id", "plays", "first_ts", "last_ts"],
    "tag_assignments": ["user_id", "artist_id", "tag", "ts"],
    "artist_text": ["artist_id", "text"],
    "friends": ["user_id", "friend_id"],
}


def reconcile(raw_count: int, golden_count: int, quarantined_count: int) -> bool:
    """True when every raw row is either golden or quarantined, exactly once."""
    return int(raw_count) == int(golden_count) + int(quarantined_count)


def empty_quarantine() -> pd.DataFrame:
    """A quarantine frame with no rows and the standard columns."""
    frame = pd.DataFrame({name: pd.Series(dtype=object) for name in QUARANTINE_COLUMNS})
    frame["source_line"] = frame["source_line"].astype("Int64")
    return frame


@dataclass
class TableResult:
    """The outcome of validating one raw table.

    Attributes
    ----------
    table_name
        The golden table name (``listens`` or ``listen_events`` for listens).
    golden
        Typed rows that passed every rule (columns as in ``GOLDEN_COLUMNS``).
    quarantine
        Rejected rows (columns ``QUARANTINE_COLUMNS``), one reason each.
    raw_rows
        Number of raw rows read.
    notes
        Counts of kept-but-notable values, e.g. ``names_with_replacement_char``.
    """

    table_name: str
    golden: pd.DataFrame
    quarantine: pd.DataFrame
    raw_rows: int
    notes: dict[str, int] = field(default_factory=dict)

    @property
    def reconciles(self) -> bool:
        """raw rows == golden rows + quarantined rows."""
        return reconcile(self.raw_rows, len(self.golden), len(self.quarantine))

    def reason_counts(self) -> dict[str, int]:
        """Quarantined rows per reason code (the text before the colon)."""
        if self.quarantine.empty:
            return {}
        codes = self.quarantine["reason"].str.split(":", n=1).str[0]
        return {str(k): int(v) for k, v in codes.value_counts().items()}


@dataclass
class BundleValidation:
    """All validated tables of one raw bundle.

    Attributes
    ----------
    tables
        One ``TableResult`` per row table present (each reconciles).
    derived
        Golden tables built from validated ones, without rows of their own: ``items`` always,
        ``listens`` for event sources (aggregated from ``listen_events``).
    item_level
        ``"artist"`` or ``"track"``, from the bundle.
    """

    tables: dict[str, TableResult]
    derived: dict[str, pd.DataFrame]
    item_level: str

    def golden(self, name: str) -> pd.DataFrame:
        """The golden frame ``name`` (a row table or a derived one)."""
        if name in self.derived:
            return self.derived[name]
        return self.tables[name].golden

    def quarantine(self) -> pd.DataFrame:
        """Every quarantined row of every table, in one frame."""
        frames = [r.quarantine for r in self.tables.values() if not r.quarantine.empty]
        if not frames:
            return empty_quarantine()
        return pd.concat(frames, ignore_index=True)

    def reconciliation(self) -> pd.DataFrame:
        """Per table: raw, golden and quarantined row counts and whether they reconcile."""
        rows = [
            {
                "table_name": name,
                "raw_rows": r.raw_rows,
                "golden_rows": len(r.golden),
                "quarantined_rows": len(r.quarantine),
                "reconciles": r.reconciles,
            }
            for name, r in self.tables.items()
        ]
        return pd.DataFrame(rows)

    @property
    def reconciles(self) -> bool:
        """True when every table reconciles."""
        return all(r.reconciles for r in self.tables.values())


# --------------------------------------------------------------------------- helpers


def _to_arrow_text(values: pd.Series) -> pa.Array:
    """Text values as an Arrow string array (None, NaN and NA become null)."""
    if isinstance(values.dtype, pd.ArrowDtype) and pa.types.is_string(values.dtype.pyarrow_dtype):
        return pa.array(values.array)
    data = values.to_numpy(dtype=object)
    try:
        return pa.array(data, type=pa.string(), from_pandas=True)
    except (pa.ArrowTypeError, pa.ArrowInvalid):  # non-text values: compare their text form
        text = [None if pd.isna(v) else str(v) for v in data]
        return pa.array(text, type=pa.string())


def _series(array: pa.Array | pa.ChunkedArray, name: str | None = None) -> pd.Series:
    return pd.Series(pd.arrays.ArrowExtensionArray(array), name=name)


def clean_text(values: pd.Series) -> pd.Series:
    """Strip surrounding white space; null and empty values become null.

    Returns an Arrow-backed string Series (``pd.ArrowDtype(pa.string())``) with a fresh index;
    ``to_object`` turns it into plain ``str``/``None`` values.
    """
    array = pc.utf8_trim_whitespace(_to_arrow_text(values))
    array = pc.if_else(pc.equal(array, ""), pa.scalar(None, pa.string()), array)
    return _series(array, values.name)


def clean_id(values: pd.Series) -> pd.Series:
    """Clean an id: drop zero-width characters, strip white space, NFC-normalise; empty -> null.

    Returns an Arrow-backed string Series like :func:`clean_text`.
    """
    array = _to_arrow_text(values)
    if len(array) and not pc.all(pc.fill_null(pc.string_is_ascii(array), True)).as_py():
        array = pc.replace_substring_regex(array, ZERO_WIDTH_PATTERN, "")
        array = pc.utf8_normalize(pc.utf8_trim_whitespace(array), "NFC")
    else:
        array = pc.utf8_trim_whitespace(array)
    array = pc.if_else(pc.equal(array, ""), pa.scalar(None, pa.string()), array)
    return _series(array, values.name)


def to_object(values: pd.Series) -> np.ndarray:
    """Arrow-backed text as an object array of ``str`` and ``None``."""
    if isinstance(values.dtype, pd.ArrowDtype):
        return pa.array(values.array).to_pandas().to_numpy(dtype=object)
    return values.astype(object).where(values.notna(), None).to_numpy(dtype=object)


def _bool(mask: pd.Series | np.ndarray | pa.Array) -> np.ndarray:
    """A plain numpy bool mask; null counts as False."""
    if isinstance(mask, pa.Array | pa.ChunkedArray):
        return pc.fill_null(mask, False).to_numpy(zero_copy_only=False).astype(bool)
    if isinstance(mask, pd.Series):
        return mask.fillna(False).to_numpy(dtype=bool)
    return np.asarray(mask, dtype=bool)


def parse_numbers(text: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Parse decimal text into float64.

    Returns
    -------
    values, is_number
        float64 values (NaN where not a number) and a mask of the values that are plain decimal
        numbers (``12``, ``-3``, ``2.5``, ``1e3``; not ``nan``, ``inf`` or ``1,000``).
    """
    array = _to_arrow_text(text)
    is_number = pc.match_substring_regex(array, NUMBER_PATTERN)
    is_number = pc.fill_null(is_number, False)
    numbers = pc.cast(pc.if_else(is_number, array, pa.scalar(None, pa.string())), pa.float64())
    values = pc.fill_null(numbers, np.nan).to_numpy(zero_copy_only=False)
    return values, _bool(is_number)


def epoch_timestamps(numbers: np.ndarray) -> pd.Series:
    """Epoch numbers to UTC timestamps, the unit read off each value's magnitude: below 1e11
    seconds (up to the year 5138), below 1e14 milliseconds, else microseconds."""
    magnitude = np.abs(numbers)
    micros = np.where(
        magnitude < 10**11,
        numbers * 1_000_000,
        np.where(magnitude < 10**14, numbers * 1000, numbers),
    )
    return pd.Series(pd.to_datetime(micros, unit="us", utc=True, errors="coerce")).astype(TS_DTYPE)


def parse_timestamps(
    text: pd.Series, ts_min: pd.Timestamp = TS_MIN, ts_max: pd.Timestamp = TS_MAX
) -> tuple[pd.Series, pd.Series]:
    """Parse ISO-8601 (the extended form of ``ISO_TS_PATTERN``) or epoch text (9 to 16 digits:
    seconds, milliseconds or microseconds, see :func:`epoch_timestamps`) into UTC timestamps.

    Parameters
    ----------
    text
        Text values (null or empty for none).
    ts_min, ts_max
        Timestamps outside ``[ts_min, ts_max)`` count as unparseable.

    Returns
    -------
    parsed, bad
        ``datetime64[us, UTC]`` values (NaT where empty or bad) and a mask of the values that
        were given but could not be parsed; both with a fresh 0..n-1 index.
    """
    array = _to_arrow_text(clean_text(text))
    present = _bool(pc.is_valid(array))
    parsed = pd.Series(pd.NaT, index=range(len(array)), dtype=TS_DTYPE)
    if not present.any():
        return parsed, pd.Series(present)
    is_epoch = _bool(pc.match_substring_regex(array, EPOCH_PATTERN))
    if is_epoch.any():
        numbers = pc.cast(pc.filter(array, is_epoch), pa.int64()).to_numpy()
        parsed.iloc[np.flatnonzero(is_epoch)] = epoch_timestamps(numbers)
    is_iso = present & ~is_epoch & _bool(pc.match_substring_regex(array, ISO_TS_PATTERN))
    if is_iso.any():
        given = pc.filter(array, is_iso).to_pandas().to_numpy(dtype=object)
        iso = pd.to_datetime(given, format="ISO8601", utc=True, errors="coerce")
        parsed.iloc[np.flatnonzero(is_iso)] = iso.astype(TS_DTYPE)
    out_of_range = parsed.notna() & ((parsed < ts_min) | (parsed >= ts_max))
    parsed = parsed.where(~out_of_range, pd.NaT).astype(TS_DTYPE)
    bad = pd.Series(present & parsed.isna().to_numpy())
    return parsed, bad


def _combined_codes(columns: list[pd.Series]) -> np.ndarray:
    """One int64 code per row that is equal exactly when all ``columns`` are equal."""
    codes = np.zeros(len(columns[0]), dtype=np.int64)
    for column in columns:
        column_codes, uniques = pd.factorize(column, use_na_sentinel=False)
        codes = codes * (len(uniques) + 1) + column_codes
        if len(columns) > 1 and codes.max(initial=0) > 2**40:
            codes, _ = pd.factorize(codes)
            codes = codes.astype(np.int64)
    return codes


class _RowChecker:
    """Assigns each raw row at most one reason: the first failing rule, in call order."""

    def __init__(self, raw: pd.DataFrame, table_name: str, key_columns: list[str]) -> None:
        self.raw = raw.reset_index(drop=True)
        self.table_name = table_name
        self.key_columns = key_columns
        self.reasons = np.full(len(self.raw), None, dtype=object)
        self.flagged = np.zeros(len(self.raw), dtype=bool)

    @property
    def pending(self) -> np.ndarray:
        """Rows with no reason yet."""
        return ~self.flagged

    def flag(
        self, mask: pd.Series | np.ndarray, code: str, detail: Callable[[np.ndarray], pd.Series]
    ) -> None:
        """Set ``code: detail`` on rows in ``mask`` that have no reason yet.

        ``detail`` receives the positions of the newly flagged rows and returns their detail
        texts (only computed for those rows).
        """
        hit = _bool(mask) & self.pending
        if not hit.any():
            return
        positions = np.flatnonzero(hit)
        texts = np.asarray(detail(positions), dtype=object)
        self.reasons[positions] = [f"{code}: {text}" for text in texts]
        self.flagged[positions] = True

    def missing_ids(self, ids: dict[str, pd.Series], nullable: tuple[str, ...] = ()) -> None:
        """Flag null/empty ids (except ``nullable`` columns) and ids holding U+FFFD."""
        for name, values in ids.items():
            if name in nullable:
                continue
            self.flag(values.isna().to_numpy(), "id_missing", lambda p, n=name: _const(p, n))
        self.too_long(ids, MAX_ID_BYTES, "id_too_long")
        for name, values in ids.items():
            bad = values.str.contains(REPLACEMENT_CHAR, regex=False, na=False)
            self.flag(
                bad.to_numpy(dtype=bool),
                "id_undecodable",
                lambda p, n=name, v=values: [
                    f"{n}={v.iloc[i]!r} holds undecodable bytes" for i in p
                ],
            )

    def too_long(self, values: dict[str, pd.Series], limit: int, code: str) -> None:
        """Flag values longer than ``limit`` UTF-8 bytes (what downstream stores accept)."""
        for name, column in values.items():
            sizes = column.fillna("").astype(str).str.encode("utf-8").str.len()
            self.flag(
                (sizes > limit).to_numpy(dtype=bool),
                code,
                lambda p, n=name, c=column, z=sizes: [
                    f"{n} is {int(z.iloc[i])} bytes (limit {limit}): {str(c.iloc[i])[:40]!r}..."
                    for i in p
                ],
            )

    def unknown(self, values: pd.Series, known: pd.Series, code: str, what: str) -> None:
        """Flag non-null ``values`` not in ``known``."""
        known_values = pd.unique(to_object(known.dropna()))
        missing = _bool(values.notna()) & ~_bool(values.isin(known_values))
        self.flag(
            missing,
            code,
            lambda p: [f"{values.name}={values.iloc[i]!r} is not in {what}" for i in p],
        )

    def duplicates(
        self,
        columns: list[pd.Series],
        code: str = "duplicate_key",
        among: np.ndarray | None = None,
    ) -> None:
        """Among rows still pending (and in ``among``), flag those whose key repeats an earlier one."""
        pending = self.pending if among is None else self.pending & among
        if not pending.any():
            return
        codes = _combined_codes([c[pending] for c in columns])
        keys = pd.Series(codes, index=np.flatnonzero(pending))
        repeated = keys.duplicated(keep="first")
        if not repeated.any():
            return
        lines = self.raw["_source_line"]
        first_line = pd.Series(
            lines.to_numpy()[keys.index[~repeated]], index=keys[~repeated].to_numpy()
        )
        mask = np.zeros(len(self.raw), dtype=bool)
        mask[keys.index[repeated]] = True
        names = [c.name for c in columns]

        def detail(positions: np.ndarray) -> list[str]:
            firsts = first_line.reindex(keys.loc[positions].to_numpy()).to_numpy()
            return [
                ", ".join(f"{n}={c.iloc[i]!r}" for n, c in zip(names, columns, strict=True))
                + f" repeats line {first}"
                for i, first in zip(positions, firsts, strict=True)
            ]

        self.flag(mask, code, detail)

    def quarantine(self) -> pd.DataFrame:
        """The quarantine frame of the flagged rows."""
        flagged = ~self.pending
        if not flagged.any():
            return empty_quarantine()
        rows = self.raw[flagged]
        rows = rows.astype(object).where(rows.notna(), None)
        key = rows[self.key_columns[0]].fillna("").astype(str)
        for name in self.key_columns[1:]:
            key = key + "|" + rows[name].fillna("").astype(str)
        raw_rows = [
            json.dumps(record, ensure_ascii=False, default=str)
            for record in rows.to_dict("records")
        ]
        frame = pd.DataFrame(
            {
                "table_name": self.table_name,
                "record_key": key.to_numpy(),
                "reason": self.reasons[flagged],
                "raw_row": raw_rows,
                "source_file": rows["_source_file"].to_numpy() if "_source_file" in rows else None,
                "source_line": rows["_source_line"].to_numpy() if "_source_line" in rows else None,
            }
        )
        frame["source_line"] = pd.array(frame["source_line"], dtype="Int64")
        return frame

    def result(self, golden: pd.DataFrame, notes: dict[str, int] | None = None) -> TableResult:
        """Package ``golden`` (already restricted to pending rows) with the quarantine."""
        quarantine = self.quarantine()
        result = TableResult(
            table_name=self.table_name,
            golden=golden.reset_index(drop=True),
            quarantine=quarantine,
            raw_rows=len(self.raw),
            notes=notes or {},
        )
        if not result.reconciles:  # a bug here must never lose rows silently
            raise AssertionError(f"{self.table_name}: rows do not reconcile")
        if len(quarantine):
            logger.info(
                "%s: %d quarantined %s", self.table_name, len(quarantine), result.reason_counts()
            )
        return result


def _const(positions: np.ndarray, name: str) -> list[str]:
    return [f"{name} is empty"] * len(positions)


def _column(raw: pd.DataFrame, name: str) -> pd.Series:
    """Cleaned text of column ``name`` (all null when the raw table lacks it), Arrow-backed.

    Id columns (``ID_COLUMNS``) are cleaned with :func:`clean_id`, others with
    :func:`clean_text`.
    """
    if name in raw.columns:
        clean = clean_id if name in ID_COLUMNS else clean_text
        return clean(raw[name].reset_index(drop=True).rename(name))
    return _series(pa.nulls(len(raw), pa.string()), name)


def _text(values: pd.Series, keep: np.ndarray) -> np.ndarray:
    """The kept rows of a cleaned text column as ``str``/``None`` objects."""
    return to_object(values[keep])


def _require_columns(raw: pd.DataFrame, table: str, columns: list[str]) -> None:
    missing = [c for c in columns if c not in raw.columns]
    if missing:
        raise ValueError(
            f"raw {table} lacks column(s) {missing}; pass the frame from a sources reader "
            f"(RawBundle.table({table!r})), which always has the contract columns"
        )


def _ids_of(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame.columns:
        raise ValueError(f"golden frame lacks {column!r}; pass the golden table, not the raw one")
    return frame[column]


def _parse_plays(checker: _RowChecker, plays_text: pd.Series) -> np.ndarray:
    numbers, is_number = parse_numbers(plays_text)
    checker.flag(
        ~is_number, "plays_not_numeric", lambda p: [f"plays={plays_text.iloc[i]!r}" for i in p]
    )
    with np.errstate(invalid="ignore"):
        fraction = is_number & (np.mod(numbers, 1) != 0)
        too_big = is_number & (np.abs(numbers) >= 2**53)
        not_positive = is_number & (numbers <= 0)
    checker.flag(
        fraction, "plays_not_integer", lambda p: [f"plays={plays_text.iloc[i]!r}" for i in p]
    )
    checker.flag(
        not_positive, "plays_not_positive", lambda p: [f"plays={plays_text.iloc[i]}" for i in p]
    )
    checker.flag(
        too_big,
        "plays_not_integer",
        lambda p: [f"plays={plays_text.iloc[i]} is too large" for i in p],
    )
    return numbers


def _check_ts(checker: _RowChecker, ts_text: pd.Series) -> pd.Series:
    parsed, bad = parse_timestamps(ts_text)
    checker.flag(bad, "ts_unparseable", lambda p: [f"ts={ts_text.iloc[i]!r}" for i in p])
    return parsed


# --------------------------------------------------------------------------- tables


def validate_users(raw: pd.DataFrame) -> TableResult:
    """Users: id present and decodable, unique. Golden columns: ``user_id``."""
    _require_columns(raw, "users", ["user_id"])
    checker = _RowChecker(raw, "users", ["user_id"])
    user_id = _column(raw, "user_id")
    checker.missing_ids({"user_id": user_id})
    checker.duplicates([user_id])
    keep = checker.pending
    return checker.result(pd.DataFrame({"user_id": _text(user_id, keep)}))


def validate_artists(raw: pd.DataFrame) -> TableResult:
    """Artists: id present, decodable, unique. Golden: artist_id, name, genre, url.

    Names with U+FFFD or empty names are kept and counted in ``notes``.
    """
    _require_columns(raw, "artists", ["artist_id", "name"])
    checker = _RowChecker(raw, "artists", ["artist_id"])
    artist_id = _column(raw, "artist_id")
    checker.missing_ids({"artist_id": artist_id})
    name = _column(raw, "name")
    checker.too_long({"name": name}, MAX_TEXT_BYTES, "text_too_long")
    checker.duplicates([artist_id])
    keep = checker.pending
    golden = pd.DataFrame(
        {
            "artist_id": _text(artist_id, keep),
            "name": _text(name, keep),
            "genre": _text(_column(raw, "genre"), keep),
            "url": _text(_column(raw, "url"), keep),
        }
    )
    kept_names = name[keep]
    notes = {
        "names_with_replacement_char": int(
            kept_names.str.contains(REPLACEMENT_CHAR, regex=False, na=False).sum()
        ),
        "names_missing": int(kept_names.isna().sum()),
    }
    return checker.result(golden, notes)


def validate_tracks(
    raw: pd.DataFrame, artists: pd.DataFrame, max_duration_s: float = MAX_DURATION_S
) -> TableResult:
    """Tracks: ids present, unique, artist known, duration in (0, max]. Empty duration is null.

    Golden: track_id, artist_id, title, duration_s (float64), genre.
    """
    _require_columns(raw, "tracks", ["track_id", "artist_id"])
    checker = _RowChecker(raw, "tracks", ["track_id"])
    track_id, artist_id = _column(raw, "track_id"), _column(raw, "artist_id")
    checker.missing_ids({"track_id": track_id, "artist_id": artist_id})
    checker.too_long({"title": _column(raw, "title")}, MAX_TEXT_BYTES, "text_too_long")
    duration_text = _column(raw, "duration_s")
    duration, is_number = parse_numbers(duration_text)
    given = _bool(duration_text.notna())
    with np.errstate(invalid="ignore"):
        bad_duration = given & (~is_number | (duration <= 0) | (duration > max_duration_s))
    checker.flag(
        bad_duration,
        "duration_invalid",
        lambda p: [
            f"duration_s={duration_text.iloc[i]!r} (must be a number in (0, {max_duration_s:g}])"
            for i in p
        ],
    )
    checker.unknown(artist_id, _ids_of(artists, "artist_id"), "unknown_artist", "artists")
    checker.duplicates([track_id])
    keep = checker.pending
    golden = pd.DataFrame(
        {
            "track_id": _text(track_id, keep),
            "artist_id": _text(artist_id, keep),
            "title": _text(_column(raw, "title"), keep),
            "duration_s": duration[keep].astype("float64"),
            "genre": _text(_column(raw, "genre"), keep),
        }
    )
    return checker.result(golden, {"titles_missing": int(golden["title"].isna().sum())})


def build_items(
    artists: pd.DataFrame,
    tracks: pd.DataFrame | None,
    level: Literal["artist", "track"],
) -> pd.DataFrame:
    """The catalogue items that listens refer to (no quarantine of its own).

    At artist level items are the artists; at track level they are the tracks, with the artist's
    genre where the track has none. Columns: item_id, artist_id, name, genre, level.
    """
    if level == "artist":
        items = pd.DataFrame(
            {
                "item_id": artists["artist_id"],
                "artist_id": artists["artist_id"],
                "name": artists["name"],
                "genre": artists["genre"],
            }
        )
    elif level == "track":
        if tracks is None:
            raise ValueError("item level 'track' needs the golden tracks table; pass tracks")
        artist_genre = tracks["artist_id"].map(artists.set_index("artist_id")["genre"])
        genre = tracks["genre"].where(tracks["genre"].notna(), artist_genre)
        items = pd.DataFrame(
            {
                "item_id": tracks["track_id"],
                "artist_id": tracks["artist_id"],
                "name": tracks["title"],
                "genre": genre.astype(object).where(genre.notna(), None),
            }
        )
    else:
        raise ValueError(f"level must be 'artist' or 'track', got {level!r}")
    items["level"] = level
    return items.reset_index(drop=True).astype(object)


def validate_tags(raw: pd.DataFrame) -> TableResult:
    """Tags: tag_id present and unique, tag text present. Golden: tag_id, tag."""
    _require_columns(raw, "tags", ["tag_id", "tag"])
    checker = _RowChecker(raw, "tags", ["tag_id"])
    tag_id, tag = _column(raw, "tag_id"), _column(raw, "tag")
    checker.missing_ids({"tag_id": tag_id})
    checker.flag(tag.isna().to_numpy(), "text_missing", lambda p: ["tag is empty"] * len(p))
    checker.duplicates([tag_id])
    keep = checker.pending
    golden = pd.DataFrame({"tag_id": _text(tag_id, keep), "tag": _text(tag, keep)})
    notes = {
        "tags_with_replacement_char": int(
            tag[keep].str.contains(REPLACEMENT_CHAR, regex=False, na=False).sum()
        )
    }
    return checker.result(golden, notes)


def validate_listens(
    raw: pd.DataFrame,
    users: pd.DataFrame,
    items: pd.DataFrame,
    kind: Literal["aggregated", "events"] = "aggregated",
) -> TableResult:
    """Listens: ids present and known, plays a positive integer, ts parseable, no duplicates.

    Parameters
    ----------
    raw
        The raw listens table (user_id, item_id, plays, ts, lineage).
    users, items
        Golden users (``user_id``) and items (``item_id``, see ``build_items``).
    kind
        ``"aggregated"``: one row per user and item; a repeated (user_id, item_id) is a
        ``duplicate_key``; golden table ``listens`` with ``first_ts = last_ts = ts`` (NaT when
        absent). ``"events"``: one row per play; an exact repeat is a ``duplicate_event``;
        golden table ``listen_events`` (aggregate it with ``aggregate_listen_events``).

    Returns
    -------
    TableResult
        Named ``listens`` or ``listen_events``.
    """
    if kind not in ("aggregated", "events"):
        raise ValueError(f"kind must be 'aggregated' or 'events', got {kind!r}")
    _require_columns(raw, "listens", ["user_id", "item_id", "plays"])
    table_name = "listens" if kind == "aggregated" else "listen_events"
    checker = _RowChecker(raw, table_name, ["user_id", "item_id"])
    user_id, item_id = _column(raw, "user_id"), _column(raw, "item_id")
    plays_text, ts_text = _column(raw, "plays"), _column(raw, "ts")
    checker.missing_ids({"user_id": user_id, "item_id": item_id})
    plays = _parse_plays(checker, plays_text)
    ts = _check_ts(checker, ts_text)
    if kind == "events":
        checker.flag(ts.isna().to_numpy(), "ts_unparseable", lambda p: ["ts is empty"] * len(p))
    level = str(items["level"].iloc[0]) if "level" in items.columns and len(items) else "item"
    checker.unknown(user_id, _ids_of(users, "user_id"), "unknown_user", "users")
    checker.unknown(item_id, _ids_of(items, "item_id"), "unknown_item", f"{level} items")
    if kind == "aggregated":
        checker.duplicates([user_id, item_id], "duplicate_key")
    else:
        checker.duplicates([user_id, item_id, plays_text, ts_text], "duplicate_event")
    keep = checker.pending
    golden = pd.DataFrame(
        {
            "user_id": _text(user_id, keep),
            "item_id": _text(item_id, keep),
            "plays": plays[keep].astype("int64"),
        }
    )
    kept_ts = ts[keep].reset_index(drop=True)
    if kind == "aggregated":
        golden["first_ts"] = kept_ts
        golden["last_ts"] = kept_ts
    else:
        golden["ts"] = kept_ts
    return checker.result(golden)


def aggregate_listen_events(events: pd.DataFrame) -> pd.DataFrame:
    """Golden ``listens`` from golden ``listen_events``: plays summed, first and last ts."""
    if events.empty:
        return pd.DataFrame(
            {
                "user_id": pd.Series(dtype=object),
                "item_id": pd.Series(dtype=object),
                "plays": pd.Series(dtype="int64"),
                "first_ts": pd.Series(dtype=TS_DTYPE),
                "last_ts": pd.Series(dtype=TS_DTYPE),
            }
        )
    grouped = events.groupby(["user_id", "item_id"], sort=False, observed=True)
    listens = grouped.agg(
        plays=("plays", "sum"), first_ts=("ts", "min"), last_ts=("ts", "max")
    ).reset_index()
    listens["plays"] = listens["plays"].astype("int64")
    listens["first_ts"] = listens["first_ts"].astype(TS_DTYPE)
    listens["last_ts"] = listens["last_ts"].astype(TS_DTYPE)
    return listens[GOLDEN_COLUMNS["listens"]]


def validate_tag_assignments(
    raw: pd.DataFrame, users: pd.DataFrame, artists: pd.DataFrame, tags: pd.DataFrame
) -> TableResult:
    """Tag assignments: artist and tag known, user known when given, ts parseable.

    A row whose (user_id, artist_id, tag_id) repeats an earlier one is a ``duplicate_key``
    when user_id is given; rows without a user each count as one anonymous tagging.
    Golden: user_id (nullable), artist_id, tag (text from ``tags``), ts (nullable).
    """
    _require_columns(raw, "tag_assignments", ["artist_id", "tag_id"])
    checker = _RowChecker(raw, "tag_assignments", ["user_id", "artist_id", "tag_id"])
    user_id, artist_id = _column(raw, "user_id"), _column(raw, "artist_id")
    tag_id, ts_text = _column(raw, "tag_id"), _column(raw, "ts")
    checker.missing_ids(
        {"user_id": user_id, "artist_id": artist_id, "tag_id": tag_id}, nullable=("user_id",)
    )
    ts = _check_ts(checker, ts_text)
    checker.unknown(artist_id, _ids_of(artists, "artist_id"), "unknown_artist", "artists")
    checker.unknown(tag_id, _ids_of(tags, "tag_id"), "unknown_tag", "tags")
    checker.unknown(user_id, _ids_of(users, "user_id"), "unknown_user", "users")
    checker.duplicates([user_id, artist_id, tag_id], among=user_id.notna().to_numpy())
    keep = checker.pending
    tag_text = pd.Series(_text(tag_id, keep)).map(tags.set_index("tag_id")["tag"])
    golden = pd.DataFrame(
        {
            "user_id": _text(user_id, keep),
            "artist_id": _text(artist_id, keep),
            "tag": tag_text.to_numpy(dtype=object),
            "ts": ts[keep].reset_index(drop=True),
        }
    )
    return checker.result(golden)


def validate_artist_text(raw: pd.DataFrame, artists: pd.DataFrame) -> TableResult:
    """Artist text: artist known, text present, one text per artist. Golden: artist_id, text."""
    _require_columns(raw, "artist_text", ["artist_id", "text"])
    checker = _RowChecker(raw, "artist_text", ["artist_id"])
    artist_id, text = _column(raw, "artist_id"), _column(raw, "text")
    checker.missing_ids({"artist_id": artist_id})
    checker.flag(text.isna().to_numpy(), "text_missing", lambda p: ["text is empty"] * len(p))
    checker.unknown(artist_id, _ids_of(artists, "artist_id"), "unknown_artist", "artists")
    checker.duplicates([artist_id])
    keep = checker.pending
    return checker.result(
        pd.DataFrame({"artist_id": _text(artist_id, keep), "text": _text(text, keep)})
    )


def validate_friends(raw: pd.DataFrame, users: pd.DataFrame) -> TableResult:
    """Friends: both users known, not oneself, each directed pair once."""
    _require_columns(raw, "friends", ["user_id", "friend_id"])
    checker = _RowChecker(raw, "friends", ["user_id", "friend_id"])
    user_id, friend_id = _column(raw, "user_id"), _column(raw, "friend_id")
    checker.missing_ids({"user_id": user_id, "friend_id": friend_id})
    checker.flag(
        user_id == friend_id,
        "friend_is_self",
        lambda p: [f"user_id={user_id.iloc[i]!r} lists themself" for i in p],
    )
    known = _ids_of(users, "user_id")
    checker.unknown(user_id, known, "unknown_user", "users")
    checker.unknown(friend_id, known, "unknown_user", "users")
    checker.duplicates([user_id, friend_id])
    keep = checker.pending
    return checker.result(
        pd.DataFrame({"user_id": _text(user_id, keep), "friend_id": _text(friend_id, keep)})
    )


def validate_bundle(bundle: RawBundle, max_duration_s: float = MAX_DURATION_S) -> BundleValidation:
    """Validate every table of a ``sources.base.RawBundle`` in dependency order.

    Parameters
    ----------
    bundle
        A ``RawBundle`` (has ``table(name)``, ``tables``, ``item_level``, ``listens_kind``).
    max_duration_s
        Longest plausible track, in seconds.

    Returns
    -------
    BundleValidation
        Row tables (users, artists, tracks, tags, listens or listen_events, tag_assignments,
        artist_text, friends; absent optional tables are skipped) and derived ``items`` and
        ``listens``.
    """
    present = set(bundle.tables)
    level = bundle.item_level
    kind = bundle.listens_kind
    results: dict[str, TableResult] = {}
    results["users"] = validate_users(bundle.table("users"))
    results["artists"] = validate_artists(bundle.table("artists"))
    artists = results["artists"].golden
    tracks = None
    if "tracks" in present:
        results["tracks"] = validate_tracks(bundle.table("tracks"), artists, max_duration_s)
        tracks = results["tracks"].golden
    items = build_items(artists, tracks, level)
    users = results["users"].golden
    listens = validate_listens(bundle.table("listens"), users, items, kind)
    results[listens.table_name] = listens
    derived = {"items": items}
    if kind == "events":
        derived["listens"] = aggregate_listen_events(listens.golden)
    tags = validate_tags(bundle.table("tags"))
    if "tags" in present:
        results["tags"] = tags
    if "tag_assignments" in present:
        results["tag_assignments"] = validate_tag_assignments(
            bundle.table("tag_assignments"), users, artists, tags.golden
        )
    if "artist_text" in present:
        results["artist_text"] = validate_artist_text(bundle.table("artist_text"), artists)
    if "friends" in present:
        results["friends"] = validate_friends(bundle.table("friends"), users)
    return BundleValidation(tables=results, derived=derived, item_level=level)
