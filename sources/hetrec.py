"""Read the HetRec 2011 Last.fm 2K dataset (``hetrec2011-lastfm-2k``).

Files (tab-separated, header row, no quoting; CRLF or LF):

===========================  ==========================================  =========
file                         columns                                     needed
===========================  ==========================================  =========
``user_artists.dat``         userID artistID weight                      required
``artists.dat``              id name url pictureURL                      required
``tags.dat``                 tagID tagValue (ISO-8859-1)                 optional
``user_taggedartists.dat``   userID artistID tagID day month year        optional
``user_friends.dat``         userID friendID                             optional
===========================  ==========================================  =========

The data is artist level with aggregated play counts (``weight`` = plays of the artist by the
user). There is no users file: users are the distinct user ids of user_artists, user_friends and
user_taggedartists, in that order. Each line is decoded as UTF-8, falling back to ISO-8859-1 for
lines that are not UTF-8; such lines are counted in ``RawBundle.notes``. The ``ts`` of a tag
assignment is the ISO date built from its day, month and year columns.

Cite Last.fm (http://www.lastfm.com) and the HetRec 2011 workshop (Cantador, Brusilovsky, Kuflik,
RecSys 2011); the data is for non-commercial use.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import pandas as pd

from sources.base import RawBundle, Source, SourceError
from sources.generic import _describe_lines, derive_users, read_delimited, with_contract_columns

logger = logging.getLogger(__name__)

HETREC_FILES: dict[str, tuple[str, list[str], dict[str, str], bool]] = {
    # raw table: (file name, required columns, rename to raw contract, file required)
    "listens": (
        "user_artists.dat",
        ["userID", "artistID", "weight"],
        {"userID": "user_id", "artistID": "item_id", "weight": "plays"},
        True,
    ),
    "artists": (
        "artists.dat",
        ["id", "name"],
        {"id": "artist_id", "name": "name", "url": "url"},
        True,
    ),
    "tags": ("tags.dat", ["tagID", "tagValue"], {"tagID": "tag_id", "tagValue": "tag"}, False),
    "tag_assignments": (
        "user_taggedartists.dat",
        ["userID", "artistID", "tagID", "day", "month", "year"],
        {"userID": "user_id", "artistID": "artist_id", "tagID": "tag_id"},
        False,
    ),
    "friends": (
        "user_friends.dat",
        ["userID", "friendID"],
        {"userID": "user_id", "friendID": "friend_id"},
        False,
    ),
}
OPTIONAL_COLUMNS = {"artists.dat": ["url", "pictureURL"]}
FIX_HINT = " Expected the original HetRec 2011 Last.fm 2K files (tab-separated, with header)."


def tag_date_text(day: pd.Series, month: pd.Series, year: pd.Series) -> pd.Series:
    """ISO date text ``YYYY-MM-DD`` from text day, month and year columns.

    Rows whose three parts are all empty get ``None``; partly empty rows give text that does not
    parse, so validation quarantines them instead of guessing.
    """
    day, month, year = (s.fillna("").astype(str).str.strip() for s in (day, month, year))
    text = year.str.zfill(4) + "-" + month.str.zfill(2) + "-" + day.str.zfill(2)
    all_empty = (day == "") & (month == "") & (year == "")
    return text.where(~all_empty, None).astype(object)


class HetrecSource(Source):
    """Reader of the HetRec 2011 Last.fm 2K directory.

    Parameters
    ----------
    path
        The directory holding ``user_artists.dat``, ``artists.dat`` and the optional files.

    Example usage::

        bundle = HetrecSource("../shared/data/hetrec2011-lastfm-2k").read()
        bundle.table("listens").shape   # (92834, 6)
    """

    name = "hetrec"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def read(self) -> RawBundle:
        """Read all present files into raw text tables with lineage."""
        if not self.path.is_dir():
            raise SourceError(
                f"{self.path}: directory not found. Pass the hetrec2011-lastfm-2k directory "
                f"(holding user_artists.dat and artists.dat)."
            )
        tables: dict[str, pd.DataFrame] = {}
        notes: dict[str, str] = {}
        for table, (file_name, required, rename, is_required) in HETREC_FILES.items():
            path = self.path / file_name
            if not path.exists() and not is_required:
                notes[file_name] = "absent (optional); its table is empty"
                continue
            frame, fallback_lines, _ = read_delimited(
                path,
                required,
                "\t",
                optional=OPTIONAL_COLUMNS.get(file_name, []),
                quoting=csv.QUOTE_NONE,
                fallback="latin-1",
                fix_hint=FIX_HINT,
            )
            notes[f"{file_name} decoding"] = (
                f"{len(fallback_lines)} line(s) not valid UTF-8, decoded as ISO-8859-1"
                + (f" (lines {_describe_lines(fallback_lines)})" if fallback_lines else "")
            )
            if table == "tag_assignments":
                frame["ts"] = tag_date_text(frame["day"], frame["month"], frame["year"])
            tables[table] = with_contract_columns(frame.rename(columns=rename), table)

        timestamps = self.path / "user_taggedartists-timestamps.dat"
        if not timestamps.exists():
            notes["user_taggedartists-timestamps.dat"] = (
                "absent; tag assignment ts is the day built from day/month/year"
            )
        user_sources = [(tables["listens"], "user_id")]
        if "friends" in tables:
            user_sources += [(tables["friends"], "user_id"), (tables["friends"], "friend_id")]
        if "tag_assignments" in tables:
            user_sources.append((tables["tag_assignments"], "user_id"))
        tables["users"] = derive_users(user_sources)
        notes["users"] = (
            "derived: distinct user ids of user_artists.dat, then user_friends.dat and "
            "user_taggedartists.dat (HetRec has no users file)"
        )
        notes["listens"] = "aggregated play counts per user and artist (weight column)"
        logger.info("hetrec source %s: %s", self.path, {t: len(f) for t, f in tables.items()})
        return RawBundle(
            source_name=self.name,
            tables=tables,
            item_level="artist",
            listens_kind="aggregated",
            notes=notes,
        )


def read_hetrec_listens_and_terms(directory: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """HetRec plays as ``user_id, item_id, plays`` and artist terms from its tags, for offline
    evaluation and benchmarks without running the pipeline."""
    from embeddings.terms import build_artist_terms

    folder = Path(directory)
    plays = pd.read_csv(folder / "user_artists.dat", sep="\t", dtype=str)
    listens = pd.DataFrame(
        {
            "user_id": plays["userID"],
            "item_id": plays["artistID"],
            "plays": plays["weight"].astype(float),
        }
    )
    tagged = pd.read_csv(folder / "user_taggedartists.dat", sep="\t", dtype=str)
    tags = pd.read_csv(folder / "tags.dat", sep="\t", dtype=str, encoding="iso-8859-1")
    assignments = tagged.merge(tags, on="tagID").rename(
        columns={"userID": "user_id", "artistID": "artist_id", "tagValue": "tag"}
    )
    terms, _ = build_artist_terms(assignments[["user_id", "artist_id", "tag"]])
    return listens, terms
