"""Audio: probe files for ``audio_clips``, embed clips (musicnn / openl3 / DSP).

Public API::

    probe_audio(path) -> ClipInfo | ProbeFailure
    probe_clips(frame) -> (clips_frame, quarantine_frame)
    make_audio_encoder(name="musicnn", **options) -> AudioEncoder
    available_backends() -> list[str]
    AudioEncoder.load(); .embed(source) -> AudioEmbedding; .embed_many(...) -> AudioBatch
    load_waveform(source, target_rate, max_seconds=120) -> Waveform

Their evaluation (segment self-retrieval, genre kNN) lives in :mod:`evaluation.audio`.
"""

from embeddings.audio.encoders import (
    BACKENDS,
    DEFAULT_BACKEND,
    AudioBatch,
    AudioEmbedding,
    AudioEncoder,
    BackendUnavailable,
    DspEncoder,
    MusicnnEncoder,
    OpenL3Encoder,
    available_backends,
    estimate_tempo,
    make_audio_encoder,
    tag_column,
)
from embeddings.audio.loading import Waveform, load_waveform
from embeddings.audio.probe import (
    CLIP_COLUMNS,
    QUARANTINE_COLUMNS,
    ClipInfo,
    ProbeFailure,
    probe_audio,
    probe_clips,
)

__all__ = [
    "BACKENDS",
    "CLIP_COLUMNS",
    "DEFAULT_BACKEND",
    "QUARANTINE_COLUMNS",
    "AudioBatch",
    "AudioEmbedding",
    "AudioEncoder",
    "BackendUnavailable",
    "ClipInfo",
    "DspEncoder",
    "MusicnnEncoder",
    "OpenL3Encoder",
    "ProbeFailure",
    "Waveform",
    "available_backends",
    "estimate_tempo",
    "load_waveform",
    "make_audio_encoder",
    "probe_audio",
    "probe_clips",
    "tag_column",
]
