"""Audio -> CF regressor: recovers CF neighbours when CF factors depend on audio."""

from __future__ import annotations

import numpy as np
import pytest

from embeddings.audio_to_cf import AudioToCF, evaluate_cold_start, neighbour_overlap


def _synthetic(n: int = 400, d_audio: int = 40, n_factors: int = 16, noise: float = 0.1, seed=0):
    """CF factors as a noisy linear function of audio features."""
    rng = np.random.default_rng(seed)
    audio = rng.standard_normal((n, d_audio))
    weights = rng.standard_normal((d_audio, n_factors)) / np.sqrt(d_audio)
    cf = audio @ weights + noise * rng.standard_normal((n, n_factors))
    return audio.astype(np.float32), cf.astype(np.float32)


def test_recovers_neighbours_far_better_than_random():
    audio, cf = _synthetic()
    figures = evaluate_cold_start(audio, cf, test_fraction=0.25, k=10, seed=0)
    assert figures["n_test"] == 100 and figures["n_train"] == 300
    assert figures["overlap_at_k"] > 10 * figures["random_overlap_at_k"]
    assert figures["overlap_at_k"] > 0.4
    assert figures["median_rank"] < figures["random_median_rank"] / 20


def test_unrelated_cf_factors_give_chance_level():
    audio, _ = _synthetic(seed=0)
    _, cf = _synthetic(seed=1)  # independent of audio
    figures = evaluate_cold_start(audio, cf, test_fraction=0.25, k=10, seed=0)
    assert figures["overlap_at_k"] < 5 * figures["random_overlap_at_k"]


def test_fit_predict_save_load_round_trip(tmp_path):
    audio, cf = _synthetic(n=120)
    model = AudioToCF().fit(audio[:100], cf[:100])
    assert model.alpha_ in model.alphas
    predicted = model.predict(audio[100:])
    assert predicted.shape == (20, 16) and predicted.dtype == np.float32
    error = np.mean((predicted - cf[100:]) ** 2)
    assert error < 0.5 * np.mean((cf[100:] - cf[:100].mean(axis=0)) ** 2)
    path = model.save(tmp_path / "audio_to_cf.npz")
    again = AudioToCF.load(path)
    np.testing.assert_allclose(again.predict(audio[100:]), predicted, rtol=1e-6)
    assert again.predict(audio[100]).shape == (1, 16)


def test_more_audio_dims_than_tracks_still_fits():
    rng = np.random.default_rng(3)
    audio = rng.standard_normal((30, 400))
    cf = rng.standard_normal((30, 8))
    predicted = AudioToCF().fit(audio, cf).predict(audio)
    assert np.isfinite(predicted).all()


def test_bad_inputs_name_the_problem():
    audio, cf = _synthetic(n=20)
    with pytest.raises(ValueError, match="cf_vecs has 19 rows"):
        AudioToCF().fit(audio, cf[:19])
    bad = audio.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        AudioToCF().fit(bad, cf)
    with pytest.raises(RuntimeError, match="not fitted"):
        AudioToCF().predict(audio)
    model = AudioToCF(alpha=1.0).fit(audio, cf)
    assert model.alpha_ == 1.0
    with pytest.raises(ValueError, match="same audio encoder"):
        model.predict(audio[:, :10])


def test_neighbour_overlap_perfect_prediction():
    rng = np.random.default_rng(5)
    catalogue = rng.standard_normal((50, 6))
    figures = neighbour_overlap(catalogue[:5], catalogue[:5], catalogue, exclude=range(5), k=5)
    assert figures["overlap_at_k"] == 1.0
    assert figures["median_rank"] == 1.0 and figures["hit_at_k"] == 1.0
    assert figures["random_overlap_at_k"] == pytest.approx(5 / 49)
