"""Issue 17: `cratedigger serve` over a materialised sample, started on a free port.

Every endpoint answers for a known user, item and artist with names; the OpenAPI document lists
them; a bounded schemathesis run finds no server error and no response outside the schema; and
while a pipeline run in another process publishes new CF vectors, every request succeeds and
the answers switch once from the old version to the new one.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import duckdb
import httpx
import numpy as np
import pandas as pd
import pytest

from embeddings.vector_store import read_snapshot, snapshot_root, snapshot_version
from serving.client import ApiClient, ApiError, local_server
from tests.pipeline import run_assets, settings_for

PROJECT = Path(__file__).resolve().parent.parent
LAST_WEEK = "2026-11-16"
TARGETS = (
    "discover_weekly",
    "cf_item_vectors",
    "cf_user_vectors",
    "similar_artists_table",
    "transition_model",
)
ENDPOINTS = {
    "/users/{user_id}/discover-weekly",
    "/items/{item_id}/similar",
    "/artists/{artist_id}/similar",
    "/users/{user_id}/recommendations",
    "/artists/{artist_id}/radio",
    "/search",
    "/health",
}


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """What `make demo` publishes (playlists, CF/text/audio vectors, similar artists) for one
    week of a small sample, materialised through the real assets."""
    from orchestration.definitions import PARTITIONED

    data_dir = tmp_path_factory.mktemp("api")
    settings = settings_for(data_dir, scale=0.1).with_overrides(
        audio_backend="dsp", audio_compare="none"
    )
    selection = dg.AssetSelection.assets(*TARGETS).upstream().required_multi_asset_neighbors()
    assert run_assets(settings, selection - PARTITIONED).success
    assert run_assets(settings, selection & PARTITIONED, partition_key=LAST_WEEK).success
    return settings


@pytest.fixture(scope="module")
def server(published):
    with local_server(published.data_dir) as url:
        yield url


@pytest.fixture(scope="module")
def api(server):
    with ApiClient(server) as client:
        yield client


@pytest.fixture(scope="module")
def known(published):
    """A user with a playlist, a track with CF and audio vectors, an artist with text vectors."""
    data = published.data_dir
    playlists = pd.read_parquet(
        data / "exports" / "discover_weekly" / f"week_start={LAST_WEEK}" / "playlists.parquet"
    )
    root = snapshot_root(published.milvus_uri)
    cf_items = read_snapshot(root, "cf_items")
    audio = read_snapshot(root, "audio_dsp")
    text = read_snapshot(root, "text_items")
    with duckdb.connect(str(published.warehouse_path), read_only=True) as con:
        artists = dict(con.execute("SELECT artist_id, name FROM golden.artists").fetchall())
        listens = con.execute("SELECT user_id, item_id FROM golden.listens").df()
    user = sorted(playlists["user_id"])[0]
    track = sorted(set(cf_items.ids) & set(audio.ids))[0]
    artist = sorted(text.ids)[0]
    played = set(listens.loc[listens["user_id"] == user, "item_id"])
    return {"user": user, "track": track, "artist": artist, "artists": artists, "played": played}


def test_the_openapi_document_lists_every_endpoint(api) -> None:
    schema = api.get("/openapi.json")
    assert set(schema["paths"]) >= ENDPOINTS, sorted(schema["paths"])
    for path in ENDPOINTS:
        assert "get" in schema["paths"][path]


def test_the_docs_page_reads_offline(server) -> None:
    """/docs takes Swagger UI's JS and CSS from the server itself, not from a CDN."""
    import re

    import httpx

    page = httpx.get(f"{server}/docs", timeout=10)
    assert page.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets and all(a.startswith("/") for a in assets), assets
    for asset in assets:
        assert httpx.get(f"{server}{asset}", timeout=10).status_code == 200, asset


