"""Read audio for the encoders: any sample rate and channel count, mono at the model's rate.

Long files are capped: only ``max_seconds`` are analysed (the centre excerpt by default, where a
track is usually most representative; or the start), read by seeking so a 30-minute file is not
decoded in full. Capping logs a warning and is reported in the result.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

logger = logging.getLogger(__name__)

DEFAULT_MAX_SECONDS = 120.0
MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_RATE = 384_000


@dataclass
class Waveform:
    """Mono float32 samples at a known rate.

    Attributes
    ----------
    samples : ndarray
        Shape ``(n,)``, float32, full scale 1.0.
    sample_rate : int
        Hz.
    source_duration_s : float
        Duration of the whole source before any capping.
    capped : bool
        True when only an excerpt of the source is in ``samples``.
    offset_s : float
        Where the excerpt starts in the source.
    """

    samples: np.ndarray
    sample_rate: int
    source_duration_s: float
    capped: bool = False
    offset_s: float = 0.0

    @property
    def duration_s(self) -> float:
        """Duration of ``samples`` in seconds."""
        return len(self.samples) / float(self.sample_rate)


AudioSource = str | Path | Waveform | tuple[np.ndarray, int]


def _to_mono(samples: np.ndarray) -> np.ndarray:
    """Mix ``(n,)`` or ``(n, channels)`` samples to mono float32."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    elif samples.ndim != 1:
        raise ValueError(
            f"audio samples must have shape (n,) or (n, channels), got {samples.shape}; "
            "transpose (channels, n) arrays first"
        )
    return np.ascontiguousarray(samples)


def _excerpt_bounds(
    total_frames: int, sample_rate: int, max_seconds: float | None, excerpt: str
) -> tuple[int, int]:
    """Start frame and frame count of the analysed excerpt."""
    if max_seconds is None or total_frames <= int(max_seconds * sample_rate):
        return 0, total_frames
    count = int(max_seconds * sample_rate)
    if excerpt == "start":
        return 0, count
    if excerpt == "centre":
        return (total_frames - count) // 2, count
    raise ValueError(f"excerpt must be 'centre' or 'start', got {excerpt!r}")


def resample(samples: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Resample mono samples (soxr high quality through librosa).

    Parameters
    ----------
    samples : ndarray
        Mono float32.
    source_rate, target_rate : int
        Hz.

    Returns
    -------
    ndarray
        float32 at ``target_rate``.
    """
    if source_rate == target_rate:
        return samples.astype(np.float32, copy=False)
    import librosa

    return librosa.resample(samples, orig_sr=source_rate, target_sr=target_rate).astype(np.float32)


def load_waveform(
    source: AudioSource,
    target_rate: int,
    *,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
    excerpt: Literal["centre", "start"] = "centre",
) -> Waveform:
    """Load audio as mono float32 at ``target_rate``, capped to ``max_seconds``.

    Parameters
    ----------
    source : str, Path, Waveform or (samples, sample_rate)
        A file (any format soundfile reads, audioread as fallback) or samples shaped ``(n,)`` or
        ``(n, channels)``.
    target_rate : int
        The model's sample rate.
    max_seconds : float, optional
        Analyse at most this many seconds; None analyses everything.
    excerpt : {"centre", "start"}
        Which part of a long source to analyse.

    Returns
    -------
    Waveform

    Raises
    ------
    ValueError
        When the source has no samples, a sample rate outside 1 kHz..384 kHz, or non-finite
        samples.
    RuntimeError
        When the file cannot be decoded (message names the file).
    """
    if isinstance(source, Waveform):
        samples, rate = source.samples, source.sample_rate
        total = len(samples)
        start, count = _excerpt_bounds(total, rate, max_seconds, excerpt)
        samples = _to_mono(samples[start : start + count])
        label = "waveform"
    elif isinstance(source, tuple):
        samples, rate = source
        samples = np.asarray(samples)
        total = samples.shape[0]
        start, count = _excerpt_bounds(total, int(rate), max_seconds, excerpt)
        samples = _to_mono(samples[start : start + count])
        label = "waveform"
    else:
        samples, rate, total, start, count = _read_file(Path(source), max_seconds, excerpt)
        label = str(source)
    rate = int(rate)
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise ValueError(
            f"{label}: sample rate {rate} Hz is outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz"
        )
    if samples.size == 0:
        raise ValueError(f"{label}: no audio samples to analyse")
    if not np.isfinite(samples).all():
        raise ValueError(f"{label}: samples contain NaN or infinity")
    capped = count < total
    if capped:
        logger.warning(
            "%s: %.0f s long, analysing %.0f s from %.0f s (%s excerpt)",
            label,
            total / rate,
            count / rate,
            start / rate,
            excerpt,
        )
    return Waveform(
        samples=resample(samples, rate, target_rate),
        sample_rate=target_rate,
        source_duration_s=total / rate,
        capped=capped,
        offset_s=start / rate,
    )


def _read_file(
    path: Path, max_seconds: float | None, excerpt: str
) -> tuple[np.ndarray, int, int, int, int]:
    """Read the analysed excerpt of a file: (mono samples, rate, total frames, start, count)."""
    import soundfile as sf

    if not path.is_file():
        raise RuntimeError(f"no audio file at {path}")
    try:
        with sf.SoundFile(str(path)) as handle:
            rate, total = handle.samplerate, handle.frames
            start, count = _excerpt_bounds(total, rate, max_seconds, excerpt)
            if start:
                handle.seek(start)
            samples = handle.read(frames=count, dtype="float32", always_2d=True)
        return _to_mono(samples), rate, total, start, count
    except Exception as soundfile_error:  # noqa: BLE001 - fall back to audioread
        try:
            import warnings

            import librosa

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # librosa warns that it falls back to audioread
                samples, rate = librosa.load(str(path), sr=None, mono=True)
        except Exception as fallback_error:  # noqa: BLE001
            raise RuntimeError(
                f"cannot decode {path}: soundfile said {soundfile_error}; audioread said "
                f"{fallback_error}. Convert it to WAV, FLAC or Ogg Vorbis."
            ) from fallback_error
        total = len(samples)
        start, count = _excerpt_bounds(total, int(rate), max_seconds, excerpt)
        return samples[start : start + count], int(rate), total, start, count
