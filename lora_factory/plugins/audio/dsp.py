"""Prosody and finishing touches on a waveform: speed, pitch, volume, fades, pauses (numpy + soxr).

Speed uses WSOLA (waveform-similarity overlap-add): it changes the tempo without changing the pitch
and, unlike a phase vocoder, keeps speech free of the "phasey" smear. Pitch = stretch by the pitch
ratio, then resample back to the original length (the classic resampling pitch shift).
"""

from __future__ import annotations

import numpy as np

from lora_factory.plugins.audio.audio_io import resample


def time_stretch(wave: np.ndarray, sr: int, rate: float) -> np.ndarray:
    """Play ``rate`` times faster (rate 2.0 halves the length), pitch unchanged."""
    wave = np.asarray(wave, dtype=np.float32)
    if abs(rate - 1.0) < 1e-3 or wave.size < sr // 20:
        return wave
    win = max(64, int(0.030 * sr)) // 2 * 2
    hop_out = win // 2
    hop_in = hop_out * rate
    tolerance = max(8, int(0.010 * sr))
    window = np.hanning(win).astype(np.float32)
    padded = np.concatenate([np.zeros(tolerance + win, np.float32), wave, np.zeros(tolerance + 2 * win, np.float32)])
    base = tolerance + win
    frames = int((wave.size - 1) / hop_in) + 1
    out = np.zeros(frames * hop_out + win, dtype=np.float32)
    norm = np.zeros_like(out)
    prev = base  # where the previous frame was taken from
    for k in range(frames):
        nominal = base + int(round(k * hop_in))
        if k == 0:
            pos = nominal
        else:
            # the natural continuation of the previous frame; pick the nearby frame most like it
            target = padded[prev + hop_out: prev + hop_out + win]
            lo, hi = nominal - tolerance, nominal + tolerance
            region = padded[lo: hi + win]
            scores = np.correlate(region, target, mode="valid")
            pos = lo + int(np.argmax(scores)) if scores.size else nominal
        out[k * hop_out: k * hop_out + win] += padded[pos: pos + win] * window
        norm[k * hop_out: k * hop_out + win] += window
        prev = pos
    length = int(round(wave.size / rate))
    return (out / np.maximum(norm, 1e-3))[:length].astype(np.float32)


def pitch_shift(wave: np.ndarray, sr: int, semitones: float) -> np.ndarray:
    """Raise (positive) or lower the pitch by ``semitones``, length unchanged."""
    if abs(semitones) < 1e-3 or wave.size == 0:
        return np.asarray(wave, dtype=np.float32)
    ratio = 2.0 ** (semitones / 12.0)
    stretched = time_stretch(wave, sr, 1.0 / ratio)  # ratio times longer
    # playing the longer signal ratio times faster restores the length and scales the pitch by ratio
    shifted = resample(stretched, int(round(sr * ratio)), sr)
    if shifted.size >= wave.size:
        return shifted[: wave.size]
    return np.pad(shifted, (0, wave.size - shifted.size))


def gain_db(wave: np.ndarray, db: float) -> np.ndarray:
    return (np.asarray(wave, dtype=np.float32) * 10 ** (db / 20.0)).astype(np.float32)


def fade(wave: np.ndarray, sr: int, fade_in_ms: float = 10.0, fade_out_ms: float = 10.0) -> np.ndarray:
    out = np.array(wave, dtype=np.float32, copy=True)
    for ms, head in ((fade_in_ms, True), (fade_out_ms, False)):
        n = min(out.size, int(sr * ms / 1000))
        if n <= 0:
            continue
        ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
        if head:
            out[:n] *= ramp
        else:
            out[-n:] *= ramp[::-1]
    return out


def silence(sr: int, ms: float) -> np.ndarray:
    return np.zeros(max(0, int(sr * ms / 1000)), dtype=np.float32)


def trim_silence(wave: np.ndarray, sr: int, threshold_db: float = -45.0, keep_ms: float = 50.0) -> np.ndarray:
    """Cut leading and trailing parts quieter than ``threshold_db`` below the peak (10 ms frames)."""
    if wave.size == 0:
        return wave
    frame = max(1, sr // 100)
    count = wave.size // frame
    if count == 0:
        return wave
    frames = wave[: count * frame].reshape(count, frame)
    level = 20 * np.log10(np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1)) + 1e-9)
    peak_level = float(level.max())
    loud = np.nonzero(level > peak_level + threshold_db)[0]
    if loud.size == 0:
        return wave[:0]
    keep = int(sr * keep_ms / 1000)
    start = max(0, loud[0] * frame - keep)
    end = min(wave.size, (loud[-1] + 1) * frame + keep)
    return wave[start:end]


def clipping_ratio(wave: np.ndarray, level: float = 0.999) -> float:
    return float(np.mean(np.abs(wave) >= level)) if wave.size else 0.0
