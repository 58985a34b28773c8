"""The data-quality report reads offline, shows the quarantine, and bounds row counts.

A small report is built from the HetRec fixture (rows quarantined by the row-level rules, one
failing foreign key) and opened in headless Chromium with every non-file request refused: the
index and a validation page must list their results, styled by the vendored CSS, with the
quarantine visible, and no page may try to fetch anything from the network.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from quality.data_docs import CDN_ASSETS, VENDOR_DIR, QuarantineReport, external_fetches
from quality.rules import validate_bundle
from quality.suites import (
    FK_EXAMPLES,
    MAX_ROWS,
    SUITE_REFERENCES,
    build_data_docs,
    raw_row_bound,
    validate_table,
)
from sources import HetrecSource

FIXTURES = Path(__file__).parent / "fixtures"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
EXTRA_USERS = [f"ghost{i:03d}" for i in range(40)]  # reference keys beyond the description's cap
LONG_VALUE = "z" * 5000


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A Data Docs site for users, artists, items and listens of the HetRec fixture."""
    root = tmp_path_factory.mktemp("gx")
    bundle = validate_bundle(HetrecSource(FIXTURES / "hetrec_small").read())
    raw = {name: r.raw_rows for name, r in bundle.tables.items()} | {"tracks": 0}
    for table in ["users", "artists", "items", "listens"]:
        refs = {
            name: bundle.golden(ref)[column].tolist()
            for name, (ref, column) in SUITE_REFERENCES[table].items()
        }
        if table == "listens":  # one listened user unknown: a failing foreign key, and many keys
            missing = bundle.golden("listens")["user_id"].iloc[0]
            refs["users"] = [u for u in refs["users"] if u != missing] + EXTRA_USERS
        validate_table(root, table, bundle.golden(table), refs, max_rows=raw_row_bound(table, raw))
    quarantine = bundle.quarantine()
    long_row = quarantine.iloc[[0]].assign(
        table_name="artists",
        reason="value_too_long: a very long value",
        raw_row=f'{{"text": "{LONG_VALUE}"}}',
    )
    quarantine = pd.concat([quarantine, long_row], ignore_index=True)
    return build_data_docs(root, quarantine).parent


def _latest_validation(site: Path, table: str) -> Path:
    return sorted((site / "validations" / f"golden_{table}").rglob("*.html"))[-1]


def test_every_page_uses_local_assets_only(site: Path) -> None:
    pages = sorted(site.rglob("*.html"))
    assert len(pages) >= 9  # index, quarantine, 4 suites, 4 validations
    for page in pages:
        text = page.read_text()
        assert external_fetches(text) == [], page
        for url in re.findall(r"""<(?:script|link|img)\b[^>]*\b(?:src|href)="([^"]+)""", text):
            assert (page.parent / url).resolve().is_file(), (page, url)
    assert all((VENDOR_DIR / p).is_file() for p in CDN_ASSETS.values())
    # the font files that font-awesome's CSS loads came along
    css = (site / "static/vendor/fontawesome-free-6.6.0/css/all.min.css").read_text()
    for font in set(re.findall(r"url\(([^)]+)\)", css)):
        assert (site / "static/vendor/fontawesome-free-6.6.0/css" / font).resolve().is_file()


def test_building_twice_keeps_one_quarantine_section(site: Path, tmp_path) -> None:
    from quality.data_docs import localise_site, show_quarantine

    copy = tmp_path / "site"
    shutil.copytree(site, copy)
    report = QuarantineReport.from_frame(
        pd.DataFrame(
            {"table_name": ["listen_events"], "record_key": ["k"], "reason": ["unknown_user: u"]}
        )
    )  # an event source's listens: their raw rows' quarantine is recorded as listen_events
    assert localise_site(copy) == []
    show_quarantine(copy, report)
    index = (copy / "index.html").read_text()
    assert index.count('id="cratedigger-quarantine"') == 1
    assert index.count("cratedigger-quarantine-badge") == 1
    assert "1 row quarantined" in index
    note = _latest_validation(copy, "listens").read_text()
    assert note.count('id="cratedigger-quarantine-note"') == 1
    assert "recorded as listen_events" in note
    assert "cratedigger-quarantine-note" not in _latest_validation(copy, "artists").read_text()


def test_quarantine_page_counts_and_truncates(site: Path) -> None:
    text = (site / "quarantine.html").read_text()
    assert "golden_listens: 7 rows quarantined" in text
    assert "plays_not_positive" in text and "unknown_item" in text
    assert LONG_VALUE not in text and "(5,012 chars)" in text
    index = (site / "index.html").read_text()
    assert "7 rows quarantined" in index and "3 rows quarantined" in index  # listens, artists
    assert "cratedigger-quarantine-note" in _latest_validation(site, "listens").read_text()
    assert "cratedigger-quarantine-note" not in _latest_validation(site, "users").read_text()


def test_foreign_key_results_are_capped(site: Path) -> None:
    page = _latest_validation(site, "listens").read_text()
    keys = len(set(EXTRA_USERS)) + 4  # the fixture's 5 golden users but one
    assert f"user_id values must be keys of golden.users.user_id: {keys:,} keys" in page
    assert f"({keys - FK_EXAMPLES:,} more)" in page
    assert EXTRA_USERS[-1] not in page  # not every key printed
    assert "1 unexpected value" in page or "unexpected" in page


