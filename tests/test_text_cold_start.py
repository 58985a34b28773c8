"""Cold-start evaluation of the text model (evaluation.text_cold_start)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evaluation.text_cold_start import (
    METHOD_RANDOM,
    METHOD_TAG_POPULARITY,
    METHOD_TEXT,
    METHOD_TEXT_RAW,
    evaluate_text_cold_start,
    tag_popularity,
)

GENRES, ARTISTS_PER_GENRE, USERS = 4, 60, 240


def planted_world(seed: int = 0):
    """Artists in 4 genres (text vectors near a genre centre); users play their genre."""
    rng = np.random.default_rng(seed)
    dim = 16
    centres = rng.normal(size=(GENRES, dim)) * 2
    artist_ids = [f"a{g}_{i}" for g in range(GENRES) for i in range(ARTISTS_PER_GENRE)]
    genre_of = np.repeat(np.arange(GENRES), ARTISTS_PER_GENRE)
    vectors = centres[genre_of] + rng.normal(size=(len(artist_ids), dim))
    rows = []
    for u in range(USERS):
        genre = u % GENRES
        own = rng.choice(ARTISTS_PER_GENRE, size=15, replace=False)
        rows += [(f"u{u}", f"a{genre}_{i}", int(rng.integers(1, 500))) for i in own]
        other = rng.choice(len(artist_ids), size=2, replace=False)
        rows += [(f"u{u}", artist_ids[i], int(rng.integers(1, 50))) for i in other]
    listens = pd.DataFrame(rows, columns=["user_id", "item_id", "plays"]).drop_duplicates(
        ["user_id", "item_id"]
    )
    taggers = rng.integers(1, 20, size=len(artist_ids))  # unrelated to taste
    tag_assignments = pd.DataFrame(
        [(f"t{t}", a, "rock") for a, n in zip(artist_ids, taggers, strict=True) for t in range(n)],
        columns=["user_id", "artist_id", "tag"],
    )
    return listens, np.array(artist_ids), vectors.astype(np.float32), tag_assignments


def test_text_finds_cold_artists_far_above_random_and_reports_every_method():
    listens, ids, vectors, tags = planted_world()
    result = evaluate_text_cold_start(listens, ids, vectors, tags, k=5, seed=0)
    table = result.table.set_index("method")
    details = result.details
    assert details["cold_artists"] == 24
    assert details["cold_candidates_with_vector"] == 24
    assert table.loc[METHOD_RANDOM, "recall_at_k"] == pytest.approx(5 / 24)
    assert table.loc[METHOD_TEXT, "recall_at_k"] > 3 * table.loc[METHOD_RANDOM, "recall_at_k"]
    assert table.loc[METHOD_TEXT, "x_tag_popularity"] > 1.5
    assert table.loc[METHOD_TAG_POPULARITY, "x_tag_popularity"] == pytest.approx(1.0)
    assert {METHOD_TEXT_RAW, METHOD_TEXT} <= set(table.index)
    assert any(m.startswith("text + ") for m in table.index)
    assert ((table["recall_at_k"] >= 0) & (table["recall_at_k"] <= 1)).all()
    evaluated = details["users_validation"] + details["users_evaluation"]
    assert (
        evaluated == details["users_with_heldout_candidate"] - details["users_without_warm_profile"]
    )
    assert (table["users"] == details["users_evaluation"]).all()
    assert details["beta"] in details["beta_validation_recall"]
    assert result.figure_png[:8] == b"\x89PNG\r\n\x1a\n"


def test_same_seed_same_figures_other_seed_other_split():
    listens, ids, vectors, tags = planted_world()
    kwargs = {"k": 5, "make_figure": False}
    first = evaluate_text_cold_start(listens, ids, vectors, tags, seed=3, **kwargs)
    again = evaluate_text_cold_start(listens, ids, vectors, tags, seed=3, **kwargs)
    other = evaluate_text_cold_start(listens, ids, vectors, tags, seed=4, **kwargs)
    pd.testing.assert_frame_equal(first.table, again.table)
    assert first.details["heldout_plays_rows"] != other.details["heldout_plays_rows"]


def test_cold_artists_without_a_vector_are_excluded_and_counted():
    listens, ids, vectors, tags = planted_world()
    keep = ~np.char.startswith(ids.astype(str), "a3_")  # genre 3 has no text at all
    result = evaluate_text_cold_start(
        listens, ids[keep], vectors[keep], tags, k=5, seed=0, make_figure=False
    )
    details = result.details
    assert details["cold_without_vector"] > 0
    assert details["cold_candidates_with_vector"] + details["cold_without_vector"] == 24
    assert details["heldout_rows_on_cold_without_vector"] > 0
    random_recall = result.table.set_index("method").loc[METHOD_RANDOM, "recall_at_k"]
    assert random_recall == pytest.approx(5 / details["cold_candidates_with_vector"])


def test_beta_is_the_validation_argmax_and_noise_text_loses_to_tag_popularity():
    listens, ids, vectors, _ = planted_world()
    # Make tag popularity the listening popularity (very informative) and text pure noise.
    listeners = listens.groupby("item_id")["user_id"].nunique()
    tags = pd.DataFrame(
        [(f"t{t}", a, "x") for a, n in listeners.items() for t in range(int(n))],
        columns=["user_id", "artist_id", "tag"],
    )
    noise = np.random.default_rng(9).normal(size=vectors.shape).astype(np.float32)
    result = evaluate_text_cold_start(listens, ids, noise, tags, k=5, seed=0, make_figure=False)
    curve = result.details["beta_validation_recall"]
    assert curve[result.details["beta"]] == max(curve.values())
    assert result.details["beta"] > 0
    table = result.table.set_index("method")
    assert table.loc[METHOD_TAG_POPULARITY, "recall_at_k"] > table.loc[METHOD_TEXT, "recall_at_k"]


def test_bad_arguments_raise_clear_errors():
    listens, ids, vectors, tags = planted_world()
    with pytest.raises(ValueError, match="cold_fraction"):
        evaluate_text_cold_start(listens, ids, vectors, tags, cold_fraction=1.5)
    with pytest.raises(ValueError, match="no cold artist has a text vector"):
        evaluate_text_cold_start(listens, ["zz"], vectors[:1], tags)
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['plays'\]"):
        evaluate_text_cold_start(listens.drop(columns="plays"), ids, vectors, tags)


def test_tag_popularity_counts_distinct_users_and_anonymous_rows():
    frame = pd.DataFrame(
        {"user_id": ["u1", "u1", "u2", None, None], "artist_id": ["a", "a", "a", "b", "b"]}
    )
    assert tag_popularity(frame).to_dict() == {"a": 2, "b": 2}


@pytest.mark.slow
def test_hetrec_text_cold_start_meets_the_acceptance_bar():
    from tests.test_text import hetrec_text_vectors

    tables, _docs, _tr, _dr, ids, vectors, _stats = hetrec_text_vectors()
    result = evaluate_text_cold_start(
        tables["listens"],
        ids,
        vectors,
        tables["tag_assignments"],
        k=50,
        seed=0,
        make_figure=False,
    )
    details = result.details
    print(result.table.to_string())
    assert details["best_text_x_random"] >= 8.0
    assert details["best_text_x_tag_popularity"] >= 1.15
    assert details["accepted"]
    assert details["cold_without_vector"] > 0  # HetRec: ~35% of cold artists have no terms