def test_every_endpoint_answers_for_a_known_user_item_and_artist(api, known) -> None:
    user, track, artist = known["user"], known["track"], known["artist"]

    playlist = api.discover_weekly(user)
    assert playlist["week_start"] == LAST_WEEK
    # the user's A/B variant, as discover_weekly assigned it (the default experiment)
    assert playlist["variant"] in {"control", "wide_exploration"}
    assert playlist["models"]["cf_model"] and playlist["models"]["blend_config"]
    assert 0 < len(playlist["items"]) <= 30
    assert all(e["name"] and e["reason"] and e["artist_name"] for e in playlist["items"])
    assert [e["position"] for e in playlist["items"]] == list(range(1, len(playlist["items"]) + 1))
    assert api.discover_weekly(user, week="2026-11-19")["week_start"] == LAST_WEEK  # any day

    for kind in ("cf", "audio"):
        similar = api.similar_items(track, kind=kind, k=5)
        assert similar["name"] and similar["version"] and len(similar["items"]) == 5
        assert track not in {e["id"] for e in similar["items"]}
        assert all(e["name"] and e["artist_name"] for e in similar["items"])
        scores = [e["score"] for e in similar["items"]]
        assert scores == sorted(scores, reverse=True)
    for kind in ("text", "cooccurrence"):
        similar = api.similar_artists(artist, kind=kind, k=5)
        assert similar["name"] == known["artists"][artist] and similar["items"]
        assert artist not in {e["id"] for e in similar["items"]}
        assert all(e["name"] == known["artists"][e["id"]] for e in similar["items"])
    assert all(e["reason"] for e in api.similar_artists(artist, kind="cooccurrence")["items"])

    recommended = api.recommendations(user, k=50)
    assert recommended["method"] == "cf" and len(recommended["items"]) == 50
    assert recommended["excluded_played"] == len(known["played"]) > 0
    assert not {e["item_id"] for e in recommended["items"]} & known["played"]
    assert all(e["name"] for e in recommended["items"])

    name = known["artists"][artist]
    typo = name[:2] + name[3:]  # one letter dropped
    found = api.search(typo, type="artist", limit=5)["results"]
    assert artist in [hit["id"] for hit in found]
    tracks = api.search(playlist["items"][0]["name"].lower(), type="track")["results"]
    assert tracks[0]["id"] == playlist["items"][0]["item_id"] and tracks[0]["score"] == 1.0

    health = api.health()
    assert health["status"] == "ok" and set(health["kinds"]) == {
        "cf",
        "text",
        "audio",
        "cooccurrence",
    }
    for name in ("cf_items", "cf_users", "text_items", "audio_dsp"):
        assert health["collections"][name]["version"]
    assert health["models"]["blend_config"] == playlist["models"]["blend_config"]
    assert health["catalog"]["users"] > 0 and health["playlists"]["latest"] == LAST_WEEK


def test_errors_are_404_with_a_message_422_for_bad_parameters(api, server, known) -> None:
    for call, text in (
        (lambda: api.discover_weekly("no-such-user"), "unknown user 'no-such-user'"),
        (lambda: api.discover_weekly(known["user"], week="2020-01-01"), "weeks available"),
        (lambda: api.similar_items("no-such-item"), "unknown item"),
        (lambda: api.similar_artists("no-such-artist"), "unknown artist"),
        (lambda: api.recommendations("no-such-user"), "unknown user"),
        (lambda: api.similar_items(known["track"], kind="text"), "per artist"),
    ):
        with pytest.raises(ApiError) as error:
            call()
        assert error.value.status == 404 and text in error.value.detail
    for path in (
        f"/items/{known['track']}/similar?k=0",
        f"/items/{known['track']}/similar?k=1000",
        f"/items/{known['track']}/similar?kind=bogus",
        f"/users/{known['user']}/discover-weekly?week=not-a-date",
        "/search?q=",
        "/search?q=owls&type=album",
        f"/artists/{known['artist']}/radio?steps=0",
        f"/artists/{known['artist']}/radio?steps=1000",
    ):
        response = httpx.get(server + path)
        assert response.status_code == 422, path
        assert response.json()["detail"]
    unknown = httpx.get(f"{server}/artists/nobody/radio")
    assert unknown.status_code == 404 and "unknown artist 'nobody'" in unknown.json()["detail"]


def test_the_radio_drifts_from_a_seed_artist_with_a_reason_for_every_step(
    api, server, known
) -> None:
    """Issue 16: the radio serves the week's transition model: 50 steps, no artist twice within
    the window, each step named and explained; the same seed gives the same station."""
    artist = known["artist"]
    station = httpx.get(f"{server}/artists/{artist}/radio?steps=50", timeout=10).json()
    assert station["artist_id"] == artist and station["name"] == known["artists"][artist]
    assert station["week"] == LAST_WEEK and station["version"] and station["window"] == 20
    steps = station["steps"]
    assert [s["position"] for s in steps] == list(range(1, 51))
    played = [artist] + [s["artist_id"] for s in steps]
    for i in range(len(played)):
        assert played[i] not in played[max(0, i - 20) : i], (i, played)
    assert all(s["reason"] and s["name"] == known["artists"][s["artist_id"]] for s in steps)
    assert {s["kind"] for s in steps} <= {"transition", "cluster", "popular"}
    again = httpx.get(f"{server}/artists/{artist}/radio?steps=50", timeout=10).json()
    assert again["steps"] == steps
    other = httpx.get(f"{server}/artists/{artist}/radio?steps=50&seed=1", timeout=10).json()
    assert other["steps"] != steps
    assert api.health()["models"]["transition_model"] == station["version"]


