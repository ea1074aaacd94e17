"""Slicing at planted pauses, loudness normalisation with a true-peak ceiling, prosody DSP."""

from __future__ import annotations

import numpy as np

from lora_factory.plugins.audio import dsp
from lora_factory.plugins.audio.loudness import integrated_loudness, normalize_loudness, true_peak_dbtp
from lora_factory.plugins.audio.synthesis import split_sentences
from lora_factory.plugins.audio.vad import SliceParams, find_segments
from tests.audio.synthetic import recording_with_pauses


def test_slice_finds_the_planted_pauses() -> None:
    sr = 22050
    wave, spans = recording_with_pauses(sr)
    for method in ("webrtc", "energy"):
        segments = find_segments(wave, sr, SliceParams(min_seconds=2.0, max_seconds=12.0, pad_ms=100, method=method))
        found = [(s.start / sr, s.end / sr) for s in segments]
        assert len(found) == len(spans), (method, found)
        for (start, end), (planted_start, planted_end) in zip(found, spans):
            assert abs(start - (planted_start - 0.1)) < 0.15 and abs(end - (planted_end + 0.1)) < 0.15


def test_long_segment_is_split_under_the_maximum() -> None:
    sr = 16000
    wave, _ = recording_with_pauses(sr)
    segments = find_segments(wave, sr, SliceParams(min_seconds=1.0, max_seconds=3.0, method="energy"))
    assert segments and all(s.seconds(sr) <= 3.0 + 0.25 for s in segments)


def test_loudness_reaches_target_under_the_ceiling() -> None:
    sr = 16000
    rng = np.random.default_rng(0)
    wave = (0.01 * rng.standard_normal(sr * 3)).astype(np.float32)
    wave[::1000] = 0.6  # peaks a plain gain would push past 0 dBFS
    out = normalize_loudness(wave, sr, -16.0, -1.0)
    assert abs(integrated_loudness(out, sr) + 16.0) < 0.5
    assert true_peak_dbtp(out, sr) <= -1.0 + 0.05
    assert not np.any(normalize_loudness(np.zeros(sr, np.float32), sr))


def test_speed_keeps_pitch_and_pitch_keeps_length() -> None:
    sr = 16000
    t = np.arange(sr * 2) / sr
    tone = (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)

    def f0(x: np.ndarray) -> float:
        spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
        return float(np.argmax(spectrum) * sr / x.size)

    fast = dsp.time_stretch(tone, sr, 1.5)
    assert abs(fast.size - tone.size / 1.5) < 2 and abs(f0(fast) - 200) < 3
    higher = dsp.pitch_shift(tone, sr, 12)
    assert higher.size == tone.size and abs(f0(higher[2000:-2000]) - 400) < 6
    assert dsp.trim_silence(np.concatenate([np.zeros(8000, np.float32), tone]), sr).size < tone.size + 8000


def test_sentences_split_at_ends_and_long_ones_at_commas() -> None:
    assert split_sentences("こんにちは。元気ですか？はい!") == ["こんにちは。", "元気ですか？", "はい!"]
    long = "、".join(["あいうえお"] * 30) + "。"
    parts = split_sentences(long, max_chars=40)
    assert len(parts) > 3 and all(len(p) <= 40 for p in parts) and "".join(parts) == long


def test_volume_never_pushes_peaks_past_the_ceiling() -> None:
    """+12 dB (and the UI's +6 dB) on top of -16 LUFS: the true-peak ceiling is applied last."""
    from lora_factory.plugins.audio.synthesis import SpeechParams, shape_sentence
    from tests.audio.synthetic import voiced

    sr = 16000
    wave = voiced(2.0, sr, np.random.default_rng(3))
    for volume in (6.0, 12.0):
        for target in (-16.0, None):
            out = shape_sentence(wave, sr, SpeechParams(volume_db=volume, target_lufs=target, fade_ms=0))
            assert dsp.clipping_ratio(out) == 0.0, (volume, target)
            assert true_peak_dbtp(out, sr) <= -1.0 + 0.2, (volume, target)
    louder = shape_sentence(wave, sr, SpeechParams(volume_db=6.0, fade_ms=0))
    plain = shape_sentence(wave, sr, SpeechParams(fade_ms=0))
    assert integrated_loudness(louder, sr) > integrated_loudness(plain, sr) + 3  # the volume still counts


def test_short_utterances_are_reported_and_split_pieces_do_not_overlap() -> None:
    from lora_factory.plugins.audio.vad import slice_recording
    from tests.audio.synthetic import pause, voiced

    sr = 16000
    rng = np.random.default_rng(5)
    # 3 s, a 1.4 s burst, 3 s, then a 7 s run-on with a 150 ms inner breath (split under max_seconds 5)
    parts = [pause(0.5, sr, rng), voiced(3.0, sr, rng), pause(0.8, sr, rng), voiced(1.4, sr, rng, f0=180),
             pause(0.8, sr, rng), voiced(3.0, sr, rng), pause(0.8, sr, rng), voiced(3.5, sr, rng, f0=200),
             pause(0.15, sr, rng), voiced(3.5, sr, rng, f0=210), pause(0.6, sr, rng)]
    wave = np.concatenate(parts)
    result = slice_recording(wave, sr, SliceParams(min_seconds=2.0, max_seconds=5.0, min_silence_ms=300,
                                                   pad_ms=200, method="energy"))
    assert len(result.dropped) == 1 and abs(result.dropped[0].seconds(sr) - 1.4) < 0.5
    assert len(result.segments) == 4
    ends = [(s.start, s.end) for s in result.segments]
    assert all(prev_end <= start for (_, prev_end), (start, _) in zip(ends, ends[1:])), ends
