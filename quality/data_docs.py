"""Make GX Data Docs read offline and show the quarantine beside the suites.

Great Expectations 1.24 writes Data Docs pages that load bootstrap, jQuery, bootstrap-table,
font-awesome and vega from CDNs (and its logo from S3): offline, the index lists nothing and the
validation pages are unstyled. :func:`localise_site` copies the vendored copies of those files
(``quality/static/vendor``, unchanged npm distribution files with their licences) into the site
and points every page at them. :func:`show_quarantine` adds what the suites cannot see: the rows
that the row-level rules quarantined before validation, by table and reason with a few sample
rows (``quarantine.html``), a section at the top of the index, and an "N rows quarantined" note
beside each table's latest validation.

Example usage::

    from quality.data_docs import QuarantineReport, localise_site, show_quarantine

    site = index.parent  # GX's local_site folder, after context.build_data_docs()
    localise_site(site)
    show_quarantine(site, QuarantineReport.from_frame(quarantine_df))
"""

from __future__ import annotations

import ast
import html
import json
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

logger = logging.getLogger(__name__)

VENDOR_DIR = Path(__file__).parent / "static" / "vendor"
SITE_VENDOR = "static/vendor"  # inside the Data Docs site
GX_LOGO = "static/images/logo-long.png"  # GX copies its images into every site

# Every CDN file GX 1.24's templates reference -> its copy under quality/static/vendor.
_FILTER_CONTROL_CSS = (
    "bootstrap-table-1.19.1/extensions/filter-control/bootstrap-table-filter-control.min.css"
)
CDN_ASSETS: dict[str, str] = {
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": (
        "bootstrap-table-1.19.1/bootstrap-table.min.css"
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": (
        "bootstrap-table-1.19.1/bootstrap-table.min.js"
    ),
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/"
    "bootstrap-table-filter-control.css": _FILTER_CONTROL_CSS,
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/"
    "bootstrap-table-filter-control.min.css": _FILTER_CONTROL_CSS,
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/"
    "bootstrap-table-filter-control.min.js": (
        "bootstrap-table-1.19.1/extensions/filter-control/bootstrap-table-filter-control.min.js"
    ),
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": (
        "bootstrap-4.3.1/css/bootstrap.min.css"
    ),
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": (
        "bootstrap-4.3.1/js/bootstrap.min.js"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/"
    "bootstrap-datepicker.min.css": "bootstrap-datepicker-1.9.0/css/bootstrap-datepicker.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/"
    "bootstrap-datepicker.min.js": "bootstrap-datepicker-1.9.0/js/bootstrap-datepicker.min.js",
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/"
    "bootstrap-prefers-dark.css": "bootstrap-dark-1.1.0/css/bootstrap-prefers-dark.css",
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": (
        "fontawesome-free-6.6.0/css/all.min.css"
    ),
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery-3.7.1/jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": (
        "popper.js-1.12.9/umd/popper.min.js"
    ),
    "https://cdn.jsdelivr.net/npm/vega@5": "vega-5.33.1/vega.min.js",
    "https://cdn.jsdelivr.net/npm/vega-lite@5": "vega-lite-5.23.0/vega-lite.min.js",
    "https://cdn.jsdelivr.net/npm/vega-embed@6": "vega-embed-6.29.0/vega-embed.min.js",
}

