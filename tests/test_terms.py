"""Weighted top terms and artist documents (embeddings.terms): no model needed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from embeddings.terms import build_artist_docs, build_artist_terms, clean_term


def assignments(rows: list[tuple[str | None, str, str | None]]) -> pd.DataFrame:
    """(user_id, artist_id, tag) rows as golden tag_assignments."""
    frame = pd.DataFrame(rows, columns=["user_id", "artist_id", "tag"])
    frame["ts"] = pd.NaT
    return frame


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Hip-Hop", "hip hop"),
        ("  hip   hop ", "hip hop"),
        ("HIP_HOP", "hip hop"),
        ("Drum & Bass", "drum and bass"),
        ("drum n bass", "drum and bass"),
        ("80's", "80s"),
        ("\uff32\uff4f\uff43\uff4b", "rock"),  # full-width letters, NFKC
        ("caf\ufffd", "caf"),  # replacement character from a bad decode
        (None, ""),
        (float("nan"), ""),
        ("\x00\x07", ""),
    ],
)
def test_clean_term(raw, expected):
    assert clean_term(raw) == expected


def test_near_duplicate_terms_merge_into_one_term_with_the_most_used_spelling():
    rows = [
        ("u1", "a1", "hip hop"),
        ("u2", "a1", "Hip-Hop"),
        ("u3", "a1", "hiphop"),
        ("u4", "a1", "hip-hop"),
        ("u5", "a1", "HIP HOP"),
    ]
    terms, report = build_artist_terms(assignments(rows), min_users=2)
    assert terms["term"].tolist() == ["hip hop"]
    assert terms["taggers"].tolist() == [5]
    assert terms["weight"].tolist() == [1.0]
    assert report.raw_terms == 2  # "hip hop" and "hiphop"
    assert report.terms == 1
    assert report.merged_examples == {"hip hop": ["hip hop", "hiphop"]}


def test_weight_is_share_of_the_artists_taggers_and_lies_in_zero_one():
    rows = [
        ("u1", "a1", "rock"),
        ("u1", "a1", "Rock"),  # same user, same term twice: counted once
        ("u1", "a1", "indie"),
        ("u2", "a1", "rock"),
        ("u3", "a1", "indie"),
        ("u4", "a1", "pop"),
        ("u5", "a2", "pop"),
        ("u5", "a2", "rock"),
    ]
    terms, _ = build_artist_terms(assignments(rows), min_users=2)
    a1 = terms[terms["artist_id"] == "a1"].set_index("term")["weight"]
    assert a1.to_dict() == {"rock": 0.5, "indie": 0.5, "pop": 0.25}
    a2 = terms[terms["artist_id"] == "a2"].set_index("term")["weight"]
    assert a2.to_dict() == {"pop": 1.0, "rock": 1.0}
    assert ((terms["weight"] > 0) & (terms["weight"] <= 1)).all()
    assert list(terms.columns) == ["artist_id", "term", "weight", "taggers"]


def test_rare_terms_dropped_and_artists_left_without_terms_are_listed():
    rows = [
        ("u1", "a1", "rock"),
        ("u2", "a2", "rock"),
        ("u3", "a3", "my favourite band ever"),  # used by one user only
        ("u3", "a3", "seen in 2009"),
    ]
    terms, report = build_artist_terms(assignments(rows), min_users=2)
    assert set(terms["artist_id"]) == {"a1", "a2"}
    assert report.artists_without_terms == ["a3"]
    assert report.rare_terms_dropped == 2
    assert report.artists_tagged == 3
    assert report.as_dict()["artists_without_terms"] == 1
    # With min_users=1 nothing is rare.
    terms_all, report_all = build_artist_terms(assignments(rows), min_users=1)
    assert "a3" in set(terms_all["artist_id"])
    assert report_all.artists_without_terms == []


def test_top_n_keeps_highest_weights_in_order():
    rng = np.random.default_rng(0)
    rows = []
    # Term t_i is given by i+1 of 10 users, so weights rank t9 > t8 > ... > t0.
    for i in range(10):
        for user in range(i + 1):
            rows.append((f"u{user}", "a1", f"t{i}"))
    rows += [(f"u{u}", "a2", f"t{i}") for i in range(10) for u in range(2)]
    frame = assignments(rows).sample(frac=1.0, random_state=int(rng.integers(1000)))
    terms, _ = build_artist_terms(frame, min_users=2, top_n=3)
    a1 = terms[terms["artist_id"] == "a1"]
    assert a1["term"].tolist() == ["t9", "t8", "t7"]
    assert a1["weight"].tolist() == [1.0, 0.9, 0.8]
    assert (terms.groupby("artist_id").size() <= 3).all()


def test_assignments_without_user_count_each_row_as_one_tagger():
    frame = pd.DataFrame(
        {"artist_id": ["a1", "a1", "a1", "a1", "a2"], "tag": ["rock", "rock", "pop", "pop", "pop"]}
    )
    terms, report = build_artist_terms(frame, min_users=2)
    a1 = terms[terms["artist_id"] == "a1"].set_index("term")["weight"].to_dict()
    assert a1 == {"pop": 0.5, "rock": 0.5}
    assert report.anonymous_rows == 5


def test_bad_rows_are_counted_not_fatal():
    rows = [
        ("u1", "a1", "rock"),
        ("u2", "a1", "rock"),
        ("u3", "a1", None),
        ("u4", "a1", "   "),
        ("u5", "a1", "\ufffd\ufffd"),
        ("u6", None, "rock"),
        ("u7", "a1", "cafÃ© music"),  # latin-1 mojibake stays a (strange) term
        ("u8", "a1", "cafÃ© music"),
    ]
    terms, report = build_artist_terms(assignments(rows), min_users=2)
    assert report.rows_without_term == 3
    assert report.rows_without_artist == 1
    assert set(terms["term"]) == {"rock", "cafã© music"}
    # Rows without a usable term do not count as taggers of the artist: 4 taggers left.
    assert terms.set_index("term").loc["rock", "weight"] == 0.5


def test_missing_column_names_the_column_and_the_fix():
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['tag'\]"):
        build_artist_terms(pd.DataFrame({"artist_id": ["a1"], "tag_id": ["1"]}))
    with pytest.raises(ValueError, match="min_users"):
        build_artist_terms(assignments([("u1", "a1", "rock")]), min_users=0)


def test_empty_input_gives_empty_terms_with_the_schema():
    terms, report = build_artist_terms(assignments([]))
    assert terms.empty
    assert list(terms.columns) == ["artist_id", "term", "weight", "taggers"]
    assert report.rows_in == 0


def test_docs_list_name_terms_by_weight_and_text_and_report_artists_without_doc():
    artists = pd.DataFrame(
        {
            "artist_id": ["a1", "a2", "a3", "a4"],
            "name": ["Radiohead", "Quiet One", "Only Text", "No Terms"],
            "genre": [None, None, "ambient", None],
            "url": [None] * 4,
        }
    )
    artist_terms = pd.DataFrame(
        {
            "artist_id": ["a1", "a1", "a1", "a2", "ghost"],
            "term": ["rock", "alternative", "experimental", "pop", "metal"],
            "weight": [0.5, 0.9, 0.2, 1.0, 1.0],
        }
    )
    artist_text = pd.DataFrame(
        {"artist_id": ["a1", "a3", "a3"], "text": ["From Oxford.", "Drones", "and\x00 hiss."]}
    )
    docs, report = build_artist_docs(artists, artist_terms, artist_text)
    text = docs.set_index("artist_id")["text"].to_dict()
    assert text["a1"] == "Radiohead. Described as: alternative, rock, experimental. From Oxford."
    assert text["a2"] == "Quiet One. Described as: pop."
    assert text["a3"] == "Only Text. Genre: ambient. Drones and hiss."
    assert docs["artist_id"].tolist() == ["a1", "a2", "a3"]
    assert report.artists_without_doc == ["a4"]
    assert report.terms_without_artist == ["ghost"]
    assert (report.docs, report.with_terms, report.with_text) == (3, 2, 2)


def test_docs_max_terms_and_missing_columns():
    artists = pd.DataFrame({"artist_id": ["a1"], "name": ["X"]})
    artist_terms = pd.DataFrame(
        {"artist_id": ["a1"] * 3, "term": ["a", "b", "c"], "weight": [0.9, 0.5, 0.1]}
    )
    docs, _ = build_artist_docs(artists, artist_terms, max_terms=2)
    assert docs["text"].tolist() == ["X. Described as: a, b."]
    with pytest.raises(ValueError, match="artists lacks column"):
        build_artist_docs(pd.DataFrame({"artist_id": ["a1"]}), artist_terms)
