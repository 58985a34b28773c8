"""The golden pipeline end to end: sample and HetRec, idempotency, quarantine, the report."""

from __future__ import annotations

import dagster as dg
import duckdb
import pandas as pd
import pytest

from tests.pipeline import run_assets, settings_for

GOLDEN_SELECTION = (
    "(key:raw/* or key:golden/* or key:data_quality_report) and not key:golden/audio_attributes"
)


def _golden_tables(path) -> dict[str, pd.DataFrame]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        names = [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'golden' "
                "AND table_name <> 'quarantine' ORDER BY 1"
            ).fetchall()
        ]
        return {n: con.execute(f"SELECT * FROM golden.{n} ORDER BY ALL").df() for n in names}
    finally:
        con.close()


def test_sample_golden_pipeline_is_idempotent_and_reconciles(tmp_path) -> None:
    settings = settings_for(tmp_path)
    first = run_assets(settings, GOLDEN_SELECTION)
    assert first.success
    checks = first.get_asset_check_evaluations()
    assert checks and all(c.passed for c in checks), [
        (c.asset_key, c.check_name) for c in checks if not c.passed
    ]
    before = _golden_tables(settings.warehouse_path)
    assert {"users", "artists", "tracks", "items", "listens", "listen_events"} <= set(before)
    assert len(before["listens"]) > 0

    second = run_assets(settings, GOLDEN_SELECTION)
    assert second.success
    after = _golden_tables(settings.warehouse_path)
    for name, frame in before.items():
        pd.testing.assert_frame_equal(frame, after[name], check_like=True, obj=name)

    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    quarantine = con.execute(
        "SELECT table_name, reason, raw_row, run_id FROM golden.quarantine"
    ).df()
    raw_listens = con.execute("SELECT count(*) FROM raw.listens").fetchone()[0]
    events = con.execute("SELECT count(*) FROM golden.listen_events").fetchone()[0]
    con.close()
    # the sample plants 6 bad listen rows: unknown user x3, plays 0 x2, a duplicate event
    bad = quarantine[quarantine.table_name == "listen_events"]
    assert len(bad) == 6
    assert raw_listens == events + len(bad)
    assert set(bad.reason.str.split(":").str[0]) == {
        "unknown_user",
        "plays_not_positive",
        "duplicate_event",
    }
    assert quarantine.run_id.nunique() == 1  # the second run replaced the first run's rows
    assert bad.raw_row.str.contains("_source_file").all()

    index = settings.data_docs_index
    assert index.exists()
    html = index.read_text()
    assert "<html" in html.lower() and "golden_listens" in html


def test_a_failing_suite_blocks_downstream(tmp_path) -> None:
    """Corrupt a golden table behind the pipeline's back: the blocking check stops the report."""
    settings = settings_for(tmp_path)
    assert run_assets(
        settings, "(key:raw/* or key:golden/*) and not key:golden/audio_attributes"
    ).success
    con = duckdb.connect(str(settings.warehouse_path))
    con.execute("INSERT INTO golden.artists SELECT * FROM golden.artists LIMIT 1")
    con.close()
    selection = dg.AssetSelection.checks(
        dg.AssetCheckKey(dg.AssetKey(["golden", "artists"]), "expectations")
    ) | dg.AssetSelection.assets("data_quality_report")
    result = run_assets(settings, selection, raise_on_error=False)
    failed = [c for c in result.get_asset_check_evaluations() if not c.passed]
    assert [c.asset_key.path for c in failed] == [["golden", "artists"]]
    assert failed[0].metadata["expectations_failed"].value >= 1
    assert "expect_column_values_to_be_unique" in str(failed[0].metadata["offending_values"])
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert dg.AssetKey("data_quality_report") not in materialized


@pytest.mark.slow
def test_hetrec_golden_counts_and_unknown_tagged_artists(tmp_path, hetrec_dir) -> None:
    settings = settings_for(tmp_path, "hetrec", str(hetrec_dir))
    result = run_assets(settings, GOLDEN_SELECTION)
    assert result.success
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    counts = {
        t: con.execute(f"SELECT count(*) FROM golden.{t}").fetchone()[0]
        for t in ("users", "artists", "listens")
    }
    assert counts == {"users": 1892, "artists": 17632, "listens": 92834}
    unknown = con.execute(
        "SELECT count(DISTINCT json_extract_string(raw_row, '$.artist_id')) FROM golden.quarantine "
        "WHERE table_name = 'tag_assignments' AND reason LIKE 'unknown_artist%'"
    ).fetchone()[0]
    assert unknown == 390
    con.close()
