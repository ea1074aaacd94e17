"""Reading, resampling and writing audio: soundfile for I/O, soxr for resampling, numpy in between.

Why not torchaudio: its wheels link against CUDA libraries and fail to import next to a CPU torch.
Everything here works on float32 mono arrays in [-1, 1]; stereo files are averaged to mono because
every model of this plugin (codec LM, Whisper) is mono.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# what one decode may hold in memory: 30 min at 48 kHz mono float32 is ~350 MB
MAX_DECODE_SECONDS = float(os.environ.get("LORA_FACTORY_AUDIO_MAX_SECONDS", "1800"))
MAX_SAMPLE_RATE = 192_000
MAX_CHANNELS = 8
OUTPUT_FORMATS = ("wav", "flac", "mp3", "opus")
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)  # the rates an Opus stream may carry


@dataclass
class AudioInfo:
    """What ``soundfile.info`` tells about a file without decoding it."""

    sample_rate: int
    channels: int
    frames: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


class AudioReadError(ValueError):
    """The file is missing, not audio, or in a format soundfile cannot decode."""


def audio_info(path: Path) -> AudioInfo:
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises RuntimeError / LibsndfileError / TypeError
        raise AudioReadError(str(exc)) from exc
    frames = int(info.frames)
    if frames <= 0 and info.duration:  # some MP3 headers report no frame count
        frames = int(round(info.duration * info.samplerate))
    return AudioInfo(sample_rate=int(info.samplerate), channels=int(info.channels), frames=frames)


def to_mono(wave: np.ndarray) -> np.ndarray:
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim == 2:
        wave = wave.mean(axis=1)
    return np.ascontiguousarray(wave, dtype=np.float32)


def check_decodable(info: AudioInfo, max_seconds: float | None = None) -> None:
    """Refuse before decoding what would not fit in memory: a long file (a 364 KB FLAC of 2 h of
    silence decodes to 460 MB), an absurd rate or too many channels. Raises ``AudioReadError``."""
    limit = MAX_DECODE_SECONDS if max_seconds is None else max_seconds
    if info.sample_rate <= 0 or info.sample_rate > MAX_SAMPLE_RATE:
        raise AudioReadError(f"sample rate {info.sample_rate} Hz is not supported (at most {MAX_SAMPLE_RATE} Hz)")
    if info.channels <= 0 or info.channels > MAX_CHANNELS:
        raise AudioReadError(f"{info.channels} channels are not supported (at most {MAX_CHANNELS})")
    if info.duration > limit:
        raise AudioReadError(f"the audio is {info.duration:.0f} s long; at most {limit:.0f} s are decoded at once")


def read_audio(path: Path | str | bytes, target_sr: int | None = None,
               max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """Decode a WAV / FLAC / OGG / MP3 file (or its bytes) to float32 mono, resampled when asked.

    The header is checked first (``check_decodable``): length, rate and channels are bounded.

    :raises AudioReadError: the file cannot be decoded (the message is soundfile's) or is too large.
    """
    import soundfile as sf

    source = io.BytesIO(path) if isinstance(path, bytes) else str(path)
    try:
        info = sf.info(io.BytesIO(path) if isinstance(path, bytes) else source)
    except Exception as exc:
        raise AudioReadError(str(exc)) from exc
    frames = int(info.frames) if int(info.frames) > 0 else int(round((info.duration or 0) * info.samplerate))
    check_decodable(AudioInfo(int(info.samplerate), int(info.channels), frames), max_seconds)
    try:
        wave, sr = sf.read(source, dtype="float32", always_2d=False)
    except Exception as exc:
        raise AudioReadError(str(exc)) from exc
    wave = to_mono(wave)
    if target_sr and sr != target_sr:
        wave = resample(wave, sr, target_sr)
        sr = target_sr
    return wave, int(sr)


def resample(wave: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """High-quality resampling (soxr 'HQ'); a no-op when the rates match."""
    if sr_in == sr_out or wave.size == 0:
        return np.asarray(wave, dtype=np.float32)
    import soxr

    return np.asarray(soxr.resample(wave, sr_in, sr_out, quality="HQ"), dtype=np.float32)


def encode_audio(wave: np.ndarray, sample_rate: int, fmt: str = "wav") -> bytes:
    """The bytes of a PCM-16 WAV, a FLAC, an MP3 or an Ogg Opus file (what a download or an HTTP
    answer carries). MP3 and Opus are libsndfile's own encoders (LAME / libopus, through soundfile):
    no hand-written encoder; Opus at a rate it allows (48 kHz otherwise)."""
    import soundfile as sf

    fmt = fmt.lower()
    if fmt not in OUTPUT_FORMATS:
        raise ValueError(f"unsupported output format {fmt!r}; use one of {OUTPUT_FORMATS}")
    buf = io.BytesIO()
    clipped = np.clip(np.asarray(wave, dtype=np.float32), -1.0, 1.0)
    if fmt == "mp3":
        sf.write(buf, clipped, sample_rate, format="MP3", subtype="MPEG_LAYER_III")
    elif fmt == "opus":
        if sample_rate not in OPUS_RATES:
            clipped, sample_rate = np.clip(resample(clipped, sample_rate, 48000), -1.0, 1.0), 48000
        sf.write(buf, clipped, sample_rate, format="OGG", subtype="OPUS")
    else:
        sf.write(buf, clipped, sample_rate, format=fmt.upper(), subtype="PCM_16")
    return buf.getvalue()


def write_audio(path: Path, wave: np.ndarray, sample_rate: int) -> Path:
    """Write a file whose format follows its suffix (.wav or .flac), PCM 16-bit.

    Callers write into a job's temporary output folder, which the host moves into place as a whole;
    a user's existing file is never the target.
    """
    fmt = path.suffix.lower().lstrip(".") or "wav"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_audio(wave, sample_rate, fmt))
    return path


def pcm16_bytes(wave: np.ndarray) -> bytes:
    """Raw little-endian 16-bit PCM (OpenAI's ``response_format="pcm"``, the stream chunk format)."""
    clipped = np.clip(np.asarray(wave, dtype=np.float32), -1.0, 1.0)
    return (clipped * 32767.0).round().astype("<i2").tobytes()


def peak(wave: np.ndarray) -> float:
    return float(np.max(np.abs(wave))) if wave.size else 0.0


def rms_dbfs(wave: np.ndarray) -> float:
    if wave.size == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(np.square(wave, dtype=np.float64))))
    return 20.0 * float(np.log10(max(rms, 1e-6)))


def read_excerpts(path: Path, seconds: float = 60.0, pieces: int = 10) -> tuple[np.ndarray, int]:
    """At most ``seconds`` of a file, as ``pieces`` excerpts spread over its length, read block by
    block: loudness and statistics of a 4-hour recording without decoding all of it."""
    import soundfile as sf

    info = audio_info(path)
    check_decodable(info, max_seconds=float("inf"))
    if info.duration <= seconds:
        return read_audio(path, max_seconds=float("inf"))
    each = int(seconds / pieces * info.sample_rate)
    starts = np.linspace(0, max(0, info.frames - each), pieces).astype(int)
    parts = []
    try:
        with sf.SoundFile(str(path)) as fh:
            for start in starts:
                fh.seek(int(start))
                parts.append(to_mono(fh.read(each, dtype="float32", always_2d=False)))
    except Exception as exc:
        raise AudioReadError(str(exc)) from exc
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32), info.sample_rate