def test_row_count_bounds(tmp_path) -> None:
    assert raw_row_bound("listens", {"listens": 11}) == 11
    assert raw_row_bound("items", {"artists": 6, "tracks": 3}) == 9
    assert raw_row_bound("items", {"artists": 6}) is None  # a raw table not counted
    assert raw_row_bound("artist_terms", {"artists": 6}) is None  # no raw source
    users = pd.DataFrame({"user_id": ["1", "2", "3"]})
    bounds = {
        o.expectation: o
        for o in validate_table(tmp_path, "users", users, max_rows=3).outcomes
        if "row_count" in o.expectation
    }
    assert bounds["expect_table_row_count_to_be_between"].success
    # more golden rows than raw rows fails, and so does an empty required table
    assert not validate_table(tmp_path, "users", users, max_rows=2).success
    assert not validate_table(tmp_path, "users", users.iloc[:0], max_rows=0).success
    assert not validate_table(tmp_path, "users", users.iloc[:0]).success
    # optional tables may be empty; without a known raw count the ceiling is MAX_ROWS
    assert validate_table(tmp_path, "tags", pd.DataFrame({"tag_id": [], "tag": []})).success
    assert MAX_ROWS >= 10**8


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not installed (scripts/setup.sh installs Debian's chromium)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright not installed (scripts/setup.sh installs it)"
    )
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _open_offline(browser, page_path: Path):
    """Load ``page_path`` refusing every non-file request; return (page, requests, failures)."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    requests: list[str] = []
    failures: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("requestfailed", lambda r: failures.append(r.url))
    page.route(re.compile(r"^(?!file:)"), lambda route: route.abort())
    page.goto(page_path.as_uri(), wait_until="load")
    page.wait_for_load_state("networkidle")
    return page, requests, failures


def _assert_offline(requests: list[str], failures: list[str]) -> None:
    assert requests, "no request recorded"
    assert [u for u in requests if not u.startswith("file://")] == []
    assert failures == []  # every local asset was there
    assert any("/static/vendor/bootstrap-4.3.1/css/bootstrap.min.css" in u for u in requests)
    assert any("/static/vendor/jquery-3.7.1/jquery.min.js" in u for u in requests)


def _style(page, selector: str, prop: str) -> str:
    return page.eval_on_selector(
        selector, f"e => getComputedStyle(e).getPropertyValue({prop!r})"
    ).strip()


def test_index_renders_offline_with_results_and_quarantine(site: Path, browser) -> None:
    page, requests, failures = _open_offline(browser, site / "index.html")
    try:
        _assert_offline(requests, failures)
        # bootstrap-table (jQuery) rendered the validation results from the page's data
        results = page.locator(".ge-index-page-validation-results-table tbody tr")
        assert results.count() == 4
        text = page.locator(".ge-index-page-validation-results-table").inner_text()
        assert "golden_listens" in text and "golden_users" in text
        # styled by the vendored CSS: bootstrap's warning badge, font-awesome's icon font
        badge = page.locator(".cratedigger-quarantine-badge", has_text="7 rows quarantined")
        assert badge.is_visible()
        assert _style(page, ".cratedigger-quarantine-badge", "background-color") == (
            "rgb(255, 193, 7)"
        )
        assert "Font Awesome" in _style(page, ".ge-success-icon", "font-family")
        # the quarantine section with counts by table and reason
        section = page.locator("#cratedigger-quarantine")
        assert section.is_visible()
        rows = page.locator("#cratedigger-quarantine-table tbody tr")
        assert rows.count() >= 10
        assert "plays_not_positive" in section.inner_text()
        assert _style(page, "#cratedigger-quarantine .card", "border-top-color") == (
            "rgb(255, 193, 7)"
        )
    finally:
        page.close()


def test_validation_page_renders_offline_styled(site: Path, browser) -> None:
    page, requests, failures = _open_offline(browser, _latest_validation(site, "listens"))
    try:
        _assert_offline(requests, failures)
        # every expectation's result is listed (GX's bootstrap-table tables)
        assert page.locator("table.table tbody tr").count() >= 7
        assert page.get_by_text("Unsuccessful Expectations").is_visible()
        note = page.locator("#cratedigger-quarantine-note")
        assert note.is_visible() and "7 rows quarantined" in note.inner_text()
        assert _style(page, "#cratedigger-quarantine-note", "background-color") == (
            "rgb(255, 243, 205)"  # bootstrap 4's .alert-warning
        )
        assert _style(page, "body", "margin") == "0px"  # the browser default is 8px
    finally:
        page.close()


def test_quarantine_page_renders_offline(site: Path, browser) -> None:
    page, requests, failures = _open_offline(browser, site / "quarantine.html")
    try:
        assert [u for u in requests if not u.startswith("file://")] == [] and failures == []
        assert page.locator(".cratedigger-quarantine-samples tbody tr").count() >= 10
        assert _style(page, "body", "margin") == "0px"
    finally:
        page.close()
