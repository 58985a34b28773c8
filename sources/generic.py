"""Read a directory of CSV or Parquet files that a user brings (the "generic" format).

Format
------
One file per table, named ``<table>.csv`` or ``<table>.parquet`` (not both), in one directory.
CSV files are comma-separated, UTF-8, with a header row; column names are matched after trimming
spaces and lower-casing. Every value is read as text; typing and checks happen in
``quality.rules``. Extra columns are ignored and listed in ``RawBundle.notes``.

==================  ===========================  ====================  =========================
file                required columns             optional columns      notes
==================  ===========================  ====================  =========================
``listens``         user_id, item_id, plays      ts                    required
``artists``         artist_id, name              genre, url            required
``tracks``          track_id, artist_id, title   duration_s, genre     if present, items = tracks
``users``           user_id                                            else derived from listens
``tag_assignments`` artist_id, tag               user_id, ts           tags table is derived
``artist_text``     artist_id, text                                    free text per artist
``friends``         user_id, friend_id
``audio_files``     track_id, path                                     path relative to the dir
==================  ===========================  ====================  =========================

- ``item_id`` in ``listens`` refers to ``tracks.track_id`` when ``tracks`` is present and to
  ``artists.artist_id`` otherwise.
- ``ts`` is ISO-8601 text (``2026-11-16T08:00:00Z``) or an epoch number in seconds, milliseconds
  or microseconds (the unit is read off its size: 1795000000, 1795000000000, ...). When ``ts`` is filled
  in every row of ``listens`` the rows are play events (one row per play, ``plays`` usually 1);
  otherwise they are aggregated play counts per user and item.
- ``plays`` is a positive integer. Rows that break a rule are quarantined with a reason, never
  dropped silently; see ``quality.rules``.
- Bytes that are not UTF-8 become U+FFFD (the replacement character); ids holding it are
  quarantined, names holding it are kept and counted.

This module also holds the delimited-text reader that the HetRec and sample readers share.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from sources.base import LINEAGE_COLUMNS, RAW_COLUMNS, RawBundle, Source, SourceError

logger = logging.getLogger(__name__)

DELIMITER_NAMES = {",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe"}


@dataclass(frozen=True)
class TableSpec:
    """Columns a generic file must and may have."""

    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    is_required: bool = False


GENERIC_TABLES: dict[str, TableSpec] = {
    "listens": TableSpec(("user_id", "item_id", "plays"), ("ts",), is_required=True),
    "artists": TableSpec(("artist_id", "name"), ("genre", "url"), is_required=True),
    "tracks": TableSpec(("track_id", "artist_id", "title"), ("duration_s", "genre")),
    "users": TableSpec(("user_id",)),
    "tag_assignments": TableSpec(("artist_id", "tag"), ("user_id", "ts")),
    "artist_text": TableSpec(("artist_id", "text")),
    "friends": TableSpec(("user_id", "friend_id")),
    "audio_files": TableSpec(("track_id", "path")),
}


def decode_lines(
    data: bytes, fallback: Literal["latin-1", "replace"] = "replace"
) -> tuple[str, list[int]]:
    """Decode bytes as UTF-8, line by line falling back where a line is not UTF-8.

    Parameters
    ----------
    data
        The raw file content.
    fallback
        ``"latin-1"`` decodes a non-UTF-8 line as ISO-8859-1 (old Last.fm dumps);
        ``"replace"`` keeps UTF-8 and puts U+FFFD for each undecodable byte.

    Returns
    -------
    text, fallback_lines
        The text with ``\\r\\n`` turned into ``\\n``, and the 1-based numbers of the lines that
        needed the fallback.
    """
    try:
        text = data.decode("utf-8")
        fallback_lines: list[int] = []
    except UnicodeDecodeError:
        lines = data.split(b"\n")
        decoded = []
        fallback_lines = []
        for number, line in enumerate(lines, start=1):
            try:
                decoded.append(line.decode("utf-8"))
            except UnicodeDecodeError:
                fallback_lines.append(number)
                if fallback == "latin-1":
                    decoded.append(line.decode("latin-1"))
                else:
                    decoded.append(line.decode("utf-8", errors="replace"))
        text = "\n".join(decoded)
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    return text, fallback_lines


def _describe_lines(lines: list[int], limit: int = 10) -> str:
    shown = ", ".join(str(n) for n in lines[:limit])
    more = f" and {len(lines) - limit} more" if len(lines) > limit else ""
    return f"{shown}{more}"


def read_delimited(
    path: Path,
    required: list[str],
    delimiter: str,
    *,
    optional: list[str] | None = None,
    normalise_header: bool = False,
    quoting: int = csv.QUOTE_MINIMAL,
    fallback: Literal["latin-1", "replace"] = "replace",
    fix_hint: str = "",
    arrow_strings: bool = False,
) -> tuple[pd.DataFrame, list[int], list[str]]:
    """Read a delimited text file with a header into a frame of text plus lineage columns.

    Parameters
    ----------
    path
        The file. Must exist and hold a header.
    required
        Column names that must be in the header (after normalisation when asked).
    delimiter
        The delimiter the format expects.
    optional
        Column names read when present; absent ones are not added here.
    normalise_header
        Trim and lower-case header names before matching.
    quoting
        ``csv.QUOTE_MINIMAL`` for CSV, ``csv.QUOTE_NONE`` for formats without quoting (.dat).
    fallback
        How to decode lines that are not UTF-8, see ``decode_lines``.
    fix_hint
        Appended to error messages, e.g. where the format is documented.
    arrow_strings
        Return text columns as ``pd.ArrowDtype(pa.string())`` instead of ``str`` objects:
        several times faster for millions of rows and zero-copy into DuckDB.

    Returns
    -------
    frame, fallback_lines, extra_columns
        Columns ``required`` + present ``optional`` as text (empty fields are ``""``), plus
        ``_source_file`` and ``_source_line`` (1-based physical line, header = line 1); the
        lines decoded by the fallback; and header names that were not asked for.

    Raises
    ------
    SourceError
        Missing file, empty file, no header, wrong delimiter, missing required column, or a row
        with more fields than the header.
    """
    optional = optional or []
    header, wanted, extra = read_header(
        path, required, delimiter, optional, normalise_header, fallback, fix_hint
    )
    data = path.read_bytes()
    fallback_lines: list[int] = []
    frame = _read_with_arrow(data, header, wanted, delimiter, quoting, arrow_strings)
    if frame is None:  # not strict CSV or not UTF-8: decode line by line, parse with pandas
        text, fallback_lines = decode_lines(data, fallback)
        frame = _read_with_pandas(path, text, header, delimiter, quoting, fix_hint)
        if arrow_strings:
            frame = frame.astype(pd.ArrowDtype(pa.string()))
    frame = frame[wanted]
    frame["_source_file"] = str(path)
    frame["_source_line"] = _record_lines(path, data, frame, header, delimiter, quoting, fix_hint)
    return frame, fallback_lines, extra


FREE_TEXT_COLUMNS = {"name", "title", "text", "tag", "url", "genre", "path"}


def read_header(
    path: Path,
    required: list[str],
    delimiter: str,
    optional: list[str] | None = None,
    normalise_header: bool = False,
    fallback: Literal["latin-1", "replace"] = "replace",
    fix_hint: str = "",
) -> tuple[list[str], list[str], list[str]]:
    """Read and check the header of a delimited file (only its first bytes are read).

    Returns
    -------
    header, wanted, extra
        Every header name (normalised when asked), the names to read (``required`` + present
        ``optional``) and the others.

    Raises
    ------
    SourceError
        Missing file, empty file, repeated or missing columns, wrong delimiter.
    """
    optional = optional or []
    expected_name = DELIMITER_NAMES.get(delimiter, repr(delimiter))
    if not path.is_file():
        raise SourceError(
            f"{path}: required file not found. Put the file there or point the source at the "
            f"directory that holds it.{fix_hint}"
        )
    with path.open("rb") as handle:
        data = handle.read(1 << 20)
        while data and re.search(rb"\S", data) is None:  # blank so far: look further
            more = handle.read(1 << 20)
            if not more:
                data = b""
                break
            data = data[-4:] + more
        while data and b"\n" not in data:  # a header longer than the first read
            more = handle.read(1 << 20)
            if not more:
                break
            data += more
    if re.search(rb"\S", data) is None:
        raise SourceError(
            f"{path}: file is empty (no header row); expected a {expected_name}-separated header "
            f"with columns {', '.join(required)}. Re-export the file with its header and rows."
            f"{fix_hint}"
        )
    end = data.find(b"\n")
    header_line, _ = decode_lines(data[: end if end >= 0 else len(data)].rstrip(b"\r"), fallback)
    header = _split_header(header_line, delimiter, normalise_header)
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise SourceError(
            f"{path}: column(s) {', '.join(repr(r) for r in repeated)} appear more than once in "
            f"the header {header!r}. Rename or remove the repeated column(s).{fix_hint}"
        )
    missing = [name for name in required if name not in header]
    if missing:
        _raise_header_error(path, header_line, header, missing, required, delimiter, fix_hint)
    wanted = list(required) + [name for name in optional if name in header]
    extra = [name for name in header if name not in wanted]
    return header, wanted, extra


def _record_lines(
    path: Path,
    data: bytes,
    frame: pd.DataFrame,
    header: list[str],
    delimiter: str,
    quoting: int,
    fix_hint: str,
) -> np.ndarray:
    """The physical line each record starts on (header = line 1).

    One line per record unless a quoted field spans lines; then the lines are counted with the
    csv module. In a table without free text (listens, users, tags...), a quoted field spanning
    lines that hold the delimiter is a stray quote that swallowed rows: the file is rejected
    with its line numbers instead of losing them silently.
    """
    spans = [
        frame[c].astype(str).str.contains("\n", regex=False).to_numpy(dtype=bool)
        for c in frame.columns
    ]
    if not any(mask.any() for mask in spans):
        return np.arange(2, len(frame) + 2, dtype=np.int64)
    # tables without free text cannot hold a line break in a field: one that does swallowed rows
    strict = not set(frame.columns) & FREE_TEXT_COLUMNS
    text, _ = decode_lines(data, "replace")
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, quoting=quoting)
    next(reader, None)
    starts, end = [], reader.line_num
    for record in reader:
        if not any(field.strip() for field in record):
            end = reader.line_num
            continue
        starts.append(end + 1)
        for field in record if strict else []:
            if "\n" in field and any(delimiter in line for line in field.split("\n")[1:]):
                raise SourceError(
                    f"{path}: a quoted field opened on line {end + 1} runs to line "
                    f"{reader.line_num} and swallows {field.count(chr(10))} lines that look like "
                    f"records (a stray quote?). Fix or remove the quote; no row was loaded."
                    f"{fix_hint}"
                )
        end = reader.line_num
    if len(starts) != len(frame):
        return np.arange(2, len(frame) + 2, dtype=np.int64)
    return np.asarray(starts, dtype=np.int64)


def _read_with_arrow(
    data: bytes,
    header: list[str],
    wanted: list[str],
    delimiter: str,
    quoting: int,
    arrow_strings: bool,
) -> pd.DataFrame | None:
    """Fast path: pyarrow's multi-threaded CSV reader. None when it cannot parse the file
    strictly (blank lines, ragged rows, quoted newlines); the pandas path then reads it and
    reports errors precisely."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        table = pa_csv.read_csv(
            pa.py_buffer(data),
            read_options=pa_csv.ReadOptions(column_names=header, skip_rows=1),
            parse_options=pa_csv.ParseOptions(
                delimiter=delimiter,
                quote_char=False if quoting == csv.QUOTE_NONE else '"',
                ignore_empty_lines=False,
            ),
            convert_options=pa_csv.ConvertOptions(
                column_types={name: pa.string() for name in header},
                include_columns=wanted,
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        logger.debug("pyarrow could not parse strictly (%s); reading with pandas", error)
        return None
    if arrow_strings:
        return table.to_pandas(types_mapper=pd.ArrowDtype)
    return table.to_pandas()


def _read_with_pandas(
    path: Path, text: str, header: list[str], delimiter: str, quoting: int, fix_hint: str
) -> pd.DataFrame:
    expected_name = DELIMITER_NAMES.get(delimiter, repr(delimiter))
    try:
        return pd.read_csv(
            io.StringIO(text),
            sep=delimiter,
            header=0,
            names=header,
            dtype=str,
            na_filter=False,
            quoting=quoting,
            skip_blank_lines=False,
            engine="c",
            index_col=False,
        )
    except pd.errors.ParserError as error:
        raise SourceError(
            f"{path}: a row has more fields than the header ({error}). Check that values holding "
            f"the delimiter {expected_name!s} are quoted, or remove the stray delimiter.{fix_hint}"
        ) from error


def _split_header(header_line: str, delimiter: str, normalise: bool) -> list[str]:
    names = next(csv.reader([header_line], delimiter=delimiter))
    if normalise:
        return [name.strip().lower() for name in names]
    return [name.strip() for name in names]


def _raise_header_error(
    path: Path,
    header_line: str,
    header: list[str],
    missing: list[str],
    required: list[str],
    delimiter: str,
    fix_hint: str,
) -> None:
    expected_name = DELIMITER_NAMES.get(delimiter, repr(delimiter))
    if len(header) == 1:
        for other, other_name in DELIMITER_NAMES.items():
            if other == delimiter or other not in header_line:
                continue
            names = [name.strip().lower() for name in header_line.split(other)]
            if all(name.lower() in names for name in required):
                raise SourceError(
                    f"{path}: wrong delimiter: the header {header_line!r} is one column that "
                    f"holds the expected columns joined by {other_name} ({other!r}); this format "
                    f"expects {expected_name}-separated values ({delimiter!r}). Re-save the file "
                    f"{expected_name}-separated.{fix_hint}"
                )
    raise SourceError(
        f"{path}: missing required column(s) {', '.join(repr(m) for m in missing)}; the header "
        f"has {header!r}. Add or rename the column(s) so the header contains "
        f"{', '.join(required)} ({expected_name}-separated).{fix_hint}"
    )


def read_parquet_as_text(path: Path, required: list[str], optional: list[str]) -> pd.DataFrame:
    """Read a Parquet file, keep the wanted columns as text (nulls as ``None``) plus lineage.

    Raises
    ------
    SourceError
        When the file cannot be read or lacks a required column.
    """
    try:
        frame = pd.read_parquet(path)
    except Exception as error:  # pyarrow raises several types for a bad file
        raise SourceError(
            f"{path}: cannot read as Parquet ({error}). Re-export it as Parquet or as CSV."
        ) from error
    frame.columns = [str(name).strip().lower() for name in frame.columns]
    missing = [name for name in required if name not in frame.columns]
    if missing:
        raise SourceError(
            f"{path}: missing required column(s) {', '.join(repr(m) for m in missing)}; the file "
            f"has {list(frame.columns)!r}. Add or rename the column(s) so it contains "
            f"{', '.join(required)}."
        )
    wanted = list(required) + [name for name in optional if name in frame.columns]
    out = pd.DataFrame(index=range(len(frame)))
    for name in wanted:
        column = frame[name]
        if pd.api.types.is_datetime64_any_dtype(column):
            text = column.map(lambda v: v.isoformat() if pd.notna(v) else None)
        else:
            text = column.astype(str).astype(object)
        out[name] = text.where(column.notna().to_numpy(), None).astype(object)
    out["_source_file"] = str(path)
    out["_source_line"] = np.arange(1, len(frame) + 1, dtype=np.int64)
    return out


def with_contract_columns(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    """Give ``frame`` exactly the raw contract's columns for ``table`` (missing ones as None)."""
    out = pd.DataFrame(index=frame.index)
    for name in RAW_COLUMNS[table] + LINEAGE_COLUMNS:
        out[name] = frame[name] if name in frame.columns else None
    return out.reset_index(drop=True)


def derive_users(sources: list[tuple[pd.DataFrame, str]]) -> pd.DataFrame:
    """Distinct non-empty user ids, in order of first appearance, with that row's lineage.

    Parameters
    ----------
    sources
        Pairs of (raw frame, column holding user ids).
    """
    parts = []
    for frame, column in sources:
        part = frame[[column, "_source_file", "_source_line"]].rename(columns={column: "user_id"})
        parts.append(part)
    users = pd.concat(parts, ignore_index=True).drop_duplicates("user_id", keep="first")
    users = users[filled_mask(users["user_id"])]
    return with_contract_columns(users, "users")


def filled_mask(values: pd.Series) -> np.ndarray:
    """True where a text value is neither null nor blank (works for object and Arrow text)."""
    if isinstance(values.dtype, pd.ArrowDtype):
        array = pa.array(values.array)
    else:
        array = pa.array(values.to_numpy(dtype=object), type=pa.string(), from_pandas=True)
    blank = pc.equal(pc.utf8_trim_whitespace(array), "")
    return pc.fill_null(pc.invert(blank), False).to_numpy(zero_copy_only=False).astype(bool)


class GenericSource(Source):
    """Read ``<table>.csv`` / ``<table>.parquet`` files from a directory (format above).

    Parameters
    ----------
    path
        The directory holding the files.
    arrow_strings
        Give text columns the Arrow string dtype (``pd.ArrowDtype(pa.string())``, nulls are
        ``pd.NA``) instead of ``str``/``None`` objects: several times faster and lighter for
        millions of rows, and zero-copy when landed in DuckDB. ``quality.rules`` takes both.

    Example usage::

        bundle = GenericSource("my_data/").read()
        bundle.table("listens").head()
    """

    name = "generic"

    def __init__(self, path: str | Path, arrow_strings: bool = False) -> None:
        self.path = Path(path)
        self.arrow_strings = arrow_strings

    def read(self) -> RawBundle:
        """Read every present table; see the module docstring for the format."""
        if not self.path.is_dir():
            raise SourceError(
                f"{self.path}: directory not found. Pass the directory that holds listens.csv "
                f"and artists.csv (or .parquet); see sources/generic.py for the format."
            )
        tables: dict[str, pd.DataFrame] = {}
        notes: dict[str, str] = {}
        for table, spec in GENERIC_TABLES.items():
            frame = self._read_table(table, spec, notes)
            if frame is not None:
                tables[table] = frame
        listens = tables["listens"]
        if "users" not in tables:
            tables["users"] = derive_users([(listens, "user_id")])
            notes["users"] = "derived from the distinct user ids of listens (no users file)"
        if "tag_assignments" in tables:
            assignments = tables["tag_assignments"]
            tags = assignments[["tag", "_source_file", "_source_line"]].copy()
            tags = tags[filled_mask(tags["tag"])]
            tags = tags.drop_duplicates("tag", keep="first")
            tags["tag_id"] = tags["tag"]
            tables["tags"] = with_contract_columns(tags, "tags")
            assignments = assignments.copy()
            assignments["tag_id"] = assignments["tag"]
            tables["tag_assignments"] = with_contract_columns(assignments, "tag_assignments")
            notes["tags"] = "derived from the distinct tag texts of tag_assignments (tag_id = tag)"
        if "audio_files" in tables:
            audio = tables["audio_files"]
            audio["path"] = [
                str(self.path / p) if isinstance(p, str) and p and not Path(p).is_absolute() else p
                for p in audio["path"]
            ]
        for table in list(tables):
            tables[table] = with_contract_columns(tables[table], table)
        ts = tables["listens"]["ts"]
        filled = pd.Series(filled_mask(ts))
        listens_kind = "events" if len(ts) and bool(filled.all()) else "aggregated"
        if listens_kind == "aggregated" and bool(filled.any()):
            notes["listens_ts"] = (
                f"ts is filled in {int(filled.sum())} of {len(ts)} listens rows, so the rows are "
                f"read as aggregated counts; fill ts in every row to read them as play events"
            )
        item_level = "track" if "tracks" in tables else "artist"
        logger.info("generic source %s: %s", self.path, {t: len(f) for t, f in tables.items()})
        return RawBundle(
            source_name=self.name,
            tables=tables,
            item_level=item_level,
            listens_kind=listens_kind,
            notes=notes,
        )

    def land(
        self,
        con: duckdb.DuckDBPyConnection,
        schema: str = "raw",
        loaded_at: Any = None,
    ) -> RawLanding:
        """Land every table in ``<schema>.<table>`` of a DuckDB connection, DuckDB reading the
        files itself (see "landing in DuckDB" above); the same raw tables as :meth:`read`
        gives, without holding them in Python.

        Parameters
        ----------
        con
            The warehouse connection.
        schema
            Where the raw tables go; every table of ``RAW_COLUMNS`` is created (empty when the
            source has none).
        loaded_at
            The ``_loaded_at`` value (default: now, UTC, whole seconds).

        Example usage::

            with duckdb.connect("warehouse.duckdb") as con:
                landing = GenericSource("my_data/").land(con)
                landing.rows["listens"]
        """
        if not self.path.is_dir():
            raise SourceError(
                f"{self.path}: directory not found. Pass the directory that holds listens.csv "
                f"and artists.csv (or .parquet); see sources/generic.py for the format."
            )
        loaded_at = loaded_at if loaded_at is not None else pd.Timestamp.now(tz="UTC").floor("s")
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        notes: dict[str, str] = {}
        rows: dict[str, int] = {}
        landed_by: dict[str, str] = {}
        for table, spec in GENERIC_TABLES.items():
            landed = self._land_table(con, f"{schema}.{table}", table, spec, notes, loaded_at)
            if landed is not None:
                rows[table], landed_by[table] = landed
        if "users" not in rows:
            rows["users"] = derive_users_sql(
                con, f"{schema}.users", [(f"{schema}.listens", "user_id")], loaded_at
            )
            landed_by["users"] = "duckdb"
            notes["users"] = "derived from the distinct user ids of listens (no users file)"
        if "tag_assignments" in rows:
            con.execute(
                f"CREATE OR REPLACE TABLE {schema}.tags AS SELECT tag_id, tag, _source_file, "
                f"_source_line, _loaded_at FROM (SELECT tag_id, tag_id AS tag, "
                f"arg_min(_source_file, rowid) AS _source_file, arg_min(_source_line, rowid) AS "
                f"_source_line, any_value(_loaded_at) AS _loaded_at, min(rowid) AS _first "
                f"FROM {schema}.tag_assignments WHERE {_filled_sql('tag_id')} GROUP BY tag_id) "
                f"ORDER BY _first"
            )
            rows["tags"] = con.execute(f"SELECT count(*) FROM {schema}.tags").fetchone()[0]
            landed_by["tags"] = "duckdb"
            notes["tags"] = "derived from the distinct tag texts of tag_assignments (tag_id = tag)"
        for table in RAW_COLUMNS:
            if table not in rows:
                empty_raw_table(con, f"{schema}.{table}", table)
        kind, total, filled = listens_kind_sql(con, f"{schema}.listens")
        if kind == "aggregated" and filled:
            notes["listens_ts"] = (
                f"ts is filled in {filled} of {total} listens rows, so the rows are "
                f"read as aggregated counts; fill ts in every row to read them as play events"
            )
        logger.info("generic source %s landed: %s (%s)", self.path, rows, landed_by)
        return RawLanding(
            source_name=self.name,
            item_level="track" if "tracks" in rows else "artist",
            listens_kind=kind,  # type: ignore[arg-type]
            rows=rows,
            notes=notes,
            landed_by=landed_by,
        )

    def _land_table(
        self,
        con: duckdb.DuckDBPyConnection,
        target: str,
        table: str,
        spec: TableSpec,
        notes: dict[str, str],
        loaded_at: Any,
    ) -> tuple[int, str] | None:
        csv_path = self.path / f"{table}.csv"
        parquet_path = self.path / f"{table}.parquet"
        if csv_path.exists() and parquet_path.exists():
            raise SourceError(
                f"{self.path}: both {csv_path.name} and {parquet_path.name} exist; keep one."
            )
        if parquet_path.exists() and table != "audio_files":
            return land_parquet(con, parquet_path, target, table, spec, loaded_at), "duckdb"
        if csv_path.exists() and table != "audio_files":
            header, wanted, extra = read_header(
                csv_path,
                list(spec.required),
                ",",
                list(spec.optional),
                normalise_header=True,
                fix_hint=" See sources/generic.py for the format.",
            )
            sources = {c: c for c in wanted}
            if table == "tag_assignments":
                sources["tag_id"] = "tag"
            landed = land_csv(con, csv_path, target, table, header, sources, loaded_at)
            if landed is not None:
                if extra:
                    notes[f"{csv_path.name} ignored columns"] = ", ".join(extra)
                return landed, "duckdb"
        # audio_files (paths made absolute), absent files and files DuckDB cannot land exactly
        frame = self._read_table(table, spec, notes)
        if frame is None:
            return None
        if table == "tag_assignments":
            frame = frame.assign(tag_id=frame["tag"])
        if table == "audio_files":
            frame = frame.assign(
                path=[
                    str(self.path / p)
                    if isinstance(p, str) and p and not Path(p).is_absolute()
                    else p
                    for p in frame["path"]
                ]
            )
        return land_frame(con, frame, target, table, loaded_at), "python"

    def _read_table(
        self, table: str, spec: TableSpec, notes: dict[str, str]
    ) -> pd.DataFrame | None:
        csv_path = self.path / f"{table}.csv"
        parquet_path = self.path / f"{table}.parquet"
        if csv_path.exists() and parquet_path.exists():
            raise SourceError(
                f"{self.path}: both {csv_path.name} and {parquet_path.name} exist; keep one."
            )
        if parquet_path.exists():
            frame = read_parquet_as_text(parquet_path, list(spec.required), list(spec.optional))
            if self.arrow_strings:
                text_columns = [c for c in frame.columns if c != "_source_line"]
                frame = frame.astype({c: pd.ArrowDtype(pa.string()) for c in text_columns})
            return frame
        if not csv_path.exists():
            if spec.is_required:
                raise SourceError(
                    f"{csv_path}: required file not found (nor {parquet_path.name}). Add a "
                    f"{table} file with columns {', '.join(spec.required)}; see "
                    f"sources/generic.py for the format."
                )
            return None
        frame, fallback_lines, extra = read_delimited(
            csv_path,
            list(spec.required),
            ",",
            optional=list(spec.optional),
            normalise_header=True,
            fallback="replace",
            fix_hint=" See sources/generic.py for the format.",
            arrow_strings=self.arrow_strings,
        )
        if fallback_lines:
            notes[csv_path.name] = (
                f"{len(fallback_lines)} line(s) not valid UTF-8; undecodable bytes became U+FFFD "
                f"(lines {_describe_lines(fallback_lines)})"
            )
        if extra:
            notes[f"{csv_path.name} ignored columns"] = ", ".join(extra)
        return frame


# --------------------------------------------------------------------------- landing in DuckDB
#
# What grows with events is never read into Python: DuckDB reads each CSV/Parquet file itself
# into its raw table (all text, lineage columns added). The file's physical records are counted
# independently (a byte scan for line breaks) and reconciled with the rows DuckDB read; a file
# where they do not reconcile exactly (blank lines, a quoted field spanning lines in a table
# without free text, bytes that are not UTF-8, ragged rows) is read by the Python reader above
# instead, which keeps exact line numbers, puts U+FFFD for undecodable bytes, or rejects a stray
# quote with its line numbers. Such files are the exception, so the Python reader only ever
# holds a malformed file.

NULL_MARKER = "\x00cratedigger:null\x00"  # never in a text file: empty fields stay ""
SCAN_CHUNK_BYTES = 16 << 20


@dataclass(frozen=True)
class FileScan:
    """What a byte scan of a delimited file says about its physical records."""

    line_breaks: int
    ends_with_line_break: bool
    has_quote: bool
    has_blank_line: bool  # a line break directly after another (maybe inside a quoted field)

    @property
    def lines(self) -> int:
        """Physical lines, a last line without a line break included."""
        return self.line_breaks + (0 if self.ends_with_line_break else 1)


def scan_file(path: Path, quote: bytes = b'"') -> FileScan:
    """Count line breaks and look for quotes and blank lines, in chunks (memory stays flat)."""
    line_breaks, has_quote, has_blank, tail, last = 0, False, False, b"", b""
    with path.open("rb") as handle:
        while chunk := handle.read(SCAN_CHUNK_BYTES):
            line_breaks += chunk.count(b"\n")
            has_quote = has_quote or (bool(quote) and quote in chunk)
            window = tail + chunk
            has_blank = has_blank or b"\n\n" in window or b"\n\r\n" in window
            tail, last = window[-2:], chunk[-1:]
    return FileScan(line_breaks, last == b"\n", has_quote, has_blank)


@dataclass
class RawLanding:
    """What a landing wrote: like ``RawBundle`` without the data (it stays in the engine)."""

    source_name: str
    item_level: Literal["artist", "track"]
    listens_kind: Literal["aggregated", "events"]
    rows: dict[str, int]
    notes: dict[str, str]
    landed_by: dict[str, str]  # table -> "duckdb" or "python" (the exact reader, for odd files)


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def land_frame(
    con: duckdb.DuckDBPyConnection, frame: pd.DataFrame, target: str, table: str, loaded_at: Any
) -> int:
    """Land a frame read by Python as ``target`` in the raw contract layout (all text)."""
    columns = RAW_COLUMNS[table] + LINEAGE_COLUMNS
    frame = frame.copy()
    for column in [c for c in columns if c not in frame.columns]:
        frame[column] = None
    frame = frame[columns].astype("object")
    select = ", ".join(
        f'CAST("{c}" AS {"BIGINT" if c == "_source_line" else "VARCHAR"}) AS "{c}"' for c in columns
    )
    name = f"_landing_{table}"
    con.register(name, frame)
    try:
        con.execute(
            f"CREATE OR REPLACE TABLE {target} AS SELECT {select}, "
            f"CAST(? AS TIMESTAMPTZ) AS _loaded_at FROM {name}",
            [loaded_at],
        )
    finally:
        con.unregister(name)
    return len(frame)


def land_csv(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    target: str,
    table: str,
    header: list[str],
    sources: dict[str, str],
    loaded_at: Any,
    delimiter: str = ",",
    quoting: int = csv.QUOTE_MINIMAL,
) -> int | None:
    """Let DuckDB read a delimited file into ``target`` (raw contract layout, all text).

    Parameters
    ----------
    header
        The file's header names (checked with :func:`read_header`).
    sources
        Raw contract column -> header name it is read from (absent contract columns are null).

    Returns
    -------
    int or None
        The rows landed, or None when the rows DuckDB read do not reconcile exactly with the
        file's physical records (then the caller reads the file with the Python reader).
    """
    quote = "" if quoting == csv.QUOTE_NONE else '"'
    scan = scan_file(path, quote.encode())
    if scan.has_blank_line:
        return None
    positions = {name: f"c{i}" for i, name in enumerate(header)}
    select = [
        f'{positions[sources[c]]} AS "{c}"' if c in sources else f'CAST(NULL AS VARCHAR) AS "{c}"'
        for c in RAW_COLUMNS[table]
    ]
    columns = "{" + ", ".join(f"'{positions[n]}': 'VARCHAR'" for n in header) + "}"
    options = (
        f"header = true, auto_detect = false, columns = {columns}, delim = {_sql_text(delimiter)}, "
        f"quote = {_sql_text(quote)}, escape = {_sql_text(quote)}, "
        f"nullstr = {_sql_text(NULL_MARKER)}, strict_mode = true, null_padding = false"
    )
    try:
        # the table keeps the file's record order (insertion order is preserved), so a record's
        # line is its rowid + 2 (header first): numbered after the write, a cheap update, where
        # a row_number() window in the read would make every row wait for the whole file
        con.execute(
            f"CREATE OR REPLACE TABLE {target} AS SELECT {', '.join(select)}, "
            f"{_sql_text(str(path))} AS _source_file, CAST(NULL AS BIGINT) AS _source_line, "
            f"CAST(? AS TIMESTAMPTZ) AS _loaded_at "
            f"FROM read_csv({_sql_text(str(path))}, {options})",
            [loaded_at],
        )
    except duckdb.Error as error:  # not UTF-8, ragged rows...: the Python reader decides
        logger.info("%s: DuckDB cannot read it strictly (%s); using the Python reader", path, error)
        return None
    con.execute(f"UPDATE {target} SET _source_line = rowid + 2")
    rows = con.execute(f"SELECT count(*) FROM {target}").fetchone()[0]
    records = scan.lines - 1  # the header is line 1
    if rows == records:
        return rows
    if rows > records or not set(sources.values()) & FREE_TEXT_COLUMNS or not scan.has_quote:
        return None  # fewer rows than lines in a table without free text: a stray quote?
    # quoted free text spans lines: each record starts after the line breaks of those before it
    text = [f'"{c}"' for c in sources]
    breaks = " + ".join(
        f"COALESCE(length({c}) - length(replace({c}, chr(10), '')), 0)" for c in text
    )
    spanned = con.execute(f"SELECT COALESCE(sum({breaks}), 0) FROM {target}").fetchone()[0]
    if rows + spanned != records:
        return None
    con.execute(
        f"CREATE OR REPLACE TABLE {target} AS SELECT * EXCLUDE (_breaks) REPLACE (CAST("
        f"_source_line + COALESCE(sum(_breaks) OVER (ORDER BY _source_line ROWS BETWEEN "
        f"UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS BIGINT) AS _source_line) FROM "
        f"(SELECT *, {breaks} AS _breaks FROM {target}) ORDER BY _source_line"
    )
    return rows


def land_parquet(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    target: str,
    table: str,
    spec: TableSpec,
    loaded_at: Any,
) -> int:
    """Let DuckDB read a Parquet file into ``target`` (raw contract layout, values as text)."""
    try:
        described = con.execute(
            f"DESCRIBE SELECT * FROM read_parquet({_sql_text(str(path))})"
        ).fetchall()
    except duckdb.Error as error:
        raise SourceError(
            f"{path}: cannot read as Parquet ({error}). Re-export it as Parquet or as CSV."
        ) from error
    names = {str(row[0]).strip().lower(): (str(row[0]), str(row[1])) for row in described}
    missing = [name for name in spec.required if name not in names]
    if missing:
        raise SourceError(
            f"{path}: missing required column(s) {', '.join(repr(m) for m in missing)}; the file "
            f"has {[row[0] for row in described]!r}. Add or rename the column(s) so it contains "
            f"{', '.join(spec.required)}."
        )
    sources = {"tag_id": "tag"} if table == "tag_assignments" else {}
    select = []
    for column in RAW_COLUMNS[table]:
        name = sources.get(column, column)
        if name not in names:
            select.append(f'CAST(NULL AS VARCHAR) AS "{column}"')
            continue
        original, kind = names[name]
        value = f'"{original}"'
        if kind.startswith("TIMESTAMP") or kind == "DATE":  # ISO text, as pandas' isoformat
            value = f"replace(CAST({value} AS VARCHAR), ' ', 'T')"
        select.append(f'CAST({value} AS VARCHAR) AS "{column}"')
    con.execute(
        f"CREATE OR REPLACE TABLE {target} AS SELECT {', '.join(select)}, "
        f"{_sql_text(str(path))} AS _source_file, CAST(file_row_number + 1 AS BIGINT) AS "
        f"_source_line, CAST(? AS TIMESTAMPTZ) AS _loaded_at "
        f"FROM read_parquet({_sql_text(str(path))}, file_row_number = true)",
        [loaded_at],
    )
    return con.execute(f"SELECT count(*) FROM {target}").fetchone()[0]


def _filled_sql(column: str) -> str:
    """Neither null nor blank (as :func:`filled_mask`)."""
    from quality.sql_rules import clean_text_sql

    return f"{clean_text_sql(column)} IS NOT NULL"


def derive_users_sql(
    con: duckdb.DuckDBPyConnection,
    target: str,
    sources: list[tuple[str, str]],
    loaded_at: Any,
) -> int:
    """Distinct non-blank user ids of raw tables in order of first appearance, with that row's
    lineage (:func:`derive_users` in SQL). ``sources`` are (raw table, user id column) pairs."""
    parts = " UNION ALL ".join(
        f'SELECT CAST({i} AS BIGINT) * 1099511627776 + rowid AS _pos, "{column}" AS user_id, '
        f"_source_file, _source_line FROM {relation}"
        for i, (relation, column) in enumerate(sources)
    )
    # grouped first, so that the blank test runs once per distinct id, not once per row
    con.execute(
        f"CREATE OR REPLACE TABLE {target} AS SELECT user_id, _source_file, _source_line, "
        f"CAST(? AS TIMESTAMPTZ) AS _loaded_at FROM ("
        f"SELECT user_id, arg_min(_source_file, _pos) AS _source_file, "
        f"arg_min(_source_line, _pos) AS _source_line, min(_pos) AS _first "
        f"FROM ({parts}) GROUP BY user_id) WHERE {_filled_sql('user_id')} ORDER BY _first",
        [loaded_at],
    )
    return con.execute(f"SELECT count(*) FROM {target}").fetchone()[0]


def empty_raw_table(con: duckdb.DuckDBPyConnection, target: str, table: str) -> None:
    """An empty raw table with the contract columns."""
    columns = ", ".join(f'"{c}" VARCHAR' for c in RAW_COLUMNS[table])
    con.execute(
        f"CREATE OR REPLACE TABLE {target} ({columns}, _source_file VARCHAR, "
        f"_source_line BIGINT, _loaded_at TIMESTAMPTZ)"
    )


def listens_kind_sql(con: duckdb.DuckDBPyConnection, listens: str) -> tuple[str, int, int]:
    """``events`` when ts is filled in every (and at least one) row, else ``aggregated``;
    with the counts of rows and of rows with ts."""
    rows, filled = con.execute(
        f"SELECT count(*), count(*) FILTER (WHERE {_filled_sql('ts')}) FROM {listens}"
    ).fetchone()
    return ("events" if rows and filled == rows else "aggregated"), int(rows), int(filled)
