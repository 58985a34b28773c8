"""Weighted top terms ("cultural vectors") and one text document per artist.

An artist's terms are what people write about it. The weight of a term for an artist estimates
the probability that someone who describes the artist uses that term::

    weight(artist, term) = distinct taggers who gave the artist the term
                           / distinct taggers of the artist

so every weight lies in (0, 1]. Terms are cleaned (``clean_term``) so that spelling variants
such as "Hip-Hop", "hip hop" and "hiphop" count as one term, and terms used by fewer than
``min_users`` distinct taggers across the whole corpus are dropped as noise.

Rows without a ``user_id`` (sources that only list an artist's tags) count as one anonymous
tagger each: the weight is then the share of the artist's assignments that carry the term.

Example usage::

    terms, report = build_artist_terms(tag_assignments, min_users=2, top_n=20)
    docs, doc_report = build_artist_docs(artists, terms)
    report.artists_without_terms   # tagged artists whose terms were all rare
    doc_report.artists_without_doc  # artists with neither terms nor text: no document
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import asdict, dataclass, field

import pandas as pd

logger = logging.getLogger(__name__)

TERM_COLUMNS = ["artist_id", "term", "weight", "taggers"]
DOC_COLUMNS = ["artist_id", "text"]

# Separators that spell the same term differently: "hip-hop", "hip_hop", "hip/hop", "hip.hop".
_SEPARATORS = re.compile(r"[\s\-_/.,;:|+~*]+")
# Quotes and apostrophes are dropped: "80's" == "80s", "rock 'n' roll" == "rock n roll".
_QUOTES = re.compile(r"[\"'`\u2018\u2019\u201a\u201b\u201c\u201d\u00b4]")
# "&", "n" and "and" between words are one connector: "drum & bass" == "drum n bass".
_CONNECTORS = re.compile(r"(?:^|(?<= ))(?:&|n|and)(?= |$)")
_AMPERSAND = re.compile(r"\s*&\s*")


def clean_term(raw: object) -> str:
    """Return the display form of a raw tag: NFKC, lower case, one space between words.

    Parameters
    ----------
    raw : object
        A tag as read. ``None``/NaN and non-text values give ``""``.

    Returns
    -------
    str
        The cleaned term; ``""`` when nothing printable is left (the caller counts those).

    Examples
    --------
    >>> clean_term("  Hip-Hop ")
    'hip hop'
    >>> clean_term("Drum & Bass")
    'drum and bass'
    """
    if raw is None or (isinstance(raw, float) and raw != raw):
        return ""
    text = unicodedata.normalize("NFKC", str(raw)).lower()
    # Control characters and the replacement character carry no meaning.
    text = "".join(
        ch for ch in text if ch != "\ufffd" and not unicodedata.category(ch).startswith("C")
    )
    text = _QUOTES.sub("", text)
    text = _AMPERSAND.sub(" & ", text)
    text = _SEPARATORS.sub(" ", text).strip()
    text = _CONNECTORS.sub("and", text)
    return text


def term_key(term: str) -> str:
    """Return the merge key of a cleaned term: the term without spaces.

    "hip hop" and "hiphop" share the key "hiphop"; the displayed form of a merged term is its
    most used spelling.
    """
    return term.replace(" ", "")


@dataclass
class TermsReport:
    """What ``build_artist_terms`` kept, merged and dropped (all counts, plus the artist ids).

    Attributes
    ----------
    rows_in : int
        Tag assignment rows read.
    rows_without_term : int
        Rows whose tag is empty after cleaning (also not counted as tagging the artist).
    rows_without_artist : int
        Rows with an empty artist id.
    anonymous_rows : int
        Rows without ``user_id``; each counts as one tagger.
    raw_terms : int
        Distinct cleaned spellings before merging near-duplicates.
    terms : int
        Distinct terms after merging near-duplicates.
    rare_terms_dropped : int
        Terms used by fewer than ``min_users`` distinct taggers across the corpus.
    terms_kept : int
        Distinct terms that survive the rarity filter.
    artists_tagged : int
        Artists with at least one usable tag row.
    artists_with_terms : int
        Artists with at least one kept term.
    artists_without_terms : list of str
        Tagged artists that lost every term (they had only rare terms).
    merged_examples : dict
        Up to 20 merged terms and the spellings merged into them.
    """

    rows_in: int = 0
    rows_without_term: int = 0
    rows_without_artist: int = 0
    anonymous_rows: int = 0
    raw_terms: int = 0
    terms: int = 0
    rare_terms_dropped: int = 0
    terms_kept: int = 0
    artists_tagged: int = 0
    artists_with_terms: int = 0
    artists_without_terms: list[str] = field(default_factory=list)
    merged_examples: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict:
        """Counts as a plain dict (the id list is replaced by its length)."""
        out = asdict(self)
        out["artists_without_terms"] = len(self.artists_without_terms)
        return out


def _require_columns(frame: pd.DataFrame, columns: list[str], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{name} lacks column(s) {missing}; it has {list(frame.columns)}. "
            f"Pass a frame in the golden schema ({', '.join(columns)})."
        )


def build_artist_terms(
    tag_assignments: pd.DataFrame, *, min_users: int = 2, top_n: int = 20
) -> tuple[pd.DataFrame, TermsReport]:
    """Build each artist's weighted top terms from tag assignments.

    Parameters
    ----------
    tag_assignments : pandas.DataFrame
        Golden ``tag_assignments``: ``artist_id``, ``tag`` and optionally ``user_id`` (nullable;
        one row per user x artist x tag). Extra columns such as ``ts`` are ignored.
    min_users : int, default 2
        Drop terms used by fewer distinct taggers than this across the corpus.
    top_n : int, default 20
        Keep at most this many terms per artist, highest weight first (ties: more taggers, then
        alphabetical).

    Returns
    -------
    terms : pandas.DataFrame
        Columns ``artist_id`` (str), ``term`` (str), ``weight`` (float in (0, 1]), ``taggers``
        (int, distinct taggers who gave the artist the term), sorted by artist then rank.
    report : TermsReport
        Counts of rows, merges and drops, and the tagged artists left without any term.

    Raises
    ------
    ValueError
        If a required column is missing or ``min_users``/``top_n`` is below 1.
    """
    _require_columns(tag_assignments, ["artist_id", "tag"], "tag_assignments")
    if min_users < 1 or top_n < 1:
        raise ValueError(f"min_users and top_n must be >= 1, got {min_users} and {top_n}.")
    report = TermsReport(rows_in=len(tag_assignments))

    frame = pd.DataFrame(
        {
            "artist_id": tag_assignments["artist_id"].astype("string").str.strip().fillna(""),
            "spelling": tag_assignments["tag"].map(clean_term),
        }
    )
    if "user_id" in tag_assignments.columns:
        users = tag_assignments["user_id"].astype("string").str.strip().fillna("")
    else:
        users = pd.Series("", index=tag_assignments.index, dtype="string")
    anonymous = users == ""
    report.anonymous_rows = int(anonymous.sum())
    # One anonymous tagger per row: a key no real user id can take.
    row_keys = pd.Series(range(len(frame)), index=frame.index).astype(str)
    frame["tagger"] = users.where(~anonymous, "<anonymous row>:" + row_keys)

    no_artist = frame["artist_id"] == ""
    no_term = frame["spelling"] == ""
    report.rows_without_artist = int(no_artist.sum())
    report.rows_without_term = int((no_term & ~no_artist).sum())
    if report.rows_without_artist or report.rows_without_term:
        logger.warning(
            "artist terms: %d rows without artist id and %d rows whose tag is empty after "
            "cleaning are not counted",
            report.rows_without_artist,
            report.rows_without_term,
        )
    frame = frame[~no_artist & ~no_term]
    empty = pd.DataFrame(
        {
            c: pd.Series(dtype=t)
            for c, t in zip(TERM_COLUMNS, ["string", "string", "float64", "int64"], strict=True)
        }
    )
    if frame.empty:
        logger.warning("artist terms: no usable tag assignment rows")
        return empty, report

    # Merge near-duplicates: the key ignores spaces; show the most used spelling.
    frame["key"] = frame["spelling"].map(term_key)
    report.raw_terms = int(frame["spelling"].nunique())
    spelling_use = (
        frame.groupby(["key", "spelling"])
        .size()
        .rename("uses")
        .reset_index()
        .sort_values(["key", "uses", "spelling"], ascending=[True, False, True])
    )
    display = spelling_use.drop_duplicates("key").set_index("key")["spelling"]
    report.terms = len(display)
    merged = spelling_use.groupby("key")["spelling"].agg(list)
    merged = merged[merged.map(len) > 1]
    report.merged_examples = {
        display[k]: v for k, v in merged.sort_values(key=lambda s: -s.map(len)).head(20).items()
    }

    # Rare terms: fewer than min_users distinct taggers across the corpus.
    term_users = frame.groupby("key")["tagger"].nunique()
    kept_keys = term_users.index[term_users >= min_users]
    report.rare_terms_dropped = int(len(term_users) - len(kept_keys))
    report.terms_kept = len(kept_keys)

    artist_taggers = frame.groupby("artist_id")["tagger"].nunique().rename("artist_taggers")
    report.artists_tagged = len(artist_taggers)
    kept = frame[frame["key"].isin(kept_keys)]
    counts = kept.groupby(["artist_id", "key"])["tagger"].nunique().rename("taggers").reset_index()
    counts = counts.join(artist_taggers, on="artist_id")
    counts["weight"] = counts["taggers"] / counts["artist_taggers"]
    counts["term"] = counts["key"].map(display)
    counts = counts.sort_values(
        ["artist_id", "weight", "taggers", "term"], ascending=[True, False, False, True]
    )
    counts = counts.groupby("artist_id", sort=False).head(top_n)
    terms = counts[TERM_COLUMNS].reset_index(drop=True)
    terms = terms.astype(
        {"artist_id": "string", "term": "string", "weight": "float64", "taggers": "int64"}
    )

    with_terms = set(terms["artist_id"])
    report.artists_with_terms = len(with_terms)
    report.artists_without_terms = sorted(set(artist_taggers.index) - with_terms)
    logger.info(
        "artist terms: %d rows -> %d terms kept (%d rare dropped, %d spellings merged into %d), "
        "%d artists with terms, %d tagged artists lost every term (only rare terms)",
        report.rows_in,
        report.terms_kept,
        report.rare_terms_dropped,
        report.raw_terms,
        report.terms,
        report.artists_with_terms,
        len(report.artists_without_terms),
    )
    return terms, report


@dataclass
class DocsReport:
    """What ``build_artist_docs`` wrote and left out.

    Attributes
    ----------
    artists : int
        Artists in the catalogue.
    docs : int
        Documents written (one per artist with terms or free text).
    with_terms : int
        Documents that list terms.
    with_text : int
        Documents that include free text.
    artists_without_doc : list of str
        Catalogue artists with neither terms nor free text: no document is written for them
        (a name alone says nothing about the music and would pull unrelated names together).
    terms_without_artist : list of str
        Artist ids in ``artist_terms``/``artist_text`` that are not in the catalogue (no doc).
    """

    artists: int = 0
    docs: int = 0
    with_terms: int = 0
    with_text: int = 0
    artists_without_doc: list[str] = field(default_factory=list)
    terms_without_artist: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        """Counts as a plain dict (id lists are replaced by their lengths)."""
        out = asdict(self)
        out["artists_without_doc"] = len(self.artists_without_doc)
        out["terms_without_artist"] = len(self.terms_without_artist)
        return out


def _clean_text(value: object) -> str:
    if value is None or (isinstance(value, float) and value != value) or value is pd.NA:
        return ""
    text = unicodedata.normalize("NFKC", str(value))
    text = "".join(ch if not unicodedata.category(ch).startswith("C") else " " for ch in text)
    return " ".join(text.split())


def build_artist_docs(
    artists: pd.DataFrame,
    artist_terms: pd.DataFrame,
    artist_text: pd.DataFrame | None = None,
    *,
    max_terms: int | None = None,
) -> tuple[pd.DataFrame, DocsReport]:
    """Write one text document per artist from its name, top terms and free text.

    The document reads ``"<name>. Genre: <genre>. Described as: <t1>, <t2>, ... <free text>"``
    with terms in descending weight. Artists with neither terms nor free text get no document;
    they are listed in the report (``artists_without_doc``), never silently absent.

    Parameters
    ----------
    artists : pandas.DataFrame
        Golden ``artists``: ``artist_id``, ``name`` and optionally ``genre``.
    artist_terms : pandas.DataFrame
        Output of ``build_artist_terms`` (``artist_id``, ``term``, ``weight``).
    artist_text : pandas.DataFrame, optional
        Golden ``artist_text`` (``artist_id``, ``text``); several rows per artist are joined.
    max_terms : int, optional
        List at most this many terms per artist (default: all given).

    Returns
    -------
    docs : pandas.DataFrame
        Columns ``artist_id`` and ``text``, in the catalogue's order.
    report : DocsReport
        Counts and the ids of artists without a document.
    """
    _require_columns(artists, ["artist_id", "name"], "artists")
    _require_columns(artist_terms, ["artist_id", "term", "weight"], "artist_terms")
    catalogue = artists.drop_duplicates("artist_id").copy()
    catalogue["artist_id"] = catalogue["artist_id"].astype(str)
    known = set(catalogue["artist_id"])

    ordered = artist_terms.assign(artist_id=artist_terms["artist_id"].astype(str)).sort_values(
        ["artist_id", "weight", "term"], ascending=[True, False, True], kind="stable"
    )
    if max_terms is not None:
        ordered = ordered.groupby("artist_id", sort=False).head(max_terms)
    term_lists = ordered.groupby("artist_id", sort=False)["term"].agg(
        lambda s: ", ".join(t for t in (_clean_text(x) for x in s) if t)
    )
    term_lists = term_lists[term_lists != ""]

    free_text = pd.Series(dtype=object)
    if artist_text is not None:
        _require_columns(artist_text, ["artist_id", "text"], "artist_text")
        cleaned = artist_text.assign(
            artist_id=artist_text["artist_id"].astype(str),
            text=artist_text["text"].map(_clean_text),
        )
        cleaned = cleaned[cleaned["text"] != ""]
        free_text = cleaned.groupby("artist_id", sort=False)["text"].agg(" ".join)

    report = DocsReport(artists=len(catalogue))
    report.terms_without_artist = sorted((set(term_lists.index) | set(free_text.index)) - known)
    if report.terms_without_artist:
        logger.warning(
            "artist docs: %d artist ids have terms or text but are not in the catalogue; "
            "no document is written for them",
            len(report.terms_without_artist),
        )

    has_genre = "genre" in catalogue.columns
    ids, texts, without = [], [], []
    for row in catalogue.itertuples(index=False):
        artist_id = row.artist_id
        terms_text = term_lists.get(artist_id, "")
        description = free_text.get(artist_id, "")
        if not terms_text and not description:
            without.append(artist_id)
            continue
        parts = []
        name = _clean_text(row.name)
        if name:
            parts.append(f"{name}.")
        genre = _clean_text(row.genre) if has_genre else ""
        if genre:
            parts.append(f"Genre: {genre}.")
        if terms_text:
            parts.append(f"Described as: {terms_text}.")
            report.with_terms += 1
        if description:
            parts.append(description)
            report.with_text += 1
        ids.append(artist_id)
        texts.append(" ".join(parts))
    report.docs = len(ids)
    report.artists_without_doc = without
    logger.info(
        "artist docs: %d of %d artists have a document; %d have neither terms nor text",
        report.docs,
        report.artists,
        len(without),
    )
    docs = pd.DataFrame(
        {"artist_id": pd.Series(ids, dtype="string"), "text": pd.Series(texts, dtype="string")}
    )
    return docs, report
