"""Audio encoders behind one interface: musicnn (default), openl3 (optional), librosa DSP.

Every encoder turns a file or a waveform into an :class:`AudioEmbedding`: a fixed-size vector
(compare with cosine), optional per-frame vectors, and attributes people understand (tempo in BPM
for every backend; tag probabilities and top tags where the backend has tags).

Example usage::

    encoder = make_audio_encoder("musicnn")
    encoder.load()                                   # timed: encoder.load_seconds
    embedding = encoder.embed("song.ogg")
    embedding.vector.shape                           # (640,)
    embedding.attributes["top_tags"]                 # ['electronic', 'techno', 'beat', ...]
    batch = encoder.embed_many(paths, ids=track_ids)  # never aborts on a bad file
    batch.matrix, batch.attributes, batch.failures

Backends:

- ``musicnn``: a pretrained tagger from the ``musicnn`` wheel (Pons & Serra), CNNs over 3 s
  log-mel patches; weights ship inside the wheel. The TF graph is built and the checkpoint
  restored once per encoder (``musicnn.extractor`` rebuilds both for every file). Default model
  ``MTT_vgg`` (MagnaTagATune): the vector is each of its five conv blocks averaged over time and
  frequency (global pooling over the clip), block-wise L2-normalised = 640-d; the ``MTT_musicnn``
  model gives the 200-d penultimate layer, mean and max pooled = 400-d (see
  :class:`MusicnnEncoder` for why the default is the VGG). Tags: the 50 MTT tag probabilities
  averaged over patches. MTT has no ``acoustic`` tag; its tags include guitar, classical, slow,
  techno, electronic, rock, fast, piano, ambient, beat, vocal(s), no vocals, synth, pop, dance...
- ``openl3``: 512-d mel256 music embeddings, mean-pooled; only when ``openl3`` is installed.
- ``dsp``: librosa statistics (MFCC mean/std, chroma, spectral centroid/bandwidth/rolloff,
  zero-crossing rate, RMS, onset strength, tempo): 67-d, columns on very different scales, so
  standardise them over a collection (:func:`evaluation.audio.standardise_columns`)
  before comparing.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from embeddings.audio.loading import DEFAULT_MAX_SECONDS, AudioSource, Waveform, load_waveform
from embeddings.vectors import normalize_rows, top_k_indices
from orchestration.settings import apply_runtime_environment

logger = logging.getLogger(__name__)

DEFAULT_BACKEND = "musicnn"
BACKENDS = ("musicnn", "openl3", "dsp")
TOP_TAG_COUNT = 5
# Tags people ask for; an encoder reports those its model knows.
FRIENDLY_TAGS = (
    "acoustic",
    "electronic",
    "fast",
    "slow",
    "vocal",
    "guitar",
    "piano",
    "ambient",
    "rock",
    "classical",
)


class BackendUnavailable(RuntimeError):
    """An audio backend is not installed; the message says how to install it."""


@dataclass
class AudioEmbedding:
    """What an encoder says about one clip.

    Attributes
    ----------
    vector : ndarray
        Shape ``(dim,)``, float32; compare with cosine similarity.
    frames : ndarray or None
        Per-frame vectors ``(n_frames, frame_dim)`` when the backend has frames.
    attributes : dict
        ``tempo_bpm``, ``source_duration_s``, ``analysed_s``, ``offset_s``, ``capped`` for every
        backend; ``tags`` (name -> probability) and ``top_tags`` (names, most likely first) for
        tagging backends (empty for others); backend-specific extras.
    """

    vector: np.ndarray
    frames: np.ndarray | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


class AudioBatch(NamedTuple):
    """Result of :meth:`AudioEncoder.embed_many`.

    Attributes
    ----------
    ids : list of str
        Ids of the clips that embedded, in input order.
    matrix : ndarray
        ``(len(ids), dim)`` float32, row i belongs to ``ids[i]``.
    attributes : DataFrame
        One row per id: ``id, path, tempo_bpm, source_duration_s, analysed_s, capped, top_tags``
        and one ``tag_<name>`` column per tag (spaces replaced by ``_``).
    failures : DataFrame
        ``id, path, error`` for every clip that did not embed.
    """

    ids: list[str]
    matrix: np.ndarray
    attributes: pd.DataFrame
    failures: pd.DataFrame


def estimate_tempo(samples: np.ndarray, sample_rate: int) -> float:
    """Tempo in BPM from librosa's beat tracker (0.0 when no beat is found).

    Parameters
    ----------
    samples : ndarray
        Mono float32.
    sample_rate : int
        Hz.

    Returns
    -------
    float
    """
    import librosa

    tempo, _beats = librosa.beat.beat_track(y=samples, sr=sample_rate)
    return round(float(np.atleast_1d(tempo)[0]), 2)


def tag_column(tag: str) -> str:
    """Column name of a tag in attribute frames: ``"no vocals"`` -> ``"tag_no_vocals"``."""
    return "tag_" + tag.strip().lower().replace(" ", "_").replace("-", "_")


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Silence file descriptor 2 while a model loads: TensorFlow's C++ start-up lines (absl's
    pre-init notice, CUDA probing on a CPU-only machine, oneDNN) bypass every Python setting and
    tell the user nothing they can act on. Python exceptions still propagate and are shown."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class AudioEncoder(ABC):
    """The contract every audio backend fulfils.

    Parameters
    ----------
    max_seconds : float, optional
        Analyse at most this many seconds of a source (a warning is logged when capping).
    excerpt : {"centre", "start"}
        Which part of a long source to analyse.
    """

    name: str = "audio"
    sample_rate: int = 22050

    def __init__(
        self, max_seconds: float | None = DEFAULT_MAX_SECONDS, excerpt: str = "centre"
    ) -> None:
        self.max_seconds = max_seconds
        self.excerpt = excerpt
        self.load_seconds: float | None = None
        self._loaded = False

    @property
    @abstractmethod
    def dim(self) -> int:
        """Length of :attr:`AudioEmbedding.vector`."""

    @property
    def signature(self) -> str:
        """Names the model and pooling behind the vectors; caches key on it with the sha256."""
        return self.name

    @property
    def tag_names(self) -> list[str]:
        """Tags this backend predicts (empty when it has none)."""
        return []

    @abstractmethod
    def _load(self) -> None:
        """Load the model (heavy, once)."""

    @abstractmethod
    def _embed_waveform(self, waveform: Waveform) -> AudioEmbedding:
        """Embed mono samples at :attr:`sample_rate`; ``attributes`` may be partial."""

    def load(self) -> None:
        """Load the model once and warm it up; the seconds taken go to :attr:`load_seconds`.

        Warming up (embedding 4 s of noise) moves one-off costs such as numba compilation in
        librosa's beat tracker out of the first real file's timing.
        """
        if self._loaded:
            return
        started = time.perf_counter()
        with native_stderr_silenced():
            self._load()
            self._loaded = True
            noise = np.random.default_rng(0).standard_normal(4 * self.sample_rate)
            self.embed((0.1 * noise.astype(np.float32), self.sample_rate))
        self.load_seconds = time.perf_counter() - started
        logger.info("%s encoder loaded in %.2f s", self.name, self.load_seconds)

    def embed(self, source: AudioSource) -> AudioEmbedding:
        """Embed one clip.

        Parameters
        ----------
        source : str, Path, Waveform or (samples, sample_rate)
            A file, or samples shaped ``(n,)`` or ``(n, channels)`` at any rate.

        Returns
        -------
        AudioEmbedding

        Raises
        ------
        ValueError, RuntimeError
            When the source cannot be decoded or has no samples (the message names it).
        """
        if not self._loaded:
            self.load()
        waveform = load_waveform(
            source, self.sample_rate, max_seconds=self.max_seconds, excerpt=self.excerpt
        )
        embedding = self._embed_waveform(waveform)
        vector = np.asarray(embedding.vector, dtype=np.float32)
        if vector.shape != (self.dim,) or not np.isfinite(vector).all():
            raise RuntimeError(
                f"{self.name} produced a bad vector (shape {vector.shape}, expected "
                f"({self.dim},), finite={bool(np.isfinite(vector).all())}) for {source!s:.200}"
            )
        attributes = {
            "tempo_bpm": estimate_tempo(waveform.samples, waveform.sample_rate),
            "source_duration_s": round(waveform.source_duration_s, 3),
            "analysed_s": round(waveform.duration_s, 3),
            "offset_s": round(waveform.offset_s, 3),
            "capped": waveform.capped,
            "tags": {},
            "top_tags": [],
        }
        attributes.update(embedding.attributes)
        return AudioEmbedding(vector=vector, frames=embedding.frames, attributes=attributes)

    def embed_many(
        self,
        sources: Sequence[AudioSource],
        ids: Sequence[str] | None = None,
        progress: Callable[[int, int, str], None] | None = None,
    ) -> AudioBatch:
        """Embed many clips; a clip that fails is reported in ``failures``, never raised.

        Parameters
        ----------
        sources : sequence of str, Path, Waveform or (samples, rate)
            The clips.
        ids : sequence of str, optional
            One id per source; defaults to the path (or ``"#<index>"`` for waveforms).
        progress : callable, optional
            Called as ``progress(done, total, id)`` after each clip.

        Returns
        -------
        AudioBatch
        """
        if ids is None:
            ids = [
                str(source) if isinstance(source, str | Path) else f"#{index}"
                for index, source in enumerate(sources)
            ]
        if len(ids) != len(sources):
            raise ValueError(f"embed_many got {len(sources)} sources but {len(ids)} ids")
        if not self._loaded:
            self.load()
        done_ids: list[str] = []
        vectors: list[np.ndarray] = []
        rows: list[dict[str, Any]] = []
        failures: list[dict[str, str]] = []
        for index, (clip_id, source) in enumerate(zip(ids, sources, strict=True)):
            path = str(source) if isinstance(source, str | Path) else ""
            try:
                embedding = self.embed(source)
            except Exception as error:  # noqa: BLE001 - one bad file must not stop the batch
                logger.warning("%s: %s failed: %s", self.name, clip_id, error)
                failures.append(
                    {"id": str(clip_id), "path": path, "error": f"{type(error).__name__}: {error}"}
                )
            else:
                done_ids.append(str(clip_id))
                vectors.append(embedding.vector)
                rows.append(self._attribute_row(str(clip_id), path, embedding.attributes))
            if progress is not None:
                progress(index + 1, len(sources), str(clip_id))
        matrix = (
            np.vstack(vectors).astype(np.float32)
            if vectors
            else np.zeros((0, self.dim), dtype=np.float32)
        )
        columns = [
            "id",
            "path",
            "tempo_bpm",
            "source_duration_s",
            "analysed_s",
            "capped",
            "top_tags",
        ] + [tag_column(tag) for tag in self.tag_names]
        attributes = pd.DataFrame(rows)
        attributes = attributes.reindex(columns=list(dict.fromkeys(columns + list(attributes))))
        return AudioBatch(
            ids=done_ids,
            matrix=matrix,
            attributes=attributes,
            failures=pd.DataFrame(failures, columns=["id", "path", "error"]),
        )

    @staticmethod
    def _attribute_row(clip_id: str, path: str, attributes: dict[str, Any]) -> dict[str, Any]:
        """Flatten an attributes dict into one frame row."""
        row: dict[str, Any] = {"id": clip_id, "path": path}
        for key, value in attributes.items():
            if key == "tags":
                row.update({tag_column(tag): float(p) for tag, p in value.items()})
            elif key == "top_tags":
                row[key] = "; ".join(value)
            elif isinstance(value, str | int | float | bool | np.floating | np.integer):
                row[key] = value
        return row


class DspEncoder(AudioEncoder):
    """Hand-made librosa features: a cheap, model-free baseline (67-d, standardise before use)."""

    name = "dsp"
    sample_rate = 22050
    n_mfcc = 20

    @property
    def dim(self) -> int:
        """2*20 MFCC + 12 chroma + 2*6 spectral/zcr/rms + 2 onset + 1 tempo = 67."""
        return 2 * self.n_mfcc + 12 + 12 + 2 + 1

    def _load(self) -> None:
        import librosa  # noqa: F401 - fail early when librosa is missing

    def _embed_waveform(self, waveform: Waveform) -> AudioEmbedding:
        import librosa

        samples, rate = waveform.samples, waveform.sample_rate
        spectrum = np.abs(librosa.stft(samples, n_fft=2048, hop_length=512))
        power = spectrum**2
        mel = librosa.feature.melspectrogram(S=power, sr=rate)
        mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=self.n_mfcc)
        chroma = librosa.feature.chroma_stft(S=power, sr=rate)
        centroid = librosa.feature.spectral_centroid(S=spectrum, sr=rate)[0]
        bandwidth = librosa.feature.spectral_bandwidth(S=spectrum, sr=rate)[0]
        rolloff = librosa.feature.spectral_rolloff(S=spectrum, sr=rate)[0]
        zcr = librosa.feature.zero_crossing_rate(samples, hop_length=512)[0]
        rms = librosa.feature.rms(S=spectrum)[0]
        onset = librosa.onset.onset_strength(S=librosa.power_to_db(mel), sr=rate)
        tempo = librosa.feature.tempo(onset_envelope=onset, sr=rate)[0]
        # centroid, bandwidth and rolloff in kHz keep magnitudes comparable
        spectral = np.vstack([centroid / 1000, bandwidth / 1000, rolloff / 1000, zcr, rms, rms])
        spectral[5] = np.log10(rms + 1e-6)
        vector = np.concatenate(
            [
                mfcc.mean(axis=1),
                mfcc.std(axis=1),
                chroma.mean(axis=1),
                spectral.mean(axis=1),
                spectral.std(axis=1),
                [onset.mean(), onset.std()],
                [tempo / 100.0],
            ]
        ).astype(np.float32)
        attributes = {
            "brightness_hz": round(float(centroid.mean()), 1),
            "loudness_db": round(float(20 * np.log10(np.sqrt(np.mean(samples**2)) + 1e-9)), 2),
        }
        return AudioEmbedding(vector=vector, frames=None, attributes=attributes)


class MusicnnEncoder(AudioEncoder):
    """One of the ``musicnn`` package's pretrained taggers: a clip vector and 50 tags.

    The wheel ships four checkpoints, two architectures trained on two tag sets:

    - ``MTT_vgg`` (default) and ``MSD_vgg``: five 3x3 conv layers. Vector: every conv block's
      output (``pool1`` .. ``pool5``, 128 channels each) averaged over time and frequency and over
      the clip's patches (global pooling), each block L2-normalised, concatenated: 640-d. This is
      the multi-layer "convnet feature" of Choi et al. (2017, transfer learning for music
      classification); keeping the middle layers keeps what identifies a recording (texture,
      instrumentation), which the tag-trained last layer throws away.
    - ``MTT_musicnn`` and ``MSD_musicnn``: musically motivated front-end + dense mid-end.
      Vector: the 200-d penultimate layer, mean and max over patches concatenated: 400-d.

    Measured on the 47 real clips (``python -m benchmarks.bench_audio``): 10 s segment
    self-retrieval 0.94 for ``MTT_vgg`` against 0.86 for ``MTT_musicnn``'s penultimate layer, at
    about twice the speed; MTT tags agree (3.7 of the top 5 shared on average).

    Parameters
    ----------
    model : {"MTT_vgg", "MSD_vgg", "MTT_musicnn", "MSD_musicnn"}
        Which shipped checkpoint to use (MSD has 50 Last.fm-style tags, including acoustic).
    threads : int
        TensorFlow intra-op threads.
    batch_size : int
        Patches per TF run.
    max_seconds, excerpt
        See :class:`AudioEncoder`.
    """

    name = "musicnn"
    sample_rate = 16000
    n_mels = 96
    n_fft = 512
    hop_length = 256
    patch_frames = 187  # 3 s at 16 kHz / hop 256, what the models were trained on
    MODELS = ("MTT_vgg", "MSD_vgg", "MTT_musicnn", "MSD_musicnn")
    DEFAULT_MODEL = "MTT_vgg"
    VGG_BLOCKS = 5
    VGG_CHANNELS = 128
    PENULTIMATE_UNITS = 200

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        threads: int = 2,
        batch_size: int = 32,
        max_seconds: float | None = DEFAULT_MAX_SECONDS,
        excerpt: str = "centre",
    ) -> None:
        super().__init__(max_seconds=max_seconds, excerpt=excerpt)
        if model not in self.MODELS:
            raise ValueError(
                f"musicnn model must be one of {list(self.MODELS)}, got {model!r} "
                f"(the default {self.DEFAULT_MODEL!r} retrieves recordings best)"
            )
        self.model = model
        self.threads = threads
        self.batch_size = batch_size
        self._session: Any = None
        self._tensors: dict[str, Any] = {}
        self._labels: list[str] = []

    @property
    def is_vgg(self) -> bool:
        """True for the VGG checkpoints (multi-layer conv vector)."""
        return self.model.endswith("_vgg")

    @property
    def signature(self) -> str:
        """``musicnn:<model>:<pooling>``: vectors with different signatures never mix."""
        pooling = "conv1-5-gap-l2" if self.is_vgg else "penultimate-meanmax"
        return f"{self.name}:{self.model}:{pooling}"

    @property
    def dim(self) -> int:
        """640 for the VGG checkpoints (5 blocks x 128), 400 for the musicnn ones (2 x 200)."""
        if self.is_vgg:
            return self.VGG_BLOCKS * self.VGG_CHANNELS
        return 2 * self.PENULTIMATE_UNITS

    @property
    def tag_names(self) -> list[str]:
        """The model's 50 tags (MTT or MSD)."""
        if not self._labels:
            self._labels = list(_musicnn_labels(self.model))
        return self._labels

    def _load(self) -> None:
        apply_runtime_environment()
        if importlib.util.find_spec("musicnn") is None:
            raise BackendUnavailable(
                "the musicnn backend needs the musicnn package: "
                "pip install --no-deps musicnn==0.1.0 "
                "(its weights ship in the wheel; it needs tensorflow and tf-keras)"
            )
        import warnings

        import tensorflow as tf
        from musicnn import models as musicnn_models

        checkpoint = Path(musicnn_models.__file__).parent / self.model
        graph = tf.Graph()
        try:
            with graph.as_default(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with tf.name_scope("model"):
                    patches = tf.compat.v1.placeholder(
                        tf.float32, [None, self.patch_frames, self.n_mels]
                    )
                    is_training = tf.compat.v1.placeholder(tf.bool)
                    outputs = musicnn_models.define_model(
                        patches, is_training, self.model, len(self.tag_names)
                    )
                    probabilities = tf.nn.sigmoid(outputs[0])
                    if self.is_vgg:
                        # outputs = logits, pool1..pool5 (batch, time, freq, 128): global
                        # average over time and frequency per block
                        features = tf.concat(
                            [tf.reduce_mean(block, axis=[1, 2]) for block in outputs[1:]], axis=1
                        )
                    else:
                        features = outputs[-1]  # penultimate dense layer (batch, 200)
                config = tf.compat.v1.ConfigProto(
                    intra_op_parallelism_threads=self.threads, inter_op_parallelism_threads=1
                )
                session = tf.compat.v1.Session(graph=graph, config=config)
                tf.compat.v1.train.Saver().restore(session, str(checkpoint) + "/")
        except Exception as error:
            raise RuntimeError(
                f"cannot build musicnn {self.model} from {checkpoint}: {error}. musicnn needs "
                "tf-keras with TF_USE_LEGACY_KERAS=1 set before tensorflow is first imported."
            ) from error
        self._session = session
        self._tensors = {
            "patches": patches,
            "is_training": is_training,
            "probabilities": probabilities,
            "features": features,
        }

    def log_mel_patches(self, samples: np.ndarray) -> np.ndarray:
        """Log-mel patches ``(n, 187, 96)`` as musicnn computes them (short input repeat-padded).

        Parameters
        ----------
        samples : ndarray
            Mono float32 at 16 kHz.

        Returns
        -------
        ndarray
            float32 patches; musicnn's float16 storage is kept, but the log is taken in float32
            (``10000 * mel`` overflows float16 on loud music and the model then returns NaN).
        """
        import librosa

        mel = librosa.feature.melspectrogram(
            y=samples,
            sr=self.sample_rate,
            hop_length=self.hop_length,
            n_fft=self.n_fft,
            n_mels=self.n_mels,
        ).T
        mel = np.log10(10000.0 * mel.astype(np.float16).astype(np.float32) + 1.0)
        if mel.shape[0] < self.patch_frames:
            repeats = int(np.ceil(self.patch_frames / max(1, mel.shape[0])))
            mel = np.tile(mel, (repeats, 1))[: self.patch_frames]
        count = mel.shape[0] // self.patch_frames
        return mel[: count * self.patch_frames].reshape(count, self.patch_frames, self.n_mels)

    def pool(self, frames: np.ndarray) -> np.ndarray:
        """Clip vector from per-patch features ``(n_patches, frame_dim)``.

        VGG: mean over patches, then each 128-channel block L2-normalised (so every layer has an
        equal say in the cosine). musicnn: mean and max over patches concatenated.
        """
        frames = np.asarray(frames, dtype=np.float32)
        if not self.is_vgg:
            return np.concatenate([frames.mean(axis=0), frames.max(axis=0)])
        blocks = frames.mean(axis=0).reshape(self.VGG_BLOCKS, self.VGG_CHANNELS)
        return normalize_rows(blocks).ravel()

    def _embed_waveform(self, waveform: Waveform) -> AudioEmbedding:
        patches = self.log_mel_patches(waveform.samples)
        probabilities, features = [], []
        for start in range(0, len(patches), self.batch_size):
            tags, patch_features = self._session.run(
                [self._tensors["probabilities"], self._tensors["features"]],
                feed_dict={
                    self._tensors["patches"]: patches[start : start + self.batch_size],
                    self._tensors["is_training"]: False,
                },
            )
            probabilities.append(tags)
            features.append(patch_features)
        frames = np.vstack(features).astype(np.float32)
        tag_means = np.vstack(probabilities).mean(axis=0)
        tags = {tag: round(float(p), 4) for tag, p in zip(self.tag_names, tag_means, strict=True)}
        order = top_k_indices(tag_means, TOP_TAG_COUNT)
        attributes = {
            "tags": tags,
            "top_tags": [self.tag_names[i] for i in order],
            "n_patches": len(patches),
            "model": self.model,
        }
        return AudioEmbedding(vector=self.pool(frames), frames=frames, attributes=attributes)

    def close(self) -> None:
        """Release the TensorFlow session."""
        if self._session is not None:
            self._session.close()
            self._session = None
            self._loaded = False


def _musicnn_labels(model: str) -> list[str]:
    """Tag names of a musicnn model, read from the package without importing TensorFlow."""
    spec = importlib.util.find_spec("musicnn")
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailable("musicnn is not installed: pip install --no-deps musicnn==0.1.0")
    namespace: dict[str, Any] = {}
    config_path = Path(next(iter(spec.submodule_search_locations))) / "configuration.py"
    exec(compile(config_path.read_text(), str(config_path), "exec"), namespace)  # noqa: S102
    return list(namespace["MTT_LABELS" if model.startswith("MTT") else "MSD_LABELS"])


class OpenL3Encoder(AudioEncoder):
    """OpenL3 music embeddings (mel256, 512-d), mean-pooled over 1 s windows; optional backend."""

    name = "openl3"
    sample_rate = 48000

    def __init__(
        self,
        hop_seconds: float = 0.5,
        max_seconds: float | None = DEFAULT_MAX_SECONDS,
        excerpt: str = "centre",
    ) -> None:
        super().__init__(max_seconds=max_seconds, excerpt=excerpt)
        require_backend("openl3")
        self.hop_seconds = hop_seconds
        self._model: Any = None

    @property
    def dim(self) -> int:
        """512."""
        return 512

    def _load(self) -> None:
        apply_runtime_environment()
        import openl3

        self._model = openl3.models.load_audio_embedding_model(
            input_repr="mel256", content_type="music", embedding_size=512
        )

    def _embed_waveform(self, waveform: Waveform) -> AudioEmbedding:
        import openl3

        frames, _timestamps = openl3.get_audio_embedding(
            waveform.samples,
            waveform.sample_rate,
            model=self._model,
            hop_size=self.hop_seconds,
            center=False,
            verbose=False,
        )
        frames = np.asarray(frames, dtype=np.float32)
        return AudioEmbedding(vector=frames.mean(axis=0), frames=frames, attributes={})


_INSTALL_HINTS = {
    "musicnn": "pip install --no-deps musicnn==0.1.0 (needs tensorflow and tf-keras installed)",
    "openl3": (
        "pip install openl3 -- its setup.py downloads the model weights from GitHub, so it "
        "needs internet at install time; use 'musicnn' or 'dsp' offline"
    ),
    "dsp": "pip install librosa",
}
_MODULES = {"musicnn": ("musicnn", "tensorflow"), "openl3": ("openl3",), "dsp": ("librosa",)}


def _installed(backend: str) -> bool:
    return all(importlib.util.find_spec(module) is not None for module in _MODULES[backend])


def require_backend(backend: str) -> None:
    """Raise :class:`BackendUnavailable` with the install line when ``backend`` is missing."""
    if backend not in _MODULES:
        raise ValueError(f"unknown audio backend {backend!r}; choose one of {list(BACKENDS)}")
    if not _installed(backend):
        raise BackendUnavailable(
            f"audio backend {backend!r} is not installed: {_INSTALL_HINTS[backend]}"
        )


def available_backends() -> list[str]:
    """Backends whose packages are importable here, default first."""
    return [backend for backend in BACKENDS if _installed(backend)]


def make_audio_encoder(name: str = DEFAULT_BACKEND, **options: Any) -> AudioEncoder:
    """Build an audio encoder by name (not yet loaded; call ``load()`` to time loading).

    Parameters
    ----------
    name : {"musicnn", "openl3", "dsp"}
        The backend.
    **options
        Passed to the encoder (``max_seconds``, ``excerpt``, ``threads``, ``model``...).

    Returns
    -------
    AudioEncoder

    Raises
    ------
    ValueError
        For an unknown name.
    BackendUnavailable
        When the backend's package is not installed (the message has the install line).
    """
    require_backend(name)
    if name == "musicnn":
        return MusicnnEncoder(**options)
    if name == "openl3":
        return OpenL3Encoder(**options)
    return DspEncoder(**options)
