"""Audio: probe files for ``audio_clips``, embed clips (musicnn / openl3 / DSP), evaluate.

Public API::

    probe_audio(path) -> ClipInfo | ProbeFailure
    probe_clips(frame) -> (clips_frame, quarantine_frame)
    make_audio_encoder(name="musicnn", **options) -> AudioEncoder
    available_backends() -> list[str]
    AudioEncoder.load(); .embed(source) -> AudioEmbedding; .embed_many(...) -> AudioBatch
    load_waveform(source, target_rate, max_seconds=120) -> Waveform
    self_retrieval_accuracy(matrix, groups), knn_accuracy(matrix, labels, k), embed_segments(...)
    evaluate_encoder(encoder, sources, ids, ...) -> self-retrieval + genre kNN figures
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
from embeddings.audio.evaluation import (
    choose_segment_seconds,
    cosine_similarities,
    embed_segments,
    evaluate_encoder,
    knn_accuracy,
    nearest_in_same_group,
    self_retrieval_accuracy,
    standardise_columns,
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
    "cosine_similarities",
    "embed_segments",
    "estimate_tempo",
    "knn_accuracy",
    "load_waveform",
    "make_audio_encoder",
    "choose_segment_seconds",
    "evaluate_encoder",
    "nearest_in_same_group",
    "probe_audio",
    "probe_clips",
    "self_retrieval_accuracy",
    "standardise_columns",
    "tag_column",
]
