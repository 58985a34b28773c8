"""Probe audio files for the ``audio_clips`` golden table and its quarantine.

``probe_audio(path)`` reads a file by its content (not its extension), checks that the whole
stream decodes, and returns a :class:`ClipInfo` or a :class:`ProbeFailure` with a reason. It
never raises for a bad file. ``probe_clips(frame)`` runs it over a raw ``audio_files`` frame and
splits the rows into golden clips and quarantine rows; every input row ends in exactly one.

Decisions (documented here because the quarantine report shows them to data owners):

- **Long files are kept.** A file longer than ``long_duration_s`` (20 min) is a valid clip (a DJ
  mix, a live set); it is kept with a note and a logged warning, and the encoders analyse only an
  excerpt of it (see ``embeddings.audio.loading``). Only a file longer than ``max_duration_s``
  (4 h, an absurd length for a track) is quarantined as ``too_long``.
- **Wrong extension is not an error.** A WAV renamed ``.ogg`` is read by its content and kept,
  with the note ``content is WAV but extension is .ogg``.
- **Silence is an error.** A file whose RMS over the whole stream is below ``silence_rms``
  (1e-4, -80 dBFS) is quarantined as ``silent``: it has nothing to embed.
- **Truncation** is detected for WAV (the RIFF ``data`` chunk declares more bytes than the file
  holds) and Ogg (the last page lacks the end-of-stream flag), and quarantined as ``truncated``.
  Damage inside an Ogg stream that the Vorbis decoder still decodes is not detected (no CRC check).

Reasons (the ``reason`` column starts with one of these codes, then ``: `` and details):
``missing_track_id``, ``missing_path``, ``duplicate_track_id``, ``path_outside_folder``,
``file_not_found``, ``empty_file``, ``undecodable``, ``truncated``, ``no_audio``, ``silent``,
``too_long``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

SILENCE_RMS = 1e-4
LONG_DURATION_S = 20 * 60.0
MAX_DURATION_S = 4 * 3600.0
BLOCK_FRAMES = 1 << 16

CLIP_COLUMNS = [
    "track_id",
    "path",
    "sha256",
    "sample_rate",
    "channels",
    "duration_s",
    "container",
    "note",
]
QUARANTINE_COLUMNS = [
    "table_name",
    "record_key",
    "reason",
    "raw_row",
    "source_file",
    "source_line",
]
TABLE_NAME = "audio_clips"

# libsndfile format name -> extensions that legitimately hold it
_EXTENSIONS_BY_CONTAINER: dict[str, set[str]] = {
    "WAV": {".wav", ".wave"},
    "WAVEX": {".wav", ".wave"},
    "RF64": {".wav", ".rf64"},
    "OGG": {".ogg", ".oga", ".opus"},
    "FLAC": {".flac"},
    "MP3": {".mp3"},
    "AIFF": {".aif", ".aiff", ".aifc"},
    "AU": {".au", ".snd"},
    "CAF": {".caf"},
    "W64": {".w64"},
}


@dataclass
class ClipInfo:
    """A decodable, non-silent audio file: one ``audio_clips`` row (without ``track_id``).

    Attributes
    ----------
    path : str
        Absolute path of the file.
    sha256 : str
        Hex SHA-256 of the file bytes.
    sample_rate : int
        Native sample rate in Hz.
    channels : int
        Number of channels.
    duration_s : float
        Decoded duration in seconds (frames actually decoded / sample rate).
    container : str
        Container found from the content (``WAV``, ``OGG``, ``FLAC``, ``MP3``...).
    rms : float
        Root mean square over all samples and channels (full scale = 1).
    notes : list of str
        Human-readable remarks that did not reject the file (wrong extension, long file...).
    """

    path: str
    sha256: str
    sample_rate: int
    channels: int
    duration_s: float
    container: str
    rms: float
    notes: list[str] = field(default_factory=list)


@dataclass
class ProbeFailure:
    """Why a file cannot be an ``audio_clips`` row.

    Attributes
    ----------
    path : str
        The path as probed.
    code : str
        One of the reason codes listed in the module docstring.
    detail : str
        What was found and how to fix it.
    """

    path: str
    code: str
    detail: str

    @property
    def reason(self) -> str:
        """``"<code>: <detail>"``, the text stored in the quarantine ``reason`` column."""
        return f"{self.code}: {self.detail}"


def file_sha256(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks.

    Parameters
    ----------
    path : str or Path
        The file.
    chunk_bytes : int
        Read size.

    Returns
    -------
    str
        64 hex characters.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def _wav_truncation(path: Path) -> str | None:
    """Return a message when a RIFF/WAVE file's ``data`` chunk is cut short, else None."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        header = handle.read(12)
        if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return None
        position = 12
        while position + 8 <= size:
            handle.seek(position)
            chunk_id, chunk_size = struct.unpack("<4sI", handle.read(8))
            if chunk_id == b"data":
                available = size - position - 8
                if chunk_size != 0xFFFFFFFF and chunk_size > available:
                    return (
                        f"WAV data chunk declares {chunk_size} bytes but the file holds "
                        f"{available}; the file was cut short (re-copy or re-export it)"
                    )
                return None
            position += 8 + chunk_size + (chunk_size & 1)
    return "WAV file has no data chunk; re-export it"


