"""Source readers: each turns one input format into a ``RawBundle`` of text tables.

Use ``make_source(kind, path, **params)``; kinds are ``sample`` (the seeded demo generator,
``path`` = where it writes), ``hetrec`` (HetRec 2011 Last.fm 2K directory) and ``generic``
(a directory of CSV/Parquet files, format in ``sources.generic``).
"""

from __future__ import annotations

from pathlib import Path

from sources.base import RAW_COLUMNS, RawBundle, Source, SourceError
from sources.generic import GenericSource
from sources.hetrec import HetrecSource
from sources.sample import SampleSource

SOURCE_KINDS: dict[str, type[Source]] = {
    "sample": SampleSource,
    "hetrec": HetrecSource,
    "generic": GenericSource,
}

__all__ = [
    "RAW_COLUMNS",
    "SOURCE_KINDS",
    "GenericSource",
    "HetrecSource",
    "RawBundle",
    "SampleSource",
    "Source",
    "SourceError",
    "make_source",
]


def make_source(kind: str, path: str | Path | None, **params: object) -> Source:
    """Build the reader for ``kind``.

    Parameters
    ----------
    kind
        ``"sample"``, ``"hetrec"`` or ``"generic"``.
    path
        The data directory (for ``sample``: the directory it writes to).
    **params
        Extra constructor parameters, e.g. ``n_users=2000`` or ``seed=3`` for ``sample``,
        ``arrow_strings=True`` for ``generic``.

    Raises
    ------
    SourceError
        For an unknown kind, a missing path, or parameters the reader does not take.

    Example usage::

        source = make_source("hetrec", "../shared/data/hetrec2011-lastfm-2k")
        bundle = source.read()
    """
    if kind not in SOURCE_KINDS:
        raise SourceError(
            f"unknown source kind {kind!r}; valid kinds are {', '.join(sorted(SOURCE_KINDS))}"
        )
    if path is None or str(path) == "":
        raise SourceError(
            f"source kind {kind!r} needs a path (for 'sample': the directory it writes to)"
        )
    try:
        return SOURCE_KINDS[kind](path, **params)  # type: ignore[call-arg]
    except TypeError as error:
        raise SourceError(
            f"source kind {kind!r}: bad parameters {sorted(params)}: {error}"
        ) from error