def _schemathesis(url: str, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        "100",
        "--request-timeout",
        "10",
        "--seed",
        "17",
        "--generation-database",
        "none",
        "--no-color",
        *args,
    ]
    # cwd: schemathesis keeps a crash cache in ./.schemathesis
    return subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=cwd)


def test_a_bounded_schemathesis_run_finds_no_server_error_and_no_schema_violation(
    server, tmp_path
) -> None:
    """Every operation with every check (the radio in a run of its own: a station is slower
    to answer than a lookup)."""
    radio = "/artists/{artist_id}/radio"
    for args in (
        ("--exclude-path", radio, "--max-time", "20"),
        ("--include-path", radio, "--max-time", "5"),
    ):
        done = _schemathesis(server, tmp_path, *args)
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
        # every generated case passed; a warning (e.g. "only 404s for the radio": no fuzzed
        # artist id exists) is not a failure
        assert re.search(r"(\d+) generated, \1 passed", done.stdout), done.stdout[-4000:]


def test_a_pipeline_run_publishing_new_vectors_never_fails_a_request(
    published, server, known
) -> None:
    """A Dagster run in another process refits the week's CF model with another config and
    publishes cf_items/cf_users (holding the Milvus Lite file and the warehouse while it runs);
    meanwhile clients keep asking; every answer is 200 and each client sees the old version
    until the switch and the new one after it."""
    root = snapshot_root(published.milvus_uri)
    old = snapshot_version(root, "cf_items")
    script = (
        "from orchestration.settings import apply_runtime_environment\n"
        "apply_runtime_environment()\n"
        "from pathlib import Path\n"
        "from tests.pipeline import run_assets, settings_for\n"
        f"s = settings_for(Path({str(published.data_dir)!r}), scale=0.1).with_overrides("
        "audio_backend='dsp', audio_compare='none')\n"
        "r = run_assets(s, 'key:cf_model or key:cf_item_vectors or key:cf_user_vectors', "
        f"partition_key={LAST_WEEK!r}, "
        "run_config={'ops': {'cf_model': {'config': {'als_factors': 16}}}})\n"
        "raise SystemExit(0 if r.success else 1)\n"
    )
    pipeline = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=PROJECT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    stop = threading.Event()
    seen: dict[int, list[tuple[int, str | None]]] = {}
    paths = [
        f"/items/{known['track']}/similar?kind=cf&k=5",
        f"/users/{known['user']}/recommendations?k=10",
        f"/users/{known['user']}/discover-weekly",
        "/health",
    ]

    def client(number: int) -> None:
        log = seen.setdefault(number, [])
        with httpx.Client(base_url=server, timeout=10) as http:
            while not stop.is_set():
                path = paths[number % len(paths)] if number < len(paths) else paths[0]
                try:
                    response = http.get(path)
                except httpx.HTTPError as error:
                    log.append((-1, repr(error)))
                    continue
                body = response.json() if response.status_code == 200 else {}
                version = body.get("version")
                if path == "/health":
                    version = body.get("collections", {}).get("cf_items", {}).get("version")
                log.append((response.status_code, version))
                time.sleep(0.01)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(5)]
    for thread in threads:
        thread.start()
    try:
        _, errors = pipeline.communicate(timeout=300)
        assert pipeline.returncode == 0, errors[-3000:]
        new = snapshot_version(root, "cf_items")
        assert new != old, "the run published no new version"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if httpx.get(f"{server}/health").json()["collections"]["cf_items"]["version"] == new:
                break
            time.sleep(0.2)
        time.sleep(1.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    statuses = [status for log in seen.values() for status, _ in log]
    assert statuses and set(statuses) == {200}, [
        e for log in seen.values() for e in log if e[0] != 200
    ][:5]
    for number in (0, 1, 3, 4):  # the clients whose answers carry the cf_items version
        versions = [version for _, version in seen[number]]
        assert set(versions) == {old, new}, (number, set(versions))
        switch = versions.index(new)
        assert all(v == old for v in versions[:switch]) and all(v == new for v in versions[switch:])
    # the served answers are the new version's (its neighbours, its user vectors)
    fresh = read_snapshot(root, "cf_items")
    assert fresh.version == new and fresh.vectors.shape[1] == 16
    answer = httpx.get(f"{server}/items/{known['track']}/similar?kind=cf&k=5").json()
    vectors = fresh.vectors / np.linalg.norm(fresh.vectors, axis=1, keepdims=True)
    row = fresh.ids.index(known["track"])
    best = [fresh.ids[i] for i in np.argsort(-(vectors @ vectors[row]))[1:6]]
    assert [e["id"] for e in answer["items"]] == best


def test_serve_without_data_is_one_line_and_exit_1(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "orchestration.cli", "serve", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and "nothing to serve" in done.stderr


def test_publishing_a_version_writes_a_snapshot_and_moves_the_pointer(tmp_path) -> None:
    """The hook in VectorStore.write_collection: the snapshot readers load, written aside and
    pointed at atomically; a no-op re-write restores a missing one; drop removes them."""
    from embeddings.vector_store import VectorStore
    from serving.vectors import MilvusCollection, SnapshotCollection

    rng = np.random.default_rng(0)
    ids = [f"i{n:04d}" for n in range(300)]
    root = snapshot_root(tmp_path / "milvus.db")
    with VectorStore(str(tmp_path / "milvus.db")) as store:
        folders = {}
        for version in ("v1", "v2", "v3"):
            vectors = rng.standard_normal((len(ids), 8)).astype(np.float32)
            report = store.write_collection(
                "things",
                ids,
                vectors,
                {"name": [f"name {i}" for i in ids]},
                dim=8,
                version=version,
            )
            folders[version] = Path(report.snapshot)
            assert snapshot_version(root, "things") == version
            snapshot = read_snapshot(root, "things")
            assert snapshot.ids == ids and np.allclose(snapshot.vectors, vectors)
            assert snapshot.fields["name"][3] == "name i0003" and snapshot.metric == "COSINE"
        assert not folders["v1"].exists() and folders["v2"].exists()  # two versions kept
        # the same answers from the snapshot and from Milvus (the production path)
        served, milvus = SnapshotCollection(snapshot), MilvusCollection(store, "things")
        assert milvus.version == served.version == "v3"
        mine = served.neighbours("i0007", 5, exclude={"i0001"})
        theirs = milvus.neighbours("i0007", 5, exclude={"i0001"})
        assert [i for i, _ in mine] == [i for i, _ in theirs]
        assert np.allclose([s for _, s in mine], [s for _, s in theirs], atol=1e-4)
        assert served.field("i0002", "name") == milvus.field("i0002", "name") == "name i0002"
        # a collection written before snapshots existed gets one on its next (no-op) write
        import shutil

        shutil.rmtree(root / "things")
        again = store.write_collection(
            "things",
            ids,
            snapshot.vectors,
            {"name": snapshot.fields["name"]},
            dim=8,
            version="v3",
        )
        assert not again.written and snapshot_version(root, "things") == "v3"
        store.drop("things")
        assert not (root / "things").exists()


def test_the_hnsw_index_agrees_with_exact_search_and_honours_exclusions(tmp_path) -> None:
    from embeddings.vector_store import Snapshot
    from serving.vectors import SnapshotCollection

    rng = np.random.default_rng(1)
    centres = rng.standard_normal((20, 16))
    vectors = centres[rng.integers(0, 20, 3000)] + 0.3 * rng.standard_normal((3000, 16))
    ids = [f"i{n}" for n in range(3000)]
    snapshot = Snapshot(
        "things", "v1", ids, vectors.astype(np.float32), {}, "COSINE", "FLAT", 0.0, tmp_path
    )
    exact = SnapshotCollection(snapshot)
    indexed = exact.with_index(tmp_path / "cache")
    assert exact.searched_by == "exact" and indexed.searched_by == "hnsw"
    assert exact.cached_index(tmp_path / "cache") is None  # small: searched exactly anyway
    hits = 0
    for key in ids[:100]:
        wanted = {i for i, _ in exact.neighbours(key, 10)}
        found = [i for i, _ in indexed.neighbours(key, 10)]
        assert key not in found and len(found) == 10
        hits += len(wanted & set(found))
    assert hits / 1000 >= 0.95
    played = set(ids[:2990])  # almost everything excluded: falls back to exact search
    assert {i for i, _ in indexed.search(vectors[0], 10, exclude=played)} == set(ids[2990:])


def test_serve_on_a_busy_port_is_one_line_and_exit_1(published) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "orchestration.cli",
                "serve",
                "--data-dir",
                str(published.data_dir),
                "--port",
                str(port),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().count("\n") == 0 and "cannot listen" in done.stderr