def _ogg_truncation(path: Path) -> str | None:
    """Return a message when an Ogg file's last page lacks the end-of-stream flag, else None."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        handle.seek(max(0, size - 65536))
        tail = handle.read()
    last_page = tail.rfind(b"OggS")
    if last_page < 0 or last_page + 6 > len(tail):
        return "no Ogg page found at the end of the file; the file was cut short (re-copy it)"
    header_type = tail[last_page + 5]
    if not header_type & 0x04:
        return (
            "the last Ogg page has no end-of-stream flag; the file was cut short "
            "(re-copy or re-encode it)"
        )
    return None


def _scan_soundfile(path: Path) -> tuple[int, int, int, float, str]:
    """Decode the whole stream with soundfile: (frames, sample_rate, channels, rms, container)."""
    import soundfile as sf

    with sf.SoundFile(str(path)) as handle:
        sample_rate, channels, container = handle.samplerate, handle.channels, handle.format
        frames = 0
        sum_squares = 0.0
        for block in handle.blocks(blocksize=BLOCK_FRAMES, dtype="float32", always_2d=True):
            if not np.isfinite(block).all():
                raise ValueError("decoded samples contain NaN or infinity")
            frames += block.shape[0]
            sum_squares += float(np.square(block, dtype=np.float64).sum())
    rms = float(np.sqrt(sum_squares / max(1, frames * channels)))
    return frames, sample_rate, channels, rms, container


def _scan_audioread(path: Path) -> tuple[int, int, int, float, str]:
    """Decode the whole stream with audioread (ffmpeg/gstreamer backends), same result shape."""
    import audioread

    with audioread.audio_open(str(path)) as handle:
        sample_rate, channels = int(handle.samplerate), int(handle.channels)
        samples = 0
        sum_squares = 0.0
        for buffer in handle:
            block = np.frombuffer(buffer, dtype="<i2").astype(np.float64) / 32768.0
            samples += block.size
            sum_squares += float(np.square(block).sum())
    frames = samples // max(1, channels)
    rms = float(np.sqrt(sum_squares / max(1, samples)))
    return frames, sample_rate, channels, rms, path.suffix.lstrip(".").upper() or "UNKNOWN"


def probe_audio(
    path: str | Path,
    *,
    silence_rms: float = SILENCE_RMS,
    long_duration_s: float = LONG_DURATION_S,
    max_duration_s: float = MAX_DURATION_S,
) -> ClipInfo | ProbeFailure:
    """Check one audio file and describe it, or say why it is unusable.

    The file is recognised by its content; the whole stream is decoded once (block by block) to
    measure duration and RMS, so a file that fails halfway is caught here, not in the encoder.

    Parameters
    ----------
    path : str or Path
        The audio file.
    silence_rms : float
        Files whose RMS is below this (full scale 1.0) are ``silent``.
    long_duration_s : float
        Files longer than this are kept with a note and a warning (encoders analyse an excerpt).
    max_duration_s : float
        Files longer than this are ``too_long``.

    Returns
    -------
    ClipInfo or ProbeFailure
        Never raises for a bad file.

    Examples
    --------
    >>> result = probe_audio("clips/song.ogg")  # doctest: +SKIP
    >>> result.duration_s if isinstance(result, ClipInfo) else result.reason  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        return ProbeFailure(str(path), "file_not_found", f"no file at {path}; fix the path")
    if path.stat().st_size == 0:
        return ProbeFailure(
            str(path), "empty_file", "the file has 0 bytes; re-copy or re-export it"
        )

    notes: list[str] = []
    try:
        frames, sample_rate, channels, rms, container = _scan_soundfile(path)
    except Exception as soundfile_error:  # noqa: BLE001 - every decoder error becomes a reason
        try:
            frames, sample_rate, channels, rms, container = _scan_audioread(path)
            notes.append(f"decoded with audioread ({soundfile_error})")
        except Exception as audioread_error:  # noqa: BLE001
            return ProbeFailure(
                str(path),
                "undecodable",
                f"neither soundfile ({soundfile_error}) nor audioread ({audioread_error}) can "
                "decode it; convert it to WAV, FLAC or Ogg Vorbis",
            )

    if container.startswith("WAV") or container == "RF64":
        problem = _wav_truncation(path)
    elif container == "OGG":
        problem = _ogg_truncation(path)
    else:
        problem = None
    if problem:
        return ProbeFailure(str(path), "truncated", problem)

    if frames == 0 or sample_rate <= 0:
        return ProbeFailure(str(path), "no_audio", "the file decodes to 0 samples")
    duration_s = frames / sample_rate
    if duration_s > max_duration_s:
        return ProbeFailure(
            str(path),
            "too_long",
            f"{duration_s:.0f} s is longer than the {max_duration_s:.0f} s limit; split it",
        )
    if rms < silence_rms:
        return ProbeFailure(
            str(path),
            "silent",
            f"RMS {rms:.2e} is below {silence_rms:.0e} (pure silence); nothing to embed",
        )

    extension = path.suffix.lower()
    expected = _EXTENSIONS_BY_CONTAINER.get(container)
    if expected is not None and extension not in expected:
        notes.append(f"content is {container} but extension is {extension or '(none)'}")
    if duration_s > long_duration_s:
        note = (
            f"long file: {duration_s:.0f} s > {long_duration_s:.0f} s; encoders analyse an excerpt"
        )
        logger.warning("%s: %s", path, note)
        notes.append(note)
    return ClipInfo(
        path=str(path.resolve()),
        sha256=file_sha256(path),
        sample_rate=int(sample_rate),
        channels=int(channels),
        duration_s=round(float(duration_s), 4),
        container=container,
        rms=rms,
        notes=notes,
    )


