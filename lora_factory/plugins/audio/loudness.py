"""Integrated loudness (ITU-R BS.1770 via pyloudnorm), true peak, and normalisation with a limiter.

Why a limiter: raising a quiet, peaky clip to -16 LUFS can push its peaks past 0 dBFS. A plain gain
cap would leave it quieter than asked; a short look-ahead gain envelope keeps the peaks under the
ceiling while the loudness stays at the target (re-measured and corrected a few times).
"""

from __future__ import annotations

import numpy as np

MIN_LOUDNESS_SECONDS = 0.4  # one BS.1770 gating block
SILENCE_LUFS = -70.0


def integrated_loudness(wave: np.ndarray, sample_rate: int) -> float:
    """LUFS of a mono clip; clips shorter than one gating block are measured looped to 0.4 s."""
    import pyloudnorm

    wave = np.asarray(wave, dtype=np.float64)
    if wave.size == 0 or not np.any(wave):
        return SILENCE_LUFS
    need = int(MIN_LOUDNESS_SECONDS * sample_rate) + 1
    if wave.size < need:
        wave = np.tile(wave, need // wave.size + 1)[:need]
    value = float(pyloudnorm.Meter(sample_rate).integrated_loudness(wave))
    return value if np.isfinite(value) else SILENCE_LUFS


def true_peak_dbtp(wave: np.ndarray, sample_rate: int) -> float:
    """Peak of the 4x oversampled signal in dBTP (catches inter-sample peaks a DAC would make)."""
    from lora_factory.plugins.audio.audio_io import resample

    if wave.size == 0:
        return -120.0
    over = resample(np.asarray(wave, dtype=np.float32), sample_rate, sample_rate * 4)
    value = max(float(np.max(np.abs(over))), float(np.max(np.abs(wave))), 1e-6)
    return 20.0 * float(np.log10(value))


def _limit(wave: np.ndarray, sample_rate: int, ceiling_db: float) -> np.ndarray:
    """Look-ahead peak limiter: a moving minimum of the needed gain, then a moving average of it.

    Each averaged value is a mean of minima over windows that all contain the sample, so the gain at
    a peak never exceeds what that peak needs, and the gain changes smoothly over ~10 ms (no clicks).
    """
    from scipy.ndimage import minimum_filter1d, uniform_filter1d

    from lora_factory.plugins.audio.audio_io import resample

    ceiling = 10 ** (ceiling_db / 20.0)
    env = np.abs(wave)
    over = np.abs(resample(wave, sample_rate, sample_rate * 4))
    if over.size >= wave.size * 4:
        env = np.maximum(env, over[: wave.size * 4].reshape(-1, 4).max(axis=1))
    need = np.minimum(1.0, ceiling / np.maximum(env, 1e-9))
    half = max(1, int(0.005 * sample_rate))
    gain = uniform_filter1d(minimum_filter1d(need, size=2 * half + 1, mode="nearest"),
                            size=2 * half + 1, mode="nearest")
    return (wave * np.minimum(gain, need)).astype(np.float32)


def limit_true_peak(wave: np.ndarray, sample_rate: int, ceiling_db: float = -1.0) -> np.ndarray:
    """``wave`` with its true peaks held under ``ceiling_db`` (unchanged when they already are)."""
    wave = np.asarray(wave, dtype=np.float32)
    if wave.size and true_peak_dbtp(wave, sample_rate) > ceiling_db:
        return _limit(wave, sample_rate, ceiling_db - 0.1)
    return wave


def normalize_loudness(wave: np.ndarray, sample_rate: int, target_lufs: float = -16.0,
                       true_peak_db: float = -1.0, passes: int = 5) -> np.ndarray:
    """Gain to ``target_lufs`` with true peaks held under ``true_peak_db``; silence stays silence.

    The gain is corrected on the original signal after measuring the limited result, so limiting
    does not leave the clip quieter than asked (unless the ceiling makes the target unreachable).
    """
    source = np.asarray(wave, dtype=np.float32)
    start = integrated_loudness(source, sample_rate)
    if source.size == 0 or start <= SILENCE_LUFS:
        return source
    gain_db = target_lufs - start
    out = source
    for _ in range(passes):
        out = (source * 10 ** (gain_db / 20.0)).astype(np.float32)
        if true_peak_dbtp(out, sample_rate) > true_peak_db:
            out = _limit(out, sample_rate, true_peak_db - 0.1)
        error = target_lufs - integrated_loudness(out, sample_rate)
        if abs(error) < 0.1 or gain_db > 60:
            break
        gain_db += error
    return out