_ASSET_TAG = re.compile(r"<(?:script|link|img)\b[^>]*>", re.IGNORECASE)
_SITE_STATIC = re.compile(r"^(?:\.\.?/)*static/(.*)$", re.DOTALL)
_ASSET_URL = re.compile(r"""(\b(?:src|href)\s*=\s*)(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL)
_SRI_ATTRS = re.compile(r"""\s+(?:integrity|crossorigin)(?:\s*=\s*(["']).*?\1)?""", re.IGNORECASE)
# GX's logo (with a tracking query string) and its dark-mode logo come from this bucket.
_GX_WEB_ASSETS = re.compile(r"https?://great-expectations-web-assets\.[^\"')\s]*", re.IGNORECASE)
# What a browser fetches by itself (links in <a href> are only followed on a click).
_EXTERNAL_FETCH = re.compile(
    r"""<(?:script|img|iframe|source|audio|video|embed)\b[^>]*\bsrc\s*=\s*["']((?:https?:)?//[^"']+)"""
    r"""|<link\b[^>]*\bhref\s*=\s*["']((?:https?:)?//[^"']+)"""
    r"""|url\(\s*["']?((?:https?:)?//[^"')]+)"""
    r"""|@import\s+["']((?:https?:)?//[^"']+)""",
    re.IGNORECASE,
)

# Golden tables whose quarantine is recorded under another table: for event sources, listens are
# aggregated from the validated listen_events, and the raw listen rows' quarantine is theirs.
SHARED_QUARANTINE = {"listens": "listen_events"}

_MARK = "cratedigger:quarantine"
_MARKED = re.compile(rf"<!-- {_MARK} -->.*?<!-- /{_MARK} -->\n?", re.DOTALL)
_SAMPLE_CHARS = 240


def site_dir(index: Path) -> Path:
    """The Data Docs site folder of an ``index.html``."""
    return Path(index).parent


def _prefix(site: Path, page: Path) -> str:
    """The relative way from ``page`` back to the site root, e.g. ``"../../"``."""
    return "../" * (len(page.relative_to(site).parts) - 1)


def external_fetches(page_html: str) -> list[str]:
    """URLs on another host that a browser would fetch while loading this page."""
    return [next(g for g in m.groups() if g) for m in _EXTERNAL_FETCH.finditer(page_html)]


def _localise_html(text: str, prefix: str) -> str:
    def tag(match: re.Match[str]) -> str:
        original = match.group(0)

        def url(m: re.Match[str]) -> str:
            value = m.group(3).strip()
            local = CDN_ASSETS.get(value)
            if local is not None:
                return f"{m.group(1)}{m.group(2)}{prefix}{SITE_VENDOR}/{local}{m.group(2)}"
            static = _SITE_STATIC.match(value)
            if static:  # GX links some pages' favicon one folder too high: re-root it
                return f"{m.group(1)}{m.group(2)}{prefix}static/{static.group(1)}{m.group(2)}"
            return m.group(0)

        rewritten = _ASSET_URL.sub(url, original)
        if rewritten != original:
            # Subresource integrity on a file:// copy is a CORS fetch that Chromium refuses.
            rewritten = _SRI_ATTRS.sub("", rewritten)
        return rewritten

    text = _ASSET_TAG.sub(tag, text)
    return _GX_WEB_ASSETS.sub(prefix + GX_LOGO, text)


def localise_site(site: Path) -> list[str]:
    """Serve every asset of the Data Docs ``site`` from the site itself.

    Copies ``quality/static/vendor`` to ``<site>/static/vendor`` and rewrites each page's CDN
    ``<link>``/``<script>`` tags (and GX's S3 logo) to relative local paths. Idempotent.

    Returns
    -------
    list[str]
        ``"<page>: <url>"`` for every external fetch left (none with GX 1.24's templates); a
        warning is logged for each, e.g. after a GX upgrade that references a new CDN file.
    """
    site = Path(site)
    missing = sorted({p for p in CDN_ASSETS.values() if not (VENDOR_DIR / p).is_file()})
    if missing:
        raise FileNotFoundError(f"vendored Data Docs assets missing under {VENDOR_DIR}: {missing}")
    shutil.copytree(VENDOR_DIR, site / SITE_VENDOR, dirs_exist_ok=True)
    left: list[str] = []
    for page in sorted(site.rglob("*.html")):
        text = page.read_text(encoding="utf-8")
        new = _localise_html(text, _prefix(site, page))
        if new != text:
            page.write_text(new, encoding="utf-8")
        rel = page.relative_to(site).as_posix()
        left += [f"{rel}: {u}" for u in external_fetches(new)]
    for item in left:
        logger.warning(
            "Data Docs page still fetches from the network (vendor it in quality/static/vendor "
            "and add it to quality.data_docs.CDN_ASSETS): %s",
            item,
        )
    return left


@dataclass
class QuarantineReport:
    """Quarantined rows for the report: counts by table and reason, and a few samples of each.

    Attributes
    ----------
    counts
        Columns ``table_name, reason_code, rows``.
    samples
        A few rows per (table, reason code): ``table_name, reason_code, record_key, reason,
        raw_row, source_file, source_line``.
    """

    counts: pd.DataFrame
    samples: pd.DataFrame

    @classmethod
    def from_frame(cls, quarantine: pd.DataFrame, samples_per_reason: int = 5) -> QuarantineReport:
        """Summarise rows with the ``golden.quarantine`` columns (``reason`` = ``code: detail``)."""
        frame = quarantine.copy()
        frame["reason_code"] = frame["reason"].astype(str).str.split(":", n=1).str[0].str.strip()
        counts = (
            frame.groupby(["table_name", "reason_code"], sort=False)
            .size()
            .rename("rows")
            .reset_index()
        )
        sort = [c for c in ("source_file", "source_line", "record_key") if c in frame.columns]
        samples = (
            frame.sort_values(sort, kind="stable")
            .groupby(["table_name", "reason_code"], sort=False)
            .head(samples_per_reason)
        )
        return cls(counts=counts, samples=samples.reset_index(drop=True))

    def __post_init__(self) -> None:
        counts = self.counts.copy()
        counts["rows"] = counts["rows"].astype("int64")
        self.counts = counts.sort_values(
            ["table_name", "rows", "reason_code"], ascending=[True, False, True]
        ).reset_index(drop=True)

    @property
    def total(self) -> int:
        return int(self.counts["rows"].sum()) if len(self.counts) else 0

    def by_table(self) -> dict[str, int]:
        """Quarantined rows per golden table."""
        return {str(t): int(n) for t, n in self.counts.groupby("table_name")["rows"].sum().items()}

    def reasons(self, table: str) -> list[tuple[str, int]]:
        """(reason code, rows) of one table, most frequent first."""
        sub = self.counts[self.counts["table_name"] == table]
        return [(str(c), int(n)) for c, n in zip(sub["reason_code"], sub["rows"], strict=True)]


def _e(value: object) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NA:
        return ""
    return html.escape(str(value))


def _short(value: object, limit: int = _SAMPLE_CHARS) -> str:
    text = "" if value is None or value is pd.NA else str(value)
    if len(text) > limit:
        text = text[:limit] + f"… ({len(text):,} chars)"
    return html.escape(text)


def _anchor(table: str, code: str | None = None) -> str:
    raw = f"q-{table}" + (f"-{code}" if code else "")
    return re.sub(r"[^A-Za-z0-9_-]", "_", raw)


def _rows(n: int) -> str:
    return f"{n:,} row{'s' if n != 1 else ''}"


def _index_section(report: QuarantineReport) -> str:
    if report.total == 0:
        body = (
            '<p class="mb-0">No rows were quarantined: every raw row reached its golden table.</p>'
        )
    else:
        lines = []
        for table, code, rows in report.counts[["table_name", "reason_code", "rows"]].itertuples(
            index=False
        ):
            lines.append(
                f"<tr><td>golden_{_e(table)}</td><td><code>{_e(code)}</code></td>"
                f'<td class="text-right">{int(rows):,}</td>'
                f'<td><a href="quarantine.html#{_anchor(table, code)}">sample rows</a></td></tr>'
            )
        body = (
            '<table id="cratedigger-quarantine-table" class="table table-sm table-striped mb-0">'
            '<thead><tr><th>suite</th><th>reason</th><th class="text-right">rows</th><th></th>'
            "</tr></thead><tbody>" + "".join(lines) + "</tbody></table>"
        )
    tables = report.by_table()
    summary = (
        f"{_rows(report.total)} in <code>golden.quarantine</code> from {len(tables)} "
        f"table{'s' if len(tables) != 1 else ''}"
        if report.total
        else "none"
    )
    return (
        f"<!-- {_MARK} -->\n"
        '<div id="cratedigger-quarantine" class="ge-section container-fluid mb-3 pl-sm-3 px-0">'
        '<div class="card border-warning">'
        '<div class="card-header"><strong>Quarantined rows</strong>: '
        f"{summary}. These rows failed the row-level rules and are not in the golden tables that "
        'the suites below validate. <a href="quarantine.html">All reasons with sample rows</a>.'
        '</div><div class="card-body p-2">'
        f"{body}</div></div></div>\n<!-- /{_MARK} -->\n"
    )


def _quarantine_page(report: QuarantineReport, prefix: str = "") -> str:
    parts = []
    for table, count in report.by_table().items():
        parts.append(
            f'<h2 id="{_anchor(table)}" class="h4 mt-4">golden_{_e(table)}: '
            f"{_rows(count)} quarantined</h2>"
        )
        for code, rows in report.reasons(table):
            sample = report.samples[
                (report.samples["table_name"] == table) & (report.samples["reason_code"] == code)
            ]
            cells = []
            for r in sample.itertuples(index=False):
                where = f"{_e(getattr(r, 'source_file', ''))}:{_e(getattr(r, 'source_line', ''))}"
                cells.append(
                    f"<tr><td>{_short(getattr(r, 'record_key', ''), 80)}</td>"
                    f"<td>{_short(r.reason)}</td><td>{where}</td>"
                    f'<td><code class="text-break">{_short(getattr(r, "raw_row", ""))}</code></td>'
                    "</tr>"
                )
            parts.append(
                f'<h3 id="{_anchor(table, code)}" class="h6 mt-3"><code>{_e(code)}</code>: '
                f"{_rows(rows)} (showing {len(sample)})</h3>"
                '<table class="table table-sm table-bordered cratedigger-quarantine-samples" '
                'style="table-layout: fixed">'
                '<colgroup><col style="width: 12%"><col style="width: 25%">'
                '<col style="width: 20%"><col style="width: 43%"></colgroup>'
                "<thead><tr><th>record key</th><th>reason</th><th>source</th><th>raw row</th>"
                "</tr></thead><tbody>" + "".join(cells) + "</tbody></table>"
            )
    if not parts:
        parts.append("<p>No rows were quarantined.</p>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>Quarantined rows</title>"
        f'<link rel="stylesheet" href="{prefix}{SITE_VENDOR}/bootstrap-4.3.1/css/bootstrap.min.css">'
        '</head><body><div class="container-fluid p-4">'
        '<p><a href="index.html">&larr; Data Docs</a></p>'
        f'<h1 class="h3">Quarantined rows: {_rows(report.total)}</h1>'
        '<p class="text-muted">Rows of the raw tables that failed the row-level rules '
        "(<code>golden.quarantine</code>), by golden table and reason, with a few sample rows "
        f"each (long values cut at {_SAMPLE_CHARS} characters).</p>"
        + "".join(parts)
        + "</div></body></html>\n"
    )


_BADGE = re.compile(r"<a [^>]*cratedigger-quarantine-badge[^>]*>[^<]*</a>")
_DATA_LINE = re.compile(r"^(\s*data: )(\[.*\]),[ \t]*$", re.MULTILINE)


def _badge(table: str, rows: int, prefix: str = "") -> str:
    return (
        f'<a href="{prefix}quarantine.html#{_anchor(table)}" '
        f'class="badge badge-warning ml-1 cratedigger-quarantine-badge">'
        f"{_rows(rows)} quarantined</a>"
    )


def _badge_index_rows(
    text: str, quarantined: dict[str, str], counts: dict[str, int]
) -> tuple[str, dict[str, str]]:
    """Badge the latest validation row of each suite with quarantined rows.

    ``quarantined`` maps a suite's table to the table its quarantined rows are recorded under.

    Returns the new index text and, per table, the latest validation page's relative path.
    """
    latest: dict[str, str] = {}

    def rewrite(match: re.Match[str]) -> str:
        try:
            rows = ast.literal_eval(match.group(2))
        except (ValueError, SyntaxError):
            return match.group(0)
        if not rows or not all(
            isinstance(r, dict)
            and str(r.get("_table_row_link_path", "")).startswith("validations/")
            for r in rows
        ):
            return match.group(0)
        newest: dict[str, dict] = {}
        for r in rows:
            suite = str(r.get("_expectation_suite_name_sort", ""))
            if suite not in newest or r.get("_run_time_sort", 0) > newest[suite].get(
                "_run_time_sort", 0
            ):
                newest[suite] = r
        for r in rows:
            r["expectation_suite_name"] = _BADGE.sub("", str(r.get("expectation_suite_name", "")))
        for suite, r in newest.items():
            table = suite.removeprefix("golden_")
            latest[table] = r["_table_row_link_path"]
            if table in quarantined:
                r["expectation_suite_name"] += _badge(
                    quarantined[table], counts[quarantined[table]]
                )
        return f"{match.group(1)}{json.dumps(rows)},"

    return _DATA_LINE.sub(rewrite, text), latest


def _insert_before_sections(text: str, block: str) -> str:
    at = text.find('<div id="section-1"')
    if at < 0:
        at = text.find("<body>")
        at = at + len("<body>") if at >= 0 else 0
    return text[:at] + block + text[at:]


def _validation_note(table: str, source: str, report: QuarantineReport, prefix: str) -> str:
    reasons = ", ".join(f"<code>{_e(c)}</code> {n:,}" for c, n in report.reasons(source))
    count = report.by_table()[source]
    recorded = f", recorded as {_e(source)}" if source != table else ""
    return (
        f"<!-- {_MARK} -->\n"
        '<div id="cratedigger-quarantine-note" class="alert alert-warning mx-3">'
        f"<strong>{_rows(count)} quarantined</strong> from golden.{_e(table)}'s raw input "
        f"(by reason: {reasons}{recorded}). This suite validates only the rows that passed the "
        f'row-level rules: see <a href="{prefix}quarantine.html#{_anchor(source)}">the sample '
        "rows</a>."
        f"</div>\n<!-- /{_MARK} -->\n"
    )


def show_quarantine(site: Path, report: QuarantineReport) -> Path:
    """Put the quarantine into the Data Docs ``site``; return the ``quarantine.html`` path.

    Writes ``quarantine.html`` (counts by table and reason, sample rows), inserts a quarantine
    section at the top of ``index.html``, and marks the latest validation of every suite whose
    table had quarantined rows with "N rows quarantined" (in the index and on its page).
    Idempotent: earlier insertions are replaced.
    """
    site = Path(site)
    page = site / "quarantine.html"
    page.write_text(_quarantine_page(report), encoding="utf-8")
    counts = report.by_table()
    quarantined = {t: t for t in counts}  # suite table -> table its quarantine is recorded under
    for table, source in SHARED_QUARANTINE.items():
        if table not in counts and source in counts:
            quarantined[table] = source

    index = site / "index.html"
    text = _MARKED.sub("", index.read_text(encoding="utf-8"))
    text, latest = _badge_index_rows(text, quarantined, counts)
    index.write_text(_insert_before_sections(text, _index_section(report)), encoding="utf-8")

    for table, rel in latest.items():
        validation = site / rel
        if not validation.is_file():
            continue
        text = _MARKED.sub("", validation.read_text(encoding="utf-8"))
        if table in quarantined:
            note = _validation_note(table, quarantined[table], report, _prefix(site, validation))
            text = _insert_before_sections(text, note)
        validation.write_text(text, encoding="utf-8")
    return page