def _text(value: object) -> str | None:
    """A raw cell as stripped text, None for missing/NaN/blank."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def _line_number(value: object) -> int | None:
    """A ``_source_line`` cell as int, None when missing or not a number."""
    text = _text(value)
    try:
        return None if text is None else int(float(text))
    except ValueError:
        return None


def _quarantine_row(row: dict, code: str, detail: str) -> dict[str, object]:
    """One quarantine row for a raw ``audio_files`` row."""
    return {
        "table_name": TABLE_NAME,
        "record_key": _text(row.get("track_id")) or _text(row.get("path")) or "",
        "reason": f"{code}: {detail}",
        "raw_row": json.dumps(
            {str(k): _text(v) for k, v in row.items()}, ensure_ascii=False, sort_keys=True
        ),
        "source_file": _text(row.get("_source_file")),
        "source_line": _line_number(row.get("_source_line")),
    }


def _inside(path: Path, roots: list[str | Path], source_file: str | None) -> bool:
    folders = [Path(r) for r in roots] + ([Path(source_file).parent] if source_file else [])
    target = path.resolve()
    return any(target.is_relative_to(folder.resolve()) for folder in folders)


def probe_clips(
    frame: pd.DataFrame,
    *,
    base_dir: str | Path | None = None,
    allowed_roots: list[str | Path] | None = None,
    silence_rms: float = SILENCE_RMS,
    long_duration_s: float = LONG_DURATION_S,
    max_duration_s: float = MAX_DURATION_S,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Probe every row of a raw ``audio_files`` frame: golden clips and quarantine rows.

    Parameters
    ----------
    frame : DataFrame
        Columns ``track_id``, ``path``, ``_source_file``, ``_source_line`` (text, as read).
    base_dir : str or Path, optional
        Directory that relative paths are resolved against. When None, a relative path is
        resolved against the directory of the row's ``_source_file`` (or the working directory
        when that is missing).
    allowed_roots : list of str or Path, optional
        When given, a path must resolve (symbolic links followed) inside one of these folders
        or inside the folder of the file that lists it (its ``_source_file``); other paths are
        quarantined as ``path_outside_folder`` and never opened.
    silence_rms, long_duration_s, max_duration_s : float
        Passed to :func:`probe_audio`.

    Returns
    -------
    clips : DataFrame
        Columns ``track_id, path, sha256, sample_rate, channels, duration_s, container, note``;
        ``note`` is ``"; "``-joined remarks or empty.
    quarantine : DataFrame
        Columns ``table_name ('audio_clips'), record_key, reason, raw_row (JSON), source_file,
        source_line``.

    Raises
    ------
    ValueError
        When ``frame`` lacks the ``track_id`` or ``path`` column.
    """
    missing = [column for column in ("track_id", "path") if column not in frame.columns]
    if missing:
        raise ValueError(
            f"probe_clips needs columns track_id and path; the frame lacks {missing} "
            f"(has {list(frame.columns)}). Read it with the audio-folder source."
        )
    clips: list[dict[str, object]] = []
    quarantine: list[dict[str, object]] = []
    seen: dict[str, str] = {}
    for row in frame.to_dict(orient="records"):
        track_id, raw_path = _text(row.get("track_id")), _text(row.get("path"))
        source_file = _text(row.get("_source_file"))

        def reject(code: str, detail: str, _row: dict = row) -> None:
            quarantine.append(_quarantine_row(_row, code, detail))

        if track_id is None:
            reject("missing_track_id", "the row has no track_id; add one")
            continue
        if raw_path is None:
            reject("missing_path", "the row has no path; add the audio file's path")
            continue
        if track_id in seen:
            reject(
                "duplicate_track_id",
                f"track_id {track_id} already used for {seen[track_id]}; keep one row",
            )
            continue
        path = Path(raw_path).expanduser()
        if not path.is_absolute():
            if base_dir is not None:
                root = Path(base_dir)
            elif source_file:
                root = Path(source_file).parent
            else:
                root = Path.cwd()
            path = root / path
        if allowed_roots is not None and not _inside(path, allowed_roots, source_file):
            reject(
                "path_outside_folder",
                f"{raw_path} is outside the audio folder and the listing's folder; move the "
                "file under one of them",
            )
            continue
        result = probe_audio(
            path,
            silence_rms=silence_rms,
            long_duration_s=long_duration_s,
            max_duration_s=max_duration_s,
        )
        if isinstance(result, ProbeFailure):
            reject(result.code, result.detail)
            continue
        seen[track_id] = result.path
        clips.append(
            {
                "track_id": track_id,
                "path": result.path,
                "sha256": result.sha256,
                "sample_rate": result.sample_rate,
                "channels": result.channels,
                "duration_s": result.duration_s,
                "container": result.container,
                "note": "; ".join(result.notes),
            }
        )
    clips_frame = pd.DataFrame(clips, columns=CLIP_COLUMNS)
    clips_frame = clips_frame.astype(
        {"sample_rate": "int64", "channels": "int64", "duration_s": "float64"}
    )
    quarantine_frame = pd.DataFrame(quarantine, columns=QUARANTINE_COLUMNS)
    logger.info(
        "probed %d audio rows: %d clips, %d quarantined",
        len(frame),
        len(clips_frame),
        len(quarantine_frame),
    )
    return clips_frame, quarantine_frame
